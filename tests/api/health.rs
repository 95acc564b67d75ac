//! Health endpoints: live always, ready once Kinesis answers.

use std::time::{Duration, Instant};

use crate::helpers::{assert_problem, closed_endpoint, spawn, spawn_app, test_settings};

#[tokio::test]
async fn live_answers_at_once_and_ready_once_the_emulator_answers() {
    let app = spawn_app().await;
    let http = &app.http;

    let live = http
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap()["status"],
        "live"
    );

    let started = Instant::now();
    loop {
        let ready = http
            .get(format!("{}/health/ready", app.address))
            .send()
            .await
            .unwrap();
        if ready.status() == 200 {
            assert_eq!(
                ready.json::<serde_json::Value>().await.unwrap()["status"],
                "ready"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_is_503_while_kinesis_is_unreachable() {
    let address = spawn(test_settings(&closed_endpoint())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ready = reqwest::get(format!("{address}/health/ready"))
        .await
        .unwrap();
    let live = reqwest::get(format!("{address}/health/live"))
        .await
        .unwrap();

    assert_eq!(
        ready
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_problem(ready, 503, "not_ready").await;
    assert_eq!(live.status(), 200);
}
