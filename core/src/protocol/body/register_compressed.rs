//! REGISTER_BROKER's compressed body (`compressed=true`; broker.conf `compressedRegister`):
//! what a broker with many topics sends instead of the JSON `RegisterBrokerBody`, as
//! RocketMQ's `RegisterBrokerBody.encode(true)` writes it. One zlib stream (a zlib header,
//! as Java's `Deflater` writes by default) of:
//!
//! | field | type |
//! |-------|------|
//! | DataVersion JSON length | i32, big-endian |
//! | DataVersion JSON | bytes |
//! | topic count | i32 |
//! | per topic: text length | i32 |
//! | per topic: `TopicConfig.encode()` | `name readQueueNums writeQueueNums perm filterType attributesJson` (space-separated; older brokers omit the attributes) |
//! | filter server list JSON length | i32 |
//! | filter server list JSON | bytes |
//! | topic queue mapping count | i32 (RocketMQ 5; absent from older brokers) |
//! | per mapping: JSON length, JSON | i32, bytes (static topics: Keel has none and skips them) |
//!
//! The text form carries no `topicSysFlag` nor `order`: a name server takes them as 0 and
//! false, as RocketMQ's does.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use super::{DataVersion, RegisterBrokerBody, TopicConfig};
use crate::protocol::json::{self, KeyStyle};

/// The most a compressed body may inflate to: a name server never lets a peer make it
/// allocate without bound.
pub const MAX_INFLATED_LEN: u64 = 256 * 1024 * 1024;

/// Why a compressed body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressedBodyError {
    /// The zlib stream is damaged, or ends early.
    #[error("compressed REGISTER_BROKER body: {0}")]
    Stream(String),
    /// A length or count is negative or runs past the end.
    #[error("compressed REGISTER_BROKER body: bad length {0}")]
    Length(i64),
    /// A field does not parse.
    #[error("compressed REGISTER_BROKER body: {0}")]
    Field(String),
}

/// Encode `body` in the compressed form.
#[must_use]
pub fn encode_compressed(body: &RegisterBrokerBody) -> Vec<u8> {
    let wrapper = &body.topic_config_serialize_wrapper;
    let mut plain = Vec::new();
    let mut chunk = |bytes: &[u8]| {
        put_len(&mut plain, bytes.len());
        plain.extend_from_slice(bytes);
    };
    chunk(&json::to_body(&wrapper.data_version, KeyStyle::Fastjson));
    let mut topics = Vec::new();
    put_len(&mut topics, wrapper.topic_config_table.len());
    for config in wrapper.topic_config_table.values() {
        let text = topic_text(config);
        put_len(&mut topics, text.len());
        topics.extend_from_slice(text.as_bytes());
    }
    plain.extend_from_slice(&topics);
    let filters = json::to_body(&body.filter_server_list, KeyStyle::Fastjson);
    put_len(&mut plain, filters.len());
    plain.extend_from_slice(&filters);
    put_len(&mut plain, 0); // no static-topic queue mappings
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&plain);
    encoder.finish().unwrap_or_default()
}

/// Decode a compressed body.
pub fn decode_compressed(bytes: &[u8]) -> Result<RegisterBrokerBody, CompressedBodyError> {
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(MAX_INFLATED_LEN)
        .read_to_end(&mut plain)
        .map_err(|e| CompressedBodyError::Stream(e.to_string()))?;
    let mut input = Cursor { bytes: &plain, at: 0 };
    let mut body = RegisterBrokerBody::default();
    let version = input.chunk()?;
    body.topic_config_serialize_wrapper.data_version = json::from_slice::<DataVersion>(version)
        .map_err(|e| CompressedBodyError::Field(format!("data version: {e}")))?;
    let count = input.len()?;
    let mut table = BTreeMap::new();
    for _ in 0..count {
        let text = core::str::from_utf8(input.chunk()?)
            .map_err(|_| CompressedBodyError::Field("a topic config is not UTF-8".into()))?;
        let config = parse_topic_text(text)?;
        table.insert(config.topic_name.clone(), config);
    }
    body.topic_config_serialize_wrapper.topic_config_table = table;
    let filters = input.chunk()?;
    body.filter_server_list = json::from_slice(filters).unwrap_or_default();
    // RocketMQ 5 appends the static-topic mappings; older brokers end here.
    if !input.is_empty() {
        for _ in 0..input.len()? {
            input.chunk()?;
        }
    }
    Ok(body)
}

