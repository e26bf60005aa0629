//! Request codes, response codes and language codes as newtypes with named constants.
//!
//! A code is a plain number on the wire and RocketMQ keeps adding new ones, so the types are
//! open: any value round-trips, and the named constants are for the ones we know.

use core::fmt;

/// Declares an open code type: a newtype over an integer, named constants, and a `name()`
/// lookup used by `Debug` (symbolic name, or the number for unknown values).
macro_rules! open_code {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($value); )*

            /// The constant's name, if this value has one.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($konst)), )*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
    };
}

open_code! {
    /// A request code (`RequestCode.java`).
    RequestCode(i32) {
        /// Send with the long (v1) header.
        SEND_MESSAGE = 10,
        /// Pull from a queue, possibly long-polling.
        PULL_MESSAGE = 11,
        /// Query messages by key.
        QUERY_MESSAGE = 12,
        /// Obsolete broker offset query.
        QUERY_BROKER_OFFSET = 13,
        /// A group's committed offset for a queue.
        QUERY_CONSUMER_OFFSET = 14,
        /// Commit a group's offset for a queue.
        UPDATE_CONSUMER_OFFSET = 15,
        /// Create or update a topic.
        UPDATE_AND_CREATE_TOPIC = 17,
        /// Create or update many topics.
        UPDATE_AND_CREATE_TOPIC_LIST = 18,
        /// Every topic config of a broker.
        GET_ALL_TOPIC_CONFIG = 21,
        /// Topic config list.
        GET_TOPIC_CONFIG_LIST = 22,
        /// Topic names.
        GET_TOPIC_NAME_LIST = 23,
        /// Update broker config.
        UPDATE_BROKER_CONFIG = 25,
        /// Read broker config.
        GET_BROKER_CONFIG = 26,
        /// Trigger file deletion.
        TRIGGER_DELETE_FILES = 27,
        /// Runtime statistics of a broker.
        GET_BROKER_RUNTIME_INFO = 28,
        /// Queue offset by store time.
        SEARCH_OFFSET_BY_TIMESTAMP = 29,
        /// A queue's max offset.
        GET_MAX_OFFSET = 30,
        /// A queue's min offset.
        GET_MIN_OFFSET = 31,
        /// Store time of a queue's first message.
        GET_EARLIEST_MSG_STORETIME = 32,
        /// One message by commit-log offset.
        VIEW_MESSAGE_BY_ID = 33,
        /// Client heartbeat with its groups and subscriptions.
        HEART_BEAT = 34,
        /// Client leaves a group.
        UNREGISTER_CLIENT = 35,
        /// A consumer hands back a message it failed to consume.
        CONSUMER_SEND_MSG_BACK = 36,
        /// Commit or roll back a transaction half message.
        END_TRANSACTION = 37,
        /// The client ids of a consumer group.
        GET_CONSUMER_LIST_BY_GROUP = 38,
        /// Broker asks a producer for a transaction's state.
        CHECK_TRANSACTION_STATE = 39,
        /// Broker tells consumers their group changed.
        NOTIFY_CONSUMER_IDS_CHANGED = 40,
        /// Lock queues for orderly consumption.
        LOCK_BATCH_MQ = 41,
        /// Unlock queues.
        UNLOCK_BATCH_MQ = 42,
        /// Every consumer offset (slave sync).
        GET_ALL_CONSUMER_OFFSET = 43,
        /// Every delay-level offset (slave sync).
        GET_ALL_DELAY_OFFSET = 45,
        /// Validate a client's subscription config.
        CHECK_CLIENT_CONFIG = 46,
        /// The timer checkpoint (slave sync).
        GET_TIMER_CHECK_POINT = 60,
        /// Name server key-value put.
        PUT_KV_CONFIG = 100,
        /// Name server key-value get.
        GET_KV_CONFIG = 101,
        /// Name server key-value delete.
        DELETE_KV_CONFIG = 102,
        /// Broker registers with a name server.
        REGISTER_BROKER = 103,
        /// Broker leaves a name server.
        UNREGISTER_BROKER = 104,
        /// Where a topic lives.
        GET_ROUTEINFO_BY_TOPIC = 105,
        /// Clusters and brokers.
        GET_BROKER_CLUSTER_INFO = 106,
        /// Create or update a subscription group.
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200,
        /// Every subscription group.
        GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201,
        /// Per-queue offsets of a topic.
        GET_TOPIC_STATS_INFO = 202,
        /// Connections of a consumer group.
        GET_CONSUMER_CONNECTION_LIST = 203,
        /// Connections of a producer group.
        GET_PRODUCER_CONNECTION_LIST = 204,
        /// Remove write permission of a broker.
        WIPE_WRITE_PERM_OF_BROKER = 205,
        /// Every topic a name server knows.
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206,
        /// Delete a subscription group.
        DELETE_SUBSCRIPTIONGROUP = 207,
        /// Consumption progress of a group.
        GET_CONSUME_STATS = 208,
        /// Delete a topic on a broker.
        DELETE_TOPIC_IN_BROKER = 215,
        /// Delete a topic on a name server.
        DELETE_TOPIC_IN_NAMESRV = 216,
        /// Register a topic on a name server.
        REGISTER_TOPIC_IN_NAMESRV = 217,
        /// Key-values of a namespace.
        GET_KVLIST_BY_NAMESPACE = 219,
        /// Broker tells a consumer to reset its offsets.
        RESET_CONSUMER_CLIENT_OFFSET = 220,
        /// Broker asks a consumer for its status.
        GET_CONSUMER_STATUS_FROM_CLIENT = 221,
        /// Admin resets a group's offsets through the broker.
        INVOKE_BROKER_TO_RESET_OFFSET = 222,
        /// Admin asks the broker for consumer status.
        INVOKE_BROKER_TO_GET_CONSUMER_STATUS = 223,
        /// Topics of a cluster.
        GET_TOPICS_BY_CLUSTER = 224,
        /// Create or update many subscription groups.
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST = 225,
        /// Which groups consume a topic.
        QUERY_TOPIC_CONSUME_BY_WHO = 300,
        /// Consume time span of a group on a topic.
        QUERY_CONSUME_TIME_SPAN = 303,
        /// System topics from a name server.
        GET_SYSTEM_TOPIC_LIST_FROM_NS = 304,
        /// System topics from a broker.
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER = 305,
        /// Clean expired consume queues.
        CLEAN_EXPIRED_CONSUMEQUEUE = 306,
        /// Running info of a consumer (forwarded to the client).
        GET_CONSUMER_RUNNING_INFO = 307,
        /// Correction offset query.
        QUERY_CORRECTION_OFFSET = 308,
        /// Consume one message directly on a client.
        CONSUME_MESSAGE_DIRECTLY = 309,
        /// Send with the short (v2) header.
        SEND_MESSAGE_V2 = 310,
        /// Send a batch of messages.
        SEND_BATCH_MESSAGE = 320,
        /// Query a consume queue.
        QUERY_CONSUME_QUEUE = 321,
        /// Broker asks a name server whether its data changed.
        QUERY_DATA_VERSION = 322,
        /// Send a reply message (v1 header).
        SEND_REPLY_MESSAGE = 324,
        /// Send a reply message (v2 header).
        SEND_REPLY_MESSAGE_V2 = 325,
        /// Broker pushes a reply to the requester.
        PUSH_REPLY_MESSAGE_TO_CLIENT = 326,
        /// Restore write permission of a broker.
        ADD_WRITE_PERM_OF_BROKER = 327,
        /// A topic's config.
        GET_TOPIC_CONFIG = 351,
        /// A subscription group's config.
        GET_SUBSCRIPTIONGROUP_CONFIG = 352,
        /// Pull for the lite pull consumer.
        LITE_PULL_MESSAGE = 361,
        /// Recall a timed message before it is due (5.3.2+).
        RECALL_MESSAGE = 370,
        /// Server-side queue assignment.
        QUERY_ASSIGNMENT = 400,
        /// Lightweight broker keep-alive to a name server.
        BROKER_HEARTBEAT = 904,
        /// A broker's replication state (`mqadmin haStatus`).
        GET_BROKER_HA_STATUS = 907,
        /// A master grows or shrinks its SyncStateSet.
        CONTROLLER_ALTER_SYNC_STATE_SET = 1001,
        /// Elect a set's master (`mqadmin electMaster`).
        CONTROLLER_ELECT_MASTER = 1002,
        /// A broker with an id joins its set at the controller.
        CONTROLLER_REGISTER_BROKER = 1003,
        /// A set's master and SyncStateSet.
        CONTROLLER_GET_REPLICA_INFO = 1004,
        /// The controller group's leader and peers.
        CONTROLLER_GET_METADATA_INFO = 1005,
        /// Sets' replicas, in sync or not (`mqadmin getSyncStateSet`).
        CONTROLLER_GET_SYNC_STATE_DATA = 1006,
        /// A broker's epoch history (`mqadmin getBrokerEpoch`), served by brokers.
        GET_BROKER_EPOCH_CACHE = 1007,
        /// The controller tells a broker its set's master changed.
        NOTIFY_BROKER_ROLE_CHANGED = 1008,
        /// Forget a set or some of its brokers (`mqadmin cleanBrokerMetadata`).
        CLEAN_BROKER_DATA = 1011,
        /// The id a set would give next.
        CONTROLLER_GET_NEXT_BROKER_ID = 1012,
        /// Claim a broker id.
        CONTROLLER_APPLY_BROKER_ID = 1013,
        /// Keel's own (RocketMQ has no code near it): one raft-rs message from a controller
        /// to a peer, oneway, the protobuf bytes as body.
        KEEL_CONTROLLER_RAFT_MESSAGE = 30_100,
        /// 5.x pop consumption (JSON headers only: the code does not fit in 16 bits).
        POP_MESSAGE = 200_050,
        /// Acknowledge one popped message by its receipt handle (`extraInfo`).
        ACK_MESSAGE = 200_051,
        /// Look at messages without popping them (not served).
        PEEK_MESSAGE = 200_052,
        /// Move a popped message's invisible time; answers its new pop time.
        CHANGE_MESSAGE_INVISIBLETIME = 200_053,
        /// Long-poll until a pop would find something (`hasMsg`).
        NOTIFICATION = 200_054,
        /// How many pops are held (not served).
        POLLING_INFO = 200_055,
        /// Acknowledge several popped batches at once (a JSON body).
        BATCH_ACK_MESSAGE = 200_151,
    }
}

