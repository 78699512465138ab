//! Builders shared by the rater's test files.
#![allow(dead_code)]

use rater::{rate, Rating, RatingContext, Scratch, Subscribed};
use schemas::catalog::{Price, ProductVersion, VersionStatus};
use schemas::ids::{PriceId, ProductVersionId};
use schemas::usage::UsageEvent;
use schemas::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A published version with the given prices; price ids are `price_0`, `price_1`, ...
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

/// A usage-based price from its parts.
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

pub fn event(event_type: &str, data: Value) -> UsageEvent {
    serde_json::from_value(json!({
        "id": "evt_1", "event_type": event_type, "occurred_at": "2026-11-15T12:00:00Z", "data": data
    }))
    .expect("event")
}

/// Rates one event against one version; returns (asset, amount) per fee and the warnings.
pub fn rate_with(
    v: &ProductVersion,
    e: &UsageEvent,
    ctx: &dyn RatingContext,
) -> (Vec<(String, Decimal)>, Vec<String>) {
    let subs = [Subscribed { product_id: "prod_1", product_code: "p", version: v }];
    let mut out = Rating::default();
    rate(e, &subs, ctx, &mut out);
    (out.fees.iter().map(|f| (f.asset.to_string(), f.amount)).collect(), out.warnings.clone())
}

pub fn rate_one(v: &ProductVersion, e: &UsageEvent) -> (Vec<(String, Decimal)>, Vec<String>) {
    rate_with(v, e, &Scratch::new())
}

/// The single fee's amount (panics otherwise).
pub fn amount(v: &ProductVersion, e: &UsageEvent) -> Decimal {
    let (fees, warnings) = rate_one(v, e);
    assert_eq!(fees.len(), 1, "expected one fee, got {fees:?} / {warnings:?}");
    fees[0].1
}
