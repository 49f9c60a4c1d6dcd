//! The write-ahead log: every accepted export is on local disk before it is
//! acknowledged.
//!
//! ```text
//! append() ──> channel ──> WAL thread: encode records of a group ──> write ──> fsync
//!                                                                              │
//!            ack <── reply to each waiter <── apply batches to the buffer, in order
//! ```
//!
//! - **Group commit.** One thread owns the open segment. It takes every
//!   append waiting in the channel, writes them together and pays for one
//!   fsync, so many concurrent exports share one disk flush.
//! - **Ordered apply.** After the fsync the thread hands the group's batches
//!   to the buffer in sequence order, before anyone is acknowledged. Each
//!   tenant's buffer therefore always holds a contiguous run of its
//!   records, so "flushed through sequence N" is a sound watermark.
//! - **Release.** Segments are sealed at every flush and deleted once every
//!   record in them is in a span file published in the catalog.
//! - **Replay.** On start every intact record above its tenant's watermark
//!   is applied again; a torn or corrupt tail is reported and skipped.
//!
//! A failed write (disk full) is cut back off the segment and reported to
//! the waiters, who refuse their exports with a retryable error.

mod segment;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use bytes::BytesMut;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub use segment::{Record, SegmentContents, SegmentError, read_segment};

use crate::export::ExportBody;
use crate::metrics::StorageMetrics;
use crate::paths::TenantId;

/// Whether appends wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalSync {
    /// fsync before acknowledging: survives power loss.
    #[default]
    Fsync,
    /// Leave it to the OS: survives a process crash, not a machine crash.
    None,
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub sync: WalSync,
    /// A segment is sealed once it is this large (and at every flush).
    pub max_segment_bytes: u64,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), sync: WalSync::Fsync, max_segment_bytes: 64 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Error)]
pub enum WalError {
    #[error("writing the WAL failed: {0}")]
    Io(String),
    #[error("the WAL is closed")]
    Closed,
}

impl From<std::io::Error> for WalError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// A record made durable, handed to the buffer.
#[derive(Debug)]
pub struct Durable {
    pub seq: u64,
    pub tenant: TenantId,
    pub batch: RecordBatch,
}

/// Receives each durable group, in sequence order.
pub type OnDurable = Box<dyn FnMut(Vec<Durable>) + Send>;

enum Command {
    Append { tenant: TenantId, body: ExportBody, batch: RecordBatch, done: oneshot::Sender<Result<u64, WalError>> },
    Seal { done: oneshot::Sender<()> },
    Stop { done: oneshot::Sender<()> },
}

/// Records of a segment: the highest sequence per tenant.
#[derive(Debug, Default, Clone)]
struct SegmentInfo {
    path: PathBuf,
    tenants: HashMap<TenantId, u64>,
    sealed: bool,
}

/// What replay found.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: usize,
    pub damaged_segments: usize,
    pub damaged_bytes: usize,
}

/// Handle to the WAL thread.
#[derive(Debug)]
pub struct Wal {
    commands: mpsc::Sender<Command>,
    segments: Arc<Mutex<BTreeMap<u64, SegmentInfo>>>,
    writer_id: String,
}

