//! The name server state machine driven with real frames, as a broker and clients would.

use bytes::Bytes;
use keel_core::io::{ConnId, ConnKind, Input, Machine, MonoNanos, Now, Output};
use keel_core::namesrv::{NameServer, NameServerConfig};
use keel_core::protocol::body::{ClusterInfo, RegisterBrokerBody, TopicConfig, TopicList, TopicRouteData};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{
    decode_one, encode_to_bytes, ExtFields, RemotingCommand, RequestCode, ResponseCode,
    DEFAULT_MAX_FRAME_LEN, FLAG_ONEWAY,
};

const BROKER: ConnId = ConnId(1);
const CLIENT: ConnId = ConnId(2);

fn at(ms: u64) -> Now {
    Now::new(1_000_000_000 + ms * 1_000_000, 1_726_000_000_000 + i64::try_from(ms).unwrap())
}

fn start() -> NameServer {
    let mut ns = NameServer::new(NameServerConfig::default());
    for conn in [BROKER, CLIENT] {
        ns.handle(
            at(0),
            Input::ConnOpened { conn, peer: "127.0.0.1:40000".parse().unwrap(), kind: ConnKind::Remoting },
        );
    }
    ns
}

/// Send one request and collect what comes back on that connection.
fn call(ns: &mut NameServer, now: Now, conn: ConnId, request: &RemotingCommand) -> Vec<Output> {
    ns.handle(now, Input::Bytes { conn, data: encode_to_bytes(request), received: now.mono });
    std::iter::from_fn(|| ns.poll_output()).collect()
}

fn response(outputs: &[Output]) -> RemotingCommand {
    match outputs {
        [Output::Send { data, .. }] => decode_one(data, DEFAULT_MAX_FRAME_LEN).unwrap(),
        other => panic!("expected one reply, got {other:?}"),
    }
}

fn register(ns: &mut NameServer, now: Now, topics: &[&str]) -> RemotingCommand {
    register_as(ns, now, topics, false)
}

/// REGISTER_BROKER with `topics`, its body compressed or JSON.
fn register_as(ns: &mut NameServer, now: Now, topics: &[&str], compressed: bool) -> RemotingCommand {
    let header = RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: 0,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: Some(compressed),
        body_crc32: Some(0),
    };
    let mut body = RegisterBrokerBody::default();
    for topic in topics {
        let config = TopicConfig {
            topic_name: (*topic).into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            ..TopicConfig::default()
        };
        body.topic_config_serialize_wrapper.topic_config_table.insert((*topic).into(), config);
    }
    let encoded = if compressed {
        keel_core::protocol::body::register_compressed::encode_compressed(&body)
    } else {
        json::to_vec(&body, KeyStyle::Fastjson).unwrap()
    };
    let request =
        RemotingCommand::request(RequestCode::REGISTER_BROKER, 1, header.to_ext_fields()).with_body(encoded);
    response(&call(ns, now, BROKER, &request))
}

#[test]
fn a_compressed_registration_routes_like_a_json_one() {
    let mut ns = start();
    let topics: Vec<String> = (0..500).map(|i| format!("T{i}")).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    assert_eq!(register_as(&mut ns, at(0), &names, true).response_code(), ResponseCode::SUCCESS);
    for topic in ["T0", "T499"] {
        let reply = route(&mut ns, at(10), topic);
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{topic}");
        let data: TopicRouteData = json::from_slice(&reply.body).unwrap();
        assert_eq!(data.queue_datas[0].read_queue_nums, 4);
    }
    // A damaged compressed body is refused with a reason, and nothing is registered.
    let mut ns = start();
    let header = RegisterBrokerRequestHeader {
        broker_name: "broker-b".into(),
        broker_addr: "127.0.0.1:10921".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "127.0.0.1:10922".into(),
        broker_id: 0,
        heartbeat_timeout_millis: None,
        enable_acting_master: None,
        compressed: Some(true),
        body_crc32: None,
    };
    let request = RemotingCommand::request(RequestCode::REGISTER_BROKER, 2, header.to_ext_fields())
        .with_body(&b"\x78\x9c garbage"[..]);
    let reply = response(&call(&mut ns, at(20), BROKER, &request));
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(reply.remark.unwrap_or_default().contains("compressed REGISTER_BROKER body"));
    assert_ne!(route(&mut ns, at(30), "T0").response_code(), ResponseCode::SUCCESS);
}

fn route(ns: &mut NameServer, now: Now, topic: &str) -> RemotingCommand {
    let header = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None };
    let request = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 9, header.to_ext_fields());
    response(&call(ns, now, CLIENT, &request))
}

