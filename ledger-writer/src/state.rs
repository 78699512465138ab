//! What the writer stores per customer and per partition.

use crate::posting::Account;
use schemas::customer::SubscribedProduct;
use schemas::{Decimal, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A customer's ledger (`Table::Ledger`, key: the customer id). Only the writer of the customer's
/// partition writes it; the API reads it for balances and grants.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerState {
    pub customer_id: String,
    /// `ledger.input` offsets below this are applied for this customer (replays skip them).
    #[serde(default)]
    pub applied_offset: u64,
    /// The latest input time applied: the writer's clock for this customer never goes back, so
    /// an input that raced ahead in the log cannot see the ledger in the past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Timestamp>,
    /// Accounts by id (`{name}:{ASSET}`).
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
    /// Graduated-tier counters: period (`lifetime`, `2026-11`, `2026-Q4`, `2026`) → price id →
    /// cumulative quantity.
    #[serde(default)]
    pub counters: BTreeMap<String, BTreeMap<String, Decimal>>,
    /// Subscriptions being billed over time, by subscription id (`docs/subscriptions.md`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, SubscriptionLedger>,
    /// Post-paid usage counted in the open period: price id → dimension key → tally.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub postpaid: BTreeMap<String, BTreeMap<String, Tally>>,
    /// The revision of the customer document the subscriptions were last taken from: an older
    /// snapshot arriving later is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_revision: Option<u64>,
    /// The test clock the customer lives by: its changes are driven by the clock's advances,
    /// not by the wall-clock scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clock: Option<String>,
    /// The `Table::Schedule` key written for the next due change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
}

/// What the writer keeps of one subscription to bill it over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionLedger {
    /// The start of the billing cycle; `None` while the subscription bills nothing (inactive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Timestamp>,
    pub products: Vec<SubscribedProduct>,
    /// Whether the cycle's items were opened at the anchor.
    #[serde(default)]
    pub opened: bool,
    /// The cycle's items (entitlements, fixed prices, post-paid prices) by item key.
    #[serde(default)]
    pub items: BTreeMap<String, Item>,
}

/// One item of a billing cycle: its current period `[start, end)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The period number within the cycle (0 at the anchor).
    pub period: u32,
    pub start: Timestamp,
    /// When the period ends and the item is due again; `None`: the item is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    /// The grant an entitlement issued for this period (`{account_id}|{grant_id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// Post-paid usage of one price (and dimension combination) in the open period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub events: Decimal,
    pub volume: Decimal,
}

impl LedgerState {
    pub fn new(customer_id: &str) -> Self {
        Self { customer_id: customer_id.to_string(), ..Self::default() }
    }

    /// The next moment a time-driven change is due: a grant's expiry, a cycle's opening, an
    /// item's period end.
    pub fn next_due(&self) -> Option<Timestamp> {
        let expiry = self.accounts.values().filter_map(Account::next_expiry).min();
        let subscriptions = self.subscriptions.values().filter_map(|s| match s.anchor {
            Some(anchor) if !s.opened => Some(anchor),
            _ => s.items.values().filter_map(|i| i.end).min(),
        });
        expiry.into_iter().chain(subscriptions).min()
    }

    /// `available` of an account at `now` (zero for an account with no postings yet); `None`
    /// only if the account broke the ledger bound, which the posting core prevents.
    pub fn available(&self, account_id: &str, now: Timestamp) -> Option<Decimal> {
        self.accounts.get(account_id).map_or(Some(Decimal::ZERO), |a| a.available(now))
    }
}

/// How far a partition's writer got (`Table::Offsets`, key `writer/{partition}`), written in the
/// same atomic write as the postings it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// The next `ledger.input` offset to apply.
    pub next_offset: u64,
    /// Bumped by every writer that takes the partition; a write carrying an older epoch is
    /// refused, so a writer that lost the partition cannot post.
    pub epoch: u64,
    /// The first offset of the batch that moved `next_offset` here. A writer that (re)starts
    /// reads from here: on a store that applies a batch one customer partition at a time
    /// (ScyllaDB, `docs/scylla.md`) a crash can leave some customers of that batch unwritten,
    /// and re-applying it posts only theirs (the others' `applied_offset` already moved past).
    /// A record written before this field existed reads as "unknown", and resumes at
    /// `next_offset` (not at 0: that would read the whole partition again).
    #[serde(default = "unknown_batch_start")]
    pub batch_start: u64,
}

fn unknown_batch_start() -> u64 {
    u64::MAX
}

impl PartitionProgress {
    pub fn key(partition: u32) -> String {
        format!("writer/{partition}")
    }

    /// Where a writer taking over or starting again reads from: the start of the last batch.
    pub fn resume_from(&self) -> u64 {
        self.batch_start.min(self.next_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_resumes_at_the_start_of_the_last_batch_or_where_an_older_record_says() {
        let progress: PartitionProgress =
            serde_json::from_str(r#"{"next_offset": 42, "epoch": 3, "batch_start": 40}"#).unwrap();
        assert_eq!(progress.resume_from(), 40);
        let older: PartitionProgress = serde_json::from_str(r#"{"next_offset": 42, "epoch": 3}"#).unwrap();
        assert_eq!(older.resume_from(), 42, "not 0: that would read the whole partition again");
        assert_eq!(PartitionProgress::default().resume_from(), 0);
    }
}
