//! The distributed roles as real processes on a real broker (tansu) and a shared store served by
//! `drawdown store`, and real faults: a rater and a writer SIGKILLed for good, a writer paused
//! with SIGSTOP past its lease and then resumed (a zombie). The survivors must take every
//! partition over within the lease timeout + 10 s, and every acknowledged event must be posted
//! exactly once.

mod common;

use common::process::{spawn, Process};
use common::{dec, eventually, request, send_until_acknowledged, subscribed_customer, unit_price, KEY};
use schemas::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;
const LEASE_TIMEOUT: Duration = Duration::from_secs(3);
const CUSTOMERS: usize = 6;
const EVENTS_PER_REQUEST: usize = 10;

/// tansu, `drawdown store`, and an `api` process over them; raters and writers are added.
struct Cluster {
    _broker: eventlog::testing::Broker,
    store: Process,
    api: Process,
    role_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let broker = eventlog::testing::Broker::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            spawn(&["store".to_string(), "--data-dir".to_string(), dir.path().display().to_string()], None);
        let role_args = vec![
            "--log".to_string(),
            format!("{}&produce_timeout_ms=3000", broker.url(&common::unique("roles-"))),
            "--store".to_string(),
            store.base.clone(),
            "--partitions".to_string(),
            PARTITIONS.to_string(),
            "--lease-timeout-ms".to_string(),
            LEASE_TIMEOUT.as_millis().to_string(),
        ];
        let mut args = vec!["api".to_string()];
        args.extend(role_args.iter().cloned());
        let api = spawn(&args, Some(KEY));
        Cluster { _broker: broker, store, api, role_args, _dir: dir }
    }

    /// A `rater` or `ledger-writer` process with its own instance id, ready.
    fn role(&self, role: &str, instance: &str) -> Process {
        let mut args = vec![role.to_string(), "--instance-id".to_string(), instance.to_string()];
        args.extend(self.role_args.iter().cloned());
        let process = spawn(&args, None);
        eventually(&format!("{instance} ready"), || {
            (request(&process.base, None, "GET", "/readyz", None).0 == 200).then_some(())
        });
        process
    }
}

/// Waits until `members` own every partition of `stage` between them, each some and none twice.
fn split(stage: &str, members: &[&Process]) {
    eventually(&format!("the {stage} share the partitions"), || {
        let owned: Vec<BTreeSet<u32>> = members.iter().map(|m| m.owned(stage, PARTITIONS)).collect();
        let all: BTreeSet<u32> = owned.iter().flatten().copied().collect();
        let total: usize = owned.iter().map(BTreeSet::len).sum();
        (owned.iter().all(|o| !o.is_empty()) && total == PARTITIONS as usize && all.len() == total)
            .then_some(())
    })
}

