//! Three controllers in a group (`controllerDLegerPeers`), wired to each other by a small
//! in-memory network that carries what their machines ask for (dials, frames, closes):
//! they elect a leader; every member names it in CONTROLLER_GET_METADATA_INFO; a follower
//! answers a broker's request with CONTROLLER_NOT_LEADER naming the leader; the leader
//! answers only once the event is committed, and every member then holds it; with the
//! leader gone the other two elect a new one, which has the state and serves on; the same
//! seed gives the same run. With their Raft logs on (simulated) disks, a group that loses
//! power all at once comes back with its brokers, master and epoch.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keel_core::controller::{Controller, ControllerConfig, ControllerCore, ControllerPeers, RecoveredLog};
use keel_core::io::{ConnId, ConnKind, DiskOp, Input, IoId, Machine, Now, Output};
use keel_core::protocol::headers::{
    ApplyBrokerIdRequestHeader, CommandHeader, GetMetaDataResponseHeader, MasterInfoHeader,
    RegisterBrokerToControllerRequestHeader,
};
use keel_core::protocol::{
    encode_to_bytes, FrameDecoder, RemotingCommand, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_LEN,
};

const PEERS: &str = "n0-10.0.0.1:9878;n1-10.0.0.2:9878;n2-10.0.0.3:9878";
/// The broker's connection into each controller.
const BROKER: ConnId = ConnId(7);

fn at(ms: u64) -> Now {
    Now::new(1_000_000_000 + ms * 1_000_000, 1_726_000_000_000 + i64::try_from(ms).unwrap())
}

/// One controller's disk: its log file as written, and as synced (what a power cut leaves),
/// and a compacted log being written beside it.
#[derive(Default)]
struct Disk {
    written: Vec<u8>,
    synced: Vec<u8>,
    compacted: Vec<u8>,
    /// Operations not yet carried out; they complete on the next clock step.
    queued: VecDeque<(IoId, DiskOp)>,
}

impl Disk {
    fn execute(&mut self, op: &DiskOp) {
        let beside = |file: &keel_core::io::FilePath| file.as_str().ends_with(".tmp");
        match op {
            DiskOp::Create { file, .. } if beside(file) => self.compacted.clear(),
            DiskOp::Create { .. } | DiskOp::SyncDir { .. } => {}
            DiskOp::Write { file, offset, data } => {
                let target = if beside(file) { &mut self.compacted } else { &mut self.written };
                let offset = usize::try_from(*offset).unwrap();
                if target.len() < offset + data.len() {
                    target.resize(offset + data.len(), 0);
                }
                target[offset..offset + data.len()].copy_from_slice(data);
            }
            DiskOp::SetLen { len, .. } => self.written.resize(usize::try_from(*len).unwrap(), 0),
            DiskOp::Sync { file } if beside(file) => {}
            DiskOp::Sync { .. } => self.synced.clone_from(&self.written),
            // The compacted log was synced before it replaces the log.
            DiskOp::Rename { .. } => {
                self.written = std::mem::take(&mut self.compacted);
                self.synced.clone_from(&self.written);
            }
            other => panic!("a controller asked for {other:?}"),
        }
    }
}

struct Net {
    nodes: Vec<Controller>,
    /// Each node's disk, when the logs are kept on disk.
    disks: Option<Vec<Disk>>,
    seed: u64,
    config: ControllerConfig,
    addrs: Vec<SocketAddr>,
    /// (node, its conn) → (node, its conn) at the other end.
    wires: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Per node: a frame decoder for what it sends the broker.
    to_broker: Vec<FrameDecoder>,
    /// Replies and notices the broker got: (node, command).
    broker_got: Vec<(usize, RemotingCommand)>,
    down: BTreeSet<usize>,
    next_inbound: u64,
    ms: u64,
}

impl Net {
    fn new(seed: u64) -> Self {
        Self::build(seed, false, ControllerConfig::default())
    }

    /// A group whose logs are kept on disk.
    fn durable(seed: u64) -> Self {
        Self::build(seed, true, ControllerConfig::default())
    }

