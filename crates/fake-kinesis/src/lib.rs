//! A programmable stand-in for Kinesis' PutRecord/PutRecords (AWS JSON 1.1 and CBOR 1.1), for what
//! the emulator cannot do: inject throttling, partial failures and delays, and measure the
//! service's own speed.
//!
//! It speaks just enough of the protocol for the AWS SDKs over plain HTTP: `POST /` with
//! `x-amz-target: Kinesis_20131202.{PutRecord,PutRecords,ListStreams}`. It does not check
//! signatures, does not know streams (every name exists unless a [`Plan`] says otherwise) and has
//! one shard, `shardId-000000000000`, with a global increasing sequence number.
//!
//! A request with `content-type: application/x-amz-cbor-1.1` is read and answered in CBOR, as
//! Kinesis does: the same members, with `Data` as a byte string instead of base64 text. Anything
//! else is AWS JSON 1.1. Plans and [`Received`] / [`Attempt`] see the same raw bytes either way.
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

mod cbor;
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
    CallCtx, CallError, CallRule, CallVerdict, EntryCtx, EntryRule, EntryVerdict, HangUp,
    Operation, Plan,
};

/// The only shard the fake has.
pub const SHARD_ID: &str = "shardId-000000000000";

/// Bodies up to this size are read: a 10 MiB PutRecords in base64 plus JSON framing fits (in CBOR
/// the data is raw, so it is smaller still).
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
    /// With `list_shards`: ListShards names `shardId-000000000001` (the whole range) while every
    /// write still lands on `shardId-000000000000`, as a listing that lags behind a reshard does:
    /// every aggregate built from that map is mispredicted.
    pub list_shards_disagrees: bool,
}

/// A record the fake accepted (wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The stream the call named.
    pub stream: String,
    /// The record's partition key.
    pub partition_key: String,
    /// The record's data: the exact bytes the client sent (base64-decoded in JSON, the byte
    /// string as is in CBOR).
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
    /// The record's data, as raw bytes whatever the protocol.
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
    /// ListShards calls (aggregation's shard maps).
    pub list_shards_calls: u64,
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
    list_shards_calls: AtomicU64,
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
    list_shards_disagrees: bool,
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
    fn new(options: &Options) -> Self {
        Self {
            count_only: options.count_only,
            list_shards: options.list_shards,
            list_shards_disagrees: options.list_shards_disagrees,
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
            list_shards_calls: get(&c.list_shards_calls),
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
            &c.list_shards_calls,
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
        let shared = Arc::new(Shared::new(&options));
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
const AMZ_CBOR: &str = "application/x-amz-cbor-1.1";

/// The ListShards answer: one open shard owning the whole hash-key range.
const LIST_SHARDS: &[u8] = br#"{"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"0"}}]}"#;
/// A ListShards answer that disagrees with where writes land (`Options::list_shards_disagrees`).
const LIST_SHARDS_ELSEWHERE: &[u8] = br#"{"Shards":[{"ShardId":"shardId-000000000001","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"0"}}]}"#;
/// The ListStreams answer (readiness probes only look at the status).
const LIST_STREAMS: &[u8] = br#"{"StreamNames":[],"HasMoreStreams":false}"#;

/// The wire protocol of a request, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// AWS JSON 1.1: `Data` is base64 text. Anything that does not say CBOR, as before CBOR was
    /// supported (the fake never checked the content type).
    Json,
    /// CBOR 1.1 (`application/x-amz-cbor-1.1`): `Data` is a byte string.
    Cbor,
}

impl Protocol {
    fn of(headers: &HeaderMap) -> Self {
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("");
        if media_type.trim().eq_ignore_ascii_case(AMZ_CBOR) {
            Protocol::Cbor
        } else {
            Protocol::Json
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Protocol::Json => AMZ_JSON,
            Protocol::Cbor => AMZ_CBOR,
        })
    }

    fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            Protocol::Json => serde_json::to_vec(value).expect("plain structs serialise"),
            Protocol::Cbor => cbor::to_vec(value),
        }
    }

    /// A canned answer, kept as JSON text.
    fn canned(self, json: &'static [u8]) -> Vec<u8> {
        match self {
            Protocol::Json => json.to_vec(),
            Protocol::Cbor => cbor::from_json_text(json),
        }
    }
}

