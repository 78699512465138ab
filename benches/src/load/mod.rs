//! The load generator behind the `loadgen` binary: drives a running drawdown over HTTP, measures
//! it, and verifies the money at the end.
//!
//! A run has four phases: setup (one product with token volume pricing over two dimensions, `N`
//! funded customers subscribed to it), sending (`concurrency` connections posting batches of
//! events, a few deliberate duplicates and optional adjustments, until a duration or an event
//! count is reached), draining (until the ledger writers posted every fee) and verification
//! (every customer's balance equals the expected total). The [`Report`] says how fast and how
//! correct the server was.
//!
//! - `http`: one keep-alive HTTP/1.1 connection (hyper's low-level client) and the retry loop.
//! - `pricing`: the product, its four dimension combinations and the exact fee of an event.
//! - `ring`: the per-customer memory of acknowledged events that duplicates re-send, and a PRNG.
//! - `setup`: creates the product and the funded customers.
//! - `send`: the sending connections (pacing, batches, duplicates, adjustments, retries).
//! - `scrape`: parses the server's Prometheus text (counters, histogram quantiles).
//! - `verify`: polls balances until they equal the expected totals.
//! - `memory`: the server's resident memory from `/proc/<pid>/status`.
//! - [`report`]: the [`Report`], as a table and as JSON.
//! - [`spawn`]: starts a drawdown binary on a free port with a fresh data directory, and stops it.

pub mod http;
mod memory;
pub mod pricing;
pub mod report;
mod ring;
pub mod scrape;
mod send;
mod setup;
pub mod spawn;
mod verify;

pub use report::Report;

use anyhow::{bail, Context};
use http::{Connection, Endpoint};
use report::{EventToBalance, Latency, OptionsEcho, Postings};
use scrape::Metrics;
use send::{Plan, SendOutcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run and against which server.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Base url, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub api_key: String,
    pub customers: usize,
    /// Events per `POST /events` request (1..=1000).
    pub batch: usize,
    /// Connections, each one task with its own keep-alive connection.
    pub concurrency: usize,
    /// Stop sending after this long...
    pub duration: Option<Duration>,
    /// ...or after this many events (new and duplicate) were sent; the first reached wins.
    pub events: Option<u64>,
    /// Target events/s over all connections (paced); `None` sends as fast as possible.
    pub rate: Option<f64>,
    /// Share of events that re-send an already acknowledged event.
    pub duplicate_share: f64,
    /// Share of requests that are wallet adjustments instead of events.
    pub adjustment_share: f64,
    /// The server's process id, for its memory.
    pub server_pid: Option<u32>,
    /// How long draining and verification each wait for the ledger.
    pub settle_timeout: Duration,
}

impl LoadOptions {
    /// The defaults for a server at `url` with `api_key`; set `duration` or `events` before use.
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            customers: 100,
            batch: 100,
            concurrency: 8,
            duration: None,
            events: None,
            rate: None,
            duplicate_share: 0.01,
            adjustment_share: 0.0,
            server_pid: None,
            settle_timeout: Duration::from_secs(120),
        }
    }

    /// Rejects options a run cannot honour.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.customers == 0 || self.concurrency == 0 {
            bail!("customers and concurrency must be at least 1");
        }
        if !(1..=schemas::validate::MAX_EVENTS_PER_REQUEST).contains(&self.batch) {
            bail!("batch must be 1..={}", schemas::validate::MAX_EVENTS_PER_REQUEST);
        }
        if self.duration.is_none() && self.events.is_none() {
            bail!("set a duration or an event count (or both)");
        }
        if !(0.0..=1.0).contains(&self.duplicate_share) {
            bail!("the duplicate share must be within 0..=1");
        }
        if !(0.0..1.0).contains(&self.adjustment_share) {
            bail!("the adjustment share must be within 0..1 (some requests must carry events)");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            bail!("the rate must be a positive number of events per second");
        }
        Ok(())
    }
}

