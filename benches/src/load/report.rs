//! What a load run found: throughput, latencies, postings, errors, the server's memory and the
//! money check, as a serializable [`Report`] (JSON via serde) and as an aligned text table.

use super::scrape::{self, Metrics};
use super::LoadOptions;
use schemas::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Mismatched customers listed in the table (the JSON has them all).
const MISMATCHES_SHOWN: usize = 10;

/// The options the run used.
#[derive(Clone, Debug, Serialize)]
pub struct OptionsEcho {
    pub customers: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Target events/s; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub duration_secs: Option<f64>,
    pub events: Option<u64>,
    pub duplicate_share: f64,
    pub adjustment_share: f64,
}

impl OptionsEcho {
    pub fn of(options: &LoadOptions) -> Self {
        Self {
            customers: options.customers,
            batch: options.batch,
            concurrency: options.concurrency,
            rate: options.rate,
            duration_secs: options.duration.map(|d| d.as_secs_f64()),
            events: options.events,
            duplicate_share: options.duplicate_share,
            adjustment_share: options.adjustment_share,
        }
    }
}

/// Client-measured latency of acknowledged requests, exact from the sorted samples (ms).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From samples in µs (nearest-rank percentiles; all zero without samples).
    pub fn of(mut micros: Vec<u32>) -> Self {
        micros.sort_unstable();
        let at = |q: f64| nearest_rank(&micros, q).map_or(0.0, |us| f64::from(us) / 1000.0);
        Self { count: micros.len(), p50_ms: at(0.5), p99_ms: at(0.99), p999_ms: at(0.999), max_ms: at(1.0) }
    }
}

/// The smallest sample with at least `q` of the samples at or below it.
fn nearest_rank(sorted: &[u32], q: f64) -> Option<u32> {
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()).checked_sub(1)?).copied()
}

/// From ingest acceptance to the fee on the balance, from the server's histogram. Quantiles are
/// bucket upper bounds ("≤"); `None` without observations, or when the quantile lies beyond the
/// largest finite bound (`count > 0`).
#[derive(Clone, Debug, Serialize)]
pub struct EventToBalance {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub largest_bound_ms: Option<f64>,
    pub source: &'static str,
}

impl EventToBalance {
    /// What the histogram recorded between two scrapes.
    pub fn between(before: &Metrics, after: &Metrics) -> Self {
        let delta = after.event_to_balance_since(before);
        // Rounded to the nanosecond so a bound like 0.0001 s reads 0.1 ms, not 0.10000000000000002.
        let ms = |seconds: Option<f64>| seconds.filter(|s| s.is_finite()).map(|s| (s * 1e9).round() / 1e6);
        Self {
            count: scrape::count(&delta),
            p50_ms: ms(scrape::quantile(&delta, 0.5)),
            p99_ms: ms(scrape::quantile(&delta, 0.99)),
            p999_ms: ms(scrape::quantile(&delta, 0.999)),
            largest_bound_ms: ms(scrape::largest_bound(&delta)),
            source: "server histogram drawdown_event_to_balance_seconds (bucket upper bounds)",
        }
    }
}

/// Ledger postings (fees and adjustments), from the server's counter.
#[derive(Clone, Debug, Serialize)]
pub struct Postings {
    /// Posted while sending.
    pub during_run: u64,
    pub per_sec_during_run: f64,
    /// From the end of sending until every acknowledged fee and adjustment was posted; `None` if
    /// that did not happen within the settle timeout.
    pub drain_seconds: Option<f64>,
    /// Posted while sending and draining.
    pub total: u64,
    /// `total` over sending plus draining; `None` when the drain was not timed.
    pub per_sec_overall: Option<f64>,
}

/// The server's memory (from `/proc/<pid>/status`).
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    /// `VmHWM`: peak resident set.
    pub peak_kib: u64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// `(seconds into the send phase, VmRSS KiB)`, every second.
    pub samples: Vec<(f64, u64)>,
}

/// A customer whose balance is not what was sent.
#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    pub customer_id: String,
    pub expected: Decimal,
    /// `None` when the balance could not be read.
    pub actual: Option<Decimal>,
}

