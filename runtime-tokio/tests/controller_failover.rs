//! Controller mode with real processes: a controller, a name server and two brokers of one
//! set. The first broker to ask is elected master; the second follows it, tells it who it is
//! on the replication link, and joins the SyncStateSet once caught up. After `kill -9` of the
//! master the controller, missing its heartbeats, elects the slave; it takes sends in the
//! new epoch and serves every message the old master had acknowledged and replicated.
//! Normal builds only (real processes and sockets).
#![cfg(not(madsim))]

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::protocol::body::{BrokerReplicasInfo, HaRuntimeInfo, TopicRouteData};
use keel_core::protocol::client_requests::{
    pull_message, pulled_records, send_message, OutgoingMessage, PullRequest,
};
use keel_core::protocol::headers::{CommandHeader, GetRouteInfoRequestHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use support::{scratch_dir, Client, ServerProcess};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn ha_status(client: &mut Client) -> HaRuntimeInfo {
    let reply =
        client.call(&RemotingCommand::request(RequestCode::GET_BROKER_HA_STATUS, 1, Default::default()));
    json::from_slice(&reply.body).unwrap()
}

fn sync_state(controller: &mut Client) -> keel_core::protocol::body::ReplicasInfo {
    let names = json::to_vec(&vec!["broker-a"], KeyStyle::Fastjson).unwrap();
    let request =
        RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA, 2, Default::default())
            .with_body(names);
    let info: BrokerReplicasInfo = json::from_slice(&controller.call(&request).body).unwrap();
    info.replicas_info_table.get("broker-a").cloned().unwrap_or_default()
}

fn message(i: usize) -> OutgoingMessage {
    OutgoingMessage {
        topic: "Failover".into(),
        body: Bytes::from(format!("message {i}")),
        ..OutgoingMessage::default()
    }
}

struct Broker {
    process: ServerProcess,
    port: u16,
}

fn start_broker(dir: &std::path::Path, id: i64, controller: u16, namesrv: u16) -> Broker {
    let (port, ha_port) = (free_port(), free_port());
    let conf = dir.join(format!("broker-{id}.conf"));
    let text = format!(
        "brokerName=broker-a\nbrokerId={id}\nbrokerRole=ASYNC_MASTER\nenableControllerMode=true\n\
         controllerAddr=127.0.0.1:{controller}\nnamesrvAddr=127.0.0.1:{namesrv}\nlistenPort={port}\n\
         haListenPort={ha_port}\nstorePathRootDir={}\nflushDiskType=SYNC_FLUSH\n",
        dir.join(format!("store-{id}")).display()
    );
    std::fs::write(&conf, text).unwrap();
    let process = ServerProcess::start(env!("CARGO_BIN_EXE_mqbroker"), &["-c", conf.to_str().unwrap()]);
    assert!(process.boot_line.contains("boot success"), "{}", process.boot_line);
    Broker { process, port }
}

#[test]
fn the_controller_elects_the_in_sync_slave_after_the_master_is_killed() {
    let dir = scratch_dir("controller-failover");
    let conf = dir.join("controller.properties");
    std::fs::write(&conf, "listenPort=0\nscanNotActiveBrokerInterval=1000\n").unwrap();
    let controller_process =
        ServerProcess::start(env!("CARGO_BIN_EXE_mqcontroller"), &["-c", conf.to_str().unwrap()]);
    let controller_port = controller_process.addr_in_boot_line(0).port();
    let conf = dir.join("namesrv.properties");
    std::fs::write(&conf, "listenPort=0\n").unwrap();
    let namesrv = ServerProcess::start(env!("CARGO_BIN_EXE_mqnamesrv"), &["-c", conf.to_str().unwrap()]);
    let namesrv_port = namesrv.addr_in_boot_line(0).port();
    let mut controller = Client::connect(controller_process.addr_in_boot_line(0));

    let mut first = start_broker(&dir, 1, controller_port, namesrv_port);
    let mut to_first = Client::connect(([127, 0, 0, 1], first.port).into());
    wait_until("broker 1 elected", Duration::from_secs(20), || ha_status(&mut to_first).master);
    let second = start_broker(&dir, 2, controller_port, namesrv_port);
    let mut to_second = Client::connect(([127, 0, 0, 1], second.port).into());

    let mut acked = Vec::new();
    for i in 0..20 {
        let reply = to_first.call(&send_message(i as i32, "pg", 0, &message(i)));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
        acked.push(format!("message {i}"));
    }
    let end = ha_status(&mut to_first).master_commit_log_max_offset;
    wait_until("broker 2 copies the log", Duration::from_secs(20), || {
        ha_status(&mut to_second).ha_client_runtime_info.max_offset >= end
    });
    wait_until("broker 2 in the SyncStateSet", Duration::from_secs(20), || {
        sync_state(&mut controller).in_sync_replicas.iter().any(|r| r.broker_id == 2)
    });
    let before = sync_state(&mut controller);
    assert_eq!((before.master_broker_id, before.master_epoch), (Some(1), 1));

    first.process.child.kill().unwrap();
    first.process.child.wait().unwrap();
    let killed = Instant::now();
    let mut sent = 0;
    let took = wait_until("broker 2 takes sends", Duration::from_secs(40), || {
        sent += 1;
        let reply = to_second.call(&send_message(1000 + sent, "pg", 0, &message(100)));
        reply.response_code() == ResponseCode::SUCCESS
    });
    acked.push("message 100".into());
    eprintln!(
        "failover: broker 2 took a send {:.1} s after the master was killed",
        killed.elapsed().as_secs_f64()
    );
    assert!(took < Duration::from_secs(40));
    let after = sync_state(&mut controller);
    assert_eq!((after.master_broker_id, after.master_epoch), (Some(2), 2), "{after:?}");
    // The name server's route follows: broker 2 is the set's broker id 0.
    let mut to_namesrv = Client::connect(namesrv.addr_in_boot_line(0));
    let second_addr = format!("127.0.0.1:{}", second.port);
    let routed = wait_until("the route names broker 2 as master", Duration::from_secs(10), || {
        let header = GetRouteInfoRequestHeader { topic: "Failover".into(), accept_standard_json_only: None };
        let reply = to_namesrv.call(&RemotingCommand::request(
            RequestCode::GET_ROUTEINFO_BY_TOPIC,
            3,
            header.to_ext_fields(),
        ));
        let route: Option<TopicRouteData> = json::from_slice(&reply.body).ok();
        route.is_some_and(|r| r.broker_datas.iter().any(|b| b.broker_addrs.get(&0) == Some(&second_addr)))
    });
    eprintln!("failover: the route named broker 2 {:.1} s after it took a send", routed.as_secs_f64());

    // Every acknowledged message is there, in order, on the new master.
    let pull = PullRequest {
        group: "cg".into(),
        topic: "Failover".into(),
        queue_id: 0,
        offset: 0,
        max_messages: 64,
        expression: "*".into(),
        suspend_ms: 0,
    };
    let reply = to_second.call(&pull_message(77, &pull));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    let bodies: Vec<String> = pulled_records(&reply.body)
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(r.record.body).into_owned())
        .collect();
    assert_eq!(bodies, acked);
    drop(second);
    drop(namesrv);
    drop(controller_process);
}
