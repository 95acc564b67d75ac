//! Idempotent retries (docs/api.md#idempotent-retries): the `Idempotency-Key` header, the
//! request's fingerprint, and [`IdempotencyStore`], where a keyed request's answer is kept so that
//! a retry gets it again instead of writing twice.
//!
//! The store is a small async trait so that a shared store (Redis) can sit beside the in-process
//! one ([`MemoryStore`]) without the handler changing: `begin` marks the key in flight atomically
//! (like `SET NX` with an expiry, so a process that dies holds no key for ever), `finish` keeps
//! the answer with its TTL, and `abandon` frees the key when the answer is not kept.

mod memory;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use memory::MemoryStore;

use crate::config::{IdempotencySettings, OnStoreError};
use crate::error::Problem;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The header on a replayed answer.
pub const REPLAYED: &str = "idempotency-replayed";
/// Longest key accepted (docs/api.md#idempotent-retries).
pub const MAX_KEY_LEN: usize = 255;

/// SHA-256 of what makes two requests "the same request".
pub type Fingerprint = [u8; 32];

/// What a keyed request may fail with before or instead of being processed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters (%x21-7E): {0}")]
    InvalidKey(&'static str),
    #[error("writes to stream {0} must carry an Idempotency-Key header")]
    Required(String),
    #[error(
        "this Idempotency-Key was used with a different request (method, path, query, \
         Content-Type, Content-Encoding or body); use a new key for a new request"
    )]
    Reused,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    InFlight,
    #[error("the idempotency store could not be reached: {0}")]
    Unavailable(String),
}

/// A store that could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// A kept answer, replayed byte for byte.
#[derive(Debug, Clone)]
pub struct KeptAnswer {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub amzn_request_id: Option<HeaderValue>,
    /// A problem answer: rendered again so that the new request's id fills `request_id`
    /// (src/error/middleware.rs adds it), the rest of the body unchanged.
    pub problem: Option<Problem>,
}

/// What `begin` found under a key.
#[derive(Debug)]
pub enum Begin {
    /// Nobody had it: it is now marked in flight for the caller.
    Fresh,
    /// The same request is being processed.
    InFlight,
    /// The same request was answered: this is the answer.
    Done(Arc<KeptAnswer>),
    /// The key was used with another fingerprint (in flight or answered).
    Conflict,
}

/// Where keyed requests' marks and answers live.
#[async_trait::async_trait]
pub trait IdempotencyStore: std::fmt::Debug + Send + Sync {
    /// Atomically: if `key` is free (or expired), mark it in flight with `fingerprint` for
    /// `in_flight_ttl` and answer `Fresh`; otherwise say what holds it.
    async fn begin(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        in_flight_ttl: Duration,
    ) -> Result<Begin, StoreError>;

