//! The pipeline on Kafka (a real tansu broker started by the test, `eventlog::testing`), with the
//! roles as separate Kafka clients: every role connects its own producer and consumers, and the
//! raters and writers are separate members of their groups, each with its own instance id. No
//! ScyllaDB server can run here, so the roles share one embedded store inside this test process
//! (and their partition leases with it).
//!
//! - A writer killed mid-stream (its runtime dropped: its leases are not released): its leases
//!   expire, its partitions move to the other writer, and every accepted event is posted
//!   exactly once.
//! - A zombie writer (one that still runs after another took its partition) posts nothing.
//! - The broker stopped while events flow: ingest answers 503, never 204, for what it could not
//!   make durable, and recovers by itself once the broker is back.

mod common;

use common::{
    available, dec, eventually, must, now, request, send_usage, subscribed_customer, unique, unit_price, KEY,
};
use drawdown::{Backends, Role, RoleConfig, Server};
use eventlog::testing::Broker;
use eventlog::{partition_for, LogOptions, SharedLog, Topic};
use ledger_writer::fixtures::adjustment;
use ledger_writer::{PartitionProgress, Posted, WriterError, WriterOptions};
use schemas::ledger::{AdjustmentReason, LedgerInput, StoredEvent, Transaction};
use serde_json::{json, Value};
use std::time::Duration;
use store::typed::{get_doc, list_docs};
use store::{SharedStore, Table};
use tokio::runtime::Runtime;
use tokio::sync::watch;

const PARTITIONS: u32 = 4;
/// Short produce timeouts, so a dead broker shows within seconds.
const URL_OPTIONS: &str = "&produce_timeout_ms=3000";
/// Short leases, so a dead member's partitions move within seconds.
const LEASE_TIMEOUT: Duration = Duration::from_secs(3);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn options() -> LogOptions {
    LogOptions { partitions: PARTITIONS, ..LogOptions::default() }
}

/// One role on its own runtime (so it can be killed alone), with its own Kafka clients.
struct Node {
    runtime: Runtime,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    fn start(role: Role, store: &SharedStore, log_url: &str) -> Node {
        let runtime = runtime();
        let log = runtime.block_on(eventlog::connect(log_url, options())).expect("connect to Kafka");
        let backends = Backends { store: store.clone(), log };
        let live = runtime.block_on(live_backends(log_url));
        let config = RoleConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            log: log_url.into(),
            store: "embedded:shared".into(),
            api_key: Some(KEY.to_string()),
            partitions: PARTITIONS,
            lease: ownership::LeaseOptions { instance: unique("node-"), timeout: LEASE_TIMEOUT },
        };
        let server =
            runtime.block_on(Server::bind_role(role, [backends, live], &config)).expect("bind the role");
        let base = format!("http://{}", server.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let node = Node { runtime, base, stop: Some(stop), task: Some(task) };
        eventually(&format!("{} ready", role.name()), || {
            (request(&node.base, None, "GET", "/readyz", None).0 == 200).then_some(())
        });
        node
    }

    /// Stops as SIGTERM does: each stage finishes the batch in hand.
    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let stopped =
                self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await });
            stopped.expect("stopped in time").expect("no panic").expect("a clean stop");
        }
    }

    /// Kills the node: every task of its runtime is dropped wherever it is, mid-batch included;
    /// nothing is finished or flushed.
    fn kill(mut self) {
        self.stop.take();
        self.task.take();
        let Node { runtime, .. } = self;
        runtime.shutdown_background();
    }
}

/// The live environment's backends of the cluster on `log_url`: its own topics, and one store
/// shared by the cluster's nodes (opened once per cluster: an embedded store has one opener).
async fn live_backends(log_url: &str) -> Backends {
    static LIVE: std::sync::Mutex<Vec<(String, SharedStore, tempfile::TempDir)>> =
        std::sync::Mutex::new(Vec::new());
    let log_url =
        drawdown::backends::environment_url(log_url, api::auth::Environment::Live).expect("live URL");
    let store = {
        let mut live = LIVE.lock().expect("live stores");
        match live.iter().find(|(url, _, _)| *url == log_url) {
            Some((_, store, _)) => store.clone(),
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = embedded_store(&dir);
                live.push((log_url.clone(), store.clone(), dir));
                store
            }
        }
    };
    let log = eventlog::connect(&log_url, options()).await.expect("connect to Kafka");
    Backends { store, log }
}

fn embedded_store(dir: &tempfile::TempDir) -> SharedStore {
    store::open(&format!("embedded:{}", dir.path().join("store").display())).expect("store")
}

/// `count` events of `event_type` for `customer`, with fresh ids.
fn events(count: usize, event_type: &str) -> Vec<Value> {
    (0..count)
        .map(|_| json!({"id": unique("evt-"), "event_type": event_type, "occurred_at": now(), "data": {}}))
        .collect()
}

/// The stored events of `customer` (any event id).
fn stored_events(runtime: &Runtime, store: &SharedStore, customer: &str) -> usize {
    let all = runtime.block_on(list_docs::<StoredEvent>(store.as_ref(), Table::Events, "")).expect("events");
    all.iter().filter(|d| d.value.customer_id == customer).count()
}

