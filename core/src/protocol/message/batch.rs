//! The batch send body (SEND_BATCH_MESSAGE, or a send whose header says `batch`).
//!
//! Per message (`MessageDecoder.encodeMessage`):
//!
//! | field | size |
//! |-------|------|
//! | TOTALSIZE | i32, the whole entry |
//! | MAGICCODE | i32, 0 |
//! | BODYCRC | i32, 0 |
//! | FLAG | i32 |
//! | BODYLENGTH, BODY | i32 + n |
//! | PROPERTIESLENGTH, PROPERTIES | i16 + n |

use bytes::{Buf, BufMut, Bytes};

/// Fixed bytes of one batch entry.
const ENTRY_FIXED_LEN: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// One message of a batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// User flag.
    pub flag: i32,
    /// Body.
    pub body: Bytes,
    /// Properties string (each entry carries its own UNIQ_KEY, TAGS, KEYS).
    pub properties: Bytes,
}

/// Why a batch body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// An entry is cut short or its TOTALSIZE disagrees with its fields.
    #[error("malformed batch entry at byte {0}")]
    Malformed(usize),
    /// More entries than allowed.
    #[error("batch has more than {0} messages")]
    TooMany(usize),
}

/// Split a batch body into its messages (at most `max_entries`), sharing the body's memory.
pub fn decode_batch(body: &Bytes, max_entries: usize) -> Result<Vec<BatchEntry>, BatchError> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        if entries.len() == max_entries {
            return Err(BatchError::TooMany(max_entries));
        }
        let mut buf = body.get(at..).unwrap_or_default();
        if buf.len() < ENTRY_FIXED_LEN {
            return Err(BatchError::Malformed(at));
        }
        let total = usize::try_from(buf.get_i32()).map_err(|_| BatchError::Malformed(at))?;
        let _magic = buf.get_i32();
        let _crc = buf.get_i32();
        let flag = buf.get_i32();
        let body_len = usize::try_from(buf.get_i32()).map_err(|_| BatchError::Malformed(at))?;
        if buf.len() < body_len + 2 {
            return Err(BatchError::Malformed(at));
        }
        let body_start = at + 20;
        buf.advance(body_len);
        let properties_len = usize::try_from(buf.get_i16()).map_err(|_| BatchError::Malformed(at))?;
        if buf.len() < properties_len || total != ENTRY_FIXED_LEN + body_len + properties_len {
            return Err(BatchError::Malformed(at));
        }
        let properties_start = body_start + body_len + 2;
        entries.push(BatchEntry {
            flag,
            body: body.slice(body_start..body_start + body_len),
            properties: body.slice(properties_start..properties_start + properties_len),
        });
        at += total;
    }
    Ok(entries)
}

/// Encode messages as a batch body, as the Java client does.
#[must_use]
pub fn encode_batch(entries: &[BatchEntry]) -> Bytes {
    let mut out = Vec::new();
    for entry in entries {
        let total = ENTRY_FIXED_LEN + entry.body.len() + entry.properties.len();
        out.put_i32(i32::try_from(total).unwrap_or(i32::MAX));
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(entry.flag);
        out.put_i32(i32::try_from(entry.body.len()).unwrap_or(i32::MAX));
        out.put_slice(&entry.body);
        out.put_i16(i16::try_from(entry.properties.len()).unwrap_or(i16::MAX));
        out.put_slice(&entry.properties);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_and_rejects_damage() {
        let entries = vec![
            BatchEntry {
                flag: 1,
                body: Bytes::from_static(b"hello"),
                properties: Bytes::from_static(b"TAGS\x01A\x02"),
            },
            BatchEntry { flag: 0, body: Bytes::new(), properties: Bytes::new() },
        ];
        let body = encode_batch(&entries);
        assert_eq!(decode_batch(&body, 10).unwrap(), entries);
        assert_eq!(decode_batch(&body, 1), Err(BatchError::TooMany(1)));
        let first_len = 22 + 5 + 7;
        assert_eq!(decode_batch(&body.slice(..first_len), 10).unwrap(), entries[..1]);
        for cut in (1..body.len()).filter(|&cut| cut != first_len) {
            assert!(decode_batch(&body.slice(..cut), 10).is_err(), "cut at {cut}");
        }
        let mut bad = body.to_vec();
        bad[3] = bad[3].wrapping_add(1);
        assert!(decode_batch(&Bytes::from(bad), 10).is_err());
    }
}
