//! Tag hash codes: Java's `String.hashCode`, which clients put in subscriptions and the broker
//! puts in ConsumeQueue entries, so it must be bit-exact.

/// Java's `String.hashCode()`: `h = 31*h + c` over UTF-16 code units, wrapping.
#[must_use]
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The ConsumeQueue tag code of a TAGS property value (0 when absent), sign-extended.
#[must_use]
pub fn tags_code(tags: Option<&[u8]>) -> i64 {
    let Some(raw) = tags else { return 0 };
    let hash = if raw.is_ascii() {
        // ASCII bytes are their own UTF-16 code units: no decoding needed.
        raw.iter().fold(0i32, |h, &b| h.wrapping_mul(31).wrapping_add(i32::from(b)))
    } else {
        java_string_hash(&String::from_utf8_lossy(raw))
    };
    i64::from(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash(""), 0);
        // Values checked against Java: "hello".hashCode() and a wrapping, non-ASCII one.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("é"), 233);
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(tags_code(Some(b"TagA")), 2_598_919);
        assert_eq!(tags_code(None), 0);
        assert_eq!(tags_code(Some("é".as_bytes())), 233);
    }
}
