//! "A 201 means durable": `drawdown serve` is killed with SIGKILL right after acknowledging a
//! write, restarted on the same data directory, and every acknowledged object is read back.

mod common;

use common::{request, KEY};
use serde_json::json;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Process {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

#[allow(clippy::zombie_processes)] // the child is reaped by `Process::kill_9`
fn start(data_dir: &Path) -> Process {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_drawdown"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .env("DRAWDOWN_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn drawdown");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = ureq::get(&format!("{base}/healthz")).timeout(Duration::from_secs(1)).call().is_ok();
        if ready {
            return Process { child, base };
        }
        assert!(Instant::now() < deadline, "drawdown did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Process {
    /// SIGKILL: no shutdown hook, no flush.
    fn kill_9(self) {
        drop(self);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL on Unix; also cleans up when a test fails midway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kill_9_right_after_a_201_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut acknowledged: Vec<(String, serde_json::Value)> = Vec::new();
    for round in 0..5 {
        let server = start(dir.path());
        // Everything acknowledged before this crash is still there.
        for (path, expected) in &acknowledged {
            let (status, body) = request(&server.base, Some(KEY), "GET", path, None);
            assert_eq!(status, 200, "{path} lost after kill -9: {body}");
            assert_eq!(&body["name"], expected, "{path}");
        }
        let name = json!(format!("crash round {round}"));
        let (status, created) = request(
            &server.base,
            Some(KEY),
            "POST",
            "/customers",
            Some(json!({"name": name, "external_id": format!("crash-{round}")}).to_string()),
        );
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_string();
        let (status, vendor) =
            request(&server.base, Some(KEY), "POST", "/vendors", Some(json!({"name": name}).to_string()));
        assert_eq!(status, 201, "{vendor}");
        let vendor_id = vendor["id"].as_str().expect("id").to_string();
        // Kill immediately after the acknowledgement.
        server.kill_9();
        acknowledged.push((format!("/customers/{id}"), name.clone()));
        acknowledged.push((format!("/vendors/{vendor_id}"), name));
    }
    let server = start(dir.path());
    for (path, expected) in &acknowledged {
        let (status, body) = request(&server.base, Some(KEY), "GET", path, None);
        assert_eq!((status, &body["name"]), (200, expected), "{path}");
    }
    // Unique keys survived too.
    let (status, _) = request(
        &server.base,
        Some(KEY),
        "POST",
        "/customers",
        Some(json!({"name": "dup", "external_id": "crash-0"}).to_string()),
    );
    assert_eq!(status, 422);
    server.kill_9();
}

#[test]
fn first_start_prints_a_key_once_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let run = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drawdown"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.path())
            .env_remove("DRAWDOWN_API_KEY")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{base}/healthz")).call().is_err() {
            assert!(Instant::now() < deadline, "not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().expect("kill");
        let output = child.wait_with_output().expect("output");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let first = run();
    let key =
        first.split_whitespace().find(|w| w.starts_with("sk_test_")).expect("a key is printed").to_string();
    let second = run();
    assert!(!second.contains("sk_test_"), "the key is printed only once: {second}");
    let store_bytes = std::fs::read(dir.path().join("store").join("store.redb")).expect("store file");
    let needle = key.as_bytes();
    assert!(!store_bytes.windows(needle.len()).any(|w| w == needle), "the plain key must not be stored");
}
