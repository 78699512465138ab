//! "A 201 means durable": `drawdown serve` is killed with SIGKILL right after acknowledging a
//! write, restarted on the same data directory, and every acknowledged object is read back.

mod common;

use common::process::{start, start_with};
use common::{request, KEY};
use serde_json::json;

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
        let _ = server.kill_9();
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
    let _ = server.kill_9();
}

#[test]
fn first_start_prints_a_key_once_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = start_with(dir.path(), None).kill_9();
    let key =
        first.split_whitespace().find(|w| w.starts_with("sk_test_")).expect("a key is printed").to_string();
    let second = start_with(dir.path(), None).kill_9();
    assert!(!second.contains("sk_test_"), "the key is printed only once: {second}");
    let store_bytes = std::fs::read(dir.path().join("store").join("store.redb")).expect("store file");
    let needle = key.as_bytes();
    assert!(!store_bytes.windows(needle.len()).any(|w| w == needle), "the plain key must not be stored");
}
