//! One stream's segment log on disk: the writer thread that appends frames and shares one fsync
//! among everything queued (group commit), the recovery scan at start, the reader the shipper
//! uses, and the progress files that say how much of a segment Kinesis has accepted.
//!
//! Layout under the stream's directory: `<seq>.log` segments (16 hex digits, in append order)
//! and, beside a segment being shipped, `<seq>.done`: the offset up to which its records are
//! delivered or dead-lettered, replaced atomically (write, fsync, rename, fsync the directory).
//! A restarted writer never appends to an old segment: it starts the next one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use super::frame::{self, Next, SpooledRecord};

/// Where the writer stands: the segment it appends to and how many of its bytes are fsync'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) seg: u64,
    pub(crate) end: u64,
}

/// A group of frames from one request, and where to say they are durable.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) frames: Vec<u8>,
    pub(crate) records: usize,
    pub(crate) reply: oneshot::Sender<Result<(), String>>,
}

/// What recovery (or a read-only scan) found in a stream's directory.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Bytes and records not yet delivered (intact frames after each segment's progress).
    pub(crate) bytes: u64,
    pub(crate) records: u64,
    /// Bytes moved aside to `<spool>/corrupt/` (a scan: damaged bytes found, left in place).
    pub(crate) corrupt_bytes: u64,
    /// When the oldest unshipped record was accepted (Unix milliseconds).
    pub(crate) oldest_ms: Option<u64>,
    pub(crate) segments: usize,
    /// The segment the writer starts: one past the last found.
    pub(crate) next_seq: u64,
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.log"))
}

fn progress_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.done"))
}

