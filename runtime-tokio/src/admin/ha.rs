//! mqadmin's replication tools: a broker's replication status (`haStatus`,
//! GET_BROKER_HA_STATUS) and epochs (`getBrokerEpoch`, GET_BROKER_EPOCH_CACHE), a controller's view of each set (`getSyncStateSet`,
//! CONTROLLER_GET_SYNC_STATE_DATA) and an election the operator designates (`electMaster`,
//! CONTROLLER_ELECT_MASTER), printed as RocketMQ's tool prints them.

use std::fmt::Write as _;

use anyhow::Context;
use keel_core::protocol::body::{
    BrokerReplicasInfo, ElectMasterResponseBody, EpochEntryCache, HaRuntimeInfo, ReplicasInfo,
};
use keel_core::protocol::headers::{CommandHeader, ElectMasterRequestHeader, MasterInfoHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{ExtFields, RemotingCommand, RequestCode};

use super::report::utc_millis;
use super::{resolve, AdminClient};

/// What an election the operator asked for decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elected {
    /// The set's new master, its epoch and the SyncStateSet's epoch.
    pub master: MasterInfoHeader,
    /// The set's members and the new SyncStateSet.
    pub body: ElectMasterResponseBody,
}

impl AdminClient {
    /// A broker's replication status.
    pub async fn ha_status(broker: &str) -> anyhow::Result<HaRuntimeInfo> {
        Self::call_json(resolve(broker)?, RequestCode::GET_BROKER_HA_STATUS, ExtFields::new()).await
    }

    /// Which master wrote which stretch of a broker's log (GET_BROKER_EPOCH_CACHE).
    pub async fn epochs(broker: &str) -> anyhow::Result<EpochEntryCache> {
        Self::call_json(resolve(broker)?, RequestCode::GET_BROKER_EPOCH_CACHE, ExtFields::new()).await
    }

    /// What the controller at `controller` holds of the named sets (every set if none).
    pub async fn sync_state_sets(controller: &str, sets: &[String]) -> anyhow::Result<BrokerReplicasInfo> {
        let request =
            RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA, 0, ExtFields::new())
                .with_body(json::to_body(sets, KeyStyle::Fastjson));
        let reply = Self::call_request(resolve(controller)?, request).await?;
        json::from_slice(&reply.body).context("the controller's SyncStateSet data does not decode")
    }

    /// Ask the controller at `controller` to make `broker_id` the master of `broker_name`.
    pub async fn elect_master(
        controller: &str,
        cluster: &str,
        broker_name: &str,
        broker_id: i64,
    ) -> anyhow::Result<Elected> {
        let header = ElectMasterRequestHeader {
            cluster_name: cluster.into(),
            broker_name: broker_name.into(),
            broker_id: Some(broker_id),
            designate_elect: Some(true),
        };
        let request =
            RemotingCommand::request(RequestCode::CONTROLLER_ELECT_MASTER, 0, header.to_ext_fields());
        let reply = Self::call_request(resolve(controller)?, request).await?;
        let master = MasterInfoHeader::decode(&reply.ext_fields)
            .map_err(|e| anyhow::anyhow!("the election's answer has no usable header: {e}"))?;
        let body = json::from_slice(&reply.body).context("the election's answer does not decode")?;
        Ok(Elected { master, body })
    }
}

