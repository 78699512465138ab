//! The storage contract as tests, written once and generic over the backend.
//!
//! A backend opts in with a [`Harness`] (how to get a fresh, empty location and how to open it,
//! again and again) and one macro call:
//!
//! ```ignore
//! store::store_conformance_tests!(MyHarness);
//! ```
//!
//! A backend without multi-partition transactions says so with
//! [`Harness::CROSS_PARTITION_ATOMIC`]; the tests about batches spanning partitions then check
//! the per-partition guarantee instead. A backend that needs a server the machine may lack marks
//! its tests ignored (`store_conformance_tests!(H, ignore = "why")`) and says why with
//! [`Harness::unavailable`]: run with `--include-ignored` and no server, they fail saying so.

#![allow(clippy::unwrap_used)] // test code: a failed step should panic with its location

use crate::model::{Expect, ListRange, Op, StoreError, Table};
use crate::typed::{get_doc, list_docs};
use crate::Store;
use std::sync::Arc;

/// A fresh storage location for one test, openable several times (not concurrently).
pub trait Harness: Sized {
    type Backend: Store;
    /// Whether a batch is applied atomically whatever partitions its keys fall in (the embedded
    /// store: one transaction). A backend without multi-partition transactions sets it to false
    /// and guarantees less, which is what the suite then checks: a batch is applied partition by
    /// partition, in the order each partition first appears in it, each partition all or
    /// nothing, stopping at the first partition whose preconditions fail (the partitions before
    /// it stay applied); and one customer's records (`Ledger` `{c}`, `Transactions` and
    /// `WalletAccounts` `{c}/...`, `Events` `.../{c}`) are one partition.
    const CROSS_PARTITION_ATOMIC: bool = true;
    /// Why the backend cannot be tested on this machine (its server is not configured), or
    /// `None`. The one allowed skip: each test prints the reason and returns.
    fn unavailable() -> Option<String> {
        None
    }
    /// A new, empty location.
    fn new() -> Self;
    /// Opens the location; data written through an earlier handle must be visible.
    fn open(&self) -> Self::Backend;
}

fn put(table: Table, key: &str, n: i64) -> Op {
    Op::put_doc(table, key, &serde_json::json!({ "n": n })).expect("encode")
}

async fn n_of(store: &dyn Store, table: Table, key: &str) -> Option<i64> {
    get_doc::<serde_json::Value>(store, table, key).await.expect("get").and_then(|d| d.value["n"].as_i64())
}

pub async fn put_then_get_counts_revisions<H: Harness>() {
    let h = H::new();
    let s = h.open();
    assert!(s.get(Table::Assets, "A").await.unwrap().is_none());
    s.write(vec![put(Table::Assets, "A", 1)]).await.unwrap();
    let r = s.get(Table::Assets, "A").await.unwrap().unwrap();
    assert_eq!((r.key.as_str(), r.revision), ("A", 1));
    s.write(vec![put(Table::Assets, "A", 2)]).await.unwrap();
    assert_eq!(s.get(Table::Assets, "A").await.unwrap().unwrap().revision, 2);
    assert_eq!(n_of(&s, Table::Assets, "A").await, Some(2));
    // Tables are separate key spaces.
    assert!(s.get(Table::Products, "A").await.unwrap().is_none());
}

pub async fn get_many_answers_in_key_order_with_gaps<H: Harness>() {
    let h = H::new();
    let s = h.open();
    s.write(vec![put(Table::Events, "b", 2), put(Table::Events, "a", 1), put(Table::Events, "a", 3)])
        .await
        .unwrap();
    s.write(vec![put(Table::Transactions, "c", 9)]).await.unwrap();
    let keys: Vec<String> = ["b", "c", "a", "b"].iter().map(|k| k.to_string()).collect();
    let got = s.get_many(Table::Events, &keys).await.unwrap();
    let seen: Vec<Option<(String, u64)>> = got.into_iter().map(|r| r.map(|r| (r.key, r.revision))).collect();
    assert_eq!(
        seen,
        vec![Some(("b".into(), 1)), None, Some(("a".into(), 2)), Some(("b".into(), 1))],
        "answers follow the keys, absent keys (and other tables' keys) are None"
    );
    assert!(s.get_many(Table::Events, &[]).await.unwrap().is_empty());
}

