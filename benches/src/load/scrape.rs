//! Reading the server's `GET /metrics` (Prometheus text format): the counters the report
//! differences between two scrapes, and the event-to-balance histogram, whose quantiles are
//! bucket upper bounds. Bucket bounds are read from the `le` labels, whatever they are.

/// The histogram of the time from ingest acceptance to the fee on the balance.
const EVENT_TO_BALANCE: &str = "drawdown_event_to_balance_seconds_bucket";
const POSTINGS: &str = "drawdown_writer_postings_total";
const EVENTS_ACCEPTED: &str = "drawdown_events_accepted_total";
const RENEWED: &str = "drawdown_subscriptions_renewed_total";
const BATCHES: &str = "drawdown_writer_batch_size_count";
const BATCH_RECORDS: &str = "drawdown_writer_batch_size_sum";
const COMMIT_SECONDS: &str = "drawdown_writer_commit_seconds_sum";

/// What one scrape said (absent samples read as zero).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub postings: f64,
    pub events_accepted: f64,
    /// Subscription renewals applied by the writers.
    pub renewed: f64,
    /// Writer batches committed, the records they held, and the seconds their commits took.
    pub batches: f64,
    pub batch_records: f64,
    pub commit_seconds: f64,
    /// `(upper bound in seconds, cumulative count)`, sorted by bound; `+Inf` is infinity.
    pub event_to_balance: Vec<(f64, f64)>,
}

impl Metrics {
    /// Postings since `before` (the counter only grows).
    pub fn postings_since(&self, before: &Metrics) -> u64 {
        (self.postings - before.postings).max(0.0).round() as u64
    }

    /// Events the server accepted since `before`.
    pub fn events_accepted_since(&self, before: &Metrics) -> u64 {
        (self.events_accepted - before.events_accepted).max(0.0).round() as u64
    }

    /// The event-to-balance histogram of what happened since `before`: cumulative counts per
    /// bound of this scrape, minus the same bound's count then.
    pub fn event_to_balance_since(&self, before: &Metrics) -> Vec<(f64, f64)> {
        self.event_to_balance
            .iter()
            .map(|&(bound, count)| {
                let earlier = before.event_to_balance.iter().find(|(b, _)| *b == bound).map_or(0.0, |e| e.1);
                (bound, (count - earlier).max(0.0))
            })
            .collect()
    }
}

/// Parses a Prometheus text exposition; unknown lines are ignored.
pub fn parse(text: &str) -> Metrics {
    let mut metrics = Metrics::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((name, labels, value)) = sample(line) else { continue };
        match name {
            POSTINGS => metrics.postings = value,
            EVENTS_ACCEPTED => metrics.events_accepted = value,
            RENEWED => metrics.renewed = value,
            BATCHES => metrics.batches = value,
            BATCH_RECORDS => metrics.batch_records = value,
            COMMIT_SECONDS => metrics.commit_seconds = value,
            EVENT_TO_BALANCE => {
                if let Some(bound) = label(labels, "le").and_then(number) {
                    metrics.event_to_balance.push((bound, value));
                }
            }
            _ => {}
        }
    }
    metrics.event_to_balance.sort_by(|a, b| a.0.total_cmp(&b.0));
    metrics
}

/// `name{labels} value [timestamp]` → (name, labels without braces, value).
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(i) if line[i..].starts_with('{') => {
            let close = line.rfind('}')?;
            (&line[..i], line.get(i + 1..close)?, &line[close + 1..])
        }
        Some(i) => (&line[..i], "", &line[i..]),
        None => return None,
    };
    let value = rest.split_whitespace().next()?;
    Some((name, labels, number(value)?))
}

/// A label's value in `a="x",b="y"` (no escaped quotes expected in bounds).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// A sample value or bucket bound: a float, or `+Inf`.
fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The total count of a cumulative histogram (its largest cumulative count).
pub fn count(buckets: &[(f64, f64)]) -> u64 {
    buckets.iter().map(|b| b.1).fold(0.0, f64::max).round() as u64
}