fn transactions(runtime: &Runtime, store: &SharedStore, customer: &str) -> usize {
    let prefix = format!("{customer}/");
    runtime
        .block_on(list_docs::<Transaction>(store.as_ref(), Table::Transactions, &prefix))
        .expect("transactions")
        .len()
}

#[test]
fn a_writer_killed_mid_stream_hands_its_partitions_over_and_every_event_is_posted_once() {
    let broker = Broker::start();
    let url = format!("{}{URL_OPTIONS}", broker.url(&unique("kill-")));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = embedded_store(&dir);
    let api = Node::start(Role::Api, &store, &url);
    let ingest = Node::start(Role::Ingest, &store, &url);
    let raters = [Node::start(Role::Rater, &store, &url), Node::start(Role::Rater, &store, &url)];
    // The doomed writer is alone in its group at first: it owns every partition, and it posts
    // the top-ups below.
    let doomed = Node::start(Role::LedgerWriter, &store, &url);

    // Customers spread over the partitions, each with 100 USD and a 0.05 USD image price.
    let customers: Vec<String> = (0..8)
        .map(|_| {
            let (_, customer) = subscribed_customer(&api.base, json!([unit_price("image", "USD", "0.05")]));
            let topup = json!({"transaction_id": unique("top-"), "asset": "USD", "amount": 100, "reason": "external_topup"});
            must(&api.base, 201, "POST", &format!("/customers/{customer}/wallet/adjustments"), Some(topup));
            customer
        })
        .collect();
    let partitions: std::collections::BTreeSet<u32> =
        customers.iter().map(|c| partition_for(c.as_bytes(), PARTITIONS)).collect();
    assert!(partitions.len() > 1, "the customers use several partitions: {partitions:?}");

    // Each request re-sends one event of the customer's previous request: accepted, not charged.
    let mut last: Vec<Option<Value>> = vec![None; customers.len()];
    let mut send_round = || {
        for (customer, previous) in customers.iter().zip(last.iter_mut()) {
            let mut batch = events(5, "image");
            let first = batch[0].clone();
            batch.extend(previous.replace(first));
            send_usage(&ingest.base, &json!({"customer_id": customer, "events": batch}));
        }
    };
    for _ in 0..4 {
        send_round();
    }
    // The first rounds are being posted by the doomed writer ...
    eventually("the first rounds are being posted", || {
        customers.iter().any(|c| available(&api.base, c, "default:USD") < dec("100")).then_some(())
    });
    // ... a second writer joins, and the doomed one dies right away, whatever it had in hand.
    // Whether the rebalance had finished or not, it still owned partitions (all of them, or
    // its share), so every round after this one is posted only if they were handed over.
    let survivor = Node::start(Role::LedgerWriter, &store, &url);
    doomed.kill();
    for _ in 4..8 {
        send_round();
    }

    // 8 rounds of 5 distinct events at 0.05: 2 USD per customer, each event once.
    for customer in &customers {
        eventually(&format!("{customer} drawn down to 98"), || {
            (available(&api.base, customer, "default:USD") == dec("98")).then_some(())
        });
    }
    let check = runtime();
    for customer in &customers {
        assert_eq!(
            stored_events(&check, &store, customer),
            40,
            "{customer}: each accepted event stored once"
        );
        assert_eq!(transactions(&check, &store, customer), 41, "{customer}: 40 fees and the top-up");
    }
    // Every partition's writer progress reached the end of its log: the survivor took over every
    // partition the doomed writer had.
    let log = check.block_on(eventlog::connect(&url, options())).expect("connect");
    for partition in 0..PARTITIONS {
        let end = check.block_on(log.end_offset(Topic::LedgerInput, partition)).expect("end");
        let progress = check
            .block_on(get_doc::<PartitionProgress>(
                store.as_ref(),
                Table::Offsets,
                &PartitionProgress::key(partition),
            ))
            .expect("progress");
        let next = progress.map_or(0, |d| d.value.next_offset);
        // `>=`: tansu reports the high watermark as the start of the newest batch + 1, which can
        // be below the true end (`eventlog::kafka`, "tansu 0.6").
        assert!(next >= end, "partition {partition} fully posted: progress {next}, end {end}");
    }
    survivor.stop();
    for rater in raters {
        rater.stop();
    }
    ingest.stop();
    api.stop();
}