    fn controller(
        seed: u64,
        config: ControllerConfig,
        node: usize,
        log: Option<&RecoveredLog>,
    ) -> Controller {
        let peers = ControllerPeers::parse("group1", PEERS, &format!("n{node}"), seed ^ node as u64).unwrap();
        Controller::with_core(ControllerCore::in_group(config, peers, log).unwrap())
    }

    fn build(seed: u64, durable: bool, config: ControllerConfig) -> Self {
        let empty = RecoveredLog::default();
        let log = durable.then_some(&empty);
        let nodes = (0..3).map(|node| Self::controller(seed, config, node, log)).collect();
        let addrs = PEERS.split(';').map(|p| p.split_once('-').unwrap().1.parse().unwrap()).collect();
        let mut net = Self {
            nodes,
            disks: durable.then(|| (0..3).map(|_| Disk::default()).collect()),
            seed,
            config,
            addrs,
            wires: BTreeMap::new(),
            to_broker: (0..3).map(|_| FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)).collect(),
            broker_got: Vec::new(),
            down: BTreeSet::new(),
            next_inbound: 100,
            ms: 0,
        };
        for node in 0..3 {
            net.connect_broker(node);
        }
        net
    }

    fn connect_broker(&mut self, node: usize) {
        let peer = "10.0.1.1:40000".parse().unwrap();
        self.input(node, Input::ConnOpened { conn: BROKER, peer, kind: ConnKind::Remoting });
    }

    /// Carry out every queued disk operation and report it.
    fn complete_disk_ops(&mut self) {
        for node in 0..3 {
            let Some(disks) = &mut self.disks else { return };
            let done: Vec<IoId> = std::mem::take(&mut disks[node].queued)
                .into_iter()
                .map(|(io, op)| {
                    disks[node].execute(&op);
                    io
                })
                .collect();
            for io in done {
                self.input(node, Input::DiskDone { io, result: Ok(()) });
            }
        }
    }

    /// Every node loses power at once (what was not synced is gone) and starts again from
    /// its log file.
    fn power_cycle_all(&mut self) {
        for node in 0..3 {
            self.kill(node);
        }
        self.wires.clear();
        self.down.clear();
        let disks = self.disks.as_mut().expect("a durable group");
        for (node, disk) in disks.iter_mut().enumerate() {
            disk.queued.clear();
            disk.written.clone_from(&disk.synced);
            let log = RecoveredLog::read(&disk.synced).unwrap();
            self.nodes[node] = Self::controller(self.seed, self.config, node, Some(&log));
        }
        self.to_broker = (0..3).map(|_| FrameDecoder::new(DEFAULT_MAX_FRAME_LEN)).collect();
        for node in 0..3 {
            self.connect_broker(node);
        }
    }

    fn input(&mut self, node: usize, input: Input) {
        let mut queue = VecDeque::from([(node, input)]);
        while let Some((node, input)) = queue.pop_front() {
            if self.down.contains(&node) {
                continue;
            }
            self.nodes[node].handle(at(self.ms), input);
            while let Some(output) = self.nodes[node].poll_output() {
                self.carry(node, output, &mut queue);
            }
        }
    }

    fn carry(&mut self, node: usize, output: Output, queue: &mut VecDeque<(usize, Input)>) {
        match output {
            Output::Connect { conn, addr, kind } => {
                let Some(to) = self.addrs.iter().position(|a| *a == addr) else { panic!("dial of {addr}") };
                if self.down.contains(&to) {
                    queue.push_back((node, Input::ConnClosed { conn }));
                    return;
                }
                let inbound = ConnId(self.next_inbound);
                self.next_inbound += 1;
                self.wires.insert((node, conn), (to, inbound));
                self.wires.insert((to, inbound), (node, conn));
                queue.push_back((node, Input::ConnOpened { conn, peer: self.addrs[to], kind }));
                queue.push_back((to, Input::ConnOpened { conn: inbound, peer: self.addrs[node], kind }));
            }
            Output::Send { conn, data } if conn == BROKER => {
                self.to_broker[node].push(&data);
                while let Some(cmd) = self.to_broker[node].next_frame() {
                    self.broker_got.push((node, cmd.unwrap()));
                }
            }
            Output::Send { conn, data } => {
                if let Some(&(to, far)) = self.wires.get(&(node, conn)) {
                    let received = at(self.ms).mono;
                    queue.push_back((to, Input::Bytes { conn: far, data, received }));
                }
            }
            Output::Close { conn, .. } => {
                if let Some((to, far)) = self.wires.remove(&(node, conn)) {
                    self.wires.remove(&(to, far));
                    queue.push_back((to, Input::ConnClosed { conn: far }));
                }
                queue.push_back((node, Input::ConnClosed { conn }));
            }
            Output::Disk { io, op } => match &mut self.disks {
                Some(disks) => disks[node].queued.push_back((io, op)),
                None => panic!("a controller without a log file asked for {op:?}"),
            },
            other => panic!("a controller asked for {other:?}"),
        }
    }

    /// Run the clock `ms` on, firing each node's deadlines as they fall due.
    fn run(&mut self, ms: u64) {
        let end = self.ms + ms;
        while self.ms < end {
            self.ms += 10;
            self.complete_disk_ops();
            for node in 0..3 {
                let due = self.nodes[node].poll_timeout().is_some_and(|t| t <= at(self.ms).mono);
                if due {
                    self.input(node, Input::Timeout);
                }
            }
        }
    }

    /// Node `node` stops: its links break, it hears and says nothing more.
    fn kill(&mut self, node: usize) {
        self.down.insert(node);
        let cut: Vec<((usize, ConnId), (usize, ConnId))> =
            self.wires.iter().filter(|(from, _)| from.0 == node).map(|(a, b)| (*a, *b)).collect();
        for (near, (to, far)) in cut {
            self.wires.remove(&near);
            self.wires.remove(&(to, far));
            self.input(to, Input::ConnClosed { conn: far });
        }
    }

    fn leaders(&self) -> Vec<usize> {
        (0..3).filter(|n| !self.down.contains(n) && self.nodes[*n].core().is_leader()).collect()
    }

    fn leader(&self) -> usize {
        match self.leaders().as_slice() {
            [one] => *one,
            other => panic!("expected one leader, got {other:?}"),
        }
    }

    /// Send the broker's request to `node`; the replies that came back by the time the
    /// clock ran `wait_ms` on.
    fn call(&mut self, node: usize, request: &RemotingCommand, wait_ms: u64) -> Vec<RemotingCommand> {
        self.broker_got.clear();
        let received = at(self.ms).mono;
        self.input(node, Input::Bytes { conn: BROKER, data: encode_to_bytes(request), received });
        self.run(wait_ms);
        self.broker_got.iter().filter(|(_, c)| c.is_response()).map(|(_, c)| c.clone()).collect()
    }

    fn metadata(&mut self, node: usize) -> GetMetaDataResponseHeader {
        let ask = RemotingCommand::request(RequestCode::CONTROLLER_GET_METADATA_INFO, 1, Default::default());
        let replies = self.call(node, &ask, 0);
        GetMetaDataResponseHeader::decode(&replies[0].ext_fields).unwrap()
    }

    fn trace(&self) -> Vec<usize> {
        self.leaders()
    }
}

