//! The JSON header (serialize type 0): what every client can read.
//!
//! Keys are written in the alphabetical order fastjson uses; readers accept any order, any
//! extra keys, `extFields` values of any scalar type (the C++ client sends some as numbers)
//! and `language` as a name or a number.

use super::code::LanguageCode;
use super::command::{ExtFields, RemotingCommand};
use super::json::{write_string, Value};
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

fn int_field(header: &Value, key: &'static str) -> Result<i32, FrameError> {
    match header.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or(FrameError::BadHeader("header field is not a 32-bit integer")),
    }
}

/// Decode a JSON header into a command with an empty body.
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let value = Value::parse(header).map_err(FrameError::BadJson)?;
    if !matches!(value, Value::Object(_)) {
        return Err(FrameError::BadHeader("JSON header is not an object"));
    }
    let language = match value.get("language") {
        Some(Value::String(name)) => LanguageCode::from_name(name),
        Some(number @ Value::Number(_)) => {
            number.as_i64().and_then(|v| u8::try_from(v).ok()).map_or(LanguageCode::OTHER, LanguageCode)
        }
        _ => LanguageCode::OTHER,
    };
    let remark = match value.get("remark") {
        None | Some(Value::Null) => None,
        Some(other) => other.scalar_text(),
    };
    let mut ext_fields = ExtFields::new();
    match value.get("extFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (key, val) in entries {
                let (Some(key), Some(val)) = (key.scalar_text(), val.scalar_text()) else {
                    // Null values are absent fields, as Java treats them.
                    continue;
                };
                ext_fields.insert(key, val);
            }
        }
        Some(_) => return Err(FrameError::BadHeader("extFields is not an object")),
    }
    Ok(RemotingCommand {
        code: int_field(&value, "code")?,
        language,
        version: int_field(&value, "version")?,
        opaque: int_field(&value, "opaque")?,
        flag: int_field(&value, "flag")?,
        remark,
        ext_fields,
        body: bytes::Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}
