//! The JSON header (serialize type 0): what every client can read.
//!
//! Keys are written in the alphabetical order fastjson uses; readers accept any order, any
//! extra keys, `extFields` values of any scalar type (the C++ client sends some as numbers)
//! and `language` as a name or a number.

use super::code::LanguageCode;
use super::command::{ExtFields, RemotingCommand};
use std::borrow::Cow;

use super::json::{parse_integer, write_string, Reader, Value};
use super::{FrameError, SerializeType};

/// Append the JSON header of `cmd` to `out`.
pub(crate) fn encode(cmd: &RemotingCommand, out: &mut Vec<u8>) {
    use core::fmt::Write as _;
    let mut numbers = String::new();
    // Writing into a String cannot fail.
    let _ = write!(numbers, "{{\"code\":{}", cmd.code);
    out.extend_from_slice(numbers.as_bytes());
    if !cmd.ext_fields.is_empty() {
        out.extend_from_slice(b",\"extFields\":{");
        for (i, (key, value)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(out, key);
            out.push(b':');
            write_string(out, value);
        }
        out.push(b'}');
    }
    numbers.clear();
    let _ = write!(numbers, ",\"flag\":{},\"language\":", cmd.flag);
    out.extend_from_slice(numbers.as_bytes());
    write_string(out, cmd.language.json_name());
    numbers.clear();
    let _ = write!(numbers, ",\"opaque\":{}", cmd.opaque);
    out.extend_from_slice(numbers.as_bytes());
    if let Some(remark) = &cmd.remark {
        out.extend_from_slice(b",\"remark\":");
        write_string(out, remark);
    }
    out.extend_from_slice(b",\"serializeTypeCurrentRPC\":\"JSON\"");
    numbers.clear();
    let _ = write!(numbers, ",\"version\":{}}}", cmd.version);
    out.extend_from_slice(numbers.as_bytes());
}

/// Decode a JSON header into a command with an empty body, straight from the text: the
/// fields a command has are read in place and everything else is skipped, with no value
/// tree in between.
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let mut cmd = RemotingCommand {
        code: 0,
        language: LanguageCode::OTHER,
        version: 0,
        opaque: 0,
        flag: 0,
        remark: None,
        // Keys and values are never longer than the header that carries them.
        ext_fields: ExtFields::with_capacity(header.len(), 16),
        body: bytes::Bytes::new(),
        serialize_type: SerializeType::Json,
    };
    let mut reader = Reader::new(header).map_err(FrameError::BadJson)?;
    reader.skip_ws();
    if reader.peek() != Some(b'{') {
        // Not an object: a syntax error if it is not a JSON value at all.
        reader.value(0).map_err(FrameError::BadJson)?;
        if !reader.at_end() {
            return Err(FrameError::BadJson(reader.error("trailing characters after the value")));
        }
        return Err(FrameError::BadHeader("JSON header is not an object"));
    }
    object_entries(&mut reader, 0, |reader, key| {
        let Scalar::Text(key) = key else {
            scalar(reader, 1)?;
            return Ok(());
        };
        match &*key {
            "code" => cmd.code = int_value(&scalar(reader, 1)?)?,
            "version" => cmd.version = int_value(&scalar(reader, 1)?)?,
            "opaque" => cmd.opaque = int_value(&scalar(reader, 1)?)?,
            "flag" => cmd.flag = int_value(&scalar(reader, 1)?)?,
            "language" => {
                cmd.language = match scalar(reader, 1)? {
                    Scalar::Text(name) => LanguageCode::from_name(&name),
                    Scalar::Number(n) => parse_integer(n)
                        .and_then(|v| u8::try_from(v).ok())
                        .map_or(LanguageCode::OTHER, LanguageCode),
                    _ => LanguageCode::OTHER,
                }
            }
            "remark" => cmd.remark = scalar(reader, 1)?.text().map(Cow::into_owned),
            "extFields" => {
                reader.skip_ws();
                if reader.peek() == Some(b'{') {
                    object_entries(reader, 1, |reader, key| {
                        let value = scalar(reader, 2)?;
                        // Null values are absent fields, as Java treats them.
                        if let (Some(key), Some(value)) = (key.text(), value.text()) {
                            cmd.ext_fields.insert(key, value);
                        }
                        Ok(())
                    })?;
                } else if !matches!(scalar(reader, 1)?, Scalar::Null) {
                    return Err(FrameError::BadHeader("extFields is not an object"));
                }
            }
            _ => {
                scalar(reader, 1)?;
            }
        }
        Ok(())
    })?;
    if !reader.at_end() {
        return Err(FrameError::BadJson(reader.error("trailing characters after the value")));
    }
    Ok(cmd)
}

