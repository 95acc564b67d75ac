//! `LeanPublisher`: PutRecord and PutRecords as one signed HTTP request each, without the SDK's
//! per-call machinery (BENCHMARKS.md, "lean data path").
//!
//! Per call the SDK runs its orchestrator: a dozen-odd interceptor hooks, endpoint and identity
//! resolution, a serialiser that builds the body and a signer that hashes it again in a second
//! pass and derives the SigV4 key afresh. For the two data-plane calls this service makes, the
//! request shape is fixed, so this module writes the body (`body`: CBOR or JSON, as `protocol`
//! settles) while hashing it, signs with a key kept per day and region (`sigv4`), and sends it
//! through the SDK's own default HTTP connector (the same hyper pool and rustls set-up), reading
//! the answer in `answer`. Everything else stays with the SDK: credentials come from the same
//! aws-config chain (`credentials`), endpoints from the SDK's own endpoint rules (`endpoint`,
//! resolved once per stream at start-up), and ListShards goes through `SdkPublisher`. Readiness
//! goes through this module's own exchange, so it checks what writes use.
//!
//! Errors are classified by the same table (`PublishError::from_code`) as the SDK path's, and a
//! differential test (tests/api/lean.rs) sends the same requests both ways.

mod answer;
mod body;
mod credentials;
mod endpoint;
mod protocol;
mod sigv4;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

use self::answer::{Answer, PutRecordOut, PutRecordsOut};
use self::body::{SignedBody, put_record_body, put_records_body};
use self::credentials::CredentialCache;
pub(super) use self::endpoint::endpoint_url;
use self::endpoint::{Endpoint, Target};
use self::protocol::{Detected, Wire};
use super::{
    KinesisPublisher, NotReady, NotReadyCause, ProbeResult, PublishError, SdkPublisher, ShardRange,
    put_records_outcome,
};
use crate::config::{AllowedStream, WireProtocol};
use crate::domain::{PutRecordOutcome, PutRecordsOutcome, Record, StreamName};

const PUT_RECORD: &str = "Kinesis_20131202.PutRecord";
const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const USER_AGENT: &str = concat!("kinesis-writer/", env!("CARGO_PKG_VERSION"), " lean");

/// The data-plane publisher. ListShards and the readiness probe are delegated to `control`.
#[derive(Debug)]
pub struct LeanPublisher {
    http: SharedHttpConnector,
    credentials: CredentialCache,
    /// Streams addressed by name in the configured region.
    default: Arc<Endpoint>,
    /// Streams configured with an ARN or another region (`streams.allowed`).
    targets: HashMap<String, Target>,
    /// Bound on one call, the answer's body included (the SDK's attempt timeout).
    timeout: Duration,
    control: SdkPublisher,
}

