//! A bare PULL_MESSAGE and its reply's records, for tests that play the client (the
//! client library pulls through its consumers, `client/consume.rs`).

use super::{PULL_FLAG_SUBSCRIPTION, PULL_FLAG_SUSPEND};
use crate::protocol::headers::{CommandHeader, PullMessageRequestHeader};
use crate::protocol::{RemotingCommand, RequestCode};

/// What a consumer asks a PULL_MESSAGE for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// Queue offset to read from.
    pub offset: i64,
    /// Most messages.
    pub max_messages: i32,
    /// Tag expression (`*`, `TagA || TagB`).
    pub expression: String,
    /// How long the broker may hold it; 0 = answer at once.
    pub suspend_ms: i64,
}

/// PULL_MESSAGE for `request`.
#[must_use]
pub fn pull_message(opaque: i32, request: &PullRequest) -> RemotingCommand {
    let suspend = if request.suspend_ms > 0 { PULL_FLAG_SUSPEND } else { 0 };
    let header = PullMessageRequestHeader {
        consumer_group: request.group.clone(),
        topic: request.topic.clone(),
        queue_id: request.queue_id,
        queue_offset: request.offset,
        max_msg_nums: request.max_messages,
        sys_flag: PULL_FLAG_SUBSCRIPTION | suspend,
        suspend_timeout_millis: request.suspend_ms,
        subscription: Some(request.expression.clone()),
        ..PullMessageRequestHeader::default()
    };
    RemotingCommand::request(RequestCode::PULL_MESSAGE, opaque, header.to_ext_fields())
}
