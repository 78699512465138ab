//! The catalog change feed: the API announces customer and product changes, and every cache of
//! subscriptions or products (rater workers, ledger writers) drops what changed. In one process
//! it is a broadcast channel; a receiver that lagged behind clears its whole cache.

use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A customer's document (subscriptions, external id) changed.
    Customer(String),
    /// A product's document (versions, default) changed.
    Product(String),
}

#[derive(Clone)]
pub struct CatalogChanges {
    tx: broadcast::Sender<Change>,
}

impl Default for CatalogChanges {
    fn default() -> Self {
        Self::new()
    }
}

impl CatalogChanges {
    pub fn new() -> Self {
        Self { tx: broadcast::channel(4096).0 }
    }

    pub fn customer_changed(&self, id: &str) {
        let _ = self.tx.send(Change::Customer(id.to_string()));
    }

    pub fn product_changed(&self, id: &str) {
        let _ = self.tx.send(Change::Product(id.to_string()));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}
