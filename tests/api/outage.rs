//! Kinesis going away and coming back, with the real emulator: while it is gone every answer is
//! a 503/504 within the configured budget (no hang, no panic); once it is back, writes succeed
//! again within about a second.

use std::time::{Duration, Instant};

use crate::helpers::{Emulator, records_url, spawn, test_settings};

#[tokio::test]
async fn an_emulator_outage_gives_only_503_or_504_and_the_service_recovers() {
    let stream = format!("outage-{}", uuid::Uuid::new_v4().simple());
    let (port, tls_port) = Emulator::free_ports();
    let emulator = tokio::task::spawn_blocking({
        let stream = stream.clone();
        move || Emulator::launch(port, tls_port, &[&stream])
    })
    .await
    .unwrap();
    let mut settings = test_settings(&emulator.endpoint());
    settings.kinesis.connect_timeout_ms = 300;
    settings.kinesis.attempt_timeout_ms = 1000;
    settings.kinesis.operation_timeout_ms = 1000;
    settings.delivery.max_attempts = 3;
    settings.delivery.deadline_ms = 1500;
    let address = spawn(settings).await;
    let http = reqwest::Client::new();
    let url = records_url(&address, &stream, "");
    let budget = Duration::from_millis(1500 + 1000 + 500);
    let write = || {
        http.post(&url)
            .header("content-type", "text/plain")
            .body("r")
            .send()
    };
    assert_eq!(
        write().await.unwrap().status(),
        200,
        "writes work before the outage"
    );

    emulator.kill();
    let mut outage_statuses = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let response = write().await.expect("the service answers");
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
    let recovered_after = loop {
        let status = write().await.unwrap().status().as_u16();
        if status == 200 {
            break returned.elapsed();
        }
        assert!(
            [503, 504, 404].contains(&status),
            "status {status} after the return"
        );
        assert!(
            returned.elapsed() < Duration::from_secs(5),
            "no recovery 5 s after the return"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
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
