//! Who may write where: the streams allowlist and API-key authentication.
//!
//! Keys are held only as SHA-256 digests. A presented key is hashed once and compared with every
//! configured digest in constant time, so neither the comparison nor the position of a match
//! leaks through timing. Keys never reach a log line: only their configured `id` does.

use std::collections::HashSet;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Settings;

/// Why a request may not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No key, or an unknown one (401).
    #[error("a valid API key is required: send `Authorization: Bearer <key>` or `x-api-key`")]
    Unauthenticated,
    /// A valid key that may not write this stream (403).
    #[error("this API key may not write stream {0:?}")]
    Forbidden(String),
    /// Not on the allowlist: answered like a missing stream (404), revealing nothing.
    #[error("Stream {0} not found")]
    StreamNotAllowed(String),
}

#[derive(Debug, Clone)]
struct ApiKey {
    id: String,
    digest: [u8; 32],
    /// `None`: every allowed stream.
    streams: Option<HashSet<String>>,
}

/// The access rules, built once from the settings.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    allow_all: bool,
    allowed: HashSet<String>,
    required: bool,
    keys: Vec<ApiKey>,
}

/// The caller, once authenticated (`None` id when auth is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: Option<String>,
}

impl AccessPolicy {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let keys = settings
            .auth
            .all_keys()?
            .into_iter()
            .map(|k| {
                let mut digest = [0u8; 32];
                for (i, byte) in digest.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&k.sha256[2 * i..2 * i + 2], 16)?;
                }
                let streams = (!k.streams.iter().any(|s| s == "*"))
                    .then(|| k.streams.iter().cloned().collect());
                Ok(ApiKey {
                    id: k.id,
                    digest,
                    streams,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            allow_all: settings.streams.allow_all,
            allowed: settings
                .streams
                .allowed
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            required: settings.auth.required,
            keys,
        })
    }

    /// Says at start-up, loudly, what this configuration lets through.
    pub fn log_summary(&self) {
        if self.allow_all {
            tracing::warn!(
                "streams.allow_all is on: any stream the IAM role reaches can be written; \
                 list the streams in streams.allowed for production"
            );
        } else if self.allowed.is_empty() {
            tracing::error!(
                "No stream is allowed (streams.allowed is empty): every write will get 404; \
                 configure streams.allowed"
            );
        } else {
            tracing::info!(streams = ?self.allowed, "Writable streams");
        }
        match (self.required, self.keys.len()) {
            (false, _) => {
                tracing::warn!("auth.required is off: anyone who reaches the service can write");
            }
            (true, 0) => tracing::error!(
                "auth.required is on but no API key is configured: every write will get 401"
            ),
            (true, n) => tracing::info!(keys = n, "API keys required"),
        }
    }

    /// Authenticates the request's key (if auth is on).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AccessError> {
        if !self.required {
            return Ok(Caller { key_id: None });
        }
        let key = self.find_key(headers).ok_or(AccessError::Unauthenticated)?;
        Ok(Caller {
            key_id: Some(key.id.clone()),
        })
    }

    /// The configured key the request presents, if any: hashed once, then compared with every
    /// key in constant time, without stopping at a match.
    fn find_key(&self, headers: &HeaderMap) -> Option<&ApiKey> {
        let digest: [u8; 32] = Sha256::digest(presented_key(headers)?.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }

    /// May `caller` write `stream`? The allowlist first (404), then the key's scope (403).
    pub fn authorize(&self, caller: &Caller, stream: &str) -> Result<(), AccessError> {
        if !self.allow_all && !self.allowed.contains(stream) {
            return Err(AccessError::StreamNotAllowed(stream.to_owned()));
        }
        let Some(id) = &caller.key_id else {
            return Ok(());
        };
        let key = self.keys.iter().find(|k| &k.id == id);
        match key.and_then(|k| k.streams.as_ref()) {
            Some(streams) if !streams.contains(stream) => {
                Err(AccessError::Forbidden(stream.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// For `/metrics` when it is protected: any valid key will do.
    pub fn require_any_key(&self, headers: &HeaderMap) -> Result<(), AccessError> {
        self.find_key(headers)
            .map(|_| ())
            .ok_or(AccessError::Unauthenticated)
    }
}

/// `Authorization: Bearer <key>`, else `x-api-key: <key>`. The scheme is matched without regard
/// to case (`BEARER` and `bearer` too): RFC 9110 §11.1 makes auth schemes case-insensitive, and
/// clients that upper-case it exist.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer").then_some(key))
        .map(str::trim);
    bearer
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        })
        .filter(|k| !k.is_empty())
}

/// Lowercase hex SHA-256 of `key`: what goes into `auth.keys[].sha256`.
pub fn key_digest_hex(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::config::ApiKeySettings;

    fn policy(required: bool, allow_all: bool) -> AccessPolicy {
        let mut s = Settings::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        )))
        .unwrap();
        s.auth.required = required;
        s.streams.allow_all = allow_all;
        s.streams.allowed = ["a", "b"].map(crate::config::AllowedStream::named).to_vec();
        s.auth.keys = vec![
            ApiKeySettings {
                id: "only-a".into(),
                sha256: key_digest_hex("key-a"),
                streams: vec!["a".into()],
            },
            ApiKeySettings {
                id: "all".into(),
                sha256: key_digest_hex("key-all"),
                streams: vec!["*".into()],
            },
        ];
        AccessPolicy::from_settings(&s).unwrap()
    }

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_auth_matrix() {
        let p = policy(true, false);
        let none = HeaderMap::new();
        assert_eq!(p.authenticate(&none), Err(AccessError::Unauthenticated));
        assert_eq!(
            p.authenticate(&headers("authorization", "Bearer wrong")),
            Err(AccessError::Unauthenticated)
        );
        let a = p
            .authenticate(&headers("authorization", "Bearer key-a"))
            .unwrap();
        assert_eq!(a.key_id.as_deref(), Some("only-a"));
        assert_eq!(p.authorize(&a, "a"), Ok(()));
        assert_eq!(
            p.authorize(&a, "b"),
            Err(AccessError::Forbidden("b".into()))
        );
        assert_eq!(
            p.authorize(&a, "c"),
            Err(AccessError::StreamNotAllowed("c".into()))
        );
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let caller = p.authenticate(&headers("authorization", &format!("{scheme} key-a")));
            assert_eq!(caller, Ok(a.clone()), "scheme {scheme:?} (RFC 9110 §11.1)");
        }
        for not_bearer in ["Basic key-a", "Bearerkey-a", "key-a"] {
            let caller = p.authenticate(&headers("authorization", not_bearer));
            assert_eq!(caller, Err(AccessError::Unauthenticated), "{not_bearer:?}");
        }
        let all = p.authenticate(&headers("x-api-key", "key-all")).unwrap();
        assert_eq!(p.authorize(&all, "b"), Ok(()));
        assert_eq!(
            p.authorize(&all, "c"),
            Err(AccessError::StreamNotAllowed("c".into()))
        );
    }

    #[test]
    fn without_auth_only_the_allowlist_applies() {
        let p = policy(false, false);
        let anyone = p.authenticate(&HeaderMap::new()).unwrap();
        assert_eq!(p.authorize(&anyone, "a"), Ok(()));
        assert_eq!(
            p.authorize(&anyone, "z"),
            Err(AccessError::StreamNotAllowed("z".into()))
        );
        assert_eq!(policy(false, true).authorize(&anyone, "z"), Ok(()));
    }

    #[test]
    fn digests_are_lowercase_hex_sha256() {
        assert_eq!(
            key_digest_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
