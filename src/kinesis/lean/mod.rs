//! `LeanPublisher`: PutRecord and PutRecords as one signed HTTP request each, without the SDK's
//! per-call machinery (BENCHMARKS.md, "lean data path").
//!
//! Per call the SDK runs its orchestrator: a dozen-odd interceptor hooks, endpoint and identity
//! resolution, a serialiser that builds the body and a signer that hashes it again in a second
//! pass and derives the SigV4 key afresh. For the two data-plane calls this service makes, the
//! request shape is fixed, so this module writes the body (CBOR or JSON, `kinesis.protocol`) while
//! hashing it, signs with a key kept per day and region (`sigv4`), and sends it through the SDK's
//! own default HTTP connector (the same hyper pool and rustls set-up). Everything else stays with
//! the SDK: credentials come from the same aws-config chain, endpoints from the SDK's own endpoint
//! rules (resolved once per stream at start-up), and ListShards and the readiness probe go through
//! `SdkPublisher`.
//!
//! Errors are classified by the same table (`PublishError::from_code`) as the SDK path's, and a
//! differential test (tests/api/lean.rs) sends the same requests both ways.

mod credentials;
mod protocol;
mod sigv4;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_kinesis::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_types::service_config::ServiceConfigKey;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use self::credentials::CredentialCache;
use self::protocol::{Detected, Negotiated, Wire};
use self::sigv4::{Sha256Digest, Signer};
use super::{
    AnswerEntry, KinesisPublisher, NotReady, NotReadyCause, ProbeResult, PublishError,
    SdkPublisher, ShardRange, put_records_outcome,
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

/// Where requests for a stream go and how they are signed.
#[derive(Debug)]
struct Endpoint {
    uri: http::Uri,
    /// The `host` header, as signed: the URI's authority.
    host: String,
    signer: Signer,
    /// JSON (`awsJson1_1`, what the SDK speaks) or CBOR (what the Java SDK and the KPL speak to
    /// Kinesis: record data as raw bytes instead of base64, a quarter fewer bytes to hash and
    /// send), as configured or as found out (`protocol`).
    protocol: Negotiated,
}

#[derive(Debug)]
struct Target {
    endpoint: Arc<Endpoint>,
    arn: Option<String>,
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

impl Endpoint {
    /// The SDK's endpoint rules for a data-plane call in `region`, for a stream named by `arn`
    /// or by name.
    async fn resolve(
        config: &SdkConfig,
        region: &str,
        arn: Option<&str>,
        protocol: WireProtocol,
    ) -> anyhow::Result<Self> {
        let params = Params::builder()
            .region(region)
            .use_fips(config.use_fips().unwrap_or(false))
            .use_dual_stack(config.use_dual_stack().unwrap_or(false))
            .set_endpoint(endpoint_url(config))
            .set_stream_arn(arn.map(str::to_owned))
            .set_operation_type(arn.map(|_| "data".to_owned()))
            .build()?;
        let resolved = DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| anyhow::anyhow!("Kinesis endpoint for region {region}: {e}"))?;
        let uri: http::Uri = resolved.url().parse()?;
        let host = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("endpoint {uri} has no host"))?
            .to_string();
        Ok(Self {
            uri,
            host,
            signer: Signer::new(region),
            protocol: Negotiated::new(protocol),
        })
    }
}

/// The endpoint override the SDK client would use: the loader's `endpoint_url` when set in code,
/// else `AWS_ENDPOINT_URL_KINESIS` / the profile's `kinesis.endpoint_url`, else `AWS_ENDPOINT_URL`
/// (the order of `aws_sdk_kinesis::config::Builder::from(&SdkConfig)`).
pub(super) fn endpoint_url(config: &SdkConfig) -> Option<String> {
    if config.get_origin("endpoint_url").is_client_config() {
        return config.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("Kinesis")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field is set");
    config
        .service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| config.endpoint_url().map(str::to_owned))
}

/// A request body and its SHA-256, computed as it was written.
struct SignedBody {
    bytes: Vec<u8>,
    sha256: Sha256Digest,
}

/// Writes JSON into a buffer and into the payload hash in the same pass.
struct BodyWriter {
    bytes: Vec<u8>,
    hash: Sha256,
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        self.hash.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BodyWriter {
    fn with_capacity(n: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(n),
            hash: Sha256::new(),
        }
    }

    fn raw(&mut self, s: &str) {
        self.write_all(s.as_bytes()).expect("writing to a Vec");
    }

    fn string(&mut self, s: &str) {
        serde_json::to_writer(&mut *self, s).expect("writing a string to a Vec");
    }

