//! The broker: a thin router over subsystems that own their state. [`Shared`] holds what
//! they all reach (the store, outgoing frames, topics and their registration, metadata
//! files, replies waiting for durability); the send path, delay levels, timers,
//! transactions, consumers and administration each keep their own state beside it and
//! have one entry point per request code and one per timeout. `router.rs` maps request
//! codes to them; a code nobody serves is answered REQUEST_CODE_NOT_SUPPORTED.
//!
//! | folder / file | subsystem |
//! |---|---|
//! | `send/` | [`SendPath`](send::SendPath): sends, sends back, replies waiting for durability |
//! | `delay/` | [`DelayService`]: delay levels |
//! | `timer/` | [`TimerService`](timer::TimerService): timed messages, wheel and checkpoint |
//! | `transaction/` | [`TransactionService`](transaction::TransactionService): table, ends, checks |
//! | `consumers/` | [`Consumers`](consumers::Consumers): clients, groups, offsets, locks, pulls |
//! | `admin/` | [`Admin`](admin::Admin): queries, topic administration, runtime info |
//! | `registration.rs` | name-server links (part of [`Shared`]) |
//! | `metadata.rs` | the metadata files |
//! | `repair.rs` | rebuilding the store in place after a disk error |
//! | `replication.rs` | a master's side of replication: its slaves' streams |
//! | `ha_client.rs` | a slave's side: its link to the master |
//! | `metadata_sync.rs` | a slave's copy of its master's metadata |

mod admin;
pub mod config;
pub mod consumers;
pub mod controller_link;
pub mod delay;
mod ha_client;
mod metadata;
mod metadata_sync;
mod metrics;
pub mod overview;
pub mod pop;
mod refusal;
mod registration;
mod repair;
mod replication;
pub mod role;
mod router;
mod send;
mod shared;
pub mod timer;
pub mod topics;
pub(crate) mod traffic;
pub mod transaction;

use std::collections::VecDeque;

use crate::io::{ConnId, ConnKind, Input, Machine, MonoNanos, Now, Output, StoreRead};
use crate::protocol::body::{SubscriptionGroupWrapper, TopicConfigSerializeWrapper};
use crate::protocol::message::message_id::UniqueIdGenerator;
use crate::protocol::RemotingCommand;
use crate::remoting::ConnectionTable;
use crate::store::Store;
use admin::Admin;
pub use config::BrokerConfig;
use consumers::queue_locks::{self, QueueLocks};
use consumers::Consumers;
pub use consumers::{ClientRegistry, ConsumerOffsets, GroupTable};
pub use delay::{DelayOffsets, DelayService};
use ha_client::HaClient;
use metadata::{MetadataFiles, METADATA_IO_BASE};
pub use metadata_sync::SYNC_INTERVAL_MS as SLAVE_SYNC_INTERVAL_MS;
use metadata_sync::{MetadataSync, Synced};
use registration::NamesrvLinks;
use replication::Replication;
use send::durable::DurableReplies;
use send::SendPath;
use shared::Shared;
use timer::TimerService;
pub use topics::TopicTable;
use transaction::TransactionService;
pub use transaction::TransactionStats;

/// Pause before a budgeted background job (timers, delay levels, transaction reads and
/// checks) goes on with its next batch. Not zero: the runtimes serve a due deadline before
/// requests, so a job that woke again at once would starve them until it finished.
const BATCH_PAUSE_MS: u64 = 1;
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
    /// Times this slave's log could not continue its master's stream and was copied anew:
    /// a safety net that never fires when cut-backs work (the simulator checks it stays 0).
    pub replica_copied_anew: u64,
}

/// The broker state machine.
pub struct Broker {
    shared: Shared,
    sends: SendPath,
    delay: DelayService,
    timers: TimerService,
    transactions: TransactionService,
    pop: pop::PopService,
    consumers: Consumers,
    admin: Admin,
    replication: Replication,
    ha_client: HaClient,
    metadata_sync: MetadataSync,
    /// Requests that arrived while the store was still booting, served once it is ready.
    early: VecDeque<(ConnId, RemotingCommand)>,
    /// The role this broker takes when made master (its configured master role; ASYNC for
    /// a broker configured as a slave).
    master_role: crate::ha::BrokerRole,
    /// Its id as a slave (the configured `brokerId`; 0 is the master's in the routes).
    replica_id: i64,
    /// Controller mode: the link to the controller that decides this broker's role.
    controller: controller_link::ControllerLink,
}

