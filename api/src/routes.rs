//! The route table. One list produces both the router and [`ROUTES`], which a test compares
//! with the OpenAPI document, so the two cannot drift apart.

use crate::{
    accounts, adjustments, assets, auth, customers, events, products, profitability, vendors, wallet,
    AppState, MAX_BODY_BYTES,
};
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};

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
}

/// Routes that need no key.
pub const PUBLIC_ROUTES: &[(&str, &str)] =
    &[("get", "/openapi.json"), ("get", "/healthz"), ("get", "/metrics")];

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], schemas::openapi::OPENAPI_JSON)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
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

pub fn router(state: AppState) -> Router {
    let protected =
        authenticated().route_layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { crate::ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_oversized))
        .with_state(state)
}
