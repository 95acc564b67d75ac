//! Group commit: the writer loop of the service's spool (src/spool/log.rs: one thread takes every
//! queued append, writes it, fsyncs once, answers all; CRC32C frames) against okaywal 0.3.1, a
//! write-ahead-log crate with its own multi-threaded group commit. C writers, each committing one
//! ~200 B record at a time and waiting for it (the shape of scenario a), for SECS seconds each.
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const SECS: u64 = 3;

fn record(i: u64) -> Vec<u8> {
    let mut r = format!("{{\"webUrl\":\"https://example.co.uk/{i}\",\"content\":\"").into_bytes();
    r.resize(200, b'x');
    r
}

/// Our writer: one thread takes every queued append, writes them, fsyncs once, answers all.
fn ours(dir: &std::path::Path, clients: usize) -> (u64, u64) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("seg.log"))
        .unwrap();
    let (tx, rx) = mpsc::channel::<(Vec<u8>, mpsc::Sender<()>)>();
    let fsyncs = Arc::new(AtomicU64::new(0));
    let f2 = fsyncs.clone();
    std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            for (frame, _) in &group {
                file.write_all(frame).unwrap();
            }
            file.sync_data().unwrap();
            f2.fetch_add(1, Ordering::Relaxed);
            for (_, reply) in group {
                let _ = reply.send(());
            }
        }
    });
    run(
        clients,
        move |i| {
            let payload = record(i);
            let mut frame = Vec::with_capacity(payload.len() + 8);
            frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            frame.extend_from_slice(&payload);
            let (rtx, rrx) = mpsc::channel();
            tx.send((frame, rtx)).unwrap();
            rrx.recv().unwrap();
        },
        fsyncs,
    )
}

fn okay(dir: &std::path::Path, clients: usize) -> (u64, u64) {
    let wal = okaywal::WriteAheadLog::recover(dir, okaywal::LogVoid).unwrap();
    let none = Arc::new(AtomicU64::new(0));
    run(
        clients,
        move |i| {
            let mut entry = wal.begin_entry().unwrap();
            entry.write_chunk(&record(i)).unwrap();
            entry.commit().unwrap();
        },
        none,
    )
}

fn run(
    clients: usize,
    append: impl Fn(u64) + Send + Sync + 'static,
    fsyncs: Arc<AtomicU64>,
) -> (u64, u64) {
    let append = Arc::new(append);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (append, stop, done) = (append.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = c as u64 * 1_000_000_000;
                while !stop.load(Ordering::Relaxed) {
                    append(i);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(SECS));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    (
        (done.load(Ordering::Relaxed) as f64 / secs) as u64,
        (fsyncs.load(Ordering::Relaxed) as f64 / secs) as u64,
    )
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/walbench-data".into());
    println!("| writers | ours records/s | ours fsyncs/s | records/fsync | okaywal records/s |");
    println!("|---|---|---|---|---|");
    for clients in [1, 16, 64] {
        let d1 = std::path::Path::new(&base).join(format!("ours-{clients}"));
        let d2 = std::path::Path::new(&base).join(format!("okay-{clients}"));
        let _ = std::fs::remove_dir_all(&d1);
        let _ = std::fs::remove_dir_all(&d2);
        std::fs::create_dir_all(&d1).unwrap();
        std::fs::create_dir_all(&d2).unwrap();
        let (r, f) = ours(&d1, clients);
        let (o, _) = okay(&d2, clients);
        println!(
            "| {clients} | {r} | {f} | {:.1} | {o} |",
            r as f64 / f.max(1) as f64
        );
    }
}
