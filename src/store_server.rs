//! `drawdown store`: the embedded store of a data directory served over HTTP
//! ([`store::remote`]'s protocol), so that the distributed roles of a small deployment share one
//! store without a ScyllaDB cluster (`--store http://host:port`). One process, one store file:
//! every batch is still one redb transaction, durable when answered.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use store::remote::{handle, Request, PATH};
use store::SharedStore;

/// The largest request body: a ledger writer's batch of a few thousand postings.
const MAX_BODY_BYTES: usize = 256 << 20;

#[derive(Clone)]
struct Served {
    store: SharedStore,
    /// `Bearer <DRAWDOWN_STORE_TOKEN>` when set: every call must carry it.
    authorization: Option<Arc<str>>,
}

/// `POST /v1/store` over `store`, `POST /live/v1/store` over `live` (the live environment's
/// store, see `backends::environment_url`) and `GET /healthz`; with `token`, every call must
/// carry it as a bearer token.
pub fn router(store: SharedStore, live: SharedStore, token: Option<&str>) -> Router {
    let authorization: Option<Arc<str>> = token.map(|t| Arc::from(format!("Bearer {t}")));
    let served = |store| {
        Router::new()
            .route(PATH, post(call))
            .with_state(Served { store, authorization: authorization.clone() })
    };
    Router::new().merge(served(store)).nest("/live", served(live)).route("/healthz", get(|| async { "ok" }))
}

/// Checks the token before reading the body, then answers the call.
async fn call(State(served): State<Served>, headers: HeaderMap, body: Body) -> Response {
    if let Some(expected) = &served.authorization {
        let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
        if !same_secret(given, expected.as_bytes()) {
            return (StatusCode::UNAUTHORIZED, "a store call needs the store token").into_response();
        }
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, format!("unreadable body: {e}")).into_response(),
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a store call: {e}")).into_response(),
    };
    Json(handle(served.store.as_ref(), request).await).into_response()
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_equal_only_when_every_byte_is() {
        assert!(same_secret(b"Bearer t0k", b"Bearer t0k"));
        assert!(!same_secret(b"Bearer t0j", b"Bearer t0k"));
        assert!(!same_secret(b"Bearer t0", b"Bearer t0k"));
        assert!(!same_secret(b"", b"Bearer t0k"));
    }
}
