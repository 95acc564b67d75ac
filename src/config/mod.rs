//! Settings: the layered configuration tree and its start-up validation.
//!
//! Sources, later wins: `config/base.yaml`, `config/$APP_ENVIRONMENT.yaml` (`local` by default), then
//! environment variables `APP_<SECTION>__<KEY>` (lists as one variable each, and the standard AWS
//! variables beating a file's endpoint and region: [`environment`]). Everything a deployment may want to change lives
//! here, limits included, so that no number in the request path is a literal.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

mod aggregation;
mod coalesce;
mod environment;
mod per_stream;

pub use aggregation::{
    AggregationConfig, AggregationOverrides, AggregationSettings, StreamAggregation,
};
pub use coalesce::{CoalesceOverrides, CoalesceSettings, LaneConfig, StreamCoalesce};
pub use environment::Env;
pub use per_stream::PerStream;

use crate::domain::limits::{
    Limits, MAX_AWS_RECORD_SIZE, MAX_AWS_REQUEST_SIZE, MAX_RECORDS_PER_REQUEST,
};

/// The whole configuration tree (`config/base.yaml` documents every key).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub kinesis: KinesisSettings,
    pub limits: LimitSettings,
    pub delivery: DeliverySettings,
    pub streams: StreamAccessSettings,
    pub auth: AuthSettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub dev: DevSettings,
    #[serde(default)]
    pub coalesce: CoalesceSettings,
    #[serde(default)]
    pub aggregation: AggregationSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// 0 binds a free port; the bound port is logged and exposed by `Application::port`.
    pub port: u16,
    pub shutdown_drain_timeout_ms: u64,
    /// Requests handled at once; beyond it the service sheds load (503 `overloaded`).
    pub max_concurrent_requests: usize,
    /// Bound on a whole request, body upload included (408 `request_timeout`).
    pub request_timeout_ms: u64,
    /// Open connections at most; beyond it new ones wait in the accept backlog.
    pub max_connections: usize,
    /// From a request's first byte to the end of its headers; slower connections are dropped.
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// How long an answer given before the body was read (401, 404, 413, 415, 503, ...) may spend
    /// reading and discarding the rest of it, so the connection stays usable; past this, or past
    /// `limits.body_limit_bytes`, the answer says `Connection: close` instead.
    pub discard_body_timeout_ms: u64,
}

/// Which streams may be written (`streams:` in config).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamAccessSettings {
    /// Any stream the IAM role reaches. Local development only: production lists its streams.
    pub allow_all: bool,
    #[serde(default)]
    pub allowed: Vec<AllowedStream>,
}

/// One writable stream, optionally addressed by ARN and in another region. A bare name is
/// accepted too (`- clickstream`, or `APP_STREAMS__ALLOWED=clickstream,orders`).
pub type AllowedStream = PerStream<StreamTarget>;

/// How an allowed stream is reached, when not by name in the service's own region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StreamTarget {
    /// Calls use `StreamARN` when set (AWS recommends it; needed across accounts).
    pub arn: Option<String>,
    /// The stream's region, when it is not the service's own.
    pub region: Option<String>,
}

impl AllowedStream {
    /// Reached other than by name in the service's own region (an ARN, another region): the
    /// publishers prepare such a stream's client or endpoint at start-up.
    pub fn has_own_target(&self) -> bool {
        self.set.arn.is_some() || self.set.region.is_some()
    }
}

/// A list entry given as a bare name or as a table of fields.
#[derive(Deserialize)]
#[serde(untagged)]
enum NameOr<T> {
    Name(String),
    Fields(T),
}

/// API keys (`auth:` in config). Keys are stored as SHA-256 hex digests, never in clear.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Writes need a valid key (`Authorization: Bearer <key>` or `x-api-key: <key>`).
    pub required: bool,
    #[serde(default)]
    pub keys: Vec<ApiKeySettings>,
    /// The same list as JSON (for secrets injected as one environment variable,
    /// `APP_AUTH__KEYS_JSON`); appended to `keys`.
    #[serde(default)]
    pub keys_json: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeySettings {
    /// A name for logs and metrics; the key itself is never logged.
    pub id: String,
    /// Lowercase hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// Streams this key may write; `"*"` means every allowed stream. A list, or one string (a
    /// name, `"*"`, or names separated by commas).
    #[serde(deserialize_with = "one_or_many")]
    pub streams: Vec<String>,
}

