//! Backlog admission: ingest refuses (429) new events for a partition whose downstream stages
//! (raters, ledger writers) are too far behind. Under a sustained load the writers cannot post,
//! acceptance therefore falls to what they post, instead of building a backlog that every
//! balance lags behind (a prepaid wallet that lags can be overspent).
//!
//! The backlog is measured from durable state only: each stage's progress record
//! (`Table::Offsets`, a document with `next_offset`) against the end offset of the topic it
//! consumes. Every ingest process sees the same backlog, whichever processes run the stages.
//!
//! Its age: a refresh notes when it first saw each end offset of a topic; a stage's backlog is as
//! old as the first-seen time of the oldest end offset its progress has not reached. A partition's
//! age is the sum over the stages (an event waits in each in turn). The resolution is one refresh
//! interval. Refreshes run in the background, started by requests (none while nothing is sent),
//! one at a time.

use eventlog::{PartitionId, SharedLog, Topic};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::typed::decode;
use store::{SharedStore, Table};
use telemetry::METRICS;

/// A stage downstream of ingest: it consumes `topic` and stores its progress in each partition
/// (a document with `next_offset`, the first record not yet processed) in `Table::Offsets` under
/// `progress_key(partition)`.
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    pub topic: Topic,
    pub progress_key: fn(PartitionId) -> String,
}

/// The fields of a progress record the backlog reads.
#[derive(Deserialize)]
struct Progress {
    next_offset: u64,
}

/// End offsets first seen more often than this are merged into the newest (a stage that has
/// stopped must not grow the memory): the age stays exact, the newest entry only gets older.
const MAX_SEEN: usize = 64;

/// The end offsets of one topic partition that a stage has not reached yet, each with when a
/// refresh first saw it, oldest first.
#[derive(Debug, Default)]
struct Seen(VecDeque<(Instant, u64)>);

impl Seen {
    /// Notes the stage at `next` and the topic's end at `end`, seen at `now`; returns how old the
    /// stage's backlog is (zero when it has reached the end).
    fn observe(&mut self, now: Instant, next: u64, end: u64) -> Duration {
        while self.0.front().is_some_and(|&(_, seen_end)| seen_end <= next) {
            self.0.pop_front();
        }
        if next < end && self.0.back().is_none_or(|&(_, seen_end)| seen_end < end) {
            let full = self.0.len() >= MAX_SEEN;
            match self.0.back_mut() {
                Some(newest) if full => newest.1 = end,
                _ => self.0.push_back((now, end)),
            }
        }
        self.age(now)
    }

    /// How old the backlog is at `now` by what was seen so far: what a refresh that could not
    /// read this stage's position answers, so a backlog keeps aging while it cannot be read.
    fn age(&self, now: Instant) -> Duration {
        self.0.front().map_or(Duration::ZERO, |&(since, _)| now.saturating_duration_since(since))
    }
}

/// The backlog of every partition as of the last refresh; cheap to ask on every request.
pub(crate) struct Backlog {
    inner: Arc<Inner>,
}

struct Inner {
    store: SharedStore,
    log: SharedLog,
    downstream: Vec<Downstream>,
    max_age: Duration,
    /// How often a refresh runs while requests come: a twentieth of `max_age`.
    interval: Duration,
    started: Instant,
    /// Per partition: the backlog's age, in µs, at the last refresh.
    ages: Vec<AtomicU64>,
    /// When the last refresh started, and when the last one measured (µs after `started`; 0:
    /// never).
    refreshed_at: AtomicU64,
    measured_at: AtomicU64,
    refreshing: AtomicBool,
    /// Per stage, per partition; only a refresh (one at a time) touches it.
    seen: Mutex<Vec<Vec<Seen>>>,
    /// A failed read is logged once until a refresh reads everything.
    failing: AtomicBool,
}

/// Lets the next request start a refresh once this one ends, however it ends.
struct Refreshing<'a>(&'a AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

