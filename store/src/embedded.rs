//! The embedded backend: one redb file in the data directory.
//!
//! redb is a copy-on-write B-tree with ACID transactions; a commit is fsync'd before it returns
//! (`Durability::Immediate`, the default), and a crash at any moment leaves the last committed
//! state. That is exactly "a 201 means durable". Why redb: docs/decisions/embedded-store.md.
//!
//! redb runs one write transaction at a time, so writes that arrive while one commits are
//! committed together in the next transaction ([`GroupCommit`]): one fsync for all of them.
//!
//! Record layout: `revision (u64 LE) | unique-keys length (u32 LE) | unique keys | JSON document`.
//! Unique keys live in one extra table, `unique`, keyed `{table}\x1f{index}\x1f{value}` and
//! holding the owning record's key.

use crate::model::{
    decode_claims, encode_claims, Expect, ListRange, Listing, Op, Record, StoreError, Table, UniqueKey,
    CLAIM_SEP,
};
use crate::Store;
use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const UNIQUE: TableDefinition<&str, &str> = TableDefinition::new("unique");
const FILE_NAME: &str = "store.redb";
/// redb's in-process page cache (its default is 1 GiB). The OS page cache holds the file too, so
/// a smaller cache costs little speed and bounds the server's resident memory.
const CACHE_BYTES: usize = 256 << 20;

/// Records are keyed by the bytes of their string key: the same order as `str`, without redb
/// validating UTF-8 on every key comparison (3-4% of a writer's commit). Keys are only ever written
/// from `&str`.
fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// The embedded, crash-safe, transactional store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    commits: Arc<GroupCommit>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| backend(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| backend(format!("open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        for table in Table::ALL {
            txn.open_table(definition(table)).map_err(backend)?;
        }
        txn.open_table(UNIQUE).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db), path, commits: Arc::new(GroupCommit::default()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A decoded stored value.
struct Envelope {
    revision: u64,
    unique: Vec<(String, String)>,
    doc: Vec<u8>,
}

fn encode(revision: u64, unique: &[UniqueKey], doc: &[u8]) -> Vec<u8> {
    let keys = encode_claims(unique);
    let mut out = Vec::with_capacity(12 + keys.len() + doc.len());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    out.extend_from_slice(keys.as_bytes());
    out.extend_from_slice(doc);
    out
}

fn decode(table: Table, key: &str, bytes: &[u8]) -> Result<Envelope, StoreError> {
    let corrupt =
        |reason: &str| StoreError::Corrupt { table, key: key.to_string(), reason: reason.to_string() };
    let revision = bytes
        .get(0..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| corrupt("short header"))?;
    let len = bytes
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| corrupt("short header"))? as usize;
    let keys = bytes.get(12..12 + len).ok_or_else(|| corrupt("short unique keys"))?;
    let keys = std::str::from_utf8(keys).map_err(|_| corrupt("unique keys are not UTF-8"))?;
    let unique = decode_claims(table, key, keys)?;
    Ok(Envelope { revision, unique, doc: bytes[12 + len..].to_vec() })
}

/// The revision and unique keys of a stored value, without copying its document when it has no
/// unique keys (most records): what a write needs to know about the record it replaces.
fn decode_meta(table: Table, key: &str, bytes: &[u8]) -> Result<(u64, Vec<(String, String)>), StoreError> {
    if let (Some(revision), Some([0, 0, 0, 0])) = (bytes.get(0..8), bytes.get(8..12)) {
        let mut le = [0; 8];
        le.copy_from_slice(revision);
        return Ok((u64::from_le_bytes(le), Vec::new()));
    }
    let env = decode(table, key, bytes)?;
    Ok((env.revision, env.unique))
}

fn unique_slot(table: Table, index: &str, value: &str) -> String {
    format!("{}{CLAIM_SEP}{index}{CLAIM_SEP}{value}", table.name())
}

type Records<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;
type Uniques<'txn> = redb::Table<'txn, &'static str, &'static str>;

