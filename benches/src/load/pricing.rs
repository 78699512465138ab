//! The load test's product and request bodies, and the exact money they move: token volume
//! pricing over two dimensions (`model` × `direction`, four combinations, each its own rate per
//! 1,000,000 tokens), the fee of one event, and the JSON of every request the generator sends.
//!
//! The rates have at most one decimal and events carry 1..=8000 tokens, so every fee
//! `tokens × rate / 1,000,000` is exact in at most 7 decimals: the server rounds nothing and the
//! expected balances are exact.

use schemas::Decimal;
use serde_json::{json, Value};
use std::fmt::Write;

/// The event type the product prices.
pub const EVENT_TYPE: &str = "completion";
/// Tokens per priced package.
pub const PACKAGE_SIZE: i64 = 1_000_000;
/// Most tokens one event carries (at least 1).
pub const MAX_TOKENS: u32 = 8000;
/// What each customer is funded with: enough never to run out.
pub const FUNDING_USD: i64 = 1_000_000;
/// The amount of one adjustment of the mix, in cents.
pub const ADJUSTMENT_CENTS: i64 = 1;

/// One priced dimension combination.
pub struct Combo {
    pub model: &'static str,
    pub direction: &'static str,
    /// USD per 1,000,000 tokens, as written in the product.
    pub rate: &'static str,
}

/// The four combinations; an event's combination is its index here.
pub const COMBOS: [Combo; 4] = [
    Combo { model: "swift-1", direction: "input", rate: "0.5" },
    Combo { model: "swift-1", direction: "output", rate: "1.5" },
    Combo { model: "sage-2", direction: "input", rate: "2.5" },
    Combo { model: "sage-2", direction: "output", rate: "10" },
];

/// The rate of a combination, exact.
pub fn rate(combo: usize) -> Decimal {
    let text = COMBOS.get(combo).map_or("0", |c| c.rate);
    text.parse().unwrap_or(Decimal::ZERO)
}

/// The fee of one event: `tokens × rate / 1,000,000`, exact.
pub fn fee(tokens: u64, combo: usize) -> Decimal {
    Decimal::from(tokens) * rate(combo) / Decimal::from(PACKAGE_SIZE)
}

/// The amount of one mix adjustment (0.01 USD).
pub fn adjustment_amount() -> Decimal {
    Decimal::new(ADJUSTMENT_CENTS, 2)
}

/// What one customer's balance must be: the funding, plus the mix adjustments, minus the fees of
/// `tokens[c]` tokens at each combination `c`.
pub fn expected_balance(tokens: &[u64; 4], adjustments: u64) -> Decimal {
    let fees: Decimal = tokens.iter().enumerate().map(|(combo, &t)| fee(t, combo)).sum();
    Decimal::from(FUNDING_USD) + Decimal::from(adjustments) * adjustment_amount() - fees
}

/// An exact JSON number from a decimal's text.
fn number(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// `POST /products`: the token product, published, under a unique `code`.
pub fn product_body(code: &str) -> Value {
    let values: Vec<Value> = COMBOS
        .iter()
        .map(|c| {
            json!({"dimensions": {"model": c.model, "direction": c.direction},
                   "values": [{"volume_rate": number(c.rate), "package_size": PACKAGE_SIZE}]})
        })
        .collect();
    json!({
        "name": "Loadgen tokens", "code": code, "publish": true,
        "prices": [{
            "type": "usage_based", "name": "Tokens", "billing_model": {"type": "real_time"},
            "usage_calculation": {"event_type": EVENT_TYPE, "usage_type": "volume", "volume_field": "tokens",
                                  "billable_dimensions": ["model", "direction"]},
            "pricing": [{"asset": "USD", "values": values}]
        }]
    })
}

/// `POST /customers`: customer `index` of the run, subscribed to `product_id`.
pub fn customer_body(run: &str, index: usize, product_id: &str) -> Value {
    json!({
        "name": format!("Load customer {index}"), "external_id": format!("{run}-cust-{index}"),
        "subscriptions": [{"products": [{"id": product_id}],
                           "return_url": "https://example.com/ok", "failure_url": "https://example.com/ko"}]
    })
}

/// `POST /customers/{id}/wallet/adjustments`: an `external_topup` of `amount` USD.
pub fn topup_body(transaction_id: &str, amount: Decimal) -> String {
    format!(
        r#"{{"transaction_id":"{transaction_id}","asset":"USD","amount":{amount},"reason":"external_topup"}}"#
    )
}

/// One event as the generator remembers it: enough to write it again byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The id is `{run}-{connection}-{seq}`.
    pub seq: u64,
    pub tokens: u32,
    pub combo: u8,
    /// `occurred_at`, milliseconds since the epoch.
    pub at_ms: i64,
}

