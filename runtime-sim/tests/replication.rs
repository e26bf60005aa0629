//! The replication stream between a master's store and a slave's, driven by hand: the
//! master's `SlaveSession` and the slave's `MasterLink` exchange bytes cut into random
//! pieces, as TCP may deliver them, while the master keeps appending.

use keel_core::ha::epoch::EpochHistory;
use keel_core::ha::wire::{Transfer, TransferDecoder, MAX_TRANSFER_LEN, TRANSFER_HEADER_LEN};
use keel_core::ha::{HaConfig, HaError, MasterLink, SlaveSession};
use keel_core::io::{MonoNanos, Now};
use keel_core::protocol::message::properties;
use keel_core::protocol::message::stored::sys_flag;
use keel_core::store::audit::audit;
use keel_core::store::{paths, AppendRequest, FlushMode, PhysOffset, QueueOffset, StoreConfig};
use keel_runtime_sim::sim_disk::SimDisk;
use keel_runtime_sim::store_node::StoreNode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEGMENT: u64 = 4096;

fn node() -> StoreNode {
    let mut config = StoreConfig::new("10.0.0.1:10911".parse().unwrap());
    config.segment_size = SEGMENT;
    config.queue_file_entries = 8;
    config.flush_mode = FlushMode::Sync;
    config.max_message_size = 1024;
    StoreNode::boot(config, SimDisk::new(), Now::new(1_000_000_000, 1_790_000_000_000)).unwrap().0
}

/// Append message `i` of a mix: two queues of one topic, another topic, a transaction half
/// now and then (no queue entry), bodies of many sizes.
fn append(node: &mut StoreNode, i: usize) {
    let body = vec![b'a' + (i % 26) as u8; 20 + (i * 97) % 900];
    let props = properties::encode(&[("TAGS", "A"), ("KEYS", &format!("k{i}"))]);
    let request = AppendRequest {
        topic: if i.is_multiple_of(5) { "Other" } else { "T" },
        queue_id: (i % 2) as i32,
        flag: 0,
        sys_flag: if i % 7 == 3 { sys_flag::TRANSACTION_PREPARED } else { 0 },
        born_timestamp: 1_790_000_000_000,
        born_host: "10.0.0.2:50000".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: &body,
        properties: &props,
    };
    node.store.append(node.now, &request).unwrap();
}

/// Every transfer in `stream`, which holds whole ones only.
fn transfers(stream: &[u8]) -> Vec<Transfer> {
    let mut decoder = TransferDecoder::new(MAX_TRANSFER_LEN);
    decoder.push(stream);
    let mut out = Vec::new();
    while let Some(transfer) = decoder.next_transfer() {
        out.push(transfer.unwrap());
    }
    assert_eq!(decoder.buffered(), 0, "a cut transfer");
    out
}

/// Deliver `bytes` in pieces of random sizes (some empty reads aside, as TCP may).
fn pieces<'a>(rng: &mut ChaCha8Rng, bytes: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(rng.gen_range(1..=rest.len().min(700)));
        out.push(piece);
        rest = tail;
    }
    out
}

/// One round trip: the master sends what it may, in pieces; the slave appends and
/// reports, in pieces. Returns the bytes the master sent.
fn exchange(
    rng: &mut ChaCha8Rng,
    now: MonoNanos,
    master: &StoreNode,
    session: &mut SlaveSession,
    slave: &mut StoreNode,
    link: &mut MasterLink,
    config: &HaConfig,
) -> usize {
    let mut sent = 0;
    let history = EpochHistory::default();
    while let Some(frame) =
        session.poll_transmit(now, &master.store, &master.disk, config, Some(&history)).unwrap()
    {
        sent += frame.len();
        for piece in pieces(rng, &frame) {
            link.on_bytes(now, piece, &mut slave.store, &history).unwrap();
        }
        slave.run_all();
    }
    if let Some(report) = link.poll_transmit(now, &slave.store, config, false) {
        for piece in pieces(rng, &report) {
            session.on_bytes(now, piece, &master.store).unwrap();
        }
    }
    sent
}

