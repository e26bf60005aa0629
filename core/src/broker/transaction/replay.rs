//! The replay at boot: the op queue says which transactions ended; a commit or discard
//! whose copy a crash lost is written again.

use super::table::{
    EndKind, TransactionTable, CHECK_MAX_TOPIC, HALF_TOPIC, OP_HALF_PHYS, OP_KIND, OP_TOPIC, SYS_TRANS_GROUP,
};
use super::{op_origins, HalfRecord, ReplayedEnd, TransactionService};
use crate::broker::consumers::Consumers;
use crate::broker::shared::Shared;
use crate::io::Now;
use crate::protocol::message::properties;
use crate::protocol::message::stored::{parse_record, Parsed};
use crate::store::{PhysOffset, QueueOffset};

impl TransactionService {
    /// Replay the op and half queues once the store is up; false if not possible yet.
    pub(super) fn ready(&mut self, shared: &mut Shared, consumers: &mut Consumers) -> bool {
        if self.table.is_some() {
            return true;
        }
        if !shared.store.is_ready() {
            return false;
        }
        let bounds = |store: &crate::store::Store, topic: &str| {
            store.queue_offsets(topic, 0).map_or((0, 0), |(min, max)| (min.0, max.0))
        };
        let (half_min, half_max) = bounds(&shared.store, HALF_TOPIC);
        let (op_min, op_max) = bounds(&shared.store, OP_TOPIC);
        let persisted = |topic: &str| {
            consumers.offsets.get(SYS_TRANS_GROUP, topic, 0).map_or(0, |o| u64::try_from(o).unwrap_or(0))
        };
        let half_from = persisted(HALF_TOPIC).clamp(half_min, half_max);
        let op_from = persisted(OP_TOPIC).clamp(op_min, op_max);
        let mut table = TransactionTable::new(half_from, op_from, half_max);
        // Op records first: they say which transactions already ended.
        let mut verify: std::collections::BTreeMap<u64, Vec<ReplayedEnd>> = std::collections::BTreeMap::new();
        let mut next = op_from;
        let mut skipped = Vec::new();
        while next < op_max {
            let Ok(entries) = shared.store.read_entries(&*shared.reader, OP_TOPIC, 0, QueueOffset(next), 256)
            else {
                return false;
            };
            if entries.is_empty() {
                break;
            }
            for (offset, entry) in (next..).zip(&entries) {
                let record = match shared.store.read_record(&*shared.reader, entry.phys_offset, entry.size) {
                    Ok(record) => record,
                    Err(error) => {
                        // Skipping an op record would reopen an ended transaction.
                        if self.give_up_reading(OP_TOPIC, offset, &error.to_string()) {
                            skipped.push(offset);
                            continue;
                        }
                        return false;
                    }
                };
                let Ok(Parsed::Message(view)) = parse_record(&record) else { continue };
                let origins = op_origins(view.record.body);
                let kind = EndKind::parse(properties::find(view.record.properties, OP_KIND));
                let half_phys = properties::find(view.record.properties, OP_HALF_PHYS)
                    .and_then(|v| core::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(PhysOffset);
                if let (true, Some(half_phys), [origin]) = (kind.has_copy(), half_phys, origins.as_slice()) {
                    let follower = entry.end();
                    verify.entry(*origin).or_default().push((kind, half_phys, follower));
                }
                table.replay_op(offset, &origins);
            }
            next += entries.len() as u64;
        }
        self.table = Some(table);
        self.verify = verify;
        // The rest of the half queue is read by the service as usual (the table knows
        // which entries were stored before the crash).
        let open = self.table.as_ref().map_or(0, TransactionTable::open_count);
        tracing::info!(half_from, op_from, open, ?skipped, "transaction op records replayed");
        true
    }

    /// Find the copies of the commits and discards replayed at boot; redo the ones a crash
    /// lost. A copy is written right behind its op record in one append, so it is there iff
    /// the record behind the op record is it.
    pub(super) fn verify_ends(&mut self, shared: &mut Shared, now: Now) {
        let pending: Vec<(u64, Vec<ReplayedEnd>)> =
            self.verify.iter().map(|(o, v)| (*o, v.clone())).collect();
        for (origin, ends) in pending {
            let found: Vec<Option<bool>> =
                ends.iter().map(|&(kind, half_phys, at)| self.copy_at(shared, at, kind, half_phys)).collect();
            let done = if found.contains(&Some(true)) {
                true
            } else if found.iter().all(|f| *f == Some(false)) {
                let Some(&(kind, half_phys, _)) = ends.last() else { continue };
                self.redo_end(shared, now, origin, kind, half_phys)
            } else {
                false // a read failed; look again shortly
            };
            if done {
                self.verify.remove(&origin);
            }
        }
    }

    /// Whether the copy an op record of `kind` made of `half_phys` is at `at`: `None` while
    /// that cannot be read (a record that stays unreadable counts as there: a redo must
    /// never store a second copy).
    fn copy_at(
        &mut self,
        shared: &mut Shared,
        at: PhysOffset,
        kind: EndKind,
        half_phys: PhysOffset,
    ) -> Option<bool> {
        if at >= self.boot_log_end {
            return Some(false); // the op record was the last record recovered
        }
        let record = match shared.store.read_record_at(&*shared.reader, at) {
            Ok(record) => record,
            Err(error) => {
                return self.give_up_reading(CHECK_MAX_TOPIC, at.0, &error.to_string()).then_some(true)
            }
        };
        let Ok(Parsed::Message(view)) = parse_record(&record) else { return Some(false) };
        let right_topic = match kind {
            EndKind::Discard => view.record.topic == CHECK_MAX_TOPIC,
            _ => view.record.topic != HALF_TOPIC && view.record.topic != OP_TOPIC,
        };
        Some(right_topic && u64::try_from(view.head().prepared_transaction_offset).ok() == Some(half_phys.0))
    }

    /// An op record survived a crash but the copy behind it did not: write both again.
    /// True when done (or given up on).
    fn redo_end(
        &mut self,
        shared: &mut Shared,
        now: Now,
        origin: u64,
        kind: EndKind,
        half_phys: PhysOffset,
    ) -> bool {
        let record = match shared.store.read_record_at(&*shared.reader, half_phys) {
            Ok(record) => record,
            Err(error) => return self.give_up_reading(HALF_TOPIC, half_phys.0, &error.to_string()),
        };
        let half = HalfRecord { record };
        let Some(view) = half.view() else { return true };
        match self.append_end(shared, now, &view, origin, kind) {
            Ok((_, _)) => {
                self.stats.redone += 1;
                tracing::warn!(origin, kind = kind.as_str(), "transaction end redone after a crash");
                true
            }
            Err(error) => {
                tracing::warn!(origin, %error, "redoing a transaction end failed; retrying");
                false
            }
        }
    }
}
