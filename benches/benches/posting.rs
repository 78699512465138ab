//! Posting a batch in the ledger writer's pure core: `apply` of `ledger.input` records to a
//! customer funded with one 1,000 USD grant, as the writer does for one batch (one `Postings`).
//! Every iteration gets a fresh copy of the state and inputs (`iter_batched`: copied outside the
//! timed loop, since `apply` consumes its input, and what it produced is dropped outside it too);
//! the store knows nothing, so every event and transaction is new. Throughput is transactions
//! posted per second.
//!
//! A custom `main` instead of `criterion_main!`, so a broken fixture is an error, not a panic;
//! the allocator is mimalloc, as in the `drawdown` binary.

use anyhow::ensure;
use benches::fixtures::{self, NothingStored};
use criterion::{BatchSize, Criterion, Throughput};
use ledger_writer::apply::{apply, Outcome, Postings};
use ledger_writer::fixtures::at;
use ledger_writer::LedgerState;
use schemas::ledger::LedgerInput;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events, or inputs, per benched batch.
const BATCH: usize = 100;

/// One benched batch: the inputs, the state they apply to, and how many transactions they post.
struct Case {
    name: &'static str,
    state: LedgerState,
    inputs: Vec<LedgerInput>,
    posted: u64,
}

impl Case {
    /// Applies `inputs` to `state` once, outside the timed loop, and checks that every input
    /// posted and that they posted `expected` transactions.
    fn new(
        name: &'static str,
        state: LedgerState,
        inputs: Vec<LedgerInput>,
        expected: usize,
    ) -> anyhow::Result<Self> {
        let (applied, postings) = post(&mut state.clone(), inputs.clone());
        ensure!(applied == inputs.len(), "{name}: {applied} of {} inputs posted", inputs.len());
        let posted = postings.transactions.len();
        ensure!(posted == expected, "{name}: {posted} transactions posted, not {expected}");
        Ok(Self { name, state, inputs, posted: posted as u64 })
    }
}

/// Applies `inputs` in order at the offsets after the state's last, into one `Postings`; returns
/// how many posted (`Outcome::Applied`) and the postings.
fn post(state: &mut LedgerState, inputs: Vec<LedgerInput>) -> (usize, Postings) {
    let first = state.applied_offset;
    let mut out = Postings::default();
    let mut applied = 0;
    for (offset, input) in (first..).zip(inputs) {
        if apply(state, offset, input, &NothingStored, &mut out) == Outcome::Applied {
            applied += 1;
        }
    }
    (applied, out)
}

fn cases() -> anyhow::Result<Vec<Case>> {
    let funded = fixtures::funded_customer()?;
    let accepted_at = at(fixtures::ACCEPTED_AT);
    let events = || fixtures::rated_events(fixtures::chat_events(0, BATCH, accepted_at));
    let one_input = vec![fixtures::usage_input(events())];
    let single_event_inputs = events().into_iter().map(|e| fixtures::usage_input(vec![e])).collect();
    Ok(vec![
        Case::new("usage_100_events_one_input", funded.clone(), one_input, BATCH)?,
        Case::new("usage_1_event_inputs_100", funded.clone(), single_event_inputs, BATCH)?,
        Case::new("adjustments_100", funded, fixtures::topups(BATCH), BATCH)?,
    ])
}

fn posting(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("posting");
    for case in cases {
        group.throughput(Throughput::Elements(case.posted));
        group.bench_function(case.name, |b| {
            b.iter_batched(
                || (case.state.clone(), case.inputs.clone()),
                |(mut state, inputs)| {
                    let posted = post(&mut state, inputs);
                    (state, posted)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn main() -> anyhow::Result<()> {
    let cases = cases()?;
    let mut c = Criterion::default().configure_from_args();
    posting(&mut c, &cases);
    c.final_summary();
    Ok(())
}