const WRITER_ID_FILE: &str = "writer-id";
const SEGMENT_SUFFIX: &str = ".wal";

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SEGMENT_SUFFIX}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the WAL in `config.dir`, passing every intact record to
    /// `replay` in order, then starts the WAL thread. New records are
    /// numbered above both the records found and `flushed_through`, the
    /// highest sequence the catalog holds as flushed for this WAL: once
    /// every segment was flushed and deleted, only the catalog remembers it.
    pub fn open(
        config: WalConfig,
        metrics: Arc<StorageMetrics>,
        flushed_through: u64,
        mut replay: impl FnMut(Record),
        on_durable: OnDurable,
    ) -> Result<(Self, ReplayReport), WalError> {
        let writer_id = writer_id(&config.dir)?;
        let mut report = ReplayReport::default();
        let mut segments = BTreeMap::new();
        let mut next_seq = flushed_through + 1;
        let mut paths: Vec<(u64, PathBuf)> = fs::read_dir(&config.dir)?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let id = path.file_name()?.to_str()?.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()?;
                Some((id, path))
            })
            .collect();
        paths.sort();
        for (id, path) in paths {
            report.segments += 1;
            let data = fs::read(&path)?;
            let contents = match read_segment(&data) {
                Ok(contents) => contents,
                Err(error) => {
                    // Set aside, not deleted: it may be worth a look, and it
                    // must not be reported again at every start.
                    warn!(path = %path.display(), %error, "unreadable WAL segment set aside");
                    fs::rename(&path, path.with_extension("corrupt"))?;
                    report.damaged_segments += 1;
                    report.damaged_bytes += data.len();
                    metrics.wal_damaged_bytes.inc_by(data.len() as u64);
                    continue;
                }
            };
            if let Some(damage) = &contents.damage {
                warn!(
                    path = %path.display(),
                    valid_bytes = contents.valid_len,
                    skipped_bytes = contents.damaged_bytes,
                    damage,
                    "WAL segment has a torn or corrupt tail: replaying the intact records before it"
                );
                report.damaged_segments += 1;
                report.damaged_bytes += contents.damaged_bytes;
                metrics.wal_damaged_bytes.inc_by(contents.damaged_bytes as u64);
            }
            let mut info = SegmentInfo { path, tenants: HashMap::new(), sealed: true };
            for record in contents.records {
                next_seq = next_seq.max(record.seq + 1);
                let max = info.tenants.entry(record.tenant.clone()).or_insert(0);
                *max = (*max).max(record.seq);
                report.records += 1;
                replay(record);
            }
            segments.insert(id, info);
        }
        info!(
            segments = report.segments,
            records = report.records,
            damaged_segments = report.damaged_segments,
            "replayed the WAL"
        );
        metrics.wal_segments.set(segments.len() as i64);

        let segments = Arc::new(Mutex::new(segments));
        let (commands, receiver) = mpsc::channel(4096);
        let writer = Writer { config, metrics, segments: Arc::clone(&segments), open: None, next_seq, on_durable };
        std::thread::Builder::new().name("spanlake-wal".into()).spawn(move || writer.run(receiver))?;
        Ok((Self { commands, segments, writer_id }, report))
    }

    /// Identifies this WAL in the catalog's watermarks; kept across restarts.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// Logs an export durably and applies its batch; returns its sequence.
    pub async fn append(&self, tenant: TenantId, body: ExportBody, batch: RecordBatch) -> Result<u64, WalError> {
        let (done, result) = oneshot::channel();
        self.commands.send(Command::Append { tenant, body, batch, done }).await.map_err(|_| WalError::Closed)?;
        result.await.map_err(|_| WalError::Closed)?
    }

    /// Seals the open segment, so that it can be released once flushed.
    pub async fn seal(&self) {
        let (done, sealed) = oneshot::channel();
        if self.commands.send(Command::Seal { done }).await.is_ok() {
            let _ = sealed.await;
        }
    }

    /// Deletes sealed segments whose every record is at or below its
    /// tenant's flushed watermark.
    pub fn release(&self, flushed: &HashMap<TenantId, u64>) -> Result<usize, WalError> {
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        let done: Vec<u64> = segments
            .iter()
            .filter(|(_, s)| s.sealed && s.tenants.iter().all(|(t, max)| flushed.get(t).is_some_and(|f| f >= max)))
            .map(|(id, _)| *id)
            .collect();
        for id in &done {
            let segment = segments.remove(id).expect("listed");
            fs::remove_file(&segment.path)?;
        }
        Ok(done.len())
    }

    /// Stops the WAL thread once it has written what it was given before;
    /// later appends fail with [`WalError::Closed`].
    pub async fn close(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop { done }).await.is_ok() {
            let _ = stopped.await;
        }
    }
}

/// The id of the WAL in `dir`, made and kept on first use.
pub(crate) fn writer_id(dir: &Path) -> Result<String, WalError> {
    fs::create_dir_all(dir)?;
    let path = dir.join(WRITER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::now_v7().simple().to_string();
            let tmp = path.with_extension("tmp");
            let mut file = File::create(&tmp)?;
            file.write_all(id.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir)?;
            Ok(id)
        }
    }
}

struct OpenSegment {
    id: u64,
    file: File,
    len: u64,
}

struct Writer {
    config: WalConfig,
    metrics: Arc<StorageMetrics>,
    segments: Arc<Mutex<BTreeMap<u64, SegmentInfo>>>,
    open: Option<OpenSegment>,
    next_seq: u64,
    on_durable: OnDurable,
}

struct Pending {
    seq: u64,
    tenant: TenantId,
    batch: RecordBatch,
    done: oneshot::Sender<Result<u64, WalError>>,
}

