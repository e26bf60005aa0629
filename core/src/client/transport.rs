//! A client's side of the wire: one outbound connection per server address, dialled on
//! first use, and calls matched to their responses by opaque, each with a deadline. A call
//! ends exactly once: with its response, on its deadline, or when its connection closes.
//! Frames for a connection still being dialled wait in a bounded queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use core::net::SocketAddr;

use crate::io::{CloseReason, ConnId, MonoNanos, Output};
use crate::protocol::{encode_to_bytes, FrameDecoder, RemotingCommand, DEFAULT_MAX_FRAME_LEN, FLAG_ONEWAY};

/// Frames queued for a connection that is still being dialled; beyond it calls fail.
const MAX_QUEUED_FRAMES: usize = 10_000;

/// Why a call ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// No response before the deadline.
    Timeout,
    /// The connection closed (or could not be opened) first.
    Closed,
    /// Too many frames waiting for the connection to open.
    Busy,
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out",
            Self::Closed => "connection closed",
            Self::Busy => "too many requests waiting for a connection",
        })
    }
}

#[derive(Debug)]
struct Link {
    addr: SocketAddr,
    open: bool,
    decoder: FrameDecoder,
    queued: VecDeque<Bytes>,
}

#[derive(Debug)]
struct Call<K> {
    tag: K,
    deadline: MonoNanos,
}

/// What arrived on a connection.
#[derive(Debug)]
pub enum Arrived<K> {
    /// The response to a call.
    Response(K, RemotingCommand),
    /// A request from the server (NOTIFY_CONSUMER_IDS_CHANGED, …), on this connection.
    Request(ConnId, RemotingCommand),
    /// A call that ended without its response.
    Failed(K, CallError),
}

/// Outbound connections and the calls on them; `K` is the caller's tag for a call.
#[derive(Debug)]
pub struct Transport<K> {
    by_addr: BTreeMap<SocketAddr, ConnId>,
    links: BTreeMap<ConnId, Link>,
    calls: BTreeMap<(ConnId, i32), Call<K>>,
    deadlines: BTreeSet<(MonoNanos, ConnId, i32)>,
    next_conn: u64,
    next_opaque: i32,
}

impl<K> Default for Transport<K> {
    fn default() -> Self {
        Self {
            by_addr: BTreeMap::new(),
            links: BTreeMap::new(),
            calls: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_conn: ConnId::OUTBOUND,
            next_opaque: 0,
        }
    }
}

