//! Test traffic can never refuse live traffic (issue 17): each environment has its own ingest
//! (admission budget, backlog bound) over its own store and log, so an environment whose ingest
//! is saturated answers 429 while the other keeps accepting.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use eventlog::LogOptions;
use ledger_writer::{LedgerClient, Posted};
use serde_json::{json, Value};
use std::sync::Arc;
use store::{Op, SharedStore, Table};
use tower::ServiceExt;

const TEST_KEY: &str = "sk_test_isolation";
const LIVE_KEY: &str = "sk_live_isolation";

/// One environment over its own store and log, with `key` and a customer `cust_1`.
async fn environment(dir: &std::path::Path, key: &str, environment: api::auth::Environment) -> api::AppState {
    let store: SharedStore = Arc::new(store::EmbeddedStore::open(dir.join("store")).expect("store"));
    let log = eventlog::open(&format!("embedded:{}", dir.join("log").display()), LogOptions::default())
        .expect("log");
    let record = api::auth::ApiKeyRecord::new(key, environment, "isolation");
    let customer = json!({"id": "cust_1", "name": "C", "created_at": "2026-01-01T00:00:00Z"});
    store
        .write(vec![
            Op::put_doc(Table::ApiKeys, api::auth::hash(key), &record).expect("key"),
            Op::put_doc(Table::Customers, "cust_1", &customer).expect("customer"),
        ])
        .await
        .expect("seed");
    let options = ingest::IngestOptions { max_inflight_bytes: 64 * 1024, ..Default::default() };
    let ingest = Arc::new(ingest::Ingest::new(store.clone(), log.clone(), options));
    api::AppState::load(store, ingest, LedgerClient::new(log, Posted::new(8))).await.expect("state")
}

async fn send_usage(app: &Router, key: &str) -> StatusCode {
    let body = json!({"customer_id": "cust_1", "events": [{"id": uuid::Uuid::new_v4().to_string(),
        "event_type": "call", "occurred_at": chrono::Utc::now().to_rfc3339()}]});
    let request = Request::post("/events")
        .header(api::auth::HEADER, key)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let _: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body"))
            .unwrap_or(Value::Null);
    status
}

#[tokio::test]
async fn a_saturated_test_environment_never_refuses_live_usage() {
    let dir = tempfile::tempdir().expect("dir");
    let test = environment(&dir.path().join("test"), TEST_KEY, api::auth::Environment::Test).await;
    let live = environment(&dir.path().join("live"), LIVE_KEY, api::auth::Environment::Live).await;
    let test_ingest = Arc::clone(&test.ingest);
    let environments = api::Environments { test, live: Some(live) };
    let app = api::routes::router_with(environments, api::routes::Readiness::new(|| async { Vec::new() }));
    assert_eq!(send_usage(&app, TEST_KEY).await, StatusCode::NO_CONTENT);
    assert_eq!(send_usage(&app, LIVE_KEY).await, StatusCode::NO_CONTENT);

    // The test environment's whole admission budget is held, as by a flood of test usage.
    let held = test_ingest.admit(64 * 1024).expect("the whole budget");
    assert_eq!(send_usage(&app, TEST_KEY).await, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..20 {
        assert_eq!(send_usage(&app, LIVE_KEY).await, StatusCode::NO_CONTENT, "live is not refused");
    }
    drop(held);
    assert_eq!(send_usage(&app, TEST_KEY).await, StatusCode::NO_CONTENT);
}
