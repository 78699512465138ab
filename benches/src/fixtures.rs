//! The product versions and event stream the rating benches price, built with the same
//! `rater::fixtures` builders the rater's tests use.

use rater::fixtures::{event_with_id, usage_price, version};
use schemas::catalog::ProductVersion;
use schemas::usage::UsageEvent;
use serde_json::{json, Value};

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
