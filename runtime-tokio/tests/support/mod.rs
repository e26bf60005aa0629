//! Processes of the built binaries and a blocking remoting client, for the tests that run
//! them on loopback.
#![allow(dead_code)] // each test binary uses its own part

#[cfg(not(madsim))]
pub mod grpc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_core::protocol::{encode_to_bytes, FrameDecoder, RemotingCommand, DEFAULT_MAX_FRAME_LEN};

/// A running binary: its first stdout line (the boot line) read, its stderr collected.
pub struct ServerProcess {
    pub child: Child,
    pub boot_line: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ServerProcess {
    /// Start `binary` with `args` and wait for its boot line. A broker is given
    /// [`HOST_DISK_KEYS`] unless its broker.conf sets the warning level itself.
    pub fn start(binary: &str, args: &[&str]) -> Self {
        let args = with_host_disk_keys(binary, args);
        let mut child =
            Command::new(binary).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut boot_line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut boot_line).unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self { child, boot_line, stderr: Some(stderr) }
    }

    /// The loopback address of the `index`-th `host:port` in the boot line.
    pub fn addr_in_boot_line(&self, index: usize) -> SocketAddr {
        let ports: Vec<u16> = self
            .boot_line
            .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .filter_map(|word| word.strip_prefix("127.0.0.1:").or_else(|| word.strip_prefix("0.0.0.0:")))
            .filter_map(|port| port.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .collect();
        SocketAddr::from(([127, 0, 0, 1], ports[index]))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, wait, and return whether it exited successfully and its stderr.
    pub fn terminate(&mut self) -> (bool, String) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        (exit.success(), self.stderr.take().unwrap().join().unwrap())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// `keel` (name server and broker in one process) on free ports with its data in
    /// `data`, reading `conf` as its broker.conf if given.
    pub fn keel(binary: &str, data: &std::path::Path, conf: Option<&std::path::Path>) -> Self {
        let mut args =
            vec!["--data-dir", data.to_str().unwrap(), "--namesrv-port", "0", "--broker-port", "0"];
        if let Some(conf) = conf {
            args.extend(["-c", conf.to_str().unwrap()]);
        }
        Self::start(binary, &args)
    }
}

/// Disk-space keys for every broker a test starts: the store lives on the host's file
/// system, shared with whatever else runs there (a CI machine's may be 90% full), and its
/// fullness must neither refuse the test's writes nor retire the test's segments. Only a
/// file system that is wholly full refuses them. A test about disk space sets its own
/// `diskSpaceWarningLevelRatio` on a file system of its own (`full_disk.rs`).
pub const HOST_DISK_KEYS: &str =
    "diskMaxUsedSpaceRatio=100\ndiskSpaceCleanForciblyRatio=100\ndiskSpaceWarningLevelRatio=100\n";

/// `args` for `binary`, a broker's with [`HOST_DISK_KEYS`] added: appended to the
/// broker.conf given with `-c` unless it sets the warning level, or else in a broker.conf
/// written next to `keel`'s `--data-dir`.
fn with_host_disk_keys(binary: &str, args: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let name = std::path::Path::new(binary).file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name != "keel" && name != "mqbroker" {
        return args;
    }
    let value_of = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    if let Some(conf) = value_of("-c") {
        let text = std::fs::read_to_string(&conf).unwrap_or_default();
        if !text.contains("diskSpaceWarningLevelRatio") {
            let separator = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
            std::fs::write(&conf, format!("{text}{separator}{HOST_DISK_KEYS}")).unwrap();
        }
    } else if let Some(data) = value_of("--data-dir") {
        let conf = format!("{}.host-disk.conf", data.trim_end_matches('/'));
        std::fs::write(&conf, HOST_DISK_KEYS).unwrap();
        args.extend(["-c".to_owned(), conf]);
    }
    args
}

/// `GET path` over HTTP/1.1: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A fresh scratch directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A blocking remoting client.
pub struct Client {
    pub stream: TcpStream,
    decoder: FrameDecoder,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::try_connect(addr).unwrap()
    }

    /// A client, or the error of a refused connection (a server that is down).
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self { stream, decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_LEN) })
    }

    /// Send a request and wait for the reply with its opaque.
    pub fn call(&mut self, request: &RemotingCommand) -> RemotingCommand {
        self.stream.write_all(&encode_to_bytes(request)).unwrap();
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                let frame = frame.unwrap();
                if frame.is_response() && frame.opaque == request.opaque {
                    return frame;
                }
                continue;
            }
            let mut buf = [0u8; 65536];
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            self.decoder.push(&buf[..n]);
        }
    }

    /// The next request the server pushes on this connection (replies are skipped).
    pub fn next_request(&mut self) -> RemotingCommand {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                let frame = frame.unwrap();
                if !frame.is_response() {
                    return frame;
                }
                continue;
            }
            let mut buf = [0u8; 65536];
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed while waiting for a request");
            self.decoder.push(&buf[..n]);
        }
    }

    /// Send raw bytes; true if the server then closed the connection.
    pub fn send_raw_and_expect_close(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).unwrap();
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}

/// Byte streams no RocketMQ peer sends, each of which must close its connection.
pub fn hostile_streams() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("oversized frame", [&2_000_000_000u32.to_be_bytes()[..], &[0u8; 8]].concat()),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("invalid JSON header", [&13u32.to_be_bytes()[..], &9u32.to_be_bytes(), b"{not json"].concat()),
        ("header longer than its frame", [&8u32.to_be_bytes()[..], &100u32.to_be_bytes(), b"abcd"].concat()),
        ("unknown serialize type", [&4u32.to_be_bytes()[..], &0x0500_0000u32.to_be_bytes()].concat()),
        (
            "JSON header of the wrong shape",
            [&11u32.to_be_bytes()[..], &7u32.to_be_bytes(), b"[1,2,3]"].concat(),
        ),
    ]
}
