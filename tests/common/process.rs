//! `drawdown serve` as a child process, for tests that kill it with SIGKILL.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = super::KEY;

pub struct Process {
    child: Option<Child>,
    pub base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `drawdown serve` on a free port over `data_dir`, ready to answer. With `key`, that is the
/// test key (`DRAWDOWN_API_KEY`); without, the server provisions its own. Stdout is captured.
pub fn start_with(data_dir: &Path, key: Option<&str>) -> Process {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_drawdown"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .env_remove("DRAWDOWN_API_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(key) = key {
        command.env("DRAWDOWN_API_KEY", key);
    }
    let process = Process {
        child: Some(command.spawn().expect("spawn drawdown")),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{}/healthz", process.base)).timeout(Duration::from_secs(1)).call().is_err() {
        assert!(Instant::now() < deadline, "drawdown did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

pub fn start(data_dir: &Path) -> Process {
    start_with(data_dir, Some(KEY))
}

impl Process {
    /// SIGKILL (no shutdown hook, no flush); returns what the server printed on stdout.
    pub fn kill_9(mut self) -> String {
        let Some(mut child) = self.child.take() else { return String::new() };
        child.kill().expect("kill -9");
        let output = child.wait_with_output().expect("reap");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Cleans up when a test fails midway; `Child::kill` sends SIGKILL on Unix.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
