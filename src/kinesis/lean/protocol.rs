//! `kinesis.protocol`: which wire protocol the lean publisher speaks to an endpoint.
//!
//! Kinesis reads both `application/x-amz-json-1.1` and `application/x-amz-cbor-1.1`; some
//! Kinesis-compatible endpoints read only JSON (moto's server answers a CBOR body with a 500 and a
//! Python traceback). With `auto` (the default) the publisher finds out once per endpoint, with one
//! cheap call (`ListStreams`, `Limit` 1) in CBOR: an answer in CBOR, a success or an AWS error such
//! as `AccessDeniedException` alike, proves the endpoint reads CBOR; any other answer sends the
//! same call in JSON, and a JSON answer settles on JSON. The choice is logged once. A transport
//! failure settles nothing: the next call (a write or the readiness probe) asks again. An explicit
//! `json` or `cbor` is used as told, and the readiness probe says so when the endpoint does not
//! read it (`NotReadyCause::WrongProtocol`).

use serde::de::IgnoredAny;
use tokio::sync::OnceCell;

use super::answer::Answer;
use super::body::{BodyWriter, SignedBody};
use crate::config::WireProtocol;
use crate::kinesis::PublishError;

pub(super) const AMZ_JSON: &str = "application/x-amz-json-1.1";
pub(super) const AMZ_CBOR: &str = "application/x-amz-cbor-1.1";
pub(super) const LIST_STREAMS: &str = "Kinesis_20131202.ListStreams";

/// A protocol the publisher speaks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    Json,
    Cbor,
}

impl Wire {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Json => AMZ_JSON,
            Self::Cbor => AMZ_CBOR,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Cbor => "CBOR",
        }
    }

    /// `ListStreams` with `Limit` 1: the cheapest call whose answer shows the protocol read.
    pub(super) fn list_streams_body(self) -> SignedBody {
        let mut body = BodyWriter::with_capacity(16);
        match self {
            Self::Json => body.raw(r#"{"Limit":1}"#),
            Self::Cbor => {
                body.cbor_head(5, 1);
                body.cbor_text("Limit");
                body.cbor_head(0, 1);
            }
        }
        body.finish()
    }

    /// Whether `answer` shows that the endpoint read a request in this protocol: an answer in
    /// CBOR for CBOR; for JSON, a JSON body that is not a server error.
    pub(super) fn understood(self, answer: &Answer) -> bool {
        match self {
            Self::Cbor => answer.cbor,
            Self::Json => {
                !answer.cbor
                    && answer.status < 500
                    && serde_json::from_slice::<IgnoredAny>(&answer.body).is_ok()
            }
        }
    }

    /// Why an endpoint that answered `answer` does not read this protocol (for the log and the
    /// readiness body; the status only, never the endpoint's own words).
    pub(super) fn not_understood(self, answer: &Answer) -> String {
        format!(
            "the Kinesis endpoint does not read {} requests (it answered HTTP {} {}); set \
             kinesis.protocol to auto or {}",
            self.name(),
            answer.status,
            if answer.cbor {
                "in CBOR"
            } else {
                "not in CBOR"
            },
            match self {
                Self::Json => "cbor",
                Self::Cbor => "json",
            }
        )
    }
}

/// One endpoint's protocol: fixed by configuration, or found out on first use and kept.
#[derive(Debug)]
pub(super) struct Negotiated {
    fixed: Option<Wire>,
    found: OnceCell<Wire>,
}

/// What one attempt to find an endpoint's protocol learned.
#[derive(Debug)]
pub(super) enum Detected {
    /// The endpoint read this protocol.
    Speaks(Wire),
    /// The endpoint answered, but read neither protocol; the reason, for the log.
    Neither(String),
}

impl Negotiated {
    pub(super) fn new(setting: WireProtocol) -> Self {
        Self {
            fixed: match setting {
                WireProtocol::Auto => None,
                WireProtocol::Json => Some(Wire::Json),
                WireProtocol::Cbor => Some(Wire::Cbor),
            },
            found: OnceCell::new(),
        }
    }

    /// The protocol to send in, when already known (configured, or found out before).
    pub(super) fn known(&self) -> Option<Wire> {
        self.fixed.or_else(|| self.found.get().copied())
    }

    /// The protocol to send in: known, or found out now with `detect` (one caller at a time; a
    /// failed attempt settles nothing).
    pub(super) async fn resolve<F, Fut>(
        &self,
        uri: &http::Uri,
        detect: F,
    ) -> Result<Wire, PublishError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Detected, PublishError>>,
    {
        if let Some(wire) = self.known() {
            return Ok(wire);
        }
        self.found
            .get_or_try_init(|| async {
                match detect().await? {
                    Detected::Speaks(wire) => {
                        tracing::info!(endpoint = %uri, protocol = wire.name(),
                            "kinesis.protocol auto: the Kinesis endpoint reads {}; writes use it",
                            wire.name());
                        Ok(wire)
                    }
                    Detected::Neither(why) => Err(PublishError::Upstream {
                        detail: format!(
                            "kinesis.protocol auto: the Kinesis endpoint {uri} read neither CBOR \
                             nor JSON: {why}"
                        ),
                    }),
                }
            })
            .await
            .copied()
    }
}
