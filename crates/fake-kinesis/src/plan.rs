//! What the fake does with each call and each record: the fault-injection [`Plan`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The Kinesis operation a call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `Kinesis_20131202.PutRecord`: one record; an entry failure becomes a whole-call error.
    PutRecord,
    /// `Kinesis_20131202.PutRecords`: a batch; entry failures are reported per entry.
    PutRecords,
}

/// What a call-level rule sees, before any of the call's records is looked at.
#[derive(Debug, Clone, Copy)]
pub struct CallCtx<'a> {
    /// The operation asked for.
    pub operation: Operation,
    /// 0-based index of this Put call since start or the last [`reset`](crate::FakeKinesis::reset),
    /// counting PutRecord and PutRecords calls together.
    pub call_index: u64,
    /// `StreamName`, or the name part of `StreamARN`.
    pub stream: &'a str,
    /// Number of records in the call (1 for PutRecord).
    pub entries: usize,
}

/// What an entry-level rule sees for each record of a call that was not failed as a whole.
#[derive(Debug, Clone, Copy)]
pub struct EntryCtx<'a> {
    /// The operation that carried the record.
    pub operation: Operation,
    /// The stream named by the call.
    pub stream: &'a str,
    /// Position of the record in its call (always 0 for PutRecord).
    pub index: usize,
    /// The record's partition key.
    pub partition_key: &'a str,
    /// The record's data as raw bytes (base64-decoded in JSON, the byte string in CBOR).
    pub data: &'a [u8],
    /// How many times a record with exactly these data bytes reached an entry rule before, in any
    /// call since the last reset. This is what lets a plan say "fail the first two attempts" and
    /// still let the caller's retry succeed.
    pub seen_before: u32,
}

/// The answer of an entry rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryVerdict {
    /// Write the record and give it a sequence number.
    Accept,
    /// Refuse the record with this Kinesis error code (`ProvisionedThroughputExceededException`,
    /// `InternalFailure`, `InvalidArgumentException`, ...). In PutRecords it is reported in the
    /// entry's `ErrorCode`; in PutRecord it becomes the call's error (HTTP 500 for
    /// `InternalFailure`, 400 otherwise), as Kinesis does.
    Fail {
        /// The `ErrorCode` (PutRecords) or `__type` (PutRecord).
        code: String,
        /// The `ErrorMessage` / `message`.
        message: String,
    },
}

impl EntryVerdict {
    /// A failure with a generic message for `code`.
    pub fn fail(code: &str) -> Self {
        EntryVerdict::Fail {
            code: code.to_owned(),
            message: format!("injected {code}"),
        }
    }
}

/// A whole-call error: the HTTP status and AWS error type of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// HTTP status (400 for client errors and throttling, 500 for `InternalFailure`).
    pub status: u16,
    /// The `__type` of the AWS JSON error body: what the SDK's `code()` returns.
    pub error_type: String,
    /// The `message` of the error body.
    pub message: String,
}

impl CallError {
    /// Any status and error type.
    pub fn new(status: u16, error_type: &str, message: &str) -> Self {
        Self {
            status,
            error_type: error_type.to_owned(),
            message: message.to_owned(),
        }
    }
    /// 400 `ProvisionedThroughputExceededException`: shard throughput exceeded (retryable).
    pub fn throttled() -> Self {
        Self::new(
            400,
            "ProvisionedThroughputExceededException",
            "Rate exceeded for shard",
        )
    }
    /// 400 `LimitExceededException`: account/control-plane limit (retryable throttling).
    pub fn limit_exceeded() -> Self {
        Self::new(400, "LimitExceededException", "Rate exceeded")
    }
    /// 500 `InternalFailure`: a server-side error (retryable).
    pub fn internal_failure() -> Self {
        Self::new(500, "InternalFailure", "Internal service failure")
    }
    /// 400 `ResourceNotFoundException`: the stream does not exist (not retryable).
    pub fn resource_not_found() -> Self {
        Self::new(400, "ResourceNotFoundException", "Stream not found")
    }
    /// 400 `AccessDeniedException`.
    pub fn access_denied() -> Self {
        Self::new(400, "AccessDeniedException", "Access denied")
    }
}

