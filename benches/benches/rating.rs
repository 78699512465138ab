//! Events rated per second by the pure rating core, per pricing model. Setup (catalog, events)
//! is outside the timed loop; each iteration rates a batch of distinct events into a reused
//! `Rating`, as a rater worker does.

use benches::fixtures;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rater::{rate, Rating, Scratch, Subscribed};
use schemas::catalog::ProductVersion;

const BATCH: usize = 1024;

fn bench_model(c: &mut Criterion, name: &str, version: &ProductVersion) {
    let events = fixtures::events(BATCH);
    let subscribed = [Subscribed { product_id: "prod_bench", product_code: "bench", version }];
    let counters = Scratch::new();
    let mut group = c.benchmark_group("rating");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        let mut out = Rating::default();
        b.iter(|| {
            let mut total = schemas::Decimal::ZERO;
            for event in &events {
                rate(black_box(event), &subscribed, &counters, &mut out);
                if let Some(fee) = out.fees.first() {
                    total += fee.amount;
                }
            }
            black_box(total)
        });
    });
    group.finish();
}

fn rating(c: &mut Criterion) {
    bench_model(c, "unit_flat", &fixtures::unit());
    bench_model(c, "volume_package", &fixtures::volume_package());
    bench_model(c, "dimensional_10_values", &fixtures::dimensional());
    bench_model(c, "graduated_tiers", &fixtures::graduated());
}

criterion_group!(benches, rating);
criterion_main!(benches);
