//! Logging: human-readable lines locally, one JSON object per line in production.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

/// aws-config logs every failed credential look-up at WARN, several lines each time, and the
/// readiness probe looks up credentials every few seconds. The probe reports the cause itself,
/// once (`state::Readiness`), so these stay quiet unless a filter names `aws_config` itself.
const QUIET_CREDENTIAL_CHAIN: &str = "aws_config::meta::credentials::chain=error";

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `telemetry.filter`. Safe to call
/// more than once (later calls are ignored), which tests rely on.
pub fn init(settings: &TelemetrySettings) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| settings.filter.clone());
    let directives = if directives.contains("aws_config") {
        directives
    } else {
        format!("{directives},{QUIET_CREDENTIAL_CHAIN}")
    };
    let filter = EnvFilter::new(directives);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        // Colour only on a terminal, so a redirected log stays plain text.
        LogFormat::Pretty => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // The current span once (`span`), not again as a list.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
