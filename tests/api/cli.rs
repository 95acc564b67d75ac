//! The binary as scripts and containers run it: --help/--version without AWS, a clear refusal
//! without a region, SIGTERM draining to exit 0, configuration from the environment alone, and
//! what it logs when it has no credentials.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{
    Emulator, assert_problem, binary, closed_endpoint, config_dir, control_client,
    emulator_endpoint, eventually, fresh_stream, read_stream, test_loader,
};

/// A command with no AWS anything in its environment (and no instance metadata look-ups).
fn bare() -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("APP_CONFIG_DIR", config_dir());
    cmd
}

#[test]
fn help_and_version_work_without_aws() {
    let help = bare().arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("APP_<SECTION>__<KEY>"));
    let version = bare().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("kinesis-writer {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn no_region_refuses_to_start_with_a_clear_message() {
    let out = bare()
        .env("APP_ENVIRONMENT", "production")
        .env("APP_SERVER__PORT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("No AWS region configured"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_configuration_mistake_is_one_clear_line_without_a_backtrace() {
    // The digest is a placeholder, as someone pasting an example would leave it.
    let out = bare()
        .env("APP_SERVER__PORT", "0")
        .env("RUST_BACKTRACE", "1")
        .env(
            "APP_AUTH__KEYS",
            r#"[{"id": "ci", "sha256": "<sha256 of your key>", "streams": "*"}]"#,
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {stderr}");
    assert!(
        lines[0].starts_with("kinesis-writer: ") && lines[0].contains("auth.keys[ci].sha256"),
        "stderr: {stderr}"
    );
}

/// The binary running as a server, with its JSON log collected line by line.
struct Server {
    child: KillOnDrop,
    port: u16,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Server {
    /// Starts `cmd` (JSON logs, a free port) and waits for its "Listening" line.
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("APP_SERVER__PORT", "0")
            .env("APP_TELEMETRY__FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let child = KillOnDrop(child);
        let log = Arc::new(Mutex::new(Vec::new()));
        // Keep draining the pipe so the server never writes into a closed one.
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                if v["message"] == "Listening" {
                    let _ = tx.send(v["port"].as_u64().unwrap());
                }
                lines.lock().unwrap().push(v);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a Listening log line");
        Self {
            child,
            port: u16::try_from(port).unwrap(),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `/health/ready` answers 200.
    async fn wait_ready(&self) {
        let url = &self.url("/health/ready");
        eventually("the binary ready", Duration::from_secs(20), || async move {
            let ready = reqwest::get(url).await.unwrap();
            (ready.status() == 200).then_some(())
        })
        .await;
    }

    /// The log lines so far at `level` (`ERROR`, `WARN`, ...).
    fn logged(&self, level: &str) -> Vec<serde_json::Value> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|l| l["level"] == level)
            .cloned()
            .collect()
    }
}

/// `bare()` plus test credentials for the emulator.
fn with_test_credentials() -> Command {
    let mut cmd = bare();
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    cmd
}

#[tokio::test]
async fn sigterm_stops_the_server_with_exit_0() {
    let kinesis = control_client().await;
    let stream = fresh_stream(&kinesis).await;
    let mut cmd = with_test_credentials();
    cmd.env("APP_KINESIS__ENDPOINT_URL", emulator_endpoint());
    let mut server = Server::start(cmd);
    let response = reqwest::Client::new()
        .post(server.url(&format!("/streams/{stream}/records")))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    Command::new("kill")
        .args(["-TERM", &server.child.0.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

/// docs/configuration.md#aws-variables: `AWS_ENDPOINT_URL_KINESIS` beats the endpoint
/// `config/local.yaml` ships, so a LocalStack user (or a second emulator) is written to, not the
/// file's 127.0.0.1:4568.
#[tokio::test]
async fn the_aws_endpoint_variable_beats_the_local_profile() {
    let second = Emulator::start(&["elsewhere"]);
    let mut cmd = with_test_credentials();
    cmd.env("APP_ENVIRONMENT", "local")
        .env("AWS_ENDPOINT_URL_KINESIS", second.endpoint());
    let server = Server::start(cmd);
    server.wait_ready().await;
    let response = reqwest::Client::new()
        .post(server.url("/streams/elsewhere/records?partition_key=k"))
        .header("content-type", "text/plain")
        .body("to the second emulator")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let config = test_loader().endpoint_url(second.endpoint()).load().await;
    let landed = read_stream(&aws_sdk_kinesis::Client::new(&config), "elsewhere").await;
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].data, b"to the second emulator");
    assert_eq!(landed[0].partition_key, "k");
    second.kill();
}

/// Every list setting from one environment variable, with no config file edited: the production
/// profile with `APP_STREAMS__ALLOWED` (a comma list), `APP_AUTH__KEYS` and `APP_LIMITS__STREAMS`
/// (JSON), and `create-streams` with `APP_DEV__CREATE_STREAMS` (`name:shards`).
#[tokio::test]
async fn lists_come_from_the_environment() {
    let name = format!("env-{}", uuid::Uuid::new_v4().simple());
    let created = with_test_credentials()
        .arg("create-streams")
        .env("AWS_REGION", "us-east-1")
        .env("APP_KINESIS__ENDPOINT_URL", emulator_endpoint())
        .env("APP_DEV__CREATE_STREAMS", format!("{name}:2"))
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let kinesis = control_client().await;
    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(shards.shards().len(), 2);

    let keys = format!(
        r#"[{{"id": "env", "sha256": "{}", "streams": ["*"]}}]"#,
        kinesis_writer::access::key_digest_hex("env-key")
    );
    let limits = format!(r#"[{{"name": "{name}", "max_record_size_bytes": 10}}]"#);
    let mut cmd = with_test_credentials();
    cmd.env("APP_ENVIRONMENT", "production")
        .env("APP_SERVER__HOST", "127.0.0.1")
        .env("AWS_REGION", "us-east-1")
        .env("APP_KINESIS__ENDPOINT_URL", emulator_endpoint())
        .env("APP_STREAMS__ALLOWED", format!("{name}, other"))
        .env("APP_AUTH__KEYS", keys)
        .env("APP_LIMITS__STREAMS", limits);
    let server = Server::start(cmd);
    server.wait_ready().await;
    let http = reqwest::Client::new();
    let post = |stream: &str, body: &'static str| {
        http.post(server.url(&format!("/streams/{stream}/records?partition_key=k")))
            .header("x-api-key", "env-key")
            .header("content-type", "text/plain")
            .body(body)
            .send()
    };
    assert_eq!(post(&name, "12345678").await.unwrap().status(), 200);
    // 8 data bytes + 1 key byte passed; 10 + 1 is over the stream's own limit from the variable.
    let too_large = post(&name, "1234567890").await.unwrap();
    assert_eq!(too_large.status(), 422);
    let not_listed = post("not-listed", "x").await.unwrap();
    assert_eq!(not_listed.status(), 404);
    let landed = read_stream(&kinesis, &name).await;
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].data, b"12345678");
}

/// No credentials anywhere (production profile, instance metadata off): the cause is logged once
/// at ERROR, not at every probe, nothing at WARN, and `/health/ready` says why.
#[tokio::test]
async fn missing_credentials_are_logged_once_and_readiness_says_why() {
    let mut cmd = bare();
    cmd.env("APP_ENVIRONMENT", "production")
        .env("APP_SERVER__HOST", "127.0.0.1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_KINESIS", closed_endpoint())
        .env("APP_KINESIS__READINESS_INTERVAL_MS", "300")
        .env("APP_METRICS__REQUIRE_AUTH", "false");
    let server = Server::start(cmd);
    // Not a sleep and a hope: wait until the service says it has probed five times.
    let probes = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with("kinesis_readiness_probes_total{result=\"not_ready\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    eventually("five readiness probes", Duration::from_secs(20), || async {
        let metrics = reqwest::get(server.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (probes(&metrics) >= 5).then_some(())
    })
    .await;
    let ready = reqwest::get(server.url("/health/ready")).await.unwrap();
    let body = assert_problem(ready, 503, "not_ready").await;
    assert_eq!(body["detail"], "not ready: no AWS credentials found");

    let not_ready: Vec<_> = server
        .logged("ERROR")
        .into_iter()
        .filter(|l| l["message"] == "Not ready: Kinesis cannot be called")
        .collect();
    assert_eq!(not_ready.len(), 1, "{not_ready:?}");
    assert_eq!(not_ready[0]["cause"], "no AWS credentials found");
    assert_eq!(server.logged("WARN"), Vec::<serde_json::Value>::new());
}

/// Issue #20 item 3: the binary as `make run` starts it (local profile), with credentials and
/// nothing listening at the endpoint: the log line of the failed write names the endpoint and
/// says that `make run` starts the emulator; the answer's body names neither. Both publishers.
#[tokio::test]
async fn an_unreachable_endpoint_is_named_in_the_log_and_not_in_the_answer() {
    for publisher in ["lean", "sdk"] {
        let endpoint = closed_endpoint();
        let mut cmd = with_test_credentials();
        cmd.env("APP_KINESIS__ENDPOINT_URL", &endpoint)
            .env("APP_KINESIS__PUBLISHER", publisher)
            .env("APP_DELIVERY__MAX_ATTEMPTS", "1");
        let server = Server::start(cmd);

        let response = reqwest::Client::new()
            .post(server.url("/streams/s/records"))
            .header("content-type", "application/json")
            .body("1")
            .send()
            .await
            .unwrap();

        let body = assert_problem(response, 503, "upstream_unavailable").await;
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "{publisher}: {body}"
        );
        let server = &server;
        let line = eventually(
            "the failed write's log line",
            Duration::from_secs(5),
            || {
                let found = server
                    .logged("WARN")
                    .into_iter()
                    .find(|l| l["code"] == "upstream_unavailable");
                async move { found }
            },
        )
        .await;
        let detail = line["detail"].as_str().unwrap();
        assert!(
            detail.contains(&endpoint) && detail.contains("`make run` starts one"),
            "{publisher}: {detail}"
        );
    }
}

/// The peak resident set (`VmHWM`) of process `pid` since start or the last [`reset_peak`], and
/// its resident set now (`VmRSS`), in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
            / 1024.0
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets `pid`'s peak resident set to its current one (proc(5), `clear_refs`).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// Issue #22 item 1: a 16 MiB body of 8.4 M tiny records took 502 MiB (three at once 1,084 MiB)
/// and was refused only after every record was built. Measured on the binary (RSS is per
/// process), phase by phase: what each phase adds to the resident set at its peak stays within a
/// few times the bodies it holds.
#[tokio::test]
async fn wide_bodies_are_refused_while_reading_and_peak_memory_stays_bounded() {
    const BODY_CAP: usize = 16 * 1024 * 1024; // limits.body_limit_bytes, the default
    const MIB: f64 = 1024.0 * 1024.0;
    let mut cmd = with_test_credentials();
    cmd.env("APP_KINESIS__ENDPOINT_URL", closed_endpoint())
        .env("APP_DELIVERY__MAX_ATTEMPTS", "1");
    let server = Server::start(cmd);
    let pid = server.child.0.id();
    let http = reqwest::Client::new();
    let post = |query: &str, content_type: &'static str, body: Vec<u8>| {
        let request = http
            .post(server.url(&format!("/streams/s/records?{query}")))
            .header("content-type", content_type)
            .body(body);
        async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            (response, started.elapsed())
        }
    };
    // What a phase added at its peak over the resident set before it, in MiB.
    let phase = || {
        let (_, before) = rss_mib(pid);
        reset_peak(pid);
        move || rss_mib(pid).0 - before
    };
    // `[0,0,…,0]` and `0\n0\n…`: n records in 2n+1 and 2n bytes, just under the cap.
    let n = (BODY_CAP - 1) / 2;
    let array = || [b"[", "0,".repeat(n - 1).as_bytes(), b"0]"].concat();
    let too_many = |limit: usize, actual: usize| {
        move |body: serde_json::Value| {
            assert_eq!(
                (body["limit"].as_u64(), body["actual"].as_u64()),
                (Some(limit as u64), Some(actual as u64))
            );
        }
    };

    let grew = phase();
    let (wide, array_took) = post("record_per_entry=true", "application/json", array()).await;
    too_many(500, n)(assert_problem(wide, 422, "too_many_records").await);
    let array_mib = grew();

    let grew = phase();
    let ndjson = "0\n".repeat(n).into_bytes();
    let (lines, ndjson_took) = post("", "application/x-ndjson", ndjson).await;
    too_many(500, n)(assert_problem(lines, 422, "too_many_records").await);
    let ndjson_mib = grew();

    let grew = phase();
    let three = futures_util::future::join_all(
        (0..3).map(|_| post("record_per_entry=true", "application/json", array())),
    )
    .await;
    for (response, _) in three {
        too_many(500, n)(assert_problem(response, 422, "too_many_records").await);
    }
    let three_mib = grew();

    // With split on, the count limit gives way to one record per 64 bytes of body: a body at
    // that limit is taken (and fails at the closed endpoint), a wide array is still refused.
    let grew = phase();
    let records = BODY_CAP / 64 - 1;
    let record = format!("\"{}\"", "x".repeat(61));
    let split_body = format!("[{}]", vec![record; records].join(",")).into_bytes();
    assert_eq!(split_body.len() / 64, records);
    let split_bytes = split_body.len() as f64 / MIB;
    let query = "record_per_entry=true&split=true";
    let (split, split_took) = post(query, "application/json", split_body).await;
    assert_problem(split, 503, "upstream_unavailable").await;
    let split_mib = grew();
    let (wide_split, _) = post(query, "application/json", array()).await;
    too_many((2 * n + 1) / 64, n)(assert_problem(wide_split, 422, "too_many_records").await);

    eprintln!(
        "peak RSS added: wide array {array_mib:.0} MiB ({array_took:?}), wide NDJSON \
         {ndjson_mib:.0} MiB ({ndjson_took:?}), three wide arrays at once {three_mib:.0} MiB, \
         {records} split records in {split_bytes:.0} MiB {split_mib:.0} MiB ({split_took:?})"
    );
    // A body is held once, plus up to as much again while it is read; nothing per record.
    let body = BODY_CAP as f64 / MIB;
    assert!(array_mib < 3.0 * body, "wide array: {array_mib:.0} MiB");
    assert!(ndjson_mib < 3.0 * body, "wide NDJSON: {ndjson_mib:.0} MiB");
    assert!(
        three_mib < 3.0 * 3.0 * body,
        "three at once: {three_mib:.0} MiB"
    );
    // A split batch holds its records and their outcomes: ~6x its body at the split limit
    // (docs/operations.md, "Memory"), where 8.4 M records held 500 MiB.
    assert!(split_mib < 8.0 * split_bytes, "split: {split_mib:.0} MiB");
}

