//! Broker headers for pulls, offsets and queries.

use super::command_header;

command_header! {
    /// PULL_MESSAGE / LITE_PULL_MESSAGE request.
    pub struct PullMessageRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// Queue offset to read from.
        queue_offset: i64 => "queueOffset",
        /// Most messages to return.
        max_msg_nums: i32 => "maxMsgNums",
        /// PullSysFlag bits: commit offset, suspend, subscription, lite pull.
        sys_flag: i32 => "sysFlag",
        /// Offset to commit when the commit-offset flag is set.
        commit_offset: i64 => "commitOffset",
        /// How long the broker may hold the pull.
        suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        /// Subscription expression, with the subscription flag.
        subscription: Option<String> => "subscription",
        /// Subscription version.
        sub_version: i64 => "subVersion",
        /// `TAG` (default) or `SQL92`.
        expression_type: Option<String> => "expressionType",
        /// Byte budget for the answer.
        max_msg_bytes: Option<i32> => "maxMsgBytes",
        /// Target broker name.
        broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// PULL_MESSAGE response (required for SUCCESS and the 19/20/21 codes).
    pub struct PullMessageResponseHeader {
        /// Which broker to pull from next (0 = master).
        suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        /// Offset to request next.
        next_begin_offset: i64 => "nextBeginOffset",
        /// Queue min offset.
        min_offset: i64 => "minOffset",
        /// Queue max offset (next to be written).
        max_offset: i64 => "maxOffset",
        /// Static topics only.
        offset_delta: Option<i64> => "offsetDelta",
        /// Topic sys flag.
        topic_sys_flag: Option<i32> => "topicSysFlag",
        /// Group sys flag.
        group_sys_flag: Option<i32> => "groupSysFlag",
        /// Why a NO_PERMISSION pull was refused.
        forbidden_type: Option<i32> => "forbiddenType",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET request.
    pub struct QueryConsumerOffsetRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// Answer 0 instead of QUERY_NOT_FOUND when nothing is stored.
        set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
    }
}

command_header! {
    /// Response carrying one offset (QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET,
    /// SEARCH_OFFSET_BY_TIMESTAMP).
    pub struct OffsetResponseHeader {
        /// The offset.
        offset: i64 => "offset",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET request.
    pub struct UpdateConsumerOffsetRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// The offset to store.
        commit_offset: i64 => "commitOffset",
    }
}

command_header! {
    /// GET_MAX_OFFSET / GET_MIN_OFFSET / GET_EARLIEST_MSG_STORETIME request.
    pub struct QueueRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// GET_MAX_OFFSET only: committed view (default true).
        committed: Option<bool> => "committed",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP request.
    pub struct SearchOffsetRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// Store time to look for, ms.
        timestamp: i64 => "timestamp",
        /// `LOWER` (default) or `UPPER`.
        boundary_type: Option<String> => "boundaryType",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID request.
    pub struct ViewMessageRequestHeader {
        /// Commit-log offset.
        offset: i64 => "offset",
        /// Topic, if known.
        topic: Option<String> => "topic",
    }
}

command_header! {
    /// END_TRANSACTION request.
    pub struct EndTransactionRequestHeader {
        /// Topic.
        topic: Option<String> => "topic",
        /// Producer group.
        producer_group: String => "producerGroup",
        /// Half message's queue offset.
        tran_state_table_offset: i64 => "tranStateTableOffset",
        /// Half message's commit-log offset.
        commit_log_offset: i64 => "commitLogOffset",
        /// 8 commit, 12 rollback, 0 unknown.
        commit_or_rollback: i32 => "commitOrRollback",
        /// Whether this answers a check.
        from_transaction_check: Option<bool> => "fromTransactionCheck",
        /// The UNIQ_KEY.
        msg_id: String => "msgId",
        /// Transaction id.
        transaction_id: Option<String> => "transactionId",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK request.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the failed message.
        offset: i64 => "offset",
        /// Consumer group.
        group: String => "group",
        /// 0 = broker decides, negative = straight to the DLQ.
        delay_level: i32 => "delayLevel",
        /// Message id as the client saw it.
        origin_msg_id: Option<String> => "originMsgId",
        /// Original topic.
        origin_topic: Option<String> => "originTopic",
        /// Unit mode.
        unit_mode: Option<bool> => "unitMode",
        /// Retries before the DLQ.
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC request.
    pub struct CreateTopicRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Template topic (mqadmin sends TBW102).
        default_topic: Option<String> => "defaultTopic",
        /// Queues consumers read.
        read_queue_nums: i32 => "readQueueNums",
        /// Queues producers write.
        write_queue_nums: i32 => "writeQueueNums",
        /// Permission bits.
        perm: i32 => "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        topic_filter_type: Option<String> => "topicFilterType",
        /// Sys flag.
        topic_sys_flag: Option<i32> => "topicSysFlag",
        /// Ordered topic.
        order: Option<bool> => "order",
        /// Attribute changes, `+key=value` or `-key`, comma-separated (`+message.type=FIFO`).
        attributes: Option<String> => "attributes",
    }
}

command_header! {
    /// QUERY_MESSAGE request: messages by key from the IndexFile.
    pub struct QueryMessageRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// A KEYS token, or the UNIQ_KEY when `_UNIQUE_KEY_QUERY` is "true".
        key: String => "key",
        /// Messages to return at most.
        max_num: i32 => "maxNum",
        /// Earliest store time, ms.
        begin_timestamp: i64 => "beginTimestamp",
        /// Latest store time, ms.
        end_timestamp: i64 => "endTimestamp",
        /// "true" when `key` is a UNIQ_KEY (RocketMQ's `_UNIQUE_KEY_QUERY` ext field).
        unique_key_query: Option<String> => "_UNIQUE_KEY_QUERY",
    }
}

command_header! {
    /// QUERY_MESSAGE response.
    pub struct QueryMessageResponseHeader {
        /// Store time of the newest indexed message.
        index_last_update_timestamp: i64 => "indexLastUpdateTimestamp",
        /// CommitLog offset of the newest indexed message.
        index_last_update_phyoffset: i64 => "indexLastUpdatePhyoffset",
    }
}
