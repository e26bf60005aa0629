//! Headers of 5.x pop consumption (`PopMessageRequestHeader` and friends). Their codes do
//! not fit in the binary header's 16 bits, so they always travel as JSON.

use super::command_header;

command_header! {
    /// POP_MESSAGE request.
    pub struct PopMessageRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue, or -1: any queue the broker picks.
        queue_id: i32 => "queueId",
        /// Most messages to return.
        max_msg_nums: i32 => "maxMsgNums",
        /// How long popped messages stay invisible, in ms.
        invisible_time: i64 => "invisibleTime",
        /// How long the broker may hold the pop, in ms.
        poll_time: i64 => "pollTime",
        /// When the client sent it (its clock, ms).
        born_time: i64 => "bornTime",
        /// Where a group without an offset starts: 0 the queue's min, 1 its max.
        init_mode: i32 => "initMode",
        /// Filter type (`TAG`).
        exp_type: Option<String> => "expType",
        /// Filter expression.
        exp: Option<String> => "exp",
        /// A FIFO pop: a queue stays blocked while its batch is not acknowledged.
        order: Option<bool> => "order",
        /// A FIFO pop's attempt id: the same id gets the same batch again.
        attempt_id: Option<String> => "attemptId",
    }
}

command_header! {
    /// POP_MESSAGE response: what a client builds receipt handles from.
    pub struct PopMessageResponseHeader {
        /// The broker's clock at the pop, ms.
        pop_time: i64 => "popTime",
        /// The invisible time granted, ms.
        invisible_time: i64 => "invisibleTime",
        /// The revive queue of the batch's checkpoint (999 for FIFO).
        revive_qid: i32 => "reviveQid",
        /// Messages left in the queues looked at.
        rest_num: i64 => "restNum",
        /// `retry queueId startOffset` per queue popped, `;`-separated.
        start_offset_info: Option<String> => "startOffsetInfo",
        /// `retry queueId offset,offset,…` per queue popped, `;`-separated.
        msg_offset_info: Option<String> => "msgOffsetInfo",
        /// FIFO: `retry queueId attempts` per queue popped.
        order_count_info: Option<String> => "orderCountInfo",
    }
}

command_header! {
    /// ACK_MESSAGE request.
    pub struct AckMessageRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic (the original, or the pop retry topic for a retried message).
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// The receipt handle.
        extra_info: String => "extraInfo",
        /// The message's queue offset.
        offset: i64 => "offset",
    }
}

command_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME request.
    pub struct ChangeInvisibleTimeRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue.
        queue_id: i32 => "queueId",
        /// The receipt handle.
        extra_info: String => "extraInfo",
        /// The message's queue offset.
        offset: i64 => "offset",
        /// The new invisible time from now, ms.
        invisible_time: i64 => "invisibleTime",
    }
}

command_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME response: the new handle's parts.
    pub struct ChangeInvisibleTimeResponseHeader {
        /// The new pop time.
        pop_time: i64 => "popTime",
        /// The new invisible time.
        invisible_time: i64 => "invisibleTime",
        /// The new checkpoint's revive queue.
        revive_qid: i32 => "reviveQid",
    }
}

command_header! {
    /// NOTIFICATION request: hold until a pop of the group would find something.
    pub struct NotificationRequestHeader {
        /// Consumer group.
        consumer_group: String => "consumerGroup",
        /// Topic.
        topic: String => "topic",
        /// Queue, or -1 for any.
        queue_id: i32 => "queueId",
        /// How long the broker may hold it, ms.
        poll_time: i64 => "pollTime",
        /// When the client sent it.
        born_time: i64 => "bornTime",
        /// A FIFO group.
        order: Option<bool> => "order",
        /// A FIFO attempt id.
        attempt_id: Option<String> => "attemptId",
    }
}

command_header! {
    /// NOTIFICATION response.
    pub struct NotificationResponseHeader {
        /// Whether a pop would find something now.
        has_msg: bool => "hasMsg",
    }
}