impl<K> Transport<K> {
    /// The connection to `addr`, dialled if there is none.
    fn link(&mut self, addr: SocketAddr, out: &mut VecDeque<Output>) -> ConnId {
        if let Some(conn) = self.by_addr.get(&addr) {
            return *conn;
        }
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.by_addr.insert(addr, conn);
        self.links.insert(
            conn,
            Link {
                addr,
                open: false,
                decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_LEN),
                queued: VecDeque::new(),
            },
        );
        out.push_back(Output::Connect { conn, addr, kind: crate::io::ConnKind::Remoting });
        conn
    }

    fn transmit(&mut self, conn: ConnId, data: Bytes, out: &mut VecDeque<Output>) -> Result<(), CallError> {
        let Some(link) = self.links.get_mut(&conn) else { return Err(CallError::Closed) };
        if link.open {
            out.push_back(Output::Send { conn, data });
        } else if link.queued.len() < MAX_QUEUED_FRAMES {
            link.queued.push_back(data);
        } else {
            return Err(CallError::Busy);
        }
        Ok(())
    }

    fn opaque(&mut self) -> i32 {
        self.next_opaque = self.next_opaque.wrapping_add(1).max(1);
        self.next_opaque
    }

    /// Send `request` to `addr` and expect a response by `deadline`; `Err` if it cannot
    /// even be queued.
    pub fn call(
        &mut self,
        addr: SocketAddr,
        mut request: RemotingCommand,
        deadline: MonoNanos,
        tag: K,
        out: &mut VecDeque<Output>,
    ) -> Result<(), (K, CallError)> {
        let conn = self.link(addr, out);
        request.opaque = self.opaque();
        request.flag &= !FLAG_ONEWAY;
        if let Err(error) = self.transmit(conn, encode_to_bytes(&request), out) {
            return Err((tag, error));
        }
        self.calls.insert((conn, request.opaque), Call { tag, deadline });
        self.deadlines.insert((deadline, conn, request.opaque));
        Ok(())
    }

    /// Send `request` to `addr` without expecting a response.
    pub fn oneway(&mut self, addr: SocketAddr, mut request: RemotingCommand, out: &mut VecDeque<Output>) {
        let conn = self.link(addr, out);
        request.opaque = self.opaque();
        request.flag |= FLAG_ONEWAY;
        if self.transmit(conn, encode_to_bytes(&request), out).is_err() {
            tracing::debug!(%addr, "oneway request dropped: connection busy or gone");
        }
    }

    /// Answer a server's request on the connection it came on.
    pub fn reply(&mut self, conn: ConnId, response: &RemotingCommand, out: &mut VecDeque<Output>) {
        let _ = self.transmit(conn, encode_to_bytes(response), out);
    }

    /// A dial succeeded: send what waited for it.
    pub fn opened(&mut self, conn: ConnId, out: &mut VecDeque<Output>) {
        let Some(link) = self.links.get_mut(&conn) else { return };
        link.open = true;
        for data in link.queued.drain(..) {
            out.push_back(Output::Send { conn, data });
        }
    }

    /// A connection closed (or its dial failed): every call on it fails.
    pub fn closed(&mut self, conn: ConnId) -> Vec<Arrived<K>> {
        let Some(link) = self.links.remove(&conn) else { return Vec::new() };
        self.by_addr.remove(&link.addr);
        let keys: Vec<(ConnId, i32)> =
            self.calls.range((conn, i32::MIN)..=(conn, i32::MAX)).map(|(k, _)| *k).collect();
        keys.into_iter()
            .filter_map(|key| {
                let call = self.calls.remove(&key)?;
                self.deadlines.remove(&(call.deadline, key.0, key.1));
                Some(Arrived::Failed(call.tag, CallError::Closed))
            })
            .collect()
    }

    /// Bytes from `conn`: responses matched to their calls, requests from the server, and,
    /// if the stream is malformed, the connection closed and its calls failed.
    pub fn feed(&mut self, conn: ConnId, data: &[u8], out: &mut VecDeque<Output>) -> Vec<Arrived<K>> {
        let mut arrived = Vec::new();
        let Some(link) = self.links.get_mut(&conn) else { return arrived };
        link.decoder.push(data);
        let mut broken = None;
        let mut frames = Vec::new();
        while let Some(frame) = link.decoder.next_frame() {
            match frame {
                Ok(cmd) => frames.push(cmd),
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        for cmd in frames {
            if !cmd.is_response() {
                arrived.push(Arrived::Request(conn, cmd));
                continue;
            }
            match self.calls.remove(&(conn, cmd.opaque)) {
                Some(call) => {
                    self.deadlines.remove(&(call.deadline, conn, cmd.opaque));
                    arrived.push(Arrived::Response(call.tag, cmd));
                }
                // A response after its deadline: the call already failed.
                None => tracing::debug!(?conn, opaque = cmd.opaque, "late or unknown response dropped"),
            }
        }
        if let Some(error) = broken {
            tracing::warn!(?conn, %error, "closing connection: malformed stream from server");
            out.push_back(Output::Close { conn, reason: CloseReason(format!("malformed stream: {error}")) });
            arrived.extend(self.closed(conn));
        }
        arrived
    }

    /// Calls whose deadline passed.
    pub fn expire(&mut self, now: MonoNanos) -> Vec<Arrived<K>> {
        let mut failed = Vec::new();
        while let Some(&(deadline, conn, opaque)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(call) = self.calls.remove(&(conn, opaque)) {
                failed.push(Arrived::Failed(call.tag, CallError::Timeout));
            }
        }
        failed
    }

    /// The earliest call deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<MonoNanos> {
        self.deadlines.first().map(|(at, _, _)| *at)
    }

    /// Calls waiting for a response.
    #[must_use]
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// The address of an open or dialling connection.
    #[must_use]
    pub fn addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.links.get(&conn).map(|l| l.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ExtFields, RequestCode, ResponseCode};

    fn request() -> RemotingCommand {
        RemotingCommand::request(RequestCode::HEART_BEAT, 0, ExtFields::default())
    }

    fn sent(out: &mut VecDeque<Output>) -> Vec<RemotingCommand> {
        out.drain(..)
            .filter_map(|o| match o {
                Output::Send { data, .. } => crate::protocol::decode_one(&data, DEFAULT_MAX_FRAME_LEN).ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_call_waits_for_its_connection_then_ends_with_its_response() {
        let mut transport: Transport<&str> = Transport::default();
        let mut out = VecDeque::new();
        let addr: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        transport.call(addr, request(), MonoNanos(100), "hb", &mut out).unwrap();
        let Some(Output::Connect { conn, .. }) = out.pop_front() else { panic!("expected a dial") };
        assert!(out.is_empty(), "nothing is sent before the connection opens");
        transport.opened(conn, &mut out);
        let requests = sent(&mut out);
        assert_eq!(requests.len(), 1);
        let response = RemotingCommand::response_to(&requests[0], ResponseCode::SUCCESS, None);
        let arrived = transport.feed(conn, &encode_to_bytes(&response), &mut out);
        assert!(
            matches!(arrived.as_slice(), [Arrived::Response("hb", r)] if r.response_code() == ResponseCode::SUCCESS)
        );
        assert!(transport.expire(MonoNanos(1_000)).is_empty(), "an answered call cannot also time out");
    }

    #[test]
    fn calls_fail_once_on_deadline_or_close_and_a_late_response_is_dropped() {
        let mut transport: Transport<u32> = Transport::default();
        let mut out = VecDeque::new();
        let addr: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        transport.call(addr, request(), MonoNanos(100), 1, &mut out).unwrap();
        transport.call(addr, request(), MonoNanos(200), 2, &mut out).unwrap();
        let Some(Output::Connect { conn, .. }) = out.pop_front() else { panic!("expected a dial") };
        transport.opened(conn, &mut out);
        let requests = sent(&mut out);
        assert!(matches!(
            transport.expire(MonoNanos(150)).as_slice(),
            [Arrived::Failed(1, CallError::Timeout)]
        ));
        let late = RemotingCommand::response_to(&requests[0], ResponseCode::SUCCESS, None);
        assert!(transport.feed(conn, &encode_to_bytes(&late), &mut out).is_empty());
        assert!(matches!(transport.closed(conn).as_slice(), [Arrived::Failed(2, CallError::Closed)]));
        assert_eq!(transport.calls_in_flight(), 0);
        // The next call dials again.
        transport.call(addr, request(), MonoNanos(300), 3, &mut out).unwrap();
        assert!(matches!(out.pop_front(), Some(Output::Connect { .. })));
    }

    #[test]
    fn a_server_request_is_handed_up_and_garbage_closes_the_connection() {
        let mut transport: Transport<u32> = Transport::default();
        let mut out = VecDeque::new();
        let addr: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        transport.call(addr, request(), MonoNanos(100), 7, &mut out).unwrap();
        let Some(Output::Connect { conn, .. }) = out.pop_front() else { panic!("expected a dial") };
        transport.opened(conn, &mut out);
        out.clear();
        let notify =
            RemotingCommand::request(RequestCode::NOTIFY_CONSUMER_IDS_CHANGED, 5, ExtFields::default());
        let arrived = transport.feed(conn, &encode_to_bytes(&notify), &mut out);
        assert!(matches!(arrived.as_slice(), [Arrived::Request(c, _)] if *c == conn));
        let arrived = transport.feed(conn, &[0xff; 16], &mut out);
        assert!(matches!(arrived.as_slice(), [Arrived::Failed(7, CallError::Closed)]));
        assert!(matches!(out.pop_front(), Some(Output::Close { .. })));
    }
}
