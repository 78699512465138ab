//! JSON event parsing as ingest and the raters do it: a `POST /events` body parsed into a
//! `UsageRequest` (the API handler) and validated (ingest), and the `usage.raw` record encoded
//! (ingest) and decoded (a rater). Bodies and records are built and checked outside the timed
//! loops, and what an iteration builds is dropped outside them too (`iter_with_large_drop`);
//! throughput is events per second, and bytes per second in `parse_bytes`.
//!
//! A custom `main` instead of `criterion_main!`, so a broken fixture is an error, not a panic;
//! the allocator is mimalloc, as in the `drawdown` binary.

use anyhow::{ensure, Context};
use benches::fixtures;
use criterion::{black_box, Criterion, Throughput};
use schemas::ledger::{RawUsage, UsageRequest};
use schemas::{validate, Timestamp};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events in the large request: a typical batching client.
const EVENTS: usize = 100;

/// A request body, its request as parsed, and the moment validation takes as `now`.
struct Request {
    events: usize,
    body: Vec<u8>,
    parsed: UsageRequest,
    now: Timestamp,
}

impl Request {
    /// A body of `events` events whose last one occurred a second before `now`, checked to parse
    /// back into the request it was made from and to pass validation.
    fn new(events: usize, now: Timestamp) -> anyhow::Result<Self> {
        let until = now - chrono::Duration::seconds(1);
        let body = fixtures::usage_request_body(events, until)?;
        let parsed: UsageRequest = serde_json::from_slice(&body).context("parse the request body")?;
        ensure!(
            parsed == fixtures::usage_request(events, until),
            "the body does not parse back to its request"
        );
        if let Err(errors) = validate::usage_request(&parsed, now) {
            anyhow::bail!("the benched request is invalid: {:?}", errors.into_map());
        }
        Ok(Self { events, body, parsed, now })
    }
}

fn parse_request(c: &mut Criterion, small: &Request, large: &Request) {
    let mut group = c.benchmark_group("parse");
    for request in [large, small] {
        group.throughput(Throughput::Elements(request.events as u64));
        group.bench_function(format!("usage_request_{}", request.events), |b| {
            b.iter_with_large_drop(|| serde_json::from_slice::<UsageRequest>(black_box(&request.body)))
        });
    }
    group.throughput(Throughput::Elements(large.events as u64));
    group.bench_function(format!("validate_{}", large.events), |b| {
        b.iter(|| validate::usage_request(black_box(&large.parsed), large.now))
    });
    group.finish();
}

fn parse_raw_usage(c: &mut Criterion, record: &RawUsage, bytes: &[u8]) {
    let events = record.events.len() as u64;
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(events));
    group.bench_function(format!("raw_usage_decode_{events}"), |b| {
        b.iter_with_large_drop(|| serde_json::from_slice::<RawUsage>(black_box(bytes)))
    });
    group.bench_function(format!("raw_usage_encode_{events}"), |b| {
        b.iter_with_large_drop(|| serde_json::to_vec(black_box(record)))
    });
    group.finish();
}

fn parse_bytes(c: &mut Criterion, large: &Request, raw_bytes: &[u8]) {
    let mut group = c.benchmark_group("parse_bytes");
    group.throughput(Throughput::Bytes(large.body.len() as u64));
    group.bench_function(format!("usage_request_{}", large.events), |b| {
        b.iter_with_large_drop(|| serde_json::from_slice::<UsageRequest>(black_box(&large.body)))
    });
    group.throughput(Throughput::Bytes(raw_bytes.len() as u64));
    group.bench_function(format!("raw_usage_decode_{}", large.events), |b| {
        b.iter_with_large_drop(|| serde_json::from_slice::<RawUsage>(black_box(raw_bytes)))
    });
    group.finish();
}

fn main() -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    let large = Request::new(EVENTS, now)?;
    let small = Request::new(1, now)?;
    let record = fixtures::raw_usage(large.parsed.events.clone(), now);
    let raw_bytes = serde_json::to_vec(&record).context("encode the usage.raw record")?;
    let decoded: RawUsage = serde_json::from_slice(&raw_bytes).context("decode the usage.raw record")?;
    ensure!(decoded == record, "the usage.raw record does not decode back to itself");
    println!(
        "request body: {} B (1 event), {} B ({EVENTS} events); usage.raw record: {} B",
        small.body.len(),
        large.body.len(),
        raw_bytes.len()
    );

    let mut c = Criterion::default().configure_from_args();
    parse_request(&mut c, &small, &large);
    parse_raw_usage(&mut c, &record, &raw_bytes);
    parse_bytes(&mut c, &large, &raw_bytes);
    c.final_summary();
    Ok(())
}
