//! The controller machine driven with real frames, as brokers and `mqadmin` would: ids,
//! registration, the first election, SyncStateSet changes fenced by their epochs, the scan
//! that replaces a master gone silent (by epoch, then offset, then priority), the notices
//! the set's brokers get, unclean elections only when enabled, and the sync state a tool
//! reads.

use std::collections::BTreeSet;

use keel_core::controller::{Controller, ControllerConfig};
use keel_core::io::{ConnId, ConnKind, Input, Machine, Now, Output};
use keel_core::protocol::body::{BrokerReplicasInfo, ElectMasterResponseBody, SyncStateSet};
use keel_core::protocol::headers::{
    AlterSyncStateSetRequestHeader, ApplyBrokerIdRequestHeader, BrokerHeartbeatRequestHeader, CommandHeader,
    ElectMasterRequestHeader, GetNextBrokerIdHeader, MasterInfoHeader,
    RegisterBrokerToControllerRequestHeader,
};
use keel_core::protocol::json::{self, KeyStyle};
use keel_core::protocol::{
    decode_one, encode_to_bytes, RemotingCommand, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_LEN,
};

const TOOL: ConnId = ConnId(9);

fn at(ms: u64) -> Now {
    Now::new(1_000_000_000 + ms * 1_000_000, 1_726_000_000_000 + i64::try_from(ms).unwrap())
}

fn broker_conn(id: u64) -> ConnId {
    ConnId(id)
}

fn addr(id: u64) -> String {
    format!("10.0.0.{id}:10911")
}

struct Bench {
    controller: Controller,
    /// Oneway notices sent, by connection.
    notices: Vec<(ConnId, RemotingCommand)>,
}

impl Bench {
    fn new(config: ControllerConfig) -> Self {
        let mut controller = Controller::new(config);
        for conn in [1, 2, 3, 4, 9].map(ConnId) {
            let peer = format!("10.0.0.{}:50000", conn.0).parse().unwrap();
            controller.handle(at(0), Input::ConnOpened { conn, peer, kind: ConnKind::Remoting });
        }
        Self { controller, notices: Vec::new() }
    }

    fn drain(&mut self) -> Vec<(ConnId, RemotingCommand)> {
        let mut sent = Vec::new();
        while let Some(output) = self.controller.poll_output() {
            if let Output::Send { conn, data } = output {
                let cmd = decode_one(&data, DEFAULT_MAX_FRAME_LEN).unwrap();
                if cmd.is_response() {
                    sent.push((conn, cmd));
                } else {
                    assert!(cmd.is_oneway(), "notices are oneway");
                    self.notices.push((conn, cmd));
                }
            }
        }
        sent
    }

    fn call(&mut self, ms: u64, conn: ConnId, request: RemotingCommand) -> RemotingCommand {
        let now = at(ms);
        self.controller
            .handle(now, Input::Bytes { conn, data: encode_to_bytes(&request), received: now.mono });
        match self.drain().as_slice() {
            [(to, reply)] if *to == conn => reply.clone(),
            other => panic!("expected one reply on {conn:?}, got {other:?}"),
        }
    }

    fn tick(&mut self, ms: u64) {
        self.controller.handle(at(ms), Input::Timeout);
        assert!(self.drain().is_empty(), "a scan answers nobody");
    }

    /// A broker takes the next id and registers with it.
    fn join(&mut self, ms: u64, id: u64) -> RemotingCommand {
        let conn = broker_conn(id);
        let ask = GetNextBrokerIdHeader {
            cluster_name: "c".into(),
            broker_name: "broker-a".into(),
            next_broker_id: None,
        };
        let reply = self.call(ms, conn, request(RequestCode::CONTROLLER_GET_NEXT_BROKER_ID, &ask));
        let next = GetNextBrokerIdHeader::decode(&reply.ext_fields).unwrap().next_broker_id;
        assert_eq!(next, Some(id as i64));
        let apply = ApplyBrokerIdRequestHeader {
            cluster_name: "c".into(),
            broker_name: "broker-a".into(),
            applied_broker_id: id as i64,
            register_check_code: format!("{};{id}", addr(id)),
        };
        let reply = self.call(ms, conn, request(RequestCode::CONTROLLER_APPLY_BROKER_ID, &apply));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
        let register = RegisterBrokerToControllerRequestHeader {
            cluster_name: "c".into(),
            broker_name: "broker-a".into(),
            broker_id: id as i64,
            broker_address: addr(id),
            ha_address: None,
        };
        self.call(ms, conn, request(RequestCode::CONTROLLER_REGISTER_BROKER, &register))
    }

