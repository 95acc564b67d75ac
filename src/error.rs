//! `ApiError`, the only error type that knows HTTP, and its one mapping to RFC 9457 problem details.
//!
//! Handlers return `Result<_, ApiError>`; domain and Kinesis errors convert in with `?`. The body
//! is rendered here, and rendered again by `problem_middleware` to add the request id, which only
//! the middleware stack knows.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::AccessError;
use crate::domain::ValidationError;
use crate::kinesis::PublishError;
use crate::service::IngestError;

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

/// The error table: one row per problem `code` (docs/api.md#error-codes lists the same rows;
/// tests/api/docs.rs compares them).
pub mod problems {
    use super::ErrorClass::{
        InternalError, KinesisWriterError, OverloadedError, RequestError, UpstreamError,
    };
    use super::ProblemType as P;
    use axum::http::StatusCode as S;

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
    pub const INVALID_BODY: P =
        P::new(S::BAD_REQUEST, "invalid_body", "Invalid body", RequestError)
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
    /// Any other 4xx/5xx a layer we do not own answers with.
    pub const HTTP_ERROR: P = P::new(S::BAD_REQUEST, "http_error", "HTTP error", RequestError)
        .when("another error from a layer of the HTTP stack");

    /// Every row, for documentation and tests.
    pub const ALL: [&P; 29] = [
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
        &HTTP_ERROR,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body exceeds the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("no route for this path")]
    RouteNotFound,
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("not ready: {}", .0.cause.describe())]
    NotReady(crate::kinesis::NotReady),
    #[error("internal error: {0}")]
    Internal(String),
    /// Coalescing's buffered-bytes budget is spent (`service::coalesce`).
    #[error(
        "the service holds as many records for Kinesis as it may ({buffered} of {limit} bytes); retry later"
    )]
    Overloaded { buffered: usize, limit: usize },
    #[error(transparent)]
    Access(#[from] AccessError),
    /// `server.max_concurrent_requests` are in flight: shed load rather than queue.
    #[error("the service is handling as many requests as it may; retry later")]
    TooBusy,
}

/// The service layer's error is kept apart (it must not know HTTP) and flattens in here.
impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Validation(v) => Self::Validation(v),
            IngestError::Publish(p) => Self::Publish(p),
            IngestError::Overloaded { buffered, limit } => Self::Overloaded { buffered, limit },
            IngestError::Internal(detail) => Self::Internal(detail),
        }
    }
}

