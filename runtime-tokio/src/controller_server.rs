//! The standalone controller (`mqcontroller`), bound and ready to run.

use keel_core::controller::{Controller, ControllerCore};

use crate::config::ControllerSettings;
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
        let core = ControllerCore::in_group(settings.controller(), peers)?;
        let server =
            Self::bind_machine(Controller::with_core(core), settings.listen_port, "controller").await?;
        match peer_port {
            Some(port) => server.also_on(port).await,
            None => Ok(server),
        }
    }
}

/// Seeds a controller's election spread: it only needs to differ between controllers.
#[must_use]
pub fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}
