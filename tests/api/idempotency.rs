//! Idempotent retries (docs/api.md#idempotent-retries), black-box: a replay is the first answer
//! byte for byte with `Idempotency-Replayed: true` and writes nothing; another request under the
//! same key is 422; concurrent tries write once; keys are scoped by stream; 5xx answers are not
//! kept; a spooled 202 is replayed, not spooled twice; 428 and 400 for missing and bad keys; a
//! property: any interleaving of retries of N keyed requests on one instance writes each once.

use std::time::Duration;

use fake_kinesis::{CallError, Plan};
use kinesis_writer::config::StreamSpool;

use crate::helpers::{assert_problem, eventually, spawn_app, spawn_app_with, spawn_fake_app};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotency-replayed";

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_answer_and_writes_once() {
    let app = spawn_app().await;
    let key = uuid::Uuid::new_v4().to_string();
    let h = [(KEY, key.as_str()), ("content-type", "application/json")];

    let first = app
        .post("record_per_entry=true", &h, r#"[{"n":1},{"n":2}]"#)
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, REPLAYED),
        None,
        "the first answer is no replay"
    );
    let amzn = header(&first, "x-amzn-requestid");
    let first_id = header(&first, "x-request-id");
    let first_body = first.bytes().await.unwrap();

    let again = app
        .post("record_per_entry=true", &h, r#"[{"n":1},{"n":2}]"#)
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    assert_eq!(header(&again, "x-amzn-requestid"), amzn);
    assert_eq!(
        header(&again, "content-type").as_deref(),
        Some("application/json")
    );
    assert_ne!(
        header(&again, "x-request-id"),
        first_id,
        "the new request's id"
    );
    assert_eq!(again.bytes().await.unwrap(), first_body, "byte for byte");

    let landed = app.landed().await;
    assert_eq!(landed.len(), 2, "each record once: {landed:?}");
}