/// Checks `expect` against the record being replaced or deleted and releases its unique keys.
/// Returns its revision.
fn take_previous(
    records: &Records<'_>,
    unique: &mut Uniques<'_>,
    table: Table,
    key: &str,
    expect: Expect,
) -> Result<Option<u64>, StoreError> {
    let old = match records.get(key.as_bytes()).map_err(backend)? {
        Some(v) => Some(decode_meta(table, key, v.value())?),
        None => None,
    };
    expect.check(table, key, old.as_ref().map(|(revision, _)| *revision))?;
    for (index, value) in old.iter().flat_map(|(_, unique)| unique.iter()) {
        unique.remove(unique_slot(table, index, value).as_str()).map_err(backend)?;
    }
    Ok(old.map(|(revision, _)| revision))
}

/// The tables of one write transaction, each opened once per commit, however many batches the
/// commit groups (opening a table walks the table tree), and only if a batch needs it.
struct OpenTables<'txn> {
    txn: &'txn redb::WriteTransaction,
    open: Vec<Option<Records<'txn>>>,
    unique: Option<Uniques<'txn>>,
}

impl<'txn> OpenTables<'txn> {
    fn new(txn: &'txn redb::WriteTransaction) -> Self {
        Self { txn, open: Table::ALL.iter().map(|_| None).collect(), unique: None }
    }

    fn get(&mut self, table: Table) -> Result<&mut Records<'txn>, StoreError> {
        let slot = &mut self.open[table.index()];
        if slot.is_none() {
            *slot = Some(self.txn.open_table(definition(table)).map_err(backend)?);
        }
        slot.as_mut().ok_or_else(|| backend("table not open"))
    }

    /// `table` and the unique-key table, for writes that replace, delete or claim.
    fn with_unique(&mut self, table: Table) -> Result<(&mut Records<'txn>, &mut Uniques<'txn>), StoreError> {
        self.get(table)?;
        if self.unique.is_none() {
            self.unique = Some(self.txn.open_table(UNIQUE).map_err(backend)?);
        }
        match (self.open[table.index()].as_mut(), self.unique.as_mut()) {
            (Some(records), Some(unique)) => Ok((records, unique)),
            _ => Err(backend("table not open")),
        }
    }
}

/// Applies one batch inside the transaction of `tables`. On error the caller must drop the
/// transaction uncommitted.
fn apply_ops(tables: &mut OpenTables<'_>, batch: &[Op]) -> Result<(), StoreError> {
    for op in batch {
        match op {
            Op::Put { table, key, doc, expect: Expect::Absent, unique: claims } if claims.is_empty() => {
                // The common insert (every posted event and fee): one B-tree descent, the
                // precondition checked on the value the insert replaced (an error drops the
                // whole transaction, so nothing is overwritten).
                let t = tables.get(*table)?;
                let replaced = t.insert(key.as_bytes(), encode(1, &[], doc).as_slice()).map_err(backend)?;
                if let Some(old) = replaced {
                    let (revision, _) = decode_meta(*table, key, old.value())?;
                    return Err(StoreError::Conflict {
                        table: *table,
                        key: key.clone(),
                        expected: Expect::Absent,
                        found: Some(revision),
                    });
                }
            }
            Op::Put { table, key, doc, expect, unique: claims } => {
                let (table, expect) = (*table, *expect);
                let (t, unique) = tables.with_unique(table)?;
                let previous = take_previous(t, unique, table, key, expect)?;
                for claim in claims {
                    let slot = unique_slot(table, claim.index, &claim.value);
                    let owner = unique.get(slot.as_str()).map_err(backend)?.map(|o| o.value().to_string());
                    if owner.is_some_and(|o| o != *key) {
                        return Err(StoreError::UniqueViolation {
                            table,
                            index: claim.index,
                            value: claim.value.clone(),
                        });
                    }
                    unique.insert(slot.as_str(), key.as_str()).map_err(backend)?;
                }
                let revision = previous.map_or(1, |r| r + 1);
                t.insert(key.as_bytes(), encode(revision, claims, doc).as_slice()).map_err(backend)?;
            }
            Op::Delete { table, key, expect } => {
                let (t, unique) = tables.with_unique(*table)?;
                take_previous(t, unique, *table, key, *expect)?;
                t.remove(key.as_bytes()).map_err(backend)?;
            }
        }
    }
    Ok(())
}

