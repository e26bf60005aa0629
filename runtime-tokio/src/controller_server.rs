//! The standalone controller (`mqcontroller`), bound and ready to run.

use keel_core::controller::Controller;

use crate::config::ControllerSettings;
use crate::server::ListenerServer;

/// A controller with its listener bound.
pub type ControllerServer = ListenerServer<Controller>;

impl ControllerServer {
    /// Bind `listenPort` on all interfaces.
    pub async fn bind(settings: &ControllerSettings) -> anyhow::Result<Self> {
        Self::bind_machine(Controller::new(settings.controller()), settings.listen_port, "controller").await
    }
}
