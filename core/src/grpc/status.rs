//! The `Status` inside every response, and how remoting response codes map to it.

use super::proto::{Code, Status};
use crate::protocol::ResponseCode;

/// `OK`.
#[must_use]
pub fn ok() -> Status {
    status(Code::Ok, "OK")
}

/// A status of `code` saying `message`.
#[must_use]
pub fn status(code: Code, message: impl Into<String>) -> Status {
    Status { code: code as i32, message: message.into() }
}

/// The status for a broker's remoting answer `code` with `remark`, as RocketMQ's proxy maps
/// them.
#[must_use]
pub fn from_remoting(code: ResponseCode, remark: Option<&str>) -> Status {
    let grpc = match code {
        ResponseCode::SUCCESS => return ok(),
        ResponseCode::FLUSH_DISK_TIMEOUT => Code::MasterPersistenceTimeout,
        ResponseCode::FLUSH_SLAVE_TIMEOUT => Code::SlavePersistenceTimeout,
        ResponseCode::SLAVE_NOT_AVAILABLE => Code::HaNotAvailable,
        ResponseCode::SYSTEM_BUSY => Code::TooManyRequests,
        ResponseCode::TOPIC_NOT_EXIST => Code::TopicNotFound,
        ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST => Code::ConsumerGroupNotFound,
        ResponseCode::NO_PERMISSION => Code::Forbidden,
        ResponseCode::MESSAGE_ILLEGAL | ResponseCode::ILLEGAL_OPERATION => Code::BadRequest,
        ResponseCode::QUERY_NOT_FOUND | ResponseCode::PULL_NOT_FOUND => Code::MessageNotFound,
        _ => Code::InternalError,
    };
    status(grpc, remark.unwrap_or("the broker refused the request"))
}
