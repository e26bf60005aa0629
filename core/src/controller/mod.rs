//! The controller (RocketMQ 5's controller mode, RIP-44): per broker set it keeps the
//! replicas and their ids, the SyncStateSet, the master and a monotonic master epoch, and it
//! elects a new master when the old one is lost.
//!
//! - `replicas`: the replicated state and the [`Event`]s that change it, each fenced by the
//!   epoch it was decided at.
//! - `consensus`: the controllers' agreement on the event log (raft-rs), ticked and
//!   polled by its owner.
//! - `raft_log`: that log on disk, written before raft-rs counts it persisted and read
//!   back at start ([`RaftLogFile`], [`RecoveredLog`]).
//! - `raft_storage`: the log raft-rs reads, with the snapshot it was compacted to.
//! - `peers`: the controller group, its links and ticks ([`PeerGroup`]).
//! - `live`: which brokers are alive, from their heartbeats (each controller's own).
//! - `elect`: who becomes master.
//! - `state`: how each request is answered, at once or once its event is committed.
//! - `machine`: [`ControllerCore`] (what a name server embeds) and [`Controller`], the
//!   standalone machine.

pub mod consensus;
pub mod elect;
pub mod live;
pub mod machine;
pub mod peers;
pub mod raft_log;
pub mod raft_storage;
pub mod replicas;
pub mod state;

pub use elect::{elect, ElectRequest};
pub use live::{LiveInfo, LiveTable};
pub use machine::{Controller, ControllerCore};
pub use peers::{ControllerPeers, PeerGroup, PeerInfo};
pub use raft_log::{RaftLogFile, RecoveredLog};
pub use replicas::{BrokerSet, Event, Replica, ReplicaTable};
pub use state::{ControllerConfig, ControllerState, Decision};