/// A list of names, also given as one string: `"*"` or `"a, b"` reads as `["*"]` or `["a", "b"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(names) => names,
        OneOrMany::One(names) => names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// `/metrics` needs a valid API key too.
    pub require_auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KinesisSettings {
    /// Empty means "use the standard AWS chain".
    #[serde(default)]
    pub endpoint_url: String,
    /// Empty means "use the standard AWS chain".
    #[serde(default)]
    pub region: String,
    pub connect_timeout_ms: u64,
    pub attempt_timeout_ms: u64,
    pub operation_timeout_ms: u64,
    pub max_attempts: u32,
    pub readiness_interval_ms: u64,
    /// Which client sends PutRecord/PutRecords (`lean` or `sdk`).
    #[serde(default)]
    pub publisher: PublisherKind,
    /// The lean publisher's wire protocol (`auto`, `json` or `cbor`); the SDK always speaks JSON.
    #[serde(default)]
    pub protocol: WireProtocol,
}

/// How the lean publisher encodes PutRecord/PutRecords. Kinesis accepts both; some
/// Kinesis-compatible endpoints (moto's server) read only JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireProtocol {
    /// CBOR where the endpoint reads it, else JSON: found out once per endpoint with one cheap
    /// call, and logged (src/kinesis/lean/protocol.rs).
    #[default]
    Auto,
    /// `application/x-amz-json-1.1`, record data in base64 (what the AWS SDK for Rust sends).
    Json,
    /// `application/x-amz-cbor-1.1`, record data as raw bytes (the Java SDK's and the KPL's
    /// default for Kinesis): 28% less CPU per 100 KiB record than JSON in the bench.
    Cbor,
}

/// How PutRecord and PutRecords are sent. Both use the same aws-config chain, endpoint rules,
/// timeouts and error table; ListShards and readiness always go through the SDK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherKind {
    /// Signed HTTP requests of the service's own (src/kinesis/lean/): less CPU per call.
    #[default]
    Lean,
    /// The AWS SDK's client for every call.
    Sdk,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub max_records_per_request: usize,
    pub max_record_size_bytes: usize,
    pub max_request_size_bytes: usize,
    pub body_limit_bytes: usize,
    #[serde(default)]
    pub streams: Vec<StreamLimitSettings>,
}

/// One entry of `limits.streams`.
pub type StreamLimitSettings = PerStream<LimitOverrides>;

/// Size limits for one stream, for streams whose Kinesis max record size was raised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LimitOverrides {
    pub max_record_size_bytes: Option<usize>,
    pub max_request_size_bytes: Option<usize>,
}

/// The retry layer (`service::delivery`).
#[derive(Debug, Clone, Deserialize)]
pub struct DeliverySettings {
    pub max_attempts: u32,
    pub deadline_ms: u64,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub split_batches: bool,
    pub split_concurrency: usize,
    #[serde(default)]
    pub streams: Vec<StreamDeliverySettings>,
}

/// One entry of `delivery.streams`.
pub type StreamDeliverySettings = PerStream<DeliveryOverrides>;

/// Delivery overrides for one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeliveryOverrides {
    pub max_attempts: Option<u32>,
    pub deadline_ms: Option<u64>,
    pub split_batches: Option<bool>,
}

/// The retry policy in force for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub deadline: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

/// Whether a batch over the call limits goes out as several PutRecords calls (`delivery.split_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPolicy {
    pub enabled: bool,
    /// Calls in flight at once for one split request.
    pub concurrency: usize,
}

/// Everything the settings say about one stream, resolved in one place ([`Settings::stream`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub split: SplitPolicy,
    /// `None`: the stream is not coalesced.
    pub lane: Option<LaneConfig>,
    /// `None`: the stream's records go out plain (no KPL aggregation).
    pub aggregation: Option<AggregationConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DevSettings {
    #[serde(default)]
    pub create_streams: Vec<DevStream>,
}

/// A stream `kinesis-writer create-streams` creates (local development only): `{name, shards}`,
/// or `name` / `name:shards` as the emulator's `INITIALIZE_STREAMS` spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "NameOr<DevStreamFields>")]
pub struct DevStream {
    pub name: String,
    pub shards: i32,
}

#[derive(Deserialize)]
struct DevStreamFields {
    name: String,
    #[serde(default = "one")]
    shards: i32,
}

fn one() -> i32 {
    1
}

impl TryFrom<NameOr<DevStreamFields>> for DevStream {
    type Error = String;

    fn try_from(entry: NameOr<DevStreamFields>) -> Result<Self, String> {
        match entry {
            NameOr::Fields(f) => Ok(Self {
                name: f.name,
                shards: f.shards,
            }),
            NameOr::Name(spec) => match spec.split_once(':') {
                None => Ok(Self {
                    name: spec,
                    shards: 1,
                }),
                Some((name, shards)) => Ok(Self {
                    name: name.to_owned(),
                    shards: shards
                        .parse()
                        .map_err(|_| format!("dev stream {spec:?}: shards must be a number"))?,
                }),
            },
        }
    }
}

