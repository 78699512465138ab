//! Connected accounts as tenants (`semantics.md` §9): a request with `X-CREDYT-ACCOUNT: <id>`
//! sees and changes only that connected account's data inside its key's environment; without
//! it, the platform's own.
//!
//! Every handler reaches the store through [`Scoped`], a [`Store`] that:
//! - records, beside each document of an owned table (customers, products, vendors, test
//!   clocks) a connected account writes, its owner (`Table::Meta`, `owner/{table}/{id}`) and an
//!   entry of the owner's index (`owned/{account}/{table}/{id}`), in the same atomic write;
//! - answers a read of an owned document only to its owner (a document with no owner entry is
//!   the platform's), and lists an account's documents from its index;
//! - qualifies unique values (`external_id`, product `code`) with the account, so two tenants
//!   may use the same external id.
//!
//! Ids are global (UUIDv7), so the pipeline (raters, writers, scheduler) works on them unscoped;
//! the ledger, transactions and events of a customer are reached only after the customer itself
//! was read through the scope, and event listings keep the events of visible customers only.
//! Custom assets belong to the platform: a connected account sees only ISO currencies and
//! creating an asset there is a 422 (not supported yet).

use crate::error::ApiError;
use crate::AppState;
use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::sync::Arc;
use store::{ListRange, Listing, Op, Record, SharedStore, Store, StoreError, Table, WriteBatch};

/// The header naming the connected account a request acts for.
pub const HEADER: &str = "x-credyt-account";

/// Whose data a request reaches: the platform's (`None`) or a connected account's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tenant(pub Option<Arc<str>>);

/// Tables whose documents belong to one account.
const OWNED: [Table; 4] = [Table::Customers, Table::Products, Table::Vendors, Table::TestClocks];

/// Separates an account from a unique value it qualifies (a control character: not in ids).
const QUALIFIER: char = '\u{1f}';

fn owner_key(table: Table, id: &str) -> String {
    format!("owner/{}/{id}", table.name())
}

fn owned_prefix(account: &str, table: Table) -> String {
    format!("owned/{account}/{}/", table.name())
}

/// A store as one tenant sees it.
pub struct Scoped {
    inner: SharedStore,
    account: Option<Arc<str>>,
}

impl Scoped {
    pub fn new(inner: SharedStore, tenant: &Tenant) -> Self {
        Self { inner, account: tenant.0.clone() }
    }

    fn owned(table: Table) -> bool {
        OWNED.contains(&table)
    }

    /// Custom assets are the platform's: a connected account sees none.
    fn hidden(&self, table: Table) -> bool {
        table == Table::Assets && self.account.is_some()
    }

    fn qualified(&self, value: &str) -> String {
        match &self.account {
            None => value.to_string(),
            Some(account) => format!("{account}{QUALIFIER}{value}"),
        }
    }

    /// Which of `ids` (of an owned table) this tenant may see.
    async fn visible(&self, table: Table, ids: &[&str]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| owner_key(table, id)).collect();
        let owners = self.inner.get_many(Table::Meta, &keys).await?;
        owners
            .into_iter()
            .map(|owner| {
                let owner = owner.map(|r| serde_json::from_slice::<String>(&r.doc)).transpose();
                let owner = owner.map_err(|e| StoreError::Backend(format!("an owner entry: {e}")))?;
                Ok(owner.as_deref() == self.account.as_deref())
            })
            .collect()
    }

    fn keep_visible(records: Vec<Option<Record>>, visible: &[bool]) -> Vec<Option<Record>> {
        records.into_iter().zip(visible).map(|(r, v)| r.filter(|_| *v)).collect()
    }
}