    fn heartbeat(&mut self, ms: u64, id: u64, epoch: i32, max_offset: i64, priority: i32) {
        let header = BrokerHeartbeatRequestHeader {
            cluster_name: "c".into(),
            broker_addr: addr(id),
            broker_name: "broker-a".into(),
            broker_id: Some(id as i64),
            epoch: Some(epoch),
            max_offset: Some(max_offset),
            confirm_offset: Some(0),
            heartbeat_timeout_mills: Some(10_000),
            election_priority: Some(priority),
        };
        let reply = self.call(ms, broker_conn(id), request(RequestCode::BROKER_HEARTBEAT, &header));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        // A known set's answer carries its SyncStateSet, epoch as in the header (a master
        // learns the members even if the answer to its own change was lost).
        if let Some(epoch) = reply.ext_fields.get("syncStateSetEpoch") {
            let body: SyncStateSet = json::from_slice(&reply.body).expect("a SyncStateSet body");
            assert_eq!(body.sync_state_set_epoch.to_string(), epoch);
            assert!(!body.sync_state_set.is_empty());
        }
    }

    fn elect(&mut self, ms: u64, conn: ConnId, id: Option<u64>, designate: bool) -> RemotingCommand {
        let header = ElectMasterRequestHeader {
            cluster_name: "c".into(),
            broker_name: "broker-a".into(),
            broker_id: Some(id.map_or(-1, |id| id as i64)),
            designate_elect: Some(designate),
        };
        self.call(ms, conn, request(RequestCode::CONTROLLER_ELECT_MASTER, &header))
    }

    fn alter(
        &mut self,
        ms: u64,
        master: u64,
        master_epoch: i32,
        members: &[i64],
        epoch: i32,
    ) -> RemotingCommand {
        let header = AlterSyncStateSetRequestHeader {
            broker_name: "broker-a".into(),
            master_broker_id: master as i64,
            master_epoch,
        };
        let body =
            SyncStateSet { sync_state_set: members.iter().copied().collect(), sync_state_set_epoch: epoch };
        let request = request(RequestCode::CONTROLLER_ALTER_SYNC_STATE_SET, &header)
            .with_body(json::to_vec(&body, KeyStyle::Fastjson).unwrap());
        self.call(ms, broker_conn(master), request)
    }

    fn sync_state(&mut self, ms: u64) -> BrokerReplicasInfo {
        let request =
            RemotingCommand::request(RequestCode::CONTROLLER_GET_SYNC_STATE_DATA, 1, Default::default())
                .with_body(json::to_vec(&vec!["broker-a"], KeyStyle::Fastjson).unwrap());
        let reply = self.call(ms, TOOL, request);
        json::from_slice(&reply.body).unwrap()
    }
}

fn request(code: RequestCode, header: &impl CommandHeader) -> RemotingCommand {
    RemotingCommand::request(code, 1, header.to_ext_fields())
}

fn master_of(reply: &RemotingCommand) -> (Option<i64>, Option<i32>) {
    let info = MasterInfoHeader::decode(&reply.ext_fields).unwrap();
    (info.master_broker_id, info.master_epoch)
}

/// Three brokers with ids 1..=3, broker 1 master in epoch 1, all in the SyncStateSet.
fn three_in_sync(config: ControllerConfig) -> Bench {
    let mut bench = Bench::new(config);
    for id in 1..=3 {
        let registered = bench.join(0, id);
        assert_eq!(registered.response_code(), ResponseCode::SUCCESS);
        assert_eq!(master_of(&registered), (None, Some(0)), "no master yet (epoch 0)");
    }
    let first = bench.elect(0, broker_conn(1), Some(1), false);
    assert_eq!(first.response_code(), ResponseCode::SUCCESS, "{:?}", first.remark);
    assert_eq!(master_of(&first), (Some(1), Some(1)));
    let body: ElectMasterResponseBody = json::from_slice(&first.body).unwrap();
    assert_eq!(body.broker_member_group.unwrap().broker_addrs.len(), 3);
    for id in 1..=3 {
        bench.heartbeat(0, id, 1, 1_000, 0);
    }
    let altered = bench.alter(0, 1, 1, &[1, 2, 3], 1);
    assert_eq!(altered.response_code(), ResponseCode::SUCCESS, "{:?}", altered.remark);
    let set: SyncStateSet = json::from_slice(&altered.body).unwrap();
    assert_eq!((set.sync_state_set, set.sync_state_set_epoch), (BTreeSet::from([1, 2, 3]), 2));
    bench.notices.clear();
    bench
}

