//! Client-side decisions, shared by Keel's client library and the simulator's clients:
//! the client state machine ([`Client`]: routes, heartbeats, a producer's sends, push
//! consumers' rebalancing, pulls, deliveries, retries and offsets; lite pull consumers' polls) and its pure parts.

pub mod allocate;
mod consume;
mod consumer_config;
mod lite_pull;
mod machine;
pub mod offset_store;
mod operator;
pub mod process_queue;
mod producer;
mod push_consumer;
pub mod queue_choice;
pub mod rebalance;
pub mod route;
mod tracer;
mod transaction;
pub mod transport;

pub use allocate::{allocate_sorted, AllocateStrategy};
pub use consume::ConsumeResult;
pub use consumer_config::{ConsumeFromWhere, ConsumerConfig, ConsumerKind, MessageModel};
pub use lite_pull::LitePullError;
pub use machine::{
    Client, ClientConfig, ClientEvent, DeliveryId, Reason, SendError, SendId, SendResult, SendStatus,
};
pub use offset_store::OffsetStore;
pub use process_queue::{FlowLimits, ProcessQueue};
pub use producer::{SendRequest, SendTarget};
pub use queue_choice::{select_by_key, QueueChoice};
pub use rebalance::{plan, RebalancePlan};
pub use transaction::{HalfMessage, TransactionState};
