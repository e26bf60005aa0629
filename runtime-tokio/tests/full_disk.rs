//! A real `mqbroker` on a small file system (a 64 MiB tmpfs this test mounts; it needs
//! root, as CI has): writes fill it until the broker refuses them ("disk full") while it
//! keeps serving pulls; old segments then expire and go, writes resume by themselves, the
//! process never stops, and every acknowledged message still inside the horizon reads back.
//! Normal builds only (real processes, a real file system).
#![cfg(not(madsim))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_core::protocol::client_requests::{
    pull_message, pulled_records, send_message, OutgoingMessage, PullRequest,
};
use keel_core::protocol::headers::{CommandHeader, PullMessageResponseHeader, SendMessageResponseHeader};
use keel_core::protocol::ResponseCode;
use support::{scratch_dir, Client, ServerProcess};

/// fileReservedTime: 0.005 h = 18 s, longer than filling the disk takes.
const RESERVED: Duration = Duration::from_millis(18_000);
/// Bytes a second the test writes: a space check every 200 ms sees 1.6 MB go by, well
/// inside the 6 MB between the warning level and a full disk.
const RATE: f64 = 8.0e6;
const BODY: usize = 4096;

/// A tmpfs mounted for the test's life.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a {size} tmpfs at {} failed: this test needs root", at.display());
        Self(at.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn body(i: u32) -> Bytes {
    let mut body = format!("message-{i:06}-").into_bytes();
    body.resize(BODY, b'0' + u8::try_from(i % 10).unwrap());
    Bytes::from(body)
}

fn send(client: &mut Client, i: u32) -> (ResponseCode, Option<String>, i64) {
    let message = OutgoingMessage { topic: "Fill".into(), body: body(i), ..OutgoingMessage::default() };
    let reply = client.call(&send_message(i32::try_from(i).unwrap() + 1, "pg", 0, &message));
    let offset = SendMessageResponseHeader::decode(&reply.ext_fields).map_or(-1, |h| h.queue_offset);
    (reply.response_code(), reply.remark, offset)
}

/// Every message of Fill/0 from its minimum: (the highest minimum seen, [(queue offset,
/// body)]). Segments may expire while it reads, moving the minimum past what it has not
/// read yet.
fn read_all(client: &mut Client) -> (i64, Vec<(i64, Bytes)>) {
    let mut offset = 0;
    let mut min = None;
    let mut got = Vec::new();
    for opaque in 1_000_000.. {
        let request = PullRequest {
            group: "cg".into(),
            topic: "Fill".into(),
            queue_id: 0,
            offset,
            max_messages: 32,
            expression: "*".into(),
            suspend_ms: 0,
        };
        let reply = client.call(&pull_message(opaque, &request));
        let header = PullMessageResponseHeader::decode(&reply.ext_fields).unwrap();
        min = Some(min.map_or(header.min_offset, |m: i64| m.max(header.min_offset)));
        match reply.response_code() {
            ResponseCode::SUCCESS => {
                for record in pulled_records(&reply.body).unwrap() {
                    got.push((record.head().queue_offset, Bytes::copy_from_slice(record.record.body)));
                }
                offset = header.next_begin_offset;
            }
            ResponseCode::PULL_OFFSET_MOVED => offset = header.next_begin_offset,
            _ => break,
        }
    }
    (min.unwrap_or(0), got)
}

#[test]
fn a_full_file_system_refuses_writes_then_expired_segments_go_and_writes_resume() {
    let dir = scratch_dir("full-disk");
    let fs = SmallFs::mount(&dir.join("fs"), "64m");
    let conf = dir.join("broker.conf");
    let hours: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
    // A small index: RocketMQ's default slots alone (20 MB, touched all over by random keys)
    // would take a third of this file system.
    std::fs::write(
        &conf,
        format!(
            "listenPort=0\nstorePathRootDir={}\ndiskMaxUsedSpaceRatio=75\ndiskSpaceCleanForciblyRatio=85\ndiskSpaceWarningLevelRatio=90\nmappedFileSizeCommitLog=1048576\nmappedFileSizeConsumeQueue=20000\ndefaultTopicQueueNums=1\nfileReservedTime=0.005\ndeleteWhen={}\ncleanFileForciblyEnable=false\ncleanResourceInterval=200\nmaxHashSlotNum=4096\nmaxIndexNum=100000\n",
            fs.0.join("store").display(),
            hours.join(";")
        ),
    )
    .unwrap();
    let mut server = ServerProcess::start(env!("CARGO_BIN_EXE_mqbroker"), &["-c", conf.to_str().unwrap()]);
    let mut client = Client::connect(server.addr_in_boot_line(0));

    // Fill it at RATE until refused.
    let mut acked: Vec<(u32, i64, Instant)> = Vec::new();
    let started = Instant::now();
    let refused_at = loop {
        let i = u32::try_from(acked.len()).unwrap();
        let (code, remark, offset) = send(&mut client, i);
        if code == ResponseCode::SUCCESS {
            acked.push((i, offset, Instant::now()));
            let due = Duration::from_secs_f64(acked.len() as f64 * BODY as f64 / RATE);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
            continue;
        }
        assert_eq!(code, ResponseCode::SERVICE_NOT_AVAILABLE, "{remark:?}");
        assert!(remark.as_deref().unwrap_or("").contains("disk full"), "{remark:?}");
        break Instant::now();
    };
    assert!(acked.len() > 10_000, "refused after only {} messages", acked.len());
    assert!(started.elapsed() < RESERVED, "the disk filled only after segments began to expire");
    // Pulls are served while writes are refused.
    let (_, readable) = read_all(&mut client);
    assert!(!readable.is_empty());

    // The oldest segments expire and go; writes resume with no restart.
    loop {
        let (code, _, _) = send(&mut client, 900_000);
        if code == ResponseCode::SUCCESS {
            break;
        }
        assert!(refused_at.elapsed() < RESERVED + Duration::from_secs(15), "writes never resumed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.is_running(), "the broker stopped");

    // Every acknowledged message inside the horizon reads back, and whatever reads back is
    // what was acknowledged at its offset.
    let (min, readable) = read_all(&mut client);
    let read_at = Instant::now();
    assert!(min > 0, "nothing was deleted");
    let by_offset: std::collections::BTreeMap<i64, Bytes> = readable.into_iter().collect();
    for (i, offset, at) in &acked {
        match by_offset.get(offset) {
            Some(got) => assert_eq!(got, &body(*i), "offset {offset}"),
            None => assert!(
                *offset < min && read_at.duration_since(*at) >= RESERVED,
                "message {i} at {offset}, acknowledged {:?} before the read-back, is gone (min {min})",
                read_at.duration_since(*at)
            ),
        }
    }
    let (clean, stderr) = server.terminate();
    assert!(clean, "{stderr}");
    assert!(stderr.contains("disk full"), "no disk-full line in the log:\n{stderr}");
    assert!(!stderr.contains("message-0"), "a message body reached the log");
}
