//! `RecordRules`: how a request's items become records (docs/api.md#records-v2): envelopes opened,
//! each record's partition key and explicit hash key settled, then its size checked, record by
//! record from index 0, so the first error a caller sees is the one at the lowest index.
//!
//! A record's key, first match wins: its envelope's `partition_key`, the value at
//! `partition_key_pointer` in its JSON data, the request's `partition_key`, a fresh UUID v4. Its
//! hash key: its envelope's `explicit_hash_key`, then the request's.

use super::payload::Item;
use super::{
    ExplicitHashKey, JsonPointer, Limits, PartitionKey, Record, ValidationError, envelope,
    pointer::Missing,
};

/// The request's choices that apply to every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordRules {
    /// Items are envelopes (`envelope=true`).
    pub envelope: bool,
    /// `partition_key_pointer`.
    pub pointer: Option<JsonPointer>,
    /// `partition_key`, unchecked until [`RecordRules::check`].
    pub partition_key: Option<String>,
    /// `explicit_hash_key`, unchecked until [`RecordRules::check`].
    pub explicit_hash_key: Option<String>,
}

/// [`RecordRules`] with the request-wide values checked.
#[derive(Debug, Clone)]
pub struct CheckedRules<'a> {
    rules: &'a RecordRules,
    key: Option<PartitionKey>,
    hash_key: Option<ExplicitHashKey>,
}

impl RecordRules {
    /// Checks the request-wide key and hash key (they apply before any record's own).
    pub fn check(&self) -> Result<CheckedRules<'_>, ValidationError> {
        Ok(CheckedRules {
            rules: self,
            key: self
                .partition_key
                .as_deref()
                .map(|k| PartitionKey::parse(k, None))
                .transpose()?,
            hash_key: self
                .explicit_hash_key
                .as_deref()
                .map(|k| ExplicitHashKey::parse(k, None))
                .transpose()?,
        })
    }
}

