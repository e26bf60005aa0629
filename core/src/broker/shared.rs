//! What every subsystem of the broker reaches: the store and its reader, the frames going
//! out, the connections, the topic table with its registration on the name servers, the
//! metadata files, the counters, the settings, and the replies waiting for durability.
//! Subsystems own their own state and borrow this one next to it, as str0m's session does.

use crate::broker::refusal::Refusal;
use std::collections::VecDeque;

use super::metadata::MetadataFiles;
use super::registration::NamesrvLinks;
use super::send::durable::{DurableReplies, PendingReply};
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
    pub(super) unique_ids: UniqueIdGenerator,
    pub(super) next_opaque: i32,
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
    /// The next opaque for a request of ours (never 0, which clients treat as unset).
    pub(super) fn opaque(&mut self) -> i32 {
        self.next_opaque = self.next_opaque.wrapping_add(1).max(1);
        self.next_opaque
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

    /// Answer `request` with `reply` once the log reaches `end` (fsynced if `needs_flush`).
    /// A oneway request gets nothing, but keeps its place in line.
    pub(super) fn reply_when_durable(
        &mut self,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
        reply: RemotingCommand,
        end: PhysOffset,
        needs_flush: bool,
    ) {
        let changes = self.metadata.topics.changes();
        let topics_change = if changes == self.topics_before_request { 0 } else { changes };
        self.replies.push(PendingReply {
            conn,
            reply,
            end,
            needs_flush,
            silent: request.is_oneway(),
            since: now.mono,
            topics_change,
        });
    }

    /// Send every reply whose data is now durable enough, in order.
    pub(super) fn release_replies(&mut self) {
        let (written, flushed) = (self.store.written_end(), self.store.flushed_end());
        self.replies.release(written, flushed, &self.metadata.topics, &mut self.out);
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
