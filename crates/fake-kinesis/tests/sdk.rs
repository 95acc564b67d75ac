//! Drives the fake with the real `aws-sdk-kinesis` client: what the service will see.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::RequestId;
use aws_sdk_kinesis::operation::put_record::{PutRecordError, PutRecordOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use fake_kinesis::{CallError, FakeKinesis, Options, Outcome, Plan};

async fn client(fake: &FakeKinesis, retry: RetryConfig) -> Client {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(fake.endpoint())
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(500))
                .build(),
        )
        .load()
        .await;
    Client::new(&conf)
}

/// PutRecord of `data` under key "k" to stream "s".
async fn put_one(
    c: &Client,
    data: &[u8],
) -> Result<PutRecordOutput, SdkError<PutRecordError, HttpResponse>> {
    c.put_record()
        .stream_name("s")
        .partition_key("k")
        .data(Blob::new(data))
        .send()
        .await
}

fn entry(data: &[u8], key: &str) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(data))
        .partition_key(key)
        .build()
        .expect("data and key set")
}

#[tokio::test]
async fn put_record_is_written_with_exact_bytes() {
    let fake = FakeKinesis::start().await;
    let c = client(&fake, RetryConfig::disabled()).await;
    let data = b"\x00\xffraw\n bytes".to_vec();
    let out = c
        .put_record()
        .stream_name("s1")
        .partition_key("pk-é")
        .data(Blob::new(data.clone()))
        .send()
        .await
        .expect("put_record");
    assert_eq!(out.shard_id(), fake_kinesis::SHARD_ID);
    assert!(out.request_id().is_some_and(|id| !id.is_empty()));
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].stream, "s1");
    assert_eq!(got[0].partition_key, "pk-é");
    assert_eq!(got[0].data, data);
    assert_eq!(got[0].seq, out.sequence_number());
    assert_eq!(fake.calls(), 1);
    assert_eq!(fake.stats().put_record_calls, 1);
}

#[tokio::test]
async fn put_records_partial_failures_come_back_at_their_indexes() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::entries(|e| {
        if e.data.starts_with(b"throttle") {
            fake_kinesis::EntryVerdict::fail("ProvisionedThroughputExceededException")
        } else if e.data.starts_with(b"internal") {
            fake_kinesis::EntryVerdict::fail("InternalFailure")
        } else {
            fake_kinesis::EntryVerdict::Accept
        }
    }));
    let c = client(&fake, RetryConfig::disabled()).await;
    let records = vec![
        entry(b"ok-0", "k0"),
        entry(b"throttle-1", "k1"),
        entry(b"ok-2", "k2"),
        entry(b"internal-3", "k3"),
        entry(b"ok-4", "k4"),
    ];
    let out = c
        .put_records()
        .stream_name("s2")
        .set_records(Some(records))
        .send()
        .await
        .expect("put_records");
    assert_eq!(out.failed_record_count(), Some(2));
    let codes: Vec<Option<&str>> = out.records().iter().map(|r| r.error_code()).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("ProvisionedThroughputExceededException"),
            None,
            Some("InternalFailure"),
            None
        ]
    );
    assert!(out.records()[1].error_message().is_some());
    assert!(out.records()[0].sequence_number().is_some());
    // Only the accepted ones were written, with their exact bytes and keys, in order.
    let got = fake.received();
    let written: Vec<(&str, &[u8])> = got
        .iter()
        .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
        .collect();
    assert_eq!(
        written,
        [("k0", &b"ok-0"[..]), ("k2", b"ok-2"), ("k4", b"ok-4")]
    );
    assert!(got.iter().all(|r| r.stream == "s2"));
    // Sequence numbers increase.
    assert!(got[0].seq < got[1].seq && got[1].seq < got[2].seq);
    // Every entry is in attempts, in arrival order.
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 5);
    assert_eq!(
        attempts[3].outcome,
        Outcome::Failed {
            code: "InternalFailure".to_owned()
        }
    );
    let s = fake.stats();
    assert_eq!(
        (s.records_seen, s.records_accepted, s.records_failed),
        (5, 3, 2)
    );
}

