//! Settings: the layered configuration tree, its start-up validation, and the one place a
//! stream's settings are resolved ([`Settings::stream`]). Each section's types live in a file of
//! their own (`access`, `kinesis`, `limits`, `delivery`, `coalesce`, `aggregation`, `spool`,
//! `idempotency`, `dev`); every per-stream list has the shape of [`PerStream`].
//!
//! Sources, later wins: `config/base.yaml`, `config/$APP_ENVIRONMENT.yaml` (`local` by default),
//! then environment variables `APP_<SECTION>__<KEY>` (lists as one variable each, and the standard
//! AWS variables beating a file's endpoint and region: [`environment`]). Everything a deployment
//! may want to change lives here, limits included, so that no number in the request path is a
//! literal.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

mod access;
mod aggregation;
mod coalesce;
mod delivery;
mod dev;
mod environment;
mod idempotency;
mod kinesis;
mod limits;
mod per_stream;
mod spool;

pub use access::{AllowedStream, ApiKeySettings, AuthSettings, StreamAccessSettings, StreamTarget};
pub use aggregation::{
    AggregationConfig, AggregationOverrides, AggregationSettings, StreamAggregation,
};
pub use coalesce::{CoalesceOverrides, CoalesceSettings, LaneConfig, StreamCoalesce};
pub use delivery::{
    DeliveryOverrides, DeliverySettings, RetryPolicy, SplitPolicy, StreamDeliverySettings,
};
pub use dev::{DevSettings, DevStream};
pub use environment::Env;
pub use idempotency::{IdempotencySettings, IdempotencyStoreKind, OnStoreError};
pub use kinesis::{KinesisSettings, PublisherKind, WireProtocol};
pub use limits::{LimitOverrides, LimitSettings, StreamLimitSettings};
pub use per_stream::PerStream;
pub use spool::{SpoolOverrides, SpoolSettings, StreamSpool, WhenFull};

use crate::domain::limits::Limits;

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
    #[serde(default)]
    pub spool: SpoolSettings,
    #[serde(default)]
    pub idempotency: IdempotencySettings,
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

#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// `/metrics` needs a valid API key too.
    pub require_auth: bool,
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
    /// Which requests get an access-log line ("Request finished").
    #[serde(default)]
    pub access_log: AccessLog,
}

/// `telemetry.access_log`: which requests are logged, one line each, at INFO
/// (docs/operations.md#logs-and-request-ids).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Every request.
    #[default]
    All,
    /// Only answers of 400 and above.
    Errors,
    /// None; metrics still count every request.
    Off,
}

impl AccessLog {
    /// Whether an answer with `status` gets a line.
    pub fn logs(self, status: u16) -> bool {
        match self {
            Self::All => true,
            Self::Errors => status >= 400,
            Self::Off => false,
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
        self.limits.validate()?;
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
        self.spool
            .validate(|stream| self.limits_for(stream).max_request_size)?;
        self.idempotency.validate()?;
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
        all.extend(self.spool.streams.iter().map(|e| e.name.as_str()));
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

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_drain_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_timeout_ms)
    }
}

/// One section of a YAML document as its settings type, or its default when the document does not
/// have it: for the sections' unit tests.
#[cfg(test)]
fn section_from_yaml<T: serde::de::DeserializeOwned + Default>(section: &str, yaml: &str) -> T {
    config::Config::builder()
        .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
        .build()
        .unwrap()
        .get::<T>(section)
        .or_else(|e| match e {
            config::ConfigError::NotFound(_) => Ok(T::default()),
            other => Err(other),
        })
        .unwrap_or_else(|e| panic!("{section}: {e}"))
}