/// Which part of the broker asked for a timeout. A timeout goes to every part whose
/// deadline has passed, in this order (the order is part of the broker's behaviour: the
/// simulator's traces depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The store: group commit, flush, checkpoint, disk-space checks.
    Store,
    /// The store's retention check.
    Retention,
    /// A name-server link to dial, or the registration period.
    Registration,
    /// A delay level's head due, or its offsets to persist.
    DelayLevels,
    /// A timer due, or the timer checkpoint to write.
    Timers,
    /// Transaction replay, reads and check rounds.
    Transactions,
    /// Pop consumption: revive's reads and due checkpoints, held pops' time up.
    Pop,
    /// Client expiry, the offset persist, or a held pull's time up.
    Consumers,
    /// A metadata file's replacement to retry.
    Metadata,
    /// Replication: a slave's heartbeat or silence check (on a master), the master's link
    /// to dial, report on or check (on a slave).
    Replication,
}

impl Reason {
    /// Every reason, in the order a timeout serves them.
    pub const ALL: [Self; 10] = [
        Self::Store,
        Self::Retention,
        Self::Registration,
        Self::DelayLevels,
        Self::Timers,
        Self::Transactions,
        Self::Pop,
        Self::Consumers,
        Self::Metadata,
        Self::Replication,
    ];
}

