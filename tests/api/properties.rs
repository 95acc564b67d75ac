//! Property tests (proptest) over the pure domain and over the HTTP router with a fake publisher.
//!
//! No emulator: the service is built by `Application::build_with_publisher` around the crate's one
//! in-process recording fake (`kinesis_writer::testing::RecordingPublisher`, which writes every
//! record whose data does not start with `fail:`), served by the harness's `TestApp`, and each
//! request is driven through `TestApp::oneshot` (the router's whole middleware stack, no socket).
//! Each property runs 256 cases by default (`PROPTEST_CASES` overrides); failures are not
//! persisted to disk, the shrunk case is printed.
//!
//! Properties:
//! - (a) a JSON value written with arbitrary whitespace and arbitrary (valid) escapes maps to its own
//!   text, or to its decoded text for a string; a batch of N values maps to N such records;
//! - (b) any path segment / query / content type / body answers 200 or a 4xx problem+json whose
//!   `code` is one of docs/api.md's, never a 5xx; for inputs the model understands, exactly what it
//!   predicts, and the fake sees the records only on 200;
//! - (c) a partition key is accepted iff it is 1..=256 UTF-16 code units (domain and HTTP);
//! - (d) the record data the publisher receives is what the mapping says (strings unquoted, others raw);
//! - (e) with small configured limits, the limit errors come in docs/api.md's order with their
//!   numbers.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use kinesis_writer::config::Settings;
use kinesis_writer::domain::{BodyKind, PartitionKey, Payload, Record, ValidationError};
use kinesis_writer::kinesis::KinesisPublisher;
use kinesis_writer::startup::Application;
use kinesis_writer::testing::RecordingPublisher;
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::helpers::{TestApp, serve};
use serde_json::Value;
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------------------------
// Harness: one runtime, apps around the recording fake publisher.
// ---------------------------------------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// The service on a free loopback port around a fresh fake.
struct App {
    test: TestApp,
    fake: Arc<RecordingPublisher>,
    body_limit: usize,
    limits: ModelLimits,
}

#[derive(Debug, Clone, Copy)]
struct ModelLimits {
    max_records: usize,
    max_record_size: usize,
    max_request_size: usize,
}

fn app(tweak: impl FnOnce(&mut Settings)) -> App {
    let mut settings = Settings::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")))
        .expect("config/ loads");
    settings.server.host = "127.0.0.1".to_owned();
    settings.server.port = 0;
    settings.dev.create_streams.clear();
    // The model predicts the call that carries the records (PutRecord in single mode): the direct
    // path. Coalescing (on by default) answers the same (tests/api/coalesce.rs).
    settings.coalesce.enabled = false;
    tweak(&mut settings);
    let body_limit = settings.limits.body_limit_bytes;
    let limits = ModelLimits {
        max_records: settings.limits.max_records_per_request,
        max_record_size: settings.limits.max_record_size_bytes,
        max_request_size: settings.limits.max_request_size_bytes,
    };
    let fake = Arc::new(RecordingPublisher::default());
    let publisher: Arc<dyn KinesisPublisher> = fake.clone();
    let test = runtime().block_on(async move {
        let application = Application::build_with_publisher(settings, publisher)
            .await
            .expect("app builds");
        serve(application)
    });
    App {
        test,
        fake,
        body_limit,
        limits,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl App {
    /// POSTs `body` to `path_and_query` (already encoded) with an optional raw Content-Type.
    fn post(&self, path_and_query: &str, content_type: Option<&[u8]>, body: Vec<u8>) -> Answer {
        // Normalised as an HTTP client would send it (e.g. a space in the query becomes %20).
        let url = reqwest::Url::parse(&format!("http://127.0.0.1{path_and_query}"))
            .unwrap_or_else(|e| panic!("POST {path_and_query}: {e}"));
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut request = axum::http::Request::post(target);
        if let Some(ct) = content_type {
            request = request.header(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_bytes(ct).expect("valid header value"),
            );
        }
        let request = request
            .header(axum::http::header::CONTENT_LENGTH, body.len())
            .body(axum::body::Body::from(body))
            .unwrap_or_else(|e| panic!("POST {path_and_query}: {e}"));
        runtime().block_on(async {
            let response = self.test.oneshot(request).await;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body")
                .to_vec();
            Answer {
                status,
                content_type,
                body,
            }
        })
    }
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers.
// ---------------------------------------------------------------------------------------------

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn pct(s: &[u8]) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn query_string(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k.as_bytes()), pct(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&")
}

/// Writes JSON text with whitespace and escape choices drawn from `noise`.
struct Writer<'a> {
    noise: &'a [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    fn new(noise: &'a [u8]) -> Self {
        Self { noise, at: 0 }
    }

    fn pick(&mut self, n: usize) -> usize {
        if self.noise.is_empty() {
            return 0;
        }
        let b = self.noise[self.at % self.noise.len()];
        self.at += 1;
        usize::from(b) % n
    }

    /// 0 to 3 JSON whitespace characters.
    fn ws(&mut self) -> String {
        (0..self.pick(4))
            .map(|_| [' ', '\t', '\n', '\r'][self.pick(4)])
            .collect()
    }

    fn string(&mut self, s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            let must = c == '"' || c == '\\' || u32::from(c) < 0x20;
            let choice = self.pick(4);
            if !must && choice < 2 {
                out.push(c);
                continue;
            }
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '/' => Some("\\/"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                _ => None,
            };
            if let Some(short) = short
                && choice != 3
            {
                out.push_str(short);
                continue;
            }
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                if self.pick(2) == 0 {
                    let _ = write!(out, "\\u{unit:04x}");
                } else {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
        }
        out.push('"');
        out
    }

    /// The value's own text (no surrounding whitespace).
    fn value(&mut self, v: &Value) -> String {
        match v {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                let texts: Vec<String> = items.iter().map(|i| self.value(i)).collect();
                self.container('[', ']', texts)
            }
            Value::Object(map) => {
                let texts: Vec<String> = map
                    .iter()
                    .map(|(k, v)| {
                        let key = self.string(k);
                        let (a, b) = (self.ws(), self.ws());
                        let val = self.value(v);
                        format!("{key}{a}:{b}{val}")
                    })
                    .collect();
                self.container('{', '}', texts)
            }
        }
    }

    fn container(&mut self, open: char, close: char, items: Vec<String>) -> String {
        let mut out = String::from(open);
        out.push_str(&self.ws());
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push_str(&self.ws());
                out.push(',');
                out.push_str(&self.ws());
            }
            out.push_str(&item);
        }
        out.push_str(&self.ws());
        out.push(close);
        out
    }

    /// A top-level array of `items`, returning the body and each element's own text.
    fn batch(&mut self, items: &[Value]) -> (String, Vec<String>) {
        let texts: Vec<String> = items.iter().map(|i| self.value(i)).collect();
        let (lead, trail) = (self.ws(), self.ws());
        let body = format!("{lead}{}{trail}", self.container('[', ']', texts.clone()));
        (body, texts)
    }
}

