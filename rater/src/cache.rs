//! The catalog as one rater worker sees it: customers (their subscriptions) and products (their
//! versions), loaded from the store on first use and kept until the change feed says otherwise.
//!
//! Each worker task owns its cache, so there are no locks. Published versions are immutable and
//! versions are only ever added, so a cached product is right for every version it holds; a
//! pinned version it does not hold yet triggers a reload. Customers change (subscriptions,
//! external id), so they are evicted on [`Change::Customer`]. A lagged feed clears everything.

use crate::catalog::Change;
use schemas::catalog::Product;
use schemas::customer::Customer;
use std::collections::HashMap;
use std::sync::Arc;
use store::typed::get_doc;
use store::{Store, StoreError, Table};

#[derive(Default)]
pub struct CatalogCache {
    customers: HashMap<String, Arc<Customer>>,
    products: HashMap<String, Arc<Product>>,
}

impl CatalogCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops what `change` names.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Customer(id) => {
                self.customers.remove(id);
            }
            Change::Product(id) => {
                self.products.remove(id);
            }
        }
    }

    /// Drops everything (the change feed lagged: some changes were missed).
    pub fn clear(&mut self) {
        self.customers.clear();
        self.products.clear();
    }

    /// The customer `id`, from the cache or the store; `None` if there is no such customer
    /// (absence is not cached: a customer that is gone stays an error to report).
    pub async fn customer(
        &mut self,
        store: &dyn Store,
        id: &str,
    ) -> Result<Option<Arc<Customer>>, StoreError> {
        if let Some(customer) = self.customers.get(id) {
            return Ok(Some(Arc::clone(customer)));
        }
        let Some(doc) = get_doc::<Customer>(store, Table::Customers, id).await? else {
            return Ok(None);
        };
        let customer = Arc::new(doc.value);
        self.customers.insert(id.to_string(), Arc::clone(&customer));
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
    async fn a_cached_customer_is_kept_until_its_change_is_announced() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(dir.path().to_str().unwrap()).unwrap();
        let store = store.as_ref();
        let mut cache = CatalogCache::new();
        assert!(cache.customer(store, "cust_1").await.unwrap().is_none());

        put(store, Table::Customers, "cust_1", &customer("before")).await;
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "before");
        put(store, Table::Customers, "cust_1", &customer("after")).await;
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "before", "cached");
        cache.apply(&Change::Product("cust_1".into()));
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "before");
        cache.apply(&Change::Customer("cust_1".into()));
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "after");

        put(store, Table::Customers, "cust_1", &customer("again")).await;
        cache.clear();
        assert_eq!(cache.customer(store, "cust_1").await.unwrap().unwrap().name, "again");
    }

    #[tokio::test]
    async fn a_product_is_reloaded_when_a_pinned_version_is_missing_or_it_changed() {
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

        let mut renamed = product(&[1, 2]);
        renamed.name = "Renamed".into();
        put(store, Table::Products, "prod_1", &renamed).await;
        assert_eq!(cache.product(store, "prod_1", 1).await.unwrap().unwrap().name, "P", "cached");
        cache.apply(&Change::Product("prod_1".into()));
        assert_eq!(cache.product(store, "prod_1", 1).await.unwrap().unwrap().name, "Renamed");
    }
}
