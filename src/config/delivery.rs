//! `delivery:`: the retry layer's settings (src/service/delivery.rs), per-stream overrides, and the
//! policies resolved from them.

use std::time::Duration;

use serde::Deserialize;

use super::per_stream::PerStream;

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