/// `haStatus` of the broker at `addr`.
#[must_use]
pub fn ha_status_text(addr: &str, info: &HaRuntimeInfo) -> String {
    if info.master {
        let mut out = format!(
            "\n#MasterAddr\t{addr}\n#MasterCommitLogMaxOffset\t{}\n#SlaveNum\t{}\n#InSyncSlaveNum\t{}\n",
            info.master_commit_log_max_offset,
            info.ha_connection_info.len(),
            info.in_sync_slave_nums
        );
        let _ = writeln!(
            out,
            "{:<32}  {:<16} {:>16} {:>16} {:>16} {:>16}",
            "#SlaveAddr", "#SlaveAckOffset", "#Diff", "#TransferSpeed(KB/s)", "#Status", "#TransferFromWhere"
        );
        for c in &info.ha_connection_info {
            let _ = writeln!(
                out,
                "{:<32}  {:<16} {:>16} {:>16.2} {:>16} {:>16}",
                c.addr,
                c.slave_ack_offset,
                c.diff,
                c.transferred_byte_in_second as f64 / 1024.0,
                if c.in_sync { "OK" } else { "Fall Behind" },
                c.transfer_from_where
            );
        }
        return out;
    }
    let client = &info.ha_client_runtime_info;
    format!(
        "\n#MasterAddr\t{}\n#CommitLogMaxOffset\t{}\n#TransferSpeed(KB/s)\t{:.2}\n#LastReadTime\t{}\n\
         #LastWriteTime\t{}\n#MasterFlushOffset\t{}\n",
        client.master_addr,
        client.max_offset,
        client.transferred_byte_in_second as f64 / 1024.0,
        utc_millis(client.last_read_timestamp),
        utc_millis(client.last_write_timestamp),
        client.master_flush_offset
    )
}

/// `getBrokerEpoch`: a broker's epochs, oldest first.
#[must_use]
pub fn epochs_text(addr: &str, cache: &EpochEntryCache) -> String {
    let mut out = format!(
        "\n#clusterName\t{}\n#brokerName\t{}\n#brokerAddr\t{addr}\n#brokerId\t{}\n#maxOffset\t{}\n",
        cache.cluster_name, cache.broker_name, cache.broker_id, cache.max_offset
    );
    for e in &cache.epoch_list {
        let _ = writeln!(
            out,
            "#Epoch: EpochEntry{{epoch={}, startOffset={}, endOffset={}}}",
            e.epoch, e.start_offset, e.end_offset
        );
    }
    out
}

/// `getSyncStateSet`: each set's master, epochs and replicas.
#[must_use]
pub fn sync_state_text(info: &BrokerReplicasInfo) -> String {
    let mut out = String::new();
    for (name, set) in &info.replicas_info_table {
        out.push_str(&one_set(name, set));
    }
    out
}

fn one_set(name: &str, set: &ReplicasInfo) -> String {
    let mut out = format!(
        "\n#brokerName\t{name}\n#MasterBrokerId\t{}\n#MasterAddr\t{}\n#MasterEpoch\t{}\n#SyncStateSetEpoch\t{}\n\
         #SyncStateSetNums\t{}\n",
        set.master_broker_id.map_or_else(|| "none".into(), |id| id.to_string()),
        set.master_address.as_deref().unwrap_or("none"),
        set.master_epoch,
        set.sync_state_set_epoch,
        set.in_sync_replicas.len()
    );
    for (label, replicas) in
        [("InSyncReplica", &set.in_sync_replicas), ("OutOfSyncReplica", &set.not_in_sync_replicas)]
    {
        for r in replicas {
            let _ = writeln!(
                out,
                "\n#{label}:\tReplicaIdentity{{brokerName='{}', brokerId={}, brokerAddress='{}', alive={}}}",
                r.broker_name, r.broker_id, r.broker_address, r.alive
            );
        }
    }
    out
}

/// `electMaster`'s report.
#[must_use]
pub fn elected_text(cluster: &str, broker_name: &str, elected: &Elected) -> String {
    let members = elected.body.broker_member_group.as_ref().map(|g| &g.broker_addrs);
    let mut out = format!(
        "\n#ClusterName\t{cluster}\n#BrokerName\t{broker_name}\n#BrokerMasterAddr\t{}\n#MasterEpoch\t{}\n\
         #SyncStateSetEpoch\t{}\n",
        elected.master.master_address.as_deref().unwrap_or(""),
        elected.master.master_epoch.unwrap_or(0),
        elected.master.sync_state_set_epoch.unwrap_or(0)
    );
    if let Some(members) = members {
        let _ = writeln!(out, "#BrokerMembers\t{members:?}");
    }
    let _ = writeln!(out, "#SyncStateSet\t{:?}", elected.body.sync_state_set);
    out
}
