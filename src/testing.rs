//! The one in-process recording fake of Kinesis, for tests that need no socket: the service
//! layer's unit tests and the router-level property tests (tests/properties.rs). It records every
//! call and answers each record by its data: `fail:<ErrorCode>` fails the entry with that code,
//! anything else is written. The service itself never uses it; over HTTP, faults come from
//! crates/fake-kinesis and real behaviour from the emulator.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::{EntryOutcome, PutRecordOutcome, PutRecordsOutcome, Record, StreamName};
use crate::kinesis::{KinesisPublisher, ProbeResult, PublishError};

/// One call as the publisher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub stream: String,
    /// PutRecords (`true`) or PutRecord.
    pub batch: bool,
    pub records: Vec<Record>,
}

#[derive(Debug, Default)]
pub struct RecordingPublisher {
    calls: Mutex<Vec<Call>>,
}

impl RecordingPublisher {
    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Every call so far, forgetting them.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn entry(record: &Record, n: usize) -> EntryOutcome {
        match record.data.strip_prefix(b"fail:") {
            Some(code) => EntryOutcome::Failed {
                error_code: String::from_utf8_lossy(code).into_owned(),
                error_message: "failed on purpose".to_owned(),
            },
            None => EntryOutcome::Written {
                shard_id: "shardId-000000000000".to_owned(),
                sequence_number: n.to_string(),
                sub_sequence_number: None,
            },
        }
    }
}

#[async_trait]
impl KinesisPublisher for RecordingPublisher {
    async fn put_record(
        &self,
        stream: &StreamName,
        record: &Record,
        _: Option<&str>,
    ) -> Result<PutRecordOutcome, PublishError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Call {
            stream: stream.as_str().to_owned(),
            batch: false,
            records: vec![record.clone()],
        });
        Ok(PutRecordOutcome {
            shard_id: "shardId-000000000000".to_owned(),
            sequence_number: calls.len().to_string(),
            encryption_type: Some("NONE".to_owned()),
            request_id: Some("req".to_owned()),
        })
    }

    async fn put_records(
        &self,
        stream: &StreamName,
        records: &[Record],
    ) -> Result<PutRecordsOutcome, PublishError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(Call {
            stream: stream.as_str().to_owned(),
            batch: true,
            records: records.to_vec(),
        });
        let base = calls.len() * 1000;
        let entries: Vec<_> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Self::entry(r, base + i))
            .collect();
        Ok(PutRecordsOutcome {
            failed_record_count: entries.iter().filter(|e| !e.is_written()).count(),
            records: entries,
            encryption_type: Some("NONE".to_owned()),
            request_id: Some("req".to_owned()),
        })
    }

    async fn probe(&self) -> ProbeResult {
        ProbeResult::Answered
    }
}
