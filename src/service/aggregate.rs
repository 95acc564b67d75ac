//! KPL aggregation in the write path (docs/api.md#aggregation): user records grouped by the shard
//! their own key maps to, packed into aggregated Kinesis records (`kinesis::kpl`), sent with the
//! usual retries, and each user record answered from the Kinesis record that holds it.
//!
//! Shard affinity is kept: every aggregate carries an `ExplicitHashKey` at the start of its
//! shard's hash-key range, so it lands where each of its user records would have landed alone.
//! The shard map comes from `ListShards`, cached per stream and fetched again after
//! `aggregation.shard_map_refresh_ms`, or at once when Kinesis puts an aggregate on another shard
//! than predicted (a reshard). Without a map (the call failed, or the role lacks
//! `kinesis:ListShards`), records go out plain: the service never guesses a shard.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::AggregationConfig;
use crate::domain::{EntryOutcome, ExplicitHashKey, Record, StreamName};
use crate::kinesis::kpl::{self, SizeCounter};
use crate::kinesis::{KinesisPublisher, ShardRange};

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

    /// The shard that owns `hash`.
    pub(crate) fn shard_for(&self, hash: u128) -> Option<usize> {
        let i = self.shards.partition_point(|s| s.start <= hash);
        let i = i.checked_sub(1)?;
        (hash <= self.shards[i].end).then_some(i)
    }
}

/// The cached shard maps of every aggregated stream.
#[derive(Debug)]
pub(crate) struct ShardMaps {
    publisher: Arc<dyn KinesisPublisher>,
    maps: RwLock<HashMap<String, Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    /// `None`: ListShards failed; plain records until the next try.
    map: Option<Arc<ShardMap>>,
    fetched: Instant,
    stale: bool,
}

impl ShardMaps {
    pub(crate) fn new(publisher: Arc<dyn KinesisPublisher>) -> Self {
        Self {
            publisher,
            maps: RwLock::default(),
        }
    }

    /// `stream`'s shard map, fetched when missing, older than `refresh` or marked stale.
    async fn get(&self, stream: &StreamName, refresh: Duration) -> Option<Arc<ShardMap>> {
        let cached = self
            .maps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream.as_str())
            .cloned();
        if let Some(c) = &cached
            && !c.stale
            && c.fetched.elapsed() < refresh
        {
            return c.map.clone();
        }
        let map = match self.publisher.list_shards(stream).await {
            Ok(shards) => ShardMap::new(shards).map(Arc::new),
            Err(e) => {
                // Once per stream and failure, not per request: the metric counts the requests.
                if cached.as_ref().is_none_or(|c| c.map.is_some()) {
                    tracing::warn!(stream = %stream, error = %e,
                        "No shard map (ListShards failed): records go out plain, not aggregated");
                }
                None
            }
        };
        if map.is_some() && cached.as_ref().is_some_and(|c| c.stale) {
            tracing::info!(stream = %stream, "Shard map refreshed after a misprediction");
        }
        self.maps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                stream.as_str().to_owned(),
                Cached {
                    map: map.clone(),
                    fetched: Instant::now(),
                    stale: false,
                },
            );
        map
    }

    /// The Kinesis records to send for `records` when `stream` aggregates (`config`): `None` to
    /// send them plain, because aggregation is off, there is a lone record, or there is no shard
    /// map (then counted in `kinesis_aggregation_plain_fallback_total`). Both write paths, direct
    /// and coalesced, ask here.
    pub(crate) async fn plan(
        &self,
        stream: &StreamName,
        config: Option<AggregationConfig>,
        records: &[Record],
    ) -> Option<Plan> {
        let config = config.filter(|_| records.len() > 1)?;
        let Some(map) = self.get(stream, config.refresh).await else {
            metrics::counter!(crate::metrics::AGGREGATION_PLAIN_FALLBACK, "stream" => stream.to_string())
                .increment(1);
            return None;
        };
        Some(plan(records, &config, &map))
    }

    /// Kinesis put a record on another shard than the map said: fetch the map again next time.
    fn invalidate(&self, stream: &StreamName) {
        if let Some(c) = self
            .maps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(stream.as_str())
        {
            c.stale = true;
        }
    }
}

