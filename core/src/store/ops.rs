//! The queue of disk operations a store hands its runtime, and what each one was for.
//!
//! Operations that must all finish before something else may start (a flush round, a
//! checkpoint phase, boot fix-ups) share a [`GroupId`]; the store is told when a group's
//! last operation completes.

use std::collections::{BTreeMap, VecDeque};

use crate::io::{DiskOp, IoId, Output};

/// Paths of CommitLog segments start with this.
const LOG_DIR_PREFIX: &str = "commitlog/";

/// A set of operations whose joint completion the store waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupId(pub(crate) u64);

/// Why an operation was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A CommitLog write ending at this log offset.
    LogWrite { end: u64 },
    /// Part of a group.
    Group(GroupId),
    /// A ConsumeQueue write; the queue in slot `slot` is on disk up to offset `upto`.
    CqWrite { slot: usize, upto: u64 },
    /// An index entry write; the index file named `file` is on disk below entry `upto`.
    IndexWrite { file: u64, upto: u32 },
    /// Nothing waits for it.
    Plain,
}

/// What a completion meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Completed {
    /// A CommitLog write finished; the log is written up to `end`.
    LogWritten { end: u64 },
    /// A ConsumeQueue write finished.
    CqWritten { slot: usize, upto: u64 },
    /// An index entry write finished.
    IndexWritten { file: u64, upto: u32 },
    /// The last operation of a group finished.
    GroupDone(GroupId),
    /// Nothing to act on.
    Nothing,
}

/// Outputs waiting to be polled, and operations waiting to complete.
#[derive(Debug, Default)]
pub(crate) struct OpQueue {
    next_io: u64,
    next_group: u64,
    outputs: VecDeque<Output>,
    in_flight: BTreeMap<IoId, Purpose>,
    group_sizes: BTreeMap<GroupId, usize>,
    /// In-flight syncs of CommitLog data, with the segment each covers (`None`: every file):
    /// if one fails, the page cache may have dropped what it covered.
    log_syncs: BTreeMap<IoId, Option<u64>>,
}

impl OpQueue {
    /// A fresh group; it completes when every operation pushed into it has.
    pub(crate) fn new_group(&mut self) -> GroupId {
        self.next_group += 1;
        let group = GroupId(self.next_group);
        self.group_sizes.insert(group, 0);
        group
    }

    /// Queue an operation.
    pub(crate) fn push(&mut self, op: DiskOp, purpose: Purpose) -> IoId {
        self.next_io += 1;
        let io = IoId(self.next_io);
        if let Purpose::Group(group) = purpose {
            *self.group_sizes.entry(group).or_insert(0) += 1;
        }
        self.in_flight.insert(io, purpose);
        match &op {
            DiskOp::Sync { file } if file.as_str().starts_with(LOG_DIR_PREFIX) => {
                let base =
                    file.as_str().get(LOG_DIR_PREFIX.len()..).and_then(super::paths::parse_offset_name);
                self.log_syncs.insert(io, Some(base.unwrap_or(0)));
            }
            DiskOp::SyncAll => {
                self.log_syncs.insert(io, None);
            }
            _ => {}
        }
        self.outputs.push_back(Output::Disk { io, op });
        io
    }

    /// If `io` (in flight) syncs CommitLog data: the segment it covers (`None`: all files).
    pub(crate) fn log_sync(&self, io: IoId) -> Option<Option<u64>> {
        self.log_syncs.get(&io).copied()
    }

    /// Drop the operations not yet handed to the runtime, as if never issued (the store is
    /// being rebuilt); the ones in flight still complete.
    pub(crate) fn cancel_unissued(&mut self) {
        for output in self.outputs.drain(..) {
            if let Output::Disk { io, .. } = output {
                self.in_flight.remove(&io);
                self.log_syncs.remove(&io);
            }
        }
    }

    /// Queue a non-disk output (fatal stop).
    pub(crate) fn push_output(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Whether a group has nothing pending (an empty group counts as done).
    pub(crate) fn group_is_empty(&self, group: GroupId) -> bool {
        self.group_sizes.get(&group).is_none_or(|n| *n == 0)
    }

    /// Forget a finished group.
    pub(crate) fn close_group(&mut self, group: GroupId) {
        self.group_sizes.remove(&group);
    }

    /// Record a completion. One of an operation never issued (or completed twice) is a
    /// bug of the runtime or of the store: a repair swaps stores only once nothing is in
    /// flight, and metadata operations are numbered apart. Asserted, as the store's sense of
    /// what is written and durable would be wrong from then on.
    pub(crate) fn complete(&mut self, io: IoId) -> Completed {
        self.log_syncs.remove(&io);
        match self.in_flight.remove(&io) {
            None => panic!("completion of disk operation {io:?}, which is not in flight"),
            Some(Purpose::LogWrite { end }) => Completed::LogWritten { end },
            Some(Purpose::CqWrite { slot, upto }) => Completed::CqWritten { slot, upto },
            Some(Purpose::IndexWrite { file, upto }) => Completed::IndexWritten { file, upto },
            Some(Purpose::Plain) => Completed::Nothing,
            Some(Purpose::Group(group)) => {
                let left = self.group_sizes.get_mut(&group).map(|n| {
                    *n = n.saturating_sub(1);
                    *n
                });
                if left == Some(0) {
                    Completed::GroupDone(group)
                } else {
                    Completed::Nothing
                }
            }
        }
    }

    /// The next output to carry out.
    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether outputs are waiting to be polled.
    pub(crate) fn has_outputs(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Operations issued and not yet completed.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::FilePath;

    fn sync() -> DiskOp {
        DiskOp::Sync { file: FilePath::new("f").unwrap() }
    }

    #[test]
    fn a_group_completes_with_its_last_operation() {
        let mut ops = OpQueue::default();
        let group = ops.new_group();
        assert!(ops.group_is_empty(group));
        let a = ops.push(sync(), Purpose::Group(group));
        let b = ops.push(sync(), Purpose::Group(group));
        let w = ops.push(sync(), Purpose::LogWrite { end: 10 });
        assert_eq!(ops.in_flight(), 3);
        assert_eq!(ops.complete(b), Completed::Nothing);
        assert_eq!(ops.complete(w), Completed::LogWritten { end: 10 });
        assert_eq!(ops.complete(a), Completed::GroupDone(group));
        assert!(ops.pop().is_some());
    }

    #[test]
    #[should_panic(expected = "which is not in flight")]
    fn a_completion_of_an_operation_not_in_flight_is_a_bug() {
        let mut ops = OpQueue::default();
        let a = ops.push(sync(), Purpose::Plain);
        ops.complete(a);
        ops.complete(a);
    }
}
