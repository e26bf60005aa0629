//! Send headers: the long (v1) form, the short (v2) form the Java and C++ clients use, and
//! the response every client reads.

use super::{command_header, CommandHeader, HeaderError};
use crate::protocol::command::ExtFields;

command_header! {
    /// SEND_MESSAGE / SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE request, in its long form.
    pub struct SendMessageRequestHeader {
        /// Producer group.
        producer_group: String => "producerGroup",
        /// Target topic.
        topic: String => "topic",
        /// Template topic for auto-creation, normally `TBW102`.
        default_topic: String => "defaultTopic",
        /// Queue count for an auto-created topic.
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        /// Target queue; negative lets the broker choose.
        queue_id: i32 => "queueId",
        /// Message sys flag (compression, transaction type).
        sys_flag: i32 => "sysFlag",
        /// Producer clock, ms.
        born_timestamp: i64 => "bornTimestamp",
        /// User flag.
        flag: i32 => "flag",
        /// Properties string.
        properties: Option<String> => "properties",
        /// Retry count, for sends to a retry topic.
        reconsume_times: Option<i32> => "reconsumeTimes",
        /// Unit mode.
        unit_mode: Option<bool> => "unitMode",
        /// Whether the body is a batch.
        batch: Option<bool> => "batch",
        /// Maximum retries before the DLQ.
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// Target broker name.
        broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// The short form of [`SendMessageRequestHeader`] (`SendMessageRequestHeaderV2`):
    /// one-letter keys to shrink every send.
    pub struct SendMessageRequestHeaderV2 {
        /// producerGroup.
        a: String => "a",
        /// topic.
        b: String => "b",
        /// defaultTopic.
        c: String => "c",
        /// defaultTopicQueueNums.
        d: i32 => "d",
        /// queueId.
        e: i32 => "e",
        /// sysFlag.
        f: i32 => "f",
        /// bornTimestamp.
        g: i64 => "g",
        /// flag.
        h: i32 => "h",
        /// properties.
        i: Option<String> => "i",
        /// reconsumeTimes.
        j: Option<i32> => "j",
        /// unitMode.
        k: Option<bool> => "k",
        /// maxReconsumeTimes.
        l: Option<i32> => "l",
        /// batch.
        m: Option<bool> => "m",
        /// brokerName.
        n: Option<String> => "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        Self {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            batch: v2.m,
            max_reconsume_times: v2.l,
            broker_name: v2.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        Self {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name,
        }
    }
}

impl SendMessageRequestHeader {
    /// Read a send header in either form: clients use both on every send code (Go sends
    /// the long form on code 10, Java the short form on 310 and 320).
    pub fn decode_any(ext: &ExtFields) -> Result<Self, HeaderError> {
        if ext.get("b").is_some() && ext.get("topic").is_none() {
            SendMessageRequestHeaderV2::decode(ext).map(Self::from)
        } else {
            Self::decode(ext)
        }
    }
}

command_header! {
    /// Response to a send. `MSG_REGION` and `TRACE_ON` must always be present: the Java
    /// client reads them from the ext map without a null check.
    pub struct SendMessageResponseHeader {
        /// Offset message id(s) of what was stored; comma-joined for a batch.
        msg_id: String => "msgId",
        /// Queue the message went to.
        queue_id: i32 => "queueId",
        /// Queue offset of the (first) message.
        queue_offset: i64 => "queueOffset",
        /// The UNIQ_KEY, for transaction half messages.
        transaction_id: Option<String> => "transactionId",
        /// Region id; Java's default is `DefaultRegion`.
        msg_region: String => "MSG_REGION",
        /// Whether tracing is on: `"true"` / `"false"`.
        trace_on: String => "TRACE_ON",
        /// Unique id of an inner batch.
        batch_uniq_id: Option<String> => "batchUniqId",
        /// For a timed message (RocketMQ 5.3.2+): the handle RECALL_MESSAGE takes.
        recall_handle: Option<String> => "recallHandle",
    }
}

command_header! {
    /// RECALL_MESSAGE request: take back a timed message before it is due.
    pub struct RecallMessageRequestHeader {
        /// The producer group asking.
        producer_group: Option<String> => "producerGroup",
        /// The timed message's topic.
        topic: String => "topic",
        /// The handle its send answered with.
        recall_handle: String => "recallHandle",
        /// The broker the client addressed (`bname`).
        broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// RECALL_MESSAGE response.
    pub struct RecallMessageResponseHeader {
        /// The recalled message's unique id (UNIQ_KEY).
        msg_id: String => "msgId",
    }
}