open_code! {
    /// A response code (`RemotingSysResponseCode` and `ResponseCode`).
    ResponseCode(i32) {
        /// Success.
        SUCCESS = 0,
        /// Generic failure; the remark says what.
        SYSTEM_ERROR = 1,
        /// Overloaded: the producer retries elsewhere.
        SYSTEM_BUSY = 2,
        /// Unknown request code.
        REQUEST_CODE_NOT_SUPPORTED = 3,
        /// Transaction failed.
        TRANSACTION_FAILED = 4,
        /// Stored but not flushed in time.
        FLUSH_DISK_TIMEOUT = 10,
        /// Stored on the master only: no slave.
        SLAVE_NOT_AVAILABLE = 11,
        /// Stored on the master only: slave too slow.
        FLUSH_SLAVE_TIMEOUT = 12,
        /// Malformed or oversized message.
        MESSAGE_ILLEGAL = 13,
        /// Store not writable or broker shutting down.
        SERVICE_NOT_AVAILABLE = 14,
        /// Version not supported.
        VERSION_NOT_SUPPORTED = 15,
        /// Permission bits forbid it.
        NO_PERMISSION = 16,
        /// No such topic.
        TOPIC_NOT_EXIST = 17,
        /// Topic already exists.
        TOPIC_EXIST_ALREADY = 18,
        /// No new message (after the long poll).
        PULL_NOT_FOUND = 19,
        /// Messages present but none matched.
        PULL_RETRY_IMMEDIATELY = 20,
        /// Requested offset is invalid; use nextBeginOffset.
        PULL_OFFSET_MOVED = 21,
        /// Nothing found (no stored offset, no message).
        QUERY_NOT_FOUND = 22,
        /// Subscription expression does not parse.
        SUBSCRIPTION_PARSE_FAILED = 23,
        /// No subscription registered.
        SUBSCRIPTION_NOT_EXIST = 24,
        /// Registered subscription is older than the request's.
        SUBSCRIPTION_NOT_LATEST = 25,
        /// Unknown group and auto-create off.
        SUBSCRIPTION_GROUP_NOT_EXIST = 26,
        /// SQL92 filter data missing.
        FILTER_DATA_NOT_EXIST = 27,
        /// SQL92 filter data stale.
        FILTER_DATA_NOT_LATEST = 28,
        /// Illegal parameter (topic name, queue id, ...).
        INVALID_PARAMETER = 29,
        /// Transaction state: commit.
        TRANSACTION_SHOULD_COMMIT = 200,
        /// Transaction state: roll back.
        TRANSACTION_SHOULD_ROLLBACK = 201,
        /// Transaction state: unknown.
        TRANSACTION_STATE_UNKNOW = 202,
        /// Transaction group mismatch.
        TRANSACTION_STATE_GROUP_WRONG = 203,
        /// No buyer id.
        NO_BUYER_ID = 204,
        /// Not in current unit.
        NOT_IN_CURRENT_UNIT = 205,
        /// No consumer of the group is online.
        CONSUMER_NOT_ONLINE = 206,
        /// A broker-to-client call timed out.
        CONSUME_MSG_TIMEOUT = 207,
        /// No message.
        NO_MESSAGE = 208,
        /// Pop: too many pops held already.
        POLLING_FULL = 209,
        /// Pop: held until its poll time ended, nothing found.
        POLLING_TIMEOUT = 210,
        /// Pull flow control: the client retries after 20 ms.
        FLOW_CONTROL = 215,
        /// End-transaction rejected.
        ILLEGAL_OPERATION = 604,
        /// Server shutting down.
        GO_AWAY = 1500,
        /// Controller: the request's master epoch is not the current one.
        CONTROLLER_FENCED_MASTER_EPOCH = 2000,
        /// Controller: the request's SyncStateSet epoch is not the current one.
        CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH = 2001,
        /// Controller: the asker is not the set's master.
        CONTROLLER_INVALID_MASTER = 2002,
        /// Controller: a replica named is not registered.
        CONTROLLER_INVALID_REPLICAS = 2003,
        /// Controller: the master is gone and none could be elected.
        CONTROLLER_MASTER_NOT_AVAILABLE = 2004,
        /// Controller: a malformed request.
        CONTROLLER_INVALID_REQUEST = 2005,
        /// Controller: a replica named is not alive.
        CONTROLLER_BROKER_NOT_ALIVE = 2006,
        /// Controller: this controller is not the leader.
        CONTROLLER_NOT_LEADER = 2007,
        /// Controller: no such broker set.
        CONTROLLER_BROKER_METADATA_NOT_EXIST = 2008,
        /// Controller: the clean-up would forget a live broker, or names nothing.
        CONTROLLER_INVALID_CLEAN_BROKER_METADATA = 2009,
        /// Controller: the broker (or its set) must apply for an id first.
        CONTROLLER_BROKER_NEED_TO_BE_REGISTERED = 2010,
        /// Controller: the old master is alive and stays.
        CONTROLLER_MASTER_STILL_EXIST = 2011,
        /// Controller: no replica qualifies.
        CONTROLLER_ELECT_MASTER_FAILED = 2012,
        /// Controller: the new SyncStateSet is refused.
        CONTROLLER_ALTER_SYNC_STATE_SET_FAILED = 2013,
        /// Controller: the id is taken by another broker.
        CONTROLLER_BROKER_ID_INVALID = 2014,
    }
}

