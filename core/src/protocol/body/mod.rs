//! JSON bodies of remoting commands, with the field names Java writes (getter names,
//! camelCase) and lenient reading: missing fields take Java's defaults, unknown ones are
//! ignored. Encode and decode them with [`crate::protocol::json`].

mod client;
mod controller;
mod group;
mod ha;
mod queue;
pub mod register_compressed;
mod route;
mod running;
mod stats;
mod topic;

pub use client::{ConsumerData, ConsumerIdList, HeartbeatData, KvTable, ProducerData, SubscriptionData};
pub use controller::{
    BrokerMemberGroup, BrokerReplicasInfo, ElectMasterResponseBody, ReplicaIdentity, ReplicasInfo,
    SyncStateSet,
};
pub use group::{SubscriptionGroupConfig, SubscriptionGroupWrapper};
pub use ha::{EpochEntryCache, EpochRange, HaClientRuntimeInfo, HaConnectionRuntimeInfo, HaRuntimeInfo};
pub use queue::{java_str_cmp, LockBatchRequestBody, LockBatchResponseBody, MessageQueue};
pub use route::{BrokerData, ClusterInfo, QueueData, TopicList, TopicRouteData};
pub use running::{ConsumeMessageDirectlyResult, ConsumeStatus, ConsumerRunningInfo, ProcessQueueInfo};
pub use stats::{
    Connection, ConsumeStats, ConsumerConnection, GroupList, OffsetWrapper, ProducerConnection,
    ResetOffsetBody, TopicOffset, TopicStatsTable,
};
pub use topic::{perm, DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper};
