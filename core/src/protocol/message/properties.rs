//! The properties string: `key 0x01 value 0x02` repeated, each pair ending with `0x02`.
//!
//! Readers split on `0x02`, then take key and value around the first `0x01`; segments with an
//! empty key or value are dropped, as Java's parser drops them.

/// Separates a key from its value.
pub const NAME_VALUE_SEPARATOR: u8 = 0x01;
/// Ends each key-value pair.
pub const PROPERTY_SEPARATOR: u8 = 0x02;

/// Well-known property keys (`MessageConst`).
pub mod keys {
    /// Space-separated business keys, indexed.
    pub const KEYS: &str = "KEYS";
    /// The message's tag.
    pub const TAGS: &str = "TAGS";
    /// `"true"` when the producer waits for the store.
    pub const WAIT: &str = "WAIT";
    /// Delay level.
    pub const DELAY: &str = "DELAY";
    /// Original topic of a retried message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// Real topic of a delayed, timed or half message.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// Real queue of a delayed, timed or half message.
    pub const REAL_QID: &str = "REAL_QID";
    /// `"true"` on a transaction half message.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group.
    pub const PGROUP: &str = "PGROUP";
    /// Client-side unique message id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// Cluster name, stamped by the broker.
    pub const CLUSTER: &str = "CLUSTER";
    /// Max retries, set by clients resending to a retry topic.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// Retry count, set by clients resending to a retry topic.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// First id of a retried message.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// A popped message's receipt handle, as a remoting pop client attaches it.
    pub const POP_CK: &str = "POP_CK";
    /// When a message was first popped (set by revive on the copies it re-puts).
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    /// Transaction id.
    pub const TRANSACTION_ID: &str = "__transactionId__";
    /// A check copy's transaction: the half queue offset of the first half message.
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    /// Checks already sent for a half message.
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// A half message's own first-check delay, in seconds.
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    /// Absolute delivery time, ms.
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Relative delay, s.
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Relative delay, ms.
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// A timed message's due time, ms, as the broker stored it in the timer topic.
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    /// An ordered message's group (5.x FIFO messages): what makes a send FIFO in metrics.
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    /// Whole-record CRC of a stored record (always the last property in Keel's store).
    pub const CRC32: &str = "__CRC32#";
}

/// The value of `key` in a properties string, without allocating. The last occurrence
/// wins, as when Java parses into a map.
#[must_use]
pub fn find<'a>(properties: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let key = key.as_bytes();
    let mut found = None;
    let mut rest = properties;
    loop {
        // Pairs end at a separator; memchr finds it with vector instructions.
        let end = memchr::memchr(PROPERTY_SEPARATOR, rest).unwrap_or(rest.len());
        let (pair, after) = rest.split_at(end);
        if let Some(value) = pair.strip_prefix(key).and_then(|v| v.strip_prefix(&[NAME_VALUE_SEPARATOR])) {
            // The key must not itself contain the separator, or it would end earlier.
            if !value.is_empty() && !key.contains(&NAME_VALUE_SEPARATOR) && !key.is_empty() {
                found = Some(value);
            }
        }
        match after.split_first() {
            Some((_, next)) => rest = next,
            None => return found,
        }
    }
}

/// The key-value pairs of a properties string, in order, as raw bytes.
pub fn pairs(properties: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    properties.split(|&b| b == PROPERTY_SEPARATOR).filter_map(|segment| {
        let at = segment.iter().position(|&b| b == NAME_VALUE_SEPARATOR)?;
        let (key, rest) = segment.split_at(at);
        let value = rest.get(1..)?;
        (!key.is_empty() && !value.is_empty()).then_some((key, value))
    })
}

