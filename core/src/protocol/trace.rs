//! Message trace records as RocketMQ's clients write them into the trace topic
//! (`RMQ_SYS_TRACE_TOPIC`): records end with `FIELD_SPLITOR` (U+0002), fields within one are
//! split by `CONTENT_SPLITOR` (U+0001); the first field names the record's type. The trace
//! message's keys hold the traced message's id, so the key index finds its trace.
//!
//! | type | fields after the type, in order |
//! |------|---------------------------------|
//! | `Pub` | timeStamp, regionId, groupName, topic, msgId, tags, keys, storeHost, bodyLength, costTime, msgType, [offsetMsgId,] success |
//! | `SubBefore` | timeStamp, regionId, groupName, requestId, msgId, retryTimes, keys |
//! | `SubAfter` | requestId, msgId, costTime, success, keys, [contextCode, [timeStamp, groupName]] |
//!
//! Other types (`EndTransaction`, `Recall`) are kept by name with their fields.

/// The default trace topic.
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Ends each record.
pub const FIELD_SPLITOR: char = '\u{2}';
/// Splits the fields of a record.
pub const CONTENT_SPLITOR: char = '\u{1}';

/// One trace record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceRecord {
    /// A send: who sent which message, when, how long it took, whether it was stored.
    Pub {
        /// When the send began, ms.
        timestamp: i64,
        /// The producer group.
        group: String,
        /// The topic.
        topic: String,
        /// The message's unique id.
        msg_id: String,
        /// Its offset id, when the writer gave one.
        offset_msg_id: Option<String>,
        /// The broker that stored it.
        store_host: String,
        /// How long the send took, ms.
        cost_ms: i64,
        /// Whether it was stored.
        success: bool,
    },
    /// A consumer is about to run its listener on the message.
    SubBefore {
        /// When, ms.
        timestamp: i64,
        /// The consumer group.
        group: String,
        /// Pairs this record with its `SubAfter`.
        request_id: String,
        /// The message's unique id.
        msg_id: String,
        /// Deliveries before this one.
        retry_times: i32,
    },
    /// The listener returned.
    SubAfter {
        /// Pairs this record with its `SubBefore`.
        request_id: String,
        /// The message's unique id.
        msg_id: String,
        /// How long the listener took, ms.
        cost_ms: i64,
        /// Whether it consumed the message.
        success: bool,
        /// When, ms, if the writer said.
        timestamp: Option<i64>,
        /// The consumer group, if the writer said.
        group: Option<String>,
    },
    /// Another type, by name, with its fields.
    Other {
        /// The type's name.
        kind: String,
        /// Its fields after the type.
        fields: Vec<String>,
    },
}

fn number(field: Option<&&str>) -> i64 {
    field.and_then(|f| f.trim().parse().ok()).unwrap_or(0)
}

fn text(field: Option<&&str>) -> String {
    field.map(|f| (*f).to_owned()).unwrap_or_default()
}

impl TraceRecord {
    /// Every record of a trace message's body; records of unknown shape are kept as
    /// [`TraceRecord::Other`].
    #[must_use]
    pub fn decode_all(body: &str) -> Vec<Self> {
        body.split(FIELD_SPLITOR).filter(|r| !r.trim().is_empty()).map(Self::decode).collect()
    }

