//! A lenient JSON reader for fastjson's dialect, into a small value tree.
//!
//! fastjson (what Java RocketMQ uses) writes map keys that standard JSON forbids: unquoted
//! integers (`{0:"10.0.0.1:10911"}`) and whole objects (`{{"topic":"T",...}:{...}}`). It also
//! reads single-quoted strings and bare identifier keys. This reader accepts all of that, and
//! raw control characters inside strings, which some clients send unescaped.
//!
//! It never panics on input and bounds nesting, since the bytes come from peers.

use super::JsonError;

/// Deepest nesting accepted; deeper input is an error, not a stack overflow.
const MAX_DEPTH: usize = 128;

/// A parsed JSON value. Numbers keep their text so no precision is lost and a number can be
/// read back as whatever type the reader wants; object keys may be any value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written.
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, in document order; keys are usually strings but fastjson allows any value.
    Object(Vec<(Value, Value)>),
}

impl Value {
    /// Parse one JSON value that makes up the whole input (surrounding whitespace allowed).
    pub fn parse(input: &[u8]) -> Result<Self, JsonError> {
        let mut reader = Reader::new(input)?;
        let value = reader.value(0)?;
        reader.skip_ws();
        if reader.pos != input.len() {
            return Err(reader.error("trailing characters after the value"));
        }
        Ok(value)
    }

    /// The value of `key` if this is an object with a string key of that name.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Object(entries) => entries.iter().find_map(|(k, v)| match k {
                Self::String(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// A scalar rendered as the string Java's `String.valueOf` would give; `None` for null,
    /// arrays and objects. This is how header values sent as JSON numbers are read leniently.
    #[must_use]
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Self::String(s) => Some(s.clone()),
            Self::Number(n) => Some(n.clone()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Null | Self::Array(_) | Self::Object(_) => None,
        }
    }

    /// Like [`scalar_text`](Self::scalar_text), moving the text out instead of copying it.
    #[must_use]
    pub fn into_scalar_text(self) -> Option<String> {
        match self {
            Self::String(s) | Self::Number(s) => Some(s),
            Self::Bool(b) => Some(b.to_string()),
            Self::Null | Self::Array(_) | Self::Object(_) => None,
        }
    }

    /// A number (or a numeric string) as an `i64`.
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(n) | Self::String(n) => parse_integer(n),
            _ => None,
        }
    }
}

/// Read a JSON integer, also accepting a whole-valued decimal such as `3.0`.
pub(crate) fn parse_integer(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(v) = text.parse::<i64>() {
        return Some(v);
    }
    let float: f64 = text.parse().ok()?;
    // Only exact whole numbers inside i64's range are accepted.
    let in_range = float.is_finite() && float.fract() == 0.0 && float.abs() < 9.2e18;
    #[expect(clippy::cast_possible_truncation, reason = "checked whole and in range just above")]
    in_range.then_some(float as i64)
}

