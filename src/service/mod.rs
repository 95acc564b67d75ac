//! The service layer: what a write means, independent of HTTP (limits, key policy, the call).

mod ingest;

pub use ingest::{IngestError, IngestService, WriteOutcome};