impl Settings {
    /// Loads the layers from `config_dir` for the environment named by `APP_ENVIRONMENT`, with the
    /// process's environment variables on top.
    pub fn load(config_dir: &Path) -> anyhow::Result<Self> {
        Self::load_with_env(config_dir, &Env::from_process())
    }

    /// [`Settings::load`] with a given set of environment variables.
    pub fn load_with_env(config_dir: &Path, env: &Env) -> anyhow::Result<Self> {
        let environment = env.get("APP_ENVIRONMENT").unwrap_or("local");
        let mut builder = config::Config::builder()
            .add_source(config::File::from(config_dir.join("base.yaml")))
            .add_source(config::File::from(
                config_dir.join(format!("{environment}.yaml")),
            ))
            .add_source(env.scalars());
        for (key, value) in env.lists()? {
            builder = builder.set_override(key, value)?;
        }
        let mut settings: Settings = builder
            .build()
            .with_context(|| format!("Failed to read configuration from {}", config_dir.display()))?
            .try_deserialize()
            .context("Failed to parse configuration")?;
        env.apply_precedence(&mut settings);
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses settings that would make the service break the API contract or AWS's limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        check_sizes(
            "limits",
            l.max_record_size_bytes,
            l.max_request_size_bytes,
            l.body_limit_bytes,
        )?;
        if l.max_records_per_request == 0 || l.max_records_per_request > MAX_RECORDS_PER_REQUEST {
            bail!(
                "limits.max_records_per_request must be 1..={MAX_RECORDS_PER_REQUEST}, got {}",
                l.max_records_per_request
            );
        }
        per_stream::validate_names("limits.streams", &l.streams)?;
        for s in &l.streams {
            check_sizes(
                &format!("limits.streams[{}]", s.name),
                s.set
                    .max_record_size_bytes
                    .unwrap_or(l.max_record_size_bytes),
                s.set
                    .max_request_size_bytes
                    .unwrap_or(l.max_request_size_bytes),
                l.body_limit_bytes,
            )?;
        }
        if self.kinesis.max_attempts == 0 {
            bail!("kinesis.max_attempts must be at least 1");
        }
        let d = &self.delivery;
        per_stream::validate_names("delivery.streams", &d.streams)?;
        if d.max_attempts == 0 || d.streams.iter().any(|s| s.set.max_attempts == Some(0)) {
            bail!("delivery.max_attempts must be at least 1");
        }
        if d.split_concurrency == 0 {
            bail!("delivery.split_concurrency must be at least 1");
        }
        if d.base_backoff_ms > d.max_backoff_ms {
            bail!("delivery.base_backoff_ms must not exceed delivery.max_backoff_ms");
        }
        let server = &self.server;
        for (name, value) in [
            (
                "max_concurrent_requests",
                server.max_concurrent_requests as u64,
            ),
            ("max_connections", server.max_connections as u64),
            ("header_read_timeout_ms", server.header_read_timeout_ms),
            ("idle_timeout_ms", server.idle_timeout_ms),
        ] {
            if value == 0 {
                bail!("server.{name} must be at least 1");
            }
        }
        per_stream::validate_names("streams.allowed", &self.streams.allowed)?;
        for k in self.auth.all_keys()? {
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "auth.keys[{}].sha256 must be 64 hex digits (the SHA-256 of the key)",
                    k.id
                );
            }
        }
        self.coalesce.validate()?;
        self.aggregation.validate()?;
        Ok(())
    }

    /// The limits in force for `stream`: the global ones with the stream's overrides applied.
    pub fn limits_for(&self, stream: &str) -> Limits {
        let l = &self.limits;
        let o = per_stream::find(&l.streams, stream);
        Limits {
            max_records: l.max_records_per_request,
            max_record_size: o
                .and_then(|o| o.max_record_size_bytes)
                .unwrap_or(l.max_record_size_bytes),
            max_request_size: o
                .and_then(|o| o.max_request_size_bytes)
                .unwrap_or(l.max_request_size_bytes),
        }
    }
}

impl Settings {
    /// The retry policy in force for `stream`: the global one with the stream's overrides applied.
    pub fn retry_policy_for(&self, stream: &str) -> RetryPolicy {
        let d = &self.delivery;
        let o = per_stream::find(&d.streams, stream);
        RetryPolicy {
            max_attempts: o.and_then(|o| o.max_attempts).unwrap_or(d.max_attempts),
            deadline: Duration::from_millis(o.and_then(|o| o.deadline_ms).unwrap_or(d.deadline_ms)),
            base_backoff: Duration::from_millis(d.base_backoff_ms),
            max_backoff: Duration::from_millis(d.max_backoff_ms),
        }
    }

