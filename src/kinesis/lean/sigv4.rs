//! SigV4 for the lean publisher's one request shape: `POST /` with a fixed set of headers.
//!
//! The SDK derives the signing key afresh on every call (four HMACs over the secret, the date,
//! the region and the service) and canonicalises whatever headers the request carries. Here the
//! request shape is known, so the canonical request is written directly, and the signing key is
//! derived once per credentials, day and region and kept. The HMAC primitives are aws-sigv4's own
//! (`generate_signing_key`, `calculate_signature`); the unit test below checks the result against
//! aws-sigv4's full request signer.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use sha2::{Digest, Sha256};

const SERVICE: &str = "kinesis";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Signs requests to one region. Holds the signing key for the current credentials and day.
#[derive(Debug)]
pub(crate) struct Signer {
    region: String,
    key: Mutex<Option<CachedKey>>,
}

#[derive(Debug)]
struct CachedKey {
    /// The credentials the key was derived from (compared by identity: a refresh makes a new Arc).
    credentials: Arc<Credentials>,
    /// `YYYYMMDD`, the key's day.
    date: String,
    key: Arc<[u8]>,
}

/// The headers a signed request carries besides `host`, `content-type` and `x-amz-target`.
#[derive(Debug)]
pub(crate) struct Signature {
    pub(crate) amz_date: String,
    pub(crate) authorization: String,
}

/// The signing time, `YYYYMMDD` and `YYYYMMDDTHHMMSSZ`.
struct Stamp {
    date: String,
    amz_date: String,
}

impl Stamp {
    fn at(time: SystemTime) -> Self {
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let (y, m, d) = civil_from_days(days);
        let rem = secs % 86_400;
        let date = format!("{y:04}{m:02}{d:02}");
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        );
        Self { date, amz_date }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A SHA-256 digest, as `Sha256::digest` and `finalize` give it (hex via its `LowerHex`).
pub(crate) type Sha256Digest = sha2::digest::Output<Sha256>;

impl Signer {
    pub(crate) fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            key: Mutex::new(None),
        }
    }

    /// Signs `POST /` to `host` with these `content_type` and `target` headers (and the session
    /// token's, when the credentials have one) over a body whose SHA-256 is `payload_sha256`.
    pub(crate) fn sign(
        &self,
        credentials: &Arc<Credentials>,
        time: SystemTime,
        host: &str,
        content_type: &str,
        target: &str,
        payload_sha256: &Sha256Digest,
    ) -> Signature {
        let stamp = Stamp::at(time);
        let token = credentials.session_token();
        let signed_headers = if token.is_some() {
            "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
        } else {
            "content-type;host;x-amz-date;x-amz-target"
        };
        let mut canonical = String::with_capacity(256 + token.map_or(0, str::len));
        let _ = write!(
            canonical,
            "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{}\n",
            stamp.amz_date
        );
        if let Some(token) = token {
            let _ = writeln!(canonical, "x-amz-security-token:{}", token.trim());
        }
        let _ = write!(
            canonical,
            "x-amz-target:{target}\n\n{signed_headers}\n{payload_sha256:x}"
        );
        let scope = format!("{}/{}/{SERVICE}/aws4_request", stamp.date, self.region);
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{:x}",
            stamp.amz_date,
            Sha256::digest(canonical.as_bytes())
        );
        let key = self.key_for(credentials, &stamp.date, time);
        let signature = aws_sigv4::sign::v4::calculate_signature(&*key, string_to_sign.as_bytes());
        Signature {
            authorization: format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, \
                 Signature={signature}",
                credentials.access_key_id()
            ),
            amz_date: stamp.amz_date,
        }
    }

    /// The signing key for these credentials and day: the cached one, or derived and cached.
    fn key_for(&self, credentials: &Arc<Credentials>, date: &str, time: SystemTime) -> Arc<[u8]> {
        let mut cached = self.key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref()
            && Arc::ptr_eq(&c.credentials, credentials)
            && c.date == date
        {
            return c.key.clone();
        }
        let derived = aws_sigv4::sign::v4::generate_signing_key(
            credentials.secret_access_key(),
            time,
            &self.region,
            SERVICE,
        );
        let key: Arc<[u8]> = Arc::from(derived.as_ref());
        *cached = Some(CachedKey {
            credentials: credentials.clone(),
            date: date.to_owned(),
            key: key.clone(),
        });
        key
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;

    use super::*;

    /// What aws-sigv4's general signer puts in `Authorization` for the same request.
    fn reference(creds: &Credentials, time: SystemTime, host: &str, body: &[u8]) -> String {
        let identity: Identity = creds.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-1")
            .name(SERVICE)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers = [
            ("host", host),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "Kinesis_20131202.PutRecords"),
        ];
        let request = SignableRequest::new(
            "POST",
            format!("https://{host}/"),
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .into_iter()
            .find(|h| h.name() == "authorization")
            .map(|h| h.value().to_owned())
            .unwrap()
    }

    #[test]
    fn signatures_match_aws_sigv4_with_and_without_a_session_token() {
        let body = br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k"}]}"#;
        let signer = Signer::new("eu-west-1");
        for token in [None, Some("FwoGZXIvYXdzE-token")] {
            let creds = Arc::new(Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI",
                token.map(str::to_owned),
                None,
                "test",
            ));
            // Two days, several times each: the cached key must follow the date.
            for secs in [1_764_806_400, 1_764_849_599, 1_764_892_800, 1_798_761_599] {
                let time = UNIX_EPOCH + Duration::from_secs(secs);
                let host = "127.0.0.1:4567";
                let ours = signer.sign(
                    &creds,
                    time,
                    host,
                    "application/x-amz-json-1.1",
                    "Kinesis_20131202.PutRecords",
                    &Sha256::digest(body),
                );
                assert_eq!(
                    ours.authorization,
                    reference(&creds, time, host, body),
                    "{secs}"
                );
            }
        }
    }

    #[test]
    fn dates_are_civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_426), (2025, 12, 4));
        let s = Stamp::at(UNIX_EPOCH + Duration::from_secs(1_798_761_599));
        assert_eq!(s.amz_date, "20261231T235959Z");
    }
}
