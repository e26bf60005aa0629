//! A slave's store: CommitLog bytes from its master, appended byte for byte.
//!
//! The master streams raw runs of its log (`Store::read_log`), cut anywhere. The slave
//! appends every whole record or BLANK at the start of what it holds, checks each one
//! continues its own log (its offset is this log's end, its queue offset that queue's next,
//! its CRCs hold), and dispatches it to its ConsumeQueue exactly as the master did. So its
//! log equals the master's byte for byte up to its end, and its queues name the same
//! offsets. A record cut at the end stays with the caller until the rest arrives.

use super::consume_queue::{entry_tags_code, takes_queue_entry, CqEntry};
use super::message_store::Store;
use super::{PhysOffset, StoreError};
use crate::protocol::message::stored::{parse_record, verify_crcs, Parsed, BLANK_MIN_LEN};

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
                    verify_crcs(&view, true).map_err(StoreError::Record)?;
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
                        let found = self.queues.slot_or_create(topic, head.queue_id);
                        let (slot, next) = found.ok_or_else(|| StoreError::BadTopic(topic.to_owned()))?;
                        if u64::try_from(head.queue_offset).ok() != Some(next) {
                            return Err(self.diverged("a queue offset that is not its queue's next"));
                        }
                        Some(slot)
                    } else {
                        None
                    };
                    self.log.append_raw(&mut self.ops, view.bytes, head.store_timestamp);
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

    fn diverged(&self, what: &'static str) -> StoreError {
        StoreError::Diverged { at: self.log.write_pos(), what }
    }
}
