//! `drawdown`: parses flags and runs the chosen mode.

use anyhow::Context;
use clap::{Parser, Subcommand};
use drawdown::config::{Config, FileConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "drawdown", version, about = "Real-time usage billing engine (Credyt-compatible API)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process on local disk (the embedded mode).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "DRAWDOWN_LISTEN")]
        listen: Option<SocketAddr>,
        /// Directory holding the store and the log [default: ./data].
        #[arg(long, env = "DRAWDOWN_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Partitions per log topic, fixed at first start [default: 8].
        #[arg(long, env = "DRAWDOWN_PARTITIONS")]
        partitions: Option<u32>,
        /// TOML file with `listen`, `data_dir` and `partitions`; flags and environment win over it.
        #[arg(long, env = "DRAWDOWN_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, data_dir, partitions, config } => {
            let file = match &config {
                Some(path) => FileConfig::load(path)?,
                None => FileConfig::default(),
            };
            let api_key = std::env::var("DRAWDOWN_API_KEY").ok();
            let config = Config::resolve(listen, data_dir, partitions, api_key, file)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(serve(config))
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = drawdown::Server::bind(&config).await?;
    if let Some(key) = &server.generated_api_key {
        println!("Created a test-mode API key. It is shown only this once; store it now:");
        println!();
        println!("    {key}");
        println!();
    }
    let addr = server.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "drawdown serving (embedded mode)");
    server.run(drawdown::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
