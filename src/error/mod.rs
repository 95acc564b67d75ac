//! `ApiError`, the only error type that knows HTTP, and its one mapping to RFC 9457 problem
//! details: one `match` arm per error, which picks the error's row of the table and fills its
//! typed fields together ([`ApiError::problem`]).
//!
//! Handlers return `Result<_, ApiError>`; domain, Kinesis and service errors convert in with `?`.
//! The table and the body live in `problems`; `middleware` adds the request id and logs hidden
//! details; `openapi` documents each route's problem answers from the same table.

mod middleware;
mod openapi;
pub mod problems;

pub use middleware::problem_middleware;
pub(crate) use openapi::{MetricsProblems, ReadyProblems, WriteProblems};
pub use problems::{ErrorClass, Problem, ProblemType, RETRY_AFTER_SECS};

use axum::response::{IntoResponse, Response};

use crate::access::AccessError;
use crate::domain::ValidationError;
use crate::idempotency::IdempotencyError;
use crate::kinesis::PublishError;
use crate::service::IngestError;
use crate::spool::SpoolError;

/// Everything a request can fail with: the service's errors as they are (validation, Kinesis,
/// overload, a bug in a coalescing lane), and what only HTTP knows.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Access(#[from] AccessError),
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
    /// A handler panicked (a bug): 500, the message for the log only.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// `server.max_concurrent_requests` are in flight: shed load rather than queue.
    #[error("the service is handling as many requests as it may; retry later")]
    TooBusy,
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::Ingest(IngestError::Validation(e))
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        Self::Ingest(IngestError::Publish(e))
    }
}

impl ApiError {
    /// The answer: the error's row, its own words as detail, and its typed fields.
    pub fn problem(&self) -> Problem {
        use problems as p;
        let detail = self.to_string();
        match self {
            Self::Ingest(IngestError::Validation(v)) => validation_problem(v, detail),
            Self::Ingest(IngestError::Publish(e)) => publish_problem(e, detail),
            Self::Ingest(IngestError::Overloaded { .. }) | Self::TooBusy => {
                Problem::new(&p::OVERLOADED, detail)
            }
            Self::Ingest(IngestError::Spool(SpoolError::Full { used, limit })) => Problem {
                limit: usize::try_from(*limit).ok(),
                actual: usize::try_from(*used).ok(),
                ..Problem::new(&p::SPOOL_FULL, detail)
            },
            Self::Ingest(IngestError::Spool(SpoolError::Unwritable(_))) => {
                Problem::new(&p::SPOOL_UNAVAILABLE, detail)
            }
            Self::Ingest(IngestError::Internal(_)) | Self::Panicked(_) => {
                Problem::new(&p::INTERNAL_ERROR, detail)
            }
            Self::Access(AccessError::Unauthenticated) => Problem::new(&p::UNAUTHORIZED, detail),
            Self::Access(AccessError::Forbidden(_)) => Problem::new(&p::FORBIDDEN, detail),
            // The same answer as a stream that does not exist: nothing about unlisted streams.
            Self::Access(AccessError::StreamNotAllowed(_)) => {
                Problem::new(&p::STREAM_NOT_FOUND, detail)
            }
            Self::UnsupportedMediaType(_) => Problem::new(&p::UNSUPPORTED_MEDIA_TYPE, detail),
            Self::PayloadTooLarge { limit } => Problem {
                limit: Some(*limit),
                ..Problem::new(&p::PAYLOAD_TOO_LARGE, detail)
            },
            Self::RouteNotFound => Problem::new(&p::NOT_FOUND, detail),
            Self::MethodNotAllowed => Problem::new(&p::METHOD_NOT_ALLOWED, detail),
            Self::NotReady(_) => Problem::new(&p::NOT_READY, detail),
            Self::Idempotency(e) => Problem::new(
                match e {
                    IdempotencyError::InvalidKey(_) => &p::INVALID_IDEMPOTENCY_KEY,
                    IdempotencyError::Required(_) => &p::IDEMPOTENCY_KEY_REQUIRED,
                    IdempotencyError::Reused => &p::IDEMPOTENCY_KEY_REUSED,
                    IdempotencyError::InFlight => &p::IDEMPOTENCY_KEY_IN_FLIGHT,
                    IdempotencyError::Unavailable(_) => &p::IDEMPOTENCY_UNAVAILABLE,
                },
                detail,
            ),
        }
    }
}

