//! Headers of client management calls, both directions.

use super::command_header;

command_header! {
    /// UNREGISTER_CLIENT request.
    pub struct UnregisterClientRequestHeader {
        /// The client id (`ip@instance`).
        client_id: String => "clientID",
        /// Producer group to leave.
        producer_group: Option<String> => "producerGroup",
        /// Consumer group to leave.
        consumer_group: Option<String> => "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP request, and the broker's NOTIFY_CONSUMER_IDS_CHANGED.
    pub struct ConsumerGroupHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP request.
    pub struct DeleteSubscriptionGroupRequestHeader {
        /// The group.
        group_name: String => "groupName",
        /// Also drop the group's committed offsets.
        clean_offset: Option<bool> => "cleanOffset",
    }
}

command_header! {
    /// GET_SUBSCRIPTIONGROUP_CONFIG request.
    pub struct GetSubscriptionGroupConfigRequestHeader {
        /// The group.
        group: String => "group",
    }
}
