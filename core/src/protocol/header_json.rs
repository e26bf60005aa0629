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

fn int_value(value: &Value) -> Result<i32, FrameError> {
    match value {
        Value::Null => Ok(0),
        _ => value
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or(FrameError::BadHeader("header field is not a 32-bit integer")),
    }
}

/// Decode a JSON header into a command with an empty body.
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
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
    // Values are moved out of the parsed tree, not copied: headers arrive with every frame.
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
                        // Null values are absent fields, as Java treats them.
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
