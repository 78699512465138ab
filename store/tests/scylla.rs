//! The storage contract (`store::conformance`) against a real ScyllaDB, and what only this
//! backend does (event lookups by id, full scans, the order of partial batches).
//!
//! Needs a server: `SCYLLA_URI=127.0.0.1:9042 cargo test -p store --test scylla -- --include-ignored` (docs/scylla.md
//! starts one with Docker). `SCYLLA_URI` is `host:port[,host:port...]` or a whole
//! `scylla://hosts/any?replication=N` URL; each test runs in a fresh keyspace
//! `drawdown_test_<random>`, dropped when it ends. The server tests are ignored (reported as
//! such) unless run with `--include-ignored`, and then fail without `SCYLLA_URI`; the URL tests
//! always run.

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use std::future::Future;
use store::conformance::Harness;
use store::{Expect, ListRange, Op, ScyllaConfig, ScyllaStore, Store, StoreError, Table};

const ENV: &str = "SCYLLA_URI";
const NOT_RUN: &str = "SCYLLA_URI not set; ScyllaDB conformance not run";

fn uri() -> Option<String> {
    std::env::var(ENV).ok().filter(|v| !v.trim().is_empty())
}

/// The store URL for `keyspace` on the cluster `uri` names (bare hosts, or a `scylla://` URL
/// whose keyspace is replaced).
fn test_url(uri: &str, keyspace: &str) -> String {
    let uri = uri.trim();
    let Some(rest) = uri.strip_prefix("scylla://") else { return format!("scylla://{uri}/{keyspace}") };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let hosts = rest.split_once('/').map_or(rest, |(hosts, _)| hosts);
    match query {
        "" => format!("scylla://{hosts}/{keyspace}"),
        _ => format!("scylla://{hosts}/{keyspace}?{query}"),
    }
}

/// Runs `f` to completion from synchronous code (the harness) inside the test's multi-threaded
/// runtime.
fn block_on<F: Future>(f: F) -> F::Output {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| runtime.block_on(f))
}

/// A fresh keyspace on the cluster of `SCYLLA_URI`, dropped with the harness.
struct Scylla {
    config: ScyllaConfig,
    admin: Session,
}

impl Harness for Scylla {
    type Backend = ScyllaStore;
    const CROSS_PARTITION_ATOMIC: bool = false;

    fn unavailable() -> Option<String> {
        uri().is_none().then(|| NOT_RUN.to_string())
    }

    fn new() -> Self {
        let uri = uri().expect("SCYLLA_URI (checked by `unavailable`)");
        let keyspace = format!("drawdown_test_{}", uuid::Uuid::new_v4().simple());
        let config = ScyllaConfig::parse(&test_url(&uri, &keyspace)).expect("SCYLLA_URI names the cluster");
        // Connecting creates the keyspace and its schema.
        block_on(ScyllaStore::connect_with(config.clone())).expect("connect to ScyllaDB");
        let admin =
            block_on(SessionBuilder::new().known_nodes(&config.nodes).build()).expect("admin session");
        Scylla { config, admin }
    }

    fn open(&self) -> ScyllaStore {
        block_on(ScyllaStore::connect_with(self.config.clone())).expect("connect to ScyllaDB")
    }
}

impl Drop for Scylla {
    fn drop(&mut self) {
        let drop_keyspace = format!("DROP KEYSPACE IF EXISTS {}", self.config.keyspace);
        if let Err(e) = block_on(self.admin.query_unpaged(drop_keyspace, ())) {
            eprintln!("keyspace {} not dropped: {e}", self.config.keyspace);
        }
    }
}

store::store_conformance_tests!(
    Scylla,
    ignore = "needs a ScyllaDB server: SCYLLA_URI=host:port, --include-ignored"
);

/// A fresh store on the server of `SCYLLA_URI` (the test fails without one).
fn fresh() -> (Scylla, ScyllaStore) {
    store::conformance::require::<Scylla>();
    let h = Scylla::new();
    let s = h.open();
    (h, s)
}

fn put(table: Table, key: &str, n: i64) -> Op {
    Op::put_doc(table, key, &serde_json::json!({ "n": n })).expect("encode")
}

fn keys(listing: &store::Listing) -> Vec<&str> {
    listing.records.iter().map(|r| r.key.as_str()).collect()
}

#[ignore = "needs a ScyllaDB server: SCYLLA_URI=host:port, --include-ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_by_event_id_and_by_full_scan() {
    let (_h, s) = fresh();
    let events = ["e1/c2", "e1/c1", "e1x/c1", "e2/c1", "batch/e3/c3"];
    s.write(events.iter().map(|k| put(Table::Events, k, 1).expect(Expect::Absent)).collect()).await.unwrap();
    let by_id = s.list(Table::Events, "e1/", ListRange::ALL).await.unwrap();
    assert_eq!((keys(&by_id), by_id.total), (vec!["e1/c1", "e1/c2"], 2));
    let nested = s.list(Table::Events, "batch/e3/", ListRange::ALL).await.unwrap();
    assert_eq!(keys(&nested), ["batch/e3/c3"], "event ids holding `/`");
    let page = s.list(Table::Events, "e1", ListRange::page(1, 2)).await.unwrap();
    assert_eq!((keys(&page), page.total), (vec!["e1/c2", "e1x/c1"], 3), "a scan, sorted, paged");
    let all = s.list(Table::Events, "", ListRange::ALL).await.unwrap();
    assert_eq!(keys(&all), ["batch/e3/c3", "e1/c1", "e1/c2", "e1x/c1", "e2/c1"]);
    // A deleted event leaves no trace in either listing.
    s.write(vec![Op::delete(Table::Events, "e1/c2")]).await.unwrap();
    assert_eq!(keys(&s.list(Table::Events, "e1/", ListRange::ALL).await.unwrap()), ["e1/c1"]);
    assert!(s.get(Table::Events, "e1/c2").await.unwrap().is_none());
}

