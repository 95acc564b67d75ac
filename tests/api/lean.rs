//! The differential test of issue #14: the same requests through the SDK publisher and through the
//! lean one (the default), in JSON and in CBOR, give the same answers, the same records and the
//! same error mapping.
//!
//! Against the emulator: writes of every shape, read back and compared record by record. Against
//! fake-kinesis (the faults the emulator cannot produce): throttling, partial failures, 5xx with
//! and without an error code, expired and refused credentials, a missing stream and timeouts, each
//! compared by status, `Retry-After`, body and what the fake saw arrive.

use fake_kinesis::{CallError, Plan};
use kinesis_writer::config::{PublisherKind, Settings, WireProtocol};
use serde_json::Value;

use crate::helpers::{Landed, TestApp, blank_run_specific, spawn_app_with, spawn_fake_app};

const JSON: (&str, &str) = ("content-type", "application/json");
const TEXT: (&str, &str) = ("content-type", "text/plain");
const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");

/// The ways PutRecord/PutRecords can be sent: the SDK first (the reference), then the lean
/// publisher in each protocol.
const PATHS: [(PublisherKind, WireProtocol); 3] = [
    (PublisherKind::Sdk, WireProtocol::Json),
    (PublisherKind::Lean, WireProtocol::Json),
    (PublisherKind::Lean, WireProtocol::Cbor),
];

fn on(path: (PublisherKind, WireProtocol), s: &mut Settings) {
    (s.kinesis.publisher, s.kinesis.protocol) = path;
}

/// An answer with what differs between two runs by design blanked: request ids and sequence
/// numbers (another stream, another call).
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    retry_after: bool,
    body: Value,
}

async fn seen(response: reqwest::Response) -> Seen {
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let text = response.text().await.unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    blank_run_specific(&mut body);
    Seen {
        status,
        retry_after,
        body,
    }
}

/// The requests both paths get: single records (PutRecord through coalescing, and with
/// `sequence_number_for_ordering` directly), batches, NDJSON with keys from the data, explicit
/// hash keys, bytes that are not UTF-8, and a stream that does not exist.
async fn exercise(app: &TestApp) -> Vec<Seen> {
    let mut out = Vec::new();
    out.push(seen(app.post("partition_key=k1", &[TEXT], "one record").await).await);
    let first: Value = app
        .post("partition_key=k1", &[TEXT], "ordered base")
        .await
        .json()
        .await
        .unwrap();
    let seq = first["SequenceNumber"].as_str().unwrap().to_owned();
    let ordered = app
        .post(
            &format!("partition_key=k1&sequence_number_for_ordering={seq}"),
            &[TEXT],
            "ordered",
        )
        .await;
    out.push(seen(ordered).await);
    let batch = r#"[{"a": 1}, "two", 3, {"quote": "\"é\""}]"#;
    out.push(
        seen(
            app.post("record_per_entry=true&partition_key=b", &[JSON], batch)
                .await,
        )
        .await,
    );
    let lines = "{\"user\":{\"id\":\"u1\"},\"n\":1}\n{\"user\":{\"id\":\"u2\"},\"n\":2}\n";
    out.push(
        seen(
            app.post("partition_key_pointer=/user/id", &[NDJSON], lines)
                .await,
        )
        .await,
    );
    let hashed = app
        .post(
            "partition_key=h&explicit_hash_key=170141183460469231731687303715884105728",
            &[TEXT],
            "by hash key",
        )
        .await;
    out.push(seen(hashed).await);
    let bytes: Vec<u8> = (0..=255).collect();
    let raw = app
        .post(
            "partition_key=raw",
            &[("content-type", "application/octet-stream")],
            bytes,
        )
        .await;
    out.push(seen(raw).await);
    let missing = app
        .post_to("no-such-stream-anywhere", "partition_key=k", &[TEXT], "x")
        .await;
    out.push(seen(missing).await);
    out
}

fn records_of(landed: Vec<Landed>) -> Vec<(Vec<u8>, String, String)> {
    let mut records: Vec<_> = landed
        .into_iter()
        .map(|l| (l.data, l.partition_key, l.shard_id))
        .collect();
    records.sort();
    records
}

