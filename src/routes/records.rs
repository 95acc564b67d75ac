//! `POST /streams/{stream}/records`: HTTP in (path, query, media type, body) → domain → service →
//! the raw Kinesis response out.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::explicit_hash_key::is_canonical_decimal;
use crate::domain::{
    BodyKind, JsonPointer, Payload, PutRecordOutcome, PutRecordsOutcome, RecordRules, StreamName,
    ValidationError, WriteMode,
};
use crate::error::{ApiError, RETRY_AFTER_SECS};
use crate::service::{WriteOutcome, WriteRequest};
use crate::state::AppState;

/// Query parameters (documentation; parsing is strict and done by hand, see `WriteParams::parse`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the query string for the OpenAPI document only"
)]
pub(crate) struct WriteQuery {
    /// `true`: the body is a JSON array and each element becomes one record (PutRecords).
    /// `false` (default): the whole body is one record (PutRecord). Exactly `true` or `false`.
    /// An NDJSON body is always a batch: absent or `true`.
    #[param(example = true)]
    record_per_entry: Option<bool>,
    /// 1–256 characters (UTF-16 code units). Absent: a UUID v4 per call (single mode) or per
    /// record (batch mode). A record's own key (envelope, pointer) wins over it.
    /// (JSON Schema counts code points, Kinesis UTF-16 units, so the upper bound is stated here
    /// rather than as `maxLength`.)
    #[param(min_length = 1, example = "user-42")]
    partition_key: Option<String>,
    /// Batch mode: `true` sends a batch over 500 records or over the request-size limit as several
    /// PutRecords calls, merged into one answer; `false` refuses it (422). Default: the stream's
    /// configuration (`delivery.split_batches`).
    split: Option<bool>,
    /// `true`: each record is an envelope, `{"data": <any JSON>}` or `{"data_base64": "<base64>"}`,
    /// with optional `"partition_key"` and `"explicit_hash_key"` strings (JSON and NDJSON bodies).
    #[param(example = true)]
    envelope: Option<bool>,
    /// An RFC 6901 JSON Pointer: each record's partition key is the value there in its own JSON
    /// data (a string as is, a number as sent, `true`/`false` as text). JSON and NDJSON bodies;
    /// not with `partition_key`.
    #[param(example = "/user/id")]
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
}

const KNOWN_PARAMETERS: &str = "record_per_entry, partition_key, split, envelope, \
    partition_key_pointer, explicit_hash_key, sequence_number_for_ordering";

/// The request's options after strict parsing.
#[derive(Debug, Default, PartialEq, Eq)]
struct WriteParams {
    per_entry: Option<bool>,
    partition_key: Option<String>,
    split: Option<bool>,
    envelope: Option<bool>,
    pointer: Option<String>,
    explicit_hash_key: Option<String>,
    ordering: Option<String>,
}

