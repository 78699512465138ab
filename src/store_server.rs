//! `drawdown store`: the embedded store of a data directory served over HTTP
//! ([`store::remote`]'s protocol), so that the distributed roles of a small deployment share one
//! store without a ScyllaDB cluster (`--store http://host:port`). One process, one store file:
//! every batch is still one redb transaction, durable when answered.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use store::remote::{handle, Request, PATH, TOKEN_ENV};
use store::SharedStore;

/// The largest request body: a ledger writer's batch of a few thousand postings.
const MAX_BODY_BYTES: usize = 256 << 20;

#[derive(Clone)]
struct Served {
    store: SharedStore,
    /// `Bearer <DRAWDOWN_STORE_TOKEN>` when set: every call must carry it.
    authorization: Option<Arc<str>>,
}

/// `POST /v1/store` and `GET /healthz` over `store`.
pub fn router(store: SharedStore) -> Router {
    let authorization =
        std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()).map(|t| Arc::from(format!("Bearer {t}")));
    Router::new()
        .route(PATH, post(call))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Served { store, authorization })
}

async fn call(State(served): State<Served>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(expected) = &served.authorization {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_ref()) {
            return (StatusCode::UNAUTHORIZED, "a store call needs the store token").into_response();
        }
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a store call: {e}")).into_response(),
    };
    Json(handle(served.store.as_ref(), request).await).into_response()
}