    /// Keeps `answer` under `key` for `ttl`.
    async fn finish(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        answer: KeptAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Drops the in-flight mark: the answer is not kept and the next try is processed anew.
    async fn abandon(&self, key: &str) -> Result<(), StoreError>;
}

/// The `Idempotency-Key` of a request: `None` when absent.
pub fn key_from(headers: &HeaderMap) -> Result<Option<&str>, IdempotencyError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(IdempotencyError::InvalidKey("sent more than once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(IdempotencyError::InvalidKey("empty"));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(IdempotencyError::InvalidKey("too long"));
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(IdempotencyError::InvalidKey(
            "contains a space, a control or a non-ASCII character",
        ));
    }
    // All visible ASCII, so this cannot fail.
    Ok(value.to_str().ok())
}

/// The store key: the caller's API key id (or anonymous), the stream and the key, each part
/// length-prefixed so no two scopes can spell the same string.
pub fn scoped_key(key_id: Option<&str>, stream: &str, key: &str) -> String {
    let who = key_id.map_or_else(|| "anon".to_owned(), |id| format!("key:{id}"));
    format!("{}:{who}|{}:{stream}|{key}", who.len(), stream.len())
}

/// The request's `Content-Encoding` as sent: request decompression removes the header before the
/// handler runs, yet a gzip body and the same bytes sent plain are different requests.
#[derive(Debug, Clone)]
pub struct RawContentEncoding(pub Option<HeaderValue>);

/// Keeps the raw `Content-Encoding` in the request's extensions (the layer above decompression).
pub async fn keep_raw_content_encoding(
    mut request: axum::extract::Request,
) -> axum::extract::Request {
    let raw = request.headers().get(header::CONTENT_ENCODING).cloned();
    request.extensions_mut().insert(RawContentEncoding(raw));
    request
}

/// SHA-256 over the method, path, raw query, raw `Content-Type` and `Content-Encoding` (as
/// sent: `content_encoding`, see [`RawContentEncoding`]) and the body, each length-prefixed so
/// that moving bytes between parts changes the fingerprint.
pub fn fingerprint(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    content_encoding: Option<&HeaderValue>,
    body: &[u8],
) -> Fingerprint {
    let mut h = Sha256::new();
    let mut part = |bytes: Option<&[u8]>| match bytes {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
    };
    part(Some(method.as_bytes()));
    part(Some(path.as_bytes()));
    part(query.map(str::as_bytes));
    part(headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes));
    part(content_encoding.map(HeaderValue::as_bytes));
    part(Some(body));
    h.finalize().into()
}

/// Whether an answer of `status` is kept: 200, 202, 207 and 4xx other than 408/409/429; a 5xx
/// or 429 is transient, so its retry must be processed anew.
pub fn is_kept(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 202 | 207)
        || (status.is_client_error() && !matches!(status.as_u16(), 408 | 409 | 429))
}

/// The store of this process, with its settings, and the one place its calls are timed and
/// counted.
#[derive(Debug)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    settings: IdempotencySettings,
}

/// What the handler does with a keyed request.
#[derive(Debug)]
pub enum Decision {
    /// Process it; hand the answer to [`Ticket::keep`].
    Process(Ticket),
    /// Process it without the guarantee (the store failed under `on_store_error: proceed`).
    Unguarded,
    /// Answer this instead: the kept answer.
    Replay(Response),
}

impl Idempotency {
    pub fn new(settings: &IdempotencySettings) -> Self {
        Self {
            store: Arc::new(MemoryStore::new(settings.max_entries)),
            settings: settings.clone(),
        }
    }

    /// With another store (tests, a future shared store).
    pub fn with_store(settings: &IdempotencySettings, store: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            store,
            settings: settings.clone(),
        }
    }

    pub fn settings(&self) -> &IdempotencySettings {
        &self.settings
    }

    /// Marks `key` in flight, or says why the request must not be processed now.
    pub async fn begin(
        &self,
        key: String,
        fingerprint: Fingerprint,
        stream: &str,
    ) -> Result<Decision, IdempotencyError> {
        let started = Instant::now();
        let found = self
            .store
            .begin(
                &key,
                fingerprint,
                Duration::from_secs(self.settings.in_flight_ttl_s),
            )
            .await;
        record_latency("begin", started);
        let stream = stream.to_owned();
        match found {
            Ok(Begin::Fresh) => {
                metrics::counter!(crate::metrics::IDEMPOTENCY_MISSES, "stream" => stream)
                    .increment(1);
                Ok(Decision::Process(Ticket {
                    store: Arc::clone(&self.store),
                    key: Some(key),
                    fingerprint,
                    ttl: Duration::from_secs(self.settings.ttl_s),
                }))
            }
            Ok(Begin::Done(kept)) => {
                metrics::counter!(crate::metrics::IDEMPOTENCY_REPLAYS, "stream" => stream)
                    .increment(1);
                Ok(Decision::Replay(replay(&kept)))
            }
            Ok(Begin::InFlight) => {
                metrics::counter!(crate::metrics::IDEMPOTENCY_IN_FLIGHT, "stream" => stream)
                    .increment(1);
                Err(IdempotencyError::InFlight)
            }
            Ok(Begin::Conflict) => {
                metrics::counter!(crate::metrics::IDEMPOTENCY_CONFLICTS, "stream" => stream)
                    .increment(1);
                Err(IdempotencyError::Reused)
            }
            Err(e) => {
                store_error("begin", &e);
                match self.settings.on_store_error {
                    OnStoreError::Fail => Err(IdempotencyError::Unavailable(e.0)),
                    OnStoreError::Proceed => {
                        tracing::warn!(error = %e, "Idempotency store failed: processing without the guarantee");
                        Ok(Decision::Unguarded)
                    }
                }
            }
        }
    }
}

