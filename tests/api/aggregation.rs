//! KPL aggregation (docs/api.md#aggregation) on the real emulator with a 4-shard stream: what lands
//! is read back shard by shard, de-aggregated with the reference Python package (aws-kinesis-agg,
//! pinned in tools/kpl-reference) and with the project's own de-aggregator, and every user record
//! must appear exactly once, with its data and key, on the shard its own key maps to.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use kinesis_writer::config::{AggregationOverrides, StreamAggregation, StreamCoalesce};
use kinesis_writer::kinesis::kpl;
use serde_json::{Value, json};

use crate::helpers::{
    Landed, OpenShard, TestApp, pinned_venv, spawn_app_on, spawn_app_with_shards, spawn_fake_app,
};

const JSON: (&str, &str) = ("content-type", "application/json");

/// A user record after de-aggregation: shard, key, data.
type User = (String, String, Vec<u8>);

/// The open shard whose range holds `hash`.
fn shard_of(shards: &[OpenShard], hash: u128) -> String {
    shards
        .iter()
        .find(|s| s.start <= hash && hash <= s.end)
        .map(|s| s.id.clone())
        .expect("the open shards cover the hash-key range")
}

/// The reference package's virtual environment (tools/kpl-reference), created on first use.
fn reference_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| pinned_venv("tools/kpl-reference").join("bin/python"))
}

