//! `limits:`: the Kinesis limits enforced before any call to AWS, and per-stream overrides for
//! streams whose max record size was raised.

use anyhow::bail;
use serde::Deserialize;

use super::per_stream::{self, PerStream};
use crate::domain::limits::{MAX_AWS_RECORD_SIZE, MAX_AWS_REQUEST_SIZE, MAX_RECORDS_PER_REQUEST};

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub max_records_per_request: usize,
    pub max_record_size_bytes: usize,
    pub max_request_size_bytes: usize,
    pub body_limit_bytes: usize,
    #[serde(default)]
    pub streams: Vec<StreamLimitSettings>,
}

/// One entry of `limits.streams`.
pub type StreamLimitSettings = PerStream<LimitOverrides>;

/// Size limits for one stream, for streams whose Kinesis max record size was raised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LimitOverrides {
    pub max_record_size_bytes: Option<usize>,
    pub max_request_size_bytes: Option<usize>,
}

impl LimitSettings {
    /// Refuses limits past AWS's, and a body cap that leaves no room for JSON around the records.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        check_sizes(
            "limits",
            self.max_record_size_bytes,
            self.max_request_size_bytes,
            self.body_limit_bytes,
        )?;
        let max = self.max_records_per_request;
        if max == 0 || max > MAX_RECORDS_PER_REQUEST {
            bail!(
                "limits.max_records_per_request must be 1..={MAX_RECORDS_PER_REQUEST}, got {max}"
            );
        }
        per_stream::validate_names("limits.streams", &self.streams)?;
        for s in &self.streams {
            check_sizes(
                &format!("limits.streams[{}]", s.name),
                s.set
                    .max_record_size_bytes
                    .unwrap_or(self.max_record_size_bytes),
                s.set
                    .max_request_size_bytes
                    .unwrap_or(self.max_request_size_bytes),
                self.body_limit_bytes,
            )?;
        }
        Ok(())
    }
}

fn check_sizes(what: &str, record: usize, request: usize, body: usize) -> anyhow::Result<()> {
    if record == 0 || record > MAX_AWS_RECORD_SIZE {
        bail!("{what}.max_record_size_bytes must be 1..={MAX_AWS_RECORD_SIZE}, got {record}");
    }
    if request == 0 || request > MAX_AWS_REQUEST_SIZE {
        bail!("{what}.max_request_size_bytes must be 1..={MAX_AWS_REQUEST_SIZE}, got {request}");
    }
    // The body carries JSON quoting and separators on top of the record bytes, so a cap at or below
    // the request-size limit would turn valid batches into 413s.
    if body <= request || body <= record {
        bail!(
            "limits.body_limit_bytes ({body}) must exceed {what}'s record and request size limits \
             ({record}, {request}) to leave room for JSON overhead"
        );
    }
    Ok(())
}
