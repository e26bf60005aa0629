//! serde deserialization from a parsed [`Value`], lenient the way RocketMQ's peers need:
//! a number may arrive as a string and a string as a number (the Go client sends tag hash
//! codes as strings), map keys may be quoted or bare integers or whole objects, and
//! unknown fields are ignored.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::value::{parse_integer, Value};
use super::JsonError;

impl de::Error for JsonError {
    fn custom<T: core::fmt::Display>(msg: T) -> Self {
        Self::Shape(msg.to_string())
    }
}

/// Deserializes from a borrowed [`Value`].
pub(crate) struct ValueDeserializer<'a>(pub(crate) &'a Value);

impl ValueDeserializer<'_> {
    fn integer(&self) -> Result<i64, JsonError> {
        match self.0 {
            Value::Number(text) | Value::String(text) => {
                parse_integer(text).ok_or_else(|| JsonError::Shape(format!("not an integer: {text:?}")))
            }
            Value::Bool(b) => Ok(i64::from(*b)),
            other => Err(JsonError::Shape(format!("expected an integer, found {}", kind(other)))),
        }
    }

    fn float(&self) -> Result<f64, JsonError> {
        match self.0 {
            Value::Number(text) | Value::String(text) => {
                text.trim().parse().map_err(|_| JsonError::Shape(format!("not a number: {text:?}")))
            }
            other => Err(JsonError::Shape(format!("expected a number, found {}", kind(other)))),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident as $ty:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
                let wide = self.integer()?;
                let narrow = <$ty>::try_from(wide)
                    .map_err(|_| JsonError::Shape(format!("{wide} out of range")))?;
                visitor.$visit(narrow)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(text) => {
                if let Ok(v) = text.parse::<i64>() {
                    visitor.visit_i64(v)
                } else if let Ok(v) = text.parse::<u64>() {
                    visitor.visit_u64(v)
                } else {
                    visitor.visit_f64(self.float()?)
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Seq { items: items.iter() }),
            Value::Object(entries) => visitor.visit_map(Map { entries: entries.iter(), value: None }),
        }
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8 as i8,
        deserialize_i16 => visit_i16 as i16,
        deserialize_i32 => visit_i32 as i32,
        deserialize_i64 => visit_i64 as i64,
        deserialize_u8 => visit_u8 as u8,
        deserialize_u16 => visit_u16 as u16,
        deserialize_u32 => visit_u32 as u32,
        deserialize_u64 => visit_u64 as u64,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Bool(b) => visitor.visit_bool(*b),
            // Java's Boolean.parseBoolean: "true" in any case is true, anything else false.
            Value::String(s) => visitor.visit_bool(s.eq_ignore_ascii_case("true")),
            Value::Number(n) => visitor.visit_bool(n != "0"),
            other => Err(JsonError::Shape(format!("expected a boolean, found {}", kind(other)))),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::String(s) | Value::Number(s) => visitor.visit_str(s),
            Value::Bool(b) => visitor.visit_str(if *b { "true" } else { "false" }),
            other => Err(JsonError::Shape(format!("expected a string, found {}", kind(other)))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq { items: items.iter() }),
            // fastjson writes an empty collection as [] but some peers send null.
            Value::Null => visitor.visit_seq(Seq { items: [].iter() }),
            other => Err(JsonError::Shape(format!("expected an array, found {}", kind(other)))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.0 {
            Value::Object(entries) => visitor.visit_map(Map { entries: entries.iter(), value: None }),
            Value::Null => visitor.visit_map(Map { entries: [].iter(), value: None }),
            other => Err(JsonError::Shape(format!("expected an object, found {}", kind(other)))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        match self.0 {
            // Java enums are written as their names: unit variants only.
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(JsonError::Shape(format!("expected an enum name, found {}", kind(other)))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_unit()
    }
}

struct Seq<'a> {
    items: core::slice::Iter<'a, Value>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = JsonError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, JsonError> {
        self.items.next().map(|item| seed.deserialize(ValueDeserializer(item))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: core::slice::Iter<'a, (Value, Value)>,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = JsonError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, JsonError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(ValueDeserializer(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, JsonError> {
        let value = self.value.take().ok_or_else(|| JsonError::Shape("value without key".into()))?;
        seed.deserialize(ValueDeserializer(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
