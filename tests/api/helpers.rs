//! Test harness: the emulator (started once, on free loopback ports, SIGKILLed when this test
//! process ends), `TestApp` (the service on port 0 against the emulator, a fake or nothing),
//! fresh streams, read-back, and `eventually` for bounded waits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, ConfigLoader, Region};
use aws_credential_types::Credentials;
use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_writer::config::Settings;
use kinesis_writer::startup::Application;

/// One emulator for the whole test binary: it takes ~1-2 s and ~170 MB to start.
static EMULATOR: OnceLock<String> = OnceLock::new();

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `N` distinct free loopback ports, for servers that bind them themselves: all are bound at once
/// (so no two are the same), then released. Another process may still take one before the server
/// binds it, so the launchers below start again on fresh ports when their server dies at start
/// ([`Emulator::start`], moto in `moto.rs`).
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// The emulator's endpoint (`http://127.0.0.1:PORT`), starting it on first use.
pub(crate) fn emulator_endpoint() -> &'static str {
    EMULATOR.get_or_init(start_emulator)
}

fn start_emulator() -> String {
    // Lives as long as this test process: its watchdog SIGKILLs node when we exit.
    Emulator::start(&[]).endpoint()
}

/// An emulator process of a test's own (for tests that stop and restart it).
#[derive(Debug)]
pub(crate) struct Emulator {
    pub(crate) port: u16,
    tls_port: u16,
    node_pid_file: PathBuf,
}

impl Emulator {
    /// Starts kinesis-local on free ports and waits until it answers. `streams` are created at
    /// start-up (`INITIALIZE_STREAMS`, one shard each).
    pub(crate) fn start(streams: &[&str]) -> Self {
        for _ in 0..3 {
            let [port, tls_port] = free_ports();
            if let Some(emulator) = Self::launch(port, tls_port, streams) {
                return emulator;
            }
        }
        panic!("the emulator died at start on three pairs of free ports")
    }

    /// `start` from async code (it blocks while the emulator boots), with one stream of `stream`.
    pub(crate) async fn start_with_stream(stream: &str) -> Self {
        let stream = stream.to_owned();
        tokio::task::spawn_blocking(move || Self::start(&[&stream]))
            .await
            .expect("the emulator's start did not panic")
    }

