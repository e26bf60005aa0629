//! What the controller replicates: per broker set, its replicas and their ids, the
//! SyncStateSet, the master and the two epochs — changed only by applying [`Event`]s, in
//! log order, identically on every controller.
//!
//! Each event that depends on the state it was decided from carries the epoch it was
//! decided at, and applying it at any other epoch changes nothing: two elections decided
//! from the same state (two controllers briefly both leading, or one request racing the
//! scan) cannot both take effect, whatever order the log gives them. RocketMQ's events
//! carry no such fence; its single-threaded leader is what keeps them apart.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The first id a set gives (`MixAll.FIRST_BROKER_CONTROLLER_ID`).
pub const FIRST_BROKER_ID: u64 = 1;

/// One broker of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// Its remoting address.
    pub addr: String,
    /// `address;unique-code` it claimed its id with: the same broker may claim it again.
    pub check_code: String,
    /// Its replication address (`haAddress`, Keel's extension of CONTROLLER_REGISTER_BROKER:
    /// what its slaves dial once it is master).
    #[serde(default)]
    pub ha_addr: Option<String>,
}

/// A broker set (`brokerName`) as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrokerSet {
    /// Its cluster.
    pub cluster: String,
    /// Its brokers by id.
    pub replicas: BTreeMap<u64, Replica>,
    /// The id the next broker gets.
    pub next_id: u64,
    /// The master, while the set has one.
    pub master: Option<u64>,
    /// Bumped by every election, successful or not; 0 until the first.
    pub master_epoch: i32,
    /// The master and the replicas caught up with it.
    pub sync_state_set: BTreeSet<u64>,
    /// Bumped by every change of the SyncStateSet.
    pub sync_state_set_epoch: i32,
}

impl BrokerSet {
    /// A registered broker's address.
    #[must_use]
    pub fn addr(&self, id: u64) -> Option<&str> {
        self.replicas.get(&id).map(|replica| replica.addr.as_str())
    }

    /// The master's address, while there is one.
    #[must_use]
    pub fn master_addr(&self) -> Option<&str> {
        self.master.and_then(|id| self.addr(id))
    }

    /// The master's replication address, while there is one and it said.
    #[must_use]
    pub fn master_ha_addr(&self) -> Option<&str> {
        self.master.and_then(|id| self.replicas.get(&id)).and_then(|replica| replica.ha_addr.as_deref())
    }
}

/// A change to the replicated state: what the controllers' log carries (JSON, tagged by
/// `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Event {
    /// A broker claimed `id` (the first claim, id 1, creates the set).
    ApplyBrokerId {
        /// Its cluster.
        cluster: String,
        /// Its set.
        broker_name: String,
        /// The id.
        id: u64,
        /// Its address.
        addr: String,
        /// `address;unique-code`.
        check_code: String,
    },
    /// A registered broker came back at another address (or replication address).
    UpdateAddress {
        /// Its set.
        broker_name: String,
        /// Its id.
        id: u64,
        /// The new address.
        addr: String,
        /// Its replication address, if it said.
        ha_addr: Option<String>,
    },
    /// An election's outcome, decided at `master_epoch`: `Some` makes that broker the master
    /// and the sole member of the SyncStateSet; `None` records that the master is gone and
    /// nobody could follow it.
    ElectMaster {
        /// The set.
        broker_name: String,
        /// The new master.
        master: Option<u64>,
        /// The master epoch it was decided at.
        master_epoch: i32,
    },
    /// A master's new SyncStateSet, decided at `sync_state_set_epoch` under `master_epoch`.
    AlterSyncStateSet {
        /// The set.
        broker_name: String,
        /// The new members.
        members: BTreeSet<u64>,
        /// The master epoch it was decided at.
        master_epoch: i32,
        /// The SyncStateSet epoch it was decided at.
        sync_state_set_epoch: i32,
    },
    /// Forget some brokers of a set, or (`None`) the whole set.
    CleanBrokerData {
        /// The set.
        broker_name: String,
        /// The ids; `None` for all.
        ids: Option<BTreeSet<u64>>,
    },
}

impl Event {
    /// The set it changes.
    #[must_use]
    pub fn broker_name(&self) -> &str {
        match self {
            Self::ApplyBrokerId { broker_name, .. }
            | Self::UpdateAddress { broker_name, .. }
            | Self::ElectMaster { broker_name, .. }
            | Self::AlterSyncStateSet { broker_name, .. }
            | Self::CleanBrokerData { broker_name, .. } => broker_name,
        }
    }
}

