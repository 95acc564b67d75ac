//! [`MemoryStore`]: keyed answers in this process only. Bounded by `idempotency.max_entries`
//! (the oldest key is evicted first) and by TTL; it does not survive a restart and is not shared
//! with other instances (docs/operations.md#idempotent-retries).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Begin, Fingerprint, IdempotencyStore, KeptAnswer, StoreError};

/// The in-process store. One lock: every call is a map lookup or two, never held across an await.
#[derive(Debug)]
pub struct MemoryStore {
    max_entries: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Insertion order (a counter → the key), so the oldest is evicted first.
    order: BTreeMap<u64, String>,
    next: u64,
}

#[derive(Debug)]
struct Entry {
    fingerprint: Fingerprint,
    expires: Instant,
    /// `None` while in flight.
    answer: Option<Arc<KeptAnswer>>,
    seq: u64,
}

impl MemoryStore {
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keys held now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (each step is one insert or
        // remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.seq);
        }
    }

    fn insert(&mut self, key: &str, entry: impl FnOnce(u64) -> Entry, max_entries: usize) {
        self.remove(key);
        let seq = self.next;
        self.next += 1;
        self.entries.insert(key.to_owned(), entry(seq));
        self.order.insert(seq, key.to_owned());
        while self.entries.len() > max_entries {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[async_trait::async_trait]
impl IdempotencyStore for MemoryStore {
    async fn begin(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        in_flight_ttl: Duration,
    ) -> Result<Begin, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get(key).filter(|e| e.expires > now) {
            return Ok(if e.fingerprint != fingerprint {
                Begin::Conflict
            } else {
                match &e.answer {
                    Some(kept) => Begin::Done(Arc::clone(kept)),
                    None => Begin::InFlight,
                }
            });
        }
        inner.insert(
            key,
            |seq| Entry {
                fingerprint,
                expires: now + in_flight_ttl,
                answer: None,
                seq,
            },
            self.max_entries,
        );
        Ok(Begin::Fresh)
    }

    async fn finish(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        answer: KeptAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        // Kept in place when still marked (its age in the eviction order is the request's);
        // re-inserted as the newest when it was evicted or expired meanwhile.
        match inner.entries.get_mut(key) {
            Some(e) if e.fingerprint == fingerprint => {
                e.expires = now + ttl;
                e.answer = Some(Arc::new(answer));
                return Ok(());
            }
            // Our mark expired and another request took the key: its entry is not ours to
            // overwrite.
            Some(e) if e.expires > now => return Ok(()),
            _ => {}
        }
        inner.insert(
            key,
            |seq| Entry {
                fingerprint,
                expires: now + ttl,
                answer: Some(Arc::new(answer)),
                seq,
            },
            self.max_entries,
        );
        Ok(())
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // Only an in-flight mark: a kept answer stays.
        if inner.entries.get(key).is_some_and(|e| e.answer.is_none()) {
            inner.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use bytes::Bytes;

    use super::*;

    fn answer(body: &'static str) -> KeptAnswer {
        KeptAnswer {
            status: StatusCode::OK,
            body: Bytes::from_static(body.as_bytes()),
            content_type: None,
            retry_after: None,
            amzn_request_id: None,
            problem: None,
        }
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn begin_marks_then_replays_and_conflicts() {
        let s = MemoryStore::new(10);
        assert!(matches!(
            s.begin("k", [1; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        assert!(matches!(
            s.begin("k", [1; 32], LONG).await,
            Ok(Begin::InFlight)
        ));
        assert!(matches!(
            s.begin("k", [2; 32], LONG).await,
            Ok(Begin::Conflict)
        ));
        s.finish("k", [1; 32], answer("a"), LONG).await.unwrap();
        match s.begin("k", [1; 32], LONG).await {
            Ok(Begin::Done(kept)) => assert_eq!(kept.body, "a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.begin("k", [2; 32], LONG).await,
            Ok(Begin::Conflict)
        ));
        // A kept answer is not abandoned.
        s.abandon("k").await.unwrap();
        assert!(matches!(
            s.begin("k", [1; 32], LONG).await,
            Ok(Begin::Done(_))
        ));
    }

    #[tokio::test]
    async fn abandoned_and_expired_keys_are_free_again() {
        let s = MemoryStore::new(10);
        assert!(matches!(
            s.begin("k", [1; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        s.abandon("k").await.unwrap();
        assert!(matches!(
            s.begin("k", [1; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        let short = Duration::from_millis(1);
        assert!(matches!(
            s.begin("e", [1; 32], short).await,
            Ok(Begin::Fresh)
        ));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            s.begin("e", [2; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        s.finish("d", [1; 32], answer("x"), short).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            s.begin("d", [1; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
    }

    #[tokio::test]
    async fn a_late_finish_does_not_overwrite_another_requests_key() {
        let s = MemoryStore::new(10);
        let short = Duration::from_millis(1);
        assert!(matches!(
            s.begin("k", [1; 32], short).await,
            Ok(Begin::Fresh)
        ));
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(
            s.begin("k", [2; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        s.finish("k", [1; 32], answer("late"), LONG).await.unwrap();
        assert!(matches!(
            s.begin("k", [2; 32], LONG).await,
            Ok(Begin::InFlight)
        ));
    }

    #[tokio::test]
    async fn the_oldest_key_is_evicted_at_max_entries() {
        let s = MemoryStore::new(3);
        for k in ["a", "b", "c", "d"] {
            s.begin(k, [1; 32], LONG).await.unwrap();
            s.finish(k, [1; 32], answer("x"), LONG).await.unwrap();
        }
        assert_eq!(s.len(), 3);
        assert!(matches!(
            s.begin("a", [1; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        // "a" came back as the newest, so "b" went.
        assert!(matches!(
            s.begin("c", [1; 32], LONG).await,
            Ok(Begin::Done(_))
        ));
        assert!(matches!(
            s.begin("b", [1; 32], LONG).await,
            Ok(Begin::Fresh)
        ));
        assert_eq!(s.len(), 3);
    }
}