/// The segments in `dir`, oldest first.
pub(crate) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".log")
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// How far segment `seq` is shipped (0 when no progress was saved).
pub(crate) fn progress(dir: &Path, seq: u64) -> u64 {
    fs::read(progress_path(dir, seq))
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Records durably that segment `seq` is shipped up to `offset`: a restart resends at most what
/// came after it.
pub(crate) fn save_progress(dir: &Path, seq: u64, offset: u64) -> io::Result<()> {
    let tmp = dir.join(format!("{seq:016x}.done.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&offset.to_le_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, progress_path(dir, seq))?;
    sync_dir(dir)
}

/// Deletes a segment that is wholly shipped, and its progress file.
pub(crate) fn remove_segment(dir: &Path, seq: u64) -> io::Result<()> {
    fs::remove_file(segment_path(dir, seq))?;
    let _ = fs::remove_file(progress_path(dir, seq));
    sync_dir(dir)
}

/// A rename or a new file is durable only once its directory is.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copies bytes `from..to` of segment `seq` to `corrupt_dir` (named after the stream, segment
/// and offset) and fsyncs the copy; how many bytes were set aside.
pub(crate) fn set_aside(
    dir: &Path,
    seq: u64,
    from: u64,
    to: Option<u64>,
    corrupt_dir: &Path,
    stream: &str,
) -> io::Result<u64> {
    fs::create_dir_all(corrupt_dir)?;
    let mut src = File::open(segment_path(dir, seq))?;
    let end = to.unwrap_or(src.metadata()?.len());
    src.seek(SeekFrom::Start(from))?;
    let name = format!("{stream}-{seq:016x}-{from}.bin");
    let mut dst = File::create(corrupt_dir.join(name))?;
    let copied = io::copy(&mut io::Read::take(src, end.saturating_sub(from)), &mut dst)?;
    dst.sync_all()?;
    sync_dir(corrupt_dir)?;
    Ok(copied)
}

/// Scans every segment from its progress on, streaming (one frame in memory at a time): counts
/// what is left to ship, moves a damaged tail aside and truncates the segment before it, deletes
/// segments already shipped. Never fails over damaged data; only over I/O errors.
pub(crate) fn recover(dir: &Path, corrupt_dir: &Path, stream: &str) -> io::Result<Recovered> {
    fs::create_dir_all(dir)?;
    scan(dir, Some(corrupt_dir), stream)
}

/// [`recover`] when `corrupt_dir` is given; else a read-only scan (`kinesis-writer spool status`)
/// that changes nothing on disk.
pub(crate) fn scan(dir: &Path, corrupt_dir: Option<&Path>, stream: &str) -> io::Result<Recovered> {
    let mut out = Recovered::default();
    let segs = segments(dir)?;
    out.next_seq = segs.last().map_or(0, |s| s + 1);
    out.segments = segs.len();
    for seq in segs {
        let path = segment_path(dir, seq);
        let len = fs::metadata(&path)?.len();
        let start = progress(dir, seq).min(len);
        let mut reader = BufReader::new(File::open(&path)?);
        reader.seek(SeekFrom::Start(start))?;
        let mut pos = start;
        loop {
            match frame::read(&mut reader, u64::MAX)? {
                Next::Frame(record, size) => {
                    pos += size;
                    out.bytes += size;
                    out.records += 1;
                    out.oldest_ms = out.oldest_ms.or(Some(record.accepted_ms));
                }
                Next::End => break,
                Next::Damaged => {
                    let Some(corrupt_dir) = corrupt_dir else {
                        out.corrupt_bytes += fs::metadata(&path)?.len() - pos;
                        break;
                    };
                    let moved = set_aside(dir, seq, pos, None, corrupt_dir, stream)?;
                    out.corrupt_bytes += moved;
                    tracing::error!(
                        stream,
                        segment = %path.display(),
                        offset = pos,
                        bytes = moved,
                        "Spool segment damaged (torn write or disk error): the intact records \
                         before it will be shipped; the damaged bytes are set aside in {}",
                        corrupt_dir.display()
                    );
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(pos)?;
                    f.sync_all()?;
                    break;
                }
            }
        }
        if corrupt_dir.is_some() && pos == start && start >= fs::metadata(&path)?.len() {
            // Nothing left in it: shipped before the restart.
            remove_segment(dir, seq)?;
        }
    }
    Ok(out)
}

/// What the writer thread reports, per fsync.
pub(crate) trait GroupObserver: Send + 'static {
    fn committed(&self, records: usize, bytes: u64, took: std::time::Duration);
}

/// Starts the writer thread of the log in `dir`, appending to a new segment `first_seq`, rotating
/// after `segment_bytes`. It takes everything queued, writes it, fsyncs once and answers every
/// waiter, then publishes the new end on the returned watch. It ends when every sender is gone.
pub(crate) fn spawn_writer(
    dir: PathBuf,
    first_seq: u64,
    segment_bytes: u64,
    observer: impl GroupObserver,
) -> io::Result<(mpsc::Sender<Append>, watch::Receiver<Position>)> {
    let mut seq = first_seq;
    let mut file = create_segment(&dir, seq)?;
    let (tx, rx) = mpsc::channel::<Append>();
    let (pos_tx, pos_rx) = watch::channel(Position { seg: seq, end: 0 });
    let name = format!("spool-writer-{}", dir.display());
    std::thread::Builder::new().name(name).spawn(move || {
        let mut len = 0u64;
        // After a failed write or fsync the file's tail is unknown: refuse every later append
        // (the caller gets a 503) rather than acknowledge on top of it.
        let mut broken: Option<String> = None;
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            if let Some(why) = &broken {
                for a in group {
                    let _ = a.reply.send(Err(why.clone()));
                }
                continue;
            }
            let started = Instant::now();
            let bytes: u64 = group.iter().map(|a| a.frames.len() as u64).sum();
            let result = (|| -> io::Result<()> {
                if len > 0 && len + bytes > segment_bytes {
                    seq += 1;
                    file = create_segment(&dir, seq)?;
                    len = 0;
                }
                for a in &group {
                    file.write_all(&a.frames)?;
                }
                file.sync_data()
            })();
            match result {
                Ok(()) => {
                    len += bytes;
                    let records = group.iter().map(|a| a.records).sum();
                    observer.committed(records, bytes, started.elapsed());
                    // Published before the answers: a shipper woken by it may already send.
                    let _ = pos_tx.send(Position { seg: seq, end: len });
                    for a in group {
                        let _ = a.reply.send(Ok(()));
                    }
                }
                Err(e) => {
                    // Best effort: cut what this group may have written, so that no frame of a
                    // write answered 503 is shipped after a restart.
                    let _ = file.set_len(len).and_then(|()| file.sync_data());
                    let why = format!("the spool could not write {}: {e}", dir.display());
                    tracing::error!(error = %e, dir = %dir.display(), "Spool write or fsync failed; refusing spooled writes");
                    for a in group {
                        let _ = a.reply.send(Err(why.clone()));
                    }
                    broken = Some(why);
                }
            }
        }
    })?;
    Ok((tx, pos_rx))
}

fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, seq))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Reads one segment in order for the shipper, from a position on, one batch at a time.
#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) seq: u64,
    /// The offset of the next frame not yet handed out.
    pub(crate) pos: u64,
    /// The offset the file is read at (past `ahead`, when there is one).
    file_pos: u64,
    file: BufReader<File>,
    /// A frame read but not handed out (it did not fit the last batch).
    ahead: Option<(SpooledRecord, u64)>,
}

/// A batch read: its records (with their frame sizes), and whether damage ended it.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) records: Vec<(SpooledRecord, u64)>,
    pub(crate) damaged: bool,
}

impl Reader {
    pub(crate) fn open(dir: &Path, seq: u64) -> io::Result<Self> {
        let pos = progress(dir, seq);
        let mut file = BufReader::new(File::open(segment_path(dir, seq))?);
        file.seek(SeekFrom::Start(pos))?;
        Ok(Self {
            seq,
            pos,
            file_pos: pos,
            file,
            ahead: None,
        })
    }

