//! RocketMQ's remoting protocol: frames, commands, codes, headers, JSON bodies and the
//! stored-message format, byte for byte.

pub mod body;
pub mod client_requests;
pub mod code;
pub mod command;
mod ext_fields;
pub mod frame;
mod header_binary;
mod header_json;
pub mod headers;
pub mod json;
pub mod message;
#[cfg(any(test, feature = "testing"))]
pub mod self_check;
pub mod trace;

pub use code::{version_desc, LanguageCode, RequestCode, ResponseCode, SerializeType, SERVER_VERSION};
pub use command::{ExtFields, FieldCursor, RemotingCommand, FLAG_ONEWAY, FLAG_RESPONSE};
pub use frame::{decode_one, encode_frame, encode_to_bytes, FrameDecoder, DEFAULT_MAX_FRAME_LEN};

/// An offset or count of ours as Java's `long` on the wire. CommitLog and queue offsets
/// are bounded by disk sizes far below 2^63, so one that does not fit is a bug: asserted
/// (on in release and in the simulator), never sent as a made-up value.
#[must_use]
pub fn wire_long(value: u64) -> i64 {
    let Ok(long) = i64::try_from(value) else {
        panic!("offset or count {value} does not fit Java's long");
    };
    long
}

/// Why a byte stream could not be read as frames. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length word exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The length word is negative or too small to hold the header-info word.
    #[error("impossible frame length {0}")]
    BadLength(i32),
    /// The header-info word names a serialization we do not know.
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    /// The header is malformed.
    #[error("bad header: {0}")]
    BadHeader(&'static str),
    /// The JSON header does not parse.
    #[error("bad JSON header: {0}")]
    BadJson(json::JsonError),
    /// The input ended inside a frame.
    #[error("incomplete frame")]
    Incomplete,
    /// Bytes were left after the one frame expected.
    #[error("{0} bytes after the frame")]
    TrailingBytes(usize),
}
