//! Lite pull consumers (`DefaultLitePullConsumer`): the application polls instead of
//! registering a listener.
//!
//! Queues come from the group's rebalance (`subscribe`) or from the application
//! ([`Client::assign`]); either way they are pulled in the background like a push
//! consumer's, into the same per-queue [`ProcessQueue`]s and flow limits, plus a limit over
//! all queues (`pullThresholdForAll`). Pulled messages wait in a ready list until polled.
//!
//! What a poll hands out stays unfinished, holding its queue's committed offset back, until
//! the application shows it is done with it: with `autoCommit`, by polling again (or
//! stopping); without, by calling [`Client::commit`]. So a crash between a poll and the
//! processing of what it returned redelivers those messages (at-least-once), where
//! RocketMQ counts them as consumed at the poll itself.
//!
//! [`ProcessQueue`]: super::ProcessQueue

use std::collections::{BTreeSet, VecDeque};

use super::machine::{Client, ClientEvent};
use super::push_consumer::{OwnedQueue, QueueStage};
use crate::io::Now;
use crate::protocol::body::{MessageQueue, SubscriptionData};
use crate::protocol::message::stored::StoredMessage;

/// A pulled message of an owned queue, under its ownership epoch.
type Held = (MessageQueue, u64, StoredMessage);

/// Why a lite pull consumer refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LitePullError {
    /// No lite pull consumer of that group runs here.
    #[error("no lite pull consumer of group {0}")]
    NoConsumer(String),
    /// The queue is not (or not yet) this consumer's.
    #[error("queue {0} is not assigned to this consumer")]
    NotAssigned(String),
}

/// A lite pull consumer's own state, beside what it shares with push consumers.
#[derive(Debug, Default)]
pub(crate) struct LitePullState {
    /// Queues the application assigned; `None` while the group's rebalance decides.
    pub(super) assigned: Option<BTreeSet<MessageQueue>>,
    /// Pulled and not yet polled, in arrival order.
    ready: VecDeque<Held>,
    /// Polled and not yet finished.
    polled: Vec<Held>,
    /// Queues whose pulling the application paused.
    paused: BTreeSet<MessageQueue>,
}

impl LitePullState {
    /// Whether pulling `queue` waits: paused by the application, or too much cached over
    /// all queues.
    pub(super) fn holds_back(&self, queue: &MessageQueue, cached_total: usize, max_all: usize) -> bool {
        self.paused.contains(queue) || cached_total >= max_all
    }
}

impl Client {
    /// Take up to `max` pulled messages of lite pull consumer `group`, oldest first; empty
    /// if none is ready (the runtime waits for [`ClientEvent::Ready`]). With `autoCommit`,
    /// what the previous poll returned is finished first.
    pub fn poll(&mut self, _now: Now, group: &str, max: usize) -> Result<Vec<StoredMessage>, LitePullError> {
        let consumer = self.lite_consumer(group)?;
        if consumer.config.auto_commit {
            self.finish_polled(group);
        }
        let Some(consumer) = self.consumers.get_mut(group) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let mut paused = Vec::new();
        while out.len() < max {
            let Some((queue, epoch, message)) = consumer.lite.ready.pop_front() else { break };
            // Messages of a queue given up or sought elsewhere since they were pulled.
            let live = consumer.owned.get(&queue).is_some_and(|q| q.epoch == epoch && !q.pq.dropped);
            if !live {
                continue;
            }
            // A pull in flight when the queue was paused may still bring messages: they
            // wait for the resume.
            if consumer.lite.paused.contains(&queue) {
                paused.push((queue, epoch, message));
                continue;
            }
            out.push(message.clone());
            consumer.lite.polled.push((queue, epoch, message));
        }
        for held in paused.into_iter().rev() {
            consumer.lite.ready.push_front(held);
        }
        Ok(out)
    }

