//! The lite pull consumer's handle ([`LitePullConsumer`]) and the driver's side of its
//! polls: a poll that finds nothing ready waits in the driver until messages arrive or
//! its timeout passes. The driver owns the timeout, so a poll's messages are either handed
//! to a caller still waiting or put back for the next poll, never lost in between.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use keel_core::client::{Client, LitePullError};
use keel_core::io::{MonoNanos, Now};
use keel_core::protocol::body::MessageQueue;
use keel_core::protocol::message::stored::StoredMessage;
use tokio::sync::{mpsc, oneshot};

use super::driver::Command;
use super::ClientError;

/// What a lite pull consumer asks of the driver beside polls.
#[derive(Debug)]
pub(super) enum LiteOp {
    Commit,
    Assign(Vec<MessageQueue>),
    Seek(MessageQueue, i64),
    Pause(Vec<MessageQueue>),
    Resume(Vec<MessageQueue>),
}

impl LiteOp {
    pub(super) fn apply(self, client: &mut Client, now: Now, group: &str) -> Result<(), LitePullError> {
        match self {
            Self::Commit => client.commit(now, group),
            Self::Assign(queues) => client.assign(now, group, queues),
            Self::Seek(queue, offset) => client.seek(now, group, &queue, offset),
            Self::Pause(queues) => client.pause(group, &queues),
            Self::Resume(queues) => client.resume(group, &queues),
        }
    }
}

/// A poll's answer.
pub(super) type PollReply = oneshot::Sender<Result<Vec<StoredMessage>, LitePullError>>;

/// A poll waiting for messages.
#[derive(Debug)]
struct Waiter {
    max: usize,
    deadline: MonoNanos,
    reply: PollReply,
}

/// Polls waiting for messages, per group, first come first served.
#[derive(Debug, Default)]
pub(super) struct PollWaiters {
    by_group: BTreeMap<String, VecDeque<Waiter>>,
}

impl PollWaiters {
    /// A poll arrived: answer it now if anything is ready (or the consumer is unknown),
    /// else keep it until `deadline`.
    pub(super) fn poll(
        &mut self,
        client: &mut Client,
        now: Now,
        group: String,
        max: usize,
        deadline: MonoNanos,
        reply: PollReply,
    ) {
        let waiting = self.by_group.entry(group.clone()).or_default();
        if waiting.is_empty() {
            match client.poll(now, &group, max) {
                Ok(messages) if messages.is_empty() && now.mono < deadline => {}
                answer => return hand_over(client, &group, answer, reply),
            }
        }
        waiting.push_back(Waiter { max, deadline, reply });
    }

    /// Serve waiting polls from what is ready, and answer those past their deadline empty.
    pub(super) fn serve(&mut self, client: &mut Client, now: Now) {
        for (group, waiting) in &mut self.by_group {
            while let Some(waiter) = waiting.pop_front() {
                if waiter.reply.is_closed() {
                    continue;
                }
                let answer = client.poll(now, group, waiter.max);
                if matches!(&answer, Ok(m) if m.is_empty()) && now.mono < waiter.deadline {
                    waiting.push_front(waiter);
                    break;
                }
                hand_over(client, group, answer, waiter.reply);
            }
        }
        self.by_group.retain(|_, waiting| !waiting.is_empty());
    }

    /// The earliest deadline of a waiting poll.
    pub(super) fn deadline(&self) -> Option<MonoNanos> {
        self.by_group.values().flat_map(|w| w.iter().map(|w| w.deadline)).min()
    }

    /// A consumer stopped: its waiting polls end with what is left (nothing).
    pub(super) fn close(&mut self, group: &str) {
        for waiter in self.by_group.remove(group).into_iter().flatten() {
            let _ = waiter.reply.send(Err(LitePullError::NoConsumer(group.to_owned())));
        }
    }
}

/// Give `answer` to the caller; if it stopped waiting, its messages go back for the next
/// poll.
fn hand_over(
    client: &mut Client,
    group: &str,
    answer: Result<Vec<StoredMessage>, LitePullError>,
    reply: PollReply,
) {
    if let Err(Ok(messages)) = reply.send(answer) {
        client.unpoll(group, messages.len());
    }
}

/// A running lite pull consumer (`DefaultLitePullConsumer`): poll for messages, commit,
/// seek, pause and resume queues, or assign queues instead of the group's rebalance.
#[derive(Debug, Clone)]
pub struct LitePullConsumer {
    pub(super) group: String,
    pub(super) commands: mpsc::Sender<Command>,
}

impl LitePullConsumer {
    /// Up to `max` messages, waiting at most `timeout` for the first (`poll`). With
    /// `autoCommit`, calling it again says the previous poll's messages are done.
    pub async fn poll(&self, max: usize, timeout: Duration) -> Result<Vec<StoredMessage>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Poll { group: self.group.clone(), max: max.max(1), timeout, reply };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
        Ok(answer.await.map_err(|_| ClientError::ShutDown)??)
    }

    /// Everything polled is done: commit the offsets now (`commitSync`).
    pub async fn commit(&self) -> Result<(), ClientError> {
        self.call(LiteOp::Commit).await
    }

    /// Read exactly `queues` from now on, outside the group's rebalance (`assign`).
    pub async fn assign(&self, queues: Vec<MessageQueue>) -> Result<(), ClientError> {
        self.call(LiteOp::Assign(queues)).await
    }

    /// Read `queue` from `offset` next (`seek`).
    pub async fn seek(&self, queue: MessageQueue, offset: i64) -> Result<(), ClientError> {
        self.call(LiteOp::Seek(queue, offset)).await
    }

    /// Stop pulling `queues` and returning their messages until [`resume`](Self::resume).
    pub async fn pause(&self, queues: Vec<MessageQueue>) -> Result<(), ClientError> {
        self.call(LiteOp::Pause(queues)).await
    }

    /// Pull `queues` again.
    pub async fn resume(&self, queues: Vec<MessageQueue>) -> Result<(), ClientError> {
        self.call(LiteOp::Resume(queues)).await
    }

    /// The queues this consumer reads now.
    pub async fn assignment(&self) -> Result<Vec<MessageQueue>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Assignment { group: self.group.clone(), reply };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
        answer.await.map_err(|_| ClientError::ShutDown)
    }

    /// Stop: offsets are committed (with `autoCommit`, including the last poll's) and the
    /// group is left.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        let (done, finished) = oneshot::channel();
        let command = Command::StopConsumer { group: self.group.clone(), done };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
        finished.await.map_err(|_| ClientError::ShutDown)
    }

    async fn call(&self, op: LiteOp) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Lite { group: self.group.clone(), op, reply };
        self.commands.send(command).await.map_err(|_| ClientError::ShutDown)?;
        Ok(answer.await.map_err(|_| ClientError::ShutDown)??)
    }
}