fn apply_id(id: i64) -> RemotingCommand {
    let header = ApplyBrokerIdRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        applied_broker_id: id,
        register_check_code: format!("10.0.1.{id}:10911;{id}"),
    };
    RemotingCommand::request(RequestCode::CONTROLLER_APPLY_BROKER_ID, 2, header.to_ext_fields())
}

fn register(id: i64) -> RemotingCommand {
    let header = RegisterBrokerToControllerRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        broker_id: id,
        broker_address: format!("10.0.1.{id}:10911"),
        ha_address: Some(format!("10.0.1.{id}:10912")),
    };
    RemotingCommand::request(RequestCode::CONTROLLER_REGISTER_BROKER, 3, header.to_ext_fields())
}

#[test]
fn a_group_elects_one_leader_that_every_member_names() {
    let mut net = Net::new(11);
    net.run(5_000);
    let leader = net.leader();
    for node in 0..3 {
        let meta = net.metadata(node);
        assert_eq!(meta.is_leader, node == leader, "node {node}");
        assert_eq!(meta.controller_leader_id, Some(format!("n{leader}")));
        assert_eq!(meta.controller_leader_address, Some(net.addrs[leader].to_string()));
        assert_eq!(meta.group.as_deref(), Some("group1"));
        assert_eq!(meta.peers.as_deref(), Some(PEERS));
    }
}

