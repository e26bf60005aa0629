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
