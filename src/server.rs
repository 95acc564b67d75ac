//! The listener: accepts connections and serves the router on each, with the three limits that
//! production HTTP servers have and `axum::serve` does not: a cap on open connections, a time
//! limit on reading a request's headers, and an idle keep-alive timeout. Also graceful shutdown.
//!
//! Without them a client that opens connections and sends nothing (or half a request line) holds a
//! file descriptor for ever, and enough such clients exhaust the process. hyper's own
//! `header_read_timeout` is not used: it also runs while a kept-alive connection waits for its next
//! request, so it cannot tell "slow headers" (short limit) from "idle" (long limit, which must
//! outlast a load balancer's own idle timeout so the balancer closes first).
//!
//! At the connection cap, the idle kept-alive connection that has been idle longest is closed to
//! admit a new one, as production proxies do: otherwise a client (or the load balancer's health
//! check) waits for an idle timeout (75 s in deploy/k8s) behind connections nobody uses. Only
//! while every connection is busy do new ones wait.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::ServerSettings;

/// Connection limits, from `server.*` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most. At the cap, the longest-idle connection is closed to admit a new
    /// one; while none is idle, new ones wait (one accepted, the rest in the kernel's backlog).
    pub max_connections: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_settings(server: &ServerSettings) -> Self {
        Self {
            max_connections: server.max_connections,
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every open
/// connection finish its request in flight (idle ones close at once), and returns when all are
/// closed or `drain` has passed, whichever is first.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Arc::new(Connections::default());
    // `stop` tells connections to finish; `open` closes when the last connection has dropped its
    // sender, which is how the drain knows it is done.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    let mut at_capacity = false;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A new connection is waiting (accepted: the cap only matters when someone wants in).
        let permit = if let Ok(permit) = permits.clone().try_acquire_owned() {
            at_capacity = false;
            permit
        } else {
            if !at_capacity {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "Connection limit reached: closing idle connections, longest idle first, to \
                     admit new ones; while none is idle, new connections wait"
                );
                at_capacity = true;
            }
            tokio::select! {
                permit = admit(&permits, &connections) => permit,
                () = &mut shutdown => break,
            }
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            (permit, connections.clone()),
            stop_rx.clone(),
            open_tx.clone(),
        ));
    }
    drop(listener);
    tracing::info!(
        drain_timeout_ms = drain.as_millis() as u64,
        "Shutting down: draining in-flight requests"
    );
    let _ = stop_tx.send(true);
    drop(open_tx);
    tokio::select! {
        _ = open_rx.recv() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("Drain timeout passed with requests still in flight; exiting");
        }
    }
}

/// Waits for a connection's slot at the cap, closing the longest-idle connection to free one
/// (again every 50 ms while none is idle and no closing one is pending, as connections go idle).
async fn admit(permits: &Arc<Semaphore>, connections: &Connections) -> OwnedSemaphorePermit {
    loop {
        connections.close_longest_idle();
        tokio::select! {
            permit = permits.clone().acquire_owned() => {
                return permit.expect("the semaphore is never closed");
            }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// The open connections' activity, for choosing which idle one to close at the cap.
#[derive(Debug, Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Connections {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection until the returned guard drops.
    fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open().insert(id, activity);
        Registered {
            connections: self.clone(),
            id,
        }
    }

    /// Tells the connection idle the longest to close, unless one told before is still closing
    /// (one new connection needs one slot). A linear scan: it runs only at the cap.
    fn close_longest_idle(&self) {
        let open = self.open();
        if open.values().any(|a| a.state().closing) {
            return;
        }
        let longest = open
            .values()
            .filter_map(|a| {
                let s = a.state();
                (s.in_flight == 0 && s.head_since.is_none()).then_some((s.idle_since, a))
            })
            .min_by_key(|(since, _)| *since);
        if let Some((_, activity)) = longest {
            activity.close();
        }
    }
}

/// Keeps a connection in [`Connections`] while it is open.
struct Registered {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.open().remove(&self.id);
    }
}

