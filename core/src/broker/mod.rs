//! The broker: a thin router over its parts. It owns the message store, the topic table,
//! the client registry, consumer offsets, held pulls, replies waiting for durability and
//! the links to name servers; each request code goes to the part that handles it. Anything
//! else is answered REQUEST_CODE_NOT_SUPPORTED.

mod admin;
pub mod clients;
pub mod config;
pub mod delay_levels;
pub mod groups;
mod metadata;
pub mod offsets;
mod pull;
pub mod queue_locks;
pub mod rates;
mod registration;
mod repair;
mod schedule;
mod send;
mod send_back;
mod timed_delivery;
pub mod timer;
pub mod timer_wheel;
pub mod topics;
pub mod transaction;
mod transaction_end;
mod transactional;

use std::collections::{BTreeMap, VecDeque};

use crate::io::{ConnId, Input, Machine, MonoNanos, Now, Output, StoreRead};
use crate::protocol::body::{SubscriptionGroupWrapper, TopicConfigSerializeWrapper};
use crate::protocol::message::message_id::UniqueIdGenerator;
use crate::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use crate::remoting::{self, ConnectionTable, Received};
use crate::store::Store;
pub use clients::ClientRegistry;
pub use config::BrokerConfig;
pub use groups::GroupTable;
use metadata::{MetadataFiles, METADATA_IO_BASE};
pub use offsets::ConsumerOffsets;
use pull::PullHold;
use queue_locks::QueueLocks;
use registration::NamesrvLinks;
pub use schedule::{DelayOffsets, Scheduler};
pub use send::PendingReply;
pub use topics::TopicTable;
pub use transactional::TransactionStats;

/// How often client expiry is checked.
const CLIENT_SCAN_MS: u64 = 10_000;
/// Pause before a budgeted background job (timers, delay levels, transaction reads and
/// checks) goes on with its next batch. Not zero: the runtimes serve a due deadline before
/// requests, so a job that woke again at once would starve them until it finished.
const BATCH_PAUSE_MS: u64 = 1;
/// How often committed offsets are persisted (`flushConsumerOffsetInterval`).
const OFFSET_PERSIST_MS: u64 = 5_000;
/// Most requests kept while the store boots; beyond it they get SYSTEM_BUSY.
const EARLY_REQUESTS_MAX: usize = 10_000;

/// Counters shown by GET_BROKER_RUNTIME_INFO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Messages stored.
    pub messages_put: u64,
    /// Messages delivered by pulls.
    pub messages_got: u64,
    /// Times the store was rebuilt in place after a disk error.
    pub store_repairs: u64,
    /// Sends refused SYSTEM_BUSY: waited in line too long, or the disk too far behind.
    pub sends_shed: u64,
}

