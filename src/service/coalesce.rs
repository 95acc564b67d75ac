//! Coalescing: concurrent requests to one stream share PutRecords calls.
//!
//! Without it every HTTP request is one Kinesis call, and the call (SDK pipeline, SigV4 signing,
//! an HTTP round trip) costs far more CPU than the request itself. With it (per stream, off by
//! default), each stream gets a *lane*: a task that gathers the records of concurrent requests
//! into one batch until the batch is full (`max_records`, the stream's request-size limit) or
//! `linger_ms` has passed since its first record (0, the default: what has already arrived, after
//! yielding twice to the runtime so requests already read from their sockets can join), then
//! sends it as one PutRecords call through the delivery layer (so only failed entries are
//! retried). Each request waits for, and answers
//! with, the final outcome of its own records:
//!
//! - a single-mode request gets its entry as a PutRecord answer, or the error a failed PutRecord
//!   with that code would have given (`PublishError::from_code`: throttling → 429, InternalFailure
//!   → 503, InvalidArgument → 422, …);
//! - a batch-mode request gets its own slice of the entries, in its order, with its own
//!   `FailedRecordCount` (200/207);
//! - when a whole call failed and none of a request's records was written, that request gets the
//!   call's error, exactly as without coalescing.
//!
//! Memory is bounded: the bytes of every record waiting in a lane or in flight count against
//! `max_buffered_bytes` (one budget for the process), and a request that would pass it is refused
//! at once with `IngestError::Overloaded` (503 `overloaded`, `Retry-After`) instead of queueing.
//! A small batch waits, still filling, until the stream has no call in flight; a batch of at least
//! `parallel_batch_records` / `parallel_batch_bytes` may go out beside others, up to
//! `max_in_flight` calls. So small requests under load share calls (the call, not the record, is
//! what costs CPU), large ones are not serialised behind each other, and a slow Kinesis makes
//! batches larger rather than queues longer.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::aggregate::ShardMaps;
use super::{IngestError, delivery};
use crate::config::{AggregationConfig, CoalesceSettings, LaneConfig, RetryPolicy};
use crate::domain::{EntryOutcome, PutRecordsOutcome, Record, StreamName};
use crate::kinesis::KinesisPublisher;

type Lanes = RwLock<HashMap<String, mpsc::UnboundedSender<Pending>>>;

/// The lanes of every coalesced stream, created on a stream's first request.
#[derive(Debug)]
pub(crate) struct Coalescer {
    publisher: Arc<dyn KinesisPublisher>,
    /// For streams that also aggregate: a batch from many requests is packed by shard too.
    shard_maps: Arc<ShardMaps>,
    lanes: Arc<Lanes>,
    buffered: Arc<AtomicUsize>,
    max_buffered: usize,
    idle_timeout: Duration,
    /// `coalesce_buffered_bytes`, looked up once (a labelled lookup per request showed in the
    /// profile).
    buffered_gauge: metrics::Gauge,
}

/// One request's records, waiting in a lane.
#[derive(Debug)]
struct Pending {
    records: Vec<Record>,
    size: usize,
    arrived: Instant,
    reply: oneshot::Sender<Result<PutRecordsOutcome, IngestError>>,
    /// Gives the request's bytes back to the budget when the request is answered (or dropped).
    _reservation: Reservation,
}

#[derive(Debug)]
struct Reservation {
    counter: Arc<AtomicUsize>,
    bytes: usize,
    gauge: metrics::Gauge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
        self.gauge.decrement(self.bytes as f64);
    }
}

/// What a lane needs to send its batches.
#[derive(Debug, Clone)]
struct LaneCtx {
    stream: StreamName,
    config: LaneConfig,
    policy: RetryPolicy,
    aggregation: Option<AggregationConfig>,
    publisher: Arc<dyn KinesisPublisher>,
    shard_maps: Arc<ShardMaps>,
}

