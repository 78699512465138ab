//! The load generator (`benches::load`) against an in-process server: a short run with
//! duplicates and adjustments whose every customer balance must verify exactly. The only test in
//! its binary, because the server's metrics are process-wide and the report differences them.

mod common;

use benches::load::{self, LoadOptions};
use std::time::Duration;

#[test]
fn a_short_load_run_is_measured_and_every_balance_verifies() {
    let server = common::TestServer::start();
    let options = LoadOptions {
        customers: 4,
        batch: 20,
        concurrency: 2,
        events: Some(2_000),
        duplicate_share: 0.05,
        adjustment_share: 0.05,
        server_pid: Some(std::process::id()),
        settle_timeout: Duration::from_secs(60),
        ..LoadOptions::new(server.base.clone(), common::KEY)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let report = runtime.block_on(load::run(options)).expect("the load run");
    let table = report.table();
    println!("{table}");

    let v = &report.verification;
    assert!(v.passed && v.mismatches.is_empty(), "{table}");
    assert_eq!(v.customers_checked, 4);
    assert_eq!(report.failure(), None);
    // Exactly the event budget was sent and acknowledged: 100 requests of 20, new or duplicate.
    assert_eq!(report.counts.events_accepted, 2_000, "{table}");
    assert_eq!(report.counts.unique_events + report.counts.duplicates_sent, 2_000);
    assert_eq!(
        report.server_events_accepted, report.counts.unique_events,
        "the server dropped the duplicates"
    );
    assert_eq!(report.counts.events_refused, 0, "{:?}", report.refusals);
    assert!(report.counts.duplicates_sent > 0, "{table}");
    assert!(report.counts.adjustments_posted > 0, "{table}");
    assert_eq!(report.counts.requests_acknowledged, 100 + report.counts.adjustments_posted);
    assert!(report.counts.requests_sent >= report.counts.requests_acknowledged);
    assert!(
        report.errors_by_status.keys().all(|k| ["429", "503", "transport"].contains(&k.as_str())),
        "{:?}",
        report.errors_by_status
    );
    // One fee per distinct event plus the adjustments, all posted; each event timed to the balance.
    assert_eq!(
        report.postings.total,
        report.counts.unique_events + report.counts.adjustments_posted,
        "{table}"
    );
    assert!(report.postings.drain_seconds.is_some());
    assert_eq!(report.event_to_balance.count, report.counts.unique_events, "{table}");
    assert!(report.event_to_balance.p50_ms.is_some());
    assert_eq!(report.request_latency.count as u64, report.counts.requests_acknowledged);
    assert!(report.accepted_events_per_sec > 0.0);
    let memory = report.memory.as_ref().expect("memory with a pid");
    assert!(memory.peak_kib > 0 && memory.rss_end_kib > 0);
    let json: serde_json::Value = serde_json::from_str(&report.json().expect("json")).expect("valid json");
    assert_eq!(json["verification"]["passed"], true);
}
