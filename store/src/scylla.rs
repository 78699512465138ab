//! The ScyllaDB backend of [`Store`]: the durable state of a distributed deployment, where
//! several processes (API servers, raters, ledger writers) share one cluster.
//!
//! # Connecting
//! `scylla://host:port[,host:port...]/keyspace[?replication=N]` ([`ScyllaConfig::parse`]; the port
//! defaults to 9042, IPv6 hosts are bracketed). At start ([`ScyllaStore::connect`]) the keyspace is
//! created if missing (`SimpleStrategy`, replication `N`, default 1, vnodes: Scylla 6 runs
//! lightweight transactions only on vnode keyspaces) and the schema is migrated: the
//! `schema_version` table holds the number of [`MIGRATIONS`] applied, so a later version appends
//! its migration and every start applies what is missing. The data statements are prepared once, at
//! start. Load balancing is the driver's default policy with token awareness: a statement goes
//! straight to a replica of its partition.
//!
//! # Data model
//! ```text
//! records        (pk text, tbl text, ck text, revision bigint, doc blob, uniques text,
//!                 PRIMARY KEY ((pk), tbl, ck))
//! uniques        (tbl text, idx text, value text, owner text, PRIMARY KEY ((tbl, idx, value)))
//! event_index    (head text, record_key text, PRIMARY KEY ((head), record_key))
//! schema_version (component text PRIMARY KEY, version int)
//! ```
//! A record `(table, key)` is the row `tbl = table name, ck = key` of the partition `pk`
//! (`partition_of`):
//! - `Ledger` `{c}`, `Transactions` `{c}/...`, `WalletAccounts` `{c}/...`: `pk` is the customer id,
//!   the text before the first `/`; `Events` `{event}/{c}`: the text after the last `/` (customer
//!   ids never contain `/`; event ids may). So everything one customer owns is one partition, and
//!   what the ledger writer posts for a customer (its ledger document, transactions and events) is
//!   written by one atomic conditional batch. This is why the partition key is `pk` alone, with
//!   the table in the clustering key: with `(tbl, pk)` a customer's posting would span four
//!   partitions and a crash could store a ledger whose `applied_offset` covers transactions that
//!   were never written.
//! - `Offsets`: one partition per record (`/offsets/{key}`). Every ledger writer's fence is a
//!   conditional write of its own record, and conditional writes to one partition serialize.
//! - Every other table (`Meta`, `ApiKeys`, `Assets`, `Products`, `Customers`, `ProductSubscribers`,
//!   `Vendors`, `ConnectedAccounts`): one partition per table (`/{table}`). They are small
//!   catalog tables, so a prefix listing is one partition scan. A leading `/` keeps these
//!   partitions apart from customers'.
//!
//! Events are also found by event id (`list(Events, "{event}/")`, how the API looks an event up):
//! `event_index` holds a pointer row per event, partitioned by the key's text before the first
//! `/`, so such a listing is one index partition scan followed by reads of the records it
//! names. Pointers are plain writes (not lightweight transactions: one per event would double
//! the writer's consensus rounds), written before the event's record and deleted after it, so a
//! pointer may outlive its record (a failed or interrupted write; it is skipped when read) but a
//! stored event always has its pointer. The alternative, storing each event twice, would put the
//! second copy in another partition and make the two copies disagree after a partial write.
//!
//! Listings: a catalog table, or a customer table with a prefix holding a `/`, is one partition
//! range scan (`ck >= prefix`, stopped at the first key past the prefix); an `Events` prefix
//! holding a `/` goes through `event_index`; anything else (all transactions, all events,
//! `Offsets`) is a paged full scan `WHERE tbl = ? ALLOW FILTERING`, filtered and sorted here:
//! the admin and reporting paths only. Every listing is paged by the driver.
//!
//! # Writes: what a batch guarantees
//! Scylla has no multi-partition transactions. [`Store::write`] groups the batch's operations
//! by partition, in the order each partition first appears in the batch (`group_by_partition`).
//! A group is applied as one conditional batch (a lightweight transaction): every row carries a
//! condition (`IF NOT EXISTS`, `IF revision = ?`), so the group is atomic and isolated within its
//! partition. Several operations on one key are folded into one statement first, checking each
//! operation's precondition against the effect of the ones before it, as the embedded store does
//! (`plan_group`). Groups are applied one after the other; the first group that fails its
//! preconditions stops the batch with [`StoreError::Conflict`] (or a unique key with
//! [`StoreError::UniqueViolation`]): it and the groups after it are not applied, the groups
//! before it stay applied. A backend error (a timeout, a lost node) can leave the group it hit
//! applied or not, as any distributed write. A group is one batch request, so it must stay under
//! the server's batch size limit (`batch_size_fail_threshold_in_kb`, 1 MiB by default).
//!
//! So the guarantee is per partition: one customer's records, one catalog table, one offset
//! record. The conformance tests that assert all-or-nothing for a batch spanning partitions
//! (`a_batch_is_all_or_nothing`, `concurrent_batches_fail_only_themselves`) hold here only in
//! their per-partition form (`Harness::CROSS_PARTITION_ATOMIC` is false for this backend);
//! `a_customers_records_commit_together` holds in full.
//!
//! The ledger writer's batch is the fence (`writer/{partition}` in `Offsets`, `Expect::Revision`)
//! first, then each customer's ledger, transactions and events: the fence group goes first, so a
//! fenced (zombie) writer stops before it writes anything else, and each customer's posting is one
//! atomic group. A crash between groups leaves some customers posted and some not; it is repaired
//! by re-applying the inputs of the interrupted batch: customers whose `applied_offset` already
//! moved skip them, the others post them. That repair needs the writer to re-read from where the
//! interrupted batch *started*, while the fence group has already stored where it ends: see
//! docs/scylla.md for what the writer must keep for that.
//!
//! # Revisions and preconditions
//! A row's `revision` is the record's revision, as in the embedded store (1 on insert, +1 on each
//! put). The revisions of the keys a batch touches are read first (concurrently; not for a key
//! whose first operation is an insert with `Expect::Absent`, assumed absent), and each statement is
//! conditioned on what was read. When a group's condition fails, its keys are read again: an
//! explicit precondition (`Absent`, `Revision`) that no longer holds is a conflict; otherwise an
//! `Expect::Any` operation lost a race and the group is planned and tried again.
//!
//! # Unique keys
//! `uniques` holds one row per claimed value, with the owning record's key; a record's `uniques`
//! column lists the values it holds (the embedded store's encoding). Claims are lightweight
//! transactions (`INSERT ... IF NOT EXISTS`) made before the record's group is written, and
//! released (`DELETE ... IF owner = ?`) after it: values the record no longer holds once its group
//! is applied, or, when the group fails, values this write claimed that the stored record does not
//! hold. A claim is valid only while its owner's record lists it: [`Store::find_unique`] checks
//! that, and a claim whose owner does not hold it (a write that failed or crashed between the
//! claim and the record) can be taken over once it is older than [`CLAIM_LEASE`] (younger, it
//! may belong to a write in flight).
//!
//! # Consistency and durability
//! Reads and writes use `QUORUM`, lightweight transactions `SERIAL`. Scylla writes the commit log
//! synchronously for every lightweight transaction, so every record and unique claim is on disk
//! on a quorum of replicas when `write` returns. Event pointers are ordinary writes: durable by
//! replication (use replication 3), or on one node after `commitlog_sync_period_in_ms`. There is
//! no snapshot: `get_many` reads its keys concurrently, each at its own instant.