/// The broker state machine.
pub struct Broker {
    config: BrokerConfig,
    store: Store,
    reader: Box<dyn StoreRead + Send>,
    conns: ConnectionTable,
    topics: TopicTable,
    clients: ClientRegistry,
    offsets: ConsumerOffsets,
    out: VecDeque<Output>,
    pending: VecDeque<PendingReply>,
    holds: Vec<PullHold>,
    locks: QueueLocks,
    scheduler: Scheduler,
    timers: timed_delivery::TimedDelivery,
    transactions: transactional::TransactionService,
    namesrvs: NamesrvLinks,
    unique_ids: UniqueIdGenerator,
    queue_cursor: BTreeMap<String, u32>,
    next_opaque: i32,
    next_client_scan: MonoNanos,
    boot_wall_ms: i64,
    stats: BrokerStats,
    /// Samples of the counters behind the runtime info's rates (see `rate_counters`).
    rates: rates::Rates<4>,
    /// The same counters at the start of today and yesterday.
    days: rates::DayMarks<4>,
    groups: GroupTable,
    metadata: MetadataFiles,
    next_offset_persist: MonoNanos,
    /// Offsets committed since the last persist.
    offsets_changed: bool,
    /// Requests that arrived while the store was still booting, served once it is ready.
    early: VecDeque<(ConnId, RemotingCommand)>,
    /// The topic table's change count when the request being served arrived: a send that
    /// created its topic waits for `topics.json` (see `PendingReply`).
    topics_before_request: u64,
    /// When the runtime read the request being served: a send that waited in line longer
    /// than `send_queue_wait_ms` is refused SYSTEM_BUSY.
    request_received: MonoNanos,
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over a recovered `store`, reading through `reader`.
    #[must_use]
    pub fn new(config: BrokerConfig, store: Store, reader: Box<dyn StoreRead + Send>, now: Now) -> Self {
        let ip = match config.advertised_addr.ip() {
            core::net::IpAddr::V4(v4) => v4,
            core::net::IpAddr::V6(_) => core::net::Ipv4Addr::LOCALHOST,
        };
        let namesrvs = NamesrvLinks::new(&config.namesrv_addrs, now.mono);
        let metadata = MetadataFiles::new();
        let (auto_topics, queue_nums, wall) =
            (config.auto_create_topic, config.default_topic_queue_nums, now.wall.0);
        let topics = match MetadataFiles::load::<TopicConfigSerializeWrapper>(&metadata.topics, &*reader) {
            Some(wrapper) => TopicTable::from_wrapper(wrapper, auto_topics, queue_nums, wall),
            None => TopicTable::new(auto_topics, queue_nums, wall),
        };
        let offsets = MetadataFiles::load::<ConsumerOffsets>(&metadata.offsets, &*reader).unwrap_or_default();
        let mut delay_offsets =
            MetadataFiles::load::<DelayOffsets>(&metadata.delay_offsets, &*reader).unwrap_or_default();
        if config.store.mutated(crate::mutation::Mutation::LoseDelayOffset) {
            delay_offsets = DelayOffsets::default();
        }
        let scheduler = Scheduler::new(config.delay_levels.clone(), delay_offsets, now);
        let timer_checkpoint =
            MetadataFiles::load::<timer::TimerCheckpoint>(&metadata.timer_checkpoint, &*reader)
                .unwrap_or_default();
        let timers = timed_delivery::TimedDelivery::new(timer_checkpoint, config.timer_precision_ms, now);
        let auto_groups = config.auto_create_subscription_group;
        let groups = match MetadataFiles::load::<SubscriptionGroupWrapper>(&metadata.groups, &*reader) {
            Some(wrapper) => GroupTable::from_wrapper(wrapper, auto_groups, wall),
            None => GroupTable::new(auto_groups, wall),
        };
        let mut locks = QueueLocks::new(queue_locks::LOCK_MAX_LIVE_MS);
        locks.ignore_holders = config.store.mutated(crate::mutation::Mutation::LockNotChecked);
        Self {
            conns: ConnectionTable::new(config.max_frame_len, config.max_connections),
            topics,
            clients: ClientRegistry::default(),
            offsets,
            out: VecDeque::new(),
            pending: VecDeque::new(),
            holds: Vec::new(),
            locks,
            scheduler,
            timers,
            transactions: transactional::TransactionService::new(
                now,
                config.transaction.check_interval_ms,
                store.write_pos().0,
            ),
            namesrvs,
            unique_ids: UniqueIdGenerator::new(
                ip,
                i16::try_from(config.advertised_addr.port() % 32_768).unwrap_or(0),
                0x4B45_454C,
            ),
            queue_cursor: BTreeMap::new(),
            next_opaque: 1,
            next_client_scan: now.mono.plus_millis(CLIENT_SCAN_MS),
            boot_wall_ms: now.wall.0,
            stats: BrokerStats::default(),
            rates: rates::Rates::default(),
            days: rates::DayMarks::default(),
            groups,
            metadata,
            next_offset_persist: now.mono.plus_millis(OFFSET_PERSIST_MS),
            offsets_changed: false,
            early: VecDeque::new(),
            topics_before_request: 0,
            request_received: now.mono,
            config,
            store,
            reader,
        }
    }

    /// The message store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The topic table.
    #[must_use]
    pub fn topics(&self) -> &TopicTable {
        &self.topics
    }

