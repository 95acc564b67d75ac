//! moto's server (tools/moto, every package pinned) as a second Kinesis implementation beside the
//! emulator: the AWS mock that many Python teams, and the seed's own tests, write against. It
//! reads only JSON (a CBOR request gets a 500 and a Python traceback), so it is where
//! `kinesis.protocol: auto` and a truthful readiness show: the default configuration must write
//! to it, and an explicit `cbor` must not be ready (src/kinesis/lean/protocol.rs).

use std::sync::OnceLock;
use std::time::Duration;

use kinesis_writer::config::{Settings, WireProtocol};
use serde_json::Value;

use crate::helpers::{
    TestApp, answering, assert_problem, eventually, free_ports, fresh_stream, pinned_venv,
    read_stream, spawn_app_on, spawn_watched, test_loader,
};

static MOTO: OnceLock<String> = OnceLock::new();

/// moto's endpoint, `http://127.0.0.1:PORT`: its venv created and the server started on first
/// use, SIGKILLed when this test process ends.
fn moto_endpoint() -> &'static str {
    MOTO.get_or_init(|| {
        let server = pinned_venv("tools/moto").join("bin/moto_server");
        for _ in 0..3 {
            let [port] = free_ports();
            let log = std::env::temp_dir().join(format!("kinesis-writer-moto-{port}.log"));
            let pid = std::env::temp_dir().join(format!("kinesis-writer-moto-{port}.pid"));
            let _ = std::fs::remove_file(&pid);
            spawn_watched(
                &format!("'{}' -H 127.0.0.1 -p {port}", server.display()),
                &[],
                &pid,
                &log,
            );
            if answering(port, &pid, &log, "moto") {
                return format!("http://127.0.0.1:{port}");
            }
        }
        panic!("moto died at start on three free ports")
    })
}

/// The service against moto, with a fresh one-shard stream there, and moto's own client.
async fn moto_app(tweak: impl FnOnce(&mut Settings)) -> (TestApp, aws_sdk_kinesis::Client) {
    let endpoint = moto_endpoint();
    let client = aws_sdk_kinesis::Client::new(&test_loader().endpoint_url(endpoint).load().await);
    let stream = fresh_stream(&client).await;
    let mut app = spawn_app_on(endpoint, |s, _| tweak(s)).await;
    app.stream = stream;
    (app, client)
}

#[tokio::test]
async fn the_default_configuration_writes_to_moto() {
    let (app, client) = moto_app(|_| {}).await;
    eventually("ready against moto", Duration::from_secs(20), || async {
        (app.get("/health/ready").await.status() == 200).then_some(())
    })
    .await;

    let single = app.post_json("partition_key=one", r#"{"n": 1}"#).await;
    assert_eq!(single.status(), 200);
    let single: Value = single.json().await.unwrap();
    assert!(single["SequenceNumber"].is_string(), "{single}");

    let batch = app
        .post_json("record_per_entry=true&partition_key=two", r#"["a", "b"]"#)
        .await;
    assert_eq!(batch.status(), 200);
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch["FailedRecordCount"], 0, "{batch}");

    let ndjson = app
        .post(
            "partition_key=three",
            &[("content-type", "application/x-ndjson")],
            "{\"n\": 2}\n[3]\n",
        )
        .await;
    assert_eq!(ndjson.status(), 200);

    let mut landed: Vec<(String, String)> = read_stream(&client, &app.stream)
        .await
        .into_iter()
        .map(|r| (r.partition_key, String::from_utf8(r.data).unwrap()))
        .collect();
    landed.sort();
    let want = [
        ("one", r#"{"n": 1}"#),
        ("three", "[3]"),
        ("three", r#"{"n": 2}"#),
        ("two", "a"),
        ("two", "b"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, d)| ((*k).to_owned(), (*d).to_owned()))
        .collect();
    assert_eq!(landed, want);

    let missing = app
        .post_to(
            "no-such-stream-here",
            "",
            &[("content-type", "application/json")],
            "1",
        )
        .await;
    assert_problem(missing, 404, "stream_not_found").await;
}

#[tokio::test]
async fn explicit_cbor_against_moto_is_not_ready_and_says_why() {
    let (app, _) = moto_app(|s| s.kinesis.protocol = WireProtocol::Cbor).await;
    let body = eventually(
        "not ready, naming the protocol",
        Duration::from_secs(20),
        || async {
            let ready = app.get("/health/ready").await;
            if ready.status() != 503 {
                return None;
            }
            let body = assert_problem(ready, 503, "not_ready").await;
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("wire protocol"))
                .then_some(body)
        },
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("kinesis.protocol"),
        "{body}"
    );
}