use crate::model::{
    decode_claims, encode_claims, Expect, ListRange, Listing, Op, Record, StoreError, Table, UniqueKey,
};
use crate::Store;
use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::frame::response::result::ColumnType;
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::response::query_result::QueryResult;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::serialize::value::SerializeValue;
use ::scylla::serialize::writers::{CellWriter, WrittenCellProof};
use ::scylla::serialize::SerializationError;
use ::scylla::statement::batch::{Batch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use ::scylla::statement::{Consistency, SerialConsistency};
use ::scylla::value::{CqlValue, Row};
use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The CQL port used when a host of the URL names none.
pub const DEFAULT_PORT: u16 = 9042;
const SCHEME: &str = "scylla://";
/// How long a unique claim whose owner's record does not hold it is left to its write in
/// flight before another record may take it over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// How many times a group (or a claim) is tried when it keeps losing races to other writers.
const MAX_ATTEMPTS: u32 = 16;
/// Concurrent single-partition reads of one call (`get_many`, a batch's revisions).
const READ_CONCURRENCY: usize = 64;
/// Rows per page of a listing.
const PAGE_SIZE: i32 = 1000;
const SCHEMA_COMPONENT: &str = "store";
/// The schema, one entry per version: the statements that bring the version before it to it.
/// Each statement is idempotent, so a migration interrupted half-way runs again whole. `{ks}`
/// stands for the keyspace.
pub const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE IF NOT EXISTS {ks}.records (pk text, tbl text, ck text, revision bigint, doc blob, \
     uniques text, PRIMARY KEY ((pk), tbl, ck))",
    "CREATE TABLE IF NOT EXISTS {ks}.uniques (tbl text, idx text, value text, owner text, \
     PRIMARY KEY ((tbl, idx, value)))",
    "CREATE TABLE IF NOT EXISTS {ks}.event_index (head text, record_key text, \
     PRIMARY KEY ((head), record_key))",
]];

fn backend(what: impl Display, err: impl Display) -> StoreError {
    StoreError::Backend(format!("scylla: {what}: {err}"))
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Where the cluster is and which keyspace holds the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (`[v6 address]:port`).
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The keyspace's replication factor when it is created (an existing keyspace keeps its own).
    pub replication: u32,
}

impl ScyllaConfig {
    /// Reads `scylla://host:port[,host:port...]/keyspace[?replication=N]`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |why: String| StoreError::Backend(format!("invalid ScyllaDB URL `{url}`: {why}"));
        let rest = url.strip_prefix(SCHEME).ok_or_else(|| invalid(format!("it must start with {SCHEME}")))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = rest
            .split_once('/')
            .ok_or_else(|| invalid("no keyspace (scylla://host:port/keyspace)".to_string()))?;
        let nodes = hosts.split(',').map(parse_node).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        check_keyspace(keyspace).map_err(invalid)?;
        let replication = parse_query(query).map_err(invalid)?;
        Ok(Self { nodes, keyspace: keyspace.to_string(), replication })
    }

    /// The URL of this configuration, as [`ScyllaConfig::parse`] reads it.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}/{}?replication={}", self.nodes.join(","), self.keyspace, self.replication)
    }
}

/// One contact point: `host`, `host:port`, `[v6]` or `[v6]:port`, as `host:port`.
fn parse_node(node: &str) -> Result<String, String> {
    if node.is_empty() {
        return Err("an empty host".to_string());
    }
    if node.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(format!("host `{node}`: no spaces or credentials allowed"));
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(|| format!("host `{node}`: unclosed `[`"))?;
        if address.is_empty() {
            return Err(format!("host `{node}`: empty address"));
        }
        let port = match after {
            "" => DEFAULT_PORT,
            _ => parse_port(
                node,
                after.strip_prefix(':').ok_or_else(|| format!("host `{node}`: junk after `]`"))?,
            )?,
        };
        return Ok(format!("[{address}]:{port}"));
    }
    match node.rsplit_once(':') {
        None => Ok(format!("{node}:{DEFAULT_PORT}")),
        Some((host, _)) if host.is_empty() || host.contains(':') => {
            Err(format!("host `{node}`: IPv6 addresses go in brackets, `[::1]:9042`"))
        }
        Some((host, port)) => Ok(format!("{host}:{}", parse_port(node, port)?)),
    }
}

fn parse_port(node: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("host `{node}`: `{port}` is not a port")),
    }
}

/// Keyspace names are unquoted CQL identifiers: a lowercase letter, then lowercase letters,
/// digits and `_`, at most 48 characters.
fn check_keyspace(keyspace: &str) -> Result<(), String> {
    let mut chars = keyspace.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_well && rest_ok && keyspace.len() <= 48 {
        Ok(())
    } else {
        Err(format!(
            "keyspace `{keyspace}`: a lowercase letter, then lowercase letters, digits or `_`, at most 48"
        ))
    }
}

/// The URL's query: `replication=N` (N >= 1), or nothing (1).
fn parse_query(query: &str) -> Result<u32, String> {
    let mut replication = 1;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("replication", n)) => {
                replication = n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("replication `{n}` is not a positive number"))?;
            }
            _ => return Err(format!("unknown parameter `{pair}` (known: replication=N)")),
        }
    }
    Ok(replication)
}

// ---------------------------------------------------------------------------------------------
// Where records live

/// How a table's keys map to partitions (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// In the partition of the customer the key names.
    Customer,
    /// Each record in a partition of its own.
    PerRecord,
    /// The whole table in one partition.
    Catalog,
}

fn placement(table: Table) -> Placement {
    match table {
        Table::Ledger | Table::Transactions | Table::WalletAccounts | Table::Events => Placement::Customer,
        Table::Offsets | Table::Outbox => Placement::PerRecord,
        Table::Schedule => Placement::Catalog,
        Table::Meta
        | Table::ApiKeys
        | Table::Assets
        | Table::Products
        | Table::Customers
        | Table::ProductSubscribers
        | Table::Vendors
        | Table::ConnectedAccounts
        | Table::TestClocks => Placement::Catalog,
    }
}

/// The customer a key of a per-customer table belongs to: after the last `/` of an `Events` key
/// (`{event}/{customer}`), before the first `/` of the others; the whole key if it has no `/`.
fn customer_of(table: Table, key: &str) -> &str {
    if table == Table::Events {
        key.rsplit_once('/').map_or(key, |(_, customer)| customer)
    } else {
        key.split_once('/').map_or(key, |(customer, _)| customer)
    }
}

/// The partition (`pk`) of a record.
fn partition_of(table: Table, key: &str) -> String {
    match placement(table) {
        Placement::Customer => customer_of(table, key).to_string(),
        Placement::PerRecord => format!("/{}/{key}", table.name()),
        Placement::Catalog => format!("/{}", table.name()),
    }
}

/// The `event_index` partition of an `Events` key (or of a prefix holding a `/`).
fn event_head(key: &str) -> &str {
    key.split_once('/').map_or(key, |(head, _)| head)
}

/// How a listing is read.
#[derive(Debug, PartialEq, Eq)]
enum ListPlan {
    /// One partition of `records`, from the prefix on.
    Partition(String),
    /// One partition of `event_index`, then the records it points at.
    EventIndex(String),
    /// Every row of the table, filtered and sorted here.
    Scan,
}

fn list_plan(table: Table, prefix: &str) -> ListPlan {
    match (placement(table), prefix.split_once('/')) {
        (Placement::Catalog, _) => ListPlan::Partition(partition_of(table, "")),
        (Placement::PerRecord, _) | (Placement::Customer, None) => ListPlan::Scan,
        (Placement::Customer, Some((head, _))) if table == Table::Events => {
            ListPlan::EventIndex(head.to_string())
        }
        (Placement::Customer, Some((customer, _))) => ListPlan::Partition(customer.to_string()),
    }
}

fn target(op: &Op) -> (Table, &str) {
    match op {
        Op::Put { table, key, .. } | Op::Delete { table, key, .. } => (*table, key.as_str()),
    }
}

/// The operations of a batch that fall in one partition, in batch order.
#[derive(Debug)]
struct Group {
    pk: String,
    ops: Vec<Op>,
}

/// Splits a batch by partition, partitions in the order they first appear in the batch.
fn group_by_partition(batch: Vec<Op>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for op in batch {
        let (table, key) = target(&op);
        let pk = partition_of(table, key);
        let i = match position.get(&pk) {
            Some(i) => *i,
            None => {
                position.insert(pk.clone(), groups.len());
                groups.push(Group { pk, ops: Vec::new() });
                groups.len() - 1
            }
        };
        if let Some(group) = groups.get_mut(i) {
            group.ops.push(op);
        }
    }
    groups
}

// ---------------------------------------------------------------------------------------------
// Planning a group

/// What is stored for a record, as a write needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Stored {
    revision: u64,
    uniques: Vec<(String, String)>,
}

impl Stored {
    fn holds(&self, index: &str, value: &str) -> bool {
        self.uniques.iter().any(|(i, v)| i == index && v == value)
    }
}

/// The stored state of the records a batch touches (`None`: absent). A key missing from the map
/// is assumed absent.
type Known = HashMap<(Table, String), Option<Stored>>;

fn known_state(known: &Known, table: Table, key: &str) -> Option<Stored> {
    known.get(&(table, key.to_string())).cloned().flatten()
}