#[async_trait]
impl Store for Scoped {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Record>, StoreError> {
        if self.hidden(table) {
            return Ok(None);
        }
        let record = self.inner.get(table, key).await?;
        if !Self::owned(table) || record.is_none() {
            return Ok(record);
        }
        let visible = self.visible(table, &[key]).await?.first().copied().unwrap_or(false);
        Ok(record.filter(|_| visible))
    }

    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        if self.hidden(table) {
            return Ok(vec![None; keys.len()]);
        }
        let records = self.inner.get_many(table, keys).await?;
        if !Self::owned(table) {
            return Ok(records);
        }
        let ids: Vec<&str> = keys.iter().map(String::as_str).collect();
        let visible = self.visible(table, &ids).await?;
        Ok(Self::keep_visible(records, &visible))
    }

    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError> {
        if self.hidden(table) {
            return Ok(Listing { records: Vec::new(), total: 0 });
        }
        if !Self::owned(table) {
            return self.inner.list(table, prefix, range).await;
        }
        let records: Vec<Record> = match &self.account {
            // A connected account's documents, from its index.
            Some(account) => {
                let base = owned_prefix(account, table);
                let entries =
                    self.inner.list(Table::Meta, &format!("{base}{prefix}"), ListRange::ALL).await?;
                let ids: Vec<String> = entries
                    .records
                    .into_iter()
                    .filter_map(|r| r.key.strip_prefix(base.as_str()).map(str::to_string))
                    .collect();
                self.inner.get_many(table, &ids).await?.into_iter().flatten().collect()
            }
            // The platform's: every document without an owner.
            None => {
                let all = self.inner.list(table, prefix, ListRange::ALL).await?.records;
                let ids: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
                let visible = self.visible(table, &ids).await?;
                all.into_iter().zip(visible).filter(|(_, v)| *v).map(|(r, _)| r).collect()
            }
        };
        let total = records.len();
        let records =
            records.into_iter().skip(range.offset).take(range.limit.unwrap_or(usize::MAX)).collect();
        Ok(Listing { records, total })
    }

    async fn find_unique(
        &self,
        table: Table,
        index: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        if self.hidden(table) {
            return Ok(None);
        }
        self.inner.find_unique(table, index, &self.qualified(value)).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut scoped = Vec::with_capacity(batch.len());
        for op in batch {
            match op {
                Op::Put { table, key, doc, expect, mut unique } => {
                    if self.hidden(table) {
                        return Err(StoreError::Backend("a connected account cannot store assets".into()));
                    }
                    for claim in &mut unique {
                        claim.value = self.qualified(&claim.value);
                    }
                    if let (true, Some(account)) = (Self::owned(table), &self.account) {
                        let owner = Op::put_doc(Table::Meta, owner_key(table, &key), &account.as_ref())?;
                        let entry = format!("{}{key}", owned_prefix(account, table));
                        scoped.push(owner);
                        scoped.push(Op::put_doc(Table::Meta, entry, &serde_json::json!({}))?);
                    }
                    scoped.push(Op::Put { table, key, doc, expect, unique });
                }
                delete => scoped.push(delete),
            }
        }
        self.inner.write(scoped).await
    }
}

/// The request's [`AppState`] with its store scoped to the request's tenant (the extractor every
/// handler takes).
pub struct Scope(pub AppState);

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let tenant = parts.extensions.get::<Tenant>().cloned().unwrap_or_default();
        let mut scoped = state.clone();
        scoped.store = Arc::new(Scoped::new(state.store.clone(), &tenant));
        scoped.tenant = tenant;
        Ok(Scope(scoped))
    }
}

/// Which customers of a listing a scope may see, each looked up once.
#[derive(Default)]
pub struct VisibleCustomers(std::collections::HashMap<String, bool>);

impl VisibleCustomers {
    /// Whether the scope of `store` sees customer `id`.
    pub async fn contains(&mut self, store: &dyn Store, id: &str) -> Result<bool, StoreError> {
        if let Some(known) = self.0.get(id) {
            return Ok(*known);
        }
        let visible = store.get(Table::Customers, id).await?.is_some();
        self.0.insert(id.to_string(), visible);
        Ok(visible)
    }
}

/// Keeps the items whose customer (`customer_of`) the scope of `store` sees.
pub async fn only_visible<T>(
    store: &dyn Store,
    items: Vec<T>,
    customer_of: impl Fn(&T) -> &str,
) -> Result<Vec<T>, StoreError> {
    let mut visible = VisibleCustomers::default();
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if visible.contains(store, customer_of(&item)).await? {
            kept.push(item);
        }
    }
    Ok(kept)
}