/// The money check.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub customers_checked: usize,
    pub mismatches: Vec<Mismatch>,
    pub passed: bool,
}

/// What the sending connections sent and got acknowledged (summed over connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// HTTP requests of the send phase, retries included.
    pub requests_sent: u64,
    pub requests_acknowledged: u64,
    /// Events in 2xx answers, deliberate duplicates included.
    pub events_accepted: u64,
    /// Distinct new events acknowledged.
    pub unique_events: u64,
    /// Deliberate re-sends of acknowledged events, in acknowledged requests.
    pub duplicates_sent: u64,
    /// Events in requests refused with a non-retryable status.
    pub events_refused: u64,
    pub adjustments_posted: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.requests_sent += other.requests_sent;
        self.requests_acknowledged += other.requests_acknowledged;
        self.events_accepted += other.events_accepted;
        self.unique_events += other.unique_events;
        self.duplicates_sent += other.duplicates_sent;
        self.events_refused += other.events_refused;
        self.adjustments_posted += other.adjustments_posted;
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub options: OptionsEcho,
    /// Wall time of the send phase.
    pub send_seconds: f64,
    /// What was sent and acknowledged.
    #[serde(flatten)]
    pub counts: Counts,
    pub accepted_events_per_sec: f64,
    /// New events the server made durable meanwhile (its counter's delta; duplicates it caught
    /// are not counted, so this equals `unique_events` on a server with no other client).
    pub server_events_accepted: u64,
    pub request_latency: Latency,
    pub event_to_balance: EventToBalance,
    pub postings: Postings,
    /// Status code or `transport` → failed attempts (retried ones and refusals).
    pub errors_by_status: BTreeMap<String, u64>,
    /// The first refusals verbatim.
    pub refusals: Vec<String>,
    /// `None` without a server pid.
    pub memory: Option<MemoryReport>,
    pub verification: Verification,
}

impl Report {
    /// Why the run failed, or `None` when it passed: balances verified, events accepted, and
    /// no request refused (every request the generator sends is valid, so a refusal other than
    /// the 429/503 it retries is the server's fault, even if the balances agree without it).
    pub fn failure(&self) -> Option<String> {
        let v = &self.verification;
        if !v.passed {
            return Some(format!(
                "verification failed: {} of {} customers have another balance than expected",
                v.mismatches.len(),
                v.customers_checked
            ));
        }
        if let Some(first) = self.refusals.first() {
            return Some(format!("the server refused valid requests, first: {first}"));
        }
        (self.counts.events_accepted == 0).then(|| "no event was accepted".to_string())
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The report as an aligned, human-readable table.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        self.run_rows(&mut rows);
        self.latency_rows(&mut rows);
        self.server_rows(&mut rows);
        self.verification_rows(&mut rows);
        let width = rows.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
        let mut out = String::from("drawdown load run\n");
        for (label, value) in rows {
            let _ = writeln!(out, "  {label:<width$}  {value}");
        }
        out
    }

    fn run_rows(&self, rows: &mut Vec<(String, String)>) {
        let o = &self.options;
        let row = |label: &str, value: String| (label.to_string(), value);
        let limits = match (o.duration_secs, o.events) {
            (Some(d), Some(n)) => format!("{d} s or {n} events"),
            (Some(d), None) => format!("{d} s"),
            (None, Some(n)) => format!("{n} events"),
            (None, None) => "none".to_string(),
        };
        rows.extend([
            row("customers", o.customers.to_string()),
            row("batch (events/request)", o.batch.to_string()),
            row("concurrency (connections)", o.concurrency.to_string()),
            row("target rate", o.rate.map_or("unlimited".to_string(), |r| format!("{r} events/s"))),
            row("limit", limits),
            row("duplicate / adjustment share", format!("{} / {}", o.duplicate_share, o.adjustment_share)),
            row("send phase", format!("{:.2} s", self.send_seconds)),
            row(
                "requests sent / acknowledged",
                format!("{} / {}", self.counts.requests_sent, self.counts.requests_acknowledged),
            ),
            row("events accepted", self.counts.events_accepted.to_string()),
            row("accepted events/s", format!("{:.0}", self.accepted_events_per_sec)),
            row("unique events", self.counts.unique_events.to_string()),
            row("new events per server counter", self.server_events_accepted.to_string()),
            row("duplicates sent", self.counts.duplicates_sent.to_string()),
            row("events refused", self.counts.events_refused.to_string()),
            row("adjustments posted", self.counts.adjustments_posted.to_string()),
        ]);
    }

