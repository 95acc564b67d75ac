//! Durable acceptance (docs/api.md#durable-acceptance): a spooled stream's records are appended to
//! a write-ahead log of the service's own and fsync'd before the 202, then shipped to Kinesis in
//! the background, at least once and in the order accepted.
//!
//! - `frame`: a stored record and its CRC32C frame.
//! - `log`: one stream's segment log: the group-commit writer, recovery, reader, progress.
//! - `ship`: the shipper task per stream, and the dead-letter file.
//!
//! On disk, under `spool.dir`: `streams/s-<stream>/` (segments and progress), `corrupt/` (damaged
//! bytes set aside at start), `dead-letter/<stream>.jsonl` (records Kinesis refused for good).
//! docs/operations.md#durable-acceptance is the operator's view.

mod frame;
mod log;
mod ship;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::{oneshot, watch};

pub use frame::SpooledRecord;

use crate::config::{Settings, WhenFull};
use crate::domain::{Record, StreamName};
use crate::kinesis::KinesisPublisher;

/// A segment is closed and a new one started past this size, so shipped data can be deleted
/// while the stream keeps writing (a quarter of `max_bytes` for small spools).
const SEGMENT_BYTES: u64 = 64 << 20;

/// Why a spooled write was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// `spool.max_bytes` would be passed: 503 `spool_full`.
    #[error("the spool holds as many unshipped bytes as it may ({used} of {limit}); retry later")]
    Full { used: u64, limit: u64 },
    /// The log cannot be written (disk error): 503, the detail for the log only.
    #[error("{0}")]
    Unwritable(String),
}

/// Unshipped bytes of all streams against `spool.max_bytes`, and the latch that keeps readiness
/// failing after a `spool_full` until the backlog is below 90%.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    full: AtomicBool,
    /// Woken whenever shipped bytes are released (writers waiting with `when_full: block`).
    room: tokio::sync::Notify,
}

impl Budget {
    /// Takes `bytes` of the budget, or says how much is used when they do not fit.
    fn try_reserve(&self, bytes: u64) -> Result<(), u64> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used + bytes > self.limit {
                return Err(used);
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    /// Takes `bytes`, waiting for the shippers to make room for up to `wait` (`None`: not at all,
    /// `when_full: reject`). A refusal latches readiness off (see [`Spool::accepting`]).
    async fn reserve(&self, bytes: u64, wait: Option<Duration>) -> Result<(), SpoolError> {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            // Registered before the check, so a release between the two is not missed.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let used = match self.try_reserve(bytes) {
                Ok(()) => return Ok(()),
                Err(used) => used,
            };
            match deadline {
                Some(deadline) if tokio::time::Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(deadline, room).await;
                }
                _ => {
                    self.full.store(true, Ordering::Release);
                    return Err(SpoolError::Full {
                        used,
                        limit: self.limit,
                    });
                }
            }
        }
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.room.notify_waiters();
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// One spooled stream: its log's writer and what the shipper watches.
#[derive(Debug)]
struct StreamSpool {
    writer: Mutex<std::sync::mpsc::Sender<log::Append>>,
    stream: String,
    /// In `spool.streams`: takes writes. An unlisted stream's log is only shipped.
    listed: bool,
    /// Why the log cannot be written any more, once a write or fsync failed (the writer refuses
    /// every later append; readiness says so).
    broken: Mutex<Option<String>>,
}