    /// Starts kinesis-local on `port` (plain HTTP) and waits until it answers; `None` when it died
    /// first (another process took one of its ports).
    fn launch(port: u16, tls_port: u16, streams: &[&str]) -> Option<Self> {
        let dir = repo_root().join("tools/kinesis-local");
        let main_js = dir.join("node_modules/kinesis-local/main.js");
        if !main_js.exists() {
            let status = Command::new("npm")
                .args([
                    "ci",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&dir)
                .status()
                .expect("npm is needed to install the emulator");
            assert!(status.success(), "npm ci in tools/kinesis-local failed");
        }
        let log = std::env::temp_dir().join(format!("kinesis-writer-emulator-{port}.log"));
        let node_pid_file =
            std::env::temp_dir().join(format!("kinesis-writer-emulator-{port}.pid"));
        let init: Vec<String> = streams.iter().map(|s| format!("{s}:1")).collect();
        let mut env = vec![
            (
                "KINESIS_MOCK_CERT_PATH",
                dir.join("node_modules/kinesis-local/server.json")
                    .display()
                    .to_string(),
            ),
            ("KINESIS_MOCK_PLAIN_PORT", port.to_string()),
            ("KINESIS_MOCK_TLS_PORT", tls_port.to_string()),
            ("CREATE_STREAM_DURATION", "0ms".to_owned()),
            // kinesis-mock allows 50 open shards per account by default; the suite creates a
            // fresh stream per test (some with 4 shards), so raise it rather than share streams.
            ("SHARD_LIMIT", "100000".to_owned()),
            ("LOG_LEVEL", "WARN".to_owned()),
        ];
        if !init.is_empty() {
            env.push(("INITIALIZE_STREAMS", init.join(",")));
        }
        let _ = std::fs::remove_file(&node_pid_file);
        spawn_watched(
            &format!("node '{}'", main_js.display()),
            &env,
            &node_pid_file,
            &log,
        );
        answering(port, &node_pid_file, &log, "the emulator").then_some(Self {
            port,
            tls_port,
            node_pid_file,
        })
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the emulator (all its state is gone, as after a crash).
    pub(crate) fn kill(&self) {
        let pid = std::fs::read_to_string(&self.node_pid_file).unwrap();
        Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        while kinesis_answers(self.port) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the emulator `signal` (`-STOP` to stall it: connections are accepted by the kernel
    /// and requests queue unanswered; `-CONT` to carry them all out).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(&self.node_pid_file).unwrap();
        let sent = Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Starts it again on the same ports.
    pub(crate) fn restart(&self, streams: &[&str]) -> Self {
        Self::launch(self.port, self.tls_port, streams)
            .expect("the emulator started again on its ports")
    }
}

/// Waits until a Kinesis stand-in answers on `port`: `false` as soon as its process (pid in
/// `pid_file`) is gone without answering; panics after 60 s, pointing at its `log`.
pub(crate) fn answering(port: u16, pid_file: &Path, log: &Path, what: &str) -> bool {
    let start = Instant::now();
    loop {
        // Its own process, not just anyone on the port: checked first, then the answer.
        let pid = std::fs::read_to_string(pid_file).ok();
        if let Some(pid) = pid.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            // Gone, or a zombie not yet reaped by its watchdog.
            let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat"));
            if stat.map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            }) {
                return false;
            }
        }
        if pid.is_some() && kinesis_answers(port) {
            return true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not answer on port {port} within 60 s; log: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `command` (a shell command line) with `env`, its output (both streams) in `log`, its pid
/// written to `pid_file`, under a bash watchdog that SIGKILLs it when this test process is gone
/// (however it ends), so no server outlives the tests.
pub(crate) fn spawn_watched(command: &str, env: &[(&str, String)], pid_file: &Path, log: &Path) {
    let script = format!(
        "{command} & child=$!; echo $child > '{}'; trap 'kill -KILL $child 2>/dev/null' EXIT; \
         while kill -0 {} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.3; done",
        pid_file.display(),
        std::process::id()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::options().append(true).open(log).unwrap());
    #[expect(
        clippy::zombie_processes,
        reason = "the watchdog is reaped by init once it exits; it outlives no test process"
    )]
    cmd.spawn().expect("failed to start a server for the tests");
}

/// The virtual environment of a Python tool under `tool` (e.g. `tools/moto`), created from its
/// pinned `requirements.txt` on first use, as the emulator is installed by the harness. A marker
/// written after pip succeeds, so a half-finished install is redone rather than used. Callers
/// keep the answer in a `OnceLock` of their own, so one test process installs each tool once.
pub(crate) fn pinned_venv(tool: &str) -> PathBuf {
    let dir = repo_root().join(tool);
    let venv = dir.join(".venv");
    let marker = venv.join(".installed");
    if !marker.exists() {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the Python tools of the tests");
        assert!(
            created.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(dir.join("requirements.txt"))
            .status()
            .unwrap();
        assert!(
            pip.success(),
            "pip install of {tool}/requirements.txt failed"
        );
        std::fs::write(&marker, b"").unwrap();
    }
    venv
}

/// A blocking ListStreams with a dummy SigV4 header (neither the emulator nor moto checks more
/// than that one is there): whether a Kinesis stand-in answers on `port`.
pub(crate) fn kinesis_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Kinesis_20131202.ListStreams\r\nX-Amz-Date: 20260101T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, \
         SignedHeaders=host, Signature=00\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let mut answer = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// An AWS config loader with static test credentials and no IMDS or profile look-ups.
pub(crate) fn test_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
}

/// Settings as the service loads them from `config/` (local profile), pointed at `endpoint`, on a
/// free port.
pub(crate) fn test_settings(endpoint: &str) -> Settings {
    let mut settings = Settings::load(&repo_root().join("config")).expect("config/ loads");
    settings.server.port = 0;
    settings.kinesis.endpoint_url = endpoint.to_owned();
    settings.kinesis.region = "us-east-1".to_owned();
    settings.kinesis.readiness_interval_ms = 200;
    settings.dev.create_streams.clear();
    settings
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let guard = kinesis_writer::telemetry::init(&kinesis_writer::config::TelemetrySettings {
            format: kinesis_writer::config::LogFormat::Pretty,
            filter: "debug".to_owned(),
            access_log: kinesis_writer::config::AccessLog::All,
        });
        // The log writer lives as long as this test process.
        std::mem::forget(guard);
    }
}

/// The emulator's control client (creates streams, reads records back).
pub(crate) async fn control_client() -> aws_sdk_kinesis::Client {
    let config = test_loader().endpoint_url(emulator_endpoint()).load().await;
    aws_sdk_kinesis::Client::new(&config)
}

/// A running service plus what a test needs to talk to it and to look behind it: the emulator
/// (`spawn_app*`, with a fresh stream of the test's own), a `fake-kinesis` (`spawn_fake_app`), or
/// nothing the harness controls (`spawn_app_on`, `serve`).
#[derive(Debug)]
pub(crate) struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub(crate) address: String,
    /// One pooled client per app.
    pub(crate) http: reqwest::Client,
    /// This test's stream: fresh and ACTIVE on the emulator, a random valid name otherwise.
    pub(crate) stream: String,
    /// The same service's router, for [`TestApp::oneshot`].
    router: axum::Router,
    kinesis: Option<aws_sdk_kinesis::Client>,
    fake: Option<fake_kinesis::FakeKinesis>,
}

