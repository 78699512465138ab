//! Helpers every handler uses over the store: load-or-404, optimistic read-modify-write with
//! retry, and paging of filtered listings.

use crate::error::ApiError;
use schemas::wire::{Page, PageRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use store::typed::get_doc;
use store::{Doc, Op, Store, StoreError, Table};

/// How often a read-modify-write is retried when another request changed the document first.
const MAX_ATTEMPTS: usize = 16;

/// The document or a 404 naming it.
pub async fn load<T: DeserializeOwned>(
    store: &dyn Store,
    table: Table,
    kind: &str,
    key: &str,
) -> Result<Doc<T>, ApiError> {
    get_doc(store, table, key).await?.ok_or_else(|| ApiError::not_found(kind, key))
}

/// What a modification wants written: the changed document, its unique keys and other
/// operations that must commit with it.
pub struct Change<R> {
    pub unique: Vec<(&'static str, String)>,
    pub also: Vec<Op>,
    pub result: R,
}

impl<R> Change<R> {
    pub fn new(result: R) -> Self {
        Self { unique: Vec::new(), also: Vec::new(), result }
    }

    pub fn unique(mut self, index: &'static str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.unique.push((index, v.to_string()));
        }
        self
    }

    pub fn also(mut self, ops: Vec<Op>) -> Self {
        self.also.extend(ops);
        self
    }
}

/// Loads `key`, applies `edit` to it and writes it back conditionally on its revision, together
/// with the change's other operations; retried from the read when a concurrent write won.
pub async fn modify<T, R>(
    store: &dyn Store,
    table: Table,
    kind: &str,
    key: &str,
    mut edit: impl FnMut(&mut T) -> Result<Change<R>, ApiError>,
) -> Result<R, ApiError>
where
    T: DeserializeOwned + Serialize,
{
    for _ in 0..MAX_ATTEMPTS {
        let mut doc: Doc<T> = load(store, table, kind, key).await?;
        let change = edit(&mut doc.value)?;
        let mut put = Op::put_doc(table, key, &doc.value)?.expect(doc.unchanged());
        for (index, value) in change.unique {
            put = put.unique(index, value);
        }
        let mut batch = vec![put];
        batch.extend(change.also);
        match store.write(batch).await {
            Ok(()) => return Ok(change.result),
            Err(StoreError::Conflict { table: t, key: k, .. }) if t == table && k == key => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(format!("{kind} `{key}` is being changed by many requests at once; retry")))
}

/// Clamps a page request to `1..=100` items.
pub fn clamp(page: PageRequest) -> PageRequest {
    PageRequest { offset: page.offset, limit: page.limit.clamp(1, PageRequest::MAX_LIMIT) }
}

/// One page of an already filtered list.
pub fn paginate<T, U>(items: Vec<T>, page: PageRequest, view: impl Fn(T) -> U) -> Page<U> {
    let page = clamp(page);
    let total_count = items.len();
    let items = items.into_iter().skip(page.offset).take(page.limit).map(view).collect();
    Page { items, total_count, limit: page.limit, offset: page.offset }
}

/// A filtered page of every document in `table`.
pub async fn list_page<T: DeserializeOwned>(
    store: &dyn Store,
    table: Table,
    page: PageRequest,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, ApiError> {
    let all = store::typed::list_docs::<T>(store, table, "").await?;
    let matching = all.into_iter().map(|d| d.value).filter(|v| keep(v)).collect();
    Ok(paginate(matching, page, |v| v))
}

/// Stores a new document under a fresh key, claiming its `external_id` if it has one.
pub async fn insert<T: Serialize>(
    store: &dyn Store,
    table: Table,
    key: &str,
    value: &T,
    external_id: Option<&str>,
) -> Result<(), ApiError> {
    let mut op = Op::put_doc(table, key, value)?.expect(store::Expect::Absent);
    if let Some(ext) = external_id {
        op = op.unique("external_id", ext);
    }
    store.write(vec![op]).await.map_err(Into::into)
}
