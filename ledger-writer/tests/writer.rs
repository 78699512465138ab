//! The writer shell against the embedded log and store: each test is named after the
//! architecture invariant (or the rule of `semantics.md`) it proves.

use eventlog::{partition_for, LogOptions, SharedLog, Topic};
use ledger_writer::fixtures::*;
use ledger_writer::{
    run_partition, spawn_all, LedgerState, PartitionProgress, Posted, WriterError, WriterOptions,
};
use schemas::catalog::Product;
use schemas::ledger::{AdjustmentReason, LedgerInput, StoredEvent, Transaction, TransactionType};
use schemas::Decimal;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use store::typed::{get_doc, list_docs};
use store::{ListRange, Listing, Op, Record, SharedStore, Store, StoreError, Table, WriteBatch};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Generous liveness bound for a writer to post what was appended (not a timing assertion).
const POSTED_WITHIN: Duration = Duration::from_secs(60);
const PARTITIONS: u32 = 2;

/// A log and a store in a temporary directory, with the writers of every partition.
struct Pipeline {
    _dir: tempfile::TempDir,
    log: SharedLog,
    store: SharedStore,
    posted: Posted,
    options: WriterOptions,
    stop: watch::Sender<bool>,
    writers: Vec<JoinHandle<Result<(), WriterError>>>,
}

impl Pipeline {
    fn new() -> Self {
        Self::with_options(WriterOptions::default())
    }

    fn with_options(options: WriterOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_url = format!("embedded:{}", dir.path().join("log").display());
        let log = eventlog::open(&log_url, LogOptions { partitions: PARTITIONS, ..LogOptions::default() })
            .expect("open log");
        let store =
            store::open(&format!("embedded:{}", dir.path().join("store").display())).expect("open store");
        Self {
            _dir: dir,
            log,
            store,
            posted: Posted::new(PARTITIONS),
            options,
            stop: watch::Sender::new(false),
            writers: Vec::new(),
        }
    }

    /// Starts the writers of every partition (a restart after `stop`: fresh writers, fresh
    /// in-memory state, same log and store).
    fn start(&mut self) {
        self.stop = watch::Sender::new(false);
        self.posted = Posted::new(PARTITIONS);
        self.writers = spawn_all(
            self.store.clone(),
            self.log.clone(),
            self.posted.clone(),
            self.options,
            self.stop.subscribe(),
        );
    }

    /// Stops the writers; each must end cleanly.
    async fn stop(&mut self) {
        self.stop.send_replace(true);
        for writer in self.writers.drain(..) {
            writer.await.expect("writer task").expect("writer stopped cleanly");
        }
    }

    /// Appends `input` under its customer's partition; returns (partition, offset).
    async fn append(&self, input: &LedgerInput) -> (u32, u64) {
        let key = input.customer_id().as_bytes().to_vec();
        let partition = partition_for(&key, PARTITIONS);
        let value = serde_json::to_vec(input).expect("encode");
        let offset =
            self.log.append(Topic::LedgerInput, partition, vec![(key, value)]).await.expect("append");
        (partition, offset)
    }

    /// Appends `input` and waits until its writer posted it.
    async fn post(&self, input: &LedgerInput) {
        let (partition, offset) = self.append(input).await;
        assert!(
            self.posted.wait(partition, offset, POSTED_WITHIN).await,
            "offset {offset} of {partition} posted"
        );
    }

    /// Waits until every record appended so far is posted.
    async fn drain(&self) {
        for partition in 0..PARTITIONS {
            let end = self.log.end_offset(Topic::LedgerInput, partition).await.expect("end offset");
            if end > 0 {
                assert!(
                    self.posted.wait(partition, end - 1, POSTED_WITHIN).await,
                    "partition {partition} drained"
                );
            }
        }
    }

    async fn transactions(&self, customer: &str) -> Vec<Transaction> {
        let docs =
            list_docs::<Transaction>(self.store.as_ref(), Table::Transactions, &format!("{customer}/"))
                .await
                .expect("transactions");
        docs.into_iter().map(|d| d.value).collect()
    }

    async fn transaction(&self, customer: &str, id: &str) -> Option<Transaction> {
        get_doc::<Transaction>(self.store.as_ref(), Table::Transactions, &format!("{customer}/{id}"))
            .await
            .expect("transaction")
            .map(|d| d.value)
    }

