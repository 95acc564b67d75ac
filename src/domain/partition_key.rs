//! `PartitionKey` and the key policy: a given key is checked, a missing one is a fresh UUID v4.

use super::ValidationError;

/// Kinesis' partition-key limit: 256 characters, counted as the service counts them (UTF-16 code
/// units, so an emoji counts 2). <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecord.html>
pub const MAX_PARTITION_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey(String);

impl PartitionKey {
    /// A caller-supplied key: 1–256 UTF-16 code units. An over-long key is refused, never cut,
    /// because cutting would silently change which shard the caller's records land on. `index`
    /// is the record whose own key it is (`None` for the request's `partition_key`).
    pub fn parse(key: &str, index: Option<usize>) -> Result<Self, ValidationError> {
        let units = key.encode_utf16().count();
        if units == 0 || units > MAX_PARTITION_KEY_LEN {
            return Err(ValidationError::InvalidPartitionKey {
                limit: MAX_PARTITION_KEY_LEN,
                actual: units,
                index,
            });
        }
        Ok(Self(key.to_owned()))
    }

    /// A random key, as the Python class makes it: `str(uuid.uuid4())`, 36 lowercase chars.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_utf16_code_units() {
        let cases: &[(&str, Result<(), usize>)] = &[
            ("k", Ok(())),
            (&"a".repeat(256), Ok(())),
            (&"é".repeat(256), Ok(())), // 2 UTF-8 bytes, 1 UTF-16 unit each
            (&"😀".repeat(128), Ok(())), // 2 units each: exactly 256
            ("", Err(0)),
            (&"a".repeat(257), Err(257)),
            (&"😀".repeat(129), Err(258)),
        ];
        for (key, want) in cases {
            let got = PartitionKey::parse(key, None)
                .map(|_| ())
                .map_err(|e| match e {
                    ValidationError::InvalidPartitionKey { actual, limit, .. } => {
                        assert_eq!(limit, 256);
                        actual
                    }
                    other => panic!("unexpected {other:?}"),
                });
            assert_eq!(&got, want, "key of {} chars", key.chars().count());
        }
    }

    #[test]
    fn generated_keys_are_lowercase_hyphenated_uuid_v4() {
        let a = PartitionKey::generate();
        let b = PartitionKey::generate();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(a.as_str(), a.as_str().to_lowercase());
    }
}
