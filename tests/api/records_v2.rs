//! Records v2 (docs/api.md#records-v2) on the real emulator: NDJSON, envelopes, keys from the data,
//! explicit hash keys and ordering. Every test reads its records back and compares keys and bytes.

use std::collections::HashMap;

use serde_json::Value;

use crate::helpers::{
    TestApp, assert_problem, is_uuid_v4, spawn_app, spawn_app_with, spawn_app_with_shards,
    spawn_fake_app,
};

const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");
const JSON: (&str, &str) = ("content-type", "application/json");

/// `(data, partition key)` of every record in the test's stream, oldest first.
async fn landed(app: &TestApp) -> Vec<(String, String)> {
    app.landed()
        .await
        .into_iter()
        .map(|l| (String::from_utf8(l.data).unwrap(), l.partition_key))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(d, k)| ((*d).to_owned(), (*k).to_owned()))
        .collect()
}

#[tokio::test]
async fn ndjson_lines_land_as_sent_with_keys_taken_from_the_data() {
    let app = spawn_app().await;
    // CRLF, a blank line, a whitespace-only line, and no newline after the last line.
    let body = concat!(
        "{\"user\": {\"id\": \"u-1\"}, \"e\": \"login\"}\r\n",
        "\n",
        "{\"user\": {\"id\": 1.50}, \"e\": \"view\"}\n",
        "   \r\n",
        "{\"user\": {\"id\": true}}"
    );
    let response = app
        .post("partition_key_pointer=/user/id", &[NDJSON], body)
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 0);
    assert_eq!(answer["Records"].as_array().unwrap().len(), 3);
    assert_eq!(
        landed(&app).await,
        pairs(&[
            (r#"{"user": {"id": "u-1"}, "e": "login"}"#, "u-1"),
            (r#"{"user": {"id": 1.50}, "e": "view"}"#, "1.50"),
            (r#"{"user": {"id": true}}"#, "true"),
        ])
    );
}

#[tokio::test]
async fn a_500_line_ndjson_body_is_one_batch_and_lands_whole() {
    let app = spawn_app().await;
    let body: String = (0..500).map(|i| format!("{{\"i\": {i}}}\n")).collect();
    let response = app
        .post(
            "partition_key_pointer=/i",
            &[("content-type", "application/jsonl")],
            body,
        )
        .await;
    assert_eq!(response.status(), 200);
    let landed = landed(&app).await;
    assert_eq!(landed.len(), 500);
    for (i, (data, key)) in landed.iter().enumerate() {
        assert_eq!(
            (data.as_str(), key.as_str()),
            (format!("{{\"i\": {i}}}").as_str(), i.to_string().as_str())
        );
    }
}

#[tokio::test]
async fn a_bad_ndjson_line_is_refused_with_its_number_and_nothing_lands() {
    let app = spawn_app().await;
    let mut body: String = (1..=36).map(|i| format!("{i}\n")).collect();
    body.push_str("{\"unterminated\": \n38\n");
    let response = app.post("", &[NDJSON], body).await;
    let problem = assert_problem(response, 400, "invalid_body").await;
    assert_eq!(problem["line"], 37);
    let empty = app.post("", &[NDJSON], "\n\r\n  \n").await;
    let problem = assert_problem(empty, 422, "empty_batch").await;
    // The caller sent NDJSON without record_per_entry: the detail must speak of what was sent.
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("NDJSON line"), "{detail}");
    let single = app.post("record_per_entry=false", &[NDJSON], "1\n").await;
    assert_problem(single, 400, "invalid_query_parameter").await;
    assert!(app.landed().await.is_empty());
}

#[tokio::test]
async fn envelopes_carry_their_own_data_keys_and_bytes() {
    let app = spawn_app().await;
    let batch = r#"[
        {"data": {"event": "click"}, "partition_key": "device-7"},
        {"data": "plain text"},
        {"data_base64": "AP8BAg==", "partition_key": "device-8"},
        {"data": [1, 2.50]}
    ]"#;
    let response = app
        .post(
            "envelope=true&record_per_entry=true&partition_key=fallback",
            &[JSON],
            batch,
        )
        .await;
    assert_eq!(response.status(), 200);
    let single = app
        .post(
            "envelope=true",
            &[JSON],
            r#"{"partition_key": "solo", "data": null}"#,
        )
        .await;
    assert_eq!(single.status(), 200);
    let lines = "{\"data\": 1}\n{\"data\": 2, \"partition_key\": \"two\"}\n";
    let ndjson = app.post("envelope=true", &[NDJSON], lines).await;
    assert_eq!(ndjson.status(), 200);

    let landed = app.landed().await;
    let got: Vec<(&[u8], &str)> = landed
        .iter()
        .map(|l| (l.data.as_slice(), l.partition_key.as_str()))
        .collect();
    let want: Vec<(&[u8], &str)> = vec![
        (br#"{"event": "click"}"#, "device-7"),
        (b"plain text", "fallback"),
        (b"\x00\xff\x01\x02", "device-8"),
        (b"[1, 2.50]", "fallback"),
        (b"null", "solo"),
    ];
    assert_eq!(&got[..5], &want[..]);
    assert_eq!(got[5].0, b"1");
    assert!(
        is_uuid_v4(got[5].1),
        "no key anywhere: a UUID, got {}",
        got[5].1
    );
    assert_eq!(got[6], (&b"2"[..], "two"));
}

#[tokio::test]
async fn per_record_errors_name_their_record_and_nothing_lands() {
    let app = spawn_app().await;
    let cases: &[(&str, &str, u16, &str, Option<u64>)] = &[
        (
            "envelope=true&record_per_entry=true",
            r#"[{"data": 1}, {"data": 1, "extra": 2}]"#,
            422,
            "invalid_envelope",
            Some(1),
        ),
        (
            "envelope=true&record_per_entry=true",
            r#"[{"data": 1}, {"data_base64": "%%%"}]"#,
            422,
            "invalid_envelope",
            Some(1),
        ),
        (
            "envelope=true",
            r#"{"data": 1, "data_base64": "AA=="}"#,
            422,
            "invalid_envelope",
            Some(0),
        ),
        (
            "partition_key_pointer=/id&record_per_entry=true",
            r#"[{"id": "a"}, {"id": "b"}, {"id": null}]"#,
            422,
            "partition_key_not_found",
            Some(2),
        ),
        (
            "partition_key_pointer=/id&envelope=true&record_per_entry=true",
            r#"[{"data_base64": "AA=="}]"#,
            422,
            "partition_key_not_found",
            Some(0),
        ),
        (
            "envelope=true&record_per_entry=true",
            r#"[{"data": 1, "explicit_hash_key": "01"}]"#,
            422,
            "invalid_explicit_hash_key",
            Some(0),
        ),
        (
            "explicit_hash_key=340282366920938463463374607431768211456",
            "1",
            422,
            "invalid_explicit_hash_key",
            None,
        ),
        (
            "partition_key_pointer=/k&partition_key=x",
            "{}",
            400,
            "invalid_query_parameter",
            None,
        ),
        (
            "sequence_number_for_ordering=1&record_per_entry=true",
            "[1]",
            400,
            "invalid_query_parameter",
            None,
        ),
    ];
    for (query, body, status, code, index) in cases {
        let response = app.post(query, &[JSON], *body).await;
        let problem = assert_problem(response, *status, code).await;
        assert_eq!(
            problem["index"].as_u64(),
            *index,
            "{query} {body}: {problem}"
        );
    }
    // docs/api.md#order-of-checks: the count first, then record by record (the key before the
    // size).
    let order = app
        .post(
            "envelope=true&record_per_entry=true",
            &[JSON],
            format!("[{}]", vec![r#"{"bad": 1}"#; 501].join(",")),
        )
        .await;
    assert_problem(order, 422, "too_many_records").await;
    let key_first = app
        .post(
            "partition_key_pointer=/k&record_per_entry=true",
            &[JSON],
            format!(r#"[{{"k": "", "pad": "{}"}}]"#, "x".repeat(1_100_000)),
        )
        .await;
    let problem = assert_problem(key_first, 422, "invalid_partition_key").await;
    assert_eq!(problem["index"], 0);
    assert!(app.landed().await.is_empty());
}

/// The data of every record in one shard.
async fn shard_data(app: &TestApp, shard: &str) -> Vec<String> {
    app.landed()
        .await
        .into_iter()
        .filter(|l| l.shard_id == shard)
        .map(|l| String::from_utf8(l.data).unwrap())
        .collect()
}

#[tokio::test]
async fn an_explicit_hash_key_lands_on_the_shard_whose_range_holds_it() {
    let app = spawn_app_with_shards(4, |_, _| {}).await;
    let ranges = app.open_shards().await;
    assert_eq!(ranges.len(), 4);
    // Per record (envelope): the last hash key of each shard's range, all under one partition key
    // that alone would put them on a single shard.
    let envelopes: Vec<String> = ranges
        .iter()
        .map(|s| {
            let (id, end) = (&s.id, s.end);
            format!(r#"{{"data": "{id}", "partition_key": "same", "explicit_hash_key": "{end}"}}"#)
        })
        .collect();
    let response = app
        .post(
            "envelope=true&record_per_entry=true",
            &[JSON],
            format!("[{}]", envelopes.join(",")),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    // For the whole request (query): the first hash key of the third shard.
    let (third, start) = (&ranges[2].id, ranges[2].start);
    let single = app
        .post(
            &format!("explicit_hash_key={start}&partition_key=same"),
            &[JSON],
            r#""query-pinned""#,
        )
        .await;
    assert_eq!(single.status(), 200);
    let single: Value = single.json().await.unwrap();
    assert_eq!(single["ShardId"], third.as_str());

    let mut expected: HashMap<&str, Vec<String>> = HashMap::new();
    for (i, s) in ranges.iter().enumerate() {
        assert_eq!(answer["Records"][i]["ShardId"], s.id.as_str());
        expected.entry(&s.id).or_default().push(s.id.clone());
    }
    expected
        .get_mut(third.as_str())
        .unwrap()
        .push("query-pinned".into());
    for s in &ranges {
        let id = &s.id;
        assert_eq!(
            shard_data(&app, id).await,
            expected[id.as_str()],
            "shard {id}"
        );
    }
}

#[tokio::test]
async fn an_ordered_write_is_its_own_put_record_even_with_coalescing() {
    let app = spawn_fake_app(|s, stream| {
        s.coalesce.streams = vec![kinesis_writer::config::StreamCoalesce::named(
            stream.to_owned(),
        )];
    })
    .await;
    let text = ("content-type", "text/plain");
    let first: Value = app
        .post("partition_key=k", &[text], "first")
        .await
        .json()
        .await
        .unwrap();
    let seq = first["SequenceNumber"].as_str().unwrap().to_owned();
    let second = app
        .post(
            &format!("partition_key=k&sequence_number_for_ordering={seq}"),
            &[text],
            "second",
        )
        .await;
    assert_eq!(second.status(), 200);
    let stats = app.fake().stats();
    // The first went through the coalescing lane (PutRecords); the ordered one did not.
    assert_eq!((stats.put_records_calls, stats.put_record_calls), (1, 1));
}

#[tokio::test]
async fn v1_requests_keep_their_answers_beside_v2_parameters() {
    let app = spawn_app_with(|_, _| {}).await;
    let v1 = app
        .post(
            "record_per_entry=true&partition_key=k",
            &[JSON],
            r#"["a", {"b": 1}]"#,
        )
        .await;
    assert_eq!(v1.status(), 200);
    assert_eq!(
        landed(&app).await,
        pairs(&[("a", "k"), (r#"{"b": 1}"#, "k")])
    );
}
