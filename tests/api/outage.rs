//! Kinesis going away and coming back, with the real emulator: while it is gone every answer is
//! a 503/504 within the configured budget (no hang, no panic); once it is back, writes succeed
//! again within about a second.

use std::time::{Duration, Instant};

use crate::helpers::{Emulator, eventually, spawn_app_on};

#[tokio::test]
async fn an_emulator_outage_gives_only_503_or_504_and_the_service_recovers() {
    let stream = format!("outage-{}", uuid::Uuid::new_v4().simple());
    let emulator = tokio::task::spawn_blocking({
        let stream = stream.clone();
        move || Emulator::start(&[&stream])
    })
    .await
    .unwrap();
    let app = spawn_app_on(&emulator.endpoint(), |s, _| {
        s.kinesis.connect_timeout_ms = 300;
        s.kinesis.attempt_timeout_ms = 1000;
        s.kinesis.operation_timeout_ms = 1000;
        s.delivery.max_attempts = 3;
        s.delivery.deadline_ms = 1500;
    })
    .await;
    let budget = Duration::from_millis(1500 + 1000 + 500);
    // The stream lives in this test's own emulator, created when it starts.
    let write = || app.post_to(&stream, "", &[("content-type", "text/plain")], "r");
    assert_eq!(write().await.status(), 200, "writes work before the outage");

    emulator.kill();
    let mut outage_statuses = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let response = write().await;
        assert!(
            started.elapsed() < budget,
            "answered in {:?}",
            started.elapsed()
        );
        outage_statuses.push(response.status().as_u16());
    }

    let back = tokio::task::spawn_blocking({
        let stream = stream.clone();
        move || emulator.restart(&[&stream])
    })
    .await
    .unwrap();
    let returned = Instant::now();
    let write = &write;
    let recovered_after = eventually(
        "recovery after the return",
        Duration::from_secs(5),
        || async move {
            let status = write().await.status().as_u16();
            assert!(
                [200, 503, 504, 404].contains(&status),
                "status {status} after the return"
            );
            (status == 200).then(|| returned.elapsed())
        },
    )
    .await;
    eprintln!(
        "outage: statuses {outage_statuses:?}; recovered {recovered_after:?} after the emulator answered"
    );
    assert!(
        outage_statuses.iter().all(|s| [503, 504].contains(s)),
        "{outage_statuses:?}"
    );
    assert!(
        recovered_after < Duration::from_millis(1500),
        "recovered after {recovered_after:?}"
    );
    back.kill();
}
