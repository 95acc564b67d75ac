//! `Payload`: the record data carried by a request body, mapped exactly as API.md §1 says.
//!
//! A JSON string becomes its decoded text; any other JSON value is kept as the bytes the client
//! sent (no re-serialisation, so numbers, key order and escapes survive). Record data is sliced out
//! of the body buffer (`Bytes::slice_ref`) rather than copied.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::ValidationError;

/// Deepest nesting of arrays/objects accepted in one record (serde_json's own default for parsed
/// values). Raw values are scanned without recursion, so this guards consumers, not us.
pub const MAX_JSON_DEPTH: usize = 128;

/// `record_per_entry=false` (one `PutRecord`) or `true` (one `PutRecords` entry per array element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Single,
    Batch,
}

/// How the body is to be read, decided from its media type by the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// One JSON value (single mode) or a JSON array of values (batch mode).
    Json,
    /// UTF-8 text taken verbatim, like a Python `str`.
    Text,
    /// Bytes taken verbatim, like a Python `bytes`.
    Binary,
}

/// Record data before partition keys are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Single(Bytes),
    Batch(Vec<Bytes>),
}

impl Payload {
    /// How many records the payload holds.
    pub fn len(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Batch(items) => items.len(),
        }
    }

    /// Never true for a parsed payload (an empty batch is refused); here for completeness.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One record from the whole body.
    pub fn single(kind: BodyKind, body: Bytes) -> Result<Self, ValidationError> {
        let data = match kind {
            BodyKind::Binary => body,
            BodyKind::Text => {
                utf8(&body)?;
                body
            }
            BodyKind::Json => {
                let text = utf8(&body)?;
                check_json(text, MAX_JSON_DEPTH)?;
                let raw: &RawValue = serde_json::from_str(text).map_err(|e| invalid_json(&e))?;
                record_data(&body, raw)?
            }
        };
        Ok(Self::Single(data))
    }

    /// One record per element of a top-level JSON array.
    pub fn batch(body: &Bytes) -> Result<Self, ValidationError> {
        let text = utf8(body)?;
        check_json(text, MAX_JSON_DEPTH + 1)?; // + the batch's own array
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(items) => items,
            // Tell "valid JSON, wrong shape" (the KinesisWriterError the Python class raised) apart
            // from "not JSON at all"; only this error path pays for the second parse.
            Err(e) => {
                return Err(match serde_json::from_str::<&RawValue>(text) {
                    Ok(_) => ValidationError::DataMustBeList,
                    Err(_) => invalid_json(&e),
                });
            }
        };
        if items.is_empty() {
            return Err(ValidationError::EmptyBatch);
        }
        let data = items
            .into_iter()
            .map(|raw| record_data(body, raw))
            .collect::<Result<_, _>>()?;
        Ok(Self::Batch(data))
    }
}

fn utf8(body: &[u8]) -> Result<&str, ValidationError> {
    std::str::from_utf8(body)
        .map_err(|e| ValidationError::InvalidBody(format!("body is not valid UTF-8: {e}")))
}

