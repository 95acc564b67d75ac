//! CPU per Kinesis call: the lean publisher against the SDK one, nothing else in the process.
//!
//! Both publishers send the same PutRecord and PutRecords calls to a running fake-kinesis (another
//! process, so its CPU is not counted) at the same concurrency; this process's CPU time over a
//! fixed number of calls, divided by the calls, is the cost of a call on that path: body, signing,
//! HTTP and the answer's parsing. Runs alternate between the two publishers and each shape is
//! repeated; one JSON line per run goes to stdout. `bench/run.sh` runs it after the load tests.
//!
//! ```text
//! cargo run --release --example publisher_cpu -- --endpoint http://127.0.0.1:4599 --repeat 3 --cbor
//! (from the repository's root: it reads config/)
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use bytes::Bytes;
use kinesis_writer::config::{Settings, WireProtocol};
use kinesis_writer::domain::{PartitionKey, Record, StreamName};
use kinesis_writer::kinesis::{KinesisPublisher, LeanPublisher, SdkPublisher, load_sdk_config};

/// Calls in flight at once (scenario b's concurrency).
const CONCURRENCY: usize = 16;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat, counted
    // after the parenthesised command name).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14/15 are the 12th/13th after ")" (state is the 3rd field, the 1st after ")").
    (ticks(11) + ticks(12)) / 100.0
}

fn records(n: usize) -> Vec<Record> {
    // ~200 B of JSON, as in the HTTP benchmark's scenarios.
    let data = Bytes::from(format!(
        "{{\"webUrl\":\"https://example.com/news/{}\",\"title\":\"{}\"}}",
        "x".repeat(40),
        "t".repeat(120)
    ));
    (0..n)
        .map(|i| Record {
            data: data.clone(),
            partition_key: PartitionKey::parse(&format!("key-{i}"), None).expect("a valid key"),
            explicit_hash_key: None,
        })
        .collect()
}

async fn run(
    publisher: Arc<dyn KinesisPublisher>,
    stream: &StreamName,
    batch: usize,
    calls: usize,
) -> (f64, f64) {
    let records = Arc::new(records(batch));
    let per_task = calls / CONCURRENCY;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (p, s, r) = (publisher.clone(), stream.clone(), records.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                if batch == 1 {
                    p.put_record(&s, &r[0], None).await.expect("PutRecord");
                } else {
                    let out = p.put_records(&s, &r).await.expect("PutRecords");
                    assert_eq!(out.failed_record_count, 0);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a load task");
    }
    let done = (per_task * CONCURRENCY) as f64;
    (
        (cpu_seconds() - cpu0) / done * 1e6,
        done / t0.elapsed().as_secs_f64(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut endpoint = String::from("http://127.0.0.1:4599");
    let mut repeat = 3;
    // Also the lean publisher speaking CBOR (the fake must understand it).
    let mut cbor = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoint" => endpoint = args.next().unwrap_or(endpoint),
            "--repeat" => repeat = args.next().and_then(|r| r.parse().ok()).unwrap_or(repeat),
            "--cbor" => cbor = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    // The service's own AWS configuration (config/base.yaml's kinesis section through
    // load_sdk_config: one SDK attempt, its timeouts), pointed at the fake.
    let mut settings = Settings::load(Path::new("config"))?.kinesis;
    settings.endpoint_url = endpoint.clone();
    settings.region = "us-east-1".to_owned();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"));
    let config = load_sdk_config(&settings, loader).await?;
    let sdk: Arc<dyn KinesisPublisher> = Arc::new(SdkPublisher::new(&config));
    let lean = |protocol| LeanPublisher::new(&config, &[], protocol, SdkPublisher::new(&config));
    let mut publishers: Vec<(&str, Arc<dyn KinesisPublisher>)> = vec![
        ("sdk", sdk),
        ("lean", Arc::new(lean(WireProtocol::Json).await?)),
    ];
    if cbor {
        publishers.push(("lean-cbor", Arc::new(lean(WireProtocol::Cbor).await?)));
    }
    let stream = StreamName::parse("bench-stream")?;
    // (records per call, calls per run): a few seconds each on this machine.
    let shapes = [(1usize, 16_000usize), (100, 3_200)];
    for (batch, calls) in shapes {
        // Warm both pools and the allocator before measuring.
        for (_, p) in &publishers {
            run(p.clone(), &stream, batch, calls / 10).await;
        }
        for rep in 1..=repeat {
            for (name, p) in &publishers {
                let (cpu_us, calls_s) = run(p.clone(), &stream, batch, calls).await;
                println!(
                    "{{\"publisher\":\"{name}\",\"records_per_call\":{batch},\"rep\":{rep},\
                     \"cpu_us_per_call\":{cpu_us:.2},\"calls_s\":{calls_s:.0}}}"
                );
            }
        }
    }
    Ok(())
}
