//! Typed custom headers: each struct names the `extFields` keys Java clients use.
//!
//! On the wire every value is a string. Reading is lenient, as real clients need: integers
//! may carry whitespace or a `.0` (C++ sends JSON numbers, which the header decoder turns
//! into their text); booleans are Java's `Boolean.parseBoolean` (only `true`, in any case)
//! plus the `1` the C++ client writes; an empty string counts as absent for optional fields
//! (Go sends `"bname":""`); unknown keys are ignored (ACL, namespace and tracing hooks add
//! them freely).

mod admin;
mod broker;
mod client;
mod controller;
mod namesrv;
mod pop;
mod send;

pub use admin::*;
pub use broker::*;
pub use client::*;
pub use controller::*;
pub use namesrv::*;
pub use pop::*;
pub use send::*;

use super::command::{ExtFields, FieldCursor};
use super::json::parse_integer;

/// A typed header that can be read from and written to `extFields`.
pub trait CommandHeader: Sized {
    /// Read the header; a missing or malformed required field is an error.
    fn decode(ext: &ExtFields) -> Result<Self, HeaderError>;
    /// Write the header's fields (absent optional fields are not written).
    fn encode(&self, ext: &mut ExtFields);

    /// The header as a fresh `ExtFields`.
    fn to_ext_fields(&self) -> ExtFields {
        // Room for a send's header (the largest in the hot path) without growing.
        let mut ext = ExtFields::with_capacity(256, 16);
        self.encode(&mut ext);
        ext
    }
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required field is absent (Java: "the custom field `<x>` is null").
    #[error("the custom field {0} is null")]
    Missing(&'static str),
    /// A field does not parse as its type.
    #[error("the custom field {field} has a bad value {value:?}")]
    Malformed {
        /// The key.
        field: &'static str,
        /// What was sent.
        value: String,
    },
}

/// A scalar that travels as text in `extFields`.
pub trait HeaderScalar: Sized {
    /// Parse the text; `None` if it is not of this type.
    fn parse(text: &str) -> Option<Self>;
    /// Append the text Java's `String.valueOf` would produce to `out` (a header's own text
    /// buffer: no string per field).
    fn render(&self, out: &mut String);
}

impl HeaderScalar for String {
    fn parse(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
    fn render(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl HeaderScalar for bool {
    fn parse(text: &str) -> Option<Self> {
        // Java's `Boolean.parseBoolean`, plus `1`: the C++ client writes booleans with
        // `to_string(bool)`, so its batch flag arrives as `"1"`.
        let text = text.trim();
        Some(text.eq_ignore_ascii_case("true") || text == "1")
    }
    fn render(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! integer_scalar {
    ($($ty:ty),*) => {
        $(
            impl HeaderScalar for $ty {
                fn parse(text: &str) -> Option<Self> {
                    // Read in place: every send's header has half a dozen of these.
                    <$ty>::try_from(parse_integer(text)?).ok()
                }
                fn render(&self, out: &mut String) {
                    use core::fmt::Write as _;
                    // Writing to a String cannot fail.
                    let _ = write!(out, "{self}");
                }
            }
        )*
    };
}
integer_scalar!(i32, i64);

/// How a field of a typed header reads and writes itself: bare types are required,
/// `Option`s are optional.
pub trait HeaderField: Sized {
    /// Read the field named `key`.
    fn read(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        Self::read_next(&mut ext.cursor(), key)
    }
    /// Read the field named `key` with `fields`, a cursor a whole header is read through.
    fn read_next(fields: &mut FieldCursor<'_>, key: &'static str) -> Result<Self, HeaderError>;
    /// Write the field named `key`.
    fn write(&self, ext: &mut ExtFields, key: &'static str);
}

impl<T: HeaderScalar> HeaderField for T {
    fn read_next(fields: &mut FieldCursor<'_>, key: &'static str) -> Result<Self, HeaderError> {
        let text = fields.get(key).ok_or(HeaderError::Missing(key))?;
        T::parse(text).ok_or_else(|| HeaderError::Malformed { field: key, value: text.to_owned() })
    }
    fn write(&self, ext: &mut ExtFields, key: &'static str) {
        ext.insert_with(key, |out| self.render(out));
    }
}

impl<T: HeaderScalar> HeaderField for Option<T> {
    fn read_next(fields: &mut FieldCursor<'_>, key: &'static str) -> Result<Self, HeaderError> {
        match fields.get(key) {
            None | Some("") => Ok(None),
            Some(text) => T::parse(text)
                .map(Some)
                .ok_or_else(|| HeaderError::Malformed { field: key, value: text.to_owned() }),
        }
    }
    fn write(&self, ext: &mut ExtFields, key: &'static str) {
        if let Some(value) = self {
            ext.insert_with(key, |out| value.render(out));
        }
    }
}

/// Declares a typed header: each field with its `extFields` key.
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::protocol::headers::CommandHeader for $name {
            fn decode(
                ext: &$crate::protocol::command::ExtFields,
            ) -> Result<Self, $crate::protocol::headers::HeaderError> {
                // Fields are read in declaration order; most headers declare them in key
                // order, which the cursor reads without a search.
                let mut fields = ext.cursor();
                Ok(Self {
                    $( $field: <$ty as $crate::protocol::headers::HeaderField>::read_next(&mut fields, $key)?, )*
                })
            }

            fn encode(&self, ext: &mut $crate::protocol::command::ExtFields) {
                $( $crate::protocol::headers::HeaderField::write(&self.$field, ext, $key); )*
            }
        }
    };
}
pub(crate) use command_header;

#[cfg(test)]
mod tests {
    use super::*;

    command_header! {
        /// A header for the tests.
        pub struct Probe {
            /// Required string.
            topic: String => "topic",
            /// Required integer.
            queue_id: i32 => "queueId",
            /// Optional long.
            offset: Option<i64> => "offset",
            /// Optional boolean.
            force: Option<bool> => "isForce",
        }
    }

    #[test]
    fn headers_read_leniently_and_write_strings() {
        let ext: ExtFields =
            [("topic", "T"), ("queueId", " 3 "), ("offset", ""), ("isForce", "TRUE"), ("AccessKey", "")]
                .into_iter()
                .collect();
        let probe = Probe::decode(&ext).unwrap();
        assert_eq!(probe, Probe { topic: "T".into(), queue_id: 3, offset: None, force: Some(true) });
        let back = probe.to_ext_fields();
        assert_eq!(back.get("queueId"), Some("3"));
        assert_eq!(back.get("offset"), None);
        assert_eq!(back.get("isForce"), Some("true"));

        let cpp: ExtFields = [("topic", "T"), ("queueId", "1"), ("isForce", "1")].into_iter().collect();
        assert_eq!(Probe::decode(&cpp).unwrap().force, Some(true));
        let json_number: ExtFields = [("topic", "T"), ("queueId", "3.0")].into_iter().collect();
        assert_eq!(Probe::decode(&json_number).unwrap().queue_id, 3);
        let missing: ExtFields = [("topic", "T")].into_iter().collect();
        assert_eq!(Probe::decode(&missing), Err(HeaderError::Missing("queueId")));
        let bad: ExtFields = [("topic", "T"), ("queueId", "x")].into_iter().collect();
        assert!(matches!(Probe::decode(&bad), Err(HeaderError::Malformed { field: "queueId", .. })));
    }

    /// Fields are written into the header's own text as Java's `String.valueOf` writes
    /// them, replacing what was there under the same key and leaving other keys alone.
    #[test]
    fn fields_are_written_in_place_as_java_writes_them() {
        let mut ext: ExtFields = [("queueId", "old"), ("zone", "z")].into_iter().collect();
        let probe =
            Probe { topic: "T\u{e9}".into(), queue_id: i32::MIN, offset: Some(i64::MAX), force: Some(false) };
        probe.encode(&mut ext);
        let fields: Vec<(&str, &str)> = ext.iter().collect();
        assert_eq!(
            fields,
            [
                ("isForce", "false"),
                ("offset", "9223372036854775807"),
                ("queueId", "-2147483648"),
                ("topic", "T\u{e9}"),
                ("zone", "z"),
            ]
        );
        assert_eq!(Probe::decode(&ext).unwrap(), probe);
    }
}
