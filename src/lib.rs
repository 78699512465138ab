//! The `drawdown` composition root: configuration, modes and wiring. The binary parses flags
//! ([`cli`]) and calls [`Server::bind`] (or [`Server::bind_role`]) then [`Server::run`]; tests
//! start the same servers in-process on ephemeral ports.
//!
//! Embedded mode (`drawdown serve`) wires, in one process over one data directory: the store
//! (`<data>/store`), the log (`<data>/log`, topics `usage.raw` and `ledger.input`), the raters and
//! ledger writers of every partition, and the HTTP API (with ingest behind `POST /events`).
//!
//! Distributed mode runs the same pieces as separate roles over shared backends (Kafka, ScyllaDB):
//! - `ingest`: `POST /events` only, appending to `usage.raw`;
//! - `rater`: the `usage.raw` partitions it holds in group `raters`;
//! - `ledger-writer`: the `ledger.input` partitions it holds in group `writers`;
//! - `api`: the whole API; its adjustments and charges wait for the writers of other processes
//!   through the store ([`Posted::follow_store`]).
//!
//! Every role serves `/healthz`, `/readyz` ([`readiness`]) and `/metrics`.
//!
//! - [`config`]: flags, environment, config file, defaults; [`cli`]: the command line.
//! - [`backends`]: opening the store and the log from their URLs.
//! - [`pipeline`]: raters and writers supervised per assigned partition.
//! - [`readiness`]: what `/readyz` checks.
//! - [`store_server`]: `drawdown store`, the embedded store served to other processes.

pub mod backends;
pub mod cli;
pub mod config;
pub mod keys;
pub mod pipeline;
pub mod readiness;
pub mod store_server;

pub use backends::Backends;
pub use config::{Config, RoleConfig, StoreConfig};

use anyhow::Context;
use api::auth::Environment;
use eventlog::Topic;
use ledger_writer::writer::WriterOptions;
use ledger_writer::{LedgerClient, Posted};
use pipeline::Stage;
use rater::worker::RaterOptions;
use readiness::Dependencies;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the `api` role reads the writers' progress while a wallet command waits on it.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(5);

/// A process of the distributed mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Rater,
    LedgerWriter,
    Api,
}

impl Role {
    /// The subcommand that runs it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Rater => "rater",
            Role::LedgerWriter => "ledger-writer",
            Role::Api => "api",
        }
    }
}

/// A bound, ready-to-serve drawdown process: `drawdown serve` or one role.
pub struct Server {
    listener: TcpListener,
    app: axum::Router,
    /// Stopped in order after the HTTP server: raters (nothing new reaches `ledger.input`),
    /// then writers.
    stages: Vec<Stage>,
    /// The test-mode key created on this start (first start without `DRAWDOWN_API_KEY`).
    pub generated_api_key: Option<String>,
    /// `drawdown serve`'s stores served on `<data_dir>/store.sock` (for `drawdown keys` while
    /// the server holds the store files), stopped with the server.
    store_socket: Option<StoreSocket>,
}

/// The data directory's stores served on a Unix socket; the task stops and the socket file is
/// removed when this is dropped.
struct StoreSocket {
    path: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl StoreSocket {
    /// Serves `test` and `live` (the store server's protocol, no token: the socket is the
    /// owner's alone, mode 0600) on `path`, replacing a socket file a crashed server left.
    fn bind(
        path: std::path::PathBuf,
        test: store::SharedStore,
        live: store::SharedStore,
    ) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing the stale socket {}", path.display()))
            }
            _ => {}
        }
        let listener =
            tokio::net::UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        let app = store_server::router(test, live, None);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the store socket stopped");
            }
        });
        Ok(Self { path, task })
    }
}