#[tokio::test]
async fn a_kept_problem_is_replayed_with_the_new_request_id() {
    let app = spawn_fake_app(|_, _| {}).await;
    let h = [(KEY, "k-problem")];
    // 422 data_must_be_list: a 4xx other than 408/409/429 is kept.
    let first = app.post("record_per_entry=true", &h, r#"{"n":1}"#).await;
    let mut first = assert_problem(first, 422, "data_must_be_list").await;
    let again = app.post("record_per_entry=true", &h, r#"{"n":1}"#).await;
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    let mut again = assert_problem(again, 422, "data_must_be_list").await;
    assert_ne!(first["request_id"], again["request_id"]);
    first["request_id"] = serde_json::Value::Null;
    again["request_id"] = serde_json::Value::Null;
    assert_eq!(first, again);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_422_and_writes_nothing() {
    let app = spawn_fake_app(|_, _| {}).await;
    let h = [(KEY, "k-reused")];
    assert_eq!(app.post("", &h, r#"{"n":1}"#).await.status(), 200);

    let other_body = app.post("", &h, r#"{"n":2}"#).await;
    assert_problem(other_body, 422, "idempotency_key_reused").await;
    let other_query = app.post("partition_key=p", &h, r#"{"n":1}"#).await;
    assert_problem(other_query, 422, "idempotency_key_reused").await;
    let other_type = app
        .post("", &[h[0], ("content-type", "text/plain")], r#"{"n":1}"#)
        .await;
    assert_problem(other_type, 422, "idempotency_key_reused").await;

    assert_eq!(app.fake().received().len(), 1);
}

#[tokio::test]
async fn two_concurrent_tries_with_one_key_write_once() {
    let app = spawn_fake_app(|s, _| s.coalesce.enabled = false).await;
    // Slow enough that the second try arrives while the first is in flight.
    app.fake()
        .set_plan(Plan::accept_all().with_delay(Duration::from_millis(300)));
    let h = [(KEY, "k-concurrent")];
    let (a, b) = tokio::join!(app.post("", &h, "{}"), app.post("", &h, "{}"));

    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    let second = if a.status() == 200 && header(&a, REPLAYED).is_none() {
        b
    } else {
        a
    };
    match second.status().as_u16() {
        409 => {
            assert!(header(&second, "retry-after").is_some());
            assert_problem(second, 409, "idempotency_key_in_flight").await;
        }
        200 => assert_eq!(header(&second, REPLAYED).as_deref(), Some("true")),
        other => panic!("unexpected {other} ({statuses:?})"),
    }
    assert_eq!(app.fake().received().len(), 1, "one write");
    // Once the first is answered, a retry is a replay.
    let later = app.post("", &h, "{}").await;
    assert_eq!(header(&later, REPLAYED).as_deref(), Some("true"));
    assert_eq!(app.fake().received().len(), 1);
}

#[tokio::test]
async fn the_same_key_on_two_streams_is_two_requests() {
    let app = spawn_fake_app(|_, _| {}).await;
    let h = [(KEY, "k-two-streams")];
    let other = format!("{}-other", app.stream);
    assert_eq!(app.post("", &h, "{}").await.status(), 200);
    let on_other = app.post_to(&other, "", &h, "{}").await;
    assert_eq!(on_other.status(), 200);
    assert_eq!(header(&on_other, REPLAYED), None);
    let streams: Vec<String> = app
        .fake()
        .received()
        .into_iter()
        .map(|r| r.stream)
        .collect();
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert_ne!(streams[0], streams[1]);
}

#[tokio::test]
async fn a_5xx_is_not_kept_and_the_retry_is_processed() {
    let app = spawn_fake_app(|s, _| {
        s.coalesce.enabled = false;
        s.delivery.max_attempts = 1;
    })
    .await;
    app.fake()
        .set_plan(Plan::fail_first_calls(1, CallError::internal_failure()));
    let h = [(KEY, "k-5xx")];
    let failed = app.post("", &h, "{}").await;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    assert!(app.fake().received().is_empty());

    let retry = app.post("", &h, "{}").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(header(&retry, REPLAYED), None, "processed anew");
    assert_eq!(app.fake().received().len(), 1);
    // And that answer is kept.
    let again = app.post("", &h, "{}").await;
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    assert_eq!(app.fake().received().len(), 1);
}

#[tokio::test]
async fn a_retried_spooled_write_replays_its_202_and_is_spooled_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let app = spawn_fake_app(move |s, stream| {
        s.spool.dir = dir;
        s.spool.streams = vec![StreamSpool::named(stream)];
    })
    .await;
    let h = [(KEY, "k-spool")];
    let first = app.post("", &h, r#"{"n":1}"#).await;
    assert_eq!(first.status(), 202);
    let first = first.bytes().await.unwrap();
    let again = app.post("", &h, r#"{"n":1}"#).await;
    assert_eq!(again.status(), 202);
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    assert_eq!(again.bytes().await.unwrap(), first, "the same RecordId");

    eventually(
        "the spooled record shipped",
        Duration::from_secs(10),
        || async { (!app.fake().received().is_empty()).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.fake().received().len(), 1, "shipped once");
}

#[tokio::test]
async fn a_required_stream_refuses_a_write_without_a_key() {
    let app =
        spawn_fake_app(|s, stream| s.idempotency.required_streams = vec![stream.to_owned()]).await;
    assert_problem(
        app.post("", &[], "{}").await,
        428,
        "idempotency_key_required",
    )
    .await;
    assert_eq!(app.post("", &[(KEY, "k")], "{}").await.status(), 200);
    assert_eq!(app.fake().received().len(), 1);
}

#[tokio::test]
async fn an_invalid_key_is_400() {
    let app = spawn_app_with(|_, _| {}).await;
    let long = "k".repeat(256);
    for bad in ["", "a b", long.as_str()] {
        let r = app.post("", &[(KEY, bad)], "{}").await;
        assert_problem(r, 400, "invalid_idempotency_key").await;
    }
    let max = "k".repeat(255);
    assert_eq!(
        app.post("", &[(KEY, max.as_str())], "{}").await.status(),
        200
    );
    assert_eq!(app.landed().await.len(), 1);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn the_content_encoding_is_part_of_the_request() {
    let app = spawn_fake_app(|_, _| {}).await;
    let key = (KEY, "k-gzip");
    let gz = [key, ("content-encoding", "gzip")];
    assert_eq!(app.post("", &gz, gzip(b"{}")).await.status(), 200);
    let again = app.post("", &gz, gzip(b"{}")).await;
    assert_eq!(header(&again, REPLAYED).as_deref(), Some("true"));
    // The same decompressed body sent plain is another request under the same key.
    let plain = app.post("", &[key], "{}").await;
    assert_problem(plain, 422, "idempotency_key_reused").await;
    assert_eq!(app.fake().received().len(), 1);
}

#[tokio::test]
async fn a_request_that_timed_out_frees_its_key_at_once() {
    let app = spawn_fake_app(|s, _| {
        s.coalesce.enabled = false;
        s.server.request_timeout_ms = 200;
    })
    .await;
    app.fake()
        .set_plan(Plan::accept_all().with_delay(Duration::from_millis(600)));
    let h = [(KEY, "k-timeout")];
    let timed_out = app.post("", &h, "{}").await;
    assert_eq!(timed_out.status(), 408);

    // Well within idempotency.in_flight_ttl_s (60 s): the dropped request gave its key back.
    app.fake().set_plan(Plan::accept_all());
    let retry = eventually("the key is free", Duration::from_secs(2), || async {
        let r = app.post("", &h, "{}").await;
        (r.status() != 409).then_some(r)
    })
    .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(header(&retry, REPLAYED), None, "a 408 is not kept");
}

/// Property: any interleaving of tries of N keyed requests (sent in concurrent waves, one
/// instance) writes each request's record exactly once; every answer is the first answer, a
/// replay of it, or 409 while it is in flight.
#[test]
fn any_interleaving_of_retries_writes_each_request_once() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(spawn_fake_app(|s, _| s.coalesce.enabled = false));
    app.fake()
        .set_plan(Plan::accept_all().with_delay(Duration::from_millis(5)));
    let cases = std::sync::atomic::AtomicU32::new(0);
    // Waves of tries; each try names one of 4 requests.
    let waves = prop::collection::vec(prop::collection::vec(0..4usize, 1..5), 1..6);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&waves, |waves| {
            let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                let before = app.fake().received().len();
                let mut sent = std::collections::BTreeSet::new();
                for wave in &waves {
                    let mut set = tokio::task::JoinSet::new();
                    for &i in wave {
                        sent.insert(i);
                        let (http, url) = (app.http.clone(), app.records_url(""));
                        set.spawn(async move {
                            let r = http
                                .post(url)
                                .header(KEY, format!("case-{case}-req-{i}"))
                                .body(format!(r#"{{"case":{case},"req":{i}}}"#))
                                .send()
                                .await
                                .unwrap();
                            (r.status().as_u16(), header(&r, REPLAYED))
                        });
                    }
                    while let Some(answer) = set.join_next().await {
                        let (status, _) = answer.unwrap();
                        prop_assert!(status == 200 || status == 409, "{status}");
                    }
                }
                // The last try of each request is answered once its first is done.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let received = app.fake().received();
                for &i in &sent {
                    let body = format!(r#"{{"case":{case},"req":{i}}}"#);
                    let n = received[before..]
                        .iter()
                        .filter(|r| r.data == body.as_bytes())
                        .count();
                    prop_assert_eq!(n, 1, "request {} written {} times", i, n);
                }
                prop_assert_eq!(received.len() - before, sent.len());
                Ok(())
            })
        })
        .unwrap();
}