#[test]
fn brokers_get_ids_register_and_the_first_to_ask_becomes_master() {
    let mut bench = three_in_sync(ControllerConfig::default());
    // A broker registering later learns the master.
    let again = bench.join(0, 4);
    assert_eq!(master_of(&again), (Some(1), Some(1)));
    // Asking again while the master is alive keeps it.
    let kept = bench.elect(100, broker_conn(2), Some(2), false);
    assert_eq!(kept.response_code(), ResponseCode::CONTROLLER_MASTER_STILL_EXIST);
    assert_eq!(master_of(&kept), (Some(1), Some(1)));
    // Another broker cannot take a claimed id.
    let stolen = ApplyBrokerIdRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        applied_broker_id: 2,
        register_check_code: "10.9.9.9:10911;x".into(),
    };
    let reply = bench.call(100, TOOL, request(RequestCode::CONTROLLER_APPLY_BROKER_ID, &stolen));
    assert_eq!(reply.response_code(), ResponseCode::CONTROLLER_BROKER_ID_INVALID);
}

#[test]
fn sync_state_set_changes_are_fenced_by_both_epochs() {
    let mut bench = three_in_sync(ControllerConfig::default());
    let stale = bench.alter(10, 1, 1, &[1, 2], 1);
    assert_eq!(stale.response_code(), ResponseCode::CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH);
    let old_master = bench.alter(10, 1, 0, &[1, 2], 2);
    assert_eq!(old_master.response_code(), ResponseCode::CONTROLLER_FENCED_MASTER_EPOCH);
    let not_master = bench.alter(10, 2, 1, &[1, 2], 2);
    assert_eq!(not_master.response_code(), ResponseCode::CONTROLLER_INVALID_MASTER);
    let shrunk = bench.alter(10, 1, 1, &[1, 2], 2);
    assert_eq!(shrunk.response_code(), ResponseCode::SUCCESS);
}

#[test]
fn a_silent_master_is_replaced_by_the_best_in_sync_replica_and_the_set_is_told() {
    let mut bench = three_in_sync(ControllerConfig::default());
    // Brokers 2 and 3 keep heartbeating; 3 has the longer log. Broker 1 falls silent.
    let mut ms = 0;
    while ms <= 30_000 {
        bench.heartbeat(ms, 2, 1, 5_000, 0);
        bench.heartbeat(ms, 3, 1, 7_000, 5);
        bench.tick(ms);
        ms += 1_000;
    }
    let info = bench.sync_state(ms);
    let set = &info.replicas_info_table["broker-a"];
    assert_eq!((set.master_broker_id, set.master_epoch), (Some(3), 2), "{set:?}");
    assert_eq!(set.in_sync_replicas.iter().map(|r| r.broker_id).collect::<Vec<_>>(), vec![3]);
    let out_of_sync: Vec<(i64, bool)> =
        set.not_in_sync_replicas.iter().map(|r| (r.broker_id, r.alive)).collect();
    assert_eq!(out_of_sync, vec![(1, false), (2, true)]);
    // Each alive broker was told once, on its own connection.
    let told: Vec<(ConnId, Option<i64>, Option<i32>)> = bench
        .notices
        .iter()
        .map(|(conn, notice)| {
            assert_eq!(notice.request_code(), RequestCode::NOTIFY_BROKER_ROLE_CHANGED);
            let (master, epoch) = master_of(notice);
            (*conn, master, epoch)
        })
        .collect();
    assert_eq!(told, vec![(broker_conn(2), Some(3), Some(2)), (broker_conn(3), Some(3), Some(2))]);
    // The old master coming back is fenced: its epoch is over.
    let late = bench.alter(ms, 1, 1, &[1, 2, 3], 2);
    assert_eq!(late.response_code(), ResponseCode::CONTROLLER_INVALID_MASTER);
}

