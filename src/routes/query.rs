//! The query string of a write: decoded strictly (`parse_query`), then read into `WriteQuery`, the
//! one list of the write's parameters, which also describes them in the OpenAPI document, and
//! combined with the body's kind into the service's `WriteRequest` (docs/api.md#parameters).

use bytes::Bytes;
use utoipa::IntoParams;

use crate::domain::explicit_hash_key::is_canonical_decimal;
use crate::domain::{BodyKind, JsonPointer, Payload, RecordRules, ValidationError, WriteMode};
use crate::service::WriteRequest;

/// The query parameters of a write: the one list of them. The OpenAPI document describes this
/// struct (`IntoParams`), [`WriteQuery::parse`] fills it strictly, and the names an unknown
/// parameter is told about come from the same description ([`known_parameters`]).
#[derive(Debug, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WriteQuery {
    /// `true`: the body is a JSON array and each element becomes one record (PutRecords).
    /// `false` (default): the whole body is one record (PutRecord). Exactly `true` or `false`.
    /// An NDJSON body is always a batch: absent or `true`.
    #[param(example = true)]
    pub(super) record_per_entry: Option<bool>,
    /// 1–256 characters (UTF-16 code units). Absent: a UUID v4 per call (single mode) or per
    /// record (batch mode). A record's own key (envelope, pointer) wins over it.
    /// (`maxLength` counts code points, Kinesis UTF-16 units: a character outside the Basic
    /// Multilingual Plane, such as an emoji, counts 2 towards the 256.)
    #[param(min_length = 1, max_length = 256, example = "user-42")]
    partition_key: Option<String>,
    /// Batch mode: `true` sends a batch over 500 records or over the request-size limit as several
    /// PutRecords calls, merged into one answer; `false` refuses it (422). Default: the stream's
    /// configuration (`delivery.split_batches`).
    pub(super) split: Option<bool>,
    /// `true`: each record is an envelope, `{"data": <any JSON>}` or `{"data_base64": "<base64>"}`,
    /// with optional `"partition_key"` and `"explicit_hash_key"` strings (JSON and NDJSON bodies).
    #[param(example = true)]
    envelope: Option<bool>,
    /// An RFC 6901 JSON Pointer: each record's partition key is the value there in its own JSON
    /// data (a string as is, a number as sent, `true`/`false` as text). JSON and NDJSON bodies;
    /// not with `partition_key`.
    #[param(pattern = "^(/([^~/]|~[01])*)*$", example = "/user/id")]
    partition_key_pointer: Option<String>,
    /// Kinesis `ExplicitHashKey` for every record without its own: a decimal from 0 to 2^128-1,
    /// `0` or no leading zero. It chooses the shard directly; it does not count in record size.
    #[param(
        pattern = "^(0|[1-9][0-9]{0,38})$",
        example = "170141183460469231731687303715884105728"
    )]
    explicit_hash_key: Option<String>,
    /// Single mode only: PutRecord's `SequenceNumberForOrdering` (the sequence number of the
    /// caller's previous record for this key). Such a request is never coalesced.
    #[param(
        pattern = "^(0|[1-9][0-9]{0,128})$",
        example = "49590338271490256608559692538361571095921575989136588898"
    )]
    sequence_number_for_ordering: Option<String>,
    /// On a spooled stream (`spool.streams`): `kinesis` asks for the synchronous answer (200/207
    /// with the Kinesis response) instead of 202 once the records are on disk. Exactly `kinesis`;
    /// on a stream that is not spooled it changes nothing.
    #[param(pattern = "^kinesis$", example = "kinesis")]
    pub(super) ack: Option<String>,
}

