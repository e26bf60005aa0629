//! The `mqnamesrv` binary on loopback: a broker registers, a client routes, hostile peers
//! throw garbage at it, and SIGTERM stops it. Real sockets and processes: normal builds only.
#![cfg(not(madsim))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_core::protocol::body::{RegisterBrokerBody, TopicConfig, TopicRouteData};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{
    encode_to_bytes, ExtFields, FrameDecoder, RemotingCommand, RequestCode, ResponseCode,
    DEFAULT_MAX_FRAME_LEN,
};

struct NameServerProcess {
    child: Child,
    addr: SocketAddr,
    stderr: std::thread::JoinHandle<String>,
}

impl NameServerProcess {
    fn start(config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keel-mqnamesrv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namesrv.properties");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqnamesrv"))
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("The Name Server boot success."), "{line}");
        let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), stderr }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { stream, decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_LEN) }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl Client {
    fn call(&mut self, request: &RemotingCommand) -> RemotingCommand {
        self.stream.write_all(&encode_to_bytes(request)).unwrap();
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                return frame.unwrap();
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            self.decoder.push(&buf[..n]);
        }
    }

    /// Send raw bytes; true if the server then closed the connection.
    fn send_raw_and_expect_close(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).unwrap();
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
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
    let mut server = NameServerProcess::start("listenPort=0\nlistenPrt=1\n");
    let mut broker = server.connect();
    assert_eq!(broker.call(&register_request()).response_code(), ResponseCode::SUCCESS);
    let mut client = server.connect();
    let reply = client.call(&route_request(2));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    let route: TopicRouteData = json::from_slice(&reply.body).unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs[&0], "127.0.0.1:10911");

    // Hostile peers, each on its own connection.
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("oversized frame", [&2_000_000_000u32.to_be_bytes()[..], &[0u8; 8]].concat()),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("invalid JSON header", [&13u32.to_be_bytes()[..], &9u32.to_be_bytes(), b"{not json"].concat()),
        ("header longer than its frame", [&8u32.to_be_bytes()[..], &100u32.to_be_bytes(), b"abcd"].concat()),
        ("unknown serialize type", [&4u32.to_be_bytes()[..], &0x0500_0000u32.to_be_bytes()].concat()),
    ];
    for (what, bytes) in hostile {
        let mut peer = server.connect();
        assert!(peer.send_raw_and_expect_close(&bytes), "{what}: the connection stays open");
    }
    // A peer that disconnects in the middle of a frame.
    let mut half = TcpStream::connect(server.addr).unwrap();
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
    let status = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "mqnamesrv exited with {exit}");
    let stderr = server.stderr.join().unwrap();
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
