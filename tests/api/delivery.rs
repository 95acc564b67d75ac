//! Delivery guarantees, against `fake-kinesis` (the emulator cannot throttle or fail entries on
//! demand): only failed entries are retried, successes are never resent, every record's outcome
//! is reported truthfully, and budgets end in 207 / 429 as docs/api.md#delivery-and-retries says.

use std::collections::HashMap;
use std::time::Duration;

use fake_kinesis::{
    CallCtx, CallError, CallVerdict, EntryCtx, EntryVerdict, FakeKinesis, HangUp, Plan,
};
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_problem, eventually, records_url, seq_of, spawn_fake_app, test_settings,
};

const PTEE: &str = "ProvisionedThroughputExceededException";

/// POSTs `items` as one batch (`record_per_entry=true`) to the app's stream.
async fn post_batch(app: &TestApp, query: &str, items: &[&str]) -> reqwest::Response {
    let body = serde_json::to_string(items).unwrap();
    app.post_json(&format!("record_per_entry=true&{query}"), &body)
        .await
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
    let app = spawn_fake_app(|_, _| {}).await;
    let fake = app.fake();
    fake.set_plan(Plan::fail_first_attempts(b"flaky", 2, PTEE));
    let items = ["ok-0", "flaky-1", "ok-2", "flaky-3", "ok-4"];

    let response = post_batch(&app, "partition_key=k", &items).await;

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 0);
    assert_eq!(fake.received().len(), 5, "each record written exactly once");
    let seen = seen_counts(fake);
    for (i, item) in items.iter().enumerate() {
        let want = if item.starts_with("flaky") { 3 } else { 1 };
        assert_eq!(seen[item.as_bytes()], want, "{item} sent {want} time(s)");
        assert_eq!(
            answer["Records"][i]["SequenceNumber"],
            seq_of(fake, item.as_bytes()),
            "entry {i} in order"
        );
    }
}