#[test]
fn a_registered_broker_is_routed_with_complete_route_data() {
    let mut ns = start();
    assert_eq!(register(&mut ns, at(0), &["TopicTest", "TBW102"]).response_code(), ResponseCode::SUCCESS);
    let reply = route(&mut ns, at(10), "TopicTest");
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    assert_eq!(reply.opaque, 9);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    // Quoted broker ids, enableActingMaster and filterServerTable present: every client parses it.
    assert!(text.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#), "{text}");
    assert!(text.contains(r#""enableActingMaster":false"#), "{text}");
    assert!(text.contains(r#""filterServerTable":{}"#), "{text}");
    let data: TopicRouteData = json::from_slice(&reply.body).unwrap();
    assert_eq!(data.queue_datas[0].write_queue_nums, 4);
    assert_eq!(data.queue_datas[0].perm, 6);
    assert_eq!(route(&mut ns, at(10), "Nope").response_code(), ResponseCode::TOPIC_NOT_EXIST);

    let cluster = RemotingCommand::request(RequestCode::GET_BROKER_CLUSTER_INFO, 3, ExtFields::new());
    let info: ClusterInfo =
        json::from_slice(&response(&call(&mut ns, at(10), CLIENT, &cluster)).body).unwrap();
    assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    let list = RemotingCommand::request(RequestCode::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, 4, ExtFields::new());
    let topics: TopicList = json::from_slice(&response(&call(&mut ns, at(10), CLIENT, &list)).body).unwrap();
    assert_eq!(topics.topic_list.len(), 2);
}

#[test]
fn unknown_codes_are_answered_not_supported_and_oneway_requests_get_no_answer() {
    let mut ns = start();
    let unknown = RemotingCommand::request(RequestCode(9999), 5, ExtFields::new());
    let reply = response(&call(&mut ns, at(0), CLIENT, &unknown));
    assert_eq!(reply.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(reply.remark.as_deref(), Some(" request type 9999 not supported"));
    let mut oneway = RemotingCommand::request(RequestCode(9999), 6, ExtFields::new());
    oneway.flag |= FLAG_ONEWAY;
    assert!(call(&mut ns, at(0), CLIENT, &oneway).is_empty());
    // A request missing a required header field gets an error reply, not a dropped connection.
    let bad = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 7, ExtFields::new());
    let reply = response(&call(&mut ns, at(0), CLIENT, &bad));
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_ERROR);
    assert!(reply.remark.unwrap().contains("topic"));
}

#[test]
fn garbage_closes_only_that_connection() {
    let mut ns = start();
    register(&mut ns, at(0), &["T"]);
    ns.handle(
        at(1),
        Input::Bytes {
            conn: CLIENT,
            data: Bytes::from_static(b"\xff\xff\xff\xffgarbage"),
            received: at(1).mono,
        },
    );
    let outputs: Vec<Output> = std::iter::from_fn(|| ns.poll_output()).collect();
    assert!(matches!(outputs.as_slice(), [Output::Close { conn: CLIENT, .. }]), "{outputs:?}");
    // The broker's connection and its routes are untouched.
    assert_eq!(route_on(&mut ns, BROKER, "T"), ResponseCode::SUCCESS);
}

fn route_on(ns: &mut NameServer, conn: ConnId, topic: &str) -> ResponseCode {
    let header = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None };
    let request = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 9, header.to_ext_fields());
    response(&call(ns, at(2), conn, &request)).response_code()
}

#[test]
fn brokers_expire_after_120_seconds_and_at_once_when_their_connection_closes() {
    let mut ns = start();
    register(&mut ns, at(0), &["T"]);
    let deadline = ns.poll_timeout().unwrap();
    assert!(deadline <= MonoNanos(at(5_000).mono.0), "scans every 5 s");
    ns.handle(at(120_000), Input::Timeout);
    assert_eq!(route(&mut ns, at(120_000), "T").response_code(), ResponseCode::SUCCESS);
    ns.handle(at(125_001), Input::Timeout);
    assert_eq!(route(&mut ns, at(125_001), "T").response_code(), ResponseCode::TOPIC_NOT_EXIST);

    register(&mut ns, at(130_000), &["T"]);
    assert_eq!(route(&mut ns, at(130_000), "T").response_code(), ResponseCode::SUCCESS);
    ns.handle(at(130_001), Input::ConnClosed { conn: BROKER });
    assert_eq!(route(&mut ns, at(130_002), "T").response_code(), ResponseCode::TOPIC_NOT_EXIST);
}

#[test]
fn with_enable_controller_in_namesrv_the_name_server_answers_controller_requests_too() {
    use keel_core::controller::ControllerConfig;
    use keel_core::protocol::headers::GetNextBrokerIdHeader;
    let ask = GetNextBrokerIdHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        next_broker_id: None,
    };
    let request =
        RemotingCommand::request(RequestCode::CONTROLLER_GET_NEXT_BROKER_ID, 7, ask.to_ext_fields());

    let mut plain = start();
    let refused = response(&call(&mut plain, at(1), CLIENT, &request));
    assert_eq!(refused.response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);

    let config =
        NameServerConfig { controller: Some(ControllerConfig::default()), ..NameServerConfig::default() };
    let mut ns = NameServer::new(config);
    ns.handle(
        at(0),
        Input::ConnOpened {
            conn: CLIENT,
            peer: "127.0.0.1:40000".parse().unwrap(),
            kind: ConnKind::Remoting,
        },
    );
    let answered = response(&call(&mut ns, at(1), CLIENT, &request));
    assert_eq!(answered.response_code(), ResponseCode::SUCCESS);
    assert_eq!(GetNextBrokerIdHeader::decode(&answered.ext_fields).unwrap().next_broker_id, Some(1));
    // Routes are still served, and the controller's scan is among the deadlines.
    let route = GetRouteInfoRequestHeader { topic: "T".into(), accept_standard_json_only: None };
    let request = RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 8, route.to_ext_fields());
    assert_eq!(
        response(&call(&mut ns, at(2), CLIENT, &request)).response_code(),
        ResponseCode::TOPIC_NOT_EXIST
    );
    assert!(ns.poll_timeout().is_some() && ns.controller().is_some());
}