impl WriteParams {
    /// Unknown or repeated parameters are refused: a typo such as `record_per_entries=true` would
    /// otherwise silently write one record instead of many.
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, ValidationError> {
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
                "record_per_entry" => set_once(&mut p.per_entry, flag, invalid)?,
                "split" => set_once(&mut p.split, flag, invalid)?,
                "envelope" => set_once(&mut p.envelope, flag, invalid)?,
                "partition_key" => set_once(&mut p.partition_key, || Ok(value), invalid)?,
                "partition_key_pointer" => set_once(&mut p.pointer, || Ok(value), invalid)?,
                // Checked with the records (422 invalid_explicit_hash_key), in API.md's order.
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
                    set_once(&mut p.ordering, ordering, invalid)?;
                }
                _ => {
                    return Err(invalid(&format!(
                        "unknown parameter (known: {KNOWN_PARAMETERS})"
                    )));
                }
            }
        }
        Ok(p)
    }

    /// The write, once the body's kind is known: the combinations API.md §6 refuses are 400s. A
    /// batch keeps at most `max_records` records (more is `too_many_records`, found while
    /// reading, before any record is built).
    fn request(
        self,
        kind: BodyKind,
        body: Bytes,
        max_records: usize,
    ) -> Result<WriteRequest, ValidationError> {
        let invalid = |why: &str| ValidationError::InvalidQueryParameter(why.to_owned());
        let json = matches!(kind, BodyKind::Json | BodyKind::Ndjson);
        let mode = match (kind, self.per_entry) {
            (BodyKind::Ndjson, Some(false)) => {
                return Err(invalid(
                    "an NDJSON body is always a batch: leave record_per_entry out or set it true",
                ));
            }
            (BodyKind::Ndjson, _) | (_, Some(true)) => WriteMode::Batch,
            _ => WriteMode::Single,
        };
        if self.ordering.is_some() && mode == WriteMode::Batch {
            return Err(invalid(
                "sequence_number_for_ordering is for single mode (one PutRecord) only",
            ));
        }
        let pointer = match self.pointer.as_deref() {
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
            ordering: self.ordering,
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

/// The success body: exactly what Kinesis answered, as AWS spells it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WriteResponse {
    /// `record_per_entry=false`: the PutRecord answer.
    Single(PutRecordOutcome),
    /// `record_per_entry=true`: the PutRecords answer, `Records` in request order.
    Batch(PutRecordsOutcome),
}

/// Any JSON value, sent as the record (strings unquoted, anything else as sent). With
/// `record_per_entry=true` it must be a non-empty array (else 422 `data_must_be_list` /
/// `empty_batch`).
#[derive(ToSchema)]
#[schema(value_type = serde_json::Value)]
#[expect(dead_code, reason = "schema only")]
pub(crate) struct JsonBody(serde_json::Value);

/// Raw bytes, sent verbatim as the record.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[expect(dead_code, reason = "schema only")]
pub(crate) struct BinaryBody(Vec<u8>);

/// Write one record, or one record per element of a JSON array.
///
/// The HTTP form of `KinesisWriter.send_to_stream(data, partition_key, record_per_entry)`.
/// Limits are checked before any call to Kinesis; the answer is the raw Kinesis response.
#[utoipa::path(
    post,
    path = "/streams/{stream}/records",
    tag = crate::openapi::RECORDS_TAG,
    params(
        ("stream" = String, Path, description = "Kinesis stream name: 1-128 characters of [a-zA-Z0-9_.-]", min_length = 1, max_length = 128, pattern = "^[a-zA-Z0-9_.-]+$"),
        WriteQuery
    ),
    request_body(
        description = "application/json (default when Content-Type is absent): one JSON value, or with record_per_entry=true a JSON array of values. application/x-ndjson or application/jsonl: one JSON value per line, always a batch. text/plain (UTF-8) or application/octet-stream: the body bytes verbatim (single mode only). With envelope=true each record is {\"data\": <JSON>} or {\"data_base64\": \"<base64>\"} with optional \"partition_key\" and \"explicit_hash_key\".",
        content(
            (JsonBody = "application/json", examples(
                ("one record" = (value = json!({"webUrl": "https://example.co.uk", "content": "Example content..."}))),
                ("batch (record_per_entry=true)" = (value = json!([{"webUrl": "https://example.co.uk"}, "a string is stored unquoted", 42]))),
                ("envelopes (envelope=true&record_per_entry=true)" = (value = json!([{"data": {"event": "click"}, "partition_key": "device-7"}, {"data_base64": "AP8B", "partition_key": "device-8", "explicit_hash_key": "0"}]))),
            )),
            (String = "application/x-ndjson", example = json!("{\"user\": {\"id\": \"u-1\"}, \"event\": \"login\"}\n{\"user\": {\"id\": \"u-2\"}, \"event\": \"view\"}\n")),
            (String = "application/jsonl", example = json!("{\"user\": {\"id\": \"u-1\"}}\n")),
            (String = "text/plain", example = json!("hello wörld")),
            (BinaryBody = "application/octet-stream"),
        )
    ),
    responses(
        (status = 200, description = "Written. PutRecord or PutRecords response as AWS returns it.", body = WriteResponse,
            headers(("x-amzn-RequestId" = String, description = "AWS request id"), ("x-request-id" = String, description = "This service's request id"))),
        (status = 207, description = "Batch mode: some records still failed; see Records[i].ErrorCode. Retry-After is set when failures are throttling.", body = PutRecordsOutcome,
            headers(("Retry-After" = u64, description = "Seconds to wait (throttling only)"))),
        crate::error::WriteProblems,
    )
)]
pub(crate) async fn write_records(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Who is asking comes first: an unauthenticated caller learns nothing about streams.
    let caller = state.access.authenticate(&headers)?;
    let Path(stream) =
        path.map_err(|e| ValidationError::InvalidStreamName { got: e.body_text() })?;
    let stream = StreamName::parse(&stream)?;
    let span = tracing::Span::current();
    span.record("stream", stream.as_str());
    if let Some(id) = &caller.key_id {
        span.record("key_id", id.as_str());
    }
    state.access.authorize(&caller, stream.as_str())?;

    let pairs = parse_query(query.as_deref())?;
    let params = WriteParams::parse(pairs)?;
    let kind = body_kind(&headers, params.per_entry == Some(true))?;

    let limit = state.settings.limits.body_limit_bytes;
    let body = read_body(body, &headers, limit).await?;
    let settings = state.settings.stream(stream.as_str());
    let split = params.split.unwrap_or(settings.split.enabled);
    let max_records = settings.limits.max_records_in_body(split, body.len());
    let request = params.request(kind, body, max_records)?;
    span.record("records", request.payload.len());

    let outcome = state.ingest.write(&stream, request).await?;
    Ok(respond(outcome))
}

