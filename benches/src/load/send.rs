//! The sending phase: `concurrency` tasks, each with its own keep-alive connection, posting
//! batches of events (unique ids `{run}-{connection}-{seq}`, a share of exact re-sends of
//! acknowledged events) and, for a share of requests (spread evenly), small top-up adjustments; paced to a
//! target rate or as fast as the server answers, until a deadline or an event budget.
//!
//! Every request is re-sent with the same body after 429, 503 or a transport error until it is
//! acknowledged, so what was generated is what was accepted, and each connection can tally the
//! money it moved per customer. Any other status is a refusal: counted, never retried, and its
//! events are not expected on the balance.

use super::http::{until_answered, Connection, Endpoint};
use super::pricing::{adjustment_amount, occurred_at, topup_body, Event, EventsWriter, COMBOS, MAX_TOKENS};
use super::report::Counts;
use super::ring::{Ring, Rng, Spread, RING_CAPACITY};
use super::LoadOptions;
use anyhow::Context;
use bytes::Bytes;
use hyper::Method;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refusals kept verbatim for the report.
const REFUSAL_SAMPLES: usize = 5;

/// What every connection shares: the run, its customers and its limits.
pub struct Plan {
    pub run: String,
    pub customers: Vec<String>,
    batch: usize,
    duplicate_share: f64,
    adjustment_share: f64,
    duration: Option<Duration>,
    budget: Option<Budget>,
    /// Events per second per connection.
    rate_per_connection: Option<f64>,
    give_up_after: Duration,
    /// Set when a connection failed for good: the others stop too.
    abort: AtomicBool,
    concurrency: usize,
}

impl Plan {
    pub fn new(options: &LoadOptions, run: String, customers: Vec<String>) -> Self {
        Self {
            run,
            customers,
            batch: options.batch,
            duplicate_share: options.duplicate_share,
            adjustment_share: options.adjustment_share,
            duration: options.duration,
            budget: options.events.map(Budget::new),
            rate_per_connection: options.rate.map(|r| r / options.concurrency as f64),
            give_up_after: options.settle_timeout,
            abort: AtomicBool::new(false),
            concurrency: options.concurrency,
        }
    }
}

/// The events that may still be sent, claimed a batch at a time by the connections.
struct Budget {
    limit: u64,
    claimed: AtomicU64,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Self { limit, claimed: AtomicU64::new(0) }
    }

    /// Up to `want` events, fewer at the end, 0 once the budget is spent.
    fn claim(&self, want: usize) -> usize {
        let before = self.claimed.fetch_add(want as u64, Relaxed);
        self.limit.saturating_sub(before).min(want as u64) as usize
    }
}

/// Counts of the sending phase (summed over connections).
#[derive(Debug, Default)]
pub struct SendStats {
    pub counts: Counts,
    /// Status code (or `transport`) → failed attempts.
    pub errors: BTreeMap<String, u64>,
    /// The first refusals, `status: body`.
    pub refusals: Vec<String>,
    /// Latency of every acknowledged request, µs.
    pub latencies_us: Vec<u32>,
}

impl SendStats {
    fn merge(&mut self, other: SendStats) {
        self.counts.add(&other.counts);
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
        let room = REFUSAL_SAMPLES.saturating_sub(self.refusals.len());
        self.refusals.extend(other.refusals.into_iter().take(room));
        self.latencies_us.extend(other.latencies_us);
    }
}

/// The money one customer was sent: tokens per dimension combination, and mix adjustments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub tokens: [u64; 4],
    pub adjustments: u64,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        for (mine, theirs) in self.tokens.iter_mut().zip(other.tokens) {
            *mine += theirs;
        }
        self.adjustments += other.adjustments;
    }
}

/// What the sending phase did: counts, and per customer (in plan order) what it was sent.
#[derive(Debug, Default)]
pub struct SendOutcome {
    pub stats: SendStats,
    pub tallies: Vec<Tally>,
}

