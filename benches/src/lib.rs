//! Shared fixtures for Keel's criterion benchmarks (`benches/*.rs`).

use bytes::Bytes;
use keel_core::protocol::headers::{CommandHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2};
use keel_core::protocol::{RemotingCommand, RequestCode, SerializeType};

/// A SEND_MESSAGE_V2 request as the Java client sends it, with a body of `body_len` bytes.
#[must_use]
pub fn send_request(body_len: usize, serialize_type: SerializeType) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "benchmark_producer".into(),
        topic: "BenchmarkTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_726_000_000_000,
        flag: 0,
        properties: Some(
            "TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}AC110002004D12345678000003E80000\u{2}".into(),
        ),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    };
    let mut cmd = RemotingCommand::request(
        RequestCode::SEND_MESSAGE_V2,
        42,
        SendMessageRequestHeaderV2::from(header).to_ext_fields(),
    );
    cmd.serialize_type = serialize_type;
    cmd.with_body(Bytes::from(vec![b'x'; body_len]))
}
