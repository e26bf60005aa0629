//! Carries out a state machine's disk operations against a [`SimDisk`] in the order they were
//! emitted, a few at a time, so a test or the simulator can crash between any two of them.

use std::collections::VecDeque;

use keel_core::io::{DiskError, DiskOp, IoId};
use rand::Rng;

use crate::sim_disk::SimDisk;

/// Operations emitted and not yet carried out.
#[derive(Debug, Default)]
pub struct DiskQueue {
    pending: VecDeque<(IoId, DiskOp)>,
}

impl DiskQueue {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue an operation behind the ones already queued.
    pub fn push(&mut self, io: IoId, op: DiskOp) {
        self.pending.push_back((io, op));
    }

    /// Operations waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest operation, which `run_one` would carry out next.
    #[must_use]
    pub fn peek(&self) -> Option<&DiskOp> {
        self.pending.front().map(|(_, op)| op)
    }

    /// Every operation waiting, oldest first.
    pub fn pending_ops(&self) -> impl Iterator<Item = &DiskOp> {
        self.pending.iter().map(|(_, op)| op)
    }

    /// Carry out the oldest operation; returns its completion.
    pub fn run_one(
        &mut self,
        disk: &mut SimDisk,
        rng: &mut impl Rng,
    ) -> Option<(IoId, Result<(), DiskError>)> {
        let (io, op) = self.pending.pop_front()?;
        Some((io, disk.execute(&op, rng)))
    }

    /// Forget everything queued (the process died before carrying it out).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}
