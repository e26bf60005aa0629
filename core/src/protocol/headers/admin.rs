//! Headers of the operator tools' status requests.

use super::command_header;

command_header! {
    /// GET_TOPIC_STATS_INFO and QUERY_TOPIC_CONSUME_BY_WHO request.
    pub struct TopicRequestHeader {
        /// Topic.
        topic: String => "topic",
    }
}

command_header! {
    /// GET_CONSUME_STATS request.
    pub struct GetConsumeStatsRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Only this topic.
        topic: Option<String> => "topic",
        /// Only these topics, `;`-joined (newer tools).
        topic_list: Option<String> => "topicList",
    }
}

command_header! {
    /// GET_CONSUMER_CONNECTION_LIST request.
    pub struct ConsumerGroupRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// GET_PRODUCER_CONNECTION_LIST request.
    pub struct ProducerGroupRequestHeader {
        /// Producer group.
        producer_group: String => "producerGroup",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET request, and RESET_CONSUMER_CLIENT_OFFSET as the broker
    /// pushes it to the group's members.
    pub struct ResetOffsetRequestHeader {
        /// Topic.
        topic: String => "topic",
        /// Consumer group.
        group: String => "group",
        /// Reset to the first message stored at or after this time (ms); −1: the queue's end.
        timestamp: i64 => "timestamp",
        /// Move forward too (otherwise only back).
        is_force: Option<bool> => "isForce",
        /// Only this queue (−1 or absent: every read queue).
        queue_id: Option<i32> => "queueId",
        /// With `queueId`: this offset, not the time's.
        offset: Option<i64> => "offset",
    }
}
