//! `GET /health/live`, `GET /health/ready` and `GET /metrics`: for load balancers, orchestrators
//! and monitoring.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthStatus {
    /// `live` or `ready`.
    status: &'static str,
    /// With a spool, when Kinesis cannot be called: `unreachable` (spooled writes still get 202).
    #[serde(skip_serializing_if = "Option::is_none")]
    kinesis: Option<&'static str>,
    /// With a spool, when Kinesis cannot be called: `buffering` (records wait on disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    spool: Option<&'static str>,
}

impl HealthStatus {
    fn plain(status: &'static str) -> Self {
        Self {
            status,
            kinesis: None,
            spool: None,
        }
    }
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = crate::openapi::HEALTH_TAG,
    responses((status = 200, description = "Alive", body = HealthStatus)))]
pub(crate) async fn live() -> Json<HealthStatus> {
    Json(HealthStatus::plain("live"))
}

/// Configuration loaded, credentials resolvable and the Kinesis endpoint answering.
///
/// Answered from a cached background probe: a readiness poll never costs an AWS call. Streams are
/// not checked here (a missing stream is a 404 on write). With a spool (`spool.streams`), ready
/// means able to accept: 200 while Kinesis is unreachable (`"kinesis": "unreachable", "spool":
/// "buffering"`), 503 `spool_full` after a full spool until it is below 90%, 503
/// `spool_unavailable` once its log could not be written.
#[utoipa::path(get, path = "/health/ready", tag = crate::openapi::HEALTH_TAG,
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        crate::error::ReadyProblems,
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    let kinesis = state.readiness.current();
    let Some(spool) = &state.spool else {
        return match kinesis {
            Ok(()) => Ok(Json(HealthStatus::plain("ready"))),
            Err(reason) => Err(ApiError::NotReady(reason)),
        };
    };
    spool
        .accepting()
        .map_err(|e| ApiError::Ingest(crate::service::IngestError::Spool(e)))?;
    Ok(Json(match kinesis {
        Ok(()) => HealthStatus::plain("ready"),
        Err(_) => HealthStatus {
            status: "ready",
            kinesis: Some("unreachable"),
            spool: Some("buffering"),
        },
    }))
}

/// Prometheus metrics (text exposition format 0.0.4).
///
/// Needs an API key when `metrics.require_auth` is on; 404 when `metrics.enabled` is off.
#[utoipa::path(get, path = "/metrics", tag = crate::openapi::HEALTH_TAG,
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        crate::error::MetricsProblems,
    ))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::RouteNotFound);
    };
    if state.settings.metrics.require_auth {
        state.access.require_any_key(&headers)?;
    }
    crate::metrics::sync_counters();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
