//! The stored-message record: the CommitLog record, and also each element of a pull,
//! view or query body and the body of CHECK_TRANSACTION_STATE.
//!
//! Layout (big-endian; hosts are 8 bytes for IPv4 and 20 for IPv6, chosen by SYSFLAG bits):
//!
//! | # | field | size | notes |
//! |---|-------|------|-------|
//! | 1 | TOTALSIZE | i32 | whole record, this field included; equals the sum of the fields |
//! | 2 | MAGICCODE | i32 | V1 `0xDAA320A7` (1-byte topic length), V2 `0xDAA320AB` (2-byte) |
//! | 3 | BODYCRC | i32 | CRC32 (IEEE) of the body, `& 0x7FFFFFFF` |
//! | 4 | QUEUEID | i32 | |
//! | 5 | FLAG | i32 | user flag |
//! | 6 | QUEUEOFFSET | i64 | index in the (topic, queue) ConsumeQueue |
//! | 7 | PHYSICALOFFSET | i64 | this record's CommitLog offset |
//! | 8 | SYSFLAG | i32 | [`sys_flag`] bits |
//! | 9 | BORNTIMESTAMP | i64 | producer clock, ms |
//! | 10 | BORNHOST | 4+4 or 16+4 | address then i32 port; IPv6 iff SYSFLAG `0x10` |
//! | 11 | STORETIMESTAMP | i64 | broker clock, ms |
//! | 12 | STOREHOST | 4+4 or 16+4 | IPv6 iff SYSFLAG `0x20` |
//! | 13 | RECONSUMETIMES | i32 | |
//! | 14 | PREPAREDTRANSACTIONOFFSET | i64 | a committed transaction's half-message offset |
//! | 15 | BODYLENGTH, BODY | i32 + n | as sent (compressed if SYSFLAG `0x1`) |
//! | 16 | TOPICLENGTH, TOPIC | i8 (V1) or i16 (V2) + n | UTF-8; V1 whenever the topic is ≤ 127 bytes |
//! | 17 | PROPERTIESLENGTH, PROPERTIES | i16 + n | the properties string, ≤ 32767 bytes |
//!
//! A full CommitLog segment ends with a BLANK record: TOTALSIZE = the bytes left in the
//! segment (at least 8), MAGICCODE `0xCBD43194`.
//!
//! Keel's store protects each whole record (not only the body, as RocketMQ does by default)
//! with RocketMQ's own optional `__CRC32#` property, always the last 20 bytes of the record:
//! `__CRC32#`, `0x01`, ten ASCII digits of the masked CRC32 of every byte before this tail,
//! least significant digit first (as Java's `MessageDecoder.createCrc32` writes them), `0x02`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes};

use super::properties::{keys, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR};

/// Magic of a V1 record (1-byte topic length).
pub const MAGIC_V1: i32 = -626_843_481;
/// Magic of a V2 record (2-byte topic length).
pub const MAGIC_V2: i32 = -626_843_477;
/// Magic of the BLANK record that fills the end of a segment.
pub const MAGIC_BLANK: i32 = -875_286_124;
/// The smallest BLANK record: TOTALSIZE and MAGICCODE.
pub const BLANK_MIN_LEN: usize = 8;
/// Length of the whole-record CRC tail (`__CRC32#`, separator, 10 digits, separator).
pub const RECORD_CRC_TAIL_LEN: usize = keys::CRC32.len() + 1 + 10 + 1;
/// Bytes before BODYLENGTH with IPv4 hosts.
const FIXED_LEN_V4: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8;
/// Extra bytes of an IPv6 host over an IPv4 one.
const V6_EXTRA: usize = 12;