/// The slave's log and queues equal the master's from where the slave's log begins (0, or
/// the master's newest segment when the slave connected with nothing).
fn assert_identical(master: &StoreNode, slave: &StoreNode) {
    let end = master.store.write_pos();
    assert_eq!(slave.store.write_pos(), end);
    let start = slave.store.min_phys().0;
    for base in (start / SEGMENT..=end.0 / SEGMENT).map(|i| i * SEGMENT) {
        let path = paths::segment(base);
        assert!(slave.read_file(path.as_str()) == master.read_file(path.as_str()), "segment {base} differs");
    }
    for (topic, queue) in [("T", 0), ("T", 1), ("Other", 0), ("Other", 1)] {
        let from = QueueOffset(slave.store.queue_offsets(topic, queue).map_or(0, |(min, _)| min.0));
        let read = |node: &StoreNode| node.store.read_entries(&node.disk, topic, queue, from, 1024).unwrap();
        assert_eq!(read(slave), read(master), "{topic}/{queue} from {from:?}");
    }
    let mut theirs = audit(master.config(), &master.disk).unwrap().records;
    theirs.retain(|record| record.offset >= start);
    assert!(audit(slave.config(), &slave.disk).unwrap().records == theirs, "the audited records differ");
}

#[test]
fn a_slave_fed_through_a_chunked_stream_while_the_master_appends_ends_identical() {
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config =
            HaConfig { transfer_batch: rng.gen_range(64..2048), window: 6000, ..HaConfig::default() };
        let mut master = node();
        // The slave may connect after some of the log exists.
        let early = rng.gen_range(0..30);
        for i in 0..early {
            append(&mut master, i);
        }
        master.run_all();
        let newest = master.store.write_pos().0 / SEGMENT * SEGMENT;
        let mut slave = node();
        let now = MonoNanos(1_000_000_000);
        let mut session = SlaveSession::new(now);
        let (mut link, hello) = MasterLink::new(now, &slave.store, None);
        for piece in pieces(&mut rng, &hello) {
            session.on_bytes(now, piece, &master.store).unwrap();
        }
        for i in early..early + 60 {
            append(&mut master, i);
            if rng.gen_bool(0.5) {
                master.run_all();
            }
            exchange(&mut rng, now, &master, &mut session, &mut slave, &mut link, &config);
        }
        master.run_all();
        while exchange(&mut rng, now, &master, &mut session, &mut slave, &mut link, &config) > 0 {}
        assert!(master.store.write_pos().0 > 3 * SEGMENT, "seed {seed}: the log spans segments");
        assert_eq!(slave.store.min_phys().0, newest, "seed {seed}: a slave with nothing starts there");
        assert_identical(&master, &slave);
        assert_eq!(
            session.acked(),
            master.store.write_pos(),
            "seed {seed}: the last report acknowledges all"
        );
        assert_eq!(link.pending(), 0);
    }
}

#[test]
fn a_master_sends_no_more_than_its_window_past_the_slaves_reports() {
    let mut master = node();
    // Within the first segment: an empty slave is streamed from the newest segment's start.
    for i in 0..8 {
        append(&mut master, i);
    }
    master.run_all();
    assert!((3500..SEGMENT).contains(&master.store.write_pos().0), "{:?}", master.store.write_pos());
    let slave = node();
    let config = HaConfig { transfer_batch: 1000, window: 2500, ..HaConfig::default() };
    let now = MonoNanos(1_000_000_000);
    let mut session = SlaveSession::new(now);
    let (_, hello) = MasterLink::new(now, &slave.store, None);
    session.on_bytes(now, &hello, &master.store).unwrap();
    let history = EpochHistory::default();
    let poll = |session: &mut SlaveSession| {
        session.poll_transmit(now, &master.store, &master.disk, &config, Some(&history)).unwrap()
    };
    let mut stream = Vec::new();
    while let Some(frame) = poll(&mut session) {
        stream.extend_from_slice(&frame);
    }
    let sent = transfers(&stream);
    let sizes: Vec<usize> = sent.iter().map(|t| t.bytes.len()).collect();
    assert_eq!(sizes, [1000, 1000, 500], "batches, then what the window leaves");
    // The history frame first: its header, the end, one epoch.
    let history_len = TRANSFER_HEADER_LEN + 8 + 12;
    assert_eq!(stream.len(), history_len + 2500 + 3 * TRANSFER_HEADER_LEN);
    // A report of 1000 bytes opens the window by as much.
    let mut report = Vec::new();
    keel_core::ha::wire::encode_report(PhysOffset(1000), &mut report);
    session.on_bytes(now, &report, &master.store).unwrap();
    let more = poll(&mut session).unwrap();
    assert_eq!(transfers(&more)[0].from, PhysOffset(2500));
    assert_eq!(more.len(), TRANSFER_HEADER_LEN + 1000);
    assert_eq!(poll(&mut session), None);
}