    fn decode(record: &str) -> Self {
        let f: Vec<&str> = record.split(CONTENT_SPLITOR).collect();
        let kind = f.first().copied().unwrap_or_default();
        match (kind, f.len()) {
            ("Pub", 13..) => {
                // Older writers leave offsetMsgId out: success is then the 13th field.
                let (offset_msg_id, success) =
                    if f.len() >= 14 { (Some(text(f.get(12))), f.get(13)) } else { (None, f.get(12)) };
                Self::Pub {
                    timestamp: number(f.get(1)),
                    group: text(f.get(3)),
                    topic: text(f.get(4)),
                    msg_id: text(f.get(5)),
                    offset_msg_id,
                    store_host: text(f.get(8)),
                    cost_ms: number(f.get(10)),
                    success: success.is_some_and(|s| s.trim() == "true"),
                }
            }
            ("SubBefore", 7..) => Self::SubBefore {
                timestamp: number(f.get(1)),
                group: text(f.get(3)),
                request_id: text(f.get(4)),
                msg_id: text(f.get(5)),
                retry_times: i32::try_from(number(f.get(6))).unwrap_or(0),
            },
            ("SubAfter", 5..) => Self::SubAfter {
                request_id: text(f.get(1)),
                msg_id: text(f.get(2)),
                cost_ms: number(f.get(3)),
                success: f.get(4).is_some_and(|s| s.trim() == "true"),
                timestamp: f.get(7).and_then(|t| t.trim().parse().ok()),
                group: f.get(8).map(|g| (*g).to_owned()),
            },
            _ => Self::Other {
                kind: kind.to_owned(),
                fields: f.iter().skip(1).map(|s| (*s).to_owned()).collect(),
            },
        }
    }

    /// The traced message's unique id, if the record names one.
    #[must_use]
    pub fn msg_id(&self) -> Option<&str> {
        match self {
            Self::Pub { msg_id, .. } | Self::SubBefore { msg_id, .. } | Self::SubAfter { msg_id, .. } => {
                Some(msg_id)
            }
            Self::Other { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_as_rocketmqs_clients_write_them() {
        let body = "Pub\u{1}1700000000000\u{1}DefaultRegion\u{1}pg\u{1}Orders\u{1}AC11000100002A9F0000000000000000\u{1}TagA\u{1}k1\u{1}10.0.0.1:10911\u{1}5\u{1}3\u{1}0\u{1}0A00000100002A9F0000000000000000\u{1}true\u{2}\
                    SubBefore\u{1}1700000000100\u{1}DefaultRegion\u{1}cg\u{1}req-1\u{1}AC11000100002A9F0000000000000000\u{1}0\u{1}k1\u{2}\
                    SubAfter\u{1}req-1\u{1}AC11000100002A9F0000000000000000\u{1}7\u{1}true\u{1}k1\u{1}0\u{1}1700000000107\u{1}cg\u{2}";
        let records = TraceRecord::decode_all(body);
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            TraceRecord::Pub {
                timestamp: 1_700_000_000_000,
                group: "pg".into(),
                topic: "Orders".into(),
                msg_id: "AC11000100002A9F0000000000000000".into(),
                offset_msg_id: Some("0A00000100002A9F0000000000000000".into()),
                store_host: "10.0.0.1:10911".into(),
                cost_ms: 3,
                success: true,
            }
        );
        assert!(matches!(&records[1], TraceRecord::SubBefore { group, retry_times: 0, .. } if group == "cg"));
        assert!(matches!(
            &records[2],
            TraceRecord::SubAfter { cost_ms: 7, success: true, timestamp: Some(1_700_000_000_107), group: Some(g), .. } if g == "cg"
        ));
        // An older Pub without the offset id, and a SubAfter without group and time.
        let old = "Pub\u{1}1\u{1}r\u{1}pg\u{1}T\u{1}ID\u{1}\u{1}\u{1}h:1\u{1}1\u{1}2\u{1}0\u{1}false\u{2}SubAfter\u{1}q\u{1}ID\u{1}4\u{1}false\u{1}\u{2}";
        let records = TraceRecord::decode_all(old);
        assert!(matches!(
            &records[0],
            TraceRecord::Pub { offset_msg_id: None, success: false, cost_ms: 2, .. }
        ));
        assert!(matches!(&records[1], TraceRecord::SubAfter { group: None, timestamp: None, .. }));
        assert_eq!(records[1].msg_id(), Some("ID"));
        assert!(
            matches!(&TraceRecord::decode_all("Recall\u{1}1\u{2}")[0], TraceRecord::Other { kind, .. } if kind == "Recall")
        );
    }
}