/// MessageSysFlag bits.
pub mod sys_flag {
    /// Body compressed; type in bits 8–10.
    pub const COMPRESSED: i32 = 0x1;
    /// Topic filter type MULTI_TAG.
    pub const MULTI_TAGS: i32 = 0x2;
    /// Mask of the two transaction-type bits.
    pub const TRANSACTION_MASK: i32 = 0xC;
    /// Not a transaction message.
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    /// Transaction half message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// Committed transaction message.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// Rolled-back transaction message.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// BORNHOST is IPv6.
    pub const BORNHOST_V6: i32 = 0x10;
    /// STOREHOST is IPv6.
    pub const STOREHOST_V6: i32 = 0x20;
    /// Body is itself a batch to unwrap.
    pub const NEED_UNWRAP: i32 = 0x40;
    /// Inner batch.
    pub const INNER_BATCH: i32 = 0x80;
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the record needs.
    #[error("record truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the record claims or needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// TOTALSIZE is impossible.
    #[error("impossible record size {0}")]
    BadSize(i32),
    /// Not a record magic.
    #[error("bad magic {0:#010x}")]
    BadMagic(i32),
    /// TOTALSIZE differs from the sum of the fields.
    #[error("size {declared} differs from the fields' {computed}")]
    LengthMismatch {
        /// TOTALSIZE.
        declared: usize,
        /// Sum of the parsed fields.
        computed: usize,
    },
    /// A length field is negative.
    #[error("negative {0} length")]
    NegativeLength(&'static str),
    /// The topic is not UTF-8 or is too long for the record version.
    #[error("bad topic")]
    BadTopic,
    /// A host's port is outside 0..=65535.
    #[error("bad host port")]
    BadHost,
    /// The properties string is longer than 32767 bytes.
    #[error("properties of {0} bytes exceed 32767")]
    PropertiesTooLong(usize),
    /// BODYCRC does not match the body.
    #[error("body CRC mismatch")]
    BodyCrcMismatch,
    /// The record has no whole-record CRC tail.
    #[error("no whole-record CRC")]
    MissingRecordCrc,
    /// The whole-record CRC does not match.
    #[error("whole-record CRC mismatch")]
    RecordCrcMismatch,
    /// The record would be larger than 2 GiB.
    #[error("record too large")]
    TooLarge,
}

/// The masked CRC32 RocketMQ stores: `java.util.zip.CRC32` `& 0x7FFFFFFF`.
#[must_use]
pub fn masked_crc32(bytes: &[u8]) -> i32 {
    // Masked to 31 bits: a non-negative i32.
    (crc32fast::hash(bytes) & 0x7FFF_FFFF) as i32
}

/// The fixed-size fields of a record: everything but the body, topic and properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// Queue id.
    pub queue_id: i32,
    /// User flag.
    pub flag: i32,
    /// ConsumeQueue offset.
    pub queue_offset: i64,
    /// CommitLog offset of this record.
    pub physical_offset: i64,
    /// Sys flag; on encoding, the host-family bits are set from the addresses.
    pub sys_flag: i32,
    /// Producer clock, ms.
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Broker clock, ms.
    pub store_timestamp: i64,
    /// Broker address clients reach.
    pub store_host: SocketAddr,
    /// Retry count.
    pub reconsume_times: i32,
    /// Half-message offset of a committed transaction message.
    pub prepared_transaction_offset: i64,
}

impl RecordHead {
    /// The sys flag with the host-family bits set from the actual addresses.
    #[must_use]
    pub fn effective_sys_flag(&self) -> i32 {
        let mut flag = self.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
        if self.born_host.is_ipv6() {
            flag |= sys_flag::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            flag |= sys_flag::STOREHOST_V6;
        }
        flag
    }
}

/// A message record: the fixed head and the variable tail, either borrowed ([`RecordRef`],
/// to encode or to read in place) or owned ([`StoredMessage`], as a client keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<B, S> {
    /// The fixed-size fields.
    pub head: RecordHead,
    /// Body bytes.
    pub body: B,
    /// Topic.
    pub topic: S,
    /// Properties string bytes.
    pub properties: B,
}

/// A record with a borrowed tail, so encoding copies each byte once.
pub type RecordRef<'a> = Record<&'a [u8], &'a str>;

/// A decoded message with an owned tail, as a client sees it after a pull.
pub type StoredMessage = Record<Bytes, String>;