    async fn ledger(&self, customer: &str) -> LedgerState {
        get_doc::<LedgerState>(self.store.as_ref(), Table::Ledger, customer)
            .await
            .expect("ledger")
            .map(|d| d.value)
            .unwrap_or_else(|| LedgerState::new(customer))
    }

    /// `available` of the customer's `default:USD` account at its clock.
    async fn available(&self, customer: &str) -> Decimal {
        let ledger = self.ledger(customer).await;
        let now = ledger.clock.expect("a clock");
        ledger.available("default:USD", now).expect("within the ledger bound")
    }

    /// Every record of the ledger's tables, as stored: key and document bytes.
    async fn ledger_records(&self) -> BTreeMap<(&'static str, String), Vec<u8>> {
        let mut records = BTreeMap::new();
        for table in [Table::Ledger, Table::Transactions, Table::Events] {
            let listing = self.store.list(table, "", ListRange::ALL).await.expect("list");
            for r in listing.records {
                records.insert((table.name(), r.key), r.doc);
            }
        }
        records
    }

    /// Rewinds every partition's stored offset to 0, as if the writers' progress was lost: the
    /// next writers read the whole log again.
    async fn rewind_progress(&self) {
        for partition in 0..PARTITIONS {
            let key = PartitionProgress::key(partition);
            let stored =
                get_doc::<PartitionProgress>(self.store.as_ref(), Table::Offsets, &key).await.expect("read");
            let epoch = stored.map_or(0, |d| d.value.epoch);
            let op = Op::put_doc(
                Table::Offsets,
                key,
                &PartitionProgress { next_offset: 0, epoch, batch_start: 0 },
            )
            .expect("op");
            self.store.write(vec![op]).await.expect("rewind");
        }
    }

    async fn seed_product(&self, product: &Product) {
        let op = Op::put_doc(Table::Products, product.id.as_str(), product).expect("op");
        self.store.write(vec![op]).await.expect("seed product");
    }
}

fn adj(customer: &str, id: &str, amount: &str, reason: AdjustmentReason, accepted_at: &str) -> LedgerInput {
    LedgerInput::Adjustment(adjustment(customer, id, amount, reason, accepted_at))
}

fn charged(customer: &str, id: &str, amount: &str, accepted_at: &str) -> LedgerInput {
    LedgerInput::Charge(charge(customer, id, amount, accepted_at))
}

fn fees_of(transactions: &[Transaction]) -> Vec<&Transaction> {
    transactions.iter().filter(|t| t.kind == TransactionType::Fee).collect()
}

/// The event of `usage_fee(c, "evt_1", "1.5", ..)` sent again in another request, with a new
/// one costing 0.25.
fn evt_1_again_with_evt_2(c: &str) -> LedgerInput {
    usage(
        c,
        "2026-11-15T12:00:02Z",
        vec![
            rated(event("evt_1", json!({})), vec![fee("evt_1", "price_1", "USD", "1.5")]),
            rated(event("evt_2", json!({})), vec![fee("evt_2", "price_1", "USD", "0.25")]),
        ],
    )
}