impl core::fmt::Debug for Broker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.shared.config)
            .field("stats", &self.shared.stats)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over a recovered `store`, reading through `reader`.
    #[must_use]
    pub fn new(mut config: BrokerConfig, store: Store, reader: Box<dyn StoreRead + Send>, now: Now) -> Self {
        // Without it the timer wheel could not be rebuilt from its queue after a restart: a
        // runtime that built its store from other settings than the broker's is a bug.
        assert!(
            store.config().due_time_topics.iter().any(|t| t == timer::TIMER_TOPIC),
            "the broker's store must give {} entries their due time (StoreConfig::due_time_topics)",
            timer::TIMER_TOPIC
        );
        let ip = match config.advertised_addr.ip() {
            core::net::IpAddr::V4(v4) => v4,
            core::net::IpAddr::V6(_) => core::net::Ipv4Addr::LOCALHOST,
        };
        let namesrvs = NamesrvLinks::new(&config.namesrv_addrs, now.mono);
        let metadata = MetadataFiles::new();
        let (auto_topics, queue_nums, wall) =
            (config.auto_create_topic, config.default_topic_queue_nums, now.wall);
        let mut topics = match MetadataFiles::load::<TopicConfigSerializeWrapper>(&metadata.topics, &*reader)
        {
            Some(wrapper) => TopicTable::from_wrapper(wrapper, auto_topics, queue_nums, wall),
            None => TopicTable::new(auto_topics, queue_nums, wall),
        };
        if let Some(trace) = config.trace_topic.as_deref().filter(|t| topics.get(t).is_none()) {
            let trace_topic = crate::protocol::body::TopicConfig {
                topic_name: trace.to_owned(),
                read_queue_nums: 1,
                write_queue_nums: 1,
                ..crate::protocol::body::TopicConfig::default()
            };
            topics.put(trace_topic, wall);
        }
        let offsets = MetadataFiles::load::<ConsumerOffsets>(&metadata.offsets, &*reader).unwrap_or_default();
        let epochs = MetadataFiles::load::<crate::ha::epoch::EpochHistory>(&metadata.epochs, &*reader)
            .and_then(|loaded| crate::ha::epoch::EpochHistory::from_entries(loaded.entries().to_vec()))
            .unwrap_or_default();
        let mut delay_offsets =
            MetadataFiles::load::<DelayOffsets>(&metadata.delay_offsets, &*reader).unwrap_or_default();
        if config.store.mutated(crate::mutation::Mutation::LoseDelayOffset) {
            delay_offsets = DelayOffsets::default();
        }
        let delay = DelayService::new(config.delay_levels.clone(), delay_offsets, now);
        let timer_checkpoint =
            MetadataFiles::load::<timer::TimerCheckpoint>(&metadata.timer_checkpoint, &*reader)
                .unwrap_or_default();
        let timers = TimerService::new(timer_checkpoint, config.timer_precision_ms, now);
        let auto_groups = config.auto_create_subscription_group;
        let groups = match MetadataFiles::load::<SubscriptionGroupWrapper>(&metadata.groups, &*reader) {
            Some(wrapper) => GroupTable::from_wrapper(wrapper, auto_groups, wall),
            None => GroupTable::new(auto_groups, wall),
        };
        let mut locks = QueueLocks::new(queue_locks::LOCK_MAX_LIVE_MS);
        locks.ignore_holders = config.store.mutated(crate::mutation::Mutation::LockNotChecked);
        let transactions =
            TransactionService::new(now, config.transaction.check_interval_ms, store.write_pos());
        let revive_topic = pop::records::revive_topic(&config.cluster_name);
        if topics.get(&revive_topic).is_none() {
            let revive = crate::protocol::body::TopicConfig {
                topic_name: revive_topic,
                read_queue_nums: pop::REVIVE_QUEUES,
                write_queue_nums: pop::REVIVE_QUEUES,
                ..crate::protocol::body::TopicConfig::default()
            };
            topics.put(revive, wall);
        }
        let replication = Replication::new(config.ha);
        // In controller mode a broker starts as a slave; the controller makes it master.
        let controller_addrs = config.controller_addrs.clone();
        let master_role =
            if config.role.is_slave() { crate::ha::BrokerRole::AsyncMaster } else { config.role };
        if !controller_addrs.is_empty() {
            config.role = crate::ha::BrokerRole::Slave;
        }
        let ha_client = HaClient::new(
            config.ha,
            config.role.is_slave(),
            config.ha_master_addr,
            config.broker_id,
            now.mono,
        );
        let metadata_sync = MetadataSync::new(config.role.is_slave(), now.mono);
        let config_is_slave = config.role.is_slave();
        let replica_id = config.broker_id;
        let mut store = store;
        store.set_replica(config.role.is_slave());
        let pop = pop::PopService::new(now, pop::records::revive_topic(&config.cluster_name));
        let mut broker = Self {
            shared: Shared {
                conns: ConnectionTable::new(config.max_frame_len, config.max_connections),
                topics,
                out: VecDeque::new(),
                replies: DurableReplies::default(),
                namesrvs,
                unique_ids: UniqueIdGenerator::new(
                    ip,
                    i16::try_from(config.advertised_addr.port() % 32_768).unwrap_or(0),
                    0x4B45_454C,
                ),
                next_opaque: 1,
                next_dial: ConnId::OUTBOUND,
                slave_acked: None,
                confirmed: None,
                lease_lapsed: false,
                sync_state_set: None,
                sync_state_joining: std::collections::BTreeSet::new(),
                replica_id,
                epochs,
                epoch_change: 0,
                booted: false,
                stats: BrokerStats::default(),
                traffic: traffic::Traffic::default(),
                metadata,
                topics_before_request: 0,
                request_received: now.mono,
                config,
                store,
                reader,
            },
            sends: SendPath::default(),
            delay,
            timers,
            transactions,
            pop,
            consumers: {
                let mut consumers = Consumers::new(groups, offsets, locks, now.mono);
                if config_is_slave {
                    consumers.committed_here = Some(std::collections::BTreeSet::new());
                }
                consumers
            },
            admin: Admin::new(now),
            replication,
            ha_client,
            metadata_sync,
            early: VecDeque::new(),
            master_role,
            replica_id,
            controller: controller_link::ControllerLink::new(controller_addrs, now.mono),
        };
        if !broker.is_slave() {
            let epoch = broker.shared.begin_epoch();
            tracing::info!(epoch, start = broker.shared.store.write_pos().0, "serving as master");
        }
        broker
    }

    /// The message store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Its settings.
    #[must_use]
    pub fn config(&self) -> &BrokerConfig {
        &self.shared.config
    }

    /// The topic table.
    #[must_use]
    pub fn topics(&self) -> &TopicTable {
        &self.shared.topics
    }

    /// Which master wrote which stretch of this broker's log.
    #[must_use]
    pub fn epochs(&self) -> &crate::ha::epoch::EpochHistory {
        &self.shared.epochs
    }

    /// A subscription group's settings, if the broker has the group.
    #[must_use]
    pub fn group_config(&self, group: &str) -> Option<crate::protocol::body::SubscriptionGroupConfig> {
        self.consumers.groups.get(group).cloned()
    }

    /// Committed consumer offsets.
    #[must_use]
    pub fn offsets(&self) -> &ConsumerOffsets {
        &self.consumers.offsets
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> BrokerStats {
        self.shared.stats
    }

    /// The delay scheduler's state: when it next looks at its heads (`None`: not until a
    /// schedule queue grows) and how many messages it delivered.
    #[must_use]
    pub fn delay_schedule(&self) -> (Option<MonoNanos>, u64) {
        (self.delay.wake_at(), self.delay.delivered)
    }

    /// The timed-delivery service: timers delivered since boot, and timers pending (in the
    /// wheel or due and waiting for their batch).
    #[must_use]
    pub fn timer_stats(&self) -> (u64, usize) {
        (self.timers.delivered, self.timers.state.pending())
    }

    /// What pop consumption did, and its checkpoints open, FIFO batches out and pops held.
    #[must_use]
    pub fn pop_stats(&self) -> (pop::PopStats, (usize, usize, usize)) {
        (self.pop.stats, self.pop.in_flight())
    }

    /// What the transaction service did, and how many transactions are open.
    #[must_use]
    pub fn transaction_stats(&self) -> (TransactionStats, usize) {
        let open =
            self.transactions.table.as_ref().map_or(0, transaction::table::TransactionTable::open_count);
        (self.transactions.stats, open)
    }

    /// Begin a clean shutdown: the store flushes, checkpoints and removes its abort marker;
    /// [`is_stopped`](Self::is_stopped) turns true when done.
    pub fn begin_shutdown(&mut self) {
        self.shared.metadata.mark_all_for_shutdown();
        // No retry is pending any more, so any instant will do.
        self.persist_metadata(MonoNanos(0));
        self.shared.store.begin_shutdown();
    }

    /// Whether there is nothing left to do before exiting: a clean shutdown completed (store
    /// flushed, metadata written), or the store failed (then the process must exit and the
    /// next start recovers).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        let metadata_done = self.shared.metadata.all_settled();
        (self.shared.store.is_stopped() && metadata_done) || self.shared.store.failure().is_some()
    }

    /// Write the metadata files that changed (offsets only when due, or shutting down).
    fn persist_metadata(&mut self, now: MonoNanos) {
        let contents = (
            self.shared.topics.wrapper(),
            &self.consumers.offsets,
            self.consumers.groups.wrapper(),
            self.delay.offsets(),
            self.timers.checkpoint(),
            &self.shared.epochs,
        );
        self.shared.metadata.persist(now, contents, &mut self.shared.out);
    }

    /// Whether this broker is a slave: it copies its master's log, and the services that
    /// write to it (delay levels, timers, transaction checks) run on the master only.
    fn is_slave(&self) -> bool {
        self.shared.config.role.is_slave()
    }

    /// Take a table copied from the master: it replaces this slave's (offsets are merged
    /// over), and the file is rewritten when it changed.
    fn apply_synced(&mut self, now: Now, synced: Synced) {
        let shared = &mut self.shared;
        match synced {
            Synced::Topics(wrapper) => {
                if shared.topics.wrapper().data_version != wrapper.data_version {
                    shared.topics.replace(wrapper);
                    shared.topics_changed();
                }
            }
            Synced::Groups(wrapper) => {
                if self.consumers.groups.wrapper().data_version != wrapper.data_version {
                    self.consumers.groups.replace(wrapper);
                    shared.metadata.groups.mark_dirty();
                }
            }
            Synced::Offsets(master) => {
                // Commits made here while the master was away (consumers read from this
                // slave then) stay when newer than the master's, and go to the master.
                let here = self.consumers.committed_here.as_mut().map(core::mem::take).unwrap_or_default();
                let newer: Vec<(String, String, i32, i64)> = here
                    .into_iter()
                    .filter_map(|(group, topic, queue)| {
                        let ours = self.consumers.offsets.get(&group, &topic, queue)?;
                        let theirs = master.get(&group, &topic, queue);
                        theirs.is_none_or(|theirs| theirs < ours).then_some((group, topic, queue, ours))
                    })
                    .collect();
                let mut changed = self.consumers.offsets.merge(&master);
                for (group, topic, queue, offset) in newer {
                    changed = true;
                    self.consumers.offsets.commit(&group, &topic, queue, offset);
                    self.metadata_sync.push_offset(shared, &group, &topic, queue, offset);
                }
                shared.metadata.offsets.mark_dirty_if(changed);
            }
            Synced::DelayOffsets(offsets) => {
                if *self.delay.offsets() != offsets {
                    self.delay = DelayService::new(shared.config.delay_levels.clone(), offsets, now);
                    shared.metadata.delay_offsets.mark_dirty();
                }
            }
            Synced::TimerCheckpoint(checkpoint) => {
                if *self.timers.checkpoint() != checkpoint {
                    self.timers = TimerService::new(checkpoint, shared.config.timer_precision_ms, now);
                    shared.metadata.timer_checkpoint.mark_dirty();
                }
            }
        }
    }

    /// When `reason`'s part next needs a timeout.
    fn deadline(&self, reason: Reason) -> Option<MonoNanos> {
        let slave = self.is_slave();
        match reason {
            // A master's services that write to the log wait while its epoch is not
            // recorded, as sends do: a crash then would keep what they wrote under an epoch
            // its slaves never learn of, so a slave holding the previous epoch's lost tail
            // would not cut it back.
            Reason::DelayLevels | Reason::Timers | Reason::Transactions | Reason::Pop
                if slave || !self.shared.epoch_durable() =>
            {
                None
            }
            Reason::Store => self.shared.store.poll_timeout(),
            Reason::Retention => self.shared.store.retention_deadline(),
            Reason::Registration => self.shared.namesrvs.poll_timeout(),
            Reason::DelayLevels => self.delay.poll_timeout(),
            Reason::Timers => self.timers.poll_timeout(),
            Reason::Transactions => self.transactions.poll_timeout(),
            Reason::Pop => self.pop.poll_timeout(),
            Reason::Consumers => Some(self.consumers.poll_timeout()),
            Reason::Metadata => self.shared.metadata.retry_at(),
            Reason::Replication => {
                let link = self.ha_client.poll_timeout(self.shared.store.is_ready());
                let sync = self.metadata_sync.poll_timeout();
                let store = &self.shared.store;
                let wait_ms = self.shared.config.ha.sync_flush_timeout_ms;
                let acks =
                    self.shared.replies.slave_deadline(store.written_end(), store.flushed_end(), wait_ms);
                let controller = self.controller.poll_timeout();
                self.replication
                    .poll_timeout()
                    .into_iter()
                    .chain(link)
                    .chain(sync)
                    .chain(acks)
                    .chain(controller)
                    .min()
            }
        }
    }

    /// The soonest deadline of all, and whose it is.
    #[must_use]
    pub fn soonest(&self) -> Option<(MonoNanos, Reason)> {
        crate::io::soonest(Reason::ALL, |reason| self.deadline(reason))
    }

    /// A timeout: every part whose deadline has passed runs, in [`Reason::ALL`]'s order;
    /// each deadline is read just before its part runs, as an earlier part may move it.
    fn handle_timeout(&mut self, now: Now) {
        for reason in Reason::ALL {
            if !crate::io::is_due(self.deadline(reason), now) {
                continue;
            }
            tracing::trace!(?reason, "timeout");
            let shared = &mut self.shared;
            match reason {
                Reason::Store => shared.store.handle_timeout(now),
                Reason::Retention => shared.store.run_retention(now, &*shared.reader),
                Reason::Registration => shared.handle_registration_timeout(now),
                Reason::DelayLevels => self.delay.handle_timeout(shared, now),
                Reason::Timers => self.timers.handle_timeout(shared, now),
                Reason::Transactions => self.transactions.handle_timeout(shared, &mut self.consumers, now),
                Reason::Pop => self.pop.handle_timeout(shared, &mut self.consumers, now),
                Reason::Consumers => self.consumers.handle_timeout(shared, now),
                // Metadata files are written as the broker settles, after every input.
                Reason::Metadata => {}
                Reason::Replication => {
                    self.replication.handle_timeout(shared, now);
                    self.ha_client.handle_timeout(shared, now);
                    self.metadata_sync.handle_timeout(shared, now);
                    self.controller.handle_timeout(shared, now, self.replica_id, &self.replication);
                }
            }
        }
    }

    /// Rebuild the store in place if a repair is due; the services that read the log from
    /// a position then start again from their settled progress (it only covers what
    /// reached the cut), as after a restart: their reads, wheels and deliveries in flight
    /// refer to the replaced store.
    fn repair_store_if_due(&mut self, now: Now) {
        let Some(rebuilt) = self.shared.rebuild_store_if_due(now) else { return };
        self.ha_client.store_replaced(&mut self.shared, now);
        if !self.is_slave() {
            // The log may be shorter than what slaves were sent: a new epoch begins at its
            // new end, and slaves connect again to learn it and cut back.
            let epoch = self.shared.begin_epoch();
            tracing::warn!(
                epoch,
                start = self.shared.store.write_pos().0,
                "store rebuilt: a new epoch begins"
            );
            self.replication.drop_all(&mut self.shared, "the master's store was rebuilt");
        }
        self.restart_log_services(now);
        tracing::warn!(
            cut = rebuilt.cut.0,
            recovered_end = rebuilt.recovered_end.0,
            replies_failed = rebuilt.replies_failed,
            "store rebuilt in place (after a disk error, or a slave's log cut back to its master's); writes resume once its fix-ups are synced"
        );
    }

    /// Start the services that read the log from a position again from their settled
    /// progress (delay levels, timers, transactions), as after a restart: what they held
    /// in flight refers to a store replaced, or to a role this broker no longer has.
    fn restart_log_services(&mut self, now: Now) {
        let config = &self.shared.config;
        tracing::info!(
            delay_offsets = ?self.delay.offsets(),
            timers = ?self.timers.checkpoint(),
            "delay levels and timers resume from the progress this broker holds"
        );
        self.delay = DelayService::new(config.delay_levels.clone(), self.delay.offsets().clone(), now);
        self.timers = TimerService::new(*self.timers.checkpoint(), config.timer_precision_ms, now);
        let stats = self.transactions.stats;
        self.transactions =
            TransactionService::new(now, config.transaction.check_interval_ms, self.shared.store.write_pos());
        self.transactions.stats = stats;
        self.pop.restart(now);
        self.shared.metadata.delay_offsets.mark_dirty();
        self.shared.metadata.timer_checkpoint.mark_dirty();
    }

    /// After any input: serve requests that waited for boot, release replies whose data is
    /// now durable, let the services see what became durable, answer pulls that can be.
    fn settle(&mut self, now: Now) {
        self.repair_store_if_due(now);
        // Held while the store booted; a store that failed to boot instead refuses them.
        if !self.shared.booting() || self.shared.store.is_repairing() {
            self.shared.booted = true;
            // They waited for the store, not in line behind other requests.
            self.shared.request_received = now.mono;
            while let Some((conn, cmd)) = self.early.pop_front() {
                self.on_command(now, conn, cmd);
            }
        }
        self.shared.release_replies(now);
        if !self.is_slave() && self.shared.epoch_durable() {
            // What the slaves hold now, so the writers see the newest confirmed end.
            self.replication.publish_acked(&mut self.shared);
            self.settle_writers(now);
        }
        self.consumers.wake_holds(&mut self.shared, now);
        self.persist_metadata(now.mono);
        self.replication.pump(&mut self.shared, now);
        self.ha_client.pump(&mut self.shared, now);
        self.check_unrecorded_epoch_unwritten();
    }

    /// Nothing is written in a master's epoch before the epoch is recorded: a crash would
    /// keep it under an epoch its slaves never learn of, and a slave holding the previous
    /// epoch's lost tail would not cut it back.
    fn check_unrecorded_epoch_unwritten(&self) {
        let shared = &self.shared;
        if self.is_slave() || shared.epoch_durable() || !shared.store.is_ready() {
            return;
        }
        let (start, end) = (shared.epochs.current().start, shared.store.write_pos().0);
        assert!(end <= start, "the master wrote up to {end} in an epoch from {start} not recorded yet");
    }

    /// The master's services that write to the log see what became durable and go on.
    fn settle_writers(&mut self, now: Now) {
        // A delivery counts once it is as safe as a send would be: what consumers may see
        // (in controller mode, only what every SyncStateSet member holds: the progress a
        // slave copies must not claim a delivery a failover takes back).
        let durable_end = self.shared.store.consumable_end();
        self.delay.settle(durable_end, now.wall);
        self.delay.watch(&self.shared.store, now);
        self.timers.settle(durable_end);
        self.timers.watch(&self.shared.store, now);
        // Transaction state is the broker's own promise (at most `transactionCheckMax`
        // checks, a checkpoint past ends only): it waits for the fsync in either flush mode,
        // or a power loss could undo a check copy whose check went out, and count it again
        // (and, in controller mode, for the SyncStateSet, or a failover could).
        let flushed_end = self.shared.store.flushed_end().min(durable_end);
        self.transactions.settle(&mut self.shared, &mut self.consumers, now, flushed_end);
        // Pop offsets and revive's progress pass a checkpoint or ack only once it is
        // fsynced: the offsets file must never claim a batch whose checkpoint a power loss
        // could take back.
        self.pop.settle(&mut self.shared, &mut self.consumers, now, flushed_end);
    }
}

