//! A broker's role changed at run time, as a controller decides (RocketMQ 5's controller
//! mode, `ReplicasManager.changeToMaster` / `changeToSlave`).
//!
//! Turned master, a broker stops following, lets its store take writes, begins a new epoch
//! numbered from the controller's master epoch (writes wait until it is recorded), starts
//! delay levels, timers and transaction checks from the progress it copied, and registers
//! with the name servers as broker id 0. Turned slave, it drops its slaves, refuses writes,
//! follows the new master (whose history makes it cut back what the new master never had)
//! and registers under its own id.

use core::net::SocketAddr;

use super::Broker;
use crate::ha::BrokerRole;
use crate::io::Now;

/// A role to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Become the set's master in the controller's `master_epoch`.
    Master {
        /// The controller's master epoch.
        master_epoch: u32,
    },
    /// Follow the master whose replication port is `master_ha` and remoting port `master`
    /// (`None`: none known yet; a deposed master waits to be told).
    Slave {
        /// The new master's replication address, if known.
        master_ha: Option<SocketAddr>,
        /// The new master's remoting address (its metadata is copied from there), if known.
        master: Option<SocketAddr>,
    },
}

/// The floor of the local epochs a master elected in controller `master_epoch` writes in:
/// the controller's number in the high half, restarts within it counted in the low half, so
/// every epoch in a log is one master's.
#[must_use]
pub fn epoch_floor(master_epoch: u32) -> u32 {
    master_epoch.saturating_mul(1 << 16)
}

/// The controller's master epoch a local epoch was written in (the inverse of
/// [`epoch_floor`]).
#[must_use]
pub fn controller_epoch(local: u32) -> u32 {
    local >> 16
}

impl Broker {
    /// Take `change`, then settle as after any input; a broker already in that role (a
    /// master in that epoch or later, a slave of that master) changes nothing.
    pub fn change_role(&mut self, now: Now, change: RoleChange) {
        self.take_role(now, change);
        self.settle(now);
    }

    pub(super) fn take_role(&mut self, now: Now, change: RoleChange) {
        self.take_role_unfenced(now, change);
        // A new master takes writes only while the controller vouches for it.
        self.controller.refresh_lease(&mut self.shared, now);
    }

    fn take_role_unfenced(&mut self, now: Now, change: RoleChange) {
        match change {
            RoleChange::Master { master_epoch } => {
                let floor = epoch_floor(master_epoch);
                if !self.is_slave() && self.shared.epochs.current().epoch >= floor {
                    return;
                }
                let shared = &mut self.shared;
                shared.config.role = self.master_role;
                shared.config.broker_id = 0;
                self.ha_client.set_active(shared, now, false, None);
                self.metadata_sync.set_active(shared, now, false);
                shared.store.set_replica(false);
                let epoch = if shared.store.config().mutated(crate::mutation::Mutation::StaleEpochWrite) {
                    shared.epochs.current().epoch
                } else {
                    shared.begin_epoch_at_least(floor)
                };
                tracing::warn!(
                    master_epoch,
                    epoch,
                    start = shared.store.write_pos().0,
                    role = shared.config.role.name(),
                    "this broker is now its set's master"
                );
                self.restart_log_services(now);
                self.shared.reregister();
            }
            RoleChange::Slave { master_ha, master } => {
                if self.is_slave() && master_ha.is_none_or(|addr| self.ha_client.follows(addr)) {
                    return;
                }
                let shared = &mut self.shared;
                shared.config.role = BrokerRole::Slave;
                shared.config.broker_id = self.replica_id;
                shared.store.set_replica(true);
                self.replication.drop_all(shared, "this broker is no longer the master");
                self.ha_client.set_active(shared, now, true, master_ha);
                self.metadata_sync.set_active(shared, now, true);
                if let Some(addr) = master {
                    self.metadata_sync.learned(shared, now, addr);
                }
                tracing::warn!(master = ?master_ha, broker_id = self.replica_id, "this broker now follows a master");
                self.shared.reregister();
            }
        }
    }
}