/// The names of [`WriteQuery`]'s parameters, as documented, for the answer to an unknown one.
fn known_parameters() -> &'static str {
    static KNOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KNOWN.get_or_init(|| {
        WriteQuery::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

impl WriteQuery {
    /// Unknown or repeated parameters are refused: a typo such as `record_per_entries=true` would
    /// otherwise silently write one record instead of many.
    pub(super) fn parse(pairs: Vec<(String, String)>) -> Result<Self, ValidationError> {
        let mut p = Self::default();
        for (name, value) in pairs {
            let invalid = |why: &str| {
                ValidationError::InvalidQueryParameter(format!("query parameter {name:?}: {why}"))
            };
            let flag = || match value.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(invalid("must be exactly `true` or `false`")),
            };
            match name.as_str() {
                "record_per_entry" => set_once(&mut p.record_per_entry, flag, invalid)?,
                "split" => set_once(&mut p.split, flag, invalid)?,
                "envelope" => set_once(&mut p.envelope, flag, invalid)?,
                "partition_key" => set_once(&mut p.partition_key, || Ok(value), invalid)?,
                "partition_key_pointer" => {
                    set_once(&mut p.partition_key_pointer, || Ok(value), invalid)?;
                }
                // Checked with the records (422 invalid_explicit_hash_key), in
                // docs/api.md#order-of-checks.
                "explicit_hash_key" => set_once(&mut p.explicit_hash_key, || Ok(value), invalid)?,
                "sequence_number_for_ordering" => {
                    let ordering = || {
                        let ok = is_canonical_decimal(&value) && value.len() <= 129;
                        ok.then_some(value.clone()).ok_or_else(|| {
                            invalid(
                                "must be 0 or a decimal of 1 to 129 digits without a leading zero",
                            )
                        })
                    };
                    set_once(&mut p.sequence_number_for_ordering, ordering, invalid)?;
                }
                "ack" => {
                    let kinesis = || {
                        (value == "kinesis")
                            .then(|| value.clone())
                            .ok_or_else(|| invalid("must be exactly `kinesis`"))
                    };
                    set_once(&mut p.ack, kinesis, invalid)?;
                }
                _ => {
                    return Err(invalid(&format!(
                        "unknown parameter (known: {})",
                        known_parameters()
                    )));
                }
            }
        }
        Ok(p)
    }

    /// The write, once the body's kind is known: the combinations docs/api.md#records-v2 refuses
    /// are 400s. A batch keeps at most `max_records` records (more is `too_many_records`, found
    /// while reading, before any record is built).
    pub(super) fn request(
        self,
        kind: BodyKind,
        body: Bytes,
        max_records: usize,
    ) -> Result<WriteRequest, ValidationError> {
        let invalid = |why: &str| ValidationError::InvalidQueryParameter(why.to_owned());
        let json = matches!(kind, BodyKind::Json | BodyKind::Ndjson);
        let mode = match (kind, self.record_per_entry) {
            (BodyKind::Ndjson, Some(false)) => {
                return Err(invalid(
                    "an NDJSON body is always a batch: leave record_per_entry out or set it true",
                ));
            }
            (BodyKind::Ndjson, _) | (_, Some(true)) => WriteMode::Batch,
            _ => WriteMode::Single,
        };
        if self.sequence_number_for_ordering.is_some() && mode == WriteMode::Batch {
            return Err(invalid(
                "sequence_number_for_ordering is for single mode (one PutRecord) only",
            ));
        }
        let pointer = match self.partition_key_pointer.as_deref() {
            None => None,
            Some(_) if self.partition_key.is_some() => {
                return Err(invalid(
                    "give partition_key or partition_key_pointer, not both",
                ));
            }
            Some(_) if !json => {
                return Err(invalid(
                    "partition_key_pointer needs a JSON body (application/json or NDJSON)",
                ));
            }
            Some(text) => Some(JsonPointer::parse(text).ok_or_else(|| {
                invalid("partition_key_pointer must be an RFC 6901 JSON Pointer, such as /user/id")
            })?),
        };
        let envelope = self.envelope.unwrap_or(false);
        if envelope && !json {
            return Err(invalid(
                "envelope=true needs a JSON body (application/json or NDJSON)",
            ));
        }
        let payload = match (kind, mode) {
            (BodyKind::Ndjson, _) => Payload::ndjson(&body, max_records)?,
            (_, WriteMode::Batch) => Payload::batch(&body, max_records)?,
            (_, WriteMode::Single) => Payload::single(kind, body)?,
        };
        Ok(WriteRequest {
            payload,
            rules: RecordRules {
                envelope,
                pointer,
                partition_key: self.partition_key,
                explicit_hash_key: self.explicit_hash_key,
            },
            split: self.split,
            ordering: self.sequence_number_for_ordering,
        })
    }
}

/// Fills `slot` with the parameter's value; a repeated parameter is refused before its value is
/// looked at.
fn set_once<T>(
    slot: &mut Option<T>,
    value: impl FnOnce() -> Result<T, ValidationError>,
    invalid: impl Fn(&str) -> ValidationError,
) -> Result<(), ValidationError> {
    if slot.is_some() {
        return Err(invalid("given more than once"));
    }
    *slot = Some(value()?);
    Ok(())
}

/// Splits and decodes a query string (`application/x-www-form-urlencoded`). Unlike the usual
/// lossy decoders, a value that is not UTF-8 once decoded is refused: `%FE` and `%FF` must not both
/// become U+FFFD and silently name the same partition key.
pub(super) fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, ValidationError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| {
                ValidationError::InvalidQueryParameter(format!(
                    "query component {s:?} is not UTF-8 once percent-decoded"
                ))
            })
    };
    raw.unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Result<WriteQuery, ValidationError> {
        WriteQuery::parse(
            q.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    /// The payload a query and body kind make (`Err` for a refused combination).
    fn request(
        q: &[(&str, &str)],
        kind: BodyKind,
        body: &str,
    ) -> Result<WriteRequest, ValidationError> {
        params(q)?.request(kind, Bytes::copy_from_slice(body.as_bytes()), usize::MAX)
    }

    fn is_batch(q: &[(&str, &str)], kind: BodyKind, body: &str) -> bool {
        matches!(request(q, kind, body).unwrap().payload, Payload::Batch(_))
    }

    #[test]
    fn record_per_entry_is_strict_and_case_sensitive() {
        assert!(!is_batch(&[], BodyKind::Json, "[1]"));
        assert!(is_batch(
            &[("record_per_entry", "true")],
            BodyKind::Json,
            "[1]"
        ));
        assert!(!is_batch(
            &[("record_per_entry", "false")],
            BodyKind::Json,
            "[1]"
        ));
        for bad in ["True", "1", "yes", "", "FALSE"] {
            assert!(params(&[("record_per_entry", bad)]).is_err(), "{bad:?}");
            assert!(params(&[("envelope", bad)]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v2_combinations_api_md_refuses_are_invalid_query_parameter() {
        use BodyKind::{Binary, Json, Ndjson, Text};
        assert!(is_batch(&[], Ndjson, "1\n2"));
        assert!(is_batch(&[("record_per_entry", "true")], Ndjson, "1"));
        let refused: &[(&[(&str, &str)], BodyKind)] = &[
            (&[("record_per_entry", "false")], Ndjson),
            (
                &[
                    ("sequence_number_for_ordering", "1"),
                    ("record_per_entry", "true"),
                ],
                Json,
            ),
            (&[("sequence_number_for_ordering", "1")], Ndjson),
            (
                &[("partition_key_pointer", "/a"), ("partition_key", "k")],
                Json,
            ),
            (&[("partition_key_pointer", "/a")], Text),
            (&[("partition_key_pointer", "/a")], Binary),
            (&[("partition_key_pointer", "a")], Json),
            (&[("envelope", "true")], Text),
        ];
        for (q, kind) in refused {
            assert!(
                matches!(
                    request(q, *kind, "1"),
                    Err(ValidationError::InvalidQueryParameter(_))
                ),
                "{q:?} {kind:?}"
            );
        }
        for bad in ["", "01", "-1", "1.5", &"9".repeat(130)] {
            assert!(
                params(&[("sequence_number_for_ordering", bad)]).is_err(),
                "{bad:?}"
            );
        }
        let ok = request(&[("sequence_number_for_ordering", "0")], Json, "1").unwrap();
        assert_eq!(ok.ordering.as_deref(), Some("0"));
    }

    #[test]
    fn query_strings_decode_strictly() {
        let pairs = parse_query(Some("partition_key=a%20b+c&&record_per_entry=true")).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("partition_key".into(), "a b c".into()),
                ("record_per_entry".into(), "true".into())
            ]
        );
        assert!(parse_query(Some("partition_key=%FF")).is_err());
        assert!(parse_query(Some("%FE=1")).is_err());
        assert_eq!(
            parse_query(Some("flag")).unwrap(),
            vec![("flag".into(), String::new())]
        );
        assert!(parse_query(None).unwrap().is_empty());
    }

    #[test]
    fn every_documented_parameter_is_parsed_and_the_unknown_answer_lists_them_all() {
        let documented: Vec<String> = WriteQuery::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(documented.len(), 8);
        for name in &documented {
            let value = if name == "sequence_number_for_ordering" || name == "explicit_hash_key" {
                "1"
            } else if name == "record_per_entry" || name == "split" || name == "envelope" {
                "true"
            } else if name == "ack" {
                "kinesis"
            } else {
                "x"
            };
            let parsed = params(&[(name, value)]).unwrap();
            assert_ne!(parsed, WriteQuery::default(), "{name} was not parsed");
        }
        let Err(ValidationError::InvalidQueryParameter(why)) = params(&[("nope", "1")]) else {
            panic!("an unknown parameter is refused")
        };
        assert!(
            why.ends_with(&format!("(known: {})", documented.join(", "))),
            "{why}"
        );
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        assert!(params(&[("record_per_entries", "true")]).is_err());
        assert!(params(&[("partition_key", "a"), ("partition_key", "b")]).is_err());
        assert!(params(&[("record_per_entry", "true"), ("record_per_entry", "true")]).is_err());
        assert_eq!(
            params(&[("partition_key", "")])
                .unwrap()
                .partition_key
                .as_deref(),
            Some("")
        );
    }
}
