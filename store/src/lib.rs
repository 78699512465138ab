//! Durable state behind one narrow trait, [`Store`], so the services never know which backend
//! they run on.
//!
//! - [`model`]: tables, records, write batches with preconditions and unique keys, errors.
//! - [`typed`]: JSON documents on top of records (`get_doc`, `Op::put_doc`).
//! - [`embedded`]: the default backend, a crash-safe transactional file (redb).
//! - [`conformance`]: the contract as a test suite, generic over the backend; every backend runs it.
//!
//! The contract: a [`WriteBatch`] is applied atomically and durably (all or nothing, on disk when
//! `write` returns), its preconditions are checked inside the same transaction, and unique keys
//! are claimed and released with the records that own them.

pub mod conformance;
pub mod embedded;
pub mod model;
pub mod typed;

pub use embedded::EmbeddedStore;
pub use model::{Expect, ListRange, Listing, Op, Record, StoreError, Table, UniqueKey, WriteBatch};
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
    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(table, key).await?);
        }
        Ok(out)
    }

    /// Records whose key starts with `prefix`, in key order, with the total number that match.
    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError>;

    /// The key of the record in `table` that holds `value` under the unique index `index`.
    async fn find_unique(&self, table: Table, index: &str, value: &str)
        -> Result<Option<String>, StoreError>;

    /// Applies every operation of `batch` atomically and durably, or none of them.
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