impl Coalescer {
    pub(crate) fn new(
        publisher: Arc<dyn KinesisPublisher>,
        settings: &CoalesceSettings,
        shard_maps: Arc<ShardMaps>,
    ) -> Self {
        Self {
            publisher,
            shard_maps,
            lanes: Arc::default(),
            buffered: Arc::default(),
            max_buffered: settings.max_buffered_bytes,
            idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
            buffered_gauge: metrics::gauge!(crate::metrics::COALESCE_BUFFERED_BYTES),
        }
    }

    /// Sends `records` (one request's, within one call's limits) with the other requests to
    /// `stream`, and returns their final outcomes in order, or the call error when none was
    /// written because a whole call failed.
    pub(crate) async fn submit(
        &self,
        stream: &StreamName,
        config: LaneConfig,
        policy: &RetryPolicy,
        aggregation: Option<AggregationConfig>,
        records: Vec<Record>,
        started: Instant,
    ) -> Result<PutRecordsOutcome, IngestError> {
        let size = records.iter().map(Record::size).sum();
        let reservation = self.reserve(size)?;
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            records,
            size,
            arrived: started,
            reply,
            _reservation: reservation,
        };
        loop {
            let lane = self.lane(stream, config, policy, aggregation);
            match lane.send(pending) {
                Ok(()) => break,
                // The lane retired between our look-up and our send: start a fresh one.
                Err(mpsc::error::SendError(back)) => pending = back,
            }
        }
        answer.await.map_err(|_| {
            IngestError::Internal(
                "the coalesced PutRecords call ended without an answer".to_owned(),
            )
        })?
    }

    fn reserve(&self, bytes: usize) -> Result<Reservation, IngestError> {
        let before = self.buffered.fetch_add(bytes, Ordering::AcqRel);
        // An empty buffer takes any request, so a request over the cap still gets through alone.
        if before > 0 && before + bytes > self.max_buffered {
            self.buffered.fetch_sub(bytes, Ordering::AcqRel);
            metrics::counter!(crate::metrics::COALESCE_OVERLOADED).increment(1);
            return Err(IngestError::Overloaded {
                buffered: before,
                limit: self.max_buffered,
            });
        }
        self.buffered_gauge.increment(bytes as f64);
        Ok(Reservation {
            counter: self.buffered.clone(),
            bytes,
            gauge: self.buffered_gauge.clone(),
        })
    }

    /// The stream's lane, started if it has none.
    fn lane(
        &self,
        stream: &StreamName,
        config: LaneConfig,
        policy: &RetryPolicy,
        aggregation: Option<AggregationConfig>,
    ) -> mpsc::UnboundedSender<Pending> {
        if let Some(lane) = self
            .lanes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream.as_str())
            .filter(|l| !l.is_closed())
        {
            return lane.clone();
        }
        let mut lanes = self.lanes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.get(stream.as_str()).filter(|l| !l.is_closed()) {
            return lane.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        lanes.insert(stream.as_str().to_owned(), tx.clone());
        let ctx = LaneCtx {
            stream: stream.clone(),
            config,
            policy: *policy,
            aggregation,
            publisher: self.publisher.clone(),
            shard_maps: self.shard_maps.clone(),
        };
        tokio::spawn(run_lane(
            ctx,
            rx,
            Arc::downgrade(&self.lanes),
            self.idle_timeout,
        ));
        tracing::debug!(stream = %stream, "Coalescing lane started");
        tx
    }
}

/// A batch being gathered: whole requests only, so each request's records stay in one call.
#[derive(Debug, Default)]
struct Batch {
    requests: Vec<Pending>,
    records: usize,
    bytes: usize,
}

impl Batch {
    fn fits(&self, p: &Pending, c: &LaneConfig) -> bool {
        self.requests.is_empty()
            || (self.records + p.records.len() <= c.max_records
                && self.bytes + p.size <= c.max_bytes)
    }

    fn full(&self, c: &LaneConfig) -> bool {
        self.records >= c.max_records || self.bytes >= c.max_bytes
    }

    fn push(&mut self, p: Pending) {
        self.records += p.records.len();
        self.bytes += p.size;
        self.requests.push(p);
    }
}