/// `TopicConfig.encode()`.
fn topic_text(config: &TopicConfig) -> String {
    let attributes = json::to_body(&config.attributes, KeyStyle::Fastjson);
    format!(
        "{} {} {} {} {} {}",
        config.topic_name,
        config.read_queue_nums,
        config.write_queue_nums,
        config.perm,
        config.topic_filter_type,
        String::from_utf8_lossy(&attributes)
    )
}

/// `TopicConfig.decode()`: five fields at least; attributes that do not parse are ignored
/// (Java's split on spaces cuts an attribute value holding one).
fn parse_topic_text(text: &str) -> Result<TopicConfig, CompressedBodyError> {
    let fields: Vec<&str> = text.split(' ').collect();
    let [name, read, write, perm, filter, rest @ ..] = fields.as_slice() else {
        return Err(CompressedBodyError::Field(format!("topic config {text:?} has fewer than 5 fields")));
    };
    let number = |v: &str| {
        v.parse::<i32>()
            .map_err(|_| CompressedBodyError::Field(format!("topic config {text:?}: {v:?} is not a number")))
    };
    let attributes = rest
        .first()
        .and_then(|first| json::from_slice::<BTreeMap<String, String>>(first.as_bytes()).ok())
        .unwrap_or_default();
    Ok(TopicConfig {
        attributes,
        order: false,
        perm: number(perm)?,
        read_queue_nums: number(read)?,
        topic_filter_type: (*filter).to_owned(),
        topic_name: (*name).to_owned(),
        topic_sys_flag: 0,
        write_queue_nums: number(write)?,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes());
}

/// A reader over the inflated bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn len(&mut self) -> Result<usize, CompressedBodyError> {
        let raw: [u8; 4] = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(CompressedBodyError::Length(-1))?;
        self.at += 4;
        let value = i32::from_be_bytes(raw);
        usize::try_from(value).map_err(|_| CompressedBodyError::Length(i64::from(value)))
    }

    fn chunk(&mut self) -> Result<&'a [u8], CompressedBodyError> {
        let len = self.len()?;
        let end = self.at.checked_add(len).ok_or(CompressedBodyError::Length(len as i64))?;
        let bytes = self.bytes.get(self.at..end).ok_or(CompressedBodyError::Length(len as i64))?;
        self.at = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(name: &str, n: i32) -> TopicConfig {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: n,
            write_queue_nums: n,
            perm: 6,
            ..TopicConfig::default()
        }
    }

    fn body(topics: usize) -> RegisterBrokerBody {
        let mut body = RegisterBrokerBody::default();
        let wrapper = &mut body.topic_config_serialize_wrapper;
        wrapper.data_version = DataVersion { counter: 7, state_version: 0, timestamp: 1_700_000_000_000 };
        for i in 0..topics {
            let mut config = queues(&format!("Topic{i}"), 8);
            if i == 0 {
                config.attributes.insert("+message.type".into(), "NORMAL".into());
            }
            wrapper.topic_config_table.insert(config.topic_name.clone(), config);
        }
        body
    }

    #[test]
    fn a_body_survives_compression_and_is_much_smaller() {
        let original = body(2_000);
        let compressed = encode_compressed(&original);
        let plain = json::to_vec(&original, KeyStyle::Fastjson).unwrap();
        assert!(compressed.len() * 10 < plain.len(), "{} vs {}", compressed.len(), plain.len());
        assert_eq!(&compressed[..1], &[0x78], "a zlib header, as Java's Deflater writes");
        let back = decode_compressed(&compressed).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn the_topic_text_is_java_topic_config_encode() {
        let config = queues("T", 4);
        assert_eq!(topic_text(&config), "T 4 4 6 SINGLE_TAG {}");
        // RocketMQ 4 wrote five fields only.
        let old = parse_topic_text("Old 2 3 6 SINGLE_TAG").unwrap();
        assert_eq!((old.read_queue_nums, old.write_queue_nums, old.perm), (2, 3, 6));
    }

    #[test]
    fn damaged_or_hostile_bodies_are_errors_not_panics() {
        let good = encode_compressed(&body(3));
        for cut in [0, 1, 5, good.len() / 2, good.len() - 1] {
            assert!(decode_compressed(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_compressed(b"not zlib at all").is_err());
        // A stream claiming a negative topic count.
        let mut plain = Vec::new();
        put_len(&mut plain, 2);
        plain.extend_from_slice(b"{}");
        plain.extend_from_slice(&(-5i32).to_be_bytes());
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&plain).unwrap();
        assert_eq!(decode_compressed(&encoder.finish().unwrap()), Err(CompressedBodyError::Length(-5)));
    }
}
