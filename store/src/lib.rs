//! Durable state behind one narrow trait, [`Store`], so the services never know which backend
//! they run on.
//!
//! - [`model`]: tables, records, write batches with preconditions and unique keys, errors.
//! - [`typed`]: JSON documents on top of records (`get_doc`, `Op::put_doc`).
//! - [`embedded`]: the default backend, a crash-safe transactional file (redb).
//! - [`scylla`]: the distributed backend, a ScyllaDB (Cassandra-compatible) cluster.
//! - [`remote`]: a store served over HTTP by another process (`drawdown store`), so processes
//!   share one store without a cluster.
//! - [`conformance`]: the contract as a test suite, generic over the backend; every backend runs it.
//!
//! [`open`] opens the embedded store; [`connect`] opens either, by URL.
//!
//! The contract: a [`WriteBatch`] is applied durably (on disk when `write` returns), its
//! preconditions are checked inside the same transaction as its writes, and unique keys are
//! claimed and released with the records that own them. Atomicity: the embedded store applies a
//! whole batch or nothing. The ScyllaDB backend has no multi-partition transactions: it applies a
//! batch partition by partition, in the order each partition first appears in the batch, each
//! partition all or nothing, and stops at the first partition whose preconditions fail (the
//! partitions before it stay written). Everything one customer owns (its `Ledger` record, its
//! `Transactions`, `WalletAccounts` and `Events`) is one partition, so what the ledger writer
//! posts for a customer is always all or nothing (see [`scylla`] and docs/scylla.md).

pub mod conformance;
pub mod embedded;
pub mod model;
pub mod remote;
pub mod scylla;
pub mod typed;

pub use self::scylla::{ScyllaConfig, ScyllaStore};
pub use embedded::EmbeddedStore;
pub use model::{Expect, ListRange, Listing, Op, Record, StoreError, Table, UniqueKey, WriteBatch};
pub use remote::RemoteStore;
pub use typed::Doc;

use async_trait::async_trait;
use std::sync::Arc;

/// The storage contract. See the crate docs for the guarantees every backend gives.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// One record by key.
    async fn get(&self, table: Table, key: &str) -> Result<Option<Record>, StoreError>;

    /// Many records of one table, in the order of `keys` (`None` where absent), read from one
    /// consistent snapshot where the backend has snapshots. The ledger writer checks a whole
    /// batch of events with one call.
    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError>;

    /// Records whose key starts with `prefix`, in key order, with the total number that match.
    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError>;

    /// At most `limit` records with keys in `[from, to)`, in key order; nothing past them is read
    /// or counted (the scheduler reads what is due this way, `ledger_writer::scheduler`). The
    /// default reads through [`Store::list`] over the keys' common prefix: backends with ordered
    /// keys override it.
    async fn range(
        &self,
        table: Table,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let common = from.bytes().zip(to.bytes()).take_while(|(a, b)| a == b).count();
        let prefix = from.get(..common).unwrap_or_default();
        let listing = self.list(table, prefix, ListRange::ALL).await?;
        Ok(listing
            .records
            .into_iter()
            .filter(|r| r.key.as_str() >= from && r.key.as_str() < to)
            .take(limit)
            .collect())
    }

    /// The key of the record in `table` that holds `value` under the unique index `index`.
    async fn find_unique(&self, table: Table, index: &str, value: &str)
        -> Result<Option<String>, StoreError>;

    /// Applies the operations of `batch` durably: all or none of them (per partition on a backend
    /// without multi-partition transactions; see the crate docs).
    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError>;
}

/// The store as the services hold it.
pub type SharedStore = Arc<dyn Store>;

/// Opens the backend named by `url`: `embedded:<directory>` (or a bare directory path).
pub fn open(url: &str) -> Result<SharedStore, StoreError> {
    let path = url.strip_prefix("embedded:").unwrap_or(url);
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(StoreError::Backend(format!("unsupported store backend `{scheme}`")));
    }
    Ok(Arc::new(EmbeddedStore::open(path)?))
}

/// Opens the backend named by `url`: `embedded:<directory>` (or a bare directory path, as
/// [`open`]), `scylla://host:port[,host:port...]/keyspace[?replication=N]`, connecting to the
/// cluster and creating or migrating the schema, or `http://host:port`, a store server.
pub async fn connect(url: &str) -> Result<SharedStore, StoreError> {
    if url.starts_with("scylla://") {
        return Ok(Arc::new(ScyllaStore::connect(url).await?));
    }
    if url.starts_with("http://") {
        return Ok(Arc::new(RemoteStore::connect(url)?));
    }
    let url = url.to_string();
    // Opening the file reads and may repair it: off the async workers.
    tokio::task::spawn_blocking(move || open(&url))
        .await
        .map_err(|e| StoreError::Backend(format!("open the embedded store: {e}")))?
}
