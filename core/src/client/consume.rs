//! Pulling, delivering and the listener's results (`PullAPIWrapper`,
//! `ConsumeMessageConcurrentlyService`, `ConsumeMessageOrderlyService`).
//!
//! Each owned queue has at most one pull in flight; the broker holds it until messages
//! arrive. Pulled messages wait in the queue's [`ProcessQueue`]:
//! - concurrently consumed ones are all delivered at once; a failed one is sent back to the
//!   broker for a later retry, and only when the broker has it does it stop holding the
//!   queue's committed offset back (if the send-back fails it is delivered again locally);
//! - orderly ones are delivered one batch at a time, only under a live lock; a failed batch
//!   is put back in front and delivered again after a pause, and past the retry limit goes
//!   to the dead-letter queue before the queue moves on.

use super::consumer_config::MessageModel;
use super::machine::{Client, ClientEvent, DeliveryId};
use super::push_consumer::{ConsumerCall, ConsumerState, Delivery, QueueStage, RETRY_PREFIX};
use super::transport::CallError;
use crate::io::{MonoNanos, Now};
use crate::protocol::body::MessageQueue;
use crate::protocol::client_requests::{
    send_message_back, PULL_FLAG_COMMIT_OFFSET, PULL_FLAG_SUBSCRIPTION, PULL_FLAG_SUSPEND,
};
use crate::protocol::headers::{CommandHeader, PullMessageRequestHeader, PullMessageResponseHeader};
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{decode_records, StoredMessage};
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Pause after a failed pull (`pullTimeDelayMillsWhenException`).
const PULL_ERROR_DELAY_MS: u64 = 3_000;
/// Pause while flow control holds a queue.
const FLOW_DELAY_MS: u64 = 50;
/// Pause before a message whose send-back failed is delivered again.
const LOCAL_RETRY_MS: u64 = 5_000;

/// What the listener made of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Consumed.
    Success,
    /// Failed: retry later (concurrent: through the broker's retry topic; orderly: the
    /// queue pauses and the same messages come again first).
    Later,
}

impl Client {
    /// The listener's answer to a delivery.
    pub fn consumed(&mut self, now: Now, id: DeliveryId, result: ConsumeResult) {
        if self.consumed_directly(now, id, result) {
            return;
        }
        let Some(delivery) = self.consumers.values_mut().find_map(|c| c.deliveries.remove(&id)) else {
            // Answered after its consume timeout: it was already sent back.
            return;
        };
        let cost_ms = now.mono.millis_since(delivery.started);
        self.trace_consumed(
            now,
            &delivery.group,
            &delivery.messages,
            cost_ms,
            result == ConsumeResult::Success,
        );
        let Some(consumer) = self.consumers.get(&delivery.group) else { return };
        let (orderly, clustering) =
            (consumer.config.orderly, consumer.config.model == MessageModel::Clustering);
        if orderly {
            return self.orderly_result(now, delivery, result);
        }
        match result {
            ConsumeResult::Success => {
                self.finish(&delivery.group, &delivery.queue, delivery.epoch, &delivery.messages)
            }
            ConsumeResult::Later if !clustering => {
                // Broadcasting drops failed messages (RocketMQ logs them).
                tracing::warn!(
                    group = delivery.group,
                    count = delivery.messages.len(),
                    "broadcast messages failed; dropped"
                );
                self.finish(&delivery.group, &delivery.queue, delivery.epoch, &delivery.messages);
            }
            ConsumeResult::Later => {
                for message in delivery.messages {
                    self.send_back(now, &delivery.group, &delivery.queue, delivery.epoch, message, false);
                }
            }
        }
    }

    /// Concurrent: these messages are done; the offset may move past them.
    pub(super) fn finish(
        &mut self,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        messages: &[StoredMessage],
    ) {
        let offsets: Vec<i64> = messages.iter().map(|m| m.head.queue_offset).collect();
        let Some(owned) = self.owned_mut(group, queue, epoch) else { return };
        let Some(commit) = owned.pq.finish(&offsets) else { return };
        if let Some(consumer) = self.consumers.get_mut(group) {
            consumer.offsets.update(queue, commit, true);
        }
    }

