//! `IngestService`: turns a validated write request into one Kinesis call and its outcome.
//!
//! The order of checks is docs/api.md#order-of-checks: `too_many_records`, then
//! `invalid_partition_key`, then `record_too_large` (lowest index first), then `batch_too_large`.
//! Nothing reaches Kinesis until all of them pass.
//!
//! A request to a stream with coalescing on (`coalesce` in config, see `super::coalesce`) shares
//! its PutRecords call with concurrent requests to the same stream, but answers exactly as it would
//! have alone: a PutRecord-shaped answer (or that call's error) in single mode, its own records in
//! batch mode.

use std::sync::Arc;
use std::time::Instant;

use super::aggregate::ShardMaps;
use super::coalesce::Coalescer;
use super::{IngestError, delivery};
use crate::config::{LaneConfig, Settings, SplitPolicy, StreamSettings};
use crate::domain::{
    EntryOutcome, Limits, Payload, PutRecordOutcome, PutRecordsOutcome, Record, RecordRules,
    StreamName,
};
use crate::kinesis::{KinesisPublisher, PublishError};

/// What a write asks for, as the HTTP layer parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub payload: Payload,
    /// Envelopes, key pointer, and the request-wide partition and hash keys.
    pub rules: RecordRules,
    /// `split`: the request's choice; `None` follows the stream's configuration.
    pub split: Option<bool>,
    /// `sequence_number_for_ordering` (single mode only). Such a write is never coalesced.
    pub ordering: Option<String>,
}

impl WriteRequest {
    /// The v1 request: the seed's dialect, one optional key for every record.
    pub fn new(payload: Payload, partition_key: Option<&str>) -> Self {
        Self {
            payload,
            rules: RecordRules {
                partition_key: partition_key.map(str::to_owned),
                ..RecordRules::default()
            },
            split: None,
            ordering: None,
        }
    }
}

/// The result of a write, in the shape of the Kinesis call that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Single(PutRecordOutcome),
    Batch(PutRecordsOutcome),
}

#[derive(Debug)]
pub struct IngestService {
    publisher: Arc<dyn KinesisPublisher>,
    settings: Arc<Settings>,
    coalescer: Coalescer,
    /// Aggregated streams' shard maps, shared with the coalescing lanes.
    shard_maps: Arc<ShardMaps>,
}

impl IngestService {
    pub fn new(publisher: Arc<dyn KinesisPublisher>, settings: Arc<Settings>) -> Self {
        let shard_maps = Arc::new(ShardMaps::new(publisher.clone()));
        Self {
            coalescer: Coalescer::new(publisher.clone(), &settings.coalesce, shard_maps.clone()),
            publisher,
            settings,
            shard_maps,
        }
    }

    /// Writes the request's records to `stream`: keys settled and limits checked first, in
    /// docs/api.md's order of checks, then one call (or a coalesced share of one, or split calls).
    /// Records that still failed after the retries count in `kinesis_records_failed_total`.
    #[tracing::instrument(name = "ingest.write", skip_all, fields(stream = %stream))]
    pub async fn write(
        &self,
        stream: &StreamName,
        request: WriteRequest,
    ) -> Result<WriteOutcome, IngestError> {
        let records = request.payload.len();
        let result = self.write_once(stream, request).await;
        // Records that reached Kinesis' side of the contract and still failed.
        let failed = match &result {
            Ok(WriteOutcome::Batch(o)) => o.failed_record_count,
            Err(IngestError::Publish(_)) => records,
            Ok(WriteOutcome::Single(_)) | Err(_) => 0,
        };
        if failed > 0 {
            metrics::counter!(crate::metrics::RECORDS_FAILED, "stream" => stream.to_string())
                .increment(failed as u64);
        }
        result
    }

