//! The per-partition writer. One thread owns a partition's active segment; appends reach it through
//! a bounded channel. It takes everything queued (up to `max_batch_bytes`), writes all the frames,
//! fsyncs once, publishes the new end to readers, and only then answers each append. Under load
//! one fsync acknowledges many appends, which is what makes "204 only after fsync" affordable.

use crate::embedded::{Counters, PartitionShared, SegmentView};
use crate::segment::{encode_frame, index_due, sync_dir, SegmentFile, SparseIndex, FRAME_OVERHEAD};
use crate::{LogError, PartitionId, Topic};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use tokio::sync::{mpsc, oneshot};

pub(crate) type Reply = oneshot::Sender<Result<u64, LogError>>;

pub(crate) enum Request {
    Append {
        records: Vec<(Vec<u8>, Vec<u8>)>,
        reply: Reply,
    },
    /// Retention goes through the writer too, so it never races a roll or a publish.
    Retain {
        offset: u64,
        reply: Reply,
    },
}

/// The segment being appended to, as the writer sees it (ahead of what readers see until commit).
pub(crate) struct Active {
    pub segment: Arc<SegmentFile>,
    pub len: u64,
    pub next_offset: u64,
    pub last_indexed: Option<u64>,
    /// Index entries not yet published to readers.
    pub new_index: Vec<(u64, u64)>,
}

impl Active {
    fn update(&mut self) -> SegmentView {
        SegmentView {
            segment: Arc::clone(&self.segment),
            len: self.len,
            end_offset: self.next_offset,
            index: SparseIndex::from_entries(std::mem::take(&mut self.new_index)),
        }
    }
}

pub(crate) struct Writer {
    pub topic: Topic,
    pub partition: PartitionId,
    pub dir: PathBuf,
    pub active: Active,
    pub shared: Arc<PartitionShared>,
    pub counters: Arc<Counters>,
    pub segment_bytes: u64,
    /// Set by a failed write or fsync. After a failed fsync the page cache no longer tells what
    /// is on disk, so the writer refuses further appends until the log is reopened and recovered.
    pub failed: Option<String>,
}

