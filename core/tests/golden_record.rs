//! Golden tests of the stored-message record: the worked example of
//! `reference/protocol.md` §8.1 byte for byte, and insta hex dumps of the other shapes
//! (IPv6 hosts, V2 topic, the whole-record CRC tail, BLANK, batch bodies).

mod support;

use bytes::{Bytes, BytesMut};
use keel_core::protocol::message::batch::{decode_batch, encode_batch, BatchEntry};
use keel_core::protocol::message::message_id::offset_message_id;
use keel_core::protocol::message::properties;
use keel_core::protocol::message::stored::{
    check_record_crc, decode_records, encode_record, parse_record, record_crc_placeholder, seal_record_crc,
    sys_flag, verify_crcs, Parsed, Record, RecordError, RecordHead, RecordRef, StoredMessage, MAGIC_V2,
    RECORD_CRC_TAIL_LEN,
};
use support::{hexdump, unhex};

/// §8.1: topic "T", queueId 3, queueOffset 5, commitLogOffset 1000, sysFlag 0, born
/// 10.0.0.2:50000 at 1726000000000, stored by 10.0.0.1:10911 at 1726000000005, body "hi",
/// properties TAGS=A, UNIQ_KEY=AB.
const WORKED_EXAMPLE: &str = "
    00 00 00 71  DA A3 20 A7  58 93 2A AC  00 00 00 03  00 00 00 00
    00 00 00 00 00 00 00 05   00 00 00 00 00 00 03 E8
    00 00 00 00               00 00 01 91 DD 9D EC 00
    0A 00 00 02 00 00 C3 50   00 00 01 91 DD 9D EC 05
    0A 00 00 01 00 00 2A 9F   00 00 00 00  00 00 00 00 00 00 00 00
    00 00 00 02 68 69         01 54
    00 13 54 41 47 53 01 41 02 55 4E 49 51 5F 4B 45 59 01 41 42 02";

fn example_head() -> RecordHead {
    RecordHead {
        queue_id: 3,
        flag: 0,
        queue_offset: 5,
        physical_offset: 1000,
        sys_flag: 0,
        born_timestamp: 1_726_000_000_000,
        born_host: "10.0.0.2:50000".parse().unwrap(),
        store_timestamp: 1_726_000_000_005,
        store_host: "10.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
    }
}

fn example_fields(props: &[u8]) -> RecordRef<'_> {
    Record { head: example_head(), body: b"hi", topic: "T", properties: props }
}

#[test]
fn worked_example_is_reproduced_and_read() {
    let expected = unhex(WORKED_EXAMPLE);
    assert_eq!(expected.len(), 113);
    let props = properties::encode(&[("TAGS", "A"), ("UNIQ_KEY", "AB")]);
    let fields = example_fields(&props);
    let mut out = BytesMut::new();
    assert_eq!(encode_record(&mut out, &fields).unwrap(), 113);
    assert_eq!(out.as_ref(), expected.as_slice());

    let Parsed::Message(view) = parse_record(&expected).unwrap() else { panic!("not a message") };
    assert_eq!(view.record.topic, "T");
    assert_eq!(view.head().queue_offset, 5);
    assert_eq!(view.head().physical_offset, 1000);
    assert_eq!(view.head().born_host, fields.head.born_host);
    assert_eq!(view.head().store_host, fields.head.store_host);
    assert_eq!(view.record.body, b"hi");
    assert_eq!(properties::find(view.record.properties, "UNIQ_KEY"), Some(&b"AB"[..]));
    verify_crcs(&view, false).unwrap();
    // RocketMQ's own records carry no whole-record CRC; Keel's store requires one.
    assert_eq!(verify_crcs(&view, true), Err(RecordError::MissingRecordCrc));
    assert_eq!(
        offset_message_id(view.head().store_host, view.head().physical_offset),
        "0A00000100002A9F00000000000003E8"
    );
    let owned = decode_records(&expected).unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].borrowed(), fields);
}