impl<B: AsRef<[u8]>, S: AsRef<str>> Record<B, S> {
    /// The record with its tail borrowed.
    #[must_use]
    pub fn borrowed(&self) -> RecordRef<'_> {
        Record {
            head: self.head,
            body: self.body.as_ref(),
            topic: self.topic.as_ref(),
            properties: self.properties.as_ref(),
        }
    }

    /// The encoded length of this record.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.body.as_ref().len(),
            self.topic.as_ref().len(),
            self.properties.as_ref().len(),
            self.head.born_host.is_ipv6(),
            self.head.store_host.is_ipv6(),
        )
    }
}

impl RecordRef<'_> {
    /// Copy the tail into an owned message.
    #[must_use]
    pub fn to_stored(&self) -> StoredMessage {
        Record {
            head: self.head,
            body: Bytes::copy_from_slice(self.body),
            topic: self.topic.to_owned(),
            properties: Bytes::copy_from_slice(self.properties),
        }
    }
}

/// Length of a record with these field sizes.
#[must_use]
pub fn record_len(body: usize, topic: usize, properties: usize, born_v6: bool, store_v6: bool) -> usize {
    let topic_len_field = if topic <= 127 { 1 } else { 2 };
    FIXED_LEN_V4
        + if born_v6 { V6_EXTRA } else { 0 }
        + if store_v6 { V6_EXTRA } else { 0 }
        + 4
        + body
        + topic_len_field
        + topic
        + 2
        + properties
}

/// The fixed part of a record (through BODYLENGTH), built on the stack.
struct HeadWriter {
    buf: [u8; FIXED_LEN_V4 + 2 * V6_EXTRA + 4],
    len: usize,
}

impl Default for HeadWriter {
    fn default() -> Self {
        Self { buf: [0; FIXED_LEN_V4 + 2 * V6_EXTRA + 4], len: 0 }
    }
}

impl HeadWriter {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn put_host(&mut self, host: SocketAddr) {
        match host.ip() {
            IpAddr::V4(ip) => self.put(&ip.octets()),
            IpAddr::V6(ip) => self.put(&ip.octets()),
        }
        self.put(&i32::from(host.port()).to_be_bytes());
    }

    fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Append the record to `out`; returns its length. Fails only on sizes the format cannot
/// hold (topic over 32767 bytes, properties over 32767, record over 2 GiB).
pub fn encode_record(out: &mut impl BufMut, record: &RecordRef<'_>) -> Result<usize, RecordError> {
    encode_record_with_tail(out, record, &[])
}

/// Like [`encode_record`], with `tail` appended to the properties string.
pub fn encode_record_with_tail(
    out: &mut impl BufMut,
    record: &RecordRef<'_>,
    tail: &[u8],
) -> Result<usize, RecordError> {
    encode_parts(out, record, tail, false)
}

/// Encode a record whose properties end with the whole-record CRC property (after a property
/// separator if `separator_first`), as Keel's store writes every record.
///
/// The CRC digits are filled in by [`seal_record_crc`] once the record is in place.
pub fn encode_record_sealed(
    out: &mut Vec<u8>,
    record: &RecordRef<'_>,
    separator_first: bool,
) -> Result<usize, RecordError> {
    let tail: &[u8] = if separator_first { &[PROPERTY_SEPARATOR] } else { &[] };
    let start = out.len();
    let len = encode_parts(out, record, tail, true)?;
    if let Some(record) = out.get_mut(start..) {
        seal_record_crc(record);
    }
    Ok(len)
}

/// Encode a record: the fields, then `tail` after the properties, then (if `seal`) the
/// whole-record CRC property covering everything before it.
fn encode_parts(
    out: &mut impl BufMut,
    record: &RecordRef<'_>,
    tail: &[u8],
    seal: bool,
) -> Result<usize, RecordError> {
    let tail_len = tail.len() + if seal { RECORD_CRC_TAIL_LEN } else { 0 };
    let properties_total = record.properties.len() + tail_len;
    let len = record_len(
        record.body.len(),
        record.topic.len(),
        properties_total,
        record.head.born_host.is_ipv6(),
        record.head.store_host.is_ipv6(),
    );
    let total = i32::try_from(len).map_err(|_| RecordError::TooLarge)?;
    let body_len = i32::try_from(record.body.len()).map_err(|_| RecordError::TooLarge)?;
    let properties_len =
        i16::try_from(properties_total).map_err(|_| RecordError::PropertiesTooLong(properties_total))?;
    if record.topic.len() > i16::MAX as usize {
        return Err(RecordError::BadTopic);
    }
    // The fixed part is assembled on the stack and copied once: per-field writes into the
    // output cost a capacity check each.
    let head = &record.head;
    let mut fixed = HeadWriter::default();
    fixed.put(&total.to_be_bytes());
    let v1 = record.topic.len() <= 127;
    fixed.put(&(if v1 { MAGIC_V1 } else { MAGIC_V2 }).to_be_bytes());
    fixed.put(&masked_crc32(record.body).to_be_bytes());
    fixed.put(&head.queue_id.to_be_bytes());
    fixed.put(&head.flag.to_be_bytes());
    fixed.put(&head.queue_offset.to_be_bytes());
    fixed.put(&head.physical_offset.to_be_bytes());
    fixed.put(&record.head.effective_sys_flag().to_be_bytes());
    fixed.put(&head.born_timestamp.to_be_bytes());
    fixed.put_host(record.head.born_host);
    fixed.put(&head.store_timestamp.to_be_bytes());
    fixed.put_host(record.head.store_host);
    fixed.put(&head.reconsume_times.to_be_bytes());
    fixed.put(&head.prepared_transaction_offset.to_be_bytes());
    fixed.put(&body_len.to_be_bytes());
    let topic_len_bytes = u16::try_from(record.topic.len()).map_err(|_| RecordError::BadTopic)?.to_be_bytes();
    let topic_len_field: &[u8] =
        if v1 { topic_len_bytes.get(1..).unwrap_or_default() } else { &topic_len_bytes };
    let properties_len_field = properties_len.to_be_bytes();
    let parts: [&[u8]; 8] = [
        fixed.written(),
        record.body,
        topic_len_field,
        record.topic.as_bytes(),
        &properties_len_field,
        record.properties,
        tail,
        &[],
    ];
    for part in parts {
        out.put_slice(part);
    }
    if seal {
        // The covered bytes are all written now; hashing them in one call keeps crc32fast
        // on its folding path (it is much slower on many small slices).
        out.put_slice(RECORD_CRC_PLACEHOLDER);
    }
    Ok(len)
}

/// A record parsed in place: the whole record's bytes, its stored BODYCRC and its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The whole record.
    pub bytes: &'a [u8],
    /// BODYCRC as stored.
    pub body_crc: i32,
    /// The fields, tail borrowed from `bytes`.
    pub record: RecordRef<'a>,
}

impl RecordView<'_> {
    /// The record's fixed-size fields.
    #[must_use]
    pub fn head(&self) -> &RecordHead {
        &self.record.head
    }
}

/// What sits at a position in a CommitLog segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A message record.
    Message(RecordView<'a>),
    /// The BLANK record closing a segment, with its length.
    Blank(usize),
}

fn get_host(buf: &mut &[u8], v6: bool) -> Result<SocketAddr, RecordError> {
    let ip = if v6 {
        let mut octets = [0u8; 16];
        buf.copy_to_slice(&mut octets);
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        let mut octets = [0u8; 4];
        buf.copy_to_slice(&mut octets);
        IpAddr::V4(Ipv4Addr::from(octets))
    };
    // Java builds an InetSocketAddress from it, which refuses ports outside 0..=65535.
    let port = u16::try_from(buf.get_i32()).map_err(|_| RecordError::BadHost)?;
    Ok(SocketAddr::new(ip, port))
}

