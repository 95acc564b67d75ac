//! The router: every route, the OpenAPI document built from them, and the middleware stack.

mod health;
mod query;
mod records;
mod unread_body;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Request, Response};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{Level, Span};
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, problem_middleware};
use crate::openapi::ApiDoc;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(records::write_records))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
}

/// The OpenAPI document of the routes as built (also served at `/openapi.json`).
pub fn openapi() -> OpenApiDoc {
    api_router().split_for_parts().1
}

/// The application: routes, `/openapi.json`, problem+json fallbacks, and the middleware stack.
pub fn router(state: AppState) -> Router {
    let (router, doc) = api_router().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    let router = router
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(doc.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    with_middleware(router, state)
}

/// The stack, outermost first. Each layer's position matters:
/// 0. unread bodies: an answer given before the body was read (by any layer below) first reads
///    and discards the rest of it, or says `Connection: close`, so kept-alive connections stay
///    usable (`unread_body`);
/// 1. request id: taken from `x-request-id` or generated, so everything below can see it;
/// 2. propagate: copies it onto the response;
/// 3. trace: one span per request carrying the id, with `stream`/`records` filled by the handler;
/// 4. problem rendering: adds the id to error bodies (also of the layers below that answer on their
///    own), and logs 5xx details once;
/// 5. metrics: counts every answer with its final status;
/// 6. load shedding: beyond `server.max_concurrent_requests`, 503 at once instead of a queue;
/// 7. request timeout (408), so a slow client cannot hold a slot;
/// 8. the raw `Content-Encoding`, kept for the idempotency fingerprint before the next layer
///    removes the header (src/idempotency/mod.rs);
/// 9. request decompression (gzip, zstd): the handler's body cap then bounds the *decompressed*
///    size, so a decompression bomb gets 413;
/// 10. catch panic: a panic becomes a 500 problem.
fn with_middleware(router: Router<AppState>, state: AppState) -> Router {
    let timeout = state.settings.server.request_timeout();
    let access_log = state.settings.telemetry.access_log;
    router
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    unread_body::keep_connection_usable,
                ))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_request(())
                        // 5xx are logged once, with their detail, by the problem middleware.
                        .on_failure(())
                        .on_response(
                            move |response: &Response<axum::body::Body>,
                                  latency: Duration,
                                  _: &Span| {
                                let status = response.status().as_u16();
                                if access_log.logs(status) {
                                    tracing::event!(
                                        Level::INFO,
                                        status,
                                        latency_ms = latency.as_secs_f64() * 1000.0,
                                        "Request finished"
                                    );
                                }
                            },
                        ),
                )
                .layer(axum::middleware::from_fn(problem_middleware))
                .layer(axum::middleware::from_fn(crate::metrics::http_metrics))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    shed_load,
                ))
                .layer(TimeoutLayer::with_status_code(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                .layer(axum::middleware::map_request(
                    crate::idempotency::keep_raw_content_encoding,
                ))
                .layer(RequestDecompressionLayer::new())
                .layer(CatchPanicLayer::custom(
                    |panic: Box<dyn std::any::Any + Send>| {
                        // The message goes to the log (once, by the problem middleware), never
                        // to the caller.
                        let message = crate::service::panic_message(panic.as_ref());
                        ApiError::Panicked(message.to_owned()).into_response()
                    },
                )),
        )
        .with_state(state)
}

fn make_span(request: &Request<axum::body::Body>) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(request.uri().path(), |p| p.as_str());
    tracing::info_span!("request", method = %request.method(), route, request_id,
        stream = tracing::field::Empty, records = tracing::field::Empty,
        key_id = tracing::field::Empty)
}

/// Sheds load: a request beyond `server.max_concurrent_requests` gets 503 `overloaded` with
/// `Retry-After` at once. Health and metrics stay answerable, so an orchestrator can still see a
/// busy instance is alive.
async fn shed_load(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
    next: Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if path.starts_with("/health/") || path == "/metrics" {
        return next.run(request).await;
    }
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::TooBusy.into_response(),
    }
}