/// How a call's connection is closed instead of answered, as when Kinesis (or a proxy in front of
/// it, or the emulator) dies mid-call. The call's records are not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// The request was read; the connection closes without a byte of answer (the client sees
    /// "connection closed before message completed").
    BeforeAnswer,
    /// A `200` status line and headers announcing a body, a few bytes of it, then the connection
    /// closes (the client fails while reading the body).
    MidAnswer,
}

/// The answer of a call rule: an optional delay before answering, then an optional error (or a
/// hang-up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallVerdict {
    /// Wait this long before answering (to trigger client timeouts). The call is still processed
    /// after the wait, so a client that gave up may see its records written anyway, as with real
    /// Kinesis.
    pub delay: Duration,
    /// Answer with this error instead of processing the records.
    pub error: Option<CallError>,
    /// Close the connection instead of answering (after `delay`); beats `error`.
    pub hang_up: Option<HangUp>,
}

impl CallVerdict {
    /// Process the call normally.
    pub fn proceed() -> Self {
        Self::default()
    }
    /// Fail the whole call.
    pub fn fail(error: CallError) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }
    /// Wait, then process normally.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
    /// Close the connection instead of answering.
    pub fn hang_up(how: HangUp) -> Self {
        Self {
            hang_up: Some(how),
            ..Self::default()
        }
    }
}

