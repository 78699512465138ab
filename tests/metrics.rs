//! `GET /metrics` counts what the pipeline did. The metrics are process-wide, so this is the only
//! test in its binary: every change between two scrapes is this test's own doing.

mod common;

use common::{eventually, must, now, send_usage, subscribed_customer, unique, unit_price, TestServer};
use serde_json::json;

fn scrape(base: &str) -> String {
    let (status, text) = common::request(base, None, "GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    text.as_str().expect("prometheus text").to_string()
}

/// The value of an unlabelled sample (`name value`).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[test]
fn metrics_count_accepted_duplicate_and_rejected_events_and_time_them_to_the_balance() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "1")]));
    let before = scrape(&s.base);
    let (first, second) = (unique("m-"), unique("m-"));
    let events = json!([
        {"id": first, "event_type": "image", "occurred_at": now()},
        {"id": second, "event_type": "image", "occurred_at": now()}
    ]);
    send_usage(&s.base, &json!({"customer_id": customer, "events": events}));
    // The same two again: duplicates, no effect (and never refused: they are acknowledged).
    must(&s.base, 204, "POST", "/events", Some(json!({"customer_id": customer, "events": events})));
    let (status, _) = s.call(
        "POST",
        "/events",
        Some(json!({"customer_id": customer, "events": [{"id": "late", "event_type": "image", "occurred_at": "2020-01-01T00:00:00Z"}]})),
    );
    assert_eq!(status, 422);
    eventually("both events timed to the balance", || {
        let text = scrape(&s.base);
        let timed = sample(&text, "drawdown_event_to_balance_seconds_count")
            - sample(&before, "drawdown_event_to_balance_seconds_count");
        (timed >= 2.0).then_some(())
    });
    // Scraped again: a scrape is not a snapshot, and one taken while the writer was recording
    // the batch can show its latencies (recorded last) without its postings (recorded first).
    let after = scrape(&s.base);
    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(delta("drawdown_events_accepted_total"), 2.0);
    assert_eq!(delta("drawdown_events_duplicate_total"), 2.0);
    assert_eq!(delta("drawdown_events_rejected_total"), 1.0);
    assert_eq!(delta("drawdown_event_to_balance_seconds_count"), 2.0);
    assert_eq!(delta("drawdown_writer_postings_total"), 2.0, "two fees");
    assert!(delta("drawdown_log_append_seconds_count") >= 1.0);
    assert!(delta("drawdown_log_fsync_seconds_count") >= 1.0);
    assert!(delta("drawdown_writer_commit_seconds_count") >= 1.0);
    assert!(delta("drawdown_rater_events_total") >= 2.0);
}
