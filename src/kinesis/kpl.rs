//! The KPL aggregated-record format (docs/api.md#aggregation): many user records in one Kinesis
//! record, which KCL consumers (and Lambda with the kinesis-aggregation libraries) unpack
//! transparently.
//!
//! A Kinesis record in this format is the magic `F3 89 9A C2`, an `AggregatedRecord` protobuf
//! (partition-key and explicit-hash-key tables, then the records pointing into them), and the MD5
//! of the protobuf bytes. The messages below mirror `proto/kpl_aggregation.proto` (the published
//! .proto) field for field; prost encodes and decodes them.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::domain::Record;

/// The first four bytes of every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// `AggregatedRecord` of the .proto.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// `Record` of the .proto: one user record inside an aggregate.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `Tag` of the .proto (never written by this service; read for completeness).
#[derive(Clone, PartialEq, Message)]
pub struct Tag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Where Kinesis puts a record: MD5 of its partition key as a 128-bit big-endian number, or its
/// explicit hash key.
pub fn hash_key_of(record: &Record) -> u128 {
    record.explicit_hash_key.as_ref().map_or_else(
        || partition_key_hash(record.partition_key.as_str()),
        |k| k.value(),
    )
}

/// MD5 of a partition key as Kinesis maps it onto the hash-key range.
pub fn partition_key_hash(key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(key.as_bytes()).into())
}

/// The aggregated record holding `records`, in order (each key stored once in its table).
pub fn encode<'a>(records: impl IntoIterator<Item = &'a Record>) -> Bytes {
    let mut keys: HashMap<&str, u64> = HashMap::new();
    let mut hash_keys: HashMap<&str, u64> = HashMap::new();
    let mut message = AggregatedRecord {
        partition_key_table: Vec::new(),
        explicit_hash_key_table: Vec::new(),
        records: Vec::new(),
    };
    for record in records {
        let key = record.partition_key.as_str();
        let partition_key_index = *keys.entry(key).or_insert_with(|| {
            message.partition_key_table.push(key.to_owned());
            message.partition_key_table.len() as u64 - 1
        });
        let explicit_hash_key_index = record.explicit_hash_key.as_ref().map(|k| {
            *hash_keys.entry(k.as_str()).or_insert_with(|| {
                message.explicit_hash_key_table.push(k.as_str().to_owned());
                message.explicit_hash_key_table.len() as u64 - 1
            })
        });
        message.records.push(UserRecord {
            partition_key_index,
            explicit_hash_key_index,
            data: record.data.clone(),
            tags: Vec::new(),
        });
    }
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    Bytes::from(out)
}

/// What an aggregate of records with these sizes costs in bytes, before encoding: the protobuf's
/// size plus magic and digest. Used to close an aggregate before it passes its byte limit.
#[derive(Debug, Clone, Default)]
pub struct SizeCounter<'a> {
    /// The keys already in the aggregate's tables (a repeated key costs only its index).
    keys: HashSet<&'a str>,
    hash_keys: HashSet<&'a str>,
    bytes: usize,
}

impl<'a> SizeCounter<'a> {
    /// Bytes of the encoded aggregate so far (magic and digest included).
    pub fn bytes(&self) -> usize {
        MAGIC.len() + self.bytes + DIGEST_LEN
    }

    /// Bytes the aggregate would have with `record` added.
    pub fn with(&self, record: &Record) -> usize {
        self.bytes() + self.added(record)
    }

    pub fn add(&mut self, record: &'a Record) {
        self.bytes += self.added(record);
        self.keys.insert(record.partition_key.as_str());
        if let Some(k) = &record.explicit_hash_key {
            self.hash_keys.insert(k.as_str());
        }
    }

    fn added(&self, record: &Record) -> usize {
        let key = record.partition_key.as_str();
        let mut n = 0;
        if !self.keys.contains(key) {
            n += field_len(key.len());
        }
        let index_len = prost::encoding::encoded_len_varint(self.keys.len() as u64 + 1);
        let mut inner = 1 + index_len + field_len(record.data.len());
        if let Some(k) = &record.explicit_hash_key {
            if !self.hash_keys.contains(k.as_str()) {
                n += field_len(k.as_str().len());
            }
            inner += 1 + prost::encoding::encoded_len_varint(self.hash_keys.len() as u64 + 1);
        }
        n + field_len(inner)
    }
}

