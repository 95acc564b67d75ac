//! The narrow port around Kinesis: the calls the service makes, in the service's own types.
//!
//! `KinesisPublisher` is all the rest of the crate sees. `LeanPublisher` (the default) sends the
//! data-plane calls as signed HTTP requests of its own; `SdkPublisher` implements the whole trait
//! over one shared `aws_sdk_kinesis::Client`, serves the lean one's control-plane calls, and is the
//! fallback (`kinesis.publisher: sdk`). SDK types never leave this module.

mod client;
mod codes;
mod error;
pub mod kpl;
mod lean;
mod sdk;

pub use client::{build_sdk_client, load_sdk_config};
pub use error::PublishError;
pub use lean::LeanPublisher;
pub use sdk::SdkPublisher;

use async_trait::async_trait;

use crate::domain::{EntryOutcome, PutRecordOutcome, PutRecordsOutcome, Record, StreamName};

/// Writes records to Kinesis. Object-safe so the application state can hold `Arc<dyn …>` and tests
/// can put a fake behind it.
#[async_trait]
pub trait KinesisPublisher: Send + Sync + std::fmt::Debug + 'static {
    /// One `PutRecord` call; `ordering` is its `SequenceNumberForOrdering`.
    async fn put_record(
        &self,
        stream: &StreamName,
        record: &Record,
        ordering: Option<&str>,
    ) -> Result<PutRecordOutcome, PublishError>;

    /// One `PutRecords` call; per-record failures come back inside the outcome, not as `Err`.
    async fn put_records(
        &self,
        stream: &StreamName,
        records: &[Record],
    ) -> Result<PutRecordsOutcome, PublishError>;

    /// A cheap call that shows whether the endpoint answers with our credentials (readiness).
    async fn probe(&self) -> ProbeResult;

    /// The stream's open shards and their hash-key ranges (`ListShards`), for aggregation's shard
    /// map. A publisher that cannot list shards says so, and aggregation sends plain records.
    async fn list_shards(&self, stream: &StreamName) -> Result<Vec<ShardRange>, PublishError> {
        Err(PublishError::Upstream {
            detail: format!("this publisher cannot list the shards of {stream}"),
        })
    }
}

/// One entry of a PutRecords answer, as either publisher reads it off the wire.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct AnswerEntry {
    #[serde(rename = "SequenceNumber")]
    pub(crate) sequence_number: Option<String>,
    #[serde(rename = "ShardId")]
    pub(crate) shard_id: Option<String>,
    #[serde(rename = "ErrorCode")]
    pub(crate) error_code: Option<String>,
    #[serde(rename = "ErrorMessage")]
    pub(crate) error_message: Option<String>,
}

/// A PutRecords answer's entries as the service's outcome, the same for both publishers: an entry
/// is written only with a shard and a sequence number and no error code; one entry per record
/// sent, or the answer is unusable; failures counted here rather than read from
/// `FailedRecordCount` (emulators have been seen to get it wrong, docs/testing.md#the-emulator, and
/// callers rely on it matching the entries).
pub(crate) fn put_records_outcome(
    entries: Vec<AnswerEntry>,
    sent: usize,
    encryption_type: Option<String>,
    request_id: Option<String>,
) -> Result<PutRecordsOutcome, PublishError> {
    if entries.len() != sent {
        return Err(PublishError::Upstream {
            detail: format!(
                "PutRecords answered {} entries for {sent} records",
                entries.len()
            ),
        });
    }
    let records: Vec<EntryOutcome> = entries
        .into_iter()
        .map(|e| match (e.error_code, e.shard_id, e.sequence_number) {
            (None, Some(shard_id), Some(sequence_number)) => EntryOutcome::Written {
                shard_id,
                sequence_number,
                sub_sequence_number: None,
            },
            (code, _, _) => EntryOutcome::Failed {
                error_code: code.unwrap_or_else(|| codes::INTERNAL_FAILURE.to_owned()),
                error_message: e.error_message.unwrap_or_default(),
            },
        })
        .collect();
    let failed_record_count = records.iter().filter(|e| !e.is_written()).count();
    Ok(PutRecordsOutcome {
        failed_record_count,
        records,
        encryption_type,
        request_id,
    })
}

/// One open shard: its id and the hash keys it owns, `start..=end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub shard_id: String,
    pub start: u128,
    pub end: u128,
}

/// What a readiness probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// Kinesis answered, even if only to say "access denied": endpoint and credentials work.
    Answered,
    /// No answer: credentials unresolvable, endpoint unreachable or too slow.
    Failed(NotReady),
}

/// Why Kinesis cannot be called: a cause that `/health/ready` may tell anyone, and the detail
/// (AWS's own words, endpoints, account ids) for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub cause: NotReadyCause,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReadyCause {
    /// The first probe has not finished.
    NotProbedYet,
    /// The AWS credential chain found nothing (or failed).
    NoCredentials,
    /// Connection refused, DNS, other I/O.
    Unreachable,
    /// No answer within the configured timeouts.
    TimedOut,
    /// The endpoint answers, but does not read the wire protocol writes are sent in.
    WrongProtocol,
    /// Anything else (the detail is in the log).
    Other,
}

impl NotReadyCause {
    /// The words `/health/ready` answers with.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotProbedYet => "Kinesis has not been probed yet",
            Self::NoCredentials => "no AWS credentials found",
            Self::Unreachable => "the Kinesis endpoint cannot be reached",
            Self::TimedOut => "the Kinesis endpoint does not answer in time",
            Self::WrongProtocol => {
                "the Kinesis endpoint does not read the configured wire protocol \
                 (kinesis.protocol: set it to auto)"
            }
            Self::Other => "Kinesis cannot be called; the cause is in the service's log",
        }
    }
}
