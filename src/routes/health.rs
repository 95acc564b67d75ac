//! `GET /health/live` and `GET /health/ready`: for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthStatus {
    /// `live` or `ready`.
    status: &'static str,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = crate::openapi::HEALTH_TAG,
    responses((status = 200, description = "Alive", body = HealthStatus)))]
pub(crate) async fn live() -> Json<HealthStatus> {
    Json(HealthStatus { status: "live" })
}

/// Configuration loaded, credentials resolvable and the Kinesis endpoint answering.
///
/// Answered from a cached background probe: a readiness poll never costs an AWS call. Streams are
/// not checked here (a missing stream is a 404 on write).
#[utoipa::path(get, path = "/health/ready", tag = crate::openapi::HEALTH_TAG,
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "not_ready", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    match state.readiness.current() {
        Ok(()) => Ok(Json(HealthStatus { status: "ready" })),
        Err(reason) => Err(ApiError::NotReady(reason)),
    }
}