/// An entry-level rule.
pub type EntryRule = Arc<dyn Fn(&EntryCtx<'_>) -> EntryVerdict + Send + Sync>;
/// A call-level rule.
pub type CallRule = Arc<dyn Fn(&CallCtx<'_>) -> CallVerdict + Send + Sync>;

/// The fake's behaviour: an optional call rule, an optional entry rule and a fixed delay.
///
/// The default plan accepts everything at once. Plans are cheap to clone and can be replaced at
/// any time with [`FakeKinesis::set_plan`](crate::FakeKinesis::set_plan); a call in flight keeps
/// the plan it started with.
///
/// ```
/// use fake_kinesis::{CallError, Plan};
/// use std::time::Duration;
/// // The first call is throttled, every record containing "fail-twice" fails its first two
/// // attempts, and every answer takes 10 ms.
/// let plan = Plan::fail_first_calls(1, CallError::throttled())
///     .and_entries(Plan::fail_first_attempts(b"fail-twice", 2,
///         "ProvisionedThroughputExceededException"))
///     .with_delay(Duration::from_millis(10));
/// # let _ = plan;
/// ```
#[derive(Clone, Default)]
pub struct Plan {
    pub(crate) call: Option<CallRule>,
    pub(crate) entry: Option<EntryRule>,
    pub(crate) delay: Duration,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("call_rule", &self.call.is_some())
            .field("entry_rule", &self.entry.is_some())
            .field("delay", &self.delay)
            .finish()
    }
}

impl Plan {
    /// Accept every call and every record (the default).
    pub fn accept_all() -> Self {
        Self::default()
    }

    /// A plan from closures. `None` means "no rule at that level".
    pub fn from_rules(call: Option<CallRule>, entry: Option<EntryRule>) -> Self {
        Self {
            call,
            entry,
            delay: Duration::ZERO,
        }
    }

    /// Decide each record with `rule`.
    pub fn entries(rule: impl Fn(&EntryCtx<'_>) -> EntryVerdict + Send + Sync + 'static) -> Self {
        Self {
            entry: Some(Arc::new(rule)),
            ..Self::default()
        }
    }

    /// Decide each call with `rule`.
    pub fn calls(rule: impl Fn(&CallCtx<'_>) -> CallVerdict + Send + Sync + 'static) -> Self {
        Self {
            call: Some(Arc::new(rule)),
            ..Self::default()
        }
    }

    /// Fail with `code` every record for which `pred` holds.
    pub fn fail_entries_when(
        code: &str,
        pred: impl Fn(&EntryCtx<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        let verdict = EntryVerdict::fail(code);
        Self::entries(move |e| {
            if pred(e) {
                verdict.clone()
            } else {
                EntryVerdict::Accept
            }
        })
    }

    /// Fail every record with `code`.
    pub fn fail_all_entries(code: &str) -> Self {
        Self::fail_entries_when(code, |_| true)
    }

    /// Fail the first `n` attempts of every record whose data contains `marker`; the attempt after
    /// that is accepted. Records without the marker are accepted.
    pub fn fail_first_attempts(marker: &[u8], n: u32, code: &str) -> Self {
        let marker = marker.to_vec();
        Self::fail_entries_when(code, move |e| {
            e.seen_before < n && contains(e.data, &marker)
        })
    }

    /// Fail each record with probability `p`, from a RNG seeded with `seed` (deterministic for a
    /// given arrival order).
    pub fn fail_entries_randomly(p: f64, seed: u64, code: &str) -> Self {
        let rng = SplitMix64::new(seed);
        Self::fail_entries_when(code, move |_| rng.next_f64() < p)
    }

    /// Fail whole calls for which `pred` holds with `error`.
    pub fn fail_calls_when(
        error: CallError,
        pred: impl Fn(&CallCtx<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self::calls(move |c| {
            if pred(c) {
                CallVerdict::fail(error.clone())
            } else {
                CallVerdict::proceed()
            }
        })
    }

    /// Fail the first `n` Put calls (since start or reset) with `error`, then proceed.
    pub fn fail_first_calls(n: u64, error: CallError) -> Self {
        Self::fail_calls_when(error, move |c| c.call_index < n)
    }

    /// Fail every Put call with `error`.
    pub fn fail_all_calls(error: CallError) -> Self {
        Self::fail_calls_when(error, |_| true)
    }

    /// Fail each Put call with probability `p` (seeded RNG) with `error`.
    pub fn fail_calls_randomly(p: f64, seed: u64, error: CallError) -> Self {
        let rng = SplitMix64::new(seed);
        Self::fail_calls_when(error, move |_| rng.next_f64() < p)
    }

    /// Hang up on the first `n` Put calls (since start or reset) `how`, then proceed.
    pub fn hang_up_first_calls(n: u64, how: HangUp) -> Self {
        Self::calls(move |c| {
            if c.call_index < n {
                CallVerdict::hang_up(how)
            } else {
                CallVerdict::proceed()
            }
        })
    }

    /// Hang up on every Put call `how`.
    pub fn hang_up_all_calls(how: HangUp) -> Self {
        Self::hang_up_first_calls(u64::MAX, how)
    }

    /// Delay the first `n` Put calls by `delay` (to make the client time out), then answer at once.
    pub fn delay_first_calls(n: u64, delay: Duration) -> Self {
        Self::calls(move |c| {
            if c.call_index < n {
                CallVerdict::delay(delay)
            } else {
                CallVerdict::proceed()
            }
        })
    }

    /// Delay every answer to a Put call by `delay`, on top of any call rule's delay.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// This plan's call rule with `other`'s entry rule (and the larger of the two delays).
    #[must_use]
    pub fn and_entries(mut self, other: Plan) -> Self {
        self.entry = other.entry;
        self.delay = self.delay.max(other.delay);
        self
    }

    /// This plan's entry rule with `other`'s call rule (and the larger of the two delays).
    #[must_use]
    pub fn and_calls(mut self, other: Plan) -> Self {
        self.call = other.call;
        self.delay = self.delay.max(other.delay);
        self
    }

    pub(crate) fn call_verdict(&self, ctx: &CallCtx<'_>) -> CallVerdict {
        let mut v = self
            .call
            .as_ref()
            .map_or_else(CallVerdict::proceed, |rule| rule(ctx));
        v.delay += self.delay;
        v
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A tiny seeded RNG (SplitMix64) shared by the calls of one plan: enough for fault injection,
/// and it spares the crate a `rand` dependency whose API changes between versions.
#[derive(Debug)]
struct SplitMix64(AtomicU64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }
    fn next_f64(&self) -> f64 {
        let mut z = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits → [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
