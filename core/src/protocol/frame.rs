//! Frames: the incremental decoder and the encoder.
//!
//! Layout (big-endian):
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0      | 4    | frame length = 4 + header length + body length (excludes itself) |
//! | 4      | 4    | header info: bits 31..24 serialize type (0 JSON, 1 ROCKETMQ), bits 23..0 header length |
//! | 8      | H    | header (JSON text or ROCKETMQ binary) |
//! | 8 + H  | B    | body, opaque |
//!
//! Bytes arrive in arbitrary chunks: one frame may span many chunks and one chunk may hold
//! many frames. A frame longer than the configured maximum is refused as soon as its length
//! word arrives, before anything is buffered for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::command::RemotingCommand;
use super::{header_binary, header_json, FrameError, SerializeType};

/// RocketMQ's default maximum frame (`com.rocketmq.remoting.frameMaxLength`): 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Decodes frames from a byte stream fed in arbitrary chunks.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_len: usize,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame_len` (the length word's value).
    #[must_use]
    pub fn new(max_frame_len: usize) -> Self {
        Self { buf: BytesMut::new(), max_frame_len, failed: false }
    }

    /// Append bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes held for a frame that is not complete yet.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame: `None` means more bytes are needed; `Some(Err)` means the
    /// stream is broken and the connection must be closed (the decoder stays failed).
    pub fn next_frame(&mut self) -> Option<Result<RemotingCommand, FrameError>> {
        if self.failed {
            return None;
        }
        let result = self.try_next()?;
        if result.is_err() {
            self.failed = true;
            self.buf = BytesMut::new();
        }
        Some(result)
    }

    fn try_next(&mut self) -> Option<Result<RemotingCommand, FrameError>> {
        let length_word = self.buf.get(..4)?;
        let frame_len = i32::from_be_bytes(length_word.try_into().ok()?);
        let frame_len = match usize::try_from(frame_len) {
            Ok(len) if len > self.max_frame_len => {
                return Some(Err(FrameError::TooLong { len, max: self.max_frame_len }))
            }
            Ok(len) if len >= 4 => len,
            _ => return Some(Err(FrameError::BadLength(frame_len))),
        };
        if self.buf.len() < 4 + frame_len {
            // No reservation for the announced length: a peer that announces 16 MiB and
            // sends nothing must not cost 16 MiB. The buffer grows with what arrives.
            return None;
        }
        self.buf.advance(4);
        let frame = self.buf.split_to(frame_len).freeze();
        Some(decode_frame_body(frame))
    }
}

/// Decode everything after the length word: header info, header and body.
fn decode_frame_body(mut frame: Bytes) -> Result<RemotingCommand, FrameError> {
    let info = frame.get_u32();
    // The top byte and the low 24 bits: both fit what they become.
    let type_byte = (info >> 24) as u8;
    let header_len = (info & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(FrameError::BadHeader("header length exceeds the frame"));
    }
    let header = frame.split_to(header_len);
    let mut cmd = match SerializeType::from_code(type_byte) {
        Some(SerializeType::Json) => header_json::decode(&header)?,
        Some(SerializeType::RocketMq) => header_binary::decode(&header)?,
        None => return Err(FrameError::UnknownSerializeType(type_byte)),
    };
    cmd.body = frame;
    Ok(cmd)
}

/// Append `cmd` as one frame to `out`, with its own serialize type (JSON if a binary header
/// cannot carry its code).
pub fn encode_frame(cmd: &RemotingCommand, out: &mut BytesMut) {
    let mut header = Vec::with_capacity(160);
    let mut serialize_type = encode_header(cmd, &mut header);
    if header.len() > MAX_HEADER_LEN {
        // A remark can quote what a peer sent (a topic name in an error), and JSON escapes
        // can make it six times longer than the frame that carried it: cut the remark, the
        // one free-text part, rather than fail the reply.
        if let Some(remark) = &cmd.remark {
            let mut cut = cmd.clone();
            let end = (0..=REMARK_CUT_LEN.min(remark.len())).rev().find(|at| remark.is_char_boundary(*at));
            cut.remark = Some(format!("{}…", remark.get(..end.unwrap_or(0)).unwrap_or_default()));
            header.clear();
            serialize_type = encode_header(&cut, &mut header);
        }
    }
    // What the core sends is built from bounded parts (bodies up to maxMessageSize, pulls
    // up to their byte limit, anything echoed from a request up to the largest frame read):
    // a frame of 4 GiB is a bug, asserted (on in release too), never a wrong length on the
    // wire.
    let frame_len = 4 + header.len() + cmd.body.len();
    let Ok(frame_len_field) = u32::try_from(frame_len) else {
        panic!("a frame of {frame_len} bytes does not fit its 4-byte length");
    };
    // A header has 24 bits for its length; with its remark cut, ours are far below.
    let header_len = match u32::try_from(header.len()) {
        Ok(len) if header.len() <= MAX_HEADER_LEN => len,
        _ => panic!("a header of {} bytes does not fit its 24-bit length", header.len()),
    };
    out.reserve(4 + frame_len);
    out.put_u32(frame_len_field);
    out.put_u32((u32::from(serialize_type.code()) << 24) | header_len);
    out.put_slice(&header);
    out.put_slice(&cmd.body);
}