    async fn write_once(
        &self,
        stream: &StreamName,
        request: WriteRequest,
    ) -> Result<WriteOutcome, IngestError> {
        let started = Instant::now();
        let StreamSettings {
            limits,
            retry: policy,
            split: mut split_policy,
            lane,
            aggregation,
        } = self.settings.stream(stream.as_str());
        split_policy.enabled = request.split.unwrap_or(split_policy.enabled);
        let publisher = self.publisher.as_ref();
        match request.payload {
            Payload::Single(item) => {
                let record = request.rules.check()?.record(0, item, &limits)?;
                // A caller-ordered write is its own PutRecord: a shared PutRecords call has no
                // SequenceNumberForOrdering.
                let ordering = request.ordering.as_deref();
                if let Some(lane) = lane.filter(|_| ordering.is_none()) {
                    // One record: nothing to aggregate.
                    let outcome = self
                        .coalescer
                        .submit(stream, lane, &policy, None, vec![record], started)
                        .await?;
                    return Ok(WriteOutcome::Single(single_answer(outcome)?));
                }
                let outcome =
                    delivery::put_record(publisher, stream, &record, ordering, &policy, started)
                        .await?;
                Ok(WriteOutcome::Single(outcome))
            }
            Payload::Batch(items) => {
                if !split_policy.enabled {
                    limits.check_count(items.len())?;
                }
                let records = request.rules.check()?.records(items, &limits)?;
                if !split_policy.enabled {
                    limits.check_total(&records)?;
                }
                if let Some(lane) = lane.filter(|l| fits_one_call(&records, l, &limits)) {
                    let outcome = self
                        .coalescer
                        .submit(stream, lane, &policy, aggregation, records, started)
                        .await?;
                    return Ok(WriteOutcome::Batch(outcome));
                }
                let outcome = match self.shard_maps.plan(stream, aggregation, &records).await {
                    None => {
                        delivery::put_records(
                            publisher,
                            stream,
                            &records,
                            &policy,
                            &split_policy,
                            &limits,
                            started,
                        )
                        .await
                    }
                    Some(plan) => {
                        // Aggregates carry a little framing on top of their records: let them
                        // split into more calls rather than refuse what the limits accepted.
                        let split = SplitPolicy {
                            enabled: true,
                            ..split_policy
                        };
                        let send = |to_send: Vec<Record>| {
                            let (policy, split, limits) = (&policy, &split, &limits);
                            async move {
                                delivery::put_records(
                                    publisher, stream, &to_send, policy, split, limits, started,
                                )
                                .await
                            }
                        };
                        let mut outcome = self
                            .shard_maps
                            .deliver(stream, aggregation, &records, plan, send)
                            .await;
                        if let Ok(o) = &mut outcome {
                            o.failed_record_count =
                                o.records.iter().filter(|e| !e.is_written()).count();
                        }
                        outcome
                    }
                }?;
                Ok(WriteOutcome::Batch(outcome))
            }
        }
    }
}

/// A batch that would need splitting goes the direct way: a lane keeps each request in one call.
fn fits_one_call(records: &[Record], lane: &LaneConfig, limits: &Limits) -> bool {
    records.len() <= lane.max_records
        && records.iter().map(Record::size).sum::<usize>() <= limits.max_request_size
}

/// A coalesced single-mode request's one entry, as the PutRecord call it replaces would have
/// answered: the record's shard and sequence number, or the error that call would have raised
/// for the entry's code (throttling → 429, InternalFailure → 503, InvalidArgument → 422, …).
fn single_answer(outcome: PutRecordsOutcome) -> Result<PutRecordOutcome, PublishError> {
    let PutRecordsOutcome {
        records,
        encryption_type,
        request_id,
        ..
    } = outcome;
    match records.into_iter().next() {
        Some(EntryOutcome::Written {
            shard_id,
            sequence_number,
            ..
        }) => Ok(PutRecordOutcome {
            shard_id,
            sequence_number,
            encryption_type,
            request_id,
        }),
        Some(EntryOutcome::Failed {
            error_code,
            error_message,
        }) => Err(PublishError::from_code(
            &error_code,
            &error_message,
            &EntryFailed(format!("{error_code}: {error_message}")),
        )),
        None => Err(PublishError::Upstream {
            detail: "a coalesced PutRecords answered no entry for a record".to_owned(),
        }),
    }
}

