//! The error table (one row per problem `code`: status, title, class, `Retry-After`, what a 5xx
//! body says instead of the error's own words) and `Problem`, the RFC 9457 body every 4xx/5xx
//! answer carries (docs/api.md#errors; tests/api/docs.rs compares docs/api.md's table with
//! [`ALL`]).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a caller is asked to wait after a throttle or an unreachable Kinesis.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The class a Python caller would branch on, like an exception class (docs/api.md#error-classes).
/// It belongs to the problem's row in the error table, never to a status number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorClass {
    /// Every limit and shape error (422, 413): what the Python class raised or should have raised.
    KinesisWriterError,
    /// A malformed, unauthenticated, forbidden or too slow HTTP request.
    RequestError,
    /// Kinesis, or the way to it, failed.
    UpstreamError,
    /// This instance sheds load: retry, ideally on another instance.
    OverloadedError,
    /// A bug in this service.
    InternalError,
}

/// One row of the error table: everything a problem `code` always has, whatever its detail.
#[derive(Debug, PartialEq, Eq)]
pub struct ProblemType {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub class: ErrorClass,
    /// The answer carries `Retry-After`.
    pub retry_after: bool,
    /// What the body says instead of the error's own words (5xx: those go to the log only).
    pub public_detail: Option<&'static str>,
    /// When it is answered, for the OpenAPI document.
    pub when: &'static str,
}

impl ProblemType {
    const fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        class: ErrorClass,
    ) -> Self {
        Self {
            status,
            code,
            title,
            class,
            retry_after: false,
            public_detail: None,
            when: "",
        }
    }

    const fn when(mut self, when: &'static str) -> Self {
        self.when = when;
        self
    }

    const fn retry_after(mut self) -> Self {
        self.retry_after = true;
        self
    }

    const fn hidden(mut self, public_detail: &'static str) -> Self {
        self.public_detail = Some(public_detail);
        self
    }
}

use ErrorClass::{InternalError, KinesisWriterError, OverloadedError, RequestError, UpstreamError};
use ProblemType as P;
use StatusCode as S;

pub const INVALID_STREAM_NAME: P = P::new(
    S::BAD_REQUEST,
    "invalid_stream_name",
    "Invalid stream name",
    RequestError,
)
.when("the stream name breaks the Kinesis naming rule");
pub const INVALID_QUERY_PARAMETER: P = P::new(
    S::BAD_REQUEST,
    "invalid_query_parameter",
    "Invalid query parameter",
    RequestError,
)
.when("a parameter is unknown, repeated, or not one of its allowed values");
pub const INVALID_BODY: P = P::new(S::BAD_REQUEST, "invalid_body", "Invalid body", RequestError)
    .when("not JSON, NaN/Infinity, invalid UTF-8, nested too deep, or unreadable");
pub const UNAUTHORIZED: P = P::new(
    S::UNAUTHORIZED,
    "unauthorized",
    "Unauthorized",
    RequestError,
)
.when("no valid API key (auth.required)");
pub const FORBIDDEN: P = P::new(S::FORBIDDEN, "forbidden", "Forbidden", RequestError)
    .when("the API key may not write this stream");
pub const NOT_FOUND: P = P::new(S::NOT_FOUND, "not_found", "Not found", RequestError)
    .when("no such route (or /metrics while metrics are off)");
