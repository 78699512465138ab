//! The Credyt-compatible HTTP API (`shared/docs/api.md`): routing, authentication, request
//! extraction and the catalog, customer, vendor, account and wallet-read handlers.
//!
//! - [`routes`]: the route table, from which both the router and the OpenAPI agreement test come.
//! - [`auth`]: `X-CREDYT-API-KEY` checking and API key provisioning (only hashes are stored).
//! - [`error`]: the one mapping from errors to ProblemDetails / ValidationProblem.
//! - [`extract`]: JSON bodies (400 vs 422) and query strings.
//! - [`docs`]: shared helpers over the store (load or 404, optimistic read-modify-write, paging).
//! - [`assets`], [`products`], [`customers`], [`vendors`], [`accounts`], [`wallet`]: handlers.

pub mod accounts;
pub mod assets;
pub mod auth;
pub mod customers;
pub mod docs;
pub mod error;
pub mod extract;
pub mod products;
pub mod routes;
pub mod vendors;
pub mod wallet;

use std::sync::Arc;
use store::SharedStore;

pub use error::ApiError;
pub use routes::router;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    /// The platform account this server bills for (`GET /accounts/self`).
    pub account_id: Arc<str>,
}

impl AppState {
    /// Loads (creating on first start) the server-wide settings from the store.
    pub async fn load(store: SharedStore) -> Result<Self, ApiError> {
        let account_id = accounts::platform_account_id(store.as_ref()).await?;
        Ok(Self { store, account_id: account_id.into() })
    }
}
