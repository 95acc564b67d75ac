//! The `aggregation` section: which streams pack small user records into KPL aggregated Kinesis
//! records (docs/api.md#aggregation), and how large the aggregates grow (`kinesis::kpl`,
//! `service::aggregate`).

use std::time::Duration;

use serde::Deserialize;

use super::per_stream::{self, PerStream};
use crate::domain::Limits;

/// `aggregation:` in config. Off unless enabled for every stream or listed per stream: only
/// streams whose consumers de-aggregate (KCL, the kinesis-aggregation libraries) should use it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AggregationSettings {
    /// Aggregate every stream not listed under `streams`.
    pub enabled: bool,
    /// Largest aggregated record in bytes (magic, protobuf and digest); capped by the stream's
    /// max record size less its partition key. The KPL's default is 51,200.
    pub max_bytes: usize,
    /// Most user records in one aggregate.
    pub max_records: usize,
    /// How old a stream's shard map (ListShards) may grow before it is fetched again.
    pub shard_map_refresh_ms: u64,
    /// Per stream: a name (aggregate it), or `{name, enabled, max_bytes, max_records}`.
    pub streams: Vec<StreamAggregation>,
}

impl Default for AggregationSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            max_bytes: 51_200,
            max_records: 1_000,
            shard_map_refresh_ms: 60_000,
            streams: Vec::new(),
        }
    }
}

/// One entry of `aggregation.streams`: `- my-stream` (aggregate it with the section's settings)
/// or `- {name: my-stream, enabled, max_bytes, max_records}`.
pub type StreamAggregation = PerStream<AggregationOverrides>;

/// What an `aggregation.streams` entry may set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AggregationOverrides {
    /// Listed streams aggregate unless this says `false`.
    pub enabled: Option<bool>,
    pub max_bytes: Option<usize>,
    pub max_records: Option<usize>,
}

/// How one stream aggregates, resolved from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregationConfig {
    pub max_bytes: usize,
    pub max_records: usize,
    pub refresh: Duration,
}

impl AggregationSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_records < 2 {
            anyhow::bail!("aggregation.max_records must be at least 2");
        }
        per_stream::validate_names("aggregation.streams", &self.streams)
    }

    /// The aggregation of `stream`, or `None` when it sends plain records.
    pub(super) fn config_for(&self, stream: &str, limits: &Limits) -> Option<AggregationConfig> {
        let (enabled, max_bytes, max_records) = match per_stream::find(&self.streams, stream) {
            None => (self.enabled, None, None),
            Some(set) => (set.enabled.unwrap_or(true), set.max_bytes, set.max_records),
        };
        enabled.then(|| AggregationConfig {
            // The aggregate's partition key (256 UTF-16 units: at most 1,024 UTF-8 bytes) shares
            // the record-size limit with it.
            max_bytes: max_bytes
                .unwrap_or(self.max_bytes)
                .min(limits.max_record_size.saturating_sub(1024)),
            max_records: max_records.unwrap_or(self.max_records).max(2),
            refresh: Duration::from_millis(self.shard_map_refresh_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_records: 500,
        max_record_size: 1_048_576,
        max_request_size: 5_242_880,
    };

    #[test]
    fn off_unless_enabled_globally_or_per_stream() {
        let off = AggregationSettings::default();
        assert_eq!(off.config_for("s", &LIMITS), None);
        let mut s = AggregationSettings {
            streams: vec![
                StreamAggregation::named("plain"),
                StreamAggregation::with(
                    "tuned",
                    AggregationOverrides {
                        enabled: Some(true),
                        max_bytes: Some(10_000_000),
                        max_records: Some(10),
                    },
                ),
            ],
            ..AggregationSettings::default()
        };
        assert_eq!(s.config_for("plain", &LIMITS).unwrap().max_bytes, 51_200);
        let tuned = s.config_for("tuned", &LIMITS).unwrap();
        assert_eq!((tuned.max_bytes, tuned.max_records), (1_048_576 - 1024, 10));
        assert_eq!(s.config_for("other", &LIMITS), None);
        s.enabled = true;
        assert!(s.config_for("other", &LIMITS).is_some());
        assert!(AggregationSettings::default().validate().is_ok());
        s.max_records = 1;
        assert!(s.validate().is_err());
    }
}
