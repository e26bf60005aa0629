//! A broker as a slave: it dials its master's replication port, copies the master's
//! CommitLog byte for byte into its own store and ConsumeQueues, refuses writes, leaves
//! delay levels to the master, and dials again after a lost link. The master's address comes from `haMasterAddress` or from a name server's reply,
//! which also names the master's remoting port: the slave copies its topics, offsets,
//! groups, delay offsets and timer checkpoint from there, and then serves pulls.

use keel_core::broker::Reason;
use keel_core::io::ConnId;
use keel_core::protocol::{RemotingCommand, RequestCode, ResponseCode};
use keel_core::store::FlushMode;
use keel_runtime_sim::broker_node::{BrokerNode, SharedDisk};
use keel_runtime_sim::sim_disk::SimDisk;
use keel_runtime_sim::store_node::read_file;

mod support;
use support::replica_pair::*;
use support::*;

fn send_some(node: &mut BrokerNode, from: i32, count: i32) {
    for i in from..from + count {
        let body = format!("message {i} {}", "y".repeat((i as usize * 97) % 2500));
        let reply = node.call(CLIENT, &send(i, "T", 0, "A", &body));
        assert_eq!(reply.code, 0, "send {i}: {:?}", reply.remark);
    }
}

#[test]
fn a_slave_copies_its_master_byte_for_byte_into_its_log_and_queues() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    connect(&mut master, &mut slave, link);
    send_some(&mut master, 0, 30);
    exchange(&mut master, &mut slave, link);
    for round in 0..4 {
        send_some(&mut master, 30 + round * 10, 10);
        exchange(&mut master, &mut slave, link);
    }
    assert!(master.broker.store().write_pos().0 > master.config().store.segment_size, "spans segments");
    assert_eq!(slave.broker.store().min_phys().0, 0, "connected before the first segment filled");
    assert_same_log(&master, &slave);
    // Its own ConsumeQueue spans the same offsets.
    let queues = |node: &BrokerNode| {
        node.broker.store().queues().map(|(t, q, min, max)| (t.to_owned(), q, min, max)).collect::<Vec<_>>()
    };
    assert!(queues(&master).iter().any(|(topic, _, _, max)| topic == "T" && max.0 == 70));
    assert_eq!(queues(&slave), queues(&master));
    assert!(slave.fatal.is_empty() && master.fatal.is_empty());
}