/// Kills the child if the test fails before it exits, so no server outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// docs/operations.md, "The access log": `errors` logs a line for a 4xx and none for a 200, and
/// a clean stop (SIGTERM) flushes what the log writer still had queued.
#[tokio::test]
async fn the_access_log_can_be_limited_to_errors_and_is_flushed_at_a_clean_stop() {
    let kinesis = control_client().await;
    let stream = fresh_stream(&kinesis).await;
    let mut cmd = with_test_credentials();
    cmd.env("APP_KINESIS__ENDPOINT_URL", emulator_endpoint())
        .env("APP_TELEMETRY__ACCESS_LOG", "errors");
    let mut server = Server::start(cmd);
    let http = reqwest::Client::new();
    let post = |stream: &str| {
        http.post(server.url(&format!("/streams/{stream}/records")))
            .header("content-type", "text/plain")
            .body("1")
            .send()
    };
    assert_eq!(post(&stream).await.unwrap().status(), 200);
    assert_eq!(post("bad!name").await.unwrap().status(), 400);
    Command::new("kill")
        .args(["-TERM", &server.child.0.id().to_string()])
        .status()
        .unwrap();
    let status = eventually("exit after SIGTERM", Duration::from_secs(20), || {
        let exited = server.child.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success());
    // The pipe is drained by a thread: give it the last lines the process wrote.
    let finished = eventually("the access log line", Duration::from_secs(5), || {
        let lines: Vec<u64> = server
            .logged("INFO")
            .iter()
            .filter(|l| l["message"] == "Request finished")
            .filter_map(|l| l["status"].as_u64())
            .collect();
        async move { lines.contains(&400).then_some(lines) }
    })
    .await;
    assert_eq!(finished, vec![400], "errors only: the 200 has no line");
    assert!(
        server
            .logged("INFO")
            .iter()
            .any(|l| l["message"] == "Stopped"),
        "the last line before exit was flushed"
    );
}
