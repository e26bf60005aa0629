//! `ExtFields`: a command's custom header, string keys to string values.
//!
//! Every frame carries one (a send has fifteen fields), so it is built for decoding: all
//! keys and values live back to back in one text buffer, and a small index sorted by key
//! points into it. Decoding a header costs two allocations however many fields it has,
//! where a map of `String`s cost two per field. Fields iterate in key order, so encoded
//! frames are deterministic.
//!
//! | part | holds |
//! |---|---|
//! | `text` | key, value, key, value, … in insertion order (replaced values stay as garbage) |
//! | `index` | per field: the key's and the value's byte ranges in `text`, sorted by key |

use core::cmp::Ordering;
use core::ops::Range;

/// `a.cmp(b)`, byte by byte: header keys are a few bytes, shorter than a call to `memcmp`
/// is worth.
fn compare(a: &str, b: &str) -> Ordering {
    a.bytes().cmp(b.bytes())
}

/// A command's custom header: string keys to string values, as every client sends them.
///
/// Values are kept as text; typed headers parse them leniently.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    index: Vec<(Range<usize>, Range<usize>)>,
}

impl ExtFields {
    /// No fields.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// No fields, with room for `text` bytes of keys and values and `fields` fields: a
    /// decoder sizes it from the header once.
    #[must_use]
    pub fn with_capacity(text: usize, fields: usize) -> Self {
        Self { text: String::with_capacity(text), index: Vec::with_capacity(fields) }
    }

    fn slice(&self, range: &Range<usize>) -> &str {
        // Ranges are made by `push_text_with` from the text's own lengths, on char boundaries.
        self.text.get(range.clone()).unwrap_or_default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        // Clients write keys in order (fastjson sorts them): a key past the last one is
        // the common case, settled by one comparison.
        let last = self.index.len().checked_sub(1);
        match last.and_then(|at| self.index.get(at)).map(|(k, _)| compare(self.slice(k), key)) {
            None | Some(Ordering::Less) => Err(self.index.len()),
            Some(Ordering::Equal) => last.ok_or(0),
            Some(Ordering::Greater) => self.index.binary_search_by(|(k, _)| compare(self.slice(k), key)),
        }
    }

    /// Append what `render` writes to the text; its range there.
    fn push_text_with(&mut self, render: impl FnOnce(&mut String)) -> Range<usize> {
        let start = self.text.len();
        render(&mut self.text);
        start..self.text.len()
    }

    /// The raw value of `key`, including an empty string if the peer sent one.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        let at = self.find(key).ok()?;
        self.index.get(at).map(|(_, value)| self.slice(value))
    }

    /// A reader for fields asked in key order, as typed headers mostly declare them.
    #[must_use]
    pub fn cursor(&self) -> FieldCursor<'_> {
        FieldCursor { fields: self, next: 0 }
    }

    /// Set `key` to `value`, replacing any earlier value.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let value = value.as_ref();
        self.insert_with(key.as_ref(), |text| text.push_str(value));
    }

    /// Set `key` to what `render` appends to the text, replacing any earlier value: a
    /// typed header writes its numbers straight into the buffer, with no string each.
    /// `render` only appends (it is given the whole text).
    pub(crate) fn insert_with(&mut self, key: &str, render: impl FnOnce(&mut String)) {
        match self.find(key) {
            Ok(at) => {
                let value = self.push_text_with(render);
                if let Some(field) = self.index.get_mut(at) {
                    field.1 = value;
                }
            }
            Err(at) => {
                let key = self.push_text_with(|text| text.push_str(key));
                let value = self.push_text_with(render);
                self.index.insert(at, (key, value));
            }
        }
    }

    /// Remove `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.find(key).ok()?;
        let (_, value) = self.index.remove(at);
        Some(self.slice(&value).to_owned())
    }

    /// Whether there are no fields.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many fields there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The fields in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.index.iter().map(|(key, value)| (self.slice(key), self.slice(value)))
    }
}

/// Reads an [`ExtFields`] field by field, trying the field after the last one found
/// before searching: a send's header (fifteen fields, read in key order) costs one key
/// comparison per field instead of a binary search. Answers exactly as
/// [`ExtFields::get`] does, in any order.
#[derive(Debug, Clone)]
pub struct FieldCursor<'a> {
    fields: &'a ExtFields,
    next: usize,
}

impl<'a> FieldCursor<'a> {
    /// The raw value of `key`, as [`ExtFields::get`] gives it.
    pub fn get(&mut self, key: &str) -> Option<&'a str> {
        let fields = self.fields;
        let at = match fields.index.get(self.next) {
            Some((k, _)) if fields.slice(k) == key => self.next,
            _ => fields.find(key).ok()?,
        };
        self.next = at + 1;
        fields.index.get(at).map(|(_, value)| fields.slice(value))
    }
}

impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl core::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Self::new();
        for (key, value) in iter {
            fields.insert(key, value);
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map_of_strings() {
        let mut fields = ExtFields::new();
        let mut model = std::collections::BTreeMap::new();
        let ops: &[(&str, Option<&str>)] = &[
            ("topic", Some("T")),
            ("a", Some("1")),
            ("queueId", Some("3")),
            ("topic", Some("U")),
            ("a", None),
            ("", Some("empty key")),
            ("z", Some("")),
            ("queueId", None),
            ("queueId", Some("\u{e9}\u{1F600}")),
            ("ключ", Some("значение")),
        ];
        for (key, value) in ops {
            match value {
                Some(value) => {
                    fields.insert(key, value);
                    model.insert((*key).to_owned(), (*value).to_owned());
                }
                None => assert_eq!(fields.remove(key), model.remove(*key)),
            }
            let got: Vec<(&str, &str)> = fields.iter().collect();
            let want: Vec<(&str, &str)> = model.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, want);
            assert_eq!(fields.len(), model.len());
            for (k, v) in &model {
                assert_eq!(fields.get(k), Some(v.as_str()));
            }
            assert_eq!(fields.get("missing"), None);
        }
    }

    #[test]
    fn equality_and_debug_see_fields_not_layout() {
        let mut replaced = ExtFields::new();
        replaced.insert("k", "old");
        replaced.insert("k", "new");
        let direct: ExtFields = [("k", "new")].into_iter().collect();
        assert_eq!(replaced, direct);
        assert_eq!(format!("{direct:?}"), r#"{"k": "new"}"#);
        assert_ne!(direct, [("k", "other")].into_iter().collect::<ExtFields>());
    }

    /// A cursor answers as `get` does, whatever order the keys are asked in.
    #[test]
    fn a_cursor_answers_as_get_in_any_order() {
        let fields: ExtFields =
            [("a", "1"), ("b", "2"), ("c", ""), ("e", "5"), ("topic", "T")].into_iter().collect();
        let orders: &[&[&str]] = &[
            &["a", "b", "c", "d", "e", "topic", "z"],
            &["topic", "a", "e", "b", "b", "missing", "c"],
            &["z", "e", "c", "a", "", "topic", "a"],
        ];
        for order in orders {
            let mut cursor = fields.cursor();
            for key in *order {
                assert_eq!(cursor.get(key), fields.get(key), "{key} in {order:?}");
            }
        }
        assert_eq!(ExtFields::new().cursor().get("a"), None);
    }
}
