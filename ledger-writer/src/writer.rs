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
use schemas::ledger::{DomainEvent, LedgerInput, StoredEvent, Transaction};
use schemas::usage::UsageEvent;
use schemas::Decimal;
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
    /// About how many usage events a batch should carry: the records read next are sized from
    /// the events per record seen last, so 100-event requests make batches of a few dozen
    /// records (small enough to overlap applying one with committing the previous) and
    /// single-event requests batches of thousands.
    pub target_batch_events: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { max_batch_records: 2048, target_batch_events: 8192 }
    }
}

impl WriterOptions {
    /// The records to read next, given the events per record of the last batch.
    fn records_to_read(&self, events_per_record: f64) -> usize {
        let max = self.max_batch_records.max(1);
        if events_per_record <= 1.0 {
            return max;
        }
        ((self.target_batch_events as f64 / events_per_record) as usize).clamp(1, max)
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

/// Runs the writer of one partition until `shutdown` becomes true (then returns Ok after the
/// commit in flight is settled) or it is fenced.
///
/// Pipelined: while batch N is being committed (on the store's blocking thread), batch N+1 is
/// read, applied in memory and encoded; N+1 is submitted only once N is durable, and is thrown
/// away (with the whole customer cache) if N fails.
pub async fn run_partition(
    store: SharedStore,
    log: SharedLog,
    partition: u32,
    posted: Posted,
    options: WriterOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WriterError> {
    let mut writer = Writer::start(store.clone(), Arc::clone(&log), partition, posted).await?;
    // The partition's scheduler runs while this writer does (aborted when it returns).
    let _scheduler = AbortOnDrop(tokio::spawn(crate::scheduler::run(
        store,
        Arc::clone(&log),
        partition,
        Arc::new(schemas::clock::SystemClock),
        shutdown.clone(),
    )));
    let mut events_per_record = 1.0;
    let mut backoff = FIRST_BACKOFF;
    let mut in_flight: Option<InFlight> = None;
    let mut next_read = writer.progress.resume_from();
    loop {
        if *shutdown.borrow() {
            return match in_flight.take() {
                Some(commit) => match writer.settle(commit).await {
                    // `Again`: nothing past the last commit is lost; the next start applies it.
                    Ok(()) | Err(Failure::Again) => Ok(()),
                    Err(Failure::Fenced) => Err(WriterError::Fenced { partition }),
                    Err(Failure::Retry(error)) => Err(error.into()),
                },
                None => Ok(()),
            };
        }
        let max_records = options.records_to_read(events_per_record);
        let records = log.read(Topic::LedgerInput, partition, next_read, max_records).await?;
        let prepared =
            if records.is_empty() { None } else { Some(writer.prepare(&records, in_flight.as_ref()).await) };
        let settled = match in_flight.take() {
            Some(commit) => writer.settle(commit).await,
            None => Ok(()),
        };
        let outcome = match (settled, prepared) {
            (Err(failure), _) | (Ok(()), Some(Err(failure))) => Err(failure),
            (Ok(()), Some(Ok(batch))) => {
                events_per_record = batch.out.usage_accepted_at.len() as f64 / batch.records.max(1) as f64;
                next_read = batch.next.next_offset;
                in_flight = Some(writer.submit(batch));
                Ok(())
            }
            (Ok(()), None) => {
                tokio::select! {
                    waited = log.wait_for(Topic::LedgerInput, partition, next_read, IDLE_WAIT) => { waited?; }
                    () = until_shutdown(&mut shutdown) => {}
                }
                Ok(())
            }
        };
        let Err(failure) = outcome else {
            backoff = FIRST_BACKOFF;
            continue;
        };
        // Nothing is in flight here: start again from the last commit.
        writer.forget();
        next_read = writer.progress.resume_from();
        match failure {
            Failure::Fenced => {
                METRICS.writer_fenced_total.add(1);
                tracing::warn!(
                    partition,
                    epoch = writer.progress.epoch,
                    "fenced: another writer took the partition"
                );
                return Err(WriterError::Fenced { partition });
            }
            Failure::Again => {}
            Failure::Retry(error) => {
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

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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

/// A batch applied in memory and encoded, ready to commit.
struct Prepared {
    ops: Vec<Op>,
    next: PartitionProgress,
    records: usize,
    out: Postings,
}

/// A batch whose commit was submitted to the store and not yet settled.
struct InFlight {
    commit: tokio::task::JoinHandle<Result<(), StoreError>>,
    next: PartitionProgress,
    records: usize,
    out: Postings,
}

/// What the writer read from the store for the batch in hand.
#[derive(Default)]
struct Fetched {
    /// Posted events of the batch by `StoredEvent::key` (an absent key was not posted).
    events: HashMap<String, UsageEvent>,
    /// Transaction keys looked up, and whether they exist.
    transactions: HashMap<String, bool>,
    /// Custom assets by code: `None` when unknown. Read once per batch, as rates can be added.
    assets: HashMap<String, Option<Asset>>,
    /// Products (re)loaded in this batch: not reloaded again if a version is still missing.
    products_loaded: HashSet<String>,
}

/// The writer's answers to [`Known`]: what the store holds, and what the batch still being
/// committed posts (the store does not show it yet, but it is posted as far as the next batch is
/// concerned: a retry of one of its events or commands must be a duplicate, not a conflict that
/// throws both batches away).
struct Lookup<'a> {
    fetched: &'a Fetched,
    in_flight: Option<&'a Postings>,
    taken: &'a HashSet<String>,
    products: &'a HashMap<String, Product>,
}

impl Known for Lookup<'_> {
    fn posted_event(&self, key: &str) -> Option<&UsageEvent> {
        self.fetched
            .events
            .get(key)
            .or_else(|| self.in_flight.and_then(|out| out.events.get(key)).map(|stored| &stored.event))
    }

    fn transaction_exists(&self, key: &str) -> bool {
        self.taken.contains(key)
            || self.fetched.transactions.get(key).copied().unwrap_or(false)
            || self.in_flight.is_some_and(|out| out.transactions.contains_key(key))
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
        let progress = PartitionProgress { epoch: previous.epoch.saturating_add(1), ..previous };
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

    /// Applies `records` to the in-memory state and encodes the batch's one atomic write, behind
    /// the batch `in_flight` if one is being committed (then the progress record will be one
    /// revision on, and what that batch posts counts as posted).
    async fn prepare(
        &mut self,
        records: &[Record],
        in_flight: Option<&InFlight>,
    ) -> Result<Prepared, Failure> {
        let inputs = self.decode(records);
        self.load_customers(&inputs).await.map_err(Failure::Retry)?;
        let inputs: Vec<(u64, LedgerInput)> = inputs
            .into_iter()
            .filter(|(offset, input)| {
                self.customers.get(input.customer_id()).is_some_and(|s| *offset >= s.applied_offset)
            })
            .collect();
        let fetched = self.prefetch(&inputs).await.map_err(Failure::Retry)?;
        let mut out = Postings::default();
        let lookup = Lookup {
            fetched: &fetched,
            in_flight: in_flight.map(|batch| &batch.out),
            taken: &self.taken,
            products: &self.products,
        };
        for (offset, input) in inputs {
            if let Some(state) = self.customers.get_mut(input.customer_id()) {
                apply::apply(state, offset, input, &lookup, &mut out);
            }
        }
        let schedule = self.reschedule(&out).map_err(Failure::Retry)?;
        let last = records.last().map_or(self.progress.next_offset, |r| r.offset + 1);
        let first = records.first().map_or(self.progress.next_offset, |r| r.offset);
        let next = PartitionProgress { next_offset: last, epoch: self.progress.epoch, batch_start: first };
        let expected = self.revision + u64::from(in_flight.is_some());
        let mut ops = self.batch(next, expected, &out).map_err(Failure::Retry)?;
        ops.extend(schedule);
        Ok(Prepared { ops, next, records: records.len(), out })
    }

    /// Keeps each touched customer's entry in `Table::Schedule` at its next due change (none for
    /// a customer on a test clock: its advances drive it), and removes the entries the batch's
    /// ticks answered.
    fn reschedule(&mut self, out: &Postings) -> Result<Vec<Op>, StoreError> {
        let mut ops = Vec::new();
        let mut wanted = HashSet::new();
        for customer in &out.customers {
            let Some(state) = self.customers.get_mut(customer) else { continue };
            let due = state.next_due().filter(|_| state.test_clock.is_none());
            let key = due.map(|at| crate::scheduler::due_key(self.partition, at, customer));
            if let Some(key) = &key {
                wanted.insert(key.clone());
            }
            if key == state.scheduled {
                continue;
            }
            if let Some(old) = state.scheduled.take() {
                ops.push(Op::delete(Table::Schedule, old));
            }
            if let Some(key) = &key {
                ops.push(Op::put_doc(Table::Schedule, key.as_str(), &serde_json::json!({}))?);
            }
            state.scheduled = key;
        }
        for key in &out.unscheduled {
            if !wanted.contains(key) {
                ops.push(Op::delete(Table::Schedule, key.as_str()));
            }
        }
        Ok(ops)
    }

    /// The records of this partition's customers, decoded; anything else is logged and skipped.
    fn decode(&self, records: &[Record]) -> Vec<(u64, LedgerInput)> {
        let mut inputs = Vec::with_capacity(records.len());
        for record in records {
            let input: LedgerInput = match serde_json::from_slice(&record.value) {
                Ok(input) => input,
                Err(error) => {
                    tracing::error!(partition = self.partition, offset = record.offset, %error, "undecodable ledger.input record skipped");
                    continue;
                }
            };
            let customer = input.customer_id();
            if partition_for(customer.as_bytes(), self.log.partition_count()) != self.partition {
                tracing::error!(
                    partition = self.partition,
                    offset = record.offset,
                    customer,
                    "ledger.input record of another partition's customer skipped"
                );
                continue;
            }
            inputs.push((record.offset, input));
        }
        inputs
    }

    /// Starts the commit of a prepared batch. Customers it does not touch leave the cache when
    /// the cache is full: they are reloaded from the store, which has everything but this batch.
    fn submit(&mut self, batch: Prepared) -> InFlight {
        let store = Arc::clone(&self.store);
        let commit = tokio::spawn(async move { store.write(batch.ops).await });
        if self.customers.len() > MAX_CACHED_CUSTOMERS {
            self.customers.retain(|id, _| batch.out.customers.contains(id));
        }
        InFlight { commit, next: batch.next, records: batch.records, out: batch.out }
    }

    /// Waits for a submitted commit; on success the batch is durable and its waiters released.
    async fn settle(&mut self, batch: InFlight) -> Result<(), Failure> {
        let started = Instant::now();
        let result =
            batch.commit.await.unwrap_or_else(|e| Err(StoreError::Backend(format!("commit task: {e}"))));
        let progress_key = PartitionProgress::key(self.partition);
        match result {
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
        self.progress = batch.next;
        self.posted.publish(self.partition, batch.next.next_offset);
        METRICS.writer_batch_size.observe(batch.records as f64);
        record_metrics(&batch.out);
        Ok(())
    }

    /// Loads the ledger state of every customer of `inputs` that is not cached, in one read.
    async fn load_customers(&mut self, inputs: &[(u64, LedgerInput)]) -> Result<(), StoreError> {
        let mut missing: Vec<String> = inputs
            .iter()
            .map(|(_, input)| input.customer_id())
            .filter(|id| !self.customers.contains_key(*id))
            .map(str::to_string)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let records = self.store.get_many(Table::Ledger, &missing).await?;
        for (customer, record) in missing.into_iter().zip(records) {
            let mut state = match record {
                Some(record) => store::typed::decode::<LedgerState>(Table::Ledger, record)?.value,
                None => LedgerState::new(&customer),
            };
            state.customer_id.clone_from(&customer);
            self.customers.insert(customer, state);
        }
        Ok(())
    }

    /// Reads what applying `inputs` will ask [`Known`]: the batch's events and transaction ids
    /// in one read each, then the rare custom assets and product versions.
    async fn prefetch(&mut self, inputs: &[(u64, LedgerInput)]) -> Result<Fetched, StoreError> {
        let store = Arc::clone(&self.store);
        let store = store.as_ref();
        let mut fetched = Fetched::default();
        let mut event_keys = Vec::new();
        let mut transaction_keys = Vec::new();
        for (_, input) in inputs {
            match input {
                LedgerInput::Usage(usage) => {
                    for rated in &usage.events {
                        event_keys.push(StoredEvent::key(&rated.event.id, &usage.customer_id));
                        if rated.needs_state {
                            for product in &rated.products {
                                self.load_product(store, product.id.as_str(), product.version, &mut fetched)
                                    .await?;
                            }
                        }
                    }
                }
                LedgerInput::Adjustment(cmd) => {
                    transaction_keys.push(Transaction::key(&cmd.customer_id, &cmd.request.transaction_id));
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
                    transaction_keys.push(Transaction::key(&cmd.customer_id, &cmd.request.transaction_id));
                }
                LedgerInput::Tick(tick) => {
                    for sub in tick.customer.iter().flat_map(|c| &c.subscriptions) {
                        for product in &sub.products {
                            self.load_product(store, product.id.as_str(), product.version, &mut fetched)
                                .await?;
                        }
                    }
                }
            }
        }
        // Time-driven changes read the versions the customers' cycles pin.
        let pinned: HashSet<(&str, u32)> = inputs
            .iter()
            .filter_map(|(_, input)| self.customers.get(input.customer_id()))
            .flat_map(|state| state.subscriptions.values())
            .flat_map(|sub| &sub.products)
            .map(|p| (p.id.as_str(), p.version))
            .collect();
        let pinned: Vec<(String, u32)> = pinned.into_iter().map(|(id, v)| (id.to_string(), v)).collect();
        for (id, version) in pinned {
            self.load_product(store, &id, version, &mut fetched).await?;
        }
        for (key, record) in event_keys.iter().zip(store.get_many(Table::Events, &event_keys).await?) {
            let Some(record) = record else { continue };
            match store::typed::decode::<StoredEvent>(Table::Events, record) {
                Ok(doc) => {
                    fetched.events.insert(key.clone(), doc.value.event);
                }
                // It exists: it was posted, whatever its body says.
                Err(error) => {
                    tracing::error!(key, %error, "stored event unreadable; treated as posted");
                    if let Some(event) = find_event(inputs, key) {
                        fetched.events.insert(key.clone(), event.clone());
                    }
                }
            }
        }
        let exists = store.get_many(Table::Transactions, &transaction_keys).await?;
        fetched.transactions = transaction_keys.into_iter().zip(exists.iter().map(Option::is_some)).collect();
        Ok(fetched)
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
    /// `expected`: the progress record's revision when this batch commits.
    fn batch(&self, next: PartitionProgress, expected: u64, out: &Postings) -> Result<Vec<Op>, StoreError> {
        let mut ops = Vec::with_capacity(1 + out.customers.len() + out.transactions.len() + out.events.len());
        let progress = Op::put_doc(Table::Offsets, PartitionProgress::key(self.partition), &next)?;
        ops.push(progress.expect(Expect::Revision(expected)));
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
        for (offset, event) in &out.outbox {
            ops.push(Op::put_doc(
                Table::Outbox,
                DomainEvent::key(self.partition, *offset, &event.id),
                event,
            )?);
        }
        Ok(ops)
    }
}

/// The event a usage input of the batch carries under `key` (`StoredEvent::key`).
fn find_event<'a>(inputs: &'a [(u64, LedgerInput)], key: &str) -> Option<&'a UsageEvent> {
    inputs.iter().find_map(|(_, input)| match input {
        LedgerInput::Usage(usage) => usage
            .events
            .iter()
            .find(|rated| StoredEvent::key(&rated.event.id, &usage.customer_id) == key)
            .map(|rated| &rated.event),
        _ => None,
    })
}

/// Counts a committed batch's inputs, postings, duplicates and event-to-balance latencies.
fn record_metrics(out: &Postings) {
    METRICS.writer_inputs_total.add(out.inputs_applied);
    METRICS.writer_postings_total.add(out.transactions.len() as u64);
    METRICS.subscriptions_renewed_total.add(out.renewals);
    METRICS.events_duplicate_total.add(out.duplicate_events);
    METRICS.events_duplicate_conflict_total.add(out.duplicate_conflicts);
    let wall = chrono::Utc::now();
    for accepted_at in &out.usage_accepted_at {
        let latency = (wall - *accepted_at).to_std().unwrap_or_default();
        METRICS.event_to_balance_seconds.observe_duration(latency);
    }
}

#[cfg(test)]
mod tests {
    use super::WriterOptions;

    #[test]
    fn batches_are_sized_by_the_events_per_record_seen_last() {
        let options = WriterOptions { max_batch_records: 2048, target_batch_events: 8192 };
        assert_eq!(options.records_to_read(0.0), 2048, "adjustments and charges: the record cap");
        assert_eq!(options.records_to_read(1.0), 2048);
        assert_eq!(options.records_to_read(100.0), 81);
        assert_eq!(options.records_to_read(1000.0), 8);
        assert_eq!(options.records_to_read(1e9), 1, "never fewer than one record");
    }
}
