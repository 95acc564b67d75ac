//! Success paths: what the caller sends is what lands in the stream, under the right keys.

use crate::helpers::{is_uuid_v4, spawn_app};

const OCTETS: &[(&str, &str)] = &[("content-type", "application/octet-stream")];

#[tokio::test]
async fn a_json_object_lands_byte_for_byte_under_a_fresh_uuid_key() {
    let app = spawn_app().await;
    let body = r#"{"webUrl": "https://example.co.uk",  "n": 1.50, "e": "\u00e9"}"#;

    let response = app.post_json("", body).await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers().contains_key("x-amzn-requestid"),
        "AWS request id header"
    );
    assert!(
        response.headers().contains_key("x-request-id"),
        "our request id header"
    );
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["ShardId"], "shardId-000000000000");
    assert!(
        answer["SequenceNumber"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(answer["EncryptionType"], "NONE");
    let landed = app.landed().await;
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].data, body.as_bytes(), "no re-serialisation");
    assert!(
        is_uuid_v4(&landed[0].partition_key),
        "key {:?}",
        landed[0].partition_key
    );
    assert_eq!(answer["SequenceNumber"], landed[0].sequence_number);
}

#[tokio::test]
async fn a_json_string_is_stored_unquoted_and_other_values_as_sent() {
    let app = spawn_app().await;
    let cases: &[(&str, &[u8])] = &[
        (r#""hello""#, b"hello"),
        (r#""caf\u00e9 \"q\"""#, "café \"q\"".as_bytes()),
        (r#"["a", 1]"#, br#"["a", 1]"#), // single mode: a JSON array is one record
        ("  42  ", b"42"),
        ("null", b"null"),
    ];
    for (body, _) in cases {
        let response = app.post_json("partition_key=k", body).await;
        assert_eq!(response.status(), 200, "body {body:?}");
    }
    let landed = app.landed().await;
    let got: Vec<&[u8]> = landed.iter().map(|l| l.data.as_slice()).collect();
    let want: Vec<&[u8]> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(got, want);
    assert!(landed.iter().all(|l| l.partition_key == "k"));
}

#[tokio::test]
async fn text_and_binary_bodies_are_stored_verbatim() {
    let app = spawn_app().await;
    let text = "  plain text, not JSON: {é} \n";
    let binary: Vec<u8> = vec![0x00, 0x01, 0xff, 0xfe, b'\n', 0x80];

    let r1 = app
        .post(
            "partition_key=text-key",
            &[("content-type", "text/plain; charset=utf-8")],
            text,
        )
        .await;
    let r2 = app.post("", OCTETS, binary.clone()).await;
    let r3 = app.post("", OCTETS, Vec::new()).await;

    assert_eq!(
        (
            r1.status().as_u16(),
            r2.status().as_u16(),
            r3.status().as_u16()
        ),
        (200, 200, 200)
    );
    let landed = app.landed().await;
    assert_eq!(landed.len(), 3);
    assert_eq!(
        (landed[0].data.as_slice(), landed[0].partition_key.as_str()),
        (text.as_bytes(), "text-key")
    );
    assert_eq!(landed[1].data, binary);
    assert!(landed[2].data.is_empty(), "a 0-byte record is allowed");
}

#[tokio::test]
async fn a_batch_with_a_partition_key_writes_one_record_per_element_in_order() {
    let app = spawn_app().await;
    let body = r#"[{"webUrl": "https://example.co.uk", "content": "Example content..."},
                   {"webUrl": "https://example.co.uk", "content": "More example content..."},
                   "text", 7, null, [1, 2], true]"#;

    let response = app
        .post_json("record_per_entry=true&partition_key=example.co.uk", body)
        .await;

    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["FailedRecordCount"], 0);
    let entries = answer["Records"].as_array().unwrap();
    assert_eq!(entries.len(), 7);
    let landed = app.landed().await;
    let want: Vec<&[u8]> = vec![
        br#"{"webUrl": "https://example.co.uk", "content": "Example content..."}"#,
        br#"{"webUrl": "https://example.co.uk", "content": "More example content..."}"#,
        b"text",
        b"7",
        b"null",
        b"[1, 2]",
        b"true",
    ];
    assert_eq!(
        landed.iter().map(|l| l.data.as_slice()).collect::<Vec<_>>(),
        want
    );
    assert!(landed.iter().all(|l| l.partition_key == "example.co.uk"));
    for (entry, l) in entries.iter().zip(&landed) {
        assert_eq!(
            entry["SequenceNumber"],
            l.sequence_number.as_str(),
            "Records in request order"
        );
        assert_eq!(entry["ShardId"], "shardId-000000000000");
    }
}

#[tokio::test]
async fn a_batch_without_a_key_gets_a_distinct_uuid_per_record() {
    let app = spawn_app().await;

    let response = app
        .post_json("record_per_entry=true", r#"[1, 2, 3, 4]"#)
        .await;

    assert_eq!(response.status(), 200);
    let landed = app.landed().await;
    assert_eq!(landed.len(), 4);
    let mut keys: Vec<&str> = landed.iter().map(|l| l.partition_key.as_str()).collect();
    assert!(keys.iter().all(|k| is_uuid_v4(k)), "{keys:?}");
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 4, "one key per record");
}

#[tokio::test]
async fn record_per_entry_false_and_a_missing_content_type_mean_single_json() {
    let app = spawn_app().await;

    let r1 = app.post("record_per_entry=false", &[], "[1, 2]").await;

    assert_eq!(r1.status(), 200);
    let landed = app.landed().await;
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].data, b"[1, 2]");
}

#[tokio::test]
async fn non_ascii_partition_keys_round_trip() {
    let app = spawn_app().await;
    let key = "clé-😀";
    let query = format!("partition_key={}", urlencode(key));

    let response = app
        .post(&query, &[("content-type", "text/plain")], "x")
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.landed().await[0].partition_key, key);
}

#[tokio::test]
async fn the_callers_request_id_is_kept() {
    let app = spawn_app().await;

    let response = app
        .post("", &[("x-request-id", "caller-chosen-id-123")], "{}")
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id-123");
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