/// The service against the emulator, with a fresh one-shard stream.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_, _| {}).await
}

/// Like `spawn_app`, with settings adjusted by `tweak`, which is given the fresh stream's name
/// (for per-stream limits, allowlists, keys and coalescing).
pub(crate) async fn spawn_app_with(tweak: impl FnOnce(&mut Settings, &str)) -> TestApp {
    spawn_app_with_shards(1, tweak).await
}

/// Like `spawn_app_with`, with a fresh stream of `shards` shards.
pub(crate) async fn spawn_app_with_shards(
    shards: i32,
    tweak: impl FnOnce(&mut Settings, &str),
) -> TestApp {
    init_logs();
    let kinesis = control_client().await;
    let stream = create_stream(&kinesis, shards).await;
    let mut settings = test_settings(emulator_endpoint());
    tweak(&mut settings, &stream);
    let mut app = serve(build(settings).await);
    app.stream = stream;
    app.kinesis = Some(kinesis);
    app
}

/// The service pointed at a fresh `fake-kinesis`, with fast retry backoff (5 ms base, 20 ms max);
/// `tweak` adjusts the settings last and is given the app's stream name.
pub(crate) async fn spawn_fake_app(tweak: impl FnOnce(&mut Settings, &str)) -> TestApp {
    init_logs();
    let fake = fake_kinesis::FakeKinesis::start().await;
    let mut settings = test_settings(&fake.endpoint());
    settings.delivery.base_backoff_ms = 5;
    settings.delivery.max_backoff_ms = 20;
    let stream = random_stream_name("fake");
    tweak(&mut settings, &stream);
    let mut app = serve(build(settings).await);
    app.stream = stream;
    app.fake = Some(fake);
    app
}

/// The service pointed at `endpoint`, where nothing the harness controls answers (a closed port,
/// a silent socket, a test's private emulator); `tweak` is given the app's (random) stream name.
pub(crate) async fn spawn_app_on(
    endpoint: &str,
    tweak: impl FnOnce(&mut Settings, &str),
) -> TestApp {
    init_logs();
    let mut settings = test_settings(endpoint);
    let stream = random_stream_name("any");
    tweak(&mut settings, &stream);
    let mut app = serve(build(settings).await);
    app.stream = stream;
    app
}

/// Builds the service with `settings` and static test credentials.
async fn build(settings: Settings) -> Application {
    Application::build_with_aws(settings, test_loader())
        .await
        .expect("app builds")
}

