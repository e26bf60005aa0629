//! The replication stream between a master's store and a slave's, driven by hand: the
//! master's `SlaveSession` and the slave's `MasterLink` exchange bytes cut into random
//! pieces, as TCP may deliver them, while the master keeps appending.

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
        topic: if i % 5 == 0 { "Other" } else { "T" },
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
    while let Some(frame) = session.poll_transmit(now, &master.store, &master.disk, config).unwrap() {
        sent += frame.len();
        for piece in pieces(rng, &frame) {
            link.on_bytes(now, piece, &mut slave.store).unwrap();
        }
        slave.run_all();
    }
    if let Some(report) = link.poll_transmit(now, &slave.store, config) {
        for piece in pieces(rng, &report) {
            session.on_bytes(now, piece, &master.store).unwrap();
        }
    }
    sent
}

fn assert_identical(master: &StoreNode, slave: &StoreNode) {
    let end = master.store.write_pos();
    assert_eq!(slave.store.write_pos(), end);
    for base in (0..=end.0 / SEGMENT).map(|i| i * SEGMENT) {
        let path = paths::segment(base);
        assert_eq!(slave.read_file(path.as_str()), master.read_file(path.as_str()), "segment {base}");
    }
    for (topic, queue) in [("T", 0), ("T", 1), ("Other", 0), ("Other", 1)] {
        let read = |node: &StoreNode| {
            node.store.read_entries(&node.disk, topic, queue, QueueOffset(0), 1024).unwrap()
        };
        assert_eq!(read(slave), read(master), "{topic}/{queue}");
    }
    assert_eq!(
        audit(slave.config(), &slave.disk).unwrap().records,
        audit(master.config(), &master.disk).unwrap().records
    );
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
        let mut slave = node();
        let now = MonoNanos(1_000_000_000);
        let mut session = SlaveSession::new(now);
        let (mut link, hello) = MasterLink::new(now, &slave.store);
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
    for i in 0..40 {
        append(&mut master, i);
    }
    master.run_all();
    let slave = node();
    let config = HaConfig { transfer_batch: 1000, window: 2500, ..HaConfig::default() };
    let now = MonoNanos(1_000_000_000);
    let mut session = SlaveSession::new(now);
    let (_, hello) = MasterLink::new(now, &slave.store);
    session.on_bytes(now, &hello, &master.store).unwrap();
    let mut stream = Vec::new();
    while let Some(frame) = session.poll_transmit(now, &master.store, &master.disk, &config).unwrap() {
        stream.extend_from_slice(&frame);
    }
    let sent = transfers(&stream);
    let sizes: Vec<usize> = sent.iter().map(|t| t.bytes.len()).collect();
    assert_eq!(sizes, [1000, 1000, 500], "batches, then what the window leaves");
    assert_eq!(stream.len(), 2500 + 3 * TRANSFER_HEADER_LEN);
    // A report of 1000 bytes opens the window by as much.
    let mut report = Vec::new();
    keel_core::ha::wire::encode_report(PhysOffset(1000), &mut report);
    session.on_bytes(now, &report, &master.store).unwrap();
    let more = session.poll_transmit(now, &master.store, &master.disk, &config).unwrap().unwrap();
    assert_eq!(transfers(&more)[0].from, PhysOffset(2500));
    assert_eq!(more.len(), TRANSFER_HEADER_LEN + 1000);
    assert_eq!(session.poll_transmit(now, &master.store, &master.disk, &config).unwrap(), None);
}

#[test]
fn idle_sides_send_heartbeats_and_a_silent_peer_is_dropped() {
    let master = node();
    let slave = node();
    let config = HaConfig::default();
    let start = MonoNanos(1_000_000_000);
    let mut session = SlaveSession::new(start);
    let (mut link, hello) = MasterLink::new(start, &slave.store);
    session.on_bytes(start, &hello, &master.store).unwrap();
    assert_eq!(session.poll_transmit(start, &master.store, &master.disk, &config).unwrap(), None);
    assert_eq!(link.poll_transmit(start, &slave.store, &config), None, "the end was just reported");
    let beat = start.plus_millis(config.heartbeat_interval_ms);
    assert_eq!(session.poll_timeout(&config), beat);
    let heartbeat = session.poll_transmit(beat, &master.store, &master.disk, &config).unwrap().unwrap();
    let decoded = transfers(&heartbeat);
    assert!(decoded.len() == 1 && decoded[0].bytes.is_empty(), "an empty transfer");
    assert_eq!(link.poll_transmit(beat, &slave.store, &config).map(|r| r.len()), Some(8));
    let late = start.plus_millis(config.housekeeping_ms);
    assert!(session.check_alive(MonoNanos(late.0 - 1), &config).is_ok());
    assert!(matches!(session.check_alive(late, &config), Err(HaError::Silent(_))));
    assert!(matches!(link.check_alive(late, &config), Err(HaError::Silent(_))));
}

#[test]
fn a_slave_ahead_of_its_master_or_out_of_order_transfers_close_the_connection() {
    let master = node();
    let mut slave = node();
    append(&mut slave, 1);
    slave.run_all();
    let now = MonoNanos(1_000_000_000);
    let mut session = SlaveSession::new(now);
    let (mut link, hello) = MasterLink::new(now, &slave.store);
    assert!(matches!(session.on_bytes(now, &hello, &master.store), Err(HaError::SlaveAhead { .. })));
    let mut transfer = Vec::new();
    keel_core::ha::wire::encode_transfer(PhysOffset(0), b"", &mut transfer);
    let refused = link.on_bytes(now, &transfer, &mut slave.store);
    assert!(matches!(refused, Err(HaError::OutOfOrder { got: PhysOffset(0), .. })), "{refused:?}");
}
