//! Client-side decisions, shared by Keel's client library and the simulator's clients:
//! which queues a consumer owns, and (as they land) the producer's and consumers' state.

pub mod allocate;
pub mod offset_store;
pub mod process_queue;
pub mod queue_choice;
pub mod rebalance;
pub mod route;

pub use allocate::{allocate_sorted, AllocateStrategy};
pub use offset_store::OffsetStore;
pub use process_queue::{FlowLimits, ProcessQueue};
pub use queue_choice::{select_by_key, QueueChoice};
pub use rebalance::{plan, RebalancePlan};