/// The upper bound (seconds) of the first bucket whose cumulative count reaches `q` of the total;
/// `None` without observations. Infinity when it is the `+Inf` bucket.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = count(buckets);
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil().max(1.0);
    buckets.iter().find(|(_, cumulative)| *cumulative >= want).map(|b| b.0).or(Some(f64::INFINITY))
}

/// The largest finite bucket bound, seconds.
pub fn largest_bound(buckets: &[(f64, f64)]) -> Option<f64> {
    buckets.iter().map(|b| b.0).filter(|b| b.is_finite()).reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP drawdown_writer_postings_total Transactions posted.
# TYPE drawdown_writer_postings_total counter
drawdown_writer_postings_total 10
drawdown_events_accepted_total 100
drawdown_event_to_balance_seconds_bucket{le=\"0.001\"} 5
drawdown_event_to_balance_seconds_bucket{le=\"0.01\"} 10
drawdown_event_to_balance_seconds_bucket{le=\"0.1\"} 10
drawdown_event_to_balance_seconds_bucket{le=\"+Inf\"} 10
drawdown_event_to_balance_seconds_sum 0.02
drawdown_event_to_balance_seconds_count 10
drawdown_log_append_seconds_bucket{le=\"0.001\"} 999
";

    const AFTER: &str = "\
drawdown_writer_postings_total 1.01e3
drawdown_events_accepted_total 1100
drawdown_event_to_balance_seconds_bucket{le=\"+Inf\"} 1010
drawdown_event_to_balance_seconds_bucket{le=\"0.001\"} 5
drawdown_event_to_balance_seconds_bucket{le=\"0.01\"} 510
drawdown_event_to_balance_seconds_bucket{job=\"x\",le=\"0.1\"} 1000 1700000000000
";

    #[test]
    fn counters_and_buckets_are_read_from_prometheus_text() {
        let m = parse(BEFORE);
        assert_eq!((m.postings, m.events_accepted), (10.0, 100.0));
        assert_eq!(m.event_to_balance, [(0.001, 5.0), (0.01, 10.0), (0.1, 10.0), (f64::INFINITY, 10.0)]);
        let after = parse(AFTER);
        assert_eq!(after.postings_since(&m), 1000);
        assert_eq!(after.events_accepted_since(&m), 1000);
        assert_eq!(after.event_to_balance[3].0, f64::INFINITY, "sorted by bound, +Inf last");
        assert_eq!(parse("garbage\nx{le=\"1\" 3\n"), Metrics::default());
    }

    #[test]
    fn quantiles_are_the_bound_where_the_cumulative_delta_reaches_q() {
        let delta = parse(AFTER).event_to_balance_since(&parse(BEFORE));
        assert_eq!(delta, [(0.001, 0.0), (0.01, 500.0), (0.1, 990.0), (f64::INFINITY, 1000.0)]);
        assert_eq!(count(&delta), 1000);
        assert_eq!(quantile(&delta, 0.5), Some(0.01));
        assert_eq!(quantile(&delta, 0.501), Some(0.1));
        assert_eq!(quantile(&delta, 0.99), Some(0.1));
        assert_eq!(quantile(&delta, 0.999), Some(f64::INFINITY));
        assert_eq!(largest_bound(&delta), Some(0.1));
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn other_bucket_layouts_are_read_generically() {
        let text = "drawdown_event_to_balance_seconds_bucket{le=\"0.0075\"} 3\n\
                    drawdown_event_to_balance_seconds_bucket{le=\"30\"} 4\n\
                    drawdown_event_to_balance_seconds_bucket{le=\"+Inf\"} 4\n";
        let m = parse(text);
        let delta = m.event_to_balance_since(&Metrics::default());
        assert_eq!(quantile(&delta, 0.5), Some(0.0075));
        assert_eq!(quantile(&delta, 0.99), Some(30.0));
    }
}
