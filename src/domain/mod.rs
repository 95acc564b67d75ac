//! The domain: validated request values and the rules of docs/api.md#writing-records, free of HTTP
//! and AWS types.
//!
//! Parse, don't validate: each newtype's constructor is the only way to get one, so the service
//! layer only ever sees values that already satisfy Kinesis' rules.

pub mod envelope;
pub mod explicit_hash_key;
pub mod limits;
pub mod outcome;
pub mod partition_key;
pub mod payload;
pub mod pointer;
pub mod rules;
pub mod stream_name;

pub use explicit_hash_key::ExplicitHashKey;
pub use limits::Limits;
pub use outcome::{EntryOutcome, PutRecordOutcome, PutRecordsOutcome};
pub use partition_key::PartitionKey;
pub use payload::{BodyKind, Item, Payload, WriteMode};
pub use pointer::JsonPointer;
pub use rules::RecordRules;
pub use stream_name::StreamName;

use bytes::Bytes;

/// One record ready for Kinesis: its data bytes, the partition key it goes under and, when the
/// caller chose its shard directly, its explicit hash key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub data: Bytes,
    pub partition_key: PartitionKey,
    pub explicit_hash_key: Option<ExplicitHashKey>,
}

impl Record {
    /// What Kinesis counts against the record-size and request-size limits: data bytes plus the
    /// partition key's UTF-8 bytes (the explicit hash key does not count).
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.as_str().len()
    }
}

/// A request that breaks the contract: each variant is one stable `code` of
/// docs/api.md#error-codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("stream name must be 1-128 characters of [a-zA-Z0-9_.-], got {got:?}")]
    InvalidStreamName { got: String },
    #[error("{0}")]
    InvalidQueryParameter(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("with record_per_entry=true the body must be a JSON array of records")]
    DataMustBeList,
    /// A JSON array with `record_per_entry=true`, or an NDJSON body, with no record in it.
    #[error(
        "a batch must hold at least one record: a non-empty JSON array with record_per_entry=true, \
         or at least one NDJSON line"
    )]
    EmptyBatch,
    #[error("the batch has {actual} records; the limit is {limit} per request")]
    TooManyRecords { limit: usize, actual: usize },
    #[error(
        "{}the partition key is {actual} characters (UTF-16 code units); it must be 1 to {limit}",
        at(*index)
    )]
    InvalidPartitionKey {
        limit: usize,
        actual: usize,
        /// The record whose own key it is (`None`: the request's `partition_key`).
        index: Option<usize>,
    },
    /// A line of an NDJSON body that is not one JSON value (`invalid_body` with `line`).
    #[error("line {line}: {reason}")]
    InvalidLine { line: usize, reason: String },
    #[error("record {index}: {reason}")]
    InvalidEnvelope { index: usize, reason: String },
    #[error("record {index} has no partition key at {pointer:?}: {reason}")]
    PartitionKeyNotFound {
        index: usize,
        pointer: String,
        reason: String,
    },
    #[error(
        "{}explicit hash key {got:?} must be a decimal from 0 to 2^128-1 without leading zeros",
        at(*index)
    )]
    InvalidExplicitHashKey { index: Option<usize>, got: String },
    #[error("record {index} is {actual} bytes (data + partition key); the limit is {limit}")]
    RecordTooLarge {
        index: usize,
        limit: usize,
        actual: usize,
    },
    #[error("the request is {actual} bytes (data + partition keys); the limit is {limit}")]
    BatchTooLarge { limit: usize, actual: usize },
}

/// `"record N: "` for an error about one record's own value, `""` for the request's.
fn at(index: Option<usize>) -> String {
    index.map(|i| format!("record {i}: ")).unwrap_or_default()
}
