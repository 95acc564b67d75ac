//! `Application`: binds the listener, wires state to the router, serves until told to stop.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use aws_config::{BehaviorVersion, ConfigLoader};
use tokio::net::TcpListener;

use crate::access::AccessPolicy;
use crate::config::PublisherKind;
use crate::config::Settings;
use crate::kinesis::{KinesisPublisher, LeanPublisher, SdkPublisher, load_sdk_config};
use crate::metrics::MeteredPublisher;
use crate::server::ConnectionLimits;
use crate::service::IngestService;
use crate::spool::Spool;
use crate::state::{AppState, AppStateInner, Readiness};

#[derive(Debug)]
pub struct Application {
    port: u16,
    listener: TcpListener,
    router: axum::Router,
    settings: Arc<Settings>,
    /// Drained at shutdown (`None`: no stream is spooled).
    spool: Option<Arc<Spool>>,
}

impl Application {
    /// Builds against the standard AWS configuration chain.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_aws(settings, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// Builds with an AWS config loader the caller prepared (tests add static credentials).
    pub async fn build_with_aws(settings: Settings, loader: ConfigLoader) -> anyhow::Result<Self> {
        let publisher = build_publisher(&settings, loader).await?;
        Self::build_with_publisher(settings, publisher).await
    }

    /// Builds around any publisher (tests use fakes for faults the emulator cannot produce).
    pub async fn build_with_publisher(
        settings: Settings,
        publisher: Arc<dyn KinesisPublisher>,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let settings = Arc::new(settings);
        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("Failed to bind {}:{}", address.0, address.1))?;
        let port = listener.local_addr()?.port();
        let access = AccessPolicy::from_settings(&settings)?;
        access.log_summary();
        settings.log_streams();
        let metrics = settings.metrics.enabled.then(crate::metrics::handle);
        // Every Kinesis call is measured (a no-op when no recorder is installed).
        let publisher: Arc<dyn KinesisPublisher> = Arc::new(MeteredPublisher::new(publisher));
        let readiness = Readiness::spawn(publisher.clone(), settings.kinesis.readiness_interval());
        // Before the listener serves: recovery of a spool left behind runs first, and its
        // shippers start at once.
        let spool = Spool::open(&settings, &publisher)?;
        let state = AppState::new(AppStateInner {
            ingest: Arc::new(
                IngestService::new(publisher, settings.clone()).with_spool(spool.clone()),
            ),
            spool: spool.clone(),
            settings: settings.clone(),
            readiness,
            access: Arc::new(access),
            metrics,
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                settings.server.max_concurrent_requests,
            )),
            idempotency: Arc::new(crate::idempotency::Idempotency::new(&settings.idempotency)),
        });
        let worst_case = settings.delivery.deadline_ms + settings.kinesis.operation_timeout_ms;
        if worst_case > settings.server.shutdown_drain_timeout_ms {
            tracing::warn!(
                worst_case_ms = worst_case,
                drain_timeout_ms = settings.server.shutdown_drain_timeout_ms,
                "A request still retrying at shutdown may outlast the drain timeout"
            );
        }
        tracing::info!(host = %settings.server.host, port, "Listening");
        Ok(Self {
            port,
            listener,
            router: crate::routes::router(state),
            settings,
            spool,
        })
    }

    /// The application's router with its state and middleware, for driving it without a socket
    /// (`tower::ServiceExt::oneshot`); the listener is untouched.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The port actually bound (useful with `server.port = 0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
    /// for up to `server.shutdown_drain_timeout_ms` (see [`crate::server`]); then ships the
    /// spool's backlog for up to `spool.drain_s`, leaving the rest on disk.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        crate::server::serve(
            self.listener,
            self.router,
            ConnectionLimits::from_settings(&self.settings.server),
            shutdown,
            self.settings.server.shutdown_drain_timeout(),
        )
        .await;
        if let Some(spool) = &self.spool {
            spool.drain(self.settings.spool.drain()).await;
        }
        tracing::info!("Stopped");
        Ok(())
    }
}

/// The Kinesis publisher `settings.kinesis` asks for (the server's, and `spool drain`'s).
pub async fn build_publisher(
    settings: &Settings,
    loader: ConfigLoader,
) -> anyhow::Result<Arc<dyn KinesisPublisher>> {
    let sdk_config = load_sdk_config(&settings.kinesis, loader).await?;
    let allowed = &settings.streams.allowed;
    let sdk = SdkPublisher::new(&sdk_config).with_targets(&sdk_config, allowed);
    let publisher: Arc<dyn KinesisPublisher> = match settings.kinesis.publisher {
        PublisherKind::Lean => {
            let protocol = settings.kinesis.protocol;
            Arc::new(LeanPublisher::new(&sdk_config, allowed, protocol, sdk).await?)
        }
        PublisherKind::Sdk => Arc::new(sdk),
    };
    tracing::info!(
        publisher = ?settings.kinesis.publisher,
        protocol = ?settings.kinesis.protocol,
        "Kinesis data path"
    );
    Ok(publisher)
}

/// `kinesis-writer spool drain DIR`: ships the spool in `dir` (one left behind by an instance that
/// is gone) with `settings`' Kinesis configuration, then returns; on `shutdown` it stops early and
/// leaves the rest on disk. Serves no HTTP.
pub async fn drain_spool(
    mut settings: Settings,
    dir: &std::path::Path,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    settings.spool.dir = dir.to_owned();
    settings.spool.streams = crate::spool::streams_in(dir)?
        .into_iter()
        .map(crate::config::StreamSpool::named)
        .collect();
    if settings.spool.streams.is_empty() {
        tracing::info!(dir = %dir.display(), "No spooled stream in this directory: nothing to drain");
        return Ok(());
    }
    settings.validate()?;
    let loader = aws_config::defaults(BehaviorVersion::latest());
    let publisher = build_publisher(&settings, loader).await?;
    let publisher: Arc<dyn KinesisPublisher> = Arc::new(MeteredPublisher::new(publisher));
    let settings = Arc::new(settings);
    let spool = Spool::open(&settings, &publisher)?.expect("streams are listed");
    let wait = async {
        while spool.backlog_bytes() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = wait => {}
        () = shutdown => {}
    }
    spool.drain(std::time::Duration::ZERO).await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (container stop).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("failed to install the Ctrl-C handler");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("failed to install the SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