#[test]
fn a_follower_names_the_leader_and_the_leader_answers_once_committed_everywhere() {
    let mut net = Net::new(12);
    net.run(5_000);
    let leader = net.leader();
    let follower = (leader + 1) % 3;
    let replies = net.call(follower, &apply_id(1), 100);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].response_code(), ResponseCode::CONTROLLER_NOT_LEADER);
    let meta = GetMetaDataResponseHeader::decode(&replies[0].ext_fields).unwrap();
    assert_eq!(meta.controller_leader_address, Some(net.addrs[leader].to_string()));
    assert!(net.nodes[follower].core().state().table().get("broker-a").is_none(), "nothing was decided");

    // The leader answers only once the group committed the event, and all of it has it.
    let replies = net.call(leader, &apply_id(1), 200);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].response_code(), ResponseCode::SUCCESS, "{:?}", replies[0].remark);
    let replies = net.call(leader, &register(1), 200);
    assert_eq!(replies[0].response_code(), ResponseCode::SUCCESS, "{:?}", replies[0].remark);
    for node in 0..3 {
        let set = net.nodes[node].core().state().table().get("broker-a").expect("the set everywhere");
        assert_eq!(set.addr(1), Some("10.0.1.1:10911"), "node {node}");
    }
}

#[test]
fn with_the_leader_gone_the_others_elect_one_that_has_the_state_and_serves() {
    let mut net = Net::new(13);
    net.run(5_000);
    let first = net.leader();
    assert_eq!(net.call(first, &apply_id(1), 200)[0].response_code(), ResponseCode::SUCCESS);
    assert_eq!(net.call(first, &register(1), 200)[0].response_code(), ResponseCode::SUCCESS);

    net.kill(first);
    net.run(5_000);
    let second = net.leader();
    assert_ne!(second, first);
    assert_eq!(
        net.nodes[second].core().state().table().get("broker-a").and_then(|s| s.addr(1)),
        Some("10.0.1.1:10911")
    );
    // The broker's first election goes through the new leader; both members apply it.
    let elect = keel_core::protocol::headers::ElectMasterRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        broker_id: Some(1),
        designate_elect: Some(false),
    };
    let request = RemotingCommand::request(RequestCode::CONTROLLER_ELECT_MASTER, 4, elect.to_ext_fields());
    let replies = net.call(second, &request, 200);
    assert_eq!(replies[0].response_code(), ResponseCode::SUCCESS, "{:?}", replies[0].remark);
    let info = MasterInfoHeader::decode(&replies[0].ext_fields).unwrap();
    assert_eq!((info.master_broker_id, info.master_epoch), (Some(1), Some(1)));
    for node in (0..3).filter(|n| *n != first) {
        assert_eq!(net.nodes[node].core().state().table().get("broker-a").unwrap().master, Some(1));
    }
}

#[test]
fn the_same_seed_elects_the_same_leaders() {
    let run = |seed| {
        let mut net = Net::new(seed);
        net.run(5_000);
        let first = net.trace();
        net.kill(first[0]);
        net.run(5_000);
        (first, net.trace())
    };
    assert_eq!(run(21), run(21));
}

#[test]
fn a_leader_cut_off_from_the_majority_commits_nothing_and_says_so() {
    let mut net = Net::new(14);
    net.run(5_000);
    let leader = net.leader();
    for node in (0..3).filter(|n| *n != leader) {
        net.kill(node);
    }
    // Proposed, never committed: the leader steps down (check quorum) and answers
    // CONTROLLER_NOT_LEADER rather than leave the broker waiting or claim success.
    let replies = net.call(leader, &apply_id(1), 5_000);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].response_code(), ResponseCode::CONTROLLER_NOT_LEADER);
    assert!(net.nodes[leader].core().state().table().get("broker-a").is_none());
    assert!(!net.nodes[leader].core().is_leader());
}

