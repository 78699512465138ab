//! The route table. One list produces both the router and [`ROUTES`], which a test compares
//! with the OpenAPI document, so the two cannot drift apart.
//!
//! Every role of a distributed deployment serves the unauthenticated probes ([`probes`]:
//! `/healthz`, `/readyz`, `/metrics`); the `api` role serves the whole surface ([`router`]),
//! the `ingest` role only `POST /events` ([`ingest_router`]).

use crate::tenancy::{self, Tenant};
use crate::{
    accounts, adjustments, assets, auth, clocks, customers, events, products, profitability, vendors, wallet,
    AppState, Environments, MAX_BODY_BYTES,
};
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use store::SharedStore;
use tower::ServiceExt;

macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every authenticated route: (method, path template).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn authenticated() -> Router<AppState> {
            Router::new()$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

route_table! {
    get "/accounts/self" => accounts::context;
    post "/accounts" => accounts::create;
    get "/accounts" => accounts::list;
    get "/accounts/{accountId}" => accounts::get;

    post "/assets" => assets::create;
    get "/assets" => assets::list;
    get "/assets/{assetCode}" => assets::get;
    post "/assets/{assetCode}/rates" => assets::add_rate;
    post "/assets/{assetCode}/quote" => assets::quote;

    post "/products" => products::create;
    get "/products" => products::list;
    get "/products/{productId}" => products::get;
    delete "/products/{productId}" => products::delete;
    post "/products/{productId}" => products::create_version;
    get "/products/{productId}/subscribers" => products::subscribers;
    get "/products/{productId}/{version}" => products::get_version;
    patch "/products/{productId}/{version}" => products::update_version;
    delete "/products/{productId}/{version}" => products::archive_version;
    post "/products/{productId}/{version}/simulate-usage" => products::simulate_usage;

    post "/customers" => customers::create;
    get "/customers" => customers::list;
    get "/customers/stats" => profitability::list_customer_stats;
    get "/customers/{customerId}" => customers::get;
    patch "/customers/{customerId}" => customers::update;
    post "/customers/{customerId}/subscriptions" => customers::create_subscription;
    patch "/customers/{customerId}/subscriptions/{subscriptionId}" => customers::update_subscription;
    patch "/customers/{customerId}/subscriptions/{subscriptionId}/products/{productId}" => customers::update_subscription_product;
    get "/customers/{customerId}/stats" => profitability::customer_stats;
    get "/customers/{customerId}/wallet" => wallet::get_wallet;
    get "/customers/{customerId}/wallet/{accountId}" => wallet::get_account;
    get "/customers/{customerId}/wallet/{accountId}/grants" => wallet::get_credit_grants;
    get "/customers/{customerId}/wallet/transactions/{transactionId}" => wallet::get_transaction;
    post "/customers/{customerId}/wallet/adjustments" => adjustments::create_adjustment;
    post "/customers/{customerId}/wallet/charges" => adjustments::create_charge;

    post "/events" => events::send_usage;
    get "/events" => events::list;
    get "/events/{eventId}" => events::get;

    post "/vendors" => vendors::create;
    get "/vendors" => vendors::list;
    get "/vendors/{vendorId}" => vendors::get;
    get "/vendors/{vendorId}/stats" => profitability::vendor_stats;

    post "/test-clocks" => clocks::create;
    get "/test-clocks/{clockId}" => clocks::get;
    delete "/test-clocks/{clockId}" => clocks::delete;
    post "/test-clocks/{clockId}/advance" => clocks::advance;
}

/// Routes that need no key.
pub const PUBLIC_ROUTES: &[(&str, &str)] =
    &[("get", "/openapi.json"), ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")];

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], schemas::openapi::OPENAPI_JSON)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

type Check = dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync;

/// What `GET /readyz` asks: a check answering, for each dependency the role cannot use now, a
/// short description of what is not ready (an empty list: ready).
#[derive(Clone)]
pub struct Readiness(Arc<Check>);

