//! drawdown as child processes (`serve`, the roles, `store`), for tests that kill them with
//! SIGKILL or pause them with SIGSTOP.

use std::collections::BTreeSet;
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
    start_serve(data_dir, key, &[])
}

/// [`start_with`], with more arguments for `serve` (`--log kafka://…`, lease options).
pub fn start_serve(data_dir: &Path, key: Option<&str>, args: &[String]) -> Process {
    let mut all = vec!["serve".to_string()];
    all.extend_from_slice(args);
    all.push("--data-dir".to_string());
    all.push(data_dir.display().to_string());
    spawn_with(&all, key, key.is_none())
}

pub fn start(data_dir: &Path) -> Process {
    start_with(data_dir, Some(KEY))
}

/// `drawdown <args> --listen 127.0.0.1:<free port>`, alive (`/healthz`) before it returns; with
/// `key`, that is its test key. Its logs go to the test's output.
pub fn spawn(args: &[String], key: Option<&str>) -> Process {
    spawn_with(args, key, false)
}

/// [`spawn`]; with `capture`, stdout is captured for [`Process::kill_9`] to return (the key a
/// first start prints), and the process must be short-lived, or its log fills the pipe.
fn spawn_with(args: &[String], key: Option<&str>, capture: bool) -> Process {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_drawdown"));
    command
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DRAWDOWN_API_KEY")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    if let Some(key) = key {
        command.env("DRAWDOWN_API_KEY", key);
    }
    command.stdout(if capture { Stdio::piped() } else { Stdio::inherit() });
    let mut process = Process {
        child: Some(command.spawn().expect("spawn drawdown")),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{}/healthz", process.base)).timeout(Duration::from_secs(1)).call().is_err() {
        let exited = process.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(exited.is_none(), "drawdown {args:?} exited: {exited:?}");
        assert!(Instant::now() < deadline, "drawdown {args:?} did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

impl Process {
    /// SIGKILL (no shutdown hook, no flush); returns what the server printed on stdout.
    pub fn kill_9(mut self) -> String {
        let Some(mut child) = self.child.take() else { return String::new() };
        child.kill().expect("kill -9");
        let output = child.wait_with_output().expect("reap");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    /// One of its `/metrics` values: the line `name` exactly (labels included), if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = ureq::get(&format!("{}/metrics", self.base))
            .timeout(Duration::from_secs(5))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The partitions of `stage` (`raters`, `writers`) it says it owns.
    pub fn owned(&self, stage: &str, partitions: u32) -> BTreeSet<u32> {
        (0..partitions)
            .filter(|p| {
                let name = format!("drawdown_partition_owned{{stage=\"{stage}\",partition=\"{p}\"}}");
                self.metric(&name) == Some(1.0)
            })
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Cleans up when a test fails midway; `Child::kill` sends SIGKILL on Unix (a stopped
        // process dies of it too).
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
