//! Bounded money (`semantics.md` §1): every number a request carries is within 10^9, every
//! account within 10^15, so no sequence of accepted requests can make a later read fail.
//!
//! The proptest drives random sequences of extreme accepted requests (the bound's edges, the
//! smallest decimal, fees far beyond what an account may hold) against a real server, then reads
//! every wallet, account, grant list, transaction, event and stats route of the customer: each
//! must answer 200.

mod common;

use common::{must, unique, TestServer};
use proptest::prelude::*;
use serde_json::{json, Value};

const BOUND: &str = "1000000000";

#[derive(Clone, Debug)]
enum Step {
    /// A positive adjustment (a grant) in `asset`.
    Credit {
        asset: usize,
        amount: String,
    },
    /// A negative adjustment.
    Debit {
        asset: usize,
        amount: String,
    },
    Charge {
        asset: usize,
        amount: String,
    },
    /// Two events, each with a vendor cost of `cost`: `e{i}` with a unit fee of 10^9 USD, `g{i}`
    /// with a volume fee of `tokens` x 10^18 USD (beyond the account bound from 0.001 tokens).
    Usage {
        tokens: String,
        cost: String,
    },
}

const ASSETS: [&str; 2] = ["USD", "BIG"];

fn amount() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(BOUND.to_string()),
        Just("999999999.9999999999999999999".to_string()),
        Just("0.0000000000000000000000000001".to_string()),
        (1u64..1_000_000_000).prop_map(|n| n.to_string()),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..2usize, amount()).prop_map(|(asset, amount)| Step::Credit { asset, amount }),
        (0..2usize, amount()).prop_map(|(asset, amount)| Step::Debit { asset, amount }),
        (0..2usize, amount()).prop_map(|(asset, amount)| Step::Charge { asset, amount }),
        (amount(), amount()).prop_map(|(tokens, cost)| Step::Usage { tokens, cost }),
    ]
}

struct World {
    server: TestServer,
    product: String,
    vendor: String,
}

fn world() -> World {
    let server = TestServer::start();
    let base = &server.base;
    // A custom asset worth 10^9 USD a unit: revenue recognised from it is the largest allowed.
    must(
        base,
        201,
        "POST",
        "/assets",
        Some(json!({"code": "BIG", "name": "Big", "rates": [{"source": "USD", "rate": "0.000000001"}]})),
    );
    let vendor =
        must(base, 201, "POST", "/vendors", Some(json!({"name": "GPU", "external_id": unique("gpu-")})));
    let prices = json!([
        {"type": "usage_based", "name": "per call", "billing_model": {"type": "real_time"},
         "usage_calculation": {"event_type": "call", "usage_type": "unit"},
         "pricing": [{"asset": "USD", "values": [{"unit_price": 1000000000}]}]},
        {"type": "usage_based", "name": "tokens", "billing_model": {"type": "real_time"},
         "usage_calculation": {"event_type": "gen", "usage_type": "volume", "volume_field": "tokens"},
         "pricing": [{"asset": "USD", "values": [{"volume_rate": 1000000000, "package_size": 0.000000001}]}]}
    ]);
    let product = must(
        base,
        201,
        "POST",
        "/products",
        Some(json!({"name": "Extreme", "code": unique("extreme-"), "publish": true, "prices": prices})),
    );
    World {
        product: product["id"].as_str().expect("id").to_string(),
        vendor: vendor["id"].as_str().expect("id").to_string(),
        server,
    }
}

fn customer(w: &World) -> String {
    let body = json!({
        "name": "Extreme", "external_id": unique("x-"),
        "subscriptions": [{"products": [{"id": w.product}]}]
    });
    must(&w.server.base, 201, "POST", "/customers", Some(body))["id"].as_str().expect("id").to_string()
}

/// Sends `step`; returns the transaction id it may have posted. A refusal must be a 422 naming
/// `amount` (the ledger bound), never anything else.
fn send(w: &World, c: &str, i: usize, step: &Step) -> Option<String> {
    let base = &w.server.base;
    let tx = format!("t{i}");
    let (path, body) = match step {
        Step::Credit { asset, amount } => (
            "adjustments",
            json!({"transaction_id": tx, "asset": ASSETS[*asset], "amount": amount.parse::<Value>().ok(), "reason": "gift"}),
        ),
        Step::Debit { asset, amount } => (
            "adjustments",
            json!({"transaction_id": tx, "asset": ASSETS[*asset], "amount": format!("-{amount}").parse::<Value>().ok(), "reason": "external_refund"}),
        ),
        Step::Charge { asset, amount } => (
            "charges",
            json!({"transaction_id": tx, "asset": ASSETS[*asset], "amount": amount.parse::<Value>().ok()}),
        ),
        Step::Usage { tokens, cost } => {
            let event = |id: String, event_type: &str| {
                json!({
                    "id": id, "event_type": event_type, "occurred_at": common::now(),
                    "data": {"tokens": tokens.parse::<Value>().ok()},
                    "costs": [{"vendor_id": w.vendor, "amount": cost.parse::<Value>().ok(), "currency": "USD"}]
                })
            };
            let events = [event(format!("e{i}"), "call"), event(format!("g{i}"), "gen")];
            common::send_usage(base, &json!({"customer_id": c, "events": events}));
            return None;
        }
    };
    let (status, answer) = common::request(
        base,
        Some(common::KEY),
        "POST",
        &format!("/customers/{c}/wallet/{path}"),
        Some(body.to_string()),
    );
    match status {
        201 => Some(tx),
        422 => {
            assert!(answer["errors"]["amount"].is_array(), "a refusal names `amount`: {answer}");
            None
        }
        _ => panic!("{step:?}: answered {status}: {answer}"),
    }
}