/// Takes `p` into `batch` if it fits; otherwise hands it back to start the next batch.
fn offer(batch: &mut Batch, p: Pending, c: &LaneConfig) -> Option<Pending> {
    if batch.fits(&p, c) {
        batch.push(p);
        None
    } else {
        Some(p)
    }
}

/// How often a lane with no linger yields to the runtime, when nothing more is queued, before it
/// closes a batch. tokio runs a yielded task again only after polling the I/O driver, so requests
/// whose bytes have already arrived are parsed and join the batch, with no timer (tokio timers
/// tick in whole milliseconds, far longer than a request takes). Measured in scenario a
/// (BENCHMARKS.md): batches of ~29 requests instead of ~23 at 64 clients.
const YIELDS: usize = 2;

/// One stream's lane: gather, wait for a call slot (still gathering), send, repeat.
async fn run_lane(
    ctx: LaneCtx,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    lanes: Weak<Lanes>,
    idle_timeout: Duration,
) {
    let c = ctx.config;
    let slots = Arc::new(Semaphore::new(c.max_in_flight));
    let mut carry: Option<Pending> = None;
    let mut retiring = false;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match tokio::time::timeout(idle_timeout, rx.recv()).await {
                Ok(Some(p)) => p,
                // Every sender is gone (the service is shutting down) or we retired and drained.
                Ok(None) => return,
                Err(_) if retiring => continue,
                Err(_) => {
                    retire(&lanes, &ctx.stream, &mut rx);
                    retiring = true;
                    continue;
                }
            },
        };
        let mut batch = Batch::default();
        batch.push(first);

        // Gather until the batch is full or the linger has passed since its first record.
        let deadline = tokio::time::Instant::now() + c.linger;
        let mut yields = 0;
        while carry.is_none() && !batch.full(&c) {
            let next = if c.linger.is_zero() {
                match rx.try_recv() {
                    Ok(p) => Some(p),
                    Err(_) if yields < YIELDS => {
                        yields += 1;
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(_) => None,
                }
            } else {
                tokio::select! {
                    biased;
                    p = rx.recv() => p,
                    () = tokio::time::sleep_until(deadline) => None,
                }
            };
            match next {
                Some(p) => carry = offer(&mut batch, p, &c),
                None => break,
            }
        }

        // Wait for a call slot, still filling the batch. A small batch goes only when no call is
        // in flight, so small requests under load share calls; a large (or closed) batch takes
        // any free slot.
        let permit = loop {
            let closed = carry.is_some() || batch.full(&c);
            let large =
                closed || batch.records >= c.parallel_records || batch.bytes >= c.parallel_bytes;
            let idle = slots.available_permits() == c.max_in_flight;
            if (large || idle)
                && let Ok(permit) = slots.clone().try_acquire_owned()
            {
                break permit;
            }
            if closed {
                break acquire(&slots).await;
            }
            tokio::select! {
                biased;
                permit = acquire(&slots), if large => break permit,
                () = all_calls_done(&slots, c.max_in_flight), if !large => {}
                p = rx.recv() => match p {
                    Some(p) => carry = offer(&mut batch, p, &c),
                    None => break acquire(&slots).await,
                },
            }
        };
        tokio::spawn(send_batch(ctx.clone(), batch, permit));
    }
}

/// Resolves when no call of the lane is in flight (every slot free); holds nothing afterwards.
async fn all_calls_done(slots: &Semaphore, max_in_flight: usize) {
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    drop(slots.acquire_many(all).await);
}

async fn acquire(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    slots
        .clone()
        .acquire_owned()
        .await
        .expect("the lane never closes its semaphore")
}

/// Removes the lane from the map and closes it; records already sent to it are still drained.
fn retire(lanes: &Weak<Lanes>, stream: &StreamName, rx: &mut mpsc::UnboundedReceiver<Pending>) {
    if let Some(lanes) = lanes.upgrade() {
        lanes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream.as_str());
    }
    rx.close();
    tracing::debug!(stream = %stream, "Coalescing lane idle: stopped");
}

