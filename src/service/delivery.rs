//! Delivery: retry only what failed, report every record truthfully, lose nothing.
//!
//! - A PutRecords entry that failed with a retriable code is sent again; entries that succeeded
//!   are never resent, so our retries cannot duplicate them.
//! - A whole call that failed retriably (throttling, Kinesis 5xx, timeout, connection) is sent
//!   again with the entries still pending.
//! - Both use full-jitter exponential backoff, bounded by attempts and by a deadline measured from
//!   the request's arrival; what still failed is reported per record, in request order.
//! - A batch over the call limits can be split into several calls (bounded concurrency) whose
//!   results merge back into one PutRecords-shaped answer.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;

use crate::config::{RetryPolicy, SplitPolicy};
use crate::domain::{
    EntryOutcome, Limits, PutRecordOutcome, PutRecordsOutcome, Record, StreamName,
};
use crate::kinesis::{KinesisPublisher, PublishError};

/// One `PutRecord` call, retried while it fails retriably and the budget lasts. `ordering` is the
/// caller's `SequenceNumberForOrdering`, sent unchanged on every attempt.
pub(crate) async fn put_record(
    publisher: &dyn KinesisPublisher,
    stream: &StreamName,
    record: &Record,
    ordering: Option<&str>,
    policy: &RetryPolicy,
    started: Instant,
) -> Result<PutRecordOutcome, PublishError> {
    let mut attempt = 1;
    loop {
        let error = match publisher.put_record(stream, record, ordering).await {
            Ok(outcome) => {
                if attempt > 1 {
                    tracing::info!(attempts = attempt, "Record written after retries");
                }
                return Ok(outcome);
            }
            Err(e) => e,
        };
        match next_wait(&error, attempt, policy, started) {
            Some(wait) => {
                retried(stream, 1);
                tokio::time::sleep(wait).await;
            }
            None => {
                if attempt > 1 {
                    tracing::info!(attempts = attempt, error = %error, "Record not written after retries");
                }
                return Err(error);
            }
        }
        attempt += 1;
    }
}

/// PutRecords for `records`: one call, or with `split` on as many calls as the limits require.
/// `Err` only when no record was written and a call failed outright; otherwise every record's
/// final outcome, in request order.
pub(crate) async fn put_records(
    publisher: &dyn KinesisPublisher,
    stream: &StreamName,
    records: &[Record],
    policy: &RetryPolicy,
    split: &SplitPolicy,
    limits: &Limits,
    started: Instant,
) -> Result<PutRecordsOutcome, PublishError> {
    let ranges = if split.enabled {
        limits.chunks(records)
    } else {
        // One call for the whole batch (the limits were checked already).
        std::iter::once(0..records.len()).collect()
    };
    let chunk_count = ranges.len();
    let chunks: Vec<Chunk> = futures_util::stream::iter(ranges)
        .map(|range| send_chunk(publisher, stream, &records[range], policy, started))
        .buffered(split.concurrency)
        .collect()
        .await;
    merge(chunks, chunk_count)
}

/// The final state of one PutRecords chunk after its retries.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// One final outcome per record, in the chunk's order.
    pub(crate) results: Vec<EntryOutcome>,
    /// The call error that ended the retries, if the last attempt failed as a whole.
    pub(crate) error: Option<PublishError>,
    pub(crate) encryption_type: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) calls: u32,
    pub(crate) records_retried: usize,
}

/// One PutRecords call for `records` (which must fit one call), then retries of only the entries
/// that failed retriably, within `policy`'s attempts and its deadline counted from `started`.
/// The coalescer uses it directly for a gathered batch.
pub(crate) async fn send_chunk(
    publisher: &dyn KinesisPublisher,
    stream: &StreamName,
    records: &[Record],
    policy: &RetryPolicy,
    started: Instant,
) -> Chunk {
    let mut results: Vec<Option<EntryOutcome>> = vec![None; records.len()];
    let mut pending: Vec<usize> = (0..records.len()).collect();
    let mut chunk = Chunk {
        results: Vec::new(),
        error: None,
        encryption_type: None,
        request_id: None,
        calls: 0,
        records_retried: 0,
    };
    loop {
        chunk.calls += 1;
        let answer = if pending.len() == records.len() {
            publisher.put_records(stream, records).await
        } else {
            // Only the entries still failing: never one that Kinesis already accepted.
            let retry: Vec<Record> = pending.iter().map(|&i| records[i].clone()).collect();
            chunk.records_retried += retry.len();
            retried(stream, retry.len());
            publisher.put_records(stream, &retry).await
        };
        let error = match answer {
            Ok(out) => {
                chunk.error = None;
                chunk.encryption_type = out.encryption_type.or(chunk.encryption_type.take());
                chunk.request_id = out.request_id.or(chunk.request_id.take());
                let mut still = Vec::new();
                for (&i, entry) in pending.iter().zip(out.records) {
                    if entry.is_retriable() {
                        still.push(i);
                    }
                    results[i] = Some(entry);
                }
                pending = still;
                None
            }
            Err(e) => Some(e),
        };
        if pending.is_empty() {
            break;
        }
        // Per-entry failures are retriable by construction here; a call error decides for itself.
        let retriable = error.as_ref().is_none_or(PublishError::is_retriable);
        let wait = if retriable {
            backoff_within(chunk.calls, policy, started)
        } else {
            None
        };
        chunk.error = error;
        match wait {
            Some(wait) => tokio::time::sleep(wait).await,
            None => break,
        }
    }
    if let Some(e) = &chunk.error {
        for &i in &pending {
            results[i] = Some(e.as_entry());
        }
    }
    chunk.results = results
        .into_iter()
        .map(|r| r.expect("every entry has an outcome"))
        .collect();
    chunk
}

