//! Request bodies of the lean publisher: PutRecord and PutRecords in JSON (`awsJson1_1`) or CBOR,
//! written and SHA-256-hashed in the same pass (the signature needs the payload's hash).

use std::io::Write;

use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::protocol::Wire;
use super::sigv4::Sha256Digest;
use crate::domain::Record;

/// A request body and its SHA-256, computed as it was written.
pub(super) struct SignedBody {
    pub(super) bytes: Vec<u8>,
    pub(super) sha256: Sha256Digest,
}

/// Writes JSON into a buffer and into the payload hash in the same pass.
pub(super) struct BodyWriter {
    bytes: Vec<u8>,
    hash: Sha256,
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        self.hash.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BodyWriter {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(n),
            hash: Sha256::new(),
        }
    }

    pub(super) fn raw(&mut self, s: &str) {
        self.write_all(s.as_bytes()).expect("writing to a Vec");
    }

    pub(super) fn string(&mut self, s: &str) {
        serde_json::to_writer(&mut *self, s).expect("writing a string to a Vec");
    }

    /// `"Name":"value"` with the value JSON-escaped.
    pub(super) fn member(&mut self, name: &str, value: &str) {
        self.raw("\"");
        self.raw(name);
        self.raw("\":");
        self.string(value);
    }

    /// The record's members: `Data` (base64), `PartitionKey`, and `ExplicitHashKey` when set.
    pub(super) fn record(&mut self, record: &Record) {
        self.raw("\"Data\":\"");
        {
            let mut b64 = base64::write::EncoderWriter::new(&mut *self, &STANDARD);
            b64.write_all(&record.data).expect("writing to a Vec");
            b64.finish().expect("writing to a Vec");
        }
        self.raw("\",");
        self.member("PartitionKey", record.partition_key.as_str());
        if let Some(key) = &record.explicit_hash_key {
            self.raw(",");
            self.member("ExplicitHashKey", key.as_str());
        }
    }

    pub(super) fn finish(self) -> SignedBody {
        SignedBody {
            bytes: self.bytes,
            sha256: self.hash.finalize(),
        }
    }
}

/// CBOR (RFC 8949), the few shapes a Kinesis request needs: maps, arrays, text and byte strings,
/// all with definite lengths.
impl BodyWriter {
    /// A data item's head: major type and length (or count), in the shortest form.
    pub(super) fn cbor_head(&mut self, major: u8, len: usize) {
        let major = major << 5;
        let len = len as u64;
        let mut head = [0u8; 9];
        let n = if len < 24 {
            head[0] = major | len as u8;
            1
        } else if len <= 0xff {
            head[..2].copy_from_slice(&[major | 24, len as u8]);
            2
        } else if len <= 0xffff {
            head[0] = major | 25;
            head[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            3
        } else if len <= 0xffff_ffff {
            head[0] = major | 26;
            head[1..5].copy_from_slice(&(len as u32).to_be_bytes());
            5
        } else {
            head[0] = major | 27;
            head[1..9].copy_from_slice(&len.to_be_bytes());
            9
        };
        self.write_all(&head[..n]).expect("writing to a Vec");
    }

    pub(super) fn cbor_text(&mut self, s: &str) {
        self.cbor_head(3, s.len());
        self.raw(s);
    }

    pub(super) fn cbor_bytes(&mut self, b: &[u8]) {
        self.cbor_head(2, b.len());
        self.write_all(b).expect("writing to a Vec");
    }

    /// The record's members, as `record` writes them in JSON; the caller opened the map with
    /// `record_members(record)` entries.
    pub(super) fn cbor_record(&mut self, record: &Record) {
        self.cbor_text("Data");
        self.cbor_bytes(&record.data);
        self.cbor_text("PartitionKey");
        self.cbor_text(record.partition_key.as_str());
        if let Some(key) = &record.explicit_hash_key {
            self.cbor_text("ExplicitHashKey");
            self.cbor_text(key.as_str());
        }
    }
}

/// How many members `record`/`cbor_record` write.
pub(super) fn record_members(record: &Record) -> usize {
    2 + usize::from(record.explicit_hash_key.is_some())
}

/// A PutRecord body: the stream, the record and its `SequenceNumberForOrdering`.
pub(super) fn put_record_body(
    protocol: Wire,
    (addressed_by, address): (&str, &str),
    record: &Record,
    ordering: Option<&str>,
) -> SignedBody {
    let mut body = BodyWriter::with_capacity(capacity(std::slice::from_ref(record)));
    match protocol {
        Wire::Json => {
            body.raw("{");
            body.member(addressed_by, address);
            body.raw(",");
            body.record(record);
            if let Some(ordering) = ordering {
                body.raw(",");
                body.member("SequenceNumberForOrdering", ordering);
            }
            body.raw("}");
        }
        Wire::Cbor => {
            body.cbor_head(
                5,
                1 + record_members(record) + usize::from(ordering.is_some()),
            );
            body.cbor_text(addressed_by);
            body.cbor_text(address);
            body.cbor_record(record);
            if let Some(ordering) = ordering {
                body.cbor_text("SequenceNumberForOrdering");
                body.cbor_text(ordering);
            }
        }
    }
    body.finish()
}

/// A PutRecords body: the stream and its records, in order.
pub(super) fn put_records_body(
    protocol: Wire,
    (addressed_by, address): (&str, &str),
    records: &[Record],
) -> SignedBody {
    let mut body = BodyWriter::with_capacity(capacity(records));
    match protocol {
        Wire::Json => {
            body.raw("{");
            body.member(addressed_by, address);
            body.raw(",\"Records\":[");
            for (i, record) in records.iter().enumerate() {
                body.raw(if i == 0 { "{" } else { ",{" });
                body.record(record);
                body.raw("}");
            }
            body.raw("]}");
        }
        Wire::Cbor => {
            body.cbor_head(5, 2);
            body.cbor_text(addressed_by);
            body.cbor_text(address);
            body.cbor_text("Records");
            body.cbor_head(4, records.len());
            for record in records {
                body.cbor_head(5, record_members(record));
                body.cbor_record(record);
            }
        }
    }
    body.finish()
}

/// Room for base64 (4/3) plus the members around each record.
pub(super) fn capacity(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| r.data.len().div_ceil(3) * 4 + r.partition_key.as_str().len() + 64)
        .sum::<usize>()
        + 128
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::{ExplicitHashKey, PartitionKey};