open_code! {
    /// The sender's implementation language (`LanguageCode.java`), one byte on the wire.
    LanguageCode(u8) {
        /// Java.
        JAVA = 0,
        /// C++.
        CPP = 1,
        /// .NET.
        DOTNET = 2,
        /// Python.
        PYTHON = 3,
        /// Delphi.
        DELPHI = 4,
        /// Erlang.
        ERLANG = 5,
        /// Ruby.
        RUBY = 6,
        /// Anything else.
        OTHER = 7,
        /// HTTP.
        HTTP = 8,
        /// Go.
        GO = 9,
        /// PHP.
        PHP = 10,
        /// OMS.
        OMS = 11,
        /// Rust.
        RUST = 12,
        /// Node.js.
        NODE_JS = 13,
    }
}

impl LanguageCode {
    /// The language named in a JSON header; unknown names become `OTHER`, as a server must
    /// accept any client.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        (0..=13u8).map(Self).find(|code| code.name() == Some(name)).unwrap_or(Self::OTHER)
    }

    /// The name written in a JSON header; unnamed values are written as `OTHER`.
    #[must_use]
    pub fn json_name(self) -> &'static str {
        self.name().unwrap_or("OTHER")
    }
}

/// How a frame's header is serialized: the high byte of the header-info word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// fastjson text (type byte 0); what every client can read.
    #[default]
    Json,
    /// RocketMQ's compact binary header (type byte 1).
    RocketMq,
}