/// Kinesis lacks the stream, or the allowlist does: one answer, revealing nothing.
pub const STREAM_NOT_FOUND: P = P::new(
    S::NOT_FOUND,
    "stream_not_found",
    "Stream not found",
    UpstreamError,
)
.when("the stream is not in Kinesis, or not on the allowlist");
pub const METHOD_NOT_ALLOWED: P = P::new(
    S::METHOD_NOT_ALLOWED,
    "method_not_allowed",
    "Method not allowed",
    RequestError,
)
.when("the route does not take this method");
pub const REQUEST_TIMEOUT: P = P::new(
    S::REQUEST_TIMEOUT,
    "request_timeout",
    "Request timeout",
    RequestError,
)
.when("the request took longer than server.request_timeout_ms");
pub const PAYLOAD_TOO_LARGE: P = P::new(
    S::PAYLOAD_TOO_LARGE,
    "payload_too_large",
    "Payload too large",
    KinesisWriterError,
)
.when("the body exceeds limits.body_limit_bytes");
pub const UNSUPPORTED_MEDIA_TYPE: P = P::new(
    S::UNSUPPORTED_MEDIA_TYPE,
    "unsupported_media_type",
    "Unsupported media type",
    RequestError,
)
.when("an unsupported Content-Type, or a Content-Encoding other than gzip, zstd or identity");
pub const DATA_MUST_BE_LIST: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "data_must_be_list",
    "Data must be a list",
    KinesisWriterError,
)
.when("batch mode and the body is not a JSON array");
pub const EMPTY_BATCH: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "empty_batch",
    "Empty batch",
    KinesisWriterError,
)
.when("batch mode and the array is empty");
pub const TOO_MANY_RECORDS: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "too_many_records",
    "Too many records",
    KinesisWriterError,
)
.when("more records than limits.max_records_per_request");
pub const INVALID_PARTITION_KEY: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "invalid_partition_key",
    "Invalid partition key",
    KinesisWriterError,
)
.when("empty, or longer than 256 UTF-16 code units");
pub const RECORD_TOO_LARGE: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "record_too_large",
    "Record too large",
    KinesisWriterError,
)
.when("a record's data + key exceeds the stream's max record size");
pub const BATCH_TOO_LARGE: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "batch_too_large",
    "Batch too large",
    KinesisWriterError,
)
.when("the batch's data + keys exceed the stream's max request size");
pub const INVALID_ENVELOPE: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "invalid_envelope",
    "Invalid envelope",
    KinesisWriterError,
)
.when("envelope=true and a record is not {\"data\": …} or {\"data_base64\": …} with optional string keys");
pub const PARTITION_KEY_NOT_FOUND: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "partition_key_not_found",
    "Partition key not found",
    KinesisWriterError,
)
.when("partition_key_pointer finds nothing, null, an object or an array in a record (or its data is not JSON)");
pub const INVALID_EXPLICIT_HASH_KEY: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "invalid_explicit_hash_key",
    "Invalid explicit hash key",
    KinesisWriterError,
)
.when("an explicit hash key is not a decimal from 0 to 2^128-1 without leading zeros");
pub const KINESIS_REJECTED: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "kinesis_rejected",
    "Rejected by Kinesis",
    KinesisWriterError,
)
.when("Kinesis refused the content (InvalidArgument/Validation)");
pub const THROTTLED: P = P::new(
    S::TOO_MANY_REQUESTS,
    "throttled",
    "Throttled by Kinesis",
    UpstreamError,
)
.retry_after()
.when("Kinesis throttled the write after the service's retries");
pub const INTERNAL_ERROR: P = P::new(
    S::INTERNAL_SERVER_ERROR,
    "internal_error",
    "Internal error",
    InternalError,
)
.hidden("An internal error occurred; it has been logged")
.when("a bug in the service");
pub const UPSTREAM_ERROR: P = P::new(
    S::BAD_GATEWAY,
    "upstream_error",
    "Upstream error",
    UpstreamError,
)
.hidden("Kinesis refused the service's request; the details are in the service's log")
.when("Kinesis refused the service itself (access, KMS, credentials)");
pub const UPSTREAM_UNAVAILABLE: P = P::new(
    S::SERVICE_UNAVAILABLE,
    "upstream_unavailable",
    "Kinesis unavailable",
    UpstreamError,
)
.retry_after()
.hidden("Kinesis could not be reached; retry later")
.when("Kinesis could not be reached, or had a fault");
pub const OVERLOADED: P = P::new(
    S::SERVICE_UNAVAILABLE,
    "overloaded",
    "Overloaded",
    OverloadedError,
)
.retry_after()
.when("too many requests in flight, or coalescing's buffer is full");
/// A spooled stream's log holds `spool.max_bytes` of unshipped records (docs/api.md#durable-acceptance).
pub const SPOOL_FULL: P = P::new(
    S::SERVICE_UNAVAILABLE,
    "spool_full",
    "Spool full",
    OverloadedError,
)
.retry_after()
.when("a spooled stream's spool holds spool.max_bytes of unshipped records (also /health/ready until below 90%)");
/// The spool's log cannot be written (a disk error): the words name paths, so they stay in the log.
pub const SPOOL_UNAVAILABLE: P = P::new(
    S::SERVICE_UNAVAILABLE,
    "spool_unavailable",
    "Spool unavailable",
    InternalError,
)
.retry_after()
.hidden("The service could not store the records durably; nothing was accepted; retry later")
.when("a spooled stream's log could not be written or fsync'd; nothing was accepted");
/// `/health/ready`: the cause in general words; AWS's own stay in the log, where the
/// readiness task writes them once.
pub const NOT_READY: P = P::new(
    S::SERVICE_UNAVAILABLE,
    "not_ready",
    "Not ready",
    UpstreamError,
)
.retry_after()
.when("Kinesis cannot be called yet");
pub const UPSTREAM_TIMEOUT: P = P::new(
    S::GATEWAY_TIMEOUT,
    "upstream_timeout",
    "Kinesis timed out",
    UpstreamError,
)
.hidden("Kinesis did not answer in time; the write may or may not have happened")
.when("Kinesis did not answer in time");
/// A malformed `Idempotency-Key` (docs/api.md#idempotent-retries).
pub const INVALID_IDEMPOTENCY_KEY: P = P::new(
    S::BAD_REQUEST,
    "invalid_idempotency_key",
    "Invalid idempotency key",
    RequestError,
)
.when("Idempotency-Key is empty, longer than 255 characters, sent twice, or not visible ASCII (%x21-7E)");
/// The key was first used for another request: the caller's bug, never retried.
pub const IDEMPOTENCY_KEY_REUSED: P = P::new(
    S::UNPROCESSABLE_ENTITY,
    "idempotency_key_reused",
    "Idempotency key reused",
    KinesisWriterError,
)
.when("the Idempotency-Key was used with another request (method, path, query, Content-Type, Content-Encoding or body)");
pub const IDEMPOTENCY_KEY_IN_FLIGHT: P = P::new(
    S::CONFLICT,
    "idempotency_key_in_flight",
    "Idempotency key in flight",
    RequestError,
)
.retry_after()
.when("the first request with this Idempotency-Key is still being processed");
pub const IDEMPOTENCY_KEY_REQUIRED: P = P::new(
    S::PRECONDITION_REQUIRED,
    "idempotency_key_required",
    "Idempotency key required",
    RequestError,
)
.when("the stream is in idempotency.required_streams and the write has no Idempotency-Key");
pub const IDEMPOTENCY_UNAVAILABLE: P = P::new(
    S::SERVICE_UNAVAILABLE,
    "idempotency_unavailable",
    "Idempotency store unavailable",
    InternalError,
)
.retry_after()
.hidden("The idempotency store could not be reached; nothing was written; retry later")
.when("the idempotency store could not be reached (idempotency.on_store_error: fail); nothing was written");
/// Any other 4xx/5xx a layer we do not own answers with.
pub const HTTP_ERROR: P = P::new(S::BAD_REQUEST, "http_error", "HTTP error", RequestError)
    .when("another error from a layer of the HTTP stack");

