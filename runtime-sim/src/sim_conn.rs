//! A simulated client's connection to a server, with the network faults madsim's TCP lacks:
//! madsim never resets a stream and delivers each flush whole, so this connection resets
//! itself around requests (before the request, in the middle of it, or after the server
//! got it but before the reply: the unknown outcome that makes producers retry), splits a
//! request over several writes, and coalesces a queued one-way request with the next call.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use keel_core::protocol::{
    encode_to_bytes, FrameDecoder, RemotingCommand, DEFAULT_MAX_FRAME_LEN, FLAG_ONEWAY,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::world::World;

/// How a client's connections misbehave.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConnChaos {
    /// Probability of a reset around one call.
    pub resets: f64,
    /// Probability that a call's request is split over several writes.
    pub split_writes: f64,
    /// Probability that queued one-way requests share a write with the next call.
    pub coalesce_writes: f64,
}

/// Why a call has no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The server could not be reached.
    Connect,
    /// The connection was reset (by the chaos or the peer) before the reply.
    Reset,
    /// No reply within the timeout.
    Timeout,
}

/// One client connection, re-dialled after every failure.
#[derive(Debug)]
pub struct SimConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    decoder: FrameDecoder,
    chaos: ConnChaos,
    world: World,
    next_opaque: i32,
    queued: BytesMut,
}

impl SimConn {
    /// A connection to `addr` (dialled on first use).
    #[must_use]
    pub fn new(addr: SocketAddr, chaos: ConnChaos, world: World) -> Self {
        Self {
            addr,
            stream: None,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_LEN),
            chaos,
            world,
            next_opaque: 0,
            queued: BytesMut::new(),
        }
    }

    /// Point the connection at `addr` (a new route); an open stream elsewhere is dropped.
    pub fn retarget(&mut self, addr: SocketAddr) {
        if addr != self.addr {
            self.addr = addr;
            self.drop_stream();
        }
    }

    fn drop_stream(&mut self) {
        self.stream = None;
        self.decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    }

    async fn connected(&mut self) -> Result<&mut TcpStream, CallError> {
        if self.stream.is_none() {
            let connect = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(self.addr));
            let stream = connect.await.map_err(|_| CallError::Connect)?.map_err(|_| CallError::Connect)?;
            self.stream = Some(stream);
            self.decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        }
        self.stream.as_mut().ok_or(CallError::Connect)
    }

    /// Queue `request` as one-way: it goes out with the next call, or alone now.
    pub async fn oneway(&mut self, mut request: RemotingCommand, rng: &mut ChaCha8Rng) {
        self.next_opaque = self.next_opaque.wrapping_add(1) & i32::MAX;
        request.opaque = self.next_opaque;
        request.flag |= FLAG_ONEWAY;
        self.queued.extend_from_slice(&encode_to_bytes(&request));
        if self.chaos.coalesce_writes == 0.0 || !rng.gen_bool(self.chaos.coalesce_writes) {
            let data = self.queued.split().freeze();
            let _ = self.write(data, rng).await;
        }
    }

    async fn write(&mut self, data: Bytes, rng: &mut ChaCha8Rng) -> Result<(), CallError> {
        let split = self.chaos.split_writes > 0.0 && data.len() > 1 && rng.gen_bool(self.chaos.split_writes);
        let mut cuts = vec![0, data.len()];
        if split {
            for _ in 0..rng.gen_range(1..4) {
                cuts.push(rng.gen_range(1..data.len()));
            }
            cuts.sort_unstable();
            cuts.dedup();
            self.world.bump("split_write");
        }
        let stream = self.connected().await?;
        for pair in cuts.windows(2) {
            let piece = data.slice(pair[0]..pair[1]);
            stream.write_all(&piece).await.map_err(|_| CallError::Reset)?;
            stream.flush().await.map_err(|_| CallError::Reset)?;
            if split {
                tokio::time::sleep(Duration::from_micros(rng.gen_range(1..2_000))).await;
            }
        }
        Ok(())
    }

    /// Send `request` and wait up to `timeout` for its reply.
    pub async fn call(
        &mut self,
        mut request: RemotingCommand,
        timeout: Duration,
        rng: &mut ChaCha8Rng,
    ) -> Result<RemotingCommand, CallError> {
        self.next_opaque = self.next_opaque.wrapping_add(1) & i32::MAX;
        request.opaque = self.next_opaque;
        let frame = encode_to_bytes(&request);
        let reset = self.chaos.resets > 0.0 && rng.gen_bool(self.chaos.resets);
        let mut data = self.queued.split();
        if !data.is_empty() {
            self.world.bump("coalesced_write");
        }
        data.extend_from_slice(&frame);
        let data = data.freeze();
        if reset && rng.gen_bool(0.3) {
            // Reset in the middle of the request: the server sees half a frame, then EOF.
            let cut = rng.gen_range(1..data.len());
            let result = self.write(data.slice(..cut), rng).await;
            self.drop_stream();
            self.world.bump("reset_mid_request");
            result?;
            return Err(CallError::Reset);
        }
        if let Err(error) = self.write(data, rng).await {
            self.drop_stream();
            return Err(error);
        }
        if reset {
            // The server has the request; the reply will find the connection gone.
            tokio::time::sleep(Duration::from_micros(rng.gen_range(1..5_000))).await;
            self.drop_stream();
            self.world.bump("reset_before_reply");
            return Err(CallError::Reset);
        }
        let opaque = request.opaque;
        match tokio::time::timeout(timeout, self.reply(opaque)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => {
                self.drop_stream();
                Err(error)
            }
            Err(_) => {
                self.drop_stream();
                Err(CallError::Timeout)
            }
        }
    }

    async fn reply(&mut self, opaque: i32) -> Result<RemotingCommand, CallError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                match frame {
                    Ok(cmd) if cmd.is_response() && cmd.opaque == opaque => return Ok(cmd),
                    Ok(_) => {}
                    Err(_) => return Err(CallError::Reset),
                }
            }
            let stream = self.stream.as_mut().ok_or(CallError::Reset)?;
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Err(CallError::Reset),
                Ok(n) => self.decoder.push(&buf[..n]),
            }
        }
    }
}
