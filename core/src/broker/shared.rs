//! What every subsystem of the broker reaches: the store and its reader, the frames going
//! out, the connections, the topic table with its registration on the name servers, the
//! metadata files, the counters, the settings, and the replies waiting for durability.
//! Subsystems own their own state and borrow this one next to it, as str0m's session does.

use crate::broker::refusal::Refusal;
use std::collections::VecDeque;

use super::metadata::MetadataFiles;
use super::registration::NamesrvLinks;
use super::send::durable::{DurableReplies, PendingReply, ReleaseEnds, Wait};
use super::{BrokerConfig, BrokerStats, TopicTable};
use crate::io::{ConnId, MonoNanos, Now, Output, StoreRead, UnixMillis};
use crate::protocol::body::TopicConfig;
use crate::protocol::message::message_id::UniqueIdGenerator;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{sys_flag, RecordView};
use crate::protocol::{ExtFields, RemotingCommand, RequestCode};
use crate::remoting::{self, ConnectionTable};
use crate::store::{AppendRequest, PhysOffset, Store, StoreError};

/// The broker's common state, borrowed by every subsystem.
pub(super) struct Shared {
    pub(super) config: BrokerConfig,
    pub(super) store: Store,
    pub(super) reader: Box<dyn StoreRead + Send>,
    pub(super) conns: ConnectionTable,
    pub(super) out: VecDeque<Output>,
    pub(super) topics: TopicTable,
    pub(super) namesrvs: NamesrvLinks,
    pub(super) metadata: MetadataFiles,
    pub(super) stats: BrokerStats,
    /// Traffic by topic and group, and request latency, for the metrics.
    pub(super) traffic: super::traffic::Traffic,
    pub(super) unique_ids: UniqueIdGenerator,
    pub(super) next_opaque: i32,
    /// The newest CommitLog end a streaming slave reported holding (`None`: no slave
    /// streams): what a SYNC_MASTER's replies wait for.
    pub(super) slave_acked: Option<PhysOffset>,
    /// A master in controller mode: the log every SyncStateSet member holds, with the epoch
    /// it was reckoned in (it only grows within one).
    pub(super) confirmed: Option<(u32, PhysOffset)>,
    /// A master in controller mode whose controller has been silent too long: it takes no
    /// writes (another may have been elected).
    pub(super) lease_lapsed: bool,
    /// Controller mode, on a master: its SyncStateSet as the controller last confirmed it
    /// (broker ids, this broker's included).
    pub(super) sync_state_set: Option<std::collections::BTreeSet<i64>>,
    /// Controller mode, on a master: slaves about to join the SyncStateSet, counted as
    /// members for acknowledgements and the confirmed offset (not for
    /// `minInSyncReplicas`) from before the controller is asked until it has answered, so
    /// a slave the controller may elect holds everything acknowledged or served.
    pub(super) sync_state_joining: std::collections::BTreeSet<i64>,
    /// This broker's id in its set (`brokerId` as configured; a master registers as 0).
    pub(super) replica_id: i64,
    /// Which master wrote which stretch of this log (`epochs.json`).
    pub(super) epochs: crate::ha::epoch::EpochHistory,
    /// The `epochs.json` change that records this master's current epoch: nothing is
    /// written to the log in an epoch before it is durable, or a crash could keep records
    /// of an epoch the history forgot, and count them as the previous epoch's.
    pub(super) epoch_change: u64,
    /// The store booted and a master's first epoch was recorded: requests are no longer
    /// held (a later epoch, after a rebuild, refuses writes until it is recorded instead).
    pub(super) booted: bool,
    /// The id of the next connection this broker dials (name servers, its master).
    pub(super) next_dial: u64,
    /// Replies waiting for their data to be durable (sends, sends back, transaction ends).
    pub(super) replies: DurableReplies,
    /// The topic table's change count when the request being served arrived: a send that
    /// created its topic waits for `topics.json` (see `PendingReply`).
    pub(super) topics_before_request: u64,
    /// When the runtime read the request being served: a send that waited in line longer
    /// than `send_queue_wait_ms` is refused SYSTEM_BUSY.
    pub(super) request_received: MonoNanos,
}

