//! The production surface: API keys, the streams allowlist, metrics, compressed bodies and load
//! shedding. Kinesis-facing outcomes are checked on the real emulator; "no AWS call was made" and
//! slow upstreams use fake-kinesis, which counts every call.

use std::io::Write;
use std::time::Duration;

use fake_kinesis::Plan;
use futures_util::StreamExt;
use kinesis_writer::access::key_digest_hex;
use kinesis_writer::config::{AllowedStream, ApiKeySettings, Settings};

use crate::helpers::{
    TestApp, assert_problem, eventually, spawn_app, spawn_app_with, spawn_fake_app,
};

fn allow(settings: &mut Settings, names: &[&str]) {
    settings.streams.allow_all = false;
    settings.streams.allowed = names.iter().map(|n| AllowedStream::named(*n)).collect();
}

fn key(id: &str, secret: &str, streams: &[&str]) -> ApiKeySettings {
    ApiKeySettings {
        id: id.to_owned(),
        sha256: key_digest_hex(secret),
        streams: streams.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[tokio::test]
async fn the_auth_matrix_on_the_real_emulator() {
    let app = spawn_app_with(|s, stream| {
        allow(s, &[stream, "other-stream"]);
        s.auth.required = true;
        s.auth.keys = vec![
            key("writer", "s3cret-writer", &[stream]),
            key("elsewhere", "s3cret-other", &["other-stream"]),
        ];
    })
    .await;
    let post = |auth: Option<(&'static str, &'static str)>| {
        let mut headers = vec![("content-type", "text/plain")];
        headers.extend(auth);
        let app = &app;
        async move { app.post("partition_key=k", &headers, "payload").await }
    };

    let none = post(None).await;
    let wrong = post(Some(("authorization", "Bearer not-a-key"))).await;
    let other = post(Some(("x-api-key", "s3cret-other"))).await;
    let ok = post(Some(("authorization", "Bearer s3cret-writer"))).await;
    let ok2 = post(Some(("x-api-key", "s3cret-writer"))).await;
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    let upper = post(Some(("authorization", "BEARER s3cret-writer"))).await;

    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_problem(none, 401, "unauthorized").await;
    assert_problem(wrong, 401, "unauthorized").await;
    assert_problem(other, 403, "forbidden").await;
    let statuses = [ok.status(), ok2.status(), upper.status()].map(|s| s.as_u16());
    assert_eq!(statuses, [200, 200, 200], "Bearer, x-api-key, BEARER");
    let landed = app.landed().await;
    assert_eq!(landed.len(), 3, "only the authorised writes landed");
    assert!(
        landed
            .iter()
            .all(|l| l.data == b"payload" && l.partition_key == "k")
    );
}

#[tokio::test]
async fn a_stream_off_the_allowlist_is_404_without_any_call_to_aws() {
    let app = spawn_fake_app(|s, stream| allow(s, &[stream])).await;
    let fake = app.fake();

    let refused = app.post_to("not-allowed", "", &[], "1").await;
    let calls_after_refusal = fake.calls();
    let ok = app.post("", &[], "1").await;

    let body = assert_problem(refused, 404, "stream_not_found").await;
    assert_eq!(
        body["error_class"], "UpstreamError",
        "indistinguishable from a missing stream"
    );
    assert_eq!(
        calls_after_refusal, 0,
        "no AWS call for a stream off the allowlist"
    );
    assert_eq!(ok.status(), 200);
    assert_eq!(fake.calls(), 1);
}

/// The value of one Prometheus sample line, e.g. `name{a="b"} 3`.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
}

/// The counters `names` for one stream, in order (`None` where a series is absent).
fn stream_counters(metrics: &str, stream: &str, names: &[&str]) -> Vec<Option<f64>> {
    names
        .iter()
        .map(|name| sample(metrics, name, &[("stream", stream)]))
        .collect()
}

#[tokio::test]
async fn metrics_move_after_real_writes() {
    let app = spawn_app().await;
    let stream = app.stream.clone();

    let r1 = app
        .post_json("record_per_entry=true&partition_key=kk", r#"["ab", "cde"]"#)
        .await;
    let r2 = app
        .post("partition_key=kk", &[("content-type", "text/plain")], "xyz")
        .await;
    let r3 = app.post_json("record_per_entry=true", "[]").await;
    assert_eq!(
        (
            r1.status().as_u16(),
            r2.status().as_u16(),
            r3.status().as_u16()
        ),
        (200, 200, 422)
    );
    let metrics = app.get("/metrics").await;

    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    let written = [
        "kinesis_records_written_total",
        "kinesis_bytes_written_total",
    ];
    // 3 records; 2+2, 3+2, 3+2 bytes (data + key)
    assert_eq!(
        stream_counters(&text, &stream, &written),
        [Some(3.0), Some(14.0)]
    );
    assert!(
        sample(
            &text,
            "kinesis_calls_total",
            &[("operation", "PutRecords"), ("outcome", "ok")]
        )
        .unwrap()
            >= 1.0
    );
    let route = [("route", "/streams/{stream}/records"), ("status", "422")];
    assert!(sample(&text, "http_requests_total", &route).unwrap() >= 1.0);
    assert!(
        text.contains("kinesis_call_duration_seconds_bucket"),
        "latency histogram"
    );
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("http_requests_in_flight"));
}

#[tokio::test]
async fn metrics_can_require_a_key() {
    let app = spawn_fake_app(|s, _| {
        s.metrics.require_auth = true;
        s.auth.keys = vec![key("ops", "ops-key", &["*"])];
    })
    .await;

    let without = app.get("/metrics").await;
    let with = app
        .http
        .get(format!("{}/metrics", app.address))
        .bearer_auth("ops-key")
        .send()
        .await
        .unwrap();
    let health = app.get("/health/live").await;

    assert_problem(without, 401, "unauthorized").await;
    assert_eq!(with.status(), 200);
    assert_eq!(health.status(), 200, "health stays open");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_decompressed_and_a_bomb_gets_413() {
    let app = spawn_app().await;
    let batch = br#"[{"a": 1}, "two"]"#;
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]); // 64 MiB of spaces: ~65 KB compressed
    let json = ("content-type", "application/json");

    let ok = app
        .post(
            "record_per_entry=true&partition_key=g",
            &[json, ("content-encoding", "gzip")],
            gzip(batch),
        )
        .await;
    let bombed = app
        .post("", &[json, ("content-encoding", "gzip")], bomb.clone())
        .await;
    let brotli = app.post("", &[json, ("content-encoding", "br")], "1").await;

    assert_eq!(ok.status(), 200);
    assert!(
        bomb.len() < 200_000,
        "the bomb is small on the wire ({} bytes)",
        bomb.len()
    );
    assert_problem(bombed, 413, "payload_too_large").await;
    assert_problem(brotli, 415, "unsupported_media_type").await;
    let landed: Vec<Vec<u8>> = app.landed().await.into_iter().map(|l| l.data).collect();
    assert_eq!(landed, vec![br#"{"a": 1}"#.to_vec(), b"two".to_vec()]);
}

#[tokio::test]
async fn beyond_the_concurrency_cap_requests_are_shed_with_503_not_queued() {
    let app = spawn_fake_app(|s, _| s.server.max_concurrent_requests = 2).await;
    let fake = app.fake();
    fake.set_plan(Plan::accept_all().with_delay(Duration::from_millis(400)));

    let statuses: Vec<(u16, Option<String>, String)> = futures_util::stream::iter(0..6)
        .map(|i| {
            let app = &app;
            async move {
                let r = app
                    .post("", &[("content-type", "text/plain")], format!("r{i}"))
                    .await;
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (r.status().as_u16(), retry, r.text().await.unwrap())
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    let health = app.get("/health/live").await;

    let ok = statuses.iter().filter(|(s, _, _)| *s == 200).count();
    let shed: Vec<_> = statuses.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(ok + shed.len(), 6, "{statuses:?}");
    assert!(ok >= 2 && !shed.is_empty(), "{statuses:?}");
    for (_, retry, body) in &shed {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("\"code\":\"overloaded\""), "{body}");
    }
    assert_eq!(
        fake.received().len(),
        ok,
        "shed requests never reached Kinesis"
    );
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_request_over_the_request_timeout_gets_408() {
    let app = spawn_fake_app(|s, _| s.server.request_timeout_ms = 300).await;
    app.fake()
        .set_plan(Plan::accept_all().with_delay(Duration::from_millis(1500)));

    let response = app.post("", &[], "1").await;

    assert_problem(response, 408, "request_timeout").await;
}

#[tokio::test]
async fn retries_throttles_and_final_failures_are_counted() {
    let app = spawn_fake_app(|s, _| {
        s.delivery.max_attempts = 3;
        s.delivery.base_backoff_ms = 1;
        s.delivery.max_backoff_ms = 2;
    })
    .await;
    // "flaky" fails twice then lands; "doomed" fails on every attempt.
    app.fake().set_plan(Plan::fail_entries_when(
        "ProvisionedThroughputExceededException",
        |e| (e.data == b"flaky" && e.seen_before < 2) || e.data == b"doomed",
    ));
    // The app's stream name is unique, so these counters are this test's alone.
    let stream = app.stream.clone();

    let response = app
        .post_json("record_per_entry=true", r#"["ok", "flaky", "doomed"]"#)
        .await;
    let text = metrics_text(&app).await;

    assert_eq!(response.status(), 207);
    let names = [
        "kinesis_records_retried_total",
        "kinesis_throttles_total",
        "kinesis_records_failed_total",
        "kinesis_records_written_total",
    ];
    // Retried: attempt 2 resends flaky + doomed, attempt 3 both again. Throttled: 2 + 2 + 1.
    assert_eq!(
        stream_counters(&text, &stream, &names),
        [Some(4.0), Some(5.0), Some(1.0), Some(2.0)]
    );
}

/// The app's `/metrics` page.
async fn metrics_text(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

#[tokio::test]
async fn coalescing_reports_batch_sizes_and_buffered_bytes() {
    let app = spawn_fake_app(|s, _| s.coalesce.enabled = true).await;
    // A slow Kinesis: the coalesced requests wait, their bytes buffered, until it answers.
    app.fake()
        .set_plan(Plan::accept_all().with_delay(Duration::from_millis(1000)));
    // 10 requests of 100,000 data bytes and a 1-byte key. The gauge is process-wide (every app in
    // this test binary shares the recorder), and no other test buffers anywhere near this much.
    const DATA: usize = 100_000;
    let one_request = (DATA + 1) as f64;
    let all_requests = 10.0 * one_request;
    let app = &app;
    let buffered = || async move {
        sample(&metrics_text(app).await, "coalesce_buffered_bytes", &[]).expect("the gauge")
    };

    let requests = futures_util::stream::iter(0..10)
        .map(|i| async move {
            let body = format!("c{i}-{}", "x".repeat(DATA - 3));
            app.post("partition_key=k", &[("content-type", "text/plain")], body)
                .await
                .status()
                .as_u16()
        })
        .buffer_unordered(10)
        .collect::<Vec<u16>>();
    let held = eventually(
        "the waiting requests' bytes counted in coalesce_buffered_bytes",
        Duration::from_secs(5),
        || async move { (buffered().await >= all_requests).then_some(()) },
    );
    let (statuses, ()) = tokio::join!(requests, held);
    let text = metrics_text(app).await;

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        sample(&text, "coalesce_batch_records_count", &[]).unwrap() >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "coalesce_batch_requests_sum", &[]).unwrap() >= 10.0);
    // Answered, every request gave its bytes back: less than one of them is left (from other
    // tests, if any).
    eventually(
        "the answered requests' bytes given back",
        Duration::from_secs(5),
        || async move { (buffered().await < one_request).then_some(()) },
    )
    .await;
}
