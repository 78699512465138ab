//! The rater workers: one task per partition of `usage.raw`, each reading accepted requests,
//! rating them ([`crate::rated`]) against its own catalog cache ([`crate::cache`]) and
//! forwarding them to the same partition of `ledger.input`.
//!
//! Delivery is at least once. A batch is appended to `ledger.input` (durably) before the
//! partition's progress (`Table::Offsets`, key `rater/{partition}`) moves past it, so a crash in
//! between forwards the batch again on restart; the ledger writer drops events it already posted
//! (keyed by event id and customer), so nothing is posted twice.
//!
//! A record that cannot be rated (it does not decode, its customer is gone or corrupt) is logged
//! and skipped, never retried forever and never a panic. Log and store failures are retried with
//! a capped backoff; only failures that cannot heal (the log closed, a partition that does not
//! exist) end the task with an error.

use crate::cache::CatalogCache;
use crate::catalog::{CatalogChanges, Change};
use crate::rated::{rate_usage, Products};
use eventlog::{LogError, PartitionId, Record, SharedLog, Topic};
use schemas::ledger::{LedgerInput, RatedUsage, RawUsage};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::typed::get_doc;
use store::{Op, SharedStore, StoreError, Table};
use telemetry::METRICS;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// How long an idle worker waits for new records before looking at shutdown and changes again.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Backoff bounds after a failed step.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct RaterOptions {
    /// Most `usage.raw` records rated and forwarded as one batch (one append, one progress write).
    pub max_batch_records: usize,
}

impl Default for RaterOptions {
    fn default() -> Self {
        Self { max_batch_records: 256 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RaterError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RaterError {
    /// Failures that retrying cannot heal.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            RaterError::Log(
                LogError::Closed
                    | LogError::PartitionOutOfRange { .. }
                    | LogError::PartitionCountMismatch { .. }
                    | LogError::InvalidOptions(_)
                    | LogError::UnsupportedBackend(_)
                    | LogError::NoRuntime
            )
        )
    }
}

/// A rater's progress in one partition of `usage.raw` (`Table::Offsets`, key `rater/{partition}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaterProgress {
    /// The first record not yet forwarded.
    pub next_offset: u64,
}

impl RaterProgress {
    pub fn key(partition: PartitionId) -> String {
        format!("rater/{partition}")
    }
}

/// Per-partition lag in records, shared by the tasks of one [`spawn_all`]; the
/// `rater_lag_records` gauge is their sum.
#[derive(Clone)]
struct Lag {
    partitions: Arc<[AtomicU64]>,
    index: usize,
}

impl Lag {
    fn shared(count: usize) -> Arc<[AtomicU64]> {
        (0..count).map(|_| AtomicU64::new(0)).collect()
    }

    fn set(&self, lag: u64) {
        if let Some(slot) = self.partitions.get(self.index) {
            slot.store(lag, Ordering::Relaxed);
        }
        METRICS.rater_lag_records.set(self.partitions.iter().map(|p| p.load(Ordering::Relaxed)).sum());
    }
}

