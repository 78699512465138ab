//! The rater workers against a real embedded log and store: what they forward to `ledger.input`,
//! and how they resume and see catalog changes.
#![allow(clippy::unwrap_used)] // test code: a failed step should panic with its location

use eventlog::{LogOptions, SharedLog, Topic};
use rater::fixtures::{event_with_id, usage_price, version};
use rater::{spawn_all, RaterError, RaterOptions, RaterProgress};
use schemas::catalog::{Product, ProductVersion};
use schemas::customer::{Customer, SubscribedProduct, Subscription, SubscriptionStatus};
use schemas::ids::{CustomerId, ProductId, SubscriptionId};
use schemas::ledger::{LedgerInput, RatedUsage, RawUsage};
use schemas::usage::UsageEvent;
use schemas::{Decimal, Timestamp};
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;
use store::typed::get_doc;
use store::{Op, SharedStore, Table};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PARTITIONS: u32 = 2;
const CUSTOMER: &str = "cust_1";

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// The customer's partition, in both topics.
fn partition() -> u32 {
    eventlog::partition_for(CUSTOMER.as_bytes(), PARTITIONS)
}

struct Pipeline {
    _dir: TempDir,
    store: SharedStore,
    log: SharedLog,
}

struct Running {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), RaterError>>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}

impl Pipeline {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(dir.path().join("store").to_str().unwrap()).unwrap();
        let log = eventlog::open(
            dir.path().join("log").to_str().unwrap(),
            LogOptions { partitions: PARTITIONS, ..LogOptions::default() },
        )
        .unwrap();
        Self { _dir: dir, store, log }
    }

    fn start(&self) -> Running {
        let (shutdown, watch) = watch::channel(false);
        let tasks = spawn_all(self.store.clone(), self.log.clone(), RaterOptions::default(), watch);
        assert_eq!(tasks.len(), PARTITIONS as usize, "one task per partition");
        Running { shutdown, tasks }
    }

    async fn put_product(&self, id: &str, versions: Vec<ProductVersion>) {
        let product = Product {
            id: ProductId::from_raw(id),
            code: format!("code_{id}"),
            name: format!("product {id}"),
            created_at: at("2026-01-01T00:00:00Z"),
            versions,
            default_version: Some(1),
            deleted_at: None,
        };
        self.store.write(vec![Op::put_doc(Table::Products, id, &product).unwrap()]).await.unwrap();
    }

    /// Stores the customer with one subscription per `(status, product id, version)`.
    async fn put_customer(&self, subscriptions: &[(SubscriptionStatus, &str, u32)]) {
        let customer = Customer {
            id: CustomerId::from_raw(CUSTOMER),
            external_id: Some("ext-1".into()),
            name: "Ada".into(),
            email: None,
            metadata: None,
            subscriptions: subscriptions
                .iter()
                .enumerate()
                .map(|(i, (status, product, version))| Subscription {
                    id: SubscriptionId::from_raw(format!("sub_{i}")),
                    started_at: at("2026-01-01T00:00:00Z"),
                    renews_at: None,
                    anchored_at: None,
                    period: None,
                    status: *status,
                    products: vec![SubscribedProduct {
                        id: ProductId::from_raw(*product),
                        code: format!("code_{product}"),
                        version: *version,
                    }],
                })
                .collect(),
            external_accounts: None,
            created_at: at("2026-01-01T00:00:00Z"),
            accounts: Vec::new(),
            test_clock: None,
        };
        let op = Op::put_doc(Table::Customers, CUSTOMER, &customer).unwrap().unique("external_id", "ext-1");
        self.store.write(vec![op]).await.unwrap();
    }

    async fn append_raw(&self, customer_id: &str, events: Vec<UsageEvent>) {
        let raw =
            RawUsage { customer_id: customer_id.into(), accepted_at: at("2026-11-15T12:00:01Z"), events };
        self.append_bytes(serde_json::to_vec(&raw).unwrap()).await;
    }

    async fn append_bytes(&self, value: Vec<u8>) {
        let record = (CUSTOMER.as_bytes().to_vec(), value);
        self.log.append(Topic::UsageRaw, partition(), vec![record]).await.unwrap();
    }

    /// Waits (with a generous safety limit) until `ledger.input` holds `n` records in the
    /// customer's partition, then returns every record there.
    async fn forwarded(&self, n: u64) -> Vec<RatedUsage> {
        let p = partition();
        let wait = async {
            while self.log.end_offset(Topic::LedgerInput, p).await.unwrap() < n {
                self.log.wait_for(Topic::LedgerInput, p, n - 1, Duration::from_millis(200)).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait).await.expect("the rater forwarded the records");
        self.ledger_inputs().await
    }

    async fn ledger_inputs(&self) -> Vec<RatedUsage> {
        let records = self.log.read(Topic::LedgerInput, partition(), 0, 10_000).await.unwrap();
        records
            .into_iter()
            .map(|r| {
                assert_eq!(r.key, CUSTOMER.as_bytes(), "keyed by the customer");
                match serde_json::from_slice(&r.value).unwrap() {
                    LedgerInput::Usage(usage) => usage,
                    other => panic!("expected usage, got {other:?}"),
                }
            })
            .collect()
    }

    async fn stored_progress(&self) -> u64 {
        let key = RaterProgress::key(partition());
        get_doc::<RaterProgress>(self.store.as_ref(), Table::Offsets, &key)
            .await
            .unwrap()
            .unwrap()
            .value
            .next_offset
    }
}

