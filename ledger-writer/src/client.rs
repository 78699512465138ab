//! How the API hands wallet commands to the writers and waits for them to be posted
//! (read-your-writes): append to `ledger.input` under the customer's partition, then wait until
//! that partition's writer has applied the offset. The writer may run in this process (it
//! publishes into [`Posted`]) or in another one ([`Posted::follow_store`] reads its progress).

use crate::state::{LedgerState, PartitionProgress};
use eventlog::{partition_for, LogError, SharedLog, Topic};
use schemas::ledger::LedgerInput;
use std::sync::{Arc, Weak};
use std::time::Duration;
use store::typed::{decode, get_doc};
use store::{SharedStore, Store, StoreError, Table};
use tokio::sync::{watch, Notify};

/// Per partition, the next `ledger.input` offset its writer has applied (and persisted). The
/// writers publish (in-process: [`Posted::publish`]; in other processes: through the store,
/// [`Posted::follow_store`]); [`LedgerClient`] waits.
#[derive(Clone)]
pub struct Posted {
    inner: Arc<Inner>,
}

struct Inner {
    partitions: Vec<watch::Sender<u64>>,
    /// Set when following writers of other processes through the store: a wait then also
    /// confirms the customer's own ledger (see [`Posted::wait_input`]), polled every `Duration`.
    follows: Option<(SharedStore, Duration)>,
    /// Told when a wait begins (and when the last `Posted` goes), so a store follower sleeps
    /// while nobody waits.
    waits: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.waits.notify_one();
    }
}

impl Inner {
    /// The partitions someone is waiting on now.
    fn waited_on(&self) -> Vec<u32> {
        (0u32..).zip(&self.partitions).filter(|(_, tx)| tx.receiver_count() > 0).map(|(p, _)| p).collect()
    }
}

impl Posted {
    pub fn new(partition_count: u32) -> Self {
        Self::with(partition_count, None)
    }

    fn with(partition_count: u32, follows: Option<(SharedStore, Duration)>) -> Self {
        let partitions = (0..partition_count).map(|_| watch::Sender::new(0)).collect();
        Self { inner: Arc::new(Inner { partitions, follows, waits: Arc::new(Notify::new()) }) }
    }

    /// A `Posted` fed by writers running in other processes: while anyone waits on a partition, a
    /// background task reads the partition's progress record (`Table::Offsets`, `writer/{p}`)
    /// every `interval` and publishes it. It reads nothing while nobody waits, and ends with the
    /// last clone. Call inside a tokio runtime.
    ///
    /// The progress record is written in the same batch as the postings it covers, but a store
    /// without multi-partition transactions (ScyllaDB) commits it first and each customer's part
    /// after it: so [`Posted::wait_input`] also waits for the customer's own ledger.
    pub fn follow_store(store: SharedStore, partition_count: u32, interval: Duration) -> Self {
        let posted = Self::with(partition_count, Some((store.clone(), interval)));
        let waits = Arc::clone(&posted.inner.waits);
        tokio::spawn(follow(Arc::downgrade(&posted.inner), waits, store, interval));
        posted
    }

    /// Called by a writer after a batch is durable: offsets below `next_offset` are posted.
    pub fn publish(&self, partition: u32, next_offset: u64) {
        if let Some(tx) = self.inner.partitions.get(partition as usize) {
            tx.send_if_modified(|v| {
                let advanced = next_offset > *v;
                if advanced {
                    *v = next_offset;
                }
                advanced
            });
        }
    }

    /// The next offset applied in `partition`.
    pub fn applied(&self, partition: u32) -> u64 {
        self.inner.partitions.get(partition as usize).map_or(0, |tx| *tx.borrow())
    }

    /// Resolves once the record at `offset` of `partition` is posted; false on timeout.
    pub async fn wait(&self, partition: u32, offset: u64, timeout: Duration) -> bool {
        let Some(tx) = self.inner.partitions.get(partition as usize) else { return false };
        let mut rx = tx.subscribe();
        self.inner.waits.notify_one();
        tokio::time::timeout(timeout, rx.wait_for(|&next| next > offset)).await.is_ok_and(|r| r.is_ok())
    }

