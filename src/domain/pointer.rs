//! `JsonPointer` (RFC 6901): where in each record's JSON data its partition key is.
//!
//! The look-up walks only the pointer's path: each level is split into its members as raw JSON
//! (`RawValue`), so neither the record nor its siblings are built into a tree or re-serialised,
//! and the record's bytes go to Kinesis exactly as sent.

use std::borrow::Cow;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A parsed pointer: its unescaped reference tokens (`~1` → `/`, `~0` → `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<String>,
}

/// Why a record has no key at the pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Nothing there.
    Absent,
    /// `null`, an object or an array: no key can be made of it.
    NotAKey(&'static str),
}

impl JsonPointer {
    /// `""` (the whole value) or `/`-separated tokens; `None` for anything else (a token with a `~`
    /// not followed by `0` or `1`, or text not starting with `/`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(Self {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let rest = text.strip_prefix('/')?;
        let tokens = rest
            .split('/')
            .map(|t| {
                let mut out = String::with_capacity(t.len());
                let mut chars = t.chars();
                while let Some(c) = chars.next() {
                    match (c, c == '~') {
                        (_, false) => out.push(c),
                        (_, true) => match chars.next() {
                            Some('0') => out.push('~'),
                            Some('1') => out.push('/'),
                            _ => return None,
                        },
                    }
                }
                Some(out)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key at this pointer in `json` (one valid JSON value): a string as it is, a number as
    /// sent, `true`/`false` as text.
    pub fn key_in<'a>(&self, json: &'a str) -> Result<Cow<'a, str>, Missing> {
        let mut current: &'a str = json;
        for token in &self.tokens {
            current = member(current, token).ok_or(Missing::Absent)?;
        }
        let value = current.trim();
        match value.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<Cow<'a, str>>(value).map_err(|_| Missing::Absent),
            Some(b'{') => Err(Missing::NotAKey("an object")),
            Some(b'[') => Err(Missing::NotAKey("an array")),
            Some(b'n') => Err(Missing::NotAKey("null")),
            Some(_) => Ok(Cow::Borrowed(value)),
            None => Err(Missing::Absent),
        }
    }
}

/// The raw text of `token`'s member of the object or array `json`, if there is one.
fn member<'a>(json: &'a str, token: &str) -> Option<&'a str> {
    match json.trim_start().as_bytes().first()? {
        b'{' => {
            let mut parser = serde_json::Deserializer::from_str(json);
            let found = Member(token).deserialize(&mut parser).ok()?;
            found.map(RawValue::get)
        }
        b'[' => {
            // RFC 6901: an array index is `0` or digits without a leading zero.
            if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
                return None;
            }
            let index: usize = token.parse().ok()?;
            let items: Vec<&'a RawValue> = serde_json::from_str(json).ok()?;
            items.get(index).map(|raw| raw.get())
        }
        _ => None,
    }
}

/// Finds one member of an object while the parser walks it: no map is built and the other
/// members' values are skipped (`IgnoredAny`), which matters when every record of a batch is
/// looked up. With a repeated name the last one wins, as in a map.
struct Member<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            if name == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pointer: &str, json: &str) -> Result<String, Missing> {
        JsonPointer::parse(pointer)
            .unwrap()
            .key_in(json)
            .map(Cow::into_owned)
    }

    #[test]
    fn keys_are_strings_as_they_are_numbers_as_sent_and_booleans_as_text() {
        let doc = r#"{"user": {"id": "u\u00e9-1", "n": 1.50, "ok": true, "tags": ["a", "b"]},
                      "a/b": "slash", "m~n": "tilde", "": "empty"}"#;
        assert_eq!(key("/user/id", doc).unwrap(), "ué-1");
        assert_eq!(key("/user/n", doc).unwrap(), "1.50");
        assert_eq!(key("/user/ok", doc).unwrap(), "true");
        assert_eq!(key("/user/tags/1", doc).unwrap(), "b");
        assert_eq!(key("/a~1b", doc).unwrap(), "slash");
        assert_eq!(key("/m~0n", doc).unwrap(), "tilde");
        assert_eq!(key("/", doc).unwrap(), "empty");
        assert_eq!(key("", r#""whole""#).unwrap(), "whole");
    }

    #[test]
    fn missing_null_objects_and_arrays_are_not_keys() {
        let doc = r#"{"user": {"id": null, "o": {}, "l": []}, "list": [1]}"#;
        assert_eq!(key("/user/name", doc), Err(Missing::Absent));
        assert_eq!(key("/user/id", doc), Err(Missing::NotAKey("null")));
        assert_eq!(key("/user/o", doc), Err(Missing::NotAKey("an object")));
        assert_eq!(key("/user/l", doc), Err(Missing::NotAKey("an array")));
        assert_eq!(key("/list/01", doc), Err(Missing::Absent));
        assert_eq!(key("/list/1", doc), Err(Missing::Absent));
        assert_eq!(key("/x", "42"), Err(Missing::Absent));
    }

    #[test]
    fn malformed_pointers_are_refused() {
        for bad in ["user", "/a~2", "/a~"] {
            assert!(JsonPointer::parse(bad).is_none(), "{bad}");
        }
    }
}
