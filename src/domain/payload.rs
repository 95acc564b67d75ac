//! `Payload`: the record data carried by a request body, mapped exactly as docs/api.md#record-data
//! says.
//!
//! A JSON string becomes its decoded text; any other JSON value is kept as the bytes the client
//! sent (no re-serialisation, so numbers, key order and escapes survive). Record data is sliced out
//! of the body buffer (`Bytes::slice_ref`) rather than copied.
//!
//! A batch keeps at most `max_records` items: each kept item costs far more memory than its text
//! (a `[0,0,…]` body of 16 MiB is 8.4 M items, which took 500 MiB when all were kept). Past the
//! limit nothing more is kept, and `too_many_records` still gives the exact count: the rest of a
//! JSON array is read to its end without keeping anything (so a malformed one is still a 400),
//! the rest of an NDJSON body is only counted, line by line, not parsed.

use bytes::Bytes;
use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
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
    /// One JSON value per line (`application/x-ndjson`, `application/jsonl`): always a batch.
    Ndjson,
    /// UTF-8 text taken verbatim, like a Python `str`.
    Text,
    /// Bytes taken verbatim, like a Python `bytes`.
    Binary,
}

/// One record as the body gave it, before its key is settled (`domain::rules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A JSON value: its text as sent, sliced from the body (validated UTF-8 JSON).
    Json(Bytes),
    /// Bytes taken verbatim: a text/plain or octet-stream body, or an envelope's `data_base64`.
    Raw(Bytes),
}

impl Item {
    /// The record's data (docs/api.md#record-data): a JSON string is its decoded text, any other
    /// JSON value its text exactly as sent, raw bytes as they are.
    pub fn into_data(self) -> Result<Bytes, ValidationError> {
        let json = match self {
            Self::Raw(bytes) => return Ok(bytes),
            Self::Json(json) => json,
        };
        let Some(inner) = json.strip_prefix(b"\"").and_then(|t| t.strip_suffix(b"\"")) else {
            return Ok(json);
        };
        if memchr::memchr(b'\\', inner).is_none() {
            return Ok(json.slice_ref(inner));
        }
        // Escapes must be decoded; a lone surrogate (`"\ud800"`) has no UTF-8 form and is refused.
        let decoded: String = serde_json::from_slice(&json).map_err(|e| invalid_json(&e))?;
        Ok(Bytes::from(decoded))
    }

    /// The JSON text, for look-ups inside the record (`None` for raw bytes).
    pub fn json(&self) -> Option<&str> {
        match self {
            // Sliced from a body that was checked to be UTF-8 (or from an envelope inside one).
            Self::Json(json) => std::str::from_utf8(json).ok(),
            Self::Raw(_) => None,
        }
    }
}

/// The records a request body carries, before partition keys are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Single(Item),
    Batch(Vec<Item>),
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
        let item = match kind {
            BodyKind::Binary => Item::Raw(body),
            BodyKind::Text => {
                utf8(&body)?;
                Item::Raw(body)
            }
            BodyKind::Json | BodyKind::Ndjson => {
                let text = utf8(&body)?;
                check_json(text, MAX_JSON_DEPTH)?;
                let raw: &RawValue = serde_json::from_str(text).map_err(|e| invalid_json(&e))?;
                Item::Json(body.slice_ref(raw.get().as_bytes()))
            }
        };
        Ok(Self::Single(item))
    }

    /// One record per element of a top-level JSON array, at most `max_records` of them (more is
    /// `TooManyRecords`, with the exact count).
    pub fn batch(body: &Bytes, max_records: usize) -> Result<Self, ValidationError> {
        let text = utf8(body)?;
        check_json(text, MAX_JSON_DEPTH + 1)?; // + the batch's own array
        let mut parser = serde_json::Deserializer::from_str(text);
        let parsed = parser
            .deserialize_seq(ElementsVisitor { max_records })
            .and_then(|elements| parser.end().map(|()| elements));
        let items = match parsed {
            Ok(Elements::Kept(items)) => items,
            Ok(Elements::Counted(actual)) => {
                return Err(ValidationError::TooManyRecords {
                    limit: max_records,
                    actual,
                });
            }
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
        Ok(Self::Batch(
            items
                .into_iter()
                .map(|raw| Item::Json(body.slice_ref(raw.get().as_bytes())))
                .collect(),
        ))
    }

    /// One record per line of JSON (`\n` or `\r\n`; blank lines skipped; a last line without a
    /// newline counts). Each line is checked and sliced as a raw value, never built into a tree; a
    /// bad line is refused with its 1-based number. At most `max_records` lines are kept; past
    /// them the lines are only checked and counted, for `TooManyRecords`.
    pub fn ndjson(body: &Bytes, max_records: usize) -> Result<Self, ValidationError> {
        let text = utf8(body)?;
        let mut items = Vec::new();
        let mut lines = text.split('\n').enumerate();
        let blank = |line: &str| line.trim().is_empty();
        while let Some((n, line)) = lines.next() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if blank(line) {
                continue;
            }
            if items.len() == max_records {
                // One line too many: the rest is only counted (parsing 8 M lines to refuse them
                // took seconds), so a bad line past the limit gets this 422, not its 400.
                return Err(ValidationError::TooManyRecords {
                    limit: max_records,
                    actual: max_records + 1 + lines.filter(|(_, l)| !blank(l)).count(),
                });
            }
            let bad = |reason: String| ValidationError::InvalidLine {
                line: n + 1,
                reason,
            };
            check_json(line, MAX_JSON_DEPTH).map_err(|e| bad(e.to_string()))?;
            let raw: &RawValue =
                serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            items.push(Item::Json(body.slice_ref(raw.get().as_bytes())));
        }
        if items.is_empty() {
            return Err(ValidationError::EmptyBatch);
        }
        Ok(Self::Batch(items))
    }
}

