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
        /// The user record's position inside the aggregated Kinesis record that holds it (KPL
        /// aggregation, docs/api.md#aggregation); absent for a plain record.
        #[serde(skip_serializing_if = "Option::is_none")]
        sub_sequence_number: Option<u64>,
    },
    #[serde(rename_all = "PascalCase")]
    Failed {
        error_code: String,
        error_message: String,
    },
}

impl EntryOutcome {
    pub fn is_written(&self) -> bool {
        matches!(self, Self::Written { .. })
    }
}

// What an entry's error code means (retriable, throttled) is Kinesis knowledge: `kinesis::codes`.
