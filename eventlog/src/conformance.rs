//! The log contract as tests, written once and generic over the backend.
//!
//! A backend opts in with a [`Harness`] (how to get a fresh, empty location and how to open it,
//! again and again) and one macro call:
//!
//! ```ignore
//! eventlog::log_conformance_tests!(MyHarness);
//! ```
//!
//! Assertions leave room for a Kafka backend where the contract does: retention may keep more
//! than asked (whole segments) but never less.

#![allow(clippy::unwrap_used)] // test code: a failed step should panic with its location

use crate::{Log, LogError, PartitionId, Record, Topic};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A fresh log location for one test, openable several times (not concurrently).
pub trait Harness: Sized {
    type Backend: Log;
    /// A new, empty location with at least 2 partitions per topic.
    fn new() -> Self;
    /// Like [`Harness::new`], with segments rolled at about `segment_bytes`, so that retention
    /// has whole segments to drop.
    fn with_segment_bytes(segment_bytes: u64) -> Self;
    /// Opens the location; records appended through an earlier handle must be visible.
    fn open(&self) -> Self::Backend;
}

const RAW: Topic = Topic::UsageRaw;
const LEDGER: Topic = Topic::LedgerInput;
const LONG: Duration = Duration::from_secs(30);

fn rec(key: &str, value: impl Into<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    (key.as_bytes().to_vec(), value.into())
}

fn offsets(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.offset).collect()
}

fn values(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect()
}

/// Every record from `from` up to the current end offset, in as many reads as it takes.
pub async fn read_all(log: &dyn Log, topic: Topic, partition: PartitionId, from: u64) -> Vec<Record> {
    let end = log.end_offset(topic, partition).await.unwrap();
    let mut out: Vec<Record> = Vec::new();
    let mut next = from;
    while next < end {
        let batch = log.read(topic, partition, next, 1000).await.unwrap();
        let Some(last) = batch.last() else { break };
        next = last.offset + 1;
        out.extend(batch);
    }
    out
}

pub async fn appends_get_dense_offsets_and_read_back_in_order<H: Harness>() {
    let h = H::new();
    let log = h.open();
    assert_eq!(log.append(RAW, 0, vec![rec("a", "v0")]).await.unwrap(), 0);
    let batch = (1..=5).map(|i| rec("b", format!("v{i}"))).collect();
    assert_eq!(log.append(RAW, 0, batch).await.unwrap(), 1);
    assert_eq!(log.append(RAW, 0, vec![rec("c", "v6")]).await.unwrap(), 6);

    let all = log.read(RAW, 0, 0, 100).await.unwrap();
    assert_eq!(offsets(&all), (0..7).collect::<Vec<_>>());
    assert_eq!(values(&all), ["v0", "v1", "v2", "v3", "v4", "v5", "v6"]);
    assert_eq!(all[0], Record { offset: 0, key: b"a".to_vec(), value: b"v0".to_vec() });
    assert_eq!(all[3].key, b"b");
    assert_eq!(offsets(&log.read(RAW, 0, 2, 3).await.unwrap()), [2, 3, 4]);
    assert_eq!(offsets(&log.read(RAW, 0, 6, 10).await.unwrap()), [6]);
}

pub async fn partitions_and_topics_are_independent<H: Harness>() {
    let h = H::new();
    let log = h.open();
    let count = log.partition_count();
    assert!(count >= 2);
    assert_eq!(log.append(RAW, 0, vec![rec("a", "raw-0")]).await.unwrap(), 0);
    assert_eq!(log.append(RAW, 1, vec![rec("b", "raw-1")]).await.unwrap(), 0);
    assert_eq!(log.append(LEDGER, 0, vec![rec("a", "ledger-0")]).await.unwrap(), 0);
    assert_eq!(log.append(RAW, 0, vec![rec("a", "raw-0b")]).await.unwrap(), 1);

    assert_eq!(values(&read_all(&log, RAW, 0, 0).await), ["raw-0", "raw-0b"]);
    assert_eq!(values(&read_all(&log, RAW, 1, 0).await), ["raw-1"]);
    assert_eq!(values(&read_all(&log, LEDGER, 0, 0).await), ["ledger-0"]);
    assert_eq!(log.end_offset(LEDGER, 1).await.unwrap(), 0);

    let err = log.append(RAW, count, vec![rec("a", "x")]).await.unwrap_err();
    assert!(matches!(err, LogError::PartitionOutOfRange { .. }), "{err}");
    let err = log.read(LEDGER, count, 0, 1).await.unwrap_err();
    assert!(matches!(err, LogError::PartitionOutOfRange { .. }), "{err}");
}

