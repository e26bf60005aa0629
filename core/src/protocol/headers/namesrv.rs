//! Name server headers.

use super::command_header;

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC request.
    pub struct GetRouteInfoRequestHeader {
        /// The topic.
        topic: String => "topic",
        /// Newer clients ask for standard JSON (quoted integer keys).
        accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
    }
}

command_header! {
    /// REGISTER_BROKER request.
    pub struct RegisterBrokerRequestHeader {
        /// Broker group name.
        broker_name: String => "brokerName",
        /// `ip:port` clients use.
        broker_addr: String => "brokerAddr",
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// `ip:haPort`.
        ha_server_addr: String => "haServerAddr",
        /// 0 = master.
        broker_id: i64 => "brokerId",
        /// Expiry after this long without registration (default 120 s).
        heartbeat_timeout_millis: Option<i64> => "heartbeatTimeoutMillis",
        /// Slave-acting-master mode.
        enable_acting_master: Option<bool> => "enableActingMaster",
        /// Whether the body is the compressed form.
        compressed: Option<bool> => "compressed",
        /// CRC32 of the body, masked; 0 = unchecked.
        body_crc32: Option<i32> => "bodyCrc32",
    }
}

command_header! {
    /// UNREGISTER_BROKER request.
    pub struct UnregisterBrokerRequestHeader {
        /// Broker group name.
        broker_name: String => "brokerName",
        /// `ip:port`.
        broker_addr: String => "brokerAddr",
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// 0 = master.
        broker_id: i64 => "brokerId",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV request.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        /// The topic.
        topic: String => "topic",
        /// Only delete the queue data of brokers in this cluster.
        cluster_name: Option<String> => "clusterName",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER request.
    pub struct GetTopicsByClusterRequestHeader {
        /// The cluster.
        cluster: String => "cluster",
    }
}

command_header! {
    /// BROKER_HEARTBEAT request: a lightweight keep-alive to a name server, and in
    /// controller mode what the controller elects by.
    pub struct BrokerHeartbeatRequestHeader {
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// `ip:port`.
        broker_addr: String => "brokerAddr",
        /// Broker group name.
        broker_name: String => "brokerName",
        /// The broker's id in its set (controller mode).
        broker_id: Option<i64> => "brokerId",
        /// The newest epoch in its log.
        epoch: Option<i32> => "epoch",
        /// Its CommitLog end.
        max_offset: Option<i64> => "maxOffset",
        /// What its set has confirmed.
        confirm_offset: Option<i64> => "confirmOffset",
        /// Count it dead after this long without a heartbeat.
        heartbeat_timeout_mills: Option<i64> => "heartbeatTimeoutMills",
        /// Lower wins among equals (`brokerElectionPriority`).
        election_priority: Option<i32> => "electionPriority",
    }
}

command_header! {
    /// QUERY_DATA_VERSION request (broker asks whether it must re-register).
    pub struct QueryDataVersionRequestHeader {
        /// Broker group name.
        broker_name: String => "brokerName",
        /// `ip:port`.
        broker_addr: String => "brokerAddr",
        /// Cluster name.
        cluster_name: String => "clusterName",
        /// 0 = master.
        broker_id: i64 => "brokerId",
    }
}

command_header! {
    /// PUT_KV_CONFIG request.
    pub struct PutKvConfigRequestHeader {
        /// The namespace (`ORDER_TOPIC_CONFIG`, say).
        namespace: String => "namespace",
        /// The key.
        key: String => "key",
        /// The value.
        value: String => "value",
    }
}

command_header! {
    /// GET_KV_CONFIG and DELETE_KV_CONFIG request.
    pub struct KvConfigKeyRequestHeader {
        /// The namespace.
        namespace: String => "namespace",
        /// The key.
        key: String => "key",
    }
}

command_header! {
    /// GET_KV_CONFIG response.
    pub struct GetKvConfigResponseHeader {
        /// The value.
        value: Option<String> => "value",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE request.
    pub struct GetKvListByNamespaceRequestHeader {
        /// The namespace.
        namespace: String => "namespace",
    }
}
