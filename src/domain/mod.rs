//! The domain: validated request values and the rules of API.md §1, free of HTTP and AWS types.
//!
//! Parse, don't validate: each newtype's constructor is the only way to get one, so the service
//! layer only ever sees values that already satisfy Kinesis' rules.

pub mod limits;
pub mod outcome;
pub mod partition_key;
pub mod payload;
pub mod stream_name;

pub use limits::Limits;
pub use outcome::{EntryOutcome, PutRecordOutcome, PutRecordsOutcome};
pub use partition_key::PartitionKey;
pub use payload::{BodyKind, Payload, WriteMode};
pub use stream_name::StreamName;

use bytes::Bytes;

/// One record ready for Kinesis: its data bytes and the partition key it goes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub data: Bytes,
    pub partition_key: PartitionKey,
}

impl Record {
    /// What Kinesis counts against the record-size and request-size limits: data bytes plus the
    /// partition key's UTF-8 bytes.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.as_str().len()
    }
}

/// A request that breaks the contract: each variant is one stable `code` of API.md.
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
    #[error("with record_per_entry=true the JSON array must hold at least one record")]
    EmptyBatch,
    #[error("the batch has {actual} records; the limit is {limit} per request")]
    TooManyRecords { limit: usize, actual: usize },
    #[error(
        "the partition key is {actual} characters (UTF-16 code units); it must be 1 to {limit}"
    )]
    InvalidPartitionKey { limit: usize, actual: usize },
    #[error("record {index} is {actual} bytes (data + partition key); the limit is {limit}")]
    RecordTooLarge {
        index: usize,
        limit: usize,
        actual: usize,
    },
    #[error("the request is {actual} bytes (data + partition keys); the limit is {limit}")]
    BatchTooLarge { limit: usize, actual: usize },
}