pub async fn reads_past_the_end_are_empty_and_end_offset_tracks_appends<H: Harness>() {
    let h = H::new();
    let log = h.open();
    assert_eq!(log.end_offset(RAW, 0).await.unwrap(), 0);
    assert!(log.read(RAW, 0, 0, 10).await.unwrap().is_empty());
    log.append(RAW, 0, vec![rec("k", "0"), rec("k", "1"), rec("k", "2")]).await.unwrap();
    assert_eq!(log.end_offset(RAW, 0).await.unwrap(), 3);
    assert!(log.read(RAW, 0, 3, 10).await.unwrap().is_empty());
    assert!(log.read(RAW, 0, 1000, 10).await.unwrap().is_empty());
    assert!(log.read(RAW, 0, 0, 0).await.unwrap().is_empty());
    log.append(RAW, 0, vec![rec("k", "3"), rec("k", "4")]).await.unwrap();
    assert_eq!(log.end_offset(RAW, 0).await.unwrap(), 5);
    assert_eq!(values(&log.read(RAW, 0, 3, 10).await.unwrap()), ["3", "4"]);
}

pub async fn appended_records_survive_reopen<H: Harness>() {
    let h = H::new();
    let last = {
        let log = h.open();
        let last = log.partition_count() - 1;
        log.append(RAW, 0, vec![rec("a", "0"), rec("a", "1"), rec("a", "2")]).await.unwrap();
        log.append(LEDGER, last, vec![rec("b", "ledger")]).await.unwrap();
        last
    };
    let log = h.open();
    assert_eq!(values(&read_all(&log, RAW, 0, 0).await), ["0", "1", "2"]);
    assert_eq!(values(&read_all(&log, LEDGER, last, 0).await), ["ledger"]);
    assert_eq!(log.end_offset(RAW, 0).await.unwrap(), 3);
    assert_eq!(log.append(RAW, 0, vec![rec("a", "3")]).await.unwrap(), 3);
    drop(log);
    let log = h.open();
    assert_eq!(values(&read_all(&log, RAW, 0, 0).await), ["0", "1", "2", "3"]);
}

pub async fn concurrent_appends_are_each_stored_exactly_once<H: Harness>() {
    const TASKS: u32 = 16;
    const APPENDS: u32 = 50;
    let h = H::new();
    let log = Arc::new(h.open());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut offsets = Vec::new();
                for seq in 0..APPENDS {
                    let record = (task.to_be_bytes().to_vec(), seq.to_be_bytes().to_vec());
                    offsets.push(log.append(LEDGER, 1, vec![record]).await.unwrap());
                }
                offsets
            })
        })
        .collect();
    let mut acknowledged = HashMap::new();
    for (task, handle) in (0..TASKS).zip(tasks) {
        let offsets = handle.await.unwrap();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "task {task} appends out of order");
        for (seq, offset) in (0..APPENDS).zip(offsets) {
            assert!(acknowledged.insert(offset, (task, seq)).is_none(), "offset {offset} given twice");
        }
    }
    let all = read_all(log.as_ref(), LEDGER, 1, 0).await;
    // A read from the middle starts exactly there (the embedded backend seeks via its index).
    assert_eq!(offsets(&log.read(LEDGER, 1, 517, 3).await.unwrap()), [517, 518, 519]);
    assert_eq!(offsets(&all), (0..u64::from(TASKS * APPENDS)).collect::<Vec<_>>());
    for record in all {
        let (task, seq) = acknowledged[&record.offset];
        assert_eq!((record.key, record.value), (task.to_be_bytes().to_vec(), seq.to_be_bytes().to_vec()));
    }
}

