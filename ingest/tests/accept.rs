//! `Ingest` against a real embedded log and store: what lands in `usage.raw`, what is refused.
#![allow(clippy::unwrap_used)] // test code: a failed step should panic with its location

use chrono::{Duration, Utc};
use eventlog::{LogOptions, SharedLog, Topic};
use ingest::{Ingest, IngestError, IngestOptions};
use schemas::customer::Customer;
use schemas::ids::CustomerId;
use schemas::ledger::{RawUsage, UsageRequest};
use schemas::usage::UsageEvent;
use serde_json::json;
use store::{Op, SharedStore, Table};
use telemetry::METRICS;
use tempfile::TempDir;

const PARTITIONS: u32 = 4;

struct Harness {
    _dir: TempDir,
    store: SharedStore,
    log: SharedLog,
    ingest: Ingest,
}

async fn harness_with(options: IngestOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let log = eventlog::open(
        dir.path().join("log").to_str().unwrap(),
        LogOptions { partitions: PARTITIONS, ..LogOptions::default() },
    )
    .unwrap();
    let ingest = Ingest::new(store.clone(), log.clone(), options);
    Harness { _dir: dir, store, log, ingest }
}

async fn harness() -> Harness {
    harness_with(IngestOptions::default()).await
}

impl Harness {
    async fn seed_customer(&self, id: &str, external_id: Option<&str>) {
        let customer = Customer {
            id: CustomerId::from_raw(id),
            external_id: external_id.map(str::to_string),
            name: format!("customer {id}"),
            email: None,
            metadata: None,
            subscriptions: Vec::new(),
            external_accounts: None,
            created_at: Utc::now(),
            accounts: Vec::new(),
            test_clock: None,
        };
        let mut op = Op::put_doc(Table::Customers, id, &customer).unwrap();
        if let Some(ext) = external_id {
            op = op.unique("external_id", ext);
        }
        self.store.write(vec![op]).await.unwrap();
    }

    async fn send(&self, request: UsageRequest) -> Result<(), IngestError> {
        let admission = self.ingest.admit(1024).unwrap();
        self.ingest.accept(request, admission).await
    }

    async fn end_offsets(&self) -> Vec<u64> {
        let mut ends = Vec::new();
        for p in 0..PARTITIONS {
            ends.push(self.log.end_offset(Topic::UsageRaw, p).await.unwrap());
        }
        ends
    }

    /// Every record of `usage.raw`, with its partition.
    async fn records(&self) -> Vec<(u32, Vec<u8>, RawUsage)> {
        let mut out = Vec::new();
        for p in 0..PARTITIONS {
            for r in self.log.read(Topic::UsageRaw, p, 0, 1000).await.unwrap() {
                out.push((p, r.key, serde_json::from_slice(&r.value).unwrap()));
            }
        }
        out
    }
}

fn event(id: &str, occurred_at: chrono::DateTime<Utc>) -> UsageEvent {
    serde_json::from_value(json!({
        "id": id, "event_type": "chat", "occurred_at": occurred_at, "data": {"tokens": 2353}
    }))
    .unwrap()
}

fn request(customer_id: Option<&str>, external_id: Option<&str>, ids: &[&str]) -> UsageRequest {
    let now = Utc::now();
    UsageRequest {
        customer_id: customer_id.map(str::to_string),
        customer_external_id: external_id.map(str::to_string),
        events: ids.iter().map(|id| event(id, now - Duration::minutes(1))).collect(),
    }
}