/// The record data docs/api.md promises for a JSON value with this text and this meaning.
fn mapped(v: &Value, text: &str) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        _ => text.as_bytes().to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

/// Strings whose UTF-16 length sits around 0..=300, mixing 1-unit and 2-unit characters.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{0,300}",
        prop::collection::vec(
            prop_oneof![
                Just('a'),
                Just('é'),
                Just('😀'),
                Just('\u{ffff}'),
                any::<char>()
            ],
            0..300
        )
        .prop_map(|cs| cs.into_iter().collect()),
        (0usize..3, 250usize..262).prop_map(|(astral, n)| {
            let mut s = "😀".repeat(astral);
            while s.encode_utf16().count() < n {
                s.push('k');
            }
            s
        }),
    ]
}

/// A content type the model understands, or raw header bytes it does not.
#[derive(Debug, Clone)]
enum Ct {
    Known(Option<&'static str>),
    Raw(Vec<u8>),
}

fn arb_ct() -> impl Strategy<Value = Ct> {
    let json = prop::sample::select(vec![
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON;charset=\"UTF-8\""),
    ]);
    let single = prop::sample::select(vec![
        Some("text/plain"),
        Some("text/plain; charset=UTF-8"),
        Some("TEXT/Plain"),
        Some("application/octet-stream"),
    ]);
    let unsupported = prop::sample::select(vec![
        Some("application/json; charset=latin1"),
        Some("text/plain; charset=iso-8859-1"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        Some("text/json"),
        Some("application/jsonx"),
        Some(""),
    ]);
    let known = prop_oneof![5 => json, 3 => single, 2 => unsupported];
    prop_oneof![
        4 => known.prop_map(Ct::Known),
        1 => prop::collection::vec(
            prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff],
            0..40
        )
        .prop_map(Ct::Raw),
    ]
}

#[derive(Debug, Clone)]
enum Query {
    Pairs(Vec<(String, String)>),
    Raw(String),
}

fn arb_query() -> impl Strategy<Value = Query> {
    let name = prop_oneof![
        3 => Just("record_per_entry".to_owned()),
        3 => Just("partition_key".to_owned()),
        1 => "[a-zA-Z_]{0,20}",
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        Just("true".to_owned()),
        Just("false".to_owned()),
        "[a-zA-Z0-9]{0,6}",
        any::<String>(),
    ];
    // Mostly well-formed (so that bodies get looked at), sometimes anything.
    let good = (
        prop::option::of(prop::sample::select(vec!["true", "false"])),
        prop::option::of("[a-zA-Z0-9é😀]{1,10}"),
    )
        .prop_map(|(mode, key)| {
            let mut pairs = Vec::new();
            if let Some(mode) = mode {
                pairs.push(("record_per_entry".to_owned(), mode.to_owned()));
            }
            if let Some(key) = key {
                pairs.push(("partition_key".to_owned(), key));
            }
            Query::Pairs(pairs)
        });
    prop_oneof![
        6 => good,
        3 => prop::collection::vec((name, value), 0..3).prop_map(Query::Pairs),
        1 => "[a-zA-Z0-9_=&%+;.~ -]{0,40}".prop_map(Query::Raw),
    ]
}

