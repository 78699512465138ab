//! `postings`: fee postings per second of the ledger writers alone, on the embedded store and log.
//!
//! It fills `ledger.input` with rated usage (what raters would have appended: one input per
//! request, `--events-per-input` events of one customer each, every event one USD fee) after one
//! funding adjustment per customer, then starts one writer per partition and times them until
//! every input is posted and durable. At the end it checks every customer's balance: funding
//! minus the fees, exactly (exit code 1 otherwise).
//!
//! `--customers 1` is the hot-customer case: every input lands on one partition and one writer.

use anyhow::{ensure, Context};
use clap::Parser;
use eventlog::{partition_for, EmbeddedLog, LogOptions, SharedLog, Topic};
use ledger_writer::fixtures::{adjustment, event, fee, rated, usage};
use ledger_writer::{LedgerState, Posted, WriterOptions};
use schemas::customer::WalletAccount;
use schemas::ledger::{AdjustmentReason, LedgerInput};
use schemas::Decimal;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::typed::get_doc;
use store::{EmbeddedStore, SharedStore, Table};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Ledger writer throughput: fee postings per second on the embedded store")]
struct Args {
    /// Customers the inputs are spread over (1 = one hot customer, one partition).
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Usage events (fees) in total.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per `ledger.input` record (one accepted request of one customer).
    #[arg(long, default_value_t = 100)]
    events_per_input: usize,
    /// Partitions (one writer each).
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Most records a writer applies per commit.
    #[arg(long, default_value_t = WriterOptions::default().max_batch_records)]
    max_batch_records: usize,
    /// Usage events a writer aims to put in one commit.
    #[arg(long, default_value_t = WriterOptions::default().target_batch_events)]
    target_batch_events: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Report {
    customers: usize,
    partitions: u32,
    events_per_input: usize,
    inputs: usize,
    postings: usize,
    seconds: f64,
    postings_per_sec: f64,
    inputs_per_sec: f64,
    /// CPU (user + system, all threads) the process spent posting, per posting.
    cpu_us_per_posting: f64,
    balances_checked: usize,
    passed: bool,
}

/// Each fee; the balance check expects `FUNDING - FEE * events`.
const FEE: &str = "0.000123";
const FUNDING: &str = "1000000";
const ACCEPTED_AT: &str = "2026-11-15T12:00:00Z";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.customers > 0 && args.events_per_input > 0 && args.partitions > 0,
        "counts must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(run(&args))?;
    println!(
        "{} postings ({} inputs of {} events, {} customers, {} partitions) in {:.2} s: {:.0} postings/s, {:.0} inputs/s, {:.1} µs CPU per posting; balances {}",
        report.postings,
        report.inputs,
        report.events_per_input,
        report.customers,
        report.partitions,
        report.seconds,
        report.postings_per_sec,
        report.inputs_per_sec,
        report.cpu_us_per_posting,
        if report.passed { "exact" } else { "WRONG" },
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?).context("writing the JSON report")?;
    }
    ensure!(report.passed, "a balance differs from funding minus fees");
    Ok(())
}

