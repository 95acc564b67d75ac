//! The `spool` section: which streams answer 202 once their records are fsync'd to a local
//! write-ahead log, and the bounds of that log (`crate::spool` keeps it; docs/api.md#durable-acceptance
//! says what a caller sees).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::per_stream::{self, PerStream};

/// The `spool` section of the configuration (`config/base.yaml` documents every key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SpoolSettings {
    /// A directory the service owns; empty: no stream is spooled (then `streams` must be empty).
    pub dir: PathBuf,
    /// The spooled streams: a bare name each (`APP_SPOOL__STREAMS=a,b`).
    pub streams: Vec<StreamSpool>,
    /// On-disk bytes of unshipped records (frames included), all streams together; a write that
    /// would pass it is answered 503 `spool_full`.
    pub max_bytes: u64,
    /// What a write does when the spool is full.
    pub when_full: WhenFull,
    /// At SIGTERM, how long the service keeps shipping before it exits, leaving the rest on disk.
    pub drain_s: u64,
    /// A record refused with an error that may pass (access denied, no credentials) is retried
    /// for this long, then dead-lettered.
    pub dead_after_s: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            streams: Vec::new(),
            max_bytes: 1 << 30,
            when_full: WhenFull::Reject,
            drain_s: 20,
            dead_after_s: 300,
        }
    }
}

/// One entry of `spool.streams`: a name (nothing is set per stream yet; the table form is
/// accepted so the list has the shape of every other per-stream list).
pub type StreamSpool = PerStream<SpoolOverrides>;

/// What a `spool.streams` entry may set: nothing yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SpoolOverrides {}

/// `spool.when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// 503 `spool_full` with `Retry-After`.
    Reject,
    /// Wait for room up to (nine tenths of) `server.request_timeout_ms`, then `spool_full`.
    Block,
}

impl SpoolSettings {
    /// Whether `stream`'s writes are spooled.
    pub fn spools(&self, stream: &str) -> bool {
        per_stream::find(&self.streams, stream).is_some()
    }

    /// At SIGTERM, the shipping budget.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_s)
    }

    /// Refuses settings the spool cannot honour. `largest_request` is the largest request (data +
    /// keys) a spooled stream accepts: a spool smaller than that could never take it.
    pub fn validate(&self, largest_request: impl Fn(&str) -> usize) -> anyhow::Result<()> {
        per_stream::validate_names("spool.streams", &self.streams)?;
        if self.streams.is_empty() {
            return Ok(());
        }
        if self.dir.as_os_str().is_empty() {
            anyhow::bail!("spool.dir must name a directory when spool.streams lists a stream");
        }
        for s in &self.streams {
            let largest = largest_request(&s.name) as u64;
            if self.max_bytes < largest {
                anyhow::bail!(
                    "spool.max_bytes ({}) must be at least the largest request stream {} accepts \
                     ({largest} bytes), or that request could never be spooled",
                    self.max_bytes,
                    s.name
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> SpoolSettings {
        super::super::section_from_yaml("spool", yaml)
    }

    #[test]
    fn nothing_is_spooled_by_default_and_listed_streams_are() {
        let d = settings("other: 1");
        assert_eq!(d, SpoolSettings::default());
        assert!(!d.spools("s"));
        assert_eq!((d.max_bytes, d.drain_s), (1 << 30, 20));
        let s = settings("spool:\n  dir: /tmp/x\n  streams: [a, {name: b}]\n");
        assert!(s.spools("a") && s.spools("b") && !s.spools("c"));
        assert!(s.validate(|_| 1024).is_ok());
    }

    #[test]
    fn settings_are_validated() {
        for bad in [
            "spool: {streams: [a]}",
            "spool: {dir: /tmp/x, streams: ['bad name!']}",
            "spool: {dir: /tmp/x, streams: [a], max_bytes: 100}",
        ] {
            assert!(settings(bad).validate(|_| 1024).is_err(), "{bad}");
        }
        let block = settings("spool: {dir: /tmp/x, streams: [a], when_full: block}");
        assert_eq!(block.when_full, WhenFull::Block);
        assert!(block.validate(|_| 1).is_ok());
    }
}
