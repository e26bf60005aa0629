//! An independent check of a store on disk against the invariants of
//! `reference/storage.md` §12, for tests and the simulator's checkers.
//!
//! It reads everything and trusts nothing the store keeps in memory:
//!
//! - INV-1, INV-2: segments are contiguous, full-sized, and from the first one parse as valid
//!   records (CRCs and self-offsets included), each segment but the last closed by a BLANK;
//!   after the end every byte of the last segment is zero and no later segment exists.
//! - INV-5: per queue, queue offsets are dense and rise with the CommitLog offset.
//! - INV-6, INV-7: every ConsumeQueue holds exactly one entry per dispatched record, equal to
//!   (offset, size, tag code), no entry past the log end, zeros after its last entry.
//!
//! Meant for test-sized stores: it reads whole files into memory.

use std::collections::BTreeMap;

use super::consume_queue::entry_tags_code;
use super::consume_queue::{CqEntry, ENTRY_LEN};
use super::paths;
use super::{PhysOffset, StoreConfig};
use crate::io::{DiskError, StoreRead};
use crate::protocol::message::stored::{parse_record, verify_crcs, Parsed, BLANK_MIN_LEN};

/// One valid record found in the CommitLog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedRecord {
    /// CommitLog offset.
    pub offset: u64,
    /// The record's bytes.
    pub bytes: Vec<u8>,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Queue offset, if the record is dispatched to a ConsumeQueue.
    pub queue_offset: Option<u64>,
    /// ConsumeQueue entry it must have.
    pub entry: CqEntry,
}

/// What the audit found on a consistent store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// End of the valid log.
    pub end: u64,
    /// Every valid record, in log order.
    pub records: Vec<AuditedRecord>,
    /// Every queue's (min, next) offsets.
    pub queues: BTreeMap<(String, i32), (u64, u64)>,
}

fn read_whole(reader: &dyn StoreRead, file: &crate::io::FilePath) -> Result<Vec<u8>, DiskError> {
    let len = usize::try_from(reader.len(file)?.unwrap_or(0)).unwrap_or(0);
    let mut buf = vec![0u8; len];
    let got = reader.read_at(file, 0, &mut buf)?;
    buf.truncate(got);
    Ok(buf)
}

/// Check every invariant; `Err` lists each violation found.
pub fn audit(config: &StoreConfig, reader: &dyn StoreRead) -> Result<AuditReport, Vec<String>> {
    let (report, problems) = survey(config, reader);
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(problems)
    }
}

/// What [`audit`] reads, with the violations it found beside it rather than instead of it:
/// for comparing the logs of live stores, whose queues retention trims file by file.
pub fn survey(config: &StoreConfig, reader: &dyn StoreRead) -> (AuditReport, Vec<String>) {
    let mut problems = Vec::new();
    let report = match audit_inner(config, reader, &mut problems) {
        Ok(report) => report,
        Err(e) => {
            problems.push(format!("disk read failed: {e}"));
            AuditReport::default()
        }
    };
    (report, problems)
}

fn audit_inner(
    config: &StoreConfig,
    reader: &dyn StoreRead,
    problems: &mut Vec<String>,
) -> Result<AuditReport, DiskError> {
    let mut report = AuditReport::default();
    let names = reader.list(&paths::commitlog_dir())?;
    let bases: Vec<u64> = names.iter().filter_map(|n| paths::parse_offset_name(n)).collect();
    let seg = config.segment_size;
    for pair in bases.windows(2) {
        if let [a, b] = pair {
            if a + seg != *b {
                problems.push(format!("INV-2: segment {b} does not follow {a}"));
            }
        }
    }
    let mut ended = false;
    report.end = bases.first().copied().unwrap_or(0);
    for &base in &bases {
        let bytes = read_whole(reader, &paths::segment(base))?;
        if bytes.len() as u64 != seg {
            problems.push(format!("INV-2: segment {base} has {} bytes, not {seg}", bytes.len()));
        }
        if ended {
            problems.push(format!("INV-1: segment {base} exists after the end of the log"));
            continue;
        }
        let mut pos = 0usize;
        loop {
            let rest = bytes.get(pos..).unwrap_or_default();
            match parse_record(rest) {
                Ok(Parsed::Blank(len)) if pos + len == bytes.len() => {
                    report.end = base + seg;
                    break;
                }
                Ok(Parsed::Message(view))
                    if verify_crcs(&view, true).is_ok()
                        && u64::try_from(view.head().physical_offset).ok() == Some(base + pos as u64)
                        && pos + view.bytes.len() + BLANK_MIN_LEN <= bytes.len() =>
                {
                    let dispatched = super::consume_queue::takes_queue_entry(view.head().sys_flag);
                    report.records.push(AuditedRecord {
                        offset: base + pos as u64,
                        bytes: view.bytes.to_vec(),
                        topic: view.record.topic.to_owned(),
                        queue_id: view.head().queue_id,
                        queue_offset: dispatched
                            .then(|| u64::try_from(view.head().queue_offset).unwrap_or(u64::MAX)),
                        entry: CqEntry {
                            phys_offset: PhysOffset(base + pos as u64),
                            size: u32::try_from(view.bytes.len()).unwrap_or(u32::MAX),
                            tags_code: entry_tags_code(
                                &config.due_time_topics,
                                view.record.topic,
                                view.record.properties,
                            ),
                        },
                    });
                    pos += view.bytes.len();
                }
                _ => {
                    report.end = base + pos as u64;
                    if rest.iter().any(|b| *b != 0) {
                        problems.push(format!(
                            "INV-3: non-zero bytes after the end of the log at {}",
                            report.end
                        ));
                    }
                    ended = true;
                    break;
                }
            }
        }
    }
    check_queues(config, reader, &mut report, problems)?;
    Ok(report)
}

