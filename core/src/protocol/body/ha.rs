//! GET_BROKER_HA_STATUS's answer (`HARuntimeInfo`): what `mqadmin haStatus` prints — a
//! master's slaves with how far behind each is, or a slave's link to its master.

use serde::{Deserialize, Serialize};

/// A broker's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaRuntimeInfo {
    /// Whether the broker is a master.
    pub master: bool,
    /// The master's CommitLog end (a slave reports its own).
    pub master_commit_log_max_offset: i64,
    /// Slaves within `haMaxGapNotInSync` of the end.
    pub in_sync_slave_nums: i32,
    /// A master's slaves, one per replication connection.
    pub ha_connection_info: Vec<HaConnectionRuntimeInfo>,
    /// A slave's link to its master.
    pub ha_client_runtime_info: HaClientRuntimeInfo,
}

/// One slave as its master sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaConnectionRuntimeInfo {
    /// The slave's address (`host:port`).
    pub addr: String,
    /// The CommitLog end the slave last reported holding.
    pub slave_ack_offset: i64,
    /// How many bytes the slave is behind the master's end.
    pub diff: i64,
    /// Whether `diff` is within `haMaxGapNotInSync`.
    pub in_sync: bool,
    /// Bytes streamed to it in the last whole second.
    pub transferred_byte_in_second: i64,
    /// Where its stream began.
    pub transfer_from_where: i64,
}

/// A slave's link to its master.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HaClientRuntimeInfo {
    /// The master's replication address.
    pub master_addr: String,
    /// Bytes received from the master in the last whole second.
    pub transferred_byte_in_second: i64,
    /// The slave's CommitLog end.
    pub max_offset: i64,
    /// When bytes last came from the master (ms since the epoch).
    pub last_read_timestamp: i64,
    /// When the slave last reported to the master (ms since the epoch).
    pub last_write_timestamp: i64,
    /// The master's flushed end, where known (Keel's classic replication does not carry
    /// it: 0).
    pub master_flush_offset: i64,
    /// Whether the link is open and streaming (Java's `isActivated` getter).
    pub activated: bool,
}

/// GET_BROKER_EPOCH_CACHE's answer (`EpochEntryCache`, `mqadmin getBrokerEpoch`): which
/// master wrote which stretch of this broker's log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EpochEntryCache {
    /// Cluster name.
    pub cluster_name: String,
    /// The set.
    pub broker_name: String,
    /// This broker's id in its set.
    pub broker_id: i64,
    /// The epochs, oldest first.
    pub epoch_list: Vec<EpochRange>,
    /// This broker's CommitLog end.
    pub max_offset: i64,
}

/// One epoch in [`EpochEntryCache`] (`EpochEntry`): the newest ends at `i64::MAX`, as Java's.
/// Keel's epoch numbers: in controller mode the controller's master epoch times 65536, plus
/// the master's restarts within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EpochRange {
    /// The epoch.
    pub epoch: i64,
    /// Where its master's first record went.
    pub start_offset: i64,
    /// Where the next epoch began.
    pub end_offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json;

    #[test]
    fn java_field_names_round_trip() {
        let java = br#"{"haClientRuntimeInfo":{"activated":false,"lastReadTimestamp":0,"lastWriteTimestamp":0,"masterFlushOffset":0,"maxOffset":0,"transferredByteInSecond":0},"haConnectionInfo":[{"addr":"127.0.0.1:51234","diff":1024,"inSync":true,"slaveAckOffset":4096,"transferFromWhere":0,"transferredByteInSecond":2048}],"inSyncSlaveNums":1,"master":true,"masterCommitLogMaxOffset":5120}"#;
        let info: HaRuntimeInfo = json::from_slice(java).unwrap();
        assert!(info.master);
        assert_eq!(info.in_sync_slave_nums, 1);
        let slave = &info.ha_connection_info[0];
        assert_eq!(
            (slave.slave_ack_offset, slave.diff, slave.transferred_byte_in_second),
            (4096, 1024, 2048)
        );
        let text = String::from_utf8(json::to_vec(&info, json::KeyStyle::Fastjson).unwrap()).unwrap();
        assert!(text.contains("\"masterCommitLogMaxOffset\":5120"), "{text}");
        assert!(text.contains("\"transferFromWhere\":0"), "{text}");
        assert_eq!(json::from_slice::<HaRuntimeInfo>(text.as_bytes()).unwrap(), info);
    }
}