#[test]
fn idle_sides_send_heartbeats_and_a_silent_peer_is_dropped() {
    let master = node();
    let mut slave = node();
    let config = HaConfig::default();
    let start = MonoNanos(1_000_000_000);
    let mut session = SlaveSession::new(start);
    let (mut link, hello) = MasterLink::new(start, &slave.store, None);
    session.on_bytes(start, &hello, &master.store).unwrap();
    let history = EpochHistory::default();
    // Nothing until the history is durable, then the history.
    assert_eq!(session.poll_transmit(start, &master.store, &master.disk, &config, None).unwrap(), None);
    let first = session.poll_transmit(start, &master.store, &master.disk, &config, Some(&history)).unwrap();
    link.on_bytes(start, &first.expect("the history"), &mut slave.store, &history).unwrap();
    assert_eq!(link.take_adopted(), Some(history.clone()));
    assert_eq!(
        session.poll_transmit(start, &master.store, &master.disk, &config, Some(&history)).unwrap(),
        None
    );
    assert_eq!(link.poll_transmit(start, &slave.store, &config, false), None, "the end was just reported");
    let beat = start.plus_millis(config.heartbeat_interval_ms);
    assert_eq!(session.poll_timeout(&config), beat);
    let heartbeat =
        session.poll_transmit(beat, &master.store, &master.disk, &config, Some(&history)).unwrap().unwrap();
    let decoded = transfers(&heartbeat);
    assert!(decoded.len() == 1 && decoded[0].bytes.is_empty(), "an empty transfer");
    assert_eq!(link.poll_transmit(beat, &slave.store, &config, false).map(|r| r.len()), Some(8));
    let late = start.plus_millis(config.housekeeping_ms);
    assert!(session.check_alive(MonoNanos(late.0 - 1), &config).is_ok());
    assert!(matches!(session.check_alive(late, &config), Err(HaError::Silent(_))));
    assert!(matches!(link.check_alive(late, &config), Err(HaError::Silent(_))));
}

#[test]
fn a_slave_ahead_of_its_master_is_told_to_cut_back_and_closed() {
    let master = node();
    let mut slave = node();
    append(&mut slave, 1);
    slave.run_all();
    let now = MonoNanos(1_000_000_000);
    let config = HaConfig::default();
    let history = EpochHistory::default();
    let mut session = SlaveSession::new(now);
    let (mut link, hello) = MasterLink::new(now, &slave.store, None);
    session.on_bytes(now, &hello, &master.store).unwrap();
    let frame = session.poll_transmit(now, &master.store, &master.disk, &config, Some(&history)).unwrap();
    let closed = session.poll_transmit(now, &master.store, &master.disk, &config, Some(&history));
    assert!(matches!(closed, Err(HaError::SlaveAhead { .. })), "closed after the history: {closed:?}");
    // The master's log ends at 0 in the epoch both share: the slave must cut back to it.
    let told = link.on_bytes(now, &frame.expect("the history"), &mut slave.store, &history);
    assert_eq!(told, Err(HaError::CutBack { to: PhysOffset(0) }));
}

