//! Golden tests of the wire: the worked examples of `reference/protocol.md` §1.3.1 byte for
//! byte, and insta hex dumps of frames we emit. The encoder must reproduce the examples and
//! the decoder must read them.

mod support;

use keel_core::protocol::headers::{
    CommandHeader, GetRouteInfoRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader,
};
use keel_core::protocol::{
    decode_one, encode_to_bytes, ExtFields, LanguageCode, RemotingCommand, RequestCode, ResponseCode,
    SerializeType, DEFAULT_MAX_FRAME_LEN,
};
use support::{hexdump, unhex};

fn route_request(serialize_type: SerializeType) -> RemotingCommand {
    let header = GetRouteInfoRequestHeader { topic: "T".into(), accept_standard_json_only: None };
    let mut cmd = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 7, header.to_ext_fields());
    cmd.serialize_type = serialize_type;
    cmd
}

/// §1.3.1, ROCKETMQ binary header, 33 header bytes.
const ROUTE_BINARY: &str = "
    00 00 00 25  01 00 00 21  00 69  00  01 DF  00 00 00 07  00 00 00 00  00 00 00 00
    00 00 00 0C  00 05 74 6F 70 69 63  00 00 00 01 54";

/// §1.3.1, JSON header, 123 header bytes.
const ROUTE_JSON: &str = r#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;

#[test]
fn binary_worked_example_is_reproduced_and_read() {
    let expected = unhex(ROUTE_BINARY);
    let cmd = route_request(SerializeType::RocketMq);
    assert_eq!(encode_to_bytes(&cmd).as_ref(), expected.as_slice());
    let decoded = decode_one(&expected, DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(decoded, cmd);
    assert_eq!(GetRouteInfoRequestHeader::decode(&decoded.ext_fields).unwrap().topic, "T");
}

#[test]
fn json_worked_example_is_reproduced_and_read() {
    assert_eq!(ROUTE_JSON.len(), 123);
    let mut expected = unhex("00 00 00 7F 00 00 00 7B");
    expected.extend_from_slice(ROUTE_JSON.as_bytes());
    let cmd = route_request(SerializeType::Json);
    assert_eq!(encode_to_bytes(&cmd).as_ref(), expected.as_slice());
    assert_eq!(decode_one(&expected, DEFAULT_MAX_FRAME_LEN).unwrap(), cmd);
}

#[test]
fn a_reply_echoes_the_opaque_sets_the_response_flag_and_mirrors_the_serialization() {
    for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
        let request = route_request(serialize_type);
        let reply =
            RemotingCommand::response_to(&request, ResponseCode::TOPIC_NOT_EXIST, Some("no route".into()));
        let bytes = encode_to_bytes(&reply);
        let decoded = decode_one(&bytes, DEFAULT_MAX_FRAME_LEN).unwrap();
        assert_eq!(decoded.opaque, 7);
        assert!(decoded.is_response());
        assert_eq!(decoded.response_code(), ResponseCode::TOPIC_NOT_EXIST);
        assert_eq!(decoded.serialize_type, serialize_type);
        assert_eq!(decoded.remark.as_deref(), Some("no route"));
    }
    let request = route_request(SerializeType::Json);
    let reply = RemotingCommand::response_to(&request, ResponseCode::TOPIC_NOT_EXIST, None);
    insta::assert_snapshot!("route_reply_json", hexdump(&encode_to_bytes(&reply)));
}

#[test]
fn cpp_style_json_with_numbers_and_empty_acl_fields_is_read_leniently() {
    let json = br#"{"code":310,"extFields":{"a":"pg","b":"TopicTest","c":"TBW102","d":4,"e":1,"f":0,"g":1726000000000,"h":0,"i":"TAGS\u0001TagA\u0002","AccessKey":"","Signature":"","OnsChannel":""},"flag":0,"language":"CPP","opaque":3,"remark":null,"version":333}"#;
    let mut frame = Vec::new();
    frame.extend_from_slice(&u32::try_from(4 + json.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(json);
    let cmd = decode_one(&frame, DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(cmd.language, LanguageCode::CPP);
    assert_eq!(cmd.remark, None);
    let header = SendMessageRequestHeader::decode_any(&cmd.ext_fields).unwrap();
    assert_eq!(header.topic, "TopicTest");
    assert_eq!(header.default_topic_queue_nums, 4);
    assert_eq!(header.born_timestamp, 1_726_000_000_000);
    assert_eq!(header.properties.as_deref(), Some("TAGS\u{1}TagA\u{2}"));
    assert_eq!(header.broker_name, None);
}

#[test]
fn send_v2_request_and_its_response_frames() {
    let v1 = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 1,
        sys_flag: 0,
        born_timestamp: 1_726_000_000_000,
        flag: 0,
        properties: Some(
            "TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}UNIQ_KEY\u{1}AC110002004D12345678000003E80000\u{2}".into(),
        ),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    };
    let v2 = SendMessageRequestHeaderV2::from(v1.clone());
    let mut request = RemotingCommand::request(RequestCode::SEND_MESSAGE_V2, 42, v2.to_ext_fields());
    request = request.with_body(&b"hello"[..]);
    let frame = encode_to_bytes(&request);
    insta::assert_snapshot!("send_v2_request_json", hexdump(&frame));
    let decoded = decode_one(&frame, DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(SendMessageRequestHeader::decode_any(&decoded.ext_fields).unwrap(), v1);
    assert_eq!(decoded.body.as_ref(), b"hello");

    let mut binary = request.clone();
    binary.serialize_type = SerializeType::RocketMq;
    insta::assert_snapshot!("send_v2_request_binary", hexdump(&encode_to_bytes(&binary)));

    let mut reply = RemotingCommand::response_to(&request, ResponseCode::SUCCESS, None);
    let header = SendMessageResponseHeader {
        msg_id: "0A00000100002A9F00000000000003E8".into(),
        queue_id: 1,
        queue_offset: 17,
        transaction_id: Some("AC110002004D12345678000003E80000".into()),
        msg_region: "DefaultRegion".into(),
        trace_on: "true".into(),
        batch_uniq_id: None,
        recall_handle: None,
    };
    reply.ext_fields = header.to_ext_fields();
    let reply_frame = encode_to_bytes(&reply);
    insta::assert_snapshot!("send_response_json", hexdump(&reply_frame));
    let decoded = decode_one(&reply_frame, DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(SendMessageResponseHeader::decode(&decoded.ext_fields).unwrap(), header);
}

#[test]
fn codes_above_sixteen_bits_fall_back_to_json() {
    let mut cmd = RemotingCommand::request(RequestCode::POP_MESSAGE, 1, ExtFields::new());
    cmd.serialize_type = SerializeType::RocketMq;
    let decoded = decode_one(&encode_to_bytes(&cmd), DEFAULT_MAX_FRAME_LEN).unwrap();
    assert_eq!(decoded.request_code(), RequestCode::POP_MESSAGE);
    assert_eq!(decoded.serialize_type, SerializeType::Json);
}
