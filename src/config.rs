//! Configuration. Precedence, highest first: command-line flag, environment variable, config
//! file (`--config`, TOML), built-in default. Every option has a default that works on a laptop.

use anyhow::Context;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
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
}

/// What a config file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub partitions: Option<u32>,
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
        file: FileConfig,
    ) -> anyhow::Result<Self> {
        let partitions = partitions.or(file.partitions).unwrap_or(DEFAULT_PARTITIONS);
        anyhow::ensure!((1..=1024).contains(&partitions), "partitions must be between 1 and 1024");
        let listen = match listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        Ok(Self {
            listen,
            data_dir: data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file: FileConfig =
            toml::from_str("listen = \"0.0.0.0:9000\"\ndata_dir = \"/var/lib/drawdown\"").unwrap();
        let c = Config::resolve(None, Some("/tmp/x".into()), None, None, file).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let d = Config::resolve(None, None, None, Some(" ".into()), FileConfig::default()).unwrap();
        assert_eq!(d.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(d.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(d.api_key, None);
        assert_eq!(d.partitions, DEFAULT_PARTITIONS);
        assert!(Config::resolve(None, None, Some(0), None, FileConfig::default()).is_err());
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("listn = \"x\"").is_err());
    }
}