fn merge(chunks: Vec<Chunk>, chunk_count: usize) -> Result<PutRecordsOutcome, PublishError> {
    let written = chunks
        .iter()
        .flat_map(|c| &c.results)
        .filter(|e| e.is_written())
        .count();
    let calls: u32 = chunks.iter().map(|c| c.calls).sum();
    let records_retried: usize = chunks.iter().map(|c| c.records_retried).sum();
    let mut records = Vec::with_capacity(chunks.iter().map(|c| c.results.len()).sum());
    let (mut encryption_type, mut request_ids, mut first_error) = (None, Vec::new(), None);
    for chunk in chunks {
        records.extend(chunk.results);
        encryption_type = encryption_type.or(chunk.encryption_type);
        request_ids.extend(chunk.request_id);
        first_error = first_error.or(chunk.error);
    }
    let failed_record_count = records.len() - written;
    if calls as usize > chunk_count {
        tracing::info!(
            calls,
            records_retried,
            records_failed = failed_record_count,
            "PutRecords needed retries"
        );
    }
    // Nothing was written and a call failed outright: answer with that error (404, 429, 503, …)
    // rather than a 207 of identical failures.
    if written == 0
        && let Some(error) = first_error
    {
        return Err(error);
    }
    Ok(PutRecordsOutcome {
        failed_record_count,
        records,
        encryption_type,
        request_id: (!request_ids.is_empty()).then(|| request_ids.join(", ")),
    })
}

/// How long to wait before attempt `attempt + 1`, if the error is worth it and the budget allows.
fn next_wait(
    error: &PublishError,
    attempt: u32,
    policy: &RetryPolicy,
    started: Instant,
) -> Option<Duration> {
    if error.is_retriable() {
        backoff_within(attempt, policy, started)
    } else {
        None
    }
}

/// Full-jitter backoff after `attempt` attempts, or `None` when attempts or deadline are spent.
fn backoff_within(attempt: u32, policy: &RetryPolicy, started: Instant) -> Option<Duration> {
    if attempt >= policy.max_attempts {
        return None;
    }
    let wait = jittered_backoff(attempt, policy);
    (started.elapsed() + wait < policy.deadline).then_some(wait)
}

/// A random duration in `[0, min(max, base × 2^(attempt-1))]` ("full jitter"): spreads the
/// retries of many requests throttled together instead of sending them back in lockstep.
fn jittered_backoff(attempt: u32, policy: &RetryPolicy) -> Duration {
    let exp = policy
        .base_backoff
        .saturating_mul(1u32 << (attempt - 1).min(20));
    let cap = exp.min(policy.max_backoff);
    cap.mul_f64(rand::rng().random::<f64>())
}

/// Counts records sent again (`kinesis_records_retried_total`).
fn retried(stream: &StreamName, records: usize) {
    metrics::counter!(crate::metrics::RECORDS_RETRIED, "stream" => stream.to_string())
        .increment(records as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, deadline_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            deadline: Duration::from_millis(deadline_ms),
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = policy(10, 10_000);
        for attempt in 1..=9 {
            let cap = Duration::from_millis((10u64 << (attempt - 1)).min(40));
            for _ in 0..50 {
                assert!(jittered_backoff(attempt, &p) <= cap);
            }
        }
        let samples: Vec<Duration> = (0..20).map(|_| jittered_backoff(5, &p)).collect();
        assert!(samples.windows(2).any(|w| w[0] != w[1]), "jitter varies");
    }

    #[test]
    fn the_budget_is_attempts_and_deadline() {
        let started = Instant::now();
        assert!(backoff_within(1, &policy(2, 10_000), started).is_some());
        assert!(
            backoff_within(2, &policy(2, 10_000), started).is_none(),
            "attempts spent"
        );
        assert!(
            backoff_within(1, &policy(5, 0), started).is_none(),
            "deadline spent"
        );
    }

    #[test]
    fn only_transient_call_errors_are_retried() {
        let started = Instant::now();
        let p = policy(3, 10_000);
        let retried = |e: PublishError| next_wait(&e, 1, &p, started).is_some();
        assert!(retried(PublishError::Throttled {
            code: "x".into(),
            message: String::new()
        }));
        assert!(retried(PublishError::Unavailable {
            detail: String::new()
        }));
        assert!(retried(PublishError::Timeout {
            detail: String::new()
        }));
        assert!(!retried(PublishError::NotFound {
            stream: String::new(),
            message: String::new()
        }));
        assert!(!retried(PublishError::Rejected {
            code: "x".into(),
            message: String::new()
        }));
        assert!(!retried(PublishError::Upstream {
            detail: String::new()
        }));
    }
}