/// Applies batches in one write transaction and commits it: all of them or none.
fn commit(db: &Database, batches: &[&[Op]]) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let mut tables = OpenTables::new(&txn);
    for batch in batches {
        apply_ops(&mut tables, batch)?;
    }
    drop(tables);
    txn.commit().map_err(backend)
}

/// A write waiting for the next commit, and where its outcome goes.
struct Pending {
    ops: Vec<Op>,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Group commit: redb runs one write transaction at a time and each commit is an fsync, so
/// writes that arrive while a commit runs are gathered and committed together, as one
/// transaction, by the task that ran the previous commit (the "leader"). Applying batches one
/// after the other in one transaction is exactly their sequential execution, so each batch's
/// preconditions see the batches before it. If the combined transaction fails (a batch's
/// precondition, a unique key, the disk), each batch is committed alone instead, so one
/// conflicting batch fails only itself.
#[derive(Default)]
struct GroupCommit {
    queue: std::sync::Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// A leader is committing; it takes whatever is queued when it is done.
    leading: bool,
}

impl GroupCommit {
    /// Queues `ops`; returns true if the caller must start a leader.
    fn enqueue(&self, pending: Pending) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queue.pending.push(pending);
        !std::mem::replace(&mut queue.leading, true)
    }

    /// Everything queued, or `None` (and no leader any more) when the queue is empty.
    fn take(&self) -> Option<Vec<Pending>> {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.pending.is_empty() {
            queue.leading = false;
            return None;
        }
        Some(std::mem::take(&mut queue.pending))
    }

    /// Fails every queued write and lets the next write start a leader (a leader that never
    /// ran, or unwound).
    fn abandon(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queue.leading = false;
        queue.pending.clear();
    }
}

/// The task committing queued writes until the queue is empty. Runs on a blocking thread.
///
/// It holds the database weakly, and strongly only while committing, before it answers: once a
/// caller has its answer and drops the store, the file is closed and can be opened again.
struct Leader {
    db: std::sync::Weak<Database>,
    commits: Arc<GroupCommit>,
    finished: bool,
}

impl Leader {
    fn run(mut self) {
        while let Some(group) = self.commits.take() {
            let results = self.commit_group(&group);
            for (pending, result) in group.into_iter().zip(results) {
                let _ = pending.done.send(result);
            }
        }
        self.finished = true;
    }