    /// The next records up to `end` (the committed end of the segment, `u64::MAX` once sealed):
    /// at most `max_records`, and at most `max_bytes` of Kinesis-counted size (one record at
    /// least).
    pub(crate) fn next_batch(
        &mut self,
        end: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> io::Result<Batch> {
        let mut batch = Batch::default();
        let mut size = 0;
        loop {
            if batch.records.len() >= max_records {
                break;
            }
            let next = match self.ahead.take() {
                Some(n) => n,
                None => match frame::read(&mut self.file, end.saturating_sub(self.file_pos))? {
                    Next::Frame(r, s) => {
                        self.file_pos += s;
                        (r, s)
                    }
                    Next::End => {
                        // A header past `end` may have been read: read it again next time.
                        self.file.seek(SeekFrom::Start(self.file_pos))?;
                        break;
                    }
                    Next::Damaged => {
                        batch.damaged = true;
                        break;
                    }
                },
            };
            let counted = next.0.data.len() + next.0.partition_key.len();
            if !batch.records.is_empty() && size + counted > max_bytes {
                self.ahead = Some(next);
                break;
            }
            size += counted;
            batch.records.push(next);
        }
        Ok(batch)
    }

    /// Moves past the batch just shipped.
    pub(crate) fn advance(&mut self, bytes: u64) {
        self.pos += bytes;
    }

    /// Jumps to `offset` (past damaged bytes that were set aside).
    pub(crate) fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        self.ahead = None;
        self.pos = offset;
        self.file_pos = offset;
        self.file.seek(SeekFrom::Start(offset))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;

    #[derive(Clone, Default)]
    struct Count(Arc<AtomicUsize>, Arc<AtomicUsize>);

    impl GroupObserver for Count {
        fn committed(&self, records: usize, _: u64, _: std::time::Duration) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.fetch_add(records, Ordering::SeqCst);
        }
    }

    fn record(i: usize) -> SpooledRecord {
        SpooledRecord {
            id: uuid::Uuid::new_v4(),
            accepted_ms: 1,
            stream: "s".into(),
            partition_key: format!("k{i}"),
            explicit_hash_key: None,
            data: Bytes::from(format!("record {i}")),
        }
    }

    fn frames(rs: &[SpooledRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rs {
            frame::encode(r, &mut out);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_fsyncs_and_read_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let corrupt = tmp.path().join("corrupt");
        let rec = recover(&dir, &corrupt, "s").unwrap();
        let count = Count::default();
        let (tx, pos) = spawn_writer(dir.clone(), rec.next_seq, 1 << 20, count.clone()).unwrap();
        let records: Vec<SpooledRecord> = (0..200).map(record).collect();
        let waits: Vec<_> = records
            .iter()
            .map(|r| {
                let (reply, rx) = oneshot::channel();
                let append = Append {
                    frames: frames(std::slice::from_ref(r)),
                    records: 1,
                    reply,
                };
                tx.send(append).unwrap();
                rx
            })
            .collect();
        for w in waits {
            w.await.unwrap().unwrap();
        }
        let fsyncs = count.0.load(Ordering::SeqCst);
        assert_eq!(count.1.load(Ordering::SeqCst), 200);
        assert!(fsyncs < 200, "200 queued appends shared fsyncs: {fsyncs}");

        let end = pos.borrow().end;
        let mut reader = Reader::open(&dir, 0).unwrap();
        let batch = reader.next_batch(end, 500, usize::MAX).unwrap();
        let got: Vec<_> = batch.records.into_iter().map(|(r, _)| r).collect();
        assert_eq!(got, records);
    }

    #[test]
    fn recovery_ships_the_intact_part_sets_the_rest_aside_and_resumes_from_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let corrupt = tmp.path().join("corrupt");
        fs::create_dir_all(&dir).unwrap();
        let records: Vec<SpooledRecord> = (0..5).map(record).collect();
        let mut bytes = frames(&records);
        let first = frames(&records[..1]).len() as u64;
        bytes.extend_from_slice(b"garbage after the last frame");
        fs::write(segment_path(&dir, 3), &bytes).unwrap();
        save_progress(&dir, 3, first).unwrap();
        // A second, wholly shipped segment is deleted.
        fs::write(segment_path(&dir, 4), frames(&records[..1])).unwrap();
        save_progress(&dir, 4, first).unwrap();

        let rec = recover(&dir, &corrupt, "s").unwrap();
        assert_eq!((rec.records, rec.corrupt_bytes, rec.next_seq), (4, 28, 5));
        assert_eq!(segments(&dir).unwrap(), [3]);
        let aside: Vec<_> = fs::read_dir(&corrupt).unwrap().collect();
        assert_eq!(aside.len(), 1);

        let mut reader = Reader::open(&dir, 3).unwrap();
        let batch = reader.next_batch(u64::MAX, 2, usize::MAX).unwrap();
        let got: Vec<_> = batch.records.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(got, records[1..3]);
        reader.advance(batch.records.iter().map(|(_, s)| s).sum());
        let batch = reader.next_batch(u64::MAX, 10, usize::MAX).unwrap();
        assert_eq!(batch.records.len(), 2);
        assert!(!batch.damaged);
    }
}