/// One task per partition of `usage.raw`; runs until `shutdown` is true (or its sender is
/// dropped).
pub fn spawn_all(
    store: SharedStore,
    log: SharedLog,
    changes: &CatalogChanges,
    options: RaterOptions,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<Result<(), RaterError>>> {
    let count = log.partition_count();
    let lag = Lag::shared(count as usize);
    (0..count)
        .map(|partition| {
            let worker = Worker::new(
                store.clone(),
                log.clone(),
                partition,
                changes.subscribe(),
                options.clone(),
                Lag { partitions: Arc::clone(&lag), index: partition as usize },
            );
            tokio::spawn(worker.run(shutdown.clone()))
        })
        .collect()
}

/// Rates partition `partition` of `usage.raw` until `shutdown` is true (or its sender is
/// dropped). Run alone, the `rater_lag_records` gauge shows this partition's lag only; use
/// [`spawn_all`] to run every partition.
pub async fn run_partition(
    store: SharedStore,
    log: SharedLog,
    partition: u32,
    changes: broadcast::Receiver<Change>,
    options: RaterOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RaterError> {
    let lag = Lag { partitions: Lag::shared(1), index: 0 };
    Worker::new(store, log, partition, changes, options, lag).run(shutdown).await
}

/// What one step of the loop did.
enum Step {
    /// A batch was forwarded, or the worker waited for records.
    Continue,
    /// The shutdown sender is gone: nobody can ask for shutdown any more, so stop now.
    Stop,
}

struct Worker {
    store: SharedStore,
    log: SharedLog,
    partition: PartitionId,
    changes: broadcast::Receiver<Change>,
    options: RaterOptions,
    lag: Lag,
    cache: CatalogCache,
    /// The next record to read (everything before it is durable in `ledger.input`).
    next: u64,
    /// The progress last stored (may trail `next` after a failed progress write).
    stored: Option<u64>,
}

impl Worker {
    fn new(
        store: SharedStore,
        log: SharedLog,
        partition: PartitionId,
        changes: broadcast::Receiver<Change>,
        options: RaterOptions,
        lag: Lag,
    ) -> Self {
        Self {
            store,
            log,
            partition,
            changes,
            options,
            lag,
            cache: CatalogCache::new(),
            next: 0,
            stored: None,
        }
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), RaterError> {
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let step = match self.stored {
                None => self.load_progress().await.map(|()| Step::Continue),
                Some(_) => self.step(&mut shutdown).await,
            };
            match step {
                Ok(Step::Continue) => backoff = BACKOFF_MIN,
                Ok(Step::Stop) => return Ok(()),
                Err(err) if err.is_fatal() => {
                    tracing::error!(partition = self.partition, error = %err, "rater stopped");
                    return Err(err);
                }
                Err(err) => {
                    tracing::error!(partition = self.partition, error = %err, retry_in = ?backoff, "rater step failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        changed = shutdown.changed() => if changed.is_err() { return Ok(()) },
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn load_progress(&mut self) -> Result<(), RaterError> {
        let key = RaterProgress::key(self.partition);
        let progress = get_doc::<RaterProgress>(self.store.as_ref(), Table::Offsets, &key).await?;
        self.next = progress.map(|doc| doc.value.next_offset).unwrap_or_default();
        self.stored = Some(self.next);
        tracing::info!(partition = self.partition, next_offset = self.next, "rater started");
        Ok(())
    }

    async fn save_progress(&mut self) -> Result<(), RaterError> {
        if self.stored == Some(self.next) {
            return Ok(());
        }
        let progress = RaterProgress { next_offset: self.next };
        let op = Op::put_doc(Table::Offsets, RaterProgress::key(self.partition), &progress)?;
        self.store.write(vec![op]).await?;
        self.stored = Some(self.next);
        Ok(())
    }

    /// Applies the catalog changes announced so far to the cache.
    fn drain_changes(&mut self) {
        loop {
            match self.changes.try_recv() {
                Ok(change) => self.cache.apply(&change),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::warn!(
                        partition = self.partition,
                        missed,
                        "catalog changes lagged; cache cleared"
                    );
                    self.cache.clear();
                }
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => break,
            }
        }
    }

    /// Reads one batch, rates it, forwards it and stores the progress; or waits for records.
    async fn step(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<Step, RaterError> {
        let max = self.options.max_batch_records.max(1);
        let records = self.log.read(Topic::UsageRaw, self.partition, self.next, max).await?;
        let Some(last) = records.last().map(|r| r.offset) else {
            // Idle: catch up a progress write that failed earlier, then wait.
            self.save_progress().await?;
            tokio::select! {
                end = self.log.wait_for(Topic::UsageRaw, self.partition, self.next, IDLE_WAIT) => {
                    self.lag.set(end?.saturating_sub(self.next));
                }
                changed = shutdown.changed() => if changed.is_err() { return Ok(Step::Stop) },
            }
            return Ok(Step::Continue);
        };

        self.drain_changes();
        let mut inputs = Vec::with_capacity(records.len());
        let mut events = 0u64;
        for record in &records {
            if let Some(input) = self.rate_record(record).await? {
                events += input.events.len() as u64;
                let key = input.customer_id.as_bytes().to_vec();
                let value = serde_json::to_vec(&LedgerInput::Usage(input))
                    .map_err(|e| StoreError::Backend(format!("cannot encode a ledger input: {e}")))?;
                inputs.push((key, value));
            }
        }
        if !inputs.is_empty() {
            self.log.append(Topic::LedgerInput, self.partition, inputs).await?;
        }
        // Durable in ledger.input: this process never forwards these records again, even if
        // the progress write below fails (it is caught up later).
        self.next = last + 1;
        METRICS.rater_events_total.add(events);
        self.save_progress().await?;
        let end = self.log.end_offset(Topic::UsageRaw, self.partition).await?;
        self.lag.set(end.saturating_sub(self.next));
        Ok(Step::Continue)
    }

    /// One `usage.raw` record rated, or `None` (logged) if it cannot be.
    async fn rate_record(&mut self, record: &Record) -> Result<Option<RatedUsage>, RaterError> {
        let (partition, offset) = (self.partition, record.offset);
        let raw: RawUsage = match serde_json::from_slice(&record.value) {
            Ok(raw) => raw,
            Err(err) => {
                tracing::error!(partition, offset, error = %err, "undecodable usage record skipped");
                return Ok(None);
            }
        };
        let store = self.store.as_ref();
        let customer = match self.cache.customer(store, &raw.customer_id).await {
            Ok(Some(customer)) => customer,
            Ok(None) => {
                tracing::error!(partition, offset, customer = %raw.customer_id, "usage of an unknown customer skipped");
                return Ok(None);
            }
            Err(err @ StoreError::Corrupt { .. }) => {
                tracing::error!(partition, offset, error = %err, "usage of a customer that cannot be read skipped");
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let mut products = Products::new();
        for event in &raw.events {
            for pinned in customer.products_active_at(event.occurred_at) {
                let id = pinned.id.as_str();
                if products.get(id).is_some_and(|p| p.version(pinned.version).is_some()) {
                    continue;
                }
                match self.cache.product(store, id, pinned.version).await {
                    Ok(Some(product)) => {
                        products.insert(id.to_string(), product);
                    }
                    Ok(None) => {
                        tracing::error!(
                            partition,
                            offset,
                            product = id,
                            version = pinned.version,
                            "pinned product version not found"
                        );
                    }
                    Err(err @ StoreError::Corrupt { .. }) => {
                        tracing::error!(partition, offset, error = %err, "pinned product cannot be read");
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(Some(rate_usage(raw, &customer, &products)))
    }
}
