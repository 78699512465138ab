//! `loadgen`: drives a running drawdown (or one it spawns) over HTTP, prints the report as a
//! table (and writes it as JSON on request), and exits 0 only when every balance was verified.

use anyhow::{anyhow, Context};
use benches::load::spawn::SpawnedServer;
use benches::load::{self, LoadOptions, Report};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator for drawdown: throughput, latency, memory, exact balances"
)]
struct Cli {
    /// Base url of a running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (test mode) of the server.
    #[arg(long, env = "DRAWDOWN_API_KEY", hide_env_values = true)]
    key: Option<String>,
    #[arg(long, default_value_t = 100)]
    customers: usize,
    /// Events per POST /events request (1..=1000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Connections, each its own task with one keep-alive connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop sending after this many seconds...
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// ...or after this many events (the first limit reached wins).
    #[arg(long, value_name = "N")]
    events: Option<u64>,
    /// Target events/s over all connections [default: as fast as possible].
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    rate: Option<f64>,
    /// Share of events that re-send an acknowledged event.
    #[arg(long, value_name = "SHARE", default_value_t = 0.01)]
    duplicates: f64,
    /// Share of requests that are wallet adjustments.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    adjustments: f64,
    /// The server's pid, to report its memory.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// How long draining and verification each wait for the ledger.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    settle_timeout: f64,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Start this drawdown binary (fresh data dir, free port, generated key) instead of --url.
    #[arg(long, value_name = "BINARY")]
    spawn: Option<PathBuf>,
    /// Log partitions of the spawned server.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Keep the spawned server's data directory.
    #[arg(long)]
    keep_data: bool,
    /// Runtime worker threads of the generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl Cli {
    fn options(&self, spawned: Option<&SpawnedServer>) -> anyhow::Result<LoadOptions> {
        let (url, key, pid) = match spawned {
            Some(s) => (s.url.clone(), s.api_key.clone(), Some(s.pid())),
            None => {
                let key =
                    self.key.clone().ok_or_else(|| anyhow!("give --key (or DRAWDOWN_API_KEY) or --spawn"))?;
                (self.url.clone(), key, self.server_pid)
            }
        };
        Ok(LoadOptions {
            customers: self.customers,
            batch: self.batch,
            concurrency: self.concurrency,
            duration: self.duration.map(seconds).transpose()?,
            events: self.events,
            rate: self.rate,
            duplicate_share: self.duplicates,
            adjustment_share: self.adjustments,
            server_pid: pid,
            settle_timeout: seconds(self.settle_timeout)?,
            ..LoadOptions::new(url, key)
        })
    }
}

fn seconds(secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs).with_context(|| format!("{secs} is not a number of seconds"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => match report.failure() {
            None => ExitCode::SUCCESS,
            Some(why) => {
                eprintln!("loadgen: FAILED: {why}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<Report> {
    let runtime = match cli.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .context("starting the runtime")?;
    runtime.block_on(async {
        let spawned = match &cli.spawn {
            Some(binary) => Some(SpawnedServer::start(binary, cli.partitions).await?),
            None => None,
        };
        let result = match cli.options(spawned.as_ref()) {
            Ok(options) => load::run(options).await,
            Err(err) => Err(err),
        };
        if let Some(server) = spawned {
            if let Some(kept) = server.stop(cli.keep_data)? {
                eprintln!("loadgen: kept the server's data in {}", kept.display());
            }
        }
        let report = result?;
        println!("{}", report.table());
        if let Some(path) = &cli.json {
            let json = report.json().context("encoding the report")?;
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(report)
    })
}
