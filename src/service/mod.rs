//! The service layer: what a write means, independent of HTTP (limits, key policy, retries).

mod aggregate;
mod coalesce;
mod delivery;
mod ingest;
mod shard_map;

pub use ingest::{IngestService, WriteOutcome, WriteRequest};

use crate::domain::ValidationError;
use crate::kinesis::PublishError;

/// Why a write failed, in the service's terms. `error::ApiError` maps it to HTTP; this layer knows
/// nothing of statuses.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Coalescing's buffered-bytes budget is spent: the caller should come back later.
    #[error(
        "the service holds as many records for Kinesis as it may ({buffered} of {limit} bytes); retry later"
    )]
    Overloaded { buffered: usize, limit: usize },
    /// A bug (a panic in a coalescing lane): 500, the detail for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A panic's message, when its payload is a string (as `panic!` makes it): for the 500 that a
/// panicking handler (routes) or coalescing lane (`coalesce`) answers with, and its log line.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)")
}
