//! Drives the fake by hand over plain HTTP/1.1, to pin the exact wire shapes of both protocols:
//! AWS JSON 1.1 (what the SDK speaks, answers byte for byte as before CBOR existed) and CBOR 1.1
//! (what the lean publisher may speak). `tests/sdk.rs` covers the SDK's view of the JSON side.

use std::collections::HashMap;

use ciborium::Value;
use fake_kinesis::{CallError, EntryVerdict, FakeKinesis, Options, Outcome, Plan, Received};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const AMZ_JSON: &str = "application/x-amz-json-1.1";
const AMZ_CBOR: &str = "application/x-amz-cbor-1.1";

/// One HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct HttpAnswer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as a CBOR value, after checking the answer says it is CBOR.
    fn cbor(&self) -> Value {
        assert_eq!(self.header("content-type"), Some(AMZ_CBOR), "{self:?}");
        ciborium::from_reader(self.body.as_slice()).expect("the body is one CBOR value")
    }
}

/// POSTs `body` to the fake as `Kinesis_20131202.{operation}` with `content_type`, on a fresh
/// connection (`connection: close`, so the answer ends where the stream does). Written by hand
/// rather than with an HTTP client: the test needs to see the bytes, and nothing more.
async fn post(fake: &FakeKinesis, content_type: &str, operation: &str, body: &[u8]) -> HttpAnswer {
    let mut stream = TcpStream::connect(fake.addr()).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\n\
         x-amz-target: Kinesis_20131202.{operation}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        fake.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read answer");

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("HTTP/1.1 NNN");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // A plain Content-Length body, not chunked: the whole of it was read above.
    assert_eq!(
        headers.get("content-length").map(String::as_str),
        Some(body.len().to_string().as_str()),
        "{head}"
    );
    HttpAnswer {
        status,
        headers,
        body,
    }
}

fn cbor_body(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("a Value encodes");
    out
}

/// A CBOR map with text keys, in the given order.
fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// The member `key` of a CBOR map answer.
fn member<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .as_map()
        .expect("a CBOR map")
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no member {key:?} in {value:?}"))
}

/// The member names of a CBOR map, sorted.
fn member_names(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_map()
        .expect("a CBOR map")
        .iter()
        .map(|(k, _)| k.as_text().expect("text keys"))
        .collect();
    names.sort_unstable();
    names
}

fn as_text(value: &Value) -> &str {
    value.as_text().expect("a CBOR text string")
}

/// What the fake's first sequence numbers are: `4959`, zero padding and the counter, 56 digits.
/// What the fake wrote, as (stream, partition key, data) per record, in order.
fn stream_key_data(received: &[Received]) -> Vec<(&str, &str, &[u8])> {
    received
        .iter()
        .map(|r| {
            (
                r.stream.as_str(),
                r.partition_key.as_str(),
                r.data.as_slice(),
            )
        })
        .collect()
}

fn seq(n: u64) -> String {
    format!("4959{n:052}")
}

