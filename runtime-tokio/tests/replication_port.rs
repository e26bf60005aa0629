//! A real `mqbroker` serves its CommitLog on `haListenPort`: a socket that reports an empty
//! log receives offset-framed transfers whose bytes are the segment file's, byte for byte.
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
