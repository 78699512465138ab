//! The embedded backend: segment files on local disk, one group-commit writer per partition.
//!
//! Layout: `<dir>/partitions` holds the partition count (fixed at creation), and each partition
//! is a directory `<dir>/<topic>/<partition>/` of segments named by their first offset
//! (`00000000000000000000.log`, ...). Frames are described in `segment.rs`.
//!
//! - Durability: an append returns after its frames are written and `sync_data` returned
//!   (`group_commit.rs`); new files and removals are followed by a directory fsync.
//! - Visibility: readers see a partition through a published segment list and end offset that
//!   the writer updates only after the fsync, so they never see an unacknowledged record.
//! - Recovery on open: every segment is scanned (rebuilding its sparse index). Only the last one
//!   may have a torn tail (a short frame, a bad crc, an out-of-sequence offset): it is truncated
//!   away. Damage anywhere else is acknowledged data gone bad and fails the open.

use crate::group_commit::{self, Active, Reply, Request, Writer};
use crate::segment::{frame_size, parse_segment_name, scan, sync_dir, SegmentFile, SparseIndex, Step};
use crate::{Log, LogError, LogOptions, PartitionId, Record, Topic};
use async_trait::async_trait;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Appends queued per partition before `append` waits for room (backpressure, not memory growth).
const QUEUED_APPENDS: usize = 1024;
/// One read returns at most about this many key and value bytes (always at least one record).
const READ_BUDGET_BYTES: usize = 8 << 20;
/// One read looks into at most this many segments; the caller reads again for more.
const SEGMENTS_PER_READ: usize = 4;
const PARTITIONS_FILE: &str = "partitions";

/// Counters since open, over all partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Append calls committed.
    pub appends: u64,
    /// Records committed.
    pub records: u64,
    /// `sync_data` calls on segment files; `appends / fsyncs` is the group-commit factor.
    pub fsyncs: u64,
    /// Frame bytes written.
    pub bytes: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub records: AtomicU64,
    pub fsyncs: AtomicU64,
    pub bytes: AtomicU64,
}

/// One segment as readers may see it: only committed bytes and records.
pub(crate) struct SegmentView {
    pub segment: Arc<SegmentFile>,
    pub len: u64,
    pub end_offset: u64,
    pub index: SparseIndex,
}

/// What a partition's writer publishes to its readers.
pub(crate) struct PartitionShared {
    /// Never empty; the last one is the active segment.
    pub segments: RwLock<Vec<SegmentView>>,
    /// The committed end offset; `wait_for` watches it.
    pub end: watch::Sender<u64>,
}