/// Runs the whole load test against the server in `options` and reports on it. `Err` only when
/// the run itself could not proceed (server unreachable, setup refused, a request never
/// acknowledged); a wrong balance is a failed verification in the report.
pub async fn run(options: LoadOptions) -> anyhow::Result<Report> {
    options.validate()?;
    let endpoint = Arc::new(Endpoint::parse(&options.url, &options.api_key)?);
    let mut control = Connection::new(endpoint.clone());
    // Fail fast (no retries) when the server is not there at all.
    scrape(&mut control).await.with_context(|| format!("probing {}", options.url))?;
    let run_id = ring::run_id();
    let customers = setup::prepare(&endpoint, &run_id, options.customers, options.settle_timeout).await?;
    let plan = Arc::new(Plan::new(&options, run_id, customers));
    let sending = send_phase(&endpoint, &plan, &options, &mut control).await?;
    let drain_seconds = drain(&mut control, &sending.before, &sending.sent, options.settle_timeout).await?;
    let verification =
        verify::balances(&endpoint, &plan.customers, &sending.sent, options.settle_timeout).await?;
    let after = scrape(&mut control).await?;
    let postings = postings(&sending, &after, drain_seconds);
    let memory = memory::finish(options.server_pid, sending.memory_start, sending.samples)?;
    let stats = sending.sent.stats;
    Ok(Report {
        options: OptionsEcho::of(&options),
        send_seconds: sending.seconds,
        counts: stats.counts,
        accepted_events_per_sec: per_sec(stats.counts.events_accepted as f64, sending.seconds),
        server_events_accepted: after.events_accepted_since(&sending.before),
        request_latency: Latency::of(stats.latencies_us),
        event_to_balance: EventToBalance::between(&sending.before, &after),
        postings,
        errors_by_status: stats.errors,
        refusals: stats.refusals,
        memory,
        verification,
    })
}

/// What the send phase did, with the server's state around it.
struct Sending {
    sent: SendOutcome,
    seconds: f64,
    /// Metrics just before and just after sending.
    before: Metrics,
    at_end: Metrics,
    memory_start: Option<memory::Status>,
    samples: memory::Samples,
}

async fn send_phase(
    endpoint: &Arc<Endpoint>,
    plan: &Arc<Plan>,
    options: &LoadOptions,
    control: &mut Connection,
) -> anyhow::Result<Sending> {
    let memory_start = memory::start(options.server_pid)?;
    let before = scrape(control).await?;
    let started = Instant::now();
    let sampler = memory::Sampler::spawn(options.server_pid, started);
    let sent = send::run(endpoint, plan.clone(), options.concurrency).await?;
    let seconds = started.elapsed().as_secs_f64();
    let samples = sampler.stop().await;
    let at_end = scrape(control).await?;
    Ok(Sending { sent, seconds, before, at_end, memory_start, samples })
}

async fn scrape(control: &mut Connection) -> anyhow::Result<Metrics> {
    let answer = control.get("/metrics").await.context("GET /metrics")?;
    if !answer.status.is_success() {
        bail!("GET /metrics answered {}", answer.status);
    }
    Ok(scrape::parse(&String::from_utf8_lossy(&answer.body)))
}

/// How long after sending stopped the writers took to post every acknowledged fee and
/// adjustment (`None` if they had not within `timeout`). Polls every 50 ms.
async fn drain(
    control: &mut Connection,
    before: &Metrics,
    sent: &SendOutcome,
    timeout: Duration,
) -> anyhow::Result<Option<f64>> {
    let started = Instant::now();
    let expected = sent.stats.counts.unique_events + sent.stats.counts.adjustments_posted;
    loop {
        let now = scrape(control).await?;
        if now.postings_since(before) >= expected {
            return Ok(Some(started.elapsed().as_secs_f64()));
        }
        if started.elapsed() >= timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn postings(sending: &Sending, after: &Metrics, drain_seconds: Option<f64>) -> Postings {
    let during_run = sending.at_end.postings_since(&sending.before);
    let total = after.postings_since(&sending.before);
    Postings {
        during_run,
        per_sec_during_run: per_sec(during_run as f64, sending.seconds),
        drain_seconds,
        total,
        per_sec_overall: drain_seconds.map(|drain| per_sec(total as f64, sending.seconds + drain)),
    }
}

fn per_sec(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}