#[tokio::test]
async fn json_answers_are_byte_for_byte_unchanged() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_entries_when("InternalFailure", |e| {
        e.data.starts_with(b"bad")
    }));

    let put = post(
        &fake,
        AMZ_JSON,
        "PutRecord",
        br#"{"StreamName":"s","PartitionKey":"k","Data":"AP8="}"#,
    )
    .await;
    assert_eq!(put.status, 200);
    assert_eq!(put.header("content-type"), Some(AMZ_JSON));
    assert!(put.header("x-amzn-requestid").is_some());
    let want = format!(
        r#"{{"ShardId":"shardId-000000000000","SequenceNumber":"{}","EncryptionType":"NONE"}}"#,
        seq(1)
    );
    assert_eq!(String::from_utf8_lossy(&put.body), want);

    // "YmFk" is "bad": failed by the plan.
    let batch = post(
        &fake,
        AMZ_JSON,
        "PutRecords",
        br#"{"StreamARN":"arn:aws:kinesis:us-east-1:1:stream/s","Records":[{"PartitionKey":"a","Data":"b2s="},{"PartitionKey":"b","Data":"YmFk"}]}"#,
    )
    .await;
    assert_eq!(batch.status, 200);
    let want = format!(
        r#"{{"FailedRecordCount":1,"Records":[{{"ShardId":"shardId-000000000000","SequenceNumber":"{}"}},{{"ErrorCode":"InternalFailure","ErrorMessage":"injected InternalFailure"}}],"EncryptionType":"NONE"}}"#,
        seq(2)
    );
    assert_eq!(String::from_utf8_lossy(&batch.body), want);

    // An entry failure in PutRecord is the call's error; InternalFailure is a 500.
    let failed = post(
        &fake,
        AMZ_JSON,
        "PutRecord",
        br#"{"StreamName":"s","PartitionKey":"k","Data":"YmFk"}"#,
    )
    .await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.header("content-type"), Some(AMZ_JSON));
    assert_eq!(
        String::from_utf8_lossy(&failed.body),
        r#"{"__type":"InternalFailure","message":"injected InternalFailure"}"#
    );

    fake.set_plan(Plan::fail_all_calls(CallError::new(
        400,
        "LimitExceededException",
        "quote \" backslash \\ tab \t é",
    )));
    let throttled = post(
        &fake,
        AMZ_JSON,
        "PutRecords",
        br#"{"StreamName":"s","Records":[{"PartitionKey":"a","Data":"b2s="}]}"#,
    )
    .await;
    assert_eq!(throttled.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&throttled.body),
        r#"{"__type":"LimitExceededException","message":"quote \" backslash \\ tab \t é"}"#
    );

    let unknown = post(&fake, AMZ_JSON, "DescribeStream", b"{}").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&unknown.body),
        r#"{"__type":"UnknownOperationException","message":"fake-kinesis does not implement \"Kinesis_20131202.DescribeStream\""}"#
    );

    let streams = post(&fake, AMZ_JSON, "ListStreams", b"{}").await;
    assert_eq!(
        String::from_utf8_lossy(&streams.body),
        r#"{"StreamNames":[],"HasMoreStreams":false}"#
    );

    let received = fake.received();
    let got = stream_key_data(&received);
    assert_eq!(got, [("s", "k", &b"\x00\xff"[..]), ("s", "a", b"ok")]);
}

