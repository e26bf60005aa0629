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
    /// Whether it then waits for a slave to hold it (a SYNC_MASTER's send), until
    /// `sync_flush_timeout_ms` after `since`.
    pub(in crate::broker) needs_slave: bool,
    /// Whether the request was oneway (nothing is sent, but order is kept).
    pub(in crate::broker) silent: bool,
    /// When the request arrived: the head's age is the runtime info's queue head wait.
    pub(in crate::broker) since: MonoNanos,
    /// The request's code, and when the runtime read it: for the latency metric.
    pub(in crate::broker) request: (i32, MonoNanos),
    /// The topic table's change count to wait for (0: none): a send that created its topic
    /// is acknowledged only once `topics.json` holds the topic, or a crash right after the
    /// acknowledgement would leave the message stored under a topic the broker denies.
    pub(in crate::broker) topics_change: u64,
}

/// What a reply waits for besides its record's write.
#[derive(Debug, Clone, Copy)]
pub(in crate::broker) struct Wait {
    /// The fsync (SYNC_FLUSH, unless the producer asked not to wait).
    pub(in crate::broker) flush: bool,
    /// A slave's copy, on a SYNC_MASTER (unless the producer asked not to wait).
    pub(in crate::broker) slave: bool,
}

/// How far a reply's record may have got: written, fsynced, held by a slave.
#[derive(Debug, Clone, Copy)]
pub(in crate::broker) struct ReleaseEnds {
    /// The log's end written to the page cache.
    pub(in crate::broker) written: PhysOffset,
    /// The log's end fsynced.
    pub(in crate::broker) flushed: PhysOffset,
    /// The newest end a slave reported holding, if a slave streams.
    pub(in crate::broker) slave: Option<PhysOffset>,
    /// Now, and how long a reply may wait for a slave.
    pub(in crate::broker) now: MonoNanos,
    pub(in crate::broker) slave_wait_ms: u64,
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
    /// waits for the fsync), whose topic, if its send created it, is in `topics.json`, and
    /// which a slave holds (`slave`), if it waits for one; one that waited for a slave
    /// past `slave_wait` is answered FLUSH_SLAVE_TIMEOUT (it is stored here).
    pub(in crate::broker) fn release(
        &mut self,
        ends: ReleaseEnds,
        topics: &MetadataFile,
        out: &mut VecDeque<Output>,
        traffic: &mut crate::broker::traffic::Traffic,
    ) {
        while let Some(front) = self.0.front() {
            let reached = if front.needs_flush { ends.flushed } else { ends.written };
            if front.end > reached || !topics.is_durable_through(front.topics_change) {
                break;
            }
            let slave_lacks = front.needs_slave && ends.slave.is_none_or(|held| held < front.end);
            let timed_out = ends.now >= front.since.plus_millis(ends.slave_wait_ms);
            if slave_lacks && !timed_out {
                break;
            }
            let Some(mut pending) = self.0.pop_front() else { break };
            if slave_lacks {
                tracing::debug!(end = pending.end.0, "no slave holds a send in time: FLUSH_SLAVE_TIMEOUT");
                pending.reply.code = ResponseCode::FLUSH_SLAVE_TIMEOUT.0;
            }
            if !pending.silent {
                let (code, received) = pending.request;
                traffic.answered(code, pending.reply.code, false, ends.now.0.saturating_sub(received.0));
                crate::remoting::send(out, pending.conn, &pending.reply);
            }
        }
    }

    /// When the oldest reply, durable here (the log `written` and `flushed` so far), stops
    /// waiting for a slave after `wait_ms`.
    #[must_use]
    pub(in crate::broker) fn slave_deadline(
        &self,
        written: PhysOffset,
        flushed: PhysOffset,
        wait_ms: u64,
    ) -> Option<MonoNanos> {
        let front = self.0.front().filter(|front| front.needs_slave)?;
        let reached = if front.needs_flush { flushed } else { written };
        (front.end <= reached).then(|| front.since.plus_millis(wait_ms))
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