#[test]
fn a_slave_refuses_sends_and_sends_back_with_service_not_available() {
    let (_master, mut slave, _link) = pair(config(FlushMode::Sync));
    let reply = slave.call(CLIENT, &send(1, "T", 0, "A", "not here"));
    assert_eq!(reply.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
    assert!(reply.remark.as_deref().unwrap_or_default().contains("slave"), "{:?}", reply.remark);
    assert_eq!(slave.broker.store().write_pos().0, 0, "nothing stored");
    assert!(slave.broker.topics().get("T").is_none(), "a refused send creates no topic");
    let mut back = RemotingCommand::request(RequestCode::CONSUMER_SEND_MSG_BACK, 2, Default::default());
    back.ext_fields.insert("offset", "0");
    back.ext_fields.insert("group", "cg");
    back.ext_fields.insert("delayLevel", "0");
    let reply = slave.call(CLIENT, &back);
    assert_eq!(reply.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE);
}

#[test]
fn delay_levels_are_delivered_by_the_master_only_and_the_slave_copies_the_delivery() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    connect(&mut master, &mut slave, link);
    let reply = master.call(CLIENT, &timed(1, "Later", "DELAY", "1", "in a second"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    exchange(&mut master, &mut slave, link);
    let copied = slave.broker.store().write_pos();
    assert_eq!(copied, master.broker.store().write_pos());
    // The slave holds the scheduled message but does not deliver it, however long it waits.
    slave.advance(10_000);
    assert_eq!(slave.broker.store().write_pos(), copied, "the slave wrote nothing of its own");
    let idle = [Reason::DelayLevels, Reason::Timers, Reason::Transactions];
    assert!(idle.iter().all(|reason| slave.broker.soonest().map(|(_, r)| r) != Some(*reason)));
    assert_eq!(slave.broker.delay_schedule().1, 0);
    master.advance(2_000);
    assert_eq!(master.broker.delay_schedule().1, 1, "the master delivered it");
    exchange(&mut master, &mut slave, link);
    assert_same_log(&master, &slave);
}

#[test]
fn a_slave_dials_again_after_a_pause_when_its_link_fails_or_breaks() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    let pause = slave.config().ha.reconnect_ms;
    // The dial fails.
    slave.close(link);
    slave.advance(pause - 1);
    assert_eq!(take_replication_dial(&mut slave), None, "dialled again without a pause");
    slave.advance(1);
    let (link, to) = take_replication_dial(&mut slave).expect("dialled again after the pause");
    assert_eq!(to, master_ha());
    connect(&mut master, &mut slave, link);
    send_some(&mut master, 0, 5);
    exchange(&mut master, &mut slave, link);
    // The master falls silent: the slave drops the link and dials again.
    let housekeeping = slave.config().ha.housekeeping_ms;
    slave.advance(housekeeping);
    let closed = slave.slaves[&link].1.clone().expect("a silent master is dropped");
    assert!(closed.0.contains("silent"), "{closed:?}");
    slave.advance(pause);
    let (again, _) = take_replication_dial(&mut slave).expect("dialled again");
    assert_ne!(again, link);
    // The new link resumes where the slave's log ends.
    master.close(FROM_SLAVE);
    master.slaves.remove(&FROM_SLAVE);
    send_some(&mut master, 5, 5);
    connect(&mut master, &mut slave, again);
    assert_same_log(&master, &slave);
}

#[test]
fn a_slave_without_ha_master_address_follows_the_address_its_name_server_names() {
    let mut slave = boot(slave_config(None), SharedDisk::new(SimDisk::new()));
    assert_eq!(take_replication_dial(&mut slave), None, "no master known yet");
    slave.advance(1);
    let (ns, namesrv, _) = slave.dials.pop().expect("the name server is dialled");
    slave.open(ns, namesrv);
    let register = slave.peers[&ns].inbox.first().cloned().expect("REGISTER_BROKER");
    assert_eq!(register.ext_fields.get("brokerId"), Some("1"));
    let mut reply = RemotingCommand::response_to(&register, ResponseCode::SUCCESS, None);
    reply.ext_fields.insert("masterAddr", "10.0.0.1:10911");
    reply.ext_fields.insert("haServerAddr", "10.0.0.1:10912");
    slave.send(ns, &reply);
    let (_, to) = take_replication_dial(&mut slave).expect("the named master is dialled");
    assert_eq!(to, master_ha());
}

#[test]
fn a_master_names_its_replication_address_when_it_registers() {
    let mut config = config(FlushMode::Sync);
    config.ha_addr = Some(addr("10.0.0.1:20912"));
    let mut master = boot(config, SharedDisk::new(SimDisk::new()));
    master.advance(1);
    let (ns, namesrv, _) = master.dials.pop().expect("the name server is dialled");
    master.open(ns, namesrv);
    let register = master.peers[&ns].inbox.first().cloned().expect("REGISTER_BROKER");
    assert_eq!(register.ext_fields.get("haServerAddr"), Some("10.0.0.1:20912"));
    assert_eq!(take_replication_dial(&mut master), None, "a master dials no master");
}

/// The slave's connection to the master's remoting port, as the master sees it.
const SYNC: ConnId = ConnId(71);

/// Answer a slave's REGISTER_BROKER naming the master at both its ports.
fn name_the_master(slave: &mut BrokerNode) {
    slave.advance(1);
    let at =
        slave.dials.iter().position(|(_, to, _)| *to == addr("10.0.0.9:9876")).expect("name server dialled");
    let (ns, namesrv, _) = slave.dials.remove(at);
    slave.open(ns, namesrv);
    let register = slave.peers[&ns].inbox.first().cloned().expect("REGISTER_BROKER");
    let mut reply = RemotingCommand::response_to(&register, ResponseCode::SUCCESS, None);
    reply.ext_fields.insert("masterAddr", "10.0.0.1:10911");
    reply.ext_fields.insert("haServerAddr", "10.0.0.1:10912");
    slave.send(ns, &reply);
}

/// Open the metadata connection the slave dialled and carry its requests to the master and
/// the replies back until it has no more to ask.
fn carry_metadata(master: &mut BrokerNode, slave: &mut BrokerNode, conn: ConnId) {
    if !master.peers.contains_key(&SYNC) {
        master.open(SYNC, addr("10.0.0.2:50002"));
    }
    loop {
        let requests: Vec<RemotingCommand> =
            std::mem::take(&mut slave.peers.get_mut(&conn).expect("open").inbox);
        if requests.is_empty() {
            return;
        }
        for request in requests {
            master.send(SYNC, &request);
        }
        master.run_all();
        for reply in std::mem::take(&mut master.peers.get_mut(&SYNC).expect("open").inbox) {
            slave.send(conn, &reply);
        }
        slave.run_all();
    }
}

#[test]
fn a_slave_copies_its_masters_metadata_and_then_serves_pulls() {
    let mut master = boot(config(FlushMode::Sync), SharedDisk::new(SimDisk::new()));
    let mut slave = boot(slave_config(None), SharedDisk::new(SimDisk::new()));
    send_some(&mut master, 0, 12);
    assert_eq!(master.call(CLIENT, &commit_offset(100, "T", 0, 7)).response_code(), ResponseCode::SUCCESS);
    let reply = master.call(CLIENT, &timed(101, "Later", "DELAY", "1", "in a second"));
    assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
    master.advance(2_000);
    assert_eq!(master.broker.delay_schedule().1, 1);

    name_the_master(&mut slave);
    let (link, _) = take_replication_dial(&mut slave).expect("the replication port is dialled");
    connect(&mut master, &mut slave, link);
    assert!(slave.broker.topics().get("T").is_none(), "no topics before the first round");
    slave.advance(1);
    let (conn, to, _) = slave.dials.pop().expect("the master's remoting port is dialled");
    assert_eq!(to, addr("10.0.0.1:10911"));
    slave.open(conn, to);
    carry_metadata(&mut master, &mut slave, conn);

    assert_eq!(slave.broker.topics().wrapper(), master.broker.topics().wrapper());
    assert_eq!(slave.broker.offsets().get("cg", "T", 0), Some(7));
    // What the slave copied is what the master serves, and what it persisted.
    let from = |node: &mut BrokerNode, code: RequestCode| {
        node.call(CLIENT, &RemotingCommand::request(code, 500 + code.0, Default::default())).body
    };
    for code in [
        RequestCode::GET_ALL_DELAY_OFFSET,
        RequestCode::GET_TIMER_CHECK_POINT,
        RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    ] {
        assert_eq!(from(&mut slave, code), from(&mut master, code), "{code:?}");
    }
    let persisted = slave.disk.with(|disk| read_file(disk, "config/topics.json"));
    assert!(String::from_utf8_lossy(&persisted).contains("\"Later\""), "topics.json written");
    // The copied topics let consumers pull from the slave.
    let (ours, theirs) = (drain_queue(&mut slave, "T"), drain_queue(&mut master, "T"));
    assert!(ours.len() == 12 && ours == theirs, "the slave serves {} of 12 messages", ours.len());
    assert_eq!(queue_bodies(&mut slave, 600, "Later"), ["in a second"]);

    // Rounds repeat: a commit on the master reaches the slave within the interval.
    assert_eq!(master.call(CLIENT, &commit_offset(102, "T", 0, 11)).response_code(), ResponseCode::SUCCESS);
    slave.advance(keel_core::broker::SLAVE_SYNC_INTERVAL_MS);
    carry_metadata(&mut master, &mut slave, conn);
    assert_eq!(slave.broker.offsets().get("cg", "T", 0), Some(11));
}

#[test]
fn a_fresh_slave_of_a_long_log_starts_at_the_newest_segment_and_keeps_it_across_restarts() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    send_some(&mut master, 0, 60);
    let segment = master.config().store.segment_size;
    let newest = master.broker.store().write_pos().0 / segment * segment;
    assert!(newest >= 2 * segment, "the master's log spans segments");
    connect(&mut master, &mut slave, link);
    send_some(&mut master, 60, 10);
    exchange(&mut master, &mut slave, link);
    let store = slave.broker.store();
    assert_eq!((store.min_phys().0, store.write_pos()), (newest, master.broker.store().write_pos()));
    // Its queue begins at the first entry it copied, and reads as the master's from there.
    let (_, _, min, max) = store.queues().find(|(topic, _, _, _)| *topic == "T").expect("queue copied");
    let on_master = master.broker.store().queue_offsets("T", 0).expect("queue");
    assert!(min.0 > 0 && max == on_master.1, "slave's queue {min:?}..{max:?}, master's {on_master:?}");
    // With the master's topics copied, a pull from there reads what the master's does.
    name_the_master(&mut slave);
    slave.advance(1);
    let at = slave.dials.iter().position(|(_, to, _)| *to == addr("10.0.0.1:10911")).expect("metadata dial");
    let (conn, to, _) = slave.dials.remove(at);
    slave.open(conn, to);
    carry_metadata(&mut master, &mut slave, conn);
    let pulled = |node: &mut BrokerNode| {
        let reply = node.call(CLIENT, &pull(700, "T", 0, min.0 as i64, "*", false));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        messages(&reply)
    };
    let (ours, theirs) = (pulled(&mut slave), pulled(&mut master));
    assert!(!ours.is_empty() && ours == theirs, "the slave pulls {} messages", ours.len());
    let queue_of = |node: &BrokerNode| node.broker.store().queue_offsets("T", 0);

    // A clean restart and a crash both recover the log from where it began.
    let config = slave.config().clone();
    let disk = slave.shutdown();
    let slave = boot(config.clone(), disk);
    assert_eq!(slave.broker.store().min_phys().0, newest);
    assert_eq!(queue_of(&slave), Some((min, max)));
    let disk = slave.kill();
    disk.with(|d| d.crash(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7)));
    let mut slave = boot(config, disk);
    assert_eq!(slave.broker.store().min_phys().0, newest);
    // It resumes where its recovered log ends.
    let (again, _) = take_replication_dial(&mut slave).expect("dials after the restart");
    master.close(FROM_SLAVE);
    master.slaves.remove(&FROM_SLAVE);
    send_some(&mut master, 70, 5);
    connect(&mut master, &mut slave, again);
    assert_eq!(slave.broker.store().write_pos(), master.broker.store().write_pos());
    assert_same_log(&master, &slave);
    assert_eq!(queue_of(&slave).map(|q| q.1), master.broker.store().queue_offsets("T", 0).map(|q| q.1));
}

