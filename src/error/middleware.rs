//! `problem_middleware`: every 4xx/5xx answer leaves with a problem body carrying the request id
//! (which only the middleware stack knows), bare answers of layers we do not own included, and
//! each hidden 5xx detail is logged once.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problems::{self, Problem};

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
