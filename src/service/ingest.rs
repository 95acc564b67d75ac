//! `IngestService`: turns a validated write request into one Kinesis call and its outcome.
//!
//! The order of checks is API.md's: `too_many_records`, then `invalid_partition_key`, then
//! `record_too_large` (lowest index first), then `batch_too_large`. Nothing reaches Kinesis until
//! all of them pass.

use std::sync::Arc;
use std::time::Instant;

use super::delivery;
use crate::config::Settings;
use crate::domain::{
    PartitionKey, Payload, PutRecordOutcome, PutRecordsOutcome, Record, StreamName, ValidationError,
};
use crate::kinesis::{KinesisPublisher, PublishError};

/// The result of a write, in the shape of the Kinesis call that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Single(PutRecordOutcome),
    Batch(PutRecordsOutcome),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

#[derive(Debug)]
pub struct IngestService {
    publisher: Arc<dyn KinesisPublisher>,
    settings: Arc<Settings>,
}

impl IngestService {
    pub fn new(publisher: Arc<dyn KinesisPublisher>, settings: Arc<Settings>) -> Self {
        Self {
            publisher,
            settings,
        }
    }

    pub fn publisher(&self) -> &Arc<dyn KinesisPublisher> {
        &self.publisher
    }

    /// Writes `payload` to `stream`. `partition_key` is the caller's key, if any: one key for every
    /// record; without it each call (single mode) or each record (batch mode) gets a UUID v4.
    /// `split` (the request's choice, else the stream's configuration) lets a batch over the call
    /// limits go out as several PutRecords calls instead of being refused.
    #[tracing::instrument(name = "ingest.write", skip_all, fields(stream = %stream))]
    pub async fn write(
        &self,
        stream: &StreamName,
        partition_key: Option<&str>,
        split: Option<bool>,
        payload: Payload,
    ) -> Result<WriteOutcome, IngestError> {
        let started = Instant::now();
        let limits = self.settings.limits_for(stream.as_str());
        let mut policy = self.settings.retry_policy_for(stream.as_str());
        policy.split_batches = split.unwrap_or(policy.split_batches);
        let publisher = self.publisher.as_ref();
        match payload {
            Payload::Single(data) => {
                let key = key_or_uuid(partition_key)?;
                let record = Record {
                    data,
                    partition_key: key,
                };
                limits.check_record(0, &record)?;
                let outcome =
                    delivery::put_record(publisher, stream, &record, &policy, started).await?;
                Ok(WriteOutcome::Single(outcome))
            }
            Payload::Batch(items) => {
                if !policy.split_batches {
                    limits.check_count(items.len())?;
                }
                let given = partition_key.map(PartitionKey::parse).transpose()?;
                let records: Vec<Record> = items
                    .into_iter()
                    .map(|data| Record {
                        data,
                        partition_key: given.clone().unwrap_or_else(PartitionKey::generate),
                    })
                    .collect();
                if policy.split_batches {
                    limits.check_each(&records)?;
                } else {
                    limits.check_batch(&records)?;
                }
                let outcome =
                    delivery::put_records(publisher, stream, &records, &policy, &limits, started)
                        .await?;
                Ok(WriteOutcome::Batch(outcome))
            }
        }
    }
}

fn key_or_uuid(given: Option<&str>) -> Result<PartitionKey, ValidationError> {
    given.map_or_else(|| Ok(PartitionKey::generate()), PartitionKey::parse)
}
