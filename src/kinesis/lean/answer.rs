//! Kinesis' answers to the lean publisher, as received: success bodies in JSON or CBOR read into
//! the same structs, and error answers classified by the same table as the SDK path's
//! (`PublishError::from_answer`).

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::kinesis::{AnswerEntry, PublishError};

/// Kinesis' answer, as received.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) request_id: Option<String>,
    pub(super) error_type: Option<String>,
    /// The body is CBOR (by its content type), else JSON.
    pub(super) cbor: bool,
    pub(super) body: Bytes,
}

/// An error answer's body in the `awsJson1_1` protocol.
#[derive(Deserialize)]
pub(super) struct ErrorBody {
    #[serde(rename = "__type")]
    pub(super) error_type: Option<String>,
    #[serde(alias = "Message", alias = "errorMessage")]
    pub(super) message: Option<String>,
}

/// A call Kinesis refused, as the error source behind `PublishError::Upstream`'s detail.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status} from Kinesis")]
pub(super) struct Refused {
    pub(super) status: u16,
}

impl Answer {
    /// A successful answer's body, or the error the answer carries.
    pub(super) fn success<T: DeserializeOwned>(&self, stream: &str) -> Result<T, PublishError> {
        if !(200..300).contains(&self.status) {
            return Err(self.error().about(stream));
        }
        self.decode().map_err(|detail| PublishError::Upstream {
            detail: format!("unreadable answer from Kinesis: {detail}"),
        })
    }

    pub(super) fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        if self.cbor {
            ciborium::from_reader(&self.body[..]).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice(&self.body).map_err(|e| e.to_string())
        }
    }

    /// The error an unsuccessful answer carries, classified like the SDK path's: by code, else by
    /// status (a 5xx without a code is Kinesis unavailable).
    pub(super) fn error(&self) -> PublishError {
        let parsed: Option<ErrorBody> = self.decode().ok();
        let (body_type, message) = match parsed {
            Some(b) => (b.error_type, b.message.unwrap_or_default()),
            None => (None, String::new()),
        };
        let code = self
            .error_type
            .as_deref()
            .or(body_type.as_deref())
            .map(sanitize_error_code)
            .unwrap_or_default();
        PublishError::from_answer(
            self.status,
            code,
            &message,
            &Refused {
                status: self.status,
            },
        )
    }
}

/// `aws.protocols#awsJson1_1` error codes may carry a namespace (`ns#Code`) and a suffix
/// (`Code:http://…`); the code is what is between.
pub(super) fn sanitize_error_code(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw)
}

#[derive(Deserialize)]
pub(super) struct PutRecordOut {
    #[serde(rename = "ShardId")]
    pub(super) shard_id: String,
    #[serde(rename = "SequenceNumber")]
    pub(super) sequence_number: String,
    #[serde(rename = "EncryptionType")]
    pub(super) encryption_type: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PutRecordsOut {
    #[serde(rename = "Records")]
    pub(super) records: Vec<AnswerEntry>,
    #[serde(rename = "EncryptionType")]
    pub(super) encryption_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_answers_are_read_into_the_same_outcomes() {
        use ciborium::Value;
        let text = |s: &str| Value::Text(s.to_owned());
        let answer = Value::Map(vec![
            (text("FailedRecordCount"), Value::Integer(1.into())),
            (
                text("Records"),
                Value::Array(vec![
                    Value::Map(vec![
                        (text("SequenceNumber"), text("1")),
                        (text("ShardId"), text("shardId-0")),
                    ]),
                    Value::Map(vec![
                        (
                            text("ErrorCode"),
                            text("ProvisionedThroughputExceededException"),
                        ),
                        (text("ErrorMessage"), text("slow")),
                    ]),
                ]),
            ),
            (text("EncryptionType"), text("NONE")),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&answer, &mut bytes).unwrap();
        let ok = Answer {
            status: 200,
            request_id: None,
            error_type: None,
            cbor: true,
            body: Bytes::from(bytes),
        };
        let out: PutRecordsOut = ok.success("s").unwrap();
        assert_eq!(out.records.len(), 2);
        assert_eq!(
            out.records[1].error_code.as_deref(),
            Some("ProvisionedThroughputExceededException")
        );
        let mut bytes = Vec::new();
        let error = Value::Map(vec![
            (text("__type"), text("ResourceNotFoundException")),
            (text("message"), text("gone")),
        ]);
        ciborium::into_writer(&error, &mut bytes).unwrap();
        let refused = Answer {
            status: 400,
            request_id: None,
            error_type: None,
            cbor: true,
            body: Bytes::from(bytes),
        };
        assert!(matches!(refused.error(), PublishError::NotFound { .. }));
    }

    #[test]
    fn error_answers_are_classified_like_the_sdk_path() {
        let answer = |status, header: Option<&str>, body: &str| Answer {
            status,
            request_id: None,
            error_type: header.map(str::to_owned),
            cbor: false,
            body: Bytes::from(body.to_owned()),
        };
        let cases = [
            (
                answer(
                    400,
                    None,
                    r#"{"__type":"com.amazonaws.kinesis.v20131202#ProvisionedThroughputExceededException","message":"slow"}"#,
                ),
                "Throttled",
            ),
            (
                answer(
                    400,
                    Some("ResourceNotFoundException:http://internal"),
                    r#"{"message":"gone"}"#,
                ),
                "NotFound",
            ),
            (
                answer(
                    400,
                    None,
                    r#"{"__type":"ExpiredTokenException","Message":"old"}"#,
                ),
                "Upstream",
            ),
            (
                answer(500, None, r#"{"__type":"InternalFailure"}"#),
                "Unavailable",
            ),
            (answer(503, None, "<html>busy</html>"), "Unavailable"),
            (answer(400, None, "not json"), "Upstream"),
        ];
        for (answer, want) in cases {
            let got = answer.error();
            let kind = match got {
                PublishError::Throttled { .. } => "Throttled",
                PublishError::NotFound { .. } => "NotFound",
                PublishError::Upstream { .. } => "Upstream",
                PublishError::Unavailable { .. } => "Unavailable",
                _ => "other",
            };
            assert_eq!(kind, want, "{got:?}");
        }
    }
}