/// Every broker set: the controller's replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplicaTable {
    sets: BTreeMap<String, BrokerSet>,
}

impl ReplicaTable {
    /// A set by name.
    #[must_use]
    pub fn get(&self, broker_name: &str) -> Option<&BrokerSet> {
        self.sets.get(broker_name)
    }

    /// Every set, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BrokerSet)> {
        self.sets.iter().map(|(name, set)| (name.as_str(), set))
    }

    /// The id a set would give next (the first id for a set not seen yet).
    #[must_use]
    pub fn next_id(&self, broker_name: &str) -> u64 {
        self.sets.get(broker_name).map_or(FIRST_BROKER_ID, |set| set.next_id)
    }

    /// Apply one event; `false` when it changes nothing (fenced by an epoch that moved on,
    /// or naming a set or broker that is not there).
    pub fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::ApplyBrokerId { cluster, broker_name, id, addr, check_code } => {
                let replica = Replica { addr: addr.clone(), check_code: check_code.clone(), ha_addr: None };
                match self.sets.get_mut(broker_name) {
                    None if *id == FIRST_BROKER_ID => {
                        let mut set = BrokerSet {
                            cluster: cluster.clone(),
                            next_id: FIRST_BROKER_ID,
                            ..BrokerSet::default()
                        };
                        set.replicas.insert(*id, replica);
                        set.next_id = id + 1;
                        self.sets.insert(broker_name.clone(), set);
                        true
                    }
                    None => false,
                    Some(set) => match set.replicas.get(id) {
                        Some(existing) => existing.check_code == *check_code,
                        None => {
                            set.replicas.insert(*id, replica);
                            set.next_id = set.next_id.max(id + 1);
                            true
                        }
                    },
                }
            }
            Event::UpdateAddress { broker_name, id, addr, ha_addr } => {
                let replica = self.sets.get_mut(broker_name).and_then(|set| set.replicas.get_mut(id));
                replica
                    .map(|replica| {
                        replica.addr.clone_from(addr);
                        replica.ha_addr.clone_from(ha_addr);
                    })
                    .is_some()
            }
            Event::ElectMaster { broker_name, master, master_epoch } => {
                let Some(set) = self.sets.get_mut(broker_name) else { return false };
                if set.master_epoch != *master_epoch
                    || master.is_some_and(|id| !set.replicas.contains_key(&id))
                {
                    return false;
                }
                set.master = *master;
                set.master_epoch += 1;
                if let Some(id) = master {
                    set.sync_state_set = BTreeSet::from([*id]);
                    set.sync_state_set_epoch += 1;
                }
                true
            }
            Event::AlterSyncStateSet { broker_name, members, master_epoch, sync_state_set_epoch } => {
                let Some(set) = self.sets.get_mut(broker_name) else { return false };
                let fenced =
                    set.master_epoch != *master_epoch || set.sync_state_set_epoch != *sync_state_set_epoch;
                let master_kept = set.master.is_some_and(|id| members.contains(&id));
                if fenced || !master_kept || !members.iter().all(|id| set.replicas.contains_key(id)) {
                    return false;
                }
                set.sync_state_set.clone_from(members);
                set.sync_state_set_epoch += 1;
                true
            }
            Event::CleanBrokerData { broker_name, ids } => match ids {
                None => self.sets.remove(broker_name).is_some(),
                Some(ids) => {
                    let Some(set) = self.sets.get_mut(broker_name) else { return false };
                    for id in ids {
                        set.replicas.remove(id);
                        set.sync_state_set.remove(id);
                    }
                    // A forgotten master is no master: the epoch moves so it is fenced.
                    if set.master.is_some_and(|master| ids.contains(&master)) {
                        set.master = None;
                        set.master_epoch += 1;
                    }
                    if set.replicas.is_empty() {
                        self.sets.remove(broker_name);
                    }
                    true
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(table: &mut ReplicaTable, id: u64) -> bool {
        table.apply(&Event::ApplyBrokerId {
            cluster: "c".into(),
            broker_name: "broker-a".into(),
            id,
            addr: format!("10.0.0.{id}:10911"),
            check_code: format!("10.0.0.{id}:10911;{id}"),
        })
    }

    fn elect(table: &mut ReplicaTable, master: Option<u64>, at: i32) -> bool {
        table.apply(&Event::ElectMaster { broker_name: "broker-a".into(), master, master_epoch: at })
    }

    #[test]
    fn ids_are_claimed_once_and_the_first_claim_creates_the_set() {
        let mut table = ReplicaTable::default();
        assert_eq!(table.next_id("broker-a"), FIRST_BROKER_ID);
        assert!(!claim(&mut table, 2), "a set starts with its first id");
        assert!(claim(&mut table, 1));
        assert!(claim(&mut table, 2));
        assert_eq!(table.next_id("broker-a"), 3);
        assert!(claim(&mut table, 2), "the same broker claiming again is let through");
        let stranger = Event::ApplyBrokerId {
            cluster: "c".into(),
            broker_name: "broker-a".into(),
            id: 2,
            addr: "10.0.0.9:10911".into(),
            check_code: "10.0.0.9:10911;9".into(),
        };
        assert!(!table.apply(&stranger), "another broker cannot take a claimed id");
        assert_eq!(table.get("broker-a").unwrap().addr(2), Some("10.0.0.2:10911"));
    }

    #[test]
    fn elections_bump_the_epochs_and_one_decided_at_an_old_epoch_changes_nothing() {
        let mut table = ReplicaTable::default();
        claim(&mut table, 1);
        claim(&mut table, 2);
        assert!(elect(&mut table, Some(1), 0));
        let set = table.get("broker-a").unwrap();
        assert_eq!((set.master, set.master_epoch, set.sync_state_set_epoch), (Some(1), 1, 1));
        assert_eq!(set.sync_state_set, BTreeSet::from([1]));
        // Two elections decided at epoch 1: only the first in the log takes effect.
        assert!(elect(&mut table, Some(2), 1));
        assert!(!elect(&mut table, Some(1), 1));
        let set = table.get("broker-a").unwrap();
        assert_eq!((set.master, set.master_epoch), (Some(2), 2));
        // A failed election still moves the epoch: the old master is fenced.
        assert!(elect(&mut table, None, 2));
        let set = table.get("broker-a").unwrap();
        assert_eq!((set.master, set.master_epoch, set.sync_state_set_epoch), (None, 3, 2));
        assert_eq!(set.sync_state_set, BTreeSet::from([2]), "kept for the next election");
        assert!(!elect(&mut table, Some(7), 3), "an unknown broker cannot be master");
    }

    #[test]
    fn the_sync_state_set_changes_only_at_its_epoch_and_always_holds_the_master() {
        let mut table = ReplicaTable::default();
        for id in 1..=3 {
            claim(&mut table, id);
        }
        elect(&mut table, Some(1), 0);
        let alter = |members: &[u64], master_epoch, sync_state_set_epoch| Event::AlterSyncStateSet {
            broker_name: "broker-a".into(),
            members: members.iter().copied().collect(),
            master_epoch,
            sync_state_set_epoch,
        };
        assert!(table.apply(&alter(&[1, 2, 3], 1, 1)));
        assert!(!table.apply(&alter(&[1, 2], 1, 1)), "decided at an older set epoch");
        assert!(!table.apply(&alter(&[1, 2], 0, 2)), "decided under an older master");
        assert!(!table.apply(&alter(&[2, 3], 1, 2)), "the master must stay in it");
        assert!(!table.apply(&alter(&[1, 4], 1, 2)), "only registered replicas");
        assert!(table.apply(&alter(&[1, 3], 1, 2)));
        let set = table.get("broker-a").unwrap();
        assert_eq!((set.sync_state_set.clone(), set.sync_state_set_epoch), (BTreeSet::from([1, 3]), 3));
    }

    #[test]
    fn cleaning_forgets_brokers_and_an_emptied_set() {
        let mut table = ReplicaTable::default();
        claim(&mut table, 1);
        claim(&mut table, 2);
        elect(&mut table, Some(1), 0);
        let clean = |ids: Option<&[u64]>| Event::CleanBrokerData {
            broker_name: "broker-a".into(),
            ids: ids.map(|ids| ids.iter().copied().collect()),
        };
        assert!(table.apply(&clean(Some(&[1]))));
        let set = table.get("broker-a").unwrap();
        assert!(set.sync_state_set.is_empty() && !set.replicas.contains_key(&1));
        assert_eq!((set.master, set.master_epoch), (None, 2), "a forgotten master is fenced");
        assert!(table.apply(&clean(Some(&[2]))));
        assert!(table.get("broker-a").is_none());
        assert!(!table.apply(&clean(None)));
    }
}
