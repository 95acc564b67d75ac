//! The `coalesce` section: which streams share PutRecords calls across requests, and how each
//! stream's lane batches (`service::coalesce` runs the lanes).

use std::time::Duration;

use serde::Deserialize;

use super::per_stream::{self, PerStream};
use crate::domain::Limits;
use crate::domain::limits::MAX_RECORDS_PER_REQUEST;

/// The `coalesce` section of the configuration (`config/base.yaml` documents every key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CoalesceSettings {
    /// Coalesce every stream not listed under `streams`. Default: off.
    pub enabled: bool,
    /// Longest wait for more records after a batch's first one. 0: send what has already arrived.
    pub linger_ms: u64,
    /// Records per PutRecords call (at most 500; also capped by `limits.max_records_per_request`).
    pub max_records: usize,
    /// PutRecords calls in flight at once per stream.
    pub max_in_flight: usize,
    /// A batch with at least this many records may be sent while other calls are in flight.
    pub parallel_batch_records: usize,
    /// A batch with at least this many bytes may be sent while other calls are in flight.
    pub parallel_batch_bytes: usize,
    /// Bytes (data + partition keys) waiting or in flight in all lanes together; a request that
    /// would pass it is answered 503 `overloaded`.
    pub max_buffered_bytes: usize,
    /// A lane with nothing to do for this long stops (and starts again on the next request).
    pub idle_timeout_ms: u64,
    /// Per-stream enablement: a name (coalesce it), or `{name, enabled, linger_ms}`.
    pub streams: Vec<StreamCoalesce>,
}

impl Default for CoalesceSettings {
    fn default() -> Self {
        Self {
            // On by default: a lone request is not slowed and no answer changes shape (tests and
            // BENCHMARKS.md), while under load one call carries many requests.
            enabled: true,
            // Measured with `make bench` (BENCHMARKS.md): with no linger, batches grow with the
            // load by themselves (what arrives while a call is out goes into the next one), and
            // an idle stream adds no latency at all.
            linger_ms: 0,
            max_records: MAX_RECORDS_PER_REQUEST,
            max_in_flight: 4,
            parallel_batch_records: 100,
            parallel_batch_bytes: 64 * 1024,
            max_buffered_bytes: 64 * 1024 * 1024,
            idle_timeout_ms: 60_000,
            streams: Vec::new(),
        }
    }
}

/// One entry of `coalesce.streams`: `- my-stream` (coalesce it with the section's settings) or
/// `- {name: my-stream, enabled: false, linger_ms: 5}`.
pub type StreamCoalesce = PerStream<CoalesceOverrides>;

/// What a `coalesce.streams` entry may set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CoalesceOverrides {
    /// Listed streams are coalesced unless this says `false`.
    pub enabled: Option<bool>,
    pub linger_ms: Option<u64>,
}

/// How one stream's lane batches, resolved from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneConfig {
    pub linger: Duration,
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_in_flight: usize,
    pub parallel_records: usize,
    pub parallel_bytes: usize,
}

impl CoalesceSettings {
    /// Refuses settings the lanes cannot honour.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_records == 0 || self.max_records > MAX_RECORDS_PER_REQUEST {
            anyhow::bail!(
                "coalesce.max_records must be 1..={MAX_RECORDS_PER_REQUEST}, got {}",
                self.max_records
            );
        }
        if self.max_in_flight == 0 || u32::try_from(self.max_in_flight).is_err() {
            anyhow::bail!("coalesce.max_in_flight must be at least 1");
        }
        if self.max_buffered_bytes == 0 {
            anyhow::bail!("coalesce.max_buffered_bytes must be at least 1");
        }
        per_stream::validate_names("coalesce.streams", &self.streams)
    }

    /// The lane configuration for `stream`, or `None` when it is not coalesced.
    pub fn lane_for(&self, stream: &str, limits: &Limits) -> Option<LaneConfig> {
        let (enabled, linger_ms) = match per_stream::find(&self.streams, stream) {
            None => (self.enabled, None),
            Some(set) => (set.enabled.unwrap_or(true), set.linger_ms),
        };
        enabled.then(|| LaneConfig {
            linger: Duration::from_millis(linger_ms.unwrap_or(self.linger_ms)),
            max_records: self.max_records.min(limits.max_records),
            max_bytes: limits.max_request_size,
            max_in_flight: self.max_in_flight,
            parallel_records: self.parallel_batch_records,
            parallel_bytes: self.parallel_batch_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_records: 500,
        max_record_size: 1024,
        max_request_size: 4096,
    };

    fn settings(yaml: &str) -> CoalesceSettings {
        super::super::section_from_yaml("coalesce", yaml)
    }

    #[test]
    fn coalescing_is_on_by_default_and_per_stream_when_off_globally() {
        assert_eq!(settings("other: 1"), CoalesceSettings::default());
        assert!(CoalesceSettings::default().lane_for("s", &LIMITS).is_some());

        let s = settings(
            "coalesce:\n  enabled: false\n  linger_ms: 3\n  streams:\n    - plain\n    - {name: tuned, linger_ms: 7}\n    - {name: off, enabled: false}\n",
        );
        let lane = s.lane_for("plain", &LIMITS).expect("a bare name enables");
        assert_eq!(lane.linger, Duration::from_millis(3));
        assert_eq!((lane.max_records, lane.max_bytes), (500, 4096));
        assert_eq!(
            s.lane_for("tuned", &LIMITS).unwrap().linger,
            Duration::from_millis(7)
        );
        assert_eq!(s.lane_for("off", &LIMITS), None);
        assert_eq!(s.lane_for("unlisted", &LIMITS), None);

        let all =
            settings("coalesce:\n  enabled: true\n  streams:\n    - {name: off, enabled: false}\n");
        assert!(all.lane_for("unlisted", &LIMITS).is_some());
        assert_eq!(all.lane_for("off", &LIMITS), None);
    }

    #[test]
    fn settings_are_validated() {
        assert!(CoalesceSettings::default().validate().is_ok());
        for bad in [
            "coalesce: {max_records: 0}",
            "coalesce: {max_records: 501}",
            "coalesce: {max_in_flight: 0}",
            "coalesce: {max_buffered_bytes: 0}",
            "coalesce: {streams: ['bad name!']}",
        ] {
            assert!(settings(bad).validate().is_err(), "{bad}");
        }
    }
}
