//! Keel's simulation runtime: what madsim lacks for a broker.
//!
//! - [`sim_disk::SimDisk`]: an in-memory disk with crash semantics (durable image, dirty
//!   pages kept, lost or torn at sector granularity, unsynced directory changes).
//! - [`disk_queue::DiskQueue`]: carries a state machine's disk operations out in order, so
//!   tests can crash between any two.
//! - [`store_node::StoreNode`]: a store on a `SimDisk`, driven by hand (tier-1 scenarios).
//! - [`broker_node::BrokerNode`]: a broker on a `SimDisk`, its connections, disk and time
//!   driven by hand (tier-1 broker scenarios).
//!
//! The models are plain Rust, unit-tested in normal builds; the madsim-only glue sits behind
//! `#[cfg(madsim)]`.

pub mod broker_node;
pub mod checker;
#[cfg(madsim)]
pub mod cluster;
pub mod coverage;
#[cfg(madsim)]
pub mod disk_plugin;
pub mod disk_queue;
pub mod fault_spans;
pub mod group_checks;
#[cfg(madsim)]
pub mod group_scenario;
pub mod ha_checks;
#[cfg(madsim)]
pub mod ha_scenario;
pub mod history;
pub mod horizon;
#[cfg(madsim)]
pub mod nemesis;
pub mod pop_checks;
#[cfg(madsim)]
pub mod pop_workload;
pub mod profile;
#[cfg(madsim)]
pub mod replica;
pub mod replica_checks;
pub mod sim_clock;
#[cfg(madsim)]
pub mod sim_conn;
pub mod sim_disk;
pub mod store_node;
pub mod timing_checks;
#[cfg(madsim)]
pub mod timing_workload;
#[cfg(madsim)]
pub mod workload;
pub mod world;