#[tokio::test]
async fn an_exhausted_budget_gives_207_with_the_failed_indexes_and_retry_after() {
    let app = spawn_fake_app(|s, _| s.delivery.max_attempts = 3).await;
    let fake = app.fake();
    fake.set_plan(Plan::fail_entries_when(PTEE, |e| {
        e.data.starts_with(b"always")
    }));

    let response = post_batch(&app, "", &["a", "always-1", "b", "always-3"]).await;

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
    let seen = seen_counts(fake);
    assert_eq!((seen[&b"always-1"[..]], seen[&b"a"[..]]), (3, 1));
    let received: Vec<Vec<u8>> = fake.received().into_iter().map(|r| r.data).collect();
    assert_eq!(received, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[tokio::test]
async fn entries_failing_for_good_are_not_retried_and_get_no_retry_after() {
    let app = spawn_fake_app(|_, _| {}).await;
    let fake = app.fake();
    fake.set_plan(Plan::fail_entries_when("InvalidArgumentException", |e| {
        e.data == b"bad"
    }));

    let response = post_batch(&app, "", &["good", "bad"]).await;

    assert_eq!(response.status(), 207);
    assert!(response.headers().get("retry-after").is_none());
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["Records"][1]["ErrorCode"],
        "InvalidArgumentException"
    );
    assert_eq!(seen_counts(fake)[&b"bad"[..]], 1);
}

#[tokio::test]
async fn a_throttled_whole_call_is_retried_then_answered_429_with_retry_after() {
    // The direct path, where a single record is one PutRecord (coalescing is on by default).
    let app = spawn_fake_app(|s, _| {
        s.delivery.max_attempts = 3;
        s.coalesce.enabled = false;
    })
    .await;
    let fake = app.fake();
    fake.set_plan(Plan::fail_all_calls(CallError::throttled()));

    let batch = post_batch(&app, "", &["x", "y"]).await;
    let single = app.post("", &[], "1").await;

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
    // The direct path, where a single record is one PutRecord (coalescing is on by default).
    let app = spawn_fake_app(|s, _| s.coalesce.enabled = false).await;
    let fake = app.fake();
    fake.set_plan(Plan::fail_first_calls(2, CallError::internal_failure()));

    let response = app.post("", &[], r#"{"n": 1}"#).await;

    assert_eq!(response.status(), 200);
    assert_eq!(fake.stats().put_record_calls, 3);
    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].data, br#"{"n": 1}"#);
}

#[tokio::test]
async fn a_call_error_after_partial_success_still_reports_what_was_written() {
    let app = spawn_fake_app(|_, _| {}).await;
    let fake = app.fake();
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

    let response = post_batch(&app, "", &["one", "flaky", "two"]).await;

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
    let app = spawn_fake_app(|s, _| s.limits.max_records_per_request = 3).await;
    let fake = app.fake();
    let items: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();

    let refused = post_batch(&app, "", &items).await;
    let split = post_batch(&app, "split=true", &items).await;

    assert_problem(refused, 422, "too_many_records").await;
    assert_eq!(split.status(), 200);
    let answer: Value = split.json().await.unwrap();
    assert_eq!(answer["Records"].as_array().unwrap().len(), 8);
    assert_eq!(fake.stats().put_records_calls, 3, "3 + 3 + 2");
    for (i, item) in items.iter().enumerate() {
        assert_eq!(
            answer["Records"][i]["SequenceNumber"],
            seq_of(fake, item.as_bytes()),
            "entry {i}"
        );
    }
}

#[tokio::test]
async fn a_call_that_timed_out_after_kinesis_accepted_it_can_duplicate_as_documented() {
    let app = spawn_fake_app(|s, _| {
        s.kinesis.attempt_timeout_ms = 200;
        s.kinesis.operation_timeout_ms = 200;
    })
    .await;
    let fake = app.fake();
    // The first call is answered late (but still written, as Kinesis may do); the retry is fast.
    fake.set_plan(Plan::delay_first_calls(1, Duration::from_millis(600)));

    let response = app.post("", &[("content-type", "text/plain")], "dup").await;

    assert_eq!(response.status(), 200);
    // Kinesis wrote the late call's record (only its answer was late) and then the retry's.
    eventually(
        "the late call's duplicate arrives",
        Duration::from_secs(5),
        || async move { (fake.received().len() >= 2).then_some(()) },
    )
    .await;
    assert_eq!(
        fake.received().len(),
        2,
        "the one source of duplicates docs/api.md documents"
    );
}

/// A few thousand records through the service while ~15% of entries fail at random: every
/// acknowledged record arrives exactly once, every record reported failed did not arrive, and
/// every record is one or the other.
#[tokio::test]
async fn load_with_random_entry_failures_loses_and_duplicates_nothing() {
    let app = spawn_fake_app(|s, _| s.delivery.max_attempts = 4).await;
    let fake = app.fake();
    fake.set_plan(Plan::fail_entries_randomly(0.15, 7, PTEE));
    // 24 batches of 100 and 600 single records: 3,000 records, 16 requests in flight.
    let requests: Vec<Vec<String>> = (0..24)
        .map(|b| (0..100).map(|i| format!("b{b}-{i}")).collect())
        .chain((0..600).map(|i| vec![format!("s-{i}")]))
        .collect();
    let started = std::time::Instant::now();

    let answers: Vec<(Vec<String>, u16, Value)> = futures_util::stream::iter(requests)
        .map(|items| {
            let app = &app;
            async move {
                let single = items.len() == 1 && items[0].starts_with("s-");
                let r = if single {
                    let text = [("content-type", "text/plain")];
                    app.post("", &text, items[0].clone()).await
                } else {
                    let batch = serde_json::to_string(&items).unwrap();
                    app.post_json("record_per_entry=true", &batch).await
                };
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
    let fake = &fake;
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(records_url(&address, "s", ""))
            .header("content-type", "text/plain")
            .body("in-flight")
            .send(),
    );
    eventually(
        "the request reaches Kinesis",
        Duration::from_secs(5),
        // Coalescing is on by default: the record goes out in a PutRecords call.
        || async move {
            let stats = fake.stats();
            (stats.put_record_calls + stats.put_records_calls > 0).then_some(())
        },
    )
    .await;

    stop.send(()).unwrap();
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");

    assert_eq!(response.status(), 200);
    assert_eq!(fake.received().len(), 1);
    assert!(
        fake.stats().put_record_calls + fake.stats().put_records_calls >= 2,
        "it was retrying when shutdown began"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

/// Issue #22 item 4: a connection Kinesis closes mid-call (it was killed, or a proxy dropped the
/// connection) is a transport failure on both publishers: retried, and when the retries run out
/// answered 503 `upstream_unavailable` with `Retry-After`, never 502. Also with the connection
/// closed after a part of the answer, and a hang-up followed by a healthy call is a 200.
#[tokio::test]
async fn a_connection_closed_mid_call_is_retried_then_503_with_retry_after_on_both_publishers() {
    use kinesis_writer::config::PublisherKind;
    for publisher in [PublisherKind::Lean, PublisherKind::Sdk] {
        for how in [HangUp::BeforeAnswer, HangUp::MidAnswer] {
            let case = format!("{publisher:?}, {how:?}");
            let app = spawn_fake_app(|s, _| {
                s.kinesis.publisher = publisher;
                s.delivery.max_attempts = 3;
                s.coalesce.enabled = false;
            })
            .await;
            let fake = app.fake();
            fake.set_plan(Plan::hang_up_all_calls(how));

            let single = app.post("", &[], "1").await;
            let calls_for_single = fake.calls();
            let batch = post_batch(&app, "", &["x", "y"]).await;

            assert_eq!(calls_for_single, 3, "{case}: retried up to max_attempts");
            assert_eq!(fake.calls(), 6, "{case}: the batch too");
            for response in [single, batch] {
                assert_eq!(response.headers()["retry-after"], "1", "{case}");
                assert_problem(response, 503, "upstream_unavailable").await;
            }

            fake.reset();
            fake.set_plan(Plan::hang_up_first_calls(1, how));
            let recovered = app.post("", &[], "2").await;
            assert_eq!(recovered.status(), 200, "{case}: the retry succeeds");
            assert_eq!(fake.calls(), 2, "{case}");
            assert_eq!(fake.received().len(), 1, "{case}");
        }
    }
}
