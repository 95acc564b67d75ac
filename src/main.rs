//! The `kinesis-writer` binary: parse the command line, load settings, run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aws_config::BehaviorVersion;
use kinesis_writer::config::Settings;
use kinesis_writer::startup::{Application, shutdown_signal};
use kinesis_writer::{dev, kinesis, telemetry};

/// jemalloc instead of the system allocator: the hot path allocates many small, short-lived
/// buffers on two threads at once, where glibc malloc took ~14% of the CPU in a profile and
/// jemalloc ~3% (BENCHMARKS.md, "The allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const HELP: &str = "\
kinesis-writer: an HTTP service that puts records into AWS Kinesis Data Streams

USAGE:
    kinesis-writer                 run the HTTP server
    kinesis-writer create-streams  create the streams listed under dev.create_streams (emulators)
    kinesis-writer openapi         print the OpenAPI document (YAML) and exit
    kinesis-writer spool status DIR   what the spool in DIR holds (read-only)
    kinesis-writer spool drain DIR    ship the spool in DIR (one left behind), then exit
    kinesis-writer --help | --version

CONFIGURATION:
    config/base.yaml, then config/$APP_ENVIRONMENT.yaml (local by default), then environment
    variables APP_<SECTION>__<KEY> (e.g. APP_SERVER__PORT=9000). APP_CONFIG_DIR moves config/.
    AWS: the standard chain (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, roles, ...) and
    AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL for an emulator.
";

/// A failure to start is one line on stderr (the error and its causes, `{:#}`), not a debug dump
/// with a backtrace: a configuration mistake should read as a sentence.
#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinesis-writer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        Some("--help" | "-h" | "help") => {
            print!("{HELP}");
            return Ok(());
        }
        Some("--version" | "-V") => {
            println!("kinesis-writer {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Some("openapi") => {
            print!("{}", kinesis_writer::routes::openapi().to_yaml()?);
            return Ok(());
        }
        // Read-only and local: no configuration or AWS needed.
        Some("spool") if std::env::args().nth(2).as_deref() == Some("status") => {
            let Some(dir) = std::env::args().nth(3) else {
                anyhow::bail!("usage: kinesis-writer spool status DIR");
            };
            print!(
                "{}",
                kinesis_writer::spool::status(std::path::Path::new(&dir))?
            );
            return Ok(());
        }
        None | Some("create-streams" | "spool") => {}
        Some(other) => anyhow::bail!("unknown argument {other:?}; see kinesis-writer --help"),
    }

    let config_dir =
        std::env::var_os("APP_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
    let settings = Settings::load(&config_dir)?;
    // Held to the end: dropping it flushes the log lines still queued (src/telemetry.rs).
    let _log = telemetry::init(&settings.telemetry);

    if command.as_deref() == Some("spool") {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["status", dir] => {
                print!(
                    "{}",
                    kinesis_writer::spool::status(std::path::Path::new(dir))?
                );
                Ok(())
            }
            ["drain", dir] => {
                kinesis_writer::startup::drain_spool(
                    settings,
                    std::path::Path::new(dir),
                    shutdown_signal(),
                )
                .await
            }
            _ => anyhow::bail!("usage: kinesis-writer spool status DIR | spool drain DIR"),
        };
    }

    if command.as_deref() == Some("create-streams") {
        let loader = aws_config::defaults(BehaviorVersion::latest());
        let sdk_config = kinesis::load_sdk_config(&settings.kinesis, loader).await?;
        let client = kinesis::build_sdk_client(&sdk_config);
        return dev::create_streams(&client, &settings.dev.create_streams).await;
    }

    let app = Application::build(settings)
        .await
        .context("Failed to start")?;
    app.run_until_stopped(shutdown_signal()).await
}