    /// `"Name":"value"` with the value JSON-escaped.
    fn member(&mut self, name: &str, value: &str) {
        self.raw("\"");
        self.raw(name);
        self.raw("\":");
        self.string(value);
    }

    /// The record's members: `Data` (base64), `PartitionKey`, and `ExplicitHashKey` when set.
    fn record(&mut self, record: &Record) {
        self.raw("\"Data\":\"");
        {
            let mut b64 = base64::write::EncoderWriter::new(&mut *self, &STANDARD);
            b64.write_all(&record.data).expect("writing to a Vec");
            b64.finish().expect("writing to a Vec");
        }
        self.raw("\",");
        self.member("PartitionKey", record.partition_key.as_str());
        if let Some(key) = &record.explicit_hash_key {
            self.raw(",");
            self.member("ExplicitHashKey", key.as_str());
        }
    }

    fn finish(self) -> SignedBody {
        SignedBody {
            bytes: self.bytes,
            sha256: self.hash.finalize(),
        }
    }
}

/// CBOR (RFC 8949), the few shapes a Kinesis request needs: maps, arrays, text and byte strings,
/// all with definite lengths.
impl BodyWriter {
    /// A data item's head: major type and length (or count), in the shortest form.
    fn cbor_head(&mut self, major: u8, len: usize) {
        let major = major << 5;
        let len = len as u64;
        let mut head = [0u8; 9];
        let n = if len < 24 {
            head[0] = major | len as u8;
            1
        } else if len <= 0xff {
            head[..2].copy_from_slice(&[major | 24, len as u8]);
            2
        } else if len <= 0xffff {
            head[0] = major | 25;
            head[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            3
        } else if len <= 0xffff_ffff {
            head[0] = major | 26;
            head[1..5].copy_from_slice(&(len as u32).to_be_bytes());
            5
        } else {
            head[0] = major | 27;
            head[1..9].copy_from_slice(&len.to_be_bytes());
            9
        };
        self.write_all(&head[..n]).expect("writing to a Vec");
    }

    fn cbor_text(&mut self, s: &str) {
        self.cbor_head(3, s.len());
        self.raw(s);
    }

    fn cbor_bytes(&mut self, b: &[u8]) {
        self.cbor_head(2, b.len());
        self.write_all(b).expect("writing to a Vec");
    }

    /// The record's members, as `record` writes them in JSON; the caller opened the map with
    /// `record_members(record)` entries.
    fn cbor_record(&mut self, record: &Record) {
        self.cbor_text("Data");
        self.cbor_bytes(&record.data);
        self.cbor_text("PartitionKey");
        self.cbor_text(record.partition_key.as_str());
        if let Some(key) = &record.explicit_hash_key {
            self.cbor_text("ExplicitHashKey");
            self.cbor_text(key.as_str());
        }
    }
}

/// How many members `record`/`cbor_record` write.
fn record_members(record: &Record) -> usize {
    2 + usize::from(record.explicit_hash_key.is_some())
}

/// A PutRecord body: the stream, the record and its `SequenceNumberForOrdering`.
fn put_record_body(
    protocol: Wire,
    (addressed_by, address): (&str, &str),
    record: &Record,
    ordering: Option<&str>,
) -> SignedBody {
    let mut body = BodyWriter::with_capacity(capacity(std::slice::from_ref(record)));
    match protocol {
        Wire::Json => {
            body.raw("{");
            body.member(addressed_by, address);
            body.raw(",");
            body.record(record);
            if let Some(ordering) = ordering {
                body.raw(",");
                body.member("SequenceNumberForOrdering", ordering);
            }
            body.raw("}");
        }
        Wire::Cbor => {
            body.cbor_head(
                5,
                1 + record_members(record) + usize::from(ordering.is_some()),
            );
            body.cbor_text(addressed_by);
            body.cbor_text(address);
            body.cbor_record(record);
            if let Some(ordering) = ordering {
                body.cbor_text("SequenceNumberForOrdering");
                body.cbor_text(ordering);
            }
        }
    }
    body.finish()
}

/// A PutRecords body: the stream and its records, in order.
fn put_records_body(
    protocol: Wire,
    (addressed_by, address): (&str, &str),
    records: &[Record],
) -> SignedBody {
    let mut body = BodyWriter::with_capacity(capacity(records));
    match protocol {
        Wire::Json => {
            body.raw("{");
            body.member(addressed_by, address);
            body.raw(",\"Records\":[");
            for (i, record) in records.iter().enumerate() {
                body.raw(if i == 0 { "{" } else { ",{" });
                body.record(record);
                body.raw("}");
            }
            body.raw("]}");
        }
        Wire::Cbor => {
            body.cbor_head(5, 2);
            body.cbor_text(addressed_by);
            body.cbor_text(address);
            body.cbor_text("Records");
            body.cbor_head(4, records.len());
            for record in records {
                body.cbor_head(5, record_members(record));
                body.cbor_record(record);
            }
        }
    }
    body.finish()
}

/// Room for base64 (4/3) plus the members around each record.
fn capacity(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| r.data.len().div_ceil(3) * 4 + r.partition_key.as_str().len() + 64)
        .sum::<usize>()
        + 128
}