/// A key marked in flight for one request. Dropped without [`Ticket::keep`] (a timeout, a
/// panic), it frees the key at once rather than after `in_flight_ttl_s`.
#[derive(Debug)]
pub struct Ticket {
    store: Arc<dyn IdempotencyStore>,
    key: Option<String>,
    fingerprint: Fingerprint,
    ttl: Duration,
}

impl Ticket {
    /// Keeps `response` if its status is kept (else frees the key) and gives it back unchanged.
    /// `problem` is the problem the answer renders, if it is one.
    pub async fn keep(mut self, response: Response, problem: Option<&Problem>) -> Response {
        let Some(key) = self.key.take() else {
            return response;
        };
        let status = response.status();
        if !is_kept(status) {
            let started = Instant::now();
            let result = self.store.abandon(&key).await;
            record_latency("abandon", started);
            if let Err(e) = result {
                store_error("abandon", &e);
            }
            return response;
        }
        let (parts, body) = response.into_parts();
        // Our own answers are built in memory (JSON), so reading them back costs a copy at most.
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "Could not read an answer back to keep it");
                let _ = self.store.abandon(&key).await;
                return Response::from_parts(parts, axum::body::Body::empty());
            }
        };
        let kept = KeptAnswer {
            status,
            body: body.clone(),
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            retry_after: parts.headers.get(header::RETRY_AFTER).cloned(),
            amzn_request_id: parts.headers.get("x-amzn-requestid").cloned(),
            problem: problem.map(Problem::for_replay),
        };
        let started = Instant::now();
        let result = self
            .store
            .finish(&key, self.fingerprint, kept, self.ttl)
            .await;
        record_latency("finish", started);
        if let Err(e) = result {
            // The answer stands; only its replay is lost, so a retry will be processed anew.
            store_error("finish", &e);
        }
        Response::from_parts(parts, axum::body::Body::from(body))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let store = Arc::clone(&self.store);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = store.abandon(&key).await {
                        store_error("abandon", &e);
                    }
                });
            }
        }
    }
}

