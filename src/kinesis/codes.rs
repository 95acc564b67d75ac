//! Kinesis' error codes and what each means to this service: the one place that knows them.
//!
//! A code comes back either as the error of a whole call or inside a PutRecords answer, for one
//! entry; both are classified here, so retries, answers and metrics agree on what a code means.

use crate::domain::{EntryOutcome, PutRecordsOutcome};

pub(crate) const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";
pub(crate) const INTERNAL_FAILURE: &str = "InternalFailure";

/// The shard, the account or its KMS key is too busy: back off and try again.
const THROTTLING: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
];
/// Kinesis refused the content: the same request fails the same way every time.
const REJECTED: [&str; 2] = ["InvalidArgumentException", "ValidationException"];
/// A fault on Kinesis' side that passes.
const TRANSIENT: [&str; 3] = [
    INTERNAL_FAILURE,
    "ServiceUnavailable",
    "InternalServerError",
];

/// What a Kinesis error code means to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeClass {
    NotFound,
    Throttled,
    Rejected,
    Transient,
    /// Access denied, KMS (not throttling), anything unknown: the service's setup is at fault.
    Other,
}

pub(crate) fn classify(code: &str) -> CodeClass {
    if code == RESOURCE_NOT_FOUND {
        CodeClass::NotFound
    } else if THROTTLING.contains(&code) {
        CodeClass::Throttled
    } else if REJECTED.contains(&code) {
        CodeClass::Rejected
    } else if TRANSIENT.contains(&code) {
        CodeClass::Transient
    } else {
        CodeClass::Other
    }
}

impl EntryOutcome {
    /// Worth sending again: the shard was busy or Kinesis had a transient fault. Anything else
    /// (e.g. `InvalidArgumentException`) would fail the same way every time.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.failure_class(),
            Some(CodeClass::Throttled | CodeClass::Transient)
        )
    }

    /// Failed because of throttling: a caller should back off (`Retry-After`).
    pub fn is_throttled(&self) -> bool {
        self.failure_class() == Some(CodeClass::Throttled)
    }

    fn failure_class(&self) -> Option<CodeClass> {
        match self {
            Self::Failed { error_code, .. } => Some(classify(error_code)),
            Self::Written { .. } => None,
        }
    }
}

impl PutRecordsOutcome {
    /// True when some record failed because of throttling, which earns the caller a `Retry-After`.
    pub fn any_throttled(&self) -> bool {
        self.records.iter().any(EntryOutcome::is_throttled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(code: &str) -> EntryOutcome {
        EntryOutcome::Failed {
            error_code: code.to_owned(),
            error_message: String::new(),
        }
    }

    #[test]
    fn entry_codes_decide_retries_and_retry_after() {
        for code in [
            "ProvisionedThroughputExceededException",
            "KMSThrottlingException",
        ] {
            assert!(
                failed(code).is_retriable() && failed(code).is_throttled(),
                "{code}"
            );
        }
        assert!(failed(INTERNAL_FAILURE).is_retriable());
        assert!(!failed(INTERNAL_FAILURE).is_throttled());
        for code in [
            "InvalidArgumentException",
            "AccessDeniedException",
            "SomethingNew",
        ] {
            assert!(!failed(code).is_retriable(), "{code}");
        }
        let written = EntryOutcome::Written {
            shard_id: "s".into(),
            sequence_number: "1".into(),
            sub_sequence_number: None,
        };
        assert!(!written.is_retriable() && !written.is_throttled());
    }
}
