//! The vocabulary of the storage contract.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every table the services use. A table holds records keyed by string; keys sort bytewise.
/// (Serialized by [`Table::name`], for the remote store's protocol.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Server-wide settings (platform account id).
    Meta,
    /// API keys by the hex SHA-256 of the key; the key itself is never stored.
    ApiKeys,
    Assets,
    Products,
    Customers,
    /// `{customer_id}/{account_id}`: a customer's wallet accounts.
    WalletAccounts,
    /// `{product_id}/{customer_id}/{subscription_id}`: who subscribes to a product.
    ProductSubscribers,
    Vendors,
    ConnectedAccounts,
    /// `{customer_id}`: a customer's ledger state (accounts, grants, debt, tier counters), owned
    /// by the ledger writer of the customer's partition.
    Ledger,
    /// `{customer_id}/{transaction_id}`: posted transactions (fees, charges, adjustments, expiries).
    Transactions,
    /// `{event_id}/{customer_id}`: posted usage events with their fees.
    Events,
    /// `writer/{partition}`, `rater/{partition}`: how far each pipeline stage got in its log
    /// partition (and the writer's fencing epoch).
    Offsets,
    /// Test clocks by id (test environment).
    TestClocks,
    /// `{partition}/{due}/{customer_id}`: when a customer's next time-driven change is due,
    /// written by the partition's ledger writer and read in time order by its scheduler.
    Schedule,
    /// `{partition}/{offset}/{event_id}`: domain events (`subscription.renewed`,
    /// `grant.expired`, ...) recorded in the same commit as the change they report, in log order,
    /// for webhooks to deliver.
    Outbox,
}

impl Table {
    pub const ALL: [Table; 16] = [
        Table::Meta,
        Table::ApiKeys,
        Table::Assets,
        Table::Products,
        Table::Customers,
        Table::WalletAccounts,
        Table::ProductSubscribers,
        Table::Vendors,
        Table::ConnectedAccounts,
        Table::Ledger,
        Table::Transactions,
        Table::Events,
        Table::Offsets,
        Table::TestClocks,
        Table::Schedule,
        Table::Outbox,
    ];

    /// The table's position in [`Table::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::ApiKeys => "api_keys",
            Table::Assets => "assets",
            Table::Products => "products",
            Table::Customers => "customers",
            Table::WalletAccounts => "wallet_accounts",
            Table::ProductSubscribers => "product_subscribers",
            Table::Vendors => "vendors",
            Table::ConnectedAccounts => "connected_accounts",
            Table::Ledger => "ledger",
            Table::Transactions => "transactions",
            Table::Events => "events",
            Table::Offsets => "offsets",
            Table::TestClocks => "test_clocks",
            Table::Schedule => "schedule",
            Table::Outbox => "outbox",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stored record. `revision` starts at 1 and grows by one with every put of the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub revision: u64,
    pub doc: Vec<u8>,
}

/// A precondition checked inside the write transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// No precondition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist at exactly this revision (optimistic concurrency).
    Revision(u64),
}

/// Every unique index the services claim: the remote store's server accepts these names only
/// (a [`UniqueKey`]'s index is a `&'static str`).
pub const UNIQUE_INDEXES: [&str; 2] = ["code", "external_id"];

/// The static name of the unique index `name`, if it is one of [`UNIQUE_INDEXES`].
pub fn unique_index(name: &str) -> Option<&'static str> {
    UNIQUE_INDEXES.iter().copied().find(|i| *i == name)
}

/// A value that at most one record of a table may hold under the named index (e.g. a customer's
/// `external_id`). A put replaces the record's previous unique keys; a delete releases them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UniqueKey {
    pub index: &'static str,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Put { table: Table, key: String, doc: Vec<u8>, expect: Expect, unique: Vec<UniqueKey> },
    Delete { table: Table, key: String, expect: Expect },
}

/// A record's unique claims as one text, the way both backends store them beside the record:
/// `index SEP value END` per claim.
pub(crate) fn encode_claims(unique: &[UniqueKey]) -> String {
    let mut out = String::new();
    for claim in unique {
        out.push_str(claim.index);
        out.push(CLAIM_SEP);
        out.push_str(&claim.value);
        out.push(CLAIM_END);
    }
    out
}

/// The (index, value) pairs of [`encode_claims`]'s text stored under `table`/`key`.
pub(crate) fn decode_claims(
    table: Table,
    key: &str,
    text: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    text.split(CLAIM_END)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry.split_once(CLAIM_SEP).map(|(i, v)| (i.to_string(), v.to_string())).ok_or_else(|| {
                StoreError::Corrupt {
                    table,
                    key: key.to_string(),
                    reason: "malformed unique keys".to_string(),
                }
            })
        })
        .collect()
}

/// Separates an index from its value in stored claims (and in the embedded unique slots).
pub(crate) const CLAIM_SEP: char = '\x1f';
/// Ends one stored claim.
const CLAIM_END: char = '\x1e';

impl Expect {
    /// Checks the precondition against the revision `found` under `table`/`key` (`None`: absent).
    pub fn check(self, table: Table, key: &str, found: Option<u64>) -> Result<(), StoreError> {
        let holds = match self {
            Expect::Any => true,
            Expect::Absent => found.is_none(),
            Expect::Revision(r) => found == Some(r),
        };
        if holds {
            Ok(())
        } else {
            Err(StoreError::Conflict { table, key: key.to_string(), expected: self, found })
        }
    }
}

impl Op {
    pub fn expect(mut self, precondition: Expect) -> Self {
        match &mut self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } => *expect = precondition,
        }
        self
    }

    /// Claims `value` under `index` for this record (ignored on deletes).
    pub fn unique(mut self, index: &'static str, value: impl Into<String>) -> Self {
        if let Op::Put { unique, .. } = &mut self {
            unique.push(UniqueKey { index, value: value.into() });
        }
        self
    }

    pub fn delete(table: Table, key: impl Into<String>) -> Self {
        Op::Delete { table, key: key.into(), expect: Expect::Any }
    }
}

/// Operations applied together: all or none.
pub type WriteBatch = Vec<Op>;

/// Which slice of a listing to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRange {
    pub offset: usize,
    pub limit: Option<usize>,
}

impl ListRange {
    pub const ALL: ListRange = ListRange { offset: 0, limit: None };

    pub fn page(offset: usize, limit: usize) -> Self {
        Self { offset, limit: Some(limit) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub records: Vec<Record>,
    pub total: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("precondition failed on {table}/{key}: expected {expected:?}, found revision {found:?}")]
    Conflict { table: Table, key: String, expected: Expect, found: Option<u64> },
    #[error("{table}.{index} `{value}` is already taken")]
    UniqueViolation { table: Table, index: &'static str, value: String },
    #[error("corrupt record in {table}/{key}: {reason}")]
    Corrupt { table: Table, key: String, reason: String },
    #[error("storage backend error: {0}")]
    Backend(String),
}