#[tokio::test]
async fn every_path_writes_the_same_records_and_answers_the_same_against_the_emulator() {
    let mut runs = Vec::new();
    for path in PATHS {
        let app = spawn_app_with(|s, _| on(path, s)).await;
        let answers = exercise(&app).await;
        runs.push((path, answers, records_of(app.landed().await)));
    }
    let (_, sdk_answers, sdk_records) = &runs[0];
    assert_eq!(sdk_answers[0].status, 200, "{:?}", sdk_answers[0]);
    assert_eq!(sdk_answers.last().unwrap().status, 404);
    // 1 + 2 (ordered pair) + 4 + 2 + 1 + 1 records, byte for byte, key for key, shard for shard.
    assert_eq!(sdk_records.len(), 11);
    assert!(
        sdk_records
            .iter()
            .any(|(data, key, _)| data.len() == 256 && key == "raw")
    );
    for (path, answers, records) in &runs[1..] {
        assert_eq!(answers, sdk_answers, "{path:?}");
        assert_eq!(records, sdk_records, "{path:?}");
    }
}

/// One fault through every path: the answers and what reached the fake must match the SDK's.
async fn same_under(plan: impl Fn() -> Plan, query: &str, body: &str, tweak: fn(&mut Settings)) {
    let mut runs = Vec::new();
    for path in PATHS {
        let app = spawn_fake_app(|s, _| {
            on(path, s);
            tweak(s);
        })
        .await;
        app.fake().set_plan(plan());
        // One stream name for both runs: answers name it.
        let answer = seen(
            app.post_to("differential", query, &[JSON], body.to_owned())
                .await,
        )
        .await;
        let mut arrived: Vec<_> = app
            .fake()
            .attempts()
            .into_iter()
            .map(|a| (a.data, a.partition_key, format!("{:?}", a.outcome)))
            .collect();
        arrived.sort();
        runs.push((answer, arrived));
    }
    let sdk = &runs[0];
    for (run, path) in runs.iter().zip(PATHS).skip(1) {
        assert_eq!(run, sdk, "{path:?}: {query} {body}");
    }
}

const BATCH: &str = r#"["keep-1", "flaky-2", "keep-3", "flaky-4"]"#;
const BATCHED: &str = "record_per_entry=true&partition_key=p";

fn no_tweak(_: &mut Settings) {}

fn one_attempt(s: &mut Settings) {
    s.delivery.max_attempts = 1;
}

#[tokio::test]
async fn throttling_and_partial_failures_map_the_same_way() {
    let ptee = "ProvisionedThroughputExceededException";
    same_under(
        || Plan::fail_first_attempts(b"flaky", 2, ptee),
        BATCHED,
        BATCH,
        no_tweak,
    )
    .await;
    same_under(|| Plan::fail_all_entries(ptee), BATCHED, BATCH, one_attempt).await;
    same_under(
        || Plan::fail_all_entries("InvalidArgumentException"),
        BATCHED,
        BATCH,
        no_tweak,
    )
    .await;
    same_under(
        || Plan::fail_all_calls(CallError::throttled()),
        BATCHED,
        BATCH,
        one_attempt,
    )
    .await;
    same_under(
        || Plan::fail_all_calls(CallError::throttled()),
        "partition_key=k",
        "1",
        one_attempt,
    )
    .await;
    same_under(
        || Plan::fail_first_calls(2, CallError::limit_exceeded()),
        BATCHED,
        BATCH,
        no_tweak,
    )
    .await;
}

#[tokio::test]
async fn server_errors_credentials_and_missing_streams_map_the_same_way() {
    let cases = [
        CallError::internal_failure(),
        // A 5xx without an error code, as a proxy in front of Kinesis may answer.
        CallError::new(503, "", ""),
        CallError::new(
            400,
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        CallError::new(
            400,
            "UnrecognizedClientException",
            "The security token included in the request is invalid",
        ),
        CallError::access_denied(),
        CallError::resource_not_found(),
        CallError::new(400, "KMSDisabledException", "disabled"),
    ];
    for error in cases {
        let e = error.clone();
        same_under(
            move || Plan::fail_all_calls(e.clone()),
            BATCHED,
            BATCH,
            one_attempt,
        )
        .await;
        let e = error.clone();
        same_under(
            move || Plan::fail_all_calls(e.clone()),
            "partition_key=k",
            "1",
            one_attempt,
        )
        .await;
        // With retries: a transient fault that passes is written once either way.
        let e = error.clone();
        same_under(
            move || Plan::fail_first_calls(1, e.clone()),
            BATCHED,
            BATCH,
            no_tweak,
        )
        .await;
    }
}

#[tokio::test]
async fn timeouts_map_the_same_way() {
    fn short(s: &mut Settings) {
        s.kinesis.attempt_timeout_ms = 200;
        s.kinesis.operation_timeout_ms = 200;
        s.delivery.max_attempts = 1;
    }
    let slow = || Plan::delay_first_calls(1, std::time::Duration::from_millis(600));
    same_under(slow, BATCHED, BATCH, short).await;
    same_under(slow, "partition_key=k", "1", short).await;
}
