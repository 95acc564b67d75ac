//! Every limit at its exact boundary: the limit passes and lands, one more byte (or record, or
//! character) is refused with its code and nothing reaches the stream.

use crate::helpers::{assert_problem, raise_record_limit, spawn_app, spawn_app_with};
use crate::records::urlencode;

const MIB: usize = 1024 * 1024;
const OCTETS: &[(&str, &str)] = &[("content-type", "application/octet-stream")];

#[tokio::test]
async fn record_size_counts_data_plus_key_bytes_and_the_limit_itself_passes() {
    let app = spawn_app().await;
    // Key "é" is 2 UTF-8 bytes: data of 1 MiB - 2 is exactly the limit.
    let at_limit = vec![b'a'; MIB - 2];
    let over = vec![b'b'; MIB - 1];
    let key = format!("partition_key={}", urlencode("é"));

    let ok = app.post(&key, OCTETS, at_limit.clone()).await;
    let refused = app.post(&key, OCTETS, over).await;

    assert_eq!(ok.status(), 200);
    let body = assert_problem(refused, 422, "record_too_large").await;
    assert_eq!(
        (
            body["limit"].as_u64(),
            body["actual"].as_u64(),
            body["index"].as_u64()
        ),
        (Some(MIB as u64), Some(MIB as u64 + 1), Some(0))
    );
    let landed = app.landed().await;
    assert_eq!(landed.len(), 1, "only the record at the limit landed");
    assert_eq!(landed[0].data, at_limit);
}

#[tokio::test]
async fn batch_records_are_size_checked_too_and_the_lowest_index_is_reported() {
    let app = spawn_app().await;
    // JSON strings are stored unquoted: "xxx…" of n chars is an n-byte record. Key "k" is 1 byte.
    let record = |n: usize| format!("\"{}\"", "x".repeat(n));
    let at_limit = format!("[{}, {}]", record(10), record(MIB - 1));
    let over = format!("[{}, {}, {}]", record(10), record(MIB), record(MIB + 5));

    let ok = app
        .post_json("record_per_entry=true&partition_key=k", &at_limit)
        .await;
    let refused = app
        .post_json("record_per_entry=true&partition_key=k", &over)
        .await;

    assert_eq!(ok.status(), 200);
    let body = assert_problem(refused, 422, "record_too_large").await;
    assert_eq!(body["index"], 1);
    assert_eq!(body["actual"], MIB + 1);
    assert_eq!(app.landed().await.len(), 2, "only the first batch landed");
}

#[tokio::test]
async fn request_size_is_the_sum_of_data_and_key_bytes_at_the_configured_limit() {
    // A small configured request limit keeps the emulator fast; the arithmetic is the same.
    let app = spawn_app_with(|s, _| s.limits.max_request_size_bytes = 1000).await;
    // 4 records of 248 data bytes + 2-byte key "kk" = 4 × 250 = 1000.
    let batch = |last: usize| {
        format!(
            r#"["{0}", "{0}", "{0}", "{1}"]"#,
            "y".repeat(248),
            "y".repeat(last)
        )
    };

    let ok = app
        .post_json("record_per_entry=true&partition_key=kk", &batch(248))
        .await;
    let refused = app
        .post_json("record_per_entry=true&partition_key=kk", &batch(249))
        .await;

    assert_eq!(ok.status(), 200);
    let body = assert_problem(refused, 422, "batch_too_large").await;
    assert_eq!(
        (body["limit"].as_u64(), body["actual"].as_u64()),
        (Some(1000), Some(1001))
    );
    assert_eq!(app.landed().await.len(), 4);
}

#[tokio::test]
async fn at_most_500_records_per_batch() {
    let app = spawn_app().await;
    let batch = |n: usize| format!("[{}]", vec!["1"; n].join(","));

    let ok = app
        .post_json("record_per_entry=true&partition_key=k", &batch(500))
        .await;
    let refused = app
        .post_json("record_per_entry=true&partition_key=k", &batch(501))
        .await;

    assert_eq!(ok.status(), 200);
    let body = assert_problem(refused, 422, "too_many_records").await;
    assert_eq!(
        (body["limit"].as_u64(), body["actual"].as_u64()),
        (Some(500), Some(501))
    );
    assert_eq!(app.landed().await.len(), 500);
}

