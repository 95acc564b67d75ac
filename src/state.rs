//! Shared application state and the cached readiness signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::access::AccessPolicy;
use crate::config::Settings;
use crate::kinesis::{KinesisPublisher, ProbeResult};
use crate::service::IngestService;

/// What every handler can reach: one `Arc`, because axum clones the state for every request and
/// every stateful middleware layer (one reference count instead of seven, measured in the
/// profile). Fields are reached through `Deref`: `state.ingest`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct AppStateInner {
    pub ingest: Arc<IngestService>,
    pub settings: Arc<Settings>,
    pub readiness: Readiness,
    pub access: Arc<AccessPolicy>,
    /// `None` when `metrics.enabled` is off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// One permit per request in flight (`server.max_concurrent_requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// The last readiness probe's answer, kept fresh by a background task so `/health/ready` never
/// calls AWS itself (a load balancer polling it would otherwise multiply AWS calls).
#[derive(Debug, Clone)]
pub struct Readiness {
    rx: watch::Receiver<Result<(), String>>,
}

impl Readiness {
    /// Starts probing `publisher` every `interval` (every 250 ms while not yet ready, so a fresh
    /// process turns ready quickly). The task ends when the last `Readiness` is dropped.
    pub fn spawn(publisher: Arc<dyn KinesisPublisher>, interval: Duration) -> Self {
        let (tx, rx) = watch::channel(Err("not probed yet".to_owned()));
        tokio::spawn(async move {
            loop {
                let result = match publisher.probe().await {
                    ProbeResult::Answered => Ok(()),
                    ProbeResult::Failed(reason) => Err(reason),
                };
                let was_ready = tx.borrow().is_ok();
                match (&result, was_ready) {
                    (Ok(()), false) => tracing::info!("Kinesis endpoint answers: ready"),
                    (Err(reason), true) => {
                        tracing::warn!(%reason, "Kinesis endpoint stopped answering: not ready");
                    }
                    _ => {}
                }
                let ready = result.is_ok();
                if tx.send(result).is_err() {
                    return;
                }
                let wait = if ready {
                    interval
                } else {
                    interval.min(Duration::from_millis(250))
                };
                tokio::time::sleep(wait).await;
            }
        });
        Self { rx }
    }

    pub fn current(&self) -> Result<(), String> {
        self.rx.borrow().clone()
    }
}