/// A value as the header decoder sees it: scalars as text, borrowed where the header has
/// them unescaped; objects and arrays are checked and dropped.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    Text(Cow<'a, str>),
    Composite,
}

impl<'a> Scalar<'a> {
    /// The text Java's `String.valueOf` would give; `None` for null, arrays and objects.
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Self::Text(text) => Some(text),
            Self::Number(n) => Some(Cow::Borrowed(n)),
            Self::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Self::Null | Self::Composite => None,
        }
    }
}

/// The value at the cursor, at nesting `depth`.
fn scalar<'a>(reader: &mut Reader<'a>, depth: usize) -> Result<Scalar<'a>, FrameError> {
    reader.skip_ws();
    let scalar = match reader.peek() {
        Some(quote @ (b'"' | b'\'')) => {
            reader.bump();
            Scalar::Text(reader.string(quote).map_err(FrameError::BadJson)?)
        }
        Some(b'-' | b'0'..=b'9') => Scalar::Number(reader.number().map_err(FrameError::BadJson)?),
        _ => match reader.value(depth).map_err(FrameError::BadJson)? {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(b),
            _ => Scalar::Composite,
        },
    };
    Ok(scalar)
}

/// The key at the cursor (a bare identifier, or any value) of an object at `depth`.
fn key<'a>(reader: &mut Reader<'a>, depth: usize) -> Result<Scalar<'a>, FrameError> {
    match reader.identifier() {
        Some(ident) => Ok(Scalar::Text(Cow::Borrowed(ident))),
        None => scalar(reader, depth + 1),
    }
}

/// Walk the object at the cursor (at nesting `depth`), handing each key to `entry`, which
/// reads its value.
fn object_entries<'a>(
    reader: &mut Reader<'a>,
    depth: usize,
    mut entry: impl FnMut(&mut Reader<'a>, Scalar<'a>) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    reader.expect(b'{', "expected an object").map_err(FrameError::BadJson)?;
    reader.skip_ws();
    if reader.peek() == Some(b'}') {
        reader.bump();
        return Ok(());
    }
    loop {
        let key = key(reader, depth)?;
        reader.expect(b':', "expected : after object key").map_err(FrameError::BadJson)?;
        entry(reader, key)?;
        reader.skip_ws();
        match reader.bump() {
            Some(b',') => {}
            Some(b'}') => return Ok(()),
            _ => return Err(FrameError::BadJson(reader.error("expected , or } in object"))),
        }
    }
}