impl SerializeType {
    /// The type byte on the wire.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }

    /// The type for a wire byte, if known.
    #[must_use]
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Json),
            1 => Some(Self::RocketMq),
            _ => None,
        }
    }

    /// The name written as `serializeTypeCurrentRPC`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::RocketMq => "ROCKETMQ",
        }
    }
}

/// The broker version we announce: RocketMQ 5.3.3's ordinal. Clients cache it from the
/// heartbeat reply and refuse some features (SQL92) from brokers older than 4.1.0.
pub const SERVER_VERSION: i32 = 479;

/// The name of a version ordinal, as RocketMQ's `MQVersion.getVersionDesc` prints it. From
/// V3_0_1 on, RocketMQ's `Version` enum lists every `a.b.c` up to 9.9.9 twice, its
/// `_SNAPSHOT` and then the release, so the ordinal of release `a.b.c` is
/// `13 + 2 × ((a − 3) × 100 + b × 10 + c)` (4.9.4 is 401, 5.3.3 is 479); the first
/// ordinals are 3.0.0's pre-releases.
#[must_use]
pub fn version_desc(ordinal: i32) -> String {
    const RELEASE_BASE: i32 = 13;
    const LAST_RELEASE: i32 = RELEASE_BASE + 2 * 699;
    match ordinal {
        i32::MIN..=RELEASE_BASE => "V3_0_0".to_owned(),
        o if o > LAST_RELEASE => "HIGHER_VERSION".to_owned(),
        _ => {
            let index = (ordinal - RELEASE_BASE + 1) / 2;
            let name = format!("V{}_{}_{}", 3 + index / 100, index / 10 % 10, index % 10);
            if (ordinal - RELEASE_BASE) % 2 == 0 {
                name
            } else {
                name + "_SNAPSHOT"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ordinals_name_the_releases_clients_send() {
        assert_eq!(version_desc(SERVER_VERSION), "V5_3_3");
        assert_eq!(version_desc(401), "V4_9_4");
        assert_eq!(version_desc(400), "V4_9_4_SNAPSHOT");
        assert_eq!(version_desc(15), "V3_0_1");
        assert_eq!(version_desc(14), "V3_0_1_SNAPSHOT");
        assert_eq!(version_desc(317), "V4_5_2");
        assert_eq!(version_desc(1411), "V9_9_9");
        assert_eq!(version_desc(1412), "HIGHER_VERSION");
    }

    #[test]
    fn unknown_codes_round_trip_and_print_their_number() {
        let code = RequestCode(4242);
        assert_eq!(code.name(), None);
        assert_eq!(format!("{code:?}"), "RequestCode(4242)");
        assert_eq!(RequestCode(310), RequestCode::SEND_MESSAGE_V2);
        assert_eq!(format!("{:?}", RequestCode(310)), "SEND_MESSAGE_V2");
        assert_eq!(format!("{:?}", ResponseCode(21)), "PULL_OFFSET_MOVED");
    }

    #[test]
    fn language_names_are_lenient() {
        assert_eq!(LanguageCode::from_name("CPP"), LanguageCode::CPP);
        assert_eq!(LanguageCode::from_name("GO"), LanguageCode::GO);
        assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::OTHER);
        assert_eq!(LanguageCode(200).json_name(), "OTHER");
        assert_eq!(LanguageCode::NODE_JS.json_name(), "NODE_JS");
    }
}
