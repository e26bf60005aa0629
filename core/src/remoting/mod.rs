//! Connections as a state machine sees them: a frame decoder per connection, the peer's
//! address, and replies encoded into `Output::Send`. Shared by the name server and the
//! broker, so both treat a malformed stream the same way: the connection is closed with a
//! logged reason and nothing else is touched.

use std::collections::{BTreeMap, VecDeque};

use core::net::SocketAddr;

use crate::io::{CloseReason, ConnId, Output};
use crate::protocol::{encode_to_bytes, FrameDecoder, RemotingCommand, ResponseCode};

/// One open connection.
#[derive(Debug)]
pub struct Connection {
    /// The peer's address.
    pub peer: SocketAddr,
    decoder: FrameDecoder,
}

/// What a chunk of bytes from a connection turned into.
#[derive(Debug)]
pub enum Received {
    /// A complete command.
    Command(RemotingCommand),
    /// The stream is broken: the connection has been closed and forgotten.
    Closed(CloseReason),
}

/// Every open connection.
#[derive(Debug)]
pub struct ConnectionTable {
    conns: BTreeMap<ConnId, Connection>,
    max_frame_len: usize,
    max_connections: usize,
}

impl ConnectionTable {
    /// A table accepting at most `max_connections`, refusing frames over `max_frame_len`.
    #[must_use]
    pub fn new(max_frame_len: usize, max_connections: usize) -> Self {
        Self { conns: BTreeMap::new(), max_frame_len, max_connections }
    }

    /// Track a new connection; `false` (and a `Close` queued) if the table is full.
    pub fn open(&mut self, conn: ConnId, peer: SocketAddr, out: &mut VecDeque<Output>) -> bool {
        if self.conns.len() >= self.max_connections {
            tracing::warn!(?conn, %peer, limit = self.max_connections, "refusing connection: too many open");
            out.push_back(Output::Close { conn, reason: CloseReason("too many connections".into()) });
            return false;
        }
        self.conns.insert(conn, Connection { peer, decoder: FrameDecoder::new(self.max_frame_len) });
        true
    }

    /// Forget a connection (it closed, or we closed it).
    pub fn close(&mut self, conn: ConnId) -> Option<Connection> {
        self.conns.remove(&conn)
    }

    /// The connection, if open.
    #[must_use]
    pub fn get(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(&conn)
    }

    /// Open connections.
    #[must_use]
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none are open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Take a whole command passed in process on `conn` (`Input::Command`): received as
    /// if decoded from a frame, if the connection is open.
    #[must_use]
    pub fn take_command(&self, conn: ConnId, command: RemotingCommand) -> Option<Received> {
        self.conns.contains_key(&conn).then_some(Received::Command(command))
    }

    /// Feed bytes from `conn`; returns the complete commands, then, if the stream broke, a
    /// `Closed` (the connection is then closed: a `Close` is queued and it is forgotten).
    pub fn feed(&mut self, conn: ConnId, data: &[u8], out: &mut VecDeque<Output>) -> Vec<Received> {
        let mut received = Vec::new();
        let Some(connection) = self.conns.get_mut(&conn) else { return received };
        connection.decoder.push(data);
        while let Some(frame) = connection.decoder.next_frame() {
            match frame {
                Ok(cmd) => received.push(Received::Command(cmd)),
                Err(error) => {
                    let reason = CloseReason(format!("malformed stream: {error}"));
                    tracing::warn!(?conn, peer = %connection.peer, %error, "closing connection");
                    out.push_back(Output::Close { conn, reason: reason.clone() });
                    received.push(Received::Closed(reason));
                    self.conns.remove(&conn);
                    break;
                }
            }
        }
        received
    }
}

/// Queue `cmd` for `conn`: as a frame, or as the command itself on a connection linked in
/// process.
pub fn send(out: &mut VecDeque<Output>, conn: ConnId, cmd: &RemotingCommand) {
    if conn.is_linked() {
        out.push_back(Output::Command { conn, command: cmd.clone() });
    } else {
        out.push_back(Output::Send { conn, data: encode_to_bytes(cmd) });
    }
}

/// Answer `request` on `conn` unless it is oneway.
pub fn reply(
    out: &mut VecDeque<Output>,
    conn: ConnId,
    request: &RemotingCommand,
    response: &RemotingCommand,
) {
    if !request.is_oneway() {
        send(out, conn, response);
    }
}

/// The answer to a request code this server does not handle.
#[must_use]
pub fn not_supported(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(
        request,
        ResponseCode::REQUEST_CODE_NOT_SUPPORTED,
        Some(format!(" request type {} not supported", request.code)),
    )
}