/// A top-level array's elements: kept as raw values, or only their count when there are more
/// than the limit.
enum Elements<'a> {
    Kept(Vec<&'a RawValue>),
    Counted(usize),
}

/// Reads a top-level array, keeping up to `max_records` elements.
struct ElementsVisitor {
    max_records: usize,
}

impl<'de> Visitor<'de> for ElementsVisitor {
    type Value = Elements<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // No `size_hint` pre-allocation: a hint from the input must not size our memory.
        let mut items = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            if items.len() == self.max_records {
                // Over the limit: drop what was kept, and read the rest only to count it (and to
                // find any syntax error in it), keeping nothing.
                drop(items);
                let mut count = self.max_records + 1;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
                return Ok(Elements::Counted(count));
            }
            items.push(raw);
        }
        Ok(Elements::Kept(items))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn single(kind: BodyKind, body: &[u8]) -> Result<Bytes, ValidationError> {
        match Payload::single(kind, Bytes::copy_from_slice(body))? {
            Payload::Single(item) => item.into_data(),
            Payload::Batch(_) => unreachable!(),
        }
    }

    fn data(payload: Payload) -> Result<Vec<Bytes>, ValidationError> {
        match payload {
            Payload::Batch(items) => items.into_iter().map(Item::into_data).collect(),
            Payload::Single(_) => unreachable!(),
        }
    }

    fn batch(body: &str) -> Result<Vec<Bytes>, ValidationError> {
        data(Payload::batch(
            &Bytes::copy_from_slice(body.as_bytes()),
            usize::MAX,
        )?)
    }

    fn ndjson(body: &str) -> Result<Vec<Bytes>, ValidationError> {
        data(Payload::ndjson(
            &Bytes::copy_from_slice(body.as_bytes()),
            usize::MAX,
        )?)
    }

    #[test]
    fn ndjson_lines_crlf_blank_lines_and_a_last_line_without_newline() {
        let got = ndjson("{\"a\": 1}\r\n\n  \n\"text\"\r\n[1, 2]\n\n7").unwrap();
        let want: Vec<&[u8]> = vec![br#"{"a": 1}"#, b"text", b"[1, 2]", b"7"];
        assert_eq!(got, want);
        assert_eq!(ndjson("\n \r\n"), Err(ValidationError::EmptyBatch));
        let mut body: String = (1..=36).map(|i| format!("{i}\n")).collect();
        body.push_str("{nope\n38\n");
        assert!(matches!(
            ndjson(&body),
            Err(ValidationError::InvalidLine { line: 37, .. })
        ));
        // A line is one value: two on a line, or an array spread over lines, is refused.
        assert!(matches!(
            ndjson("1 2\n"),
            Err(ValidationError::InvalidLine { line: 1, .. })
        ));
        assert!(matches!(
            ndjson("[1,\n2]"),
            Err(ValidationError::InvalidLine { line: 1, .. })
        ));
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

    /// Issue #22 item 1: past `max_records` nothing more is kept, the count stays exact, and a
    /// syntax error anywhere is still a 400 (parsing comes before the count: docs/api.md#order-of-checks).
    #[test]
    fn a_batch_over_the_limit_keeps_nothing_more_and_counts_exactly() {
        let wide = |n: usize, sep: &str| {
            let mut body = String::from("0");
            body.push_str(&format!("{sep}0").repeat(n - 1));
            Bytes::from(body)
        };
        let array = |n| {
            let inner = wide(n, ",");
            Bytes::from([b"[".as_slice(), &inner, b"]"].concat())
        };
        let too_many = |limit, actual| Err(ValidationError::TooManyRecords { limit, actual });
        assert_eq!(Payload::batch(&array(501), 500), too_many(500, 501));
        assert_eq!(
            Payload::batch(&array(1_000_000), 500),
            too_many(500, 1_000_000)
        );
        assert_eq!(Payload::batch(&array(500), 500).map(|p| p.len()), Ok(500));
        assert_eq!(Payload::ndjson(&wide(501, "\n"), 500), too_many(500, 501));
        assert_eq!(
            Payload::ndjson(&wide(500, "\n"), 500).map(|p| p.len()),
            Ok(500)
        );

        let broken_tail = Bytes::from(format!("[{}, NaN]", "0,".repeat(999) + "0"));
        assert!(matches!(
            Payload::batch(&broken_tail, 500),
            Err(ValidationError::InvalidBody(_))
        ));
        let trailing = Bytes::from(format!("[{}] x", "0,".repeat(999) + "0"));
        assert!(matches!(
            Payload::batch(&trailing, 500),
            Err(ValidationError::InvalidBody(_))
        ));
        // NDJSON past the limit is counted, not parsed (blank lines still do not count).
        let broken_line = Bytes::from(format!("{}{{\n\n \r\n", "0\n".repeat(1000)));
        assert_eq!(Payload::ndjson(&broken_line, 500), too_many(500, 1001));
        let broken_early = Bytes::from(format!("{{\n{}", "0\n".repeat(1000)));
        assert!(matches!(
            Payload::ndjson(&broken_early, 500),
            Err(ValidationError::InvalidLine { line: 1, .. })
        ));
        assert_eq!(
            Payload::batch(&Bytes::from_static(b"{}"), 5),
            Err(ValidationError::DataMustBeList)
        );
        assert_eq!(
            Payload::batch(&Bytes::from_static(b"[]"), 5),
            Err(ValidationError::EmptyBatch)
        );
    }
}
