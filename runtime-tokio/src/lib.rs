//! Keel's production runtime: the driver loop that carries a core state machine's outputs
//! out over TCP and real files, and the binaries.
//!
//! It depends on tokio through `madsim-tokio`, which is plain tokio in a normal build and
//! madsim's simulated tokio under `--cfg madsim`, so the loop that runs in production is the
//! loop that is simulated.

/// mimalloc for every binary and test linking the runtime: the broker allocates a buffer
/// per request and per reply, and glibc's malloc spent a fifth of the broker's time with
/// 64 concurrent senders (`malloc_consolidate` on every ~1 KiB body).
#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod client;
pub mod clock;
pub mod config;
pub mod controller_server;
pub mod disk;
pub mod driver;
pub mod grpc;
pub mod remoting_client;
pub mod routed_disk;
pub mod server;
pub mod startup;
pub mod web;

pub use startup::init_logging;

/// Resolves on SIGTERM or Ctrl-C: the signal for a clean shutdown.
pub async fn shutdown_signal() {
    #[cfg(all(unix, not(madsim)))]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(any(not(unix), madsim))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
