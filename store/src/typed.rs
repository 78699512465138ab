//! JSON documents on top of raw records: the services store serde types, never bytes.

use crate::model::{Expect, Op, Record, StoreError, Table};
use crate::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc<T> {
    pub key: String,
    pub revision: u64,
    pub value: T,
}

impl<T> Doc<T> {
    /// The precondition that this document is unchanged since it was read.
    pub fn unchanged(&self) -> Expect {
        Expect::Revision(self.revision)
    }
}

pub fn decode<T: DeserializeOwned>(table: Table, record: Record) -> Result<Doc<T>, StoreError> {
    let value = serde_json::from_slice(&record.doc).map_err(|e| StoreError::Corrupt {
        table,
        key: record.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Doc { key: record.key, revision: record.revision, value })
}

impl Op {
    /// A put of `value` as JSON, with no precondition and no unique keys yet.
    pub fn put_doc<T: Serialize>(table: Table, key: impl Into<String>, value: &T) -> Result<Op, StoreError> {
        let doc =
            serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encode {table}: {e}")))?;
        Ok(Op::Put { table, key: key.into(), doc, expect: Expect::Any, unique: Vec::new() })
    }
}

/// Typed reads for every store.
pub async fn get_doc<T: DeserializeOwned>(
    store: &dyn Store,
    table: Table,
    key: &str,
) -> Result<Option<Doc<T>>, StoreError> {
    store.get(table, key).await?.map(|r| decode(table, r)).transpose()
}

/// Every document of `table` under `prefix`, in key order.
pub async fn list_docs<T: DeserializeOwned>(
    store: &dyn Store,
    table: Table,
    prefix: &str,
) -> Result<Vec<Doc<T>>, StoreError> {
    let listing = store.list(table, prefix, crate::ListRange::ALL).await?;
    listing.records.into_iter().map(|r| decode(table, r)).collect()
}

/// The document holding `value` under the unique index `index`, if any.
pub async fn find_doc<T: DeserializeOwned>(
    store: &dyn Store,
    table: Table,
    index: &str,
    value: &str,
) -> Result<Option<Doc<T>>, StoreError> {
    match store.find_unique(table, index, value).await? {
        Some(key) => get_doc(store, table, &key).await,
        None => Ok(None),
    }
}