    /// Committed consumer offsets.
    #[must_use]
    pub fn offsets(&self) -> &ConsumerOffsets {
        &self.offsets
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> BrokerStats {
        self.stats
    }

    /// The delay scheduler's state: when it next looks at its heads (`None`: not until a
    /// schedule queue grows) and how many messages it delivered.
    #[must_use]
    pub fn delay_schedule(&self) -> (Option<MonoNanos>, u64) {
        (self.scheduler.wake_at(), self.scheduler.delivered)
    }

    /// The timed-delivery service: timers delivered since boot, and timers pending (in the
    /// wheel or due and waiting for their batch).
    #[must_use]
    pub fn timer_stats(&self) -> (u64, usize) {
        (self.timers.delivered, self.timers.state.pending())
    }

    /// What the transaction service did, and how many transactions are open.
    #[must_use]
    pub fn transaction_stats(&self) -> (TransactionStats, usize) {
        let open = self.transactions.table.as_ref().map_or(0, transaction::TransactionTable::open_count);
        (self.transactions.stats, open)
    }

    /// Begin a clean shutdown: the store flushes, checkpoints and removes its abort marker;
    /// [`is_stopped`](Self::is_stopped) turns true when done.
    pub fn begin_shutdown(&mut self) {
        self.metadata.mark_all_for_shutdown();
        // No retry is pending any more, so any instant will do.
        self.persist_metadata(MonoNanos(0));
        self.store.begin_shutdown();
    }

    /// Whether there is nothing left to do before exiting: a clean shutdown completed (store
    /// flushed, metadata written), or the store failed (then the process must exit and the
    /// next start recovers).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        let metadata_done = self.metadata.all_settled();
        (self.store.is_stopped() && metadata_done) || self.store.failure().is_some()
    }

    /// Write the metadata files that changed (offsets only when due, or shutting down).
    fn persist_metadata(&mut self, now: MonoNanos) {
        let contents = (
            self.topics.wrapper(),
            &self.offsets,
            self.groups.wrapper(),
            self.scheduler.offsets(),
            self.timers.checkpoint(),
        );
        self.metadata.persist(now, contents, &mut self.out);
    }

    fn opaque(&mut self) -> i32 {
        self.next_opaque = self.next_opaque.wrapping_add(1).max(1);
        self.next_opaque
    }

    /// Send a request of ours (to a client or a name server), oneway or not.
    fn send_request(&mut self, conn: ConnId, code: RequestCode, ext: ExtFields, oneway: bool) {
        let mut cmd = RemotingCommand::request(code, self.opaque(), ext);
        if oneway {
            cmd.flag |= crate::protocol::FLAG_ONEWAY;
        }
        remoting::send(&mut self.out, conn, &cmd);
    }

    /// Tell every consumer of each group that its membership changed.
    fn notify_consumer_ids_changed(&mut self, groups: &[String]) {
        for group in groups {
            let ext: ExtFields = [("consumerGroup", group.as_str())].into_iter().collect();
            for conn in self.clients.consumer_conns(group) {
                self.send_request(conn, RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, ext.clone(), true);
            }
        }
    }

    fn on_command(&mut self, now: Now, conn: ConnId, cmd: RemotingCommand) {
        if cmd.is_response() {
            self.namesrvs.on_response(conn, &cmd);
            return;
        }
        // The store finishes booting (a few disk operations) after the listener opens: a
        // client that connects at once waits rather than being refused.
        if !self.store.is_ready() && self.store.failure().is_none() && !self.store.is_repairing() {
            if self.early.len() < EARLY_REQUESTS_MAX {
                self.early.push_back((conn, cmd));
            } else {
                let reply = error_reply(&cmd, ResponseCode::SYSTEM_BUSY, "broker is starting");
                remoting::reply(&mut self.out, conn, &cmd, &reply);
            }
            return;
        }
        self.topics_before_request = self.metadata.topics.changes();
        let reply = match cmd.request_code() {
            RequestCode::SEND_MESSAGE | RequestCode::SEND_MESSAGE_V2 | RequestCode::SEND_BATCH_MESSAGE => {
                self.on_send(now, conn, &cmd)
            }
            RequestCode::CONSUMER_SEND_MSG_BACK => self.on_send_back(now, conn, &cmd),
            RequestCode::END_TRANSACTION => self.on_end_transaction(now, conn, &cmd),
            RequestCode::PULL_MESSAGE | RequestCode::LITE_PULL_MESSAGE => {
                self.on_pull(now, conn, cmd.clone())
            }
            _ => Some(self.on_admin(now, conn, &cmd)),
        };
        if let Some(reply) = reply {
            remoting::reply(&mut self.out, conn, &cmd, &reply);
        }
    }

    /// A connection closed (by the peer, or by us for a malformed stream): forget what was
    /// waiting on it; a name server link is re-dialled.
    fn connection_gone(&mut self, now: Now, conn: ConnId) {
        if conn.is_outbound() {
            self.namesrvs.closed(conn, now.mono);
            return;
        }
        self.holds.retain(|hold| hold.conn != conn);
        self.early.retain(|(waiting, _)| *waiting != conn);
        let changed = self.clients.connection_closed(conn);
        self.notify_consumer_ids_changed(&changed);
    }