    /// Resolves once `customer`'s input at `offset` of `partition` is posted; false on timeout.
    /// In-process, that is [`Posted::wait`]: the writer publishes after its whole batch is
    /// durable. Following another process's writer, the partition's progress may run ahead of
    /// the customer's postings (see [`Posted::follow_store`]); the customer's ledger, written
    /// atomically with them, says `applied_offset > offset` once they are durable.
    pub async fn wait_input(&self, partition: u32, customer: &str, offset: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.wait(partition, offset, timeout).await {
            return false;
        }
        let Some((store, interval)) = &self.inner.follows else { return true };
        loop {
            if let Ok(Some(ledger)) = get_doc::<LedgerState>(store.as_ref(), Table::Ledger, customer).await {
                if ledger.value.applied_offset > offset {
                    return true;
                }
            }
            if tokio::time::Instant::now() + *interval > deadline {
                return false;
            }
            tokio::time::sleep(*interval).await;
        }
    }
}

/// The loop of [`Posted::follow_store`]: polls while someone waits, sleeps otherwise, ends when
/// the `Posted` is gone.
async fn follow(posted: Weak<Inner>, waits: Arc<Notify>, store: SharedStore, interval: Duration) {
    let mut failing = false;
    loop {
        let Some(waited_on) = posted.upgrade().map(|inner| inner.waited_on()) else { return };
        if waited_on.is_empty() {
            waits.notified().await;
            continue;
        }
        match read_progress(store.as_ref(), &waited_on).await {
            Ok(progress) => {
                failing = false;
                let Some(inner) = posted.upgrade() else { return };
                let posted = Posted { inner };
                for (partition, next_offset) in progress {
                    posted.publish(partition, next_offset);
                }
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read the ledger writers' progress; retrying");
            }
            Err(_) => {}
        }
        tokio::time::sleep(interval).await;
    }
}