/// The Kinesis records that carry a request's user records.
#[derive(Debug)]
pub(crate) struct Plan {
    /// What goes to PutRecords: aggregates, and plain records where a shard has only one.
    pub(crate) records: Vec<Record>,
    /// For each of `records`: the user records it holds, in order (one for a plain record).
    members: Vec<Vec<usize>>,
    /// For each aggregate: the shard it must land on.
    predicted: Vec<Option<String>>,
    user_records: usize,
}

/// Groups `records` by shard (in order of first appearance, each group in request order) and
/// packs each group into aggregates within `config`'s bytes and records.
fn plan(records: &[Record], config: &AggregationConfig, map: &ShardMap) -> Plan {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        // A map from ListShards covers the whole range; a hole would be a broken answer: such a
        // record goes alone (plain), in a group of its own.
        let shard = map
            .shard_for(kpl::hash_key_of(record))
            .unwrap_or(usize::MAX);
        let at = *group_of.entry(shard).or_insert_with(|| {
            groups.push((shard, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(i);
    }
    let mut out = Plan {
        records: Vec::new(),
        members: Vec::new(),
        predicted: Vec::new(),
        user_records: records.len(),
    };
    for (shard, members) in groups {
        let mut current: Vec<usize> = Vec::new();
        let mut size = SizeCounter::default();
        for i in members {
            let full = current.len() >= config.max_records
                || (!current.is_empty() && size.with(&records[i]) > config.max_bytes);
            if full || shard == usize::MAX {
                out.push(records, std::mem::take(&mut current), map, shard);
                size = SizeCounter::default();
            }
            size.add(&records[i]);
            current.push(i);
        }
        out.push(records, current, map, shard);
    }
    out
}

impl Plan {
    fn push(&mut self, records: &[Record], members: Vec<usize>, map: &ShardMap, shard: usize) {
        match members.len() {
            0 => return,
            // A lone record goes out plain: nothing to unpack, and it lands by its own key.
            1 => {
                self.records.push(records[members[0]].clone());
                self.predicted.push(None);
            }
            _ => {
                let range = &map.shards[shard];
                let data = kpl::encode(members.iter().map(|&i| &records[i]));
                metrics::histogram!(crate::metrics::AGGREGATION_USER_RECORDS)
                    .record(members.len() as f64);
                metrics::histogram!(crate::metrics::AGGREGATION_BYTES).record(data.len() as f64);
                self.records.push(Record {
                    data,
                    partition_key: records[members[0]].partition_key.clone(),
                    // Inside the shard's own range: the aggregate lands where its records would.
                    explicit_hash_key: Some(
                        ExplicitHashKey::parse(&range.start.to_string(), None)
                            .expect("a u128 in decimal is a valid hash key"),
                    ),
                });
                self.predicted.push(Some(range.shard_id.clone()));
            }
        }
        self.members.push(members);
    }

    /// One outcome per user record, from one outcome per Kinesis record: a written aggregate
    /// gives each of its records its shard, sequence number and position (`SubSequenceNumber`);
    /// a failed one fails each of them with its code. A misprediction invalidates the map.
    pub(crate) fn expand(
        &self,
        results: Vec<EntryOutcome>,
        maps: &ShardMaps,
        stream: &StreamName,
    ) -> Vec<EntryOutcome> {
        let mut out: Vec<Option<EntryOutcome>> = vec![None; self.user_records];
        for ((result, members), predicted) in
            results.into_iter().zip(&self.members).zip(&self.predicted)
        {
            if let (Some(want), EntryOutcome::Written { shard_id, .. }) = (predicted, &result)
                && want != shard_id
            {
                tracing::warn!(stream = %stream, predicted = %want, landed = %shard_id,
                    "An aggregate landed on another shard than the map said: refreshing the map");
                maps.invalidate(stream);
            }
            if predicted.is_none() {
                out[members[0]] = Some(result);
                continue;
            }
            for (position, &i) in members.iter().enumerate() {
                out[i] = Some(match &result {
                    EntryOutcome::Written {
                        shard_id,
                        sequence_number,
                        ..
                    } => EntryOutcome::Written {
                        shard_id: shard_id.clone(),
                        sequence_number: sequence_number.clone(),
                        sub_sequence_number: Some(position as u64),
                    },
                    failed @ EntryOutcome::Failed { .. } => failed.clone(),
                });
            }
        }
        out.into_iter()
            .map(|o| o.expect("every user record is in exactly one Kinesis record"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::PartitionKey;

    fn quarters() -> ShardMap {
        let q = u128::MAX / 4 + 1;
        ShardMap::new(
            (0..4u128)
                .map(|i| ShardRange {
                    shard_id: format!("shardId-{i}"),
                    start: i * q,
                    end: if i == 3 { u128::MAX } else { (i + 1) * q - 1 },
                })
                .collect(),
        )
        .unwrap()
    }

    fn record(key: &str, hash: Option<u128>, data: &str) -> Record {
        Record {
            data: Bytes::from(data.to_owned()),
            partition_key: PartitionKey::parse(key, None).unwrap(),
            explicit_hash_key: hash.map(|h| ExplicitHashKey::parse(&h.to_string(), None).unwrap()),
        }
    }

    const CONFIG: AggregationConfig = AggregationConfig {
        max_bytes: 200,
        max_records: 3,
        refresh: Duration::from_secs(60),
    };

    #[test]
    fn records_are_grouped_by_their_own_shard_and_packed_within_limits() {
        let q = u128::MAX / 4 + 1;
        let map = quarters();
        assert_eq!(map.shard_for(0), Some(0));
        assert_eq!(map.shard_for(q - 1), Some(0));
        assert_eq!(map.shard_for(3 * q), Some(3));
        assert_eq!(map.shard_for(u128::MAX), Some(3));
        let records = vec![
            record("a", Some(5), "0"),
            record("b", Some(q + 5), "1"),
            record("c", Some(6), "2"),
            record("d", Some(7), "3"),
            record("e", Some(8), "4"),
            record("f", Some(q + 6), &"x".repeat(300)),
        ];
        let plan = plan(&records, &CONFIG, &map);
        // Shard 0: [0, 2, 3] then [4] (max 3 records); shard 1: [1] then [5] (too large together).
        assert_eq!(plan.members, vec![vec![0, 2, 3], vec![4], vec![1], vec![5]]);
        assert_eq!(plan.predicted[0].as_deref(), Some("shardId-0"));
        assert_eq!(plan.predicted[1], None, "a lone record goes plain");
        assert_eq!(plan.records[1], records[4]);
        let aggregate = &plan.records[0];
        assert_eq!(aggregate.explicit_hash_key.as_ref().unwrap().value(), 0);
        let unpacked = kpl::deaggregate(&aggregate.data).unwrap().unwrap();
        let data: Vec<_> = unpacked.iter().map(|u| &u.data[..]).collect();
        assert_eq!(data, [&b"0"[..], b"2", b"3"]);
    }

    #[test]
    fn outcomes_expand_to_every_user_record() {
        let records = vec![
            record("a", Some(1), "0"),
            record("b", Some(2), "1"),
            record("c", Some(u128::MAX), "2"),
        ];
        let plan = plan(&records, &CONFIG, &quarters());
        let written = |shard: &str, seq: &str| EntryOutcome::Written {
            shard_id: shard.into(),
            sequence_number: seq.into(),
            sub_sequence_number: None,
        };
        let failed = EntryOutcome::Failed {
            error_code: "ProvisionedThroughputExceededException".into(),
            error_message: "slow down".into(),
        };
        let maps = ShardMaps::new(Arc::new(
            crate::service::testing::RecordingPublisher::default(),
        ));
        let stream = StreamName::parse("s").unwrap();
        let out = plan.expand(
            vec![written("shardId-0", "9"), failed.clone()],
            &maps,
            &stream,
        );
        assert_eq!(
            out,
            vec![
                EntryOutcome::Written {
                    shard_id: "shardId-0".into(),
                    sequence_number: "9".into(),
                    sub_sequence_number: Some(0)
                },
                EntryOutcome::Written {
                    shard_id: "shardId-0".into(),
                    sequence_number: "9".into(),
                    sub_sequence_number: Some(1)
                },
                failed,
            ]
        );
    }
}
