//! The ROCKETMQ binary header (serialize type 1), as the Java benchmark tools send it.
//!
//! Layout (all integers big-endian):
//!
//! | size | field |
//! |------|-------|
//! | i16  | code (so codes ≥ 32768 cannot be carried; such commands are written as JSON) |
//! | u8   | language code |
//! | i16  | version |
//! | i32  | opaque |
//! | i32  | flag |
//! | i32  | remark length, 0 = none |
//! | n    | remark, UTF-8 |
//! | i32  | extFields area length, 0 = none |
//! | …    | repeated: i16 key length, key, i32 value length, value |
//!
//! A zero-length string decodes as absent, so an empty extFields value is dropped.

use bytes::{Buf, BufMut};

use super::code::LanguageCode;
use super::command::{ExtFields, RemotingCommand};
use super::{FrameError, SerializeType};

/// Fixed part of the header: code, language, version, opaque, flag, remark and ext lengths.
pub(crate) const FIXED_LEN: usize = 2 + 1 + 2 + 4 + 4 + 4 + 4;

/// Whether `cmd` can be carried in a binary header (its code fits in 16 bits).
pub(crate) fn fits(cmd: &RemotingCommand) -> bool {
    i16::try_from(cmd.code).is_ok()
        && i16::try_from(cmd.version).is_ok()
        && cmd.ext_fields.iter().all(|(key, _)| i16::try_from(key.len()).is_ok())
}

/// Append the binary header of `cmd` to `out`. Callers check [`fits`] first.
pub(crate) fn encode(cmd: &RemotingCommand, out: &mut Vec<u8>) {
    let (Ok(code), Ok(version)) = (i16::try_from(cmd.code), i16::try_from(cmd.version)) else {
        panic!("binary header for code {} version {}: callers check fits()", cmd.code, cmd.version);
    };
    out.put_i16(code);
    out.put_u8(cmd.language.0);
    out.put_i16(version);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    let remark = cmd.remark.as_deref().unwrap_or("");
    put_len_i32(out, remark.len());
    out.put_slice(remark.as_bytes());
    let ext_len: usize =
        cmd.ext_fields.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| 2 + k.len() + 4 + v.len()).sum();
    put_len_i32(out, ext_len);
    for (key, value) in cmd.ext_fields.iter().filter(|(_, v)| !v.is_empty()) {
        let Ok(key_len) = i16::try_from(key.len()) else {
            panic!("a {}-byte key: callers check fits()", key.len())
        };
        out.put_i16(key_len);
        out.put_slice(key.as_bytes());
        put_len_i32(out, value.len());
        out.put_slice(value.as_bytes());
    }
}

fn put_len_i32(out: &mut Vec<u8>, len: usize) {
    // Parts of a frame, which is asserted to fit 4 GiB; one part past 2 GiB is a bug too.
    let Ok(len) = i32::try_from(len) else { panic!("a header part of {len} bytes") };
    out.put_i32(len);
}

/// Decode a binary header into a command with an empty body.
pub(crate) fn decode(mut header: &[u8]) -> Result<RemotingCommand, FrameError> {
    if header.len() < FIXED_LEN {
        return Err(FrameError::BadHeader("binary header shorter than its fixed part"));
    }
    let code = i32::from(header.get_i16());
    let language = LanguageCode(header.get_u8());
    let version = i32::from(header.get_i16());
    let opaque = header.get_i32();
    let flag = header.get_i32();
    let remark = take_str(&mut header, |h| h.get_i32())?.map(str::to_owned);
    if header.remaining() < 4 {
        return Err(FrameError::BadHeader("binary header ends before extFields length"));
    }
    let ext_len =
        usize::try_from(header.get_i32()).map_err(|_| FrameError::BadHeader("negative extFields length"))?;
    if ext_len > header.remaining() {
        return Err(FrameError::BadHeader("extFields length exceeds the header"));
    }
    let (mut ext, _rest) = header.split_at(ext_len);
    // Keys and values are never longer than the part that carries them.
    let mut ext_fields = ExtFields::with_capacity(ext_len, 16);
    while ext.has_remaining() {
        if ext.remaining() < 2 {
            return Err(FrameError::BadHeader("truncated extFields key length"));
        }
        let key = take_str(&mut ext, |h| i32::from(h.get_i16()))?;
        if ext.remaining() < 4 {
            return Err(FrameError::BadHeader("truncated extFields value length"));
        }
        let value = take_str(&mut ext, |h| h.get_i32())?;
        if let (Some(key), Some(value)) = (key, value) {
            ext_fields.insert(key, value);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: bytes::Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

/// Read a length (with `read_len`, which the caller made sure has bytes) and that many
/// bytes of UTF-8; length 0 is absent.
fn take_str<'a>(
    buf: &mut &'a [u8],
    read_len: impl Fn(&mut &[u8]) -> i32,
) -> Result<Option<&'a str>, FrameError> {
    let len = usize::try_from(read_len(buf)).map_err(|_| FrameError::BadHeader("negative string length"))?;
    if len > buf.remaining() {
        return Err(FrameError::BadHeader("string length exceeds the header"));
    }
    if len == 0 {
        return Ok(None);
    }
    let (text, rest) = buf.split_at(len);
    *buf = rest;
    core::str::from_utf8(text).map(Some).map_err(|_| FrameError::BadHeader("header string is not UTF-8"))
}
