//! serde serialization into fastjson's dialect.
//!
//! What Java peers expect: null fields omitted; enums as names; map keys that are integers
//! written bare (fastjson's default) or quoted (standard, accepted by every client); map keys
//! that are structs written as JSON objects (`Map<MessageQueue, ...>`), which is the only form
//! fastjson can read back.

use core::fmt::Write as _;

use serde::ser::{self, Serialize};

use super::JsonError;

/// How integer map keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyStyle {
    /// `{0:"a"}`: fastjson's default, what Java brokers write to config files and most bodies.
    #[default]
    Fastjson,
    /// `{"0":"a"}`: standard JSON, what Java name servers send to newer clients.
    Standard,
}

impl ser::Error for JsonError {
    fn custom<T: core::fmt::Display>(msg: T) -> Self {
        Self::Shape(msg.to_string())
    }
}

/// Write `text` as a JSON string literal, escaping quotes, backslashes and control
/// characters (as `\u00XX`, like fastjson).
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match byte {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0'));
                out.push(HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0'));
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

fn write_display(out: &mut Vec<u8>, value: impl core::fmt::Display) {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = write!(text, "{value}");
    out.extend_from_slice(text.as_bytes());
}

fn write_float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        // `{:?}` keeps a trailing `.0` for whole numbers, as Java's Double.toString does.
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Whether a serialized value was `null`, so struct fields holding it can be dropped.
type IsNull = bool;

/// Serializes one value into `out`.
pub(crate) struct Serializer<'w> {
    pub(crate) out: &'w mut Vec<u8>,
    pub(crate) keys: KeyStyle,
}

macro_rules! serialize_display {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method(self, v: $ty) -> Result<IsNull, JsonError> {
                write_display(self.out, v);
                Ok(false)
            }
        )*
    };
}

impl<'w> ser::Serializer for Serializer<'w> {
    type Ok = IsNull;
    type Error = JsonError;
    type SerializeSeq = Compound<'w>;
    type SerializeTuple = Compound<'w>;
    type SerializeTupleStruct = Compound<'w>;
    type SerializeTupleVariant = Compound<'w>;
    type SerializeMap = Compound<'w>;
    type SerializeStruct = Compound<'w>;
    type SerializeStructVariant = Compound<'w>;

    serialize_display! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_i128: i128, serialize_u128: u128,
    }

    fn serialize_bool(self, v: bool) -> Result<IsNull, JsonError> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(false)
    }

    fn serialize_f32(self, v: f32) -> Result<IsNull, JsonError> {
        write_float(self.out, f64::from(v));
        Ok(false)
    }

    fn serialize_f64(self, v: f64) -> Result<IsNull, JsonError> {
        write_float(self.out, v);
        Ok(false)
    }

    fn serialize_char(self, v: char) -> Result<IsNull, JsonError> {
        let mut buf = [0u8; 4];
        write_string(self.out, v.encode_utf8(&mut buf));
        Ok(false)
    }

    fn serialize_str(self, v: &str) -> Result<IsNull, JsonError> {
        write_string(self.out, v);
        Ok(false)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<IsNull, JsonError> {
        let mut seq = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for byte in v {
            ser::SerializeSeq::serialize_element(&mut seq, byte)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn serialize_none(self) -> Result<IsNull, JsonError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<IsNull, JsonError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<IsNull, JsonError> {
        self.out.extend_from_slice(b"null");
        Ok(true)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<IsNull, JsonError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<IsNull, JsonError> {
        write_string(self.out, variant);
        Ok(false)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<IsNull, JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<IsNull, JsonError> {
        self.out.push(b'{');
        write_string(self.out, variant);
        self.out.push(b':');
        value.serialize(Serializer { out: self.out, keys: self.keys })?;
        self.out.push(b'}');
        Ok(false)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'w>, JsonError> {
        self.out.push(b'[');
        Ok(Compound { out: self.out, keys: self.keys, first: true, close: b"]" })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'w>, JsonError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'w>, JsonError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w>, JsonError> {
        self.out.push(b'{');
        write_string(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Compound { out: self.out, keys: self.keys, first: true, close: b"]}" })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'w>, JsonError> {
        self.out.push(b'{');
        Ok(Compound { out: self.out, keys: self.keys, first: true, close: b"}" })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'w>, JsonError> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w>, JsonError> {
        self.out.push(b'{');
        write_string(self.out, variant);
        self.out.extend_from_slice(b":{");
        Ok(Compound { out: self.out, keys: self.keys, first: true, close: b"}}" })
    }
}

/// An array, object or struct being written.
pub(crate) struct Compound<'w> {
    out: &'w mut Vec<u8>,
    keys: KeyStyle,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_> {
    fn separator(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.separator();
        value.serialize(Serializer { out: self.out, keys: self.keys })?;
        Ok(())
    }

    fn finish(self) -> Result<IsNull, JsonError> {
        self.out.extend_from_slice(self.close);
        Ok(false)
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.element(value)
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.element(value)
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.element(value)
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.element(value)
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        self.separator();
        key.serialize(KeySerializer { out: self.out, keys: self.keys })
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.out.push(b':');
        value.serialize(Serializer { out: self.out, keys: self.keys })?;
        Ok(())
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

impl Compound<'_> {
    /// Write `"key":value`, or nothing at all when the value is null (fastjson omits nulls).
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), JsonError> {
        let mark = self.out.len();
        let was_first = self.first;
        self.separator();
        write_string(self.out, key);
        self.out.push(b':');
        let is_null = value.serialize(Serializer { out: self.out, keys: self.keys })?;
        if is_null {
            self.out.truncate(mark);
            self.first = was_first;
        }
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.field(key, value)
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = IsNull;
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.field(key, value)
    }
    fn end(self) -> Result<IsNull, JsonError> {
        self.finish()
    }
}

/// Serializes a map key: strings quoted, integers bare or quoted by [`KeyStyle`], structs
/// and maps as objects.
struct KeySerializer<'w> {
    out: &'w mut Vec<u8>,
    keys: KeyStyle,
}

impl KeySerializer<'_> {
    fn integer(self, v: impl core::fmt::Display) -> Result<(), JsonError> {
        match self.keys {
            KeyStyle::Fastjson => write_display(self.out, v),
            KeyStyle::Standard => {
                self.out.push(b'"');
                write_display(self.out, v);
                self.out.push(b'"');
            }
        }
        Ok(())
    }
}

macro_rules! key_integer {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $( fn $method(self, v: $ty) -> Result<(), JsonError> { self.integer(v) } )*
    };
}

macro_rules! key_unsupported {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<(), JsonError> {
                Err(JsonError::Shape(concat!("unsupported map key: ", stringify!($method)).into()))
            }
        )*
    };
}

