//! What the benches run on, built outside the timed loops: the product versions and event stream
//! the rating benches price (with the same `rater::fixtures` builders the rater's tests use), the
//! `POST /events` bodies and `usage.raw` records the parse and log-codec benches decode, and the
//! funded customer and `ledger.input` records the posting benches apply.

use anyhow::Context;
use chrono::{Duration, SubsecRound};
use ledger_writer::apply::{apply, Known, Outcome, Postings};
use ledger_writer::fixtures::{adjustment, usage};
use ledger_writer::LedgerState;
use rater::fixtures::{event_with_id, usage_price, version};
use rater::{rate, Rating, Scratch, Subscribed};
use schemas::catalog::{Asset, Product, ProductVersion};
use schemas::ledger::{AdjustmentReason, LedgerInput, RatedEvent, RawUsage, UsageRequest};
use schemas::usage::{DataValue, UsageEvent};
use schemas::{Decimal, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

fn chat(usage_type: &str, extra: Value, values: Value) -> ProductVersion {
    version(1, json!([usage_price("chat", usage_type, extra, json!([{"asset": "USD", "values": values}]))]))
}

/// A flat unit price.
pub fn unit() -> ProductVersion {
    chat("unit", json!({}), json!([{"unit_price": 0.002}]))
}

/// Tokens at 1.25 per 1,000,000, pro-rata.
pub fn volume_package() -> ProductVersion {
    chat("volume", json!({}), json!([{"volume_rate": 1.25, "package_size": 1000000}]))
}

/// Ten models priced per dimension value, plus a `*` fallback.
pub fn dimensional() -> ProductVersion {
    let mut values: Vec<Value> = (0..10)
        .map(|i| json!({"dimensions": {"model": format!("model-{i}")}, "values": [{"volume_rate": 1 + i, "package_size": 1000000}]}))
        .collect();
    values.push(
        json!({"dimensions": {"model": "*"}, "values": [{"volume_rate": 0.5, "package_size": 1000000}]}),
    );
    chat("volume", json!({"billable_dimensions": ["model"]}), json!(values))
}

/// Four graduated tiers over a monthly counter.
pub fn graduated() -> ProductVersion {
    chat(
        "volume",
        json!({"pricing_model": "tiered", "tiering": {"period": "monthly"}}),
        json!([
            {"up_to": 1000000, "volume_rate": 2, "package_size": 1000000},
            {"up_to": 10000000, "volume_rate": 1.5, "package_size": 1000000},
            {"up_to": 100000000, "volume_rate": 1, "package_size": 1000000},
            {"volume_rate": 0.5, "package_size": 1000000}
        ]),
    )
}

/// `n` chat events with varied volumes and models (eleven `model` values, one only `*` prices).
pub fn events(n: usize) -> Vec<UsageEvent> {
    (0..n)
        .map(|i| {
            let data = json!({"volume": 100 + (i * 7919) % 50000, "model": format!("model-{}", i % 11)});
            event_with_id(&format!("evt_{i}"), "chat", data)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Ingest: `POST /events` bodies and the `usage.raw` records made of them

/// The customer every parse, posting and log bench bills (a generated id's shape).
pub const CUSTOMER: &str = "cust_0192f0c4a6b87d3e9a1f5c2b8e4d7a60";

const MODELS: [&str; 5] = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b", "mistral-large"];

/// `n` chat-completion events as a platform reports them, the last occurring at `until` (to the
/// millisecond) and the others 37 ms apart before it: a UUID id, `tokens` from 100 to 50,099, one
/// of five models, `direction` input or output. `first` numbers the events, so batches built with
/// different `first` share no event id.
pub fn chat_events(first: usize, n: usize, until: Timestamp) -> Vec<UsageEvent> {
    let until = until.trunc_subsecs(3);
    (0..n)
        .map(|i| {
            let k = first + i;
            let data = BTreeMap::from([
                ("tokens".to_string(), DataValue::Num(Decimal::from(100 + (k * 7919) % 50_000))),
                ("model".to_string(), DataValue::Str(MODELS[k % MODELS.len()].to_string())),
                ("direction".to_string(), DataValue::Str(["input", "output"][k % 2].to_string())),
            ]);
            UsageEvent {
                id: format!("evt_{}", Uuid::from_u128((k as u128 + 1).wrapping_mul(ID_MIX))),
                event_type: "chat_completion".to_string(),
                occurred_at: until - Duration::milliseconds(37 * (n - 1 - i) as i64),
                subject: None,
                description: None,
                data,
                costs: None,
            }
        })
        .collect()
}

/// Spreads consecutive numbers over the whole UUID space (a 128-bit odd constant).
const ID_MIX: u128 = 0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835;

/// A `POST /events` request of `n` chat events for [`CUSTOMER`], the last occurring at `until`.
pub fn usage_request(n: usize, until: Timestamp) -> UsageRequest {
    UsageRequest {
        customer_id: Some(CUSTOMER.to_string()),
        customer_external_id: None,
        events: chat_events(0, n, until),
    }
}

/// The JSON body of [`usage_request`], as a client sends it.
pub fn usage_request_body(n: usize, until: Timestamp) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(&usage_request(n, until)).context("encode the usage request body")
}

/// The `usage.raw` record ingest appends for `events`, accepted at `accepted_at`.
pub fn raw_usage(events: Vec<UsageEvent>, accepted_at: Timestamp) -> RawUsage {
    RawUsage { customer_id: CUSTOMER.to_string(), accepted_at, events }
}

/// The bytes of a `usage.raw` record as ingest encodes them: the record of events
/// `first..first + n` (see [`chat_events`]).
pub fn raw_usage_bytes(first: usize, n: usize, accepted_at: Timestamp) -> anyhow::Result<Vec<u8>> {
    let record = raw_usage(chat_events(first, n, accepted_at), accepted_at);
    serde_json::to_vec(&record).context("encode the usage.raw record")
}

// ---------------------------------------------------------------------------------------------
// Ledger writer: a funded customer and the inputs it posts

/// A store that has posted nothing: every event and transaction is new, no product or custom
/// asset is needed (the benched inputs need no re-rating and use USD).
pub struct NothingStored;

impl Known for NothingStored {
    fn posted_event(&self, _key: &str) -> Option<&UsageEvent> {
        None
    }
    fn transaction_exists(&self, _key: &str) -> bool {
        false
    }
    fn product(&self, _id: &str) -> Option<&Product> {
        None
    }
    fn asset(&self, _code: &str) -> Option<&Asset> {
        None
    }
}

/// When the bench customer was funded (its grant is effective from then, for 12 months).
pub const FUNDED_AT: &str = "2026-11-22T00:00:00Z";
/// When the benched inputs were accepted: after [`FUNDED_AT`], inside the grant's life.
pub const ACCEPTED_AT: &str = "2026-11-22T12:00:00Z";

/// [`CUSTOMER`]'s ledger after a 1,000 USD top-up at offset 0 (one paid grant), so fees draw
/// down a grant instead of going into debt. Fails if the top-up is not posted.
pub fn funded_customer() -> anyhow::Result<LedgerState> {
    let mut state = LedgerState::new(CUSTOMER);
    let topup = adjustment(CUSTOMER, "txn_topup", "1000", AdjustmentReason::ExternalTopup, FUNDED_AT);
    let outcome =
        apply(&mut state, 0, LedgerInput::Adjustment(topup), &NothingStored, &mut Postings::default());
    anyhow::ensure!(outcome == Outcome::Applied, "the funding top-up was not posted: {outcome:?}");
    Ok(state)
}

/// Chat tokens at 2.50 USD per 1,000,000 (price `price_1_0`, volume from `data.tokens`).
pub fn token_price() -> ProductVersion {
    version(
        1,
        json!([{
            "type": "usage_based", "name": "chat tokens",
            "usage_calculation": {"event_type": "chat_completion", "usage_type": "volume", "volume_field": "tokens"},
            "billing_model": {"type": "real_time"},
            "pricing": [{"asset": "USD", "values": [{"volume_rate": 2.5, "package_size": 1000000}]}]
        }]),
    )
}

/// `events` with the fees the rater computes for them against [`token_price`] (one fee each),
/// needing no customer state: what a rater puts in a `ledger.input` usage record.
pub fn rated_events(events: Vec<UsageEvent>) -> Vec<RatedEvent> {
    let version = token_price();
    let subscribed = [Subscribed { product_id: "prod_bench", product_code: "bench", version: &version }];
    let counters = Scratch::new();
    let mut rating = Rating::default();
    events
        .into_iter()
        .map(|event| {
            rate(&event, &subscribed, &counters, &mut rating);
            let fees = rating.fees.iter().map(|fee| fee.to_event_fee(&event)).collect();
            RatedEvent { event, products: Vec::new(), fees, warnings: Vec::new(), needs_state: false }
        })
        .collect()
}

/// One `ledger.input` usage record of [`CUSTOMER`] carrying `events`, accepted at [`ACCEPTED_AT`].
pub fn usage_input(events: Vec<RatedEvent>) -> LedgerInput {
    usage(CUSTOMER, ACCEPTED_AT, events)
}

/// `n` positive adjustments of [`CUSTOMER`] (1.00 to 50.99 USD, `external_topup` and `gift`
/// alternating), each creating a grant, accepted at [`ACCEPTED_AT`].
pub fn topups(n: usize) -> Vec<LedgerInput> {
    (0..n)
        .map(|i| {
            let amount = format!("{}.{:02}", 1 + i % 50, (i * 37) % 100);
            let reason = if i % 2 == 0 { AdjustmentReason::ExternalTopup } else { AdjustmentReason::Gift };
            LedgerInput::Adjustment(adjustment(CUSTOMER, &format!("txn_{i}"), &amount, reason, ACCEPTED_AT))
        })
        .collect()
}