impl Backlog {
    /// Bounds the backlog at `max_age`.
    pub(crate) fn new(
        store: SharedStore,
        log: SharedLog,
        downstream: Vec<Downstream>,
        max_age: Duration,
    ) -> Self {
        let partitions = log.partition_count() as usize;
        let seen = downstream.iter().map(|_| (0..partitions).map(|_| Seen::default()).collect()).collect();
        Self {
            inner: Arc::new(Inner {
                store,
                log,
                downstream,
                max_age,
                interval: (max_age / 20).max(Duration::from_millis(1)),
                started: Instant::now(),
                ages: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
                refreshed_at: AtomicU64::new(0),
                measured_at: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                seen: Mutex::new(seen),
                failing: AtomicBool::new(false),
            }),
        }
    }

    /// Whether `partition`'s backlog is older than the bound. Starts a refresh in the background
    /// when the last one is older than the interval. A measure older than the bound itself (the
    /// first request after a quiet spell) says nothing about now, and refuses nothing. Call
    /// inside a tokio runtime.
    pub(crate) fn too_old(&self, partition: PartitionId) -> bool {
        let inner = &self.inner;
        if inner.downstream.is_empty() {
            return false;
        }
        let now = inner.micros(Instant::now());
        let due = now.saturating_sub(inner.refreshed_at.load(Relaxed)) >= micros(inner.interval);
        if due && !inner.refreshing.swap(true, Relaxed) {
            inner.refreshed_at.store(now, Relaxed);
            tokio::spawn(Arc::clone(inner).refresh());
        }
        let measured_at = inner.measured_at.load(Relaxed);
        if measured_at == 0 || now.saturating_sub(measured_at) > micros(inner.max_age) {
            return false;
        }
        inner.ages.get(partition as usize).is_some_and(|age| age.load(Relaxed) > micros(inner.max_age))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Inner {
    /// µs after `started`, at least 1 (0 means "never").
    fn micros(&self, at: Instant) -> u64 {
        micros(at.saturating_duration_since(self.started)).max(1)
    }

    async fn refresh(self: Arc<Self>) {
        let _refreshing = Refreshing(&self.refreshing);
        let positions = self.positions().await;
        let now = Instant::now();
        self.record(now, &positions);
        self.measured_at.store(self.micros(now), Relaxed);
    }

    /// Per stage, per partition: (the stage's next offset, the topic's end offset), or `None`
    /// where either could not be read. The progress is read before the end offsets, so a stage
    /// is never seen past the end; the end offsets are asked all at once (on Kafka each is a
    /// round trip to a broker).
    async fn positions(&self) -> Vec<Vec<Option<(u64, u64)>>> {
        let partitions = self.log.partition_count();
        let mut errors = Vec::new();
        let mut nexts = Vec::with_capacity(self.downstream.len());
        for stage in &self.downstream {
            nexts.push(self.progress(stage, partitions).await.map_err(|error| errors.push(error)).ok());
        }
        // Only the stages whose progress was read need their topic's end offsets.
        let reads = self.downstream.iter().zip(&nexts).flat_map(|(stage, next)| {
            (0..partitions).map(move |partition| async move {
                let next = next.as_ref()?[partition as usize];
                Some(self.log.end_offset(stage.topic, partition).await.map(|end| (next, end)))
            })
        });
        let mut reads = futures::future::join_all(reads).await.into_iter();
        let mut all = Vec::with_capacity(nexts.len());
        for _ in &self.downstream {
            let positions = reads
                .by_ref()
                .take(partitions as usize)
                .map(|read| match read {
                    Some(Ok(position)) => Some(position),
                    Some(Err(error)) => {
                        errors.push(error.to_string());
                        None
                    }
                    None => None,
                })
                .collect();
            all.push(positions);
        }
        match errors.first() {
            None => self.failing.store(false, Relaxed),
            Some(error) if !self.failing.swap(true, Relaxed) => {
                tracing::warn!(%error, failed = errors.len(), "cannot read some backlog positions; they keep aging");
            }
            Some(_) => {}
        }
        all
    }

    /// `stage`'s next offset in each partition (0 without a progress record).
    async fn progress(&self, stage: &Downstream, partitions: u32) -> Result<Vec<u64>, String> {
        let keys: Vec<String> = (0..partitions).map(stage.progress_key).collect();
        let records = self.store.get_many(Table::Offsets, &keys).await.map_err(|e| e.to_string())?;
        records
            .into_iter()
            .map(|record| match record {
                Some(record) => Ok(decode::<Progress>(Table::Offsets, record)
                    .map_err(|e| e.to_string())?
                    .value
                    .next_offset),
                None => Ok(0),
            })
            .collect()
    }

    fn record(&self, now: Instant, positions: &[Vec<Option<(u64, u64)>>]) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ages = vec![Duration::ZERO; self.ages.len()];
        for (stage, positions) in seen.iter_mut().zip(positions) {
            for ((seen, position), age) in stage.iter_mut().zip(positions).zip(ages.iter_mut()) {
                *age += match *position {
                    Some((next, end)) => seen.observe(now, next, end),
                    None => seen.age(now),
                };
            }
        }
        for (partition, (slot, age)) in self.ages.iter().zip(&ages).enumerate() {
            slot.store(micros(*age), Relaxed);
            let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            METRICS.partition_backlog_ms.set("ingest", partition as PartitionId, ms);
        }
        let oldest = ages.iter().max().copied().unwrap_or_default();
        METRICS.ingest_backlog_ms.set(u64::try_from(oldest.as_millis()).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_stage_at_the_end_has_no_backlog() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        assert_eq!(seen.observe(t0, 0, 0), Duration::ZERO);
        assert_eq!(seen.observe(t0 + 100 * MS, 5, 5), Duration::ZERO);
        assert!(seen.0.is_empty());
    }

    #[test]
    fn the_age_is_that_of_the_oldest_end_the_stage_has_not_reached() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        // Records 0..10 first seen at t0; the stage is at 0.
        assert_eq!(seen.observe(t0, 0, 10), Duration::ZERO);
        // More arrive; the stage has not reached 10: the backlog dates from t0.
        assert_eq!(seen.observe(t0 + 100 * MS, 4, 20), 100 * MS);
        assert_eq!(seen.observe(t0 + 200 * MS, 9, 20), 200 * MS);
        // Past 10: the oldest unreached end was first seen at t0 + 100 ms.
        assert_eq!(seen.observe(t0 + 300 * MS, 10, 25), 200 * MS);
        // Caught up with everything seen: no backlog, whatever came before.
        assert_eq!(seen.observe(t0 + 400 * MS, 25, 25), Duration::ZERO);
    }

    #[test]
    fn records_arriving_after_an_idle_spell_start_young() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        assert_eq!(seen.observe(t0, 3, 3), Duration::ZERO);
        // An hour later a record arrives: its backlog starts now, not an hour ago.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(seen.observe(later, 3, 4), Duration::ZERO);
        assert_eq!(seen.observe(later + 50 * MS, 3, 4), 50 * MS);
    }

    #[test]
    fn a_backlog_that_cannot_be_read_keeps_aging() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        seen.observe(t0, 0, 10);
        assert_eq!(seen.age(t0 + 700 * MS), 700 * MS);
        assert_eq!(Seen::default().age(t0 + 700 * MS), Duration::ZERO);
    }

    #[test]
    fn a_stopped_stage_keeps_its_age_in_bounded_memory() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        for i in 0..1000u32 {
            seen.observe(t0 + i * MS, 0, u64::from(i) + 1);
        }
        assert_eq!(seen.0.len(), MAX_SEEN);
        assert_eq!(seen.observe(t0 + 2000 * MS, 0, 2000), 2000 * MS);
        // Once it passes all but the merged newest entry, that entry is older than the truth:
        // refusing a little longer, never accepting too much.
        let newest = seen.0.back().map(|&(t, _)| t).unwrap();
        assert_eq!(seen.observe(t0 + 3000 * MS, 1999, 2000), (t0 + 3000 * MS) - newest);
    }
}
