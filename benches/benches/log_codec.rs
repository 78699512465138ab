//! The embedded log's record frame (`len | crc | offset | key_len | key | value`): encoding 1,000
//! `usage.raw` records into one buffer, as a group commit does before its write, and walking and
//! checking them back, as a read or the recovery scan does. Two record sizes: a single-event
//! request and a 100-event one. Records are built and checked outside the timed loops;
//! throughput is records per second (`log_codec`) and frame bytes per second (`log_codec_bytes`).
//!
//! A custom `main` instead of `criterion_main!`, so a broken fixture is an error, not a panic;
//! the allocator is mimalloc, as in the `drawdown` binary.

use anyhow::ensure;
use benches::fixtures;
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use eventlog::codec::{decode_frame_parts, encode_frame, frame_size};
use ledger_writer::fixtures::at;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records per benched batch.
const RECORDS: usize = 1000;

/// `(key, value)` records as ingest appends them.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// One benched batch: the records and their frames, encoded once outside the timed loops.
struct Batch {
    name: &'static str,
    records: Records,
    frames: Vec<u8>,
}

impl Batch {
    /// `RECORDS` distinct `usage.raw` records of `events` events each, checked to fit a frame and
    /// to decode back to themselves.
    fn new(name: &'static str, events: usize) -> anyhow::Result<Self> {
        let accepted_at = at(fixtures::ACCEPTED_AT);
        let records = (0..RECORDS)
            .map(|i| {
                let value = fixtures::raw_usage_bytes(i * events, events, accepted_at)?;
                Ok((fixtures::CUSTOMER.as_bytes().to_vec(), value))
            })
            .collect::<anyhow::Result<Records>>()?;
        ensure!(records.iter().all(|(k, v)| frame_size(k, v).is_some()), "{name}: a record is too large");
        let mut frames = Vec::new();
        encode(&records, &mut frames);
        let decoded = decode_all(&frames);
        let payload = records.iter().map(|(k, v)| k.len() + v.len()).sum();
        ensure!(
            decoded == (RECORDS, payload),
            "{name}: frames decode to {decoded:?}, not ({RECORDS}, {payload})"
        );
        Ok(Self { name, records, frames })
    }
}

/// Encodes `records` at offsets 0, 1, ... into `out` (cleared first).
fn encode(records: &Records, out: &mut Vec<u8>) {
    out.clear();
    for (offset, (key, value)) in (0..).zip(records) {
        encode_frame(out, offset, key, value);
    }
}

/// Walks the frames of `buf` from its start, checking each; returns how many were valid and
/// their key and value bytes.
fn decode_all(mut buf: &[u8]) -> (usize, usize) {
    let (mut records, mut payload) = (0, 0);
    while let Some((_offset, key, value)) = decode_frame_parts(buf) {
        let Some(rest) = frame_size(key, value).and_then(|size| buf.get(size..)) else { break };
        records += 1;
        payload += key.len() + value.len();
        buf = rest;
    }
    (records, payload)
}

fn bench_batches(
    c: &mut Criterion,
    group_name: &str,
    batches: &[Batch],
    throughput: fn(&Batch) -> Throughput,
) {
    let mut group = c.benchmark_group(group_name);
    for batch in batches {
        group.throughput(throughput(batch));
        group.bench_function(BenchmarkId::new("encode_1k_records", batch.name), |b| {
            let mut out = Vec::with_capacity(batch.frames.len());
            b.iter(|| {
                encode(black_box(&batch.records), &mut out);
                out.len()
            })
        });
        group.bench_function(BenchmarkId::new("decode_1k_records", batch.name), |b| {
            b.iter(|| decode_all(black_box(&batch.frames)))
        });
    }
    group.finish();
}

fn main() -> anyhow::Result<()> {
    let batches = [Batch::new("1_event", 1)?, Batch::new("100_events", 100)?];
    for batch in &batches {
        let values: usize = batch.records.iter().map(|(_, v)| v.len()).sum();
        println!(
            "{}: {RECORDS} records, {} B per value on average, {} B of frames",
            batch.name,
            values / RECORDS,
            batch.frames.len()
        );
    }
    let mut c = Criterion::default().configure_from_args();
    bench_batches(&mut c, "log_codec", &batches, |_| Throughput::Elements(RECORDS as u64));
    bench_batches(&mut c, "log_codec_bytes", &batches, |batch| Throughput::Bytes(batch.frames.len() as u64));
    c.final_summary();
    Ok(())
}