/// A refused request's row and the numbers and place it names (docs/api.md#error-body).
fn validation_problem(v: &ValidationError, detail: String) -> Problem {
    use ValidationError as V;
    use problems as p;
    let row = |kind| Problem::new(kind, detail);
    match v {
        V::InvalidStreamName { .. } => row(&p::INVALID_STREAM_NAME),
        V::InvalidQueryParameter(_) => row(&p::INVALID_QUERY_PARAMETER),
        V::InvalidBody(_) => row(&p::INVALID_BODY),
        V::InvalidLine { line, .. } => Problem {
            line: Some(*line),
            ..row(&p::INVALID_BODY)
        },
        V::InvalidEnvelope { index, .. } => Problem {
            index: Some(*index),
            ..row(&p::INVALID_ENVELOPE)
        },
        V::PartitionKeyNotFound { index, .. } => Problem {
            index: Some(*index),
            ..row(&p::PARTITION_KEY_NOT_FOUND)
        },
        V::InvalidExplicitHashKey { index, .. } => Problem {
            index: *index,
            ..row(&p::INVALID_EXPLICIT_HASH_KEY)
        },
        V::DataMustBeList => row(&p::DATA_MUST_BE_LIST),
        V::EmptyBatch => row(&p::EMPTY_BATCH),
        V::TooManyRecords { limit, actual } => Problem {
            limit: Some(*limit),
            actual: Some(*actual),
            ..row(&p::TOO_MANY_RECORDS)
        },
        V::InvalidPartitionKey {
            limit,
            actual,
            index,
        } => Problem {
            limit: Some(*limit),
            actual: Some(*actual),
            index: *index,
            ..row(&p::INVALID_PARTITION_KEY)
        },
        V::RecordTooLarge {
            index,
            limit,
            actual,
        } => Problem {
            limit: Some(*limit),
            actual: Some(*actual),
            index: Some(*index),
            ..row(&p::RECORD_TOO_LARGE)
        },
        V::BatchTooLarge { limit, actual } => Problem {
            limit: Some(*limit),
            actual: Some(*actual),
            ..row(&p::BATCH_TOO_LARGE)
        },
    }
}

/// What Kinesis (or the way to it) said, as the caller may hear it
/// (docs/api.md#errors-from-kinesis).
fn publish_problem(e: &PublishError, detail: String) -> Problem {
    use problems as p;
    match e {
        // Kinesis' message names the stream's ARN, and so the AWS account: say which stream,
        // and keep Kinesis' words for the log.
        PublishError::NotFound { stream, .. } => Problem {
            detail: format!("Stream {stream} not found"),
            log_detail: Some(detail),
            ..Problem::new(&p::STREAM_NOT_FOUND, String::new())
        },
        PublishError::Throttled { .. } => Problem::new(&p::THROTTLED, detail),
        PublishError::Rejected { .. } => Problem::new(&p::KINESIS_REJECTED, detail),
        PublishError::Upstream { .. } => Problem::new(&p::UPSTREAM_ERROR, detail),
        // Not "Kinesis refused": Kinesis was never called. That the service lacks credentials
        // is no internal detail (readiness says it too); the chain's own words stay in the log.
        PublishError::NoCredentials { .. } => Problem {
            detail: "The service has no AWS credentials to sign its request to Kinesis with, so \
                     Kinesis was not called; the details are in the service's log"
                .to_owned(),
            ..Problem::new(&p::UPSTREAM_ERROR, detail)
        },
        PublishError::Unavailable { .. } => Problem::new(&p::UPSTREAM_UNAVAILABLE, detail),
        PublishError::Timeout { .. } => Problem::new(&p::UPSTREAM_TIMEOUT, detail),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.problem().into_response()
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
            if status >= 500 && !matches!(kind.code, "overloaded" | "not_ready" | "spool_full") {
                assert!(kind.public_detail.is_some(), "{}", kind.code);
            }
        }
    }

    #[test]
    fn typed_details_reach_the_body() {
        let p = ApiError::from(ValidationError::RecordTooLarge {
            index: 3,
            limit: 10,
            actual: 11,
        })
        .problem();
        assert_eq!((p.limit, p.actual, p.index), (Some(10), Some(11), Some(3)));
        let p = ApiError::from(PublishError::NotFound {
            stream: "s".into(),
            message: "arn:aws:kinesis:us-east-1:123456789012:stream/s".into(),
        })
        .problem();
        assert_eq!(p.detail, "Stream s not found");
        assert!(p.log_detail.unwrap().contains("123456789012"));
        let p = ApiError::from(PublishError::Upstream {
            detail: "AccessDenied for role x".into(),
        })
        .problem();
        assert!(!p.detail.contains("role x"));
        assert_eq!(p.error_class, ErrorClass::UpstreamError);
    }
}
