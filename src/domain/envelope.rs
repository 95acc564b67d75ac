//! Envelopes (`envelope=true`, docs/api.md#envelopes): a record given as `{"data": <any JSON>}` or
//! `{"data_base64": "<RFC 4648>"}` (exactly one), with optional `"partition_key"` and
//! `"explicit_hash_key"` strings. Anything else is `invalid_envelope`, with the record's index.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserializer;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ValidationError;
use super::payload::Item;

/// An opened envelope: the record's data and the keys it names for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub data: Item,
    pub partition_key: Option<String>,
    pub explicit_hash_key: Option<String>,
}

/// Opens the envelope `item` (record `index` of the request).
pub fn open(item: &Item, index: usize) -> Result<Opened, ValidationError> {
    let invalid = |reason: &str| ValidationError::InvalidEnvelope {
        index,
        reason: reason.to_owned(),
    };
    let (Item::Json(json), Some(text)) = (item, item.json()) else {
        return Err(invalid("an envelope must be a JSON object"));
    };
    let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(text) else {
        return Err(invalid("an envelope must be a JSON object"));
    };
    let mut opened = Opened {
        data: Item::Raw(Bytes::new()),
        partition_key: None,
        explicit_hash_key: None,
    };
    let (mut data, mut base64) = (None, None);
    for (name, value) in members {
        let slot = match name.as_ref() {
            "data" => &mut data,
            "data_base64" => &mut base64,
            "partition_key" | "explicit_hash_key" => {
                let field = if name == "partition_key" {
                    &mut opened.partition_key
                } else {
                    &mut opened.explicit_hash_key
                };
                let Ok(text) = serde_json::from_str::<String>(value.get()) else {
                    return Err(invalid(&format!("\"{name}\" must be a JSON string")));
                };
                if field.replace(text).is_some() {
                    return Err(invalid(&format!("\"{name}\" is given twice")));
                }
                continue;
            }
            other => {
                return Err(invalid(&format!(
                    "unknown field {other:?} (known: data, data_base64, partition_key, explicit_hash_key)"
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(invalid(&format!("\"{name}\" is given twice")));
        }
    }
    opened.data = match (data, base64) {
        (Some(raw), None) => Item::Json(json.slice_ref(raw.get().as_bytes())),
        (None, Some(raw)) => {
            let Ok(text) = serde_json::from_str::<Cow<'_, str>>(raw.get()) else {
                return Err(invalid("\"data_base64\" must be a JSON string"));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| invalid(&format!("\"data_base64\" is not RFC 4648 base64: {e}")))?;
            Item::Raw(Bytes::from(bytes))
        }
        (Some(_), Some(_)) => return Err(invalid("give \"data\" or \"data_base64\", not both")),
        (None, None) => return Err(invalid("\"data\" or \"data_base64\" is required")),
    };
    Ok(opened)
}

/// An object's members in order, duplicates kept (a map would silently keep one of them).
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some((name, value)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((name, value));
                }
                Ok(Members(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_text(text: &str) -> Result<Opened, ValidationError> {
        open(&Item::Json(Bytes::copy_from_slice(text.as_bytes())), 4)
    }

    #[test]
    fn data_or_data_base64_with_optional_keys() {
        let o = open_text(r#"{"data": {"a": 1}, "partition_key": "k", "explicit_hash_key": "7"}"#)
            .unwrap();
        assert_eq!(o.data.into_data().unwrap(), &br#"{"a": 1}"#[..]);
        assert_eq!(o.partition_key.as_deref(), Some("k"));
        assert_eq!(o.explicit_hash_key.as_deref(), Some("7"));
        let o = open_text(r#"{"data": "text"}"#).unwrap();
        assert_eq!(o.data.into_data().unwrap(), &b"text"[..]);
        let o = open_text(r#"{"data": null}"#).unwrap();
        assert_eq!(o.data.into_data().unwrap(), &b"null"[..]);
        let o = open_text(r#"{"data_base64": "AP8="}"#).unwrap();
        assert_eq!(o.data.into_data().unwrap(), &b"\x00\xff"[..]);
    }

    #[test]
    fn anything_else_is_invalid_envelope_with_its_index() {
        for bad in [
            r#"[1]"#,
            r#""data""#,
            r#"{}"#,
            r#"{"data": 1, "data_base64": "AA=="}"#,
            r#"{"data": 1, "extra": 2}"#,
            r#"{"data": 1, "data": 2}"#,
            r#"{"data_base64": "not base64!"}"#,
            r#"{"data_base64": 5}"#,
            r#"{"data": 1, "partition_key": 5}"#,
            r#"{"data": 1, "explicit_hash_key": 5}"#,
            r#"{"data": 1, "partition_key": "a", "partition_key": "b"}"#,
        ] {
            assert!(
                matches!(
                    open_text(bad),
                    Err(ValidationError::InvalidEnvelope { index: 4, .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            open(&Item::Raw(Bytes::from_static(b"{}")), 0),
            Err(ValidationError::InvalidEnvelope { index: 0, .. })
        ));
    }
}
