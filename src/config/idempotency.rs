//! The `idempotency` section: how `Idempotency-Key` retries are recognised (src/idempotency.rs
//! keeps the answers; docs/api.md#idempotent-retries says what a caller sees).

use serde::Deserialize;

/// The `idempotency` section of the configuration (`config/base.yaml` documents every key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IdempotencySettings {
    /// Where kept answers live.
    pub store: IdempotencyStoreKind,
    /// Seconds a kept answer is replayed for.
    pub ttl_s: u64,
    /// Seconds an in-flight mark holds a key, so a process that died mid-request frees it.
    pub in_flight_ttl_s: u64,
    /// Keys the memory store holds at most; the oldest is evicted first.
    pub max_entries: usize,
    /// What a write does when the store cannot be reached.
    pub on_store_error: OnStoreError,
    /// Streams whose writes must carry `Idempotency-Key` (428 otherwise); a bare name each.
    pub required_streams: Vec<String>,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            store: IdempotencyStoreKind::Memory,
            ttl_s: 86_400,
            in_flight_ttl_s: 60,
            max_entries: 100_000,
            on_store_error: OnStoreError::Fail,
            required_streams: Vec::new(),
        }
    }
}

/// `idempotency.store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdempotencyStoreKind {
    /// In this process: one instance, lost at restart.
    Memory,
    /// A Redis or Valkey server shared by every instance (not built yet: refused at start-up).
    Redis,
}

/// `idempotency.on_store_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// 503 `idempotency_unavailable`: no write without the guarantee.
    Fail,
    /// Process the write without the guarantee (logged, counted).
    Proceed,
}

impl IdempotencySettings {
    /// Refuses settings the store cannot honour.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store == IdempotencyStoreKind::Redis {
            anyhow::bail!(
                "idempotency.store: redis is not built yet; use memory (docs/configuration.md)"
            );
        }
        for (name, value) in [
            ("ttl_s", self.ttl_s),
            ("in_flight_ttl_s", self.in_flight_ttl_s),
            ("max_entries", self.max_entries as u64),
        ] {
            if value == 0 {
                anyhow::bail!("idempotency.{name} must be at least 1");
            }
        }
        for name in &self.required_streams {
            crate::domain::StreamName::parse(name).map_err(|e| {
                anyhow::anyhow!("idempotency.required_streams: {name:?} is not a stream name: {e}")
            })?;
        }
        Ok(())
    }

    /// Whether a write to `stream` must carry `Idempotency-Key`.
    pub fn required_for(&self, stream: &str) -> bool {
        self.required_streams.iter().any(|s| s == stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_and_zero_bounds_are_refused() {
        assert!(IdempotencySettings::default().validate().is_ok());
        let redis = IdempotencySettings {
            store: IdempotencyStoreKind::Redis,
            ..Default::default()
        };
        assert!(
            redis
                .validate()
                .unwrap_err()
                .to_string()
                .contains("not built yet")
        );
        let zero = IdempotencySettings {
            max_entries: 0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let bad = IdempotencySettings {
            required_streams: vec!["no spaces".into()],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
