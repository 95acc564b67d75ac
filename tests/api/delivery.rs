//! Delivery guarantees, against `fake-kinesis` (the emulator cannot throttle or fail entries on
//! demand): only failed entries are retried, successes are never resent, every record's outcome
//! is reported truthfully, and budgets end in 207 / 429 as API.md says.

use std::collections::HashMap;
use std::time::Duration;

use fake_kinesis::{CallCtx, CallError, CallVerdict, EntryCtx, EntryVerdict, FakeKinesis, Plan};
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{assert_problem, records_url, seq_of, service_with_fake, test_settings};

const PTEE: &str = "ProvisionedThroughputExceededException";

async fn post_batch(address: &str, query: &str, items: &[&str]) -> reqwest::Response {
    let body = serde_json::to_string(items).unwrap();
    reqwest::Client::new()
        .post(records_url(
            address,
            "s",
            &format!("record_per_entry=true&{query}"),
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// How many times the fake saw each record's data, whatever became of it.
fn seen_counts(fake: &FakeKinesis) -> HashMap<Vec<u8>, usize> {
    let mut counts = HashMap::new();
    for a in fake.attempts() {
        *counts.entry(a.data).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn transiently_failed_entries_are_written_exactly_once_and_successes_never_resent() {
    let (address, fake) = service_with_fake(|_| {}).await;
    fake.set_plan(Plan::fail_first_attempts(b"flaky", 2, PTEE));
    let items = ["ok-0", "flaky-1", "ok-2", "flaky-3", "ok-4"];

    let response = post_batch(&address, "partition_key=k", &items).await;

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 0);
    assert_eq!(fake.received().len(), 5, "each record written exactly once");
    let seen = seen_counts(&fake);
    for (i, item) in items.iter().enumerate() {
        let want = if item.starts_with("flaky") { 3 } else { 1 };
        assert_eq!(seen[item.as_bytes()], want, "{item} sent {want} time(s)");
        assert_eq!(
            answer["Records"][i]["SequenceNumber"],
            seq_of(&fake, item.as_bytes()),
            "entry {i} in order"
        );
    }
}

#[tokio::test]
async fn an_exhausted_budget_gives_207_with_the_failed_indexes_and_retry_after() {
    let (address, fake) = service_with_fake(|s| s.delivery.max_attempts = 3).await;
    fake.set_plan(Plan::fail_entries_when(PTEE, |e| {
        e.data.starts_with(b"always")
    }));

    let response = post_batch(&address, "", &["a", "always-1", "b", "always-3"]).await;

    assert_eq!(response.status(), 207);
    assert_eq!(response.headers()["retry-after"], "1");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 2);
    for i in [1, 3] {
        assert_eq!(answer["Records"][i]["ErrorCode"], PTEE, "entry {i}");
        assert!(answer["Records"][i]["ErrorMessage"].is_string());
    }
    for i in [0, 2] {
        assert!(
            answer["Records"][i]["SequenceNumber"].is_string(),
            "entry {i}"
        );
    }
    let seen = seen_counts(&fake);
    assert_eq!((seen[&b"always-1"[..]], seen[&b"a"[..]]), (3, 1));
    let received: Vec<Vec<u8>> = fake.received().into_iter().map(|r| r.data).collect();
    assert_eq!(received, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[tokio::test]
async fn entries_failing_for_good_are_not_retried_and_get_no_retry_after() {
    let (address, fake) = service_with_fake(|_| {}).await;
    fake.set_plan(Plan::fail_entries_when("InvalidArgumentException", |e| {
        e.data == b"bad"
    }));

    let response = post_batch(&address, "", &["good", "bad"]).await;

    assert_eq!(response.status(), 207);
    assert!(response.headers().get("retry-after").is_none());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["Records"][1]["ErrorCode"],
        "InvalidArgumentException"
    );
    assert_eq!(seen_counts(&fake)[&b"bad"[..]], 1);
}

#[tokio::test]
async fn a_throttled_whole_call_is_retried_then_answered_429_with_retry_after() {
    let (address, fake) = service_with_fake(|s| s.delivery.max_attempts = 3).await;
    fake.set_plan(Plan::fail_all_calls(CallError::throttled()));

    let batch = post_batch(&address, "", &["x", "y"]).await;
    let single = reqwest::Client::new()
        .post(records_url(&address, "s", ""))
        .body("1")
        .send()
        .await
        .unwrap();

    assert_eq!(batch.headers()["retry-after"], "1");
    assert_problem(batch, 429, "throttled").await;
    assert_problem(single, 429, "throttled").await;
    let stats = fake.stats();
    assert_eq!(
        (stats.put_records_calls, stats.put_record_calls),
        (3, 3),
        "attempts not multiplied"
    );
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn transient_call_failures_are_retried_until_the_write_succeeds() {
    let (address, fake) = service_with_fake(|_| {}).await;
    fake.set_plan(Plan::fail_first_calls(2, CallError::internal_failure()));

    let response = reqwest::Client::new()
        .post(records_url(&address, "s", ""))
        .body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(fake.stats().put_record_calls, 3);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].data, br#"{"n": 1}"#);
}

#[tokio::test]
async fn a_call_error_after_partial_success_still_reports_what_was_written() {
    let (address, fake) = service_with_fake(|_| {}).await;
    // First call: "flaky" fails per entry. Every later call fails outright (stream deleted).
    fake.set_plan(Plan::from_rules(
        Some(std::sync::Arc::new(|c: &CallCtx<'_>| {
            if c.call_index >= 1 {
                CallVerdict::fail(CallError::resource_not_found())
            } else {
                CallVerdict::proceed()
            }
        })),
        Some(std::sync::Arc::new(|e: &EntryCtx<'_>| {
            if e.data == b"flaky" {
                EntryVerdict::fail(PTEE)
            } else {
                EntryVerdict::Accept
            }
        })),
    ));

    let response = post_batch(&address, "", &["one", "flaky", "two"]).await;

    assert_eq!(
        response.status(),
        207,
        "written records must be reported, not hidden by an error"
    );
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 1);
    assert!(answer["Records"][0]["SequenceNumber"].is_string());
    assert_eq!(
        answer["Records"][1]["ErrorCode"],
        "ResourceNotFoundException"
    );
    assert!(answer["Records"][2]["SequenceNumber"].is_string());
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn split_sends_an_oversized_batch_as_several_calls_merged_in_order() {
    let (address, fake) = service_with_fake(|s| s.limits.max_records_per_request = 3).await;
    let items: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();

    let refused = post_batch(&address, "", &items).await;
    let split = post_batch(&address, "split=true", &items).await;

    assert_problem(refused, 422, "too_many_records").await;
    assert_eq!(split.status(), 200);
    let answer: Value = split.json().await.unwrap();
    assert_eq!(answer["Records"].as_array().unwrap().len(), 8);
    assert_eq!(fake.stats().put_records_calls, 3, "3 + 3 + 2");
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            answer["Records"][i]["SequenceNumber"],
            seq_of(&fake, item.as_bytes()),
            "entry {i}"
        );
    }
}