    /// One transaction for the whole group, or one per batch if that fails.
    fn commit_group(&self, group: &[Pending]) -> Vec<Result<(), StoreError>> {
        let Some(db) = self.db.upgrade() else {
            return group.iter().map(|_| Err(backend("the store is closed"))).collect();
        };
        let batches: Vec<&[Op]> = group.iter().map(|p| p.ops.as_slice()).collect();
        if batches.len() > 1 && commit(&db, &batches).is_ok() {
            return group.iter().map(|_| Ok(())).collect();
        }
        batches.iter().map(|batch| commit(&db, &[batch])).collect()
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.commits.abandon();
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(definition(table)).map_err(backend)?;
        let Some(value) = t.get(key.as_bytes()).map_err(backend)? else { return Ok(None) };
        let env = decode(table, key, value.value())?;
        Ok(Some(Record { key: key.to_string(), revision: env.revision, doc: env.doc }))
    }

    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(definition(table)).map_err(backend)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let record = match t.get(key.as_bytes()).map_err(backend)? {
                Some(value) => {
                    let env = decode(table, key, value.value())?;
                    Some(Record { key: key.clone(), revision: env.revision, doc: env.doc })
                }
                None => None,
            };
            out.push(record);
        }
        Ok(out)
    }

    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(definition(table)).map_err(backend)?;
        let mut records = Vec::new();
        let mut total = 0;
        for entry in t.range(prefix.as_bytes()..).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            if !k.value().starts_with(prefix.as_bytes()) {
                break;
            }
            let wanted = total >= range.offset && range.limit.is_none_or(|l| records.len() < l);
            total += 1;
            if wanted {
                records.push(stored(table, k.value(), v.value())?);
            }
        }
        Ok(Listing { records, total })
    }

    async fn range(
        &self,
        table: Table,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(definition(table)).map_err(backend)?;
        let mut records = Vec::new();
        if from >= to {
            return Ok(records);
        }
        for entry in t.range(from.as_bytes()..to.as_bytes()).map_err(backend)?.take(limit) {
            let (k, v) = entry.map_err(backend)?;
            records.push(stored(table, k.value(), v.value())?);
        }
        Ok(records)
    }

    async fn find_unique(
        &self,
        table: Table,
        index: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let t = txn.open_table(UNIQUE).map_err(backend)?;
        let owner = t.get(unique_slot(table, index, value).as_str()).map_err(backend)?;
        Ok(owner.map(|o| o.value().to_string()))
    }

    async fn write(&self, batch: Vec<Op>) -> Result<(), StoreError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        if self.commits.enqueue(Pending { ops: batch, done }) {
            // A commit waits for fsync: the leader runs off the async workers.
            let leader =
                Leader { db: Arc::downgrade(&self.db), commits: Arc::clone(&self.commits), finished: false };
            tokio::task::spawn_blocking(move || leader.run());
        }
        outcome.await.map_err(|_| backend("the commit task failed"))?
    }
}

/// A record as listed: its key (which must be UTF-8) and its decoded envelope.
fn stored(table: Table, key: &[u8], value: &[u8]) -> Result<Record, StoreError> {
    let key = std::str::from_utf8(key).map_err(|_| StoreError::Corrupt {
        table,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "key is not UTF-8".to_string(),
    })?;
    let env = decode(table, key, value)?;
    Ok(Record { key: key.to_string(), revision: env.revision, doc: env.doc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::Harness;

    struct Embedded(tempfile::TempDir);

    impl Harness for Embedded {
        type Backend = EmbeddedStore;
        fn new() -> Self {
            Embedded(tempfile::tempdir().expect("temp dir"))
        }
        fn open(&self) -> EmbeddedStore {
            EmbeddedStore::open(self.0.path()).expect("open store")
        }
    }

    crate::store_conformance_tests!(Embedded);

    #[test]
    fn table_indexes_follow_all() {
        for (i, table) in Table::ALL.iter().enumerate() {
            assert_eq!(table.index(), i, "{table}");
        }
    }

    #[test]
    fn meta_is_read_from_the_header_or_the_unique_keys() {
        let plain = encode(3, &[], b"{}");
        assert_eq!(decode_meta(Table::Events, "k", &plain).unwrap(), (3, vec![]));
        let keys = [UniqueKey { index: "external_id", value: "x".into() }];
        let claimed = encode(4, &keys, b"{}");
        assert_eq!(
            decode_meta(Table::Customers, "k", &claimed).unwrap(),
            (4, vec![("external_id".to_string(), "x".to_string())])
        );
        assert!(decode_meta(Table::Events, "k", b"short").is_err());
    }

    #[test]
    fn envelope_round_trips() {
        let keys = [UniqueKey { index: "external_id", value: "a\u{1}b".into() }];
        let bytes = encode(7, &keys, b"{\"x\":1}");
        let env = decode(Table::Customers, "k", &bytes).unwrap();
        assert_eq!(env.revision, 7);
        assert_eq!(env.unique, vec![("external_id".to_string(), "a\u{1}b".to_string())]);
        assert_eq!(env.doc, b"{\"x\":1}");
    }
}
