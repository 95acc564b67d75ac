//! The shipper: one task per spooled stream that reads the log in order and sends it to Kinesis
//! through the delivery path of every write (`service::delivery::send_chunk`: one PutRecords
//! call, then retries of only the entries that failed, with backoff), batch by batch.
//!
//! A batch is finished before the next is read: what failed retriably is sent again (backing off
//! up to [`MAX_WAIT`] while Kinesis is unreachable) and the log's progress moves only past records
//! that Kinesis accepted or that were dead-lettered. Within one call, an entry Kinesis failed is
//! resent after later entries it accepted, possibly of the same key (docs/api.md#durable-acceptance
//! says so); across batches the order is the log's. A record Kinesis refuses for good goes to
//! `<spool.dir>/dead-letter/<stream>.jsonl` and the log at ERROR, never nowhere.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::sync::watch;

use super::Budget;
use super::frame::SpooledRecord;
use super::log::{self, Position, Reader};
use crate::config::Settings;
use crate::domain::{EntryOutcome, Record, StreamName};
use crate::kinesis::{CodeClass, KinesisPublisher, PublishError, classify_code};
use crate::service::send_chunk;

/// The longest wait between two rounds of a batch that keeps failing retriably.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// The first wait.
const FIRST_WAIT: Duration = Duration::from_millis(100);

/// Runs file work (reads, fsyncs) off the runtime's workers, which serve HTTP meanwhile.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// What to do with a record that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Throttled, unreachable, a transient fault: send it again.
    Retry,
    /// Refused for good: dead-letter it now.
    Dead(String),
    /// Refused for a reason that may pass (access, credentials): retry for `spool.dead_after_s`.
    DeadLater(String),
}

fn verdict_of_error(e: &PublishError) -> Verdict {
    match e {
        PublishError::Throttled { .. }
        | PublishError::Unavailable { .. }
        | PublishError::Timeout { .. } => Verdict::Retry,
        PublishError::NotFound { .. } | PublishError::Rejected { .. } => {
            Verdict::Dead(e.to_string())
        }
        PublishError::Upstream { .. } | PublishError::NoCredentials { .. } => {
            Verdict::DeadLater(e.to_string())
        }
    }
}

fn verdict_of_code(code: &str, message: &str) -> Verdict {
    let reason = format!("{code}: {message}");
    match classify_code(code) {
        CodeClass::Throttled | CodeClass::Transient => Verdict::Retry,
        CodeClass::Rejected | CodeClass::NotFound => Verdict::Dead(reason),
        CodeClass::Other => Verdict::DeadLater(reason),
    }
}

/// One stream's shipper.
#[derive(Debug)]
pub(super) struct Shipper {
    pub(super) stream: StreamName,
    /// The stream's log directory.
    pub(super) dir: PathBuf,
    /// `spool.dir`.
    pub(super) root: PathBuf,
    pub(super) committed: watch::Receiver<Position>,
    pub(super) publisher: Arc<dyn KinesisPublisher>,
    pub(super) settings: Arc<Settings>,
    pub(super) budget: Arc<Budget>,
    pub(super) stop: watch::Receiver<bool>,
}