    fn record(data: &[u8], key: &str, hash: Option<&str>) -> Record {
        Record {
            data: Bytes::copy_from_slice(data),
            partition_key: PartitionKey::parse(key, None).unwrap(),
            explicit_hash_key: hash.map(|h| ExplicitHashKey::parse(h, None).unwrap()),
        }
    }

    #[test]
    fn bodies_are_the_json_the_sdk_would_send_and_hashed_as_written() {
        let records = [
            record(b"hello", "k\"1", None),
            record(&[0, 255, 1], "\u{e9}", Some("42")),
        ];
        let body = put_records_body(Wire::Json, ("StreamName", "s"), &records);
        let json: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"StreamName": "s", "Records": [
                {"Data": "aGVsbG8=", "PartitionKey": "k\"1"},
                {"Data": "AP8B", "PartitionKey": "\u{e9}", "ExplicitHashKey": "42"},
            ]})
        );
        assert_eq!(body.sha256, Sha256::digest(&body.bytes));
    }

    #[test]
    fn cbor_bodies_carry_the_same_members_with_raw_bytes() {
        use ciborium::Value;
        let text = |s: &str| Value::Text(s.to_owned());
        let big = vec![7u8; 70_000];
        let records = [
            record(b"hello", "k\"1", None),
            record(&[0, 255, 1], "\u{e9}", Some("42")),
            record(&big, "big", None),
        ];
        let body = put_records_body(Wire::Cbor, ("StreamARN", "arn:s"), &records);
        let value: Value = ciborium::from_reader(&body.bytes[..]).unwrap();
        let entry = |data: &[u8], key: &str, hash: Option<&str>| {
            let mut members = vec![
                (text("Data"), Value::Bytes(data.to_vec())),
                (text("PartitionKey"), text(key)),
            ];
            if let Some(h) = hash {
                members.push((text("ExplicitHashKey"), text(h)));
            }
            Value::Map(members)
        };
        let want = Value::Map(vec![
            (text("StreamARN"), text("arn:s")),
            (
                text("Records"),
                Value::Array(vec![
                    entry(b"hello", "k\"1", None),
                    entry(&[0, 255, 1], "\u{e9}", Some("42")),
                    entry(&big, "big", None),
                ]),
            ),
        ]);
        assert_eq!(value, want);
        assert_eq!(body.sha256, Sha256::digest(&body.bytes));

        let single = put_record_body(Wire::Cbor, ("StreamName", "s"), &records[0], Some("9"));
        let value: Value = ciborium::from_reader(&single.bytes[..]).unwrap();
        assert_eq!(
            value,
            Value::Map(vec![
                (text("StreamName"), text("s")),
                (text("Data"), Value::Bytes(b"hello".to_vec())),
                (text("PartitionKey"), text("k\"1")),
                (text("SequenceNumberForOrdering"), text("9")),
            ])
        );
    }
}
