//! The standalone controller (`mqcontroller`), bound and ready to run.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use keel_core::controller::{Controller, ControllerCore, RecoveredLog};
use tokio::sync::mpsc;

use crate::config::ControllerSettings;
use crate::disk::{Disk, DiskWithCompletions, FileDisk};
use crate::server::ListenerServer;

/// A controller with its listener bound.
pub type ControllerServer = ListenerServer<Controller>;

impl ControllerServer {
    /// Bind `listenPort` on all interfaces, and the controller's port among its peers when
    /// that differs.
    pub async fn bind(settings: &ControllerSettings) -> anyhow::Result<Self> {
        let Some(group) = &settings.group else {
            return Self::bind_machine(
                Controller::new(settings.controller()),
                settings.listen_port,
                "controller",
            )
            .await;
        };
        let peers = group.peers(seed()).map_err(anyhow::Error::msg)?;
        let peer_port = peers.me().map(|me| me.addr.port());
        let (disk, log) = open_log(&group.store_path)?;
        let core = ControllerCore::in_group(settings.controller(), peers, Some(&log))?;
        let server = Self::bind_machine(Controller::with_core(core), settings.listen_port, "controller")
            .await?
            .with_disk(disk);
        match peer_port {
            Some(port) => server.also_on(port).await,
            None => Ok(server),
        }
    }
}

/// Open `controllerStorePath` and read the Raft log there (an empty log if there is none).
pub fn open_log(path: &Path) -> anyhow::Result<(DiskWithCompletions, RecoveredLog)> {
    let (completions_tx, completions) = mpsc::unbounded_channel();
    let (disk, log) = open_log_to(path, completions_tx)?;
    Ok(((disk, completions), log))
}

/// [`open_log`], reporting completions to `completions_tx` (a name server shares it with
/// its KV config's disk).
pub fn open_log_to(
    path: &Path,
    completions_tx: mpsc::UnboundedSender<crate::disk::Completion>,
) -> anyhow::Result<(Arc<dyn Disk>, RecoveredLog)> {
    let disk = FileDisk::open(path, completions_tx)
        .with_context(|| format!("cannot open controllerStorePath {}", path.display()))?;
    let log = RecoveredLog::load(&disk)
        .with_context(|| format!("cannot recover the controller's Raft log in {}", path.display()))?;
    if log.dropped > 0 {
        tracing::warn!(dropped = log.dropped, "controller Raft log had a torn tail; it is cut off");
    }
    tracing::info!(
        entries = log.entries.len(),
        term = log.hard_state.term,
        path = %path.display(),
        "controller Raft log recovered"
    );
    let disk: Arc<dyn Disk> = Arc::new(disk);
    Ok((disk, log))
}

/// Seeds a controller's election spread: it only needs to differ between controllers.
#[must_use]
pub fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}
