//! Controller headers (RocketMQ 5's controller mode, RIP-44): a broker gets an id, registers
//! with the controller, heartbeats, and learns its role; tools read sync state and force
//! elections.

use super::command_header;

command_header! {
    /// CONTROLLER_GET_NEXT_BROKER_ID request (and its reply, with `next_broker_id`).
    pub struct GetNextBrokerIdHeader {
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// The broker set.
        broker_name: String => "brokerName",
        /// The id the set would give next (replies only).
        next_broker_id: Option<i64> => "nextBrokerId",
    }
}

command_header! {
    /// CONTROLLER_APPLY_BROKER_ID request: claim an id, compare-and-set.
    pub struct ApplyBrokerIdRequestHeader {
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// The broker set.
        broker_name: String => "brokerName",
        /// The id claimed.
        applied_broker_id: i64 => "appliedBrokerId",
        /// `address;unique-code`: the same broker claiming again is let through.
        register_check_code: String => "registerCheckCode",
    }
}

command_header! {
    /// CONTROLLER_REGISTER_BROKER request.
    pub struct RegisterBrokerToControllerRequestHeader {
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// The broker set.
        broker_name: String => "brokerName",
        /// The broker's id in its set.
        broker_id: i64 => "brokerId",
        /// Its remoting address.
        broker_address: String => "brokerAddress",
        /// Its replication address (Keel's extension: a controller names it to the set's
        /// slaves once this broker is master).
        ha_address: Option<String> => "haAddress",
    }
}

command_header! {
    /// CONTROLLER_GET_METADATA_INFO reply: the controller group and its leader, which
    /// brokers and tools send their requests to.
    pub struct GetMetaDataResponseHeader {
        /// The group's name (`controllerDLegerGroup`).
        group: Option<String> => "group",
        /// The leader's id (`n0`), if one is known.
        controller_leader_id: Option<String> => "controllerLeaderId",
        /// The leader's address, if one is known.
        controller_leader_address: Option<String> => "controllerLeaderAddress",
        /// Whether the controller answering leads.
        is_leader: bool => "isLeader",
        /// Every member, `n0-host:port;n1-host:port;…`.
        peers: Option<String> => "peers",
    }
}

command_header! {
    /// What a broker is told of its set's master: the replies to CONTROLLER_REGISTER_BROKER,
    /// CONTROLLER_ELECT_MASTER and CONTROLLER_GET_REPLICA_INFO, and the request
    /// NOTIFY_BROKER_ROLE_CHANGED.
    pub struct MasterInfoHeader {
        /// The master's id; absent while the set has none.
        master_broker_id: Option<i64> => "masterBrokerId",
        /// The master's remoting address.
        master_address: Option<String> => "masterAddress",
        /// The master's epoch.
        master_epoch: Option<i32> => "masterEpoch",
        /// The SyncStateSet's epoch.
        sync_state_set_epoch: Option<i32> => "syncStateSetEpoch",
        /// The master's replication address (Keel's extension), if it registered one.
        master_ha_address: Option<String> => "masterHaAddress",
    }
}

command_header! {
    /// CONTROLLER_ELECT_MASTER request: by a broker for itself, by a tool (`designateElect`),
    /// or with no broker id for "whoever is best".
    pub struct ElectMasterRequestHeader {
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// The broker set.
        broker_name: String => "brokerName",
        /// The broker asking, or designated; -1 for none.
        broker_id: Option<i64> => "brokerId",
        /// Elect exactly `broker_id` or nobody (`mqadmin electMaster`).
        designate_elect: Option<bool> => "designateElect",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET request (the new set and its epoch in the body).
    pub struct AlterSyncStateSetRequestHeader {
        /// The broker set.
        broker_name: String => "brokerName",
        /// The master asking.
        master_broker_id: i64 => "masterBrokerId",
        /// The epoch it is master in.
        master_epoch: i32 => "masterEpoch",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET reply.
    pub struct AlterSyncStateSetResponseHeader {
        /// The epoch the new set took.
        new_sync_state_set_epoch: i32 => "newSyncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_GET_REPLICA_INFO request.
    pub struct GetReplicaInfoRequestHeader {
        /// The broker set.
        broker_name: String => "brokerName",
    }
}

command_header! {
    /// CLEAN_BROKER_DATA request (`mqadmin cleanBrokerMetadata`).
    pub struct CleanControllerBrokerDataRequestHeader {
        /// Cluster name.
        cluster_name: Option<String> => "clusterName",
        /// The broker set.
        broker_name: String => "brokerName",
        /// `;`-separated ids to forget; absent for the whole set.
        broker_controller_ids_to_clean: Option<String> => "brokerControllerIdsToClean",
        /// Forget brokers that are alive too.
        clean_living_broker: Option<bool> => "isCleanLivingBroker",
    }
}
