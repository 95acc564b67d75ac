//! Aggregation's shard maps (src/service/aggregate.rs): each aggregated stream's open shards from
//! `ListShards`, cached, and fetched again when too old or after a misprediction, at most once a
//! second per stream and by one caller for all (a listing that keeps disagreeing with where Kinesis
//! routes must not turn every aggregate into a `ListShards` call).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::domain::StreamName;
use crate::kinesis::{KinesisPublisher, ShardRange};

/// The shortest time between two `ListShards` calls for one stream. Kinesis allows ListShards 100
/// times a second per account; a routing that keeps disagreeing with the listing (right after a
/// split the listing may lag) must not turn every aggregate into a ListShards call.
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A stream's open shards, sorted by the start of their hash-key range.
#[derive(Debug)]
pub(crate) struct ShardMap {
    shards: Vec<ShardRange>,
}

impl ShardMap {
    pub(crate) fn new(mut shards: Vec<ShardRange>) -> Option<Self> {
        shards.sort_by_key(|s| s.start);
        (!shards.is_empty()).then_some(Self { shards })
    }

    /// The `i`th shard, by the start of its range.
    pub(crate) fn shard(&self, i: usize) -> &ShardRange {
        &self.shards[i]
    }

    /// The shard that owns `hash`.
    pub(crate) fn shard_for(&self, hash: u128) -> Option<usize> {
        let i = self.shards.partition_point(|s| s.start <= hash);
        let i = i.checked_sub(1)?;
        (hash <= self.shards[i].end).then_some(i)
    }

    /// The range of the shard called `id`, if it is in this map. A shard's range never changes,
    /// so any map that lists the shard tells it truly.
    fn range_of(&self, id: &str) -> Option<&ShardRange> {
        self.shards.iter().find(|s| s.shard_id == id)
    }
}

/// The cached shard maps of every aggregated stream.
#[derive(Debug)]
pub(crate) struct ShardMaps {
    publisher: Arc<dyn KinesisPublisher>,
    maps: RwLock<HashMap<String, Arc<StreamMap>>>,
}

/// One stream's map, and the lock that makes its refreshes single-flight.
#[derive(Debug, Default)]
struct StreamMap {
    state: Mutex<Cached>,
    /// Held while `ListShards` runs: concurrent callers wait for that call instead of making
    /// their own.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Default)]
struct Cached {
    /// `None`: never fetched, or ListShards failed; plain records until the next try.
    map: Option<Arc<ShardMap>>,
    /// When ListShards last answered (or failed).
    fetched: Option<Instant>,
    /// An aggregate landed elsewhere than this map said: do not aggregate with it again.
    stale: bool,
    /// Inside a misprediction episode (one WARN when it starts, one INFO when it ends).
    mispredicting: bool,
}

impl ShardMaps {
    pub(crate) fn new(publisher: Arc<dyn KinesisPublisher>) -> Self {
        Self {
            publisher,
            maps: RwLock::default(),
        }
    }

    fn entry(&self, stream: &StreamName) -> Arc<StreamMap> {
        if let Some(e) = self
            .maps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream.as_str())
        {
            return e.clone();
        }
        self.maps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stream.as_str().to_owned())
            .or_default()
            .clone()
    }

    /// `stream`'s shard map for aggregating: fetched when missing or older than `refresh`, and
    /// fetched again after a misprediction, but not sooner than [`MIN_REFRESH_INTERVAL`] after
    /// the last fetch: until then a mispredicted map is not trusted and the answer is `None`.
    pub(super) async fn get(
        &self,
        stream: &StreamName,
        refresh: Duration,
    ) -> Option<Arc<ShardMap>> {
        let entry = self.entry(stream);
        let asked = Instant::now();
        {
            let c = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
            match c.fetched {
                Some(f) if !c.stale && f.elapsed() < refresh => return c.map.clone(),
                Some(f) if f.elapsed() < MIN_REFRESH_INTERVAL => {
                    return c.map.clone().filter(|_| !c.stale);
                }
                _ => {}
            }
        }
        self.refresh(&entry, stream, asked).await;
        let c = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
        c.map.clone().filter(|_| !c.stale)
    }

    /// Calls ListShards for `stream` unless another caller's call answered after `asked`, or the
    /// last call is younger than [`MIN_REFRESH_INTERVAL`].
    async fn refresh(&self, entry: &StreamMap, stream: &StreamName, asked: Instant) {
        let _single_flight = entry.refreshing.lock().await;
        let previous = {
            let c = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
            if c.fetched
                .is_some_and(|f| f >= asked || f.elapsed() < MIN_REFRESH_INTERVAL)
            {
                return;
            }
            c.clone()
        };
        metrics::counter!(crate::metrics::AGGREGATION_SHARD_MAP_REFRESHES, "stream" => stream.to_string())
            .increment(1);
        let map = match self.publisher.list_shards(stream).await {
            Ok(shards) => ShardMap::new(shards).map(Arc::new),
            Err(e) => {
                // Once per stream and failure, not per request: the metric counts the requests.
                if previous.fetched.is_none() || previous.map.is_some() {
                    tracing::warn!(stream = %stream, error = %e,
                        "No shard map (ListShards failed): records go out plain, not aggregated");
                }
                None
            }
        };
        let mut c = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
        c.map = map;
        c.fetched = Some(Instant::now());
        c.stale = false;
    }

    /// The range of shard `id` of `stream`: from the cached map, or from a refreshed one when the
    /// cached map does not list it (a child of a split). `None` when no map to be had lists it.
    pub(super) async fn range_of(&self, stream: &StreamName, id: &str) -> Option<ShardRange> {
        let entry = self.entry(stream);
        let asked = Instant::now();
        let known = |entry: &StreamMap| {
            let c = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
            c.map.as_ref().and_then(|m| m.range_of(id).cloned())
        };
        if let Some(range) = known(&entry) {
            return Some(range);
        }
        self.refresh(&entry, stream, asked).await;
        known(&entry)
    }

    /// Marks `stream`'s map stale on a misprediction, and logs an episode's start (WARN) and end
    /// (INFO) once each rather than once per aggregate.
    pub(super) fn episode(&self, stream: &StreamName, mispredicted: bool) {
        let entry = self.entry(stream);
        let mut c = entry.state.lock().unwrap_or_else(PoisonError::into_inner);
        if mispredicted {
            c.stale = true;
            if !c.mispredicting {
                c.mispredicting = true;
                tracing::warn!(stream = %stream,
                    "An aggregate landed on another shard than the shard map said (a reshard?): \
                     its records are sent again where they belong, and the map is refreshed at \
                     most once a second until it agrees with Kinesis");
            }
        } else if c.mispredicting {
            c.mispredicting = false;
            tracing::info!(stream = %stream, "The shard map agrees with Kinesis again");
        }
    }
}