impl LeanPublisher {
    /// Builds from the same `SdkConfig` as the SDK client: region, endpoint override, FIPS and
    /// dual-stack settings, timeouts and credentials chain. Fails when the SDK's endpoint rules
    /// reject the configuration, as the SDK client would on every call.
    pub async fn new(
        config: &SdkConfig,
        streams: &[AllowedStream],
        protocol: WireProtocol,
        control: SdkPublisher,
    ) -> anyhow::Result<Self> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or_else(|| anyhow::anyhow!("no AWS region configured"))?;
        let default = Arc::new(Endpoint::resolve(config, &region, None, protocol).await?);
        let mut targets = HashMap::new();
        for s in streams.iter().filter(|s| s.has_own_target()) {
            let region = s.set.region.as_deref().unwrap_or(&region);
            let endpoint =
                Arc::new(Endpoint::resolve(config, region, s.set.arn.as_deref(), protocol).await?);
            targets.insert(
                s.name.clone(),
                Target {
                    endpoint,
                    arn: s.set.arn.clone(),
                },
            );
        }
        let timeouts = config.timeout_config();
        let attempt = timeouts.and_then(|t| t.operation_attempt_timeout());
        let operation = timeouts.and_then(|t| t.operation_timeout());
        let timeout = match (attempt, operation) {
            (Some(a), Some(o)) => a.min(o),
            (a, o) => a.or(o).unwrap_or(Duration::from_secs(30)),
        };
        let mut settings = HttpConnectorSettings::builder();
        if let Some(t) = timeouts.and_then(|t| t.connect_timeout()) {
            settings = settings.connect_timeout(t);
        }
        if let Some(t) = timeouts.and_then(|t| t.read_timeout()) {
            settings = settings.read_timeout(t);
        }
        let http = aws_smithy_http_client::default_connector(
            &settings.build(),
            Some(SharedAsyncSleep::new(TokioSleep::new())),
        )
        .ok_or_else(|| anyhow::anyhow!("the AWS SDK has no default HTTPS client in this build"))?;
        Ok(Self {
            http,
            credentials: CredentialCache::new(config.credentials_provider(), timeout),
            default,
            targets,
            timeout,
            control,
        })
    }

    /// The endpoint for `stream` and how the body names it: `("StreamARN", arn)` when configured,
    /// else `("StreamName", name)`.
    fn target<'a>(&'a self, stream: &'a StreamName) -> (&'a Endpoint, &'static str, &'a str) {
        match self.targets.get(stream.as_str()) {
            Some(Target {
                endpoint,
                arn: Some(arn),
            }) => (endpoint, "StreamARN", arn),
            Some(t) => (&t.endpoint, "StreamName", stream.as_str()),
            None => (&self.default, "StreamName", stream.as_str()),
        }
    }

    /// The protocol to speak to `endpoint`: configured, or found out (once) by asking it.
    async fn wire(&self, endpoint: &Endpoint) -> Result<Wire, PublishError> {
        endpoint
            .protocol
            .resolve(&endpoint.uri, || self.detect(endpoint))
            .await
    }

    /// Asks `endpoint` in CBOR, then, unless it answered in CBOR, in JSON (`protocol`).
    async fn detect(&self, endpoint: &Endpoint) -> Result<Detected, PublishError> {
        let cbor = self.list_streams(endpoint, Wire::Cbor).await?;
        if Wire::Cbor.understood(&cbor) {
            return Ok(Detected::Speaks(Wire::Cbor));
        }
        let json = self.list_streams(endpoint, Wire::Json).await?;
        if Wire::Json.understood(&json) {
            return Ok(Detected::Speaks(Wire::Json));
        }
        Ok(Detected::Neither(format!(
            "{}; {}",
            Wire::Cbor.not_understood(&cbor),
            Wire::Json.not_understood(&json)
        )))
    }

    async fn list_streams(&self, endpoint: &Endpoint, wire: Wire) -> Result<Answer, PublishError> {
        let body = wire.list_streams_body();
        self.call(endpoint, wire, protocol::LIST_STREAMS, body)
            .await
    }

    /// Signs and sends one call; answers the status, request id and body of Kinesis' answer.
    async fn call(
        &self,
        endpoint: &Endpoint,
        wire: Wire,
        target: &str,
        body: SignedBody,
    ) -> Result<Answer, PublishError> {
        let credentials = self.credentials.get().await?;
        let content_type = wire.content_type();
        let signature = endpoint.signer.sign(
            &credentials,
            SystemTime::now(),
            &endpoint.host,
            content_type,
            target,
            &body.sha256,
        );
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(endpoint.uri.clone())
            .header(http::header::HOST, &endpoint.host)
            .header(http::header::CONTENT_TYPE, content_type)
            .header("x-amz-target", target)
            .header("x-amz-date", signature.amz_date)
            .header(http::header::AUTHORIZATION, signature.authorization)
            .header(http::header::USER_AGENT, USER_AGENT);
        if let Some(token) = credentials.session_token() {
            request = request.header("x-amz-security-token", token.trim());
        }
        let request = request
            .body(SdkBody::from(body.bytes))
            .map_err(|e| upstream(format!("could not build the request: {e}")))?;
        let request = HttpRequest::try_from(request)
            .map_err(|e| upstream(format!("could not build the request: {e}")))?;
        let exchange = async {
            let response = self.http.call(request).await.map_err(|e| {
                let detail = format!("{}", super::error::DisplayChain(&e));
                PublishError::from_connector(&e, detail).at(&endpoint.uri.to_string())
            })?;
            let status = response.status().as_u16();
            let request_id = response
                .headers()
                .get("x-amzn-requestid")
                .map(str::to_owned);
            let error_type = response
                .headers()
                .get("x-amzn-errortype")
                .map(str::to_owned);
            let cbor = response
                .headers()
                .get("content-type")
                .is_some_and(|t| t.contains("cbor"));
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    PublishError::Unavailable {
                        detail: format!(
                            "reading Kinesis' answer failed: {}",
                            super::error::DisplayChain(e.as_ref())
                        ),
                    }
                    .at(&endpoint.uri.to_string())
                })?
                .to_bytes();
            Ok(Answer {
                status,
                request_id,
                error_type,
                cbor,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                PublishError::Timeout {
                    detail: format!("no answer from Kinesis within {:?}", self.timeout),
                }
                .at(&endpoint.uri.to_string())
            })?
    }
}

