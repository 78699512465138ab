//! The writer shell (`docs/ledger.md`): one task per partition of `ledger.input` reads batches of
//! inputs, applies them with the pure [`crate::apply`] core to customer state held in memory, and
//! persists everything a batch posted together with the partition's new offset in one atomic
//! store write.
//!
//! Rules:
//! - Taking a partition bumps its epoch; every commit is conditional on the revision of the
//!   progress record it wrote last, so a writer that lost the partition is fenced and posts
//!   nothing.
//! - In-memory state never runs ahead of the store: when a commit fails, the whole customer cache
//!   is dropped and the batch is read and applied again from the last committed offset.
//! - A record that cannot be decoded (or belongs to another partition's customer) is logged and
//!   skipped: the partition never stalls on bad input.
//! - Waiters are released ([`Posted::publish`]) only after the commit that covers their offset.

use crate::apply::{self, Known, Postings};
use crate::client::Posted;
use crate::state::{LedgerState, PartitionProgress};
use eventlog::{partition_for, LogError, Record, SharedLog, Topic};
use schemas::catalog::{Asset, Product};
use schemas::currency::is_iso_currency;
use schemas::ledger::{LedgerInput, StoredEvent, Transaction};
use schemas::usage::UsageEvent;
use schemas::Decimal;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::typed::get_doc;
use store::{Expect, Op, SharedStore, Store, StoreError, Table};
use telemetry::METRICS;
use tokio::sync::watch;