    /// Whether `stream`'s oversized batches are split, by default (a request may choose).
    pub fn split_for(&self, stream: &str) -> SplitPolicy {
        let d = &self.delivery;
        let o = per_stream::find(&d.streams, stream);
        SplitPolicy {
            enabled: o.and_then(|o| o.split_batches).unwrap_or(d.split_batches),
            concurrency: d.split_concurrency,
        }
    }

    /// How `stream`'s lane batches, or `None` when the stream is not coalesced.
    pub fn lane_for(&self, stream: &str) -> Option<LaneConfig> {
        self.coalesce.lane_for(stream, &self.limits_for(stream))
    }

    /// How `stream` aggregates, or `None` when its records go out plain.
    pub fn aggregation_for(&self, stream: &str) -> Option<AggregationConfig> {
        self.aggregation
            .config_for(stream, &self.limits_for(stream))
    }

    /// The streams some per-stream list names, in order and once each.
    pub fn listed_streams(&self) -> std::collections::BTreeSet<&str> {
        let mut all = std::collections::BTreeSet::new();
        all.extend(self.streams.allowed.iter().map(|e| e.name.as_str()));
        all.extend(self.limits.streams.iter().map(|e| e.name.as_str()));
        all.extend(self.delivery.streams.iter().map(|e| e.name.as_str()));
        all.extend(self.coalesce.streams.iter().map(|e| e.name.as_str()));
        all.extend(self.aggregation.streams.iter().map(|e| e.name.as_str()));
        all
    }

    /// Says once, at start-up, what applies to each listed stream and to every other one, so an
    /// operator sees which streams coalesce and aggregate without reading the configuration.
    pub fn log_streams(&self) {
        let describe = |s: &StreamSettings| {
            format!(
                "coalesced: {}, aggregated: {}, max record {} B, max request {} B, {} attempts \
                 within {} ms, split batches: {}",
                s.lane.is_some(),
                s.aggregation.is_some(),
                s.limits.max_record_size,
                s.limits.max_request_size,
                s.retry.max_attempts,
                s.retry.deadline.as_millis(),
                s.split.enabled,
            )
        };
        for name in self.listed_streams() {
            tracing::info!(
                stream = name,
                "Stream settings: {}",
                describe(&self.stream(name))
            );
        }
        // With an allowlist, no other stream is written at all.
        if self.streams.allow_all {
            // A name no list mentions (and no valid stream name is empty) gets the defaults.
            tracing::info!(
                "Settings of every other stream: {}",
                describe(&self.stream(""))
            );
        }
    }

    /// Everything that applies to `stream`.
    pub fn stream(&self, stream: &str) -> StreamSettings {
        StreamSettings {
            limits: self.limits_for(stream),
            retry: self.retry_policy_for(stream),
            split: self.split_for(stream),
            lane: self.lane_for(stream),
            aggregation: self.aggregation_for(stream),
        }
    }
}

fn check_sizes(what: &str, record: usize, request: usize, body: usize) -> anyhow::Result<()> {
    if record == 0 || record > MAX_AWS_RECORD_SIZE {
        bail!("{what}.max_record_size_bytes must be 1..={MAX_AWS_RECORD_SIZE}, got {record}");
    }
    if request == 0 || request > MAX_AWS_REQUEST_SIZE {
        bail!("{what}.max_request_size_bytes must be 1..={MAX_AWS_REQUEST_SIZE}, got {request}");
    }
    // The body carries JSON quoting and separators on top of the record bytes, so a cap at or below
    // the request-size limit would turn valid batches into 413s.
    if body <= request || body <= record {
        bail!(
            "limits.body_limit_bytes ({body}) must exceed {what}'s record and request size limits \
             ({record}, {request}) to leave room for JSON overhead"
        );
    }
    Ok(())
}

impl KinesisSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }
    pub fn readiness_interval(&self) -> Duration {
        Duration::from_millis(self.readiness_interval_ms)
    }
}

impl AuthSettings {
    /// `keys` plus those of `keys_json`.
    pub fn all_keys(&self) -> anyhow::Result<Vec<ApiKeySettings>> {
        let mut keys = self.keys.clone();
        if !self.keys_json.trim().is_empty() {
            let extra: Vec<ApiKeySettings> = serde_json::from_str(&self.keys_json)
                .context("auth.keys_json (APP_AUTH__KEYS_JSON) is not a JSON list of keys")?;
            keys.extend(extra);
        }
        Ok(keys)
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_drain_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_timeout_ms)
    }
}