/// Runs the connections to completion and sums what they did.
pub async fn run(
    endpoint: &Arc<Endpoint>,
    plan: Arc<Plan>,
    concurrency: usize,
) -> anyhow::Result<SendOutcome> {
    let deadline = plan.duration.map(|d| Instant::now() + d);
    let handles: Vec<_> = (0..concurrency)
        .map(|index| {
            let worker = Worker::new(index, Connection::new(endpoint.clone()), plan.clone());
            tokio::spawn(worker.run(deadline))
        })
        .collect();
    let mut total =
        SendOutcome { stats: SendStats::default(), tallies: vec![Tally::default(); plan.customers.len()] };
    let mut failure = None;
    for handle in handles {
        match handle.await.context("a sending task panicked").and_then(|r| r) {
            Ok(outcome) => {
                total.stats.merge(outcome.stats);
                for (sum, tally) in total.tallies.iter_mut().zip(&outcome.tallies) {
                    sum.merge(tally);
                }
            }
            Err(err) => failure = failure.or(Some(err)),
        }
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(total),
    }
}

/// One connection's loop and state.
struct Worker {
    index: usize,
    plan: Arc<Plan>,
    conn: Connection,
    rng: Rng,
    /// Which requests are adjustments.
    adjustments: Spread,
    writer: EventsWriter,
    /// Per customer: recently acknowledged events, for duplicates.
    rings: Vec<Ring<Event>>,
    /// The new events of the request being built (reused).
    fresh: Vec<Event>,
    next_seq: u64,
    outcome: SendOutcome,
}

impl Worker {
    fn new(index: usize, conn: Connection, plan: Arc<Plan>) -> Self {
        let customers = plan.customers.len();
        let mut rng = Rng::random();
        Self {
            index,
            adjustments: Spread::new(plan.adjustment_share, &mut rng),
            writer: EventsWriter::new(&plan.run, index),
            rings: (0..customers).map(|_| Ring::new()).collect(),
            fresh: Vec::with_capacity(plan.batch),
            next_seq: 0,
            outcome: SendOutcome { stats: SendStats::default(), tallies: vec![Tally::default(); customers] },
            rng,
            conn,
            plan,
        }
    }

    async fn run(mut self, deadline: Option<Instant>) -> anyhow::Result<SendOutcome> {
        let result = self.send_until_done(deadline).await;
        if result.is_err() {
            self.plan.abort.store(true, Relaxed);
        }
        result.map(|()| self.outcome)
    }

