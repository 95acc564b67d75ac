//! The CBOR flavour of the protocol (`content-type: application/x-amz-cbor-1.1`), as Kinesis and
//! kinesis-mock accept it: the same member names as AWS JSON 1.1, but `Data` is a CBOR byte
//! string (raw bytes, no base64), and the answers are CBOR maps.
//!
//! The request structs own their strings and bytes, unlike the borrowed JSON ones: ciborium reads
//! through a scratch buffer and so only deserialises owned types. CBOR has no base64 to skip, so
//! the JSON side's lazy decoding has nothing to save here anyway.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A PutRecord request. `ExplicitHashKey` and `SequenceNumberForOrdering` are ignored, as on the
/// JSON side (serde skips members a struct does not name).
#[derive(Deserialize)]
pub(crate) struct PutRecordIn {
    #[serde(rename = "StreamName", default)]
    pub(crate) stream_name: Option<String>,
    #[serde(rename = "StreamARN", default)]
    pub(crate) stream_arn: Option<String>,
    #[serde(rename = "Data")]
    pub(crate) data: ByteString,
    #[serde(rename = "PartitionKey")]
    pub(crate) partition_key: String,
}

/// One entry of a PutRecords request.
#[derive(Deserialize)]
pub(crate) struct EntryIn {
    #[serde(rename = "Data")]
    pub(crate) data: ByteString,
    #[serde(rename = "PartitionKey")]
    pub(crate) partition_key: String,
}

/// A PutRecords request.
#[derive(Deserialize)]
pub(crate) struct PutRecordsIn {
    #[serde(rename = "StreamName", default)]
    pub(crate) stream_name: Option<String>,
    #[serde(rename = "StreamARN", default)]
    pub(crate) stream_arn: Option<String>,
    #[serde(rename = "Records")]
    pub(crate) records: Vec<EntryIn>,
}

/// The bytes of a CBOR byte string. Only a byte string will do: `Vec<u8>`'s own `Deserialize`
/// wants an array of integers, and a text string here would be a client still sending base64.
pub(crate) struct ByteString(pub(crate) Vec<u8>);

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl Visitor<'_> for BytesVisitor {
            type Value = ByteString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CBOR byte string")
            }

            // Short strings come through ciborium's scratch buffer, longer ones already owned.
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(v.to_vec()))
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteString, E> {
                Ok(ByteString(v))
            }
        }

        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Reads one CBOR value from `body` into `T`. The error is a message for a
/// `SerializationException`.
pub(crate) fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    use ciborium::de::Error;
    ciborium::from_reader(body).map_err(|e| match e {
        Error::Semantic(Some(offset), msg) => format!("{msg} (CBOR item at byte {offset})"),
        Error::Semantic(None, msg) => msg,
        Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        Error::Io(e) => format!("truncated CBOR body: {e}"),
        Error::RecursionLimitExceeded => "CBOR nested too deeply".to_owned(),
    })
}

/// Writes `value` as CBOR.
pub(crate) fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("plain structs serialise into a Vec");
    out
}

/// Re-encodes a fixed JSON answer as CBOR, so each canned answer (ListShards, ListStreams) has one
/// source of truth for both protocols.
pub(crate) fn from_json_text(json: &[u8]) -> Vec<u8> {
    let value: serde_json::Value = serde_json::from_slice(json).expect("canned answers are JSON");
    to_vec(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &ciborium::Value) -> Vec<u8> {
        to_vec(value)
    }

    #[test]
    fn data_must_be_a_byte_string() {
        use ciborium::Value;
        let entry = |data: Value| {
            encode(&Value::Map(vec![
                (Value::Text("PartitionKey".into()), Value::Text("k".into())),
                (Value::Text("Data".into()), data),
            ]))
        };
        let ok: EntryIn = from_slice(&entry(Value::Bytes(b"\x00\xff".to_vec()))).expect("bytes");
        assert_eq!(ok.data.0, b"\x00\xff");
        // Longer than ciborium's 4 KiB scratch buffer: the owned path.
        let big = vec![7u8; 10_000];
        let ok: EntryIn = from_slice(&entry(Value::Bytes(big.clone()))).expect("big bytes");
        assert_eq!(ok.data.0, big);
        let err = from_slice::<EntryIn>(&entry(Value::Text("AP8=".into())))
            .err()
            .expect("base64 text is refused");
        assert!(err.contains("invalid type: string"), "{err}");
    }

    #[test]
    fn errors_are_readable() {
        let err = from_slice::<PutRecordsIn>(&[0xa1])
            .err()
            .expect("truncated");
        assert!(err.starts_with("truncated CBOR body"), "{err}");
        let err = from_slice::<PutRecordsIn>(&encode(&ciborium::Value::Map(vec![])))
            .err()
            .expect("no Records");
        assert!(err.contains("Records"), "{err}");
    }
}