/// Concurrent writes (which a backend may commit together) succeed or fail each on its own.
pub async fn concurrent_batches_fail_only_themselves<H: Harness>() {
    let h = H::new();
    let s = Arc::new(h.open());
    s.write(vec![put(Table::Events, "taken", 0)]).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let key = if i % 10 == 3 { "taken".to_string() } else { format!("k{i:02}") };
                let batch = vec![
                    put(Table::Transactions, &format!("t{i:02}"), i),
                    put(Table::Events, &key, i).expect(Expect::Absent),
                ];
                (i, s.write(batch).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        let wrote = n_of(s.as_ref(), Table::Transactions, &format!("t{i:02}")).await;
        if i % 10 == 3 {
            assert!(matches!(result, Err(StoreError::Conflict { .. })), "batch {i}: {result:?}");
            if H::CROSS_PARTITION_ATOMIC {
                assert_eq!(wrote, None, "batch {i} must leave nothing");
            } else {
                // Per partition: the transaction's partition comes first in the batch and stays
                // written; the failing partition is unchanged (`taken`, checked below).
                assert_eq!(wrote, Some(i), "batch {i}: the partition before the failing one stays");
            }
        } else {
            assert!(result.is_ok(), "batch {i}: {result:?}");
            assert_eq!(wrote, Some(i));
        }
    }
    assert_eq!(n_of(s.as_ref(), Table::Events, "taken").await, Some(0));
}