impl Readiness {
    /// The longest `/readyz` waits for the check; a dependency that hangs is not ready.
    pub const TIMEOUT: Duration = Duration::from_secs(3);

    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(check())))
    }

    /// Ready while the store answers a point read.
    pub fn store(store: SharedStore) -> Self {
        Self::new(move || {
            let store = Arc::clone(&store);
            async move { store_problem(store.as_ref()).await.into_iter().collect() }
        })
    }

    /// What is not ready now.
    pub async fn problems(&self) -> Vec<String> {
        match tokio::time::timeout(Self::TIMEOUT, (self.0)()).await {
            Ok(problems) => problems,
            Err(_) => vec![format!("the readiness check did not answer within {:?}", Self::TIMEOUT)],
        }
    }
}

/// Why the store is not ready, if it is not: a point read of a settings key must answer.
pub async fn store_problem(store: &dyn store::Store) -> Option<String> {
    store.get(store::Table::Meta, "readiness").await.err().map(|e| format!("store: {e}"))
}

/// 200 `{"status":"ready"}`, or a 503 ProblemDetails naming what is not ready.
async fn readyz(readiness: Readiness) -> axum::response::Response {
    let problems = readiness.problems().await;
    if problems.is_empty() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        crate::ApiError::Unavailable(format!("not ready: {}", problems.join("; "))).into_response()
    }
}

/// `GET /healthz` (liveness), `GET /readyz` (readiness per `readiness`) and `GET /metrics`: what
/// every role serves, with no key.
pub fn probes<S: Clone + Send + Sync + 'static>(readiness: Readiness) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(move || readyz(readiness.clone())))
        .route("/metrics", get(metrics))
}

/// Only the probes: the HTTP surface of the rater and ledger-writer roles.
pub fn probe_router(readiness: Readiness) -> Router {
    layered(
        probes(readiness)
            .fallback(not_found)
            .method_not_allowed_fallback(|| async { crate::ApiError::MethodNotAllowed }),
    )
}

/// Prometheus text exposition of every metric of the process.
async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], telemetry::METRICS.render())
}

async fn not_found() -> crate::ApiError {
    crate::ApiError::NotFound("no such route".into())
}

/// The whole HTTP surface.
/// A body announced larger than the limit is refused from its `Content-Length` alone, before
/// any of it is read (the body limit above still guards chunked bodies).
async fn refuse_oversized(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return crate::ApiError::PayloadTooLarge(MAX_BODY_BYTES).into_response();
    }
    next.run(request).await
}

/// Reads the whole body (within the limit) before routing, so that a request refused before its
/// handler reads the body (a malformed path parameter, a missing key) is still answered: a
/// server that answers and closes while the client is still sending makes the client see a
/// broken connection instead of the 4xx.
async fn read_whole_body(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(_) => crate::ApiError::PayloadTooLarge(MAX_BODY_BYTES).into_response(),
    }
}

/// The whole HTTP surface of the test environment alone, ready while its store answers (the API
/// crate's tests).
pub fn router(state: AppState) -> Router {
    let readiness = Readiness::store(state.store.clone());
    router_with(Environments::test_only(state), readiness)
}

/// The whole HTTP surface, ready per `readiness`: the `api` role and `drawdown serve`. A request
/// reaches the environment of its key.
pub fn router_with(environments: Environments, readiness: Readiness) -> Router {
    let surface = |state: &AppState| finish(authenticated()).with_state(state.clone());
    dispatched(&environments, surface, readiness, true)
}

/// `POST /events` and the probes: the `ingest` role.
pub fn ingest_router(environments: Environments, readiness: Readiness) -> Router {
    let surface = |state: &AppState| {
        finish(Router::new().route("/events", post(events::send_usage))).with_state(state.clone())
    };
    dispatched(&environments, surface, readiness, false)
}

/// Each environment's copy of a surface, built by `surface` over its state.
#[derive(Clone)]
struct Surfaces {
    test: (Router, SharedStore),
    live: Option<(Router, SharedStore)>,
}

/// The probes (and the OpenAPI document when `openapi`), then every other request dispatched to
/// the surface of its key's environment, once the key is known there.
fn dispatched(
    environments: &Environments,
    surface: impl Fn(&AppState) -> Router,
    readiness: Readiness,
    openapi_document: bool,
) -> Router {
    let surfaces = Arc::new(Surfaces {
        test: (surface(&environments.test), environments.test.store.clone()),
        live: environments.live.as_ref().map(|live| (surface(live), live.store.clone())),
    });
    let mut app = probes(readiness);
    if openapi_document {
        app = app.route("/openapi.json", get(openapi));
    }
    layered(
        app.fallback(dispatch)
            .method_not_allowed_fallback(|| async { crate::ApiError::MethodNotAllowed })
            .with_state(surfaces),
    )
}

