//! Configuration. Precedence, highest first: command-line flag, environment variable, config
//! file (`--config`, TOML), built-in default. Every option of `drawdown serve` has a default that
//! works on a laptop; the distributed roles ([`RoleConfig`]) must be told where the log and the
//! store are.

use anyhow::Context;
use ownership::LeaseOptions;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// `drawdown store` listens elsewhere by default, so it runs beside a role on one host.
pub const DEFAULT_STORE_LISTEN: &str = "127.0.0.1:8090";
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Partitions of each log topic: the unit of parallelism of raters and ledger writers. Recorded
/// in the log on first start; changing it later is refused (it would move customers).
pub const DEFAULT_PARTITIONS: u32 = 8;

/// The effective configuration of `drawdown serve`.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A test-mode API key to use instead of a generated one (`DRAWDOWN_API_KEY`).
    pub api_key: Option<String>,
    pub partitions: u32,
    /// The log, when not the embedded one in `data_dir` (`--log kafka://..`: every role in one
    /// process on Kafka, the store still embedded in `data_dir`).
    pub log: Option<String>,
    /// How this process holds partitions of a shared log.
    pub lease: LeaseOptions,
}

/// The effective configuration of a distributed role (`drawdown ingest|rater|ledger-writer|api`).
#[derive(Clone, Debug)]
pub struct RoleConfig {
    pub listen: SocketAddr,
    /// The log backend: `kafka://host:port?prefix=..` or `embedded:<dir>`.
    pub log: String,
    /// The store backend: `scylla://host:port/keyspace`, `http://host:port` (a `drawdown store`)
    /// or `embedded:<dir>`.
    pub store: String,
    /// The test-mode API key (`DRAWDOWN_API_KEY`; the `api` and `ingest` roles).
    pub api_key: Option<String>,
    /// Partitions of each topic, used when the log creates its topics.
    pub partitions: u32,
    /// How this process holds partitions of a shared log (raters and writers).
    pub lease: LeaseOptions,
}

/// The effective configuration of `drawdown store`.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub listen: SocketAddr,
    /// Holds the store in `store/`.
    pub data_dir: PathBuf,
}

impl StoreConfig {
    pub fn resolve(
        listen: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
        file: FileConfig,
    ) -> anyhow::Result<Self> {
        let listen = resolve_listen_or(listen.or(file.listen), DEFAULT_STORE_LISTEN)?;
        let data_dir = data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Ok(Self { listen, data_dir })
    }
}

/// What flags and environment gave a role (clap merges the two), before the file and defaults.
#[derive(Clone, Debug, Default)]
pub struct RoleOverrides {
    pub listen: Option<SocketAddr>,
    pub log: Option<String>,
    pub store: Option<String>,
    pub partitions: Option<u32>,
    pub lease: LeaseOverrides,
}

/// What flags and environment gave the lease options of `serve` or a role.
#[derive(Clone, Debug, Default)]
pub struct LeaseOverrides {
    pub instance_id: Option<String>,
    pub lease_timeout_ms: Option<u64>,
}

/// What a config file may set. `store` is read by the roles only, `data_dir` by `drawdown serve`
/// only, `log` by both (`serve` defaults to the embedded log in `data_dir`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub partitions: Option<u32>,
    pub log: Option<String>,
    pub store: Option<String>,
    pub instance_id: Option<String>,
    pub lease_timeout_ms: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

impl Config {
    /// Merges flags/env (already merged by clap) over the file over the defaults.
    pub fn resolve(
        listen: Option<SocketAddr>,
        data_dir: Option<PathBuf>,
        partitions: Option<u32>,
        api_key: Option<String>,
        log: Option<String>,
        lease: LeaseOverrides,
        file: FileConfig,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            lease: resolve_lease(lease, &file)?,
            log: non_blank(log.or(file.log)),
            listen: resolve_listen(listen.or(file.listen))?,
            data_dir: data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            api_key: non_blank(api_key),
            partitions: resolve_partitions(partitions.or(file.partitions))?,
        })
    }
}

impl Config {
    /// The log: the configured one, or the embedded log in the data directory.
    pub fn log_url(&self) -> String {
        self.log.clone().unwrap_or_else(|| crate::backends::embedded_log_url(&self.data_dir))
    }

    /// The store: always the embedded store in the data directory.
    pub fn store_url(&self) -> String {
        crate::backends::embedded_store_url(&self.data_dir)
    }
}

impl RoleConfig {
    /// Merges flags/env over the file over the defaults; the log and the store have no default.
    pub fn resolve(flags: RoleOverrides, api_key: Option<String>, file: FileConfig) -> anyhow::Result<Self> {
        Ok(Self {
            lease: resolve_lease(flags.lease, &file)?,
            listen: resolve_listen(flags.listen.or(file.listen))?,
            log: required(flags.log.or(file.log), "log", "--log", "DRAWDOWN_LOG")?,
            store: required(flags.store.or(file.store), "store", "--store", "DRAWDOWN_STORE")?,
            api_key: non_blank(api_key),
            partitions: resolve_partitions(flags.partitions.or(file.partitions))?,
        })
    }
}

fn resolve_listen(listen: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    resolve_listen_or(listen, DEFAULT_LISTEN)
}

fn resolve_listen_or(listen: Option<SocketAddr>, default: &str) -> anyhow::Result<SocketAddr> {
    match listen {
        Some(l) => Ok(l),
        None => default.parse().context("default listen address"),
    }
}