pub async fn preconditions_are_enforced<H: Harness>() {
    let h = H::new();
    let s = h.open();
    s.write(vec![put(Table::Assets, "A", 1).expect(Expect::Absent)]).await.unwrap();
    let err = s.write(vec![put(Table::Assets, "A", 2).expect(Expect::Absent)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { found: Some(1), .. }), "{err}");
    let err = s.write(vec![put(Table::Assets, "A", 2).expect(Expect::Revision(7))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    s.write(vec![put(Table::Assets, "A", 3).expect(Expect::Revision(1))]).await.unwrap();
    assert_eq!(n_of(&s, Table::Assets, "A").await, Some(3));
    let err = s.write(vec![Op::delete(Table::Assets, "A").expect(Expect::Revision(1))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    s.write(vec![Op::delete(Table::Assets, "A").expect(Expect::Revision(2))]).await.unwrap();
    assert!(s.get(Table::Assets, "A").await.unwrap().is_none());
}

pub async fn a_batch_is_all_or_nothing<H: Harness>() {
    let h = H::new();
    let s = h.open();
    s.write(vec![put(Table::Customers, "taken", 0)]).await.unwrap();
    let batch = vec![
        put(Table::Customers, "c1", 1),
        put(Table::WalletAccounts, "c1/default:USD", 0),
        put(Table::Customers, "taken", 1).expect(Expect::Absent),
    ];
    assert!(s.write(batch).await.is_err());
    // Per partition too: `c1` shares the failing record's partition (on ScyllaDB every customer
    // record is in one catalog partition), and the wallet account's partition comes after it,
    // where a per-partition backend stops. (Within one customer's records, all or nothing
    // holds for every backend: `a_customers_records_commit_together`.)
    assert!(s.get(Table::Customers, "c1").await.unwrap().is_none());
    assert!(s.get(Table::WalletAccounts, "c1/default:USD").await.unwrap().is_none());
    assert_eq!(n_of(&s, Table::Customers, "taken").await, Some(0));
}

/// A batch of one customer's records (what the ledger writer posts for a customer) is all or
/// nothing on every backend, and concurrent such batches fail only themselves.
pub async fn a_customers_records_commit_together<H: Harness>() {
    let h = H::new();
    let s = Arc::new(h.open());
    s.write(vec![put(Table::Events, "e-taken/c3", 0)]).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let c = format!("c{i}");
                let event = if i == 3 { "e-taken/c3".to_string() } else { format!("e{i}/{c}") };
                let batch = vec![
                    put(Table::Ledger, &c, i),
                    put(Table::Transactions, &format!("{c}/t1"), i).expect(Expect::Absent),
                    put(Table::WalletAccounts, &format!("{c}/default:USD"), i),
                    put(Table::Events, &event, i).expect(Expect::Absent),
                ];
                (i, s.write(batch).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        let c = format!("c{i}");
        let wrote = (
            n_of(s.as_ref(), Table::Ledger, &c).await,
            n_of(s.as_ref(), Table::Transactions, &format!("{c}/t1")).await,
            n_of(s.as_ref(), Table::WalletAccounts, &format!("{c}/default:USD")).await,
        );
        if i == 3 {
            assert!(matches!(result, Err(StoreError::Conflict { .. })), "customer {i}: {result:?}");
            assert_eq!(wrote, (None, None, None), "customer {i}: a failed batch leaves nothing");
        } else {
            assert!(result.is_ok(), "customer {i}: {result:?}");
            assert_eq!(wrote, (Some(i), Some(i), Some(i)), "customer {i}");
            assert_eq!(n_of(s.as_ref(), Table::Events, &format!("e{i}/{c}")).await, Some(i));
        }
    }
    assert_eq!(n_of(s.as_ref(), Table::Events, "e-taken/c3").await, Some(0));
}

pub async fn unique_keys_are_claimed_and_released<H: Harness>() {
    let h = H::new();
    let s = h.open();
    s.write(vec![put(Table::Customers, "c1", 1).unique("external_id", "ext-1")]).await.unwrap();
    assert_eq!(s.find_unique(Table::Customers, "external_id", "ext-1").await.unwrap().as_deref(), Some("c1"));
    // Another record cannot take it, and the failed batch leaves nothing behind.
    let err = s.write(vec![put(Table::Customers, "c2", 2).unique("external_id", "ext-1")]).await.unwrap_err();
    assert!(matches!(err, StoreError::UniqueViolation { index: "external_id", .. }), "{err}");
    assert!(s.get(Table::Customers, "c2").await.unwrap().is_none());
    // The same value under another table or index is independent.
    s.write(vec![put(Table::Vendors, "v1", 1).unique("external_id", "ext-1")]).await.unwrap();
    // Re-putting the owner keeps it; changing the value releases the old one.
    s.write(vec![put(Table::Customers, "c1", 3).unique("external_id", "ext-1")]).await.unwrap();
    s.write(vec![put(Table::Customers, "c1", 4).unique("external_id", "ext-2")]).await.unwrap();
    assert!(s.find_unique(Table::Customers, "external_id", "ext-1").await.unwrap().is_none());
    s.write(vec![put(Table::Customers, "c2", 5).unique("external_id", "ext-1")]).await.unwrap();
    // Deleting releases.
    s.write(vec![Op::delete(Table::Customers, "c1")]).await.unwrap();
    assert!(s.find_unique(Table::Customers, "external_id", "ext-2").await.unwrap().is_none());
    s.write(vec![put(Table::Customers, "c3", 6).unique("external_id", "ext-2")]).await.unwrap();
}

pub async fn lists_are_prefixed_ordered_and_paged<H: Harness>() {
    let h = H::new();
    let s = h.open();
    let batch = ["b/2", "a/1", "b/1", "b/3", "c/1", "b"]
        .iter()
        .enumerate()
        .map(|(i, k)| put(Table::WalletAccounts, k, i as i64))
        .collect();
    s.write(batch).await.unwrap();
    let all = s.list(Table::WalletAccounts, "b/", ListRange::ALL).await.unwrap();
    let keys: Vec<_> = all.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["b/1", "b/2", "b/3"]);
    assert_eq!(all.total, 3);
    let page = s.list(Table::WalletAccounts, "b/", ListRange::page(1, 1)).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["b/2"]);
    assert_eq!(page.total, 3);
    let past = s.list(Table::WalletAccounts, "b/", ListRange::page(5, 10)).await.unwrap();
    assert!(past.records.is_empty());
    assert_eq!(past.total, 3);
    let everything = list_docs::<serde_json::Value>(&s, Table::WalletAccounts, "").await.unwrap();
    assert_eq!(everything.len(), 6);
    assert!(s.list(Table::Vendors, "", ListRange::ALL).await.unwrap().records.is_empty());
}

pub async fn ranges_are_half_open_ordered_and_limited<H: Harness>() {
    let h = H::new();
    let s = h.open();
    let batch = ["00/2027/c", "00/2026/b", "00/2026/a", "00/2028/d", "01/2026/e"]
        .iter()
        .enumerate()
        .map(|(i, k)| put(Table::Schedule, k, i as i64))
        .collect();
    s.write(batch).await.unwrap();
    let keys = |records: Vec<crate::Record>| records.into_iter().map(|r| r.key).collect::<Vec<_>>();
    let due = s.range(Table::Schedule, "00/", "00/2027/~", 10).await.unwrap();
    assert_eq!(keys(due), ["00/2026/a", "00/2026/b", "00/2027/c"]);
    let first = s.range(Table::Schedule, "00/", "00/~", 2).await.unwrap();
    assert_eq!(keys(first), ["00/2026/a", "00/2026/b"]);
    let after = s.range(Table::Schedule, "00/2026/b\0", "00/~", 10).await.unwrap();
    assert_eq!(keys(after), ["00/2027/c", "00/2028/d"], "paging on from past a key");
    assert!(s.range(Table::Schedule, "00/2027", "00/2026", 10).await.unwrap().is_empty());
}

pub async fn writes_survive_reopen<H: Harness>() {
    let h = H::new();
    {
        let s = h.open();
        s.write(vec![put(Table::Products, "p1", 42).unique("code", "gpt")]).await.unwrap();
    }
    let s = h.open();
    assert_eq!(n_of(&s, Table::Products, "p1").await, Some(42));
    assert_eq!(s.find_unique(Table::Products, "code", "gpt").await.unwrap().as_deref(), Some("p1"));
    assert_eq!(s.get(Table::Products, "p1").await.unwrap().unwrap().revision, 1);
}

pub async fn optimistic_updates_lose_nothing<H: Harness>() {
    let h = H::new();
    let s: Arc<dyn Store> = Arc::new(h.open());
    s.write(vec![put(Table::Meta, "counter", 0)]).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let r = s.get(Table::Meta, "counter").await.unwrap().unwrap();
                        let n = n_of(s.as_ref(), Table::Meta, "counter").await.unwrap();
                        let op = put(Table::Meta, "counter", n + 1).expect(Expect::Revision(r.revision));
                        match s.write(vec![op]).await {
                            Ok(()) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(n_of(s.as_ref(), Table::Meta, "counter").await, Some(80));
}

/// Fails the test, saying why, when `H`'s backend cannot be reached here: a test that was asked
/// to run must not pass without running.
pub fn require<H: Harness>() {
    if let Some(reason) = H::unavailable() {
        panic!("not run: {reason}");
    }
}

/// Instantiates every conformance test for a [`Harness`]. With `ignore = "why"` the tests are
/// marked ignored (reported as such, run with `--include-ignored`): for a backend whose server is
/// not on every machine.
#[macro_export]
macro_rules! store_conformance_tests {
    ($harness:ty) => {
        // An attribute that never applies: the tests run by default.
        $crate::store_conformance_tests!(@all $harness; cfg_attr(any(), ignore));
    };
    ($harness:ty, ignore = $why:literal) => {
        $crate::store_conformance_tests!(@all $harness; ignore = $why);
    };
    (@all $harness:ty; $attr:meta) => {
        $crate::store_conformance_tests!(@tests $harness; $attr;
            put_then_get_counts_revisions,
            get_many_answers_in_key_order_with_gaps,
            concurrent_batches_fail_only_themselves,
            preconditions_are_enforced,
            a_batch_is_all_or_nothing,
            a_customers_records_commit_together,
            unique_keys_are_claimed_and_released,
            lists_are_prefixed_ordered_and_paged,
            ranges_are_half_open_ordered_and_limited,
            writes_survive_reopen,
            optimistic_updates_lose_nothing,
        );
    };
    (@tests $harness:ty; $attr:meta; $($name:ident),* $(,)?) => {
        mod store_conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[$attr]
                async fn $name() {
                    $crate::conformance::require::<$harness>();
                    $crate::conformance::$name::<$harness>().await;
                }
            )*
        }
    };
}