impl Shared {
    /// The address of the client on `conn` (0.0.0.0:0 once it is gone).
    pub(super) fn peer_of(&self, conn: ConnId) -> core::net::SocketAddr {
        self.conns.get(conn).map_or_else(|| core::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.peer)
    }

    /// The next opaque for a request of ours (never 0, which clients treat as unset).
    pub(super) fn opaque(&mut self) -> i32 {
        self.next_opaque = self.next_opaque.wrapping_add(1).max(1);
        self.next_opaque
    }

    /// Whether this broker may write to its log: a slave always (it copies), a master once
    /// its current epoch is durably recorded.
    pub(super) fn epoch_durable(&self) -> bool {
        self.config.role.is_slave() || self.metadata.epochs.is_durable_through(self.epoch_change)
    }

    /// Whether requests are still held: while the store boots (at a start or after a
    /// rebuild), and at a start until a master's first epoch is recorded.
    pub(super) fn booting(&self) -> bool {
        !self.store.is_ready() || (!self.booted && !self.epoch_durable())
    }

    /// Begin a new epoch at the log's end and have it recorded (a master's start, or its
    /// store rebuilt in place).
    pub(super) fn begin_epoch(&mut self) -> u32 {
        self.begin_epoch_at_least(0)
    }

    /// Begin a new epoch numbered at least `floor` (a controller's master epoch, shifted)
    /// and have it recorded.
    pub(super) fn begin_epoch_at_least(&mut self, floor: u32) -> u32 {
        let epoch = self.epochs.begin_at_least(floor, self.store.write_pos());
        self.metadata.epochs.mark_dirty();
        self.epoch_change = self.metadata.epochs.changes();
        epoch
    }

    /// A fresh id for a connection this broker dials.
    pub(super) fn dial_id(&mut self) -> ConnId {
        let conn = ConnId(self.next_dial);
        self.next_dial += 1;
        conn
    }

    /// Send a request of ours (to a client or a name server), oneway or not.
    pub(super) fn send_request(&mut self, conn: ConnId, code: RequestCode, ext: ExtFields, oneway: bool) {
        let mut cmd = RemotingCommand::request(code, self.opaque(), ext);
        if oneway {
            cmd.flag |= crate::protocol::FLAG_ONEWAY;
        }
        remoting::send(&mut self.out, conn, &cmd);
    }

