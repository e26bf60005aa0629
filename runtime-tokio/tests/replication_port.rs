//! A real `mqbroker` serves its CommitLog on `haListenPort`: a socket that reports an empty
//! log receives offset-framed transfers whose bytes are the segment file's, byte for byte.
//! A slave `mqbroker` pointed at it with `haMasterAddress` copies that log into its own
//! store and refuses sends.
//! Normal builds only (a real process and sockets).
#![cfg(not(madsim))]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::ha::wire::{encode_report, TransferDecoder, MAX_TRANSFER_LEN};
use keel_core::protocol::client_requests::{send_message, OutgoingMessage};
use keel_core::protocol::message::stored::{parse_record, Parsed};
use keel_core::protocol::ResponseCode;
use keel_core::store::PhysOffset;
use support::{scratch_dir, Client, ServerProcess};

const MESSAGES: usize = 30;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How many message records `log` holds whole, from its start.
fn records(log: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = log;
    while let Ok(Parsed::Message(view)) = parse_record(rest) {
        count += 1;
        rest = &rest[view.bytes.len()..];
    }
    count
}

#[test]
fn a_socket_on_the_replication_port_is_streamed_the_commitlog() {
    let store = scratch_dir("replication-port");
    let ha_port = free_port();
    let conf = store.with_extension("conf");
    let text = format!(
        "listenPort=0\nhaListenPort={ha_port}\nstorePathRootDir={}\nflushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=1048576\n",
        store.display()
    );
    std::fs::write(&conf, text).unwrap();
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_mqbroker"), &["-c", conf.to_str().unwrap()]);
    assert!(server.boot_line.contains("boot success"), "{}", server.boot_line);
    let mut client = Client::connect(server.addr_in_boot_line(0));
    for i in 0..MESSAGES {
        let message = OutgoingMessage {
            topic: "Replicated".into(),
            body: Bytes::from(format!("message {i} {}", "y".repeat(i * 50))),
            ..OutgoingMessage::default()
        };
        let reply = client.call(&send_message(i as i32, "pg", 0, &message));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }

    let mut slave = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], ha_port))).unwrap();
    slave.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut report = Vec::new();
    encode_report(PhysOffset(0), &mut report);
    slave.write_all(&report).unwrap();
    let mut decoder = TransferDecoder::new(MAX_TRANSFER_LEN);
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while records(&log) < MESSAGES {
        assert!(Instant::now() < deadline, "only {} records streamed", records(&log));
        let mut buf = [0u8; 64 * 1024];
        match slave.read(&mut buf) {
            Ok(0) => panic!("the broker closed the replication connection"),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
        while let Some(transfer) = decoder.next_transfer() {
            let transfer = transfer.unwrap();
            assert_eq!(transfer.from.0, log.len() as u64, "transfers follow each other");
            log.extend_from_slice(&transfer.bytes);
        }
    }
    let segment = std::fs::read(store.join("commitlog").join(format!("{:020}", 0))).unwrap();
    assert_eq!(&segment[..log.len()], log.as_slice(), "the stream is the segment file's bytes");
}

/// The bytes of `MESSAGES` whole records at the start of `log`, if it holds them.
fn first_records(log: &[u8]) -> Option<&[u8]> {
    let mut len = 0;
    for _ in 0..MESSAGES {
        match parse_record(log.get(len..)?) {
            Ok(Parsed::Message(view)) => len += view.bytes.len(),
            _ => return None,
        }
    }
    Some(&log[..len])
}