/// Kinesis' answer, as received.
struct Answer {
    status: u16,
    request_id: Option<String>,
    error_type: Option<String>,
    /// The body is CBOR (by its content type), else JSON.
    cbor: bool,
    body: Bytes,
}

/// An error answer's body in the `awsJson1_1` protocol.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    error_type: Option<String>,
    #[serde(alias = "Message", alias = "errorMessage")]
    message: Option<String>,
}

/// A call Kinesis refused, as the error source behind `PublishError::Upstream`'s detail.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status} from Kinesis")]
struct Refused {
    status: u16,
}

impl Answer {
    /// A successful answer's body, or the error the answer carries.
    fn success<T: DeserializeOwned>(&self, stream: &str) -> Result<T, PublishError> {
        if !(200..300).contains(&self.status) {
            return Err(self.error().about(stream));
        }
        self.decode().map_err(|detail| PublishError::Upstream {
            detail: format!("unreadable answer from Kinesis: {detail}"),
        })
    }

    fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        if self.cbor {
            ciborium::from_reader(&self.body[..]).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice(&self.body).map_err(|e| e.to_string())
        }
    }

    /// The error an unsuccessful answer carries, classified like the SDK path's: by code, else by
    /// status (a 5xx without a code is Kinesis unavailable).
    fn error(&self) -> PublishError {
        let parsed: Option<ErrorBody> = self.decode().ok();
        let (body_type, message) = match parsed {
            Some(b) => (b.error_type, b.message.unwrap_or_default()),
            None => (None, String::new()),
        };
        let code = self
            .error_type
            .as_deref()
            .or(body_type.as_deref())
            .map(sanitize_error_code)
            .unwrap_or_default();
        PublishError::from_answer(
            self.status,
            code,
            &message,
            &Refused {
                status: self.status,
            },
        )
    }
}

/// `aws.protocols#awsJson1_1` error codes may carry a namespace (`ns#Code`) and a suffix
/// (`Code:http://…`); the code is what is between.
fn sanitize_error_code(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw)
}

/// Our own side failed (building the request): not retried, detail for the log.
fn upstream(detail: String) -> PublishError {
    PublishError::Upstream { detail }
}

#[derive(Deserialize)]
struct PutRecordOut {
    #[serde(rename = "ShardId")]
    shard_id: String,
    #[serde(rename = "SequenceNumber")]
    sequence_number: String,
    #[serde(rename = "EncryptionType")]
    encryption_type: Option<String>,
}

