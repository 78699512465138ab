//! Catalog and event builders from JSON, for the rater's tests and the benches: one set of
//! builders, so a test and a bench of the same price mean the same thing. Panics on malformed
//! input, which is always a bug in the test that wrote it.

use schemas::catalog::{Price, ProductVersion, VersionStatus};
use schemas::ids::{PriceId, ProductVersionId};
use schemas::usage::UsageEvent;
use serde_json::{json, Value};

/// A published version with the given prices (API JSON); price ids are `price_{number}_{i}`.
pub fn version(number: u32, prices: Value) -> ProductVersion {
    let mut prices: Vec<Price> = serde_json::from_value(prices).expect("prices");
    for (i, p) in prices.iter_mut().enumerate() {
        p.base.id.get_or_insert_with(|| PriceId::from_raw(format!("price_{number}_{i}")));
    }
    ProductVersion {
        id: ProductVersionId::from_raw(format!("prv_{number}")),
        version: number,
        status: VersionStatus::Published,
        prices,
        entitlements: Vec::new(),
        created_at: "2026-01-01T00:00:00Z".parse().expect("time"),
    }
}

/// A real-time usage-based price; the volume is read from `data.volume`. `extra` adds price
/// fields (`pricing_model`, `tiering`, ...) and `billable_dimensions`.
pub fn usage_price(event_type: &str, usage_type: &str, extra: Value, pricing: Value) -> Value {
    let mut price = json!({
        "type": "usage_based", "name": format!("{event_type} {usage_type}"),
        "usage_calculation": {"event_type": event_type, "usage_type": usage_type, "volume_field": "volume"},
        "billing_model": {"type": "real_time"},
        "pricing": pricing
    });
    if let (Some(p), Some(e)) = (price.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "billable_dimensions" {
                p["usage_calculation"]["billable_dimensions"] = v.clone();
            } else {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    price
}

/// An event `evt_1` of `event_type` with `data`, occurring 2026-11-15.
pub fn event(event_type: &str, data: Value) -> UsageEvent {
    event_with_id("evt_1", event_type, data)
}

pub fn event_with_id(id: &str, event_type: &str, data: Value) -> UsageEvent {
    serde_json::from_value(json!({
        "id": id, "event_type": event_type, "occurred_at": OCCURRED_AT, "data": data
    }))
    .expect("event")
}

/// When the fixture events occur.
pub const OCCURRED_AT: &str = "2026-11-15T12:00:00Z";

/// The id of the fee of `price_id` for the fixture event `event_id` (occurring at [`OCCURRED_AT`]).
pub fn fee_id(event_id: &str, price_id: &str) -> String {
    crate::fee_id(event_id, OCCURRED_AT.parse().expect("fixture time"), price_id)
}