#[ignore = "needs a ScyllaDB server: SCYLLA_URI=host:port, --include-ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_stops_the_batch_and_earlier_partitions_stay() {
    let (_h, s) = fresh();
    s.write(vec![put(Table::Ledger, "b", 0)]).await.unwrap();
    let batch = vec![
        put(Table::Ledger, "a", 1),
        put(Table::Ledger, "b", 1).expect(Expect::Absent),
        put(Table::Ledger, "c", 1),
    ];
    let err = s.write(batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { table: Table::Ledger, found: Some(1), .. }), "{err}");
    assert_eq!(s.get(Table::Ledger, "a").await.unwrap().map(|r| r.revision), Some(1), "before: applied");
    assert_eq!(s.get(Table::Ledger, "b").await.unwrap().map(|r| r.revision), Some(1), "failed: unchanged");
    assert!(s.get(Table::Ledger, "c").await.unwrap().is_none(), "after: not applied");
}

#[ignore = "needs a ScyllaDB server: SCYLLA_URI=host:port, --include-ignored"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_listed_per_customer_and_across_customers() {
    let (_h, s) = fresh();
    let batch =
        ["c2/t1", "c1/t2", "c1/t1", "c10/t1"].iter().map(|k| put(Table::Transactions, k, 1)).collect();
    s.write(batch).await.unwrap();
    let c1 = s.list(Table::Transactions, "c1/", ListRange::ALL).await.unwrap();
    assert_eq!(keys(&c1), ["c1/t1", "c1/t2"], "one partition, not c10's");
    let all = s.list(Table::Transactions, "", ListRange::ALL).await.unwrap();
    assert_eq!(keys(&all), ["c1/t1", "c1/t2", "c10/t1", "c2/t1"]);
    let found = s.get_many(Table::Transactions, &["c2/t1".into(), "c3/t1".into()]).await.unwrap();
    assert_eq!(found.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_the_backend_its_url_names() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = store::connect(&format!("embedded:{}", dir.path().display())).await.unwrap();
    embedded.write(vec![put(Table::Meta, "k", 1)]).await.unwrap();
    assert!(embedded.get(Table::Meta, "k").await.unwrap().is_some());
    let Err(err) = store::connect("scylla://127.0.0.1:9042").await else { panic!("a URL without keyspace") };
    assert!(err.to_string().contains("no keyspace"), "{err}");
    // Nothing listens on port 1: a clear error, not a hang or a panic.
    let Err(err) = store::connect("scylla://127.0.0.1:1/ks").await else { panic!("no server there") };
    assert!(err.to_string().contains("connect to 127.0.0.1:1"), "{err}");
    if let Some(uri) = uri() {
        let keyspace = format!("drawdown_test_{}", uuid::Uuid::new_v4().simple());
        let s = store::connect(&test_url(&uri, &keyspace)).await.unwrap();
        s.write(vec![put(Table::Meta, "k", 1)]).await.unwrap();
        drop(s);
        let admin = SessionBuilder::new().known_node(uri_host(&uri)).build().await.unwrap();
        admin.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ()).await.unwrap();
    }
}

/// The first contact point of `SCYLLA_URI`.
fn uri_host(uri: &str) -> String {
    ScyllaConfig::parse(&test_url(uri, "ks")).expect("SCYLLA_URI names the cluster").nodes.swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_can_block_inside_the_test_runtime() {
    assert_eq!(
        block_on(async {
            tokio::task::yield_now().await;
            7
        }),
        7
    );
    let spawned = tokio::spawn(async { block_on(async { 8 }) });
    assert_eq!(spawned.await.unwrap(), 8, "and on a worker thread");
}

#[test]
fn scylla_uri_is_bare_hosts_or_a_url() {
    assert_eq!(test_url("127.0.0.1:9042", "ks_1"), "scylla://127.0.0.1:9042/ks_1");
    assert_eq!(test_url(" a:1,b:2 ", "ks_1"), "scylla://a:1,b:2/ks_1");
    assert_eq!(test_url("scylla://a:1/prod?replication=3", "ks_1"), "scylla://a:1/ks_1?replication=3");
    assert_eq!(test_url("scylla://a:1", "ks_1"), "scylla://a:1/ks_1");
    let config = ScyllaConfig::parse(&test_url("scylla://[::1]/x", "ks_1")).unwrap();
    assert_eq!((config.nodes, config.keyspace), (vec!["[::1]:9042".to_string()], "ks_1".to_string()));
    assert_eq!(uri_host("h1:9043,h2"), "h1:9043");
}

#[test]
fn store_urls_parse_through_the_public_config() {
    let config = ScyllaConfig::parse("scylla://scylla:9042/drawdown").unwrap();
    assert_eq!(
        (config.nodes, config.keyspace.as_str(), config.replication),
        (vec!["scylla:9042".into()], "drawdown", 1)
    );
    assert!(ScyllaConfig::parse("scylla://h/ks?replication=0").is_err());
}
