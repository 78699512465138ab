//! The store and the log a process runs on, opened from their URLs (`embedded:<dir>`,
//! `kafka://…`, `scylla://…`) or laid out in one data directory for `drawdown serve`.

use anyhow::Context;
use eventlog::{LogOptions, SharedLog};
use ownership::{LeaseOptions, Ownership};
use std::path::Path;
use store::SharedStore;

/// The two backends every role needs. Cloning shares them (tests run several roles over one
/// embedded pair in one process).
#[derive(Clone)]
pub struct Backends {
    pub store: SharedStore,
    pub log: SharedLog,
}

impl Backends {
    /// Connects to the backends named by `log_url` and `store_url`; `partitions` is the partition
    /// count of each topic the log creates (and checks, where it already exists).
    pub async fn connect(log_url: &str, store_url: &str, partitions: u32) -> anyhow::Result<Self> {
        let store = store::connect(store_url)
            .await
            .with_context(|| format!("connecting to the store at {store_url}"))?;
        let options = LogOptions { partitions, ..LogOptions::default() };
        let log = eventlog::connect(log_url, options)
            .await
            .with_context(|| format!("connecting to the log at {log_url}"))?;
        Ok(Self { store, log })
    }

    /// How this process owns partitions: every one when it is alone on its log, through leases
    /// in the store when the log is shared.
    pub fn ownership(&self, lease: &LeaseOptions) -> Ownership {
        let partitions = self.log.partition_count();
        if self.log.shared() {
            Ownership::Leases { store: self.store.clone(), partitions, options: lease.clone() }
        } else {
            Ownership::Exclusive { partitions }
        }
    }

    /// The embedded pair of `drawdown serve`: `<data_dir>/store` and `<data_dir>/log`.
    pub async fn embedded(data_dir: &Path, partitions: u32) -> anyhow::Result<Self> {
        Self::connect(&embedded_log_url(data_dir), &embedded_store_url(data_dir), partitions).await
    }
}

/// The URL of the embedded store in a data directory (`serve`, `store`).
pub fn embedded_store_url(data_dir: &Path) -> String {
    format!("embedded:{}", data_dir.join("store").display())
}

/// The URL of the embedded log in a data directory (`serve`).
pub fn embedded_log_url(data_dir: &Path) -> String {
    format!("embedded:{}", data_dir.join("log").display())
}