#[test]
fn bytes_before_the_history_or_out_of_order_close_the_connection() {
    let slave_store = node();
    let mut slave = node();
    let now = MonoNanos(1_000_000_000);
    let history = EpochHistory::default();
    let (mut link, _) = MasterLink::new(now, &slave_store.store, None);
    let mut transfer = Vec::new();
    keel_core::ha::wire::encode_transfer(PhysOffset(0), b"", &mut transfer);
    assert_eq!(link.on_bytes(now, &transfer, &mut slave.store, &history), Err(HaError::EpochsExpected));
    append(&mut slave, 1);
    slave.run_all();
    let (mut link, _) = MasterLink::new(now, &slave.store, None);
    let mut stream = Vec::new();
    history.encode_frame(PhysOffset(100_000), &mut stream);
    keel_core::ha::wire::encode_transfer(PhysOffset(40), b"", &mut stream);
    let refused = link.on_bytes(now, &stream, &mut slave.store, &history);
    assert!(matches!(refused, Err(HaError::OutOfOrder { got: PhysOffset(40), .. })), "{refused:?}");
}

#[test]
fn a_controller_mode_slave_never_follows_a_master_of_an_older_epoch() {
    let mut slave = node();
    append(&mut slave, 1);
    slave.run_all();
    let end = slave.store.write_pos();
    let now = MonoNanos(1_000_000_000);
    // The slave was master in epoch 3 from offset 0; a deposed master of epoch 2 (which
    // never had epoch 3's records) offers its history.
    let mut own = EpochHistory::default();
    own.begin_at_least(3 << 16, PhysOffset(0));
    let mut deposed = EpochHistory::default();
    deposed.begin_at_least(2 << 16, PhysOffset(0));
    let mut frame = Vec::new();
    deposed.encode_frame(PhysOffset(0), &mut frame);
    let (mut link, _) = MasterLink::new(now, &slave.store, Some(2));
    let refused = link.on_bytes(now, &frame, &mut slave.store, &own);
    assert_eq!(refused, Err(HaError::StaleMaster { master: 2 << 16, own: 3 << 16 }));
    assert_eq!(slave.store.write_pos(), end, "nothing cut");
    // Without controller mode (no identity) epochs are one broker's own count: it follows.
    let (mut link, _) = MasterLink::new(now, &slave.store, None);
    let told = link.on_bytes(now, &frame, &mut slave.store, &own);
    assert!(matches!(told, Err(HaError::CutBack { .. }) | Err(HaError::NoSharedEpoch)), "{told:?}");
}

#[test]
fn a_controller_mode_slave_serves_its_readers_only_what_its_master_confirmed() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let config = HaConfig::default();
    let mut master = node();
    for i in 1..=20 {
        append(&mut master, i);
    }
    master.run_all();
    let end = master.store.write_pos();
    // Every SyncStateSet member holds only the first half (the master's limit).
    let half = PhysOffset(end.0 / 2);
    master.store.set_confirmed_limit(Some(half));
    let now = MonoNanos(1_000_000_000);
    for (identity, expected) in [(Some(2), half), (None, end)] {
        let mut slave = node();
        let mut session = SlaveSession::new(now);
        let (mut link, hello) = MasterLink::new(now, &slave.store, identity);
        session.on_bytes(now, &hello, &master.store).unwrap();
        while exchange(&mut rng, now, &master, &mut session, &mut slave, &mut link, &config) > 0 {}
        assert_eq!(slave.store.write_pos(), end, "{identity:?}: the log is copied whole");
        assert_eq!(slave.store.consumable_end(), expected, "{identity:?}: what readers may see");
    }
    // The master confirms more: the slave's readers follow.
    let mut slave = node();
    let mut session = SlaveSession::new(now);
    let (mut link, hello) = MasterLink::new(now, &slave.store, Some(2));
    session.on_bytes(now, &hello, &master.store).unwrap();
    while exchange(&mut rng, now, &master, &mut session, &mut slave, &mut link, &config) > 0 {}
    master.store.set_confirmed_limit(Some(end));
    while exchange(&mut rng, now, &master, &mut session, &mut slave, &mut link, &config) > 0 {}
    assert_eq!(slave.store.consumable_end(), end);
}
