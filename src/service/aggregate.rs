//! KPL aggregation in the write path (docs/api.md#aggregation): user records grouped by the shard
//! their own key maps to, packed into aggregated Kinesis records (`kinesis::kpl`), sent with the
//! usual retries, and each user record answered from the Kinesis record that holds it.
//!
//! Shard affinity is kept: every aggregate carries an `ExplicitHashKey` at the start of its
//! shard's hash-key range, so it lands where each of its user records would have landed alone.
//! The shard map comes from `ListShards`, cached per stream and fetched again after
//! `aggregation.shard_map_refresh_ms`, or when Kinesis puts an aggregate on another shard than
//! predicted (a reshard). Without a map (the call failed, or the role lacks
//! `kinesis:ListShards`), records go out plain: the service never guesses a shard.
//!
//! An aggregate that lands on another shard than predicted is a success only for what a KCL
//! consumer will read: the KCL de-aggregates with the hash-key range of the shard it reads and
//! drops the *whole* aggregate when any of its user records lies outside that range
//! (`AggregatorUtil.deaggregate` in amazon-kinesis-client). So such an aggregate counts as written
//! only when the landed shard's range holds every one of its user records; otherwise its records
//! are sent again, as the KPL does, re-aggregated with the refreshed map (or plain), and answered
//! with where they finally landed. The stale copy is dropped by the KCL as out of range; a
//! consumer that de-aggregates without range filtering sees it as a duplicate
//! (docs/api.md#aggregation-and-resharding).
//!
//! Refreshes are bounded (src/service/shard_map.rs): at most one `ListShards` per stream a second,
//! shared by every caller; while a mispredicted map waits for its next refresh, records go out
//! plain.

use std::collections::HashMap;
use std::future::Future;

pub(crate) use super::shard_map::{ShardMap, ShardMaps};
use crate::config::AggregationConfig;
use crate::domain::{EntryOutcome, ExplicitHashKey, PutRecordsOutcome, Record, StreamName};
use crate::kinesis::PublishError;
use crate::kinesis::kpl::{self, SizeCounter};

/// How many times the records of a mispredicted aggregate are sent again re-aggregated; the last
/// try sends them plain, which lands by each record's own key and cannot be mispredicted.
const AGGREGATED_RESENDS: usize = 2;

impl ShardMaps {
    /// The Kinesis records to send for `records` when `stream` aggregates (`config`): `None` to
    /// send them plain, because aggregation is off, there is a lone record, or there is no shard
    /// map to trust (then counted in `kinesis_aggregation_plain_fallback_total`). Both write
    /// paths, direct and coalesced, ask here, then hand the plan to [`ShardMaps::deliver`].
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

    /// Sends `plan` (made by [`ShardMaps::plan`] for `records`) with `send`, and answers one
    /// outcome per user record. The records of an aggregate that landed on a shard whose range
    /// does not hold them all are sent again (re-aggregated while the map can be trusted, plain
    /// on the last try), so a written record is one a KCL consumer reads.
    pub(crate) async fn deliver<S, F, Fut>(
        &self,
        stream: &StreamName,
        config: Option<AggregationConfig>,
        records: &[Record],
        mut plan: Plan,
        send: F,
    ) -> S
    where
        S: Sent,
        F: Fn(Vec<Record>) -> Fut,
        Fut: Future<Output = S>,
    {
        let mut sent = send(std::mem::take(&mut plan.records)).await;
        let Some(outcomes) = sent.outcomes() else {
            return sent;
        };
        let results = std::mem::take(outcomes);
        let (mut answers, mut pending) = self.settle(stream, &plan, results).await;
        let mut round = 0;
        while !pending.is_empty() {
            round += 1;
            let again: Vec<Record> = pending.iter().map(|&i| records[i].clone()).collect();
            metrics::counter!(crate::metrics::AGGREGATION_RESENT_RECORDS, "stream" => stream.to_string())
                .increment(again.len() as u64);
            let replan = if round <= AGGREGATED_RESENDS {
                self.plan(stream, config, &again).await
            } else {
                None
            };
            let (outcomes, still) = match replan {
                Some(mut p) => {
                    let n = p.records.len();
                    let results = send(std::mem::take(&mut p.records)).await.into_outcomes(n);
                    self.settle(stream, &p, results).await
                }
                None => {
                    let n = again.len();
                    (send(again).await.into_outcomes(n), Vec::new())
                }
            };
            for (k, outcome) in outcomes.into_iter().enumerate() {
                answers[pending[k]] = outcome;
            }
            pending = still.into_iter().map(|k| pending[k]).collect();
        }
        if let Some(outcomes) = sent.outcomes() {
            *outcomes = answers;
        }
        sent
    }