impl<'w> ser::Serializer for KeySerializer<'w> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = ser::Impossible<(), JsonError>;
    type SerializeTuple = ser::Impossible<(), JsonError>;
    type SerializeTupleStruct = ser::Impossible<(), JsonError>;
    type SerializeTupleVariant = ser::Impossible<(), JsonError>;
    type SerializeMap = KeyCompound<'w>;
    type SerializeStruct = KeyCompound<'w>;
    type SerializeStructVariant = ser::Impossible<(), JsonError>;

    key_integer! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
    }

    key_unsupported! {
        serialize_f32(f32), serialize_f64(f64), serialize_bytes(&[u8]), serialize_none(),
        serialize_unit(), serialize_unit_struct(&'static str),
    }

    fn serialize_bool(self, v: bool) -> Result<(), JsonError> {
        write_string(self.out, if v { "true" } else { "false" });
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), JsonError> {
        let mut buf = [0u8; 4];
        write_string(self.out, v.encode_utf8(&mut buf));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), JsonError> {
        write_string(self.out, v);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), JsonError> {
        write_string(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), JsonError> {
        Err(JsonError::Shape("unsupported map key: newtype variant".into()))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, JsonError> {
        Err(JsonError::Shape("unsupported map key: sequence".into()))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, JsonError> {
        Err(JsonError::Shape("unsupported map key: tuple".into()))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, JsonError> {
        Err(JsonError::Shape("unsupported map key: tuple struct".into()))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, JsonError> {
        Err(JsonError::Shape("unsupported map key: tuple variant".into()))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<KeyCompound<'w>, JsonError> {
        let inner = ser::Serializer::serialize_map(Serializer { out: self.out, keys: self.keys }, len)?;
        Ok(KeyCompound(inner))
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<KeyCompound<'w>, JsonError> {
        let inner =
            ser::Serializer::serialize_struct(Serializer { out: self.out, keys: self.keys }, name, len)?;
        Ok(KeyCompound(inner))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, JsonError> {
        Err(JsonError::Shape("unsupported map key: struct variant".into()))
    }
}

/// An object written in key position (fastjson's `Map<MessageQueue, ...>` form).
struct KeyCompound<'w>(Compound<'w>);

impl ser::SerializeMap for KeyCompound<'_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        ser::SerializeMap::serialize_key(&mut self.0, key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        ser::SerializeMap::serialize_value(&mut self.0, value)
    }
    fn end(self) -> Result<(), JsonError> {
        self.0.finish().map(|_| ())
    }
}

impl ser::SerializeStruct for KeyCompound<'_> {
    type Ok = ();
    type Error = JsonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.0.field(key, value)
    }
    fn end(self) -> Result<(), JsonError> {
        self.0.finish().map(|_| ())
    }
}
