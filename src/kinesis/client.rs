//! Building the one SDK client: the standard aws-config chain plus our overrides and timeouts.

use anyhow::bail;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{ConfigLoader, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};

use crate::config::KinesisSettings;

/// Loads AWS configuration from `loader` (normally `aws_config::defaults(..)`; tests pass one with
/// static credentials) and applies `settings`. A missing region is a start-up error, not a failure
/// on the first request.
pub async fn load_sdk_config(
    settings: &KinesisSettings,
    mut loader: ConfigLoader,
) -> anyhow::Result<SdkConfig> {
    loader = loader
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout())
                .operation_attempt_timeout(settings.attempt_timeout())
                .operation_timeout(settings.operation_timeout())
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        // Stalled-stream protection watches streaming bodies for throughput falling below a floor.
        // Ours are small, fully buffered JSON both ways and every attempt is already bounded by
        // attempt_timeout_ms; the protection has raised spurious "throughput of 0 B/s" failures
        // (awslabs/aws-sdk-rust#1146, #1166, #1202). Its CPU cost measured within noise
        // (BENCHMARKS.md), so this is for robustness, not speed.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if !settings.region.is_empty() {
        loader = loader.region(Region::new(settings.region.clone()));
    }
    if !settings.endpoint_url.is_empty() {
        loader = loader.endpoint_url(&settings.endpoint_url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        bail!(
            "No AWS region configured. Set AWS_REGION (or a region in your AWS profile), or \
             kinesis.region in config / APP_KINESIS__REGION."
        );
    }
    Ok(config)
}

/// The client every request shares: it owns the connection pool, so it is built once.
pub fn build_sdk_client(config: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(config)
}
