//! The service layer: what a write means, independent of HTTP (limits, key policy, retries).

mod delivery;
mod ingest;

pub use ingest::{IngestError, IngestService, WriteOutcome};
