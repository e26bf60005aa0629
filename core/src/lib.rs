//! Keel's core: every decision of a RocketMQ-compatible broker, and no IO.
//!
//! The core contains the wire codec, the storage formats and the state machines. It reads
//! no clock, opens no file or socket, spawns no thread and draws no OS randomness: time
//! arrives as [`io::Now`], bytes and disk completions arrive as [`io::Input`], and every
//! effect leaves as an [`io::Output`]. A runtime carries the outputs out: `keel-runtime-tokio`
//! in production, `keel-runtime-sim` under the seeded simulator. Both run the same core.
//!
//! # The run loop
//!
//! Every state machine has the same three calls:
//!
//! 1. `handle(now, input)`: feed one input with the current time. Several may be fed
//!    before draining (the client driver feeds a batch of commands a turn): a machine
//!    queues what each input causes, in order, so the batch ends as if each input had been
//!    fed and drained in turn (`broker_scenarios::several_inputs_fed_before_draining_…`).
//! 2. `poll_output()`: drain until `None`, carrying each output out **in order**. Disk
//!    operations must be carried out in the order they were emitted (so a sync covers the
//!    writes before it), and their completions fed back as `Input::DiskDone`.
//! 3. `poll_timeout()`: after draining, sleep until the returned deadline or the next
//!    input, whichever is first; at the deadline feed `Input::Timeout`.
//!
//! Durability is explicit: data is durable only once the `Sync` covering it has completed.
//! A failed disk operation makes the store refuse writes and rebuild itself in place from
//! what the disk holds, as a restart's recovery would; only a failure while shutting down
//! is fatal (`Output::Fatal`). Reads (recovery, and pulls) go through the read-only
//! [`io::StoreRead`] the runtime lends.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod broker;
pub mod client;
pub mod controller;
pub mod grpc;
pub mod ha;
pub mod invalid_setting;
pub mod io;
pub mod metrics;
pub mod mutation;
pub mod namesrv;
pub mod protocol;
pub mod remoting;
pub mod store;