/// Every read of the customer, and the account-wide reports, answer 200.
fn read_everything(w: &World, c: &str, transactions: &[String], events: usize) {
    let base = &w.server.base;
    common::eventually("every event posted", || {
        let page = must(base, 200, "GET", &format!("/events?customer_id={c}&limit=100"), None);
        (page["items"].as_array().map_or(0, Vec::len) == events).then_some(())
    });
    let wallet = must(base, 200, "GET", &format!("/customers/{c}/wallet"), None);
    for account in wallet["accounts"].as_array().expect("accounts") {
        let id = account["id"].as_str().expect("id");
        must(base, 200, "GET", &format!("/customers/{c}/wallet/{id}"), None);
        must(base, 200, "GET", &format!("/customers/{c}/wallet/{id}/grants?limit=100"), None);
    }
    for tx in transactions {
        must(base, 200, "GET", &format!("/customers/{c}/wallet/transactions/{tx}"), None);
    }
    let page = must(base, 200, "GET", &format!("/events?customer_id={c}&limit=100"), None);
    for item in page["items"].as_array().expect("items") {
        let id = item["id"].as_str().expect("id");
        must(base, 200, "GET", &format!("/events/{id}"), None);
    }
    must(base, 200, "GET", &format!("/customers/{c}/stats"), None);
    must(base, 200, "GET", "/customers/stats", None);
    must(base, 200, "GET", &format!("/vendors/{}/stats", w.vendor), None);
}

#[test]
fn every_read_answers_200_after_any_sequence_of_extreme_accepted_requests() {
    let w = world();
    let config = ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..24))| {
        let c = customer(&w);
        let mut transactions = Vec::new();
        let mut events = 0;
        for (i, step) in steps.iter().enumerate() {
            if matches!(step, Step::Usage { .. }) {
                events += 2;
            }
            transactions.extend(send(&w, &c, i, step));
        }
        read_everything(&w, &c, &transactions, events);
    });
}

#[test]
fn a_number_beyond_the_bound_is_a_422_naming_its_field() {
    let w = world();
    let s = &w.server;
    let c = customer(&w);
    for (path, body, field) in [
        (
            format!("/customers/{c}/wallet/adjustments"),
            json!({"transaction_id": "t", "asset": "USD", "amount": 1000000000.000001, "reason": "gift"}),
            "amount",
        ),
        (
            format!("/customers/{c}/wallet/charges"),
            r#"{"transaction_id": "t", "asset": "USD", "amount": 1e400}"#.parse::<Value>().unwrap_or(Value::Null),
            "amount",
        ),
        (
            "/assets/USD/quote".to_string(),
            json!({"source": "USD", "amount": -2000000000}),
            "amount",
        ),
        (
            "/products".to_string(),
            json!({"name": "P", "code": unique("p-"), "prices": [{"type": "fixed", "name": "Fee",
                "billing_model": {"type": "one_time", "one_time": {}},
                "pricing": [{"asset": "USD", "values": [{"unit_price": 100000, "quantity": 100000}]}]}]}),
            "prices[0].pricing[0].values",
        ),
        (
            "/assets".to_string(),
            json!({"code": "TINY", "name": "Tiny", "rates": [{"source": "USD", "rate": 0.0000000001}]}),
            "rates[0].rate",
        ),
    ] {
        let (status, answer) = common::request(&s.base, Some(common::KEY), "POST", &path, Some(body.to_string()));
        assert_eq!(status, 422, "{path}: {answer}");
        assert!(answer["errors"][field].is_array(), "{path}: names `{field}`: {answer}");
    }
    // Usage: the event's data and costs are bounded too.
    let event = json!({"id": "e", "event_type": "call", "occurred_at": common::now(),
        "data": {"tokens": 1000000001}, "costs": [{"amount": 2e9}]});
    let body = json!({"customer_id": c, "events": [event]});
    let (status, answer) =
        common::request(&s.base, Some(common::KEY), "POST", "/events", Some(body.to_string()));
    assert_eq!(status, 422, "{answer}");
    assert!(answer["errors"]["events[0].data.tokens"].is_array(), "{answer}");
    assert!(answer["errors"]["events[0].costs[0].amount"].is_array(), "{answer}");
}

#[test]
fn a_fee_beyond_the_account_bound_is_left_uncharged_and_the_event_says_so() {
    let w = world();
    let c = customer(&w);
    send(&w, &c, 0, &Step::Usage { tokens: "1".into(), cost: "1".into() });
    let event = common::eventually("the event posted", || {
        let (status, event) = common::request(&w.server.base, Some(common::KEY), "GET", "/events/g0", None);
        (status == 200).then_some(event)
    });
    // `e0`'s unit fee (10^9) is charged; `g0`'s volume fee (10^18) would exceed the account bound.
    assert_eq!(event["fees"].as_array().map(Vec::len), Some(0), "{event}");
    let warnings = event["warnings"].to_string();
    assert!(warnings.contains("was not charged") && warnings.contains("ledger bound"), "{event}");
    assert_eq!(common::available(&w.server.base, &c, "default:USD"), common::dec("-1000000000"));
}