/// A panic's message, when its payload is a string (as `panic!` makes it).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)")
}

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
    retry_after: bool,
    /// What went wrong in detail, for the log only.
    #[serde(skip)]
    log_detail: Option<String>,
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

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl ApiError {
    /// The error's row in the table.
    pub fn kind(&self) -> &'static ProblemType {
        use ValidationError as V;
        use problems as p;
        match self {
            Self::Validation(v) => match v {
                V::InvalidStreamName { .. } => &p::INVALID_STREAM_NAME,
                V::InvalidQueryParameter(_) => &p::INVALID_QUERY_PARAMETER,
                V::InvalidBody(_) | V::InvalidLine { .. } => &p::INVALID_BODY,
                V::InvalidEnvelope { .. } => &p::INVALID_ENVELOPE,
                V::PartitionKeyNotFound { .. } => &p::PARTITION_KEY_NOT_FOUND,
                V::InvalidExplicitHashKey { .. } => &p::INVALID_EXPLICIT_HASH_KEY,
                V::DataMustBeList => &p::DATA_MUST_BE_LIST,
                V::EmptyBatch => &p::EMPTY_BATCH,
                V::TooManyRecords { .. } => &p::TOO_MANY_RECORDS,
                V::InvalidPartitionKey { .. } => &p::INVALID_PARTITION_KEY,
                V::RecordTooLarge { .. } => &p::RECORD_TOO_LARGE,
                V::BatchTooLarge { .. } => &p::BATCH_TOO_LARGE,
            },
            Self::Publish(e) => match e {
                PublishError::NotFound { .. } => &p::STREAM_NOT_FOUND,
                PublishError::Throttled { .. } => &p::THROTTLED,
                PublishError::Rejected { .. } => &p::KINESIS_REJECTED,
                PublishError::Upstream { .. } | PublishError::NoCredentials { .. } => {
                    &p::UPSTREAM_ERROR
                }
                PublishError::Unavailable { .. } => &p::UPSTREAM_UNAVAILABLE,
                PublishError::Timeout { .. } => &p::UPSTREAM_TIMEOUT,
            },
            Self::Access(a) => match a {
                AccessError::Unauthenticated => &p::UNAUTHORIZED,
                AccessError::Forbidden(_) => &p::FORBIDDEN,
                AccessError::StreamNotAllowed(_) => &p::STREAM_NOT_FOUND,
            },
            Self::UnsupportedMediaType(_) => &p::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => &p::PAYLOAD_TOO_LARGE,
            Self::RouteNotFound => &p::NOT_FOUND,
            Self::MethodNotAllowed => &p::METHOD_NOT_ALLOWED,
            Self::NotReady(_) => &p::NOT_READY,
            Self::Internal(_) => &p::INTERNAL_ERROR,
            Self::Overloaded { .. } | Self::TooBusy => &p::OVERLOADED,
        }
    }

    /// The answer: the row, the error's own words as detail, and its typed fields.
    pub fn problem(&self) -> Problem {
        use ValidationError as V;
        let mut problem = Problem::new(self.kind(), self.to_string());
        match self {
            Self::Validation(
                V::TooManyRecords { limit, actual } | V::BatchTooLarge { limit, actual },
            ) => (problem.limit, problem.actual) = (Some(*limit), Some(*actual)),
            Self::Validation(V::InvalidPartitionKey {
                limit,
                actual,
                index,
            }) => {
                (problem.limit, problem.actual, problem.index) =
                    (Some(*limit), Some(*actual), *index);
            }
            Self::Validation(
                V::InvalidEnvelope { index, .. } | V::PartitionKeyNotFound { index, .. },
            ) => problem.index = Some(*index),
            Self::Validation(V::InvalidExplicitHashKey { index, .. }) => problem.index = *index,
            Self::Validation(V::InvalidLine { line, .. }) => problem.line = Some(*line),
            Self::Validation(V::RecordTooLarge {
                index,
                limit,
                actual,
            }) => {
                (problem.limit, problem.actual, problem.index) =
                    (Some(*limit), Some(*actual), Some(*index));
            }
            Self::PayloadTooLarge { limit } => problem.limit = Some(*limit),
            // Kinesis' message names the stream's ARN, and so the AWS account: say which stream,
            // and keep Kinesis' words for the log.
            Self::Publish(PublishError::NotFound { stream, .. }) => {
                problem.log_detail = Some(std::mem::take(&mut problem.detail));
                problem.detail = format!("Stream {stream} not found");
            }
            // Not "Kinesis refused": Kinesis was never called. That the service lacks credentials
            // is no internal detail (readiness says it too); the chain's own words stay in the log.
            Self::Publish(PublishError::NoCredentials { .. }) => {
                problem.detail = "The service has no AWS credentials to sign its request to \
                                  Kinesis with, so Kinesis was not called; the details are in the \
                                  service's log"
                    .to_owned();
            }
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
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

/// Adds the request id to problem bodies and logs each 5xx's hidden detail once.
pub async fn problem_middleware(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    let known = response.extensions().get::<Problem>().cloned();
    let Some(mut problem) = known.or_else(|| bare_problem(response.status())) else {
        return response;
    };
    match (&problem.log_detail, problem.status) {
        // Our bug or our setup: an operator must act.
        (Some(detail), 500 | 502) => {
            tracing::error!(code = problem.code, status = problem.status, detail = %detail, "Request failed");
        }
        // The caller's mistake, with Kinesis' own words (e.g. a missing stream's ARN).
        (Some(detail), status) if status < 500 => {
            tracing::info!(code = problem.code, status = problem.status, detail = %detail, "Request refused");
        }
        // Kinesis unreachable or slow: transient, callers were told to retry.
        (Some(detail), _) => {
            tracing::warn!(code = problem.code, status = problem.status, detail = %detail, "Request failed");
        }
        (None, _) => {}
    }
    problem.request_id = request_id;
    render_keeping_headers(response, problem)
}

/// The problem for a bare error answer from a layer we do not own (timeout, decompression), so
/// every 4xx/5xx keeps the body of docs/api.md#error-body; `None` for a success.
fn bare_problem(status: StatusCode) -> Option<Problem> {
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let (kind, detail) = match status.as_u16() {
        408 => (
            &problems::REQUEST_TIMEOUT,
            "the request took longer than the server allows",
        ),
        413 => (
            &problems::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        ),
        415 => (
            &problems::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Encoding: send gzip, zstd or identity",
        ),
        500 => (&problems::INTERNAL_ERROR, "a layer answered 500"),
        503 => (
            &problems::OVERLOADED,
            "the service is overloaded; retry later",
        ),
        _ => (&problems::HTTP_ERROR, "the request could not be handled"),
    };
    let mut problem = Problem::new(kind, detail.to_owned());
    // A status this table has no row for keeps its own number.
    problem.status = status.as_u16();
    Some(problem)
}

/// `problem` rendered once as the answer, keeping the headers `response` already carried (the
/// request id, a layer's own headers); the problem's own headers win, and the old length goes.
fn render_keeping_headers(response: Response, problem: Problem) -> Response {
    let (mut parts, _) = response.into_parts();
    let mut fresh = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in fresh.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    *fresh.headers_mut() = parts.headers;
    fresh
}

/// A route's problem answers for its OpenAPI `responses`, drawn from the table: one response per
/// status, naming the codes that answer with it, so the document cannot drift from the table.
fn problem_responses(
    codes: &[&str],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let mut by_status: std::collections::BTreeMap<u16, Vec<&ProblemType>> = Default::default();
    for kind in problems::ALL.iter().filter(|k| codes.contains(&k.code)) {
        by_status
            .entry(kind.status.as_u16())
            .or_default()
            .push(kind);
    }
    by_status
        .into_iter()
        .map(|(status, kinds)| {
            let description = kinds
                .iter()
                .map(|k| {
                    let retry = if k.retry_after { " (Retry-After)" } else { "" };
                    format!("`{}`: {}{retry}", k.code, k.when)
                })
                .collect::<Vec<_>>()
                .join("; ");
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", content)
                .build();
            (status.to_string(), response.into())
        })
        .collect()
}

/// The problem answers of `POST /streams/{stream}/records`.
pub(crate) struct WriteProblems;

impl utoipa::IntoResponses for WriteProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        let codes: Vec<&str> = problems::ALL
            .iter()
            .map(|k| k.code)
            // Not answers of this route: readiness, unknown routes, other layers' statuses.
            .filter(|c| !matches!(*c, "not_ready" | "not_found" | "http_error"))
            .collect();
        problem_responses(&codes)
    }
}

