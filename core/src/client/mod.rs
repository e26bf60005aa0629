//! Client-side decisions, shared by Keel's client library and the simulator's clients:
//! which queues a consumer owns, and (as they land) the producer's and consumers' state.

pub mod allocate;

pub use allocate::{allocate_sorted, AllocateStrategy};
