//! Push consumers (`DefaultMQPushConsumerImpl`, `RebalanceImpl`): which queues a consumer
//! owns, from where it starts on each, its orderly locks and its offset commits. Pulling,
//! delivering and the listener's results are in `consume.rs`.
//!
//! Rebalancing runs every 20 s and at once when a broker says the group changed: each
//! subscribed topic's queues are allocated among the group's client ids (clustering) or all
//! taken (broadcasting). A queue given up commits its offset and (orderly) is unlocked; a
//! queue taken is (orderly) locked first, then starts from the committed offset, or, for a
//! new group, from where the consumer was told to start.

use std::collections::{BTreeMap, BTreeSet};

use core::net::SocketAddr;

use super::allocate::allocate_sorted;
use super::consumer_config::{ConsumeFromWhere, ConsumerConfig, MessageModel};
use super::lite_pull::LitePullState;
use super::machine::{CallTag, Client, ClientEvent, DeliveryId, CALL_TIMEOUT_MS};
use super::offset_store::{OffsetSerializeWrapper, OffsetStore};
use super::process_queue::ProcessQueue;
use super::rebalance::plan;
use super::route::{master_addr, subscribe_queues};
use super::transport::CallError;
use crate::io::{MonoNanos, Now};
use crate::protocol::body::{
    ConsumerData, ConsumerIdList, LockBatchResponseBody, MessageQueue, ResetOffsetBody, SubscriptionData,
};
use crate::protocol::client_requests::lock_batch;
use crate::protocol::headers::{
    CommandHeader, ConsumerGroupHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueueRequestHeader, SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::message::stored::StoredMessage;
use crate::protocol::{RemotingCommand, RequestCode, ResponseCode};

/// Retry topics are named after their group.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// How long a lock is trusted without renewal on the client (the broker's lasts 60 s).
const CLIENT_LOCK_MS: u64 = 30_000;

/// How far an owned queue got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueStage {
    /// Orderly: waiting for the broker lock.
    Locking,
    /// Looking up the start offset.
    Starting,
    /// Pulling.
    Pulling,
}

/// One owned queue.
#[derive(Debug)]
pub(super) struct OwnedQueue {
    pub(super) pq: ProcessQueue,
    /// Tells this ownership from an earlier one of the same queue: late answers for an
    /// earlier one are ignored.
    pub(super) epoch: u64,
    pub(super) stage: QueueStage,
    pub(super) next_offset: i64,
    /// The broker id the last pull reply suggested pulling from (`suggestWhichBrokerId`:
    /// a slave while this consumer lags far behind).
    pub(super) pull_from: i64,
    pub(super) pull_in_flight: bool,
    pub(super) next_pull: Option<MonoNanos>,
    /// Orderly: the lock is trusted until then.
    pub(super) locked_until: Option<MonoNanos>,
    /// Orderly: a delivery is with the listener (or its DLQ sends are in flight).
    pub(super) consuming: bool,
    /// Orderly: suspended until then.
    pub(super) resume_at: Option<MonoNanos>,
    /// Orderly: DLQ sends in flight for the taken messages, and whether one failed.
    pub(super) dead_letters: (usize, bool),
}

impl OwnedQueue {
    /// A queue just taken, under ownership `epoch`.
    pub(super) fn new(epoch: u64, stage: QueueStage) -> Self {
        Self {
            pq: ProcessQueue::new(),
            epoch,
            stage,
            next_offset: 0,
            pull_from: 0,
            pull_in_flight: false,
            next_pull: None,
            locked_until: None,
            consuming: false,
            resume_at: None,
            dead_letters: (0, false),
        }
    }

    pub(super) fn locked(&self, now: MonoNanos) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

/// A delivery waiting for the listener's answer.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    pub(super) group: String,
    pub(super) queue: MessageQueue,
    pub(super) epoch: u64,
    pub(super) messages: Vec<StoredMessage>,
    /// When the listener got it (for `consumeTimeout`).
    pub(super) started: MonoNanos,
}

