//! Kinesis' size and count limits, and the arithmetic that checks a request against them.
//!
//! The numbers themselves are configuration (`limits` in `config/`); the constants here are the
//! ceilings AWS allows, which configuration may not exceed.

use super::{Record, ValidationError};

/// Records in one PutRecords call.
/// <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html>
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// Largest max record size a stream can be set to (`UpdateMaxRecordSize`, 10,240 KiB, Oct 2025).
pub const MAX_AWS_RECORD_SIZE: usize = 10 * 1024 * 1024;
/// Largest PutRecords request, partition keys included (10 MiB since Oct 2025).
pub const MAX_AWS_REQUEST_SIZE: usize = 10 * 1024 * 1024;

/// With splitting on, a batch may hold more records than one call takes, but each record the
/// service holds costs a few hundred bytes whatever its size (its slice of the body, its partition
/// key, the vectors that list it, its outcome): a body of tiny records held ~30x its size. So a
/// split batch may carry at most one record per this many bytes of body, which keeps what it holds
/// to ~6x its body (measured, docs/operations.md, "Memory").
pub const MIN_BODY_BYTES_PER_SPLIT_RECORD: usize = 64;

/// A split batch of up to this many records is taken whatever its body's size: at a few hundred
/// bytes a record that is a few MiB, and a batch of small records split for the count limit alone
/// (the reason splitting exists) is not refused.
pub const SPLIT_RECORDS_ALWAYS_TAKEN: usize = 10_000;

/// The limits in force for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_records: usize,
    /// Data + partition key UTF-8 bytes of one record.
    pub max_record_size: usize,
    /// Σ(data + partition key UTF-8 bytes) of one PutRecords call.
    pub max_request_size: usize,
}

impl Limits {
    /// How many records a body of `body_len` bytes may carry: the count limit, or, when the
    /// batch may be split over several calls, one per [`MIN_BODY_BYTES_PER_SPLIT_RECORD`] bytes
    /// (never fewer than the count limit or [`SPLIT_RECORDS_ALWAYS_TAKEN`]).
    pub fn max_records_in_body(&self, split: bool, body_len: usize) -> usize {
        if split {
            (body_len / MIN_BODY_BYTES_PER_SPLIT_RECORD)
                .max(SPLIT_RECORDS_ALWAYS_TAKEN)
                .max(self.max_records)
        } else {
            self.max_records
        }
    }

    pub fn check_count(&self, actual: usize) -> Result<(), ValidationError> {
        if actual > self.max_records {
            return Err(ValidationError::TooManyRecords {
                limit: self.max_records,
                actual,
            });
        }
        Ok(())
    }

    /// One record against the record-size limit; `index` is where it stands in the request.
    pub fn check_record(&self, index: usize, record: &Record) -> Result<(), ValidationError> {
        let actual = record.size();
        if actual > self.max_record_size {
            return Err(ValidationError::RecordTooLarge {
                index,
                limit: self.max_record_size,
                actual,
            });
        }
        Ok(())
    }

    /// A PutRecords batch's total against the request-size limit (`batch_too_large`), checked
    /// after every record passed `check_record` (`domain::rules`, lowest index first). Keys are
    /// counted in UTF-8 bytes, as in single mode (the Python class counted characters here).
    pub fn check_total(&self, records: &[Record]) -> Result<(), ValidationError> {
        let total: usize = records.iter().map(Record::size).sum();
        if total > self.max_request_size {
            return Err(ValidationError::BatchTooLarge {
                limit: self.max_request_size,
                actual: total,
            });
        }
        Ok(())
    }
}