#[test]
fn a_slave_mqbroker_copies_its_master_and_refuses_sends() {
    let master_store = scratch_dir("replication-master");
    let slave_store = scratch_dir("replication-slave");
    let ha_port = free_port();
    let write_conf = |store: &std::path::Path, extra: &str| {
        let conf = store.with_extension("conf");
        let text = format!(
            "listenPort=0\nstorePathRootDir={}\nflushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=1048576\n{extra}",
            store.display()
        );
        std::fs::write(&conf, text).unwrap();
        conf
    };
    let master_conf = write_conf(&master_store, &format!("haListenPort={ha_port}\n"));
    let slave_conf = write_conf(
        &slave_store,
        &format!("haListenPort=0\nbrokerRole=SLAVE\nbrokerId=1\nhaMasterAddress=127.0.0.1:{ha_port}\n"),
    );
    let bin = env!("CARGO_BIN_EXE_mqbroker");
    let master = ServerProcess::start(bin, &["-c", master_conf.to_str().unwrap()]);
    let slave = ServerProcess::start(bin, &["-c", slave_conf.to_str().unwrap()]);
    let mut producer = Client::connect(master.addr_in_boot_line(0));
    for i in 0..MESSAGES {
        let message = OutgoingMessage {
            topic: "Replicated".into(),
            body: Bytes::from(format!("message {i} {}", "z".repeat(i * 40))),
            ..OutgoingMessage::default()
        };
        let reply = producer.call(&send_message(i as i32, "pg", 0, &message));
        assert_eq!(reply.response_code(), ResponseCode::SUCCESS, "{:?}", reply.remark);
    }
    let segment = |store: &std::path::Path| std::fs::read(store.join("commitlog").join(format!("{:020}", 0)));
    let written = segment(&master_store).unwrap();
    let expected = first_records(&written).expect("the master's log holds every message");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copied = segment(&slave_store).unwrap_or_default();
        if copied.get(..expected.len()) == Some(expected) {
            break;
        }
        assert!(Instant::now() < deadline, "the slave's log does not match the master's after 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut client = Client::connect(slave.addr_in_boot_line(0));
    let message =
        OutgoingMessage { topic: "Replicated".into(), body: Bytes::from("no"), ..OutgoingMessage::default() };
    let reply = client.call(&send_message(99, "pg", 0, &message));
    assert_eq!(reply.response_code(), ResponseCode::SERVICE_NOT_AVAILABLE, "{:?}", reply.remark);
}

#[test]
fn a_sync_master_acknowledges_with_its_slave_and_reports_its_loss() {
    let master_store = scratch_dir("sync-master");
    let slave_store = scratch_dir("sync-slave");
    let ha_port = free_port();
    let write_conf = |store: &std::path::Path, extra: &str| {
        let conf = store.with_extension("conf");
        let text = format!("listenPort=0\nstorePathRootDir={}\n{extra}", store.display());
        std::fs::write(&conf, text).unwrap();
        conf
    };
    let master_conf = write_conf(&master_store, &format!("haListenPort={ha_port}\nbrokerRole=SYNC_MASTER\n"));
    let slave_conf = write_conf(
        &slave_store,
        &format!("haListenPort=0\nbrokerRole=SLAVE\nbrokerId=1\nhaMasterAddress=127.0.0.1:{ha_port}\n"),
    );
    let bin = env!("CARGO_BIN_EXE_mqbroker");
    let master = ServerProcess::start(bin, &["-c", master_conf.to_str().unwrap()]);
    let mut producer = Client::connect(master.addr_in_boot_line(0));
    let mut opaque = 0;
    let mut send_until = |producer: &mut Client, wanted: ResponseCode| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            opaque += 1;
            let message = OutgoingMessage {
                topic: "Sync".into(),
                body: Bytes::from("m"),
                ..OutgoingMessage::default()
            };
            let code = producer.call(&send_message(opaque, "pg", 0, &message)).response_code();
            if code == wanted {
                return;
            }
            assert!(Instant::now() < deadline, "no {wanted:?} within 30 s; last {code:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // No slave yet: stored on the master only.
    send_until(&mut producer, ResponseCode::SLAVE_NOT_AVAILABLE);
    let mut slave = ServerProcess::start(bin, &["-c", slave_conf.to_str().unwrap()]);
    send_until(&mut producer, ResponseCode::SUCCESS);
    // The slave dies: the master's next sends say so.
    drop(slave.terminate());
    send_until(&mut producer, ResponseCode::SLAVE_NOT_AVAILABLE);
}