    async fn send_until_done(&mut self, deadline: Option<Instant>) -> anyhow::Result<()> {
        let plan = self.plan.clone();
        let customers = plan.customers.len();
        let offset = self.index * customers / plan.concurrency.max(1);
        let mut next_send = Instant::now();
        for turn in 0.. {
            if plan.rate_per_connection.is_some() && next_send > Instant::now() {
                if deadline.is_some_and(|d| next_send >= d) {
                    break;
                }
                tokio::time::sleep_until(next_send.into()).await;
            }
            if plan.abort.load(Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let customer = (offset + turn) % customers;
            if self.adjustments.pick() {
                self.adjust(customer, turn).await?;
                continue;
            }
            let n = plan.budget.as_ref().map_or(plan.batch, |b| b.claim(plan.batch));
            if n == 0 {
                break;
            }
            self.send_events(customer, n).await?;
            if let Some(rate) = plan.rate_per_connection {
                next_send += Duration::from_secs_f64(n as f64 / rate);
            }
        }
        Ok(())
    }

    /// One request of `n` events for `customer`, some of them duplicates.
    async fn send_events(&mut self, customer: usize, n: usize) -> anyhow::Result<()> {
        let duplicates = self.build_events(customer, n);
        let body = self.writer.finish();
        let acknowledged = self.deliver("/events", body).await?;
        let stats = &mut self.outcome.stats;
        if !acknowledged {
            stats.counts.events_refused += n as u64;
            return Ok(());
        }
        stats.counts.events_accepted += n as u64;
        stats.counts.unique_events += self.fresh.len() as u64;
        stats.counts.duplicates_sent += duplicates;
        let tally = &mut self.outcome.tallies[customer];
        for event in &self.fresh {
            tally.tokens[usize::from(event.combo)] += u64::from(event.tokens);
        }
        let ring = &mut self.rings[customer];
        for event in self.fresh.iter().rev().take(RING_CAPACITY).rev() {
            ring.push(*event);
        }
        Ok(())
    }

    /// Writes the request body; returns how many of its events are duplicates.
    fn build_events(&mut self, customer: usize, n: usize) -> u64 {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let at = occurred_at(now_ms);
        self.writer.begin(&self.plan.customers[customer]);
        self.fresh.clear();
        let (mut used, mut duplicates) = (0u32, 0);
        for _ in 0..n {
            if self.rng.chance(self.plan.duplicate_share) {
                if let Some(old) = self.rings[customer].pick(&mut self.rng, &mut used) {
                    self.writer.event(&old, &occurred_at(old.at_ms));
                    duplicates += 1;
                    continue;
                }
            }
            let event = Event {
                seq: self.next_seq,
                tokens: 1 + self.rng.below(u64::from(MAX_TOKENS)) as u32,
                combo: self.rng.below(COMBOS.len() as u64) as u8,
                at_ms: now_ms,
            };
            self.next_seq += 1;
            self.writer.event(&event, &at);
            self.fresh.push(event);
        }
        duplicates
    }

    /// A mix adjustment: a small top-up with a unique transaction id.
    async fn adjust(&mut self, customer: usize, turn: usize) -> anyhow::Result<()> {
        let id = format!("{}-adj-{}-{turn}", self.plan.run, self.index);
        let body = Bytes::from(topup_body(&id, adjustment_amount()));
        let path = format!("/customers/{}/wallet/adjustments", self.plan.customers[customer]);
        if self.deliver(&path, body).await? {
            self.outcome.stats.counts.adjustments_posted += 1;
            self.outcome.tallies[customer].adjustments += 1;
        }
        Ok(())
    }

    /// POSTs `body` until answered; true when acknowledged (2xx), false when refused.
    async fn deliver(&mut self, path: &str, body: Bytes) -> anyhow::Result<bool> {
        let Self { conn, rng, plan, outcome, .. } = self;
        let errors = &mut outcome.stats.errors;
        let answered = until_answered(
            conn,
            &Method::POST,
            path,
            &body,
            plan.give_up_after,
            || Duration::from_millis(50 + rng.below(151)),
            |key| *errors.entry(key.to_string()).or_default() += 1,
        )
        .await?;
        let stats = &mut outcome.stats;
        stats.counts.requests_sent += answered.attempts;
        let status = answered.answer.status;
        if status.is_success() {
            stats.counts.requests_acknowledged += 1;
            stats.latencies_us.push(u32::try_from(answered.latency.as_micros()).unwrap_or(u32::MAX));
            return Ok(true);
        }
        *stats.errors.entry(status.as_str().to_string()).or_default() += 1;
        if stats.refusals.len() < REFUSAL_SAMPLES {
            let text = String::from_utf8_lossy(&answered.answer.body);
            stats
                .refusals
                .push(format!("{status} on POST {path}: {}", text.chars().take(300).collect::<String>()));
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_hands_out_exactly_its_limit() {
        let budget = Budget::new(45);
        let claims: Vec<usize> = (0..6).map(|_| budget.claim(20)).collect();
        assert_eq!(claims, [20, 20, 5, 0, 0, 0]);
    }

    #[test]
    fn stats_and_tallies_sum_over_connections() {
        let mut a = SendStats {
            counts: Counts { requests_sent: 3, events_accepted: 40, ..Counts::default() },
            latencies_us: vec![5],
            ..Default::default()
        };
        a.errors.insert("429".into(), 2);
        let mut b = SendStats {
            counts: Counts { requests_sent: 1, unique_events: 7, ..Counts::default() },
            latencies_us: vec![9],
            ..Default::default()
        };
        b.errors.insert("429".into(), 1);
        b.errors.insert("transport".into(), 1);
        a.merge(b);
        assert_eq!((a.counts.requests_sent, a.counts.events_accepted, a.counts.unique_events), (4, 40, 7));
        assert_eq!(a.errors.get("429"), Some(&3));
        assert_eq!(a.latencies_us, [5, 9]);
        let mut t = Tally { tokens: [1, 2, 3, 4], adjustments: 1 };
        t.merge(&Tally { tokens: [10, 0, 0, 1], adjustments: 2 });
        assert_eq!(t, Tally { tokens: [11, 2, 3, 5], adjustments: 3 });
    }
}