/// The next offset to apply of each of `partitions` that has a writer progress record.
async fn read_progress(store: &dyn Store, partitions: &[u32]) -> Result<Vec<(u32, u64)>, StoreError> {
    let keys: Vec<String> = partitions.iter().map(|&p| PartitionProgress::key(p)).collect();
    let records = store.get_many(Table::Offsets, &keys).await?;
    let mut progress = Vec::with_capacity(partitions.len());
    for (&partition, record) in partitions.iter().zip(records) {
        if let Some(record) = record {
            let doc = decode::<PartitionProgress>(Table::Offsets, record)?;
            progress.push((partition, doc.value.next_offset));
        }
    }
    Ok(progress)
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the ledger log is unavailable: {0}")]
    Log(#[from] LogError),
    #[error("the ledger writer did not post the command within {0:?}")]
    Timeout(Duration),
    #[error("cannot encode the command: {0}")]
    Encode(String),
}

/// The API's handle on the ledger.
#[derive(Clone)]
pub struct LedgerClient {
    log: SharedLog,
    posted: Posted,
    timeout: Duration,
}

impl LedgerClient {
    pub fn new(log: SharedLog, posted: Posted) -> Self {
        Self { log, posted, timeout: Duration::from_secs(30) }
    }

    /// The log the commands go to.
    pub fn log(&self) -> &SharedLog {
        &self.log
    }

    /// The `ledger.input` partition of a customer.
    pub fn partition_of(&self, customer: &str) -> u32 {
        partition_for(customer.as_bytes(), self.log.partition_count())
    }

    /// Appends `input` to `ledger.input` under its customer's partition and returns once the
    /// partition's writer has posted it (or decided it posts nothing, e.g. an idempotent replay).
    pub async fn submit(&self, input: &LedgerInput) -> Result<(), SubmitError> {
        let key = input.customer_id().as_bytes().to_vec();
        let partition = partition_for(&key, self.log.partition_count());
        let value = serde_json::to_vec(input).map_err(|e| SubmitError::Encode(e.to_string()))?;
        let offset = self.log.append(Topic::LedgerInput, partition, vec![(key, value)]).await?;
        if self.posted.wait_input(partition, input.customer_id(), offset, self.timeout).await {
            Ok(())
        } else {
            Err(SubmitError::Timeout(self.timeout))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::Op;

    const INTERVAL: Duration = Duration::from_millis(5);

    fn store() -> (tempfile::TempDir, SharedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&format!("embedded:{}", dir.path().join("store").display())).unwrap();
        (dir, store)
    }

    async fn set_progress(store: &dyn Store, partition: u32, next_offset: u64) {
        let progress = PartitionProgress { next_offset, epoch: 1, batch_start: 0 };
        let op = Op::put_doc(Table::Offsets, PartitionProgress::key(partition), &progress).unwrap();
        store.write(vec![op]).await.unwrap();
    }

    #[tokio::test]
    async fn a_wait_is_released_by_the_progress_another_process_committed() {
        let (_dir, store) = store();
        set_progress(store.as_ref(), 1, 5).await;
        let posted = Posted::follow_store(store.clone(), 2, INTERVAL);
        assert!(posted.wait(1, 4, Duration::from_secs(5)).await, "offset 4 is below next_offset 5");
        assert_eq!(posted.applied(1), 5);
        assert!(!posted.wait(1, 5, Duration::from_millis(50)).await, "offset 5 is not posted yet");
        let waiting = tokio::spawn({
            let posted = posted.clone();
            async move { posted.wait(1, 5, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        set_progress(store.as_ref(), 1, 6).await;
        assert!(waiting.await.unwrap(), "released once the writer's commit covers offset 5");
        assert!(!posted.wait(0, 0, Duration::from_millis(50)).await, "partition 0 has no progress");
        assert_eq!(posted.applied(0), 0, "a partition without progress stays at 0");
    }

    #[tokio::test]
    async fn following_another_process_a_command_waits_for_its_customers_ledger_too() {
        // ScyllaDB commits the progress record before each customer's part of the batch.
        let (_dir, store) = store();
        let ledger = |applied_offset| LedgerState { applied_offset, ..LedgerState::new("cust_1") };
        store.write(vec![Op::put_doc(Table::Ledger, "cust_1", &ledger(3)).unwrap()]).await.unwrap();
        set_progress(store.as_ref(), 1, 6).await;
        let posted = Posted::follow_store(store.clone(), 2, INTERVAL);
        assert!(
            !posted.wait_input(1, "cust_1", 5, Duration::from_millis(100)).await,
            "the partition's progress covers offset 5, the customer's ledger does not yet"
        );
        let waiting = tokio::spawn({
            let posted = posted.clone();
            async move { posted.wait_input(1, "cust_1", 5, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.write(vec![Op::put_doc(Table::Ledger, "cust_1", &ledger(6)).unwrap()]).await.unwrap();
        assert!(waiting.await.unwrap(), "released once the customer's ledger is past offset 5");
        // In-process, the writer publishes after its whole batch: the partition is enough.
        let local = Posted::new(2);
        local.publish(1, 6);
        assert!(local.wait_input(1, "cust_1", 5, Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn the_store_is_read_only_while_someone_waits() {
        let (_dir, store) = store();
        let posted = Posted::follow_store(store.clone(), 2, INTERVAL);
        set_progress(store.as_ref(), 0, 3).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(posted.applied(0), 0, "nobody waited, so nothing was read");
        assert!(posted.wait(0, 2, Duration::from_secs(5)).await);
        assert_eq!(posted.applied(0), 3);
    }

    #[tokio::test]
    async fn the_follower_ends_with_the_last_posted() {
        let (_dir, store) = store();
        let posted = Posted::follow_store(store.clone(), 1, INTERVAL);
        assert_eq!(Arc::strong_count(&store), 3, "the follower and the Posted hold the store");
        let other = posted.clone();
        drop(posted);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(Arc::strong_count(&store), 3, "a clone is still alive");
        drop(other);
        for _ in 0..100 {
            if Arc::strong_count(&store) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the follower did not end");
    }

    #[tokio::test]
    async fn in_process_publication_still_releases_waiters() {
        let posted = Posted::new(2);
        let waiting = tokio::spawn({
            let posted = posted.clone();
            async move { posted.wait(0, 7, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        posted.publish(0, 8);
        assert!(waiting.await.unwrap());
        posted.publish(0, 2);
        assert_eq!(posted.applied(0), 8, "progress never moves back");
    }
}
