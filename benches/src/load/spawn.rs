//! `loadgen --spawn`: starts a drawdown binary for the run — `serve` on a free local port, a fresh
//! temporary data directory, a generated test key, `RUST_LOG=warn` — waits until it answers
//! `GET /metrics`, and stops it afterwards (SIGTERM, then SIGKILL after a grace period), removing
//! the directory unless asked to keep it.

use super::http::{Connection, Endpoint};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the server may take to answer its first `GET /metrics`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A drawdown process this run started.
pub struct SpawnedServer {
    child: Child,
    dir: Option<tempfile::TempDir>,
    pub url: String,
    pub api_key: String,
}

impl SpawnedServer {
    /// Starts `binary serve` with `partitions` log partitions and waits until it serves.
    pub async fn start(binary: &Path, partitions: u32) -> anyhow::Result<Self> {
        let dir =
            tempfile::Builder::new().prefix("drawdown-load-").tempdir().context("creating a data dir")?;
        let port = free_port()?;
        let api_key = format!("sk_test_{}", uuid::Uuid::new_v4().simple());
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .args(["--partitions", &partitions.to_string()])
            .env("DRAWDOWN_API_KEY", &api_key)
            .env("RUST_LOG", "warn");
        Self::spawn(command, port, api_key, Some(dir)).await
    }

    /// Starts `command`, a server that will listen on 127.0.0.1:`port` and answer
    /// `GET /metrics`, and waits until it does. `dir` is its data directory, if any.
    pub async fn spawn(
        mut command: Command,
        port: u16,
        api_key: String,
        dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", command.get_program().to_string_lossy()))?;
        let mut server = Self { child, dir, url: format!("http://127.0.0.1:{port}"), api_key };
        server.wait_until_serving().await?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_until_serving(&mut self) -> anyhow::Result<()> {
        let mut conn = Connection::new(Arc::new(Endpoint::parse(&self.url, &self.api_key)?));
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("watching the server")? {
                bail!("the server exited at startup ({status})");
            }
            if conn.get("/metrics").await.is_ok_and(|a| a.status.is_success()) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!("the server did not answer GET /metrics within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server; removes its data directory, or keeps it and returns its path.
    pub fn stop(mut self, keep_data: bool) -> anyhow::Result<Option<PathBuf>> {
        self.terminate()?;
        let Some(dir) = self.dir.take() else { return Ok(None) };
        if keep_data {
            return Ok(Some(dir.keep()));
        }
        let path = dir.path().to_path_buf();
        dir.close().with_context(|| format!("removing {}", path.display()))?;
        Ok(None)
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL if the server is still there after the grace.
    fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().context("killing the server")?;
        self.child.wait().context("reaping the server")?;
        Ok(())
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A local port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