fn elect(id: i64) -> RemotingCommand {
    let elect = keel_core::protocol::headers::ElectMasterRequestHeader {
        cluster_name: "c".into(),
        broker_name: "broker-a".into(),
        broker_id: Some(id),
        designate_elect: Some(false),
    };
    RemotingCommand::request(RequestCode::CONTROLLER_ELECT_MASTER, 4, elect.to_ext_fields())
}

#[test]
fn a_durable_group_that_loses_power_at_once_keeps_its_brokers_master_and_epoch() {
    power_cut_keeps_the_set(Net::durable(15));
}

#[test]
fn a_group_whose_logs_were_compacted_comes_back_from_its_snapshots() {
    let config = ControllerConfig { snapshot_entries: 2, ..ControllerConfig::default() };
    let net = Net::build(15, true, config);
    let logs = power_cut_keeps_the_set(net);
    for log in logs {
        assert!(log.snapshot_index() >= 2, "every member compacted its log");
    }
}

/// Five events, a power cut of the whole group, and the set comes back as it was; the logs
/// the members came back from.
fn power_cut_keeps_the_set(mut net: Net) -> Vec<RecoveredLog> {
    net.run(5_000);
    let leader = net.leader();
    for request in [apply_id(1), register(1), elect(1), apply_id(2), register(2)] {
        let replies = net.call(leader, &request, 300);
        assert_eq!(replies[0].response_code(), ResponseCode::SUCCESS, "{:?}", replies[0].remark);
    }
    assert!(net.disks.as_ref().unwrap().iter().all(|d| !d.synced.is_empty()), "every member wrote its log");

    let logs = net.disks.as_ref().unwrap().iter().map(|d| RecoveredLog::read(&d.synced).unwrap()).collect();
    net.power_cycle_all();
    net.run(5_000);
    let leader = net.leader();
    for node in 0..3 {
        let set = net.nodes[node].core().state().table().get("broker-a").expect("the set survives");
        assert_eq!((set.master, set.master_epoch), (Some(1), 1), "node {node}");
        assert_eq!(set.addr(2), Some("10.0.1.2:10911"), "node {node}");
    }
    // The leader vouches for the same master at the same epoch: a broker that ignores
    // answers from an older epoch still follows this group.
    let heartbeat = keel_core::protocol::headers::BrokerHeartbeatRequestHeader {
        cluster_name: "c".into(),
        broker_addr: "10.0.1.1:10911".into(),
        broker_name: "broker-a".into(),
        broker_id: Some(1),
        epoch: Some(1),
        max_offset: Some(0),
        confirm_offset: Some(0),
        heartbeat_timeout_mills: Some(10_000),
        election_priority: Some(0),
    };
    let request = RemotingCommand::request(RequestCode::BROKER_HEARTBEAT, 5, heartbeat.to_ext_fields());
    let replies = net.call(leader, &request, 0);
    assert_eq!(replies[0].response_code(), ResponseCode::SUCCESS, "{:?}", replies[0].remark);
    let info = MasterInfoHeader::decode(&replies[0].ext_fields).unwrap();
    assert_eq!((info.master_broker_id, info.master_epoch), (Some(1), Some(1)));
    logs
}

#[test]
fn a_durable_leader_answers_only_once_a_majority_holds_the_event_on_disk() {
    let mut net = Net::durable(16);
    net.run(5_000);
    let leader = net.leader();
    net.broker_got.clear();
    let received = at(net.ms).mono;
    net.input(leader, Input::Bytes { conn: BROKER, data: encode_to_bytes(&apply_id(1)), received });
    // No disk has completed a write yet: no member may count the event, so no answer.
    assert!(net.broker_got.iter().all(|(_, c)| !c.is_response()), "answered before any write was durable");
    net.run(300);
    let replies: Vec<&RemotingCommand> =
        net.broker_got.iter().map(|(_, c)| c).filter(|c| c.is_response()).collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].response_code(), ResponseCode::SUCCESS, "{:?}", replies[0].remark);
}