#[derive(Deserialize)]
struct PutRecordsOut {
    #[serde(rename = "Records")]
    records: Vec<AnswerEntry>,
    #[serde(rename = "EncryptionType")]
    encryption_type: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExplicitHashKey, PartitionKey};

    fn record(data: &[u8], key: &str, hash: Option<&str>) -> Record {
        Record {
            data: Bytes::copy_from_slice(data),
            partition_key: PartitionKey::parse(key, None).unwrap(),
            explicit_hash_key: hash.map(|h| ExplicitHashKey::parse(h, None).unwrap()),
        }
    }

    #[test]
    fn bodies_are_the_json_the_sdk_would_send_and_hashed_as_written() {
        let records = [
            record(b"hello", "k\"1", None),
            record(&[0, 255, 1], "\u{e9}", Some("42")),
        ];
        let body = put_records_body(Wire::Json, ("StreamName", "s"), &records);
        let json: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"StreamName": "s", "Records": [
                {"Data": "aGVsbG8=", "PartitionKey": "k\"1"},
                {"Data": "AP8B", "PartitionKey": "\u{e9}", "ExplicitHashKey": "42"},
            ]})
        );
        assert_eq!(body.sha256, Sha256::digest(&body.bytes));
    }

    #[test]
    fn cbor_bodies_carry_the_same_members_with_raw_bytes() {
        use ciborium::Value;
        let text = |s: &str| Value::Text(s.to_owned());
        let big = vec![7u8; 70_000];
        let records = [
            record(b"hello", "k\"1", None),
            record(&[0, 255, 1], "\u{e9}", Some("42")),
            record(&big, "big", None),
        ];
        let body = put_records_body(Wire::Cbor, ("StreamARN", "arn:s"), &records);
        let value: Value = ciborium::from_reader(&body.bytes[..]).unwrap();
        let entry = |data: &[u8], key: &str, hash: Option<&str>| {
            let mut members = vec![
                (text("Data"), Value::Bytes(data.to_vec())),
                (text("PartitionKey"), text(key)),
            ];
            if let Some(h) = hash {
                members.push((text("ExplicitHashKey"), text(h)));
            }
            Value::Map(members)
        };
        let want = Value::Map(vec![
            (text("StreamARN"), text("arn:s")),
            (
                text("Records"),
                Value::Array(vec![
                    entry(b"hello", "k\"1", None),
                    entry(&[0, 255, 1], "\u{e9}", Some("42")),
                    entry(&big, "big", None),
                ]),
            ),
        ]);
        assert_eq!(value, want);
        assert_eq!(body.sha256, Sha256::digest(&body.bytes));

        let single = put_record_body(Wire::Cbor, ("StreamName", "s"), &records[0], Some("9"));
        let value: Value = ciborium::from_reader(&single.bytes[..]).unwrap();
        assert_eq!(
            value,
            Value::Map(vec![
                (text("StreamName"), text("s")),
                (text("Data"), Value::Bytes(b"hello".to_vec())),
                (text("PartitionKey"), text("k\"1")),
                (text("SequenceNumberForOrdering"), text("9")),
            ])
        );
    }

    #[test]
    fn cbor_answers_are_read_into_the_same_outcomes() {
        use ciborium::Value;
        let text = |s: &str| Value::Text(s.to_owned());
        let answer = Value::Map(vec![
            (text("FailedRecordCount"), Value::Integer(1.into())),
            (
                text("Records"),
                Value::Array(vec![
                    Value::Map(vec![
                        (text("SequenceNumber"), text("1")),
                        (text("ShardId"), text("shardId-0")),
                    ]),
                    Value::Map(vec![
                        (
                            text("ErrorCode"),
                            text("ProvisionedThroughputExceededException"),
                        ),
                        (text("ErrorMessage"), text("slow")),
                    ]),
                ]),
            ),
            (text("EncryptionType"), text("NONE")),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&answer, &mut bytes).unwrap();
        let ok = Answer {
            status: 200,
            request_id: None,
            error_type: None,
            cbor: true,
            body: Bytes::from(bytes),
        };
        let out: PutRecordsOut = ok.success("s").unwrap();
        assert_eq!(out.records.len(), 2);
        assert_eq!(
            out.records[1].error_code.as_deref(),
            Some("ProvisionedThroughputExceededException")
        );
        let mut bytes = Vec::new();
        let error = Value::Map(vec![
            (text("__type"), text("ResourceNotFoundException")),
            (text("message"), text("gone")),
        ]);
        ciborium::into_writer(&error, &mut bytes).unwrap();
        let refused = Answer {
            status: 400,
            request_id: None,
            error_type: None,
            cbor: true,
            body: Bytes::from(bytes),
        };
        assert!(matches!(refused.error(), PublishError::NotFound { .. }));
    }

    #[test]
    fn error_answers_are_classified_like_the_sdk_path() {
        let answer = |status, header: Option<&str>, body: &str| Answer {
            status,
            request_id: None,
            error_type: header.map(str::to_owned),
            cbor: false,
            body: Bytes::from(body.to_owned()),
        };
        let cases = [
            (
                answer(
                    400,
                    None,
                    r#"{"__type":"com.amazonaws.kinesis.v20131202#ProvisionedThroughputExceededException","message":"slow"}"#,
                ),
                "Throttled",
            ),
            (
                answer(
                    400,
                    Some("ResourceNotFoundException:http://internal"),
                    r#"{"message":"gone"}"#,
                ),
                "NotFound",
            ),
            (
                answer(
                    400,
                    None,
                    r#"{"__type":"ExpiredTokenException","Message":"old"}"#,
                ),
                "Upstream",
            ),
            (
                answer(500, None, r#"{"__type":"InternalFailure"}"#),
                "Unavailable",
            ),
            (answer(503, None, "<html>busy</html>"), "Unavailable"),
            (answer(400, None, "not json"), "Upstream"),
        ];
        for (answer, want) in cases {
            let got = answer.error();
            let kind = match got {
                PublishError::Throttled { .. } => "Throttled",
                PublishError::NotFound { .. } => "NotFound",
                PublishError::Upstream { .. } => "Upstream",
                PublishError::Unavailable { .. } => "Unavailable",
                _ => "other",
            };
            assert_eq!(kind, want, "{got:?}");
        }
    }
}