/// De-aggregates with aws-kinesis-agg: the user records of each raw record, with its shard.
fn reference_deaggregate(raw: &[Landed]) -> Vec<User> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let input: Vec<Value> = raw
        .iter()
        .map(|r| {
            json!({"data": b64.encode(&r.data), "partition_key": r.partition_key,
                   "sequence_number": r.sequence_number})
        })
        .collect();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/kpl-reference/deaggregate.py");
    let mut child = Command::new(reference_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "deaggregate.py failed");
    let users: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let shard_of_seq: HashMap<&str, &str> = raw
        .iter()
        .map(|r| (r.sequence_number.as_str(), r.shard_id.as_str()))
        .collect();
    users
        .iter()
        .map(|u| {
            (
                shard_of_seq[u["sequence_number"].as_str().unwrap()].to_owned(),
                u["partition_key"].as_str().unwrap().to_owned(),
                b64.decode(u["data"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// De-aggregates with the project's own de-aggregator.
fn own_deaggregate(raw: &[Landed]) -> Vec<User> {
    raw.iter()
        .flat_map(|r| match kpl::deaggregate(&r.data) {
            None => vec![(r.shard_id.clone(), r.partition_key.clone(), r.data.clone())],
            Some(users) => users
                .expect("a well-formed aggregate")
                .into_iter()
                .map(|u| (r.shard_id.clone(), u.partition_key, u.data.to_vec()))
                .collect(),
        })
        .collect()
}

fn sorted(mut users: Vec<User>) -> Vec<User> {
    users.sort();
    users
}

/// `n` user records with `keys` distinct partition keys (and a few explicit hash keys), as
/// envelopes.
fn envelopes(tag: &str, n: usize, keys: usize) -> (String, Vec<(String, String)>) {
    let mut sent = Vec::new();
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let key = format!("{tag}-key-{}", i % keys);
            let data = format!("{tag}-record-{i}");
            sent.push((key.clone(), data.clone()));
            json!({"data": data, "partition_key": key})
        })
        .collect();
    (serde_json::to_string(&items).unwrap(), sent)
}

/// Every sent record exactly once, with its key, on the shard its key maps to.
fn assert_affinity(users: &[User], sent: &[(String, String)], shards: &[OpenShard]) {
    let mut want: Vec<User> = sent
        .iter()
        .map(|(key, data)| {
            (
                shard_of(shards, kpl::partition_key_hash(key)),
                key.clone(),
                data.clone().into_bytes(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(sorted(users.to_vec()), want);
}

#[tokio::test]
async fn aggregates_unpack_into_exactly_the_records_sent_each_on_its_own_shard() {
    let app = spawn_app_with_shards(4, |s, stream| {
        s.aggregation.streams = vec![StreamAggregation::named(stream.to_owned())];
    })
    .await;
    let shards = app.open_shards().await;
    let (body, sent) = envelopes("a", 60, 12);
    let response = app
        .post("envelope=true&record_per_entry=true", &[JSON], body)
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();

    let raw = app.landed().await;
    assert!(
        raw.len() <= shards.len(),
        "60 small records in at most one aggregate per shard, got {} Kinesis records",
        raw.len()
    );
    let reference = reference_deaggregate(&raw);
    assert_affinity(&reference, &sent, &shards);
    assert_eq!(sorted(own_deaggregate(&raw)), sorted(reference));

    // Each user record's answer names the Kinesis record that holds it and its place inside.
    let by_seq: HashMap<&str, &Landed> = raw
        .iter()
        .map(|r| (r.sequence_number.as_str(), r))
        .collect();
    for (i, (key, data)) in sent.iter().enumerate() {
        let entry = &answer["Records"][i];
        let holder = by_seq[entry["SequenceNumber"].as_str().unwrap()];
        assert_eq!(entry["ShardId"], holder.shard_id.as_str());
        let users = kpl::deaggregate(&holder.data).unwrap().unwrap();
        let position = entry["SubSequenceNumber"]
            .as_u64()
            .expect("SubSequenceNumber") as usize;
        assert_eq!(
            (
                users[position].partition_key.as_str(),
                &users[position].data[..]
            ),
            (key.as_str(), data.as_bytes()),
            "record {i}"
        );
    }
}

#[tokio::test]
async fn lone_and_oversized_records_go_out_plain() {
    let app = spawn_app_with_shards(4, |s, stream| {
        s.aggregation.streams = vec![StreamAggregation::with(
            stream,
            AggregationOverrides {
                max_bytes: Some(300),
                ..AggregationOverrides::default()
            },
        )];
    })
    .await;
    // One key, so one shard: two small records share an aggregate, the big one goes alone.
    let big = "x".repeat(400);
    let items = json!([
        {"data": "small-1", "partition_key": "k"},
        {"data": "small-2", "partition_key": "k"},
        {"data": big, "partition_key": "k"},
    ]);
    let batch = app
        .post(
            "envelope=true&record_per_entry=true",
            &[JSON],
            items.to_string(),
        )
        .await;
    assert_eq!(batch.status(), 200);
    let single = app.post("partition_key=solo", &[JSON], r#""alone""#).await;
    assert_eq!(single.status(), 200);
    let answer: Value = batch.json().await.unwrap();
    // In order: the two small ones share an aggregate; the big one would pass max_bytes.
    assert_eq!(answer["Records"][0]["SubSequenceNumber"], 0, "{answer}");
    assert_eq!(answer["Records"][1]["SubSequenceNumber"], 1, "{answer}");
    assert!(
        answer["Records"][2].get("SubSequenceNumber").is_none(),
        "{answer}"
    );

    let raw = app.landed().await;
    let plain: Vec<&[u8]> = raw
        .iter()
        .filter(|r| kpl::deaggregate(&r.data).is_none())
        .map(|r| &r.data[..])
        .collect();
    assert_eq!(
        plain.len(),
        2,
        "the oversized record and the single-mode one"
    );
    assert!(plain.contains(&big.as_bytes()) && plain.contains(&&b"alone"[..]));
    let reference = reference_deaggregate(&raw);
    assert_eq!(reference.len(), 4);
}

/// What a KCL record processor is handed, as (key, data): each shard is read with its own
/// hash-key range, and an aggregate holding any user record outside that range is dropped whole
/// (amazon-kinesis-client's `AggregatorUtil.deaggregate(records, startingHashKey,
/// endingHashKey)`: it removes the records already taken from that aggregate and stops).
async fn kcl_view(app: &TestApp) -> Vec<(String, String)> {
    let shards = app.all_shards().await;
    let mut seen = Vec::new();
    for r in app.landed().await {
        let shard = shards.iter().find(|s| s.id == r.shard_id).unwrap();
        match kpl::deaggregate(&r.data) {
            None => seen.push((r.partition_key, String::from_utf8(r.data).unwrap())),
            Some(users) => {
                let users = users.expect("a well-formed aggregate");
                let inside = users.iter().all(|u| {
                    let hash = u.explicit_hash_key.as_ref().map_or_else(
                        || kpl::partition_key_hash(&u.partition_key),
                        |k| k.parse().unwrap(),
                    );
                    shard.start <= hash && hash <= shard.end
                });
                if inside {
                    seen.extend(
                        users.into_iter().map(|u| {
                            (u.partition_key, String::from_utf8(u.data.to_vec()).unwrap())
                        }),
                    );
                }
            }
        }
    }
    seen.sort();
    seen
}

/// Splits the stream's first open shard in the middle of its range and waits until it is ACTIVE.
async fn split_first_shard(app: &TestApp) {
    let shards = app.open_shards().await;
    let first = &shards[0];
    app.kinesis()
        .split_shard()
        .stream_name(&app.stream)
        .shard_to_split(&first.id)
        .new_starting_hash_key((first.start + (first.end - first.start) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    kinesis_writer::dev::wait_active(
        app.kinesis(),
        &app.stream,
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
}

/// Writes `n` records with distinct keys (one request, or `n / 10` concurrent ones) and checks
/// that every answer is 200 and names, for each record, a shard whose range holds its key.
async fn write_and_check_answers(
    app: &TestApp,
    tag: &str,
    n: usize,
    concurrent: bool,
) -> Vec<(String, String)> {
    let shards = app.all_shards().await;
    let requests: Vec<(String, Vec<(String, String)>)> = if concurrent {
        (0..n / 10)
            .map(|r| envelopes(&format!("{tag}{r}"), 10, 10))
            .collect()
    } else {
        vec![envelopes(tag, n, n)]
    };
    let answers =
        futures_util::future::join_all(requests.iter().map(|(body, _)| {
            app.post("envelope=true&record_per_entry=true", &[JSON], body.clone())
        }))
        .await;
    let mut sent = Vec::new();
    for (response, (_, records)) in answers.into_iter().zip(requests) {
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        for (i, (key, _)) in records.iter().enumerate() {
            let landed = answer["Records"][i]["ShardId"].as_str().unwrap();
            let shard = shards.iter().find(|s| s.id == landed).unwrap();
            let hash = kpl::partition_key_hash(key);
            assert!(
                shard.start <= hash && hash <= shard.end,
                "record {i} ({key}) answered on {landed}, whose range does not hold its key"
            );
        }
        sent.extend(records);
    }
    sent
}

/// docs/api.md, "Aggregation and resharding": an aggregate built on the stale map lands on a child of the split
/// shard. Those of its records that the child's range does not hold are sent again where they
/// belong, so every acknowledged record reaches a KCL consumer exactly once. The timed refresh is
/// an hour away: only the misprediction path is exercised.
async fn after_a_split_every_acknowledged_record_reaches_a_kcl_consumer(concurrent: bool) {
    let app = spawn_app_with_shards(4, |s, stream| {
        s.aggregation.streams = vec![StreamAggregation::named(stream.to_owned())];
        s.aggregation.shard_map_refresh_ms = 3_600_000;
        if concurrent {
            s.coalesce.streams = vec![StreamCoalesce::named(stream.to_owned())];
        }
    })
    .await;
    let mut sent = write_and_check_answers(&app, "before", 40, concurrent).await;
    split_first_shard(&app).await;
    sent.extend(write_and_check_answers(&app, "stale", 100, concurrent).await);
    sent.extend(write_and_check_answers(&app, "after", 60, concurrent).await);
    sent.sort();
    assert_eq!(kcl_view(&app).await, sent);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let stream = format!("stream=\"{}\"", app.stream);
    let resent = metrics
        .lines()
        .find(|l| l.starts_with("kinesis_aggregation_resent_records_total") && l.contains(&stream))
        .unwrap_or_else(|| panic!("no re-sent records counted: {metrics}"));
    let n: f64 = resent.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > 0.0, "{resent}");
}

#[tokio::test]
async fn after_a_split_every_acknowledged_record_reaches_a_kcl_consumer_direct() {
    after_a_split_every_acknowledged_record_reaches_a_kcl_consumer(false).await;
}

#[tokio::test]
async fn after_a_split_every_acknowledged_record_reaches_a_kcl_consumer_coalesced() {
    after_a_split_every_acknowledged_record_reaches_a_kcl_consumer(true).await;
}

#[tokio::test]
async fn without_a_shard_map_records_go_out_plain_and_say_so() {
    // fake-kinesis has no ListShards: the service must not guess a shard.
    let app = spawn_fake_app(|s, stream| {
        s.aggregation.streams = vec![StreamAggregation::named(stream.to_owned())];
        s.coalesce.streams = vec![StreamCoalesce::named("other".to_owned())];
    })
    .await;
    let response = app
        .post("record_per_entry=true", &[JSON], r#"["a", "b", "c"]"#)
        .await;
    assert_eq!(response.status(), 200);
    let received: Vec<Vec<u8>> = app.fake().received().into_iter().map(|r| r.data).collect();
    assert_eq!(received, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let fallback = metrics
        .lines()
        .find(|l| {
            l.starts_with("kinesis_aggregation_plain_fallback_total")
                && l.contains(&format!("stream=\"{}\"", app.stream))
        })
        .unwrap_or_else(|| panic!("no fallback count in {metrics}"));
    assert!(fallback.ends_with(" 1"), "{fallback}");
}

#[tokio::test]
async fn coalesced_requests_are_aggregated_together_and_answered_each_their_own() {
    let app = spawn_app_with_shards(4, |s, stream| {
        s.aggregation.streams = vec![StreamAggregation::named(stream.to_owned())];
        s.coalesce.streams = vec![StreamCoalesce::named(stream.to_owned())];
    })
    .await;
    let shards = app.open_shards().await;
    let mut all = Vec::new();
    let mut requests = Vec::new();
    for r in 0..8 {
        let (body, sent) = envelopes(&format!("req{r}"), 10, 3);
        all.extend(sent.clone());
        requests.push((body, sent));
    }
    let answers =
        futures_util::future::join_all(requests.iter().map(|(body, _)| {
            app.post("envelope=true&record_per_entry=true", &[JSON], body.clone())
        }))
        .await;
    for (response, (_, sent)) in answers.into_iter().zip(&requests) {
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["Records"].as_array().unwrap().len(), sent.len());
        assert_eq!(answer["FailedRecordCount"], 0);
    }
    let raw = app.landed().await;
    assert!(
        raw.len() < all.len(),
        "{} Kinesis records for {} user records",
        raw.len(),
        all.len()
    );
    assert_affinity(&reference_deaggregate(&raw), &all, &shards);
}

/// A fake-kinesis that lists one shard, so aggregation has a map, and the service in front of it.
async fn aggregating_fake(
    tweak: impl FnOnce(&mut kinesis_writer::config::Settings),
) -> (TestApp, fake_kinesis::FakeKinesis) {
    aggregating_fake_with(false, tweak).await
}

/// `aggregating_fake`, with a ListShards that names another shard than writes land on when
/// `disagrees`.
async fn aggregating_fake_with(
    disagrees: bool,
    tweak: impl FnOnce(&mut kinesis_writer::config::Settings),
) -> (TestApp, fake_kinesis::FakeKinesis) {
    let fake = fake_kinesis::FakeKinesis::start_with(fake_kinesis::Options {
        list_shards: true,
        list_shards_disagrees: disagrees,
        ..fake_kinesis::Options::default()
    })
    .await
    .unwrap();
    let app = spawn_app_on(&fake.endpoint(), |s, stream| {
        s.aggregation.streams = vec![StreamAggregation::named(stream.to_owned())];
        s.delivery.base_backoff_ms = 5;
        s.delivery.max_backoff_ms = 20;
        tweak(s);
    })
    .await;
    (app, fake)
}

#[tokio::test]
async fn an_aggregate_is_retried_as_one_and_a_final_failure_fails_each_of_its_records() {
    // The aggregate holding "poison" is throttled once, then written: retried whole, not split.
    let (app, fake) = aggregating_fake(|_| {}).await;
    fake.set_plan(fake_kinesis::Plan::fail_first_attempts(
        b"poison",
        1,
        "ProvisionedThroughputExceededException",
    ));
    let response = app
        .post(
            "record_per_entry=true&partition_key=k",
            &[JSON],
            r#"["a", "poison", "c"]"#,
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let subs: Vec<_> = (0..3)
        .map(|i| answer["Records"][i]["SubSequenceNumber"].clone())
        .collect();
    assert_eq!(subs, [json!(0), json!(1), json!(2)]);
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 2, "one aggregate, sent twice: {attempts:?}");
    assert!(attempts.iter().all(|a| a.data.starts_with(&kpl::MAGIC)));
    let written = fake.received();
    assert_eq!(written.len(), 1, "written once, never duplicated");
    let users = kpl::deaggregate(&written[0].data).unwrap().unwrap();
    let data: Vec<&[u8]> = users.iter().map(|u| &u.data[..]).collect();
    assert_eq!(data, [&b"a"[..], b"poison", b"c"]);

    // Always throttled: after the retries, each of its records fails with the code, 207.
    let (app, fake) = aggregating_fake(|s| s.delivery.max_attempts = 2).await;
    fake.set_plan(fake_kinesis::Plan::fail_all_entries(
        "ProvisionedThroughputExceededException",
    ));
    let response = app
        .post(
            "record_per_entry=true&partition_key=k",
            &[JSON],
            r#"["x", "y"]"#,
        )
        .await;
    assert_eq!(response.status(), 207);
    assert_eq!(response.headers()["retry-after"], "1");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 2);
    for i in 0..2 {
        assert_eq!(
            answer["Records"][i]["ErrorCode"],
            "ProvisionedThroughputExceededException"
        );
    }
    assert_eq!(fake.attempts().len(), 2, "the aggregate, twice");
}

#[tokio::test]
async fn a_listing_that_keeps_disagreeing_costs_one_list_shards_a_second_and_loses_nothing() {
    // Every aggregate built from this fake's map lands elsewhere than predicted, and the landed
    // shard is in no listing: its records are sent again, plain at the last try. ListShards is
    // called about once a second, however many requests there are.
    let (app, fake) = aggregating_fake_with(true, |s| {
        s.aggregation.shard_map_refresh_ms = 3_600_000;
    })
    .await;
    let started = std::time::Instant::now();
    let mut requests = 0;
    while started.elapsed() < std::time::Duration::from_millis(2_500) {
        let batch = futures_util::future::join_all((0..8).map(|r| {
            let body = json!([format!("a{requests}-{r}"), format!("b{requests}-{r}")]);
            app.post(
                "record_per_entry=true&partition_key=k",
                &[JSON],
                body.to_string(),
            )
        }))
        .await;
        for response in batch {
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["FailedRecordCount"], 0, "{answer}");
        }
        requests += 8;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = fake.stats().list_shards_calls;
    assert!(
        (calls as f64) <= elapsed.ceil() + 2.0,
        "{calls} ListShards calls in {elapsed:.1} s for {requests} requests"
    );
    // Every record is readable as itself: plain, on the shard its key maps to.
    let plain: Vec<Vec<u8>> = fake
        .received()
        .into_iter()
        .filter(|r| kpl::deaggregate(&r.data).is_none())
        .map(|r| r.data)
        .collect();
    for r in 0..8 {
        assert!(plain.contains(&format!("a0-{r}").into_bytes()));
        assert!(plain.contains(&format!("b0-{r}").into_bytes()));
    }
}
