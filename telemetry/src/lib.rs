//! Process-wide metrics: plain atomics (no locks, no allocation on the hot path), one static
//! [`METRICS`] that every stage records into, rendered as Prometheus text for `GET /metrics`.
//!
//! Counters only grow; tests that look at them compare before/after values, because several
//! in-process servers share the one process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A monotonically increasing count.
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// A value that goes up and down (e.g. rater lag in records).
pub struct Gauge(AtomicU64);

impl Gauge {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Gauge {
    fn default() -> Self {
        Self::new()
    }
}

/// A gauge per (stage, partition): bounded labels (a process has a few stages and at most the
/// partition count of each). Set off the hot path (lease rounds, backlog refreshes), so a short
/// lock is fine.
pub struct PartitionGauge(Mutex<BTreeMap<(&'static str, u32), u64>>);

impl PartitionGauge {
    pub const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    pub fn set(&self, stage: &'static str, partition: u32, v: u64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert((stage, partition), v);
    }

    pub fn get(&self, stage: &'static str, partition: u32) -> Option<u64> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&(stage, partition)).copied()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for ((stage, partition), v) in self.0.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "{name}{{stage=\"{stage}\",partition=\"{partition}\"}} {v}");
        }
    }
}

impl Default for PartitionGauge {
    fn default() -> Self {
        Self::new()
    }
}

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s, in 1-2-5 steps, and finer
/// steps around the latency targets (a p99 of "≤ 20 ms" must be readable, and one of 25 ms
/// must not read as 50) and above a second (the balance lag ingest's backlog bound allows).
pub const LATENCY_BUCKETS: [f64; 23] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
];

/// Upper bounds of the size buckets (records per batch).
pub const SIZE_BUCKETS: [f64; 16] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
    65536.0,
];

/// Buckets a histogram can have (its bounds and the overflow): the latency histogram has the
/// most bounds.
const MAX_BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// A fixed-bucket histogram (cumulative on render, like Prometheus expects).
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the overflow; histograms use the first `bounds.len() + 1`.
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    /// Sum in micro-units (µs for latencies, units for sizes) to stay integral.
    sum_micros: AtomicU64,
    scale: f64,
}

impl Histogram {
    /// Latencies in seconds.
    pub const fn latency() -> Self {
        Self::with(&LATENCY_BUCKETS, 1e6)
    }

    /// Sizes (counts of things).
    pub const fn size() -> Self {
        Self::with(&SIZE_BUCKETS, 1.0)
    }

    const fn with(bounds: &'static [f64], scale: f64) -> Self {
        assert!(bounds.len() < MAX_BUCKETS);
        Self {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
            scale,
        }
    }

    pub fn observe(&self, value: f64) {
        let value = if value.is_finite() && value > 0.0 { value } else { 0.0 };
        let i = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * self.scale) as u64, Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The smallest bucket bound below which at least `q` (0..=1) of the observations fall;
    /// `None` without observations. Coarse by construction (bucket resolution).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().take(self.bounds.len() + 1).enumerate() {
            seen += b.load(Relaxed);
            if seen >= want {
                return Some(self.bounds.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / self.scale);
        let _ = writeln!(out, "{name}_count {}", self.count.load(Relaxed));
    }
}

