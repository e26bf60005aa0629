//! A stored message as a 5.x client sees it (RocketMQ's proxy's `GrpcConverter`): its id is
//! the producer's `UNIQ_KEY` (else the offset id), the body digest is always set (MD5,
//! uppercase hex, of the body as stored), system properties become fields and only the
//! user's properties stay properties.

use md5::{Digest as _, Md5};

use super::proto::{self, DigestType, Encoding, MessageType};
use super::send::SYSTEM_KEYS;
use crate::broker::traffic::MessageType as Kind;
use crate::protocol::message::message_id::offset_message_id;
use crate::protocol::message::properties::{self, keys};
use crate::protocol::message::stored::{sys_flag, StoredMessage};

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// The uppercase hex MD5 of `body`, as every SDK checks it.
#[must_use]
pub fn body_md5(body: &[u8]) -> String {
    Md5::digest(body).iter().fold(String::with_capacity(32), |mut hex, byte| {
        use core::fmt::Write as _;
        let _ = write!(hex, "{byte:02X}");
        hex
    })
}

/// `message` as the 5.x protocol carries it.
#[must_use]
pub fn from_stored(message: &StoredMessage) -> proto::Message {
    let props = properties::parse(&message.properties);
    let get = |key: &str| props.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let head = &message.head;
    let message_id =
        get(keys::UNIQ_KEY).unwrap_or_else(|| offset_message_id(head.store_host, head.physical_offset));
    let delivery = get(keys::TIMER_DELIVER_MS).and_then(|v| v.parse::<i64>().ok());
    let message_type = match Kind::of(&message.properties) {
        Kind::Normal => MessageType::Normal,
        Kind::Fifo => MessageType::Fifo,
        Kind::Delay => MessageType::Delay,
        Kind::Transaction => MessageType::Transaction,
    };
    let encoding =
        if head.sys_flag & sys_flag::COMPRESSED != 0 { Encoding::Gzip } else { Encoding::Identity };
    let system = proto::SystemProperties {
        tag: get(keys::TAGS),
        keys: get(keys::KEYS)
            .map(|k| k.split(' ').filter(|k| !k.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        message_id,
        body_digest: Some(proto::Digest {
            r#type: DigestType::Md5 as i32,
            checksum: body_md5(&message.body),
        }),
        body_encoding: encoding as i32,
        message_type: message_type as i32,
        born_timestamp: Some(timestamp(head.born_timestamp)),
        born_host: head.born_host.ip().to_string(),
        store_timestamp: Some(timestamp(head.store_timestamp)),
        store_host: head.store_host.to_string(),
        delivery_timestamp: delivery.map(timestamp),
        queue_id: head.queue_id,
        queue_offset: Some(head.queue_offset),
        delivery_attempt: Some(head.reconsume_times.saturating_add(1)),
        message_group: get(keys::SHARDING_KEY),
        trace_context: get("TRACE_CONTEXT"),
        ..proto::SystemProperties::default()
    };
    proto::Message {
        topic: Some(proto::Resource { resource_namespace: String::new(), name: message.topic.clone() }),
        // The broker's own properties never show as the user's (RocketMQ's STRING_HASH_SET).
        user_properties: props.into_iter().filter(|(k, _)| !SYSTEM_KEYS.contains(&k.as_str())).collect(),
        system_properties: Some(system),
        body: message.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_stored_message_shows_its_producers_id_fields_and_an_uppercase_md5() {
        let mut props = Vec::new();
        for (k, v) in
            [("TAGS", "TagA"), ("KEYS", "a b"), ("UNIQ_KEY", "01ID"), ("WAIT", "true"), ("color", "blue")]
        {
            properties::push(&mut props, k, v);
        }
        let message = StoredMessage {
            head: crate::protocol::message::stored::RecordHead {
                queue_id: 2,
                flag: 0,
                queue_offset: 9,
                physical_offset: 4096,
                sys_flag: 0,
                born_timestamp: 1_500,
                born_host: ([10, 0, 0, 1], 5000).into(),
                store_timestamp: 2_000,
                store_host: ([10, 0, 0, 2], 10911).into(),
                reconsume_times: 1,
                prepared_transaction_offset: 0,
            },
            body: Bytes::from_static(b"hello"),
            topic: "T".into(),
            properties: Bytes::from(props),
        };
        let proto = from_stored(&message);
        let system = proto.system_properties.unwrap();
        assert_eq!(system.message_id, "01ID");
        assert_eq!(system.tag.as_deref(), Some("TagA"));
        assert_eq!(system.keys, vec!["a", "b"]);
        assert_eq!(system.body_digest.unwrap().checksum, "5D41402ABC4B2A76B9719D911017C592");
        assert_eq!((system.queue_id, system.queue_offset, system.delivery_attempt), (2, Some(9), Some(2)));
        assert_eq!(system.born_timestamp, Some(prost_types::Timestamp { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(system.message_type, MessageType::Normal as i32);
        assert_eq!(
            proto.user_properties.into_iter().collect::<Vec<_>>(),
            vec![("color".to_owned(), "blue".to_owned())]
        );
    }
}