#[tokio::test]
async fn fail_first_attempts_counts_per_data() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_first_attempts(
        b"fail-twice",
        2,
        "ProvisionedThroughputExceededException",
    ));
    let c = client(&fake, RetryConfig::disabled()).await;
    let mut failed_per_try = Vec::new();
    for _ in 0..3 {
        let out = c
            .put_records()
            .stream_name("s")
            .records(entry(b"a fail-twice record", "k"))
            .records(entry(b"plain", "k"))
            .send()
            .await
            .expect("put_records");
        failed_per_try.push(out.failed_record_count().unwrap_or_default());
    }
    assert_eq!(failed_per_try, [1, 1, 0]);
    let got = fake.received();
    assert_eq!(
        got.iter()
            .filter(|r| r.data == b"a fail-twice record")
            .count(),
        1
    );
    assert_eq!(got.iter().filter(|r| r.data == b"plain").count(), 3);
    // A record failing in PutRecord fails the call, with the entry's code.
    fake.reset();
    let err = put_one(&c, b"fail-twice")
        .await
        .expect_err("first attempt fails");
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
}

#[tokio::test]
async fn whole_call_throttling_is_an_sdk_error_with_its_code() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_all_calls(CallError::throttled()));
    let c = client(&fake, RetryConfig::disabled()).await;
    let err = c
        .put_records()
        .stream_name("s")
        .records(entry(b"x", "k"))
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
    let service_err = err.into_service_error();
    assert!(service_err.is_provisioned_throughput_exceeded_exception());
    assert!(fake.received().is_empty());
    assert_eq!(fake.attempts().len(), 1);

    for (error, code) in [
        (CallError::limit_exceeded(), "LimitExceededException"),
        (CallError::internal_failure(), "InternalFailure"),
        (CallError::resource_not_found(), "ResourceNotFoundException"),
    ] {
        fake.set_plan(Plan::fail_all_calls(error));
        let err = put_one(&c, b"x").await.expect_err("fails");
        assert_eq!(err.code(), Some(code));
    }
}

#[tokio::test]
async fn sdk_retries_a_throttled_first_call() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::fail_first_calls(1, CallError::throttled()));
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1));
    let c = client(&fake, retry).await;
    put_one(&c, b"x").await.expect("second attempt succeeds");
    assert_eq!(fake.calls(), 2);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn delayed_answer_times_the_client_out() {
    let fake = FakeKinesis::start().await;
    fake.set_plan(Plan::delay_first_calls(1, Duration::from_secs(2)));
    let c = client(&fake, RetryConfig::disabled()).await;
    let err = put_one(&c, b"x")
        .await
        .expect_err("attempt timeout is 500 ms");
    assert!(
        matches!(err, aws_sdk_kinesis::error::SdkError::TimeoutError(_)),
        "{err:?}"
    );
    // The next call is answered at once.
    put_one(&c, b"y").await.expect("answered");
}

#[tokio::test]
async fn random_entry_failures_are_seeded() {
    async fn run(seed: u64) -> Vec<Option<String>> {
        let fake = FakeKinesis::start().await;
        fake.set_plan(Plan::fail_entries_randomly(0.5, seed, "InternalFailure"));
        let c = client(&fake, RetryConfig::disabled()).await;
        let records = (0..50)
            .map(|i| entry(format!("r{i}").as_bytes(), "k"))
            .collect();
        let out = c
            .put_records()
            .stream_name("s")
            .set_records(Some(records))
            .send()
            .await
            .expect("put_records");
        out.records()
            .iter()
            .map(|r| r.error_code().map(str::to_owned))
            .collect()
    }
    let a = run(7).await;
    assert_eq!(a, run(7).await);
    let failed = a.iter().filter(|c| c.is_some()).count();
    assert!((10..=40).contains(&failed), "{failed} of 50 failed");
}

#[tokio::test]
async fn count_only_counts_without_storing() {
    let fake = FakeKinesis::start_with(Options {
        count_only: true,
        ..Options::default()
    })
    .await
    .expect("start");
    let c = client(&fake, RetryConfig::disabled()).await;
    let records = (0..10)
        .map(|i| entry(format!("r{i}").as_bytes(), "k"))
        .collect();
    c.put_records()
        .stream_name("s")
        .set_records(Some(records))
        .send()
        .await
        .expect("ok");
    let s = fake.stats();
    assert_eq!((s.put_records_calls, s.records_accepted), (1, 10));
    assert!(fake.received().is_empty());
    fake.reset();
    assert_eq!(fake.stats(), fake_kinesis::Stats::default());
}

#[tokio::test]
async fn list_streams_answers_for_readiness() {
    let fake = FakeKinesis::start().await;
    let c = client(&fake, RetryConfig::disabled()).await;
    let out = c.list_streams().send().await.expect("list_streams");
    assert!(out.stream_names().is_empty());
    assert!(!out.has_more_streams());
    assert_eq!(fake.stats().list_streams_calls, 1);
}