/// What a record becomes.
#[derive(Debug, PartialEq, Eq)]
enum Final<'a> {
    Put { revision: u64, doc: &'a [u8], claims: &'a [UniqueKey] },
    Delete,
}

/// The one statement a group writes for a key: its final state, conditioned on the state read.
#[derive(Debug, PartialEq, Eq)]
struct KeyPlan<'a> {
    table: Table,
    key: &'a str,
    /// The stored revision the statement requires (`None`: the row must not exist).
    expected: Option<u64>,
    last: Final<'a>,
    /// Unique values to release once the group is applied: those of the stored record and of
    /// superseded puts of this batch that the final state does not hold.
    release: Vec<(String, String)>,
}

/// A key being planned.
struct Draft<'a> {
    table: Table,
    key: &'a str,
    stored: Option<Stored>,
    current: Option<u64>,
    last: Final<'a>,
    claimed: Vec<(String, String)>,
}

impl<'a> Draft<'a> {
    fn apply(&mut self, op: &'a Op) -> Result<(), StoreError> {
        match op {
            Op::Put { expect, doc, unique, .. } => {
                expect.check(self.table, self.key, self.current)?;
                let revision = self.current.map_or(1, |r| r + 1);
                self.current = Some(revision);
                self.last = Final::Put { revision, doc, claims: unique };
                self.claimed.extend(unique.iter().map(|u| (u.index.to_string(), u.value.clone())));
            }
            Op::Delete { expect, .. } => {
                expect.check(self.table, self.key, self.current)?;
                self.current = None;
                self.last = Final::Delete;
            }
        }
        Ok(())
    }

    fn finish(self) -> KeyPlan<'a> {
        let kept: &[UniqueKey] = match &self.last {
            Final::Put { claims, .. } => claims,
            Final::Delete => &[],
        };
        let expected = self.stored.as_ref().map(|s| s.revision);
        let mut release: Vec<(String, String)> = Vec::new();
        for held in self.stored.into_iter().flat_map(|s| s.uniques).chain(self.claimed) {
            let still_held = kept.iter().any(|k| k.index == held.0 && k.value == held.1);
            if !still_held && !release.contains(&held) {
                release.push(held);
            }
        }
        KeyPlan { table: self.table, key: self.key, expected, last: self.last, release }
    }
}

/// Folds a group's operations into one statement per key, keys in order of first appearance,
/// checking every precondition against the stored state and the operations before it.
fn plan_group<'a>(ops: &'a [Op], known: &Known) -> Result<Vec<KeyPlan<'a>>, StoreError> {
    let mut drafts: Vec<Draft<'a>> = Vec::new();
    let mut position: HashMap<(Table, &'a str), usize> = HashMap::new();
    for op in ops {
        let (table, key) = target(op);
        let i = match position.get(&(table, key)) {
            Some(i) => *i,
            None => {
                let stored = known_state(known, table, key);
                let current = stored.as_ref().map(|s| s.revision);
                position.insert((table, key), drafts.len());
                drafts.push(Draft { table, key, stored, current, last: Final::Delete, claimed: Vec::new() });
                drafts.len() - 1
            }
        };
        if let Some(draft) = drafts.get_mut(i) {
            draft.apply(op)?;
        }
    }
    Ok(drafts.into_iter().map(Draft::finish).collect())
}

/// Whether an operation needs the stored state read before it is planned: all but an insert
/// that requires the key to be absent (its statement checks that by itself).
fn needs_read(op: &Op) -> bool {
    !matches!(op, Op::Put { expect: Expect::Absent, .. })
}

/// The keys of a batch whose state must be read before planning: those whose first operation
/// [`needs_read`].
fn keys_to_read(groups: &[Group]) -> Vec<(Table, &str)> {
    let mut seen = HashSet::new();
    let mut wanted = Vec::new();
    for op in groups.iter().flat_map(|g| g.ops.iter()) {
        let (table, key) = target(op);
        if seen.insert((table, key)) && needs_read(op) {
            wanted.push((table, key));
        }
    }
    wanted
}

// ---------------------------------------------------------------------------------------------
// Statements

/// Every statement the store runs, prepared at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cql {
    Get,
    GetMeta,
    ListPartition,
    Scan,
    Insert,
    Update,
    Delete,
    DeleteAbsent,
    IndexPut,
    IndexDelete,
    IndexList,
    UniqueClaim,
    UniqueOwner,
    UniqueSteal,
    UniqueRelease,
}

impl Cql {
    #[cfg(test)]
    const ALL: [Cql; 15] = [
        Cql::Get,
        Cql::GetMeta,
        Cql::ListPartition,
        Cql::Scan,
        Cql::Insert,
        Cql::Update,
        Cql::Delete,
        Cql::DeleteAbsent,
        Cql::IndexPut,
        Cql::IndexDelete,
        Cql::IndexList,
        Cql::UniqueClaim,
        Cql::UniqueOwner,
        Cql::UniqueSteal,
        Cql::UniqueRelease,
    ];

    fn text(self, ks: &str) -> String {
        const WHERE_ROW: &str = "WHERE pk = ? AND tbl = ? AND ck = ?";
        const WHERE_UNIQUE: &str = "WHERE tbl = ? AND idx = ? AND value = ?";
        match self {
            Cql::Get => format!("SELECT revision, doc FROM {ks}.records {WHERE_ROW}"),
            Cql::GetMeta => format!("SELECT revision, uniques FROM {ks}.records {WHERE_ROW}"),
            Cql::ListPartition => {
                format!("SELECT ck, revision, doc FROM {ks}.records WHERE pk = ? AND tbl = ? AND ck >= ?")
            }
            Cql::Scan => format!("SELECT ck, revision, doc FROM {ks}.records WHERE tbl = ? ALLOW FILTERING"),
            Cql::Insert => format!(
                "INSERT INTO {ks}.records (pk, tbl, ck, revision, doc, uniques) VALUES (?, ?, ?, ?, ?, ?) \
                 IF NOT EXISTS"
            ),
            Cql::Update => {
                format!(
                    "UPDATE {ks}.records SET revision = ?, doc = ?, uniques = ? {WHERE_ROW} IF revision = ?"
                )
            }
            Cql::Delete => format!("DELETE FROM {ks}.records {WHERE_ROW} IF revision = ?"),
            // `revision = null` holds when the row does not exist: the group requires it absent.
            Cql::DeleteAbsent => format!("DELETE FROM {ks}.records {WHERE_ROW} IF revision = null"),
            Cql::IndexPut => format!("INSERT INTO {ks}.event_index (head, record_key) VALUES (?, ?)"),
            Cql::IndexDelete => format!("DELETE FROM {ks}.event_index WHERE head = ? AND record_key = ?"),
            Cql::IndexList => {
                format!("SELECT record_key FROM {ks}.event_index WHERE head = ? AND record_key >= ?")
            }
            Cql::UniqueClaim => {
                format!("INSERT INTO {ks}.uniques (tbl, idx, value, owner) VALUES (?, ?, ?, ?) IF NOT EXISTS")
            }
            Cql::UniqueOwner => format!("SELECT owner, WRITETIME(owner) FROM {ks}.uniques {WHERE_UNIQUE}"),
            Cql::UniqueSteal => format!("UPDATE {ks}.uniques SET owner = ? {WHERE_UNIQUE} IF owner = ?"),
            Cql::UniqueRelease => format!("DELETE FROM {ks}.uniques {WHERE_UNIQUE} IF owner = ?"),
        }
    }

    /// Statements the driver may retry after a timeout: running them twice changes nothing.
    fn is_idempotent(self) -> bool {
        matches!(
            self,
            Cql::Get
                | Cql::GetMeta
                | Cql::ListPartition
                | Cql::Scan
                | Cql::IndexPut
                | Cql::IndexDelete
                | Cql::IndexList
                | Cql::UniqueOwner
        )
    }

    fn is_listing(self) -> bool {
        matches!(self, Cql::ListPartition | Cql::Scan | Cql::IndexList)
    }
}

