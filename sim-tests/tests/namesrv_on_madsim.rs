//! The production driver loop, unchanged, on madsim's simulated network: a name server
//! node runs `driver::run`, a broker node registers over simulated TCP, a client node
//! routes; the name server is killed and restarted, and the route comes back only after the
//! broker registers again (routes live in memory). Seeds vary the schedule; each seed must
//! see the same replies.
#![cfg(madsim)]

use std::net::SocketAddr;
use std::time::Duration;

use keel_core::namesrv::{NameServer, NameServerConfig};
use keel_core::protocol::body::{RegisterBrokerBody, TopicConfig, TopicRouteData};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{
    encode_to_bytes, FrameDecoder, RemotingCommand, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_LEN,
};
use keel_runtime_tokio::driver::{self, DriverConfig};
use madsim::runtime::{Handle, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::sleep;

const NAMESRV: &str = "10.0.0.1:9876";

async fn namesrv_main() {
    let listener = TcpListener::bind("0.0.0.0:9876").await.expect("bind");
    let mut machine = NameServer::new(NameServerConfig::default());
    let never = std::future::pending::<()>();
    driver::run(
        &mut machine,
        vec![(listener, keel_core::io::ConnKind::Remoting)],
        None,
        DriverConfig::default(),
        never,
        |_, _| {},
        |_| true,
        None,
    )
    .await
    .expect("driver");
}

/// One request over a fresh connection; `None` if the server is unreachable.
async fn call(request: &RemotingCommand) -> Option<RemotingCommand> {
    let addr: SocketAddr = NAMESRV.parse().ok()?;
    let mut stream = TcpStream::connect(addr).await.ok()?;
    call_on(&mut stream, request).await
}

/// One request over an open connection.
async fn call_on(stream: &mut TcpStream, request: &RemotingCommand) -> Option<RemotingCommand> {
    stream.write_all(&encode_to_bytes(request)).await.ok()?;
    stream.flush().await.ok()?;
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame() {
            return frame.ok();
        }
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        decoder.push(&buf[..n]);
    }
}

fn register() -> RemotingCommand {
    let header = RegisterBrokerRequestHeader {
        broker_name: "broker-a".into(),
        broker_addr: "10.0.0.2:10911".into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: "10.0.0.2:10912".into(),
        broker_id: 0,
        heartbeat_timeout_millis: None,
        enable_acting_master: None,
        compressed: None,
        body_crc32: None,
    };
    let mut body = RegisterBrokerBody::default();
    let config = TopicConfig { topic_name: "T".into(), ..TopicConfig::default() };
    body.topic_config_serialize_wrapper.topic_config_table.insert("T".into(), config);
    RemotingCommand::request(RequestCode::REGISTER_BROKER, 1, header.to_ext_fields())
        .with_body(json::to_vec(&body, KeyStyle::Fastjson).unwrap())
}

async fn route_code() -> Option<ResponseCode> {
    let header = GetRouteInfoRequestHeader { topic: "T".into(), accept_standard_json_only: None };
    let reply =
        call(&RemotingCommand::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, 2, header.to_ext_fields()))
            .await?;
    if reply.response_code() == ResponseCode::SUCCESS {
        let route: TopicRouteData = json::from_slice(&reply.body).ok()?;
        assert_eq!(route.broker_datas[0].broker_addrs[&0], "10.0.0.2:10911");
    }
    Some(reply.response_code())
}

fn run(seed: u64) -> Vec<Option<ResponseCode>> {
    let rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.block_on(async {
        let handle = Handle::current();
        let namesrv =
            handle.create_node().name("namesrv").ip("10.0.0.1".parse().unwrap()).init(namesrv_main).build();
        let broker = handle.create_node().name("broker").ip("10.0.0.2".parse().unwrap()).build();
        let client = handle.create_node().name("client").ip("10.0.0.3".parse().unwrap()).build();
        // The broker registers over a connection it keeps open, as a real broker does: a
        // closed connection unregisters its brokers at once.
        let register_and_hold = || async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            broker.spawn(async move {
                let Ok(mut stream) = TcpStream::connect(NAMESRV.parse::<SocketAddr>().unwrap()).await else {
                    let _ = tx.send(None);
                    return;
                };
                let _ = tx.send(call_on(&mut stream, &register()).await.map(|r| r.response_code()));
                std::future::pending::<()>().await;
            });
            rx.await.unwrap()
        };
        let routed = || async { client.spawn(route_code()).await.unwrap() };
        sleep(Duration::from_millis(100)).await;
        let mut seen = vec![routed().await, register_and_hold().await, routed().await];
        handle.kill(namesrv.id());
        sleep(Duration::from_millis(100)).await;
        handle.restart(namesrv.id());
        sleep(Duration::from_millis(100)).await;
        seen.extend([routed().await, register_and_hold().await, routed().await]);
        seen
    })
}

#[test]
fn the_driver_loop_serves_the_name_server_on_simulated_tcp() {
    let expected = vec![
        Some(ResponseCode::TOPIC_NOT_EXIST),
        Some(ResponseCode::SUCCESS),
        Some(ResponseCode::SUCCESS),
        // Restarted: routes are in memory, so the topic is unknown until the broker registers.
        Some(ResponseCode::TOPIC_NOT_EXIST),
        Some(ResponseCode::SUCCESS),
        Some(ResponseCode::SUCCESS),
    ];
    for seed in 0..50 {
        assert_eq!(run(seed), expected, "seed {seed}");
    }
}