/// A field that must be a 32-bit integer: a number or numeric string; null reads as 0.
fn int_value(value: &Scalar<'_>) -> Result<i32, FrameError> {
    let text = match value {
        Scalar::Null => return Ok(0),
        Scalar::Number(n) => n,
        Scalar::Text(t) => &**t,
        Scalar::Bool(_) | Scalar::Composite => "",
    };
    parse_integer(text)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or(FrameError::BadHeader("header field is not a 32-bit integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder this one replaced: the whole header parsed into a value tree first.
    /// Kept as the reference the fast decoder must agree with.
    fn decode_via_tree(header: &[u8]) -> Result<RemotingCommand, FrameError> {
        let Value::Object(entries) = Value::parse(header).map_err(FrameError::BadJson)? else {
            return Err(FrameError::BadHeader("JSON header is not an object"));
        };
        let mut cmd = RemotingCommand {
            code: 0,
            language: LanguageCode::OTHER,
            version: 0,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: bytes::Bytes::new(),
            serialize_type: SerializeType::Json,
        };
        let int_value = |value: &Value| match value {
            Value::Null => Ok(0),
            _ => value
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or(FrameError::BadHeader("header field is not a 32-bit integer")),
        };
        for (key, value) in entries {
            let Value::String(key) = key else { continue };
            match key.as_str() {
                "code" => cmd.code = int_value(&value)?,
                "version" => cmd.version = int_value(&value)?,
                "opaque" => cmd.opaque = int_value(&value)?,
                "flag" => cmd.flag = int_value(&value)?,
                "language" => {
                    cmd.language = match &value {
                        Value::String(name) => LanguageCode::from_name(name),
                        Value::Number(_) => value
                            .as_i64()
                            .and_then(|v| u8::try_from(v).ok())
                            .map_or(LanguageCode::OTHER, LanguageCode),
                        _ => LanguageCode::OTHER,
                    }
                }
                "remark" => cmd.remark = value.into_scalar_text(),
                "extFields" => match value {
                    Value::Null => {}
                    Value::Object(fields) => {
                        for (key, val) in fields {
                            if let (Some(key), Some(val)) = (key.into_scalar_text(), val.into_scalar_text()) {
                                cmd.ext_fields.insert(key, val);
                            }
                        }
                    }
                    _ => return Err(FrameError::BadHeader("extFields is not an object")),
                },
                _ => {}
            }
        }
        Ok(cmd)
    }

    fn agree(header: &[u8]) {
        let fast = decode(header);
        let tree = decode_via_tree(header);
        match (&fast, &tree) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(header)),
            (Err(_), Err(_)) => {}
            _ => panic!("decoders disagree on {:?}: {fast:?} vs {tree:?}", String::from_utf8_lossy(header)),
        }
    }

    #[test]
    fn agrees_with_the_tree_decoder_on_what_clients_send() {
        let mut encoded = Vec::new();
        let ext: ExtFields =
            [("a", "group"), ("b", "Topic"), ("e", "3"), ("i", "TAGS\u{1}A\u{2}")].into_iter().collect();
        let mut cmd = RemotingCommand::request(crate::protocol::RequestCode(310), 42, ext);
        cmd.remark = Some("say \"hi\"\n".into());
        encode(&cmd, &mut encoded);
        agree(&encoded);
        assert_eq!(decode(&encoded).unwrap().ext_fields, cmd.ext_fields);
        for header in [
            &br#"{"code":10,"extFields":{"topic":"T","queueId":3,"ok":true,"n":null,"o":{"x":1},"l":[1]},"flag":0,"language":"CPP","opaque":7,"serializeTypeCurrentRPC":"JSON","version":317}"#[..],
            br#"{"code":"10","language":5,"opaque":-1,"flag":null,"remark":12.5,"extFields":null}"#,
            br#"{code:1,extFields:{a:'x',1:2,true:"t",null:"n"},remark:false,language:[1],x:{"y":[{}]}}"#,
            br#" { "extFields" : { "k" : "v1" } , "extFields" : { "k" : "v2", "j": "w" } , "code" : 3 , "code" : 4 } "#,
            br#"{1:2,"code":5}"#,
            br#"{"language":"\u0050YTHON","opaque":3.0,"version":1e2,"extFields":{"\u00e9":"\ud83d\ude00"}}"#,
            br#"{}"#,
        ] {
            agree(header);
            assert!(decode(header).is_ok(), "{}", String::from_utf8_lossy(header));
        }
    }

    #[test]
    fn agrees_with_the_tree_decoder_on_bad_headers() {
        for header in [
            &b""[..],
            b"[]",
            b"\"x\"",
            b"{",
            b"{\"code\":}",
            b"{\"code\":1.5}",
            b"{\"code\":4294967296}",
            b"{\"code\":true}",
            b"{\"code\":{}}",
            b"{\"extFields\":[]}",
            b"{\"extFields\":\"x\"}",
            b"{\"extFields\":{\"a\":}}",
            b"{\"remark\":\"\\q\"}",
            b"{\"code\":1} x",
            b"{\"code\":1,}",
            b"{\"a\":\"\xff\"}",
            b"{\"code\":1 \"flag\":2}",
        ] {
            agree(header);
            assert!(decode(header).is_err(), "{}", String::from_utf8_lossy(header));
        }
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        agree(deep.as_bytes());
        assert!(decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn agrees_with_the_tree_decoder_on_random_headers() {
        use rand::{Rng, SeedableRng};
        let pieces: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b"\"code\"",
            b"\"extFields\"",
            b"\"language\"",
            b"\"remark\"",
            b"\"opaque\"",
            b"\"flag\"",
            b"\"version\"",
            b"\"k\"",
            b"'s'",
            b"1",
            b"-2",
            b"3.0",
            b"1e3",
            b"null",
            b"true",
            b"false",
            b" ",
            b"ident",
            b"\"\\u00e9\"",
            b"\"\\n\"",
            b"\"JAVA\"",
            b"9999999999",
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut header = b"{".to_vec();
            for _ in 0..rng.gen_range(0..24) {
                header.extend_from_slice(pieces[rng.gen_range(0..pieces.len())]);
            }
            if rng.gen_bool(0.7) {
                header.push(b'}');
            }
            agree(&header);
            accepted += usize::from(decode(&header).is_ok());
        }
        // The generator must reach valid headers too, or agreement would be on errors only.
        assert!(accepted > 500, "only {accepted} valid headers generated");
    }
}
