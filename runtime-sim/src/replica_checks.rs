//! The replication checker: after healing, a slave's CommitLog holds its master's record
//! for record, byte for byte, to the master's end, from where both logs hold records (a
//! slave copies from its master's newest segment when it starts empty, and each side's
//! retention deletes old segments on its own schedule).

use keel_core::store::audit::AuditReport;

/// What is wrong with `slave`'s log as a copy of `master`'s, if anything.
#[must_use]
pub fn replica_divergence(master: &AuditReport, slave: &AuditReport) -> Option<String> {
    let Some(slave_first) = slave.records.first().map(|r| r.offset) else {
        return (!master.records.is_empty())
            .then(|| format!("the slave holds no record; the master's log ends at {}", master.end));
    };
    if slave.end != master.end {
        return Some(format!(
            "the slave's log ends at {}, the master's at {} (the slave's begins at {slave_first})",
            slave.end, master.end
        ));
    }
    let first = master.records.first().map_or(slave_first, |r| r.offset.max(slave_first));
    let expected: Vec<_> = master.records.iter().filter(|r| r.offset >= first).collect();
    let held: Vec<_> = slave.records.iter().filter(|r| r.offset >= first).collect();
    if expected.len() != held.len() {
        return Some(format!(
            "the slave holds {} records from {first}, the master {}",
            held.len(),
            expected.len()
        ));
    }
    let differ = expected.iter().zip(&held).find(|(ours, theirs)| ours.bytes != theirs.bytes);
    differ.map(|(ours, theirs)| {
        format!("the record at {} differs from the master's (at {})", theirs.offset, ours.offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::store::audit::AuditedRecord;

    fn report(records: &[(u64, &[u8])]) -> AuditReport {
        let records: Vec<AuditedRecord> = records
            .iter()
            .map(|&(offset, bytes)| AuditedRecord {
                offset,
                bytes: bytes.to_vec(),
                topic: "T".into(),
                queue_id: 0,
                queue_offset: Some(offset),
                entry: keel_core::store::consume_queue::CqEntry {
                    phys_offset: keel_core::store::PhysOffset(offset),
                    size: bytes.len() as u32,
                    tags_code: 0,
                },
            })
            .collect();
        let end = records.last().map_or(0, |r| r.offset + r.bytes.len() as u64);
        AuditReport { end, records, queues: Default::default() }
    }

    #[test]
    fn a_slave_must_hold_the_masters_records_from_its_start_to_the_masters_end() {
        let master = report(&[(0, b"aaaa"), (4, b"bbbb"), (8, b"cccc")]);
        assert_eq!(replica_divergence(&master, &report(&[(0, b"aaaa"), (4, b"bbbb"), (8, b"cccc")])), None);
        assert_eq!(replica_divergence(&master, &report(&[(4, b"bbbb"), (8, b"cccc")])), None, "began later");
        let trimmed = report(&[(4, b"bbbb"), (8, b"cccc")]);
        assert_eq!(replica_divergence(&trimmed, &master), None, "the master's retention went further");
        assert!(replica_divergence(&master, &report(&[(0, b"aaaa"), (4, b"bbbb")])).is_some(), "behind");
        let garbled = report(&[(0, b"aaaa"), (4, b"bxbb"), (8, b"cccc")]);
        assert!(replica_divergence(&master, &garbled).unwrap().contains("at 4 differs"));
        assert!(replica_divergence(&master, &report(&[])).is_some(), "empty");
        assert_eq!(replica_divergence(&report(&[]), &report(&[])), None);
    }
}
