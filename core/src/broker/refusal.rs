//! Why the broker refuses a request. Each kind is a response code a client acts on (retry
//! on another broker, wait, create the topic, give up) and carries the remark it shows;
//! a handler cannot answer a refusal with a code that is not one.

use crate::protocol::headers::HeaderError;
use crate::protocol::{RemotingCommand, ResponseCode};
use crate::store::StoreError;

/// A refused request: the kind gives the response code, the text the remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// SYSTEM_ERROR: what RocketMQ answers with it, a header or body that does not decode,
    /// a message that cannot be found, a group without consumers.
    SystemError(String),
    /// SYSTEM_BUSY: shed under load, or not ready for it yet.
    Busy(String),
    /// INVALID_PARAMETER: a topic name, queue or count out of range.
    InvalidParameter(String),
    /// MESSAGE_ILLEGAL: a message that cannot be stored as sent.
    MessageIllegal(String),
    /// NO_PERMISSION: the topic, group or broker does not allow it.
    NoPermission(String),
    /// TOPIC_NOT_EXIST.
    TopicNotExist(String),
    /// SUBSCRIPTION_GROUP_NOT_EXIST.
    GroupNotExist(String),
    /// SUBSCRIPTION_NOT_EXIST: the pull's group or subscription is not registered.
    SubscriptionNotExist(String),
    /// SUBSCRIPTION_NOT_LATEST.
    SubscriptionNotLatest(String),
    /// SUBSCRIPTION_PARSE_FAILED: a filter this broker cannot apply.
    SubscriptionParseFailed(String),
    /// QUERY_NOT_FOUND: no committed offset (the client applies its ConsumeFromWhere).
    QueryNotFound(String),
    /// SERVICE_NOT_AVAILABLE: the store cannot take writes now; clients retry elsewhere.
    ServiceNotAvailable(String),
    /// SLAVE_NOT_AVAILABLE: only a master does it.
    SlaveNotAvailable(String),
    /// CONSUMER_NOT_ONLINE: no member of the group is connected.
    ConsumerNotOnline(String),
    /// ILLEGAL_OPERATION: a request that names what cannot be done (a recall handle that
    /// does not read, or names another topic or broker, or a time past).
    IllegalOperation(String),
}

impl Refusal {
    /// The response code a client reads.
    #[must_use]
    pub fn code(&self) -> ResponseCode {
        match self {
            Self::SystemError(_) => ResponseCode::SYSTEM_ERROR,
            Self::Busy(_) => ResponseCode::SYSTEM_BUSY,
            Self::InvalidParameter(_) => ResponseCode::INVALID_PARAMETER,
            Self::MessageIllegal(_) => ResponseCode::MESSAGE_ILLEGAL,
            Self::NoPermission(_) => ResponseCode::NO_PERMISSION,
            Self::TopicNotExist(_) => ResponseCode::TOPIC_NOT_EXIST,
            Self::GroupNotExist(_) => ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST,
            Self::SubscriptionNotExist(_) => ResponseCode::SUBSCRIPTION_NOT_EXIST,
            Self::SubscriptionNotLatest(_) => ResponseCode::SUBSCRIPTION_NOT_LATEST,
            Self::SubscriptionParseFailed(_) => ResponseCode::SUBSCRIPTION_PARSE_FAILED,
            Self::QueryNotFound(_) => ResponseCode::QUERY_NOT_FOUND,
            Self::ServiceNotAvailable(_) => ResponseCode::SERVICE_NOT_AVAILABLE,
            Self::SlaveNotAvailable(_) => ResponseCode::SLAVE_NOT_AVAILABLE,
            Self::ConsumerNotOnline(_) => ResponseCode::CONSUMER_NOT_ONLINE,
            Self::IllegalOperation(_) => ResponseCode::ILLEGAL_OPERATION,
        }
    }

    /// The remark a client shows.
    #[must_use]
    pub fn remark(&self) -> &str {
        match self {
            Self::SystemError(remark)
            | Self::Busy(remark)
            | Self::InvalidParameter(remark)
            | Self::MessageIllegal(remark)
            | Self::NoPermission(remark)
            | Self::TopicNotExist(remark)
            | Self::GroupNotExist(remark)
            | Self::SubscriptionNotExist(remark)
            | Self::SubscriptionNotLatest(remark)
            | Self::SubscriptionParseFailed(remark)
            | Self::QueryNotFound(remark)
            | Self::ServiceNotAvailable(remark)
            | Self::SlaveNotAvailable(remark)
            | Self::ConsumerNotOnline(remark)
            | Self::IllegalOperation(remark) => remark,
        }
    }

    /// The error reply to `request`.
    #[must_use]
    pub fn reply_to(&self, request: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::response_to(request, self.code(), Some(self.remark().to_owned()))
    }
}

impl From<HeaderError> for Refusal {
    fn from(error: HeaderError) -> Self {
        Self::SystemError(error.to_string())
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        let remark = error.to_string();
        match error {
            // RocketMQ answers a full disk with SERVICE_NOT_AVAILABLE too; clients retry it
            // on another broker.
            StoreError::NotReady
            | StoreError::ShutDown
            | StoreError::Failed(_)
            | StoreError::DiskFull { .. }
            | StoreError::Repairing
            | StoreError::Replica
            // A replica's own disagreement with its master: never a client's request's fault.
            | StoreError::Diverged { .. } => Self::ServiceNotAvailable(remark),
            StoreError::BadTopic(_) => Self::InvalidParameter(remark),
            StoreError::BodyTooLarge { .. }
            | StoreError::TooLargeForSegment(_)
            | StoreError::Record(_)
            | StoreError::OffsetOverflow => Self::MessageIllegal(remark),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_replies_with_its_code_and_remark() {
        let request = RemotingCommand::request(crate::protocol::RequestCode(10), 9, Default::default());
        let reply = Refusal::TopicNotExist("topic[T] not exist".into()).reply_to(&request);
        assert_eq!((reply.code, reply.opaque), (ResponseCode::TOPIC_NOT_EXIST.0, 9));
        assert_eq!(reply.remark.as_deref(), Some("topic[T] not exist"));
        assert_eq!(Refusal::from(StoreError::NotReady).code(), ResponseCode::SERVICE_NOT_AVAILABLE);
    }
}