/// The JSON requests, as borrowed views of the body: `Data` stays base64 text until someone looks.
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

/// A PutRecord answer, serialised straight from the struct (no `serde_json::Value` tree), in
/// either protocol.
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
    /// An unsigned integer in both protocols.
    #[serde(rename = "FailedRecordCount")]
    failed_record_count: usize,
    #[serde(rename = "Records")]
    records: &'a [EntryOut],
    #[serde(rename = "EncryptionType")]
    encryption_type: &'static str,
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

/// An error answer. In JSON this is byte for byte what `json!({"__type", "message"})` gave (the
/// keys in that order, the same escaping), without building a map.
#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "__type")]
    error_type: &'a str,
    message: &'a str,
}

/// `StreamName`, else the name part of `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`, else "".
/// Takes the members by value so a borrowed JSON string stays borrowed.
fn stream_of<'a>(name: Option<Cow<'a, str>>, arn: Option<Cow<'a, str>>) -> Cow<'a, str> {
    fn name_part(arn: &str) -> &str {
        arn.rsplit_once("stream/").map_or(arn, |(_, n)| n)
    }
    match (name, arn) {
        (Some(name), _) => name,
        (None, Some(Cow::Borrowed(arn))) => Cow::Borrowed(name_part(arn)),
        (None, Some(Cow::Owned(arn))) => Cow::Owned(name_part(&arn).to_owned()),
        (None, None) => Cow::Borrowed(""),
    }
}

/// How to answer one request: in its protocol, with its request id.
struct Reply {
    protocol: Protocol,
    request_id: HeaderValue,
}

impl Reply {
    fn body(self, status: StatusCode, body: Vec<u8>) -> Response {
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, self.protocol.content_type());
        h.insert("x-amzn-RequestId", self.request_id);
        res
    }

    fn ok<T: Serialize>(self, value: &T) -> Response {
        let body = self.protocol.encode(value);
        self.body(StatusCode::OK, body)
    }

    /// `{"__type": error_type, "message": message}` with `status`.
    fn error(self, status: u16, error_type: &str, message: &str) -> Response {
        let body = self.protocol.encode(&ErrorOut {
            error_type,
            message,
        });
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.body(status, body)
    }
}

fn entry_error_status(code: &str) -> u16 {
    if code == "InternalFailure" { 500 } else { 400 }
}

/// A record's data as it came in.
enum DataRef<'a> {
    /// JSON: still base64, decoded only when someone looks (the count-only benchmark never does).
    Base64(Cow<'a, str>),
    /// CBOR: the byte string, already raw.
    Raw(Vec<u8>),
}

impl DataRef<'_> {
    /// The raw bytes; borrowed when there is nothing to decode.
    fn bytes(&self) -> Result<Cow<'_, [u8]>, base64::DecodeError> {
        match self {
            DataRef::Base64(b64) => BASE64.decode(b64.as_bytes()).map(Cow::Owned),
            DataRef::Raw(bytes) => Ok(Cow::Borrowed(bytes)),
        }
    }
}

/// One record of a call.
struct EntryRef<'a> {
    partition_key: Cow<'a, str>,
    data: DataRef<'a>,
}

/// A Put call's members, whichever protocol carried them.
struct PutCall<'a> {
    /// The stream named, "" if none.
    stream: Cow<'a, str>,
    entries: Vec<EntryRef<'a>>,
}