fn check_queues(
    config: &StoreConfig,
    reader: &dyn StoreRead,
    report: &mut AuditReport,
    problems: &mut Vec<String>,
) -> Result<(), DiskError> {
    // INV-5: expected entries per queue, from the log.
    let mut expected: BTreeMap<(String, i32), Vec<(u64, CqEntry)>> = BTreeMap::new();
    for record in &report.records {
        if let Some(queue_offset) = record.queue_offset {
            let list = expected.entry((record.topic.clone(), record.queue_id)).or_default();
            if let Some((last, _)) = list.last() {
                if queue_offset != last + 1 {
                    problems.push(format!(
                        "INV-5: {}:{} offset {queue_offset} follows {last} (record at {})",
                        record.topic, record.queue_id, record.offset
                    ));
                }
            }
            list.push((queue_offset, record.entry));
        }
    }
    let file_size = config.queue_file_entries * ENTRY_LEN;
    let root = paths::consume_queue_root();
    let mut found: BTreeMap<(String, i32), (u64, Vec<CqEntry>, bool)> = BTreeMap::new();
    for topic in reader.list(&root)? {
        let Some(topic_dir) = root.join(&topic) else { continue };
        for queue in reader.list(&topic_dir)? {
            let (Ok(queue_id), Some(dir)) = (queue.parse::<i32>(), topic_dir.join(&queue)) else { continue };
            let mut min = None;
            let mut entries = Vec::new();
            let mut junk_after_end = false;
            let mut ended = false;
            for name in reader.list(&dir)? {
                let Some(start) = paths::parse_offset_name(&name) else { continue };
                let Some(file) = dir.join(&name) else { continue };
                let bytes = read_whole(reader, &file)?;
                if bytes.len() as u64 != file_size {
                    problems.push(format!("INV-6: {file} has {} bytes, not {file_size}", bytes.len()));
                }
                for (i, slot) in bytes.chunks_exact(ENTRY_LEN as usize).enumerate() {
                    let offset = start / ENTRY_LEN + i as u64;
                    if ended {
                        junk_after_end |= slot.iter().any(|b| *b != 0);
                        continue;
                    }
                    let pre_blank = super::consume_queue::is_pre_blank(slot);
                    if pre_blank && entries.is_empty() {
                        continue;
                    }
                    match CqEntry::decode(slot) {
                        Some(entry) => {
                            min.get_or_insert(offset);
                            entries.push(entry);
                        }
                        None => ended = true,
                    }
                }
            }
            let min = min.unwrap_or(0);
            found.insert((topic.clone(), queue_id), (min, entries, junk_after_end));
        }
    }
    for (key, list) in &expected {
        let Some((min, entries, junk)) = found.get(key) else {
            problems.push(format!("INV-6: queue {}:{} has records but no ConsumeQueue", key.0, key.1));
            continue;
        };
        let first = list.first().map_or(0, |(q, _)| *q);
        if *min != first && !entries.is_empty() {
            problems.push(format!(
                "INV-6: queue {}:{} starts at {min}, its first record has {first}",
                key.0, key.1
            ));
        }
        let wanted: Vec<CqEntry> = list.iter().map(|(_, e)| *e).collect();
        if entries != &wanted {
            problems.push(format!(
                "INV-6: queue {}:{} has {} entries, the log has {} records{}",
                key.0,
                key.1,
                entries.len(),
                wanted.len(),
                first_difference(entries, &wanted)
            ));
        }
        if *junk {
            problems.push(format!("INV-6: queue {}:{} has bytes after its last entry", key.0, key.1));
        }
        report.queues.insert(key.clone(), (first, first + wanted.len() as u64));
    }
    for (key, (_, entries, _)) in &found {
        if !expected.contains_key(key) && !entries.is_empty() {
            problems.push(format!(
                "INV-6: queue {}:{} has {} entries for no record",
                key.0,
                key.1,
                entries.len()
            ));
        }
    }
    Ok(())
}

fn first_difference(found: &[CqEntry], wanted: &[CqEntry]) -> String {
    let at = found.iter().zip(wanted).position(|(a, b)| a != b);
    match at {
        Some(i) => format!(" (first difference at index {i}: {:?} vs {:?})", found.get(i), wanted.get(i)),
        None => String::new(),
    }
}