/// A consumer's call, and what its answer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsumerCall {
    ConsumerList { group: String, topic: String },
    Lock { group: String, queues: Vec<(MessageQueue, u64)> },
    QueryOffset { group: String, queue: MessageQueue, epoch: u64 },
    StartOffset { group: String, queue: MessageQueue, epoch: u64 },
    Pull { group: String, queue: MessageQueue, epoch: u64 },
    SendBack { group: String, queue: MessageQueue, epoch: u64, message: Box<StoredMessage>, orderly: bool },
}

/// One push consumer's state.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    pub(super) config: ConsumerConfig,
    pub(super) subscriptions: BTreeMap<String, SubscriptionData>,
    pub(super) owned: BTreeMap<MessageQueue, OwnedQueue>,
    pub(super) offsets: OffsetStore,
    next_rebalance: MonoNanos,
    next_commit: MonoNanos,
    next_lock: MonoNanos,
    lists_asked: BTreeSet<String>,
    pub(super) next_epoch: u64,
    /// Messages to deliver again later (a failed send-back), by due time.
    pub(super) later: Vec<(MonoNanos, MessageQueue, u64, StoredMessage)>,
    /// Deliveries the listener has not answered yet (ids rise with time, so the first is
    /// the oldest).
    pub(super) deliveries: BTreeMap<DeliveryId, Delivery>,
    /// A lite pull consumer's assignment, polled messages and paused queues.
    pub(super) lite: LitePullState,
    pub(super) stopped: bool,
}

impl ConsumerState {
    fn new(config: ConsumerConfig, now: Now) -> Self {
        let mut subscriptions = BTreeMap::new();
        for (topic, expression) in &config.subscriptions {
            subscriptions
                .insert(topic.clone(), SubscriptionData::from_expression(topic, expression, now.wall.0));
        }
        if config.model == MessageModel::Clustering && !config.is_lite_pull() {
            let retry = format!("{RETRY_PREFIX}{}", config.group);
            subscriptions.insert(retry.clone(), SubscriptionData::from_expression(&retry, "*", now.wall.0));
        }
        let offsets = config
            .local_offsets
            .as_deref()
            .and_then(|bytes| json::from_slice::<OffsetSerializeWrapper>(bytes).ok())
            .map(OffsetStore::from_wrapper)
            .unwrap_or_default();
        Self {
            subscriptions,
            owned: BTreeMap::new(),
            offsets,
            next_rebalance: now.mono,
            next_commit: now.mono.plus_millis(config.commit_interval_ms),
            next_lock: now.mono.plus_millis(config.rebalance_interval_ms),
            lists_asked: BTreeSet::new(),
            next_epoch: 0,
            later: Vec::new(),
            deliveries: BTreeMap::new(),
            lite: LitePullState::default(),
            stopped: false,
            config,
        }
    }

    /// What a heartbeat says about this consumer.
    pub(super) fn heartbeat_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: self.config.from_where.wire_name().into(),
            consume_type: if self.config.is_lite_pull() { "CONSUME_ACTIVELY" } else { "CONSUME_PASSIVELY" }
                .into(),
            group_name: self.config.group.clone(),
            message_model: match self.config.model {
                MessageModel::Clustering => "CLUSTERING",
                MessageModel::Broadcasting => "BROADCASTING",
            }
            .into(),
            subscription_data_set: self.subscriptions.values().cloned().collect(),
            unit_mode: false,
        }
    }

    pub(super) fn clustering(&self) -> bool {
        self.config.model == MessageModel::Clustering
    }

    /// Orderly consumption in clustering mode needs broker locks (broadcasting does not).
    pub(super) fn needs_locks(&self) -> bool {
        self.config.orderly && self.clustering()
    }

    pub(super) fn poll_timeout(&self) -> Option<MonoNanos> {
        if self.stopped {
            return None;
        }
        let queues = self.owned.values().flat_map(|q| [q.next_pull, q.resume_at]).flatten();
        let later = self.later.iter().map(|(at, ..)| *at);
        let lock = self.needs_locks().then_some(self.next_lock);
        [Some(self.next_rebalance), Some(self.next_commit), lock, self.consume_timeout_at()]
            .into_iter()
            .flatten()
            .chain(queues)
            .chain(later)
            .min()
    }
}