    /// The runtime could not hand over what the last poll returned (its caller left): put
    /// it back in front, unfinished, for the next poll.
    pub fn unpoll(&mut self, group: &str, count: usize) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let lite = &mut consumer.lite;
        let keep = lite.polled.len().saturating_sub(count);
        for held in lite.polled.drain(keep..).rev() {
            lite.ready.push_front(held);
        }
    }

    /// Finish everything polled so far and commit the group's changed offsets now
    /// (`commitSync`).
    pub fn commit(&mut self, now: Now, group: &str) -> Result<(), LitePullError> {
        self.lite_consumer(group)?;
        self.finish_polled(group);
        self.commit_offsets(now, group, false);
        Ok(())
    }

    /// Read exactly `queues` from now on instead of taking part in the group's rebalance
    /// (`assign`); their topics are read whole (`*`).
    pub fn assign(&mut self, now: Now, group: &str, queues: Vec<MessageQueue>) -> Result<(), LitePullError> {
        let consumer = self.lite_consumer_mut(group)?;
        let assigned: BTreeSet<MessageQueue> = queues.into_iter().collect();
        let topics: BTreeSet<String> = assigned.iter().map(|q| q.topic.clone()).collect();
        let mut affected: BTreeSet<String> = consumer.subscriptions.keys().cloned().collect();
        affected.extend(topics.iter().cloned());
        consumer.subscriptions.retain(|topic, _| topics.contains(topic));
        for topic in &topics {
            if !consumer.subscriptions.contains_key(topic) {
                let subscription = SubscriptionData::from_expression(topic, "*", now.wall.0);
                consumer.subscriptions.insert(topic.clone(), subscription);
            }
        }
        consumer.lite.assigned = Some(assigned);
        for topic in &affected {
            self.rebalance_topic(now, group, topic);
        }
        self.heartbeat_all(now);
        Ok(())
    }

    /// Read `queue` from `offset` next (`seek`): what was pulled or polled of it and not
    /// finished is dropped, and the offset to commit becomes `offset`.
    pub fn seek(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), LitePullError> {
        let consumer = self.lite_consumer_mut(group)?;
        let Some(old) = consumer.owned.get_mut(queue) else {
            return Err(LitePullError::NotAssigned(queue.to_string()));
        };
        // A new ownership epoch: answers to the old one's pulls and queries are ignored.
        old.pq.dropped = true;
        consumer.next_epoch += 1;
        let mut fresh = OwnedQueue::new(consumer.next_epoch, QueueStage::Pulling);
        fresh.next_offset = offset;
        fresh.next_pull = Some(now.mono);
        consumer.owned.insert(queue.clone(), fresh);
        consumer.lite.ready.retain(|(q, ..)| q != queue);
        consumer.lite.polled.retain(|(q, ..)| q != queue);
        consumer.offsets.update(queue, offset, false);
        Ok(())
    }

    /// Stop pulling `queues` and returning their messages until [`resume`](Self::resume).
    pub fn pause(&mut self, group: &str, queues: &[MessageQueue]) -> Result<(), LitePullError> {
        self.lite_consumer_mut(group)?.lite.paused.extend(queues.iter().cloned());
        Ok(())
    }

    /// Pull `queues` again.
    pub fn resume(&mut self, group: &str, queues: &[MessageQueue]) -> Result<(), LitePullError> {
        let lite = &mut self.lite_consumer_mut(group)?.lite;
        for queue in queues {
            lite.paused.remove(queue);
        }
        Ok(())
    }

    /// The queues `group` reads now (rebalanced or assigned, and started).
    #[must_use]
    pub fn assignment(&self, group: &str) -> Vec<MessageQueue> {
        self.consumers.get(group).map(|c| c.owned.keys().cloned().collect()).unwrap_or_default()
    }

    /// Pulled messages of a lite pull consumer wait for a poll.
    pub(super) fn hold_for_poll(
        &mut self,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        messages: Vec<StoredMessage>,
    ) {
        if messages.is_empty() {
            return;
        }
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        consumer.lite.ready.extend(messages.into_iter().map(|m| (queue.clone(), epoch, m)));
        self.events.push_back(ClientEvent::Ready { group: group.to_owned() });
    }

    /// Everything polled is finished: the committed offset may move past it.
    pub(super) fn finish_polled(&mut self, group: &str) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let polled = core::mem::take(&mut consumer.lite.polled);
        for (queue, epoch, message) in polled {
            self.finish(group, &queue, epoch, core::slice::from_ref(&message));
        }
    }

    fn lite_consumer(&self, group: &str) -> Result<&super::push_consumer::ConsumerState, LitePullError> {
        self.consumers
            .get(group)
            .filter(|c| c.config.is_lite_pull() && !c.stopped)
            .ok_or_else(|| LitePullError::NoConsumer(group.to_owned()))
    }

    fn lite_consumer_mut(
        &mut self,
        group: &str,
    ) -> Result<&mut super::push_consumer::ConsumerState, LitePullError> {
        self.consumers
            .get_mut(group)
            .filter(|c| c.config.is_lite_pull() && !c.stopped)
            .ok_or_else(|| LitePullError::NoConsumer(group.to_owned()))
    }
}