    /// Create a group's retry or dead-letter topic (one read-write queue) if missing, and
    /// tell the name servers.
    pub(super) fn ensure_group_topic(&mut self, now: Now, topic: &str) {
        if self.topics.get(topic).is_some() {
            return;
        }
        let config = TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            ..TopicConfig::default()
        };
        self.topics.put(config, now.wall);
        self.topics_changed();
    }

    /// Store a copy of a waiting message's record (delayed, timed or transactional) in its
    /// real `topic` and `queue`; returns the CommitLog end of the copy. Java keeps `DELAY`,
    /// `TIMER_*`, `REAL_TOPIC` and `REAL_QID` in the stored properties, and consumers may
    /// look at them; only our CRC tail is replaced by the new record's own. A delayed copy
    /// also gets its due time as `TIMER_OUT_MS`, as RocketMQ 5 gives delay levels run by
    /// its timer.
    pub(super) fn store_copy(
        &mut self,
        now: Now,
        view: &RecordView<'_>,
        topic: &str,
        queue: i32,
        due: Option<UnixMillis>,
    ) -> Result<PhysOffset, StoreError> {
        let mut props = properties::without(view.record.properties, &[keys::CRC32]);
        if let Some(due) = due {
            props = properties::without(&props, &[keys::TIMER_OUT_MS]);
            properties::push(&mut props, keys::TIMER_OUT_MS, &due.0.to_string());
        }
        let appended = self.store.append(now, &copy_request(view, topic, queue, &props))?;
        self.stats.messages_put += 1;
        Ok(appended.end())
    }

    /// Answer `request` with `reply` once the log reaches `end`: fsynced if `wait.flush`,
    /// and on a SYNC_MASTER held by a slave too if `wait.slave` (SLAVE_NOT_AVAILABLE at
    /// once when no slave is in sync). A oneway request gets nothing, but keeps its place.
    pub(super) fn reply_when_durable(
        &mut self,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
        mut reply: RemotingCommand,
        end: PhysOffset,
        wait: Wait,
    ) {
        let changes = self.metadata.topics.changes();
        let topics_change = if changes == self.topics_before_request { 0 } else { changes };
        let mut needs_slave = wait.slave && self.config.role == crate::ha::BrokerRole::SyncMaster;
        if needs_slave && !self.slave_in_sync() {
            // Stored here only: RocketMQ's status for it, with the reply's fields kept.
            reply.code = crate::protocol::ResponseCode::SLAVE_NOT_AVAILABLE.0;
            needs_slave = false;
        }
        self.replies.push(PendingReply {
            conn,
            reply,
            end,
            needs_flush: wait.flush,
            needs_slave,
            silent: request.is_oneway(),
            since: now.mono,
            request: (request.code, self.request_received),
            topics_change,
        });
    }

    /// Controller mode: a SYNC_MASTER whose SyncStateSet is smaller than
    /// `minInSyncReplicas` takes no sends (RocketMQ's IN_SYNC_REPLICAS_NOT_ENOUGH).
    pub(super) fn in_sync_replicas_short(&self) -> Option<String> {
        let min = self.config.ha.min_in_sync_replicas;
        let set = self.sync_state_set.as_ref()?;
        let sync = self.config.role == crate::ha::BrokerRole::SyncMaster;
        (sync && (set.len() as u64) < u64::from(min)).then(|| {
            format!("in-sync replicas not enough: {} in the SyncStateSet, minInSyncReplicas {min}", set.len())
        })
    }

    /// Whether a slave streams and is within `haMaxGapNotInSync` of this log's end.
    fn slave_in_sync(&self) -> bool {
        let gap = self.config.ha.max_gap_not_in_sync;
        self.slave_acked.is_some_and(|held| self.store.write_pos().bytes_since(held) < gap)
    }

    /// How far replies' records have got, now.
    pub(super) fn release_ends(&self, now: Now) -> ReleaseEnds {
        ReleaseEnds {
            written: self.store.written_end(),
            flushed: self.store.flushed_end(),
            slave: if self.store.config().mutated(crate::mutation::Mutation::AckBeforeReplica) {
                Some(PhysOffset(u64::MAX))
            } else {
                self.slave_acked
            },
            now: now.mono,
            slave_wait_ms: self.config.ha.sync_flush_timeout_ms,
        }
    }

    /// Send every reply whose data is now durable enough, in order.
    pub(super) fn release_replies(&mut self, now: Now) {
        let ends = self.release_ends(now);
        self.replies.release(ends, &self.metadata.topics, &mut self.out, &mut self.traffic);
    }
}

/// The CommitLog offset a record read from the store carries: the store serves only
/// records whose PHYSICALOFFSET is where they sit, so it is never negative.
pub(super) fn record_phys(view: &RecordView<'_>) -> PhysOffset {
    let Ok(phys) = u64::try_from(view.head().physical_offset) else {
        panic!("the store served a record claiming offset {}", view.head().physical_offset);
    };
    PhysOffset(phys)
}

/// An append of a copy of the record `view` to `topic`/`queue_id` with `properties`: the
/// same flag, sys flag, birth and retry count (the store stamps host, time and offsets anew).
pub(super) fn copy_request<'a>(
    view: &RecordView<'a>,
    topic: &'a str,
    queue_id: i32,
    properties: &'a [u8],
) -> AppendRequest<'a> {
    AppendRequest {
        topic,
        queue_id,
        flag: view.head().flag,
        sys_flag: view.head().sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6),
        born_timestamp: view.head().born_timestamp,
        born_host: view.head().born_host,
        reconsume_times: view.head().reconsume_times,
        prepared_transaction_offset: 0,
        body: view.record.body,
        properties,
    }
}

/// The real topic and queue a waiting message carries (`REAL_TOPIC`, `REAL_QID`).
pub(super) fn real_destination(props: &[u8]) -> Option<(&str, i32)> {
    let topic = properties::find(props, keys::REAL_TOPIC).and_then(|t| core::str::from_utf8(t).ok())?;
    let queue = properties::find(props, keys::REAL_QID)
        .and_then(|q| core::str::from_utf8(q).ok())
        .and_then(|q| q.parse::<i32>().ok())?;
    Some((topic, queue))
}

/// A handler's answer: a reply, or a refusal to send as an error reply.
pub(super) type Answer = Result<RemotingCommand, Refusal>;