/// A PutRecords entry's failure, as the source of the error it maps to (for the log).
#[derive(Debug, thiserror::Error)]
#[error("PutRecords entry failed: {0}")]
struct EntryFailed(String);

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::{Item, ValidationError};
    use crate::testing::{Call, RecordingPublisher};

    fn service(tweak: impl FnOnce(&mut Settings)) -> (IngestService, Arc<RecordingPublisher>) {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let mut settings = Settings::load(dir).unwrap();
        settings.delivery.base_backoff_ms = 1;
        settings.delivery.max_backoff_ms = 2;
        tweak(&mut settings);
        let publisher = Arc::new(RecordingPublisher::default());
        let service = IngestService::new(publisher.clone(), Arc::new(settings));
        (service, publisher)
    }

    fn stream() -> StreamName {
        StreamName::parse("s").unwrap()
    }

    fn batch(items: &[&str]) -> WriteRequest {
        let items = items.iter().map(|i| Item::Raw(Bytes::from(i.to_string())));
        WriteRequest::new(Payload::Batch(items.collect()), None)
    }

    fn single(data: &'static str, key: Option<&str>) -> WriteRequest {
        WriteRequest::new(Payload::Single(Item::Raw(Bytes::from(data))), key)
    }

    fn written(outcome: &PutRecordsOutcome) -> usize {
        outcome.records.iter().filter(|e| e.is_written()).count()
    }

    #[tokio::test]
    async fn a_single_record_is_one_put_record_directly() {
        let (service, publisher) = service(|s| s.coalesce.enabled = false);
        let outcome = service
            .write(&stream(), single("a", Some("k")))
            .await
            .unwrap();
        let WriteOutcome::Single(o) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(o.sequence_number, "1");
        let calls = publisher.calls();
        let [
            Call {
                batch: false,
                records,
                ..
            },
        ] = &calls[..]
        else {
            panic!("one PutRecord: {calls:?}")
        };
        let r = &records[0];
        assert_eq!((&r.data[..], r.partition_key.as_str()), (&b"a"[..], "k"));
    }

    #[tokio::test]
    async fn a_coalesced_single_record_answers_as_put_record_would() {
        let (service, publisher) = service(|s| s.coalesce.enabled = true);
        let outcome = service.write(&stream(), single("a", None)).await.unwrap();
        // The PutRecords entry becomes the PutRecord answer: same shard, sequence number, shape.
        assert_eq!(
            outcome,
            WriteOutcome::Single(PutRecordOutcome {
                shard_id: "shardId-000000000000".into(),
                sequence_number: "1000".into(),
                encryption_type: Some("NONE".into()),
                request_id: Some("req".into()),
            })
        );
        assert!(
            matches!(&publisher.calls()[..], [Call { batch: true, records, .. }] if records.len() == 1)
        );
    }

    #[tokio::test]
    async fn a_coalesced_single_failure_is_the_error_put_record_would_raise() {
        let (service, _) = service(|s| {
            s.coalesce.enabled = true;
            s.delivery.max_attempts = 1;
        });
        type Check = fn(&PublishError) -> bool;
        let cases: [(&str, Check); 3] = [
            ("fail:ProvisionedThroughputExceededException", |e| {
                matches!(e, PublishError::Throttled { .. })
            }),
            ("fail:InternalFailure", |e| {
                matches!(e, PublishError::Unavailable { .. })
            }),
            ("fail:InvalidArgumentException", |e| {
                matches!(e, PublishError::Rejected { .. })
            }),
        ];
        for (data, expected) in cases {
            let result = service.write(&stream(), single(data, None)).await;
            match result {
                Err(IngestError::Publish(e)) => assert!(expected(&e), "{data}: {e:?}"),
                other => panic!("{data}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_batch_over_the_count_limit_is_refused_unless_split() {
        let items = ["1", "2", "3", "4", "5", "6", "7"];
        let (service, publisher) = service(|s| s.limits.max_records_per_request = 3);
        let refused = service.write(&stream(), batch(&items)).await;
        assert!(matches!(
            refused,
            Err(IngestError::Validation(ValidationError::TooManyRecords {
                limit: 3,
                actual: 7
            }))
        ));
        assert!(
            publisher.calls().is_empty(),
            "nothing sent before the checks pass"
        );

        let split = WriteRequest {
            split: Some(true),
            ..batch(&items)
        };
        let outcome = service.write(&stream(), split).await.unwrap();
        let WriteOutcome::Batch(o) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (o.records.len(), written(&o), o.failed_record_count),
            (7, 7, 0)
        );
        let sizes: Vec<usize> = publisher.calls().iter().map(|c| c.records.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
    }

    #[tokio::test]
    async fn a_batch_too_large_for_one_call_bypasses_coalescing_and_keeps_its_order() {
        let (service, publisher) = service(|s| {
            s.coalesce.enabled = true;
            s.limits.max_records_per_request = 2;
            s.delivery.split_batches = true;
        });
        let outcome = service
            .write(
                &stream(),
                batch(&["a", "fail:InvalidArgumentException", "c"]),
            )
            .await
            .unwrap();
        let WriteOutcome::Batch(o) = outcome else {
            panic!("{outcome:?}")
        };
        // Split into [a, fail] and [c] directly, merged back in request order.
        assert_eq!(publisher.calls().len(), 2);
        assert_eq!(o.failed_record_count, 1);
        assert!(o.records[0].is_written() && o.records[2].is_written());
        assert!(
            matches!(&o.records[1], EntryOutcome::Failed { error_code, .. }
            if error_code == "InvalidArgumentException")
        );
    }
}
