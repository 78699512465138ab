//! Product versions and events for the rating benches.

use schemas::catalog::{Price, ProductVersion, VersionStatus};
use schemas::ids::{PriceId, ProductVersionId};
use schemas::usage::UsageEvent;
use serde_json::{json, Value};

/// A published version holding `prices` (JSON, as the API takes them).
pub fn version(prices: Value) -> ProductVersion {
    let mut prices: Vec<Price> = serde_json::from_value(prices).expect("valid prices");
    for (i, p) in prices.iter_mut().enumerate() {
        p.base.id = Some(PriceId::from_raw(format!("price_bench_{i}")));
    }
    ProductVersion {
        id: ProductVersionId::from_raw("prv_bench"),
        version: 1,
        status: VersionStatus::Published,
        prices,
        entitlements: Vec::new(),
        created_at: "2026-01-01T00:00:00Z".parse().expect("time"),
    }
}

fn price(usage_type: &str, extra: Value, values: Value) -> Value {
    let mut p = json!({
        "type": "usage_based", "name": "bench",
        "usage_calculation": {"event_type": "chat", "usage_type": usage_type, "volume_field": "tokens",
                              "billable_dimensions": ["model"]},
        "billing_model": {"type": "real_time"},
        "pricing": [{"asset": "USD", "values": values}]
    });
    if let (Some(o), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    p
}

/// A flat unit price.
pub fn unit() -> ProductVersion {
    version(json!([price("unit", json!({}), json!([{"unit_price": 0.002}]))]))
}

/// Tokens at 1.25 per 1,000,000, pro-rata.
pub fn volume_package() -> ProductVersion {
    version(json!([price("volume", json!({}), json!([{"volume_rate": 1.25, "package_size": 1000000}]))]))
}

/// Ten models priced per dimension value, plus a `*` fallback.
pub fn dimensional() -> ProductVersion {
    let mut values: Vec<Value> = (0..10)
        .map(|i| json!({"dimensions": {"model": format!("model-{i}")}, "values": [{"volume_rate": 1 + i, "package_size": 1000000}]}))
        .collect();
    values.push(
        json!({"dimensions": {"model": "*"}, "values": [{"volume_rate": 0.5, "package_size": 1000000}]}),
    );
    version(json!([price("volume", json!({}), json!(values))]))
}

/// Four graduated tiers over a monthly counter.
pub fn graduated() -> ProductVersion {
    version(json!([price(
        "volume",
        json!({"pricing_model": "tiered", "tiering": {"period": "monthly"}}),
        json!([
            {"up_to": 1000000, "volume_rate": 2, "package_size": 1000000},
            {"up_to": 10000000, "volume_rate": 1.5, "package_size": 1000000},
            {"up_to": 100000000, "volume_rate": 1, "package_size": 1000000},
            {"volume_rate": 0.5, "package_size": 1000000}
        ])
    )]))
}

/// `n` chat events with varied token counts and models (11 distinct, one unpriced by name).
pub fn events(n: usize) -> Vec<UsageEvent> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("evt_{i}"), "event_type": "chat", "occurred_at": "2026-11-15T12:00:00Z",
                "data": {"tokens": 100 + (i * 7919) % 50000, "model": format!("model-{}", i % 11)}
            }))
            .expect("event")
        })
        .collect()
}