/// The problem answer of `GET /health/ready`.
pub(crate) struct ReadyProblems;

impl utoipa::IntoResponses for ReadyProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problem_responses(&["not_ready"])
    }
}

/// The problem answers of `GET /metrics`.
pub(crate) struct MetricsProblems;

impl utoipa::IntoResponses for MetricsProblems {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        problem_responses(&["unauthorized", "not_found"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_code_and_classes_follow_api_md() {
        let mut codes: Vec<_> = problems::ALL.iter().map(|k| k.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), problems::ALL.len(), "a code appears twice");
        for kind in problems::ALL {
            let status = kind.status.as_u16();
            // docs/api.md#error-classes: KinesisWriterError on every 422 and 413, and only there.
            assert_eq!(
                kind.class == ErrorClass::KinesisWriterError,
                status == 422 || status == 413,
                "{}",
                kind.code
            );
            // 5xx bodies never echo internal detail, except where the words are our own.
            if status >= 500 && !matches!(kind.code, "overloaded" | "not_ready") {
                assert!(kind.public_detail.is_some(), "{}", kind.code);
            }
        }
    }

    #[test]
    fn typed_details_reach_the_body() {
        let p = ApiError::Validation(ValidationError::RecordTooLarge {
            index: 3,
            limit: 10,
            actual: 11,
        })
        .problem();
        assert_eq!((p.limit, p.actual, p.index), (Some(10), Some(11), Some(3)));
        let p = ApiError::Publish(PublishError::NotFound {
            stream: "s".into(),
            message: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
        })
        .problem();
        assert_eq!(p.detail, "Stream s not found");
        assert!(p.log_detail.unwrap().contains("123456789012"));
        let p = ApiError::Publish(PublishError::Upstream {
            detail: "AccessDenied for role x".into(),
        })
        .problem();
        assert!(!p.detail.contains("role x"));
        assert_eq!(p.error_class, ErrorClass::UpstreamError);
    }
}