fn customer(i: usize) -> String {
    format!("cust_bench_{i:06}")
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path().join("store"))?);
    let options = LogOptions { partitions: args.partitions, ..LogOptions::default() };
    let log: SharedLog = Arc::new(EmbeddedLog::open(dir.path().join("log"), options)?);
    let inputs = fill(&log, args).await?;

    let posted = Posted::new(args.partitions);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut ends = Vec::new();
    for partition in 0..args.partitions {
        ends.push(log.end_offset(Topic::LedgerInput, partition).await?);
    }
    let options = WriterOptions {
        max_batch_records: args.max_batch_records,
        target_batch_events: args.target_batch_events,
    };
    let started = Instant::now();
    let cpu_before = benches::cpu::seconds(std::process::id())?;
    let writers =
        ledger_writer::spawn_all(Arc::clone(&store), Arc::clone(&log), posted.clone(), options, shutdown);
    for (partition, end) in (0..args.partitions).zip(ends) {
        if end > 0 {
            ensure!(
                posted.wait(partition, end - 1, Duration::from_secs(3600)).await,
                "partition {partition} was not posted"
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = benches::cpu::seconds(std::process::id())? - cpu_before;
    let _ = stop.send(true);
    for writer in writers {
        writer.await??;
    }

    let (checked, passed) = verify(&store, args).await?;
    let postings = args.events;
    Ok(Report {
        customers: args.customers,
        partitions: args.partitions,
        events_per_input: args.events_per_input,
        inputs,
        postings,
        seconds,
        postings_per_sec: postings as f64 / seconds,
        inputs_per_sec: inputs as f64 / seconds,
        cpu_us_per_posting: cpu / postings as f64 * 1e6,
        balances_checked: checked,
        passed,
    })
}

/// Appends the funding adjustments, then the usage inputs round-robin over the customers.
async fn fill(log: &SharedLog, args: &Args) -> anyhow::Result<usize> {
    let mut pending: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); args.partitions as usize];
    let mut push = |input: &LedgerInput| -> anyhow::Result<()> {
        let key = input.customer_id().as_bytes().to_vec();
        let partition = partition_for(&key, args.partitions) as usize;
        pending[partition].push((key, serde_json::to_vec(input)?));
        Ok(())
    };
    for i in 0..args.customers {
        let cmd = adjustment(
            &customer(i),
            &format!("fund_{i}"),
            FUNDING,
            AdjustmentReason::ExternalTopup,
            ACCEPTED_AT,
        );
        push(&LedgerInput::Adjustment(cmd))?;
    }
    let mut inputs = 0;
    let mut sent = 0;
    while sent < args.events {
        let n = args.events_per_input.min(args.events - sent);
        let who = customer(inputs % args.customers);
        let events = (sent..sent + n)
            .map(|e| {
                // A stream: each event occurs a millisecond after the one before.
                let id = format!("evt_{e:09}");
                let mut event = event(&id, serde_json::json!({"tokens": 1000}));
                event.occurred_at += chrono::Duration::milliseconds(e as i64);
                let mut fee = fee(&id, "price_1", "USD", FEE);
                fee.id = rater::fee_id(&id, event.occurred_at, "price_1");
                rated(event, vec![fee])
            })
            .collect();
        push(&usage(&who, ACCEPTED_AT, events))?;
        sent += n;
        inputs += 1;
    }
    for (partition, records) in pending.into_iter().enumerate() {
        for chunk in records.chunks(1024) {
            log.append(Topic::LedgerInput, partition as u32, chunk.to_vec()).await?;
        }
    }
    Ok(inputs)
}

/// Every customer's default USD balance equals funding minus its fees.
async fn verify(store: &SharedStore, args: &Args) -> anyhow::Result<(usize, bool)> {
    let mut events_of = vec![0usize; args.customers];
    let (mut sent, mut input) = (0, 0);
    while sent < args.events {
        let n = args.events_per_input.min(args.events - sent);
        events_of[input % args.customers] += n;
        sent += n;
        input += 1;
    }
    let account = WalletAccount::account_id(WalletAccount::DEFAULT_NAME, "USD");
    let now = ledger_writer::fixtures::at(ACCEPTED_AT);
    let (funding, fee): (Decimal, Decimal) = (FUNDING.parse()?, FEE.parse()?);
    let mut passed = true;
    for (i, events) in events_of.iter().enumerate() {
        let id = customer(i);
        let state = get_doc::<LedgerState>(store.as_ref(), Table::Ledger, &id).await?;
        let balance = state
            .map_or(Some(Decimal::ZERO), |doc| doc.value.available(&account, now))
            .context("a balance beyond the ledger bound")?;
        let expected = funding - fee * Decimal::from(*events);
        if balance != expected {
            eprintln!("{id}: balance {balance}, expected {expected}");
            passed = false;
        }
    }
    Ok((args.customers, passed))
}