fn chat_price() -> Value {
    usage_price(
        "chat",
        "volume",
        json!({}),
        json!([{"asset": "USD", "values": [{"volume_rate": 1.25, "package_size": 1000000}]}]),
    )
}

fn chat(id: &str, tokens: u64) -> UsageEvent {
    event_with_id(id, "chat", json!({"volume": tokens}))
}

#[tokio::test]
async fn an_event_is_rated_and_forwarded_to_the_customers_partition() {
    let pipeline = Pipeline::new();
    pipeline.put_product("prod_1", vec![version(1, json!([chat_price()]))]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 1)]).await;
    let running = pipeline.start();
    pipeline.append_raw(CUSTOMER, vec![chat("evt_1", 2353)]).await;

    let inputs = pipeline.forwarded(1).await;
    running.stop().await;
    let usage = &inputs[0];
    assert_eq!(usage.customer_id, CUSTOMER);
    assert_eq!(usage.customer_external_id.as_deref(), Some("ext-1"));
    assert_eq!(usage.accepted_at, at("2026-11-15T12:00:01Z"));
    let rated = &usage.events[0];
    assert_eq!(rated.event.id, "evt_1");
    assert_eq!(rated.fees.len(), 1);
    assert_eq!(rated.fees[0].fee.amount, d("0.00294125"));
    assert_eq!(rated.fees[0].fee.currency, "USD");
    assert_eq!(rated.fees[0].product_id, "prod_1");
    assert_eq!(rated.fees[0].id, rater::fixtures::fee_id("evt_1", "price_1_0"));
    assert!(!rated.needs_state, "a flat price reads no customer state");
    assert!(rated.products.is_empty(), "the pinned list travels only with events the writer rates again");
}

#[tokio::test]
async fn needs_state_is_set_only_for_tiered_or_multi_asset_prices() {
    let pipeline = Pipeline::new();
    let tiers = json!([{"asset": "USD", "values": [{"up_to": 100, "volume_rate": 1}, {"volume_rate": 0.5}]}]);
    let prices = json!([
        chat_price(),
        usage_price("image", "volume", json!({"pricing_model": "tiered"}), tiers.clone()),
        usage_price("audio", "volume", json!({"pricing_model": "bulk"}), tiers),
        usage_price(
            "video",
            "volume",
            json!({}),
            json!([
                {"asset": "CREDIT", "values": [{"volume_rate": 10}]},
                {"asset": "USD", "values": [{"volume_rate": 0.12}]}
            ])
        ),
    ]);
    pipeline.put_product("prod_1", vec![version(1, prices)]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 1)]).await;
    let running = pipeline.start();
    let events = ["chat", "image", "audio", "video"]
        .iter()
        .map(|kind| event_with_id(&format!("evt_{kind}"), kind, json!({"volume": 5})))
        .collect();
    pipeline.append_raw(CUSTOMER, events).await;

    let inputs = pipeline.forwarded(1).await;
    running.stop().await;
    let flags: Vec<_> =
        inputs[0].events.iter().map(|e| (e.event.event_type.as_str(), e.needs_state)).collect();
    assert_eq!(flags, [("chat", false), ("image", true), ("audio", false), ("video", true)]);
    // The events the writer rates again carry the pinned versions; the others travel without.
    let pinned: Vec<usize> = inputs[0].events.iter().map(|e| e.products.len()).collect();
    assert_eq!(pinned, [0, 1, 0, 1]);
    // Without state, each still carries the fee it would have with zero counters and no balance.
    let video = &inputs[0].events[3];
    assert_eq!((video.fees[0].fee.currency.as_str(), video.fees[0].fee.amount), ("CREDIT", d("50")));
}