/// The kept answer again, marked as a replay.
fn replay(kept: &KeptAnswer) -> Response {
    let mut response = match &kept.problem {
        Some(problem) => problem.clone().into_response(),
        None => (kept.status, kept.body.clone()).into_response(),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, &kept.content_type),
        (header::RETRY_AFTER, &kept.retry_after),
        (
            header::HeaderName::from_static("x-amzn-requestid"),
            &kept.amzn_request_id,
        ),
    ] {
        match value {
            Some(v) => {
                headers.insert(name, v.clone());
            }
            None => {
                headers.remove(name);
            }
        }
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

fn record_latency(op: &'static str, started: Instant) {
    metrics::histogram!(crate::metrics::IDEMPOTENCY_STORE_DURATION, "op" => op)
        .record(started.elapsed().as_secs_f64());
}

fn store_error(op: &'static str, e: &StoreError) {
    tracing::error!(op, error = %e, "Idempotency store failed");
    metrics::counter!(crate::metrics::IDEMPOTENCY_STORE_ERRORS, "op" => op).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255() {
        let check = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_bytes(v).unwrap());
            key_from(&h).map(|k| k.map(str::to_owned))
        };
        assert_eq!(check(b"abc-123").unwrap().as_deref(), Some("abc-123"));
        assert!(check(&[b'a'; 255]).is_ok());
        assert!(check(&[b'a'; 256]).is_err());
        assert!(check(b"").is_err());
        assert!(check(b"a b").is_err());
        assert!(check(b"a\tb").is_err());
        assert!(check(&[0xc3, 0xa9]).is_err());
        assert!(key_from(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn fingerprints_tell_parts_apart() {
        let h = HeaderMap::new();
        let a = fingerprint("POST", "/streams/s/records", Some("a=1"), &h, None, b"x");
        assert_eq!(
            a,
            fingerprint("POST", "/streams/s/records", Some("a=1"), &h, None, b"x")
        );
        assert_ne!(
            a,
            fingerprint("POST", "/streams/s/records", Some("a=1"), &h, None, b"y")
        );
        assert_ne!(
            a,
            fingerprint("POST", "/streams/s/records", None, &h, None, b"x")
        );
        assert_ne!(
            a,
            fingerprint("POST", "/streams/s/records", Some("a=1x"), &h, None, b"")
        );
        let mut ct = HeaderMap::new();
        ct.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_ne!(
            a,
            fingerprint("POST", "/streams/s/records", Some("a=1"), &ct, None, b"x")
        );
        let gzip = HeaderValue::from_static("gzip");
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/streams/s/records",
                Some("a=1"),
                &h,
                Some(&gzip),
                b"x"
            )
        );
        assert_ne!(
            scoped_key(None, "s", "k"),
            scoped_key(Some("anon"), "s", "k")
        );
        assert_ne!(
            scoped_key(Some("a"), "s", "k"),
            scoped_key(Some("a"), "t", "k")
        );
    }

    /// A store that is down: what a shared store's outage looks like to the handler.
    #[derive(Debug)]
    struct Down;

    #[async_trait::async_trait]
    impl IdempotencyStore for Down {
        async fn begin(&self, _: &str, _: Fingerprint, _: Duration) -> Result<Begin, StoreError> {
            Err(StoreError("connection refused".into()))
        }
        async fn finish(
            &self,
            _: &str,
            _: Fingerprint,
            _: KeptAnswer,
            _: Duration,
        ) -> Result<(), StoreError> {
            Err(StoreError("connection refused".into()))
        }
        async fn abandon(&self, _: &str) -> Result<(), StoreError> {
            Err(StoreError("connection refused".into()))
        }
    }

    #[tokio::test]
    async fn a_store_error_fails_the_write_or_proceeds_as_configured() {
        let fail = Idempotency::with_store(&IdempotencySettings::default(), Arc::new(Down));
        let refused = fail.begin("k".into(), [0; 32], "s").await;
        assert!(matches!(refused, Err(IdempotencyError::Unavailable(_))));
        let settings = IdempotencySettings {
            on_store_error: OnStoreError::Proceed,
            ..Default::default()
        };
        let proceed = Idempotency::with_store(&settings, Arc::new(Down));
        let unguarded = proceed.begin("k".into(), [0; 32], "s").await;
        assert!(matches!(unguarded, Ok(Decision::Unguarded)));
        let p = crate::error::ApiError::from(IdempotencyError::Unavailable("x".into())).problem();
        assert_eq!((p.status, p.code), (503, "idempotency_unavailable"));
        assert!(!p.detail.contains("x"), "the store's words stay in the log");
    }

    #[test]
    fn transient_answers_are_not_kept() {
        for kept in [200, 202, 207, 400, 404, 413, 422, 428] {
            assert!(is_kept(StatusCode::from_u16(kept).unwrap()), "{kept}");
        }
        for not in [408, 409, 429, 500, 502, 503, 504] {
            assert!(!is_kept(StatusCode::from_u16(not).unwrap()), "{not}");
        }
    }
}