/// Reads a Put request. The error is the `SerializationException` message.
fn parse_put(protocol: Protocol, operation: Operation, body: &[u8]) -> Result<PutCall<'_>, String> {
    let json_error = |e: serde_json::Error| e.to_string();
    Ok(match (protocol, operation) {
        (Protocol::Json, Operation::PutRecord) => {
            let r = serde_json::from_slice::<PutRecordIn<'_>>(body).map_err(json_error)?;
            PutCall {
                stream: stream_of(r.stream_name, r.stream_arn),
                entries: vec![EntryRef {
                    partition_key: r.partition_key,
                    data: DataRef::Base64(r.data),
                }],
            }
        }
        (Protocol::Json, Operation::PutRecords) => {
            let r = serde_json::from_slice::<PutRecordsIn<'_>>(body).map_err(json_error)?;
            PutCall {
                stream: stream_of(r.stream_name, r.stream_arn),
                entries: r
                    .records
                    .into_iter()
                    .map(|e| EntryRef {
                        partition_key: e.partition_key,
                        data: DataRef::Base64(e.data),
                    })
                    .collect(),
            }
        }
        (Protocol::Cbor, Operation::PutRecord) => {
            let r = cbor::from_slice::<cbor::PutRecordIn>(body)?;
            PutCall {
                stream: stream_of(r.stream_name.map(Cow::Owned), r.stream_arn.map(Cow::Owned)),
                entries: vec![EntryRef {
                    partition_key: Cow::Owned(r.partition_key),
                    data: DataRef::Raw(r.data.0),
                }],
            }
        }
        (Protocol::Cbor, Operation::PutRecords) => {
            let r = cbor::from_slice::<cbor::PutRecordsIn>(body)?;
            PutCall {
                stream: stream_of(r.stream_name.map(Cow::Owned), r.stream_arn.map(Cow::Owned)),
                entries: r
                    .records
                    .into_iter()
                    .map(|e| EntryRef {
                        partition_key: Cow::Owned(e.partition_key),
                        data: DataRef::Raw(e.data.0),
                    })
                    .collect(),
            }
        }
    })
}