#[test]
fn whole_record_crc_tail_catches_damage_anywhere() {
    let mut props = properties::encode(&[("TAGS", "A"), ("UNIQ_KEY", "AB")]);
    props.extend_from_slice(&record_crc_placeholder());
    let mut out = BytesMut::new();
    encode_record(&mut out, &example_fields(&props)).unwrap();
    let mut record = out.to_vec();
    seal_record_crc(&mut record);
    insta::assert_snapshot!("record_with_crc_tail", hexdump(&record));
    check_record_crc(&record).unwrap();
    let Parsed::Message(view) = parse_record(&record).unwrap() else { panic!("not a message") };
    verify_crcs(&view, true).unwrap();
    // Flipping any bit outside the length word is detected, in the header, topic,
    // properties or the CRC digits themselves.
    for at in 4..record.len() {
        let mut damaged = record.clone();
        damaged[at] ^= 0x10;
        let detected = match parse_record(&damaged) {
            Err(_) => true,
            Ok(Parsed::Blank(_)) => true,
            Ok(Parsed::Message(view)) => verify_crcs(&view, true).is_err(),
        };
        assert!(detected, "damage at byte {at} not detected");
    }
    assert_eq!(record.len() - RECORD_CRC_TAIL_LEN, record.len() - 20);
}

#[test]
fn ipv6_hosts_and_long_topics_use_the_wide_forms() {
    let topic = "t".repeat(130);
    let props = properties::encode(&[("KEYS", "k1 k2")]);
    let head = RecordHead {
        born_host: "[2001:db8::2]:50000".parse().unwrap(),
        store_host: "[2001:db8::1]:10911".parse().unwrap(),
        sys_flag: sys_flag::TRANSACTION_COMMIT,
        prepared_transaction_offset: 77,
        ..example_head()
    };
    let fields = Record { head, topic: topic.as_str(), ..example_fields(&props) };
    let mut out = BytesMut::new();
    let len = encode_record(&mut out, &fields).unwrap();
    assert_eq!(len, 91 + 24 + 1 + 2 + 130 + props.len());
    assert_eq!(i32::from_be_bytes(out[4..8].try_into().unwrap()), MAGIC_V2);
    insta::assert_snapshot!("record_ipv6_v2_topic", hexdump(&out));
    let Parsed::Message(view) = parse_record(&out).unwrap() else { panic!("not a message") };
    assert_eq!(
        view.head().sys_flag,
        sys_flag::TRANSACTION_COMMIT | sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6
    );
    assert_eq!(view.record.topic, topic);
    assert_eq!(view.head().born_host, fields.head.born_host);
    assert_eq!(view.head().prepared_transaction_offset, 77);
}

#[test]
fn blank_records_and_truncations_parse_as_such() {
    let mut blank = vec![0u8; 40];
    blank[..4].copy_from_slice(&40i32.to_be_bytes());
    blank[4..8].copy_from_slice(&(-875_286_124i32).to_be_bytes());
    assert_eq!(parse_record(&blank), Ok(Parsed::Blank(40)));
    assert!(matches!(parse_record(&blank[..20]), Err(RecordError::Truncated { needed: 40, .. })));
    assert!(parse_record(&[0u8; 64]).is_err());

    let expected = unhex(WORKED_EXAMPLE);
    for cut in 0..expected.len() {
        assert!(parse_record(&expected[..cut]).is_err(), "cut at {cut} parsed");
    }
    let mut wrong_size = expected.clone();
    wrong_size[3] = 0x70;
    assert!(parse_record(&wrong_size).is_err());
    let mut padded = expected.clone();
    padded[3] = 0x72;
    padded.push(0);
    assert!(matches!(
        parse_record(&padded),
        Err(RecordError::LengthMismatch { declared: 114, computed: 113 })
    ));
}

#[test]
fn batch_body_as_a_java_client_sends_it() {
    let entries = vec![
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"m1"),
            properties: Bytes::from(properties::encode(&[("UNIQ_KEY", "U1")])),
        },
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"m2"),
            properties: Bytes::from(properties::encode(&[("UNIQ_KEY", "U2"), ("TAGS", "B")])),
        },
    ];
    let body = encode_batch(&entries);
    insta::assert_snapshot!("batch_body", hexdump(&body));
    assert_eq!(decode_batch(&body, 32).unwrap(), entries);
}

#[test]
fn owned_messages_re_encode_identically() {
    let expected = unhex(WORKED_EXAMPLE);
    let message: StoredMessage = decode_records(&expected).unwrap().remove(0);
    let mut out = BytesMut::new();
    encode_record(&mut out, &message.borrowed()).unwrap();
    assert_eq!(out.as_ref(), expected.as_slice());
}
