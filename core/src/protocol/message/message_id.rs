//! Message ids: the offset id a broker returns, and the UNIQ_KEY id a producer assigns.
//!
//! Offset id: uppercase hex of store IP (4 or 16 bytes) ‖ port (i32) ‖ CommitLog offset (i64),
//! 32 hex characters for IPv4. Clients decode it to find the broker and offset
//! (VIEW_MESSAGE_BY_ID, END_TRANSACTION), so the address must be the one clients reach.
//!
//! UNIQ_KEY (4.x client id): uppercase hex of client IP (4 bytes) ‖ pid (i16) ‖ seed (i32)
//! ‖ milliseconds into the time window (32 bits; Java: since the month began) ‖ counter (i16).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::io::UnixMillis;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for &byte in bytes {
        out.push(char::from(HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0')));
        out.push(char::from(HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0')));
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits.chunks(2).map(|pair| Some(hex_value(*pair.first()?)? << 4 | hex_value(*pair.get(1)?)?)).collect()
}

/// The offset message id of the record at `physical_offset` stored by `store_host`.
#[must_use]
pub fn offset_message_id(store_host: SocketAddr, physical_offset: i64) -> String {
    let mut out = String::with_capacity(56);
    match store_host.ip() {
        IpAddr::V4(ip) => push_hex(&mut out, &ip.octets()),
        IpAddr::V6(ip) => push_hex(&mut out, &ip.octets()),
    }
    push_hex(&mut out, &i32::from(store_host.port()).to_be_bytes());
    push_hex(&mut out, &physical_offset.to_be_bytes());
    out
}

/// Decode an offset message id into the broker address and CommitLog offset.
#[must_use]
pub fn decode_offset_message_id(id: &str) -> Option<(SocketAddr, i64)> {
    let bytes = unhex(id)?;
    let (ip, rest): (IpAddr, &[u8]) = match bytes.len() {
        16 => {
            let (ip, rest) = bytes.split_at(4);
            (IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)), rest)
        }
        28 => {
            let (ip, rest) = bytes.split_at(16);
            (IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)), rest)
        }
        _ => return None,
    };
    let (port, offset) = rest.split_at(4);
    let port = u16::try_from(i32::from_be_bytes(port.try_into().ok()?)).ok()?;
    let offset = i64::from_be_bytes(offset.try_into().ok()?);
    Some((SocketAddr::new(ip, port), offset))
}

/// The span of a unique id's time field: 30 days of milliseconds.
const UNIQUE_ID_WINDOW_MS: i64 = 30 * 86_400_000;

/// Generates UNIQ_KEY ids for messages a producer did not label. Deterministic: the caller
/// supplies the identity and the clock, so simulations replay exactly.
#[derive(Debug, Clone)]
pub struct UniqueIdGenerator {
    prefix: String,
    counter: u16,
}

impl UniqueIdGenerator {
    /// A generator for a process at `ip` with `pid`, salted with `seed` (Java uses the class
    /// loader's hash code there).
    #[must_use]
    pub fn new(ip: Ipv4Addr, pid: i16, seed: i32) -> Self {
        let mut prefix = String::with_capacity(20);
        push_hex(&mut prefix, &ip.octets());
        push_hex(&mut prefix, &pid.to_be_bytes());
        push_hex(&mut prefix, &seed.to_be_bytes());
        Self { prefix, counter: 0 }
    }

    /// The next id at wall time `now`. Its time field is milliseconds into a 30-day window
    /// (Java counts from the start of the month and keeps the low 32 bits; the field's
    /// shape, not the calendar, is what readers rely on).
    pub fn next_id(&mut self, now: UnixMillis) -> String {
        // Below 2^32: the field holds every millisecond of the window, none clamped.
        let window_ms = now.0.rem_euclid(UNIQUE_ID_WINDOW_MS) as u32;
        let mut id = String::with_capacity(32);
        id.push_str(&self.prefix);
        push_hex(&mut id, &window_ms.to_be_bytes());
        push_hex(&mut id, &self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ids_match_the_worked_example_and_round_trip() {
        let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        let id = offset_message_id(host, 1000);
        assert_eq!(id, "0A00000100002A9F00000000000003E8");
        assert_eq!(decode_offset_message_id(&id), Some((host, 1000)));
        assert_eq!(decode_offset_message_id(&id.to_lowercase()), Some((host, 1000)));
        let v6: SocketAddr = "[fe80::1]:10911".parse().unwrap();
        let id6 = offset_message_id(v6, 7);
        assert_eq!(id6.len(), 56);
        assert_eq!(decode_offset_message_id(&id6), Some((v6, 7)));
        assert_eq!(decode_offset_message_id("XYZ"), None);
        assert_eq!(decode_offset_message_id("0A000001"), None);
    }

    #[test]
    fn unique_ids_have_the_java_shape_and_count_up() {
        let mut ids = UniqueIdGenerator::new(Ipv4Addr::new(172, 17, 0, 2), 77, 0x1234_5678);
        let first = ids.next_id(UnixMillis(1000));
        let second = ids.next_id(UnixMillis(UNIQUE_ID_WINDOW_MS + 1000));
        assert_eq!(first, "AC110002004D12345678000003E80000");
        assert_eq!(second, "AC110002004D12345678000003E80001");
    }

    #[test]
    fn late_in_the_window_the_time_field_keeps_counting_past_i32() {
        let mut ids = UniqueIdGenerator::new(Ipv4Addr::new(172, 17, 0, 2), 77, 0x1234_5678);
        // 2.5e9 ms into the window: over i32::MAX, written as Java's low 32 bits.
        let late = ids.next_id(UnixMillis(2_500_000_000));
        assert_eq!(&late[20..28], "9502F900");
        let later = ids.next_id(UnixMillis(2_500_000_001));
        assert_ne!(late[20..28], later[20..28], "the field moves with the clock");
    }
}