/// Our own side failed (building the request): not retried, detail for the log.
fn upstream(detail: String) -> PublishError {
    PublishError::Upstream { detail }
}

#[async_trait]
impl KinesisPublisher for LeanPublisher {
    async fn put_record(
        &self,
        stream: &StreamName,
        record: &Record,
        ordering: Option<&str>,
    ) -> Result<PutRecordOutcome, PublishError> {
        let (endpoint, addressed_by, address) = self.target(stream);
        let wire = self.wire(endpoint).await?;
        let body = put_record_body(wire, (addressed_by, address), record, ordering);
        let answer = self.call(endpoint, wire, PUT_RECORD, body).await?;
        let out: PutRecordOut = answer.success(stream.as_str())?;
        Ok(PutRecordOutcome {
            request_id: answer.request_id,
            encryption_type: out.encryption_type,
            shard_id: out.shard_id,
            sequence_number: out.sequence_number,
        })
    }

    async fn put_records(
        &self,
        stream: &StreamName,
        records: &[Record],
    ) -> Result<PutRecordsOutcome, PublishError> {
        let (endpoint, addressed_by, address) = self.target(stream);
        let wire = self.wire(endpoint).await?;
        let body = put_records_body(wire, (addressed_by, address), records);
        let answer = self.call(endpoint, wire, PUT_RECORDS, body).await?;
        let out: PutRecordsOut = answer.success(stream.as_str())?;
        put_records_outcome(
            out.records,
            records.len(),
            out.encryption_type,
            answer.request_id,
        )
    }

    /// The data path's own exchange (credentials, signing, connector, protocol) on the default
    /// endpoint: ready only when a write would be read. When the call cannot be made at all, the
    /// SDK's probe says why (its diagnosis of credentials and reachability is the fuller one).
    async fn probe(&self) -> ProbeResult {
        let endpoint = &self.default;
        let asked = match self.wire(endpoint).await {
            Ok(wire) => self
                .list_streams(endpoint, wire)
                .await
                .map(|answer| (wire, answer)),
            Err(e) => Err(e),
        };
        match asked {
            Ok((wire, answer)) if wire.understood(&answer) => ProbeResult::Answered,
            Ok((wire, answer)) => ProbeResult::Failed(NotReady {
                cause: NotReadyCause::WrongProtocol,
                detail: wire.not_understood(&answer),
            }),
            Err(e) => match self.control.probe().await {
                failed @ ProbeResult::Failed(_) => failed,
                ProbeResult::Answered => ProbeResult::Failed(NotReady {
                    cause: if matches!(e, PublishError::Upstream { .. })
                        && endpoint.protocol.known().is_none()
                    {
                        NotReadyCause::WrongProtocol
                    } else {
                        NotReadyCause::Other
                    },
                    detail: e.to_string(),
                }),
            },
        }
    }

    async fn list_shards(&self, stream: &StreamName) -> Result<Vec<ShardRange>, PublishError> {
        self.control.list_shards(stream).await
    }
}