#[test]
fn a_slave_serves_pulls_only_with_slave_read_enable() {
    let mut config = slave_config(Some(master_ha()));
    config.slave_read_enable = false;
    let mut slave = boot(config, SharedDisk::new(SimDisk::new()));
    let reply = slave.call(CLIENT, &pull(1, "T", 0, 0, "*", false));
    assert_eq!(reply.response_code(), ResponseCode::SYSTEM_BUSY);
    assert!(reply.remark.as_deref().unwrap_or_default().contains("REJECTREQUEST"), "{:?}", reply.remark);
}

#[test]
fn a_master_suggests_the_slave_to_a_consumer_reading_far_behind_only_with_slave_read_enable() {
    let suggested = |slave_read_enable: bool, offset: i64| {
        let mut config = config(FlushMode::Sync);
        config.slave_read_enable = slave_read_enable;
        config.slow_consume_bytes = 5_000;
        let mut master = boot(config, SharedDisk::new(SimDisk::new()));
        send_some(&mut master, 0, 40);
        let reply = master.call(CLIENT, &pull(900, "T", 0, offset, "*", false));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS);
        use keel_core::protocol::headers::{CommandHeader, PullMessageResponseHeader};
        let header = PullMessageResponseHeader::decode(&reply.ext_fields).unwrap();
        header.suggest_which_broker_id
    };
    assert_eq!(suggested(true, 0), 1, "far behind: the slave");
    assert_eq!(suggested(true, 38), 0, "near the end: the master");
    assert_eq!(suggested(false, 0), 0, "slave reads off: always the master");
}

