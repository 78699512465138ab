//! The ledger writer: exactly one per partition of `ledger.input`, it applies each customer's
//! inputs in log order and persists the postings atomically with the input offset.
//!
//! - [`posting`]: the pure posting core of `semantics.md` §2 and §4: credit grants, the
//!   consumption order, debits split across grants, overdraft debt and its repayment, expiry
//!   write-offs. No IO.
//! - [`state`]: what is stored per customer ([`state::LedgerState`]) and per partition
//!   ([`state::PartitionProgress`]: offset and fencing epoch).
//! - [`client`]: how the API submits wallet commands and waits until they are posted.
//! - [`apply`]: applying one decoded input to a customer's in-memory state, producing the
//!   transactions and events to write. Pure and deterministic: no IO, no wall clock.
//! - [`fixtures`]: builders of inputs and products for the tests.
//! - [`scheduler`]: turns time into ledger inputs: ticks for customers whose next change is
//!   due, run beside each partition's writer.
//! - [`writer`]: the async shell, one task per partition: reads batches, loads what they need,
//!   applies them and commits each batch in one fenced, atomic store write.

pub mod apply;
pub mod client;
pub mod fixtures;
pub mod posting;
pub mod scheduler;
pub mod state;
pub mod writer;

pub use client::{LedgerClient, Posted, SubmitError};
pub use state::{LedgerState, PartitionProgress};
pub use writer::{run_partition, spawn_all, WriterError, WriterOptions};
