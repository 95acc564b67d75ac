//! `StreamName`: a Kinesis stream name as the API model allows it (1–128 chars of `[a-zA-Z0-9_.-]`).

use std::fmt;

use super::ValidationError;

/// Longest stream name Kinesis accepts (API model `StreamName`, max 128).
pub const MAX_STREAM_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamName(String);

impl StreamName {
    /// Checks the name locally so a typo costs no AWS call (the Python class sent anything).
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() || name.len() > MAX_STREAM_NAME_LEN || !name.chars().all(valid_char) {
            let got: String = name.chars().take(MAX_STREAM_NAME_LEN + 1).collect();
            return Err(ValidationError::InvalidStreamName { got });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_within_the_api_model() {
        for ok in ["a", "my-stream_1.v2", &"x".repeat(128)] {
            assert!(StreamName::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn refuses_names_outside_the_api_model() {
        for bad in [
            "",
            "has space",
            "slash/inside",
            "é",
            &"x".repeat(129),
            "semi;colon",
        ] {
            assert!(StreamName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
