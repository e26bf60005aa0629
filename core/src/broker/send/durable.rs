//! Replies that wait for their data to become durable: a send (or a send back, or a
//! transaction end) is answered only once its record is as safe as the flush mode promises,
//! and in the order the requests came.

use std::collections::VecDeque;

use crate::broker::metadata::MetadataFile;
use crate::io::{ConnId, MonoNanos, Output};
use crate::protocol::{RemotingCommand, ResponseCode};
use crate::store::PhysOffset;

/// A reply waiting for its data to become durable enough.
#[derive(Debug, Clone)]
pub struct PendingReply {
    pub(in crate::broker) conn: ConnId,
    pub(in crate::broker) reply: RemotingCommand,
    /// The log end that must be reached.
    pub(in crate::broker) end: PhysOffset,
    /// Whether it waits for the fsync (else for the write).
    pub(in crate::broker) needs_flush: bool,
    /// Whether the request was oneway (nothing is sent, but order is kept).
    pub(in crate::broker) silent: bool,
    /// When the request arrived: the head's age is the runtime info's queue head wait.
    pub(in crate::broker) since: MonoNanos,
    /// The topic table's change count to wait for (0: none): a send that created its topic
    /// is acknowledged only once `topics.json` holds the topic, or a crash right after the
    /// acknowledgement would leave the message stored under a topic the broker denies.
    pub(in crate::broker) topics_change: u64,
}

/// The line of replies waiting for durability, oldest first.
#[derive(Debug, Default)]
pub struct DurableReplies(VecDeque<PendingReply>);

impl DurableReplies {
    /// How many replies wait.
    #[must_use]
    pub(in crate::broker) fn len(&self) -> usize {
        self.0.len()
    }

    /// Put a reply at the back of the line.
    pub(in crate::broker) fn push(&mut self, reply: PendingReply) {
        self.0.push_back(reply);
    }

    /// When the oldest waiting reply was asked for.
    #[must_use]
    pub fn oldest_since(&self) -> Option<MonoNanos> {
        self.0.front().map(|head| head.since)
    }

    /// Send every reply, in order, whose data is now `written` (or `flushed`, for one that
    /// waits for the fsync) and whose topic, if its send created it, is in `topics.json`.
    pub(in crate::broker) fn release(
        &mut self,
        written: PhysOffset,
        flushed: PhysOffset,
        topics: &MetadataFile,
        out: &mut VecDeque<Output>,
    ) {
        while let Some(front) = self.0.front() {
            let reached = if front.needs_flush { flushed } else { written };
            if front.end > reached || !topics.is_durable_through(front.topics_change) {
                break;
            }
            let Some(pending) = self.0.pop_front() else { break };
            if !pending.silent {
                crate::remoting::send(out, pending.conn, &pending.reply);
            }
        }
    }

    /// Answer every reply whose record reaches past `end`: a repair cut it, so it was never
    /// acknowledged and is not stored. The rest keep waiting. Returns how many failed.
    pub(in crate::broker) fn fail_past(&mut self, end: PhysOffset, out: &mut VecDeque<Output>) -> usize {
        let before = self.0.len();
        self.0.retain(|pending| {
            if pending.end <= end {
                return true;
            }
            if !pending.silent {
                let error = RemotingCommand::response_to(
                    &pending.reply,
                    ResponseCode::SERVICE_NOT_AVAILABLE,
                    Some("not stored: a disk error cut the store's tail; send again".into()),
                );
                crate::remoting::send(out, pending.conn, &error);
            }
            false
        });
        before - self.0.len()
    }
}
