//! The binary as scripts and containers run it: --help/--version without AWS, a clear refusal
//! without a region, and SIGTERM draining to exit 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{binary, config_dir, control_client, emulator_endpoint, fresh_stream};

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

#[tokio::test]
async fn sigterm_stops_the_server_with_exit_0() {
    let kinesis = control_client().await;
    let stream = fresh_stream(&kinesis).await;
    let mut child = bare()
        .env("APP_SERVER__PORT", "0")
        .env("APP_TELEMETRY__FORMAT", "json")
        .env("APP_KINESIS__ENDPOINT_URL", emulator_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    // JSON logs: find the bound port in the "Listening" line, then keep draining the pipe so the
    // server never writes into a closed one.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("Listening") {
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                let _ = tx.send(v["port"].as_u64().unwrap());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a Listening log line");
    let url = format!("http://127.0.0.1:{port}/streams/{stream}/records");
    let response = reqwest::Client::new()
        .post(url)
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
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

/// Kills the child if the test fails before it exits, so no server outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