fn invalid_fields(result: Result<(), IngestError>) -> Vec<String> {
    match result {
        Err(IngestError::Invalid(errors)) => errors.fields().map(str::to_string).collect(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_request_lands_as_one_record_in_the_customers_partition() {
    let h = harness().await;
    h.seed_customer("cust_1", None).await;
    let req = request(Some("cust_1"), None, &["evt_1", "evt_2", "evt_3"]);
    h.send(req.clone()).await.unwrap();

    let records = h.records().await;
    assert_eq!(records.len(), 1);
    let (partition, key, raw) = &records[0];
    assert_eq!(*partition, eventlog::partition_for(b"cust_1", PARTITIONS));
    assert_eq!(key.as_slice(), b"cust_1");
    assert_eq!(raw.customer_id, "cust_1");
    assert_eq!(raw.events, req.events);
}

#[tokio::test]
async fn an_event_outside_the_grace_window_rejects_the_whole_request() {
    let h = harness().await;
    h.seed_customer("cust_1", None).await;
    let mut req = request(Some("cust_1"), None, &["evt_1", "evt_2"]);
    req.events[1].occurred_at = Utc::now() - Duration::days(36);
    let rejected_before = METRICS.events_rejected_total.get();

    assert_eq!(invalid_fields(h.send(req).await), ["events[1].occurred_at"]);
    assert_eq!(h.end_offsets().await, vec![0; PARTITIONS as usize], "nothing was appended");
    assert!(METRICS.events_rejected_total.get() >= rejected_before + 2);
}

#[tokio::test]
async fn an_event_too_far_in_the_future_is_rejected() {
    let h = harness().await;
    h.seed_customer("cust_1", None).await;
    let mut req = request(Some("cust_1"), None, &["evt_1"]);
    req.events[0].occurred_at = Utc::now() + Duration::minutes(10);
    assert_eq!(invalid_fields(h.send(req).await), ["events[0].occurred_at"]);
    assert_eq!(h.end_offsets().await, vec![0; PARTITIONS as usize]);
}

#[tokio::test]
async fn an_unknown_customer_id_is_a_422_on_customer_id() {
    let h = harness().await;
    assert_eq!(invalid_fields(h.send(request(Some("cust_nobody"), None, &["evt_1"])).await), ["customer_id"]);
    assert_eq!(h.end_offsets().await, vec![0; PARTITIONS as usize]);
}

#[tokio::test]
async fn an_unknown_external_id_is_a_422_on_customer_external_id() {
    let h = harness().await;
    h.seed_customer("cust_1", Some("ext-1")).await;
    let result = h.send(request(None, Some("ext-unknown"), &["evt_1"])).await;
    assert_eq!(invalid_fields(result), ["customer_external_id"]);
}

#[tokio::test]
async fn ids_naming_different_customers_are_a_422_on_customer_external_id() {
    let h = harness().await;
    h.seed_customer("cust_1", Some("ext-1")).await;
    h.seed_customer("cust_2", Some("ext-2")).await;
    let result = h.send(request(Some("cust_1"), Some("ext-2"), &["evt_1"])).await;
    assert_eq!(invalid_fields(result), ["customer_external_id"]);
    assert_eq!(h.end_offsets().await, vec![0; PARTITIONS as usize]);
}

#[tokio::test]
async fn a_request_naming_no_customer_is_a_422_on_customer_id() {
    let h = harness().await;
    assert_eq!(invalid_fields(h.send(request(None, None, &["evt_1"])).await), ["customer_id"]);
}

#[tokio::test]
async fn an_external_id_resolves_to_its_customer() {
    let h = harness().await;
    h.seed_customer("cust_1", Some("ext-1")).await;
    h.seed_customer("cust_2", Some("ext-2")).await;
    h.send(request(None, Some("ext-2"), &["evt_1"])).await.unwrap();
    h.send(request(Some("cust_1"), Some("ext-1"), &["evt_2"])).await.unwrap();

    let mut records = h.records().await;
    records.sort_by(|a, b| a.2.customer_id.cmp(&b.2.customer_id));
    let owners: Vec<_> =
        records.iter().map(|(_, _, r)| (r.customer_id.as_str(), r.events[0].id.as_str())).collect();
    assert_eq!(owners, [("cust_1", "evt_2"), ("cust_2", "evt_1")]);
    assert_eq!(records[1].0, eventlog::partition_for(b"cust_2", PARTITIONS));
}

#[tokio::test]
async fn a_duplicate_event_is_dropped_while_new_ids_in_the_request_are_appended() {
    let h = harness().await;
    h.seed_customer("cust_1", None).await;
    h.send(request(Some("cust_1"), None, &["evt_1", "evt_2"])).await.unwrap();
    let after_first = h.end_offsets().await;
    let duplicates_before = METRICS.events_duplicate_total.get();

    // A pure retry: answered Ok, nothing appended.
    h.send(request(Some("cust_1"), None, &["evt_1", "evt_2"])).await.unwrap();
    assert_eq!(h.end_offsets().await, after_first);
    assert!(METRICS.events_duplicate_total.get() >= duplicates_before + 2);

    // A retry with one new event: only the new one is appended.
    h.send(request(Some("cust_1"), None, &["evt_2", "evt_3"])).await.unwrap();
    let records = h.records().await;
    assert_eq!(records.len(), 2);
    let ids: Vec<_> = records[1].2.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["evt_3"]);
}

#[tokio::test]
async fn the_same_event_id_of_another_customer_is_not_a_duplicate() {
    let h = harness().await;
    h.seed_customer("cust_1", None).await;
    h.seed_customer("cust_2", None).await;
    h.send(request(Some("cust_1"), None, &["evt_1"])).await.unwrap();
    h.send(request(Some("cust_2"), None, &["evt_1"])).await.unwrap();
    assert_eq!(h.records().await.len(), 2);
}

#[tokio::test]
async fn a_duplicate_with_another_body_is_dropped_and_counted_as_a_conflict() {
    let h = harness().await;
    h.seed_customer("cust_1", None).await;
    h.send(request(Some("cust_1"), None, &["evt_1"])).await.unwrap();
    let conflicts_before = METRICS.events_duplicate_conflict_total.get();

    let mut changed = request(Some("cust_1"), None, &["evt_1"]);
    changed.events[0].event_type = "image".into();
    h.send(changed).await.unwrap();
    assert!(METRICS.events_duplicate_conflict_total.get() > conflicts_before);
    let records = h.records().await;
    assert_eq!(records.len(), 1, "the first body wins");
    assert_eq!(records[0].2.events[0].event_type, "chat");
}

#[tokio::test]
async fn admission_refuses_while_the_budget_is_taken_and_admits_once_the_permit_drops() {
    let h = harness_with(IngestOptions { max_inflight_bytes: 1000, ..IngestOptions::default() }).await;
    let overloads_before = METRICS.ingest_overload_total.get();

    let first = h.ingest.admit(700).unwrap();
    match h.ingest.admit(400) {
        Err(IngestError::Overloaded { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
        other => panic!("expected a 429, got {:?}", other.err()),
    }
    assert!(METRICS.ingest_overload_total.get() > overloads_before);
    let small = h.ingest.admit(300).unwrap();
    drop(first);
    let _again = h.ingest.admit(400).unwrap();
    drop(small);

    // A request larger than the whole budget is admitted alone.
    let h = harness_with(IngestOptions { max_inflight_bytes: 1000, ..IngestOptions::default() }).await;
    let huge = h.ingest.admit(5000).unwrap();
    assert!(h.ingest.admit(1).is_err());
    drop(huge);
    assert!(h.ingest.admit(1).is_ok());
}

#[tokio::test]
async fn an_accepted_request_releases_its_admission() {
    let h = harness_with(IngestOptions { max_inflight_bytes: 1000, ..IngestOptions::default() }).await;
    h.seed_customer("cust_1", None).await;
    let admission = h.ingest.admit(1000).unwrap();
    assert!(h.ingest.admit(1).is_err());
    h.ingest.accept(request(Some("cust_1"), None, &["evt_1"]), admission).await.unwrap();
    assert!(h.ingest.admit(1000).is_ok());
}

/// Sends `customer` new events until ingest refuses them, within `within`.
async fn send_until_refused(h: &Harness, customer: &str, within: std::time::Duration) -> IngestError {
    let deadline = std::time::Instant::now() + within;
    for i in 0.. {
        assert!(std::time::Instant::now() < deadline, "never refused");
        let id = format!("evt_{customer}_{i}");
        if let Err(err) = h.send(request(Some(customer), None, &[id.as_str()])).await {
            return err;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    unreachable!()
}

#[tokio::test]
async fn a_partition_whose_stage_falls_behind_takes_no_new_events_until_it_catches_up() {
    use ingest::backlog::Downstream;
    let rater_key = |p: u32| format!("rater/{p}");
    let h = harness_with(IngestOptions {
        downstream: vec![Downstream { topic: Topic::UsageRaw, progress_key: rater_key }],
        max_backlog_age: std::time::Duration::from_millis(40),
        ..IngestOptions::default()
    })
    .await;
    let behind = "cust_behind";
    let partition = eventlog::partition_for(behind.as_bytes(), PARTITIONS);
    let other = (0..)
        .map(|i| format!("cust_other_{i}"))
        .find(|c| eventlog::partition_for(c.as_bytes(), PARTITIONS) != partition)
        .unwrap();
    h.seed_customer(behind, None).await;
    h.seed_customer(&other, None).await;
    h.send(request(Some(behind), None, &["evt_first"])).await.unwrap();

    // Nothing consumes usage.raw: once the backlog is older than 40 ms, new events are refused.
    let overloads_before = METRICS.ingest_overload_total.get();
    match send_until_refused(&h, behind, std::time::Duration::from_secs(10)).await {
        IngestError::Overloaded { retry_after_secs } => assert_eq!(retry_after_secs, 1),
        other => panic!("expected a 429, got {other:?}"),
    }
    assert!(METRICS.ingest_overload_total.get() > overloads_before);
    let accepted = h.end_offsets().await[partition as usize];
    let refused = h.send(request(Some(behind), None, &["evt_refused"])).await;
    assert!(matches!(refused, Err(IngestError::Overloaded { .. })), "still refused");

    // A retry of an accepted event is still acknowledged (it is durable), and appends nothing.
    h.send(request(Some(behind), None, &["evt_first"])).await.unwrap();
    // Another partition, with no backlog, takes events.
    h.send(request(Some(&other), None, &["evt_other"])).await.unwrap();
    assert_eq!(h.end_offsets().await[partition as usize], accepted, "a refused request appends nothing");

    // After a quiet spell the first request is not judged by the measure taken before it...
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    h.send(request(Some(behind), None, &["evt_after_quiet"])).await.unwrap();
    assert_eq!(h.end_offsets().await[partition as usize], accepted + 1);
    // ... but the stage is still behind, and the next measures refuse again.
    match send_until_refused(&h, behind, std::time::Duration::from_secs(10)).await {
        IngestError::Overloaded { .. } => {}
        other => panic!("expected a 429, got {other:?}"),
    }

    // The stage catches up (its progress record reaches the end): the partition takes events
    // again, while requests keep coming.
    let end = h.end_offsets().await[partition as usize];
    let caught_up = json!({ "next_offset": end });
    h.store
        .write(vec![Op::put_doc(Table::Offsets, rater_key(partition), &caught_up).unwrap()])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Err(err) = h.send(request(Some(behind), None, &["evt_caught_up"])).await {
        assert!(matches!(err, IngestError::Overloaded { .. }), "{err:?}");
        assert!(std::time::Instant::now() < deadline, "still refused after the stage caught up");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(h.end_offsets().await[partition as usize], end + 1);
}