#[test]
fn no_master_is_called_dead_before_a_heartbeat_timeout_has_passed_since_start() {
    let mut bench = three_in_sync(ControllerConfig::default());
    // Only broker 2 is heard; the master is silent from the start, but the controller
    // waits out one heartbeat timeout (10 s) before judging.
    for ms in [0, 5_000, 9_000] {
        bench.heartbeat(ms, 2, 1, 1_000, 0);
        bench.tick(ms);
    }
    assert_eq!(bench.sync_state(9_000).replicas_info_table["broker-a"].master_broker_id, Some(1));
}

#[test]
fn out_of_sync_replicas_are_elected_only_when_unclean_elections_are_enabled() {
    for unclean in [false, true] {
        let config = ControllerConfig { elect_unclean: unclean, ..ControllerConfig::default() };
        let mut bench = three_in_sync(config);
        let shrunk = bench.alter(0, 1, 1, &[1], 2);
        assert_eq!(shrunk.response_code(), ResponseCode::SUCCESS);
        let mut ms = 0;
        while ms <= 30_000 {
            bench.heartbeat(ms, 2, 1, 900, 0);
            bench.tick(ms);
            ms += 1_000;
        }
        let set = bench.sync_state(ms).replicas_info_table.remove("broker-a").unwrap();
        if unclean {
            assert_eq!((set.master_broker_id, set.master_epoch), (Some(2), 2));
        } else {
            // The master is recorded gone (its epoch fenced), and nobody follows it.
            assert_eq!((set.master_broker_id, set.master_epoch), (None, 2));
            assert!(bench.notices.is_empty());
            let asked = bench.elect(ms, broker_conn(2), Some(2), false);
            assert_eq!(asked.response_code(), ResponseCode::CONTROLLER_ELECT_MASTER_FAILED);
        }
    }
}

#[test]
fn a_tool_can_designate_an_in_sync_master() {
    let mut bench = three_in_sync(ControllerConfig::default());
    let moved = bench.elect(100, TOOL, Some(2), true);
    assert_eq!(moved.response_code(), ResponseCode::SUCCESS, "{:?}", moved.remark);
    assert_eq!(master_of(&moved), (Some(2), Some(2)));
    let shrunk = bench.alter(100, 2, 2, &[2, 3], 3);
    assert_eq!(shrunk.response_code(), ResponseCode::SUCCESS, "{:?}", shrunk.remark);
    let refused = bench.elect(100, TOOL, Some(1), true);
    assert_eq!(refused.response_code(), ResponseCode::CONTROLLER_ELECT_MASTER_FAILED, "1 is out of sync now");
}

#[test]
fn a_controller_that_has_not_heard_for_a_heartbeat_timeout_keeps_the_master() {
    // The controller judges after 20 s; the brokers' own heartbeat timeout is 10 s.
    let config = ControllerConfig { heartbeat_timeout_ms: 20_000, ..ControllerConfig::default() };
    let mut bench = three_in_sync(config);
    // Broker 1 is silent from the start; at 15 s a slave asks to be elected. The master's
    // heartbeat lapsed, but this controller (just started, or just made leader) has not
    // listened long enough to call it gone: it stays, and registrations still name it.
    bench.heartbeat(15_000, 2, 1, 5_000, 0);
    let early = bench.elect(15_000, broker_conn(2), Some(2), false);
    assert_eq!(early.response_code(), ResponseCode::CONTROLLER_MASTER_STILL_EXIST, "{:?}", early.remark);
    assert_eq!(master_of(&early), (Some(1), Some(1)));
    // Once it has listened long enough, the same request elects.
    bench.heartbeat(21_000, 2, 1, 5_000, 0);
    let later = bench.elect(21_000, broker_conn(2), Some(2), false);
    assert_eq!(later.response_code(), ResponseCode::SUCCESS, "{:?}", later.remark);
    assert_eq!(master_of(&later), (Some(2), Some(2)));
}