/// How long an idle writer waits for new records before it looks at `shutdown` again.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// The first pause after a failed batch; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Beyond this many cached customers the cache is dropped after a commit (it is reloaded on use).
const MAX_CACHED_CUSTOMERS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// The most `ledger.input` records applied and committed as one batch.
    pub max_batch_records: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { max_batch_records: 2048 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Another writer took the partition (its epoch is newer): this one must stop.
    #[error("partition {partition} of ledger.input was taken over by another writer")]
    Fenced { partition: u32 },
    #[error("ledger.input: {0}")]
    Log(#[from] LogError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Runs the writer of one partition until `shutdown` becomes true (then returns Ok after finishing
/// the batch in hand) or it is fenced.
pub async fn run_partition(
    store: SharedStore,
    log: SharedLog,
    partition: u32,
    posted: Posted,
    options: WriterOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WriterError> {
    let mut writer = Writer::start(store, Arc::clone(&log), partition, posted).await?;
    let max_records = options.max_batch_records.max(1);
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let from = writer.progress.next_offset;
        let records = log.read(Topic::LedgerInput, partition, from, max_records).await?;
        if records.is_empty() {
            tokio::select! {
                waited = log.wait_for(Topic::LedgerInput, partition, from, IDLE_WAIT) => { waited?; }
                () = until_shutdown(&mut shutdown) => {}
            }
            continue;
        }
        match writer.process(&records).await {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(Failure::Fenced) => {
                tracing::warn!(
                    partition,
                    epoch = writer.progress.epoch,
                    "fenced: another writer took the partition"
                );
                return Err(WriterError::Fenced { partition });
            }
            Err(Failure::Again) => writer.forget(),
            Err(Failure::Retry(error)) => {
                writer.forget();
                tracing::warn!(partition, %error, ?backoff, "batch not committed; retrying from the last commit");
                if !*shutdown.borrow() {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = until_shutdown(&mut shutdown) => {}
                    }
                }
                if *shutdown.borrow() {
                    return Err(error.into());
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One task per partition of ledger.input.
pub fn spawn_all(
    store: SharedStore,
    log: SharedLog,
    posted: Posted,
    options: WriterOptions,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Result<(), WriterError>>> {
    (0..log.partition_count())
        .map(|partition| {
            tokio::spawn(run_partition(
                Arc::clone(&store),
                Arc::clone(&log),
                partition,
                posted.clone(),
                options,
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Resolves once `shutdown` is true; never, if its sender is gone without saying so.
async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Why a batch was not committed.
enum Failure {
    /// Another writer owns the partition.
    Fenced,
    /// The writer learned something about the store (a taken key, a commit of its own that it
    /// did not see succeed): apply the batch again at once.
    Again,
    /// A store failure: back off, then apply the batch again.
    Retry(StoreError),
}

/// What the writer read from the store for the batch in hand.
#[derive(Default)]
struct Fetched {
    /// Events by `StoredEvent::key`: `None` when not posted.
    events: HashMap<String, Option<UsageEvent>>,
    /// Transaction keys looked up, and whether they exist.
    transactions: HashMap<String, bool>,
    /// Custom assets by code: `None` when unknown. Read once per batch, as rates can be added.
    assets: HashMap<String, Option<Asset>>,
    /// Products (re)loaded in this batch: not reloaded again if a version is still missing.
    products_loaded: HashSet<String>,
}

/// The writer's answers to [`Known`].
struct Lookup<'a> {
    fetched: &'a Fetched,
    taken: &'a HashSet<String>,
    products: &'a HashMap<String, Product>,
}

impl Known for Lookup<'_> {
    fn posted_event(&self, key: &str) -> Option<&UsageEvent> {
        self.fetched.events.get(key).and_then(Option::as_ref)
    }

    fn transaction_exists(&self, key: &str) -> bool {
        self.taken.contains(key) || self.fetched.transactions.get(key).copied().unwrap_or(false)
    }

    fn product(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }

    fn asset(&self, code: &str) -> Option<&Asset> {
        self.fetched.assets.get(code).and_then(Option::as_ref)
    }
}

struct Writer {
    store: SharedStore,
    log: SharedLog,
    partition: u32,
    posted: Posted,
    /// The last committed progress, and the store revision of its record.
    progress: PartitionProgress,
    revision: u64,
    /// Customer state as committed (plus the batch in hand while it is applied).
    customers: HashMap<String, LedgerState>,
    /// Product documents by id; published versions are immutable, so they never go stale.
    products: HashMap<String, Product>,
    /// Transaction keys a commit found taken although no lookup said so.
    taken: HashSet<String>,
}

impl Writer {
    /// Takes the partition: bumps the stored epoch (conditionally on the record as read) and
    /// releases waiters on offsets already applied.
    async fn start(
        store: SharedStore,
        log: SharedLog,
        partition: u32,
        posted: Posted,
    ) -> Result<Self, WriterError> {
        let key = PartitionProgress::key(partition);
        let stored = get_doc::<PartitionProgress>(store.as_ref(), Table::Offsets, &key).await?;
        let (previous, expect, revision) = match stored {
            Some(doc) => (doc.value, Expect::Revision(doc.revision), doc.revision + 1),
            None => (PartitionProgress::default(), Expect::Absent, 1),
        };
        let progress =
            PartitionProgress { next_offset: previous.next_offset, epoch: previous.epoch.saturating_add(1) };
        match store.write(vec![Op::put_doc(Table::Offsets, &key, &progress)?.expect(expect)]).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => return Err(WriterError::Fenced { partition }),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            partition,
            epoch = progress.epoch,
            next_offset = progress.next_offset,
            "ledger writer started"
        );
        posted.publish(partition, progress.next_offset);
        Ok(Self {
            store,
            log,
            partition,
            posted,
            progress,
            revision,
            customers: HashMap::new(),
            products: HashMap::new(),
            taken: HashSet::new(),
        })
    }

    /// Drops every cached customer: the next batch reloads them from the store.
    fn forget(&mut self) {
        self.customers.clear();
    }

    /// Applies `records` and commits them in one write.
    async fn process(&mut self, records: &[Record]) -> Result<(), Failure> {
        let Some(last) = records.last() else { return Ok(()) };
        let mut out = Postings::default();
        let mut fetched = Fetched::default();
        for record in records {
            let input: LedgerInput = match serde_json::from_slice(&record.value) {
                Ok(input) => input,
                Err(error) => {
                    tracing::error!(partition = self.partition, offset = record.offset, %error, "undecodable ledger.input record skipped");
                    continue;
                }
            };
            let customer = input.customer_id().to_string();
            let customer = customer.as_str();
            if partition_for(customer.as_bytes(), self.log.partition_count()) != self.partition {
                tracing::error!(
                    partition = self.partition,
                    offset = record.offset,
                    customer,
                    "ledger.input record of another partition's customer skipped"
                );
                continue;
            }
            self.load_customer(customer).await.map_err(Failure::Retry)?;
            if self.customers.get(customer).is_some_and(|s| record.offset < s.applied_offset) {
                continue;
            }
            self.prefetch(&input, &out, &mut fetched).await.map_err(Failure::Retry)?;
            let lookup = Lookup { fetched: &fetched, taken: &self.taken, products: &self.products };
            if let Some(state) = self.customers.get_mut(customer) {
                apply::apply(state, record.offset, input, &lookup, &mut out);
            }
        }
        let next = PartitionProgress { next_offset: last.offset + 1, epoch: self.progress.epoch };
        self.commit(next, &out).await?;
        METRICS.writer_batch_size.observe(records.len() as f64);
        record_metrics(&out);
        if self.customers.len() > MAX_CACHED_CUSTOMERS {
            self.customers.clear();
        }
        Ok(())
    }

    async fn load_customer(&mut self, customer: &str) -> Result<(), StoreError> {
        if self.customers.contains_key(customer) {
            return Ok(());
        }
        let stored = get_doc::<LedgerState>(self.store.as_ref(), Table::Ledger, customer).await?;
        let mut state = stored.map_or_else(|| LedgerState::new(customer), |doc| doc.value);
        state.customer_id = customer.to_string();
        self.customers.insert(customer.to_string(), state);
        Ok(())
    }

    /// Reads what applying `input` will ask [`Known`] and is not yet in `fetched`.
    async fn prefetch(
        &mut self,
        input: &LedgerInput,
        out: &Postings,
        fetched: &mut Fetched,
    ) -> Result<(), StoreError> {
        let store = Arc::clone(&self.store);
        let store = store.as_ref();
        match input {
            LedgerInput::Usage(usage) => {
                for rated in &usage.events {
                    let key = StoredEvent::key(&rated.event.id, &usage.customer_id);
                    if !out.events.contains_key(&key) && !fetched.events.contains_key(&key) {
                        let event = match get_doc::<StoredEvent>(store, Table::Events, &key).await {
                            Ok(doc) => doc.map(|d| d.value.event),
                            // It exists: it was posted, whatever its body says.
                            Err(StoreError::Corrupt { reason, .. }) => {
                                tracing::error!(key, reason, "stored event unreadable; treated as posted");
                                Some(rated.event.clone())
                            }
                            Err(e) => return Err(e),
                        };
                        fetched.events.insert(key, event);
                    }
                    if rated.needs_state {
                        for product in &rated.products {
                            self.load_product(store, product.id.as_str(), product.version, fetched).await?;
                        }
                    }
                }
            }
            LedgerInput::Adjustment(cmd) => {
                fetch_transaction(store, &cmd.customer_id, &cmd.request.transaction_id, fetched).await?;
                let asset = &cmd.request.asset;
                if cmd.request.amount > Decimal::ZERO
                    && !is_iso_currency(asset)
                    && !fetched.assets.contains_key(asset)
                {
                    let doc = match get_doc::<Asset>(store, Table::Assets, asset).await {
                        Ok(doc) => doc.map(|d| d.value),
                        Err(StoreError::Corrupt { reason, .. }) => {
                            tracing::error!(asset, reason, "asset unreadable; its revenue basis is 0");
                            None
                        }
                        Err(e) => return Err(e),
                    };
                    fetched.assets.insert(asset.clone(), doc);
                }
            }
            LedgerInput::Charge(cmd) => {
                fetch_transaction(store, &cmd.customer_id, &cmd.request.transaction_id, fetched).await?;
            }
        }
        Ok(())
    }

    /// Makes sure `id` is cached with `version` if the store has it (a cached product is reloaded
    /// once per batch when a version it lacks is asked for).
    async fn load_product(
        &mut self,
        store: &dyn Store,
        id: &str,
        version: u32,
        fetched: &mut Fetched,
    ) -> Result<(), StoreError> {
        if self.products.get(id).is_some_and(|p| p.version(version).is_some())
            || fetched.products_loaded.contains(id)
        {
            return Ok(());
        }
        match get_doc::<Product>(store, Table::Products, id).await {
            Ok(Some(doc)) => {
                self.products.insert(id.to_string(), doc.value);
            }
            Ok(None) => {}
            Err(StoreError::Corrupt { reason, .. }) => {
                tracing::error!(
                    product = id,
                    reason,
                    "product unreadable; events needing it keep the rater's fees"
                );
            }
            Err(e) => return Err(e),
        }
        fetched.products_loaded.insert(id.to_string());
        Ok(())
    }

    /// The batch's one atomic write, fenced by the progress record's revision.
    async fn commit(&mut self, next: PartitionProgress, out: &Postings) -> Result<(), Failure> {
        let progress_key = PartitionProgress::key(self.partition);
        let ops = self.batch(&progress_key, next, out).map_err(Failure::Retry)?;
        let started = Instant::now();
        match self.store.write(ops).await {
            Ok(()) => {}
            Err(StoreError::Conflict { table: Table::Offsets, key, .. }) if key == progress_key => {
                return Err(self.progress_conflict(&progress_key).await);
            }
            Err(StoreError::Conflict { table: Table::Transactions, key, .. })
                if !self.taken.contains(&key) =>
            {
                tracing::error!(
                    partition = self.partition,
                    key,
                    "transaction key already taken; applying the batch again"
                );
                self.taken.insert(key);
                return Err(Failure::Again);
            }
            Err(error) => return Err(Failure::Retry(error)),
        }
        METRICS.writer_commit_seconds.observe_duration(started.elapsed());
        self.revision += 1;
        self.progress = next;
        self.posted.publish(self.partition, next.next_offset);
        Ok(())
    }

    /// The progress record changed under us. If its epoch is still ours, a commit of ours that
    /// reported a failure did land: adopt it and apply again from there. Otherwise we are fenced.
    async fn progress_conflict(&mut self, key: &str) -> Failure {
        match get_doc::<PartitionProgress>(self.store.as_ref(), Table::Offsets, key).await {
            Ok(Some(doc)) if doc.value.epoch == self.progress.epoch => {
                tracing::warn!(
                    partition = self.partition,
                    next_offset = doc.value.next_offset,
                    "adopting a commit reported as failed"
                );
                self.revision = doc.revision;
                self.progress = doc.value;
                self.posted.publish(self.partition, doc.value.next_offset);
                Failure::Again
            }
            Ok(_) => Failure::Fenced,
            Err(error) => Failure::Retry(error),
        }
    }

    /// The write batch: the fence first (so a fenced writer's conflict is reported on it), then
    /// customer ledgers, transactions and events, each in key order.
    fn batch(
        &self,
        progress_key: &str,
        next: PartitionProgress,
        out: &Postings,
    ) -> Result<Vec<Op>, StoreError> {
        let mut ops = Vec::with_capacity(1 + out.customers.len() + out.transactions.len() + out.events.len());
        ops.push(Op::put_doc(Table::Offsets, progress_key, &next)?.expect(Expect::Revision(self.revision)));
        for customer in &out.customers {
            if let Some(state) = self.customers.get(customer) {
                ops.push(Op::put_doc(Table::Ledger, customer.as_str(), state)?);
            }
        }
        for (key, transaction) in &out.transactions {
            ops.push(Op::put_doc(Table::Transactions, key.as_str(), transaction)?.expect(Expect::Absent));
        }
        for (key, event) in &out.events {
            ops.push(Op::put_doc(Table::Events, key.as_str(), event)?.expect(Expect::Absent));
        }
        Ok(ops)
    }
}

async fn fetch_transaction(
    store: &dyn Store,
    customer_id: &str,
    transaction_id: &str,
    fetched: &mut Fetched,
) -> Result<(), StoreError> {
    let key = Transaction::key(customer_id, transaction_id);
    if let Entry::Vacant(slot) = fetched.transactions.entry(key) {
        let exists = store.get(Table::Transactions, slot.key()).await?.is_some();
        slot.insert(exists);
    }
    Ok(())
}

/// Counts a committed batch's inputs, postings, duplicates and event-to-balance latencies.
fn record_metrics(out: &Postings) {
    METRICS.writer_inputs_total.add(out.inputs_applied);
    METRICS.writer_postings_total.add(out.transactions.len() as u64);
    METRICS.events_duplicate_total.add(out.duplicate_events);
    METRICS.events_duplicate_conflict_total.add(out.duplicate_conflicts);
    let wall = chrono::Utc::now();
    for accepted_at in &out.usage_accepted_at {
        let latency = (wall - *accepted_at).to_std().unwrap_or_default();
        METRICS.event_to_balance_seconds.observe_duration(latency);
    }
}