fn resolve_partitions(partitions: Option<u32>) -> anyhow::Result<u32> {
    let partitions = partitions.unwrap_or(DEFAULT_PARTITIONS);
    anyhow::ensure!((1..=1024).contains(&partitions), "partitions must be between 1 and 1024");
    Ok(partitions)
}

/// The instance id defaults to the host name: each container or host a replica of its own,
/// the same again after a restart on it.
fn resolve_lease(flags: LeaseOverrides, file: &FileConfig) -> anyhow::Result<LeaseOptions> {
    let instance = non_blank(flags.instance_id.or_else(|| file.instance_id.clone()))
        .or_else(host_name)
        .unwrap_or_else(|| "drawdown".to_string());
    let timeout = match flags.lease_timeout_ms.or(file.lease_timeout_ms) {
        Some(ms) => {
            anyhow::ensure!((100..=600_000).contains(&ms), "lease_timeout_ms must be between 100 and 600000");
            Duration::from_millis(ms)
        }
        None => LeaseOptions::DEFAULT_TIMEOUT,
    };
    Ok(LeaseOptions { instance: instance.trim().to_string(), timeout })
}

fn host_name() -> Option<String> {
    let name =
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok().or_else(|| std::env::var("HOSTNAME").ok());
    non_blank(name).map(|n| n.trim().to_string())
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// A backend URL that must be given one way or another.
fn required(value: Option<String>, key: &str, flag: &str, env: &str) -> anyhow::Result<String> {
    non_blank(value).ok_or_else(|| {
        anyhow::anyhow!("no {key} backend: pass {flag} URL, set {env}, or set `{key}` in the config file")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file: FileConfig =
            toml::from_str("listen = \"0.0.0.0:9000\"\ndata_dir = \"/var/lib/drawdown\"").unwrap();
        let c =
            Config::resolve(None, Some("/tmp/x".into()), None, None, None, LeaseOverrides::default(), file)
                .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let d = Config::resolve(
            None,
            None,
            None,
            Some(" ".into()),
            None,
            LeaseOverrides::default(),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(d.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(d.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(d.api_key, None);
        assert_eq!(d.partitions, DEFAULT_PARTITIONS);
        assert!(Config::resolve(
            None,
            None,
            Some(0),
            None,
            None,
            LeaseOverrides::default(),
            FileConfig::default()
        )
        .is_err());
    }

    #[test]
    fn a_role_takes_its_backends_from_flags_over_the_file() {
        let file: FileConfig =
            toml::from_str("log = \"kafka://k:9092\"\nstore = \"scylla://s:9042/d\"\npartitions = 4")
                .unwrap();
        let flags = RoleOverrides { store: Some("embedded:/tmp/s".into()), ..RoleOverrides::default() };
        let c = RoleConfig::resolve(flags, Some("sk_test_x".into()), file).unwrap();
        assert_eq!(c.log, "kafka://k:9092");
        assert_eq!(c.store, "embedded:/tmp/s");
        assert_eq!(c.partitions, 4);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.api_key.as_deref(), Some("sk_test_x"));
    }

    #[test]
    fn a_role_without_a_log_or_a_store_is_refused_with_the_ways_to_give_one() {
        let no_log = RoleOverrides { store: Some("embedded:/tmp/s".into()), ..RoleOverrides::default() };
        let err = RoleConfig::resolve(no_log, None, FileConfig::default()).unwrap_err().to_string();
        assert!(err.contains("--log") && err.contains("DRAWDOWN_LOG"), "{err}");
        let blank_store = RoleOverrides {
            log: Some("embedded:/tmp/l".into()),
            store: Some(" ".into()),
            ..Default::default()
        };
        let err = RoleConfig::resolve(blank_store, None, FileConfig::default()).unwrap_err().to_string();
        assert!(err.contains("--store"), "{err}");
    }

    #[test]
    fn the_lease_options_come_from_flags_over_the_file_and_default_to_the_host_name() {
        let file: FileConfig = toml::from_str("instance_id = \"rater-0\"\nlease_timeout_ms = 3000").unwrap();
        let lease = resolve_lease(LeaseOverrides::default(), &file).unwrap();
        assert_eq!((lease.instance.as_str(), lease.timeout), ("rater-0", Duration::from_secs(3)));
        let flags = LeaseOverrides { instance_id: Some("rater-1".into()), lease_timeout_ms: Some(500) };
        let lease = resolve_lease(flags, &file).unwrap();
        assert_eq!((lease.instance.as_str(), lease.timeout), ("rater-1", Duration::from_millis(500)));
        let lease = resolve_lease(LeaseOverrides::default(), &FileConfig::default()).unwrap();
        assert_eq!(lease.timeout, LeaseOptions::DEFAULT_TIMEOUT);
        assert_eq!(Some(lease.instance), host_name().or(Some("drawdown".into())));
        let zero = LeaseOverrides { lease_timeout_ms: Some(0), ..LeaseOverrides::default() };
        assert!(resolve_lease(zero, &FileConfig::default()).is_err());
    }

    #[test]
    fn the_store_listens_beside_the_roles_by_default() {
        let c = StoreConfig::resolve(None, None, FileConfig::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_STORE_LISTEN);
        assert_ne!(DEFAULT_STORE_LISTEN, DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
    }
}