    fn send_back(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        message: StoredMessage,
        orderly: bool,
    ) {
        let Some(consumer) = self.consumers.get(group) else { return };
        // Orderly: past its local retries the message goes straight to the DLQ.
        let (level, max) = if orderly {
            (-1, consumer.config.max_reconsume())
        } else {
            (0, consumer.config.max_reconsume())
        };
        let call = ConsumerCall::SendBack {
            group: group.to_owned(),
            queue: queue.clone(),
            epoch,
            message: Box::new(message.clone()),
            orderly,
        };
        let Some(addr) = self.queue_addr(queue) else {
            return self.on_sent_back(now, group, queue, epoch, message, orderly, false);
        };
        let mut request = send_message_back(0, group, message.head.physical_offset, level, max);
        if let Some(id) = properties::find(&message.properties, keys::UNIQ_KEY) {
            request.ext_fields.insert("originMsgId", String::from_utf8_lossy(id));
        }
        request.ext_fields.insert("originTopic", message.topic.clone());
        self.consumer_call(now, addr, request, call);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_sent_back(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        mut message: StoredMessage,
        orderly: bool,
        ok: bool,
    ) {
        if orderly {
            let Some(owned) = self.owned_mut(group, queue, epoch) else { return };
            owned.dead_letters.0 = owned.dead_letters.0.saturating_sub(1);
            owned.dead_letters.1 |= !ok;
            if owned.dead_letters.0 > 0 {
                return;
            }
            let failed = core::mem::take(&mut owned.dead_letters.1);
            return self.orderly_done(now, group, queue, epoch, !failed);
        }
        if ok {
            return self.finish(group, queue, epoch, core::slice::from_ref(&message));
        }
        // The broker did not take it: deliver it again here after a pause; it keeps
        // holding the offset back meanwhile.
        message.head.reconsume_times = message.head.reconsume_times.saturating_add(1);
        if let Some(consumer) = self.consumers.get_mut(group) {
            consumer.later.push((now.mono.plus_millis(LOCAL_RETRY_MS), queue.clone(), epoch, message));
        }
    }

    fn orderly_result(&mut self, now: Now, delivery: Delivery, result: ConsumeResult) {
        let Delivery { group, queue, epoch, messages, .. } = delivery;
        if result == ConsumeResult::Success {
            return self.orderly_done(now, &group, &queue, epoch, true);
        }
        let max = self.consumers.get(&group).map_or(i32::MAX, |c| c.config.max_reconsume());
        if messages.iter().all(|m| m.head.reconsume_times < max) {
            return self.orderly_done(now, &group, &queue, epoch, false);
        }
        let Some(owned) = self.owned_mut(&group, &queue, epoch) else { return };
        owned.dead_letters = (messages.len(), false);
        for message in messages {
            self.send_back(now, &group, &queue, epoch, message, true);
        }
    }

    /// Orderly: the taken batch is finished (`committed`) or goes back in front to be
    /// retried after a pause.
    fn orderly_done(&mut self, now: Now, group: &str, queue: &MessageQueue, epoch: u64, committed: bool) {
        let suspend_ms = self.consumers.get(group).map_or(1_000, |c| c.config.suspend_ms);
        let Some(owned) = self.owned_mut(group, queue, epoch) else { return };
        owned.consuming = false;
        if committed {
            if let Some(offset) = owned.pq.commit_taken() {
                if let Some(consumer) = self.consumers.get_mut(group) {
                    consumer.offsets.update(queue, offset, false);
                }
            }
            self.deliver_orderly(now, group, queue);
        } else {
            owned.pq.return_taken();
            owned.resume_at = Some(now.mono.plus_millis(suspend_ms));
        }
    }

    /// Orderly: hand the next batch of `queue` to the listener, if it may have one.
    pub(super) fn deliver_orderly(&mut self, now: Now, group: &str, queue: &MessageQueue) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let batch = consumer.config.consume_batch_size.max(1);
        let needs_lock = consumer.needs_locks();
        let Some(owned) = consumer.owned.get_mut(queue) else { return };
        if owned.pq.dropped || owned.consuming || owned.resume_at.is_some_and(|at| now.mono < at) {
            return;
        }
        if needs_lock && !owned.locked(now.mono) {
            return;
        }
        owned.resume_at = None;
        let messages = owned.pq.take(batch);
        if messages.is_empty() {
            return;
        }
        owned.consuming = true;
        let epoch = owned.epoch;
        self.deliver(now, group, queue, epoch, messages);
    }

    fn deliver(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        messages: Vec<StoredMessage>,
    ) {
        self.next_delivery += 1;
        let id = DeliveryId(self.next_delivery);
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let delivery = Delivery {
            group: group.to_owned(),
            queue: queue.clone(),
            epoch,
            messages: messages.clone(),
            started: now.mono,
        };
        consumer.deliveries.insert(id, delivery);
        let messages = messages.into_iter().map(restore_topic).collect();
        self.events.push_back(ClientEvent::Deliver {
            id,
            group: group.to_owned(),
            queue: queue.clone(),
            messages,
        });
    }