fn record_bytes(records: &[(Vec<u8>, Vec<u8>)]) -> usize {
    records.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The writer thread: runs until every sender is gone, answering queued requests first. A
/// thread of its own, not a task: each commit blocks on fsync, and handing every commit to the
/// blocking pool and back cost two thread wake-ups more per commit (`docs/decisions.md`).
pub(crate) fn run(mut writer: Writer, mut requests: mpsc::Receiver<Request>, max_batch_bytes: usize) {
    let mut held: Option<Request> = None;
    loop {
        let request = match held.take() {
            Some(request) => request,
            None => match requests.blocking_recv() {
                Some(request) => request,
                None => return,
            },
        };
        match request {
            Request::Retain { offset, reply } => {
                let _ = reply.send(writer.retain(offset));
            }
            Request::Append { records, reply } => {
                let mut bytes = record_bytes(&records);
                let mut batch = vec![records];
                let mut replies = vec![reply];
                while bytes < max_batch_bytes {
                    match requests.try_recv() {
                        Ok(Request::Append { records, reply })
                            if bytes + record_bytes(&records) <= max_batch_bytes =>
                        {
                            bytes += record_bytes(&records);
                            batch.push(records);
                            replies.push(reply);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match writer.commit(&batch) {
                    Ok(firsts) => {
                        for (reply, first) in replies.into_iter().zip(firsts) {
                            let _ = reply.send(Ok(first));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }
}

impl Writer {
    /// Writes a batch durably and publishes it; returns the first offset of each request.
    fn commit(&mut self, batch: &[Vec<(Vec<u8>, Vec<u8>)>]) -> Result<Vec<u64>, LogError> {
        if let Some(reason) = &self.failed {
            return Err(LogError::WriterFailed {
                topic: self.topic,
                partition: self.partition,
                reason: reason.clone(),
            });
        }
        let result = self.write_batch(batch);
        if let Err(e) = &result {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "log writer stopped");
            self.failed = Some(e.to_string());
        }
        result
    }

    fn write_batch(&mut self, batch: &[Vec<(Vec<u8>, Vec<u8>)>]) -> Result<Vec<u64>, LogError> {
        let mut firsts = Vec::with_capacity(batch.len());
        let mut sealed = Vec::new();
        let mut buf =
            Vec::with_capacity(batch.iter().map(|r| record_bytes(r) + FRAME_OVERHEAD * r.len()).sum());
        for records in batch {
            firsts.push(self.active.next_offset);
            for (key, value) in records {
                let size = (FRAME_OVERHEAD + key.len() + value.len()) as u64;
                if self.pending_end(&buf) > 0 && self.pending_end(&buf) + size > self.segment_bytes {
                    // The old segment is complete and fsync'd before the next one exists, so
                    // recovery only ever finds a torn tail in the last segment.
                    self.flush(&mut buf)?;
                    sealed.push(self.roll()?);
                }
                let pos = self.pending_end(&buf);
                if index_due(self.active.last_indexed, pos) {
                    self.active.new_index.push((self.active.next_offset, pos));
                    self.active.last_indexed = Some(pos);
                }
                encode_frame(&mut buf, self.active.next_offset, key, value);
                self.active.next_offset += 1;
            }
        }
        self.flush(&mut buf)?;
        self.publish(sealed);
        self.counters.appends.fetch_add(batch.len() as u64, Relaxed);
        self.counters.records.fetch_add(batch.iter().map(|r| r.len() as u64).sum(), Relaxed);
        Ok(firsts)
    }

    fn pending_end(&self, buf: &[u8]) -> u64 {
        self.active.len + buf.len() as u64
    }

    /// Writes `buf` at the end of the active segment and fsyncs it.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        let segment = &self.active.segment;
        let io = |e| LogError::io(format!("append to {}", segment.path.display()), e);
        segment.file.write_all_at(buf, self.active.len).map_err(io)?;
        let started = std::time::Instant::now();
        segment.file.sync_data().map_err(io)?;
        telemetry::METRICS.log_fsync_seconds.observe_duration(started.elapsed());
        self.counters.fsyncs.fetch_add(1, Relaxed);
        self.counters.bytes.fetch_add(buf.len() as u64, Relaxed);
        self.active.len += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Starts a new segment at the next offset; returns the final state of the old one.
    fn roll(&mut self) -> Result<SegmentView, LogError> {
        let segment = SegmentFile::create(&self.dir, self.active.next_offset)?;
        let old = self.active.update();
        self.active = Active {
            segment: Arc::new(segment),
            len: 0,
            next_offset: self.active.next_offset,
            last_indexed: None,
            new_index: Vec::new(),
        };
        Ok(old)
    }

    /// Makes everything written so far visible to readers, then wakes waiters. The segment list
    /// is updated before the end offset, so a reader that saw an end offset finds its records.
    fn publish(&mut self, sealed: Vec<SegmentView>) {
        let active = self.active.update();
        let mut views = self.shared.segments.write().unwrap_or_else(PoisonError::into_inner);
        for update in sealed.into_iter().chain(std::iter::once(active)) {
            match views.iter_mut().rev().find(|v| v.segment.base == update.segment.base) {
                Some(view) => {
                    view.len = update.len;
                    view.end_offset = update.end_offset;
                    view.index.extend(update.index);
                }
                None => views.push(update),
            }
        }
        drop(views);
        self.shared.end.send_replace(self.active.next_offset);
    }

    /// Drops every segment but the active one whose records all lie below `offset`, oldest first.
    fn retain(&mut self, offset: u64) -> Result<u64, LogError> {
        let (dropped, first) = {
            let mut views = self.shared.segments.write().unwrap_or_else(PoisonError::into_inner);
            let keep_from = views
                .iter()
                .position(|v| v.end_offset > offset)
                .unwrap_or(views.len())
                .min(views.len().saturating_sub(1));
            let dropped: Vec<_> = views.drain(..keep_from).map(|v| v.segment).collect();
            (dropped, views.first().map_or(self.active.segment.base, |v| v.segment.base))
        };
        for segment in &dropped {
            match std::fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(format!("remove {}", segment.path.display()), e)),
            }
            // One at a time: the removals become durable in order, so a crash leaves a
            // contiguous run of segments, never a gap that recovery would call corruption.
            sync_dir(&self.dir)?;
        }
        Ok(first)
    }
}
