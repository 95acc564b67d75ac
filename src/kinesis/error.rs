//! `PublishError`: every way a Kinesis call can fail, classified once at the SDK boundary.
//!
//! The transport rule, for both publishers: a failure of the connection itself (refused, reset,
//! closed before or while the answer came, an HTTP/2 GOAWAY) is `Unavailable`, which is retried
//! and, when the retries run out, answered 503 with `Retry-After`; no answer in time is `Timeout`.
//! A connection that closed after the request was sent may have been written, as after a timeout,
//! so its retry can duplicate (docs/api.md, "Duplicates that are still possible"). Only what is our own
//! doing (no credentials, a request the HTTP client refused to send, an unreadable answer) is
//! `Upstream` or `NoCredentials`, answered 502 and not retried.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;

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
    /// Our own setup is at fault (access denied, KMS, an unreadable answer).
    #[error("upstream error: {detail}")]
    Upstream { detail: String },
    /// The AWS credential chain gave nothing to sign with: Kinesis was never called.
    #[error("no AWS credentials to sign the Kinesis request with: {detail}")]
    NoCredentials { detail: String },
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

    /// Names where the call went, in the detail of a failure to reach it (for the log; the
    /// answer's body never shows it), with a hint when that is this machine: a local endpoint
    /// nobody answers on is an emulator that is not running.
    pub(crate) fn at(self, endpoint: &str) -> Self {
        let hint = if is_loopback(endpoint) {
            " (a Kinesis emulator on this machine? `make run` starts one)"
        } else {
            ""
        };
        match self {
            Self::Unavailable { detail } => Self::Unavailable {
                detail: format!("Kinesis endpoint {endpoint}{hint}: {detail}"),
            },
            Self::Timeout { detail } => Self::Timeout {
                detail: format!("Kinesis endpoint {endpoint}{hint}: {detail}"),
            },
            other => other,
        }
    }

    /// Classifies an SDK error: modelled exceptions by code first, then transport failures.
    pub(crate) fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    {
        let detail = describe(err);
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
            SdkError::TimeoutError(_) => Self::Timeout { detail },
            // The SDK resolves credentials before it sends, and reports a failure as a dispatch
            // failure of kind "other": tell it apart by its source, a CredentialsError.
            _ if source_is::<CredentialsError>(err) => Self::NoCredentials { detail },
            SdkError::DispatchFailure(d) => match d.as_connector_error() {
                Some(c) => Self::from_connector(c, detail),
                None => Self::Upstream { detail },
            },
            // The answer could not be read: a connection that broke mid-answer is transport, an
            // answer that arrived whole but made no sense is not.
            SdkError::ResponseError(_) if is_transport(err) => Self::Unavailable { detail },
            _ => Self::Upstream { detail },
        }
    }

    /// Classifies a failure of the HTTP client, the one both publishers send with. A timeout is
    /// `Timeout`; a request the client would not send is ours (`Upstream`); everything else is
    /// the connection failing: I/O errors (refused, reset), and "other", which is what the client
    /// calls a connection closed before the answer was complete (hyper's `IncompleteMessage`,
    /// "connection closed before message completed") and an HTTP/2 GOAWAY.
    pub(crate) fn from_connector(e: &ConnectorError, detail: String) -> Self {
        if e.is_timeout() {
            Self::Timeout { detail }
        } else if e.is_user() {
            Self::Upstream { detail }
        } else {
            Self::Unavailable { detail }
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
                "Kinesis could not be reached, or the connection failed mid-call (then the record \
                 may have been written)"
                    .to_owned(),
            ),
            Self::Upstream { .. } => (
                INTERNAL_FAILURE.to_owned(),
                "upstream error; see the service log".to_owned(),
            ),
            Self::NoCredentials { .. } => (
                INTERNAL_FAILURE.to_owned(),
                "the service has no AWS credentials to sign with; Kinesis was not called"
                    .to_owned(),
            ),
        };
        EntryOutcome::Failed {
            error_code: code,
            error_message: message,
        }
    }
}

fn describe<E: Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    DisplayChain(err).to_string()
}