/// Splits and decodes a query string (`application/x-www-form-urlencoded`). Unlike the usual
/// lossy decoders, a value that is not UTF-8 once decoded is refused: `%FE` and `%FF` must not both
/// become U+FFFD and silently name the same partition key.
fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, ValidationError> {
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

/// Decides how to read the body from its media type (API.md §1 "Content types", §6 NDJSON);
/// `batch` is `record_per_entry=true`.
fn body_kind(headers: &HeaderMap, batch: bool) -> Result<BodyKind, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let unsupported = || {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {value:?} is not supported: send application/json{}",
            if batch {
                " (a JSON array) or application/x-ndjson with record_per_entry=true"
            } else {
                ", application/x-ndjson, text/plain or application/octet-stream"
            }
        ))
    };
    let text = value.to_str().map_err(|_| unsupported())?;
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    // A charset other than UTF-8 would make us store bytes the caller did not mean.
    let charset_ok = parts.all(|p| {
        let p = p.trim().to_ascii_lowercase();
        !p.starts_with("charset=")
            || matches!(
                p.trim_start_matches("charset=").trim_matches('"'),
                "utf-8" | "utf8"
            )
    });
    let kind = match essence.as_str() {
        "application/json" if charset_ok => BodyKind::Json,
        "application/x-ndjson" | "application/jsonl" if charset_ok => BodyKind::Ndjson,
        "text/plain" if charset_ok => BodyKind::Text,
        "application/octet-stream" => BodyKind::Binary,
        _ => return Err(unsupported()),
    };
    if batch && !matches!(kind, BodyKind::Json | BodyKind::Ndjson) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "record_per_entry=true takes a JSON array (application/json) or NDJSON \
             (application/x-ndjson), not {essence}"
        )));
    }
    Ok(kind)
}

/// Reads the whole body, refusing it (413) as soon as it passes `limit`: before parsing, and
/// before reading at all when Content-Length already says it is too large.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge { limit }),
        Err(e) => Err(ValidationError::InvalidBody(format!("could not read the body: {e}")).into()),
    }
}

fn respond(outcome: WriteOutcome) -> Response {
    let (status, request_id, retry_after, body) = match outcome {
        WriteOutcome::Single(o) => (
            StatusCode::OK,
            o.request_id.clone(),
            false,
            WriteResponse::Single(o),
        ),
        WriteOutcome::Batch(o) => {
            let status = if o.failed_record_count == 0 {
                StatusCode::OK
            } else {
                StatusCode::MULTI_STATUS
            };
            (
                status,
                o.request_id.clone(),
                o.any_throttled(),
                WriteResponse::Batch(o),
            )
        }
    };
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert("x-amzn-RequestId", id);
    }
    if retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Result<WriteParams, ValidationError> {
        WriteParams::parse(
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

    #[test]
    fn media_types_decide_the_body_kind() {
        let kind = |ct: Option<&str>, batch| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            body_kind(&h, batch).ok()
        };
        let (single, batch) = (false, true);
        assert_eq!(
            kind(Some("application/x-ndjson"), single),
            Some(BodyKind::Ndjson)
        );
        assert_eq!(
            kind(Some("application/jsonl; charset=utf-8"), batch),
            Some(BodyKind::Ndjson)
        );
        assert_eq!(kind(None, single), Some(BodyKind::Json));
        assert_eq!(
            kind(Some("application/json; charset=UTF-8"), batch),
            Some(BodyKind::Json)
        );
        assert_eq!(kind(Some("Text/Plain"), single), Some(BodyKind::Text));
        assert_eq!(kind(Some("text/plain; charset=latin1"), single), None);
        assert_eq!(
            kind(Some("application/octet-stream"), single),
            Some(BodyKind::Binary)
        );
        assert_eq!(kind(Some("text/plain"), batch), None);
        assert_eq!(kind(Some("application/octet-stream"), batch), None);
        assert_eq!(
            kind(Some("application/x-www-form-urlencoded"), single),
            None
        );
    }
}