/// An accept error: a connection that died in the backlog is nothing; running out of file
/// descriptors or memory is worth a pause (retrying at once would spin), as in `axum::serve`.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "Failed to accept a connection; pausing for 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Why a connection's watcher wants it closed.
enum Expired {
    /// No request for `idle_timeout`, or idle at the connection cap when a new one wants in:
    /// close politely (hyper closes an idle connection at once, a busy one after its answer).
    Idle,
    /// Headers begun and not finished within `header_read_timeout`: drop the socket.
    SlowHeaders,
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    (_permit, connections): (OwnedSemaphorePermit, Arc<Connections>),
    mut stop: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    // Small answers go out at once rather than waiting on Nagle for the client's ACK.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let _registered = connections.register(activity.clone());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        start: [0; 4],
        started: 0,
    });
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let guard = busy.begin_request();
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await;
            drop(guard);
            response
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut expired = pin!(activity.expired(limits));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "Connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            why = &mut expired, if !closing => match why {
                Expired::Idle => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                Expired::SlowHeaders => {
                    tracing::debug!("Closing a connection whose request headers did not arrive in time");
                    break;
                }
            },
        }
    }
}

/// What a connection is doing, as its watcher needs to know.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

#[derive(Debug)]
struct ActivityState {
    /// Requests being handled on this connection (more than one only with HTTP/2).
    in_flight: usize,
    /// When the connection last had nothing in flight.
    idle_since: Instant,
    /// When the first byte of a request arrived that has not yet reached the router.
    head_since: Option<Instant>,
    /// Told to close, to make room at the connection cap.
    closing: bool,
    /// The connection speaks HTTP/2 (h2c): bytes arriving while nothing is in flight may be a
    /// PING or SETTINGS, not the start of a request's headers, so the header timer is not
    /// started by them (hyper's h2 server bounds a HEADERS frame itself); the idle timeout
    /// still applies, and closes with GOAWAY.
    http2: bool,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
                closing: false,
                http2: false,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes arrived: when nothing is in flight they start a request's headers (HTTP/1.1 only).
    fn bytes_read(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && s.head_since.is_none() && !s.http2 {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// The headers are in and the router has the request; until the guard drops it is in flight.
    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.state();
        s.in_flight += 1;
        s.head_since = None;
        RequestGuard(self.clone())
    }

    /// The connection turned out to be HTTP/2: what started the header timer was its preface.
    fn speaks_http2(&self) {
        let mut s = self.state();
        s.http2 = true;
        s.head_since = None;
        drop(s);
        self.changed.notify_one();
    }

    /// Asks the connection to close (it is idle and a new connection needs its slot).
    fn close(&self) {
        self.state().closing = true;
        self.changed.notify_one();
    }

    /// Resolves when the connection has been idle, or reading headers, for too long, or when it
    /// was told to close.
    async fn expired(&self, limits: ConnectionLimits) -> Expired {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let deadline = {
                let s = self.state();
                if s.closing {
                    return Expired::Idle;
                } else if s.in_flight > 0 {
                    None
                } else if let Some(since) = s.head_since {
                    Some((since + limits.header_read_timeout, Expired::SlowHeaders))
                } else {
                    Some((s.idle_since + limits.idle_timeout, Expired::Idle))
                }
            };
            match deadline {
                None => changed.await,
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = changed => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

/// Marks a request finished when the router's answer is ready (or the request is abandoned).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            drop(s);
            self.0.changed.notify_one();
        }
    }
}

/// The socket, telling its connection's [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// The connection's first bytes, up to [`HTTP2_START`]'s length, to tell HTTP/2 from 1.1.
    start: [u8; 4],
    /// How many of them have arrived (`start.len()`: decided).
    started: usize,
}

/// How HTTP/2's connection preface (`PRI * HTTP/2.0…`, RFC 9113 §3.4) begins; no HTTP/1.1
/// request does (`POST`, `PUT `, `PATCH` share only the `P`, so one byte decides nothing).
const HTTP2_START: &[u8; 4] = b"PRI ";

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if self.started < HTTP2_START.len() {
                let new = &buf.filled()[before..];
                let take = new.len().min(HTTP2_START.len() - self.started);
                let at = self.started;
                self.start[at..at + take].copy_from_slice(&new[..take]);
                self.started += take;
                if self.started == HTTP2_START.len() && &self.start == HTTP2_START {
                    self.activity.speaks_http2();
                }
            }
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