#[tokio::test]
async fn an_inactive_subscription_yields_no_fees() {
    let pipeline = Pipeline::new();
    pipeline.put_product("prod_1", vec![version(1, json!([chat_price()]))]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Inactive, "prod_1", 1)]).await;
    let running = pipeline.start();
    pipeline.append_raw(CUSTOMER, vec![chat("evt_1", 2353)]).await;

    let inputs = pipeline.forwarded(1).await;
    running.stop().await;
    let rated = &inputs[0].events[0];
    assert!(rated.fees.is_empty());
    assert!(rated.products.is_empty());
    assert!(rated.warnings.is_empty());
    assert!(!rated.needs_state);
}

#[tokio::test]
async fn progress_resumes_after_a_restart_without_forwarding_twice() {
    let pipeline = Pipeline::new();
    pipeline.put_product("prod_1", vec![version(1, json!([chat_price()]))]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 1)]).await;
    let running = pipeline.start();
    pipeline.append_raw(CUSTOMER, vec![chat("evt_1", 1)]).await;
    pipeline.append_raw(CUSTOMER, vec![chat("evt_2", 2), chat("evt_3", 3)]).await;
    pipeline.forwarded(2).await;
    running.stop().await;
    assert_eq!(pipeline.stored_progress().await, 2);

    pipeline.append_raw(CUSTOMER, vec![chat("evt_4", 4)]).await;
    let running = pipeline.start();
    pipeline.forwarded(3).await;
    running.stop().await;

    let inputs = pipeline.ledger_inputs().await;
    let ids: Vec<Vec<&str>> =
        inputs.iter().map(|u| u.events.iter().map(|e| e.event.id.as_str()).collect()).collect();
    assert_eq!(ids, [vec!["evt_1"], vec!["evt_2", "evt_3"], vec!["evt_4"]], "one input per record, in order");
    assert_eq!(pipeline.stored_progress().await, 3);
}

#[tokio::test]
async fn a_subscription_stored_before_an_event_is_read_rates_that_event_without_any_notification() {
    let pipeline = Pipeline::new();
    pipeline.put_product("prod_1", vec![version(1, json!([chat_price()]))]).await;
    pipeline.put_customer(&[]).await;
    let running = pipeline.start();
    pipeline.append_raw(CUSTOMER, vec![chat("evt_1", 2353)]).await;
    assert!(pipeline.forwarded(1).await[0].events[0].fees.is_empty(), "not subscribed yet");

    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 1)]).await;
    pipeline.append_raw(CUSTOMER, vec![chat("evt_2", 2353)]).await;
    let inputs = pipeline.forwarded(2).await;
    running.stop().await;
    assert_eq!(inputs[1].events[0].fees.len(), 1);
    assert_eq!(inputs[1].events[0].fees[0].fee.amount, d("0.00294125"));
}

#[tokio::test]
async fn a_pinned_version_missing_from_the_cached_product_is_reloaded() {
    let pipeline = Pipeline::new();
    let v1 = version(1, json!([chat_price()]));
    pipeline.put_product("prod_1", vec![v1.clone()]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 1)]).await;
    let running = pipeline.start();
    pipeline.append_raw(CUSTOMER, vec![chat("evt_1", 1000000)]).await;
    assert_eq!(pipeline.forwarded(1).await[0].events[0].fees[0].fee.amount, d("1.25"));

    // Version 2 doubles the rate; the customer re-pins to it (nothing is announced).
    let v2_price = usage_price(
        "chat",
        "volume",
        json!({}),
        json!([{"asset": "USD", "values": [{"volume_rate": 2.5, "package_size": 1000000}]}]),
    );
    pipeline.put_product("prod_1", vec![v1, version(2, json!([v2_price]))]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 2)]).await;
    pipeline.append_raw(CUSTOMER, vec![chat("evt_2", 1000000)]).await;
    let inputs = pipeline.forwarded(2).await;
    running.stop().await;
    let rated = &inputs[1].events[0];
    assert_eq!(rated.fees[0].fee.amount, d("2.5"));
    assert_eq!(rated.fees[0].product_version, 2);
}

#[tokio::test]
async fn an_undecodable_record_or_an_unknown_customer_is_skipped() {
    let pipeline = Pipeline::new();
    pipeline.put_product("prod_1", vec![version(1, json!([chat_price()]))]).await;
    pipeline.put_customer(&[(SubscriptionStatus::Active, "prod_1", 1)]).await;
    let running = pipeline.start();
    pipeline.append_bytes(b"not json".to_vec()).await;
    pipeline.append_raw("cust_ghost", vec![chat("evt_ghost", 1)]).await;
    pipeline.append_raw(CUSTOMER, vec![chat("evt_1", 1)]).await;

    let inputs = pipeline.forwarded(1).await;
    running.stop().await;
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].events[0].event.id, "evt_1");
    assert_eq!(pipeline.stored_progress().await, 3, "skipped records are passed, not retried");
}