/// The longest header a frame's 24-bit length field can carry.
const MAX_HEADER_LEN: usize = 0x00FF_FFFF;
/// What is kept of a remark that would not fit a header.
const REMARK_CUT_LEN: usize = 4_096;

/// Encode `cmd`'s header in its own serialize type, or JSON if a binary header cannot
/// carry it; the type used.
fn encode_header(cmd: &RemotingCommand, header: &mut Vec<u8>) -> SerializeType {
    match cmd.serialize_type {
        SerializeType::RocketMq if header_binary::fits(cmd) => {
            header_binary::encode(cmd, header);
            SerializeType::RocketMq
        }
        _ => {
            header_json::encode(cmd, header);
            SerializeType::Json
        }
    }
}

/// `cmd` as one frame.
#[must_use]
pub fn encode_to_bytes(cmd: &RemotingCommand) -> Bytes {
    let mut out = BytesMut::new();
    encode_frame(cmd, &mut out);
    out.freeze()
}

/// Decode exactly one frame from `bytes` (length word included), for tests and tools.
pub fn decode_one(bytes: &[u8], max_frame_len: usize) -> Result<RemotingCommand, FrameError> {
    let mut decoder = FrameDecoder::new(max_frame_len);
    decoder.push(bytes);
    let cmd = decoder.next_frame().unwrap_or(Err(FrameError::Incomplete))?;
    if decoder.buffered() != 0 {
        return Err(FrameError::TrailingBytes(decoder.buffered()));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::protocol::code::RequestCode;
    use crate::protocol::command::ExtFields;

    fn sample(i: i32, serialize_type: SerializeType) -> RemotingCommand {
        let ext: ExtFields = [("topic", format!("T{i}")), ("queueId", i.to_string())].into_iter().collect();
        let mut cmd = RemotingCommand::request(RequestCode::PULL_MESSAGE, i, ext);
        cmd.serialize_type = serialize_type;
        cmd.with_body(vec![u8::try_from(i % 251).unwrap(); usize::try_from(i * 37 % 300).unwrap()])
    }

    #[test]
    fn frames_split_and_coalesced_at_random_points_decode_identically() {
        let commands: Vec<RemotingCommand> = (0..50)
            .map(|i| sample(i, if i % 3 == 0 { SerializeType::RocketMq } else { SerializeType::Json }))
            .collect();
        let mut stream = BytesMut::new();
        for cmd in &commands {
            encode_frame(cmd, &mut stream);
        }
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            let mut decoded = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                // Chunks from one byte to several frames long.
                let longest = if rng.gen_bool(0.5) { 7 } else { 2000 };
                let take = rng.gen_range(1..=rest.len().min(longest));
                let (chunk, tail) = rest.split_at(take);
                rest = tail;
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame() {
                    decoded.push(frame.unwrap());
                }
            }
            assert_eq!(decoded, commands, "seed {seed}");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_word_alone() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&2_000_000_000u32.to_be_bytes());
        assert_eq!(decoder.next_frame(), Some(Err(FrameError::TooLong { len: 2_000_000_000, max: 1024 })));
        // Nothing is buffered for it, before or after, and the decoder stays failed.
        assert_eq!(decoder.buffered(), 0);
        decoder.push(&[0u8; 100]);
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.next_frame(), None);
    }

    #[test]
    fn impossible_lengths_and_headers_are_errors() {
        let cases: [(&[u8], FrameError); 4] = [
            (&[0xFF, 0xFF, 0xFF, 0xFF], FrameError::BadLength(-1)),
            (&[0, 0, 0, 3, 0, 0, 0], FrameError::BadLength(3)),
            (&[0, 0, 0, 4, 2, 0, 0, 0], FrameError::UnknownSerializeType(2)),
            (&[0, 0, 0, 6, 0, 0, 0, 9, 1, 2], FrameError::BadHeader("header length exceeds the frame")),
        ];
        for (bytes, expected) in cases {
            let mut decoder = FrameDecoder::new(1024);
            decoder.push(bytes);
            assert_eq!(decoder.next_frame(), Some(Err(expected)), "{bytes:?}");
        }
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&[0, 0, 0, 4]);
        assert_eq!(decoder.next_frame(), None, "a partial frame waits for more bytes");
    }

    #[test]
    fn a_remark_too_long_for_a_header_is_cut_not_fatal() {
        // A 20 MiB remark (a 10 MiB topic name of control characters a client sent, quoted
        // in an error, escapes to 60 MiB of JSON): more than a 24-bit length can say.
        let topic = "\u{1}".repeat(20 << 20);
        for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
            let request = sample(3, serialize_type);
            let mut reply = RemotingCommand::response_to(
                &request,
                crate::protocol::ResponseCode::TOPIC_NOT_EXIST,
                Some(format!("topic[{topic}] not exist")),
            );
            reply.serialize_type = serialize_type;
            let frame = encode_to_bytes(&reply);
            let decoded = decode_one(&frame, DEFAULT_MAX_FRAME_LEN).unwrap();
            let remark = decoded.remark.unwrap();
            assert!(remark.starts_with("topic[\u{1}") && remark.ends_with('…'), "{}", remark.len());
            assert!(remark.len() <= REMARK_CUT_LEN + 3);
            assert_eq!((decoded.code, decoded.opaque), (reply.code, reply.opaque));
        }
    }
}
