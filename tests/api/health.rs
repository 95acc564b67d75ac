//! Health endpoints: live always, ready once Kinesis answers.

use std::time::Duration;

use crate::helpers::{assert_problem, closed_endpoint, eventually, spawn_app, spawn_app_on};

#[tokio::test]
async fn live_answers_at_once_and_ready_once_the_emulator_answers() {
    let app = spawn_app().await;

    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap()["status"],
        "live"
    );

    let app = &app;
    let ready = eventually("ready", Duration::from_secs(10), || async move {
        let ready = app.get("/health/ready").await;
        (ready.status() == 200).then_some(ready)
    })
    .await;
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
}

#[tokio::test]
async fn ready_is_503_while_kinesis_is_unreachable() {
    let app = spawn_app_on(&closed_endpoint(), |_, _| {}).await;

    // Until the first probe has run, readiness says "not probed yet"; wait for the probe's own
    // answer, so this checks what the probe found and not only the initial state.
    let app = &app;
    let ready = eventually(
        "readiness says the endpoint cannot be reached",
        Duration::from_secs(10),
        || async move {
            let ready = app.get("/health/ready").await;
            let retry_after = ready
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = assert_problem(ready, 503, "not_ready").await;
            assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
            (body["detail"] == "not ready: the Kinesis endpoint cannot be reached").then_some(body)
        },
    )
    .await;
    let live = app.get("/health/live").await;

    assert_eq!(ready["status"], 503);
    assert_eq!(live.status(), 200);
}
