//! `POST /streams/{stream}/records`: HTTP in (path, query, media type, body) → domain → service →
//! the raw Kinesis response out.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use utoipa::ToSchema;

use super::query::{WriteQuery, parse_query};
use crate::domain::{BodyKind, PutRecordOutcome, PutRecordsOutcome, StreamName, ValidationError};
use crate::error::{ApiError, RETRY_AFTER_SECS};
use crate::idempotency::{self, Decision, IdempotencyError, RawContentEncoding};
use crate::service::WriteOutcome;
use crate::state::AppState;

/// The success body: exactly what Kinesis answered, as AWS spells it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum WriteResponse {
    /// `record_per_entry=false`: the PutRecord answer.
    Single(PutRecordOutcome),
    /// `record_per_entry=true`: the PutRecords answer, `Records` in request order.
    Batch(PutRecordsOutcome),
}

/// The answer of a spooled stream (202): the records are on disk, fsync'd, and will reach Kinesis
/// at least once; each has a `RecordId` of the service's, which the log line of its delivery or
/// dead-lettering names.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AcceptedResponse {
    /// Single mode.
    Single(AcceptedRecord),
    /// Batch mode: one entry per record, in request order.
    Batch(AcceptedBatch),
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AcceptedRecord {
    #[schema(example = "0b0e2a0e-3f4c-4c1e-9d61-7a0e6f1c2b3d")]
    record_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AcceptedBatch {
    accepted_record_count: usize,
    records: Vec<AcceptedRecord>,
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
        ("stream" = String, Path, description = "Kinesis stream name: 1-128 characters of [a-zA-Z0-9_.-]", min_length = 1, max_length = 128, pattern = "^[a-zA-Z0-9_.-]+$", example = "example-stream"),
        WriteQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the first request with this key is processed and its answer kept (idempotency.ttl_s); a retry with the same key and the same request gets that answer again with Idempotency-Replayed: true, and nothing is written twice. 1-255 characters in %x21-7E, else 400 invalid_idempotency_key; scoped by API key and stream. Another request with the same key: 422 idempotency_key_reused; while the first is in flight: 409 idempotency_key_in_flight.", min_length = 1, max_length = 255, pattern = "^[\\x21-\\x7E]+$", example = "5f0c7a9e-2d5b-4a49-9d0e-6a7f0b1c2d3e")
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
        (status = 202, description = "A spooled stream (spool.streams) without ack=kinesis: the records are fsync'd to the service's spool and will reach Kinesis at least once, in order. Single mode: {\"RecordId\"}; batch: {\"AcceptedRecordCount\", \"Records\": [{\"RecordId\"}]} in request order.", body = AcceptedResponse),
        (status = 200, description = "Written. PutRecord or PutRecords response as AWS returns it.", body = WriteResponse,
            headers(("x-amzn-RequestId" = String, description = "AWS request id"), ("x-request-id" = String, description = "This service's request id"), ("Idempotency-Replayed" = String, description = "true on an answer replayed for a retried Idempotency-Key (any kept status: 200, 202, 207, 4xx)"))),
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
    raw_encoding: Option<Extension<RawContentEncoding>>,
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
    // A bad or missing key is refused before the body is read: nothing to keep.
    let idempotency_key = idempotency::key_from(&headers)?;
    if idempotency_key.is_none() && state.idempotency.settings().required_for(stream.as_str()) {
        return Err(IdempotencyError::Required(stream.to_string()).into());
    }

    let pairs = parse_query(query.as_deref())?;
    let params = WriteQuery::parse(pairs)?;
    let kind = body_kind(&headers, params.record_per_entry == Some(true))?;

    let limit = state.settings.limits.body_limit_bytes;
    let body = read_body(body, &headers, limit).await?;

    // Refusals above depend only on the request, so answering them again is a replay in all but
    // the header; from here on, a keyed request's answer is kept (docs/api.md#idempotent-retries).
    let Some(key) = idempotency_key else {
        return write(&state, &stream, params, kind, body).await;
    };
    let path = format!("/streams/{}/records", stream.as_str());
    // Decompression removed the header; its layer kept the value as sent.
    let encoding = raw_encoding.and_then(|Extension(RawContentEncoding(v))| v);
    let fingerprint = idempotency::fingerprint(
        "POST",
        &path,
        query.as_deref(),
        &headers,
        encoding.as_ref(),
        &body,
    );
    let scoped = idempotency::scoped_key(caller.key_id.as_deref(), stream.as_str(), key);
    let ticket = match state
        .idempotency
        .begin(scoped, fingerprint, stream.as_str())
        .await?
    {
        Decision::Replay(response) => return Ok(response),
        Decision::Unguarded => return write(&state, &stream, params, kind, body).await,
        Decision::Process(ticket) => ticket,
    };
    let (response, problem) = match write(&state, &stream, params, kind, body).await {
        Ok(response) => (response, None),
        Err(e) => {
            let problem = e.problem();
            (problem.clone().into_response(), Some(problem))
        }
    };
    Ok(ticket.keep(response, problem.as_ref()).await)
}

/// The write itself, keyed or not: the spool's 202, or Kinesis' answer.
async fn write(
    state: &AppState,
    stream: &StreamName,
    params: WriteQuery,
    kind: BodyKind,
    body: Bytes,
) -> Result<Response, ApiError> {
    let span = tracing::Span::current();
    let ack_kinesis = params.ack.is_some();
    let settings = state.settings.stream(stream.as_str());
    let split = params.split.unwrap_or(settings.split.enabled);
    let max_records = settings.limits.max_records_in_body(split, body.len());
    let request = params.request(kind, body, max_records)?;
    span.record("records", request.payload.len());

    if !ack_kinesis && state.ingest.spools(stream, &request) {
        let batch = matches!(request.payload, crate::domain::Payload::Batch(_));
        let ids = state.ingest.accept(stream, request).await?;
        return Ok(accepted(batch, ids));
    }
    let outcome = state.ingest.write(stream, request).await?;
    Ok(respond(outcome))
}

/// Decides how to read the body from its media type (docs/api.md#content-types, #ndjson);
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

/// The 202 of a spooled write.
fn accepted(batch: bool, ids: Vec<uuid::Uuid>) -> Response {
    let mut records = ids.into_iter().map(|id| AcceptedRecord {
        record_id: id.to_string(),
    });
    let body = if batch {
        let records: Vec<AcceptedRecord> = records.collect();
        AcceptedResponse::Batch(AcceptedBatch {
            accepted_record_count: records.len(),
            records,
        })
    } else {
        AcceptedResponse::Single(records.next().expect("single mode stores one record"))
    };
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
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