#[tokio::test]
async fn a_call_that_timed_out_after_kinesis_accepted_it_can_duplicate_as_documented() {
    let (address, fake) = service_with_fake(|s| {
        s.kinesis.attempt_timeout_ms = 200;
        s.kinesis.operation_timeout_ms = 200;
    })
    .await;
    // The first call is answered late (but still written, as Kinesis may do); the retry is fast.
    fake.set_plan(Plan::delay_first_calls(1, Duration::from_millis(600)));

    let response = reqwest::Client::new()
        .post(records_url(&address, "s", ""))
        .header("content-type", "text/plain")
        .body("dup")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        fake.received().len(),
        2,
        "the README's one documented source of duplicates"
    );
}

/// A few thousand records through the service while ~15% of entries fail at random: every
/// acknowledged record arrives exactly once, every record reported failed did not arrive, and
/// every record is one or the other.
#[tokio::test]
async fn load_with_random_entry_failures_loses_and_duplicates_nothing() {
    let (address, fake) = service_with_fake(|s| s.delivery.max_attempts = 4).await;
    fake.set_plan(Plan::fail_entries_randomly(0.15, 7, PTEE));
    let http = reqwest::Client::new();
    // 24 batches of 100 and 600 single records: 3,000 records, 16 requests in flight.
    let requests: Vec<Vec<String>> = (0..24)
        .map(|b| (0..100).map(|i| format!("b{b}-{i}")).collect())
        .chain((0..600).map(|i| vec![format!("s-{i}")]))
        .collect();
    let started = std::time::Instant::now();

    let answers: Vec<(Vec<String>, u16, Value)> = futures_util::stream::iter(requests)
        .map(|items| {
            let http = http.clone();
            let address = address.clone();
            async move {
                let single = items.len() == 1 && items[0].starts_with("s-");
                let (url, body) = if single {
                    (records_url(&address, "s", ""), items[0].clone())
                } else {
                    (
                        records_url(&address, "s", "record_per_entry=true"),
                        serde_json::to_string(&items).unwrap(),
                    )
                };
                let ct = if single {
                    "text/plain"
                } else {
                    "application/json"
                };
                let r = http
                    .post(url)
                    .header("content-type", ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (items, status, r.json::<Value>().await.unwrap())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut acked: HashMap<String, String> = HashMap::new();
    let mut failed: Vec<String> = Vec::new();
    for (items, status, body) in &answers {
        match (items.len(), status) {
            (1, 200) if body["SequenceNumber"].is_string() => {
                acked.insert(
                    items[0].clone(),
                    body["SequenceNumber"].as_str().unwrap().to_owned(),
                );
            }
            (1, 429) => failed.push(items[0].clone()),
            (_, 200 | 207) => {
                for (item, entry) in items.iter().zip(body["Records"].as_array().unwrap()) {
                    match entry["SequenceNumber"].as_str() {
                        Some(seq) => drop(acked.insert(item.clone(), seq.to_owned())),
                        None => failed.push(item.clone()),
                    }
                }
            }
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    let received = fake.received();
    let mut arrivals: HashMap<String, Vec<String>> = HashMap::new();
    for r in &received {
        arrivals
            .entry(String::from_utf8(r.data.clone()).unwrap())
            .or_default()
            .push(r.seq.clone());
    }
    let duplicates = arrivals.values().filter(|v| v.len() > 1).count();
    let stats = fake.stats();
    eprintln!(
        "load: {} records sent in {:?}, {} acknowledged, {} reported failed, {} arrived, {} duplicates; \
         fake saw {} entries ({} refused) in {} calls",
        acked.len() + failed.len(),
        elapsed,
        acked.len(),
        failed.len(),
        received.len(),
        duplicates,
        stats.records_seen,
        stats.records_failed,
        stats.put_record_calls + stats.put_records_calls
    );
    assert_eq!(acked.len() + failed.len(), 3000, "every record reported");
    assert_eq!(duplicates, 0);
    assert_eq!(
        received.len(),
        acked.len(),
        "nothing arrived that was not acknowledged"
    );
    for (item, seq) in &acked {
        assert_eq!(
            arrivals.get(item),
            Some(&vec![seq.clone()]),
            "{item} arrived once with its seq"
        );
    }
    for item in &failed {
        assert!(
            !arrivals.contains_key(item),
            "{item} was reported failed but arrived"
        );
    }
    assert!(
        stats.records_failed > 300,
        "the fault injection really happened"
    );
}

#[tokio::test]
async fn shutdown_drains_a_request_that_is_still_retrying() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_first_calls(2, CallError::internal_failure()));
    let mut settings = test_settings(&fake.endpoint());
    // Backoff ≥ 100 ms per retry: the request is mid-retry when shutdown begins.
    settings.delivery.base_backoff_ms = 200;
    settings.delivery.max_backoff_ms = 200;
    let app = kinesis_writer::startup::Application::build_with_aws(
        settings,
        crate::helpers::test_loader(),
    )
    .await
    .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(records_url(&address, "s", ""))
            .header("content-type", "text/plain")
            .body("in-flight")
            .send(),
    );
    while fake.stats().put_record_calls == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    stop.send(()).unwrap();
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");

    assert_eq!(response.status(), 200);
    assert_eq!(fake.received().len(), 1);
    assert!(
        fake.stats().put_record_calls >= 2,
        "it was retrying when shutdown began"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