    fn latency_rows(&self, rows: &mut Vec<(String, String)>) {
        let l = &self.request_latency;
        rows.push((
            "request latency p50/p99/p999/max".to_string(),
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms ({} acknowledged requests, client-measured)",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
        ));
        let e = &self.event_to_balance;
        let bound = |q: Option<f64>| match (q, e.largest_bound_ms) {
            (Some(ms), _) => format!("≤ {ms}"),
            (None, Some(largest)) if e.count > 0 => format!("> {largest}"),
            _ => "-".to_string(),
        };
        rows.push((
            "event-to-balance p50/p99/p999".to_string(),
            format!(
                "{} / {} / {} ms ({} events; server histogram bucket upper bounds)",
                bound(e.p50_ms),
                bound(e.p99_ms),
                bound(e.p999_ms),
                e.count
            ),
        ));
    }

    fn server_rows(&self, rows: &mut Vec<(String, String)>) {
        let p = &self.postings;
        let drain = p
            .drain_seconds
            .map_or("not finished within the settle timeout".to_string(), |s| format!("{s:.2} s"));
        let errors = if self.errors_by_status.is_empty() {
            "none".to_string()
        } else {
            self.errors_by_status.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
        };
        rows.extend([
            ("postings during run".to_string(), format!("{} ({:.0}/s)", p.during_run, p.per_sec_during_run)),
            ("drain after sending".to_string(), drain),
            (
                "postings overall".to_string(),
                match p.per_sec_overall {
                    Some(rate) => format!("{} ({rate:.0}/s, sending + drain)", p.total),
                    None => format!("{} (drain not timed)", p.total),
                },
            ),
            ("errors by status".to_string(), errors),
        ]);
        for refusal in &self.refusals {
            rows.push(("refused".to_string(), refusal.clone()));
        }
        let Some(m) = &self.memory else {
            rows.push(("server memory".to_string(), "n/a (no server pid)".to_string()));
            return;
        };
        rows.extend([
            ("server peak memory (VmHWM)".to_string(), kib(m.peak_kib)),
            (
                "server RSS start / end".to_string(),
                format!("{} / {}", kib(m.rss_start_kib), kib(m.rss_end_kib)),
            ),
            ("server RSS samples (1/s)".to_string(), m.samples.len().to_string()),
        ]);
    }

    fn verification_rows(&self, rows: &mut Vec<(String, String)>) {
        let v = &self.verification;
        let verdict = if v.passed {
            format!("PASSED: all {} customer balances as expected", v.customers_checked)
        } else {
            format!("FAILED: {} of {} customer balances differ", v.mismatches.len(), v.customers_checked)
        };
        rows.push(("verification".to_string(), verdict));
        for m in v.mismatches.iter().take(MISMATCHES_SHOWN) {
            let actual = m.actual.map_or("unreadable".to_string(), |a| a.to_string());
            rows.push((
                "mismatch".to_string(),
                format!("{}: expected {}, got {actual}", m.customer_id, m.expected),
            ));
        }
    }
}

