//! Where the lean publisher sends a stream's calls: the SDK's own endpoint rules (region, FIPS,
//! dual-stack, the endpoint override, a stream's ARN), resolved once per stream at start-up, with
//! the signer and the wire protocol that go with the endpoint.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_kinesis::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_types::service_config::ServiceConfigKey;

use super::protocol::Negotiated;
use super::sigv4::Signer;
use crate::config::WireProtocol;

/// Where requests for a stream go and how they are signed.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) uri: http::Uri,
    /// The `host` header, as signed: the URI's authority.
    pub(super) host: String,
    pub(super) signer: Signer,
    /// JSON (`awsJson1_1`, what the SDK speaks) or CBOR (what the Java SDK and the KPL speak to
    /// Kinesis: record data as raw bytes instead of base64, a quarter fewer bytes to hash and
    /// send), as configured or as found out (`protocol`).
    pub(super) protocol: Negotiated,
}

#[derive(Debug)]
pub(super) struct Target {
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) arn: Option<String>,
}

impl Endpoint {
    /// The SDK's endpoint rules for a data-plane call in `region`, for a stream named by `arn`
    /// or by name.
    pub(super) async fn resolve(
        config: &SdkConfig,
        region: &str,
        arn: Option<&str>,
        protocol: WireProtocol,
    ) -> anyhow::Result<Self> {
        let params = Params::builder()
            .region(region)
            .use_fips(config.use_fips().unwrap_or(false))
            .use_dual_stack(config.use_dual_stack().unwrap_or(false))
            .set_endpoint(endpoint_url(config))
            .set_stream_arn(arn.map(str::to_owned))
            .set_operation_type(arn.map(|_| "data".to_owned()))
            .build()?;
        let resolved = DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| anyhow::anyhow!("Kinesis endpoint for region {region}: {e}"))?;
        let uri: http::Uri = resolved.url().parse()?;
        let host = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("endpoint {uri} has no host"))?
            .to_string();
        Ok(Self {
            uri,
            host,
            signer: Signer::new(region),
            protocol: Negotiated::new(protocol),
        })
    }
}

/// The endpoint override the SDK client would use: the loader's `endpoint_url` when set in code,
/// else `AWS_ENDPOINT_URL_KINESIS` / the profile's `kinesis.endpoint_url`, else `AWS_ENDPOINT_URL`
/// (the order of `aws_sdk_kinesis::config::Builder::from(&SdkConfig)`).
pub(in crate::kinesis) fn endpoint_url(config: &SdkConfig) -> Option<String> {
    if config.get_origin("endpoint_url").is_client_config() {
        return config.endpoint_url().map(str::to_owned);
    }
    let key = ServiceConfigKey::builder()
        .service_id("Kinesis")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field is set");
    config
        .service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| config.endpoint_url().map(str::to_owned))
}