impl Drop for StoreSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Server {
    /// `drawdown serve`: opens the data directory (each environment's store and log),
    /// provisions the API key, binds the listener and starts the raters and writers of every
    /// partition of both environments.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let mut generated_api_key = None;
        let mut states = Vec::new();
        let mut stages = Vec::new();
        let mut checks = Vec::new();
        let mut stores = Vec::new();
        for environment in Environment::ALL {
            let backends = Backends::connect_environment(
                &config.log_url(),
                &config.store_url(),
                config.partitions,
                environment,
            )
            .await?;
            if environment == Environment::Test {
                generated_api_key = provision_key(&backends, config.api_key.as_deref()).await?;
            }
            let posted = Posted::new(backends.log.partition_count());
            stores.push(backends.store.clone());
            states.push(app_state(&backends, posted.clone()).await?);
            let ownership = backends.ownership(&config.lease);
            let raters = pipeline::raters(&backends, &ownership, RaterOptions::default());
            let writers = pipeline::writers(&backends, &ownership, posted, WriterOptions::default());
            checks.push(dependencies(&backends, &Topic::ALL, vec![raters.status(), writers.status()]));
            stages.extend([raters, writers]);
        }
        let listener = bind(config.listen).await?;
        let app = api::routes::router_with(environments(states)?, readiness::all(checks));
        // Stopped in order: every environment's raters, then every environment's writers.
        stages.sort_by_key(|s| s.is_writers());
        let [test, live] =
            <[store::SharedStore; 2]>::try_from(stores).map_err(|_| anyhow::anyhow!("two stores"))?;
        // Not fatal: without it, `drawdown keys` works on this data directory only while the
        // server is stopped (a socket path longer than the system's limit, say).
        let store_socket = StoreSocket::bind(backends::store_socket(&config.data_dir), test, live)
            .inspect_err(|e| tracing::warn!(error = %format!("{e:#}"), "not serving the store socket"))
            .ok();
        Ok(Self { listener, app, stages, generated_api_key, store_socket })
    }

    /// One role, over the backends of both environments (test first), listening on
    /// `config.listen`.
    pub async fn bind_role(role: Role, both: [Backends; 2], config: &RoleConfig) -> anyhow::Result<Self> {
        let listener = bind(config.listen).await?;
        let parts = match role {
            Role::Ingest => ingest_role(&both, config).await?,
            Role::Api => api_role(&both, config).await?,
            Role::Rater => rater_role(&both, config),
            Role::LedgerWriter => writer_role(&both, config),
        };
        let RoleParts { app, stages, generated_api_key } = parts;
        Ok(Self { listener, app, stages, generated_api_key, store_socket: None })
    }

    /// `drawdown store`: the embedded stores of both environments (`<data_dir>/store`,
    /// `<data_dir>/live/store`), served over HTTP.
    pub async fn bind_store(config: &StoreConfig) -> anyhow::Result<Self> {
        let url = backends::embedded_store_url(&config.data_dir);
        let live_url = backends::environment_url(&url, Environment::Live)?;
        let store = store::connect(&url).await.with_context(|| format!("opening the store at {url}"))?;
        let live =
            store::connect(&live_url).await.with_context(|| format!("opening the store at {live_url}"))?;
        let listener = bind(config.listen).await?;
        let token = std::env::var(store::remote::TOKEN_ENV).ok().filter(|t| !t.is_empty());
        let app = store_server::router(store, live, token.as_deref());
        Ok(Self { listener, app, stages: Vec::new(), generated_api_key: None, store_socket: None })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests, and
    /// lets the raters and writers finish the batch in hand.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let served = axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        for stage in self.stages {
            stage.stop().await;
        }
        drop(self.store_socket);
        served
    }
}

/// What a role serves and runs.
struct RoleParts {
    app: axum::Router,
    stages: Vec<Stage>,
    generated_api_key: Option<String>,
}

