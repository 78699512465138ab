//! The `drawdown` composition root: configuration, modes and wiring. The binary parses flags
//! and calls [`Server::bind`] then [`Server::run`]; tests start the same server in-process on
//! an ephemeral port.
//!
//! Embedded mode wires, in one process over one data directory: the store (`<data>/store`),
//! the log (`<data>/log`, topics `usage.raw` and `ledger.input`), one rater task and one ledger
//! writer task per partition, and the HTTP API (with ingest behind `POST /events`).

pub mod config;

pub use config::Config;

use anyhow::Context;
use eventlog::LogOptions;
use ledger_writer::writer::WriterOptions;
use ledger_writer::{LedgerClient, Posted};
use rater::catalog::CatalogChanges;
use rater::worker::RaterOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A bound, ready-to-serve embedded drawdown.
pub struct Server {
    listener: TcpListener,
    state: api::AppState,
    stages: Stages,
    /// The test-mode key created on this start (first start without `DRAWDOWN_API_KEY`).
    pub generated_api_key: Option<String>,
}

/// The pipeline's background tasks and the switch that stops them.
struct Stages {
    stop: watch::Sender<bool>,
    raters: Vec<JoinHandle<Result<(), rater::worker::RaterError>>>,
    writers: Vec<JoinHandle<Result<(), ledger_writer::writer::WriterError>>>,
}

impl Stages {
    /// Raters first (nothing new reaches ledger.input), then writers, each finishing its batch.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.raters {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("rater stopped with an error: {e}"),
                Err(e) => tracing::error!("rater task failed: {e}"),
            }
        }
        for task in self.writers {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("ledger writer stopped with an error: {e}"),
                Err(e) => tracing::error!("ledger writer task failed: {e}"),
            }
        }
    }
}

impl Server {
    /// Opens the data directory, provisions the API key, starts the pipeline and binds the
    /// listener.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let store_dir = config.data_dir.join("store");
        let store = store::open(&format!("embedded:{}", store_dir.display()))
            .with_context(|| format!("opening the store in {}", store_dir.display()))?;
        let log_dir = config.data_dir.join("log");
        let options = LogOptions { partitions: config.partitions, ..LogOptions::default() };
        let log = eventlog::open(&format!("embedded:{}", log_dir.display()), options)
            .with_context(|| format!("opening the log in {}", log_dir.display()))?;
        let generated_api_key = api::auth::provision_test_key(store.as_ref(), config.api_key.as_deref())
            .await
            .context("provisioning the API key")?;

        let (stop, stopped) = watch::channel(false);
        let posted = Posted::new(log.partition_count());
        let changes = CatalogChanges::new();
        let writers = ledger_writer::writer::spawn_all(
            store.clone(),
            log.clone(),
            posted.clone(),
            WriterOptions::default(),
            stopped.clone(),
        );
        let raters =
            rater::worker::spawn_all(store.clone(), log.clone(), &changes, RaterOptions::default(), stopped);
        let ingest = Arc::new(ingest::Ingest::new(store.clone(), log.clone(), Default::default()));
        let ledger = LedgerClient::new(log, posted);
        let state = api::AppState::load(store, ingest, ledger, changes)
            .await
            .map_err(|e| anyhow::anyhow!("loading settings: {e}"))?;
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        Ok(Self { listener, state, stages: Stages { stop, raters, writers }, generated_api_key })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests, and
    /// lets the raters and writers finish the batch in hand.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = api::router(self.state);
        let served =
            axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP");
        self.stages.stop().await;
        served
    }
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