struct Partition {
    shared: Arc<PartitionShared>,
    /// `None` once closed.
    sender: Mutex<Option<mpsc::Sender<Request>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Partition {
    async fn request(&self, make: impl FnOnce(Reply) -> Request) -> Result<u64, LogError> {
        let sender = lock(&self.sender).clone().ok_or(LogError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender.send(make(reply)).await.map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn end(&self) -> u64 {
        *self.shared.end.borrow()
    }
}

/// The embedded, durable, partitioned log. Dropping it (or [`EmbeddedLog::close`]) stops the
/// writers once they have answered every queued append.
pub struct EmbeddedLog {
    root: PathBuf,
    partition_count: u32,
    /// `Topic::ALL` order, then partition order.
    partitions: Vec<Partition>,
    counters: Arc<Counters>,
    writers: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("root", &self.root)
            .field("partition_count", &self.partition_count)
            .finish_non_exhaustive()
    }
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir`, recovering every partition, and starts one
    /// writer thread per partition.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self, LogError> {
        if options.partitions == 0 {
            return Err(LogError::InvalidOptions("partitions must be at least 1"));
        }
        if options.segment_bytes == 0 || options.max_batch_bytes == 0 {
            return Err(LogError::InvalidOptions("segment_bytes and max_batch_bytes must be positive"));
        }
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(|e| LogError::io(format!("create {}", root.display()), e))?;
        check_partition_count(&root, options.partitions)?;

        let counters = Arc::new(Counters::default());
        let mut partitions = Vec::new();
        let mut writers = Vec::new();
        for topic in Topic::ALL {
            let topic_dir = root.join(topic.name());
            for partition in 0..options.partitions {
                let dir = topic_dir.join(partition.to_string());
                let (views, active) = recover(&dir)?;
                let shared = Arc::new(PartitionShared {
                    segments: RwLock::new(views),
                    end: watch::Sender::new(active.next_offset),
                });
                let (sender, requests) = mpsc::channel(QUEUED_APPENDS);
                let writer = Writer {
                    topic,
                    partition,
                    dir,
                    active,
                    shared: Arc::clone(&shared),
                    counters: Arc::clone(&counters),
                    segment_bytes: options.segment_bytes,
                    failed: None,
                };
                let max_batch_bytes = options.max_batch_bytes;
                let thread = std::thread::Builder::new()
                    .name(format!("log-{}-{partition}", topic.name()))
                    .spawn(move || group_commit::run(writer, requests, max_batch_bytes))
                    .map_err(|e| LogError::io("start a log writer thread".to_string(), e))?;
                writers.push(thread);
                partitions.push(Partition { shared, sender: Mutex::new(Some(sender)) });
            }
            sync_dir(&topic_dir)?;
        }
        sync_dir(&root)?;
        Ok(Self {
            root,
            partition_count: options.partitions,
            partitions,
            counters,
            writers: Mutex::new(writers),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            appends: self.counters.appends.load(Relaxed),
            records: self.counters.records.load(Relaxed),
            fsyncs: self.counters.fsyncs.load(Relaxed),
            bytes: self.counters.bytes.load(Relaxed),
        }
    }

    /// Stops accepting appends (they fail with [`LogError::Closed`]), lets every writer answer
    /// what is already queued, and waits for the writers to exit. Reads keep working.
    pub async fn close(&self) {
        for partition in &self.partitions {
            lock(&partition.sender).take();
        }
        let writers = std::mem::take(&mut *lock(&self.writers));
        let _ = tokio::task::spawn_blocking(move || {
            for writer in writers {
                let _ = writer.join();
            }
        })
        .await;
    }

    fn partition(&self, topic: Topic, partition: PartitionId) -> Result<&Partition, LogError> {
        let count = self.partition_count;
        let out_of_range = LogError::PartitionOutOfRange { topic, partition, count };
        if partition >= count {
            return Err(out_of_range);
        }
        let topic_index = match topic {
            Topic::UsageRaw => 0,
            Topic::LedgerInput => 1,
        };
        self.partitions.get(topic_index * count as usize + partition as usize).ok_or(out_of_range)
    }
}

/// Refuses to reopen a log with another partition count: customers would change partitions and
/// their old and new inputs would be applied by different writers in no common order.
fn check_partition_count(root: &Path, requested: u32) -> Result<(), LogError> {
    let path = root.join(PARTITIONS_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found: u32 = text
                .trim()
                .parse()
                .map_err(|_| LogError::corrupt(path.display(), "not a partition count"))?;
            if found == requested {
                Ok(())
            } else {
                Err(LogError::PartitionCountMismatch {
                    location: root.display().to_string(),
                    found,
                    requested,
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written aside, then renamed: a crash never leaves a half-written count behind.
            let io = |e| LogError::io(format!("write {}", path.display()), e);
            let temp = root.join(format!("{PARTITIONS_FILE}.tmp"));
            let mut file = fs::File::create(&temp).map_err(io)?;
            file.write_all(format!("{requested}\n").as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            fs::rename(&temp, &path).map_err(io)?;
            sync_dir(root)
        }
        Err(e) => Err(LogError::io(format!("read {}", path.display()), e)),
    }
}

/// Scans a partition's segments, truncates a torn tail off the last one, and returns what
/// readers may see plus the writer's starting point.
fn recover(dir: &Path) -> Result<(Vec<SegmentView>, Active), LogError> {
    let io = |e| LogError::io(format!("list {}", dir.display()), e);
    fs::create_dir_all(dir).map_err(io)?;
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        if let Some(base) = entry.map_err(io)?.file_name().to_str().and_then(parse_segment_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    if bases.is_empty() {
        SegmentFile::create(dir, 0)?;
        bases.push(0);
    }
    let last = bases.len() - 1;
    let mut views: Vec<SegmentView> = Vec::with_capacity(bases.len());
    for (i, base) in bases.into_iter().enumerate() {
        let segment = SegmentFile::open(dir, base)?;
        if let Some(previous) = views.last() {
            if previous.end_offset != base {
                let reason =
                    format!("starts at offset {base}, the segment before ends at {}", previous.end_offset);
                return Err(LogError::corrupt(segment.path.display(), reason));
            }
        }
        let io = |e| LogError::io(format!("recover {}", segment.path.display()), e);
        let file_len = segment.file.metadata().map_err(io)?.len();
        let scan = scan(&segment, file_len).map_err(io)?;
        if let Some(reason) = scan.torn {
            if i != last {
                return Err(LogError::corrupt(
                    segment.path.display(),
                    format!("{reason} at byte {}", scan.valid_len),
                ));
            }
            // An append is answered only after its fsync, and a segment is complete before the
            // next one exists, so bytes past the last valid frame of the last segment belong to
            // appends that never returned: dropping them loses nothing acknowledged.
            tracing::warn!(
                segment = %segment.path.display(),
                reason,
                kept_bytes = scan.valid_len,
                dropped_bytes = file_len - scan.valid_len,
                "truncating a torn log tail"
            );
            segment.file.set_len(scan.valid_len).and_then(|()| segment.file.sync_all()).map_err(io)?;
        }
        views.push(SegmentView {
            segment: Arc::new(segment),
            len: scan.valid_len,
            end_offset: scan.next_offset,
            index: scan.index,
        });
    }
    let tail = views.last().ok_or_else(|| LogError::corrupt(dir.display(), "no segments"))?;
    let active = Active {
        segment: Arc::clone(&tail.segment),
        len: tail.len,
        next_offset: tail.end_offset,
        last_indexed: tail.index.last_pos(),
        new_index: Vec::new(),
    };
    Ok((views, active))
}

/// A read's slice of one segment: file positions `[start, end)`.
struct ReadPlan {
    segment: Arc<SegmentFile>,
    start: u64,
    end: u64,
}

/// Collects records `from..until`, checking that they come densely, from the plan's segments.
fn read_segments(plan: &[ReadPlan], from: u64, until: u64, max: usize) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    // Below the first retained offset a read starts at the first retained record.
    let mut expected = plan.first().map_or(from, |p| p.segment.base.max(from));
    for part in plan {
        let mut frames = part.segment.frames(part.start, part.end);
        loop {
            let step = frames
                .next_frame()
                .map_err(|e| LogError::io(format!("read {}", part.segment.path.display()), e))?;
            match step {
                Step::End => break,
                Step::Torn { pos, reason } => {
                    return Err(LogError::corrupt(
                        part.segment.path.display(),
                        format!("{reason} at byte {pos}"),
                    ));
                }
                Step::Frame { offset, .. } if offset < from => continue,
                Step::Frame { offset, .. } if offset >= until => return Ok(out),
                Step::Frame { offset, key, value, .. } => {
                    if offset != expected {
                        let reason = format!("found offset {offset} where {expected} belongs");
                        return Err(LogError::corrupt(part.segment.path.display(), reason));
                    }
                    expected += 1;
                    bytes += key.len() + value.len();
                    out.push(Record { offset, key: key.to_vec(), value: value.to_vec() });
                    if out.len() >= max || bytes >= READ_BUDGET_BYTES {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Log for EmbeddedLog {
    fn partition_count(&self) -> u32 {
        self.partition_count
    }

    async fn append(
        &self,
        topic: Topic,
        partition: PartitionId,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<u64, LogError> {
        let p = self.partition(topic, partition)?;
        if records.is_empty() {
            return Ok(p.end());
        }
        if let Some((k, v)) = records.iter().find(|(k, v)| frame_size(k, v).is_none()) {
            return Err(LogError::RecordTooLarge { bytes: k.len() + v.len() });
        }
        p.request(|reply| Request::Append { records, reply }).await
    }

    async fn read(
        &self,
        topic: Topic,
        partition: PartitionId,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, LogError> {
        let p = self.partition(topic, partition)?;
        // The end offset first: the writer publishes segments before it moves the end, so every
        // record below this end is in the segment list taken next.
        let until = p.end();
        if from >= until || max_records == 0 {
            return Ok(Vec::new());
        }
        let plan: Vec<ReadPlan> = {
            let views = p.shared.segments.read().unwrap_or_else(PoisonError::into_inner);
            let first = views.partition_point(|v| v.segment.base <= from).saturating_sub(1);
            views[first..]
                .iter()
                .take(SEGMENTS_PER_READ)
                .enumerate()
                .map(|(i, v)| ReadPlan {
                    segment: Arc::clone(&v.segment),
                    start: if i == 0 { v.index.lookup(from) } else { 0 },
                    end: v.len,
                })
                .collect()
        };
        tokio::task::spawn_blocking(move || read_segments(&plan, from, until, max_records))
            .await
            .map_err(|e| LogError::io("read task", std::io::Error::other(e.to_string())))?
    }

    async fn end_offset(&self, topic: Topic, partition: PartitionId) -> Result<u64, LogError> {
        Ok(self.partition(topic, partition)?.end())
    }

    async fn wait_for(
        &self,
        topic: Topic,
        partition: PartitionId,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        let p = self.partition(topic, partition)?;
        let mut end = p.shared.end.subscribe();
        let reached =
            tokio::time::timeout(timeout, async { end.wait_for(|&end| end > offset).await.map(|e| *e) });
        match reached.await {
            Ok(Ok(end)) => Ok(end),
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_elapsed) => Ok(p.end()),
        }
    }

    async fn retain_from(&self, topic: Topic, partition: PartitionId, offset: u64) -> Result<u64, LogError> {
        self.partition(topic, partition)?.request(|reply| Request::Retain { offset, reply }).await
    }

    /// One process owns the whole embedded log.
    fn shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{read_all, Harness};
    use crate::segment::{encode_frame, segment_path};

    struct Embedded {
        dir: tempfile::TempDir,
        options: LogOptions,
    }

    impl Embedded {
        fn with(options: LogOptions) -> Self {
            Embedded { dir: tempfile::tempdir().unwrap(), options }
        }
    }

    impl Harness for Embedded {
        type Backend = EmbeddedLog;
        fn new() -> Self {
            Self::with(LogOptions { partitions: 4, ..LogOptions::default() })
        }
        fn with_segment_bytes(segment_bytes: u64) -> Self {
            Self::with(LogOptions { partitions: 4, segment_bytes, ..LogOptions::default() })
        }
        fn open(&self) -> EmbeddedLog {
            EmbeddedLog::open(self.dir.path(), self.options.clone()).unwrap()
        }
    }

    crate::log_conformance_tests!(Embedded);

    const T: Topic = Topic::LedgerInput;

    fn one(i: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(b"cust".to_vec(), i.to_le_bytes().to_vec())]
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
    }

    async fn assert_values(log: &EmbeddedLog, count: u32) {
        let all = read_all(log, T, 1, 0).await;
        let values: Vec<_> = all.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, (0..count).map(|i| i.to_le_bytes().to_vec()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_on_open() {
        let h = Embedded::new();
        let log = h.open();
        for i in 0..10 {
            log.append(T, 1, one(i)).await.unwrap();
        }
        drop(log);
        let path = segment_path(&h.dir.path().join("ledger.input/1"), 0);
        let clean = fs::metadata(&path).unwrap().len();

        // A crash mid-write: the first half of the frame for offset 10.
        let mut frame = Vec::new();
        encode_frame(&mut frame, 10, b"cust", &[7; 100]);
        append_raw(&path, &frame[..frame.len() / 2]);
        let log = h.open();
        assert_eq!(fs::metadata(&path).unwrap().len(), clean);
        assert_eq!(log.end_offset(T, 1).await.unwrap(), 10);
        assert_values(&log, 10).await;
        assert_eq!(log.append(T, 1, one(10)).await.unwrap(), 10);
        drop(log);

        // Garbage, then a whole valid frame with an offset out of sequence: both dropped.
        for junk in [vec![0xab; 37], frame] {
            let clean = fs::metadata(&path).unwrap().len();
            append_raw(&path, &junk);
            let log = h.open();
            assert_eq!(fs::metadata(&path).unwrap().len(), clean);
            assert_values(&log, 11).await;
            assert_eq!(log.end_offset(T, 1).await.unwrap(), 11);
        }
        let log = h.open();
        assert_eq!(log.append(T, 1, one(11)).await.unwrap(), 11);
        assert_values(&log, 12).await;
    }

    #[tokio::test]
    async fn damage_before_the_last_segment_fails_the_open() {
        let h = Embedded::with(LogOptions { partitions: 2, segment_bytes: 256, ..LogOptions::default() });
        let log = h.open();
        for i in 0..20 {
            log.append(T, 1, vec![(b"cust".to_vec(), vec![i; 50])]).await.unwrap();
        }
        drop(log);
        let path = segment_path(&h.dir.path().join("ledger.input/1"), 0);
        let mut bytes = fs::read(&path).unwrap();
        bytes[30] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = EmbeddedLog::open(h.dir.path(), h.options.clone()).unwrap_err();
        assert!(matches!(err, LogError::Corrupt { .. }), "{err}");
    }

    #[tokio::test]
    async fn group_commit_batches_many_appends_per_fsync() {
        let h = Embedded::new();
        let log = Arc::new(h.open());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let log = Arc::clone(&log);
                tokio::spawn(async move { log.append(T, 0, one(i)).await.unwrap() })
            })
            .collect();
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await.unwrap());
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..64).collect::<Vec<u64>>());
        let stats = log.stats();
        println!("group commit: {} appends, {} fsyncs", stats.appends, stats.fsyncs);
        assert_eq!((stats.appends, stats.records), (64, 64));
        assert!(stats.fsyncs >= 1 && stats.fsyncs < stats.appends, "{stats:?}");
    }

    #[tokio::test]
    async fn appends_after_close_are_rejected() {
        let h = Embedded::new();
        let log = h.open();
        log.append(T, 1, one(0)).await.unwrap();
        log.close().await;
        assert!(matches!(log.append(T, 1, one(1)).await, Err(LogError::Closed)));
        assert!(matches!(log.retain_from(T, 1, 0).await, Err(LogError::Closed)));
        assert_values(&log, 1).await;
        drop(log);
        assert_values(&h.open(), 1).await;
    }

    #[tokio::test]
    async fn reopening_with_another_partition_count_is_refused() {
        let h = Embedded::new();
        drop(h.open());
        let options = LogOptions { partitions: 5, ..h.options.clone() };
        let err = EmbeddedLog::open(h.dir.path(), options).unwrap_err();
        assert!(matches!(err, LogError::PartitionCountMismatch { found: 4, requested: 5, .. }), "{err}");
    }

    #[tokio::test]
    async fn open_picks_the_backend_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::open(&format!("embedded:{}", dir.path().display()), LogOptions::default()).unwrap();
        assert_eq!(log.partition_count(), 8);
        let err = crate::open("kafka://localhost:9092", LogOptions::default()).err().unwrap();
        assert_eq!(err.to_string(), "unsupported log backend `kafka`");
    }
}
