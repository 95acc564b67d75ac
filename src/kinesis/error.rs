//! `PublishError`: every way a Kinesis call can fail, classified once at the SDK boundary.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::codes::{CodeClass, INTERNAL_FAILURE, RESOURCE_NOT_FOUND, classify};
use crate::domain::EntryOutcome;

/// A failed Kinesis call, in the categories docs/api.md#errors-from-kinesis maps to HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// `ResourceNotFoundException`: the stream does not exist (or is not visible to us).
    /// `message` is Kinesis' own, which names the stream's ARN and so the AWS account: log it,
    /// never answer with it.
    #[error("stream {stream} not found: {message}")]
    NotFound { stream: String, message: String },
    /// Throughput or KMS throttling, or `LimitExceededException`.
    #[error("throttled by Kinesis ({code}): {message}")]
    Throttled { code: String, message: String },
    /// Kinesis refused the request's content (`InvalidArgumentException`, `ValidationException`).
    #[error("rejected by Kinesis ({code}): {message}")]
    Rejected { code: String, message: String },
    /// Our own setup is at fault (access denied, KMS, credentials, an unreadable answer).
    #[error("upstream error: {detail}")]
    Upstream { detail: String },
    /// Kinesis could not be reached, or answered with a server error.
    #[error("Kinesis unavailable: {detail}")]
    Unavailable { detail: String },
    /// No answer within the configured timeouts.
    #[error("Kinesis timed out: {detail}")]
    Timeout { detail: String },
}

impl PublishError {
    /// Worth another attempt: throttling, Kinesis faults, timeouts and connection failures.
    /// (A timed-out call may already have been written, so its retry can duplicate;
    /// docs/api.md#delivery-and-retries.)
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Unavailable { .. } | Self::Timeout { .. }
        )
    }

    /// Names the stream the failed call was about (an SDK error does not).
    pub(crate) fn about(self, stream: &str) -> Self {
        match self {
            Self::NotFound { message, .. } => Self::NotFound {
                stream: stream.to_owned(),
                message,
            },
            other => other,
        }
    }

    /// Classifies an SDK error: modelled exceptions by code first, then transport failures.
    pub(crate) fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                Self::from_answer(
                    ctx.raw().status().as_u16(),
                    e.code().unwrap_or_default(),
                    e.message().unwrap_or_default(),
                    e,
                )
            }
            SdkError::TimeoutError(_) => Self::Timeout {
                detail: describe(err),
            },
            SdkError::DispatchFailure(d) if d.is_timeout() => Self::Timeout {
                detail: describe(err),
            },
            SdkError::DispatchFailure(d) if d.is_io() => Self::Unavailable {
                detail: describe(err),
            },
            // Credential resolution and other failures before anything was sent: our setup.
            _ => Self::Upstream {
                detail: describe(err),
            },
        }
    }

    /// Classifies an error answer: by its code, else by its HTTP status (a 5xx without a code, as
    /// a load balancer in front of Kinesis may send, is Kinesis unavailable, and so retriable).
    pub(crate) fn from_answer(
        status: u16,
        code: &str,
        message: &str,
        source: &dyn std::error::Error,
    ) -> Self {
        if code.is_empty() && status >= 500 {
            return Self::Unavailable {
                detail: format!(
                    "HTTP {status} without an error code: {}",
                    DisplayChain(source)
                ),
            };
        }
        Self::from_code(code, message, source)
    }

    /// Classifies a Kinesis error code (also used for codes from hand-built responses in tests).
    pub(crate) fn from_code(code: &str, message: &str, source: &dyn std::error::Error) -> Self {
        let message = message.to_owned();
        match classify(code) {
            CodeClass::NotFound => Self::NotFound {
                stream: String::new(),
                message,
            },
            CodeClass::Throttled => Self::Throttled {
                code: code.to_owned(),
                message,
            },
            CodeClass::Rejected => Self::Rejected {
                code: code.to_owned(),
                message,
            },
            CodeClass::Transient => Self::Unavailable {
                detail: format!("{code}: {message}"),
            },
            // AccessDenied, KMS* (not throttling), unknown codes: details for the log only.
            CodeClass::Other => Self::Upstream {
                detail: format!("{code}: {message} ({})", DisplayChain(source)),
            },
        }
    }

    /// The PutRecords entry a record gets when its last attempt was this failed call. Messages
    /// are generic where the error's own detail could expose internals.
    pub(crate) fn as_entry(&self) -> EntryOutcome {
        let (code, message) = match self {
            Self::Throttled { code, message } | Self::Rejected { code, message } => {
                (code.clone(), message.clone())
            }
            Self::NotFound { message, .. } => (RESOURCE_NOT_FOUND.to_owned(), message.clone()),
            Self::Timeout { .. } => (
                INTERNAL_FAILURE.to_owned(),
                "the PutRecords call timed out; the record may or may not have been written"
                    .to_owned(),
            ),
            Self::Unavailable { .. } => (
                INTERNAL_FAILURE.to_owned(),
                "Kinesis could not be reached".to_owned(),
            ),
            Self::Upstream { .. } => (
                INTERNAL_FAILURE.to_owned(),
                "upstream error; see the service log".to_owned(),
            ),
        };
        EntryOutcome::Failed {
            error_code: code,
            error_message: message,
        }
    }
}

