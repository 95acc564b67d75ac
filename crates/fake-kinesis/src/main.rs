//! `fake-kinesis`: the fake as a standalone server, for the benchmark and manual runs.
//!
//! ```text
//! fake-kinesis [--host 127.0.0.1] [--port 4569] [--count-only] [--list-shards]
//! ```
//! It accepts everything (the default plan). `GET /_stats` gives the counters, `POST /_reset`
//! zeroes them. Stops on SIGINT or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use fake_kinesis::{FakeKinesis, Options};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: fake-kinesis [--host ADDR] [--port N] [--count-only] [--list-shards]
  --host ADDR    address to bind (default 127.0.0.1)
  --port N       port to bind; 0 picks a free one (default 4569)
  --count-only   keep counters only, not the records (for benchmarks)
  --list-shards  answer ListShards with one shard (for aggregation)";

fn parse_args() -> Result<Options, String> {
    let mut host: IpAddr = [127, 0, 0, 1].into();
    let mut port: u16 = 4569;
    let mut count_only = false;
    let mut list_shards = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" => {
                let v = args.next().ok_or("--host needs a value")?;
                host = v.parse().map_err(|e| format!("--host {v}: {e}"))?;
            }
            "--port" => {
                let v = args.next().ok_or("--port needs a value")?;
                port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--count-only" => count_only = true,
            "--list-shards" => list_shards = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        addr: Some(SocketAddr::new(host, port)),
        count_only,
        list_shards,
        list_shards_disagrees: false,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("fake-kinesis: {msg}");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let count_only = options.count_only;
    let fake = match FakeKinesis::start_with(options).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-kinesis: cannot bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts read the port from this line when they pass --port 0.
    println!(
        "fake-kinesis listening on {} (count_only={count_only})",
        fake.endpoint()
    );
    shutdown_signal().await;
    fake.stop();
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