/// Runs an already built service (a custom publisher or credentials provider) until the test
/// ends. Its stream is a random valid name; it has neither emulator client nor fake.
pub(crate) fn serve(app: Application) -> TestApp {
    let address = format!("http://127.0.0.1:{}", app.port());
    let router = app.router();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address,
        http: reqwest::Client::new(),
        stream: random_stream_name("any"),
        router,
        kinesis: None,
        fake: None,
    }
}

fn random_stream_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Polls `check` every 25 ms until it gives `Some`, and returns that; panics naming `what` if
/// `timeout` passes first. For waiting on something, instead of sleeping and hoping.
pub(crate) async fn eventually<T, F>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The sequence number the fake gave the record with exactly `data`, which must have landed once.
pub(crate) fn seq_of(fake: &fake_kinesis::FakeKinesis, data: &[u8]) -> String {
    let landed: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.data == data)
        .collect();
    assert_eq!(
        landed.len(),
        1,
        "{:?} landed exactly once",
        String::from_utf8_lossy(data)
    );
    landed[0].seq.clone()
}

/// Creates a uniquely named one-shard stream and waits until it is ACTIVE.
pub(crate) async fn fresh_stream(kinesis: &aws_sdk_kinesis::Client) -> String {
    create_stream(kinesis, 1).await
}

/// Creates a uniquely named stream of `shards` shards and waits until it is ACTIVE.
async fn create_stream(kinesis: &aws_sdk_kinesis::Client, shards: i32) -> String {
    let name = random_stream_name("test");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    kinesis_writer::dev::wait_active(kinesis, &name, Duration::from_secs(30))
        .await
        .unwrap();
    name
}

/// One record as read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Landed {
    pub(crate) data: Vec<u8>,
    pub(crate) partition_key: String,
    pub(crate) sequence_number: String,
    /// The shard it was read from.
    pub(crate) shard_id: String,
}

/// An open shard of a stream and the hash keys it owns, `start..=end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenShard {
    pub(crate) id: String,
    pub(crate) start: u128,
    pub(crate) end: u128,
}

impl TestApp {
    /// The open shards of this test's stream (emulator apps), in ListShards order.
    pub(crate) async fn open_shards(&self) -> Vec<OpenShard> {
        self.shards(true).await
    }

    /// Every shard of this test's stream, open or closed (what a KCL worker leases after a
    /// reshard), in ListShards order.
    pub(crate) async fn all_shards(&self) -> Vec<OpenShard> {
        self.shards(false).await
    }

    async fn shards(&self, open_only: bool) -> Vec<OpenShard> {
        let out = self
            .kinesis()
            .list_shards()
            .stream_name(&self.stream)
            .send()
            .await
            .expect("ListShards");
        out.shards()
            .iter()
            .filter(|s| {
                !open_only
                    || s.sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_none()
            })
            .map(|s| {
                let range = s.hash_key_range().expect("a hash-key range");
                OpenShard {
                    id: s.shard_id().to_owned(),
                    start: range.starting_hash_key().parse().unwrap(),
                    end: range.ending_hash_key().parse().unwrap(),
                }
            })
            .collect()
    }

    /// The emulator's client (emulator-backed apps only).
    pub(crate) fn kinesis(&self) -> &aws_sdk_kinesis::Client {
        self.kinesis
            .as_ref()
            .expect("kinesis(): this app is not emulator-backed (spawn_app*)")
    }

    /// The fake behind the service (`spawn_fake_app` apps only).
    pub(crate) fn fake(&self) -> &fake_kinesis::FakeKinesis {
        self.fake
            .as_ref()
            .expect("fake(): this app is not fake-backed (spawn_fake_app)")
    }

    /// The records URL of this test's stream, with `query` (no `?`) if not empty.
    pub(crate) fn records_url(&self, query: &str) -> String {
        records_url(&self.address, &self.stream, query)
    }

    /// POSTs `body` with `headers` to this test's stream.
    pub(crate) async fn post(
        &self,
        query: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.post_to(&self.stream, query, headers, body).await
    }

    /// POSTs `body` with `headers` to `stream` (a name other than this test's own).
    pub(crate) async fn post_to(
        &self,
        stream: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(records_url(&self.address, stream, query))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request sent")
    }

