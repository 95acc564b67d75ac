//! The lean publisher's credentials: the aws-config chain the SDK uses, asked once and kept until
//! shortly before the credentials expire.
//!
//! The SDK keeps resolved credentials in its identity cache; a provider from `SdkConfig` is not
//! cached by itself (a profile provider reads files, an IMDS one makes a request). This cache
//! answers from memory on the hot path and lets one caller refresh while the others wait.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::kinesis::PublishError;

/// Credentials expiring within this margin are refreshed first (the SDK's identity cache uses
/// the same order of margin), so a request is never signed with a token about to lapse in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct CredentialCache {
    provider: Option<SharedCredentialsProvider>,
    current: RwLock<Option<Arc<Credentials>>>,
    refresh: tokio::sync::Mutex<()>,
    load_timeout: Duration,
}

impl CredentialCache {
    pub(crate) fn new(provider: Option<SharedCredentialsProvider>, load_timeout: Duration) -> Self {
        Self {
            provider,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            load_timeout,
        }
    }

    /// Current credentials, refreshed first when missing or about to expire.
    pub(crate) async fn get(&self) -> Result<Arc<Credentials>, PublishError> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        // One refresh at a time; whoever waited finds the new credentials already there.
        let _refreshing = self.refresh.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let none = |detail: String| PublishError::NoCredentials { detail };
        let Some(provider) = &self.provider else {
            return Err(none("no credentials provider is configured".to_owned()));
        };
        let loaded = tokio::time::timeout(self.load_timeout, provider.provide_credentials())
            .await
            .map_err(|_| none("loading AWS credentials timed out".to_owned()))?
            .map_err(|e| {
                none(format!(
                    "failed to load AWS credentials: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(e)
                ))
            })?;
        let loaded = Arc::new(loaded);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded.clone());
        Ok(loaded)
    }

    fn fresh(&self) -> Option<Arc<Credentials>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let c = current.as_ref()?;
        match c.expiry() {
            Some(expiry) if expiry <= SystemTime::now() + EXPIRY_MARGIN => None,
            _ => Some(c.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::future::ProvideCredentials as CredentialsFuture;

    use super::*;

    /// Counts loads; hands out credentials that expire `ttl` from now.
    #[derive(Debug)]
    struct Counting {
        loads: Arc<AtomicUsize>,
        ttl: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> CredentialsFuture<'a>
        where
            Self: 'a,
        {
            let n = self.loads.fetch_add(1, Ordering::SeqCst);
            CredentialsFuture::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.ttl),
                "counting",
            )))
        }
    }

    fn cache(ttl: Duration) -> (CredentialCache, Arc<AtomicUsize>) {
        let loads = Arc::new(AtomicUsize::new(0));
        let provider = SharedCredentialsProvider::new(Counting {
            loads: loads.clone(),
            ttl,
        });
        (
            CredentialCache::new(Some(provider), Duration::from_secs(1)),
            loads,
        )
    }

    #[tokio::test]
    async fn loads_once_while_fresh_and_again_near_expiry() {
        let (fresh, loads) = cache(Duration::from_secs(3600));
        for _ in 0..10 {
            assert_eq!(fresh.get().await.unwrap().access_key_id(), "AKID0");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        let (expiring, loads) = cache(Duration::from_secs(30));
        expiring.get().await.unwrap();
        assert_eq!(expiring.get().await.unwrap().access_key_id(), "AKID1");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_provider_is_no_credentials() {
        let none = CredentialCache::new(None, Duration::from_secs(1));
        assert!(matches!(
            none.get().await,
            Err(PublishError::NoCredentials { .. })
        ));
    }
}