#[test]
fn a_zombie_writer_on_kafka_is_fenced_and_posts_nothing() {
    let broker = Broker::start();
    let url = format!("{}{URL_OPTIONS}", broker.url(&unique("zombie-")));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = embedded_store(&dir);
    let rt = runtime();
    let log: SharedLog = rt.block_on(eventlog::connect(&url, options())).expect("connect");
    let customer = "cust_zombie";
    let partition = partition_for(customer.as_bytes(), PARTITIONS);
    let append = |id: &str, amount: &str| {
        let input = LedgerInput::Adjustment(adjustment(
            customer,
            id,
            amount,
            AdjustmentReason::ExternalTopup,
            "2026-11-15T12:00:00Z",
        ));
        let value = serde_json::to_vec(&input).expect("encode");
        rt.block_on(log.append(Topic::LedgerInput, partition, vec![(customer.as_bytes().to_vec(), value)]))
            .expect("append")
    };
    let available = || {
        rt.block_on(get_doc::<ledger_writer::LedgerState>(store.as_ref(), Table::Ledger, customer))
            .expect("ledger")
            .map(|d| d.value)
    };

    // The first writer takes the partition and posts one top-up.
    let (_stop_first, first_stopped) = watch::channel(false);
    let first_posted = Posted::new(PARTITIONS);
    let first = rt.spawn(ledger_writer::writer::run_partition(
        store.clone(),
        log.clone(),
        partition,
        first_posted.clone(),
        WriterOptions::default(),
        first_stopped,
    ));
    let offset = append("topup_1", "10");
    assert!(
        rt.block_on(first_posted.wait(partition, offset, Duration::from_secs(60))),
        "the first writer posted"
    );

    // A second writer takes the partition over (a rebalance the first did not notice) ...
    let second_log: SharedLog = rt.block_on(eventlog::connect(&url, options())).expect("connect");
    let (_stop_second, second_stopped) = watch::channel(false);
    let second_posted = Posted::new(PARTITIONS);
    let second = rt.spawn(ledger_writer::writer::run_partition(
        store.clone(),
        second_log,
        partition,
        second_posted.clone(),
        WriterOptions::default(),
        second_stopped,
    ));
    eventually("the second writer took the partition", || {
        let progress = rt
            .block_on(get_doc::<PartitionProgress>(
                store.as_ref(),
                Table::Offsets,
                &PartitionProgress::key(partition),
            ))
            .expect("progress")?;
        (progress.value.epoch == 2).then_some(())
    });
    // ... and the next input reaches both: only the second posts it, the first is fenced.
    let offset = append("topup_2", "5");
    assert!(
        rt.block_on(second_posted.wait(partition, offset, Duration::from_secs(60))),
        "the second writer posted"
    );
    let fenced = rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), first).await });
    let fenced = fenced.expect("the zombie noticed within a minute").expect("no panic");
    assert!(matches!(fenced, Err(WriterError::Fenced { partition: p }) if p == partition), "{fenced:?}");

    let ledger = available().expect("ledger stored");
    assert_eq!(ledger.applied_offset, offset + 1);
    let docs = rt
        .block_on(list_docs::<Transaction>(store.as_ref(), Table::Transactions, &format!("{customer}/")))
        .expect("transactions");
    let ids: Vec<&str> = docs.iter().map(|d| d.value.id.as_str()).collect();
    assert_eq!(ids, ["topup_1", "topup_2"], "each top-up posted once, by one writer");
    assert!(!second.is_finished(), "the second writer keeps the partition");
    second.abort();
}

#[test]
fn ingest_answers_503_while_the_broker_is_stopped_and_recovers_by_itself() {
    let broker = Broker::start();
    // The leases live in the store, which the outage does not touch: the test is about appends
    // and reads.
    let url = format!("{}{URL_OPTIONS}", broker.url(&unique("outage-")));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = embedded_store(&dir);
    let api = Node::start(Role::Api, &store, &url);
    let rater = Node::start(Role::Rater, &store, &url);
    let writer = Node::start(Role::LedgerWriter, &store, &url);
    let (_, customer) = subscribed_customer(&api.base, json!([unit_price("image", "USD", "0.05")]));
    let topup =
        json!({"transaction_id": unique("top-"), "asset": "USD", "amount": 10, "reason": "external_topup"});
    must(&api.base, 201, "POST", &format!("/customers/{customer}/wallet/adjustments"), Some(topup));

    let post = |batch: &[Value]| {
        let body = json!({"customer_id": customer, "events": batch}).to_string();
        request(&api.base, Some(KEY), "POST", "/events", Some(body))
    };
    let before = events(4, "image");
    assert_eq!(post(&before).0, 204);

    broker.pause();
    // While the broker answers nothing, an append cannot be made durable: 503, never 204.
    let during = events(3, "image");
    for _ in 0..2 {
        let (status, body) = post(&during);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], 503, "a ProblemDetails: {body}");
    }
    broker.resume();

    // Nothing to restart: the same request succeeds once the broker is back. (It is the same
    // request a client retries; its events may already be in the log from the attempt that
    // timed out, and they are charged once all the same.)
    eventually("ingest recovered", || (post(&during).0 == 204).then_some(()));
    // Ingest may refuse new usage (429) while the stages catch up with the outage's backlog.
    send_usage(&api.base, &json!({"customer_id": customer, "events": events(2, "image")}));

    // 4 + 3 + 2 distinct events at 0.05, each once.
    eventually("every accepted event posted once", || {
        (available(&api.base, &customer, "default:USD") == dec("9.55")).then_some(())
    });
    let check = runtime();
    assert_eq!(stored_events(&check, &store, &customer), 9);
    writer.stop();
    rater.stop();
    api.stop();
}