    /// POSTs a JSON `body` (content type `application/json`) to this test's stream.
    pub(crate) async fn post_json(&self, query: &str, body: &str) -> reqwest::Response {
        self.post(
            query,
            &[("content-type", "application/json")],
            body.to_owned(),
        )
        .await
    }

    /// GETs `path` (e.g. `/health/ready`).
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// Sends `request` through the service's router and its whole middleware stack without a
    /// socket: for tests that drive thousands of generated requests (tests/api/properties.rs).
    pub(crate) async fn oneshot(
        &self,
        request: axum::http::Request<axum::body::Body>,
    ) -> axum::response::Response {
        use tower::ServiceExt;
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
    }

    /// Every record in this test's stream (all shards), oldest first per shard.
    pub(crate) async fn landed(&self) -> Vec<Landed> {
        read_stream(self.kinesis(), &self.stream).await
    }
}

/// Blanks what differs between two runs of the same requests by design (sequence numbers,
/// request ids) in an answer body, so two runs' answers can be compared whole.
pub(crate) fn blank_run_specific(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "SequenceNumber" || k == "request_id" {
                    *v = Value::from("*");
                } else {
                    blank_run_specific(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(blank_run_specific),
        _ => {}
    }
}

pub(crate) fn records_url(address: &str, stream: &str, query: &str) -> String {
    if query.is_empty() {
        format!("{address}/streams/{stream}/records")
    } else {
        format!("{address}/streams/{stream}/records?{query}")
    }
}

/// Reads every shard of `stream` from TRIM_HORIZON with GetRecords.
pub(crate) async fn read_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Landed> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(it) = iterator {
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                break;
            }
            out.extend(page.records().iter().map(|r| Landed {
                data: r.data().as_ref().to_vec(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                sequence_number: r.sequence_number().to_owned(),
                shard_id: shard.shard_id().to_owned(),
            }));
            iterator = page.next_shard_iterator;
        }
    }
    out
}

/// Asserts a problem+json answer with `status` and `code`; returns the body for more checks.
pub(crate) async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status for expected code {code}"
    );
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/problem+json"),
        "content type for {code}"
    );
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status, "body: {body}");
    assert_eq!(body["type"], format!("urn:kinesis-writer:problem:{code}"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "body: {body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "request id in body and header"
    );
    if status == 422 || status == 413 {
        assert_eq!(body["error_class"], "KinesisWriterError");
    }
    body
}

/// True when `s` is a lowercase hyphenated UUID v4, as Python's `str(uuid.uuid4())`.
pub(crate) fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36
        && s == s.to_lowercase()
        && uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

/// The compiled service binary (for command-line tests).
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kinesis-writer"))
}

pub(crate) fn config_dir() -> PathBuf {
    repo_root().join("config")
}

/// An endpoint nobody listens on: connection refused, as when Kinesis or the emulator is down.
pub(crate) fn closed_endpoint() -> String {
    let [port] = free_ports();
    format!("http://127.0.0.1:{port}")
}

/// Raises the record-size limit of `stream` by configuration alone.
pub(crate) fn raise_record_limit(settings: &mut Settings, stream: &str, bytes: usize) {
    settings
        .limits
        .streams
        .push(kinesis_writer::config::StreamLimitSettings::with(
            stream,
            kinesis_writer::config::LimitOverrides {
                max_record_size_bytes: Some(bytes),
                max_request_size_bytes: None,
            },
        ));
}

/// Asserts that a problem body's `detail` mentions `needle`.
pub(crate) fn assert_detail_contains(body: &serde_json::Value, needle: &str) {
    let detail = body["detail"].as_str().expect("detail is a string");
    assert!(
        detail.contains(needle),
        "detail should mention {needle:?}: {body}"
    );
}

/// The harness itself: a launcher whose port was taken meanwhile notices that its server died,
/// rather than taking whoever answers there for its own.
#[test]
fn a_launch_on_a_taken_port_reports_the_death() {
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let [tls_port] = free_ports();
    let started = Instant::now();
    assert!(Emulator::launch(port, tls_port, &[]).is_none());
    assert!(started.elapsed() < Duration::from_secs(30));
}