/// Some error in `err`'s source chain (itself included) is an `E`.
fn source_is<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// The chain holds a connection failure: an I/O error, or hyper's own (a connection closed or
/// reset under a request or an answer).
pub(crate) fn is_transport(err: &(dyn Error + 'static)) -> bool {
    source_is::<std::io::Error>(err) || source_is::<hyper::Error>(err)
}

/// `http://127.0.0.1:4568`, `http://localhost:…`, `http://[::1]:…`: this machine.
fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

    /// Every kind of failure the HTTP client reports, against the rule in the module doc: only a
    /// request it would not send is ours; a connection that failed, however, is `Unavailable`.
    #[test]
    fn every_transport_failure_is_retriable_and_only_a_refused_request_is_ours() {
        type Check = fn(&PublishError) -> bool;
        let io = |kind| Box::new(std::io::Error::from(kind)) as Box<dyn Error + Send + Sync>;
        let unavailable: Check = |e| matches!(e, PublishError::Unavailable { .. });
        let cases: Vec<(&str, ConnectorError, Check)> = vec![
            (
                "refused",
                ConnectorError::io(io(std::io::ErrorKind::ConnectionRefused)),
                unavailable,
            ),
            (
                "reset",
                ConnectorError::io(io(std::io::ErrorKind::ConnectionReset)),
                unavailable,
            ),
            (
                // What the client calls a connection closed before the answer was complete.
                "closed before the answer (other, transient)",
                ConnectorError::other(
                    "connection closed before message completed".into(),
                    Some(aws_smithy_types::retry::ErrorKind::TransientError),
                ),
                unavailable,
            ),
            (
                "other, unclassified",
                ConnectorError::other("unrecognized error from hyper".into(), None),
                unavailable,
            ),
            (
                "timeout",
                ConnectorError::timeout(io(std::io::ErrorKind::TimedOut)),
                |e| matches!(e, PublishError::Timeout { .. }),
            ),
            (
                "a request the client would not send",
                ConnectorError::user("invalid header".into()),
                |e| matches!(e, PublishError::Upstream { .. }),
            ),
        ];
        for (what, connector, check) in cases {
            let got = PublishError::from_sdk(
                &SdkError::<PutRecordsError, HttpResponse>::dispatch_failure(connector),
            );
            assert!(check(&got), "{what}: {got:?}");
            assert_eq!(
                got.is_retriable(),
                !matches!(got, PublishError::Upstream { .. })
            );
        }
    }

    #[test]
    fn an_answer_cut_off_is_transport_and_a_garbled_one_is_ours() {
        let raw = || HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::empty());
        let cut = SdkError::<PutRecordsError, HttpResponse>::response_error(
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            raw(),
        );
        let got = PublishError::from_sdk(&cut);
        assert!(matches!(got, PublishError::Unavailable { .. }), "{got:?}");
        let garbled = SdkError::<PutRecordsError, HttpResponse>::response_error("not JSON", raw());
        let got = PublishError::from_sdk(&garbled);
        assert!(matches!(got, PublishError::Upstream { .. }), "{got:?}");
    }

    #[test]
    fn no_credentials_is_told_apart_from_other_dispatch_failures() {
        let creds = CredentialsError::not_loaded("no credentials in this test");
        let err = SdkError::<PutRecordsError, HttpResponse>::dispatch_failure(
            ConnectorError::other(Box::new(creds), None),
        );
        let got = PublishError::from_sdk(&err);
        assert!(matches!(got, PublishError::NoCredentials { .. }), "{got:?}");
        assert!(!got.is_retriable());
    }

    #[test]
    fn an_unreachable_endpoint_is_named_and_a_local_one_hints_at_make_run() {
        let down = || PublishError::Unavailable {
            detail: "connection refused".into(),
        };
        for local in [
            "http://127.0.0.1:4568",
            "http://localhost:4568/",
            "http://[::1]:1",
        ] {
            let PublishError::Unavailable { detail } = down().at(local) else {
                unreachable!()
            };
            assert!(
                detail.contains(local) && detail.contains("make run"),
                "{detail}"
            );
        }
        let PublishError::Unavailable { detail } =
            down().at("https://kinesis.eu-west-1.amazonaws.com")
        else {
            unreachable!()
        };
        assert!(
            detail.contains("https://kinesis.eu-west-1.amazonaws.com"),
            "{detail}"
        );
        assert!(!detail.contains("make run"), "{detail}");
    }
}
