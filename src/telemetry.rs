//! Logging: human-readable lines locally, one JSON object per line in production.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `telemetry.filter`. Safe to call
/// more than once (later calls are ignored), which tests rely on.
pub fn init(settings: &TelemetrySettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
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