impl Shipper {
    /// Ships until stopped. An I/O error reading the log is logged and retried after a pause:
    /// the records stay on disk.
    pub(super) async fn run(mut self) {
        loop {
            match self.ship_all().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(stream = %self.stream, error = %e, "Spool shipper failed reading its log; retrying");
                    tokio::time::sleep(MAX_WAIT).await;
                }
            }
        }
    }

    /// Ships segment after segment, oldest first; returns when stopped.
    async fn ship_all(&mut self) -> std::io::Result<()> {
        let stream = self.stream.as_str().to_owned();
        let limits = self.settings.stream(&stream).limits;
        let max_records = limits
            .max_records
            .min(crate::domain::limits::MAX_RECORDS_PER_REQUEST);
        loop {
            let first = log::segments(&self.dir)?.first().copied();
            let Some(seq) = first else {
                // The writer creates its segment at start: only a stopped spool has none.
                if self.wait_for_more().await {
                    return Ok(());
                }
                continue;
            };
            let mut reader = Reader::open(&self.dir, seq)?;
            loop {
                let position = *self.committed.borrow_and_update();
                let sealed = position.seg > seq;
                let end = if sealed { u64::MAX } else { position.end };
                let max_bytes = limits.max_request_size;
                let (back, batch) = blocking(move || {
                    let batch = reader.next_batch(end, max_records, max_bytes);
                    Ok((reader, batch))
                })
                .await?;
                reader = back;
                let batch = batch?;
                if batch.records.is_empty() {
                    if batch.damaged {
                        self.set_aside(&mut reader, if sealed { None } else { Some(end) })?;
                        continue;
                    }
                    self.age(None);
                    if sealed {
                        let dir = self.dir.clone();
                        blocking(move || log::remove_segment(&dir, seq)).await?;
                        break;
                    }
                    if self.wait_for_more().await {
                        return Ok(());
                    }
                    continue;
                }
                let bytes: u64 = batch.records.iter().map(|(_, s)| s).sum();
                let records: Vec<SpooledRecord> =
                    batch.records.into_iter().map(|(r, _)| r).collect();
                self.ship_batch(&records).await?;
                reader.advance(bytes);
                let (dir, pos) = (self.dir.clone(), reader.pos);
                blocking(move || log::save_progress(&dir, seq, pos)).await?;
                self.budget.release(bytes);
                let labels = [("stream", stream.clone())];
                metrics::gauge!(crate::metrics::SPOOL_BYTES, &labels).decrement(bytes as f64);
                metrics::gauge!(crate::metrics::SPOOL_RECORDS, &labels)
                    .decrement(records.len() as f64);
            }
        }
    }

    /// Waits for new appends; `true` when stopped instead.
    async fn wait_for_more(&mut self) -> bool {
        tokio::select! {
            changed = self.committed.changed() => changed.is_err(),
            _ = self.stop.changed() => true,
        }
    }

    /// Damage found while shipping (the disk changed under a segment): the bytes up to `to` (the
    /// segment's end when `None`) are set aside and counted, and shipping goes on after them.
    fn set_aside(&self, reader: &mut Reader, to: Option<u64>) -> std::io::Result<()> {
        let corrupt = self.root.join("corrupt");
        let stream = self.stream.as_str();
        let moved = log::set_aside(&self.dir, reader.seq, reader.pos, to, &corrupt, stream)?;
        tracing::error!(
            stream,
            segment = reader.seq,
            offset = reader.pos,
            bytes = moved,
            "Spool segment damaged while shipping: the bytes are set aside in {}",
            corrupt.display()
        );
        metrics::counter!(crate::metrics::SPOOL_CORRUPT_BYTES, "stream" => stream.to_owned())
            .increment(moved);
        let next = reader.pos + moved;
        reader.skip_to(next)?;
        self.budget.release(moved.min(self.budget.used()));
        log::save_progress(&self.dir, reader.seq, next)
    }

    /// Sets the age of the oldest unshipped record (`None`: nothing waits).
    fn age(&self, oldest_ms: Option<u64>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let age = oldest_ms.map_or(0.0, |ms| now.saturating_sub(ms) as f64 / 1000.0);
        metrics::gauge!(crate::metrics::SPOOL_OLDEST_AGE, "stream" => self.stream.to_string())
            .set(age);
    }

    /// Sends `batch` until every record is accepted or dead-lettered.
    async fn ship_batch(&self, batch: &[SpooledRecord]) -> std::io::Result<()> {
        let stream = self.stream.as_str();
        let policy = self.settings.retry_policy_for(stream);
        let dead_after = Duration::from_secs(self.settings.spool.dead_after_s);
        let mut pending: Vec<usize> = Vec::with_capacity(batch.len());
        let mut records: Vec<Record> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            match r.to_record() {
                Some(record) => {
                    pending.push(i);
                    records.push(record);
                }
                None => self.dead_letter(r, "its keys no longer pass the service's checks")?,
            }
        }
        let mut first_refusal: Option<Instant> = None;
        let mut wait = FIRST_WAIT;
        while !pending.is_empty() {
            self.age(Some(batch[pending[0]].accepted_ms));
            let chunk = send_chunk(
                self.publisher.as_ref(),
                &self.stream,
                &records,
                &policy,
                Instant::now(),
            )
            .await;
            let call_error = chunk
                .error
                .as_ref()
                .map(|e| (e.as_entry(), verdict_of_error(e)));
            let (mut still, mut still_records) = (Vec::new(), Vec::new());
            let mut shipped = 0u64;
            for ((i, record), outcome) in pending.iter().zip(records).zip(chunk.results) {
                let verdict = match &outcome {
                    EntryOutcome::Written { .. } => {
                        shipped += 1;
                        tracing::debug!(stream, record_id = %batch[*i].id, "Spooled record delivered");
                        continue;
                    }
                    EntryOutcome::Failed { .. }
                        if call_error.as_ref().is_some_and(|(e, _)| *e == outcome) =>
                    {
                        call_error
                            .as_ref()
                            .map(|(_, v)| v.clone())
                            .expect("checked")
                    }
                    EntryOutcome::Failed {
                        error_code,
                        error_message,
                    } => verdict_of_code(error_code, error_message),
                };
                let dead = match verdict {
                    Verdict::Retry => None,
                    Verdict::Dead(reason) => Some(reason),
                    Verdict::DeadLater(reason) => {
                        let since = *first_refusal.get_or_insert_with(Instant::now);
                        (since.elapsed() >= dead_after).then_some(reason)
                    }
                };
                match dead {
                    Some(reason) => self.dead_letter(&batch[*i], &reason)?,
                    None => {
                        still.push(*i);
                        still_records.push(record);
                    }
                }
            }
            if shipped > 0 {
                metrics::counter!(crate::metrics::SPOOL_SHIPPED, "stream" => stream.to_owned())
                    .increment(shipped);
            }
            (pending, records) = (still, still_records);
            if !pending.is_empty() {
                let jittered = wait.mul_f64(0.5 + rand::random::<f64>() / 2.0);
                tokio::time::sleep(jittered).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
        }
        Ok(())
    }

    /// Appends `record` to the stream's dead-letter file (fsync'd before the log moves past it),
    /// counts it and logs it at ERROR with its `RecordId`.
    fn dead_letter(&self, record: &SpooledRecord, reason: &str) -> std::io::Result<()> {
        let stream = self.stream.as_str();
        let dir = self.root.join("dead-letter");
        std::fs::create_dir_all(&dir)?;
        let line = serde_json::json!({
            "RecordId": record.id.to_string(),
            "stream": stream,
            "reason": reason,
            "partition_key": record.partition_key,
            "explicit_hash_key": record.explicit_hash_key,
            "accepted_at_ms": record.accepted_ms,
            "data_base64": base64::engine::general_purpose::STANDARD.encode(&record.data),
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{stream}.jsonl")))?;
        let mut text = line.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        tracing::error!(stream, record_id = %record.id, reason, "Spooled record refused by Kinesis for good: dead-lettered");
        metrics::counter!(crate::metrics::SPOOL_DEAD_LETTERED, "stream" => stream.to_owned())
            .increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_good_are_dead_lettered_and_the_rest_retried() {
        assert_eq!(
            verdict_of_code("ProvisionedThroughputExceededException", ""),
            Verdict::Retry
        );
        assert_eq!(verdict_of_code("InternalFailure", ""), Verdict::Retry);
        assert!(matches!(
            verdict_of_code("InvalidArgumentException", "x"),
            Verdict::Dead(_)
        ));
        assert!(matches!(
            verdict_of_code("KMSAccessDeniedException", "x"),
            Verdict::DeadLater(_)
        ));
        let unreachable = PublishError::Unavailable {
            detail: String::new(),
        };
        assert_eq!(verdict_of_error(&unreachable), Verdict::Retry);
        let missing = PublishError::NotFound {
            stream: "s".into(),
            message: String::new(),
        };
        assert!(matches!(verdict_of_error(&missing), Verdict::Dead(_)));
    }
}
