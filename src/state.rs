//! Shared application state and the cached readiness signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::access::AccessPolicy;
use crate::config::Settings;
use crate::kinesis::{KinesisPublisher, NotReady, NotReadyCause, ProbeResult};
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
    /// For readiness: whether spooled writes are taken (`None`: no stream is spooled).
    pub spool: Option<Arc<crate::spool::Spool>>,
    pub settings: Arc<Settings>,
    pub readiness: Readiness,
    pub access: Arc<AccessPolicy>,
    /// `None` when `metrics.enabled` is off.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// One permit per request in flight (`server.max_concurrent_requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Kept answers of `Idempotency-Key` writes (docs/api.md#idempotent-retries).
    pub idempotency: Arc<crate::idempotency::Idempotency>,
}

/// The last readiness probe's answer, kept fresh by a background task so `/health/ready` never
/// calls AWS itself (a load balancer polling it would otherwise multiply AWS calls).
#[derive(Debug, Clone)]
pub struct Readiness {
    rx: watch::Receiver<Result<(), NotReady>>,
}

/// The first retry after a failed probe; retries back off from here to the probe interval.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// An unchanged cause of unreadiness is logged again after this long, not at every probe.
const REPEAT_LOG_AFTER: Duration = Duration::from_secs(300);

impl Readiness {
    /// Starts probing `publisher` every `interval`. While not ready it probes sooner (250 ms,
    /// doubling up to `interval`), so a fresh process turns ready quickly without hammering a
    /// credential chain or an endpoint that is down. The cause of unreadiness is logged once at
    /// ERROR, again when it changes, and every five minutes while it lasts. The task ends when the
    /// last `Readiness` is dropped.
    pub fn spawn(publisher: Arc<dyn KinesisPublisher>, interval: Duration) -> Self {
        let (tx, rx) = watch::channel(Err(NotReady {
            cause: NotReadyCause::NotProbedYet,
            detail: String::new(),
        }));
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            let mut logged: Option<(NotReadyCause, Instant)> = None;
            loop {
                let result = match publisher.probe().await {
                    ProbeResult::Answered => Ok(()),
                    ProbeResult::Failed(not_ready) => Err(not_ready),
                };
                let wait = match &result {
                    Ok(()) => {
                        if tx.borrow().is_err() {
                            tracing::info!("Kinesis endpoint answers: ready");
                        }
                        (logged, retry) = (None, FIRST_RETRY);
                        interval
                    }
                    Err(not_ready) => {
                        let repeat = logged.is_some_and(|(cause, at)| {
                            cause == not_ready.cause && at.elapsed() < REPEAT_LOG_AFTER
                        });
                        if !repeat {
                            tracing::error!(
                                cause = not_ready.cause.describe(),
                                detail = %not_ready.detail,
                                "Not ready: Kinesis cannot be called"
                            );
                            logged = Some((not_ready.cause, Instant::now()));
                        }
                        let wait = retry.min(interval);
                        retry = (retry * 2).min(interval);
                        wait
                    }
                };
                if tx.send(result).is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        });
        Self { rx }
    }

    pub fn current(&self) -> Result<(), NotReady> {
        self.rx.borrow().clone()
    }
}