fn kib(k: u64) -> String {
    format!("{:.1} MiB ({k} KiB)", k as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            options: OptionsEcho {
                customers: 4,
                batch: 20,
                concurrency: 2,
                rate: Some(1000.0),
                duration_secs: None,
                events: Some(2000),
                duplicate_share: 0.05,
                adjustment_share: 0.05,
            },
            send_seconds: 2.5,
            counts: Counts {
                requests_sent: 110,
                requests_acknowledged: 105,
                events_accepted: 2000,
                unique_events: 1900,
                duplicates_sent: 100,
                events_refused: 0,
                adjustments_posted: 5,
            },
            accepted_events_per_sec: 800.0,
            server_events_accepted: 1900,
            request_latency: Latency::of(vec![1000, 2000, 3000]),
            event_to_balance: EventToBalance::between(
                &Metrics::default(),
                &Metrics {
                    event_to_balance: vec![(0.005, 1000.0), (f64::INFINITY, 1900.0)],
                    ..Default::default()
                },
            ),
            postings: Postings {
                during_run: 1800,
                per_sec_during_run: 720.0,
                drain_seconds: Some(0.25),
                total: 1905,
                per_sec_overall: Some(691.0),
            },
            errors_by_status: BTreeMap::from([("429".to_string(), 5)]),
            refusals: vec!["422 on POST /events: bad".to_string()],
            memory: Some(MemoryReport {
                peak_kib: 2048,
                rss_start_kib: 1024,
                rss_end_kib: 1536,
                samples: vec![(1.0, 1100)],
            }),
            verification: Verification {
                customers_checked: 4,
                mismatches: vec![Mismatch {
                    customer_id: "cust_1".to_string(),
                    expected: Decimal::new(1, 2),
                    actual: None,
                }],
                passed: false,
            },
        }
    }

    #[test]
    fn latency_percentiles_are_exact_nearest_ranks() {
        let l = Latency::of((1..=1000).rev().map(|i| i * 1000).collect());
        assert_eq!((l.count, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms), (1000, 500.0, 990.0, 999.0, 1000.0));
        let one = Latency::of(vec![1500]);
        assert_eq!((one.p50_ms, one.max_ms), (1.5, 1.5));
        assert_eq!(Latency::of(Vec::new()).max_ms, 0.0);
    }

    #[test]
    fn the_table_shows_every_field() {
        let table = sample().table();
        for label in [
            "customers",
            "batch",
            "concurrency",
            "target rate",
            "limit",
            "send phase",
            "requests sent / acknowledged",
            "events accepted",
            "accepted events/s",
            "unique events",
            "new events per server counter",
            "duplicates sent",
            "events refused",
            "adjustments posted",
            "request latency p50/p99/p999/max",
            "event-to-balance p50/p99/p999",
            "≤ 5 / > 5 / > 5 ms (1900 events",
            "postings during run",
            "drain after sending",
            "postings overall",
            "429: 5",
            "422 on POST /events",
            "server peak memory (VmHWM)",
            "server RSS start / end",
            "server RSS samples",
            "FAILED: 1 of 4",
            "cust_1: expected 0.01, got unreadable",
        ] {
            assert!(table.contains(label), "`{label}` missing from:\n{table}");
        }
    }

    #[test]
    fn the_json_has_every_field() {
        let json: serde_json::Value = serde_json::from_str(&sample().json().unwrap()).unwrap();
        for key in [
            "options",
            "send_seconds",
            "requests_sent",
            "requests_acknowledged",
            "events_accepted",
            "unique_events",
            "duplicates_sent",
            "events_refused",
            "adjustments_posted",
            "accepted_events_per_sec",
            "server_events_accepted",
            "request_latency",
            "event_to_balance",
            "postings",
            "errors_by_status",
            "refusals",
            "memory",
            "verification",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        assert_eq!(json["options"]["rate"], 1000.0);
        assert_eq!(json["request_latency"]["p99_ms"], 3.0);
        assert_eq!(json["event_to_balance"]["p50_ms"], 5.0);
        assert!(json["event_to_balance"]["p99_ms"].is_null());
        assert_eq!(json["postings"]["drain_seconds"], 0.25);
        assert_eq!(json["errors_by_status"]["429"], 5);
        assert_eq!(json["memory"]["peak_kib"], 2048);
        assert_eq!(json["memory"]["samples"][0][1], 1100);
        assert_eq!(json["verification"]["mismatches"][0]["expected"].to_string(), "0.01");
        assert_eq!(json["verification"]["passed"], false);
        assert_eq!(
            sample().failure().as_deref(),
            Some("verification failed: 1 of 4 customers have another balance than expected")
        );
    }

    #[test]
    fn a_refused_request_fails_a_run_whose_balances_verify() {
        let mut report = sample();
        report.verification.passed = true;
        report.verification.mismatches.clear();
        assert_eq!(
            report.failure().as_deref(),
            Some("the server refused valid requests, first: 422 on POST /events: bad")
        );
        report.refusals.clear();
        assert_eq!(report.failure(), None);
    }
}
