//! One record as the spool stores it ([`SpooledRecord`]) and the frame around it on disk:
//! `length (u32 LE) | crc32c of the payload (u32 LE) | payload`. A frame whose header is cut
//! short, whose length is absurd, whose checksum does not match or whose payload does not decode
//! is where a segment's intact part ends (a torn write at a crash, or a damaged disk).

use std::io::{self, Read};

use bytes::Bytes;

use crate::domain::{ExplicitHashKey, PartitionKey, Record};

/// Bytes before a frame's payload: its length and its checksum.
pub(crate) const HEADER: usize = 8;
/// No payload is larger: a length above it is damage, not a record (records are at most 10 MiB).
const MAX_PAYLOAD: u32 = 64 << 20;
/// The payload's layout version, so a later layout can be told apart.
const VERSION: u8 = 1;

/// A record the spool accepted: what Kinesis will get, plus the id the caller was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    pub id: uuid::Uuid,
    /// When it was accepted (Unix milliseconds), for the age of the oldest unshipped record.
    pub accepted_ms: u64,
    pub stream: String,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

impl SpooledRecord {
    /// The record as it goes to Kinesis. Its keys were checked before it was stored; a key that
    /// no longer parses (a changed rule) is `None`, and the record is dead-lettered.
    pub(crate) fn to_record(&self) -> Option<Record> {
        Some(Record {
            data: self.data.clone(),
            partition_key: PartitionKey::parse(&self.partition_key, None).ok()?,
            explicit_hash_key: match &self.explicit_hash_key {
                None => None,
                Some(k) => Some(ExplicitHashKey::parse(k, None).ok()?),
            },
        })
    }
}

/// Appends `record`'s frame to `out`.
pub(crate) fn encode(record: &SpooledRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(VERSION);
    out.extend_from_slice(record.id.as_bytes());
    out.extend_from_slice(&record.accepted_ms.to_le_bytes());
    // Stream names are at most 128 bytes, partition keys 256 characters (1,024 bytes), explicit
    // hash keys 39 digits: the length prefixes below cannot overflow.
    out.push(record.stream.len() as u8);
    out.extend_from_slice(record.stream.as_bytes());
    out.extend_from_slice(&(record.partition_key.len() as u16).to_le_bytes());
    out.extend_from_slice(record.partition_key.as_bytes());
    // 0: none; n + 1: a key of n bytes.
    match &record.explicit_hash_key {
        None => out.push(0),
        Some(k) => {
            out.push(k.len() as u8 + 1);
            out.extend_from_slice(k.as_bytes());
        }
    }
    out.extend_from_slice(&record.data);
    let len = (out.len() - start - HEADER) as u32;
    let crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// What reading the next frame found.
#[derive(Debug)]
pub(crate) enum Next {
    /// An intact frame: the record and the frame's size on disk.
    Frame(SpooledRecord, u64),
    /// The end of the data, at a frame boundary.
    End,
    /// A frame cut short or damaged: the intact part ends before it.
    Damaged,
}

/// Reads the frame at the reader's position. `limit`: bytes that may be read (the part of a
/// segment known to be written); a frame passing it is not there yet, so `End`.
pub(crate) fn read(reader: &mut impl Read, limit: u64) -> io::Result<Next> {
    if limit == 0 {
        return Ok(Next::End);
    }
    let mut header = [0u8; HEADER];
    match read_full(reader, &mut header)? {
        0 => return Ok(Next::End),
        n if n < HEADER => return Ok(Next::Damaged),
        _ => {}
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Ok(Next::Damaged);
    }
    let size = HEADER as u64 + u64::from(len);
    if size > limit {
        return Ok(Next::End);
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(reader, &mut payload)? < payload.len() || crc32c::crc32c(&payload) != crc {
        return Ok(Next::Damaged);
    }
    Ok(decode(payload).map_or(Next::Damaged, |r| Next::Frame(r, size)))
}

/// Reads until `buf` is full or the data ends; how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn decode(payload: Vec<u8>) -> Option<SpooledRecord> {
    let mut p = Cursor(&payload, 0);
    if p.take(1)?[0] != VERSION {
        return None;
    }
    let id = uuid::Uuid::from_slice(p.take(16)?).ok()?;
    let accepted_ms = u64::from_le_bytes(p.take(8)?.try_into().ok()?);
    let n = p.take(1)?[0] as usize;
    let stream = String::from_utf8(p.take(n)?.to_vec()).ok()?;
    let n = u16::from_le_bytes(p.take(2)?.try_into().ok()?) as usize;
    let partition_key = String::from_utf8(p.take(n)?.to_vec()).ok()?;
    let explicit_hash_key = match p.take(1)?[0] {
        0 => None,
        n => Some(String::from_utf8(p.take(n as usize - 1)?.to_vec()).ok()?),
    };
    let at = p.1;
    let data = Bytes::from(payload).slice(at..);
    Some(SpooledRecord {
        id,
        accepted_ms,
        stream,
        partition_key,
        explicit_hash_key,
        data,
    })
}

/// A position in a payload being decoded.
struct Cursor<'a>(&'a [u8], usize);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.1.checked_add(n)?;
        let out = self.0.get(self.1..end)?;
        self.1 = end;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(data: &str, ehk: Option<&str>) -> SpooledRecord {
        SpooledRecord {
            id: uuid::Uuid::new_v4(),
            accepted_ms: 1_700_000_000_000,
            stream: "s".into(),
            partition_key: "k-ü".into(),
            explicit_hash_key: ehk.map(str::to_owned),
            data: Bytes::from(data.to_owned()),
        }
    }

    #[test]
    fn a_frame_reads_back_as_written_and_damage_is_detected() {
        let (a, b) = (record("one", None), record("two", Some("42")));
        let mut log = Vec::new();
        encode(&a, &mut log);
        encode(&b, &mut log);
        let mut r = &log[..];
        let limit = log.len() as u64;
        assert!(matches!(read(&mut r, limit).unwrap(), Next::Frame(x, _) if x == a));
        assert!(matches!(read(&mut r, limit).unwrap(), Next::Frame(x, _) if x == b));
        assert!(matches!(read(&mut r, limit).unwrap(), Next::End));
        assert_eq!(
            b.to_record().unwrap().explicit_hash_key.unwrap().as_str(),
            "42"
        );

        // A frame past the limit is not there yet.
        assert!(matches!(read(&mut &log[..], 10).unwrap(), Next::End));
        // Torn: the second frame cut anywhere.
        let first_len = log.len() - {
            let mut second = Vec::new();
            encode(&b, &mut second);
            second.len()
        };
        for cut in (first_len + 1)..log.len() {
            let mut r = &log[..cut];
            assert!(matches!(read(&mut r, u64::MAX).unwrap(), Next::Frame(..)));
            assert!(
                matches!(read(&mut r, u64::MAX).unwrap(), Next::Damaged),
                "cut at {cut}"
            );
        }
        // A flipped bit anywhere in the first frame.
        let mut first = Vec::new();
        encode(&a, &mut first);
        for at in 0..first.len() {
            let mut bad = log.clone();
            bad[at] ^= 0x10;
            let next = read(&mut &bad[..], u64::MAX).unwrap();
            assert!(
                matches!(next, Next::Damaged | Next::End),
                "bit flip at {at}: {next:?}"
            );
        }
    }
}
