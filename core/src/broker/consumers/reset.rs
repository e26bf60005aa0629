//! Resetting a group's progress (INVOKE_BROKER_TO_RESET_OFFSET, mqadmin's
//! `resetOffsetByTime`): each queue's new offset is found by store time (or given), stored
//! as the group's committed offset, and made to stick two ways, so any client follows it:
//!
//! - RESET_CONSUMER_CLIENT_OFFSET is pushed to every online member, which restarts those
//!   queues there (Keel's library does; RocketMQ's clients too);
//! - until the group's next pull of a queue, the queue holds a pending reset (RocketMQ 5's
//!   server-side reset): a pull from anywhere else is answered PULL_OFFSET_MOVED to the reset
//!   offset, and offsets the clients commit meanwhile (stale by definition) are ignored.
//!
//! Pending resets live in memory: a restart of the broker drops them, and a client that had
//! not yet followed the push may commit its old position back.

use std::collections::BTreeMap;

use super::{json_ok, Consumers};
use crate::broker::admin::Admin;
use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::protocol::body::{MessageQueue, ResetOffsetBody};
use crate::protocol::headers::{CommandHeader, ResetOffsetRequestHeader};
use crate::protocol::json::{self, KeyStyle};
use crate::protocol::{wire_long, RemotingCommand, RequestCode, FLAG_ONEWAY};
use crate::remoting;

/// (group, topic, queue) → the offset its next pull must start from.
pub(in crate::broker) type PendingResets = BTreeMap<(String, String, i32), u64>;

impl Consumers {
    /// INVOKE_BROKER_TO_RESET_OFFSET.
    pub(in crate::broker) fn on_reset_offset(
        &mut self,
        shared: &mut Shared,
        request: &RemotingCommand,
    ) -> Answer {
        let header = ResetOffsetRequestHeader::decode(&request.ext_fields)?;
        if shared.config.role.is_slave() {
            return Err(Refusal::SlaveNotAvailable("reset offsets on the master".into()));
        }
        let config = shared
            .topics
            .get(&header.topic)
            .ok_or_else(|| Refusal::TopicNotExist(format!("topic[{}] not exist", header.topic)))?;
        if self.groups.get(&header.group).is_none() {
            return Err(Refusal::GroupNotExist(format!("subscription group [{}] not exist", header.group)));
        }
        let one_queue = header.queue_id.filter(|&q| q >= 0);
        let queues: Vec<i32> = match one_queue {
            Some(queue) if queue < config.read_queue_nums => vec![queue],
            Some(queue) => {
                return Err(Refusal::InvalidParameter(format!(
                    "queueId[{queue}] is illegal, topic {} has {} read queues",
                    header.topic, config.read_queue_nums
                )))
            }
            None => (0..config.read_queue_nums.max(0)).collect(),
        };
        let force = header.is_force.unwrap_or(true);
        let mut body = ResetOffsetBody::default();
        for queue in queues {
            let (min, max) =
                shared.store.queue_offsets(&header.topic, queue).map_or((0, 0), |(a, b)| (a.0, b.0));
            let wanted = match (one_queue, header.offset.filter(|&o| o >= 0)) {
                (Some(_), Some(offset)) => u64::try_from(offset).unwrap_or(0).clamp(min, max),
                _ if header.timestamp < 0 => max,
                _ => Admin::offset_at_time(shared, &header.topic, queue, header.timestamp, false),
            };
            let current =
                self.offsets.get(&header.group, &header.topic, queue).and_then(|c| u64::try_from(c).ok());
            // Without force, a reset only moves a group back.
            let target = match current {
                Some(current) if !force && wanted >= current => current,
                _ => wanted,
            };
            let wire = wire_long(target);
            self.commit_offset(&header.group, &header.topic, queue, wire);
            self.pending_resets.insert((header.group.clone(), header.topic.clone(), queue), target);
            body.offset_table
                .insert(MessageQueue::new(&header.topic, &shared.config.broker_name, queue), wire);
        }
        tracing::info!(group = %header.group, topic = %header.topic, queues = body.offset_table.len(), "consumer offsets reset");
        self.push_reset(shared, &header, &body);
        Ok(json_ok(request, &body))
    }

    /// RESET_CONSUMER_CLIENT_OFFSET, oneway, to every online member of the group.
    fn push_reset(&self, shared: &mut Shared, header: &ResetOffsetRequestHeader, body: &ResetOffsetBody) {
        let Some(group) = self.clients.consumer_group(&header.group) else { return };
        let ext = ResetOffsetRequestHeader { queue_id: None, offset: None, ..header.clone() }.to_ext_fields();
        let bytes = json::to_body(body, KeyStyle::Fastjson);
        for conn in group.channels.keys() {
            let mut cmd = RemotingCommand::request(
                RequestCode::RESET_CONSUMER_CLIENT_OFFSET,
                shared.opaque(),
                ext.clone(),
            )
            .with_body(bytes.clone());
            cmd.flag |= FLAG_ONEWAY;
            remoting::send(&mut shared.out, *conn, &cmd);
        }
    }

    /// A pull of `queue` from `offset`: the offset it must restart from instead, if a reset
    /// is pending there and the pull is elsewhere. The pending reset ends with this pull.
    pub(super) fn take_reset(&mut self, group: &str, topic: &str, queue: i32, offset: i64) -> Option<u64> {
        if self.pending_resets.is_empty() {
            return None;
        }
        let target = self.pending_resets.remove(&(group.to_owned(), topic.to_owned(), queue))?;
        (u64::try_from(offset).ok() != Some(target)).then_some(target)
    }

    /// Whether a reset of `queue` is pending (a commit from a client is stale then).
    pub(super) fn reset_pending(&self, group: &str, topic: &str, queue: i32) -> bool {
        !self.pending_resets.is_empty()
            && self.pending_resets.contains_key(&(group.to_owned(), topic.to_owned(), queue))
    }
}
