//! Development helpers: creating the local streams of `dev.create_streams` in an emulator.
//!
//! Used by `make run` and docker-compose through `kinesis-writer create-streams`; the server never
//! creates streams.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_kinesis::types::StreamStatus;

use crate::config::DevStream;

/// Creates each stream (an existing one is fine) and waits until all are ACTIVE.
pub async fn create_streams(
    client: &aws_sdk_kinesis::Client,
    streams: &[DevStream],
) -> anyhow::Result<()> {
    for s in streams {
        match client
            .create_stream()
            .stream_name(&s.name)
            .shard_count(s.shards)
            .send()
            .await
        {
            Ok(_) => tracing::info!(stream = %s.name, shards = s.shards, "Created stream"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                tracing::info!(stream = %s.name, "Stream exists already");
            }
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to create stream {}", s.name));
            }
        }
    }
    for s in streams {
        wait_active(client, &s.name, Duration::from_secs(30)).await?;
    }
    Ok(())
}

/// Polls DescribeStreamSummary until the stream is ACTIVE.
pub async fn wait_active(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let status = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .ok()
            .and_then(|o| o.stream_description_summary.map(|d| d.stream_status));
        if status == Some(StreamStatus::Active) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("stream {name} not ACTIVE after {timeout:?} (last status {status:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