/// Where the string starting `rest` stops: the first `quote` or backslash. Header strings
/// are mostly a few bytes, so the first 64 are scanned eight at a time (sooner than a
/// vectorized search gets going); a longer one (properties) goes to memchr.
fn string_stop(rest: &[u8], quote: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let (quotes, backslashes) = (ONES * u64::from(quote), ONES * u64::from(b'\\'));
    let mut words = rest.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref().take(8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else { break };
        let word = u64::from_le_bytes(word);
        let (q, b) = (word ^ quotes, word ^ backslashes);
        // A zero byte in q or b is a match. The lowest flagged byte is always a true match
        // (a borrow only flags bytes above one), and little-endian puts the first byte lowest.
        let flagged = (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b) & HIGHS;
        if flagged != 0 {
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = rest.get(at..).unwrap_or_default();
    let found = if at < 64 {
        tail.iter().position(|&b| b == quote || b == b'\\')
    } else {
        memchr::memchr2(quote, b'\\', tail)
    };
    found.map(|len| at + len)
}

/// A cursor over JSON text: the tree parser's, and the header decoder's, which reads a
/// frame header straight into a command without building a tree.
pub(crate) struct Reader<'a> {
    /// The input, checked to be UTF-8 once (JSON text that is not is refused anyway:
    /// outside a string no such byte is allowed, inside one the string is not text).
    text: &'a str,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub(crate) fn new(input: &'a [u8]) -> Result<Self, JsonError> {
        let text = core::str::from_utf8(input)
            .map_err(|e| JsonError::Syntax { what: "input is not UTF-8", at: e.valid_up_to() })?;
        Ok(Self { text, input, pos: 0 })
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.input.len()
    }

    pub(crate) fn error(&self, what: &'static str) -> JsonError {
        JsonError::Syntax { what, at: self.pos }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    pub(crate) fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    pub(crate) fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        self.skip_ws();
        if self.bump() == Some(byte) {
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(quote @ (b'"' | b'\'')) => {
                self.pos += 1;
                self.string(quote).map(|s| Value::String(s.into_owned()))
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(|n| Value::Number(n.to_owned())),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Value) -> Result<Value, JsonError> {
        let end = self.pos + word.len();
        if self.input.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(value)
        } else {
            Err(self.error("bad literal"))
        }
    }

    /// A number's text, as written.
    pub(crate) fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = self.digits();
        if digits == 0 {
            return Err(self.error("number without digits"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("number without fraction digits"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("number without exponent digits"));
            }
        }
        // Only ASCII digits, signs, dots and exponents were consumed: char boundaries.
        Ok(self.text.get(start..self.pos).unwrap_or_default())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A string's text after its opening `quote`, unescaped: borrowed from the input when
    /// it has no escapes, as header strings almost never do.
    pub(crate) fn string(&mut self, quote: u8) -> Result<std::borrow::Cow<'a, str>, JsonError> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        if let Some(len) = string_stop(rest, quote) {
            if rest.get(len) == Some(&quote) {
                // The quote is ASCII, so both ends are char boundaries of the checked text.
                let text = self.text.get(self.pos..self.pos + len).unwrap_or_default();
                self.pos += len + 1;
                return Ok(std::borrow::Cow::Borrowed(text));
            }
        }
        self.escaped_string(quote).map(std::borrow::Cow::Owned)
    }

    fn escaped_string(&mut self, quote: u8) -> Result<String, JsonError> {
        let mut out = String::new();
        loop {
            let rest = self.input.get(self.pos..).unwrap_or_default();
            let len = rest.iter().position(|&b| b == quote || b == b'\\').unwrap_or(rest.len());
            // The run ends at an ASCII byte or the input's end: a slice of the checked text.
            out.push_str(self.text.get(self.pos..self.pos + len).unwrap_or_default());
            self.pos += len;
            match self.bump() {
                Some(b'\\') => out.push(self.escape()?),
                Some(_) => break,
                None => return Err(self.error("unterminated string")),
            }
        }
        Ok(out)
    }

    /// The character an escape (after its backslash) stands for.
    fn escape(&mut self) -> Result<char, JsonError> {
        let byte = self.bump().ok_or_else(|| self.error("unterminated escape"))?;
        let simple = match byte {
            b'"' => '"',
            b'\'' => '\'',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return Err(self.error("unknown escape")),
        };
        Ok(simple)
    }

    /// A `\uXXXX` escape (after its `u`), with its low surrogate if it is a high one.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            // A high surrogate must be followed by an escaped low surrogate.
            if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                return Err(self.error("lone high surrogate"));
            }
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("bad low surrogate"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("escape is not a character"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut code = 0u32;
        for _ in 0..4 {
            let byte = self.bump().ok_or_else(|| self.error("short \\u escape"))?;
            let digit = (byte as char).to_digit(16).ok_or_else(|| self.error("bad hex digit"))?;
            code = code * 16 + digit;
        }
        Ok(code)
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.bump() {
                Some(b',') => {}
                Some(b']') => return Ok(Value::Array(items)),
                _ => return Err(self.error("expected , or ] in array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(entries));
        }
        loop {
            let key = self.key(depth)?;
            self.expect(b':', "expected : after object key")?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            self.skip_ws();
            match self.bump() {
                Some(b',') => {}
                Some(b'}') => return Ok(Value::Object(entries)),
                _ => return Err(self.error("expected , or } in object")),
            }
        }
    }

    /// A key: any value, or a bare identifier (fastjson's unquoted field names).
    fn key(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.identifier() {
            Some(ident) => Ok(Value::String(ident.to_owned())),
            None => self.value(depth + 1),
        }
    }

    /// A bare identifier at the cursor (after whitespace), if there is one.
    pub(crate) fn identifier(&mut self) -> Option<&'a str> {
        self.skip_ws();
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$')) {
            return None;
        }
        let start = self.pos;
        while matches!(self.peek(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'$')) {
            self.pos += 1;
        }
        // Only ASCII letters, digits, '_' and '$' were consumed: char boundaries.
        Some(self.text.get(start..self.pos).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(entries: Vec<(Value, Value)>) -> Value {
        Value::Object(entries)
    }
    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }
    fn n(text: &str) -> Value {
        Value::Number(text.to_owned())
    }

    #[test]
    fn reads_fastjson_integer_and_object_keys() {
        let v = Value::parse(br#"{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"}}"#).unwrap();
        let addrs = v.get("brokerAddrs").unwrap();
        assert_eq!(addrs, &obj(vec![(n("0"), s("10.0.0.1:10911")), (n("1"), s("10.0.0.2:10911"))]));
        let v = Value::parse(br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:12}}"#).unwrap();
        let table = v.get("offsetTable").unwrap();
        let key = obj(vec![(s("brokerName"), s("b")), (s("queueId"), n("0")), (s("topic"), s("T"))]);
        assert_eq!(table, &obj(vec![(key, n("12"))]));
    }

    #[test]
    fn reads_escapes_surrogates_and_raw_control_characters() {
        let v = Value::parse(b"\"TAGS\\u0001A\\u0002\\ud83d\\ude00\x01raw\"").unwrap();
        assert_eq!(v, s("TAGS\u{1}A\u{2}\u{1F600}\u{1}raw"));
        assert_eq!(Value::parse(b"'single'").unwrap(), s("single"));
        assert_eq!(Value::parse(b"{bare:1}").unwrap(), obj(vec![(s("bare"), n("1"))]));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b"{"[..],
            b"{\"a\" 1}",
            b"[1,",
            b"\"\\ud800x\"",
            b"-",
            b"1.",
            b"tru",
            b"{} x",
            b"\"\\u12\"",
            b"\"\xff\"",
        ] {
            assert!(Value::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(
            Value::parse(deep.as_bytes()),
            Err(JsonError::Syntax { what: "nesting too deep", .. })
        ));
    }

    #[test]
    fn integers_parse_leniently() {
        assert_eq!(parse_integer("42"), Some(42));
        assert_eq!(parse_integer("-7"), Some(-7));
        assert_eq!(parse_integer("3.0"), Some(3));
        assert_eq!(parse_integer("3.5"), None);
        assert_eq!(parse_integer("1e30"), None);
        assert_eq!(Value::parse(b"\"17\"").unwrap().as_i64(), Some(17));
    }

    #[test]
    fn a_string_stops_at_its_first_quote_or_backslash_wherever_it_is() {
        for len in 0..150 {
            for (stop, quote) in [(b'"', b'"'), (b'\\', b'"'), (b'\'', b'\'')] {
                // Bytes next to the stops (0x21, 0x5B, 0x5D, 0x26) and high bytes around.
                let mut text: Vec<u8> =
                    (0..len).map(|i| [b'!', b'[', b']', b'&', 0xC3, 0xA9][i % 6]).collect();
                text.push(stop);
                text.extend_from_slice(b"\"tail\\");
                assert_eq!(super::string_stop(&text, quote), Some(len), "len {len} stop {stop}");
            }
            let plain = vec![b'a'; len];
            assert_eq!(super::string_stop(&plain, b'"'), None);
        }
    }
}
