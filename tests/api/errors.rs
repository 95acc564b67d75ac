//! Error answers: each `code` of docs/api.md#error-codes that a request or the emulator can
//! produce, and the transport failures (Kinesis down, Kinesis silent, no credentials) with real
//! sockets.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use kinesis_writer::config::PublisherKind;
use kinesis_writer::domain::{PutRecordOutcome, PutRecordsOutcome, Record, StreamName};
use kinesis_writer::kinesis::{KinesisPublisher, ProbeResult, PublishError};

use crate::helpers::{
    assert_detail_contains, assert_problem, closed_endpoint, eventually, raise_record_limit, serve,
    spawn_app, spawn_app_on, spawn_app_with, test_settings,
};

#[tokio::test]
async fn malformed_requests_get_400_415_and_422_codes_and_nothing_lands() {
    let app = spawn_app().await;
    // (query, content type, body, status, code)
    type Case<'a> = (&'a str, &'a str, &'a [u8], u16, &'a str);
    let cases: &[Case<'_>] = &[
        (
            "record_per_entry=True",
            "application/json",
            b"[1]",
            400,
            "invalid_query_parameter",
        ),
        (
            "record_per_entry=1",
            "application/json",
            b"[1]",
            400,
            "invalid_query_parameter",
        ),
        (
            "record_per_entries=true",
            "application/json",
            b"[1]",
            400,
            "invalid_query_parameter",
        ),
        (
            "partition_key=a&partition_key=b",
            "application/json",
            b"1",
            400,
            "invalid_query_parameter",
        ),
        ("", "application/json", b"{not json", 400, "invalid_body"),
        ("", "application/json", b"NaN", 400, "invalid_body"),
        (
            "",
            "application/json",
            b"[1, Infinity]",
            400,
            "invalid_body",
        ),
        ("", "application/json", b"", 400, "invalid_body"),
        ("", "application/json", b"\"\xff\"", 400, "invalid_body"),
        ("", "text/plain", b"\xff\xfe", 400, "invalid_body"),
        (
            "record_per_entry=true",
            "application/json",
            br#"{"a": 1}"#,
            422,
            "data_must_be_list",
        ),
        (
            "record_per_entry=true",
            "application/json",
            b"[]",
            422,
            "empty_batch",
        ),
        (
            "",
            "application/x-www-form-urlencoded",
            b"a=b",
            415,
            "unsupported_media_type",
        ),
        (
            "",
            "application/xml",
            b"<a/>",
            415,
            "unsupported_media_type",
        ),
        (
            "record_per_entry=true",
            "text/plain",
            b"[1]",
            415,
            "unsupported_media_type",
        ),
        (
            "record_per_entry=true",
            "application/octet-stream",
            b"[1]",
            415,
            "unsupported_media_type",
        ),
    ];
    for (query, ct, body, status, code) in cases {
        let response = app
            .post(query, &[("content-type", ct)], body.to_vec())
            .await;
        assert_problem(response, *status, code).await;
    }
    assert!(app.landed().await.is_empty());
}

#[tokio::test]
async fn curls_default_content_type_is_told_to_send_json() {
    let app = spawn_app().await;

    let response = app
        .post(
            "",
            &[("content-type", "application/x-www-form-urlencoded")],
            "a=b",
        )
        .await;

    let body = assert_problem(response, 415, "unsupported_media_type").await;
    assert_detail_contains(&body, "application/json");
}

#[tokio::test]
async fn invalid_stream_names_are_refused_without_a_call() {
    let app = spawn_app().await;
    for stream in ["bad%20name", "semi;colon", &"x".repeat(129), "%C3%A9"] {
        let response = app.post_to(stream, "", &[], "1").await;
        assert_problem(response, 400, "invalid_stream_name").await;
    }
}

#[tokio::test]
async fn a_missing_stream_is_404_stream_not_found() {
    let app = spawn_app().await;

    let response = app.post_to("no-such-stream", "", &[], "1").await;

    let body = assert_problem(response, 404, "stream_not_found").await;
    assert_eq!(body["error_class"], "UpstreamError");
    // Which stream, not which account: Kinesis' own message carries the stream's ARN.
    assert_eq!(body["detail"], "Stream no-such-stream not found");
}