/// `POST /events` and the probes. Only the api role creates a key (two roles generating one each
/// would print two); ingest makes the configured one the test key.
async fn ingest_role(both: &[Backends; 2], config: &RoleConfig) -> anyhow::Result<RoleParts> {
    if let Some(key) = config.api_key.as_deref() {
        provision_key(&both[0], Some(key)).await?;
    }
    let mut states = Vec::new();
    for backends in both {
        states.push(app_state(backends, Posted::new(backends.log.partition_count())).await?);
    }
    let checks = both.iter().map(|b| dependencies(b, &[Topic::UsageRaw], Vec::new())).collect();
    let app = api::routes::ingest_router(environments(states)?, readiness::all(checks));
    Ok(RoleParts { app, stages: Vec::new(), generated_api_key: None })
}

/// The whole API, learning what the writers of other processes posted through the store.
async fn api_role(both: &[Backends; 2], config: &RoleConfig) -> anyhow::Result<RoleParts> {
    let generated_api_key = provision_key(&both[0], config.api_key.as_deref()).await?;
    let mut states = Vec::new();
    for backends in both {
        let posted =
            Posted::follow_store(backends.store.clone(), backends.log.partition_count(), FOLLOW_INTERVAL);
        states.push(app_state(backends, posted).await?);
    }
    let checks = both.iter().map(|b| dependencies(b, &Topic::ALL, Vec::new())).collect();
    let app = api::routes::router_with(environments(states)?, readiness::all(checks));
    Ok(RoleParts { app, stages: Vec::new(), generated_api_key })
}

/// The raters of the partitions this process owns in each environment, and the probes.
fn rater_role(both: &[Backends; 2], config: &RoleConfig) -> RoleParts {
    let (mut stages, mut checks) = (Vec::new(), Vec::new());
    for backends in both {
        let raters = pipeline::raters(backends, &backends.ownership(&config.lease), RaterOptions::default());
        checks.push(dependencies(backends, &Topic::ALL, vec![raters.status()]));
        stages.push(raters);
    }
    RoleParts { app: api::routes::probe_router(readiness::all(checks)), stages, generated_api_key: None }
}

/// The ledger writers of the partitions this process owns in each environment, and the probes.
/// Nobody in this process waits on what they post: the api role reads it from the store.
fn writer_role(both: &[Backends; 2], config: &RoleConfig) -> RoleParts {
    let (mut stages, mut checks) = (Vec::new(), Vec::new());
    for backends in both {
        let posted = Posted::new(backends.log.partition_count());
        let ownership = backends.ownership(&config.lease);
        let writers = pipeline::writers(backends, &ownership, posted, WriterOptions::default());
        checks.push(dependencies(backends, &[Topic::LedgerInput], vec![writers.status()]));
        stages.push(writers);
    }
    RoleParts { app: api::routes::probe_router(readiness::all(checks)), stages, generated_api_key: None }
}

/// The API states of the two environments, test first.
fn environments(states: Vec<api::AppState>) -> anyhow::Result<api::Environments> {
    let mut states = states.into_iter();
    let test = states.next().context("the test environment's state")?;
    Ok(api::Environments { test, live: states.next() })
}

async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))
}

/// Makes `configured` the test key, or creates one on first start (returned, to be shown once).
async fn provision_key(backends: &Backends, configured: Option<&str>) -> anyhow::Result<Option<String>> {
    api::auth::provision_test_key(backends.store.as_ref(), configured)
        .await
        .context("provisioning the API key")
}

/// The API's state over `backends`, waiting for postings through `posted`.
async fn app_state(backends: &Backends, posted: Posted) -> anyhow::Result<api::AppState> {
    let Backends { store, log } = backends.clone();
    let options = ingest::IngestOptions { downstream: pipeline::downstream(), ..Default::default() };
    let ingest = Arc::new(ingest::Ingest::new(store.clone(), log.clone(), options));
    let ledger = LedgerClient::new(log, posted);
    api::AppState::load(store, ingest, ledger).await.map_err(|e| anyhow::anyhow!("loading settings: {e}"))
}

fn dependencies(backends: &Backends, topics: &[Topic], groups: Vec<readiness::GroupStatus>) -> Dependencies {
    Dependencies { store: backends.store.clone(), log: backends.log.clone(), topics: topics.to_vec(), groups }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}