    /// Expands one outcome per Kinesis record of `plan` into one per user record, and checks
    /// each aggregate that landed elsewhere than predicted: the user records of those whose
    /// landed shard does not hold them all are returned, by index, to be sent again.
    async fn settle(
        &self,
        stream: &StreamName,
        plan: &Plan,
        results: Vec<EntryOutcome>,
    ) -> (Vec<EntryOutcome>, Vec<usize>) {
        let (answers, mispredicted) = plan.expand(results);
        self.episode(stream, !mispredicted.is_empty());
        let mut resend = Vec::new();
        for (landed, members) in mispredicted {
            metrics::counter!(crate::metrics::AGGREGATION_MISPREDICTED, "stream" => stream.to_string())
                .increment(1);
            let range = self.range_of(stream, &landed).await;
            let inside = range.is_some_and(|r| {
                members.iter().all(|&i| {
                    let hash = plan.hashes[i];
                    r.start <= hash && hash <= r.end
                })
            });
            if !inside {
                resend.extend(members.iter().copied());
            }
        }
        resend.sort_unstable();
        (answers, resend)
    }
}

/// What a send answered, as [`ShardMaps::deliver`] reads it: the outcome of each Kinesis record
/// sent, in order. The direct path sends with `delivery::put_records`, the coalescing lanes with
/// `delivery::send_chunk`; both shapes are read here.
pub(crate) trait Sent {
    /// The outcomes, or `None` when the call failed outright and nothing was written.
    fn outcomes(&mut self) -> Option<&mut Vec<EntryOutcome>>;
    /// One outcome for each of the `sent` records, a failed call's error in each.
    fn into_outcomes(self, sent: usize) -> Vec<EntryOutcome>;
}

impl Sent for Result<PutRecordsOutcome, PublishError> {
    fn outcomes(&mut self) -> Option<&mut Vec<EntryOutcome>> {
        self.as_mut().ok().map(|o| &mut o.records)
    }

    fn into_outcomes(self, sent: usize) -> Vec<EntryOutcome> {
        match self {
            Ok(o) => o.records,
            Err(e) => vec![e.as_entry(); sent],
        }
    }
}

impl Sent for super::delivery::Chunk {
    fn outcomes(&mut self) -> Option<&mut Vec<EntryOutcome>> {
        Some(&mut self.results)
    }

    fn into_outcomes(self, _sent: usize) -> Vec<EntryOutcome> {
        self.results
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
    /// The hash key of each user record, for checking where a mispredicted aggregate landed.
    hashes: Vec<u128>,
}

/// Groups `records` by shard (in order of first appearance, each group in request order) and
/// packs each group into aggregates within `config`'s bytes and records.
fn plan(records: &[Record], config: &AggregationConfig, map: &ShardMap) -> Plan {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    let mut hashes = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let hash = kpl::hash_key_of(record);
        hashes.push(hash);
        // A map from ListShards covers the whole range; a hole would be a broken answer: such a
        // record goes alone (plain), in a group of its own.
        let shard = map.shard_for(hash).unwrap_or(usize::MAX);
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
        hashes,
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
                let range = map.shard(shard);
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
    /// a failed one fails each of them with its code. Also answers the aggregates written to
    /// another shard than predicted: the shard they landed on and their user records.
    fn expand(&self, results: Vec<EntryOutcome>) -> (Vec<EntryOutcome>, Vec<(String, &[usize])>) {
        let mut out: Vec<Option<EntryOutcome>> = vec![None; self.hashes.len()];
        let mut mispredicted = Vec::new();
        for ((result, members), predicted) in
            results.into_iter().zip(&self.members).zip(&self.predicted)
        {
            if let (Some(want), EntryOutcome::Written { shard_id, .. }) = (predicted, &result)
                && want != shard_id
            {
                mispredicted.push((shard_id.clone(), &members[..]));
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
        let out = out
            .into_iter()
            .map(|o| o.expect("every user record is in exactly one Kinesis record"))
            .collect();
        (out, mispredicted)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::domain::PartitionKey;
    use crate::kinesis::ShardRange;

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
        let (out, mispredicted) = plan.expand(vec![written("shardId-0", "9"), failed.clone()]);
        assert!(mispredicted.is_empty());
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
