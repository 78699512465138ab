//! Helpers shared by the rater's test files (the catalog builders are `rater::fixtures`).
#![allow(dead_code)]

// Each test file uses its own subset of these.
#[allow(unused_imports)]
pub use rater::fixtures::{event, usage_price, version};
use rater::{rate, Rating, RatingContext, Scratch, Subscribed};
use schemas::catalog::ProductVersion;
use schemas::usage::UsageEvent;
use schemas::Decimal;
use std::str::FromStr;

pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
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