/// Parse the record or BLANK at the start of `input`. Checks sizes, magic and that
/// TOTALSIZE equals the fields' sum; does not check CRCs (see [`verify_crcs`]).
pub fn parse_record(input: &[u8]) -> Result<Parsed<'_>, RecordError> {
    if input.len() < BLANK_MIN_LEN {
        return Err(RecordError::Truncated { needed: BLANK_MIN_LEN, available: input.len() });
    }
    let mut head = input;
    let total_raw = head.get_i32();
    let magic = head.get_i32();
    let total = usize::try_from(total_raw).map_err(|_| RecordError::BadSize(total_raw))?;
    if total < BLANK_MIN_LEN {
        return Err(RecordError::BadSize(total_raw));
    }
    if total > input.len() {
        return Err(RecordError::Truncated { needed: total, available: input.len() });
    }
    if magic == MAGIC_BLANK {
        return Ok(Parsed::Blank(total));
    }
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(RecordError::BadMagic(magic));
    }
    let record = input.get(..total).unwrap_or_default();
    parse_message(record, magic).map(Parsed::Message)
}

/// Parse a message record occupying exactly `record` (TOTALSIZE already known to fit).
fn parse_message(record: &[u8], magic: i32) -> Result<RecordView<'_>, RecordError> {
    let total = record.len();
    let truncated = |needed| RecordError::Truncated { needed, available: total };
    if total < FIXED_LEN_V4 {
        return Err(truncated(FIXED_LEN_V4));
    }
    let mut buf = record.get(8..).unwrap_or_default();
    let body_crc = buf.get_i32();
    let queue_id = buf.get_i32();
    let flag = buf.get_i32();
    let queue_offset = buf.get_i64();
    let physical_offset = buf.get_i64();
    let sys_flag = buf.get_i32();
    let born_v6 = sys_flag & sys_flag::BORNHOST_V6 != 0;
    let store_v6 = sys_flag & sys_flag::STOREHOST_V6 != 0;
    let fixed = FIXED_LEN_V4 + if born_v6 { V6_EXTRA } else { 0 } + if store_v6 { V6_EXTRA } else { 0 };
    // The rest of the fixed part plus BODYLENGTH must be present before reading it.
    if total < fixed + 4 {
        return Err(truncated(fixed + 4));
    }
    let born_timestamp = buf.get_i64();
    let born_host = get_host(&mut buf, born_v6)?;
    let store_timestamp = buf.get_i64();
    let store_host = get_host(&mut buf, store_v6)?;
    let reconsume_times = buf.get_i32();
    let prepared_transaction_offset = buf.get_i64();
    let body_len = usize::try_from(buf.get_i32()).map_err(|_| RecordError::NegativeLength("body"))?;
    let body = take(&mut buf, body_len).ok_or_else(|| truncated(fixed + 4 + body_len))?;
    let topic_len = if magic == MAGIC_V1 {
        // Java reads the V1 length as a signed byte: 128 and up are not valid lengths.
        let raw = take(&mut buf, 1).and_then(|b| b.first().copied()).ok_or_else(|| truncated(total + 1))?;
        if raw > 127 {
            return Err(RecordError::BadTopic);
        }
        usize::from(raw)
    } else {
        let raw = take(&mut buf, 2).ok_or_else(|| truncated(total + 2))?;
        usize::try_from(i16::from_be_bytes([
            raw.first().copied().unwrap_or(0),
            raw.get(1).copied().unwrap_or(0),
        ]))
        .map_err(|_| RecordError::NegativeLength("topic"))?
    };
    let topic = take(&mut buf, topic_len).ok_or_else(|| truncated(total + topic_len))?;
    let topic = core::str::from_utf8(topic).map_err(|_| RecordError::BadTopic)?;
    let raw = take(&mut buf, 2).ok_or_else(|| truncated(total + 2))?;
    let properties_len = usize::try_from(i16::from_be_bytes([
        raw.first().copied().unwrap_or(0),
        raw.get(1).copied().unwrap_or(0),
    ]))
    .map_err(|_| RecordError::NegativeLength("properties"))?;
    let properties = take(&mut buf, properties_len).ok_or_else(|| truncated(total + properties_len))?;
    let computed = record_len(body_len, topic_len, properties_len, born_v6, store_v6);
    if computed != total || !buf.is_empty() {
        return Err(RecordError::LengthMismatch { declared: total, computed });
    }
    let head = RecordHead {
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
    };
    Ok(RecordView { bytes: record, body_crc, record: Record { head, body, topic, properties } })
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if buf.len() < len {
        return None;
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Some(head)
}