/// Sends one gathered batch (with the delivery layer's retries) and answers each request with
/// its own records' outcomes.
async fn send_batch(ctx: LaneCtx, batch: Batch, _permit: OwnedSemaphorePermit) {
    let mut requests = batch.requests;
    let started = requests
        .iter()
        .map(|p| p.arrived)
        .min()
        .unwrap_or_else(Instant::now);
    let mut records = Vec::with_capacity(batch.records);
    let mut counts = Vec::with_capacity(requests.len());
    for p in &mut requests {
        counts.push(p.records.len());
        records.append(&mut p.records);
    }
    metrics::histogram!(crate::metrics::COALESCE_BATCH_RECORDS).record(records.len() as f64);
    metrics::histogram!(crate::metrics::COALESCE_BATCH_REQUESTS).record(requests.len() as f64);
    // A panic below (a bug) must not leave the requests waiting or answer them as an upstream
    // failure: each gets a 500, as a panic on the direct path does.
    let sent = AssertUnwindSafe(send_records(&ctx, &records, started))
        .catch_unwind()
        .await;
    drop(records);
    let chunk = match sent {
        Ok(chunk) => chunk,
        Err(panic) => {
            let message = super::panic_message(panic.as_ref()).to_owned();
            for p in requests {
                let error = IngestError::Internal(format!("a coalesced call panicked: {message}"));
                let _ = p.reply.send(Err(error));
            }
            return;
        }
    };
    if chunk.calls > 1 {
        tracing::info!(
            calls = chunk.calls,
            records_retried = chunk.records_retried,
            requests = requests.len(),
            "Coalesced PutRecords needed retries"
        );
    }
    let mut results = chunk.results.into_iter();
    for (p, n) in requests.into_iter().zip(counts) {
        let mine: Vec<EntryOutcome> = results.by_ref().take(n).collect();
        let written = mine.iter().filter(|e| e.is_written()).count();
        let answer = match &chunk.error {
            // As without coalescing: nothing of this request written and a call failed outright.
            Some(error) if written == 0 => Err(IngestError::Publish(error.clone())),
            _ => Ok(PutRecordsOutcome {
                failed_record_count: n - written,
                records: mine,
                encryption_type: chunk.encryption_type.clone(),
                request_id: chunk.request_id.clone(),
            }),
        };
        // The caller may have gone away; its records were sent all the same.
        let _ = p.reply.send(answer);
    }
}

/// The batch's records to Kinesis: aggregated by shard when the stream aggregates (each request
/// still gets its own records' outcomes, expanded from the aggregates that hold them).
async fn send_records(ctx: &LaneCtx, records: &[Record], started: Instant) -> delivery::Chunk {
    let send = |records: Vec<Record>| async move {
        delivery::send_chunk(
            ctx.publisher.as_ref(),
            &ctx.stream,
            &records,
            &ctx.policy,
            started,
        )
        .await
    };
    match ctx
        .shard_maps
        .plan(&ctx.stream, ctx.aggregation, records)
        .await
    {
        Some(plan) => {
            ctx.shard_maps
                .deliver(&ctx.stream, ctx.aggregation, records, plan, send)
                .await
        }
        None => {
            delivery::send_chunk(
                ctx.publisher.as_ref(),
                &ctx.stream,
                records,
                &ctx.policy,
                started,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_budget_refuses_beyond_the_cap_and_is_given_back() {
        let s = CoalesceSettings {
            max_buffered_bytes: 100,
            ..CoalesceSettings::default()
        };
        let publisher = Arc::new(crate::testing::RecordingPublisher::default());
        let maps = Arc::new(ShardMaps::new(publisher.clone()));
        let c = Coalescer::new(publisher, &s, maps);
        let a = c.reserve(60).unwrap();
        assert!(matches!(
            c.reserve(60),
            Err(IngestError::Overloaded {
                buffered: 60,
                limit: 100
            })
        ));
        let b = c.reserve(40).unwrap();
        drop((a, b));
        assert_eq!(c.buffered.load(Ordering::Acquire), 0);
        let alone = c
            .reserve(500)
            .expect("an empty buffer takes an oversized request");
        drop(alone);
    }
}