macro_rules! metrics {
    ($($field:ident: $kind:ident = $ctor:expr, $help:literal;)*) => {
        /// Every metric drawdown exports. Names are `drawdown_<field>`.
        pub struct Metrics {
            $(#[doc = $help] pub $field: $kind,)*
        }

        /// The process's metrics.
        pub static METRICS: Metrics = Metrics { $($field: $ctor,)* };

        impl Metrics {
            /// Prometheus text exposition format (version 0.0.4).
            pub fn render(&self) -> String {
                let mut out = String::with_capacity(8 * 1024);
                $(metrics!(@render self, out, $field, $kind, $help);)*
                out
            }
        }
    };
    (@render $self:ident, $out:ident, $field:ident, Counter, $help:literal) => {
        let _ = writeln!($out, "# HELP drawdown_{0} {1}\n# TYPE drawdown_{0} counter\ndrawdown_{0} {2}",
            stringify!($field), $help, $self.$field.get());
    };
    (@render $self:ident, $out:ident, $field:ident, Gauge, $help:literal) => {
        let _ = writeln!($out, "# HELP drawdown_{0} {1}\n# TYPE drawdown_{0} gauge\ndrawdown_{0} {2}",
            stringify!($field), $help, $self.$field.get());
    };
    (@render $self:ident, $out:ident, $field:ident, PartitionGauge, $help:literal) => {
        $self.$field.render(&mut $out, concat!("drawdown_", stringify!($field)), $help);
    };
    (@render $self:ident, $out:ident, $field:ident, Histogram, $help:literal) => {
        $self.$field.render(&mut $out, concat!("drawdown_", stringify!($field)), $help);
    };
}

metrics! {
    events_accepted_total: Counter = Counter::new(), "Usage events accepted (durable in usage.raw).";
    events_duplicate_total: Counter = Counter::new(), "Usage events dropped as duplicates of an earlier (customer, event id).";
    events_duplicate_conflict_total: Counter = Counter::new(), "Duplicates whose body differed from the first (the first wins).";
    events_rejected_total: Counter = Counter::new(), "Usage events in requests rejected with 400/422.";
    ingest_overload_total: Counter = Counter::new(), "POST /events requests refused with 429 by admission control (byte budget or backlog).";
    ingest_backlog_ms: Gauge = Gauge::new(), "Age of the oldest partition backlog (records the raters or ledger writers have not processed), in ms, as ingest last measured it.";
    partition_backlog_ms: PartitionGauge = PartitionGauge::new(), "Per partition (stage `ingest`): age of the oldest record its raters or ledger writers have not processed, in ms, as ingest last measured it.";
    partition_owned: PartitionGauge = PartitionGauge::new(), "Per stage (`raters`, `writers`) and partition: 1 while this process owns the partition, 0 otherwise.";
    log_append_seconds: Histogram = Histogram::latency(), "Latency of a durable log append (queue + write + fsync).";
    log_fsync_seconds: Histogram = Histogram::latency(), "Latency of one fsync of a log segment (one group commit).";
    rater_events_total: Counter = Counter::new(), "Events rated and forwarded to ledger.input.";
    rater_lag_records: Gauge = Gauge::new(), "usage.raw records not yet rated, summed over partitions.";
    writer_inputs_total: Counter = Counter::new(), "ledger.input records applied by the ledger writers.";
    writer_postings_total: Counter = Counter::new(), "Transactions posted (fees, charges, adjustments, expiries).";
    http_handler_panics_total: Counter = Counter::new(), "Requests whose handler panicked, answered with a 500 ProblemDetails (a bug: every one is logged).";
    subscriptions_renewed_total: Counter = Counter::new(), "Subscription periods renewed by the ledger writers (one per subscription and renewal instant).";
    writer_fenced_total: Counter = Counter::new(), "Writer batches refused by the epoch fence: this process had lost the partition (a zombie) and posted none of them.";
    writer_batch_size: Histogram = Histogram::size(), "ledger.input records per writer batch.";
    writer_commit_seconds: Histogram = Histogram::latency(), "Latency of a writer batch's atomic store write.";
    event_to_balance_seconds: Histogram = Histogram::latency(), "From ingest acceptance to the fee posted on the balance.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_and_answer_quantiles() {
        let h = Histogram::latency();
        for ms in [0.5, 0.7, 3.0, 40.0] {
            h.observe(ms / 1000.0);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4"), "{out}");
        assert!(out.contains("x_count 4"), "{out}");
        assert_eq!(h.quantile(0.5), Some(0.001));
        assert_eq!(h.quantile(0.99), Some(0.04));
    }

    #[test]
    fn latency_buckets_rise_and_step_through_seconds_too() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        let h = Histogram::latency();
        h.observe(2.0);
        assert_eq!(h.quantile(1.0), Some(2.0), "2 s reads as <= 2 s, not <= 10 s");
        h.observe(60.0);
        assert_eq!(h.quantile(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn every_metric_is_rendered_with_type_and_help() {
        METRICS.events_accepted_total.add(1);
        let text = METRICS.render();
        assert!(text.contains("# TYPE drawdown_events_accepted_total counter"));
        assert!(text.contains("# TYPE drawdown_event_to_balance_seconds histogram"));
        assert!(text.contains("# TYPE drawdown_rater_lag_records gauge"));
    }

    #[test]
    fn partition_gauges_render_one_line_per_stage_and_partition() {
        let g = PartitionGauge::new();
        g.set("writers", 3, 1);
        g.set("raters", 0, 0);
        g.set("writers", 3, 0);
        let mut out = String::new();
        g.render(&mut out, "x", "help");
        assert!(out.contains("x{stage=\"writers\",partition=\"3\"} 0"), "{out}");
        assert!(out.contains("x{stage=\"raters\",partition=\"0\"} 0"), "{out}");
        assert_eq!(out.lines().count(), 4, "{out}");
    }
}
