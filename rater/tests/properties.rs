//! Invariants of the rating core, checked on generated prices and events.

mod support;

use proptest::prelude::*;
use rater::amount::{self, Usage};
use rater::{rate, Rating, Scratch, Subscribed};
use schemas::catalog::{PriceValue, UsageType};
use schemas::Decimal;
use serde_json::json;
use support::*;

/// A non-negative decimal with up to `scale` fractional digits.
fn decimal(max: i64, scale: u32) -> impl Strategy<Value = Decimal> {
    (0..=max).prop_map(move |n| Decimal::new(n, scale))
}

fn tiers() -> impl Strategy<Value = Vec<PriceValue>> {
    (prop::collection::vec((1i64..500, decimal(10_000, 3)), 0..4), decimal(10_000, 3)).prop_map(
        |(bounds, last)| {
            let mut upper = 0;
            let mut tiers: Vec<PriceValue> = bounds
                .into_iter()
                .map(|(step, rate)| {
                    upper += step;
                    PriceValue {
                        up_to: Some(Decimal::from(upper)),
                        volume_rate: Some(rate),
                        ..Default::default()
                    }
                })
                .collect();
            tiers.push(PriceValue { volume_rate: Some(last), ..Default::default() });
            tiers
        },
    )
}

/// Graduated pricing by brute force: one unit at a time.
fn piecewise(tiers: &[PriceValue], before: i64, quantity: i64) -> Decimal {
    (before + 1..=before + quantity)
        .map(|position| {
            let p = Decimal::from(position);
            let tier =
                tiers.iter().find(|t| t.up_to.is_none_or(|u| p <= u)).or(tiers.last()).expect("a tier");
            tier.volume_rate.unwrap_or_default()
        })
        .sum()
}

fn volume(v: i64) -> Usage {
    Usage { usage_type: UsageType::Volume, volume: Some(Decimal::from(v)) }
}

proptest! {
    #[test]
    fn graduated_tiers_equal_the_piecewise_sum(t in tiers(), before in 0i64..2000, quantity in 0i64..2000) {
        let priced = amount::graduated(volume(quantity), &t, Decimal::from(before)).expect("priced");
        prop_assert_eq!(priced.amount, piecewise(&t, before, quantity));
    }

    #[test]
    fn graduated_tiers_split_additively_across_events(t in tiers(), before in 0i64..2000, a in 0i64..1000, b in 0i64..1000) {
        let whole = amount::graduated(volume(a + b), &t, Decimal::from(before)).expect("whole").amount;
        let first = amount::graduated(volume(a), &t, Decimal::from(before)).expect("first").amount;
        let second = amount::graduated(volume(b), &t, Decimal::from(before + a)).expect("second").amount;
        prop_assert_eq!(whole, first + second);
    }

    #[test]
    fn pro_rata_pricing_is_additive(rate in decimal(1_000_000, 4), size_exp in 0u32..7, a in 0i64..10_000_000, b in 0i64..10_000_000) {
        let v = PriceValue { volume_rate: Some(rate), package_size: Some(Decimal::from(10i64.pow(size_exp))), ..Default::default() };
        let whole = amount::prorata(Decimal::from(a + b), &v).expect("whole");
        let parts = amount::prorata(Decimal::from(a), &v).expect("a") + amount::prorata(Decimal::from(b), &v).expect("b");
        prop_assert_eq!(whole, parts);
    }

    #[test]
    fn fees_are_never_negative_and_clamps_hold(
        unit_price in decimal(100_000, 4),
        rate in decimal(100_000, 4),
        min in proptest::option::of(decimal(1_000, 2)),
        span in proptest::option::of(decimal(100_000, 2)),
        model in prop::sample::select(vec!["flat", "package", "tiered", "bulk"]),
        usage_type in prop::sample::select(vec!["unit", "volume", "unit_and_volume"]),
        volume in decimal(10_000_000, 2),
    ) {
        let max = span.map(|s| min.unwrap_or_default() + s);
        let mut value = json!({"unit_price": unit_price, "volume_rate": rate, "package_size": 1000});
        if let Some(m) = min { value["min_amount"] = json!(m); }
        if let Some(m) = max { value["max_amount"] = json!(m); }
        let values = if matches!(model, "tiered" | "bulk") {
            let mut low = value.clone();
            low["up_to"] = json!(500);
            json!([low, value])
        } else {
            json!([value])
        };
        let v = version(1, json!([usage_price("e", usage_type, json!({"pricing_model": model}), json!([{"asset": "USD", "values": values}]))]));
        let (fees, warnings) = rate_one(&v, &event("e", json!({"volume": volume})));
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(fees.len(), 1);
        let amount = fees[0].1;
        prop_assert!(amount >= Decimal::ZERO);
        if let Some(m) = min { prop_assert!(amount >= m); }
        if let Some(m) = max { prop_assert!(amount <= m); }
    }

    #[test]
    fn rating_is_deterministic(volume in decimal(10_000_000, 3), model in prop::sample::select(vec!["a", "b", "c"])) {
        let v = version(1, json!([
            usage_price("e", "volume", json!({"billable_dimensions": ["model"]}), json!([{"asset": "USD", "values": [
                {"dimensions": {"model": "a"}, "values": [{"volume_rate": 1.5, "package_size": 7}]},
                {"dimensions": {"model": "*"}, "values": [{"volume_rate": 0.3}]}
            ]}])),
            usage_price("e", "unit", json!({}), json!([{"asset": "USD", "values": [{"unit_price": 0.01}]}]))
        ]));
        let e = event("e", json!({"volume": volume, "model": model}));
        let subs = [Subscribed { product_id: "p", product_code: "p", version: &v }];
        let (mut first, mut second) = (Rating::default(), Rating::default());
        rate(&e, &subs, &Scratch::new(), &mut first);
        rate(&e, &subs, &Scratch::new(), &mut second);
        prop_assert_eq!(first, second);
    }
}