#[tokio::test]
async fn cbor_put_records_answers_in_cbor_with_raw_bytes_recorded() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::entries(|e| {
        if e.data.starts_with(b"throttle") {
            EntryVerdict::fail("ProvisionedThroughputExceededException")
        } else {
            EntryVerdict::Accept
        }
    }));
    let body = cbor_body(&map(vec![
        ("StreamName", text("s-cbor")),
        (
            "Records",
            Value::Array(vec![
                map(vec![
                    ("Data", bytes(b"\x00\xffraw")),
                    ("PartitionKey", text("k0")),
                ]),
                // Members the fake ignores, as in JSON, are allowed.
                map(vec![
                    ("Data", bytes(b"throttle-1")),
                    ("PartitionKey", text("k1")),
                    ("ExplicitHashKey", text("42")),
                ]),
                map(vec![
                    ("PartitionKey", text("k2-é")),
                    ("Data", bytes(&[0xAB; 5000])),
                ]),
            ]),
        ),
    ]));
    let answer = post(&fake, AMZ_CBOR, "PutRecords", &body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.header("x-amzn-requestid").is_some());
    let out = answer.cbor();
    assert_eq!(
        member_names(&out),
        ["EncryptionType", "FailedRecordCount", "Records"]
    );
    assert_eq!(member(&out, "FailedRecordCount"), &Value::Integer(1.into()));
    assert_eq!(as_text(member(&out, "EncryptionType")), "NONE");
    let records = member(&out, "Records").as_array().expect("an array");
    assert_eq!(records.len(), 3);
    assert_eq!(member_names(&records[0]), ["SequenceNumber", "ShardId"]);
    assert_eq!(
        as_text(member(&records[0], "ShardId")),
        fake_kinesis::SHARD_ID
    );
    assert_eq!(member_names(&records[1]), ["ErrorCode", "ErrorMessage"]);
    assert_eq!(
        as_text(member(&records[1], "ErrorCode")),
        "ProvisionedThroughputExceededException"
    );
    assert_eq!(member_names(&records[2]), ["SequenceNumber", "ShardId"]);

    let received = fake.received();
    let got = stream_key_data(&received);
    assert_eq!(
        got,
        [
            ("s-cbor", "k0", &b"\x00\xffraw"[..]),
            ("s-cbor", "k2-é", &[0xAB; 5000][..])
        ]
    );
    assert_eq!(
        received[0].seq,
        as_text(member(&records[0], "SequenceNumber"))
    );
    assert_eq!(
        received[1].seq,
        as_text(member(&records[2], "SequenceNumber"))
    );
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[1].data, b"throttle-1");
    assert_eq!(
        attempts[1].outcome,
        Outcome::Failed {
            code: "ProvisionedThroughputExceededException".to_owned()
        }
    );
    let s = fake.stats();
    assert_eq!(
        (s.put_records_calls, s.records_accepted, s.records_failed),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn cbor_put_record_answers_in_cbor_and_entry_failures_are_cbor_errors() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_first_attempts(
        b"fail-once",
        1,
        "InternalFailure",
    ));
    let put = |data: &[u8]| {
        cbor_body(&map(vec![
            (
                "StreamARN",
                text("arn:aws:kinesis:us-east-1:123:stream/s-arn"),
            ),
            ("PartitionKey", text("pk")),
            ("Data", bytes(data)),
            ("SequenceNumberForOrdering", text("1")),
        ]))
    };

    let answer = post(&fake, AMZ_CBOR, "PutRecord", &put(b"\x01\x02")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let out = answer.cbor();
    assert_eq!(
        member_names(&out),
        ["EncryptionType", "SequenceNumber", "ShardId"]
    );
    assert_eq!(as_text(member(&out, "ShardId")), fake_kinesis::SHARD_ID);
    assert_eq!(as_text(member(&out, "SequenceNumber")), seq(1));
    assert_eq!(as_text(member(&out, "EncryptionType")), "NONE");

    // A failed entry in PutRecord is the call's error: InternalFailure is a 500.
    let failed = post(&fake, AMZ_CBOR, "PutRecord", &put(b"fail-once")).await;
    assert_eq!(failed.status, 500);
    assert!(failed.header("x-amzn-requestid").is_some());
    let err = failed.cbor();
    assert_eq!(member_names(&err), ["__type", "message"]);
    assert_eq!(as_text(member(&err, "__type")), "InternalFailure");
    assert_eq!(as_text(member(&err, "message")), "injected InternalFailure");
    // The retry goes through.
    let retried = post(&fake, AMZ_CBOR, "PutRecord", &put(b"fail-once")).await;
    assert_eq!(retried.status, 200);

    let received = fake.received();
    let got = stream_key_data(&received);
    assert_eq!(
        got,
        [
            ("s-arn", "pk", &b"\x01\x02"[..]),
            ("s-arn", "pk", b"fail-once")
        ]
    );
    assert_eq!(fake.stats().put_record_calls, 3);
}

#[tokio::test]
async fn cbor_whole_call_failure_is_a_cbor_error_body() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_all_calls(CallError::throttled()));
    let body = cbor_body(&map(vec![
        ("StreamName", text("s")),
        (
            "Records",
            Value::Array(vec![map(vec![
                ("Data", bytes(b"\x00x")),
                ("PartitionKey", text("k")),
            ])]),
        ),
    ]));
    let answer = post(&fake, AMZ_CBOR, "PutRecords", &body).await;
    assert_eq!(answer.status, 400);
    assert!(answer.header("x-amzn-requestid").is_some());
    let err = answer.cbor();
    assert_eq!(
        err,
        map(vec![
            ("__type", text("ProvisionedThroughputExceededException")),
            ("message", text("Rate exceeded for shard")),
        ])
    );
    assert!(fake.received().is_empty());
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].data, b"\x00x");
    assert_eq!(
        attempts[0].outcome,
        Outcome::CallFailed {
            error_type: "ProvisionedThroughputExceededException".to_owned()
        }
    );
}

