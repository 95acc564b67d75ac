//! Answers given before the request body was read keep the connection usable.
//!
//! A refusal (401, 403, 404, 413, 415, 400 on the query, 503 shed, 408) answers without reading
//! the body. hyper then closes the connection, silently: the *next* request a pooled client or a
//! load balancer sends on it fails ("connection closed before message completed"), a 502 for an
//! innocent caller behind a balancer. So this layer, outermost, keeps hold of whatever body the
//! inner layers dropped unread and, before the answer goes out, reads and discards the rest of it
//! (bounded by `limits.body_limit_bytes` and `server.discard_body_timeout_ms`), so the connection
//! stays in a clean state for the next request. When the rest is too large, too slow, or the
//! client waits for `100 Continue`, the answer says `Connection: close` instead, so the client
//! knows not to reuse the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::state::AppState;

pub(crate) async fn keep_connection_usable(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // Bodiless requests (health checks, GETs) pass straight through.
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let left = Arc::new(Leftover::default());
    let request = request.map(|inner| {
        Body::new(Tracked {
            inner: Some(inner),
            left: left.clone(),
        })
    });
    let mut response = next.run(request).await;
    let (unread, polled, finished) = {
        let mut state = left.lock();
        (state.unread.take(), state.polled, state.finished)
    };
    let usable = match unread {
        // Read to the end (or empty): nothing to do.
        None if finished => true,
        // Still held somewhere we cannot see: the connection's state is unknown.
        None => false,
        // The client waits for `100 Continue` before it sends the body; reading now would ask
        // for a body we are going to throw away.
        Some(_) if expects_continue && !polled => false,
        Some(body) => {
            let server = &state.settings.server;
            discard(
                body,
                state.settings.limits.body_limit_bytes,
                Duration::from_millis(server.discard_body_timeout_ms),
            )
            .await
        }
    };
    if !usable {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end and drops the bytes; `false` when it is longer than `max_bytes`, slower
/// than `within`, or broken.
async fn discard(mut body: Body, max_bytes: usize, within: Duration) -> bool {
    if body.size_hint().lower() > max_bytes as u64 {
        return false;
    }
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                    if seen > max_bytes {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(within, read).await.unwrap_or(false)
}

/// What became of the request body the inner layers were given.
#[derive(Debug, Default)]
struct Leftover(Mutex<LeftoverState>);

#[derive(Debug, Default)]
struct LeftoverState {
    /// Read to its end.
    finished: bool,
    /// Read from at all (so a `100 Continue` has gone out).
    polled: bool,
    /// Dropped before its end: the rest, for [`discard`].
    unread: Option<Body>,
}

impl Leftover {
    fn lock(&self) -> std::sync::MutexGuard<'_, LeftoverState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The request body as the inner layers see it: the same frames, and on drop before its end the
/// rest handed back through [`Leftover`].
struct Tracked {
    inner: Option<Body>,
    left: Arc<Leftover>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        let mut state = self.left.lock();
        state.polled = true;
        state.finished |= matches!(polled, Poll::Ready(None));
        drop(state);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut state = self.left.lock();
        match self.inner.take() {
            Some(inner) if !state.finished && !inner.is_end_stream() => state.unread = Some(inner),
            _ => state.finished = true,
        }
    }
}