/// What serde_json's raw-value parsing lets through but a strict consumer would choke on: nesting
/// deeper than `max` (counting `[` and `{` outside strings), and `\u` escapes that are lone UTF-16
/// surrogates (no character has them; Python's and serde_json's own parsers refuse them).
/// One pass over the bytes; syntax errors are left for the parser to report.
fn check_json(text: &str, max: usize) -> Result<(), ValidationError> {
    let bytes = text.as_bytes();
    let (mut i, mut depth) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = skip_string(bytes, i + 1)?;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ValidationError::InvalidBody(format!(
                        "JSON is nested deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Skips a string body starting at `i` (after its opening quote); returns the index after the
/// closing quote. Refuses lone surrogate escapes.
fn skip_string(bytes: &[u8], mut i: usize) -> Result<usize, ValidationError> {
    let lone =
        || ValidationError::InvalidBody("JSON string has a lone UTF-16 surrogate escape".into());
    while i < bytes.len() {
        // Jump to the next quote or backslash: string bodies are most of a record's bytes, and
        // memchr scans them a vector at a time (this check was 4% of scenario b's profile).
        let Some(at) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
            return Ok(bytes.len());
        };
        i += at;
        if bytes[i] == b'"' {
            return Ok(i + 1);
        }
        // A backslash: only `\u` escapes can be lone surrogates; any other escape is two bytes.
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        match hex4(bytes, i + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = bytes.get(i + 6) == Some(&b'\\') && bytes.get(i + 7) == Some(&b'u');
                if !(low && matches!(hex4(bytes, i + 8), Some(0xDC00..=0xDFFF))) {
                    return Err(lone());
                }
                i += 12;
            }
            Some(0xDC00..=0xDFFF) => return Err(lone()),
            _ => i += 6,
        }
    }
    Ok(i)
}

fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

fn invalid_json(e: &serde_json::Error) -> ValidationError {
    ValidationError::InvalidBody(format!("body is not valid JSON: {e}"))
}

/// The record bytes for one JSON value that lies inside `body`.
fn record_data(body: &Bytes, raw: &RawValue) -> Result<Bytes, ValidationError> {
    let text = raw.get();
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Ok(body.slice_ref(text.as_bytes()));
    };
    if !inner.contains('\\') {
        return Ok(body.slice_ref(inner.as_bytes()));
    }
    // Escapes must be decoded; a lone surrogate (`"\ud800"`) has no UTF-8 form and is refused here.
    let decoded: String = serde_json::from_str(text).map_err(|e| invalid_json(&e))?;
    Ok(Bytes::from(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(kind: BodyKind, body: &[u8]) -> Result<Bytes, ValidationError> {
        match Payload::single(kind, Bytes::copy_from_slice(body))? {
            Payload::Single(b) => Ok(b),
            Payload::Batch(_) => unreachable!(),
        }
    }

    fn batch(body: &str) -> Result<Vec<Bytes>, ValidationError> {
        match Payload::batch(&Bytes::copy_from_slice(body.as_bytes()))? {
            Payload::Batch(b) => Ok(b),
            Payload::Single(_) => unreachable!(),
        }
    }

    #[test]
    fn json_values_map_to_record_bytes_as_api_md_says() {
        let cases: &[(&str, &str)] = &[
            (r#""hello""#, "hello"),
            (r#"  "hello"  "#, "hello"),
            (r#""tab\there \u00e9""#, "tab\there é"),
            (
                r#"{"b": 1.50, "a": "\u00e9"}"#,
                r#"{"b": 1.50, "a": "\u00e9"}"#,
            ),
            ("\n [1, 2,  3]\n", "[1, 2,  3]"),
            ("12345678901234567890", "12345678901234567890"),
            ("true", "true"),
            ("null", "null"),
            (r#""""#, ""),
        ];
        for (body, want) in cases {
            let got = single(BodyKind::Json, body.as_bytes()).unwrap();
            assert_eq!(got, want.as_bytes(), "body {body:?}");
        }
    }

    #[test]
    fn invalid_json_is_invalid_body() {
        for body in [
            "",
            "{",
            "NaN",
            "[1, Infinity]",
            "{} {}",
            r#""\ud800""#,
            "[1,]",
        ] {
            let err = single(BodyKind::Json, body.as_bytes()).unwrap_err();
            assert!(
                matches!(err, ValidationError::InvalidBody(_)),
                "body {body:?}: {err:?}"
            );
        }
        let err = single(BodyKind::Json, b"\"\xff\"").unwrap_err();
        assert!(matches!(err, ValidationError::InvalidBody(_)));
    }

    #[test]
    fn deeply_nested_json_is_refused_not_a_stack_overflow() {
        let body = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(matches!(
            single(BodyKind::Json, body.as_bytes()),
            Err(ValidationError::InvalidBody(_))
        ));
        assert!(matches!(batch(&body), Err(ValidationError::InvalidBody(_))));
        let at_limit = "[".repeat(128) + &"]".repeat(128);
        assert!(single(BodyKind::Json, at_limit.as_bytes()).is_ok());
        assert!(batch(&format!("[{at_limit}]")).is_ok());
        let strings_do_not_count = format!(r#"["{}\"{}"]"#, "[".repeat(500), "{".repeat(500));
        assert!(single(BodyKind::Json, strings_do_not_count.as_bytes()).is_ok());
    }

    #[test]
    fn lone_surrogates_are_refused_anywhere_and_pairs_kept() {
        for body in [
            r#""\ud800""#,
            r#"{"a": "\ud800"}"#,
            r#"["\udc00x"]"#,
            r#"{"\ud83dx": 1}"#,
        ] {
            let err = single(BodyKind::Json, body.as_bytes()).unwrap_err();
            assert!(matches!(err, ValidationError::InvalidBody(_)), "{body}");
        }
        assert!(matches!(
            batch(r#"[{"a": "\udfff"}]"#),
            Err(ValidationError::InvalidBody(_))
        ));
        let pair = r#"{"a": "\ud83d\ude00", "b": "\\ud800"}"#; // an escaped backslash is not an escape
        assert_eq!(
            single(BodyKind::Json, pair.as_bytes()).unwrap(),
            pair.as_bytes()
        );
    }

    #[test]
    fn text_and_binary_bodies_are_verbatim() {
        assert_eq!(
            single(BodyKind::Text, "  é \n".as_bytes()).unwrap(),
            "  é \n".as_bytes()
        );
        assert!(matches!(
            single(BodyKind::Text, b"\xff"),
            Err(ValidationError::InvalidBody(_))
        ));
        assert_eq!(
            single(BodyKind::Binary, b"\x00\xff").unwrap(),
            &b"\x00\xff"[..]
        );
    }

    #[test]
    fn batch_items_follow_the_same_mapping() {
        let got = batch(r#"["text", {"k": "v"}, 7, null, [1,2], true, "a\"b"]"#).unwrap();
        let want: Vec<&[u8]> = vec![
            b"text",
            br#"{"k": "v"}"#,
            b"7",
            b"null",
            b"[1,2]",
            b"true",
            b"a\"b",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn batch_shape_errors() {
        assert_eq!(batch(r#"{"a": 1}"#), Err(ValidationError::DataMustBeList));
        assert_eq!(batch(r#""text""#), Err(ValidationError::DataMustBeList));
        assert_eq!(batch("[]"), Err(ValidationError::EmptyBatch));
        assert!(matches!(
            batch("[1, NaN]"),
            Err(ValidationError::InvalidBody(_))
        ));
    }
}
