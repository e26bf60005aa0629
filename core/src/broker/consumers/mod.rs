//! The consumer side of the broker: clients and their heartbeats, subscription groups,
//! committed offsets, orderly consumers' queue locks, and pulls with long polling. It owns
//! that state and serves the request codes about it.

pub mod clients;
pub mod groups;
pub mod offsets;
mod pull;
pub mod queue_locks;
pub mod relay;
mod reset;

use std::collections::BTreeSet;

use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::broker::topics::RETRY_PREFIX;
use crate::io::{ConnId, MonoNanos, Now};
use crate::protocol::body::{ConsumerIdList, HeartbeatData};
use crate::protocol::headers::{
    CommandHeader, ConsumerGroupHeader, OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
pub use clients::{ClientChannel, ClientRegistry};
pub use groups::GroupTable;
pub use offsets::ConsumerOffsets;
pub use pull::PullHold;
pub use queue_locks::QueueLocks;

/// How often client expiry is checked.
const CLIENT_SCAN_MS: u64 = 10_000;
/// How often committed offsets are persisted (`flushConsumerOffsetInterval`).
const OFFSET_PERSIST_MS: u64 = 5_000;

/// Consumers' state: who is connected, their groups, their offsets, locks and held pulls.
#[derive(Debug)]
pub(super) struct Consumers {
    pub(super) clients: ClientRegistry,
    pub(super) groups: GroupTable,
    pub(super) offsets: ConsumerOffsets,
    /// Offsets committed since the last persist.
    offsets_changed: bool,
    /// On a slave: (group, topic, queue) committed here since the master's offsets were
    /// last copied; reconciled with them then (`None` on a master).
    pub(super) committed_here: Option<BTreeSet<(String, String, i32)>>,
    pub(super) locks: QueueLocks,
    pub(super) holds: Vec<PullHold>,
    /// Resets waiting for their queue's next pull.
    pending_resets: reset::PendingResets,
    /// Tools' questions waiting for clients' answers.
    relays: relay::Relays,
    next_client_scan: MonoNanos,
    next_offset_persist: MonoNanos,
}

impl Consumers {
    /// Consumers' state over loaded `groups` and `offsets`.
    pub(super) fn new(
        groups: GroupTable,
        offsets: ConsumerOffsets,
        locks: QueueLocks,
        now: MonoNanos,
    ) -> Self {
        Self {
            clients: ClientRegistry::default(),
            groups,
            offsets,
            offsets_changed: false,
            committed_here: None,
            locks,
            holds: Vec::new(),
            pending_resets: reset::PendingResets::new(),
            relays: relay::Relays::new(),
            next_client_scan: now.plus_millis(CLIENT_SCAN_MS),
            next_offset_persist: now.plus_millis(OFFSET_PERSIST_MS),
        }
    }

    /// When it next needs a timeout: the client scan, the offset persist, or a held pull's
    /// time running out.
    pub(super) fn poll_timeout(&self) -> MonoNanos {
        let periodic = self.next_client_scan.min(self.next_offset_persist);
        let periodic = self.relay_deadline().map_or(periodic, |d| d.min(periodic));
        self.holds.iter().map(|h| h.deadline).fold(periodic, MonoNanos::min)
    }

    /// Mark the offsets for persisting and expire silent clients, when each is due (held
    /// pulls are answered as the broker settles, after every input).
    pub(super) fn handle_timeout(&mut self, shared: &mut Shared, now: Now) {
        self.expire_relays(shared, now.mono, None);
        if now.mono >= self.next_offset_persist {
            self.next_offset_persist = now.mono.plus_millis(OFFSET_PERSIST_MS);
            shared.metadata.offsets.mark_dirty_if(self.offsets_changed);
            self.offsets_changed = false;
        }
        if now.mono >= self.next_client_scan {
            let (conns, changed) = self.clients.expire(now.mono, shared.config.client_expiry_ms);
            for conn in conns {
                tracing::info!(?conn, "client expired: no heartbeat");
            }
            self.notify_consumer_ids_changed(shared, &changed);
            self.locks.sweep(now.mono);
            self.next_client_scan = now.mono.plus_millis(CLIENT_SCAN_MS);
        }
    }

    /// Commit a consumer offset; it is persisted with the next round.
    pub(super) fn commit_offset(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.offsets.commit(group, topic, queue_id, offset);
        self.offsets_changed = true;
        if let Some(here) = &mut self.committed_here {
            here.insert((group.to_owned(), topic.to_owned(), queue_id));
        }
    }

    /// Forget the offsets of a deleted topic.
    pub(super) fn remove_topic(&mut self, topic: &str) {
        self.offsets.remove_topic(topic);
        self.offsets_changed = true;
    }

    /// A connection closed: forget its held pulls and its clients.
    pub(super) fn connection_gone(&mut self, shared: &mut Shared, conn: ConnId) {
        self.holds.retain(|hold| hold.conn != conn);
        self.expire_relays(shared, MonoNanos(0), Some(conn));
        let changed = self.clients.connection_closed(conn);
        self.notify_consumer_ids_changed(shared, &changed);
    }

    /// Tell every consumer of each group that its membership changed.
    fn notify_consumer_ids_changed(&self, shared: &mut Shared, groups: &[String]) {
        for group in groups {
            let ext: ExtFields = [("consumerGroup", group.as_str())].into_iter().collect();
            for conn in self.clients.consumer_conns(group) {
                shared.send_request(conn, RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, ext.clone(), true);
            }
        }
    }

    /// HEART_BEAT: register the client's producers and consumers.
    pub(super) fn on_heartbeat(
        &mut self,
        shared: &mut Shared,
        now: Now,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Answer {
        let data: HeartbeatData = json::from_slice(&request.body)
            .map_err(|e| Refusal::SystemError(format!("bad heartbeat: {e}")))?;
        for consumer in &data.consumer_data_set {
            // A group that may not exist or consume finds out on its pulls.
            let _ = self.check_group(shared, now, &consumer.group_name);
            if consumer.message_model != "BROADCASTING" {
                let retry = format!("{RETRY_PREFIX}{}", consumer.group_name);
                shared.ensure_group_topic(now, &retry);
            }
        }
        let changed = self.clients.heartbeat(now.mono, conn, &data, request.language, request.version);
        self.notify_consumer_ids_changed(shared, &changed);
        // The reply's version is the broker's: clients cache it and gate features on it.
        Ok(ok(request))
    }

    /// UNREGISTER_CLIENT.
    pub(super) fn on_unregister_client(
        &mut self,
        shared: &mut Shared,
        conn: ConnId,
        request: &RemotingCommand,
    ) -> Answer {
        let header = UnregisterClientRequestHeader::decode(&request.ext_fields)?;
        let changed =
            self.clients.unregister(conn, header.producer_group.as_deref(), header.consumer_group.as_deref());
        self.notify_consumer_ids_changed(shared, &changed);
        Ok(ok(request))
    }

    /// GET_CONSUMER_LIST_BY_GROUP.
    pub(super) fn on_consumer_list(&self, request: &RemotingCommand) -> Answer {
        let header = ConsumerGroupHeader::decode(&request.ext_fields)?;
        let ids = self.clients.consumer_ids(&header.consumer_group);
        if ids.is_empty() {
            return Err(Refusal::SystemError(format!(
                "no consumer for this group, {}",
                header.consumer_group
            )));
        }
        let body = json::to_body(&ConsumerIdList { consumer_id_list: ids }, KeyStyle::Fastjson);
        Ok(ok(request).with_body(body))
    }

    /// QUERY_CONSUMER_OFFSET.
    pub(super) fn on_query_offset(&self, shared: &Shared, request: &RemotingCommand) -> Answer {
        let header = QueryConsumerOffsetRequestHeader::decode(&request.ext_fields)?;
        let stored = self.offsets.get(&header.consumer_group, &header.topic, header.queue_id);
        let offset = match stored {
            Some(offset) if offset >= 0 => offset,
            // Like Java: a new group on a queue that never lost messages starts at 0;
            // otherwise QUERY_NOT_FOUND lets the client apply its ConsumeFromWhere.
            _ => {
                let min =
                    shared.store.queue_offsets(&header.topic, header.queue_id).map_or(0, |(min, _)| min.0);
                if header.set_zero_if_not_found == Some(false) || min > 0 {
                    return Err(Refusal::QueryNotFound(
                        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first".into(),
                    ));
                }
                0
            }
        };
        Ok(offset_reply(request, offset))
    }

    /// UPDATE_CONSUMER_OFFSET.
    pub(super) fn on_update_offset(&mut self, request: &RemotingCommand) -> Answer {
        let header = UpdateConsumerOffsetRequestHeader::decode(&request.ext_fields)?;
        // A client still at its old position while a reset is pending: not taken.
        if !self.reset_pending(&header.consumer_group, &header.topic, header.queue_id) {
            self.commit_offset(&header.consumer_group, &header.topic, header.queue_id, header.commit_offset);
        }
        Ok(ok(request))
    }
}

/// A SUCCESS reply with nothing in it.
pub(super) fn ok(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::SUCCESS, None)
}

/// A SUCCESS reply carrying `body` as fastjson-dialect JSON.
pub(in crate::broker) fn json_ok(request: &RemotingCommand, body: &impl serde::Serialize) -> RemotingCommand {
    ok(request).with_body(crate::protocol::json::to_body(body, crate::protocol::json::KeyStyle::Fastjson))
}

/// A reply carrying a queue offset.
pub(super) fn offset_reply(request: &RemotingCommand, offset: i64) -> RemotingCommand {
    let mut reply = RemotingCommand::response_to(request, ResponseCode::SUCCESS, None);
    reply.ext_fields = OffsetResponseHeader { offset }.to_ext_fields();
    reply
}