/// The statement of a key's plan and its bound values.
fn mutation<'a>(plan: &KeyPlan<'a>) -> Result<(Cql, Vec<Bind<'a>>), StoreError> {
    let pk = Bind::Text(Cow::Owned(partition_of(plan.table, plan.key)));
    let tbl = Bind::Text(Cow::Borrowed(plan.table.name()));
    let ck = Bind::Text(Cow::Borrowed(plan.key));
    Ok(match (&plan.last, plan.expected) {
        (Final::Put { revision, doc, claims }, None) => (
            Cql::Insert,
            vec![
                pk,
                tbl,
                ck,
                Bind::Int(to_i64(*revision)?),
                Bind::Blob(doc),
                Bind::Text(encode_claims(claims).into()),
            ],
        ),
        (Final::Put { revision, doc, claims }, Some(old)) => (
            Cql::Update,
            vec![
                Bind::Int(to_i64(*revision)?),
                Bind::Blob(doc),
                Bind::Text(encode_claims(claims).into()),
                pk,
                tbl,
                ck,
                Bind::Int(to_i64(old)?),
            ],
        ),
        (Final::Delete, Some(old)) => (Cql::Delete, vec![pk, tbl, ck, Bind::Int(to_i64(old)?)]),
        (Final::Delete, None) => (Cql::DeleteAbsent, vec![pk, tbl, ck]),
    })
}

fn to_i64(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision)
        .map_err(|_| StoreError::Backend(format!("scylla: revision {revision} overflows bigint")))
}

fn revision_of(table: Table, key: &str, stored: i64) -> Result<u64, StoreError> {
    u64::try_from(stored).map_err(|_| StoreError::Corrupt {
        table,
        key: key.to_string(),
        reason: format!("negative revision {stored}"),
    })
}

/// A bound value: the three column types the store writes.
#[derive(Debug, PartialEq, Eq)]
enum Bind<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Blob(&'a [u8]),
}

impl SerializeValue for Bind<'_> {
    fn serialize<'b>(
        &self,
        typ: &ColumnType<'_>,
        writer: CellWriter<'b>,
    ) -> Result<WrittenCellProof<'b>, SerializationError> {
        match self {
            Bind::Text(text) => SerializeValue::serialize(text.as_ref(), typ, writer),
            Bind::Int(n) => SerializeValue::serialize(n, typ, writer),
            Bind::Blob(bytes) => SerializeValue::serialize(bytes, typ, writer),
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Whether a claim written at `written_us` (Scylla's `WRITETIME`) is past [`CLAIM_LEASE`].
fn lease_expired(written_us: i64, now_us: i64) -> bool {
    let lease = i64::try_from(CLAIM_LEASE.as_micros()).unwrap_or(i64::MAX);
    now_us.saturating_sub(written_us) > lease
}

/// How long to wait before trying a group again after losing a race (4 ms to 256 ms).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(2 << attempt.min(7))
}

/// The statements, prepared.
struct Prepared {
    get: PreparedStatement,
    get_meta: PreparedStatement,
    list_partition: PreparedStatement,
    scan: PreparedStatement,
    insert: PreparedStatement,
    update: PreparedStatement,
    delete: PreparedStatement,
    delete_absent: PreparedStatement,
    index_put: PreparedStatement,
    index_delete: PreparedStatement,
    index_list: PreparedStatement,
    unique_claim: PreparedStatement,
    /// Read at `QUORUM` (lookups).
    unique_owner: PreparedStatement,
    /// Read at `SERIAL` (claims: sees a claim whose transaction is still in flight).
    unique_owner_serial: PreparedStatement,
    unique_steal: PreparedStatement,
    unique_release: PreparedStatement,
}

impl Prepared {
    async fn new(session: &Session, ks: &str) -> Result<Self, StoreError> {
        let mut unique_owner_serial = prepare(session, ks, Cql::UniqueOwner).await?;
        unique_owner_serial.set_consistency(Consistency::Serial);
        Ok(Self {
            get: prepare(session, ks, Cql::Get).await?,
            get_meta: prepare(session, ks, Cql::GetMeta).await?,
            list_partition: prepare(session, ks, Cql::ListPartition).await?,
            scan: prepare(session, ks, Cql::Scan).await?,
            insert: prepare(session, ks, Cql::Insert).await?,
            update: prepare(session, ks, Cql::Update).await?,
            delete: prepare(session, ks, Cql::Delete).await?,
            delete_absent: prepare(session, ks, Cql::DeleteAbsent).await?,
            index_put: prepare(session, ks, Cql::IndexPut).await?,
            index_delete: prepare(session, ks, Cql::IndexDelete).await?,
            index_list: prepare(session, ks, Cql::IndexList).await?,
            unique_claim: prepare(session, ks, Cql::UniqueClaim).await?,
            unique_owner: prepare(session, ks, Cql::UniqueOwner).await?,
            unique_owner_serial,
            unique_steal: prepare(session, ks, Cql::UniqueSteal).await?,
            unique_release: prepare(session, ks, Cql::UniqueRelease).await?,
        })
    }

    fn mutation(&self, cql: Cql) -> Result<&PreparedStatement, StoreError> {
        match cql {
            Cql::Insert => Ok(&self.insert),
            Cql::Update => Ok(&self.update),
            Cql::Delete => Ok(&self.delete),
            Cql::DeleteAbsent => Ok(&self.delete_absent),
            other => Err(StoreError::Backend(format!("scylla: {other:?} is not a record mutation"))),
        }
    }
}

async fn prepare(session: &Session, ks: &str, cql: Cql) -> Result<PreparedStatement, StoreError> {
    let mut statement =
        session.prepare(cql.text(ks)).await.map_err(|e| backend(format_args!("prepare {cql:?}"), e))?;
    statement.set_is_idempotent(cql.is_idempotent());
    if cql.is_listing() {
        statement.set_page_size(PAGE_SIZE);
    }
    Ok(statement)
}

/// Whether a conditional statement or batch was applied (its result's `[applied]` column).
fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().map_err(|e| backend("read a conditional result", e))?;
    let (index, _) = rows
        .column_specs()
        .get_by_name("[applied]")
        .ok_or_else(|| backend("read a conditional result", "no [applied] column"))?;
    let row = rows
        .maybe_first_row::<Row>()
        .map_err(|e| backend("read a conditional result", e))?
        .ok_or_else(|| backend("read a conditional result", "no row"))?;
    match row.columns.get(index) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(backend("read a conditional result", format_args!("[applied] is {other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Schema

fn keyspace_ddl(config: &ScyllaConfig, without_tablets: bool) -> String {
    let tablets = if without_tablets { " AND tablets = {'enabled': false}" } else { "" };
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{'class': 'SimpleStrategy', \
         'replication_factor': {}}}{tablets}",
        config.keyspace, config.replication
    )
}

fn schema_version_ddl(ks: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {ks}.schema_version (component text PRIMARY KEY, version int)")
}

/// Creates the keyspace on vnodes (lightweight transactions need them on Scylla 6; servers that
/// do not know tablets reject the option, and get the plain statement).
async fn create_keyspace(session: &Session, config: &ScyllaConfig) -> Result<(), StoreError> {
    let Err(with_option) = session.query_unpaged(keyspace_ddl(config, true), ()).await else { return Ok(()) };
    match session.query_unpaged(keyspace_ddl(config, false), ()).await {
        Ok(_) => Ok(()),
        Err(plain) => Err(backend(
            format_args!("create keyspace {}", config.keyspace),
            format_args!("{with_option} (without tablets); {plain}"),
        )),
    }
}

async fn schema_version(session: &Session, ks: &str) -> Result<usize, StoreError> {
    let cql = format!("SELECT version FROM {ks}.schema_version WHERE component = '{SCHEMA_COMPONENT}'");
    let result = session.query_unpaged(cql, ()).await.map_err(|e| backend("read the schema version", e))?;
    let rows = result.into_rows_result().map_err(|e| backend("read the schema version", e))?;
    let version = rows.maybe_first_row::<(i32,)>().map_err(|e| backend("read the schema version", e))?;
    match version {
        None => Ok(0),
        Some((v,)) => usize::try_from(v).map_err(|_| backend("read the schema version", format_args!("{v}"))),
    }
}

/// Creates the keyspace and brings its schema to the last of [`MIGRATIONS`].
async fn migrate(session: &Session, config: &ScyllaConfig) -> Result<(), StoreError> {
    let ks = config.keyspace.as_str();
    create_keyspace(session, config).await?;
    session
        .query_unpaged(schema_version_ddl(ks), ())
        .await
        .map_err(|e| backend("create schema_version", e))?;
    let current = schema_version(session, ks).await?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "scylla: keyspace {ks} is at schema version {current}, newer than this build's {}",
            MIGRATIONS.len()
        )));
    }
    for (done, statements) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = done + 1;
        for statement in statements.iter() {
            session
                .query_unpaged(statement.replace("{ks}", ks), ())
                .await
                .map_err(|e| backend(format_args!("schema migration {version}"), e))?;
        }
        let record = format!(
            "INSERT INTO {ks}.schema_version (component, version) VALUES ('{SCHEMA_COMPONENT}', {version})"
        );
        session.query_unpaged(record, ()).await.map_err(|e| backend("record the schema version", e))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The store

