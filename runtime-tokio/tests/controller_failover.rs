//! Controller mode with real processes: a controller, a name server and two brokers of one
//! set. The first broker to ask is elected master; the second follows it, tells it who it is
//! on the replication link, and joins the SyncStateSet once caught up. After `kill -9` of the
//! master the controller, missing its heartbeats, elects the slave; it takes sends in the
//! new epoch and serves every message the old master had acknowledged and replicated.
//! Then the same with three controllers in a group: the brokers find the leader; after
//! `kill -9` of the leader the other two elect one, which has the set's state, and after
//! `kill -9` of the master it elects the slave. Then all three are killed at once and
//! started again: from their Raft logs they know the set, its new master and its epoch.
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
use keel_core::protocol::headers::{CommandHeader, GetMetaDataResponseHeader, GetRouteInfoRequestHeader};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use support::{scratch_dir, Client, ServerProcess};

/// Run mqadmin: its stdout, or its stderr if it failed.
fn mqadmin(args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mqadmin")).args(args).output().unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

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

fn start_broker(dir: &std::path::Path, id: i64, controllers: &str, namesrv: u16) -> Broker {
    let (port, ha_port) = (free_port(), free_port());
    let conf = dir.join(format!("broker-{id}.conf"));
    let text = format!(
        "brokerName=broker-a\nbrokerId={id}\nbrokerRole=ASYNC_MASTER\nenableControllerMode=true\n\
         controllerAddr={controllers}\nnamesrvAddr=127.0.0.1:{namesrv}\nlistenPort={port}\n\
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

    let controllers = format!("127.0.0.1:{controller_port}");
    let mut first = start_broker(&dir, 1, &controllers, namesrv_port);
    let mut to_first = Client::connect(([127, 0, 0, 1], first.port).into());
    wait_until("broker 1 elected", Duration::from_secs(20), || ha_status(&mut to_first).master);
    let second = start_broker(&dir, 2, &controllers, namesrv_port);
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
    // What an operator sees with mqadmin: the controller's view and the master's slaves.
    let first_addr = format!("127.0.0.1:{}", first.port);
    let sets = mqadmin(&["getSyncStateSet", "-a", &controllers, "-b", "broker-a"]).unwrap();
    assert!(sets.contains("#brokerName\tbroker-a\n#MasterBrokerId\t1\n"), "{sets}");
    assert!(sets.contains("#SyncStateSetNums\t2"), "{sets}");
    assert!(sets.contains("#InSyncReplica:\tReplicaIdentity{brokerName='broker-a', brokerId=2"), "{sets}");
    let status = mqadmin(&["haStatus", "-b", &first_addr]).unwrap();
    assert!(status.contains(&format!("#MasterAddr\t{first_addr}\n")), "{status}");
    assert!(status.contains("#SlaveNum\t1\n#InSyncSlaveNum\t1"), "{status}");
    let slave = mqadmin(&["haStatus", "-b", &format!("127.0.0.1:{}", second.port)]).unwrap();
    assert!(slave.contains(&format!("#CommitLogMaxOffset\t{end}")), "{slave}");

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
    // The dead broker cannot be designated; the new master stays when designated again.
    let refused =
        mqadmin(&["electMaster", "-a", &controllers, "-c", "DefaultCluster", "-n", "broker-a", "-b", "1"]);
    assert!(refused.as_ref().is_err_and(|e| e.contains("CONTROLLER_ELECT_MASTER_FAILED")), "{refused:?}");
    let stays =
        mqadmin(&["electMaster", "-a", &controllers, "-c", "DefaultCluster", "-n", "broker-a", "-b", "2"]);
    assert!(stays.as_ref().is_err_and(|e| e.contains("is alive and stays")), "{stays:?}");
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
    // Broker 2's log: broker 1 wrote it up to where broker 2 took over in epoch 2.
    let epochs = mqadmin(&["getBrokerEpoch", "-b", &second_addr]).unwrap();
    assert!(epochs.contains("#brokerName\tbroker-a\n"), "{epochs}");
    // Epoch 1 is 65536 in Keel's numbering (the controller's epoch times 65536).
    let entries: Vec<&str> = epochs.lines().filter_map(|l| l.strip_prefix("#Epoch: ")).collect();
    let first = entries.iter().find(|e| e.starts_with("EpochEntry{epoch=65536, startOffset=0, endOffset="));
    let handover = first.and_then(|e| e.split("endOffset=").nth(1)).map(|e| e.trim_end_matches('}'));
    let last = entries.last().copied().unwrap_or_default();
    assert!(
        handover
            .is_some_and(|end| last.starts_with(&format!("EpochEntry{{epoch=131072, startOffset={end},"))),
        "{epochs}"
    );

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

/// The port of the controller that says it leads, if one does.
fn leader_among(ports: &[u16]) -> Option<u16> {
    ports.iter().copied().find(|port| {
        let Ok(mut client) = Client::try_connect(([127, 0, 0, 1], *port).into()) else { return false };
        let ask = RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO, 1, Default::default());
        let reply = client.call(&ask);
        GetMetaDataResponseHeader::decode(&reply.ext_fields).is_ok_and(|m| m.is_leader)
    })
}

#[test]
fn a_controller_group_survives_its_leader_and_then_elects_the_slave() {
    let dir = scratch_dir("controller-group-failover");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("n{i}-127.0.0.1:{p}")).collect();
    let start_controller = |i: usize| {
        let conf = dir.join(format!("controller-n{i}.properties"));
        let text = format!(
            "controllerDLegerGroup=group1\ncontrollerDLegerPeers={}\ncontrollerDLegerSelfId=n{i}\n\
             scanNotActiveBrokerInterval=1000\ncontrollerStorePath={}\n",
            peers.join(";"),
            dir.join(format!("controller-n{i}")).display()
        );
        std::fs::write(&conf, text).unwrap();
        let process =
            ServerProcess::start(env!("CARGO_BIN_EXE_mqcontroller"), &["-c", conf.to_str().unwrap()]);
        assert_eq!(process.addr_in_boot_line(0).port(), ports[i], "{}", process.boot_line);
        process
    };
    let mut controllers: Vec<Option<ServerProcess>> = (0..3).map(|i| Some(start_controller(i))).collect();
    let mut leader = None;
    let elected = wait_until("a controller leads", Duration::from_secs(20), || {
        leader = leader_among(&ports);
        leader.is_some()
    });
    eprintln!("controller group: a leader {:.1} s after start", elected.as_secs_f64());
    let conf = dir.join("namesrv.properties");
    std::fs::write(&conf, "listenPort=0\n").unwrap();
    let namesrv = ServerProcess::start(env!("CARGO_BIN_EXE_mqnamesrv"), &["-c", conf.to_str().unwrap()]);
    let namesrv_port = namesrv.addr_in_boot_line(0).port();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let addrs = addrs.join(";");

    let mut first = start_broker(&dir, 1, &addrs, namesrv_port);
    let mut to_first = Client::connect(([127, 0, 0, 1], first.port).into());
    wait_until("broker 1 elected", Duration::from_secs(20), || ha_status(&mut to_first).master);
    let second = start_broker(&dir, 2, &addrs, namesrv_port);
    let mut to_second = Client::connect(([127, 0, 0, 1], second.port).into());
    for i in 0..10 {
        let reply = to_first.call(&send_message(i, "pg", 0, &message(i as usize)));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    let in_sync = |port: u16| {
        let mut client = Client::connect(([127, 0, 0, 1], port).into());
        sync_state(&mut client).in_sync_replicas.iter().any(|r| r.broker_id == 2)
    };
    wait_until("broker 2 in the SyncStateSet", Duration::from_secs(30), || {
        leader_among(&ports).is_some_and(in_sync)
    });

    // The leader controller dies: the other two elect one that has the set, and the
    // brokers move to it (broker 2 stays in sync through the new leader's view).
    let old = leader.expect("a leader");
    let index = ports.iter().position(|p| *p == old).unwrap();
    let mut killed = controllers[index].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let rest: Vec<u16> = ports.iter().copied().filter(|p| *p != old).collect();
    let took =
        wait_until("a new controller leads", Duration::from_secs(20), || leader_among(&rest).is_some());
    eprintln!("controller group: a new leader {:.1} s after kill -9 of the old", took.as_secs_f64());
    let new_leader = leader_among(&rest).unwrap();
    let mut to_leader = Client::connect(([127, 0, 0, 1], new_leader).into());
    let state = sync_state(&mut to_leader);
    assert_eq!((state.master_broker_id, state.master_epoch), (Some(1), 1), "{state:?}");

    // Then the master dies: the new leader elects broker 2.
    first.process.child.kill().unwrap();
    first.process.child.wait().unwrap();
    let killed_at = Instant::now();
    let mut sent = 0;
    wait_until("broker 2 takes sends", Duration::from_secs(60), || {
        sent += 1;
        let reply = to_second.call(&send_message(1000 + sent, "pg", 0, &message(100)));
        reply.response_code() == ResponseCode::SUCCESS
    });
    eprintln!(
        "controller group: broker 2 took a send {:.1} s after the master was killed",
        killed_at.elapsed().as_secs_f64()
    );
    let leader_now = leader_among(&rest).expect("a leader");
    let after = sync_state(&mut Client::connect(([127, 0, 0, 1], leader_now).into()));
    assert_eq!((after.master_broker_id, after.master_epoch), (Some(2), 2), "{after:?}");

    // Every controller dies at once and starts again: the group comes back from its logs
    // with broker 2 master at epoch 2 (broker 2 ignores a controller behind its epoch).
    for controller in &mut controllers {
        if let Some(mut process) = controller.take() {
            process.child.kill().unwrap();
            process.child.wait().unwrap();
        }
    }
    let controllers: Vec<ServerProcess> = (0..3).map(start_controller).collect();
    wait_until("a leader after the restart", Duration::from_secs(20), || leader_among(&ports).is_some());
    let leader_now = leader_among(&ports).expect("a leader");
    let recovered = sync_state(&mut Client::connect(([127, 0, 0, 1], leader_now).into()));
    assert_eq!((recovered.master_broker_id, recovered.master_epoch), (Some(2), 2), "{recovered:?}");
    let mut sent_after = 0;
    wait_until("broker 2 takes sends after the group's restart", Duration::from_secs(30), || {
        sent_after += 1;
        let reply = to_second.call(&send_message(5000 + sent_after, "pg", 0, &message(200)));
        reply.response_code() == ResponseCode::SUCCESS
    });
    drop(controllers);
    drop(second);
    drop(namesrv);
}
