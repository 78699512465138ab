//! `drawdown`: parses flags and runs the chosen mode (`serve`) or role.

use anyhow::Context;
use clap::Parser;
use drawdown::cli::{Cli, Invocation};
use drawdown::{Backends, Config, Role, RoleConfig, Server, StoreConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let invocation = Cli::parse().resolve(std::env::var("DRAWDOWN_API_KEY").ok())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match invocation {
        Invocation::Serve(config) => runtime.block_on(serve(config)),
        Invocation::Role(role, config) => runtime.block_on(run_role(role, config)),
        Invocation::Store(config) => runtime.block_on(serve_store(config)),
        Invocation::Keys(args) => runtime.block_on(keys(args)),
    }
}

async fn keys(args: drawdown::cli::KeysArgs) -> anyhow::Result<()> {
    use drawdown::cli::KeysAction;
    use drawdown::keys::KeyStores;
    let stores = match &args.store {
        Some(url) => KeyStores::url(url).await?,
        None => KeyStores::data_dir(args.data_dir.as_deref().unwrap_or(std::path::Path::new("data"))).await?,
    };
    match args.action {
        KeysAction::Create { env, name } => {
            let environment =
                if env == "live" { api::auth::Environment::Live } else { api::auth::Environment::Test };
            let (key, view) = stores.create(environment, &name).await?;
            println!("{key}");
            eprintln!(
                "created {} ({} key `{}`): store it now, it is not shown again",
                view.id, env, view.name
            );
        }
        KeysAction::List => {
            println!("{}", drawdown::keys::KeyView::HEADING);
            for key in stores.list().await? {
                println!("{}", key.row());
            }
        }
        KeysAction::Revoke { id } => {
            anyhow::ensure!(stores.revoke(&id).await?, "no key has the id `{id}`");
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

async fn serve_store(config: StoreConfig) -> anyhow::Result<()> {
    let server = Server::bind_store(&config).await?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "drawdown store serving (roles connect with --store http://{addr})");
    server.run(drawdown::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(&config).await?;
    announce_key(&server);
    let addr = server.local_addr()?;
    let (log, store) = (config.log_url(), config.store_url());
    tracing::info!(%addr, %log, %store, "drawdown serving (every role in one process)");
    server.run(drawdown::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn run_role(role: Role, config: RoleConfig) -> anyhow::Result<()> {
    let both = Backends::connect_environments(&config.log, &config.store, config.partitions).await?;
    let server = Server::bind_role(role, both, &config).await?;
    announce_key(&server);
    let addr = server.local_addr()?;
    tracing::info!(%addr, role = role.name(), log = %config.log, store = %config.store, "drawdown role started");
    server.run(drawdown::shutdown_signal()).await?;
    tracing::info!(role = role.name(), "stopped");
    Ok(())
}

/// Prints a key created on this start: the only time it is ever shown.
fn announce_key(server: &Server) {
    if let Some(key) = &server.generated_api_key {
        println!("Created a test-mode API key. It is shown only this once; store it now:");
        println!();
        println!("    {key}");
        println!();
    }
}