/// The spool: every spooled stream's log and shipper, and the shared byte budget.
#[derive(Debug)]
pub struct Spool {
    /// Held (an exclusive `flock`) while the spool is open.
    _lock: std::fs::File,
    streams: HashMap<String, StreamSpool>,
    budget: Arc<Budget>,
    /// `when_full: block`: how long a write waits for room (a little under the request timeout,
    /// so the caller hears `spool_full` rather than `request_timeout`); `None`: reject at once.
    block_for: Option<Duration>,
    /// Set at shutdown once the drain budget is spent: shippers stop.
    stop: watch::Sender<bool>,
    shippers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Spool {
    /// Opens the spool of `settings.spool` (`None` when no stream is spooled): recovers every
    /// stream's log (damage is set aside, never a reason not to start), starts the writers and
    /// the shippers. Needs a Tokio runtime.
    pub fn open(
        settings: &Arc<Settings>,
        publisher: &Arc<dyn KinesisPublisher>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let s = &settings.spool;
        // With no stream listed, a spool.dir that still holds logs is opened all the same, to ship
        // them (below).
        let leftovers = !s.dir.as_os_str().is_empty()
            && streams_in(&s.dir).is_ok_and(|found| !found.is_empty());
        if s.streams.is_empty() && !leftovers {
            return Ok(None);
        }
        let root = s.dir.clone();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("Failed to create spool.dir {}", root.display()))?;
        // Two processes on one spool would ship the same records and interleave their segments:
        // the second refuses to start. The lock goes with the process, however it ends.
        let lock = std::fs::File::create(root.join("lock"))
            .with_context(|| format!("Failed to open {}/lock", root.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "spool.dir {} is in use by another kinesis-writer process; give each instance \
                 a directory of its own",
                root.display()
            )
        })?;
        let budget = Arc::new(Budget {
            used: AtomicU64::new(0),
            limit: s.max_bytes,
            full: AtomicBool::new(false),
            room: tokio::sync::Notify::new(),
        });
        let (stop, _) = watch::channel(false);
        let segment_bytes = SEGMENT_BYTES.min((s.max_bytes / 4).max(64 * 1024));
        let mut streams = HashMap::new();
        let mut shippers = Vec::new();
        // A stream dropped from spool.streams may still have records on disk: they were
        // acknowledged, so they are shipped all the same; only new writes follow the list.
        let mut names: Vec<(String, bool)> =
            s.streams.iter().map(|e| (e.name.clone(), true)).collect();
        for found in streams_in(&root)? {
            if !s.spools(&found) && StreamName::parse(&found).is_ok() {
                tracing::warn!(
                    stream = %found,
                    "The spool holds a log for a stream not in spool.streams: shipping what it \
                     holds; new writes to it are not spooled"
                );
                names.push((found, false));
            }
        }
        for (name, listed) in names {
            let dir = stream_dir(&root, &name);
            let corrupt = root.join("corrupt");
            let recovered = log::recover(&dir, &corrupt, &name)
                .with_context(|| format!("Failed to read the spool in {}", dir.display()))?;
            budget.used.fetch_add(recovered.bytes, Ordering::AcqRel);
            let labels = [("stream", name.clone())];
            if recovered.corrupt_bytes > 0 {
                metrics::counter!(crate::metrics::SPOOL_CORRUPT_BYTES, &labels)
                    .increment(recovered.corrupt_bytes);
            }
            metrics::gauge!(crate::metrics::SPOOL_BYTES, &labels).set(recovered.bytes as f64);
            metrics::gauge!(crate::metrics::SPOOL_RECORDS, &labels).set(recovered.records as f64);
            if recovered.records > 0 {
                tracing::info!(
                    stream = %name,
                    records = recovered.records,
                    bytes = recovered.bytes,
                    "Spool recovered: unshipped records will be shipped"
                );
            }
            let (writer, committed) = log::spawn_writer(
                dir.clone(),
                recovered.next_seq,
                segment_bytes,
                Observer(name.clone()),
            )
            .with_context(|| format!("Failed to start the spool writer in {}", dir.display()))?;
            let stream = StreamName::parse(&name)?;
            let shipper = ship::Shipper {
                stream,
                dir,
                root: root.clone(),
                committed,
                publisher: publisher.clone(),
                settings: settings.clone(),
                budget: budget.clone(),
                stop: stop.subscribe(),
            };
            shippers.push(tokio::spawn(shipper.run()));
            streams.insert(
                name.clone(),
                StreamSpool {
                    writer: Mutex::new(writer),
                    stream: name,
                    broken: Mutex::new(None),
                    listed,
                },
            );
        }
        tracing::info!(dir = %root.display(), streams = streams.len(), "Spool open");
        let block_for = (s.when_full == WhenFull::Block).then(|| {
            let timeout = settings.server.request_timeout();
            timeout.saturating_sub(timeout / 10)
        });
        Ok(Some(Arc::new(Self {
            block_for,
            _lock: lock,
            streams,
            budget,
            stop,
            shippers: Mutex::new(shippers),
        })))
    }

    /// Whether `stream`'s writes are spooled.
    pub fn spools(&self, stream: &str) -> bool {
        self.streams.get(stream).is_some_and(|s| s.listed)
    }

    /// Appends `records` to `stream`'s log and waits for the fsync that makes them durable; their
    /// `RecordId`s, in order.
    pub async fn append(
        &self,
        stream: &StreamName,
        records: Vec<Record>,
    ) -> Result<Vec<uuid::Uuid>, SpoolError> {
        let Some(spool) = self.streams.get(stream.as_str()).filter(|s| s.listed) else {
            return Err(SpoolError::Unwritable(format!("{stream} is not spooled")));
        };
        let accepted_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut frames = Vec::new();
        let mut ids = Vec::with_capacity(records.len());
        for r in records {
            let stored = SpooledRecord {
                id: uuid::Uuid::new_v4(),
                accepted_ms,
                stream: spool.stream.clone(),
                partition_key: r.partition_key.as_str().to_owned(),
                explicit_hash_key: r.explicit_hash_key.map(|k| k.as_str().to_owned()),
                data: r.data,
            };
            ids.push(stored.id);
            frame::encode(&stored, &mut frames);
        }
        let bytes = frames.len() as u64;
        if let Err(e) = self.budget.reserve(bytes, self.block_for).await {
            metrics::counter!(crate::metrics::SPOOL_FULL, "stream" => stream.to_string())
                .increment(1);
            return Err(e);
        }
        let (reply, done) = oneshot::channel();
        let append = log::Append {
            frames,
            records: ids.len(),
            reply,
        };
        let sent = spool
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(append);
        let result = match sent {
            Ok(()) => done
                .await
                .unwrap_or_else(|_| Err("the spool writer stopped".to_owned())),
            Err(_) => Err("the spool writer stopped".to_owned()),
        };
        if let Err(why) = result {
            self.budget.release(bytes);
            *spool.broken.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
            return Err(SpoolError::Unwritable(why));
        }
        let labels = [("stream", stream.to_string())];
        metrics::gauge!(crate::metrics::SPOOL_BYTES, &labels).increment(bytes as f64);
        metrics::gauge!(crate::metrics::SPOOL_RECORDS, &labels).increment(ids.len() as f64);
        Ok(ids)
    }

    /// Whether the spool takes writes (for readiness): not once a stream's log could not be
    /// written (`Unwritable`), nor after a `spool_full` until the backlog is below 90% of
    /// `spool.max_bytes` (`Full`).
    pub fn accepting(&self) -> Result<(), SpoolError> {
        for s in self.streams.values() {
            if let Some(why) = &*s.broken.lock().unwrap_or_else(PoisonError::into_inner) {
                return Err(SpoolError::Unwritable(why.clone()));
            }
        }
        if self.budget.full.load(Ordering::Acquire) {
            let used = self.budget.used();
            if used * 10 >= self.budget.limit * 9 {
                return Err(SpoolError::Full {
                    used,
                    limit: self.budget.limit,
                });
            }
            self.budget.full.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Unshipped bytes on disk, all streams.
    pub fn backlog_bytes(&self) -> u64 {
        self.budget.used()
    }

    /// At shutdown, after the last request: keeps shipping until the backlog is gone or `budget`
    /// is spent, then stops the shippers. What is left stays on disk for the next start.
    pub async fn drain(&self, budget: Duration) {
        let started = Instant::now();
        let left = loop {
            let left = self.budget.used();
            if left == 0 || started.elapsed() >= budget {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = self.stop.send(true);
        let shippers =
            std::mem::take(&mut *self.shippers.lock().unwrap_or_else(PoisonError::into_inner));
        for s in shippers {
            s.abort();
        }
        if left > 0 {
            tracing::warn!(
                unshipped_bytes = left,
                "Spool not drained within spool.drain_s: the rest stays on disk and ships at the \
                 next start"
            );
        } else {
            tracing::info!("Spool drained");
        }
    }
}

/// The streams that have a log in the spool at `root`.
pub fn streams_in(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("streams");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("Failed to read {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(stream) = name.to_string_lossy().strip_prefix("s-") {
            out.push(stream.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// `kinesis-writer spool status DIR`: what the spool at `root` holds, one line per stream, read
/// without changing anything (damaged bytes are counted, not moved).
pub fn status(root: &Path) -> anyhow::Result<String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out = String::new();
    let streams = streams_in(root)?;
    if streams.is_empty() {
        out.push_str("no spooled stream\n");
    }
    for stream in streams {
        let dir = stream_dir(root, &stream);
        let s = log::scan(&dir, None, &stream)
            .with_context(|| format!("Failed to read {}", dir.display()))?;
        let oldest = s.oldest_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{} s", now_ms.saturating_sub(ms) / 1000),
        );
        let dead =
            std::fs::read_to_string(root.join("dead-letter").join(format!("{stream}.jsonl")))
                .map_or(0, |t| t.lines().count());
        out.push_str(&format!(
            "{stream}: {} unshipped records, {} bytes, {} segments, oldest waiting {oldest}, \
             {dead} dead-lettered, {} damaged bytes\n",
            s.records, s.bytes, s.segments, s.corrupt_bytes
        ));
    }
    Ok(out)
}

/// A stream's directory under the spool: a prefix keeps names such as `..` (a valid stream
/// name) from meaning anything to the file system.
fn stream_dir(root: &Path, stream: &str) -> PathBuf {
    root.join("streams").join(format!("s-{stream}"))
}

/// Counts fsyncs and records per fsync for one stream.
struct Observer(String);

impl log::GroupObserver for Observer {
    fn committed(&self, records: usize, _bytes: u64, _took: Duration) {
        let labels = [("stream", self.0.clone())];
        metrics::counter!(crate::metrics::SPOOL_FSYNCS, &labels).increment(1);
        metrics::histogram!(crate::metrics::SPOOL_FSYNC_RECORDS, &labels).record(records as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamSpool;
    use crate::testing::RecordingPublisher;

    #[tokio::test]
    async fn a_second_process_on_the_same_dir_is_refused_and_the_lock_goes_with_the_spool() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let mut settings = Settings::load(dir).unwrap();
        settings.spool.dir = tmp.path().to_owned();
        settings.spool.streams = vec![StreamSpool::named("s")];
        let settings = Arc::new(settings);
        let publisher: Arc<dyn KinesisPublisher> = Arc::new(RecordingPublisher::default());

        let first = Spool::open(&settings, &publisher).unwrap().unwrap();
        let err = Spool::open(&settings, &publisher).unwrap_err().to_string();
        assert!(err.contains("in use by another"), "{err}");
        first.drain(Duration::ZERO).await;
        drop(first);
        assert!(Spool::open(&settings, &publisher).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_written_refuses_writes_and_readiness() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let mut settings = Settings::load(dir).unwrap();
        settings.spool.dir = tmp.path().to_owned();
        settings.spool.streams = vec![StreamSpool::named("s")];
        // Segments of 256 KiB (a quarter of it).
        settings.spool.max_bytes = 1 << 20;
        let settings = Arc::new(settings);
        let publisher: Arc<dyn KinesisPublisher> = Arc::new(RecordingPublisher::default());
        let spool = Spool::open(&settings, &publisher).unwrap().unwrap();
        let stream = StreamName::parse("s").unwrap();
        let record = |n: usize| Record {
            data: bytes::Bytes::from(vec![b'x'; n]),
            partition_key: crate::domain::PartitionKey::parse("k", None).unwrap(),
            explicit_hash_key: None,
        };
        spool.append(&stream, vec![record(10)]).await.unwrap();
        assert!(spool.accepting().is_ok());

        // The next segment cannot be created: its directory is gone (a disk error stands in).
        std::fs::remove_dir_all(stream_dir(tmp.path(), "s")).unwrap();
        let big = spool.append(&stream, vec![record(300_000)]).await;
        assert!(matches!(big, Err(SpoolError::Unwritable(_))), "{big:?}");
        let after = spool.append(&stream, vec![record(10)]).await;
        assert!(matches!(after, Err(SpoolError::Unwritable(_))), "{after:?}");
        assert!(matches!(spool.accepting(), Err(SpoolError::Unwritable(_))));
        spool.drain(Duration::ZERO).await;
    }

    #[tokio::test]
    async fn records_of_a_stream_dropped_from_the_list_are_still_shipped() {
        for second_list in [&["b"][..], &[]] {
            dropped_stream_is_shipped(second_list).await;
        }
    }

    /// A record spooled for `a`, then the spool reopened with `second_list`.
    async fn dropped_stream_is_shipped(second_list: &[&str]) {
        let tmp = tempfile::tempdir().unwrap();
        let config = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let settings_for = |streams: &[&str]| {
            let mut settings = Settings::load(config).unwrap();
            settings.spool.dir = tmp.path().to_owned();
            settings.spool.streams = streams.iter().map(|s| StreamSpool::named(*s)).collect();
            Arc::new(settings)
        };
        let a = StreamName::parse("a").unwrap();
        let record = Record {
            data: bytes::Bytes::from_static(b"kept"),
            partition_key: crate::domain::PartitionKey::parse("k", None).unwrap(),
            explicit_hash_key: None,
        };
        // The first spool's shipper is stopped before the write: the record stays on disk.
        let unreachable: Arc<dyn KinesisPublisher> = Arc::new(RecordingPublisher::default());
        let first = Spool::open(&settings_for(&["a"]), &unreachable)
            .unwrap()
            .unwrap();
        first.drain(Duration::ZERO).await;
        first.append(&a, vec![record]).await.unwrap();
        drop(first);

        let recording = Arc::new(RecordingPublisher::default());
        let publisher: Arc<dyn KinesisPublisher> = recording.clone();
        let second = Spool::open(&settings_for(second_list), &publisher)
            .unwrap()
            .expect("opened to ship what is left");
        assert!(!second.spools("a"), "{second_list:?}");
        let started = Instant::now();
        while second.backlog_bytes() > 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "shipped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let calls = recording.calls();
        assert_eq!(&calls[0].records[0].data[..], b"kept");
        second.drain(Duration::ZERO).await;
    }
}