impl Limits {
    /// Splits `records` (each within the record limit) into consecutive runs that each fit one
    /// PutRecords call: at most `max_records` records and `max_request_size` bytes.
    pub fn chunks(&self, records: &[Record]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let (mut start, mut size) = (0usize, 0usize);
        for (i, record) in records.iter().enumerate() {
            let full =
                i - start == self.max_records || size + record.size() > self.max_request_size;
            if full && i > start {
                out.push(start..i);
                (start, size) = (i, 0);
            }
            size += record.size();
        }
        if start < records.len() {
            out.push(start..records.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::PartitionKey;

    fn record(data_len: usize, key: &str) -> Record {
        Record {
            data: Bytes::from(vec![b'x'; data_len]),
            partition_key: PartitionKey::parse(key, None).unwrap(),
            explicit_hash_key: None,
        }
    }

    const LIMITS: Limits = Limits {
        max_records: 3,
        max_record_size: 100,
        max_request_size: 250,
    };

    #[test]
    fn record_size_counts_key_utf8_bytes_and_the_limit_itself_passes() {
        assert_eq!(LIMITS.check_record(0, &record(99, "k")), Ok(()));
        // "é" is 1 character but 2 bytes: 99 + 2 = 101.
        assert_eq!(
            LIMITS.check_record(0, &record(99, "é")),
            Err(ValidationError::RecordTooLarge {
                index: 0,
                limit: 100,
                actual: 101
            })
        );
    }

    #[test]
    fn batch_reports_the_lowest_oversized_index_before_the_total() {
        // Records are checked one by one as their keys are settled (domain::rules), the total last.
        let items = [(99, "k"), (100, "kk"), (200, "k")].map(|(n, key)| {
            let envelope = format!(
                r#"{{"data": "{}", "partition_key": "{key}"}}"#,
                "x".repeat(n)
            );
            crate::domain::Item::Json(Bytes::from(envelope))
        });
        let rules = crate::domain::RecordRules {
            envelope: true,
            ..Default::default()
        };
        assert_eq!(
            rules.check().unwrap().records(items.to_vec(), &LIMITS),
            Err(ValidationError::RecordTooLarge {
                index: 1,
                limit: 100,
                actual: 102
            })
        );
    }

    #[test]
    fn batch_total_boundary() {
        let at_limit = vec![record(99, "k"), record(99, "k"), record(49, "k")];
        assert_eq!(LIMITS.check_total(&at_limit), Ok(()));
        let over = vec![record(99, "k"), record(99, "k"), record(50, "k")];
        assert_eq!(
            LIMITS.check_total(&over),
            Err(ValidationError::BatchTooLarge {
                limit: 250,
                actual: 251
            })
        );
    }

    #[test]
    fn chunks_respect_count_and_size_and_keep_order() {
        // 110 bytes and 3 records per call; sizes 50, 50, 10 | 60, 30 | 99, 1, 1 | 1, 1
        let sizes = [49, 49, 9, 59, 29, 98, 0, 0, 0, 0];
        let records: Vec<Record> = sizes.iter().map(|&n| record(n, "k")).collect();
        let limits = Limits {
            max_records: 3,
            max_record_size: 100,
            max_request_size: 110,
        };
        assert_eq!(limits.chunks(&records), vec![0..3, 3..5, 5..8, 8..10]);
        assert!(limits.chunks(&[]).is_empty());
    }

    #[test]
    fn count_boundary() {
        assert_eq!(LIMITS.check_count(3), Ok(()));
        assert_eq!(
            LIMITS.check_count(4),
            Err(ValidationError::TooManyRecords {
                limit: 3,
                actual: 4
            })
        );
    }

    #[test]
    fn split_batches_may_carry_one_record_per_64_body_bytes_and_never_fewer_than_10_000() {
        assert_eq!(LIMITS.max_records_in_body(false, 1 << 24), 3);
        assert_eq!(LIMITS.max_records_in_body(true, 40), 10_000);
        assert_eq!(LIMITS.max_records_in_body(true, 16 << 20), 262_144);
        let big = Limits {
            max_records: 20_000,
            ..LIMITS
        };
        assert_eq!(big.max_records_in_body(true, 40), 20_000);
    }
}