/// A length-delimited field (a table entry, a record, a record's data): tag byte, length varint,
/// payload.
fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Why bytes are not a well-formed aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeaggregateError {
    #[error("the MD5 trailer does not match the protobuf")]
    DigestMismatch,
    #[error("the protobuf does not decode: {0}")]
    Protobuf(String),
    #[error("record {0} points outside the key tables")]
    BadIndex(usize),
}

/// One user record unpacked from a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

/// The user records in `data`: `None` when it is not an aggregate (no magic, or too short), so
/// the record is a plain one; an error when it claims to be one and is broken.
pub fn deaggregate(data: &[u8]) -> Option<Result<Vec<Unpacked>, DeaggregateError>> {
    if data.len() < MAGIC.len() + DIGEST_LEN || data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return Some(Err(DeaggregateError::DigestMismatch));
    }
    let message = match AggregatedRecord::decode(body) {
        Ok(m) => m,
        Err(e) => return Some(Err(DeaggregateError::Protobuf(e.to_string()))),
    };
    let unpacked = message
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = usize::try_from(r.partition_key_index)
                .ok()
                .and_then(|k| message.partition_key_table.get(k));
            let hash = match r.explicit_hash_key_index {
                None => Ok(None),
                Some(h) => usize::try_from(h)
                    .ok()
                    .and_then(|h| message.explicit_hash_key_table.get(h))
                    .map(|h| Some(h.clone()))
                    .ok_or(DeaggregateError::BadIndex(i)),
            };
            Ok(Unpacked {
                partition_key: key.ok_or(DeaggregateError::BadIndex(i))?.clone(),
                explicit_hash_key: hash?,
                data: r.data,
            })
        })
        .collect();
    Some(unpacked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExplicitHashKey, PartitionKey};

    fn record(key: &str, data: &str, hash: Option<&str>) -> Record {
        Record {
            data: Bytes::from(data.to_owned()),
            partition_key: PartitionKey::parse(key, None).unwrap(),
            explicit_hash_key: hash.map(|h| ExplicitHashKey::parse(h, None).unwrap()),
        }
    }

    #[test]
    fn an_aggregate_round_trips_with_shared_key_tables() {
        let records = [
            record("a", "one", None),
            record("b", "", Some("42")),
            record("a", "three", Some("42")),
        ];
        let bytes = encode(&records);
        assert_eq!(bytes[..4], MAGIC);
        let message = AggregatedRecord::decode(&bytes[4..bytes.len() - 16]).unwrap();
        assert_eq!(message.partition_key_table, ["a", "b"]);
        assert_eq!(message.explicit_hash_key_table, ["42"]);
        let unpacked = deaggregate(&bytes).unwrap().unwrap();
        let got: Vec<_> = unpacked
            .iter()
            .map(|u| {
                (
                    u.partition_key.as_str(),
                    u.explicit_hash_key.as_deref(),
                    &u.data[..],
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", None, &b"one"[..]),
                ("b", Some("42"), &b""[..]),
                ("a", Some("42"), &b"three"[..])
            ]
        );
    }

    #[test]
    fn the_size_counter_predicts_the_encoded_size() {
        let records = [
            record("user-1", &"x".repeat(200), None),
            record(
                "user-2",
                &"y".repeat(127),
                Some("170141183460469231731687303715884105728"),
            ),
            record("user-1", &"z".repeat(20_000), None),
            record(
                "user-3",
                "",
                Some("170141183460469231731687303715884105728"),
            ),
        ];
        let mut counter = SizeCounter::default();
        for (i, r) in records.iter().enumerate() {
            let predicted = counter.with(r);
            counter.add(r);
            assert_eq!(predicted, encode(&records[..=i]).len(), "after {i}");
        }
    }

    #[test]
    fn broken_aggregates_are_refused_and_plain_records_recognised() {
        let mut bytes = encode(&[record("a", "one", None)]).to_vec();
        assert_eq!(deaggregate(b"plain record"), None);
        assert_eq!(deaggregate(&bytes[..10]), None);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            deaggregate(&bytes),
            Some(Err(DeaggregateError::DigestMismatch))
        );
    }

    #[test]
    fn hash_keys_follow_kinesis() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e, read as a big-endian 128-bit number.
        assert_eq!(
            partition_key_hash(""),
            0xd41d8cd98f00b204e9800998ecf8427e_u128
        );
        assert_eq!(hash_key_of(&record("a", "", Some("7"))), 7);
    }
}
