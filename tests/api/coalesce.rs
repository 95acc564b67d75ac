//! Coalescing (`coalesce` in config): concurrent requests to one stream share PutRecords calls,
//! and each request still answers with the true outcome of its own records. Against `fake-kinesis`
//! for call counts, faults and a slow Kinesis; against the emulator for what lands.

use std::collections::HashSet;
use std::time::Duration;

use fake_kinesis::{EntryVerdict, Plan};
use futures_util::future::join_all;
use kinesis_writer::config::Settings;
use kinesis_writer::config::StreamCoalesce;
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_problem, blank_run_specific, is_uuid_v4, seq_of, spawn_app_with, spawn_fake_app,
};

const PTEE: &str = "ProvisionedThroughputExceededException";

/// The service pointed at a fresh fake, coalescing every stream with a linger long enough that
/// concurrent test requests meet in one batch.
async fn coalescing_app(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_fake_app(|settings, _| {
        settings.coalesce.enabled = true;
        settings.coalesce.linger_ms = 100;
        tweak(settings);
    })
    .await
}

#[tokio::test]
async fn concurrent_single_requests_share_calls_and_each_gets_its_own_sequence_number() {
    let app = coalescing_app(|_| {}).await;
    let fake = app.fake();
    let bodies: Vec<String> = (0..20).map(|i| format!(r#"{{"n": {i}}}"#)).collect();

    let responses = join_all(bodies.iter().map(|b| app.post_json("", b))).await;

    for (body, response) in bodies.iter().zip(responses) {
        assert_eq!(response.status(), 200, "{body}");
        assert!(response.headers().contains_key("x-amzn-requestid"));
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["ShardId"], "shardId-000000000000");
        assert_eq!(
            answer["SequenceNumber"],
            seq_of(fake, body.as_bytes()),
            "{body} answers its own record's sequence number"
        );
        assert!(
            answer.get("Records").is_none(),
            "PutRecord-shaped: {answer}"
        );
    }
    let stats = fake.stats();
    assert_eq!(
        fake.received().len(),
        20,
        "every record arrived exactly once"
    );
    assert_eq!(stats.put_record_calls, 0);
    assert!(
        stats.put_records_calls < 20,
        "{} PutRecords calls for 20 requests",
        stats.put_records_calls
    );
    let keys: HashSet<String> = fake
        .received()
        .into_iter()
        .map(|r| r.partition_key)
        .collect();
    assert_eq!(keys.len(), 20, "a fresh UUID key per single-mode request");
    assert!(keys.iter().all(|k| is_uuid_v4(k)));
}

#[tokio::test]
async fn a_batch_request_mixed_with_singles_gets_exactly_its_own_records_in_order() {
    let app = coalescing_app(|_| {}).await;
    let fake = app.fake();
    let batch: Vec<String> = (0..5).map(|i| format!("batch-{i}")).collect();
    let singles: Vec<String> = (0..6).map(|i| format!(r#""single-{i}""#)).collect();

    let batch_body = serde_json::to_string(&batch).unwrap();
    let batch_request = app.post_json("record_per_entry=true&partition_key=k", &batch_body);
    let single_requests = join_all(singles.iter().map(|b| app.post_json("", b)));
    let (batch_response, single_responses) = tokio::join!(batch_request, single_requests);

    assert_eq!(batch_response.status(), 200);
    let answer: Value = batch_response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 0);
    let records = answer["Records"].as_array().unwrap();
    assert_eq!(records.len(), 5, "only its own records: {answer}");
    for (i, item) in batch.iter().enumerate() {
        assert_eq!(
            records[i]["SequenceNumber"],
            seq_of(fake, item.as_bytes()),
            "entry {i} is {item}"
        );
    }
    for response in single_responses {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(fake.received().len(), 11);
    assert!(
        fake.received()
            .iter()
            .filter(|r| r.data.starts_with(b"batch"))
            .all(|r| r.partition_key == "k")
    );
    assert_eq!(fake.stats().put_record_calls, 0);
    assert!(fake.stats().put_records_calls < 7, "{:?}", fake.stats());
}

#[tokio::test]
async fn per_entry_failures_and_retries_in_a_coalesced_batch_reach_only_their_own_request() {
    let app = coalescing_app(|s| s.delivery.max_attempts = 3).await;
    let fake = app.fake();
    fake.set_plan(Plan::entries(|e| {
        let fail = |code: &str| EntryVerdict::fail(code);
        match e.data {
            d if d.starts_with(b"doomed") => fail(PTEE),
            d if d.starts_with(b"broken") => fail("InternalFailure"),
            b"invalid" => fail("InvalidArgumentException"),
            d if d.starts_with(b"flaky") && e.seen_before < 2 => fail(PTEE),
            _ => EntryVerdict::Accept,
        }
    }));

    let singles =
        ["ok-1", "doomed", "broken", "invalid", "flaky", "ok-2"].map(|d| format!("\"{d}\""));
    let single_requests = join_all(singles.iter().map(|d| app.post_json("", d)));
    let batch_request = app.post_json(
        "record_per_entry=true",
        r#"["ok-b0", "doomed-b1", "flaky-b2"]"#,
    );
    let (responses, batch_response) = tokio::join!(single_requests, batch_request);
    let mut responses = responses.into_iter();
    let mut next = || responses.next().unwrap();

    // Written, even the one that failed twice first: 200 with its own sequence number.
    for data in ["ok-1"] {
        let answer: Value = next().json().await.unwrap();
        assert_eq!(answer["SequenceNumber"], seq_of(fake, data.as_bytes()));
    }
    let throttled = assert_problem(next(), 429, "throttled").await;
    assert!(throttled["detail"].is_string());
    assert_problem(next(), 503, "upstream_unavailable").await;
    assert_problem(next(), 422, "kinesis_rejected").await;
    for data in ["flaky", "ok-2"] {
        let response = next();
        assert_eq!(response.status(), 200, "{data}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["SequenceNumber"], seq_of(fake, data.as_bytes()));
    }

    assert_eq!(batch_response.status(), 207);
    assert_eq!(batch_response.headers()["retry-after"], "1");
    let answer: Value = batch_response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 1, "{answer}");
    let records = answer["Records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["SequenceNumber"], seq_of(fake, b"ok-b0"));
    assert_eq!(records[1]["ErrorCode"], PTEE);
    assert_eq!(records[2]["SequenceNumber"], seq_of(fake, b"flaky-b2"));

    // Retries resent only what failed, and nothing that failed for good was written.
    let seen = |data: &[u8]| fake.attempts().iter().filter(|a| a.data == data).count();
    assert_eq!(seen(b"ok-1"), 1);
    assert_eq!(seen(b"ok-b0"), 1);
    assert_eq!(seen(b"flaky"), 3);
    assert_eq!(seen(b"doomed"), 3);
    assert_eq!(seen(b"invalid"), 1, "a permanent failure is not retried");
    assert_eq!(fake.received().len(), 5);
    assert_eq!(fake.stats().put_record_calls, 0);
}

#[tokio::test]
async fn beyond_the_buffered_bytes_cap_requests_get_503_overloaded_with_retry_after() {
    let app = coalescing_app(|s| {
        s.coalesce.linger_ms = 0;
        s.coalesce.max_in_flight = 1;
        s.coalesce.max_buffered_bytes = 1_000;
    })
    .await;
    let fake = app.fake();
    // A slow Kinesis: the first call holds its records while the others pile up behind it.
    fake.set_plan(Plan::accept_all().with_delay(Duration::from_millis(300)));
    let bodies: Vec<String> = (0..12)
        .map(|i| format!(r#""{i:02}-{}""#, "x".repeat(200)))
        .collect();

    let responses = join_all(bodies.iter().map(|b| app.post_json("partition_key=k", b))).await;

    let (mut written, mut refused) = (Vec::new(), 0);
    for (body, response) in bodies.iter().zip(responses) {
        if response.status() == 200 {
            written.push(body.trim_matches('"').to_owned());
            continue;
        }
        assert_eq!(response.headers()["retry-after"], "1");
        assert_problem(response, 503, "overloaded").await;
        refused += 1;
    }
    assert!(
        refused > 0,
        "the cap (1,000 bytes for 12 x 203) refused some"
    );
    assert!(
        written.len() >= 4,
        "up to the cap was accepted: {}",
        written.len()
    );
    let mut landed: Vec<String> = fake
        .received()
        .into_iter()
        .map(|r| String::from_utf8(r.data).unwrap())
        .collect();
    landed.sort();
    written.sort();
    assert_eq!(landed, written, "exactly the accepted records arrived");

    // Once the buffer drains, requests are accepted again.
    fake.set_plan(Plan::accept_all());
    let response = app.post_json("", r#""after""#).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn coalesced_requests_land_in_the_emulator_each_once_with_its_own_sequence_number() {
    let app = spawn_app_with(|s, stream| {
        s.coalesce
            .streams
            .push(StreamCoalesce::named(stream.to_owned()));
        s.coalesce.linger_ms = 50;
    })
    .await;
    let bodies: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"webUrl": "https://example.co.uk/{i}", "n": {i}.50}}"#))
        .collect();

    let singles = join_all(bodies.iter().map(|b| app.post_json("", b)));
    let batch = app.post_json(
        "record_per_entry=true&partition_key=p",
        r#"["b0", {"b": 1}]"#,
    );
    let (singles, batch) = tokio::join!(singles, batch);

    let landed = app.landed().await;
    assert_eq!(landed.len(), 10, "every record landed exactly once");
    for (body, response) in bodies.iter().zip(singles) {
        assert_eq!(response.status(), 200, "{body}");
        let answer: Value = response.json().await.unwrap();
        let mine: Vec<_> = landed
            .iter()
            .filter(|l| l.data == body.as_bytes())
            .collect();
        assert_eq!(mine.len(), 1, "{body} landed once, byte for byte");
        assert_eq!(answer["SequenceNumber"], mine[0].sequence_number);
        assert_eq!(answer["EncryptionType"], "NONE");
        assert!(is_uuid_v4(&mine[0].partition_key));
    }
    assert_eq!(batch.status(), 200);
    let answer: Value = batch.json().await.unwrap();
    for (i, data) in [&b"b0"[..], br#"{"b": 1}"#].into_iter().enumerate() {
        let landed = landed.iter().find(|l| l.data == data).unwrap();
        assert_eq!(
            answer["Records"][i]["SequenceNumber"],
            landed.sequence_number
        );
        assert_eq!(landed.partition_key, "p");
    }
}

/// Coalescing is on by default (issue #14): no answer may change shape because of it. The same
/// requests against the same faults, direct and coalesced, answer the same statuses, headers and
/// bodies (sequence numbers aside, which differ by nature).
#[tokio::test]
async fn the_same_requests_answer_the_same_with_and_without_coalescing() {
    async fn answers(coalesce: bool) -> Vec<(u16, Option<String>, Value)> {
        let app = spawn_fake_app(|s, _| {
            s.coalesce.enabled = coalesce;
            s.delivery.max_attempts = 1;
        })
        .await;
        app.fake().set_plan(Plan::fail_entries_when(PTEE, |e| {
            e.data.starts_with(b"throttle")
        }));
        let json = ("content-type", "application/json");
        let text = ("content-type", "text/plain");
        let mut out = Vec::new();
        let requests: [(&str, (&str, &str), &str); 6] = [
            ("partition_key=k", text, "plain"),
            ("", json, r#"{"a": 1}"#),
            ("", json, r#""throttle-me""#),
            ("record_per_entry=true", json, r#"["x", {"y": 2}]"#),
            ("record_per_entry=true", json, r#"["x", "throttle", 3]"#),
            (
                "record_per_entry=true",
                json,
                r#"["throttle-1", "throttle-2"]"#,
            ),
        ];
        for (query, ct, body) in requests {
            let response = app.post(query, &[ct], body).await;
            let status = response.status().as_u16();
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut body: Value = response.json().await.unwrap();
            blank_run_specific(&mut body);
            out.push((status, retry, body));
        }
        out
    }
    let direct = answers(false).await;
    let coalesced = answers(true).await;
    assert_eq!(direct, coalesced);
    let statuses: Vec<u16> = direct.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 429, 200, 207, 207]);
}