/// How long until `survivor` owns every partition of `stage`; at most the lease timeout + 10 s.
fn takes_everything_over(stage: &str, survivor: &Process, since: Instant) -> Duration {
    let bound = LEASE_TIMEOUT + Duration::from_secs(10);
    loop {
        let elapsed = since.elapsed();
        if survivor.owned(stage, PARTITIONS).len() == PARTITIONS as usize {
            return elapsed;
        }
        assert!(elapsed <= bound, "the surviving {stage} did not own every partition within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// At least [`CUSTOMERS`] customers, some in every partition, each topped up with 100 USD,
/// paying 0.01 per `call` event.
fn customers(api: &str) -> Vec<String> {
    let mut customers = Vec::new();
    let mut covered = BTreeSet::new();
    while customers.len() < CUSTOMERS || covered.len() < PARTITIONS as usize {
        let (_, customer) = subscribed_customer(api, json!([unit_price("call", "USD", "0.01")]));
        let topup = json!({"transaction_id": common::unique("top-"), "asset": "USD", "amount": 100,
                           "reason": "external_topup"});
        common::must(api, 201, "POST", &format!("/customers/{customer}/wallet/adjustments"), Some(topup));
        covered.insert(eventlog::partition_for(customer.as_bytes(), PARTITIONS));
        customers.push(customer);
    }
    customers
}

/// One client thread per customer sending 10-event requests until stopped, each until
/// acknowledged (and every fifth one twice: a retry changes nothing).
struct Load {
    done: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<usize>>,
}

impl Load {
    fn start(api: &str, customers: &[String]) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let base = Arc::new(RwLock::new(api.to_string()));
        let clients = customers
            .iter()
            .map(|customer| {
                let (base, customer, done) = (base.clone(), customer.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut sent = 0;
                    while !done.load(Ordering::Relaxed) {
                        let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
                            .map(|e| {
                                json!({"id": format!("{customer}-{sent}-{e}"), "event_type": "call",
                                            "occurred_at": common::now()})
                            })
                            .collect();
                        let body = json!({"customer_id": customer, "events": events});
                        send_until_acknowledged(&base, "POST", "/events", &body);
                        if sent % 5 == 0 {
                            send_until_acknowledged(&base, "POST", "/events", &body);
                        }
                        sent += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    sent
                })
            })
            .collect();
        Load { done, clients }
    }

    /// Stops the clients; requests acknowledged per customer.
    fn stop(mut self) -> Vec<usize> {
        self.done.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.clients).into_iter().map(|c| c.join().expect("client thread")).collect()
    }
}

impl Drop for Load {
    /// A test that fails midway stops its clients too.
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Each test runs a broker, a store, an api and three or four roles on two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every acknowledged event posted once: the customer's event count and balance are exact.
fn every_event_posted_once(api: &str, customers: &[String], requests: &[usize]) {
    for (customer, &n) in customers.iter().zip(requests) {
        let events = n * EVENTS_PER_REQUEST;
        eventually(&format!("all {events} events of {customer} posted"), || {
            let path = format!("/events?customer_id={customer}&limit=1");
            let (status, listed) = request(api, Some(KEY), "GET", &path, None);
            (status == 200 && listed["total_count"] == events).then_some(())
        });
        let expected = dec("100") - dec("0.01") * Decimal::from(events);
        assert_eq!(common::available(api, customer, "default:USD"), expected, "{customer}");
    }
}

#[test]
fn a_killed_rater_and_a_killed_writer_are_replaced_by_the_survivors_and_nothing_is_lost_or_posted_twice() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cluster = Cluster::start();
    let (rater_a, rater_b) = (cluster.role("rater", "rater-a"), cluster.role("rater", "rater-b"));
    let (writer_a, writer_b) =
        (cluster.role("ledger-writer", "writer-a"), cluster.role("ledger-writer", "writer-b"));
    split("raters", &[&rater_a, &rater_b]);
    split("writers", &[&writer_a, &writer_b]);
    let customers = customers(&cluster.api.base);
    let load = Load::start(&cluster.api.base, &customers);
    std::thread::sleep(Duration::from_secs(1));

    let refused = || cluster.api.metric("drawdown_ingest_overload_total").unwrap_or(0.0);
    let refused_before = refused();
    let killed = Instant::now();
    let _ = rater_a.kill_9();
    let _ = writer_a.kill_9();
    let raters = takes_everything_over("raters", &rater_b, killed);
    let writers = takes_everything_over("writers", &writer_b, killed);
    println!(
        "after the SIGKILL the survivors owned every partition: raters in {raters:?}, writers in {writers:?}"
    );
    // While the dead members' partitions had no live owner (a lease timeout, longer than the
    // one-second backlog bound), ingest refused their new usage with 429s: the clients retried.
    assert!(refused() > refused_before, "no 429 while partitions had no live owner");
    let backlog = "drawdown_partition_backlog_ms{stage=\"ingest\",partition=\"0\"}";
    assert!(cluster.api.metric(backlog).is_some(), "the api reports each partition's backlog");
    std::thread::sleep(Duration::from_secs(1));
    let requests = load.stop();
    every_event_posted_once(&cluster.api.base, &customers, &requests);
}

#[test]
fn a_writer_paused_past_its_lease_is_replaced_and_once_resumed_posts_nothing_twice() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cluster = Cluster::start();
    let _rater = cluster.role("rater", "rater-a");
    let (zombie, writer) =
        (cluster.role("ledger-writer", "writer-a"), cluster.role("ledger-writer", "writer-b"));
    split("writers", &[&zombie, &writer]);
    let customers = customers(&cluster.api.base);
    let load = Load::start(&cluster.api.base, &customers);
    std::thread::sleep(Duration::from_secs(1));

    // Paused mid-stream: to everyone else it is dead; it does not know.
    let paused = Instant::now();
    zombie.signal("STOP");
    let took = takes_everything_over("writers", &writer, paused);
    println!("the paused writer's partitions moved in {took:?}");
    std::thread::sleep(Duration::from_secs(1));
    // It comes back believing it still owns its partitions, with inputs waiting: its writers'
    // commits are refused by the epoch fence, its lease round finds the leases taken, and it
    // then takes its share back through the leases like any new member.
    zombie.signal("CONT");
    split("writers", &[&zombie, &writer]);
    std::thread::sleep(Duration::from_secs(1));
    let requests = load.stop();
    every_event_posted_once(&cluster.api.base, &customers, &requests);
    println!("fenced commits of the zombie: {:?}", zombie.metric("drawdown_writer_fenced_total"));
}

/// `drawdown keys <args> --store <url>`: its stdout.
fn keys(store: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_drawdown"))
        .arg("keys")
        .args(args)
        .args(["--store", store])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run drawdown keys");
    assert!(output.status.success(), "drawdown keys {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn a_key_revoked_in_the_shared_store_is_refused_by_every_process_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cluster = Cluster::start();
    let mut args = vec!["ingest".to_string()];
    args.extend(cluster.role_args.iter().cloned());
    let ingest = spawn(&args, None);
    let key =
        keys(&cluster.store.base, &["create", "--env", "live", "--name", "rotating"]).trim().to_string();
    // Authenticated in both processes: the api answers, ingest judges the body (no such customer).
    let usage = json!({"customer_id": "cust_nobody", "events": [{"id": "e", "event_type": "x", "occurred_at": common::now()}]});
    let (status, context) = request(&cluster.api.base, Some(&key), "GET", "/accounts/self", None);
    assert_eq!((status, context["environment"].as_str()), (200, Some("live")), "{context}");
    assert_eq!(request(&ingest.base, Some(&key), "POST", "/events", Some(usage.to_string())).0, 422);
    let listed = keys(&cluster.store.base, &["list"]);
    let id = listed
        .lines()
        .find(|l| l.ends_with(" rotating"))
        .and_then(|l| l.split_whitespace().next())
        .expect("listed");
    keys(&cluster.store.base, &["revoke", id]);
    let revoked = Instant::now();
    assert_eq!(request(&cluster.api.base, Some(&key), "GET", "/accounts/self", None).0, 401);
    assert_eq!(request(&ingest.base, Some(&key), "POST", "/events", Some(usage.to_string())).0, 401);
    println!("refused by both processes {:?} after the revocation returned", revoked.elapsed());
}
