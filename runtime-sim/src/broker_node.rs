//! A broker on a [`SimDisk`], driven by hand: connections are byte streams the test writes
//! and reads, disk operations are carried out when the test says, time moves when the test
//! says. The tier-1 harness for deterministic broker scenarios (no madsim, no async).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use keel_core::broker::{Broker, BrokerConfig};
use keel_core::io::{
    CloseReason, ConnId, ConnKind, DiskError, FilePath, Input, Machine, MonoNanos, Now, Output, StoreRead,
    UnixMillis,
};
use keel_core::protocol::frame::{encode_to_bytes, FrameDecoder};
use keel_core::protocol::RemotingCommand;
use keel_core::store::{RecoveryError, RecoveryReport, Store};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::disk_queue::DiskQueue;
use crate::sim_disk::SimDisk;

/// A [`SimDisk`] shared between the harness (which carries operations out) and the broker
/// (which reads through it).
#[derive(Debug, Clone, Default)]
pub struct SharedDisk(Arc<Mutex<SimDisk>>);

impl SharedDisk {
    /// Share `disk`.
    #[must_use]
    pub fn new(disk: SimDisk) -> Self {
        Self(Arc::new(Mutex::new(disk)))
    }

    /// Run `f` on the disk.
    pub fn with<R>(&self, f: impl FnOnce(&mut SimDisk) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl StoreRead for SharedDisk {
    fn read_at(&self, file: &FilePath, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        self.with(|d| d.read_at(file, offset, buf))
    }

    fn len(&self, file: &FilePath) -> Result<Option<u64>, DiskError> {
        self.with(|d| d.len(file))
    }

    fn list(&self, dir: &FilePath) -> Result<Vec<String>, DiskError> {
        self.with(|d| d.list(dir))
    }

    fn disk_usage(&self) -> Option<keel_core::io::DiskUsage> {
        self.with(|d| d.disk_usage())
    }

    fn next_data(&self, file: &FilePath, offset: u64) -> Result<Option<u64>, DiskError> {
        self.with(|d| d.next_data(file, offset))
    }
}

/// What one connection received from the broker.
#[derive(Debug)]
pub struct Peer {
    decoder: FrameDecoder,
    /// Bytes the broker sent it (a linked connection gets commands, never bytes).
    pub bytes: usize,
    /// Commands decoded from what the broker sent, not yet taken.
    pub inbox: Vec<RemotingCommand>,
    /// Why the broker closed it, if it did.
    pub closed: Option<CloseReason>,
}

/// A broker, its disk, and everything it emitted that the test has not consumed.
#[derive(Debug)]
pub struct BrokerNode {
    /// The disk; it outlives restarts.
    pub disk: SharedDisk,
    /// Disk operations emitted, not yet carried out.
    pub queue: DiskQueue,
    /// The broker.
    pub broker: Broker,
    /// The time passed to the broker.
    pub now: Now,
    /// Connections by id, with what they received.
    pub peers: BTreeMap<ConnId, Peer>,
    /// Replication connections (slaves on the replication port), with the raw bytes the
    /// broker sent each and whether it closed it.
    pub slaves: BTreeMap<ConnId, (Vec<u8>, Option<CloseReason>)>,
    /// Outbound connections the broker asked for, not yet answered, with what each carries.
    pub dials: Vec<(ConnId, SocketAddr, ConnKind)>,
    /// Fatal stops the broker emitted.
    pub fatal: Vec<String>,
    config: BrokerConfig,
    rng: ChaCha8Rng,
}

impl BrokerNode {
    /// Recover the store on `disk`, start a broker over it and carry out its boot operations.
    pub fn boot(
        config: BrokerConfig,
        disk: SharedDisk,
        now: Now,
    ) -> Result<(Self, RecoveryReport), RecoveryError> {
        let (mut node, report) = Self::start(config, disk, now)?;
        node.run_all();
        Ok((node, report))
    }

    /// Recover the store on `disk` and start a broker over it, leaving its boot operations
    /// queued (the store is not ready until they are carried out).
    pub fn start(
        config: BrokerConfig,
        disk: SharedDisk,
        now: Now,
    ) -> Result<(Self, RecoveryReport), RecoveryError> {
        let (store, report) = disk.with(|d| Store::recover(config.store.clone(), &*d, now))?;
        let broker = Broker::new(config.clone(), store, Box::new(disk.clone()), now);
        let mut node = Self {
            disk,
            queue: DiskQueue::new(),
            broker,
            now,
            peers: BTreeMap::new(),
            slaves: BTreeMap::new(),
            dials: Vec::new(),
            fatal: Vec::new(),
            config,
            rng: ChaCha8Rng::seed_from_u64(0),
        };
        node.pump();
        Ok((node, report))
    }

    /// The configuration it was booted with.
    #[must_use]
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Feed one input, then collect the outputs.
    pub fn handle(&mut self, input: Input) {
        self.broker.handle(self.now, input);
        self.pump();
    }

    /// Sort the broker's outputs: bytes to their peers, disk operations to the queue.
    pub fn pump(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Send { conn, data } => {
                    if let Some((received, _)) = self.slaves.get_mut(&conn) {
                        received.extend_from_slice(&data);
                    } else if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.bytes += data.len();
                        peer.decoder.push(&data);
                        while let Some(Ok(cmd)) = peer.decoder.next_frame() {
                            peer.inbox.push(cmd);
                        }
                    }
                }
                Output::Command { conn, command } => {
                    if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.inbox.push(command);
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some((_, closed)) = self.slaves.get_mut(&conn) {
                        *closed = Some(reason);
                    } else if let Some(peer) = self.peers.get_mut(&conn) {
                        peer.closed = Some(reason);
                    }
                }
                Output::Connect { conn, addr, kind } => self.dials.push((conn, addr, kind)),
                Output::Disk { io, op } => self.queue.push(io, op),
                Output::Fatal { reason } => self.fatal.push(reason),
            }
        }
    }

    /// Open a connection (inbound, or an outbound one the broker dialled).
    pub fn open(&mut self, conn: ConnId, peer: SocketAddr) {
        self.peers.insert(
            conn,
            Peer { decoder: FrameDecoder::new(usize::MAX), bytes: 0, inbox: Vec::new(), closed: None },
        );
        self.handle(Input::ConnOpened { conn, peer, kind: ConnKind::Remoting });
    }

    /// A replication connection opens: a slave's on the replication port, or the one a
    /// slave dialled to its master. Its bytes are kept raw in [`slaves`](Self::slaves).
    pub fn open_replication(&mut self, conn: ConnId, peer: SocketAddr) {
        self.slaves.insert(conn, (Vec::new(), None));
        self.handle(Input::ConnOpened { conn, peer, kind: ConnKind::Replication });
    }

    /// The peer closed its connection.
    pub fn close(&mut self, conn: ConnId) {
        self.peers.remove(&conn);
        self.handle(Input::ConnClosed { conn });
    }

    /// Write raw bytes on a connection.
    pub fn write(&mut self, conn: ConnId, data: &[u8]) {
        self.handle(Input::Bytes { conn, data: Bytes::copy_from_slice(data), received: self.now.mono });
    }

    /// Send a command on a connection: as a frame, or as the command itself on a
    /// connection linked in process ([`ConnId::is_linked`]), as a gRPC session sends.
    pub fn send(&mut self, conn: ConnId, cmd: &RemotingCommand) {
        if conn.is_linked() {
            self.handle(Input::Command { conn, command: cmd.clone(), received: self.now.mono });
        } else {
            self.write(conn, &encode_to_bytes(cmd));
        }
    }

    /// Send a command that the runtime read `waited_ms` ago (it waited in line since).
    pub fn send_read_earlier(&mut self, conn: ConnId, cmd: &RemotingCommand, waited_ms: u64) {
        let received = MonoNanos(self.now.mono.0.saturating_sub(waited_ms * 1_000_000));
        self.handle(Input::Bytes { conn, data: encode_to_bytes(cmd), received });
    }

    /// Send a request, carry out the disk work, and return the reply with its opaque.
    ///
    /// # Panics
    /// If no reply arrives (a test failure).
    pub fn call(&mut self, conn: ConnId, cmd: &RemotingCommand) -> RemotingCommand {
        self.send(conn, cmd);
        self.run_all();
        self.take_reply(conn, cmd.opaque).unwrap_or_else(|| panic!("no reply to {:?}", cmd.request_code()))
    }

    /// Take the reply to `opaque` from a connection's inbox, if it arrived.
    pub fn take_reply(&mut self, conn: ConnId, opaque: i32) -> Option<RemotingCommand> {
        let inbox = &mut self.peers.get_mut(&conn)?.inbox;
        let at = inbox.iter().position(|c| c.is_response() && c.opaque == opaque)?;
        Some(inbox.remove(at))
    }

    /// Carry out up to `count` queued disk operations, feeding completions back.
    pub fn run(&mut self, count: usize) {
        self.pump();
        for _ in 0..count {
            let rng = &mut self.rng;
            let queue = &mut self.queue;
            let Some((io, result)) = self.disk.with(|d| queue.run_one(d, rng)) else { return };
            self.handle(Input::DiskDone { io, result });
        }
    }

    /// Carry out everything until the broker is quiet.
    pub fn run_all(&mut self) {
        self.pump();
        while !self.queue.is_empty() {
            self.run(usize::MAX);
        }
    }

    /// Move time forward by `ms`, firing the broker's deadlines on the way, and carry out
    /// the disk work they cause.
    pub fn advance(&mut self, ms: u64) {
        let until = self.now.mono.plus_millis(ms);
        loop {
            let next = self.broker.poll_timeout().filter(|at| *at <= until);
            let at = next.unwrap_or(until);
            let step = at.0.saturating_sub(self.now.mono.0);
            self.now = Now {
                mono: MonoNanos(at.0.max(self.now.mono.0)),
                wall: UnixMillis(self.now.wall.0 + i64::try_from(step / 1_000_000).unwrap_or(0)),
            };
            if next.is_none() {
                break;
            }
            self.handle(Input::Timeout);
            self.run_all();
        }
    }

    /// Shut down cleanly and hand back the disk.
    ///
    /// # Panics
    /// If the shutdown does not finish (a test failure).
    #[must_use]
    pub fn shutdown(mut self) -> SharedDisk {
        self.broker.begin_shutdown();
        self.run_all();
        assert!(self.broker.is_stopped(), "shutdown did not finish");
        self.disk
    }

    /// Kill the process: queued operations are lost, the page cache is kept.
    #[must_use]
    pub fn kill(self) -> SharedDisk {
        self.disk
    }
}