    /// After any input: serve requests that waited for boot, release replies whose data is
    /// now durable, answer pulls that can be.
    fn settle(&mut self, now: Now) {
        self.repair_store_if_due(now);
        // Held while the store booted; a store that failed to boot instead refuses them.
        if self.store.is_ready() || self.store.is_repairing() {
            // They waited for the store, not in line behind other requests.
            self.request_received = now.mono;
            while let Some((conn, cmd)) = self.early.pop_front() {
                self.on_command(now, conn, cmd);
            }
        }
        self.release_pending();
        // A delivery counts once it is as safe as a send would be: what consumers may see.
        let durable_end = self.store.visible_end().0;
        self.scheduler.settle(durable_end, now.wall.0);
        self.watch_schedule_queues(now);
        self.timers.settle(durable_end);
        self.watch_timer_queue(now);
        // Transaction state is the broker's own promise (at most `transactionCheckMax`
        // checks, a checkpoint past ends only): it waits for the fsync in either flush mode,
        // or a power loss could undo a check copy whose check went out, and count it again.
        self.settle_transactions(now, self.store.flushed_end().0);
        self.wake_holds(now);
        self.persist_metadata(now.mono);
    }
}

impl Machine for Broker {
    fn handle(&mut self, now: Now, input: Input) {
        let counters = self.rate_counters();
        self.rates.sample(now.mono, counters);
        self.days.observe(now.wall.0, counters);
        match input {
            Input::ConnOpened { conn, peer } => {
                if conn.is_outbound() {
                    self.conns.open(conn, peer, &mut self.out);
                    self.register_now(now, conn);
                } else {
                    self.conns.open(conn, peer, &mut self.out);
                }
            }
            Input::ConnClosed { conn } => {
                self.conns.close(conn);
                self.connection_gone(now, conn);
            }
            Input::Bytes { conn, data, received } => {
                self.request_received = received;
                for received in self.conns.feed(conn, &data, &mut self.out) {
                    match received {
                        Received::Command(cmd) => self.on_command(now, conn, cmd),
                        Received::Closed(_) => self.connection_gone(now, conn),
                    }
                }
            }
            Input::DiskDone { io, result } if io.0 >= METADATA_IO_BASE => {
                self.metadata.completed(now.mono, io, &result, &mut self.out);
            }
            Input::DiskDone { io, result } => self.store.handle_disk_done(now, io, result),
            Input::Timeout => {
                if self.store.poll_timeout().is_some_and(|at| now.mono >= at) {
                    self.store.handle_timeout(now);
                }
                if self.store.retention_deadline().is_some_and(|at| now.mono >= at) {
                    self.store.run_retention(now, &*self.reader);
                }
                self.on_registration_timer(now);
                self.deliver_delayed(now);
                if self.scheduler.take_persist_due(now.mono) {
                    self.metadata.delay_offsets.mark_dirty();
                }
                self.run_timers(now);
                if self.timers.take_persist_due(now.mono) {
                    self.metadata.timer_checkpoint.mark_dirty();
                }
                self.run_transactions(now);
                if now.mono >= self.next_offset_persist {
                    self.next_offset_persist = now.mono.plus_millis(OFFSET_PERSIST_MS);
                    self.metadata.offsets.mark_dirty_if(self.offsets_changed);
                    self.offsets_changed = false;
                }
                if now.mono >= self.next_client_scan {
                    let (conns, changed) = self.clients.expire(now.mono, self.config.client_expiry_ms);
                    for conn in conns {
                        tracing::info!(?conn, "client expired: no heartbeat");
                    }
                    self.notify_consumer_ids_changed(&changed);
                    self.locks.sweep(now.mono);
                    self.next_client_scan = now.mono.plus_millis(CLIENT_SCAN_MS);
                }
            }
        }
        self.settle(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.out.pop_front() {
            return Some(output);
        }
        self.store.poll_output()
    }

    fn poll_timeout(&self) -> Option<MonoNanos> {
        let hold = self.holds.iter().map(|h| h.deadline).min();
        [
            self.store.poll_timeout(),
            self.store.retention_deadline(),
            self.namesrvs.next_deadline(),
            Some(self.next_client_scan),
            Some(self.next_offset_persist),
            self.scheduler.next_deadline(),
            self.timers.deadline(),
            self.transactions.deadline(),
            self.metadata.retry_at(),
            hold,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// An error reply.
fn error_reply(request: &RemotingCommand, code: ResponseCode, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(request, code, Some(remark.into()))
}