#[tokio::test]
async fn partition_keys_are_1_to_256_utf16_code_units() {
    let app = spawn_app().await;
    let cases: &[(String, Option<usize>)] = &[
        ("a".repeat(256), None),
        ("😀".repeat(128), None), // 2 UTF-16 units each: exactly 256
        ("a".repeat(257), Some(257)),
        ("😀".repeat(129), Some(258)),
        (String::new(), Some(0)),
    ];
    for (key, refused_with) in cases {
        let response = app
            .post(
                &format!("partition_key={}", urlencode(key)),
                &[("content-type", "text/plain")],
                "x",
            )
            .await;
        match refused_with {
            None => assert_eq!(
                response.status(),
                200,
                "key of {} chars",
                key.chars().count()
            ),
            Some(actual) => {
                let body = assert_problem(response, 422, "invalid_partition_key").await;
                assert_eq!(
                    (body["limit"].as_u64(), body["actual"].as_u64()),
                    (Some(256), Some(*actual as u64))
                );
            }
        }
    }
    let keys: Vec<String> = app
        .landed()
        .await
        .into_iter()
        .map(|l| l.partition_key)
        .collect();
    assert_eq!(keys, vec!["a".repeat(256), "😀".repeat(128)]);
}

#[tokio::test]
async fn checks_run_in_api_md_order() {
    let app = spawn_app().await;
    let bad_key = format!("partition_key={}", "a".repeat(257));
    let many = format!("[{}]", vec!["1"; 501].join(","));
    let big = format!("[\"{}\"]", "x".repeat(MIB + 1));

    let r1 = app
        .post_json(&format!("record_per_entry=true&{bad_key}"), &many)
        .await;
    let r2 = app
        .post_json(&format!("record_per_entry=true&{bad_key}"), &big)
        .await;

    assert_problem(r1, 422, "too_many_records").await;
    assert_problem(r2, 422, "invalid_partition_key").await;
    assert!(app.landed().await.is_empty());
}

#[tokio::test]
async fn the_body_cap_answers_413_before_parsing() {
    let app = spawn_app_with(|s, _| {
        s.limits.max_request_size_bytes = 1000;
        s.limits.max_record_size_bytes = 1000;
        s.limits.body_limit_bytes = 2000;
    })
    .await;

    let ok = app.post("partition_key=k", OCTETS, vec![b'z'; 999]).await;
    let at_cap = app.post("", OCTETS, vec![b'z'; 2000]).await;
    let over_cap = app.post("", OCTETS, vec![b'z'; 2001]).await;
    // Not even valid JSON: the cap is checked before the body is parsed.
    let over_cap_json = app.post_json("", &"{".repeat(2001)).await;

    assert_eq!(ok.status(), 200);
    assert_problem(at_cap, 422, "record_too_large").await;
    let body = assert_problem(over_cap, 413, "payload_too_large").await;
    assert_eq!(body["limit"], 2000);
    assert_problem(over_cap_json, 413, "payload_too_large").await;
    assert_eq!(app.landed().await.len(), 1);
}

#[tokio::test]
async fn the_default_body_cap_is_16_mib() {
    let app = spawn_app().await;

    let response = app.post("", OCTETS, vec![0u8; 16 * MIB + 1]).await;

    let body = assert_problem(response, 413, "payload_too_large").await;
    assert_eq!(body["limit"], 16 * MIB);
}

#[tokio::test]
async fn a_stream_raised_to_2_mib_is_served_by_configuration_alone() {
    let app = spawn_app_with(|s, stream| raise_record_limit(s, stream, 2 * MIB)).await;
    app.kinesis()
        .update_max_record_size()
        .stream_arn(stream_arn(&app).await)
        .max_record_size_in_kib(2048)
        .send()
        .await
        .expect("UpdateMaxRecordSize");
    let record = vec![b'r'; MIB + MIB / 2];

    let ok = app.post("partition_key=k", OCTETS, record.clone()).await;
    let refused = app
        .post("partition_key=k", OCTETS, vec![b'r'; 2 * MIB])
        .await;

    assert_eq!(ok.status(), 200);
    let body = assert_problem(refused, 422, "record_too_large").await;
    assert_eq!(body["limit"], 2 * MIB);
    let landed = app.landed().await;
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].data, record);
}

async fn stream_arn(app: &crate::helpers::TestApp) -> String {
    let summary = app
        .kinesis()
        .describe_stream_summary()
        .stream_name(&app.stream)
        .send()
        .await
        .unwrap();
    summary.stream_description_summary.unwrap().stream_arn
}
