//! `streams:` and `auth:`: which streams may be written, and the API keys that may write them
//! (src/access.rs enforces both).

use anyhow::Context;
use serde::Deserialize;

use super::per_stream::PerStream;

/// Which streams may be written (`streams:` in config).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamAccessSettings {
    /// Any stream the IAM role reaches. Local development only: production lists its streams.
    pub allow_all: bool,
    #[serde(default)]
    pub allowed: Vec<AllowedStream>,
}

/// One writable stream, optionally addressed by ARN and in another region. A bare name is
/// accepted too (`- clickstream`, or `APP_STREAMS__ALLOWED=clickstream,orders`).
pub type AllowedStream = PerStream<StreamTarget>;

/// How an allowed stream is reached, when not by name in the service's own region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StreamTarget {
    /// Calls use `StreamARN` when set (AWS recommends it; needed across accounts).
    pub arn: Option<String>,
    /// The stream's region, when it is not the service's own.
    pub region: Option<String>,
}

impl AllowedStream {
    /// Reached other than by name in the service's own region (an ARN, another region): the
    /// publishers prepare such a stream's client or endpoint at start-up.
    pub fn has_own_target(&self) -> bool {
        self.set.arn.is_some() || self.set.region.is_some()
    }
}

/// API keys (`auth:` in config). Keys are stored as SHA-256 hex digests, never in clear.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Writes need a valid key (`Authorization: Bearer <key>` or `x-api-key: <key>`).
    pub required: bool,
    #[serde(default)]
    pub keys: Vec<ApiKeySettings>,
    /// The same list as JSON (for secrets injected as one environment variable,
    /// `APP_AUTH__KEYS_JSON`); appended to `keys`.
    #[serde(default)]
    pub keys_json: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeySettings {
    /// A name for logs and metrics; the key itself is never logged.
    pub id: String,
    /// Lowercase hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// Streams this key may write; `"*"` means every allowed stream. A list, or one string (a
    /// name, `"*"`, or names separated by commas).
    #[serde(deserialize_with = "one_or_many")]
    pub streams: Vec<String>,
}

/// A list of names, also given as one string: `"*"` or `"a, b"` reads as `["*"]` or `["a", "b"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(names) => names,
        OneOrMany::One(names) => names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl AuthSettings {
    /// `keys` plus those of `keys_json`.
    pub fn all_keys(&self) -> anyhow::Result<Vec<ApiKeySettings>> {
        let mut keys = self.keys.clone();
        if !self.keys_json.trim().is_empty() {
            let extra: Vec<ApiKeySettings> = serde_json::from_str(&self.keys_json)
                .context("auth.keys_json (APP_AUTH__KEYS_JSON) is not a JSON list of keys")?;
            keys.extend(extra);
        }
        Ok(keys)
    }
}
