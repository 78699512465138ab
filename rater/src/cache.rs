//! The catalog as one rater worker sees it: customers (their subscriptions) and products (their
//! versions), loaded from the store on first use.
//!
//! Each worker task owns its cache, so there are no locks, and nothing needs to tell it about
//! changes, which is what lets raters run in other processes than the API:
//! - Customers change (subscriptions, external id). Before rating a batch the worker calls
//!   [`CatalogCache::refresh_customers`] with the batch's customers: one `get_many` from the
//!   store, and every cached customer whose stored revision moved is replaced (or dropped, if it
//!   is gone). A subscription answered 201 before an event was accepted is therefore in the store
//!   before that event's batch is read, and the event is rated with it.
//! - Published product versions are immutable and versions are only ever added, so a cached
//!   product is right for every version it holds; a pinned version it does not hold yet triggers
//!   a reload.

use schemas::catalog::Product;
use schemas::customer::Customer;
use std::collections::HashMap;
use std::sync::Arc;
use store::typed::{decode, get_doc};
use store::{Store, StoreError, Table};

#[derive(Default)]
pub struct CatalogCache {
    /// By id: the store revision the cached document was read at, and the document.
    customers: HashMap<String, (u64, Arc<Customer>)>,
    products: HashMap<String, Arc<Product>>,
}

impl CatalogCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Brings the cached customers among `ids` up to date with the store, in one read. Ids not
    /// cached yet are cached now; a customer that is gone or unreadable is dropped (its lookup then
    /// reports it).
    pub async fn refresh_customers(&mut self, store: &dyn Store, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        for (id, record) in ids.iter().zip(store.get_many(Table::Customers, ids).await?) {
            let Some(record) = record else {
                self.customers.remove(id);
                continue;
            };
            if self.customers.get(id).is_some_and(|(revision, _)| *revision == record.revision) {
                continue;
            }
            match decode::<Customer>(Table::Customers, record) {
                Ok(doc) => {
                    self.customers.insert(id.clone(), (doc.revision, Arc::new(doc.value)));
                }
                Err(_) => {
                    self.customers.remove(id);
                }
            }
        }
        Ok(())
    }

    /// The customer `id`, from the cache or the store; `None` if there is no such customer
    /// (absence is not cached: a customer that is gone stays an error to report).
    pub async fn customer(
        &mut self,
        store: &dyn Store,
        id: &str,
    ) -> Result<Option<Arc<Customer>>, StoreError> {
        if let Some((_, customer)) = self.customers.get(id) {
            return Ok(Some(Arc::clone(customer)));
        }
        let Some(doc) = get_doc::<Customer>(store, Table::Customers, id).await? else {
            return Ok(None);
        };
        let customer = Arc::new(doc.value);
        self.customers.insert(id.to_string(), (doc.revision, Arc::clone(&customer)));
        Ok(Some(customer))
    }

    /// The product `id` holding `version`, from the cache or (when absent, or when the cached
    /// document lacks that version) the store; `None` if the store has no such version either.
    pub async fn product(
        &mut self,
        store: &dyn Store,
        id: &str,
        version: u32,
    ) -> Result<Option<Arc<Product>>, StoreError> {
        if let Some(product) = self.products.get(id) {
            if product.version(version).is_some() {
                return Ok(Some(Arc::clone(product)));
            }
        }
        let Some(doc) = get_doc::<Product>(store, Table::Products, id).await? else {
            self.products.remove(id);
            return Ok(None);
        };
        let product = Arc::new(doc.value);
        self.products.insert(id.to_string(), Arc::clone(&product));
        Ok(product.version(version).is_some().then_some(product))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::version;
    use schemas::ids::{CustomerId, ProductId};
    use serde_json::json;
    use store::Op;

    fn customer(name: &str) -> Customer {
        Customer {
            id: CustomerId::from_raw("cust_1"),
            external_id: None,
            name: name.into(),
            email: None,
            metadata: None,
            subscriptions: Vec::new(),
            external_accounts: None,
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            accounts: Vec::new(),
            test_clock: None,
        }
    }

    fn product(versions: &[u32]) -> Product {
        Product {
            id: ProductId::from_raw("prod_1"),
            code: "p".into(),
            name: "P".into(),
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            versions: versions.iter().map(|n| version(*n, json!([]))).collect(),
            default_version: Some(1),
            deleted_at: None,
        }
    }

    async fn put<T: serde::Serialize>(store: &dyn Store, table: Table, key: &str, value: &T) {
        store.write(vec![Op::put_doc(table, key, value).unwrap()]).await.unwrap();
    }

    #[tokio::test]
    async fn a_cached_customer_is_replaced_when_a_refresh_finds_a_newer_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(dir.path().to_str().unwrap()).unwrap();
        let store = store.as_ref();
        let mut cache = CatalogCache::new();
        assert!(cache.customer(store, "cust_1").await.unwrap().is_none());

        put(store, Table::Customers, "cust_1", &customer("before")).await;
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "before");
        put(store, Table::Customers, "cust_1", &customer("after")).await;
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "before", "cached");
        // A refresh of other customers leaves it alone.
        cache.refresh_customers(store, &["cust_2".to_string()]).await.unwrap();
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "before");
        cache.refresh_customers(store, &["cust_1".to_string()]).await.unwrap();
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "after");

        // Not cached yet: the refresh caches it.
        put(store, Table::Customers, "cust_3", &customer("three")).await;
        cache.refresh_customers(store, &["cust_3".to_string()]).await.unwrap();
        put(store, Table::Customers, "cust_3", &customer("three again")).await;
        assert_eq!(cache.customer(store, "cust_3").await.unwrap().unwrap().name, "three");

        // Gone from the store: dropped, and the lookup reports it.
        store.write(vec![Op::delete(Table::Customers, "cust_1")]).await.unwrap();
        cache.refresh_customers(store, &["cust_1".to_string()]).await.unwrap();
        assert!(cache.customer(store, "cust_1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_product_is_reloaded_only_when_a_pinned_version_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(dir.path().to_str().unwrap()).unwrap();
        let store = store.as_ref();
        let mut cache = CatalogCache::new();
        put(store, Table::Products, "prod_1", &product(&[1])).await;
        assert!(cache.product(store, "prod_1", 1).await.unwrap().is_some());
        assert!(cache.product(store, "prod_1", 2).await.unwrap().is_none());

        put(store, Table::Products, "prod_1", &product(&[1, 2])).await;
        let reloaded = cache.product(store, "prod_1", 2).await.unwrap().unwrap();
        assert_eq!(reloaded.versions.len(), 2);

        // Versions never change once published, so a cached product stays as it is.
        let mut renamed = product(&[1, 2]);
        renamed.name = "Renamed".into();
        put(store, Table::Products, "prod_1", &renamed).await;
        assert_eq!(cache.product(store, "prod_1", 1).await.unwrap().unwrap().name, "P", "cached");
    }
}
