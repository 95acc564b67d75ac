//! A programmable stand-in for Kinesis' PutRecord/PutRecords (AWS JSON 1.1), for what the emulator
//! cannot do: inject throttling, partial failures and delays, and measure the service's own speed.
//!
//! It speaks just enough of the protocol for the AWS SDKs over plain HTTP: `POST /` with
//! `x-amz-target: Kinesis_20131202.{PutRecord,PutRecords,ListStreams}`. It does not check
//! signatures, does not know streams (every name exists unless a [`Plan`] says otherwise) and has
//! one shard, `shardId-000000000000`, with a global increasing sequence number.
//!
//! ```no_run
//! # async fn demo() {
//! use fake_kinesis::{FakeKinesis, Plan};
//! let fake = FakeKinesis::start().await;
//! // Point the SDK (or the service) at fake.endpoint(), then:
//! fake.set_plan(Plan::fail_first_attempts(b"fail-twice", 2,
//!     "ProvisionedThroughputExceededException"));
//! // ... drive the client ...
//! let written = fake.received();
//! # let _ = written;
//! # }
//! ```
//!
//! Two more routes serve the benchmark (`bench/run.sh`) and the standalone binary: `GET /_stats`
//! (counters as JSON) and `POST /_reset`.

mod plan;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use plan::{
    CallCtx, CallError, CallRule, CallVerdict, EntryCtx, EntryRule, EntryVerdict, Operation, Plan,
};

/// The only shard the fake has.
pub const SHARD_ID: &str = "shardId-000000000000";

/// Bodies up to this size are read: a 10 MiB PutRecords in base64 plus JSON framing fits.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How the fake is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Address to bind; `None` is `127.0.0.1:0` (a free port).
    pub addr: Option<SocketAddr>,
    /// Only count: keep no [`Received`] / [`Attempt`] lists (for benchmarks, where storing every
    /// record would make the fake the bottleneck and grow without bound).
    pub count_only: bool,
    /// Answer `ListShards` with one open shard owning the whole hash-key range (every record the
    /// fake accepts is on `shardId-000000000000` anyway). Off: `ListShards` is an unknown
    /// operation, as for a role without `kinesis:ListShards`.
    pub list_shards: bool,
}

/// A record the fake accepted (wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The stream the call named.
    pub stream: String,
    /// The record's partition key.
    pub partition_key: String,
    /// The record's data, base64-decoded: the exact bytes the client sent.
    pub data: Vec<u8>,
    /// The sequence number the fake answered with.
    pub seq: String,
}

/// What became of one record the fake saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written, with this sequence number.
    Accepted {
        /// The sequence number answered.
        seq: String,
    },
    /// Refused by the entry rule with this error code.
    Failed {
        /// The `ErrorCode` answered.
        code: String,
    },
    /// Not looked at: the whole call failed with this error type.
    CallFailed {
        /// The `__type` answered.
        error_type: String,
    },
}

/// One record as it arrived, whatever became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The operation that carried it.
    pub operation: Operation,
    /// The stream the call named.
    pub stream: String,
    /// The record's partition key.
    pub partition_key: String,
    /// The record's data, base64-decoded.
    pub data: Vec<u8>,
    /// What the fake did with it.
    pub outcome: Outcome,
}

/// Counters since start or the last reset. Also served as JSON by `GET /_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// PutRecord calls received (failed ones included).
    pub put_record_calls: u64,
    /// PutRecords calls received (failed ones included).
    pub put_records_calls: u64,
    /// ListStreams calls (readiness probes).
    pub list_streams_calls: u64,
    /// Put calls answered with a whole-call error.
    pub calls_failed: u64,
    /// Records seen in Put calls, whatever became of them.
    pub records_seen: u64,
    /// Records written (acknowledged with a sequence number).
    pub records_accepted: u64,
    /// Records refused, one by one or with their whole call.
    pub records_failed: u64,
}

#[derive(Default)]
struct Counters {
    put_record_calls: AtomicU64,
    put_records_calls: AtomicU64,
    list_streams_calls: AtomicU64,
    calls_failed: AtomicU64,
    records_seen: AtomicU64,
    records_accepted: AtomicU64,
    records_failed: AtomicU64,
    /// Put calls since reset: the `call_index` plans see.
    put_calls: AtomicU64,
}