/// A unique claim made by a write, to release if its group fails.
type Claim<'a> = (Table, &'a str, &'a UniqueKey);

/// Who holds a unique value, and since when (µs since the epoch).
struct Owner {
    key: String,
    written_us: i64,
}

/// The store on a ScyllaDB (or Cassandra-compatible) cluster. Cheap to clone.
#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    q: Prepared,
}

impl ScyllaStore {
    /// Connects to the cluster of `url` (`scylla://...`, see [`ScyllaConfig::parse`]), creating
    /// and migrating the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(ScyllaConfig::parse(url)?).await
    }

    pub async fn connect_with(config: ScyllaConfig) -> Result<Self, StoreError> {
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::Quorum)
            .serial_consistency(Some(SerialConsistency::Serial))
            .load_balancing_policy(DefaultPolicy::builder().token_aware(true).build())
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(|e| backend(format_args!("connect to {}", config.nodes.join(",")), e))?;
        migrate(&session, &config).await?;
        let q = Prepared::new(&session, &config.keyspace).await?;
        Ok(Self { inner: Arc::new(Inner { session, q }) })
    }

    fn session(&self) -> &Session {
        &self.inner.session
    }

    fn q(&self) -> &Prepared {
        &self.inner.q
    }

    /// Runs a conditional statement; whether it was applied.
    async fn lwt(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<bool, StoreError> {
        let result =
            self.session().execute_unpaged(statement, values).await.map_err(|e| backend("lwt", e))?;
        applied(result)
    }

    /// The revision and unique values of a record.
    async fn read_meta(&self, table: Table, key: &str) -> Result<Option<Stored>, StoreError> {
        let what = || format!("read {table}/{key}");
        let pk = partition_of(table, key);
        let result = self
            .session()
            .execute_unpaged(&self.q().get_meta, (pk.as_str(), table.name(), key))
            .await
            .map_err(|e| backend(what(), e))?;
        let rows = result.into_rows_result().map_err(|e| backend(what(), e))?;
        let Some((revision, uniques)) =
            rows.maybe_first_row::<(i64, Option<String>)>().map_err(|e| backend(what(), e))?
        else {
            return Ok(None);
        };
        let uniques = decode_claims(table, key, uniques.as_deref().unwrap_or(""))?;
        Ok(Some(Stored { revision: revision_of(table, key, revision)?, uniques }))
    }

    /// Reads the state of `keys` concurrently into `known`.
    async fn read_into(&self, keys: Vec<(Table, &str)>, known: &mut Known) -> Result<(), StoreError> {
        // The futures are built first: a stream mapping borrowed items through a closure is not
        // provably `Send` inside the trait's boxed futures.
        let reads: Vec<_> = keys
            .into_iter()
            .map(|(table, key)| async move {
                Ok::<_, StoreError>(((table, key.to_string()), self.read_meta(table, key).await?))
            })
            .collect();
        let states: Vec<_> = stream::iter(reads).buffered(READ_CONCURRENCY).try_collect().await?;
        known.extend(states);
        Ok(())
    }

    /// Reads again every key of a group (after its condition failed).
    async fn refresh(&self, group: &Group, known: &mut Known) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let keys = group.ops.iter().map(target).filter(|k| seen.insert(*k)).collect();
        self.read_into(keys, known).await
    }

    /// Writes one group: claims its unique values, writes its event pointers, commits it, then
    /// releases what it no longer holds.
    async fn apply_group(&self, group: &Group, known: &mut Known) -> Result<(), StoreError> {
        // A precondition already known to fail fails before anything is claimed. Claiming
        // leaves `known` as it is, so these plans are the first attempt's.
        let plans = plan_group(&group.ops, known)?;
        let claims = self.claim_group(group, known).await?;
        if let Err(e) = self.put_event_pointers(group).await {
            self.release_unheld(&claims, known).await;
            return Err(e);
        }
        match self.commit_group(group, plans, known).await {
            Ok(plans) => {
                self.release_after(&plans).await;
                self.drop_event_pointers(&plans).await;
                Ok(())
            }
            // Known not applied, with the records read after the refusal: release what they
            // do not hold.
            Err(e @ (StoreError::Conflict { .. } | StoreError::UniqueViolation { .. })) => {
                self.release_unheld(&claims, known).await;
                Err(e)
            }
            // Maybe applied (a timeout): its claims stay. One its record does not hold is
            // ignored by lookups and taken over after the lease.
            Err(e) => Err(e),
        }
    }

    /// Applies the group's `plans` as one conditional batch, planning again (with the state
    /// read again) while it loses races that its preconditions allow.
    async fn commit_group<'a>(
        &self,
        group: &'a Group,
        mut plans: Vec<KeyPlan<'a>>,
        known: &mut Known,
    ) -> Result<Vec<KeyPlan<'a>>, StoreError> {
        let mut attempt = 0;
        loop {
            if attempt > 0 {
                plans = plan_group(&group.ops, known)?;
                tokio::time::sleep(backoff(attempt)).await;
            }
            if self.execute(&plans).await? {
                return Ok(plans);
            }
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                return Err(StoreError::Backend(format!(
                    "scylla: partition `{}` kept changing under the write ({MAX_ATTEMPTS} attempts)",
                    group.pk
                )));
            }
            self.refresh(group, known).await?;
        }
    }

    /// One conditional batch for a group's plans; whether it was applied.
    async fn execute(&self, plans: &[KeyPlan<'_>]) -> Result<bool, StoreError> {
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(plans.len());
        for plan in plans {
            let (cql, row) = mutation(plan)?;
            batch.append_statement(self.q().mutation(cql)?.clone());
            values.push(row);
        }
        let result =
            self.session().batch(&batch, &values).await.map_err(|e| backend("conditional batch", e))?;
        applied(result)
    }

    /// Claims the unique values of a group's puts, or none of them.
    async fn claim_group<'a>(&self, group: &'a Group, known: &Known) -> Result<Vec<Claim<'a>>, StoreError> {
        let mut claims = Vec::new();
        for op in &group.ops {
            let Op::Put { table, key, unique, .. } = op else { continue };
            for claim in unique {
                if let Err(e) = self.claim(*table, key, claim).await {
                    self.release_unheld(&claims, known).await;
                    return Err(e);
                }
                claims.push((*table, key.as_str(), claim));
            }
        }
        Ok(claims)
    }

    /// Claims `claim` for `key`: a free value, one `key` holds already, or one whose owner does
    /// not hold it past the lease.
    async fn claim(&self, table: Table, key: &str, claim: &UniqueKey) -> Result<(), StoreError> {
        let (tbl, index, value) = (table.name(), claim.index, claim.value.as_str());
        for _ in 0..MAX_ATTEMPTS {
            if self.lwt(&self.q().unique_claim, (tbl, index, value, key)).await? {
                return Ok(());
            }
            let Some(owner) = self.unique_owner(table, index, value, true).await? else { continue };
            if owner.key == key {
                return Ok(());
            }
            if !self.abandoned(table, claim, &owner).await? {
                return Err(StoreError::UniqueViolation {
                    table,
                    index: claim.index,
                    value: claim.value.clone(),
                });
            }
            if self.lwt(&self.q().unique_steal, (key, tbl, index, value, owner.key.as_str())).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!("scylla: claim of {table}.{index} `{value}` kept losing races")))
    }

    /// Whether a claim was left by a write that never completed: past the lease, and not held by
    /// its owner's record.
    async fn abandoned(&self, table: Table, claim: &UniqueKey, owner: &Owner) -> Result<bool, StoreError> {
        if !lease_expired(owner.written_us, now_micros()) {
            return Ok(false);
        }
        let stored = self.read_meta(table, &owner.key).await?;
        Ok(!stored.is_some_and(|s| s.holds(claim.index, &claim.value)))
    }

    async fn unique_owner(
        &self,
        table: Table,
        index: &str,
        value: &str,
        serial: bool,
    ) -> Result<Option<Owner>, StoreError> {
        let what = || format!("read {table}.{index} `{value}`");
        let statement = if serial { &self.q().unique_owner_serial } else { &self.q().unique_owner };
        let result = self
            .session()
            .execute_unpaged(statement, (table.name(), index, value))
            .await
            .map_err(|e| backend(what(), e))?;
        let rows = result.into_rows_result().map_err(|e| backend(what(), e))?;
        let row = rows.maybe_first_row::<(Option<String>, Option<i64>)>().map_err(|e| backend(what(), e))?;
        Ok(match row {
            Some((Some(key), written)) => Some(Owner { key, written_us: written.unwrap_or(0) }),
            _ => None,
        })
    }

    /// Releases `value` if `key` still owns it. A failure only leaves a claim its owner does not
    /// hold: ignored by lookups, taken over after the lease.
    async fn release(&self, table: Table, key: &str, index: &str, value: &str) {
        let released = self.lwt(&self.q().unique_release, (table.name(), index, value, key)).await;
        if let Err(error) = released {
            tracing::warn!(%table, key, index, value, %error, "unique value not released");
        }
    }

    async fn release_after(&self, plans: &[KeyPlan<'_>]) {
        let releases = plans.iter().flat_map(|p| p.release.iter().map(move |(i, v)| (p.table, p.key, i, v)));
        futures::future::join_all(releases.map(|(table, key, i, v)| self.release(table, key, i, v))).await;
    }

    /// After a failed group: releases the claims it made that the stored records do not hold.
    async fn release_unheld(&self, claims: &[Claim<'_>], known: &Known) {
        let unheld = claims.iter().filter(|(table, key, claim)| {
            !known_state(known, *table, key).is_some_and(|s| s.holds(claim.index, &claim.value))
        });
        futures::future::join_all(unheld.map(|(table, key, c)| self.release(*table, key, c.index, &c.value)))
            .await;
    }

    /// Writes the `event_index` pointers of the events a group puts.
    async fn put_event_pointers(&self, group: &Group) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let keys: Vec<&str> = group
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { table: Table::Events, key, .. } if seen.insert(key.as_str()) => Some(key.as_str()),
                _ => None,
            })
            .collect();
        let writes: Vec<_> = keys
            .into_iter()
            .map(|key| async move {
                self.session()
                    .execute_unpaged(&self.q().index_put, (event_head(key), key))
                    .await
                    .map_err(|e| backend(format_args!("index event {key}"), e))
            })
            .collect();
        stream::iter(writes)
            .buffer_unordered(READ_CONCURRENCY)
            .try_for_each(|_| futures::future::ready(Ok(())))
            .await
    }

    /// Deletes the pointers of the events a committed group deleted. A failure leaves a pointer
    /// to nothing, which listings skip.
    async fn drop_event_pointers(&self, plans: &[KeyPlan<'_>]) {
        let deleted = plans.iter().filter(|p| p.table == Table::Events && p.last == Final::Delete);
        let drops = deleted.map(|plan| async move {
            let key = plan.key;
            let dropped =
                self.session().execute_unpaged(&self.q().index_delete, (event_head(key), key)).await;
            if let Err(error) = dropped {
                tracing::warn!(key, %error, "event pointer not deleted");
            }
        });
        futures::future::join_all(drops).await;
    }

    /// The records of one partition under `prefix`, in key order.
    async fn list_partition(
        &self,
        table: Table,
        pk: &str,
        prefix: &str,
        page: &mut Page,
    ) -> Result<(), StoreError> {
        let what = || format!("list {table} `{prefix}`");
        let mut rows = self
            .session()
            .execute_iter(self.q().list_partition.clone(), (pk, table.name(), prefix))
            .await
            .map_err(|e| backend(what(), e))?
            .rows_stream::<(String, i64, Option<Vec<u8>>)>()
            .map_err(|e| backend(what(), e))?;
        while let Some((key, revision, doc)) = rows.try_next().await.map_err(|e| backend(what(), e))? {
            if !key.starts_with(prefix) {
                break;
            }
            page.push(record(table, key, revision, doc)?);
        }
        Ok(())
    }

    /// The events under `prefix` (holding a `/`), through their pointers.
    async fn list_events(&self, head: &str, prefix: &str, page: &mut Page) -> Result<(), StoreError> {
        let what = || format!("list events `{prefix}`");
        let mut rows = self
            .session()
            .execute_iter(self.q().index_list.clone(), (head, prefix))
            .await
            .map_err(|e| backend(what(), e))?
            .rows_stream::<(String,)>()
            .map_err(|e| backend(what(), e))?;
        let mut keys = Vec::new();
        while let Some((key,)) = rows.try_next().await.map_err(|e| backend(what(), e))? {
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        for found in self.get_many(Table::Events, &keys).await?.into_iter().flatten() {
            page.push(found);
        }
        Ok(())
    }

    /// Every record of `table` under `prefix`: a full scan, sorted here.
    async fn list_scan(&self, table: Table, prefix: &str, page: &mut Page) -> Result<(), StoreError> {
        let what = || format!("scan {table}");
        let mut rows = self
            .session()
            .execute_iter(self.q().scan.clone(), (table.name(),))
            .await
            .map_err(|e| backend(what(), e))?
            .rows_stream::<(String, i64, Option<Vec<u8>>)>()
            .map_err(|e| backend(what(), e))?;
        let mut found = Vec::new();
        while let Some((key, revision, doc)) = rows.try_next().await.map_err(|e| backend(what(), e))? {
            if key.starts_with(prefix) {
                found.push(record(table, key, revision, doc)?);
            }
        }
        found.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        found.into_iter().for_each(|r| page.push(r));
        Ok(())
    }
}

fn record(table: Table, key: String, revision: i64, doc: Option<Vec<u8>>) -> Result<Record, StoreError> {
    let revision = revision_of(table, &key, revision)?;
    match doc {
        Some(doc) => Ok(Record { key, revision, doc }),
        None => Err(StoreError::Corrupt { table, key, reason: "no document".to_string() }),
    }
}

/// A listing being filled in key order: counts every match, keeps those in the range.
struct Page {
    range: ListRange,
    total: usize,
    records: Vec<Record>,
}

impl Page {
    fn new(range: ListRange) -> Self {
        Self { range, total: 0, records: Vec::new() }
    }

    fn push(&mut self, record: Record) {
        let wanted =
            self.total >= self.range.offset && self.range.limit.is_none_or(|l| self.records.len() < l);
        self.total += 1;
        if wanted {
            self.records.push(record);
        }
    }

    fn finish(self) -> Listing {
        Listing { records: self.records, total: self.total }
    }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Record>, StoreError> {
        let what = || format!("read {table}/{key}");
        let pk = partition_of(table, key);
        let result = self
            .session()
            .execute_unpaged(&self.q().get, (pk.as_str(), table.name(), key))
            .await
            .map_err(|e| backend(what(), e))?;
        let rows = result.into_rows_result().map_err(|e| backend(what(), e))?;
        match rows.maybe_first_row::<(i64, Option<Vec<u8>>)>().map_err(|e| backend(what(), e))? {
            Some((revision, doc)) => record(table, key.to_string(), revision, doc).map(Some),
            None => Ok(None),
        }
    }

    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        let reads: Vec<_> = keys.iter().map(|key| self.get(table, key)).collect();
        stream::iter(reads).buffered(READ_CONCURRENCY).try_collect().await
    }

    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError> {
        let mut page = Page::new(range);
        match list_plan(table, prefix) {
            ListPlan::Partition(pk) => self.list_partition(table, &pk, prefix, &mut page).await?,
            ListPlan::EventIndex(head) => self.list_events(&head, prefix, &mut page).await?,
            ListPlan::Scan => self.list_scan(table, prefix, &mut page).await?,
        }
        Ok(page.finish())
    }

    async fn find_unique(
        &self,
        table: Table,
        index: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(owner) = self.unique_owner(table, index, value, false).await? else { return Ok(None) };
        // A claim counts only while its owner's record holds it (see the module docs).
        let holds = self.read_meta(table, &owner.key).await?.is_some_and(|s| s.holds(index, value));
        Ok(holds.then_some(owner.key))
    }

    async fn write(&self, batch: Vec<Op>) -> Result<(), StoreError> {
        let groups = group_by_partition(batch);
        let mut known = Known::new();
        self.read_into(keys_to_read(&groups), &mut known).await?;
        for group in &groups {
            self.apply_group(group, &mut known).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(table: Table, key: &str, expect: Expect) -> Op {
        Op::Put { table, key: key.to_string(), doc: key.as_bytes().to_vec(), expect, unique: Vec::new() }
    }

    fn stored(revision: u64, uniques: &[(&str, &str)]) -> Option<Stored> {
        let uniques = uniques.iter().map(|(i, v)| (i.to_string(), v.to_string())).collect();
        Some(Stored { revision, uniques })
    }

    #[test]
    fn urls_name_hosts_keyspace_and_replication() {
        let config =
            ScyllaConfig::parse("scylla://a:9043,b,[::1]:9044,[fe80::2]/drawdown?replication=3").unwrap();
        assert_eq!(config.nodes, ["a:9043", "b:9042", "[::1]:9044", "[fe80::2]:9042"]);
        assert_eq!((config.keyspace.as_str(), config.replication), ("drawdown", 3));
        assert_eq!(ScyllaConfig::parse(&config.url()).unwrap(), config);
        let plain = ScyllaConfig::parse("scylla://127.0.0.1:9042/ks_1").unwrap();
        assert_eq!(plain.replication, 1, "replication defaults to 1");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            ("embedded:/tmp/x", "scylla://"),
            ("scylla://host:9042", "no keyspace"),
            ("scylla://host:9042/", "keyspace ``"),
            ("scylla://host/Drawdown", "lowercase"),
            ("scylla://host/1ks", "lowercase"),
            ("scylla://host/ks-x", "lowercase"),
            ("scylla:///ks", "empty host"),
            ("scylla://a,,b/ks", "empty host"),
            ("scylla://host:0/ks", "not a port"),
            ("scylla://host:99999/ks", "not a port"),
            ("scylla://::1/ks", "brackets"),
            ("scylla://[::1/ks", "unclosed"),
            ("scylla://[::1]x/ks", "junk"),
            ("scylla://user@host/ks", "credentials"),
            ("scylla://host/ks?replication=0", "replication `0`"),
            ("scylla://host/ks?replication=two", "replication `two`"),
            ("scylla://host/ks?consistency=one", "unknown parameter"),
        ];
        for (url, expected) in cases {
            let err = ScyllaConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(err.contains(url), "{url}: the error names the URL: {err}");
        }
        let long = format!("scylla://h/{}", "k".repeat(49));
        assert!(ScyllaConfig::parse(&long).is_err(), "keyspace names are at most 48 characters");
    }

    #[test]
    fn a_customers_records_share_one_partition() {
        assert_eq!(partition_of(Table::Ledger, "cust_1"), "cust_1");
        assert_eq!(partition_of(Table::Transactions, "cust_1/tx_9"), "cust_1");
        assert_eq!(partition_of(Table::WalletAccounts, "cust_1/default:USD"), "cust_1");
        assert_eq!(partition_of(Table::Events, "evt_5/cust_1"), "cust_1");
        // Event ids may hold `/`; customer ids never do.
        assert_eq!(partition_of(Table::Events, "batch/evt_5/cust_1"), "cust_1");
        assert_eq!(partition_of(Table::Transactions, "cust_1/a/b"), "cust_1");
        // Keys without `/` are their own customer.
        assert_eq!(partition_of(Table::Events, "taken"), "taken");
    }

    #[test]
    fn catalog_tables_are_one_partition_each_and_offsets_one_per_record() {
        assert_eq!(partition_of(Table::Customers, "cust_1"), "/customers");
        assert_eq!(partition_of(Table::Customers, "cust_2"), "/customers");
        assert_eq!(partition_of(Table::ProductSubscribers, "p/c/s"), "/product_subscribers");
        assert_eq!(partition_of(Table::Meta, "platform"), "/meta");
        assert_eq!(partition_of(Table::Offsets, "writer/3"), "/offsets/writer/3");
        assert_ne!(partition_of(Table::Offsets, "writer/3"), partition_of(Table::Offsets, "writer/4"));
        for table in Table::ALL {
            if placement(table) != Placement::Customer {
                assert!(partition_of(table, "x").starts_with('/'), "{table}: apart from customer ids");
            }
        }
    }

    #[test]
    fn events_are_indexed_by_the_head_of_their_key() {
        assert_eq!(event_head("evt_5/cust_1"), "evt_5");
        assert_eq!(event_head("batch/evt_5/cust_1"), "batch");
        assert_eq!(event_head("evt_5"), "evt_5");
    }

    #[test]
    fn listings_read_one_partition_when_the_prefix_names_it() {
        assert_eq!(list_plan(Table::Transactions, "cust_1/"), ListPlan::Partition("cust_1".into()));
        assert_eq!(list_plan(Table::WalletAccounts, "cust_1/def"), ListPlan::Partition("cust_1".into()));
        assert_eq!(list_plan(Table::Events, "evt_5/"), ListPlan::EventIndex("evt_5".into()));
        assert_eq!(list_plan(Table::Events, "batch/evt"), ListPlan::EventIndex("batch".into()));
        assert_eq!(list_plan(Table::Customers, ""), ListPlan::Partition("/customers".into()));
        assert_eq!(list_plan(Table::Products, "p/"), ListPlan::Partition("/products".into()));
        assert_eq!(list_plan(Table::Transactions, ""), ListPlan::Scan);
        assert_eq!(list_plan(Table::Events, "evt"), ListPlan::Scan);
        assert_eq!(list_plan(Table::Ledger, "cust_1"), ListPlan::Scan);
        assert_eq!(list_plan(Table::Offsets, "writer/"), ListPlan::Scan);
    }

    #[test]
    fn a_batch_is_grouped_by_partition_in_order_of_first_appearance() {
        let batch = vec![
            put(Table::Offsets, "writer/0", Expect::Revision(4)),
            put(Table::Ledger, "c2", Expect::Any),
            put(Table::Ledger, "c1", Expect::Any),
            put(Table::Transactions, "c1/t1", Expect::Absent),
            put(Table::Transactions, "c2/t1", Expect::Absent),
            put(Table::Events, "e1/c1", Expect::Absent),
            put(Table::Customers, "c3", Expect::Any),
        ];
        let groups = group_by_partition(batch);
        let shape: Vec<(&str, Vec<&str>)> =
            groups.iter().map(|g| (g.pk.as_str(), g.ops.iter().map(|op| target(op).1).collect())).collect();
        assert_eq!(
            shape,
            vec![
                ("/offsets/writer/0", vec!["writer/0"]),
                ("c2", vec!["c2", "c2/t1"]),
                ("c1", vec!["c1", "c1/t1", "e1/c1"]),
                ("/customers", vec!["c3"]),
            ]
        );
        assert!(group_by_partition(Vec::new()).is_empty());
    }

    #[test]
    fn statements_are_conditioned_on_the_state_read() {
        let ops = vec![
            put(Table::Ledger, "c1", Expect::Any),
            put(Table::Transactions, "c1/t1", Expect::Absent),
            Op::delete(Table::WalletAccounts, "c1/w"),
            Op::delete(Table::WalletAccounts, "c1/gone"),
        ];
        let mut known = Known::new();
        known.insert((Table::Ledger, "c1".into()), stored(7, &[]));
        known.insert((Table::WalletAccounts, "c1/w".into()), stored(2, &[]));
        known.insert((Table::WalletAccounts, "c1/gone".into()), None);
        let plans = plan_group(&ops, &known).unwrap();
        let shape: Vec<(&str, Option<u64>, Cql)> =
            plans.iter().map(|p| (p.key, p.expected, mutation(p).unwrap().0)).collect();
        assert_eq!(
            shape,
            vec![
                ("c1", Some(7), Cql::Update),
                ("c1/t1", None, Cql::Insert),
                ("c1/w", Some(2), Cql::Delete),
                ("c1/gone", None, Cql::DeleteAbsent),
            ]
        );
        assert_eq!(
            plans[0].last,
            Final::Put { revision: 8, doc: b"c1", claims: &[] },
            "a put bumps the revision"
        );
        assert_eq!(plans[1].last, Final::Put { revision: 1, doc: b"c1/t1", claims: &[] });
    }

    #[test]
    fn several_operations_on_a_key_fold_into_one_statement() {
        let ops = vec![
            put(Table::Events, "a", Expect::Any),
            put(Table::Events, "a", Expect::Revision(1)),
            put(Table::Events, "a", Expect::Any),
        ];
        let plans = plan_group(&ops, &Known::new()).unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(
            (plans[0].expected, &plans[0].last),
            (None, &Final::Put { revision: 3, doc: b"a", claims: &[] })
        );
        let deleted = vec![put(Table::Events, "a", Expect::Absent), Op::delete(Table::Events, "a")];
        let plans = plan_group(&deleted, &Known::new()).unwrap();
        assert_eq!((plans[0].expected, &plans[0].last), (None, &Final::Delete));
    }

    #[test]
    fn preconditions_are_checked_against_earlier_operations_of_the_batch() {
        let twice = vec![put(Table::Events, "a", Expect::Absent), put(Table::Events, "a", Expect::Absent)];
        let err = plan_group(&twice, &Known::new()).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { found: Some(1), .. }), "{err}");
        let mut known = Known::new();
        known.insert((Table::Meta, "m".into()), stored(3, &[]));
        let stale = vec![put(Table::Meta, "m", Expect::Revision(2))];
        let err = plan_group(&stale, &known).unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { expected: Expect::Revision(2), found: Some(3), .. }),
            "{err}"
        );
        let taken = vec![put(Table::Meta, "m", Expect::Absent)];
        assert!(plan_group(&taken, &known).is_err());
        let gone = vec![Op::delete(Table::Meta, "x").expect(Expect::Revision(1))];
        assert!(matches!(plan_group(&gone, &known), Err(StoreError::Conflict { found: None, .. })));
    }

    #[test]
    fn unique_values_no_longer_held_are_released() {
        let mut known = Known::new();
        known.insert((Table::Customers, "c1".into()), stored(1, &[("external_id", "old"), ("email", "e")]));
        let ops = vec![
            put(Table::Customers, "c1", Expect::Any).unique("external_id", "mid"),
            put(Table::Customers, "c1", Expect::Any).unique("external_id", "new").unique("email", "e"),
        ];
        let plans = plan_group(&ops, &known).unwrap();
        assert_eq!(
            plans[0].release,
            vec![
                ("external_id".to_string(), "old".to_string()),
                ("external_id".to_string(), "mid".to_string())
            ]
        );
        let delete = [Op::delete(Table::Customers, "c1")];
        let deleted = plan_group(&delete, &known).unwrap();
        assert_eq!(deleted[0].release.len(), 2, "a delete releases everything");
    }

    #[test]
    fn only_keys_not_inserted_blindly_are_read_first() {
        let groups = group_by_partition(vec![
            put(Table::Offsets, "writer/0", Expect::Revision(1)),
            put(Table::Ledger, "c1", Expect::Any),
            put(Table::Transactions, "c1/t1", Expect::Absent),
            put(Table::Transactions, "c1/t1", Expect::Any),
            put(Table::Events, "e1/c1", Expect::Any),
            Op::delete(Table::Assets, "USD"),
        ]);
        assert_eq!(
            keys_to_read(&groups),
            vec![
                (Table::Offsets, "writer/0"),
                (Table::Ledger, "c1"),
                (Table::Events, "e1/c1"),
                (Table::Assets, "USD")
            ]
        );
    }

    #[test]
    fn statement_texts_are_qualified_keyed_and_conditioned() {
        for cql in Cql::ALL {
            let text = cql.text("ks");
            assert!(text.contains(" ks."), "{cql:?}: {text}");
            assert!(!text.contains("{ks}"), "{cql:?}: {text}");
            let conditional = text.contains(" IF ");
            let mutates = matches!(
                cql,
                Cql::Insert
                    | Cql::Update
                    | Cql::Delete
                    | Cql::DeleteAbsent
                    | Cql::UniqueClaim
                    | Cql::UniqueSteal
                    | Cql::UniqueRelease
            );
            assert_eq!(conditional, mutates, "{cql:?}: records and claims change only by LWT: {text}");
            assert_eq!(cql.is_idempotent(), !conditional, "{cql:?}: only plain statements are retried");
            if text.starts_with("SELECT") && cql != Cql::Scan && cql != Cql::IndexList {
                assert!(
                    text.contains("pk = ?") || text.contains("tbl = ? AND idx = ?"),
                    "{cql:?}: one partition: {text}"
                );
            }
        }
        assert_eq!(
            Cql::Update.text("ks"),
            "UPDATE ks.records SET revision = ?, doc = ?, uniques = ? WHERE pk = ? AND tbl = ? AND ck = ? \
             IF revision = ?"
        );
        assert_eq!(
            Cql::Insert.text("ks"),
            "INSERT INTO ks.records (pk, tbl, ck, revision, doc, uniques) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        );
        assert_eq!(
            Cql::Scan.text("ks"),
            "SELECT ck, revision, doc FROM ks.records WHERE tbl = ? ALLOW FILTERING"
        );
    }

    #[test]
    fn bound_values_follow_the_statement_columns() {
        let claims = [UniqueKey { index: "external_id", value: "x".into() }];
        let plan = KeyPlan {
            table: Table::Customers,
            key: "c1",
            expected: Some(4),
            last: Final::Put { revision: 5, doc: b"{}", claims: &claims },
            release: Vec::new(),
        };
        let (cql, values) = mutation(&plan).unwrap();
        assert_eq!(cql, Cql::Update);
        assert_eq!(
            values,
            vec![
                Bind::Int(5),
                Bind::Blob(b"{}"),
                Bind::Text("external_id\u{1f}x\u{1e}".into()),
                Bind::Text("/customers".into()),
                Bind::Text("customers".into()),
                Bind::Text("c1".into()),
                Bind::Int(4),
            ]
        );
        assert_eq!(values.len(), Cql::Update.text("ks").matches('?').count());
        let insert = KeyPlan { expected: None, ..plan };
        let (cql, values) = mutation(&insert).unwrap();
        assert_eq!((cql, values.len()), (Cql::Insert, Cql::Insert.text("ks").matches('?').count()));
        let too_big = KeyPlan {
            table: Table::Meta,
            key: "k",
            expected: Some(u64::MAX),
            last: Final::Delete,
            release: Vec::new(),
        };
        assert!(mutation(&too_big).is_err());
    }

    #[test]
    fn schema_statements_name_the_keyspace() {
        let config = ScyllaConfig::parse("scylla://h/drawdown?replication=3").unwrap();
        assert_eq!(
            keyspace_ddl(&config, true),
            "CREATE KEYSPACE IF NOT EXISTS drawdown WITH replication = {'class': 'SimpleStrategy', \
             'replication_factor': 3} AND tablets = {'enabled': false}"
        );
        assert!(!keyspace_ddl(&config, false).contains("tablets"));
        assert!(
            schema_version_ddl("drawdown").starts_with("CREATE TABLE IF NOT EXISTS drawdown.schema_version")
        );
        for statement in MIGRATIONS.iter().flat_map(|m| m.iter()) {
            assert!(statement.starts_with("CREATE TABLE IF NOT EXISTS {ks}."), "idempotent: {statement}");
        }
        assert!(MIGRATIONS[0][0].contains("PRIMARY KEY ((pk), tbl, ck)"));
    }

    #[test]
    fn unique_values_round_trip_through_their_column() {
        let keys = [
            UniqueKey { index: "external_id", value: "a b".into() },
            UniqueKey { index: "email", value: "".into() },
        ];
        let text = encode_claims(&keys);
        let decoded = decode_claims(Table::Customers, "c", &text).unwrap();
        assert_eq!(decoded, vec![("external_id".into(), "a b".into()), ("email".into(), "".into())]);
        assert!(decode_claims(Table::Customers, "c", "").unwrap().is_empty());
        assert!(matches!(
            decode_claims(Table::Customers, "c", "broken\u{1e}"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn claims_are_taken_over_only_after_the_lease() {
        let now = 1_000_000_000_000;
        assert!(!lease_expired(now, now));
        assert!(!lease_expired(now - 59_000_000, now));
        assert!(lease_expired(now - 61_000_000, now));
        assert!(!lease_expired(now + 5_000_000, now), "a clock behind the server's waits");
    }

    #[test]
    fn pages_count_every_match_and_keep_the_range() {
        let mut page = Page::new(ListRange::page(1, 2));
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            page.push(Record { key: key.to_string(), revision: i as u64 + 1, doc: Vec::new() });
        }
        let listing = page.finish();
        assert_eq!(listing.total, 4);
        assert_eq!(listing.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn retries_back_off_within_bounds() {
        assert_eq!(backoff(1), Duration::from_millis(4));
        assert_eq!(backoff(50), Duration::from_millis(256));
    }
}