impl Client {
    /// Start a consumer: a push consumer's deliveries arrive as [`ClientEvent::Deliver`], a
    /// lite pull consumer's messages wait for [`Client::poll`].
    pub fn start_consumer(&mut self, now: Now, mut config: ConsumerConfig) {
        // Lite pull consumers have no listener to keep a queue's order for.
        config.orderly &= !config.is_lite_pull();
        let group = config.group.clone();
        let state = ConsumerState::new(config, now);
        let topics: Vec<String> = state.subscriptions.keys().cloned().collect();
        self.consumers.insert(group, state);
        for topic in topics {
            let _ = self.route(now, &topic);
        }
        self.heartbeat_all(now);
    }

    /// Stop a consumer: commit what it consumed, release its locks, stop pulling.
    pub fn stop_consumer(&mut self, now: Now, group: &str) {
        if self.consumers.get(group).is_some_and(|c| c.config.is_lite_pull() && c.config.auto_commit) {
            self.finish_polled(group);
        }
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        consumer.stopped = true;
        let queues: Vec<MessageQueue> = consumer.owned.keys().cloned().collect();
        for queue in &queues {
            if let Some(owned) = consumer.owned.get_mut(queue) {
                owned.pq.dropped = true;
            }
        }
        self.commit_offsets(now, group, true);
        self.unlock(now, group, &queues);
        if let Some(consumer) = self.consumers.get_mut(group) {
            consumer.owned.clear();
        }
    }

    /// RESET_CONSUMER_CLIENT_OFFSET: an operator reset the group's progress in a topic
    /// (mqadmin `resetOffsetByTime`). Each queue named restarts from its new offset: what is
    /// in flight there is dropped, and the next rebalance pulls it again from there.
    pub(super) fn on_reset_offset(&mut self, now: Now, request: &RemotingCommand) {
        let (Some(group), Ok(body)) =
            (request.ext_fields.get("group"), json::from_slice::<ResetOffsetBody>(&request.body))
        else {
            tracing::warn!("a RESET_CONSUMER_CLIENT_OFFSET without a group or a readable body; ignored");
            return;
        };
        let group = group.to_owned();
        let Some(consumer) = self.consumers.get_mut(&group) else { return };
        for (queue, &offset) in &body.offset_table {
            if let Some(mut owned) = consumer.owned.remove(queue) {
                owned.pq.dropped = true;
            }
            consumer.offsets.update(queue, offset, false);
        }
        tracing::info!(group, queues = body.offset_table.len(), "consumer offsets reset by the broker");
        self.rebalance_soon(now, &group);
    }

    /// Rebalance `group` at the next timeout (a broker said its members changed).
    pub(super) fn rebalance_soon(&mut self, now: Now, group: &str) {
        if let Some(consumer) = self.consumers.get_mut(group) {
            consumer.next_rebalance = now.mono;
        }
    }