/// The tail Keel's store reserves in every record, with the digits still zero.
pub const RECORD_CRC_PLACEHOLDER: &[u8; RECORD_CRC_TAIL_LEN] = b"__CRC32#\x010000000000\x02";

/// A copy of [`RECORD_CRC_PLACEHOLDER`], for building properties by hand.
#[must_use]
pub fn record_crc_placeholder() -> [u8; RECORD_CRC_TAIL_LEN] {
    *RECORD_CRC_PLACEHOLDER
}

/// The whole-record CRC property for a masked CRC value.
fn crc_tail(mut crc: u32) -> [u8; RECORD_CRC_TAIL_LEN] {
    let mut tail = *RECORD_CRC_PLACEHOLDER;
    let digits_start = RECORD_CRC_TAIL_LEN - 11;
    if let Some(digits) = tail.get_mut(digits_start..digits_start + 10) {
        for digit in digits {
            // Least significant digit first, as Java writes it.
            // A decimal digit.
            *digit = b'0' + (crc % 10) as u8;
            crc /= 10;
        }
    }
    tail
}

/// Fill in the whole-record CRC of a record that ends with [`record_crc_placeholder`].
pub fn seal_record_crc(record: &mut [u8]) {
    let Some(covered_len) = record.len().checked_sub(RECORD_CRC_TAIL_LEN) else { return };
    let crc = crc32fast::hash(record.get(..covered_len).unwrap_or_default()) & 0x7FFF_FFFF;
    if let Some(tail) = record.get_mut(covered_len..) {
        tail.copy_from_slice(&crc_tail(crc));
    }
}

/// Check BODYCRC and, when `require_record_crc`, the whole-record CRC tail.
pub fn verify_crcs(view: &RecordView<'_>, require_record_crc: bool) -> Result<(), RecordError> {
    if masked_crc32(view.record.body) != view.body_crc {
        return Err(RecordError::BodyCrcMismatch);
    }
    if require_record_crc {
        check_record_crc(view.bytes)?;
    }
    Ok(())
}

/// Check the whole-record CRC tail of a record.
pub fn check_record_crc(record: &[u8]) -> Result<(), RecordError> {
    let covered_len = record.len().checked_sub(RECORD_CRC_TAIL_LEN).ok_or(RecordError::MissingRecordCrc)?;
    let tail = record.get(covered_len..).ok_or(RecordError::MissingRecordCrc)?;
    let name = keys::CRC32.as_bytes();
    let well_formed = tail.starts_with(name)
        && tail.get(name.len()) == Some(&NAME_VALUE_SEPARATOR)
        && tail.last() == Some(&PROPERTY_SEPARATOR);
    if !well_formed {
        return Err(RecordError::MissingRecordCrc);
    }
    let digits = tail.get(name.len() + 1..name.len() + 11).ok_or(RecordError::MissingRecordCrc)?;
    let mut stored: i64 = 0;
    for &digit in digits.iter().rev() {
        if !digit.is_ascii_digit() {
            return Err(RecordError::RecordCrcMismatch);
        }
        stored = stored * 10 + i64::from(digit - b'0');
    }
    let actual = masked_crc32(record.get(..covered_len).unwrap_or_default());
    if stored == i64::from(actual) {
        Ok(())
    } else {
        Err(RecordError::RecordCrcMismatch)
    }
}

/// Decode records laid back to back (a pull, view or query body). A malformed record is an
/// error, never a silent stop: a client must know the body was damaged.
pub fn decode_records(mut body: &[u8]) -> Result<Vec<StoredMessage>, RecordError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        match parse_record(body)? {
            Parsed::Message(view) => {
                out.push(view.record.to_stored());
                body = body.get(view.bytes.len()..).unwrap_or_default();
            }
            Parsed::Blank(_) => return Err(RecordError::BadMagic(MAGIC_BLANK)),
        }
    }
    Ok(out)
}