/// Authenticates the request in its key's environment and hands it to that environment's surface.
async fn dispatch(
    axum::extract::State(surfaces): axum::extract::State<Arc<Surfaces>>,
    mut request: axum::extract::Request,
) -> axum::response::Response {
    let key = request.headers().get(auth::HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let environment = auth::environment_of(key);
    let surface = match environment {
        auth::Environment::Test => Some(&surfaces.test),
        auth::Environment::Live => surfaces.live.as_ref(),
    };
    let Some((router, store)) = surface else { return crate::ApiError::Unauthorized.into_response() };
    if let Err(refused) = auth::authenticate(store, key, environment).await {
        return refused.into_response();
    }
    let tenant = match tenant_of(store.as_ref(), request.headers()).await {
        Ok(tenant) => tenant,
        Err(refused) => return refused.into_response(),
    };
    request.extensions_mut().insert(environment);
    request.extensions_mut().insert(tenant);
    match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The connected account `X-CREDYT-ACCOUNT` names, which must be one of this environment's
/// (404 otherwise); without the header, the platform's own data.
async fn tenant_of(
    store: &dyn store::Store,
    headers: &axum::http::HeaderMap,
) -> Result<Tenant, crate::ApiError> {
    let Some(value) = headers.get(tenancy::HEADER) else { return Ok(Tenant::default()) };
    let id = value.to_str().unwrap_or_default();
    match store.get(store::Table::ConnectedAccounts, id).await? {
        Some(_) if !id.is_empty() => Ok(Tenant(Some(Arc::from(id)))),
        _ => Err(crate::ApiError::not_found("account", id)),
    }
}

/// The fallbacks of a surface.
fn finish(app: Router<AppState>) -> Router<AppState> {
    app.fallback(not_found).method_not_allowed_fallback(|| async { crate::ApiError::MethodNotAllowed })
}

/// The body limits and panic guard every surface shares.
fn layered(app: Router) -> Router {
    app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(read_whole_body))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

/// Defence in depth: a handler that panics (a bug) answers a 500 ProblemDetails and is counted,
/// instead of dropping the connection.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a handler panicked");
    telemetry::METRICS.http_handler_panics_total.add(1);
    tracing::error!(panic = message, "a request handler panicked");
    crate::ApiError::Internal("the request could not be completed".into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_readyz(readiness: Readiness) -> (StatusCode, serde_json::Value) {
        let request = Request::builder().uri("/readyz").body(Body::empty()).unwrap();
        let response = probe_router(readiness).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn readyz_is_200_when_every_dependency_is_ready() {
        let (status, body) = get_readyz(Readiness::new(|| async { Vec::new() })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({ "status": "ready" }));
    }

    #[tokio::test]
    async fn readyz_is_a_503_problem_naming_what_is_not_ready() {
        let readiness =
            Readiness::new(|| async { vec!["log: unreachable".into(), "group `raters`: not joined".into()] });
        let (status, body) = get_readyz(readiness).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], 503);
        assert_eq!(body["detail"], "not ready: log: unreachable; group `raters`: not joined");
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_counted_500_problem() {
        async fn boom() -> &'static str {
            panic!("deliberate")
        }
        let before = telemetry::METRICS.http_handler_panics_total.get();
        let router = layered(Router::new().route("/boom", get(boom)));
        let request = Request::builder().uri("/boom").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["status"], 500);
        assert!(telemetry::METRICS.http_handler_panics_total.get() > before);
    }

    #[tokio::test]
    async fn probes_need_no_key_and_nothing_else_is_served() {
        let router = probe_router(Readiness::new(|| async { Vec::new() }));
        for (uri, expected) in [
            ("/healthz", StatusCode::OK),
            ("/metrics", StatusCode::OK),
            ("/customers", StatusCode::NOT_FOUND),
        ] {
            let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
            assert_eq!(router.clone().oneshot(request).await.unwrap().status(), expected, "{uri}");
        }
    }
}