/// Two customers that land on different partitions.
fn two_partitions_customers() -> (String, String) {
    let a = "cust_a".to_string();
    let b = (0..)
        .map(|i| format!("cust_b{i}"))
        .find(|c| partition_for(c.as_bytes(), PARTITIONS) != partition_for(a.as_bytes(), PARTITIONS))
        .expect("a customer on the other partition");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_2_exactly_once_a_resent_event_and_a_replayed_log_post_each_fee_once() {
    let mut p = Pipeline::new();
    p.start();
    let (a, b) = two_partitions_customers();
    for c in [&a, &b] {
        p.post(&adj(c, "topup", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:00Z")).await;
        p.post(&usage_fee(c, "evt_1", "1.5", "2026-11-15T12:00:01Z")).await;
        p.post(&evt_1_again_with_evt_2(c)).await;
        let transactions = p.transactions(c).await;
        assert_eq!(fees_of(&transactions).len(), 2, "{transactions:?}");
        assert_eq!(p.available(c).await, d("8.25"));
    }
    let before = p.ledger_records().await;

    // Restart, and replay the whole log from offset 0.
    p.stop().await;
    p.rewind_progress().await;
    p.start();
    p.drain().await;
    assert_eq!(p.ledger_records().await, before, "a replay posts nothing");
    for c in [&a, &b] {
        assert_eq!(p.available(c).await, d("8.25"));
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_2_exactly_once_holds_when_the_applied_offsets_are_lost_too() {
    let mut p = Pipeline::new();
    p.start();
    let c = "cust_a";
    p.post(&adj(c, "topup", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:00Z")).await;
    p.post(&usage_fee(c, "evt_1", "1", "2026-11-15T12:00:01Z")).await;
    p.post(&charged(c, "charge_1", "2", "2026-11-15T12:00:02Z")).await;
    p.stop().await;
    let ledger = p.ledger(c).await;
    let transactions = p.transactions(c).await;

    // Lose both the partition offsets and the customer's applied offset: only the stored
    // transaction and event ids stand between a replay and double posting.
    p.rewind_progress().await;
    let mut forgotten = ledger.clone();
    forgotten.applied_offset = 0;
    p.store.write(vec![Op::put_doc(Table::Ledger, c, &forgotten).expect("op")]).await.expect("forget");
    p.start();
    p.drain().await;
    assert_eq!(p.transactions(c).await, transactions);
    assert_eq!(p.ledger(c).await, ledger);
    assert_eq!(p.available(c).await, d("7"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_3_conservation_every_account_balances_against_its_transactions() {
    let mut p = Pipeline::new();
    p.start();
    let c = "cust_a";
    let mut short_gift = adjustment(c, "gift_short", "10", AdjustmentReason::Gift, "2026-01-01T00:00:00Z");
    short_gift.request.expires_at = Some(at("2026-02-01T00:00:00Z"));
    let mut short_paid =
        adjustment(c, "paid_short", "4", AdjustmentReason::ExternalTopup, "2026-01-01T00:00:00Z");
    short_paid.request.expires_at = Some(at("2026-02-05T00:00:00Z"));
    let mut eur = adjustment(c, "eur_topup", "3", AdjustmentReason::Other, "2026-01-02T00:00:00Z");
    eur.request.asset = "EUR".into();
    let eur_fee = usage(
        c,
        "2026-01-03T00:00:00Z",
        vec![rated(event("evt_eur", json!({})), vec![fee("evt_eur", "price_eur", "EUR", "4.5")])],
    );
    let inputs = vec![
        LedgerInput::Adjustment(short_gift),
        LedgerInput::Adjustment(short_paid),
        adj(c, "paid_long", "20", AdjustmentReason::ExternalTopup, "2026-01-01T00:00:00Z"),
        LedgerInput::Adjustment(eur),
        usage_fee(c, "evt_1", "2.5", "2026-01-05T00:00:00Z"),
        charged(c, "charge_1", "3", "2026-01-06T00:00:00Z"),
        adj(c, "refund_back", "-4", AdjustmentReason::ExternalRefund, "2026-01-07T00:00:00Z"),
        eur_fee,
        // After both short grants expired: their remainders (0.5 promotion, 4 paid) are written
        // off first, then the fee overdraws the long grant.
        usage_fee(c, "evt_2", "30", "2026-02-10T00:00:00Z"),
        // With the account in debt: a top-up repays it.
        adj(c, "topup_2", "50", AdjustmentReason::ExternalTopup, "2026-03-05T00:00:00Z"),
        charged(c, "charge_2", "1.25", "2026-03-06T00:00:00Z"),
    ];
    for input in &inputs {
        p.post(input).await;
    }
    let ledger = p.ledger(c).await;
    let now = ledger.clock.expect("clock");
    let transactions = p.transactions(c).await;
    assert!(transactions.iter().any(|t| t.kind == TransactionType::Expiry), "an expiry was posted");
    assert!(
        transactions.iter().flat_map(|t| &t.lines).any(|l| l.kind == "repaid_debt"),
        "debt was repaid by a later grant"
    );
    for account_id in ledger.accounts.keys() {
        let account_transactions: Vec<_> =
            transactions.iter().filter(|t| &t.account_id == account_id).collect();
        let sum = |kind: TransactionType| -> Decimal {
            account_transactions.iter().filter(|t| t.kind == kind).map(|t| t.amount).sum()
        };
        let credits: Decimal =
            account_transactions.iter().filter(|t| t.amount > Decimal::ZERO).map(|t| t.amount).sum();
        let debits: Decimal = account_transactions
            .iter()
            .filter(|t| t.amount < Decimal::ZERO && t.kind != TransactionType::Expiry)
            .map(|t| -t.amount)
            .sum();
        let expiries = -sum(TransactionType::Expiry);
        assert_eq!(
            ledger.available(account_id, now),
            Some(credits - debits - expiries),
            "account {account_id}"
        );
    }
    assert_eq!(ledger.available("default:EUR", now), Some(d("-1.5")));
    assert_eq!(ledger.available("default:USD", now), Some(d("38.75")));
    let breakage: Decimal =
        transactions.iter().filter(|t| t.kind == TransactionType::Expiry).map(|t| t.revenue).sum();
    assert_eq!(breakage, d("4"), "expired paid credit is revenue, expired promotion is not");
    for t in &transactions {
        let of = |kinds: &[&str]| -> Decimal {
            t.lines.iter().filter(|l| kinds.contains(&l.kind.as_str())).map(|l| l.amount).sum()
        };
        if t.amount < Decimal::ZERO {
            assert_eq!(of(&["from_grant", "to_debt", "expired"]), -t.amount, "debit lines of {}", t.id);
        } else {
            assert_eq!(of(&["credit"]), t.amount, "credit line of {}", t.id);
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_4_order_one_customers_inputs_are_applied_in_log_order() {
    let mut p = Pipeline::new();
    p.start();
    let (debit_first, credit_first) = two_partitions_customers();
    let mut applied = Vec::new();
    for (i, input) in [
        charged(&debit_first, "charge", "4", "2026-11-15T12:00:00Z"),
        adj(&debit_first, "topup", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:01Z"),
    ]
    .iter()
    .enumerate()
    {
        p.post(input).await;
        applied.push((i, p.ledger(&debit_first).await.applied_offset));
    }
    p.post(&adj(&credit_first, "topup", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:00Z")).await;
    p.post(&charged(&credit_first, "charge", "4", "2026-11-15T12:00:01Z")).await;

    let kinds = |t: &Transaction| t.lines.iter().map(|l| l.kind.clone()).collect::<Vec<_>>();
    // Debit then credit: the credit repays the debt the debit left.
    let topup = p.transaction(&debit_first, "topup").await.expect("topup");
    assert_eq!(kinds(&topup), ["credit", "repaid_debt"]);
    assert_eq!(topup.lines[1].amount, d("4"));
    assert_eq!(kinds(&p.transaction(&debit_first, "charge").await.expect("charge")), ["to_debt"]);
    // Credit then debit: no debt to repay; the debit comes from the grant.
    assert_eq!(kinds(&p.transaction(&credit_first, "topup").await.expect("topup")), ["credit"]);
    assert_eq!(kinds(&p.transaction(&credit_first, "charge").await.expect("charge")), ["from_grant"]);
    assert!(applied.windows(2).all(|w| w[0].1 < w[1].1), "applied offsets increase: {applied:?}");
    for c in [&debit_first, &credit_first] {
        assert_eq!(p.available(c).await, d("6"));
    }
    p.stop().await;
}

/// A mix of every kind of input for determinism: grants, fees, re-rated tiers, charges,
/// negative adjustments, overdraft and expiry, on two customers.
fn mixed_inputs(a: &str, b: &str) -> Vec<LedgerInput> {
    let mut gift = adjustment(a, "gift", "2", AdjustmentReason::Gift, "2026-11-01T00:00:00Z");
    gift.request.expires_at = Some(at("2026-11-10T00:00:00Z"));
    gift.request.metadata = Some(BTreeMap::from([("source".to_string(), "promo".to_string())]));
    let tiered = |c: &str, id: &str, volume: u32, accepted: &str| {
        usage(c, accepted, vec![needs_state(event(id, json!({"volume": volume})), "prod_g", Vec::new())])
    };
    vec![
        LedgerInput::Adjustment(gift),
        adj(a, "topup", "10", AdjustmentReason::ExternalTopup, "2026-11-01T00:00:00Z"),
        adj(b, "topup", "1", AdjustmentReason::Other, "2026-11-01T00:00:00Z"),
        tiered(a, "evt_t1", 80, "2026-11-15T12:00:00Z"),
        tiered(b, "evt_t1", 150, "2026-11-15T12:00:00Z"),
        tiered(a, "evt_t2", 80, "2026-11-15T12:00:01Z"),
        usage_fee(a, "evt_1", "0.00294125", "2026-11-15T12:00:02Z"),
        charged(b, "charge", "0.5", "2026-11-15T12:00:03Z"),
        adj(a, "take_back", "-3", AdjustmentReason::Other, "2026-11-15T12:00:04Z"),
        adj(b, "topup_2", "200", AdjustmentReason::ExternalTopup, "2026-11-16T00:00:00Z"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_5_determinism_the_same_inputs_produce_byte_identical_ledgers() {
    let (a, b) = two_partitions_customers();
    let mut runs = Vec::new();
    // One record per batch, and everything in as few batches as possible: same bytes.
    for max_batch_records in [1, 2048] {
        let mut p = Pipeline::with_options(WriterOptions { max_batch_records, ..WriterOptions::default() });
        p.seed_product(&graduated_product("prod_g")).await;
        for input in mixed_inputs(&a, &b) {
            p.append(&input).await;
        }
        p.start();
        p.drain().await;
        p.stop().await;
        runs.push(p.ledger_records().await);
    }
    assert!(runs[0].len() > 10, "{:?}", runs[0].keys());
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_fences_the_first_whose_next_commit_posts_nothing() {
    let p = Pipeline::new();
    let c = "cust_a";
    let partition = partition_for(c.as_bytes(), PARTITIONS);
    let key = PartitionProgress::key(partition);
    let progress = || async {
        get_doc::<PartitionProgress>(p.store.as_ref(), Table::Offsets, &key)
            .await
            .expect("read")
            .expect("progress")
    };
    let (_stop_first, stop) = watch::channel(false);
    let first = tokio::spawn(run_partition(
        p.store.clone(),
        p.log.clone(),
        partition,
        p.posted.clone(),
        WriterOptions::default(),
        stop,
    ));
    p.post(&adj(c, "before", "10", AdjustmentReason::Gift, "2026-11-15T12:00:00Z")).await;
    assert_eq!(progress().await.value, PartitionProgress { next_offset: 1, epoch: 1, batch_start: 0 });

    // A second writer takes the partition (and is told to stop at once, so it applies nothing).
    let second = run_partition(
        p.store.clone(),
        p.log.clone(),
        partition,
        Posted::new(PARTITIONS),
        WriterOptions::default(),
        watch::channel(true).1,
    );
    second.await.expect("the second writer started and stopped");
    assert_eq!(progress().await.value, PartitionProgress { next_offset: 1, epoch: 2, batch_start: 0 });

    p.append(&adj(c, "after", "5", AdjustmentReason::Gift, "2026-11-15T12:00:01Z")).await;
    let result = first.await.expect("first writer task");
    assert!(matches!(result, Err(WriterError::Fenced { partition: q }) if q == partition), "{result:?}");
    assert!(p.transaction(c, "after").await.is_none(), "a fenced writer posts nothing");
    assert_eq!(p.posted.applied(partition), 1, "nor does it release waiters");
    assert_eq!(progress().await.value, PartitionProgress { next_offset: 1, epoch: 2, batch_start: 0 });
    assert_eq!(p.available(c).await, d("10"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_credit_is_consumed_before_paid_credit() {
    let mut p = Pipeline::new();
    p.start();
    let c = "cust_a";
    p.post(&adj(c, "paid", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:00Z")).await;
    p.post(&adj(c, "gift", "3", AdjustmentReason::Gift, "2026-11-15T12:00:01Z")).await;
    p.post(&charged(c, "charge", "4", "2026-11-15T12:00:02Z")).await;
    let charge = p.transaction(c, "charge").await.expect("charge");
    let lines: Vec<_> =
        charge.lines.iter().map(|l| (l.grant.clone().unwrap_or_default(), l.amount)).collect();
    assert_eq!(lines, [("grant_gift".to_string(), d("3")), ("grant_paid".to_string(), d("1"))]);
    // Only the paid unit is revenue.
    assert_eq!(charge.revenue, d("1"));
    assert_eq!(p.available(c).await, d("9"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graduated_tiers_are_rated_again_by_the_writer_across_inputs() {
    let mut p = Pipeline::new();
    p.seed_product(&graduated_product("prod_g")).await;
    p.start();
    let c = "cust_a";
    // Raters price at an empty counter; the writer owns the counter and rates again.
    for (id, accepted) in [("evt_1", "2026-11-15T12:00:00Z"), ("evt_2", "2026-11-15T12:00:01Z")] {
        let provisional = vec![fee(id, "price_1_0", "USD", "80")];
        let e = needs_state(event(id, json!({"volume": 80})), "prod_g", provisional);
        p.post(&usage(c, accepted, vec![e])).await;
    }
    let fee_1 = p.transaction(c, &rater::fixtures::fee_id("evt_1", "price_1_0")).await.expect("fee 1");
    let fee_2 = p.transaction(c, &rater::fixtures::fee_id("evt_2", "price_1_0")).await.expect("fee 2");
    assert_eq!(fee_1.amount, d("-80"));
    assert_eq!(fee_2.amount, d("-50"), "20 at 1 then 60 at 0.5");
    assert_eq!(p.ledger(c).await.counters["lifetime"]["price_1_0"], d("160"));
    let stored = get_doc::<StoredEvent>(p.store.as_ref(), Table::Events, &StoredEvent::key("evt_2", c))
        .await
        .expect("read")
        .expect("event");
    assert_eq!(stored.value.fees[0].fee.amount, d("50"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adjustment_sent_twice_with_one_transaction_id_posts_once() {
    let mut p = Pipeline::new();
    let c = "cust_a";
    // Twice in one batch ...
    p.append(&adj(c, "t1", "5", AdjustmentReason::Gift, "2026-11-15T12:00:00Z")).await;
    p.append(&adj(c, "t1", "7", AdjustmentReason::Gift, "2026-11-15T12:00:00Z")).await;
    p.start();
    p.drain().await;
    // ... and again in a later batch.
    p.post(&adj(c, "t1", "5", AdjustmentReason::Gift, "2026-11-15T12:00:05Z")).await;
    let transactions = p.transactions(c).await;
    assert_eq!(transactions.len(), 1, "{transactions:?}");
    assert_eq!(transactions[0].body_hash.as_deref(), Some("hash_t1_5"));
    assert_eq!(p.available(c).await, d("5"));
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_skipped_and_the_partition_moves_on() {
    let mut p = Pipeline::new();
    p.start();
    let c = "cust_a";
    let partition = partition_for(c.as_bytes(), PARTITIONS);
    let garbage = p
        .log
        .append(Topic::LedgerInput, partition, vec![(c.as_bytes().to_vec(), b"{not json".to_vec())])
        .await
        .expect("append");
    assert!(p.posted.wait(partition, garbage, POSTED_WITHIN).await);
    p.post(&adj(c, "ok", "5", AdjustmentReason::Gift, "2026-11-15T12:00:00Z")).await;
    assert_eq!(p.available(c).await, d("5"));
    p.stop().await;
}

/// A store that applies a batch one customer partition at a time (ScyllaDB) can crash after the
/// progress record and some customers were written but not others. The next writer reads the
/// last batch again from its start: the customers already written skip it, the others post it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_left_half_written_is_completed_once_by_the_next_writer() {
    let mut p = Pipeline::new();
    let first = "cust_a";
    let partition = partition_for(first.as_bytes(), PARTITIONS);
    let second = (0..)
        .map(|i| format!("cust_b{i}"))
        .find(|c| partition_for(c.as_bytes(), PARTITIONS) == partition)
        .expect("a second customer of the partition");
    // Both inputs are in the log before the writer starts: one batch.
    p.append(&adj(first, "topup_a", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:00Z")).await;
    p.append(&adj(&second, "topup_b", "7", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:01Z")).await;
    p.start();
    p.drain().await;
    p.stop().await;
    let progress =
        get_doc::<PartitionProgress>(p.store.as_ref(), Table::Offsets, &PartitionProgress::key(partition))
            .await
            .expect("progress")
            .expect("stored")
            .value;
    assert_eq!((progress.batch_start, progress.next_offset), (0, 2), "one batch of two inputs");
    let a_before = (p.ledger(first).await, p.transactions(first).await);

    // The second customer's part "did not land".
    let mut undo = vec![Op::delete(Table::Ledger, second.as_str())];
    for tx in p.transactions(&second).await {
        undo.push(Op::delete(Table::Transactions, Transaction::key(&second, &tx.id)));
    }
    p.store.write(undo).await.expect("undo");
    assert!(p.transactions(&second).await.is_empty());

    p.start();
    let deadline = tokio::time::Instant::now() + POSTED_WITHIN;
    while p.transactions(&second).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the second customer's input was never posted again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.drain().await;
    p.stop().await;
    assert_eq!(p.available(&second).await, d("7"));
    assert_eq!(p.transactions(&second).await.len(), 1);
    assert_eq!(
        (p.ledger(first).await, p.transactions(first).await),
        a_before,
        "the first customer is untouched"
    );
}

/// A store whose writes of usage events wait while the gate is closed, and which counts the
/// event reads the writer makes to prepare a batch and the writes it refuses.
struct Gated {
    inner: SharedStore,
    open: watch::Sender<bool>,
    waiting: AtomicUsize,
    event_reads: AtomicUsize,
    refused: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Gated {
    async fn get(&self, table: Table, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.get(table, key).await
    }

    async fn get_many(&self, table: Table, keys: &[String]) -> Result<Vec<Option<Record>>, StoreError> {
        if table == Table::Events && !keys.is_empty() {
            self.event_reads.fetch_add(1, SeqCst);
        }
        self.inner.get_many(table, keys).await
    }

    async fn list(&self, table: Table, prefix: &str, range: ListRange) -> Result<Listing, StoreError> {
        self.inner.list(table, prefix, range).await
    }

    async fn find_unique(
        &self,
        table: Table,
        index: &str,
        value: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.find_unique(table, index, value).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.iter().any(|op| matches!(op, Op::Put { table: Table::Events, .. })) {
            self.waiting.fetch_add(1, SeqCst);
            let _ = self.open.subscribe().wait_for(|open| *open).await;
        }
        let result = self.inner.write(batch).await;
        if result.is_err() {
            self.refused.fetch_add(1, SeqCst);
        }
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_resent_while_its_first_batch_commits_is_a_duplicate_not_a_refused_commit() {
    // One record per batch, so the writer pipelines: it prepares each batch while the one before
    // it commits.
    let mut p = Pipeline::with_options(WriterOptions { max_batch_records: 1, ..WriterOptions::default() });
    let gated = Arc::new(Gated {
        inner: p.store.clone(),
        open: watch::Sender::new(true),
        waiting: AtomicUsize::new(0),
        event_reads: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
    });
    p.store = gated.clone();
    let c = "cust_a";
    p.start();
    p.post(&adj(c, "topup", "10", AdjustmentReason::ExternalTopup, "2026-11-15T12:00:00Z")).await;
    p.stop().await;
    // Both batches are in the log when the writer starts again: evt_1's commit waits at the gate
    // while the batch behind it (evt_1 again, and evt_2) is prepared.
    gated.open.send_replace(false);
    p.append(&usage_fee(c, "evt_1", "1.5", "2026-11-15T12:00:01Z")).await;
    p.append(&evt_1_again_with_evt_2(c)).await;
    p.start();
    let started = std::time::Instant::now();
    while gated.event_reads.load(SeqCst) < 2 {
        assert!(started.elapsed() < POSTED_WITHIN, "the writer prepared both usage batches");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gated.waiting.load(SeqCst), 1, "evt_1's batch was committing while the next was prepared");
    gated.open.send_replace(true);
    p.drain().await;

    assert_eq!(gated.refused.load(SeqCst), 0, "the second batch saw evt_1 in flight: no conflict");
    let transactions = p.transactions(c).await;
    assert_eq!(fees_of(&transactions).len(), 2, "{transactions:?}");
    assert_eq!(p.available(c).await, d("8.25"));
    p.stop().await;
}
