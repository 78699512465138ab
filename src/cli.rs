//! The command line: `drawdown serve` (everything in one process) and the distributed roles
//! (`ingest`, `rater`, `ledger-writer`, `api`), parsed and merged with the config file into what
//! to run.

use crate::config::{Config, FileConfig, LeaseOverrides, RoleConfig, RoleOverrides, StoreConfig};
use crate::Role;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(name = "drawdown", version, about = "Real-time usage billing engine (Credyt-compatible API)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on local disk (the embedded mode).
    Serve(ServeArgs),
    /// Accept usage events into the log: serves only `POST /events` and the probes.
    Ingest(RoleArgs),
    /// Rate the `usage.raw` partitions this process holds in group `raters`.
    Rater(RoleArgs),
    /// Post the `ledger.input` partitions this process holds in group `writers`.
    LedgerWriter(RoleArgs),
    /// Serve the whole API (including `POST /events`), reading what the writers posted.
    Api(RoleArgs),
    /// Serve the embedded store of a data directory to the other roles (`--store
    /// http://host:port`): a shared store without a ScyllaDB cluster. No authentication unless
    /// `DRAWDOWN_STORE_TOKEN` is set (on both sides); keep it on a private network.
    Store(StoreArgs),
    /// Create, list and revoke API keys (in the data directory or `--store` the server uses).
    Keys(KeysArgs),
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
    /// The data directory of `drawdown serve` [default: ./data]; reached through the running
    /// server's socket when it holds the store.
    #[arg(long, env = "DRAWDOWN_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The store of the distributed roles (`scylla://…`, `http://…`) instead of a data directory.
    #[arg(long, value_name = "URL", env = "DRAWDOWN_STORE", global = true)]
    pub store: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// `test` or `live`.
        #[arg(long, value_parser = ["test", "live"])]
        env: String,
        /// What the key is for.
        #[arg(long, default_value = "unnamed")]
        name: String,
    },
    /// List the keys: id, environment, name, prefix, created, last used. Never the keys.
    List,
    /// Revoke a key by id (`key_…`): refused by every server from the next request on.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Address to listen on [default: 127.0.0.1:8090].
    #[arg(long, env = "DRAWDOWN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding the store (in `store/`) [default: ./data].
    #[arg(long, env = "DRAWDOWN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with `listen` and `data_dir`; flags and environment win.
    #[arg(long, env = "DRAWDOWN_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "DRAWDOWN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding the store and the log [default: ./data].
    #[arg(long, env = "DRAWDOWN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Partitions per log topic, fixed at first start [default: 8].
    #[arg(long, env = "DRAWDOWN_PARTITIONS")]
    pub partitions: Option<u32>,
    /// Run on this log instead of the embedded one (`kafka://host:port?prefix=..`); the store
    /// stays in the data directory [default: embedded:<data_dir>/log].
    #[arg(long, value_name = "URL", env = "DRAWDOWN_LOG")]
    pub log: Option<String>,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// TOML file with `listen`, `data_dir`, `partitions`, `log`, `instance_id` and
    /// `lease_timeout_ms`; flags and environment win over it.
    #[arg(long, env = "DRAWDOWN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How a process holds partitions of a shared log (Kafka) through leases in the store.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// This replica's stable id: restarted with the same id, it takes its partitions back at
    /// once [default: the host name].
    #[arg(long, env = "DRAWDOWN_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// How long a partition lease lives without renewal before another process takes it over
    /// [default: 10000].
    #[arg(long, env = "DRAWDOWN_LEASE_TIMEOUT_MS")]
    pub lease_timeout_ms: Option<u64>,
}

impl LeaseArgs {
    fn overrides(self) -> LeaseOverrides {
        LeaseOverrides { instance_id: self.instance_id, lease_timeout_ms: self.lease_timeout_ms }
    }
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Address to listen on (the API, or only the probes) [default: 127.0.0.1:8080].
    #[arg(long, env = "DRAWDOWN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The log: `kafka://host:port?prefix=..` or `embedded:<dir>`.
    #[arg(long, value_name = "URL", env = "DRAWDOWN_LOG")]
    pub log: Option<String>,
    /// The store: `scylla://host:port/keyspace`, `http://host:port` (a `drawdown store`) or
    /// `embedded:<dir>`.
    #[arg(long, value_name = "URL", env = "DRAWDOWN_STORE")]
    pub store: Option<String>,
    /// Partitions per topic, used when the topics are created [default: 8].
    #[arg(long, env = "DRAWDOWN_PARTITIONS")]
    pub partitions: Option<u32>,
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// TOML file with `listen`, `log`, `store`, `partitions`, `instance_id` and
    /// `lease_timeout_ms`; flags and environment win.
    #[arg(long, env = "DRAWDOWN_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What the command line asks for, fully configured.
#[derive(Debug)]
pub enum Invocation {
    Serve(Config),
    Role(Role, RoleConfig),
    Store(StoreConfig),
    Keys(KeysArgs),
}

impl Cli {
    /// Merges the flags (and environment) with the config file; `api_key` is
    /// `DRAWDOWN_API_KEY`.
    pub fn resolve(self, api_key: Option<String>) -> anyhow::Result<Invocation> {
        let (role, args) = match self.command {
            Command::Serve(args) => {
                let file = load(args.config.as_deref())?;
                let lease = args.lease.overrides();
                let config = Config::resolve(
                    args.listen,
                    args.data_dir,
                    args.partitions,
                    api_key,
                    args.log,
                    lease,
                    file,
                )?;
                return Ok(Invocation::Serve(config));
            }
            Command::Keys(args) => return Ok(Invocation::Keys(args)),
            Command::Store(args) => {
                let file = load(args.config.as_deref())?;
                return Ok(Invocation::Store(StoreConfig::resolve(args.listen, args.data_dir, file)?));
            }
            Command::Ingest(args) => (Role::Ingest, args),
            Command::Rater(args) => (Role::Rater, args),
            Command::LedgerWriter(args) => (Role::LedgerWriter, args),
            Command::Api(args) => (Role::Api, args),
        };
        let file = load(args.config.as_deref())?;
        let flags = RoleOverrides {
            listen: args.listen,
            log: args.log,
            store: args.store,
            partitions: args.partitions,
            lease: args.lease.overrides(),
        };
        Ok(Invocation::Role(role, RoleConfig::resolve(flags, api_key, file)?))
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    match path {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    }
}
