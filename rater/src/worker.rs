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
use crate::rated::{rate_usage, Products};
use eventlog::{LogError, PartitionId, Record, SharedLog, Topic};
use schemas::ledger::{LedgerInput, RatedUsage, RawUsage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;
use store::typed::get_doc;
use store::{Op, SharedStore, StoreError, Table};
use telemetry::METRICS;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long an idle worker waits for new records before looking at shutdown again.
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

/// Every rater partition's lag in records, in this process; the `rater_lag_records` gauge is
/// their sum. Written once per batch, so a mutex costs nothing measurable.
static LAGS: Mutex<BTreeMap<PartitionId, u64>> = Mutex::new(BTreeMap::new());

/// One partition's entry in [`LAGS`]; it leaves the sum when the worker stops (the partition may
/// move to another process).
struct Lag {
    partition: PartitionId,
}

impl Lag {
    fn set(&self, lag: u64) {
        let Ok(mut lags) = LAGS.lock() else { return };
        lags.insert(self.partition, lag);
        METRICS.rater_lag_records.set(lags.values().sum());
    }
}

impl Drop for Lag {
    fn drop(&mut self) {
        let Ok(mut lags) = LAGS.lock() else { return };
        lags.remove(&self.partition);
        METRICS.rater_lag_records.set(lags.values().sum());
    }
}

/// One task per partition of `usage.raw` (the whole log in one process); runs until `shutdown`
/// is true (or its sender is dropped).
pub fn spawn_all(
    store: SharedStore,
    log: SharedLog,
    options: RaterOptions,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<Result<(), RaterError>>> {
    (0..log.partition_count())
        .map(|partition| {
            tokio::spawn(run_partition(
                store.clone(),
                log.clone(),
                partition,
                options.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Rates partition `partition` of `usage.raw` until `shutdown` is true (or its sender is
/// dropped).
pub async fn run_partition(
    store: SharedStore,
    log: SharedLog,
    partition: u32,
    options: RaterOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RaterError> {
    Worker::new(store, log, partition, options).run(shutdown).await
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
    options: RaterOptions,
    lag: Lag,
    cache: CatalogCache,
    /// The next record to read (everything before it is durable in `ledger.input`).
    next: u64,
    /// The progress last stored (may trail `next` after a failed progress write).
    stored: Option<u64>,
}

impl Worker {
    fn new(store: SharedStore, log: SharedLog, partition: PartitionId, options: RaterOptions) -> Self {
        Self {
            store,
            log,
            partition,
            options,
            lag: Lag { partition },
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

        let raws: Vec<(u64, Option<RawUsage>)> = records.iter().map(|r| (r.offset, self.decode(r))).collect();
        let customers: BTreeSet<&str> =
            raws.iter().filter_map(|(_, raw)| raw.as_ref()).map(|raw| raw.customer_id.as_str()).collect();
        let customers: Vec<String> = customers.into_iter().map(str::to_string).collect();
        self.cache.refresh_customers(self.store.as_ref(), &customers).await?;
        let mut inputs = Vec::with_capacity(records.len());
        let mut events = 0u64;
        for (offset, raw) in raws {
            let Some(raw) = raw else { continue };
            if let Some(input) = self.rate(offset, raw).await? {
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

    /// One `usage.raw` record decoded, or `None` (logged) if it does not decode.
    fn decode(&self, record: &Record) -> Option<RawUsage> {
        match serde_json::from_slice(&record.value) {
            Ok(raw) => Some(raw),
            Err(err) => {
                tracing::error!(partition = self.partition, offset = record.offset, error = %err, "undecodable usage record skipped");
                None
            }
        }
    }

    /// One accepted request rated, or `None` (logged) if it cannot be. The batch's customers were
    /// refreshed just before, so the cache holds what the store holds.
    async fn rate(&mut self, offset: u64, raw: RawUsage) -> Result<Option<RatedUsage>, RaterError> {
        let partition = self.partition;
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