#[tokio::test]
async fn cbor_bad_requests_get_cbor_errors() {
    let fake = FakeKinesis::start().await;
    let error_of = |answer: &HttpAnswer| {
        let err = answer.cbor();
        assert_eq!(member_names(&err), ["__type", "message"]);
        as_text(member(&err, "__type")).to_owned()
    };

    // Base64 text where a byte string belongs: a client still speaking JSON's shape.
    let text_data = cbor_body(&map(vec![
        ("StreamName", text("s")),
        ("PartitionKey", text("k")),
        ("Data", text("AP8=")),
    ]));
    let answer = post(&fake, AMZ_CBOR, "PutRecord", &text_data).await;
    assert_eq!(answer.status, 400);
    assert_eq!(error_of(&answer), "SerializationException");

    let not_cbor = post(&fake, AMZ_CBOR, "PutRecords", b"{}").await;
    assert_eq!(not_cbor.status, 400);
    assert_eq!(error_of(&not_cbor), "SerializationException");

    let no_stream = cbor_body(&map(vec![(
        "Records",
        Value::Array(vec![map(vec![
            ("Data", bytes(b"x")),
            ("PartitionKey", text("k")),
        ])]),
    )]));
    let answer = post(&fake, AMZ_CBOR, "PutRecords", &no_stream).await;
    assert_eq!(answer.status, 400);
    assert_eq!(error_of(&answer), "ValidationException");

    let empty = cbor_body(&map(vec![
        ("StreamName", text("s")),
        ("Records", Value::Array(vec![])),
    ]));
    let answer = post(&fake, AMZ_CBOR, "PutRecords", &empty).await;
    assert_eq!(answer.status, 400);
    assert_eq!(error_of(&answer), "ValidationException");

    let unknown = post(&fake, AMZ_CBOR, "DescribeStream", &cbor_body(&map(vec![]))).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(error_of(&unknown), "UnknownOperationException");

    assert!(fake.received().is_empty());
    assert_eq!(fake.stats().calls_failed, 4);
}

#[tokio::test]
async fn cbor_list_shards_and_list_streams_answer_in_cbor() {
    let fake = FakeKinesis::start_with(Options {
        list_shards: true,
        ..Options::default()
    })
    .await
    .expect("start");
    let request = cbor_body(&map(vec![("StreamName", text("s"))]));

    let shards = post(&fake, AMZ_CBOR, "ListShards", &request).await;
    assert_eq!(shards.status, 200);
    let out = shards.cbor();
    let list = member(&out, "Shards").as_array().expect("an array");
    assert_eq!(list.len(), 1);
    assert_eq!(as_text(member(&list[0], "ShardId")), fake_kinesis::SHARD_ID);
    let range = member(&list[0], "HashKeyRange");
    assert_eq!(as_text(member(range, "StartingHashKey")), "0");
    assert_eq!(
        as_text(member(range, "EndingHashKey")),
        u128::MAX.to_string()
    );

    let streams = post(&fake, AMZ_CBOR, "ListStreams", &cbor_body(&map(vec![]))).await;
    assert_eq!(streams.status, 200);
    let out = streams.cbor();
    assert_eq!(member(&out, "StreamNames"), &Value::Array(vec![]));
    assert_eq!(member(&out, "HasMoreStreams"), &Value::Bool(false));
    assert_eq!(fake.stats().list_streams_calls, 1);
}

#[tokio::test]
async fn cbor_content_type_may_carry_parameters_and_any_case() {
    let fake = FakeKinesis::start().await;
    let body = cbor_body(&map(vec![
        ("StreamName", text("s")),
        ("PartitionKey", text("k")),
        ("Data", bytes(b"x")),
    ]));
    let answer = post(
        &fake,
        "Application/X-Amz-Cbor-1.1; charset=binary",
        "PutRecord",
        &body,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        as_text(member(&answer.cbor(), "ShardId")),
        fake_kinesis::SHARD_ID
    );
}

#[tokio::test]
async fn count_only_accepts_cbor_without_storing() {
    let fake = FakeKinesis::start_with(Options {
        count_only: true,
        ..Options::default()
    })
    .await
    .expect("start");
    let records = (0..10)
        .map(|i| {
            map(vec![
                ("Data", bytes(format!("r{i}").as_bytes())),
                ("PartitionKey", text("k")),
            ])
        })
        .collect();
    let body = cbor_body(&map(vec![
        ("StreamName", text("s")),
        ("Records", Value::Array(records)),
    ]));
    let answer = post(&fake, AMZ_CBOR, "PutRecords", &body).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        member(&answer.cbor(), "FailedRecordCount"),
        &Value::Integer(0.into())
    );
    let s = fake.stats();
    assert_eq!((s.put_records_calls, s.records_accepted), (1, 10));
    assert!(fake.received().is_empty() && fake.attempts().is_empty());
}
