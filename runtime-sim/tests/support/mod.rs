//! Shared by the broker scenario tests: a broker on a `SimDisk` with one client connected,
//! and the client requests they send.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;

use bytes::Bytes;
use keel_core::broker::BrokerConfig;
use keel_core::io::{ConnId, MonoNanos, Now, UnixMillis};
use keel_core::protocol::client_requests::{
    pull_message, pulled_records, send_message, OutgoingMessage, PullRequest,
};
use keel_core::protocol::message::properties;
use keel_core::protocol::RemotingCommand;
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};

pub mod replica_pair;

pub const CLIENT: ConnId = ConnId(1);
pub const OTHER: ConnId = ConnId(2);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn start() -> Now {
    Now { mono: MonoNanos(1_000_000_000), wall: UnixMillis(1_790_000_000_000) }
}

pub fn config(flush: FlushMode) -> BrokerConfig {
    let mut config = BrokerConfig::new(addr("10.0.0.1:10911"));
    config.namesrv_addrs = vec![addr("10.0.0.9:9876")];
    config.default_topic_queue_nums = 4;
    config.store.segment_size = 64 * 1024;
    config.store.queue_file_entries = 64;
    config.store.index = keel_runtime_sim::profile::tiny_index(3);
    config.store.flush_mode = flush;
    config
}

pub fn boot(config: BrokerConfig, disk: SharedDisk) -> BrokerNode {
    let (mut node, _) = BrokerNode::boot(config, disk, start()).expect("boot");
    node.open(CLIENT, addr("10.0.0.50:40000"));
    node
}

pub fn send(opaque: i32, topic: &str, queue: i32, tag: &str, body: &str) -> RemotingCommand {
    let message = OutgoingMessage {
        topic: topic.into(),
        tags: Some(tag.into()),
        keys: Some(body.into()),
        body: Bytes::copy_from_slice(body.as_bytes()),
        ..OutgoingMessage::default()
    };
    send_message(opaque, "pg", queue, &message)
}

pub fn pull(
    opaque: i32,
    topic: &str,
    queue: i32,
    offset: i64,
    expression: &str,
    suspend: bool,
) -> RemotingCommand {
    let request = PullRequest {
        group: "cg".into(),
        topic: topic.into(),
        queue_id: queue,
        offset,
        max_messages: 32,
        expression: expression.into(),
        suspend_ms: if suspend { 15_000 } else { 0 },
    };
    pull_message(opaque, &request)
}

/// (queue offset, tag, body) of every message in a pull reply.
pub fn messages(reply: &RemotingCommand) -> Vec<(i64, String, String)> {
    pulled_records(&reply.body)
        .expect("pull body")
        .iter()
        .map(|record| {
            let tag = properties::find(record.record.properties, "TAGS")
                .map(|t| String::from_utf8_lossy(t).into_owned());
            (
                record.head().queue_offset,
                tag.unwrap_or_default(),
                String::from_utf8_lossy(record.record.body).into_owned(),
            )
        })
        .collect()
}

/// Bodies in `topic` queue 0, in offset order (none if the pull is refused).
pub fn queue_bodies(node: &mut BrokerNode, opaque: i32, topic: &str) -> Vec<String> {
    let reply = node.call(CLIENT, &pull(opaque, topic, 0, 0, "*", false));
    if reply.response_code() != keel_core::protocol::ResponseCode::SUCCESS {
        return Vec::new();
    }
    pulled_records(&reply.body)
        .expect("pull body")
        .iter()
        .map(|r| String::from_utf8_lossy(r.record.body).into_owned())
        .collect()
}

/// Every record of `topic` queue 0, pulled from offset 0: (body, store timestamp).
pub fn drain_queue(node: &mut BrokerNode, topic: &str) -> Vec<(String, i64)> {
    let mut offset = 0;
    let mut got = Vec::new();
    loop {
        let opaque = 100_000 + i32::try_from(offset).unwrap_or(0);
        let reply = node.call(CLIENT, &pull(opaque, topic, 0, offset, "*", false));
        if reply.response_code() != keel_core::protocol::ResponseCode::SUCCESS {
            return got;
        }
        let records = pulled_records(&reply.body).expect("pull body");
        offset += i64::try_from(records.len()).unwrap_or(0);
        got.extend(
            records
                .iter()
                .map(|r| (String::from_utf8_lossy(r.record.body).into_owned(), r.head().store_timestamp)),
        );
    }
}

/// The largest body size in `low..high` whose request, `send(size)`, a fresh broker accepts
/// (`low` must be accepted, `high` not).
pub fn largest_accepted_body(
    mut low: usize,
    mut high: usize,
    send: impl Fn(usize) -> RemotingCommand,
) -> usize {
    while high - low > 1 {
        let mid = (low + high) / 2;
        let mut node = boot(config(FlushMode::Async { interval_ms: 200 }), SharedDisk::default());
        if node.call(CLIENT, &send(mid)).response_code() == keel_core::protocol::ResponseCode::SUCCESS {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

/// The broker's GET_BROKER_RUNTIME_INFO table.
pub fn runtime_info(node: &mut BrokerNode, opaque: i32) -> std::collections::BTreeMap<String, String> {
    use keel_core::protocol::{ExtFields, RequestCode};
    let request = RemotingCommand::request(RequestCode::GET_BROKER_RUNTIME_INFO, opaque, ExtFields::new());
    let reply = node.call(CLIENT, &request);
    let table: keel_core::protocol::body::KvTable =
        keel_core::protocol::json::from_slice(&reply.body).expect("a KVTable body");
    table.table
}

/// A send to `topic` queue 0 carrying one property `key=value` (a delay level, a timer).
pub fn timed(opaque: i32, topic: &str, key: &str, value: &str, body: &str) -> RemotingCommand {
    let message = OutgoingMessage {
        topic: topic.into(),
        tags: Some("T".into()),
        user_properties: vec![(key.into(), value.into())],
        body: body.as_bytes().to_vec().into(),
        ..OutgoingMessage::default()
    };
    send_message(opaque, "pg", 0, &message)
}

/// UPDATE_CONSUMER_OFFSET for group `cg`.
pub fn commit_offset(opaque: i32, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    use keel_core::protocol::headers::{CommandHeader, UpdateConsumerOffsetRequestHeader};
    let header = UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        commit_offset: offset,
    };
    RemotingCommand::request(
        keel_core::protocol::RequestCode::UPDATE_CONSUMER_OFFSET,
        opaque,
        header.to_ext_fields(),
    )
}
