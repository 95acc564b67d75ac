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

/// The class a Python caller would branch on: `except KinesisWriterError` for every limit and
/// shape error (422, 413), as the Python class raised or should have raised.
const KINESIS_WRITER_ERROR: &str = "KinesisWriterError";
/// A malformed HTTP request (400, 404 route, 405, 415).
const REQUEST_ERROR: &str = "RequestError";
/// Kinesis, or the way to it, failed (404 stream, 429, 502, 503, 504).
const UPSTREAM_ERROR: &str = "UpstreamError";
/// This instance sheds load (503 `overloaded`): retry, ideally on another instance.
const OVERLOADED_ERROR: &str = "OverloadedError";
/// A bug in this service (500).
const INTERNAL_ERROR: &str = "InternalError";

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
    #[error("{0}")]
    Overloaded(String),
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// `server.max_concurrent_requests` are in flight: shed load rather than queue.
    #[error("too many requests in flight")]
    TooBusy,
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Validation(v) => Self::Validation(v),
            IngestError::Publish(p) => Self::Publish(p),
            IngestError::Overloaded(detail) => Self::Overloaded(detail),
        }
    }
}

/// RFC 9457 problem details, the body of every 4xx/5xx answer (API.md §3).
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
    pub error_class: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<usize>,
    /// The offending record's position in the request (0 in single mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The service's request id (also in the `x-request-id` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip)]
    retry_after: bool,
    /// What went wrong in detail, for the log only (5xx bodies never echo it).
    #[serde(skip)]
    log_detail: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        let error_class = match status.as_u16() {
            413 | 422 => KINESIS_WRITER_ERROR,
            500 => INTERNAL_ERROR,
            503 if code == "overloaded" => OVERLOADED_ERROR,
            404 | 429 | 502..=504 if code != "not_found" => UPSTREAM_ERROR,
            _ => REQUEST_ERROR,
        };
        Self {
            type_uri: format!("urn:kinesis-writer:problem:{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            error_class,
            limit: None,
            actual: None,
            index: None,
            request_id: None,
            retry_after: false,
            log_detail: None,
        }
    }

    fn sizes(mut self, limit: usize, actual: usize, index: Option<usize>) -> Self {
        (self.limit, self.actual, self.index) = (Some(limit), Some(actual), index);
        self
    }

    /// 503 `overloaded` with `Retry-After`: this instance sheds load. One answer for every cause
    /// (requests in flight, coalescing's byte budget, a layer's bare 503), only the detail differs.
    fn overloaded(detail: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            detail.to_owned(),
        )
        .retry_after()
    }

    /// 404 `stream_not_found`, one answer whether Kinesis lacks the stream or the allowlist does.
    fn stream_not_found(stream: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "stream_not_found",
            "Stream not found",
            format!("Stream {stream} not found"),
        )
    }

    fn retry_after(mut self) -> Self {
        self.retry_after = true;
        self
    }

    /// A 5xx whose body says only `public`, while `detail` goes to the log.
    fn hidden(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        public: &str,
        detail: String,
    ) -> Self {
        let mut p = Self::new(status, code, title, public.to_owned());
        p.log_detail = Some(detail);
        p
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl ApiError {
    /// The one mapping from every error to its status, code and body.
    pub fn problem(&self) -> Problem {
        use StatusCode as S;
        use ValidationError as V;
        let detail = self.to_string();
        match self {
            Self::Validation(v) => match v {
                V::InvalidStreamName { .. } => Problem::new(
                    S::BAD_REQUEST,
                    "invalid_stream_name",
                    "Invalid stream name",
                    detail,
                ),
                V::InvalidQueryParameter(_) => Problem::new(
                    S::BAD_REQUEST,
                    "invalid_query_parameter",
                    "Invalid query parameter",
                    detail,
                ),
                V::InvalidBody(_) => {
                    Problem::new(S::BAD_REQUEST, "invalid_body", "Invalid body", detail)
                }
                V::DataMustBeList => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "data_must_be_list",
                    "Data must be a list",
                    detail,
                ),
                V::EmptyBatch => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "empty_batch",
                    "Empty batch",
                    detail,
                ),
                V::TooManyRecords { limit, actual } => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "too_many_records",
                    "Too many records",
                    detail,
                )
                .sizes(*limit, *actual, None),
                V::InvalidPartitionKey { limit, actual } => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "invalid_partition_key",
                    "Invalid partition key",
                    detail,
                )
                .sizes(*limit, *actual, None),
                V::RecordTooLarge {
                    index,
                    limit,
                    actual,
                } => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "record_too_large",
                    "Record too large",
                    detail,
                )
                .sizes(*limit, *actual, Some(*index)),
                V::BatchTooLarge { limit, actual } => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "batch_too_large",
                    "Batch too large",
                    detail,
                )
                .sizes(*limit, *actual, None),
            },
            Self::Publish(p) => match p {
                // Kinesis' message names the stream's ARN, and so the AWS account: say which
                // stream, and keep Kinesis' words for the log.
                PublishError::NotFound { stream, message } => {
                    let mut p = Problem::stream_not_found(stream);
                    p.log_detail = Some(message.clone());
                    p
                }
                PublishError::Throttled { message, .. } => Problem::new(
                    S::TOO_MANY_REQUESTS,
                    "throttled",
                    "Throttled by Kinesis",
                    message.clone(),
                )
                .retry_after(),
                PublishError::Rejected { code, message } => Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "kinesis_rejected",
                    "Rejected by Kinesis",
                    format!("{code}: {message}"),
                ),
                PublishError::Upstream { .. } => Problem::hidden(
                    S::BAD_GATEWAY,
                    "upstream_error",
                    "Upstream error",
                    "Kinesis refused the service's request; the details are in the service's log",
                    detail,
                ),
                PublishError::Unavailable { .. } => Problem::hidden(
                    S::SERVICE_UNAVAILABLE,
                    "upstream_unavailable",
                    "Kinesis unavailable",
                    "Kinesis could not be reached; retry later",
                    detail,
                )
                .retry_after(),
                PublishError::Timeout { .. } => Problem::hidden(
                    S::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "Kinesis timed out",
                    "Kinesis did not answer in time; the write may or may not have happened",
                    detail,
                ),
            },
            Self::UnsupportedMediaType(_) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                detail,
            ),
            Self::PayloadTooLarge { limit } => {
                let mut p = Problem::new(
                    S::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "Payload too large",
                    detail,
                );
                p.limit = Some(*limit);
                p
            }
            Self::RouteNotFound => Problem::new(S::NOT_FOUND, "not_found", "Not found", detail),
            Self::MethodNotAllowed => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                detail,
            ),
            Self::Overloaded(_) => Problem::overloaded(
                "The service holds as many records for Kinesis as it may; retry later",
            ),
            Self::TooBusy => Problem::overloaded(
                "The service is handling as many requests as it may; retry later",
            ),
            Self::Access(a) => match a {
                AccessError::Unauthenticated => {
                    Problem::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
                }
                AccessError::Forbidden(_) => {
                    Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", detail)
                }
                // The same answer as a stream Kinesis does not have: the allowlist reveals nothing.
                AccessError::StreamNotAllowed(stream) => Problem::stream_not_found(stream),
            },
            // The cause in general words; AWS's own (account ids, endpoints) stay in the log,
            // where the readiness task writes them once.
            Self::NotReady(_) => {
                Problem::new(S::SERVICE_UNAVAILABLE, "not_ready", "Not ready", detail).retry_after()
            }
            Self::Internal(_) => Problem::hidden(
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
                "An internal error occurred; it has been logged",
                detail,
            ),
        }
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
        // Readiness failures are logged once per transition by the probe, not per poll.
        (_, _) if problem.code == "not_ready" => {}
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
/// every 4xx/5xx keeps API.md's body; `None` for a success.
fn bare_problem(status: StatusCode) -> Option<Problem> {
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Some(Problem::overloaded(
            "the service is overloaded; retry later",
        ));
    }
    let (code, title, detail) = match status.as_u16() {
        408 => (
            "request_timeout",
            "Request timeout",
            "the request took longer than the server allows",
        ),
        413 => (
            "payload_too_large",
            "Payload too large",
            "the request body is too large",
        ),
        415 => (
            "unsupported_media_type",
            "Unsupported media type",
            "unsupported Content-Encoding: send gzip, zstd or identity",
        ),
        _ => (
            "http_error",
            "HTTP error",
            "the request could not be handled",
        ),
    };
    Some(Problem::new(status, code, title, detail.to_owned()))
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
