//! Logging: human-readable lines locally, one JSON object per line in production.
//!
//! Lines are written by a thread of their own (tracing-appender's `non_blocking`): a request
//! formats its line into a bounded queue and goes on, and never waits on stderr (a slow terminal,
//! a full pipe to a log shipper). When the queue is full the line is dropped and counted
//! (`log_lines_dropped_total`, through [`dropped_lines`]) rather than the request blocked: a
//! service that stalls because its log reader stalls fails its callers for the sake of its logs.
//! The queue is flushed when the [`LogGuard`] that `init` returns is dropped, at a clean exit.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

/// Lines the queue holds before new ones are dropped: at ~300 bytes a line, a few MiB, and
/// seconds of the heaviest request rate a core serves.
const QUEUED_LINES: usize = 16_384;

/// The writer thread's buffer in front of stderr. The thread writes every line it finds queued and
/// then flushes (tracing-appender's worker flushes once the queue is empty), so under load many
/// lines leave in one `write(2)` instead of one each; when idle a line is flushed as soon as it
/// is written. Lines longer than this bypass the buffer.
const WRITE_BUFFER: usize = 64 * 1024;

/// The writer's count of dropped lines, once `init` has installed it.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the log writer thread running; dropping it flushes what is queued (hold it until exit).
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

/// Log lines dropped because the writer's queue was full, since start.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// aws-config logs every failed credential look-up at WARN, several lines each time, and the
/// readiness probe looks up credentials every few seconds. The probe reports the cause itself,
/// once (`state::Readiness`), so these stay quiet unless a filter names `aws_config` itself.
const QUIET_CREDENTIAL_CHAIN: &str = "aws_config::meta::credentials::chain=error";

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `telemetry.filter`. Safe to call
/// more than once (later calls install nothing and answer `None`), which tests rely on.
pub fn init(settings: &TelemetrySettings) -> Option<LogGuard> {
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
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            std::io::stderr(),
        ));
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match settings.format {
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
    installed.ok()?;
    let _ = DROPPED.set(dropped);
    Some(LogGuard(guard))
}