#[tokio::test]
async fn what_kinesis_itself_refuses_is_422_kinesis_rejected() {
    // Configuration says 2 MiB, but the stream itself was left at 1 MiB: Kinesis refuses.
    let app = spawn_app_with(|s, stream| raise_record_limit(s, stream, 2 * 1024 * 1024)).await;

    let response = app
        .post(
            "partition_key=k",
            &[("content-type", "application/octet-stream")],
            vec![b'q'; 1024 * 1024 + 10],
        )
        .await;

    let body = assert_problem(response, 422, "kinesis_rejected").await;
    assert_detail_contains(&body, "InvalidArgumentException");
    assert!(app.landed().await.is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_bodies() {
    let app = spawn_app().await;

    let r1 = app.get("/nope").await;
    let r2 = app.http.get(app.records_url("")).send().await.unwrap();

    assert_problem(r1, 404, "not_found").await;
    assert_problem(r2, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn kinesis_unreachable_is_503_with_retry_after() {
    // A port nobody listens on: connection refused, as when Kinesis or the emulator is down.
    let app = spawn_app_on(&closed_endpoint(), |_, _| {}).await;

    let response = app.post("", &[], "1").await;

    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body = assert_problem(response, 503, "upstream_unavailable").await;
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "5xx must not echo internals: {body}"
    );
}

#[tokio::test]
async fn a_silent_kinesis_is_504_within_the_configured_timeout() {
    // Accepts connections and never answers: the emulator cannot be made to hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_on(&format!("http://127.0.0.1:{port}"), |s, _| {
        s.kinesis.attempt_timeout_ms = 300;
        s.kinesis.operation_timeout_ms = 1000;
        s.kinesis.max_attempts = 1;
    })
    .await;

    let started = Instant::now();
    let response = app.post("", &[], "1").await;

    assert_problem(response, 504, "upstream_timeout").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// A credentials provider that finds nothing, as on a host with no AWS credentials at all.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no credentials in this test",
        )))
    }
}

/// Issue #20 item 3: without credentials Kinesis is never called, so the 502 says that the
/// service has nothing to sign with (no internal detail: readiness says as much), not that
/// "Kinesis refused the service's request". On both publishers.
#[tokio::test]
async fn no_credentials_is_502_upstream_error_that_says_so_and_not_ready() {
    for publisher in [PublisherKind::Lean, PublisherKind::Sdk] {
        let mut settings = test_settings(crate::helpers::emulator_endpoint());
        settings.kinesis.publisher = publisher;
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(NoCredentials);
        let app = serve(
            kinesis_writer::startup::Application::build_with_aws(settings, loader)
                .await
                .unwrap(),
        );

        let response = app.post("", &[], "1").await;
        let body = assert_problem(response, 502, "upstream_error").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("no AWS credentials") && !detail.contains("refused"),
            "{publisher:?}: {body}"
        );
        assert!(!detail.contains("credentials in this test"), "{body}");

        // The first probe's answer replaces "not probed yet" within a few hundred ms.
        let app = &app;
        eventually(
            "readiness says no AWS credentials found",
            Duration::from_secs(10),
            || async move {
                let body = assert_problem(app.get("/health/ready").await, 503, "not_ready").await;
                (body["detail"] == "not ready: no AWS credentials found").then_some(())
            },
        )
        .await;
    }
}

/// A publisher whose every call panics, standing in for a bug anywhere below the handler.
#[derive(Debug)]
struct Panicking;

#[async_trait::async_trait]
impl KinesisPublisher for Panicking {
    async fn put_record(
        &self,
        _: &StreamName,
        _: &Record,
        _: Option<&str>,
    ) -> Result<PutRecordOutcome, PublishError> {
        panic!("the publisher broke: invariant 42 violated")
    }

    async fn put_records(
        &self,
        _: &StreamName,
        _: &[Record],
    ) -> Result<PutRecordsOutcome, PublishError> {
        panic!("the publisher broke: invariant 42 violated")
    }

    async fn probe(&self) -> ProbeResult {
        ProbeResult::Answered
    }
}

/// A log sink for one test: the subscriber is this thread's only, and the current-thread runtime
/// runs the server on this thread too.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_is_a_500_problem_and_its_message_is_logged_once() {
    let log = CapturedLog::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = serve(
        kinesis_writer::startup::Application::build_with_publisher(
            test_settings(&closed_endpoint()),
            std::sync::Arc::new(Panicking),
        )
        .await
        .unwrap(),
    );

    let response = app.post("", &[], "1").await;
    let body = assert_problem(response, 500, "internal_error").await;
    assert_eq!(body["error_class"], "InternalError");
    assert!(!body.to_string().contains("invariant 42"), "{body}");

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let errors: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert_eq!(errors[0]["fields"]["code"], "internal_error");
    assert!(
        errors[0]["fields"]["detail"]
            .as_str()
            .unwrap()
            .contains("the publisher broke: invariant 42 violated"),
        "{text}"
    );
}
