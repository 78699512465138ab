//! The Credyt-compatible HTTP API (`shared/docs/api.md`): routing, authentication, request
//! extraction and the catalog, customer, vendor, account, wallet, event and stats handlers.
//!
//! - [`routes`]: the route table, from which both the router and the OpenAPI agreement test come.
//! - [`auth`]: `X-CREDYT-API-KEY` checking and API key provisioning (only hashes are stored).
//! - [`error`]: the one mapping from errors to ProblemDetails / ValidationProblem.
//! - [`extract`]: JSON bodies (400 vs 422), raw bodies and query strings.
//! - [`docs`]: shared helpers over the store (load or 404, optimistic read-modify-write, paging).
//! - [`assets`], [`products`], [`customers`], [`vendors`], [`accounts`]: catalog handlers.
//! - [`wallet`]: wallet, account, grant and transaction reads; [`grants`]: the grant listing's
//!   pure filters.
//! - [`adjustments`]: adjustments and charges, submitted to the ledger writer, idempotent on
//!   `transaction_id`.
//! - [`events`]: `POST /events` (through ingest) and the posted-event reads.
//! - [`stats`]: the pure profitability arithmetic; [`profitability`]: the stats handlers.

pub mod accounts;
pub mod adjustments;
pub mod assets;
pub mod auth;
pub mod clocks;
pub mod customers;
pub mod docs;
pub mod error;
pub mod events;
pub mod extract;
pub mod grants;
pub mod products;
pub mod profitability;
pub mod routes;
pub mod stats;
pub mod tenancy;
pub mod vendors;
pub mod wallet;

use ingest::Ingest;
use ledger_writer::LedgerClient;
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
    /// `POST /events`: admission, validation, dedupe, durable append to `usage.raw`.
    pub ingest: Arc<Ingest>,
    /// Adjustments and charges go to the ledger writers through this, and are answered once
    /// posted.
    pub ledger: LedgerClient,
    /// Whose data the request reaches (set per request by [`tenancy::Scope`]).
    pub tenant: tenancy::Tenant,
}

/// What each environment's requests reach: the test environment always, the live one when the
/// process serves it. The two share nothing (their own store, log and pipeline).
#[derive(Clone)]
pub struct Environments {
    pub test: AppState,
    pub live: Option<AppState>,
}

impl Environments {
    /// Only the test environment (the API crate's own tests).
    pub fn test_only(test: AppState) -> Self {
        Self { test, live: None }
    }

    pub fn get(&self, environment: auth::Environment) -> Option<&AppState> {
        match environment {
            auth::Environment::Test => Some(&self.test),
            auth::Environment::Live => self.live.as_ref(),
        }
    }
}

impl AppState {
    /// Loads (creating on first start) the server-wide settings from the store.
    pub async fn load(
        store: SharedStore,
        ingest: Arc<Ingest>,
        ledger: LedgerClient,
    ) -> Result<Self, ApiError> {
        let account_id = accounts::platform_account_id(store.as_ref()).await?;
        Ok(Self { store, account_id: account_id.into(), ingest, ledger, tenant: tenancy::Tenant::default() })
    }
}