fn describe<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    DisplayChain(err).to_string()
}

/// An error with its `source()` chain, for logs (SDK errors say little at the top level).
pub(crate) struct DisplayChain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::error::ErrorMetadata;
    use aws_sdk_kinesis::operation::put_records::PutRecordsError;
    use aws_sdk_kinesis::types::error::{
        ProvisionedThroughputExceededException, ResourceNotFoundException,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service_error(err: PutRecordsError) -> SdkError<PutRecordsError, HttpResponse> {
        let raw = HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    fn generic(code: &str) -> PutRecordsError {
        PutRecordsError::generic(ErrorMetadata::builder().code(code).message("m").build())
    }

    /// Modelled exceptions carry code and message in metadata, as the SDK's deserializer sets them.
    fn meta(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    #[test]
    fn modelled_exceptions_map_by_code() {
        let nf = PutRecordsError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Stream x not found")
                .meta(meta("ResourceNotFoundException", "Stream x not found"))
                .build(),
        );
        assert_eq!(
            PublishError::from_sdk(&service_error(nf)),
            PublishError::NotFound {
                stream: String::new(),
                message: "Stream x not found".into()
            }
        );
        let pt = PutRecordsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .meta(meta("ProvisionedThroughputExceededException", "slow down"))
                .build(),
        );
        assert!(matches!(
            PublishError::from_sdk(&service_error(pt)),
            PublishError::Throttled { .. }
        ));
    }

    #[test]
    fn unmodelled_codes_map_by_table() {
        type Check = fn(&PublishError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("ValidationException", |e| {
                matches!(e, PublishError::Rejected { .. })
            }),
            ("InvalidArgumentException", |e| {
                matches!(e, PublishError::Rejected { .. })
            }),
            ("LimitExceededException", |e| {
                matches!(e, PublishError::Throttled { .. })
            }),
            ("KMSThrottlingException", |e| {
                matches!(e, PublishError::Throttled { .. })
            }),
            ("AccessDeniedException", |e| {
                matches!(e, PublishError::Upstream { .. })
            }),
            ("KMSDisabledException", |e| {
                matches!(e, PublishError::Upstream { .. })
            }),
            ("InternalFailure", |e| {
                matches!(e, PublishError::Unavailable { .. })
            }),
            ("SomethingNew", |e| {
                matches!(e, PublishError::Upstream { .. })
            }),
        ];
        for (code, ok) in cases {
            let got = PublishError::from_sdk(&service_error(generic(code)));
            assert!(ok(&got), "{code} mapped to {got:?}");
        }
    }

    #[test]
    fn transport_failures_map_to_unavailable_and_timeout() {
        let io = ConnectorError::io(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let got = PublishError::from_sdk(
            &SdkError::<PutRecordsError, HttpResponse>::dispatch_failure(io),
        );
        assert!(matches!(got, PublishError::Unavailable { .. }), "{got:?}");

        let t =
            ConnectorError::timeout(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        let got =
            PublishError::from_sdk(&SdkError::<PutRecordsError, HttpResponse>::dispatch_failure(t));
        assert!(matches!(got, PublishError::Timeout { .. }), "{got:?}");

        let got = PublishError::from_sdk(
            &SdkError::<PutRecordsError, HttpResponse>::timeout_error("operation timeout"),
        );
        assert!(matches!(got, PublishError::Timeout { .. }), "{got:?}");
    }
}