struct Shared {
    count_only: bool,
    list_shards: bool,
    plan: RwLock<Plan>,
    counters: Counters,
    /// Never reset, so sequence numbers stay increasing across resets as Kinesis' do.
    seq: AtomicU64,
    request_ids: AtomicU64,
    received: Mutex<Vec<Received>>,
    attempts: Mutex<Vec<Attempt>>,
    /// Data bytes → times seen by an entry rule. Only kept while a plan has an entry rule.
    seen: Mutex<HashMap<Vec<u8>, u32>>,
}

/// Poisoning only means another request panicked; the data is still usable for a test fake.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(count_only: bool, list_shards: bool) -> Self {
        Self {
            count_only,
            list_shards,
            plan: RwLock::new(Plan::default()),
            counters: Counters::default(),
            seq: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            received: Mutex::new(Vec::new()),
            attempts: Mutex::new(Vec::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn plan(&self) -> Plan {
        self.plan
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            put_record_calls: get(&c.put_record_calls),
            put_records_calls: get(&c.put_records_calls),
            list_streams_calls: get(&c.list_streams_calls),
            calls_failed: get(&c.calls_failed),
            records_seen: get(&c.records_seen),
            records_accepted: get(&c.records_accepted),
            records_failed: get(&c.records_failed),
        }
    }

    fn reset(&self) {
        let c = &self.counters;
        for a in [
            &c.put_record_calls,
            &c.put_records_calls,
            &c.list_streams_calls,
            &c.calls_failed,
            &c.records_seen,
            &c.records_accepted,
            &c.records_failed,
            &c.put_calls,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        lock(&self.received).clear();
        lock(&self.attempts).clear();
        lock(&self.seen).clear();
    }

    fn next_seq(&self) -> String {
        // 56 digits like real Kinesis sequence numbers, increasing both as numbers and as strings.
        // Built by hand: `format!("{n:052}")` pads one char at a time, and the benchmark makes
        // hundreds of thousands of these a second.
        const ZEROS: &str = "0000000000000000000000000000000000000000000000000000";
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let digits = n.to_string();
        let mut seq = String::with_capacity(56);
        seq.push_str("4959");
        seq.push_str(&ZEROS[..52 - digits.len()]);
        seq.push_str(&digits);
        seq
    }

    fn next_request_id(&self) -> HeaderValue {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        HeaderValue::try_from(format!("fa4e0000-0000-4000-8000-{n:012x}"))
            .expect("hex digits and dashes are a valid header value")
    }
}

/// A running fake. Dropping it stops the server.
pub struct FakeKinesis {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<()>,
}

impl fmt::Debug for FakeKinesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeKinesis")
            .field("addr", &self.addr)
            .field("count_only", &self.shared.count_only)
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

impl FakeKinesis {
    /// Starts a fake on `127.0.0.1` with a free port, accepting everything and keeping every
    /// record. Panics if it cannot bind (a test fixture has nothing better to do).
    pub async fn start() -> Self {
        Self::start_with(Options::default())
            .await
            .expect("bind 127.0.0.1:0 for fake-kinesis")
    }

    /// Starts a fake with `options`, on the current tokio runtime.
    pub async fn start_with(options: Options) -> std::io::Result<Self> {
        let addr = options
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(options.count_only, options.list_shards));
        let (shutdown, mut stopped) = watch::channel(());
        let app = router(Arc::clone(&shared));
        tokio::spawn(async move {
            let stop = async move {
                // Resolves when the sender is dropped (FakeKinesis dropped) or signalled.
                let _ = stopped.changed().await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
        });
        Ok(Self {
            addr,
            shared,
            shutdown,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url` / `AWS_ENDPOINT_URL_KINESIS`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the behaviour; calls already in flight finish with the plan they started with.
    pub fn set_plan(&self, plan: Plan) {
        *self
            .shared
            .plan
            .write()
            .unwrap_or_else(PoisonError::into_inner) = plan;
    }

    /// Every record accepted since start or reset, in acceptance order (empty in count-only
    /// mode: use [`stats`](Self::stats)).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Every record seen since start or reset, in arrival order, with what became of it (empty
    /// in count-only mode).
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.shared.attempts).clone()
    }

    /// Put calls (PutRecord + PutRecords, failed ones included) since start or reset.
    pub fn calls(&self) -> u64 {
        self.shared.counters.put_calls.load(Ordering::Relaxed)
    }

    /// All counters since start or reset.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Forgets records, attempts, counters and seen-before counts. Keeps the plan (but a plan's
    /// own state, such as a seeded RNG, goes on) and the sequence counter.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting connections; open connections are closed once idle.
    pub fn stop(&self) {
        let _ = self.shutdown.send(());
    }

    /// Waits until the server stops (for the binary: run until a signal calls [`stop`]).
    ///
    /// [`stop`]: Self::stop
    pub async fn stopped(&self) {
        self.shutdown.closed().await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(kinesis))
        .route("/_stats", get(stats))
        .route("/_reset", post(reset))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.stats()).into_response()
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const AMZ_JSON: &str = "application/x-amz-json-1.1";

#[derive(Deserialize)]
struct PutRecordIn<'a> {
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
}

#[derive(Deserialize)]
struct EntryIn<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
}

#[derive(Deserialize)]
struct PutRecordsIn<'a> {
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(rename = "Records", borrow)]
    records: Vec<EntryIn<'a>>,
}

/// A PutRecord answer, serialised straight from the struct (no `serde_json::Value` tree).
#[derive(Serialize)]
struct PutRecordOut<'a> {
    #[serde(rename = "ShardId")]
    shard_id: &'static str,
    #[serde(rename = "SequenceNumber")]
    sequence_number: &'a str,
    #[serde(rename = "EncryptionType")]
    encryption_type: &'static str,
}

/// A PutRecords answer.
#[derive(Serialize)]
struct PutRecordsOut<'a> {
    #[serde(rename = "FailedRecordCount")]
    failed_record_count: usize,
    #[serde(rename = "Records")]
    records: &'a [EntryOut],
    #[serde(rename = "EncryptionType")]
    encryption_type: &'static str,
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain structs serialise")
}

#[derive(Serialize)]
#[serde(untagged)]
enum EntryOut {
    Ok {
        #[serde(rename = "ShardId")]
        shard_id: &'static str,
        #[serde(rename = "SequenceNumber")]
        sequence_number: String,
    },
    Err {
        #[serde(rename = "ErrorCode")]
        error_code: String,
        #[serde(rename = "ErrorMessage")]
        error_message: String,
    },
}

/// `StreamName`, else the name part of `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`.
fn stream_of<'a>(name: Option<&'a str>, arn: Option<&'a str>) -> Option<&'a str> {
    name.or_else(|| arn.map(|a| a.rsplit_once("stream/").map_or(a, |(_, n)| n)))
}

fn answer(request_id: HeaderValue, status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    h.insert("x-amzn-RequestId", request_id);
    res
}

fn aws_error(request_id: HeaderValue, status: u16, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": error_type, "message": message });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(request_id, status, body.to_string().into_bytes())
}

fn entry_error_status(code: &str) -> u16 {
    if code == "InternalFailure" { 500 } else { 400 }
}

/// One record of a call, still base64.
struct EntryRef<'a> {
    partition_key: &'a str,
    data_b64: &'a str,
}

async fn kinesis(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = shared.next_request_id();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let operation = match target.strip_prefix(TARGET_PREFIX) {
        Some("PutRecord") => Operation::PutRecord,
        Some("PutRecords") => Operation::PutRecords,
        Some("ListShards") if shared.list_shards => {
            let body = br#"{"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"0"}}]}"#.to_vec();
            return answer(request_id, StatusCode::OK, body);
        }
        Some("ListStreams") => {
            shared
                .counters
                .list_streams_calls
                .fetch_add(1, Ordering::Relaxed);
            let body = br#"{"StreamNames":[],"HasMoreStreams":false}"#.to_vec();
            return answer(request_id, StatusCode::OK, body);
        }
        _ => {
            let msg = format!("fake-kinesis does not implement {target:?}");
            return aws_error(request_id, 400, "UnknownOperationException", &msg);
        }
    };
    let counters = &shared.counters;
    match operation {
        Operation::PutRecord => &counters.put_record_calls,
        Operation::PutRecords => &counters.put_records_calls,
    }
    .fetch_add(1, Ordering::Relaxed);
    let call_index = counters.put_calls.fetch_add(1, Ordering::Relaxed);

    // Parse into borrowed views of the body; base64 is decoded later, only when someone looks.
    let single;
    let batch;
    let (stream, entries): (&str, Vec<EntryRef<'_>>) = match operation {
        Operation::PutRecord => {
            single = match serde_json::from_slice::<PutRecordIn<'_>>(&body) {
                Ok(v) => v,
                Err(e) => return serialization_error(&shared, request_id, &e),
            };
            let stream = stream_of(single.stream_name.as_deref(), single.stream_arn.as_deref());
            let entry = EntryRef {
                partition_key: &single.partition_key,
                data_b64: &single.data,
            };
            (stream.unwrap_or(""), vec![entry])
        }
        Operation::PutRecords => {
            batch = match serde_json::from_slice::<PutRecordsIn<'_>>(&body) {
                Ok(v) => v,
                Err(e) => return serialization_error(&shared, request_id, &e),
            };
            let stream = stream_of(batch.stream_name.as_deref(), batch.stream_arn.as_deref());
            let entries = batch
                .records
                .iter()
                .map(|r| EntryRef {
                    partition_key: &r.partition_key,
                    data_b64: &r.data,
                })
                .collect();
            (stream.unwrap_or(""), entries)
        }
    };
    if stream.is_empty() {
        counters.calls_failed.fetch_add(1, Ordering::Relaxed);
        return aws_error(
            request_id,
            400,
            "ValidationException",
            "StreamName or StreamARN needed",
        );
    }
    // Kinesis' own request limits, so a client that forgets them fails here as it would on AWS.
    if entries.is_empty() || entries.len() > 500 {
        counters.calls_failed.fetch_add(1, Ordering::Relaxed);
        let msg = format!("Records must have 1 to 500 entries, got {}", entries.len());
        return aws_error(request_id, 400, "ValidationException", &msg);
    }
    counters
        .records_seen
        .fetch_add(entries.len() as u64, Ordering::Relaxed);

    let plan = shared.plan();
    let ctx = CallCtx {
        operation,
        call_index,
        stream,
        entries: entries.len(),
    };
    let verdict = plan.call_verdict(&ctx);
    // The call takes effect at once and only the answer is late, as when Kinesis wrote the records
    // but its answer was slow: a client that times out may find them written (and duplicate them
    // by retrying). Sleeping first would let a client's disconnect cancel the write instead.
    let delay = verdict.delay;
    if let Some(err) = verdict.error {
        counters.calls_failed.fetch_add(1, Ordering::Relaxed);
        counters
            .records_failed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if !shared.count_only {
            let mut attempts = lock(&shared.attempts);
            for e in &entries {
                attempts.push(Attempt {
                    operation,
                    stream: stream.to_owned(),
                    partition_key: e.partition_key.to_owned(),
                    data: BASE64.decode(e.data_b64).unwrap_or_default(),
                    outcome: Outcome::CallFailed {
                        error_type: err.error_type.clone(),
                    },
                });
            }
        }
        late(delay).await;
        return aws_error(request_id, err.status, &err.error_type, &err.message);
    }

    let results = match decide_entries(&shared, &plan, operation, stream, &entries) {
        Ok(r) => r,
        Err(msg) => return aws_error(request_id, 400, "SerializationException", &msg),
    };

    let response = match operation {
        Operation::PutRecord => match results.into_iter().next() {
            Some(EntryOut::Ok {
                sequence_number, ..
            }) => {
                let body = PutRecordOut {
                    shard_id: SHARD_ID,
                    sequence_number: &sequence_number,
                    encryption_type: "NONE",
                };
                answer(request_id, StatusCode::OK, to_json(&body))
            }
            Some(EntryOut::Err {
                error_code,
                error_message,
            }) => {
                let status = entry_error_status(&error_code);
                aws_error(request_id, status, &error_code, &error_message)
            }
            None => aws_error(request_id, 500, "InternalFailure", "no result"),
        },
        Operation::PutRecords => {
            let failed = results
                .iter()
                .filter(|r| matches!(r, EntryOut::Err { .. }))
                .count();
            let body = PutRecordsOut {
                failed_record_count: failed,
                records: &results,
                encryption_type: "NONE",
            };
            answer(request_id, StatusCode::OK, to_json(&body))
        }
    };
    late(delay).await;
    response
}

/// Waits `delay` before answering. No delay means no timer at all: tokio's timer wheel has 1 ms
/// ticks, so even `sleep(Duration::ZERO)` parks the call until the next tick, which added ~1.1 ms
/// to every answer and made the benchmark measure the fake's timer instead of the service.
async fn late(delay: std::time::Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn serialization_error(
    shared: &Shared,
    request_id: HeaderValue,
    e: &serde_json::Error,
) -> Response {
    shared.counters.calls_failed.fetch_add(1, Ordering::Relaxed);
    aws_error(request_id, 400, "SerializationException", &e.to_string())
}

/// Runs the entry rule over the records, updates counters and stores, and returns one result per
/// record in request order. Synchronous on purpose: no lock is held across an await.
fn decide_entries(
    shared: &Shared,
    plan: &Plan,
    operation: Operation,
    stream: &str,
    entries: &[EntryRef<'_>],
) -> Result<Vec<EntryOut>, String> {
    let store = !shared.count_only;
    // The fast path (benchmark): nothing to decide and nothing to keep, so no base64 decoding.
    let need_bytes = store || plan.entry.is_some();
    let decoded: Vec<Vec<u8>> = if need_bytes {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                BASE64
                    .decode(e.data_b64)
                    .map_err(|err| format!("record {i}: Data: {err}"))
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };

    let mut results = Vec::with_capacity(entries.len());
    let mut accepted = 0u64;
    {
        let mut seen = plan.entry.as_ref().map(|_| lock(&shared.seen));
        let mut received = store.then(|| lock(&shared.received));
        let mut attempts = store.then(|| lock(&shared.attempts));
        for (index, e) in entries.iter().enumerate() {
            let data: &[u8] = decoded.get(index).map_or(&[], Vec::as_slice);
            let verdict = match (&plan.entry, seen.as_deref_mut()) {
                (Some(rule), Some(seen)) => {
                    let count = seen.entry(data.to_vec()).or_insert(0);
                    let seen_before = *count;
                    *count += 1;
                    let partition_key = e.partition_key;
                    rule(&EntryCtx {
                        operation,
                        stream,
                        index,
                        partition_key,
                        data,
                        seen_before,
                    })
                }
                _ => EntryVerdict::Accept,
            };
            let (result, outcome) = match verdict {
                EntryVerdict::Accept => {
                    accepted += 1;
                    let seq = shared.next_seq();
                    if let Some(received) = received.as_deref_mut() {
                        received.push(Received {
                            stream: stream.to_owned(),
                            partition_key: e.partition_key.to_owned(),
                            data: data.to_vec(),
                            seq: seq.clone(),
                        });
                    }
                    let outcome = store.then(|| Outcome::Accepted { seq: seq.clone() });
                    (
                        EntryOut::Ok {
                            shard_id: SHARD_ID,
                            sequence_number: seq,
                        },
                        outcome,
                    )
                }
                EntryVerdict::Fail { code, message } => {
                    let outcome = store.then(|| Outcome::Failed { code: code.clone() });
                    (
                        EntryOut::Err {
                            error_code: code,
                            error_message: message,
                        },
                        outcome,
                    )
                }
            };
            if let (Some(attempts), Some(outcome)) = (attempts.as_deref_mut(), outcome) {
                attempts.push(Attempt {
                    operation,
                    stream: stream.to_owned(),
                    partition_key: e.partition_key.to_owned(),
                    data: data.to_vec(),
                    outcome,
                });
            }
            results.push(result);
        }
    }
    let counters = &shared.counters;
    counters
        .records_accepted
        .fetch_add(accepted, Ordering::Relaxed);
    counters
        .records_failed
        .fetch_add(entries.len() as u64 - accepted, Ordering::Relaxed);
    Ok(results)
}
