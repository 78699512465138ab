//! Pure types shared by every drawdown crate: prefixed ids, exact money, the catalog model
//! (assets, products, versions, prices, entitlements, customers, subscriptions, vendors,
//! connected accounts), the Credyt wire types, error bodies and request validation.
//!
//! Nothing here does IO or depends on an async runtime, so the rating and posting cores can use
//! these types directly.
//!
//! - [`ids`]: prefixed, time-ordered ids (`cust_...`) as newtypes.
//! - [`money`]: the exact decimal type and its rounding rule.
//! - [`currency`]: ISO 4217 codes that exist without being created.
//! - [`catalog`]: assets, rates, products, versions, prices and entitlements as stored and served.
//! - [`customer`]: customers, subscriptions, wallet accounts, vendors, connected accounts.
//! - [`usage`]: usage events, event data values and the fees computed for them.
//! - [`wire`]: request/response bodies of the HTTP API that are not stored as-is.
//! - [`problem`]: ProblemDetails and ValidationProblem bodies, and the error collector.
//! - [`validate`]: request validation that names the failing field path.
//! - [`openapi`]: the OpenAPI 3.1 description of every implemented route.

pub mod catalog;
pub mod clock;
pub mod currency;
pub mod customer;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod openapi;
pub mod problem;
pub mod tagged;
pub mod usage;
pub mod validate;
pub mod wire;

pub use chrono::{DateTime, Utc};
pub use money::Decimal;

/// Timestamps on the wire and in the store are UTC.
pub type Timestamp = DateTime<Utc>;