impl CheckedRules<'_> {
    /// Record `index` from its item, its key settled and its size within `limits`.
    pub fn record(
        &self,
        index: usize,
        item: Item,
        limits: &Limits,
    ) -> Result<Record, ValidationError> {
        let (data, own_key, own_hash_key) = if self.rules.envelope {
            let opened = envelope::open(&item, index)?;
            (opened.data, opened.partition_key, opened.explicit_hash_key)
        } else {
            (item, None, None)
        };
        let partition_key = match (own_key, &self.rules.pointer) {
            (Some(key), _) => PartitionKey::parse(&key, Some(index))?,
            (None, Some(pointer)) => {
                let missing = |why: &str| ValidationError::PartitionKeyNotFound {
                    index,
                    pointer: pointer.as_str().to_owned(),
                    reason: why.to_owned(),
                };
                let json = data
                    .json()
                    .ok_or_else(|| missing("the record's data is not JSON"))?;
                let key = pointer.key_in(json).map_err(|m| match m {
                    Missing::Absent => missing("nothing is there"),
                    Missing::NotAKey(what) => missing(&format!("the value there is {what}")),
                })?;
                PartitionKey::parse(&key, Some(index))?
            }
            (None, None) => self.key.clone().unwrap_or_else(PartitionKey::generate),
        };
        let explicit_hash_key = match own_hash_key {
            Some(key) => Some(ExplicitHashKey::parse(&key, Some(index))?),
            None => self.hash_key.clone(),
        };
        let record = Record {
            data: data.into_data()?,
            partition_key,
            explicit_hash_key,
        };
        limits.check_record(index, &record)?;
        Ok(record)
    }

    /// Every item as a record, lowest index first.
    pub fn records(
        &self,
        items: Vec<Item>,
        limits: &Limits,
    ) -> Result<Vec<Record>, ValidationError> {
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| self.record(index, item, limits))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const LIMITS: Limits = Limits {
        max_records: 500,
        max_record_size: 64,
        max_request_size: 1024,
    };

    fn json(text: &str) -> Item {
        Item::Json(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn rules(envelope: bool, pointer: Option<&str>, key: Option<&str>) -> RecordRules {
        RecordRules {
            envelope,
            pointer: pointer.map(|p| JsonPointer::parse(p).unwrap()),
            partition_key: key.map(str::to_owned),
            explicit_hash_key: Some("5".into()),
        }
    }

    #[test]
    fn the_key_precedence_is_envelope_then_pointer_then_query_then_uuid() {
        let r = rules(true, Some("/u"), Some("q"));
        let c = r.check().unwrap();
        let own = c
            .record(
                0,
                json(r#"{"data": {"u": "p"}, "partition_key": "e", "explicit_hash_key": "9"}"#),
                &LIMITS,
            )
            .unwrap();
        assert_eq!(own.partition_key.as_str(), "e");
        assert_eq!(own.explicit_hash_key.unwrap().as_str(), "9");
        let pointed = c
            .record(1, json(r#"{"data": {"u": "p"}}"#), &LIMITS)
            .unwrap();
        assert_eq!(pointed.partition_key.as_str(), "p");
        assert_eq!(
            pointed.explicit_hash_key.unwrap().as_str(),
            "5",
            "the query's hash key"
        );
        assert_eq!(pointed.data, &br#"{"u": "p"}"#[..]);

        let q = rules(false, None, Some("q"));
        let c = q.check().unwrap();
        assert_eq!(
            c.record(0, json("1"), &LIMITS)
                .unwrap()
                .partition_key
                .as_str(),
            "q"
        );
        let none = rules(false, None, None);
        let c = none.check().unwrap();
        let key = c.record(0, json("1"), &LIMITS).unwrap().partition_key;
        assert_eq!(key.as_str().len(), 36, "a UUID");
    }

    #[test]
    fn per_record_errors_carry_their_index_in_api_md_order() {
        let r = rules(false, Some("/id"), None);
        let c = r.check().unwrap();
        let items = vec![
            json(r#"{"id": "a"}"#),
            json(r#"{"id": null}"#),
            json(r#"{"no": 1}"#),
        ];
        assert!(matches!(
            c.records(items, &LIMITS),
            Err(ValidationError::PartitionKeyNotFound { index: 1, .. })
        ));
        let raw = c.record(3, Item::Raw(Bytes::from_static(b"x")), &LIMITS);
        assert!(matches!(
            raw,
            Err(ValidationError::PartitionKeyNotFound { index: 3, .. })
        ));
        // The key is checked before the size: a 300-character key in a huge record is a key error.
        let long = format!(
            r#"{{"id": "{}", "pad": "{}"}}"#,
            "k".repeat(300),
            "x".repeat(100)
        );
        assert!(matches!(
            c.record(0, json(&long), &LIMITS),
            Err(ValidationError::InvalidPartitionKey { index: Some(0), .. })
        ));
        let big = format!(r#"{{"id": "k", "pad": "{}"}}"#, "x".repeat(100));
        assert!(matches!(
            c.record(7, json(&big), &LIMITS),
            Err(ValidationError::RecordTooLarge { index: 7, .. })
        ));
        let env = rules(true, None, None);
        let c = env.check().unwrap();
        assert!(matches!(
            c.record(
                2,
                json(r#"{"data": 1, "explicit_hash_key": "01"}"#),
                &LIMITS
            ),
            Err(ValidationError::InvalidExplicitHashKey { index: Some(2), .. })
        ));
    }

    #[test]
    fn request_wide_values_are_checked_once() {
        let mut r = rules(false, None, Some(""));
        assert!(matches!(
            r.check(),
            Err(ValidationError::InvalidPartitionKey { index: None, .. })
        ));
        r.partition_key = None;
        r.explicit_hash_key = Some("-1".into());
        assert!(matches!(
            r.check(),
            Err(ValidationError::InvalidExplicitHashKey { index: None, .. })
        ));
    }
}
