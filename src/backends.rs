//! The store and the log a process runs on, opened from their URLs (`embedded:<dir>`,
//! `kafka://…`, `scylla://…`) or laid out in one data directory for `drawdown serve`.
//!
//! Each environment (`test`, `live`) has its own store and log, so they share no data and a
//! test backlog never delays live usage ([`environment_url`]): the URLs a process is given are
//! the test environment's, and the live environment's are derived from them.

use anyhow::Context;
use api::auth::Environment;
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

    /// [`Backends::connect`] to `environment`'s store and log, derived from the test
    /// environment's URLs by [`environment_url`].
    pub async fn connect_environment(
        log_url: &str,
        store_url: &str,
        partitions: u32,
        environment: Environment,
    ) -> anyhow::Result<Self> {
        let log_url = environment_url(log_url, environment)?;
        let store_url = environment_url(store_url, environment)?;
        Self::connect(&log_url, &store_url, partitions).await
    }

    /// Both environments' backends, test first, from the test environment's URLs.
    pub async fn connect_environments(
        log_url: &str,
        store_url: &str,
        partitions: u32,
    ) -> anyhow::Result<[Self; 2]> {
        let test = Self::connect_environment(log_url, store_url, partitions, Environment::Test).await?;
        let live = Self::connect_environment(log_url, store_url, partitions, Environment::Live).await?;
        Ok([test, live])
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

/// The Unix socket on which `drawdown serve` serves its data directory's stores.
pub fn store_socket(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("store.sock")
}

/// The URL of the embedded log in a data directory (`serve`).
pub fn embedded_log_url(data_dir: &Path) -> String {
    format!("embedded:{}", data_dir.join("log").display())
}

/// The URL of `environment`'s store or log, given the test environment's `url` (the one a process
/// is configured with). The test environment uses `url` itself, so a data directory from before
/// environments existed is the test environment's. The live environment's lies beside it:
/// - `embedded:<dir>/<name>` → `embedded:<dir>/live/<name>`;
/// - `scylla://hosts/<keyspace>` → `scylla://hosts/<keyspace>_live`;
/// - `http://host:port` (a store server) → `http://host:port/live`;
/// - `kafka://hosts?prefix=<p>` → `kafka://hosts?prefix=<p>live.`.
pub fn environment_url(url: &str, environment: Environment) -> anyhow::Result<String> {
    if environment == Environment::Test {
        return Ok(url.to_string());
    }
    if let Some(rest) = url.strip_prefix("scylla://") {
        let (base, query) = rest.split_once('?').map_or((rest, None), |(b, q)| (b, Some(q)));
        let base = format!("scylla://{base}_live");
        return Ok(query.map_or(base.clone(), |q| format!("{base}?{q}")));
    }
    if url.starts_with("http://") {
        return Ok(format!("{}/live", url.trim_end_matches('/')));
    }
    if let Some(rest) = url.strip_prefix("kafka://") {
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut prefixed = false;
        let mut params: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.strip_prefix("prefix=") {
                Some(prefix) => {
                    prefixed = true;
                    format!("prefix={prefix}live.")
                }
                None => p.to_string(),
            })
            .collect();
        if !prefixed {
            params.push("prefix=live.".to_string());
        }
        return Ok(format!("kafka://{hosts}?{}", params.join("&")));
    }
    let path = Path::new(url.strip_prefix("embedded:").unwrap_or(url));
    anyhow::ensure!(!url.contains("://"), "no live environment can be derived from `{url}`");
    let name = path.file_name().with_context(|| format!("`{url}` names no directory"))?;
    let parent = path.parent().unwrap_or(Path::new(""));
    Ok(format!("embedded:{}", parent.join("live").join(name).display()))
}

#[cfg(test)]
mod environment_tests {
    use super::*;

    #[test]
    fn the_live_environment_lies_beside_the_test_one() {
        let live = |url: &str| environment_url(url, Environment::Live).unwrap();
        assert_eq!(environment_url("embedded:/d/store", Environment::Test).unwrap(), "embedded:/d/store");
        assert_eq!(live("embedded:/d/store"), "embedded:/d/live/store");
        assert_eq!(live("/d/log"), "embedded:/d/live/log");
        assert_eq!(
            live("scylla://a:9042,b:9042/billing?replication=3"),
            "scylla://a:9042,b:9042/billing_live?replication=3"
        );
        assert_eq!(live("http://127.0.0.1:8090/"), "http://127.0.0.1:8090/live");
        assert_eq!(live("kafka://k:9092"), "kafka://k:9092?prefix=live.");
        assert_eq!(
            live("kafka://k:9092?prefix=prod.&replication=3"),
            "kafka://k:9092?prefix=prod.live.&replication=3"
        );
        assert!(environment_url("redis://x", Environment::Live).is_err());
    }
}