fn arb_stream() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("example-stream".to_owned()),
        2 => "[a-zA-Z0-9_.-]{1,130}",
        1 => any::<String>(),
    ]
    .prop_filter(
        "dot segments are resolved by the client's URL parser",
        |s| s != "." && s != "..",
    )
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..64),
        3 => (arb_json(), noise()).prop_map(|(v, n)| {
            let mut w = Writer::new(&n);
            let (a, b) = (w.ws(), w.ws());
            format!("{a}{}{b}", w.value(&v)).into_bytes()
        }),
        2 => (prop::collection::vec(arb_json(), 0..5), noise())
            .prop_map(|(vs, n)| Writer::new(&n).batch(&vs).0.into_bytes()),
        1 => (120usize..140).prop_map(|d| ("[".repeat(d) + &"]".repeat(d)).into_bytes()),
        1 => Just(br#"{"a":"\ud800"}"#.to_vec()),
        1 => Just(br#"["\ud800"]"#.to_vec()),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model: what docs/api.md says a request answers.
// ---------------------------------------------------------------------------------------------

/// Every `code` docs/api.md lists, with its status (plus the router's own 404/405 fallbacks).
const CODES: &[(&str, u16)] = &[
    ("invalid_stream_name", 400),
    ("invalid_query_parameter", 400),
    ("invalid_body", 400),
    ("stream_not_found", 404),
    ("payload_too_large", 413),
    ("unsupported_media_type", 415),
    ("data_must_be_list", 422),
    ("empty_batch", 422),
    ("too_many_records", 422),
    ("invalid_partition_key", 422),
    ("record_too_large", 422),
    ("batch_too_large", 422),
    ("kinesis_rejected", 422),
    ("throttled", 429),
    ("upstream_error", 502),
    ("upstream_unavailable", 503),
    ("upstream_timeout", 504),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Written {
        batch: bool,
        key: Option<String>,
        data: Vec<Vec<u8>>,
    },
    Refused {
        status: u16,
        code: &'static str,
        /// (limit, actual, index) where docs/api.md says they appear.
        numbers: Option<(usize, Option<usize>, Option<usize>)>,
    },
}

fn refused(status: u16, code: &'static str) -> Expect {
    Expect::Refused {
        status,
        code,
        numbers: None,
    }
}

fn depth_exceeds(text: &str, max: usize) -> bool {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for b in text.bytes() {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A `\\u` escape that is a lone UTF-16 surrogate, anywhere in the text: serde_json's own full
/// parser is the oracle (it refuses them: "lone leading surrogate" or "unexpected end of hex escape").
fn has_lone_surrogate(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_err_and(|e| {
        let e = e.to_string();
        e.contains("surrogate") || e.contains("end of hex escape")
    })
}

/// Record data for one raw JSON value: a string decoded, anything else as sent.
fn model_data(raw: &RawValue) -> Option<Vec<u8>> {
    let t = raw.get();
    if t.starts_with('"') {
        serde_json::from_str::<String>(t)
            .ok()
            .map(String::into_bytes)
    } else {
        Some(t.as_bytes().to_vec())
    }
}

/// `None` when the content type is outside the model (then only the weak property is checked).
fn model(
    stream: &str,
    query: &Query,
    ct: &Ct,
    body: &[u8],
    body_limit: usize,
    limits: ModelLimits,
) -> Option<Expect> {
    let valid_stream = !stream.is_empty()
        && stream.len() <= 128
        && stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_stream {
        return Some(refused(400, "invalid_stream_name"));
    }
    let Query::Pairs(pairs) = query else {
        return None;
    };
    // Parameters added after this model was written (e.g. `split`) are checked weakly only.
    if pairs.iter().any(|(k, _)| k == "split") {
        return None;
    }
    let (mut batch, mut key) = (None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "record_per_entry" if batch.is_none() => match v.as_str() {
                "true" => batch = Some(true),
                "false" => batch = Some(false),
                _ => return Some(refused(400, "invalid_query_parameter")),
            },
            "partition_key" if key.is_none() => key = Some(v.clone()),
            _ => return Some(refused(400, "invalid_query_parameter")),
        }
    }
    let batch = batch.unwrap_or(false);
    let Ct::Known(ct) = ct else { return None };
    #[derive(PartialEq)]
    enum K {
        Json,
        Text,
        Bin,
    }
    let kind = match ct.map(str::to_ascii_lowercase).as_deref() {
        None => K::Json,
        Some(
            "application/json"
            | "application/json; charset=utf-8"
            | "application/json;charset=\"utf-8\"",
        ) => K::Json,
        Some("text/plain" | "text/plain; charset=utf-8") => K::Text,
        Some("application/octet-stream") => K::Bin,
        Some(_) => return Some(refused(415, "unsupported_media_type")),
    };
    if batch && kind != K::Json {
        return Some(refused(415, "unsupported_media_type"));
    }
    if body.len() > body_limit {
        return Some(Expect::Refused {
            status: 413,
            code: "payload_too_large",
            numbers: Some((body_limit, None, None)),
        });
    }
    let invalid_body = || Some(refused(400, "invalid_body"));
    let data: Vec<Vec<u8>> = match (kind, batch) {
        (K::Bin, _) => vec![body.to_vec()],
        (K::Text, _) => match std::str::from_utf8(body) {
            Ok(_) => vec![body.to_vec()],
            Err(_) => return invalid_body(),
        },
        (K::Json, false) => {
            let Ok(text) = std::str::from_utf8(body) else {
                return invalid_body();
            };
            if depth_exceeds(text, 128) || has_lone_surrogate(text) {
                return invalid_body();
            }
            let Ok(raw) = serde_json::from_str::<&RawValue>(text) else {
                return invalid_body();
            };
            match model_data(raw) {
                Some(d) => vec![d],
                None => return invalid_body(),
            }
        }
        (K::Json, true) => {
            let Ok(text) = std::str::from_utf8(body) else {
                return invalid_body();
            };
            if depth_exceeds(text, 129) || has_lone_surrogate(text) {
                return invalid_body();
            }
            let items = match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => items,
                Err(_) if serde_json::from_str::<&RawValue>(text).is_ok() => {
                    return Some(refused(422, "data_must_be_list"));
                }
                Err(_) => return invalid_body(),
            };
            if items.is_empty() {
                return Some(refused(422, "empty_batch"));
            }
            let mut data = Vec::new();
            for raw in items {
                match model_data(raw) {
                    Some(d) => data.push(d),
                    None => return invalid_body(),
                }
            }
            data
        }
    };
    // Limits, in docs/api.md's order.
    if batch && data.len() > limits.max_records {
        return Some(Expect::Refused {
            status: 422,
            code: "too_many_records",
            numbers: Some((limits.max_records, Some(data.len()), None)),
        });
    }
    if let Some(k) = &key {
        let units = k.encode_utf16().count();
        if !(1..=256).contains(&units) {
            return Some(Expect::Refused {
                status: 422,
                code: "invalid_partition_key",
                numbers: Some((256, Some(units), None)),
            });
        }
    }
    let key_bytes = key.as_ref().map_or(36, String::len);
    let mut total = 0;
    for (index, d) in data.iter().enumerate() {
        let size = d.len() + key_bytes;
        if size > limits.max_record_size {
            return Some(Expect::Refused {
                status: 422,
                code: "record_too_large",
                numbers: Some((limits.max_record_size, Some(size), Some(index))),
            });
        }
        total += size;
    }
    if batch && total > limits.max_request_size {
        return Some(Expect::Refused {
            status: 422,
            code: "batch_too_large",
            numbers: Some((limits.max_request_size, Some(total), None)),
        });
    }
    Some(Expect::Written { batch, key, data })
}

/// Checks one answer: the weak property always, the model's prediction when it has one, and what
/// the fake received.
fn check(
    app: &App,
    stream: &str,
    answer: &Answer,
    expect: Option<&Expect>,
) -> Result<(), TestCaseError> {
    let calls = app.fake.take();
    prop_assert!(
        answer.status == 200 || (400..500).contains(&answer.status),
        "status {} (body {:?})",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status == 200 {
        prop_assert_eq!(calls.len(), 1, "a 200 makes exactly one publisher call");
        let call = &calls[0];
        prop_assert_eq!(&call.stream, stream);
        let json = answer.json();
        if call.batch {
            prop_assert_eq!(json["FailedRecordCount"].as_u64(), Some(0));
            prop_assert_eq!(
                json["Records"].as_array().map(Vec::len),
                Some(call.records.len())
            );
        } else {
            prop_assert!(json["ShardId"].is_string() && json["SequenceNumber"].is_string());
        }
    } else {
        prop_assert!(calls.is_empty(), "a refused request reached the publisher");
        prop_assert_eq!(&answer.content_type, "application/problem+json");
        let p = answer.json();
        let code = p["code"].as_str().unwrap_or_default();
        let listed = CODES.iter().find(|(c, _)| *c == code);
        prop_assert!(
            listed.is_some(),
            "code {:?} is not one of docs/api.md's: {}",
            code,
            p
        );
        prop_assert_eq!(listed.unwrap().1, answer.status, "status for {}", code);
        prop_assert_eq!(p["status"].as_u64(), Some(u64::from(answer.status)));
        let type_uri = format!("urn:kinesis-writer:problem:{code}");
        prop_assert_eq!(p["type"].as_str(), Some(type_uri.as_str()));
        prop_assert!(p["title"].is_string() && p["detail"].is_string());
        if matches!(answer.status, 413 | 422) {
            prop_assert_eq!(p["error_class"].as_str(), Some("KinesisWriterError"));
        }
    }
    let Some(expect) = expect else { return Ok(()) };
    match expect {
        Expect::Written { batch, key, data } => {
            prop_assert_eq!(
                answer.status,
                200,
                "expected a write, got {}",
                String::from_utf8_lossy(&answer.body)
            );
            let call = &calls[0];
            prop_assert_eq!(call.batch, *batch);
            let got: Vec<&[u8]> = call.records.iter().map(|r| &r.data[..]).collect();
            let want: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(got, want);
            for r in &call.records {
                let k = r.partition_key.as_str();
                match key {
                    Some(key) => prop_assert_eq!(k, key.as_str()),
                    None => {
                        let uuid = uuid::Uuid::parse_str(k);
                        prop_assert!(
                            k.len() == 36
                                && k == k.to_lowercase()
                                && uuid.map(|u| u.get_version_num()) == Ok(4),
                            "generated key {:?} is not a lowercase UUID v4",
                            k
                        );
                    }
                }
            }
            if key.is_none() && call.records.len() > 1 {
                let mut keys: Vec<&str> = call
                    .records
                    .iter()
                    .map(|r| r.partition_key.as_str())
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                prop_assert_eq!(keys.len(), call.records.len(), "one fresh UUID per record");
            }
        }
        Expect::Refused {
            status,
            code,
            numbers,
        } => {
            let p = answer.json();
            prop_assert_eq!(
                (answer.status, p["code"].as_str().unwrap_or_default()),
                (*status, *code),
                "problem: {}",
                p
            );
            if let Some((limit, actual, index)) = numbers {
                prop_assert_eq!(p["limit"].as_u64(), Some(*limit as u64));
                prop_assert_eq!(p["actual"].as_u64(), actual.map(|a| a as u64));
                prop_assert_eq!(p["index"].as_u64(), index.map(|i| i as u64));
            }
        }
    }
    Ok(())
}

/// One app (and so one fake) per property, so that parallel tests never see each other's calls.
fn app_for(test: &'static str) -> &'static App {
    static APPS: Mutex<Vec<(&'static str, &'static App)>> = Mutex::new(Vec::new());
    let mut apps = APPS.lock().unwrap();
    if let Some((_, app)) = apps.iter().find(|(name, _)| *name == test) {
        return app;
    }
    let leaked: &'static App = Box::leak(Box::new(app(|_| {})));
    apps.push((test, leaked));
    leaked
}

// ---------------------------------------------------------------------------------------------
// (a) the JSON mapping, pure.
// ---------------------------------------------------------------------------------------------

fn single(kind: BodyKind, body: &[u8]) -> Result<Bytes, ValidationError> {
    match Payload::single(kind, Bytes::copy_from_slice(body))? {
        Payload::Single(item) => item.into_data(),
        Payload::Batch(_) => unreachable!("single gave a batch"),
    }
}

fn batch(body: &[u8]) -> Result<Vec<Bytes>, ValidationError> {
    match Payload::batch(&Bytes::copy_from_slice(body), usize::MAX)? {
        Payload::Batch(items) => items.into_iter().map(|i| i.into_data()).collect(),
        Payload::Single(_) => unreachable!("batch gave a single"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// (a) single mode: a value written with arbitrary whitespace and escapes is its own text
    /// (strings: their decoded text).
    #[test]
    fn a_single_json_value_maps_to_its_own_text(v in arb_json(), n in noise()) {
        let mut w = Writer::new(&n);
        let text = w.value(&v);
        let body = format!("{}{text}{}", w.ws(), w.ws());
        let got = single(BodyKind::Json, body.as_bytes());
        prop_assert_eq!(got, Ok(Bytes::from(mapped(&v, &text))), "body {:?}", body);
    }

    /// (a) batch mode: N values give N records, each the element's own text (strings decoded).
    #[test]
    fn a_batch_of_n_values_maps_to_n_records(
        vs in prop::collection::vec(arb_json(), 1..8),
        n in noise(),
    ) {
        let (body, texts) = Writer::new(&n).batch(&vs);
        let got = batch(body.as_bytes());
        let want: Vec<Bytes> =
            vs.iter().zip(&texts).map(|(v, t)| Bytes::from(mapped(v, t))).collect();
        prop_assert_eq!(got, Ok(want), "body {:?}", body);
    }

    /// (a) number literals keep their exact spelling (no re-serialisation), alone or in a batch.
    #[test]
    fn a_number_literals_are_kept_as_sent(
        nums in prop::collection::vec(
            r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?", 1..5),
        n in noise(),
    ) {
        let mut w = Writer::new(&n);
        let body = format!("{}{}{}", w.ws(), nums[0], w.ws());
        prop_assert_eq!(single(BodyKind::Json, body.as_bytes()), Ok(Bytes::from(nums[0].clone())));
        let body = format!("[{}]", nums.join(&format!("{},{}", w.ws(), w.ws())));
        let want: Vec<Bytes> = nums.iter().cloned().map(Bytes::from).collect();
        prop_assert_eq!(batch(body.as_bytes()), Ok(want));
    }

    /// Text and binary bodies are verbatim; text refuses exactly the non-UTF-8 ones.
    #[test]
    fn text_and_binary_are_verbatim(body in prop::collection::vec(any::<u8>(), 0..128)) {
        prop_assert_eq!(single(BodyKind::Binary, &body), Ok(Bytes::from(body.clone())));
        let text = single(BodyKind::Text, &body);
        if std::str::from_utf8(&body).is_ok() {
            prop_assert_eq!(text, Ok(Bytes::from(body)));
        } else {
            prop_assert!(matches!(text, Err(ValidationError::InvalidBody(_))));
        }
    }

    /// Arbitrary bytes never panic the parsers, and an error is always one of the body errors.
    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(body in prop::collection::vec(any::<u8>(), 0..128)) {
        if let Err(e) = single(BodyKind::Json, &body) {
            prop_assert!(matches!(e, ValidationError::InvalidBody(_)), "{:?}", e);
        }
        if let Err(e) = batch(&body) {
            prop_assert!(matches!(
                e,
                ValidationError::InvalidBody(_) | ValidationError::DataMustBeList | ValidationError::EmptyBatch
            ), "{:?}", e);
        }
    }

    // -----------------------------------------------------------------------------------------
    // (c) partition keys.
    // -----------------------------------------------------------------------------------------

    /// (c) a key is accepted iff it is 1..=256 UTF-16 code units; refusals report limit/actual.
    #[test]
    fn c_partition_key_acceptance_is_utf16_length(key in arb_key()) {
        let units = key.encode_utf16().count();
        match PartitionKey::parse(&key, None) {
            Ok(k) => {
                prop_assert!((1..=256).contains(&units), "accepted {} units", units);
                prop_assert_eq!(k.as_str(), key.as_str());
            }
            Err(e) => {
                prop_assert!(!(1..=256).contains(&units), "refused {} units", units);
                prop_assert_eq!(e, ValidationError::InvalidPartitionKey { limit: 256, actual: units, index: None });
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// (c) over HTTP, in both modes: 200 with exactly that key on every record, or 422
    /// invalid_partition_key with limit 256 and the UTF-16 count.
    #[test]
    fn c_partition_key_over_http(key in arb_key(), batch in any::<bool>()) {
        let app = app_for("c_partition_key_over_http");
        let pairs = vec![
            ("partition_key".to_owned(), key.clone()),
            ("record_per_entry".to_owned(), batch.to_string()),
        ];
        let query = Query::Pairs(pairs.clone());
        let body = if batch { br#"["a", {"b": 1}]"#.to_vec() } else { br#"{"b": 1}"#.to_vec() };
        let path = format!("/streams/example-stream/records?{}", query_string(&pairs));
        let answer = app.post(&path, None, body.clone());
        let expect = model("example-stream", &query, &Ct::Known(None), &body, app.body_limit, app.limits);
        check(app, "example-stream", &answer, expect.as_ref())?;
    }

    // -----------------------------------------------------------------------------------------
    // (d) what the publisher receives.
    // -----------------------------------------------------------------------------------------

    /// (d) single mode over HTTP: the fake receives the value's own text (strings decoded).
    #[test]
    fn d_publisher_receives_the_mapped_single_record(v in arb_json(), n in noise(), ct_json in any::<bool>()) {
        let app = app_for("d_publisher_receives_the_mapped_single_record");
        let mut w = Writer::new(&n);
        let text = w.value(&v);
        let body = format!("{}{text}{}", w.ws(), w.ws()).into_bytes();
        let ct = ct_json.then_some(&b"application/json"[..]);
        let answer = app.post("/streams/example-stream/records", ct, body);
        let expect = Expect::Written { batch: false, key: None, data: vec![mapped(&v, &text)] };
        check(app, "example-stream", &answer, Some(&expect))?;
    }

    /// (d) batch mode over HTTP: N values, N records in order, each mapped, fresh UUID keys.
    #[test]
    fn d_publisher_receives_the_mapped_batch(vs in prop::collection::vec(arb_json(), 1..8), n in noise()) {
        let app = app_for("d_publisher_receives_the_mapped_batch");
        let (body, texts) = Writer::new(&n).batch(&vs);
        let answer = app.post(
            "/streams/example-stream/records?record_per_entry=true",
            Some(b"application/json; charset=utf-8"),
            body.into_bytes(),
        );
        let data = vs.iter().zip(&texts).map(|(v, t)| mapped(v, t)).collect();
        let expect = Expect::Written { batch: true, key: None, data };
        check(app, "example-stream", &answer, Some(&expect))?;
    }

    // -----------------------------------------------------------------------------------------
    // (b) anything in, never a 5xx.
    // -----------------------------------------------------------------------------------------

    /// (b) any stream segment, query, content type and body: 200 or a listed 4xx problem+json,
    /// and exactly what docs/api.md predicts where the model covers the input.
    #[test]
    fn b_any_request_is_200_or_a_listed_4xx(
        stream in arb_stream(),
        query in arb_query(),
        ct in arb_ct(),
        body in arb_body(),
    ) {
        let app = app_for("b_any_request_is_200_or_a_listed_4xx");
        let q = match &query {
            Query::Pairs(pairs) => query_string(pairs),
            Query::Raw(raw) => raw.clone(),
        };
        let path = format!("/streams/{}/records?{q}", pct(stream.as_bytes()));
        let ct_bytes = match &ct {
            Ct::Known(c) => c.map(|c| c.as_bytes().to_vec()),
            Ct::Raw(b) => Some(b.clone()),
        };
        let answer = app.post(&path, ct_bytes.as_deref(), body.clone());
        let expect = model(&stream, &query, &ct, &body, app.body_limit, app.limits);
        check(app, &stream, &answer, expect.as_ref())?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// (e) with small limits: too_many_records, invalid_partition_key, record_too_large (lowest
    /// index), batch_too_large and the 413 body cap, in docs/api.md's order and with their numbers.
    #[test]
    fn e_limits_in_order_with_numbers(
        items in prop::collection::vec("[a-z]{0,40}", 1..8),
        key in prop::option::of(prop_oneof![
            "[a-z]{1,8}",
            Just(String::new()),
            Just("k".repeat(257)),
        ]),
        batch in any::<bool>(),
    ) {
        static SMALL: OnceLock<App> = OnceLock::new();
        let app = SMALL.get_or_init(|| app(|s| {
            s.limits.max_records_per_request = 6;
            s.limits.max_record_size_bytes = 70;
            s.limits.max_request_size_bytes = 160;
            s.limits.body_limit_bytes = 230;
        }));
        let body = if batch {
            serde_json::to_vec(&items).unwrap()
        } else {
            items.concat().into_bytes()
        };
        let mut pairs = vec![("record_per_entry".to_owned(), batch.to_string())];
        if let Some(k) = &key {
            pairs.push(("partition_key".to_owned(), k.clone()));
        }
        let ct = if batch { Ct::Known(None) } else { Ct::Known(Some("text/plain")) };
        let query = Query::Pairs(pairs.clone());
        let path = format!("/streams/small/records?{}", query_string(&pairs));
        let ct_bytes = if batch { None } else { Some(&b"text/plain"[..]) };
        let answer = app.post(&path, ct_bytes, body.clone());
        let expect = model("small", &query, &ct, &body, app.body_limit, app.limits);
        check(app, "small", &answer, expect.as_ref())?;
    }
}

// ---------------------------------------------------------------------------------------------
// (f) Records v2: any mix of the new parameters answers a documented code, never a 5xx, and on
// success every record's key and hash key follow docs/api.md's precedence.
// ---------------------------------------------------------------------------------------------

/// One record as the property writes it.
#[derive(Debug, Clone)]
struct V2Item {
    /// The record's JSON data; its `id` member (when there) is what the pointer `/id` finds.
    data: Value,
    /// Envelope only: its own `partition_key`, `explicit_hash_key`, and `data_base64` instead of
    /// `data` (the bytes of the data's JSON text).
    own_key: Option<String>,
    own_hash_key: Option<String>,
    base64: bool,
}

fn arb_v2_item() -> impl Strategy<Value = V2Item> {
    let id = prop_oneof![
        Just(None),
        "[a-z0-9]{0,4}".prop_map(|s| Some(Value::String(s))),
        (-5i64..500).prop_map(|n| Some(Value::from(n))),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        Just(Some(Value::Null)),
        Just(Some(serde_json::json!({"nested": 1}))),
    ];
    let hash = prop_oneof![
        Just("0".to_owned()),
        "[1-9][0-9]{0,5}",
        "0[0-9]",
        Just("x".to_owned())
    ];
    (
        id,
        "[a-z ]{0,12}",
        prop::option::of("[a-z0-9]{0,3}"),
        prop::option::of(hash),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(id, text, own_key, own_hash_key, base64)| {
            let mut data = serde_json::json!({ "text": text });
            if let Some(id) = id {
                data["id"] = id;
            }
            V2Item {
                data,
                own_key,
                own_hash_key,
                base64,
            }
        })
}

/// What the model expects for one record's key: its own, the pointed-at value, the query's, or
/// a UUID; `Err` with the code when the record is refused.
fn v2_expected_key(
    item: &V2Item,
    envelope: bool,
    pointer: bool,
    query_key: Option<&str>,
) -> Result<Option<String>, &'static str> {
    let key = if envelope && item.own_key.is_some() {
        item.own_key.clone()
    } else if pointer {
        if envelope && item.base64 {
            return Err("partition_key_not_found");
        }
        match item.data.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => return Err("partition_key_not_found"),
        }
    } else {
        query_key.map(str::to_owned)
    };
    match key {
        Some(k) if k.is_empty() => Err("invalid_partition_key"),
        key => Ok(key),
    }
}

fn valid_hash_key(k: &str) -> bool {
    kinesis_writer::domain::ExplicitHashKey::parse(k, None).is_ok()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn f_v2_parameters_answer_documented_codes_and_keys_follow_precedence(
        items in prop::collection::vec(arb_v2_item(), 1..5),
        envelope in any::<bool>(),
        pointer in any::<bool>(),
        query_key in prop::option::of(prop_oneof!["[a-z]{1,4}", Just(String::new())]),
        query_hash in prop::option::of(prop_oneof![Just("7".to_owned()), Just("007".to_owned())]),
        ndjson in any::<bool>(),
        per_entry in prop::option::of(any::<bool>()),
    ) {
        let app = app_for("f_v2_parameters");
        let mut pairs = Vec::new();
        if envelope { pairs.push(("envelope".to_owned(), "true".to_owned())); }
        if pointer { pairs.push(("partition_key_pointer".to_owned(), "/id".to_owned())); }
        if let Some(k) = &query_key { pairs.push(("partition_key".to_owned(), k.clone())); }
        if let Some(h) = &query_hash { pairs.push(("explicit_hash_key".to_owned(), h.clone())); }
        if let Some(p) = per_entry { pairs.push(("record_per_entry".to_owned(), p.to_string())); }
        let record = |item: &V2Item| -> String {
            if !envelope {
                return item.data.to_string();
            }
            let mut env = serde_json::Map::new();
            if item.base64 {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD.encode(item.data.to_string());
                env.insert("data_base64".into(), Value::String(b64));
            } else {
                env.insert("data".into(), item.data.clone());
            }
            if let Some(k) = &item.own_key { env.insert("partition_key".into(), Value::String(k.clone())); }
            if let Some(h) = &item.own_hash_key { env.insert("explicit_hash_key".into(), Value::String(h.clone())); }
            Value::Object(env).to_string()
        };
        let batch = ndjson || per_entry == Some(true);
        let sent: Vec<&V2Item> = if batch { items.iter().collect() } else { vec![&items[0]] };
        let body = match (ndjson, batch) {
            (true, _) => sent.iter().map(|i| record(i) + "\n").collect::<String>(),
            (false, true) => format!("[{}]", sent.iter().map(|i| record(i)).collect::<Vec<_>>().join(",")),
            (false, false) => record(sent[0]),
        };
        let ct: &[u8] = if ndjson { b"application/x-ndjson" } else { b"application/json" };
        let path = format!("/streams/example-stream/records?{}", query_string(&pairs));
        app.fake.take();
        let answer = app.post(&path, Some(ct), body.into_bytes());

        // The model: 400s from the combination, then request-wide values, then record by record.
        let expected: Result<(), &str> = (|| {
            if ndjson && per_entry == Some(false) { return Err("invalid_query_parameter"); }
            if pointer && query_key.is_some() { return Err("invalid_query_parameter"); }
            if query_key.as_deref() == Some("") { return Err("invalid_partition_key"); }
            if query_hash.as_deref().is_some_and(|h| !valid_hash_key(h)) { return Err("invalid_explicit_hash_key"); }
            for item in &sent {
                v2_expected_key(item, envelope, pointer, query_key.as_deref())?;
                if envelope && item.own_hash_key.as_deref().is_some_and(|h| !valid_hash_key(h)) {
                    return Err("invalid_explicit_hash_key");
                }
            }
            Ok(())
        })();
        prop_assert!(answer.status < 500, "{answer:?}");
        match expected {
            Err(code) => {
                prop_assert_eq!(problem_code(&answer), code, "{:?}", answer);
                prop_assert!(app.fake.take().is_empty(), "nothing sent on a refusal");
            }
            Ok(()) => {
                prop_assert_eq!(answer.status, 200, "{:?}", String::from_utf8_lossy(&answer.body));
                let calls = app.fake.take();
                let records: Vec<&Record> = calls.iter().flat_map(|c| &c.records).collect();
                prop_assert_eq!(records.len(), sent.len());
                for (item, got) in sent.iter().zip(records) {
                    let key = v2_expected_key(item, envelope, pointer, query_key.as_deref()).unwrap();
                    match key {
                        Some(k) => prop_assert_eq!(got.partition_key.as_str(), k.as_str()),
                        None => prop_assert_eq!(got.partition_key.as_str().len(), 36),
                    }
                    let hash = if envelope && item.own_hash_key.is_some() {
                        item.own_hash_key.clone()
                    } else {
                        query_hash.clone()
                    };
                    prop_assert_eq!(got.explicit_hash_key.as_ref().map(|h| h.as_str().to_owned()), hash);
                    // The bytes are the data's JSON text as sent (no re-serialisation).
                    let text = item.data.to_string();
                    prop_assert_eq!(&got.data[..], text.as_bytes());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs, as ordinary tests.
// ---------------------------------------------------------------------------------------------

fn problem_code(answer: &Answer) -> String {
    assert_eq!(
        answer.content_type, "application/problem+json",
        "{answer:?}"
    );
    answer.json()["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn nested_100_000_levels_is_invalid_body_in_both_modes() {
    let app = app(|_| {});
    for open_close in [("[", "]"), ("{\"a\":", "}")] {
        let body = open_close.0.repeat(100_000) + &open_close.1.repeat(100_000);
        for query in ["", "?record_per_entry=true"] {
            let answer = app.post(
                &format!("/streams/example-stream/records{query}"),
                None,
                body.clone().into_bytes(),
            );
            assert_eq!(answer.status, 400, "{query} {:?}", &body[..10]);
            assert_eq!(problem_code(&answer), "invalid_body");
        }
        // As a single text or binary record it is just bytes.
        let answer = app.post(
            "/streams/example-stream/records",
            Some(b"text/plain"),
            body.clone().into_bytes(),
        );
        assert_eq!(answer.status, 200);
        assert_eq!(app.fake.take()[0].records[0].data, body.as_bytes());
    }
    assert!(app.fake.take().is_empty());
}

#[test]
fn invalid_utf8_is_invalid_body_except_as_octet_stream() {
    let app = app(|_| {});
    let bodies: [&[u8]; 4] = [
        b"\xff",
        b"\"\xc3\x28\"",
        b"[\"\xed\xa0\x80\"]",
        b"{\"a\xfe\": 1}",
    ];
    for body in bodies {
        for (query, ct) in [
            ("", None),
            ("", Some(&b"application/json"[..])),
            ("", Some(&b"text/plain"[..])),
            ("?record_per_entry=true", None),
        ] {
            let answer = app.post(
                &format!("/streams/example-stream/records{query}"),
                ct,
                body.to_vec(),
            );
            assert_eq!(answer.status, 400, "{body:?} {query} {ct:?}");
            assert_eq!(problem_code(&answer), "invalid_body");
        }
        let answer = app.post(
            "/streams/example-stream/records",
            Some(b"application/octet-stream"),
            body.to_vec(),
        );
        assert_eq!(answer.status, 200);
        assert_eq!(app.fake.take()[0].records[0].data, body);
    }
}

#[test]
fn repeated_and_unknown_query_parameters_are_invalid_query_parameter() {
    let app = app(|_| {});
    for query in [
        "record_per_entry=true&record_per_entry=true",
        "record_per_entry=false&record_per_entry=true",
        "partition_key=a&partition_key=a",
        "partition_key=a&partition_key=b",
        "record_per_entries=true",
        "partitionKey=a",
        "record_per_entry=True",
        "record_per_entry=1",
        "record_per_entry=",
        "record_per_entry",
        "foo",
        "=x",
        "partition_key=k&debug=1",
    ] {
        let answer = app.post(
            &format!("/streams/example-stream/records?{query}"),
            None,
            b"[1]".to_vec(),
        );
        assert_eq!(answer.status, 400, "?{query}: {answer:?}");
        assert_eq!(problem_code(&answer), "invalid_query_parameter", "?{query}");
    }
    // Empty pairs (`&&`) are no parameters at all, as form encoding says.
    let answer = app.post("/streams/example-stream/records?&&", None, b"[1]".to_vec());
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(app.fake.take().len() == 1);
}

#[test]
fn unknown_content_types_are_415_and_say_what_to_send() {
    let app = app(|_| {});
    let cts: [&[u8]; 10] = [
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"application/xml",
        b"text/json",
        b"application/json-seq",
        b"application/json; charset=utf-16",
        b"text/plain; charset=latin1",
        b"",
        b"*/*",
        b"application/\xe9json",
    ];
    for ct in cts {
        let answer = app.post("/streams/example-stream/records", Some(ct), b"{}".to_vec());
        assert_eq!(answer.status, 415, "{:?}", String::from_utf8_lossy(ct));
        assert_eq!(problem_code(&answer), "unsupported_media_type");
        let detail = answer.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(detail.contains("application/json"), "{detail}");
    }
    for ct in [&b"text/plain"[..], b"application/octet-stream"] {
        let answer = app.post(
            "/streams/example-stream/records?record_per_entry=true",
            Some(ct),
            b"[1]".to_vec(),
        );
        assert_eq!(answer.status, 415);
        assert_eq!(problem_code(&answer), "unsupported_media_type");
    }
    assert!(app.fake.take().is_empty());
}

#[test]
fn bodies_over_the_cap_are_413_before_parsing() {
    let app = app(|s| {
        s.limits.max_record_size_bytes = 100;
        s.limits.max_request_size_bytes = 200;
        s.limits.body_limit_bytes = 300;
    });
    let answer = app.post("/streams/example-stream/records", None, vec![b'['; 301]);
    assert_eq!(answer.status, 413);
    assert_eq!(problem_code(&answer), "payload_too_large");
    assert_eq!(answer.json()["limit"], 300);
    assert_eq!(answer.json()["error_class"], "KinesisWriterError");
    let answer = app.post("/streams/example-stream/records", None, vec![b'1'; 300]);
    assert_eq!(
        answer.status, 422,
        "300 bytes pass the cap, then the record limit"
    );
    assert_eq!(problem_code(&answer), "record_too_large");
}

#[test]
fn invalid_stream_names_are_400() {
    let app = app(|_| {});
    for seg in [
        "a%20b".to_owned(),
        "%FF".to_owned(),
        "a%2Fb".to_owned(),
        "%C3%A9".to_owned(),
        "a".repeat(129),
        "stream:1".to_owned(),
    ] {
        let answer = app.post(&format!("/streams/{seg}/records"), None, b"1".to_vec());
        assert_eq!(answer.status, 400, "{seg}: {answer:?}");
        assert_eq!(problem_code(&answer), "invalid_stream_name");
    }
    let answer = app.post(
        &format!("/streams/{}/records", "a".repeat(128)),
        None,
        b"1".to_vec(),
    );
    assert_eq!(answer.status, 200);
}

/// A partition key whose percent-decoding is not UTF-8 is refused (a lossy decoder would turn `%FE`
/// and `%FF` both into "\u{fffd}", silently landing two different keys on one shard).
#[test]
fn non_utf8_partition_key_is_refused() {
    let app = app(|_| {});
    let answer = app.post(
        "/streams/example-stream/records?partition_key=%FF",
        None,
        b"1".to_vec(),
    );
    assert_eq!(answer.status, 400, "{answer:?} {:?}", app.fake.take());
    assert_eq!(problem_code(&answer), "invalid_query_parameter");
}
