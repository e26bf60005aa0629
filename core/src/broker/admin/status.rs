//! What the operator tools ask of a broker's progress: a topic's queue ranges
//! (GET_TOPIC_STATS_INFO), a group's progress and lag (GET_CONSUME_STATS), who is
//! connected (GET_CONSUMER_CONNECTION_LIST, GET_PRODUCER_CONNECTION_LIST) and who consumes a
//! topic (QUERY_TOPIC_CONSUME_BY_WHO), in RocketMQ's bodies so its mqadmin reads them.

use std::collections::{BTreeMap, BTreeSet};

use super::Admin;
use crate::broker::consumers::{json_ok, ClientChannel, Consumers};
use crate::broker::refusal::Refusal;
use crate::broker::shared::{Answer, Shared};
use crate::io::ConnId;
use crate::protocol::body::{
    Connection, ConsumeStats, ConsumerConnection, GroupList, MessageQueue, OffsetWrapper, ProducerConnection,
    TopicOffset, TopicStatsTable,
};
use crate::protocol::headers::{
    CommandHeader, ConsumerGroupRequestHeader, GetConsumeStatsRequestHeader, ProducerGroupRequestHeader,
    TopicRequestHeader,
};
use crate::protocol::{wire_long, RemotingCommand};

impl Admin {
    /// Every written queue of a topic: its offset range and the store time of its newest
    /// message.
    pub(in crate::broker) fn on_topic_stats(shared: &Shared, request: &RemotingCommand) -> Answer {
        let header = TopicRequestHeader::decode(&request.ext_fields)?;
        let config = shared
            .topics
            .get(&header.topic)
            .ok_or_else(|| Refusal::TopicNotExist(format!("topic[{}] not exist", header.topic)))?;
        let mut table = TopicStatsTable::default();
        for queue_id in 0..config.write_queue_nums.max(0) {
            let (min, max) =
                shared.store.queue_offsets(&header.topic, queue_id).map_or((0, 0), |(a, b)| (a.0, b.0));
            let last_update_timestamp = if max > min {
                Self::store_time(shared, &header.topic, queue_id, max - 1).unwrap_or(0)
            } else {
                0
            };
            table.offset_table.insert(
                MessageQueue::new(&header.topic, &shared.config.broker_name, queue_id),
                TopicOffset { last_update_timestamp, max_offset: wire_long(max), min_offset: wire_long(min) },
            );
        }
        Ok(json_ok(request, &table))
    }

    /// A group's progress in the topics asked for (or every topic it has committed in or
    /// subscribes to): per readable queue, the queue's end, the group's committed offset and
    /// the store time of the last message it consumed.
    pub(in crate::broker) fn on_consume_stats(
        shared: &Shared,
        consumers: &Consumers,
        request: &RemotingCommand,
    ) -> Answer {
        let header = GetConsumeStatsRequestHeader::decode(&request.ext_fields)?;
        let group = header.consumer_group.as_str();
        let mut topics: BTreeSet<String> = BTreeSet::new();
        if let Some(list) = &header.topic_list {
            topics.extend(list.split(';').filter(|t| !t.is_empty()).map(str::to_owned));
        }
        if let Some(topic) = header.topic.as_ref().filter(|t| !t.is_empty()) {
            topics.insert(topic.clone());
        }
        if topics.is_empty() {
            topics.extend(consumers.offsets.topics_of(group));
            if let Some(online) = consumers.clients.consumer_group(group) {
                topics.extend(online.subscriptions.keys().cloned());
            }
        }
        let mut stats = ConsumeStats::default();
        for topic in &topics {
            let Some(config) = shared.topics.get(topic) else { continue };
            for queue_id in 0..config.read_queue_nums.max(0) {
                let max = shared.store.queue_offsets(topic, queue_id).map_or(0, |(_, max)| max.0);
                let committed = consumers.offsets.get(group, topic, queue_id).unwrap_or(0).max(0);
                let last_timestamp = u64::try_from(committed)
                    .ok()
                    .filter(|&c| c > 0)
                    .and_then(|c| Self::store_time(shared, topic, queue_id, c - 1))
                    .unwrap_or(0);
                stats.offset_table.insert(
                    MessageQueue::new(topic, &shared.config.broker_name, queue_id),
                    OffsetWrapper {
                        broker_offset: wire_long(max),
                        consumer_offset: committed,
                        last_timestamp,
                        pull_offset: committed,
                    },
                );
            }
        }
        Ok(json_ok(request, &stats))
    }

    /// The members of an online consumer group, with how it consumes and what.
    pub(in crate::broker) fn on_consumer_connections(
        shared: &Shared,
        consumers: &Consumers,
        request: &RemotingCommand,
    ) -> Answer {
        let header = ConsumerGroupRequestHeader::decode(&request.ext_fields)?;
        let group = consumers
            .clients
            .consumer_group(&header.consumer_group)
            .ok_or_else(|| Refusal::ConsumerNotOnline("the consumer group not online".into()))?;
        let body = ConsumerConnection {
            connection_set: connections(shared, &group.channels),
            consume_from_where: group.consume_from_where.clone(),
            consume_type: group.consume_type.clone(),
            message_model: group.message_model.clone(),
            subscription_table: group.subscriptions.clone(),
        };
        Ok(json_ok(request, &body))
    }

    /// The connections of an online producer group.
    pub(in crate::broker) fn on_producer_connections(
        shared: &Shared,
        consumers: &Consumers,
        request: &RemotingCommand,
    ) -> Answer {
        let header = ProducerGroupRequestHeader::decode(&request.ext_fields)?;
        let channels = consumers.clients.producer_group(&header.producer_group).ok_or_else(|| {
            Refusal::SystemError(format!("the producer group[{}] not exist", header.producer_group))
        })?;
        Ok(json_ok(request, &ProducerConnection { connection_set: connections(shared, channels) }))
    }

    /// The groups consuming a topic: online subscribers and groups with committed offsets.
    pub(in crate::broker) fn on_consume_by_who(consumers: &Consumers, request: &RemotingCommand) -> Answer {
        let header = TopicRequestHeader::decode(&request.ext_fields)?;
        let mut groups: BTreeSet<String> = consumers.offsets.groups_of(&header.topic).into_iter().collect();
        groups.extend(consumers.clients.groups_subscribing(&header.topic).map(str::to_owned));
        Ok(json_ok(request, &GroupList { group_list: groups.into_iter().collect() }))
    }
}

/// One [`Connection`] per channel still open, with its peer's address.
fn connections(shared: &Shared, channels: &BTreeMap<ConnId, ClientChannel>) -> Vec<Connection> {
    channels
        .iter()
        .map(|(conn, channel)| Connection {
            client_addr: shared.conns.get(*conn).map(|c| c.peer.to_string()).unwrap_or_default(),
            client_id: channel.client_id.clone(),
            language: channel.language.json_name().to_owned(),
            version: channel.version,
        })
        .collect()
}
