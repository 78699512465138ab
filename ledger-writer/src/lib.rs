//! The ledger writer: exactly one per partition of `ledger.input`, it applies each customer's
//! inputs in log order and persists the postings atomically with the input offset.
//!
//! - [`posting`]: the pure posting core of `semantics.md` §2 and §4: credit grants, the
//!   consumption order, debits split across grants, overdraft debt and its repayment, expiry
//!   write-offs. No IO; the writer shell (next) loads state, calls it, and persists the result.

pub mod posting;
