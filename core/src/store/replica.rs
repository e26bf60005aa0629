//! A slave's store: CommitLog bytes from its master, appended byte for byte.
//!
//! The master streams raw runs of its log (`Store::read_log`), cut anywhere. The slave
//! appends every whole record or BLANK at the start of what it holds, checks each one
//! continues its own log (its offset is this log's end, its queue offset that queue's next,
//! its record CRC holds), and dispatches it to its ConsumeQueue exactly as the master did. So its
//! log equals the master's byte for byte up to its end, and its queues name the same
//! offsets. A record cut at the end stays with the caller until the rest arrives.
//!
//! A slave with an empty log starts where the stream does (a segment's start), and its
//! queues start at the offset of their first entry it sees.

use super::consume_queue::{entry_tags_code, takes_queue_entry, CqEntry};
use super::message_store::Store;
use super::{PhysOffset, StoreError};
use crate::protocol::message::stored::{check_record_crc, parse_record, Parsed, BLANK_MIN_LEN};

/// What [`Store::append_replicated`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAppend {
    /// Bytes appended from the start of the run; the rest is a record not complete yet.
    pub consumed: usize,
    /// The log's end after them: what the slave reports to its master.
    pub end: PhysOffset,
}

impl Store {
    /// Append replicated CommitLog bytes starting at `from`, which must be this log's end:
    /// every whole record or BLANK at their start, byte for byte, each dispatched as on the
    /// master. A run that disagrees with this log is refused at the first record that does
    /// ([`StoreError::Diverged`], or [`StoreError::Record`] for a damaged one); the records
    /// before it stay appended.
    pub fn append_replicated(&mut self, from: PhysOffset, bytes: &[u8]) -> Result<ReplicaAppend, StoreError> {
        self.check_writable()?;
        if from.0 != self.log.write_pos() {
            return Err(self.diverged("the run does not start at this log's end"));
        }
        let mut consumed = 0;
        while let Some(rest) = bytes.get(consumed..).filter(|rest| !rest.is_empty()) {
            let at = self.log.write_pos();
            let left = self.log.segment_left();
            let Some(head) = rest.get(..BLANK_MIN_LEN) else { break };
            let declared = head.get(..4).and_then(|b| b.try_into().ok()).map_or(0, i32::from_be_bytes);
            match usize::try_from(declared) {
                Ok(len) if len as u64 > left => {
                    return Err(self.diverged("a record crosses its segment's end"))
                }
                Ok(len) if len > rest.len() => break, // the rest comes with the next run
                _ => {}
            }
            match parse_record(rest).map_err(StoreError::Record)? {
                Parsed::Blank(len) => {
                    if len as u64 != left {
                        return Err(self.diverged("a BLANK that does not end its segment"));
                    }
                    self.log.close_segment(&mut self.ops);
                    consumed += len;
                }
                Parsed::Message(view) => {
                    // The record's CRC covers every byte, its body too: one pass checks
                    // the copy (the body's own CRC would read the body a second time).
                    check_record_crc(view.bytes).map_err(StoreError::Record)?;
                    let head = view.head();
                    let len = view.bytes.len();
                    if u64::try_from(head.physical_offset).ok() != Some(at) {
                        return Err(self.diverged("a record written for another offset"));
                    }
                    if (len + BLANK_MIN_LEN) as u64 > left {
                        return Err(self.diverged("a record without room for its segment's BLANK"));
                    }
                    let queue = if takes_queue_entry(head.sys_flag) {
                        let topic = view.record.topic;
                        // A log copied from past its master's start may meet a queue first
                        // anywhere (or again, emptied by a cut): its earlier entries are in
                        // what was not copied.
                        let queue = self.queues.get(topic, head.queue_id);
                        let first_seen = queue.is_none_or(|q| q.min_offset == q.next_offset);
                        let found = match u64::try_from(head.queue_offset) {
                            Ok(start) if first_seen && self.log.min_offset() > 0 => {
                                self.queues.create_at(topic, head.queue_id, start).map(|slot| (slot, start))
                            }
                            _ => self.queues.slot_or_create(topic, head.queue_id),
                        };
                        let (slot, next) = found.ok_or_else(|| StoreError::BadTopic(topic.to_owned()))?;
                        if u64::try_from(head.queue_offset).ok() != Some(next) {
                            return Err(self.diverged("a queue offset that is not its queue's next"));
                        }
                        Some(slot)
                    } else {
                        None
                    };
                    self.log.append_raw(&mut self.ops, view.bytes, head.store_timestamp);
                    let (topic, props) = (view.record.topic, view.record.properties);
                    self.index.add_record(at, head.store_timestamp, topic, props, head.sys_flag);
                    if let Some(slot) = queue {
                        // It fits a segment, so a u32.
                        let entry = CqEntry {
                            phys_offset: PhysOffset(at),
                            size: len as u32,
                            tags_code: entry_tags_code(
                                &self.config.due_time_topics,
                                view.record.topic,
                                view.record.properties,
                            ),
                        };
                        self.queues.dispatch(slot, &entry);
                    }
                    consumed += len;
                }
            }
        }
        Ok(ReplicaAppend { consumed, end: PhysOffset(self.log.write_pos()) })
    }

    /// Begin an empty log at `base`, where the master's stream starts for a slave with
    /// nothing (RocketMQ's masters start a fresh slave at their newest segment): what lies
    /// below was never this log's. Refused unless the log is empty and `base` a segment's
    /// start.
    pub fn start_replica_at(&mut self, base: PhysOffset) -> Result<(), StoreError> {
        self.check_writable()?;
        if !self.log.start_at(&mut self.ops, base.0) {
            return Err(self.diverged("a stream into an empty log that does not start a segment"));
        }
        self.written_end = base.0;
        self.flushed_end = base.0;
        Ok(())
    }

    /// Cut a slave's log back to `to`, where it stops agreeing with its master's: writes
    /// stop, and the store is rebuilt in place (as after a disk error) with nothing past
    /// `to`, once what is in flight is done.
    pub fn cut_back_replica(&mut self, now: crate::io::Now, to: PhysOffset) -> Result<(), StoreError> {
        self.check_writable()?;
        tracing::warn!(
            from = self.log.write_pos(),
            to = to.0,
            "cutting the log back to where it agrees with the master's"
        );
        // Below the oldest segment nothing is kept: the store starts over empty, and its
        // master streams it from its newest segment.
        let cut = if to < self.min_phys() { 0 } else { to.0.min(self.written_end) };
        self.begin_repair(now, cut, false, false);
        Ok(())
    }

    fn diverged(&self, what: &'static str) -> StoreError {
        StoreError::Diverged { at: self.log.write_pos(), what }
    }
}
