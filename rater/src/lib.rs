//! The rating core: a pure, synchronous function from (event, subscribed product versions,
//! customer counters and balances) to fees, with the full breakdown and warnings. The core
//! modules do no IO and are not async; the rater workers and `simulate-usage` both call them
//! (`semantics.md` §3).
//!
//! - [`context`]: what rating reads about the customer (tier counters, balances) and a scratch
//!   implementation for simulations.
//! - [`period`]: tier periods (`lifetime`, calendar month/quarter/year in UTC).
//! - [`amount`]: the arithmetic of every pricing model (flat, package, tiered, bulk, clamps).
//! - [`rate`]: matching prices to an event, dimensions, quantities, multi-asset choice.
//! - [`fee`]: the fee as computed (borrowing the catalog) and its wire forms.
//! - [`fixtures`]: catalog and event builders from JSON, shared by tests and benches.
//!
//! Around the core, the rater workers (IO, async):
//! - [`cache`]: a worker's own cache of customers and products.
//! - [`rated`]: one accepted request rated without customer state (`RawUsage` → `RatedUsage`).
//! - [`worker`]: one task per `usage.raw` partition, forwarding rated usage to `ledger.input`.

pub mod amount;
pub mod cache;
pub mod context;
pub mod fee;
pub mod fixtures;
pub mod period;
pub mod rate;
pub mod rated;
pub mod worker;

pub use context::{RatingContext, Scratch};
pub use fee::{fee_id, CounterDelta, Fee, Rating};
pub use period::PeriodKey;
pub use rate::{rate, Subscribed};
pub use worker::{run_partition, spawn_all, RaterError, RaterOptions, RaterProgress};
