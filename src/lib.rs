//! The `drawdown` composition root: configuration, modes and wiring. The binary parses flags
//! and calls [`Server::bind`] then [`Server::run`]; tests start the same server in-process on
//! an ephemeral port.

pub mod config;

pub use config::Config;

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A bound, ready-to-serve embedded drawdown.
pub struct Server {
    listener: TcpListener,
    state: api::AppState,
    /// The test-mode key created on this start (first start without `DRAWDOWN_API_KEY`).
    pub generated_api_key: Option<String>,
}

impl Server {
    /// Opens the data directory, provisions the API key and binds the listener.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let store_dir = config.data_dir.join("store");
        let store = store::open(&format!("embedded:{}", store_dir.display()))
            .with_context(|| format!("opening the store in {}", store_dir.display()))?;
        let generated_api_key = api::auth::provision_test_key(store.as_ref(), config.api_key.as_deref())
            .await
            .context("provisioning the API key")?;
        let state = api::AppState::load(store).await.map_err(|e| anyhow::anyhow!("loading settings: {e}"))?;
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        Ok(Self { listener, state, generated_api_key })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops accepting and finishes in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let app = api::router(self.state);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP")
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
