//! What pop consumption writes to the revive topic `rmq_sys_REVIVE_LOG_<cluster>`: a
//! checkpoint per popped batch (tag `ck`) and an ack per acknowledgement (`ack`, or `bAck`
//! for several), as JSON bodies with RocketMQ's short field names (`PopCheckPoint`,
//! `AckMsg`, `BatchAckMsg`).
//!
//! | record | field | what |
//! |---|---|---|
//! | ck | `so` | the batch's first queue offset |
//! | | `pt`, `it` | pop time and invisible time, ms |
//! | | `bm` | acknowledged bits (always 0 when written) |
//! | | `n` | messages in the batch (at most 32) |
//! | | `q`, `t`, `c` | queue, topic read, consumer group |
//! | | `ro` | its own revive-queue offset (-1: not known when written) |
//! | | `d` | each message's offset minus `so` |
//! | | `bn` | the broker's name |
//! | ack | `ao` | the acknowledged message's queue offset |
//! | | `so`, `c`, `t`, `q`, `pt`, `bn` | the checkpoint it belongs to |
//! | bAck | `aol` | several acknowledged offsets of one checkpoint |
//!
//! Revive also writes a `bAck` naming every message it re-put, so that a replay after a
//! restart finds the batch done instead of re-putting it again.

use serde::{Deserialize, Serialize};

/// Tag of a checkpoint record.
pub const CK_TAG: &str = "ck";
/// Tag of an ack record.
pub const ACK_TAG: &str = "ack";
/// Tag of a batch ack record.
pub const BATCH_ACK_TAG: &str = "bAck";
/// The group whose offsets in the revive topic say how far revive is done.
pub const REVIVE_GROUP: &str = "CID_RMQ_SYS_REVIVE_GROUP";
/// Most messages one checkpoint covers (its bitmap is a Java `int`).
pub const MAX_CK_MESSAGES: usize = 32;

/// The revive topic of a cluster.
#[must_use]
pub fn revive_topic(cluster: &str) -> String {
    format!("rmq_sys_REVIVE_LOG_{cluster}")
}

/// A popped batch of one queue, waiting for its acks (`PopCheckPoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckPoint {
    /// The batch's first queue offset.
    #[serde(rename = "so")]
    pub start_offset: i64,
    /// The broker's clock at the pop.
    #[serde(rename = "pt")]
    pub pop_time: i64,
    /// Invisible time, ms.
    #[serde(rename = "it")]
    pub invisible_time: i64,
    /// Acknowledged bits.
    #[serde(rename = "bm", default)]
    pub bit_map: i32,
    /// Messages in the batch.
    #[serde(rename = "n")]
    pub num: u8,
    /// Queue.
    #[serde(rename = "q")]
    pub queue_id: i32,
    /// Topic read (the topic, or the group's pop retry topic).
    #[serde(rename = "t")]
    pub topic: String,
    /// Consumer group.
    #[serde(rename = "c")]
    pub cid: String,
    /// Its own revive-queue offset.
    #[serde(rename = "ro", default)]
    pub revive_offset: i64,
    /// Each message's offset minus `start_offset`.
    #[serde(rename = "d", default)]
    pub queue_offset_diff: Vec<i32>,
    /// The broker's name.
    #[serde(rename = "bn", default)]
    pub broker_name: Option<String>,
}

impl CheckPoint {
    /// When its messages become visible again: pop time plus invisible time.
    #[must_use]
    pub fn revive_time(&self) -> i64 {
        self.pop_time.saturating_add(self.invisible_time)
    }

    /// The queue offset of message `index`.
    #[must_use]
    pub fn offset_of(&self, index: usize) -> Option<i64> {
        self.queue_offset_diff.get(index).map(|d| self.start_offset + i64::from(*d))
    }

    /// The bit of the message at queue offset `offset`, if the batch holds it.
    #[must_use]
    pub fn index_of(&self, offset: i64) -> Option<usize> {
        let diff = i32::try_from(offset.checked_sub(self.start_offset)?).ok()?;
        self.queue_offset_diff.iter().position(|d| *d == diff)
    }
}

/// One or several acknowledgements of a checkpoint's messages (`AckMsg`, `BatchAckMsg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    /// One acknowledged offset (`ack`).
    #[serde(rename = "ao", default, skip_serializing_if = "Option::is_none")]
    pub ack_offset: Option<i64>,
    /// Several (`bAck`).
    #[serde(rename = "aol", default, skip_serializing_if = "Vec::is_empty")]
    pub ack_offset_list: Vec<i64>,
    /// The checkpoint's first offset.
    #[serde(rename = "so")]
    pub start_offset: i64,
    /// Consumer group.
    #[serde(rename = "c")]
    pub consumer_group: String,
    /// Topic read.
    #[serde(rename = "t")]
    pub topic: String,
    /// Queue.
    #[serde(rename = "q")]
    pub queue_id: i32,
    /// The checkpoint's pop time.
    #[serde(rename = "pt")]
    pub pop_time: i64,
    /// The broker's name.
    #[serde(rename = "bn", default)]
    pub broker_name: Option<String>,
}

impl AckRecord {
    /// Every offset it acknowledges.
    pub fn offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.ack_offset.into_iter().chain(self.ack_offset_list.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::{self, KeyStyle};

    #[test]
    fn records_are_rocketmqs_json_and_read_back() {
        let ck = CheckPoint {
            start_offset: 10,
            pop_time: 1_000,
            invisible_time: 30_000,
            bit_map: 0,
            num: 3,
            queue_id: 1,
            topic: "Orders".into(),
            cid: "cg".into(),
            revive_offset: -1,
            queue_offset_diff: vec![0, 1, 3],
            broker_name: Some("broker-a".into()),
        };
        let text = json::to_string(&ck, KeyStyle::Fastjson).unwrap();
        for key in ["\"so\":10", "\"pt\":1000", "\"it\":30000", "\"n\":3", "\"d\":[0,1,3]", "\"c\":\"cg\""] {
            assert!(text.contains(key), "{key} in {text}");
        }
        let back: CheckPoint = json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, ck);
        assert_eq!((ck.offset_of(2), ck.index_of(13), ck.index_of(12)), (Some(13), Some(2), None));
        assert_eq!(ck.revive_time(), 31_000);
        let ack = AckRecord {
            ack_offset: Some(13),
            ack_offset_list: Vec::new(),
            start_offset: 10,
            consumer_group: "cg".into(),
            topic: "Orders".into(),
            queue_id: 1,
            pop_time: 1_000,
            broker_name: None,
        };
        let text = json::to_string(&ack, KeyStyle::Fastjson).unwrap();
        assert!(text.contains("\"ao\":13") && !text.contains("aol"), "{text}");
        let back: AckRecord = json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back.offsets().collect::<Vec<_>>(), vec![13]);
        let batch: AckRecord =
            json::from_slice(br#"{"aol":[10,11],"so":10,"c":"cg","t":"Orders","q":1,"pt":1000}"#).unwrap();
        assert_eq!(batch.offsets().collect::<Vec<_>>(), vec![10, 11]);
    }
}