/// Parse a properties string into owned pairs (invalid UTF-8 replaced), in order.
#[must_use]
pub fn parse(properties: &[u8]) -> Vec<(String, String)> {
    pairs(properties)
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// Append one pair, Java's way (the pair followed by `0x02`); `properties` must be empty or
/// end with a separator.
pub fn push(properties: &mut Vec<u8>, key: &str, value: &str) {
    properties.extend_from_slice(key.as_bytes());
    properties.push(NAME_VALUE_SEPARATOR);
    properties.extend_from_slice(value.as_bytes());
    properties.push(PROPERTY_SEPARATOR);
}

/// A copy of `properties` without the pairs whose key is in `drop` (and without malformed
/// pairs), each pair ending with `0x02`: the start of a re-stored message's properties.
#[must_use]
pub fn without(properties: &[u8], drop: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(properties.len());
    for (key, value) in pairs(properties) {
        if drop.iter().any(|d| d.as_bytes() == key) {
            continue;
        }
        out.extend_from_slice(key);
        out.push(NAME_VALUE_SEPARATOR);
        out.extend_from_slice(value);
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Encode pairs the way Java does: every pair followed by `0x02`.
#[must_use]
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        out.extend_from_slice(key.as_ref().as_bytes());
        out.push(NAME_VALUE_SEPARATOR);
        out.extend_from_slice(value.as_ref().as_bytes());
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_drops_the_named_keys_and_push_appends() {
        let raw = b"TAGS\x01A\x02DELAY\x013\x02__CRC32#\x0112345\x02";
        let mut kept = without(raw, &[keys::DELAY, keys::CRC32]);
        assert_eq!(kept, b"TAGS\x01A\x02");
        push(&mut kept, keys::REAL_QID, "0");
        assert_eq!(find(&kept, keys::REAL_QID), Some(&b"0"[..]));
        assert_eq!(find(&kept, keys::TAGS), Some(&b"A"[..]));
    }

    #[test]
    fn parses_what_java_writes_and_drops_what_java_drops() {
        let raw = b"TAGS\x01TagA\x02KEYS\x01k1 k2\x02\x01novalue\x02nokey\x01\x02junk\x02UNIQ_KEY\x01AB\x02";
        assert_eq!(
            parse(raw),
            vec![
                ("TAGS".to_owned(), "TagA".to_owned()),
                ("KEYS".to_owned(), "k1 k2".to_owned()),
                ("UNIQ_KEY".to_owned(), "AB".to_owned())
            ]
        );
        assert_eq!(find(raw, keys::TAGS), Some(&b"TagA"[..]));
        assert_eq!(find(raw, "MISSING"), None);
        assert_eq!(find(b"TAGS\x01A\x02TAGS\x01B\x02", keys::TAGS), Some(&b"B"[..]));
        // Without the trailing separator (some clients) it still reads.
        assert_eq!(find(b"TAGS\x01A", keys::TAGS), Some(&b"A"[..]));
        // A key that is the tail of another key, or a value, is not a match.
        assert_eq!(find(b"XTAGS\x01A\x02K\x01TAGS\x01\x02", keys::TAGS), None);
        assert_eq!(find(b"TAGS\x01\x02", keys::TAGS), None);
    }

    #[test]
    fn fast_find_agrees_with_the_plain_parser() {
        let samples: [&[u8]; 6] = [
            b"TAGS\x01A\x02KEYS\x01k\x02TAGS\x01B\x02",
            b"KEYS\x01TAGS\x02TAGS\x01x",
            b"\x02\x02TAGS\x01y\x02",
            b"TAGSTAGS\x01z\x02",
            b"",
            b"TAGS",
        ];
        for sample in samples {
            let plain = pairs(sample).filter(|(k, _)| *k == b"TAGS").map(|(_, v)| v).last();
            assert_eq!(find(sample, keys::TAGS), plain, "{sample:?}");
        }
    }

    #[test]
    fn encodes_with_a_separator_after_every_pair() {
        assert_eq!(encode(&[("TAGS", "A"), ("UNIQ_KEY", "AB")]), b"TAGS\x01A\x02UNIQ_KEY\x01AB\x02");
    }
}
