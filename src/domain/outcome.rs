//! What Kinesis answered, in our own types spelled as AWS spells them on the wire, so the HTTP layer
//! can return "the raw Kinesis response" without exposing SDK types.

use serde::Serialize;
use utoipa::ToSchema;

/// A `PutRecord` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutcome {
    pub shard_id: String,
    pub sequence_number: String,
    /// `NONE` or `KMS`, when Kinesis returns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_type: Option<String>,
    /// The AWS request id, returned as the `x-amzn-RequestId` header rather than in the body.
    #[serde(skip)]
    pub request_id: Option<String>,
}

/// A `PutRecords` answer: one entry per request record, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutcome {
    pub failed_record_count: usize,
    pub records: Vec<EntryOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_type: Option<String>,
    #[serde(skip)]
    pub request_id: Option<String>,
}

/// One `PutRecords` result entry: written, or failed with Kinesis' per-record error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EntryOutcome {
    #[serde(rename_all = "PascalCase")]
    Written {
        shard_id: String,
        sequence_number: String,
    },
    #[serde(rename_all = "PascalCase")]
    Failed {
        error_code: String,
        error_message: String,
    },
}

/// Per-record error codes that mean "the shard was too busy": a caller should back off.
pub const THROTTLING_CODES: [&str; 2] = [
    "ProvisionedThroughputExceededException",
    "KMSThrottlingException",
];

/// Per-record error codes worth sending again: the shard was busy or Kinesis had a transient fault.
/// Anything else (e.g. `InvalidArgumentException`) would fail the same way every time.
pub const RETRIABLE_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "KMSThrottlingException",
];

impl EntryOutcome {
    pub fn is_written(&self) -> bool {
        matches!(self, Self::Written { .. })
    }

    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Failed { error_code, .. } if RETRIABLE_CODES.contains(&error_code.as_str()))
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Failed { error_code, .. } if THROTTLING_CODES.contains(&error_code.as_str()))
    }
}

impl PutRecordsOutcome {
    /// True when some record failed because of throttling, which earns the caller a `Retry-After`.
    pub fn any_throttled(&self) -> bool {
        self.records.iter().any(EntryOutcome::is_throttled)
    }
}