/// Appends taken at once are written together; this caps one write.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut stopped = None;
        // One buffer for every group: a fresh one per group had the kernel
        // zero its pages each time (6 % of server CPU under OTLP/JSON).
        let mut buffer = BytesMut::new();
        while let Some(first) = receiver.blocking_recv() {
            let mut group = vec![first];
            let mut bytes = 0;
            while bytes < MAX_GROUP_BYTES {
                match receiver.try_recv() {
                    Ok(command) => {
                        if let Command::Append { body, .. } = &command {
                            bytes += body.bytes().len();
                        }
                        group.push(command);
                    }
                    Err(_) => break,
                }
            }
            let mut pending = Vec::new();
            for command in group {
                match command {
                    Command::Append { tenant, body, batch, done } => {
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        segment::encode_record(seq, &tenant, &body, &mut buffer);
                        pending.push(Pending { seq, tenant, batch, done });
                    }
                    Command::Seal { done } => {
                        self.commit(&mut buffer, &mut pending);
                        self.seal();
                        let _ = done.send(());
                    }
                    Command::Stop { done } => stopped = Some(done),
                }
            }
            self.commit(&mut buffer, &mut pending);
            if stopped.is_some() {
                break;
            }
        }
        self.seal();
        // Appends queued after the stop fail: dropping the receiver drops their replies.
        drop(receiver);
        if let Some(done) = stopped {
            let _ = done.send(());
        }
    }

    fn commit(&mut self, buffer: &mut BytesMut, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let first_seq = pending[0].seq;
        let result = self.write(first_seq, buffer);
        let group: Vec<Pending> = std::mem::take(pending);
        buffer.clear();
        match result {
            Ok(()) => {
                {
                    let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
                    let id = self.open.as_ref().expect("written to an open segment").id;
                    let info = segments.get_mut(&id).expect("open segment is listed");
                    for p in &group {
                        let max = info.tenants.entry(p.tenant.clone()).or_insert(0);
                        *max = (*max).max(p.seq);
                    }
                }
                let mut replies = Vec::with_capacity(group.len());
                let durable = group
                    .into_iter()
                    .map(|p| {
                        replies.push((p.seq, p.done));
                        Durable { seq: p.seq, tenant: p.tenant, batch: p.batch }
                    })
                    .collect();
                (self.on_durable)(durable);
                for (seq, done) in replies {
                    let _ = done.send(Ok(seq));
                }
                if self.open.as_ref().is_some_and(|o| o.len >= self.config.max_segment_bytes) {
                    self.seal();
                }
            }
            Err(error) => {
                warn!(%error, records = group.len(), "WAL write failed; the exports are refused");
                self.metrics.wal_write_errors.inc();
                for p in group {
                    let _ = p.done.send(Err(error.clone()));
                }
            }
        }
    }

    /// Writes and syncs one group; on failure cuts the segment back to its
    /// last good length (or abandons it, if even that fails).
    fn write(&mut self, first_seq: u64, data: &[u8]) -> Result<(), WalError> {
        if self.open.is_none() {
            self.open = Some(self.create_segment(first_seq)?);
        }
        let open = self.open.as_mut().expect("opened above");
        let outcome = open.file.write_all(data).and_then(|()| match self.config.sync {
            WalSync::Fsync => {
                let started = Instant::now();
                let synced = open.file.sync_data();
                self.metrics.wal_fsync_seconds.observe(started.elapsed().as_secs_f64());
                synced
            }
            WalSync::None => Ok(()),
        });
        match outcome {
            Ok(()) => {
                open.len += data.len() as u64;
                self.metrics.wal_bytes.inc_by(data.len() as u64);
                Ok(())
            }
            Err(error) => {
                if open.file.set_len(open.len).and_then(|()| open.file.sync_data()).is_err() {
                    // Cannot even cut it back: stop appending to this one.
                    self.seal();
                }
                Err(error.into())
            }
        }
    }

    fn create_segment(&mut self, first_seq: u64) -> Result<OpenSegment, WalError> {
        let path = segment_path(&self.config.dir, first_seq);
        let create = || -> std::io::Result<File> {
            let mut file = OpenOptions::new().create_new(true).write(true).open(&path)?;
            file.write_all(&segment::header())?;
            file.sync_all()?;
            sync_dir(&self.config.dir)?;
            Ok(file)
        };
        let file = match create() {
            Ok(file) => file,
            Err(error) => {
                let _ = fs::remove_file(&path);
                return Err(error.into());
            }
        };
        let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        segments.insert(first_seq, SegmentInfo { path, tenants: HashMap::new(), sealed: false });
        self.metrics.wal_segments.set(segments.len() as i64);
        Ok(OpenSegment { id: first_seq, file, len: segment::HEADER_LEN as u64 })
    }

    fn seal(&mut self) {
        if let Some(open) = self.open.take() {
            let mut segments = self.segments.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(info) = segments.get_mut(&open.id) {
                info.sealed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