/// The counters behind the runtime info's rates, by the `admin::RATE_*` indexes.
fn rate_counters(stats: &BrokerStats, timers: &TimerService) -> [u64; 4] {
    [stats.messages_put, stats.messages_got, timers.state.next_offset(), timers.delivered]
}

impl Machine for Broker {
    fn handle(&mut self, now: Now, input: Input) {
        self.admin.sample(now, rate_counters(&self.shared.stats, &self.timers));
        match input {
            Input::ConnOpened { conn, kind: ConnKind::Replication, .. } if conn.is_outbound() => {
                self.ha_client.opened(&mut self.shared, now, conn);
            }
            Input::ConnOpened { conn, peer, kind: ConnKind::Replication } => {
                self.replication.opened(&mut self.shared, now, conn, peer);
            }
            Input::ConnOpened { conn, peer, kind: ConnKind::Remoting } => {
                self.shared.conns.open(conn, peer, &mut self.shared.out);
                if self.controller.owns(conn) {
                    self.controller.opened(&mut self.shared, now, conn, self.replica_id);
                } else if self.metadata_sync.owns(conn) {
                    self.metadata_sync.opened(&mut self.shared, now, conn);
                } else if conn.is_outbound() {
                    self.shared.register_now(conn);
                }
            }
            Input::ConnClosed { conn } if self.replication.owns(conn) => {
                self.replication.closed(&mut self.shared, conn)
            }
            Input::ConnClosed { conn } if self.ha_client.owns(conn) => self.ha_client.closed(now, conn),
            Input::Bytes { conn, data, .. } if self.ha_client.owns(conn) => {
                self.ha_client.on_bytes(&mut self.shared, now, conn, &data);
            }
            Input::Bytes { conn, data, .. } if self.replication.owns(conn) => {
                self.replication.on_bytes(&mut self.shared, now, conn, &data);
            }
            Input::ConnClosed { conn } => {
                self.shared.conns.close(conn);
                self.connection_gone(now, conn);
            }
            Input::Bytes { conn, data, received } => {
                self.shared.request_received = received;
                let arrived = self.shared.conns.feed(conn, &data, &mut self.shared.out);
                self.on_received(now, conn, arrived);
            }
            Input::Command { conn, command, received } => {
                self.shared.request_received = received;
                let arrived = self.shared.conns.take_command(conn, command);
                self.on_received(now, conn, arrived);
            }
            Input::DiskDone { io, result } if io.0 >= METADATA_IO_BASE => {
                self.shared.metadata.completed(now.mono, io, &result, &mut self.shared.out);
            }
            Input::DiskDone { io, result } => self.shared.store.handle_disk_done(now, io, result),
            Input::Timeout => self.handle_timeout(now),
        }
        self.settle(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.shared.out.pop_front() {
            return Some(output);
        }
        self.shared.store.start_round();
        self.shared.store.poll_output()
    }

    fn poll_timeout(&self) -> Option<MonoNanos> {
        self.soonest().map(|(at, _)| at)
    }
}