/// `occurred_at` as RFC 3339 with milliseconds (what the event is sent with).
pub fn occurred_at(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes `POST /events` bodies into a reused buffer.
pub struct EventsWriter {
    /// `{run}-{connection}-`, the prefix of every event id this writer writes.
    id_prefix: String,
    buf: String,
    events: usize,
}

impl EventsWriter {
    pub fn new(run: &str, connection: usize) -> Self {
        Self { id_prefix: format!("{run}-{connection}-"), buf: String::with_capacity(64 * 1024), events: 0 }
    }

    /// Starts a request for `customer_id`.
    pub fn begin(&mut self, customer_id: &str) {
        self.buf.clear();
        self.events = 0;
        let _ = write!(self.buf, r#"{{"customer_id":"{customer_id}","events":["#);
    }

    /// Appends one event; `at` is `occurred_at(event.at_ms)`, passed in so a batch formats the
    /// time once.
    pub fn event(&mut self, event: &Event, at: &str) {
        if self.events > 0 {
            self.buf.push(',');
        }
        self.events += 1;
        let combo = &COMBOS[usize::from(event.combo) % COMBOS.len()];
        let _ = write!(
            self.buf,
            r#"{{"id":"{}{}","event_type":"{EVENT_TYPE}","occurred_at":"{at}","data":{{"tokens":{},"model":"{}","direction":"{}"}}}}"#,
            self.id_prefix, event.seq, event.tokens, combo.model, combo.direction
        );
    }

    /// Ends the request and hands out its body.
    pub fn finish(&mut self) -> bytes::Bytes {
        self.buf.push_str("]}");
        bytes::Bytes::copy_from_slice(self.buf.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn fees_are_exact_token_volume_prices() {
        assert_eq!(fee(2353, 0), d("0.0011765"));
        assert_eq!(fee(1, 1), d("0.0000015"));
        assert_eq!(fee(8000, 2), d("0.02"));
        assert_eq!(fee(7999, 3), d("0.07999"));
        assert_eq!(fee(0, 3), Decimal::ZERO);
        // Never more than 7 decimals, so the server's 12-digit division never rounds.
        for combo in 0..COMBOS.len() {
            for tokens in [1, 3, 7, 999, 4321, u64::from(MAX_TOKENS)] {
                assert!(fee(tokens, combo).normalize().scale() <= 7);
            }
        }
    }

    #[test]
    fn the_expected_balance_sums_per_combination_tokens_exactly() {
        let events = [(100u64, 0usize), (2353, 3), (8000, 1), (1, 2), (77, 3)];
        let mut tokens = [0u64; 4];
        let mut fees = Decimal::ZERO;
        for (t, c) in events {
            tokens[c] += t;
            fees += fee(t, c);
        }
        assert_eq!(expected_balance(&tokens, 0), Decimal::from(FUNDING_USD) - fees);
        assert_eq!(expected_balance(&tokens, 3), d("1000000.03") - fees);
        assert_eq!(expected_balance(&[0; 4], 0), d("1000000"));
    }

    #[test]
    fn the_product_prices_four_dimension_combinations() {
        let product = product_body("code-1");
        let values = &product["prices"][0]["pricing"][0]["values"];
        assert_eq!(values.as_array().map(Vec::len), Some(4));
        assert_eq!(values[3]["dimensions"], json!({"model": "sage-2", "direction": "output"}));
        assert_eq!(values[0]["values"][0]["volume_rate"].to_string(), "0.5");
        assert_eq!(
            product["prices"][0]["usage_calculation"]["billable_dimensions"],
            json!(["model", "direction"])
        );
    }

    #[test]
    fn event_bodies_are_valid_json_and_rewrite_identically() {
        let mut w = EventsWriter::new("r1", 3);
        let e = Event { seq: 42, tokens: 123, combo: 2, at_ms: 1_767_225_600_123 };
        let at = occurred_at(e.at_ms);
        assert_eq!(at, "2026-01-01T00:00:00.123Z");
        w.begin("cust_1");
        w.event(&e, &at);
        w.event(&Event { seq: 43, ..e }, &at);
        let first = w.finish();
        let parsed: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(parsed["customer_id"], "cust_1");
        assert_eq!(parsed["events"][0]["id"], "r1-3-42");
        assert_eq!(
            parsed["events"][1]["data"],
            json!({"tokens": 123, "model": "sage-2", "direction": "input"})
        );
        w.begin("cust_1");
        w.event(&e, &occurred_at(e.at_ms));
        let again = w.finish();
        let reparsed: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(reparsed["events"][0], parsed["events"][0], "a duplicate is an exact re-send");
    }

    #[test]
    fn topups_are_exact_json() {
        let body: Value = serde_json::from_str(&topup_body("t-1", adjustment_amount())).unwrap();
        assert_eq!(body["amount"].to_string(), "0.01");
        assert_eq!(body["reason"], "external_topup");
    }
}