/// Every row, for documentation and tests.
pub const ALL: [&P; 36] = [
    &INVALID_STREAM_NAME,
    &INVALID_QUERY_PARAMETER,
    &INVALID_BODY,
    &UNAUTHORIZED,
    &FORBIDDEN,
    &NOT_FOUND,
    &STREAM_NOT_FOUND,
    &METHOD_NOT_ALLOWED,
    &REQUEST_TIMEOUT,
    &PAYLOAD_TOO_LARGE,
    &UNSUPPORTED_MEDIA_TYPE,
    &DATA_MUST_BE_LIST,
    &EMPTY_BATCH,
    &TOO_MANY_RECORDS,
    &INVALID_PARTITION_KEY,
    &RECORD_TOO_LARGE,
    &BATCH_TOO_LARGE,
    &INVALID_ENVELOPE,
    &PARTITION_KEY_NOT_FOUND,
    &INVALID_EXPLICIT_HASH_KEY,
    &KINESIS_REJECTED,
    &THROTTLED,
    &INTERNAL_ERROR,
    &UPSTREAM_ERROR,
    &UPSTREAM_UNAVAILABLE,
    &OVERLOADED,
    &NOT_READY,
    &UPSTREAM_TIMEOUT,
    &SPOOL_FULL,
    &SPOOL_UNAVAILABLE,
    &INVALID_IDEMPOTENCY_KEY,
    &IDEMPOTENCY_KEY_REUSED,
    &IDEMPOTENCY_KEY_IN_FLIGHT,
    &IDEMPOTENCY_KEY_REQUIRED,
    &IDEMPOTENCY_UNAVAILABLE,
    &HTTP_ERROR,
];

/// RFC 9457 problem details, the body of every 4xx/5xx answer (docs/api.md#error-body).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:kinesis-writer:problem:<code>`, one per code.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable, snake_case: branch on this.
    pub code: &'static str,
    /// `KinesisWriterError` on every 422 and 413.
    pub error_class: ErrorClass,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<usize>,
    /// The offending record's position in the request (0 in single mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The offending line of an NDJSON body, counted from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The service's request id (also in the `x-request-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip)]
    pub(super) retry_after: bool,
    /// What went wrong in detail, for the log only.
    #[serde(skip)]
    pub(super) log_detail: Option<String>,
}

impl Problem {
    /// A problem of `kind` whose body says `detail` (or the row's public detail, which hides it
    /// and keeps it for the log).
    pub fn new(kind: &ProblemType, detail: String) -> Self {
        let (detail, log_detail) = match kind.public_detail {
            Some(public) => (public.to_owned(), Some(detail)),
            None => (detail, None),
        };
        Self {
            type_uri: format!("urn:kinesis-writer:problem:{}", kind.code),
            title: kind.title,
            status: kind.status.as_u16(),
            detail,
            code: kind.code,
            error_class: kind.class,
            limit: None,
            actual: None,
            index: None,
            line: None,
            request_id: None,
            retry_after: kind.retry_after,
            log_detail,
        }
    }

    /// The same problem to answer again for a replayed request: its log detail was logged with
    /// the first answer.
    pub fn for_replay(&self) -> Self {
        Self {
            log_detail: None,
            request_id: None,
            ..self.clone()
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.status == 401 {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
    }
}
