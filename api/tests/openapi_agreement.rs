//! The OpenAPI document and the router describe the same routes: every documented operation is
//! routed (an unauthenticated call answers 401, not 404/405), and every route is documented.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use std::collections::BTreeSet;
use std::sync::Arc;
use tower::ServiceExt;

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(schemas::openapi::OPENAPI_JSON).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert((method.clone(), path.clone()));
            }
        }
    }
    ops
}

fn routed() -> BTreeSet<(String, String)> {
    api::routes::ROUTES
        .iter()
        .chain(api::routes::PUBLIC_ROUTES)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let documented = documented();
    let routed = routed();
    let missing_from_doc: Vec<_> = routed.difference(&documented).collect();
    let missing_from_router: Vec<_> = documented.difference(&routed).collect();
    assert!(missing_from_doc.is_empty(), "routes without documentation: {missing_from_doc:?}");
    assert!(missing_from_router.is_empty(), "documented but not routed: {missing_from_router:?}");
}

#[tokio::test]
async fn the_router_serves_every_route_of_the_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: store::SharedStore =
        Arc::new(store::EmbeddedStore::open(dir.path().join("store")).expect("store"));
    let options = eventlog::LogOptions { partitions: 2, ..eventlog::LogOptions::default() };
    let log =
        eventlog::open(&format!("embedded:{}", dir.path().join("log").display()), options).expect("log");
    let ingest = Arc::new(ingest::Ingest::new(store.clone(), log.clone(), ingest::IngestOptions::default()));
    let ledger = ledger_writer::LedgerClient::new(log, ledger_writer::Posted::new(2));
    let state = api::AppState::load(store, ingest, ledger).await.expect("state");
    let app = api::router(state);
    for (method, path) in api::routes::ROUTES {
        // Fill path parameters with plausible values.
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg == "{version}" {
                    "1"
                } else if seg.starts_with('{') {
                    "x"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let req =
            Request::builder().method(method.clone()).uri(&concrete).body(Body::empty()).expect("request");
        let status = app.clone().oneshot(req).await.expect("response").status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {concrete} is not routed as documented");
    }
}