pub async fn wait_for_wakes_when_a_record_arrives<H: Harness>() {
    let h = H::new();
    let log = Arc::new(h.open());
    // Nothing arrives: times out with the unchanged end offset.
    assert_eq!(log.wait_for(RAW, 0, 0, Duration::from_millis(50)).await.unwrap(), 0);

    let waiter = tokio::spawn({
        let log = Arc::clone(&log);
        async move { log.wait_for(RAW, 0, 0, LONG).await.unwrap() }
    });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "resolved before any record existed");
    // Appends elsewhere do not count.
    log.append(RAW, 1, vec![rec("k", "other partition")]).await.unwrap();
    log.append(LEDGER, 0, vec![rec("k", "other topic")]).await.unwrap();
    log.append(RAW, 0, vec![rec("k", "0")]).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 1);

    // Already there: resolves at once; still missing: times out with the current end.
    assert_eq!(log.wait_for(RAW, 0, 0, LONG).await.unwrap(), 1);
    assert_eq!(log.wait_for(RAW, 0, 1, Duration::from_millis(50)).await.unwrap(), 1);
}

pub async fn retention_drops_whole_old_segments<H: Harness>() {
    let h = H::with_segment_bytes(1024);
    let value = |i: u64| format!("{i:0>100}");
    let first = {
        let log = h.open();
        for i in 0..100 {
            log.append(RAW, 0, vec![rec("k", value(i))]).await.unwrap();
        }
        assert_eq!(log.retain_from(RAW, 0, 0).await.unwrap(), 0);
        let first = log.retain_from(RAW, 0, 50).await.unwrap();
        assert!(first > 0 && first <= 50, "first retained offset {first}");
        let kept = read_all(&log, RAW, 0, 0).await;
        assert_eq!(offsets(&kept), (first..100).collect::<Vec<_>>());
        assert_eq!(values(&kept), (first..100).map(value).collect::<Vec<_>>());
        assert_eq!(log.end_offset(RAW, 0).await.unwrap(), 100);
        // Retention never moves back.
        assert_eq!(log.retain_from(RAW, 0, 10).await.unwrap(), first);
        first
    };
    let log = h.open();
    assert_eq!(offsets(&read_all(&log, RAW, 0, 0).await), (first..100).collect::<Vec<_>>());
    assert_eq!(log.append(RAW, 0, vec![rec("k", value(100))]).await.unwrap(), 100);
    assert_eq!(values(&log.read(RAW, 0, 99, 10).await.unwrap()), [value(99), value(100)]);
}

pub async fn large_values_round_trip<H: Harness>() {
    let h = H::new();
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let check = |all: &[Record]| {
        assert_eq!(offsets(all), [0, 1, 2]);
        assert!(all[1].key == b"big" && all[1].value == big, "the 1 MiB value changed");
        assert_eq!(values(&[all[0].clone(), all[2].clone()]), ["before", "after"]);
    };
    {
        let log = h.open();
        assert_eq!(log.append(LEDGER, 0, vec![rec("k", "before")]).await.unwrap(), 0);
        let batch = vec![(b"big".to_vec(), big.clone()), rec("k", "after")];
        assert_eq!(log.append(LEDGER, 0, batch).await.unwrap(), 1);
        check(&read_all(&log, LEDGER, 0, 0).await);
        assert_eq!(log.read(LEDGER, 0, 1, 1).await.unwrap()[0].value.len(), 1 << 20);
    }
    check(&read_all(&h.open(), LEDGER, 0, 0).await);
}

/// Instantiates every conformance test for a [`Harness`]. A backend that does not delete
/// records (`Log::retain_from` may keep them) leaves out only the retention test, and says in
/// its docs why: `log_conformance_tests!(MyHarness, without_retention);`.
#[macro_export]
macro_rules! log_conformance_tests {
    ($harness:ty) => {
        $crate::log_conformance_tests!(@common $harness; retention_drops_whole_old_segments);
    };
    ($harness:ty, without_retention) => {
        $crate::log_conformance_tests!(@common $harness;);
    };
    (@common $harness:ty; $($extra:ident),*) => {
        $crate::log_conformance_tests!(@tests $harness;
            appends_get_dense_offsets_and_read_back_in_order,
            partitions_and_topics_are_independent,
            reads_past_the_end_are_empty_and_end_offset_tracks_appends,
            appended_records_survive_reopen,
            concurrent_appends_are_each_stored_exactly_once,
            wait_for_wakes_when_a_record_arrives,
            large_values_round_trip,
            $($extra),*
        );
    };
    (@tests $harness:ty; $($name:ident),* $(,)?) => {
        mod log_conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::conformance::$name::<$harness>().await;
                }
            )*
        }
    };
}
