//! Controller bodies (RocketMQ 5's controller mode).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A set's SyncStateSet and its epoch (`SyncStateSet`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStateSet {
    /// The master and the replicas caught up with it.
    pub sync_state_set: BTreeSet<i64>,
    /// Its epoch.
    pub sync_state_set_epoch: i32,
}

/// A set's brokers by id (`BrokerMemberGroup`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerMemberGroup {
    /// Cluster name.
    pub cluster: String,
    /// The set.
    pub broker_name: String,
    /// Id → remoting address.
    pub broker_addrs: BTreeMap<i64, String>,
}

/// CONTROLLER_ELECT_MASTER's body (`ElectMasterResponseBody`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ElectMasterResponseBody {
    /// The set's brokers.
    pub broker_member_group: Option<BrokerMemberGroup>,
    /// The new SyncStateSet.
    pub sync_state_set: BTreeSet<i64>,
}

/// One replica in CONTROLLER_GET_SYNC_STATE_DATA (`ReplicaIdentity`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaIdentity {
    /// The set.
    pub broker_name: String,
    /// Its id.
    pub broker_id: i64,
    /// Its address.
    pub broker_address: String,
    /// Whether the controller hears its heartbeats.
    pub alive: bool,
}

/// One set in CONTROLLER_GET_SYNC_STATE_DATA (`ReplicasInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicasInfo {
    /// The master's id.
    pub master_broker_id: Option<i64>,
    /// The master's address.
    pub master_address: Option<String>,
    /// The master epoch.
    pub master_epoch: i32,
    /// The SyncStateSet epoch.
    pub sync_state_set_epoch: i32,
    /// Members of the SyncStateSet.
    pub in_sync_replicas: Vec<ReplicaIdentity>,
    /// The other replicas.
    pub not_in_sync_replicas: Vec<ReplicaIdentity>,
}

/// CONTROLLER_GET_SYNC_STATE_DATA's body (`BrokerReplicasInfo`): `mqadmin getSyncStateSet`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerReplicasInfo {
    /// By set name.
    pub replicas_info_table: BTreeMap<String, ReplicasInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json;

    #[test]
    fn java_bodies_parse() {
        let set: SyncStateSet = json::from_slice(br#"{"syncStateSet":[1,2],"syncStateSetEpoch":3}"#).unwrap();
        assert_eq!(set.sync_state_set, BTreeSet::from([1, 2]));
        let elected: ElectMasterResponseBody = json::from_slice(
            br#"{"brokerMemberGroup":{"brokerAddrs":{1:"10.0.0.1:10911",2:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"c"},"syncStateSet":[2]}"#,
        )
        .unwrap();
        assert_eq!(elected.broker_member_group.unwrap().broker_addrs[&2], "10.0.0.2:10911");
        let info: BrokerReplicasInfo = json::from_slice(br#"{"replicasInfoTable":{"broker-a":{"inSyncReplicas":[{"alive":true,"brokerAddress":"10.0.0.1:10911","brokerId":1,"brokerName":"broker-a"}],"masterAddress":"10.0.0.1:10911","masterBrokerId":1,"masterEpoch":2,"notInSyncReplicas":[],"syncStateSetEpoch":3}}}"#).unwrap();
        assert_eq!(info.replicas_info_table["broker-a"].in_sync_replicas[0].broker_id, 1);
    }
}
