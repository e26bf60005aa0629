//! The `mqnamesrv` binary on loopback: a broker registers, a client routes, hostile peers
//! throw garbage at it, and SIGTERM stops it. Real sockets and processes: normal builds only.
#![cfg(not(madsim))]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;

use keel_core::protocol::body::{RegisterBrokerBody, TopicConfig, TopicRouteData};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{encode_to_bytes, ExtFields, RemotingCommand, RequestCode, ResponseCode};
use support::{hostile_streams, scratch_dir, Client, ServerProcess};

fn start(config: &str) -> ServerProcess {
    let file = scratch_dir("mqnamesrv").join("namesrv.properties");
    std::fs::write(&file, config).unwrap();
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_mqnamesrv"), &["-c", file.to_str().unwrap()]);
    assert!(server.boot_line.starts_with("The Name Server boot success."), "{}", server.boot_line);
    server
}

fn register_request() -> RemotingCommand {
    let header = RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "127.0.0.1:10911".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "127.0.0.1:10912".into(),
        broker_id: 0,
        heartbeat_timeout_millis: None,
        enable_acting_master: None,
        compressed: None,
        body_crc32: None,
    };
    let mut body = RegisterBrokerBody::default();
    let config = TopicConfig {
        topic_name: "TopicTest".into(),
        read_queue_nums: 4,
        write_queue_nums: 4,
        ..TopicConfig::default()
    };
    body.topic_config_serialize_wrapper.topic_config_table.insert("TopicTest".into(), config);
    RemotingCommand::request(RequestCode::REGISTER_BROKER, 1, header.to_ext_fields())
        .with_body(json::to_vec(&body, KeyStyle::Fastjson).unwrap())
}

fn route_request(opaque: i32) -> RemotingCommand {
    let header = GetRouteInfoRequestHeader { topic: "TopicTest".into(), accept_standard_json_only: None };
    RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, opaque, header.to_ext_fields())
}

#[test]
fn brokers_register_clients_route_and_hostile_peers_only_hurt_themselves() {
    let mut server = start("listenPort=0\nlistenPrt=1\n");
    let addr = server.addr_in_boot_line(0);
    let mut broker = Client::connect(addr);
    assert_eq!(broker.call(&register_request()).response_code(), ResponseCode::SUCCESS);
    let mut client = Client::connect(addr);
    let reply = client.call(&route_request(2));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    let route: TopicRouteData = json::from_slice(&reply.body).unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs[&0], "127.0.0.1:10911");

    // Hostile peers, each on its own connection.
    for (what, bytes) in hostile_streams() {
        let mut peer = Client::connect(addr);
        assert!(peer.send_raw_and_expect_close(&bytes), "{what}: the connection stays open");
    }
    // A peer that disconnects in the middle of a frame.
    let mut half = TcpStream::connect(addr).unwrap();
    let frame = encode_to_bytes(&route_request(3));
    half.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(half);
    // Wrong-typed ext fields and unknown codes get error replies, not closed connections.
    let mut typed = route_request(4);
    typed.ext_fields =
        [("topic", "TopicTest"), ("acceptStandardJsonOnly", "maybe")].into_iter().collect::<ExtFields>();
    assert_eq!(client.call(&typed).response_code(), ResponseCode::SUCCESS, "lenient booleans");
    let unknown = RemotingCommand::request(RequestCode(31_337), 5, ExtFields::new());
    assert_eq!(client.call(&unknown).response_code(), ResponseCode::REQUEST_CODE_NOT_SUPPORTED);

    // The well-behaved client and the broker's registration are unaffected.
    assert!(server.is_running());
    assert_eq!(client.call(&route_request(6)).response_code(), ResponseCode::SUCCESS);

    // SIGTERM is a clean stop.
    let (clean, stderr) = server.terminate();
    assert!(clean, "mqnamesrv did not exit cleanly: {stderr}");
    assert!(stderr.contains("unknown configuration key") && stderr.contains("listenPrt"), "{stderr}");
    assert!(stderr.contains("malformed stream"), "closed connections are logged with a reason: {stderr}");
}

#[test]
fn print_config_shows_the_effective_settings() {
    let output = Command::new(env!("CARGO_BIN_EXE_mqnamesrv")).arg("-p").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("listenPort=9876"), "{text}");
}
