//! Keel's production runtime: real disk and clock for the core's state machines (the
//! driver loop, TCP and the binaries follow).
//!
//! It depends on tokio through `madsim-tokio`, which is plain tokio in a normal build and
//! madsim's simulated tokio under `--cfg madsim`, so the loop that runs in production is the
//! loop that is simulated.

pub mod disk;
