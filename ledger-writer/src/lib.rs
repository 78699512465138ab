//! The ledger writer: exactly one per partition of `ledger.input`, it applies each customer's
//! inputs in log order and persists the postings atomically with the input offset.
//!
//! - [`posting`]: the pure posting core of `semantics.md` §2 and §4: credit grants, the
//!   consumption order, debits split across grants, overdraft debt and its repayment, expiry
//!   write-offs. No IO.
//! - [`state`]: what is stored per customer ([`state::LedgerState`]) and per partition
//!   ([`state::PartitionProgress`]: offset and fencing epoch).
//! - [`client`]: how the API submits wallet commands and waits until they are posted.

pub mod client;
pub mod posting;
pub mod state;

pub use client::{LedgerClient, Posted, SubmitError};
pub use state::{LedgerState, PartitionProgress};