/// Counts a whole call as failed, and records each of its entries as failed with `error_type`.
fn call_failed(
    shared: &Shared,
    operation: Operation,
    stream: &str,
    entries: &[EntryRef<'_>],
    error_type: &str,
) {
    let counters = &shared.counters;
    counters.calls_failed.fetch_add(1, Ordering::Relaxed);
    counters
        .records_failed
        .fetch_add(entries.len() as u64, Ordering::Relaxed);
    if shared.count_only {
        return;
    }
    let mut attempts = lock(&shared.attempts);
    for e in entries {
        attempts.push(Attempt {
            operation,
            stream: stream.to_owned(),
            partition_key: e.partition_key.as_ref().to_owned(),
            data: e.data.bytes().map(Cow::into_owned).unwrap_or_default(),
            outcome: Outcome::CallFailed {
                error_type: error_type.to_owned(),
            },
        });
    }
}

async fn kinesis(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = Reply {
        protocol: Protocol::of(&headers),
        request_id: shared.next_request_id(),
    };
    let protocol = reply.protocol;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let operation = match target.strip_prefix(TARGET_PREFIX) {
        Some("PutRecord") => Operation::PutRecord,
        Some("PutRecords") => Operation::PutRecords,
        Some("ListShards") if shared.list_shards => {
            shared
                .counters
                .list_shards_calls
                .fetch_add(1, Ordering::Relaxed);
            let listing = if shared.list_shards_disagrees {
                LIST_SHARDS_ELSEWHERE
            } else {
                LIST_SHARDS
            };
            return reply.body(StatusCode::OK, protocol.canned(listing));
        }
        Some("ListStreams") => {
            shared
                .counters
                .list_streams_calls
                .fetch_add(1, Ordering::Relaxed);
            return reply.body(StatusCode::OK, protocol.canned(LIST_STREAMS));
        }
        _ => {
            let msg = format!("fake-kinesis does not implement {target:?}");
            return reply.error(400, "UnknownOperationException", &msg);
        }
    };
    let counters = &shared.counters;
    match operation {
        Operation::PutRecord => &counters.put_record_calls,
        Operation::PutRecords => &counters.put_records_calls,
    }
    .fetch_add(1, Ordering::Relaxed);
    let call_index = counters.put_calls.fetch_add(1, Ordering::Relaxed);

    let call = match parse_put(protocol, operation, &body) {
        Ok(call) => call,
        Err(msg) => {
            counters.calls_failed.fetch_add(1, Ordering::Relaxed);
            return reply.error(400, "SerializationException", &msg);
        }
    };
    let stream: &str = &call.stream;
    let entries = &call.entries;
    if stream.is_empty() {
        counters.calls_failed.fetch_add(1, Ordering::Relaxed);
        return reply.error(400, "ValidationException", "StreamName or StreamARN needed");
    }
    // Kinesis' own request limits, so a client that forgets them fails here as it would on AWS.
    if entries.is_empty() || entries.len() > 500 {
        counters.calls_failed.fetch_add(1, Ordering::Relaxed);
        let msg = format!("Records must have 1 to 500 entries, got {}", entries.len());
        return reply.error(400, "ValidationException", &msg);
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
    if let Some(how) = verdict.hang_up {
        call_failed(&shared, operation, stream, entries, &format!("{how:?}"));
        late(delay).await;
        return hang_up(how, &reply);
    }
    if let Some(err) = verdict.error {
        call_failed(&shared, operation, stream, entries, &err.error_type);
        late(delay).await;
        return reply.error(err.status, &err.error_type, &err.message);
    }

    let results = match decide_entries(&shared, &plan, operation, stream, entries) {
        Ok(r) => r,
        Err(msg) => return reply.error(400, "SerializationException", &msg),
    };

    let response = match operation {
        Operation::PutRecord => match results.into_iter().next() {
            Some(EntryOut::Ok {
                sequence_number, ..
            }) => reply.ok(&PutRecordOut {
                shard_id: SHARD_ID,
                sequence_number: &sequence_number,
                encryption_type: "NONE",
            }),
            Some(EntryOut::Err {
                error_code,
                error_message,
            }) => {
                let status = entry_error_status(&error_code);
                reply.error(status, &error_code, &error_message)
            }
            None => reply.error(500, "InternalFailure", "no result"),
        },
        Operation::PutRecords => {
            let failed = results
                .iter()
                .filter(|r| matches!(r, EntryOut::Err { .. }))
                .count();
            reply.ok(&PutRecordsOut {
                failed_record_count: failed,
                records: &results,
                encryption_type: "NONE",
            })
        }
    };
    late(delay).await;
    response
}

/// An answer that is not one: its body fails, and hyper then closes the connection. Failing at
/// once drops the status line and headers still in hyper's write buffer (nothing reaches the
/// client); failing after a first chunk and a pause (in which hyper flushes) cuts the body short.
fn hang_up(how: HangUp, reply: &Reply) -> Response {
    let mut response = Response::new(axum::body::Body::new(Broken {
        first: match how {
            HangUp::BeforeAnswer => None,
            HangUp::MidAnswer => Some(Bytes::from_static(b"{\"FailedRecordCount\":0,")),
        },
        pause: None,
    }));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, reply.protocol.content_type());
    // More than will ever come, so the client knows the body was cut short.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
    response
}

/// A body that yields `first` (if any), pauses 50 ms, then fails.
struct Broken {
    first: Option<Bytes>,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if let Some(first) = self.first.take() {
            self.pause = Some(Box::pin(tokio::time::sleep(
                std::time::Duration::from_millis(50),
            )));
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        if let Some(pause) = self.pause.as_mut()
            && pause.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "fake-kinesis hangs up, as planned",
        ))))
    }
}

/// Waits `delay` before answering. No delay means no timer at all: tokio's timer wheel has 1 ms
/// ticks, so even `sleep(Duration::ZERO)` parks the call until the next tick, which added ~1.1 ms
/// to every answer and made the benchmark measure the fake's timer instead of the service.
async fn late(delay: std::time::Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
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
    let decoded: Vec<Cow<'_, [u8]>> = if need_bytes {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.data
                    .bytes()
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
            let data: &[u8] = decoded.get(index).map_or(&[], |d| d);
            let verdict = match (&plan.entry, seen.as_deref_mut()) {
                (Some(rule), Some(seen)) => {
                    let count = seen.entry(data.to_vec()).or_insert(0);
                    let seen_before = *count;
                    *count += 1;
                    let partition_key = &e.partition_key;
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
                            partition_key: e.partition_key.as_ref().to_owned(),
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
                    partition_key: e.partition_key.as_ref().to_owned(),
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