#[test]
fn offsets_committed_on_a_slave_while_its_master_was_away_are_kept_and_given_to_the_master() {
    let (mut master, mut slave, link) = pair(config(FlushMode::Sync));
    connect(&mut master, &mut slave, link);
    send_some(&mut master, 0, 10);
    exchange(&mut master, &mut slave, link);
    assert_eq!(master.call(CLIENT, &commit_offset(1, "T", 0, 3)).response_code(), ResponseCode::SUCCESS);
    // The master is away: its consumer commits to the slave.
    assert_eq!(slave.call(CLIENT, &commit_offset(2, "T", 0, 8)).response_code(), ResponseCode::SUCCESS);
    name_the_master(&mut slave);
    slave.advance(1);
    let at = slave.dials.iter().position(|(_, to, _)| *to == addr("10.0.0.1:10911")).expect("metadata dial");
    let (conn, to, _) = slave.dials.remove(at);
    slave.open(conn, to);
    carry_metadata(&mut master, &mut slave, conn);
    assert_eq!(slave.broker.offsets().get("cg", "T", 0), Some(8), "the newer offset stays");
    assert_eq!(master.broker.offsets().get("cg", "T", 0), Some(8), "and the master has it");
    // From then on the master's commits win again.
    assert_eq!(master.call(CLIENT, &commit_offset(3, "T", 0, 9)).response_code(), ResponseCode::SUCCESS);
    slave.advance(keel_core::broker::SLAVE_SYNC_INTERVAL_MS);
    carry_metadata(&mut master, &mut slave, conn);
    assert_eq!(slave.broker.offsets().get("cg", "T", 0), Some(9));
    // A reset on the master to an older offset reaches the slave too.
    assert_eq!(master.call(CLIENT, &commit_offset(4, "T", 0, 2)).response_code(), ResponseCode::SUCCESS);
    slave.advance(keel_core::broker::SLAVE_SYNC_INTERVAL_MS);
    carry_metadata(&mut master, &mut slave, conn);
    assert_eq!(slave.broker.offsets().get("cg", "T", 0), Some(2));
}