    /// `consumeTimeout`: a delivery the listener has held too long is given up and sent
    /// back for a later retry, as if it had failed; its late answer is then ignored.
    fn expire_deliveries(&mut self, now: Now, group: &str) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let mut expired = Vec::new();
        while let Some(at) = consumer.consume_timeout_at() {
            if now.mono < at {
                break;
            }
            let Some((_, delivery)) = consumer.deliveries.pop_first() else { break };
            expired.push(delivery);
        }
        for delivery in expired {
            tracing::warn!(group, queue = %delivery.queue, count = delivery.messages.len(), "consume timeout; sending back");
            for message in delivery.messages {
                self.send_back(now, group, &delivery.queue, delivery.epoch, message, false);
            }
        }
    }

    fn pull(&mut self, now: Now, group: &str, queue: &MessageQueue) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let (limits, orderly, needs_lock) =
            (consumer.config.flow, consumer.config.orderly, consumer.needs_locks());
        // A lite pull consumer commits only as its application says (`autoCommit` or a
        // commit call), never piggy-backed on a pull.
        let clustering = consumer.config.model == MessageModel::Clustering && !consumer.config.is_lite_pull();
        let commit = consumer.offsets.get(queue).filter(|_| clustering);
        let subscription = consumer.subscriptions.get(&queue.topic).cloned();
        let (batch, hold_ms) = (consumer.config.pull_batch_size, consumer.config.pull_hold_ms);
        let held_back =
            consumer.lite.holds_back(queue, consumer.cached_total(), consumer.config.max_cached_all);
        let Some(owned) = consumer.owned.get_mut(queue) else { return };
        owned.next_pull = None;
        if let Some(pause) = owned.pq.pause(&limits, orderly) {
            tracing::trace!(group, queue = %queue, ?pause, "flow control");
            owned.next_pull = Some(now.mono.plus_millis(FLOW_DELAY_MS));
            return;
        }
        if held_back {
            owned.next_pull = Some(now.mono.plus_millis(FLOW_DELAY_MS));
            return;
        }
        if needs_lock && !owned.locked(now.mono) {
            owned.next_pull = Some(now.mono.plus_millis(PULL_ERROR_DELAY_MS));
            return;
        }
        let (epoch, offset, pull_from) = (owned.epoch, owned.next_offset, owned.pull_from);
        owned.pull_in_flight = true;
        let Some(addr) = self.read_addr(queue, pull_from) else {
            return self.on_pulled(now, group, queue, epoch, Err(CallError::Closed));
        };
        let subscription = subscription.unwrap_or_default();
        let mut sys_flag = PULL_FLAG_SUSPEND | PULL_FLAG_SUBSCRIPTION;
        // A slave keeps no offsets a pull carries (RocketMQ clears the flag for it too).
        if commit.is_some() && self.queue_addr(queue) == Some(addr) {
            sys_flag |= PULL_FLAG_COMMIT_OFFSET;
        }
        let header = PullMessageRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: offset,
            max_msg_nums: batch,
            sys_flag,
            commit_offset: commit.unwrap_or(0),
            suspend_timeout_millis: i64::try_from(hold_ms).unwrap_or(i64::MAX),
            subscription: Some(subscription.sub_string.clone()),
            sub_version: subscription.sub_version,
            expression_type: Some("TAG".into()),
            ..PullMessageRequestHeader::default()
        };
        let request = RemotingCommand::request(RequestCode::PULL_MESSAGE, 0, header.to_ext_fields());
        let call = ConsumerCall::Pull { group: group.to_owned(), queue: queue.clone(), epoch };
        self.consumer_call(now, addr, request, call);
    }

    pub(super) fn on_pulled(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        response: Result<&RemotingCommand, CallError>,
    ) {
        let tags = self
            .consumers
            .get(group)
            .and_then(|c| c.subscriptions.get(&queue.topic))
            .map(|s| s.tags_set.clone());
        let Some(owned) = self.owned_mut(group, queue, epoch) else { return };
        owned.pull_in_flight = false;
        let (code, header) = match response {
            Ok(r) => (r.response_code(), PullMessageResponseHeader::decode(&r.ext_fields).ok()),
            Err(error) => {
                tracing::debug!(group, queue = %queue, %error, "pull failed");
                owned.next_pull = Some(now.mono.plus_millis(PULL_ERROR_DELAY_MS));
                return;
            }
        };
        let Some(header) = header else {
            owned.next_pull = Some(now.mono.plus_millis(PULL_ERROR_DELAY_MS));
            return;
        };
        owned.pull_from = header.suggest_which_broker_id;
        match code {
            ResponseCode::SUCCESS => {
                let body = response.map(|r| r.body.clone()).unwrap_or_default();
                let Ok(records) = decode_records(&body) else {
                    tracing::warn!(group, queue = %queue, "undecodable pull reply; pulling again");
                    owned.next_pull = Some(now.mono.plus_millis(PULL_ERROR_DELAY_MS));
                    return;
                };
                owned.next_offset = header.next_begin_offset;
                owned.next_pull = Some(now.mono);
                // The broker filters by tag hash; the tag itself is checked here.
                let wanted: Vec<StoredMessage> = records
                    .into_iter()
                    .filter(|m| {
                        let Some(tags) = &tags else { return true };
                        tags.is_empty()
                            || properties::find(&m.properties, keys::TAGS)
                                .is_some_and(|t| tags.iter().any(|w| w.as_bytes() == t))
                    })
                    .collect();
                self.accept_pulled(now, group, queue, epoch, wanted);
            }
            ResponseCode::PULL_NOT_FOUND | ResponseCode::PULL_RETRY_IMMEDIATELY => {
                owned.next_offset = header.next_begin_offset;
                owned.next_pull = Some(now.mono);
            }
            ResponseCode::PULL_OFFSET_MOVED => {
                tracing::warn!(group, queue = %queue, from = owned.next_offset, to = header.next_begin_offset, "offset moved; restarting the queue");
                let next = header.next_begin_offset;
                owned.pq.dropped = true;
                if let Some(consumer) = self.consumers.get_mut(group) {
                    consumer.owned.remove(queue);
                    consumer.offsets.update(queue, next, false);
                }
                self.rebalance_soon(now, group);
            }
            _ => owned.next_pull = Some(now.mono.plus_millis(PULL_ERROR_DELAY_MS)),
        }
    }

    fn accept_pulled(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        messages: Vec<StoredMessage>,
    ) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let (orderly, batch) = (consumer.config.orderly, consumer.config.consume_batch_size.max(1));
        let Some(owned) = consumer.owned.get_mut(queue) else { return };
        // A message already cached (pulled again after an offset reset) is not delivered twice.
        let fresh: Vec<StoredMessage> = messages.into_iter().filter(|m| owned.pq.insert(m.clone())).collect();
        if orderly {
            return self.deliver_orderly(now, group, queue);
        }
        if consumer.config.is_lite_pull() {
            return self.hold_for_poll(group, queue, epoch, fresh);
        }
        for chunk in fresh.chunks(batch) {
            self.deliver(now, group, queue, epoch, chunk.to_vec());
        }
    }

    /// Due pulls, re-deliveries, resumed orderly queues and timed-out deliveries of `group`.
    pub(super) fn consume_timers(&mut self, now: Now, group: &str) {
        self.expire_deliveries(now, group);
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let due_pulls: Vec<MessageQueue> = consumer
            .owned
            .iter()
            .filter(|(_, q)| {
                q.stage == QueueStage::Pulling
                    && !q.pull_in_flight
                    && q.next_pull.is_some_and(|at| now.mono >= at)
            })
            .map(|(mq, _)| mq.clone())
            .collect();
        let resumed: Vec<MessageQueue> = consumer
            .owned
            .iter()
            .filter(|(_, q)| q.resume_at.is_some_and(|at| now.mono >= at))
            .map(|(mq, _)| mq.clone())
            .collect();
        let (due, waiting): (Vec<_>, Vec<_>) =
            core::mem::take(&mut consumer.later).into_iter().partition(|(at, ..)| now.mono >= *at);
        consumer.later = waiting;
        for queue in due_pulls {
            self.pull(now, group, &queue);
        }
        for queue in resumed {
            if let Some(owned) = self.consumers.get_mut(group).and_then(|c| c.owned.get_mut(&queue)) {
                owned.resume_at = None;
            }
            self.deliver_orderly(now, group, &queue);
        }
        for (_, queue, epoch, message) in due {
            if self.owned_mut(group, &queue, epoch).is_some() {
                self.deliver(now, group, &queue, epoch, vec![message]);
            }
        }
    }
}

impl ConsumerState {
    /// Messages cached over all owned queues (`pullThresholdForAll`).
    pub(super) fn cached_total(&self) -> usize {
        self.owned.values().map(|q| q.pq.len()).sum()
    }

    /// When the oldest unanswered concurrent delivery times out, if it can.
    pub(super) fn consume_timeout_at(&self) -> Option<MonoNanos> {
        if !self.times_out_deliveries() {
            return None;
        }
        let (_, oldest) = self.deliveries.first_key_value()?;
        Some(oldest.started.plus_millis(self.config.consume_timeout_ms))
    }

    /// Only concurrent clustering deliveries time out: orderly ones hold their queue's
    /// lock (RocketMQ does not expire them either) and broadcast ones are never retried.
    fn times_out_deliveries(&self) -> bool {
        !self.config.orderly && self.clustering() && !self.config.is_lite_pull()
    }
}

/// A retried message is shown under its original topic (`RETRY_TOPIC`).
fn restore_topic(mut message: StoredMessage) -> StoredMessage {
    if message.topic.starts_with(RETRY_PREFIX) {
        if let Some(original) = properties::find(&message.properties, keys::RETRY_TOPIC) {
            message.topic = String::from_utf8_lossy(original).into_owned();
        }
    }
    message
}