    /// A route arrived: consumers of that topic rebalance it.
    pub(super) fn consumer_route_changed(&mut self, now: Now, topic: &str) {
        let groups: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| !c.stopped && c.subscriptions.contains_key(topic))
            .map(|(g, _)| g.clone())
            .collect();
        for group in groups {
            self.rebalance_topic(now, &group, topic);
        }
    }

    pub(super) fn rebalance_topic(&mut self, now: Now, group: &str, topic: &str) {
        let Some(route) = self.route(now, topic).cloned() else { return };
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let all = subscribe_queues(topic, &route);
        if let Some(assigned) = &consumer.lite.assigned {
            let mine = all.into_iter().filter(|q| assigned.contains(q)).collect();
            return self.apply_allocation(now, group, topic, mine);
        }
        if !consumer.clustering() {
            return self.apply_allocation(now, group, topic, all);
        }
        if !consumer.lists_asked.insert(topic.to_owned()) {
            return;
        }
        let Some(addr) =
            route.broker_datas.iter().find_map(|b| b.broker_addrs.get(&0)).and_then(|a| a.parse().ok())
        else {
            consumer.lists_asked.remove(topic);
            return;
        };
        let header = ConsumerGroupHeader { consumer_group: group.to_owned() };
        let request =
            RemotingCommand::request(RequestCode::GET_CONSUMER_LIST_BY_GROUP, 0, header.to_ext_fields());
        let call = ConsumerCall::ConsumerList { group: group.to_owned(), topic: topic.to_owned() };
        self.consumer_call(now, addr, request, call);
    }

    pub(super) fn consumer_call(
        &mut self,
        now: Now,
        addr: SocketAddr,
        request: RemotingCommand,
        call: ConsumerCall,
    ) {
        // A pull may be held by the broker; its deadline leaves room for the hold.
        let timeout = match &call {
            ConsumerCall::Pull { group, .. } => {
                self.consumers.get(group).map_or(15_000, |c| c.config.pull_hold_ms) + 15_000
            }
            _ => CALL_TIMEOUT_MS,
        };
        let request = self.stamp(request);
        let tag = CallTag::Consumer(call);
        if let Err((tag, error)) =
            self.transport.call(addr, request, now.mono.plus_millis(timeout), tag, &mut self.out)
        {
            self.on_failed(now, tag, error);
        }
    }

    /// The master address serving `queue`.
    pub(super) fn queue_addr(&self, queue: &MessageQueue) -> Option<SocketAddr> {
        let route = self.routes.get(&queue.topic)?;
        master_addr(route, &queue.broker_name)?.parse().ok()
    }

    /// Where to read `queue` and its offsets: broker id `wanted`, else the master, else a
    /// slave (reads and offsets go on while the master is gone).
    pub(super) fn read_addr(&self, queue: &MessageQueue, wanted: i64) -> Option<SocketAddr> {
        let route = self.routes.get(&queue.topic)?;
        super::route::read_addr(route, &queue.broker_name, wanted)?.parse().ok()
    }

    fn apply_allocation(&mut self, now: Now, group: &str, topic: &str, allocated: Vec<MessageQueue>) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        if consumer.stopped {
            return;
        }
        let change = plan(topic, consumer.owned.keys(), &allocated);
        if change.is_empty() {
            return;
        }
        tracing::debug!(
            group,
            topic,
            removed = change.removed.len(),
            added = change.added.len(),
            "rebalance"
        );
        for queue in &change.removed {
            if let Some(mut owned) = consumer.owned.remove(queue) {
                owned.pq.dropped = true;
            }
        }
        let mut to_lock = Vec::new();
        let mut to_start = Vec::new();
        for queue in change.added {
            consumer.next_epoch += 1;
            let epoch = consumer.next_epoch;
            let stage = if consumer.needs_locks() { QueueStage::Locking } else { QueueStage::Starting };
            consumer.owned.insert(queue.clone(), OwnedQueue::new(epoch, stage));
            if stage == QueueStage::Locking {
                to_lock.push((queue, epoch));
            } else {
                to_start.push((queue, epoch));
            }
        }
        self.commit_removed(now, group, &change.removed);
        self.unlock(now, group, &change.removed);
        self.lock(now, group, to_lock);
        for (queue, epoch) in to_start {
            self.start_queue(now, group, &queue, epoch);
        }
    }

    /// Commit the last offsets of queues given up, and forget them.
    fn commit_removed(&mut self, now: Now, group: &str, removed: &[MessageQueue]) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        if !consumer.clustering() {
            return;
        }
        let last: Vec<(MessageQueue, i64)> =
            removed.iter().filter_map(|q| consumer.offsets.remove(q).map(|o| (q.clone(), o))).collect();
        for (queue, offset) in last {
            self.commit_one(now, group, &queue, offset);
        }
    }

    fn commit_one(&mut self, _now: Now, group: &str, queue: &MessageQueue, offset: i64) {
        let Some(addr) = self.read_addr(queue, 0) else { return };
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            commit_offset: offset,
        };
        let request = self.stamp(RemotingCommand::request(
            RequestCode::UPDATE_CONSUMER_OFFSET,
            0,
            header.to_ext_fields(),
        ));
        self.transport.oneway(addr, request, &mut self.out);
    }

    /// Commit changed offsets (all held ones if `all`): to the broker when clustering, to
    /// the application's offsets file when broadcasting.
    pub(super) fn commit_offsets(&mut self, now: Now, group: &str, all: bool) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        let mut changed = consumer.offsets.take_dirty();
        if all {
            changed = consumer
                .owned
                .keys()
                .filter_map(|q| consumer.offsets.get(q).map(|o| (q.clone(), o)))
                .collect();
        }
        if changed.is_empty() {
            return;
        }
        if consumer.clustering() {
            for (queue, offset) in changed {
                self.commit_one(now, group, &queue, offset);
            }
        } else {
            let content = json::to_body(&consumer.offsets.wrapper(), KeyStyle::Fastjson);
            self.events.push_back(ClientEvent::SaveOffsets { group: group.to_owned(), content });
        }
    }

    /// Lock `queues` at their brokers (one request per broker).
    fn lock(&mut self, now: Now, group: &str, queues: Vec<(MessageQueue, u64)>) {
        let mut by_addr: BTreeMap<SocketAddr, Vec<(MessageQueue, u64)>> = BTreeMap::new();
        for (queue, epoch) in queues {
            match self.queue_addr(&queue) {
                Some(addr) => by_addr.entry(addr).or_default().push((queue, epoch)),
                None => self.lock_failed(now, group, &queue, epoch),
            }
        }
        for (addr, queues) in by_addr {
            let mqs: Vec<MessageQueue> = queues.iter().map(|(q, _)| q.clone()).collect();
            let request = lock_batch(0, group, &self.config.client_id, &mqs, false);
            self.consumer_call(now, addr, request, ConsumerCall::Lock { group: group.to_owned(), queues });
        }
    }

    fn unlock(&mut self, _now: Now, group: &str, queues: &[MessageQueue]) {
        let Some(consumer) = self.consumers.get(group) else { return };
        if !consumer.needs_locks() {
            return;
        }
        let mut by_addr: BTreeMap<SocketAddr, Vec<MessageQueue>> = BTreeMap::new();
        for queue in queues {
            if let Some(addr) = self.queue_addr(queue) {
                by_addr.entry(addr).or_default().push(queue.clone());
            }
        }
        for (addr, mqs) in by_addr {
            let request = self.stamp(lock_batch(0, group, &self.config.client_id, &mqs, true));
            self.transport.oneway(addr, request, &mut self.out);
        }
    }

    /// A queue being locked for the first time was refused: give it up until the next
    /// rebalance tries again.
    fn lock_failed(&mut self, _now: Now, group: &str, queue: &MessageQueue, epoch: u64) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        if consumer.owned.get(queue).is_some_and(|q| q.epoch == epoch && q.stage == QueueStage::Locking) {
            consumer.owned.remove(queue);
        }
    }

    /// Find where `queue` starts: the offset held (broadcast file), the broker's committed
    /// offset, or the configured start for a new group.
    fn start_queue(&mut self, now: Now, group: &str, queue: &MessageQueue, epoch: u64) {
        let Some(consumer) = self.consumers.get_mut(group) else { return };
        if let Some(offset) = consumer.offsets.get(queue) {
            return self.begin_pulling(now, group, queue, epoch, offset);
        }
        if consumer.clustering() {
            let Some(addr) = self.read_addr(queue, 0) else { return self.give_up(group, queue, epoch) };
            let header = QueryConsumerOffsetRequestHeader {
                consumer_group: group.to_owned(),
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                // Without it the broker answers 0 for a queue never truncated, and a new group
                // would ignore where it was told to start.
                set_zero_if_not_found: Some(false),
            };
            let request =
                RemotingCommand::request(RequestCode::QUERY_CONSUMER_OFFSET, 0, header.to_ext_fields());
            let call = ConsumerCall::QueryOffset { group: group.to_owned(), queue: queue.clone(), epoch };
            return self.consumer_call(now, addr, request, call);
        }
        self.start_from_where(now, group, queue, epoch);
    }

    fn start_from_where(&mut self, now: Now, group: &str, queue: &MessageQueue, epoch: u64) {
        let Some(consumer) = self.consumers.get(group) else { return };
        let from_where = consumer.config.from_where;
        if queue.topic.starts_with(RETRY_PREFIX) || from_where == ConsumeFromWhere::FirstOffset {
            return self.begin_pulling(now, group, queue, epoch, 0);
        }
        let Some(addr) = self.read_addr(queue, 0) else { return self.give_up(group, queue, epoch) };
        let (topic, queue_id) = (queue.topic.clone(), queue.queue_id);
        let request = match from_where {
            ConsumeFromWhere::Timestamp(timestamp) => {
                let header = SearchOffsetRequestHeader { topic, queue_id, timestamp, boundary_type: None };
                RemotingCommand::request(RequestCode::SEARCH_OFFSET_BY_TIMESTAMP, 0, header.to_ext_fields())
            }
            _ => {
                let header = QueueRequestHeader { topic, queue_id, committed: None };
                RemotingCommand::request(RequestCode::GET_MAX_OFFSET, 0, header.to_ext_fields())
            }
        };
        let call = ConsumerCall::StartOffset { group: group.to_owned(), queue: queue.clone(), epoch };
        self.consumer_call(now, addr, request, call);
    }

    /// Stop owning `queue` (its start could not be found); the next rebalance retries.
    fn give_up(&mut self, group: &str, queue: &MessageQueue, epoch: u64) {
        if let Some(consumer) = self.consumers.get_mut(group) {
            if consumer.owned.get(queue).is_some_and(|q| q.epoch == epoch) {
                consumer.owned.remove(queue);
            }
        }
    }

    pub(super) fn begin_pulling(
        &mut self,
        now: Now,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
        offset: i64,
    ) {
        let Some(owned) = self.owned_mut(group, queue, epoch) else { return };
        owned.stage = QueueStage::Pulling;
        owned.next_offset = offset;
        owned.next_pull = Some(now.mono);
    }

    /// The queue `group` owns under `epoch`, if it still does.
    pub(super) fn owned_mut(
        &mut self,
        group: &str,
        queue: &MessageQueue,
        epoch: u64,
    ) -> Option<&mut OwnedQueue> {
        self.consumers.get_mut(group)?.owned.get_mut(queue).filter(|q| q.epoch == epoch && !q.pq.dropped)
    }

    pub(super) fn on_consumer_response(
        &mut self,
        now: Now,
        call: ConsumerCall,
        response: Result<&RemotingCommand, CallError>,
    ) {
        match call {
            ConsumerCall::ConsumerList { group, topic } => {
                if let Some(consumer) = self.consumers.get_mut(&group) {
                    consumer.lists_asked.remove(&topic);
                }
                let ids = response
                    .ok()
                    .filter(|r| r.response_code() == ResponseCode::SUCCESS)
                    .and_then(|r| json::from_slice::<ConsumerIdList>(&r.body).ok());
                let (Some(ids), Some(route), Some(consumer)) =
                    (ids, self.routes.get(&topic), self.consumers.get(&group))
                else {
                    return;
                };
                let all = subscribe_queues(&topic, route);
                let mine = allocate_sorted(
                    &consumer.config.strategy,
                    &self.config.client_id,
                    all,
                    ids.consumer_id_list,
                );
                self.apply_allocation(now, &group, &topic, mine);
            }
            ConsumerCall::Lock { group, queues } => self.on_locked(now, &group, &queues, response),
            ConsumerCall::QueryOffset { group, queue, epoch } => match response {
                Ok(r) if r.response_code() == ResponseCode::SUCCESS => {
                    match OffsetResponseHeader::decode(&r.ext_fields) {
                        Ok(header) => self.begin_pulling(now, &group, &queue, epoch, header.offset),
                        Err(_) => self.give_up(&group, &queue, epoch),
                    }
                }
                Ok(r) if r.response_code() == ResponseCode::QUERY_NOT_FOUND => {
                    self.start_from_where(now, &group, &queue, epoch)
                }
                _ => self.give_up(&group, &queue, epoch),
            },
            ConsumerCall::StartOffset { group, queue, epoch } => {
                let offset = response
                    .ok()
                    .filter(|r| r.response_code() == ResponseCode::SUCCESS)
                    .and_then(|r| OffsetResponseHeader::decode(&r.ext_fields).ok());
                match offset {
                    Some(header) => self.begin_pulling(now, &group, &queue, epoch, header.offset),
                    None => self.give_up(&group, &queue, epoch),
                }
            }
            ConsumerCall::Pull { group, queue, epoch } => {
                self.on_pulled(now, &group, &queue, epoch, response)
            }
            ConsumerCall::SendBack { group, queue, epoch, message, orderly } => {
                let ok = matches!(response, Ok(r) if r.response_code() == ResponseCode::SUCCESS);
                self.on_sent_back(now, &group, &queue, epoch, *message, orderly, ok);
            }
        }
    }

    fn on_locked(
        &mut self,
        now: Now,
        group: &str,
        queues: &[(MessageQueue, u64)],
        response: Result<&RemotingCommand, CallError>,
    ) {
        let granted: BTreeSet<MessageQueue> = response
            .ok()
            .filter(|r| r.response_code() == ResponseCode::SUCCESS)
            .and_then(|r| json::from_slice::<LockBatchResponseBody>(&r.body).ok())
            .map(|body| body.lock_ok_mq_set.into_iter().collect())
            .unwrap_or_default();
        for (queue, epoch) in queues {
            let Some(owned) = self.owned_mut(group, queue, *epoch) else { continue };
            if granted.contains(queue) {
                owned.locked_until = Some(now.mono.plus_millis(CLIENT_LOCK_MS));
                if owned.stage == QueueStage::Locking {
                    owned.stage = QueueStage::Starting;
                    self.start_queue(now, group, queue, *epoch);
                } else {
                    self.deliver_orderly(now, group, queue);
                }
            } else if owned.stage == QueueStage::Locking {
                self.lock_failed(now, group, queue, *epoch);
            } else {
                owned.locked_until = None;
            }
        }
    }

    /// The consumers' periodic work: rebalances, commits, lock renewals, due pulls and
    /// re-deliveries.
    pub(super) fn handle_consumer_timeout(&mut self, now: Now) {
        let groups: Vec<String> =
            self.consumers.iter().filter(|(_, c)| !c.stopped).map(|(g, _)| g.clone()).collect();
        for group in groups {
            let Some(consumer) = self.consumers.get_mut(&group) else { continue };
            if now.mono >= consumer.next_rebalance {
                consumer.next_rebalance = now.mono.plus_millis(consumer.config.rebalance_interval_ms);
                let topics: Vec<String> = consumer.subscriptions.keys().cloned().collect();
                for topic in topics {
                    self.rebalance_topic(now, &group, &topic);
                }
            }
            let Some(consumer) = self.consumers.get_mut(&group) else { continue };
            if now.mono >= consumer.next_commit {
                consumer.next_commit = now.mono.plus_millis(consumer.config.commit_interval_ms);
                if consumer.config.auto_commit {
                    self.commit_offsets(now, &group, false);
                }
            }
            let Some(consumer) = self.consumers.get_mut(&group) else { continue };
            if consumer.needs_locks() && now.mono >= consumer.next_lock {
                consumer.next_lock = now.mono.plus_millis(consumer.config.rebalance_interval_ms);
                let held: Vec<(MessageQueue, u64)> = consumer
                    .owned
                    .iter()
                    .filter(|(_, q)| q.stage != QueueStage::Locking)
                    .map(|(mq, q)| (mq.clone(), q.epoch))
                    .collect();
                self.lock(now, &group, held);
            }
            self.consume_timers(now, &group);
        }
    }

    /// The consumers' earliest deadline.
    pub(super) fn consumer_poll_timeout(&self) -> Option<MonoNanos> {
        self.consumers.values().filter_map(ConsumerState::poll_timeout).min()
    }
}
