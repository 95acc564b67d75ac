//! `ExplicitHashKey`: the 128-bit hash a caller may give to choose a record's shard directly.

use super::ValidationError;

/// A decimal in `0..=2^128-1`, written as Kinesis wants it: `0`, or digits with no leading zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplicitHashKey(String);

impl ExplicitHashKey {
    /// Checks `key`; `index` is the record it belongs to (`None` for the query parameter).
    pub fn parse(key: &str, index: Option<usize>) -> Result<Self, ValidationError> {
        // u128's parser also takes a leading '+': the digit check rules that out.
        if is_canonical_decimal(key) && key.parse::<u128>().is_ok() {
            return Ok(Self(key.to_owned()));
        }
        Err(ValidationError::InvalidExplicitHashKey {
            index,
            got: key.chars().take(64).collect(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as the number Kinesis compares with a shard's hash-key range.
    pub fn value(&self) -> u128 {
        self.0.parse().expect("checked by parse")
    }
}

/// Digits only, `0` or without a leading zero: how Kinesis writes its big numbers
/// (`ExplicitHashKey`, `SequenceNumberForOrdering`).
pub fn is_canonical_decimal(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_canonical_and_at_most_2_pow_128_minus_1() {
        let max = u128::MAX.to_string();
        for ok in ["0", "1", "42", max.as_str()] {
            assert_eq!(ExplicitHashKey::parse(ok, None).unwrap().as_str(), ok);
        }
        let over = "340282366920938463463374607431768211456"; // 2^128
        for bad in ["", "01", "00", "+1", "-1", "1.0", "1e3", " 1", "abc", over] {
            assert!(
                matches!(
                    ExplicitHashKey::parse(bad, Some(2)),
                    Err(ValidationError::InvalidExplicitHashKey { index: Some(2), .. })
                ),
                "{bad:?}"
            );
        }
    }
}
