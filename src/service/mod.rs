//! The service layer: what a write means, independent of HTTP (limits, key policy, retries).

pub mod coalesce;
mod delivery;
mod ingest;

pub use ingest::{IngestError, IngestService, WriteOutcome};
