//! fastjson-compatible JSON, read and written, for remoting bodies and config files.
//!
//! `serde_json` cannot produce or parse what Java RocketMQ exchanges: unquoted integer map
//! keys and objects used as map keys. This module is a small serde data format for that
//! dialect: [`from_slice`] reads leniently (both key forms, numbers as strings and back),
//! [`to_vec`] writes with a chosen [`KeyStyle`].

mod de;
mod ser;
mod value;

pub use ser::{write_string, KeyStyle};
pub use value::Value;
pub(crate) use value::{parse_integer, Reader};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A JSON read or write failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON (even by fastjson's lenient rules).
    #[error("bad JSON at byte {at}: {what}")]
    Syntax {
        /// What was wrong.
        what: &'static str,
        /// Byte offset in the input.
        at: usize,
    },
    /// The JSON does not have the shape the reader wants, or a value cannot be written.
    #[error("JSON shape: {0}")]
    Shape(String),
}

/// Read a `T` from fastjson-dialect bytes.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, JsonError> {
    let value = Value::parse(input)?;
    from_value(&value)
}

/// Read a `T` from an already parsed value.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, JsonError> {
    T::deserialize(de::ValueDeserializer(value))
}

/// Write `value` as fastjson-dialect JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T, keys: KeyStyle) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::with_capacity(128);
    value.serialize(ser::Serializer { out: &mut out, keys })?;
    Ok(out)
}

/// Write a body built from the core's own types, whose shape always serializes: a failure
/// is a bug, asserted (on in release too), never an empty body sent in its place.
///
/// # Panics
/// If `value` cannot be written (a type with a map key JSON cannot carry).
#[must_use]
pub fn to_body<T: Serialize + ?Sized>(value: &T, keys: KeyStyle) -> Vec<u8> {
    match to_vec(value, keys) {
        Ok(bytes) => bytes,
        Err(error) => panic!("a body of the core's own types did not serialize: {error}"),
    }
}

/// Write `value` as a fastjson-dialect JSON string.
pub fn to_string<T: Serialize + ?Sized>(value: &T, keys: KeyStyle) -> Result<String, JsonError> {
    let bytes = to_vec(value, keys)?;
    // The writer only emits UTF-8: escapes are ASCII and strings come from `&str`.
    String::from_utf8(bytes).map_err(|_| JsonError::Shape("writer produced non-UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct MessageQueue {
        broker_name: String,
        queue_id: i32,
        topic: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct OffsetWrapper {
        broker_offset: i64,
        consumer_offset: i64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ConsumeStats {
        consume_tps: f64,
        offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct BrokerData {
        broker_addrs: BTreeMap<i64, String>,
        broker_name: String,
        #[serde(default)]
        zone_name: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum MessageModel {
        Broadcasting,
        Clustering,
    }

    #[test]
    fn integer_keys_are_written_bare_or_quoted_and_read_both_ways() {
        let data = BrokerData {
            broker_addrs: BTreeMap::from([(0, "10.0.0.1:10911".into()), (1, "10.0.0.2:10911".into())]),
            broker_name: "broker-a".into(),
            zone_name: None,
        };
        let fast = to_string(&data, KeyStyle::Fastjson).unwrap();
        assert_eq!(
            fast,
            r#"{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a"}"#
        );
        let standard = to_string(&data, KeyStyle::Standard).unwrap();
        assert_eq!(
            standard,
            r#"{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a"}"#
        );
        assert_eq!(from_slice::<BrokerData>(fast.as_bytes()).unwrap(), data);
        assert_eq!(from_slice::<BrokerData>(standard.as_bytes()).unwrap(), data);
    }

    #[test]
    fn object_keys_round_trip_in_fastjson_form() {
        let mq = MessageQueue { broker_name: "broker-a".into(), queue_id: 0, topic: "T".into() };
        let stats = ConsumeStats {
            consume_tps: 0.0,
            offset_table: BTreeMap::from([(mq, OffsetWrapper { broker_offset: 120, consumer_offset: 118 })]),
        };
        let text = to_string(&stats, KeyStyle::Fastjson).unwrap();
        assert_eq!(
            text,
            r#"{"consumeTps":0.0,"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"brokerOffset":120,"consumerOffset":118}}}"#
        );
        assert_eq!(from_slice::<ConsumeStats>(text.as_bytes()).unwrap(), stats);
    }

    #[test]
    fn lenient_reading_of_numbers_strings_enums_and_unknown_fields() {
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Sub {
            code_set: Vec<i32>,
            sub_version: i64,
            model: MessageModel,
            flag: bool,
            name: String,
        }
        // Go sends codeSet entries as strings; C++ sends some strings as numbers.
        let text = br#"{"codeSet":["2598919",-1],"subVersion":"1726000000000","model":"CLUSTERING","flag":"TRUE","name":42,"extra":{"x":[1,2]}}"#;
        let sub: Sub = from_slice(text).unwrap();
        assert_eq!(
            sub,
            Sub {
                code_set: vec![2_598_919, -1],
                sub_version: 1_726_000_000_000,
                model: MessageModel::Clustering,
                flag: true,
                name: "42".into()
            }
        );
        assert!(from_slice::<Sub>(br#"{"codeSet":"x"}"#).is_err());
    }

    #[test]
    fn strings_are_escaped_like_fastjson() {
        let text = to_string("TAGS\u{1}A\u{2}\"q\"\\\n", KeyStyle::Fastjson).unwrap();
        assert_eq!(text, r#""TAGS\u0001A\u0002\"q\"\\\n""#);
        assert_eq!(from_slice::<String>(text.as_bytes()).unwrap(), "TAGS\u{1}A\u{2}\"q\"\\\n");
    }
}
