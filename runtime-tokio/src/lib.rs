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

pub mod client;
pub mod clock;
pub mod config;
pub mod disk;
pub mod driver;
pub mod remoting_client;
pub mod server;

/// Log through tracing to stderr, filtered by `RUST_LOG` or else `default_filter`.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

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
