//! One table test per rule of `semantics.md` §3; each name says the rule it checks.

mod support;

use rater::{rate, Rating, Scratch, Subscribed};
use serde_json::json;
use support::*;

fn usd(values: serde_json::Value) -> serde_json::Value {
    json!([{"asset": "USD", "values": values}])
}

/// Version 1 with one usage price in USD.
fn usd_price(
    event_type: &str,
    usage_type: &str,
    extra: serde_json::Value,
    values: serde_json::Value,
) -> schemas::catalog::ProductVersion {
    version(1, json!([usage_price(event_type, usage_type, extra, usd(values))]))
}

#[test]
fn unit_usage_charges_unit_price_once_per_event() {
    let v = usd_price("call", "unit", json!({}), json!([{"unit_price": 0.002}]));
    for data in [json!({}), json!({"volume": 500})] {
        assert_eq!(amount(&v, &event("call", data)), d("0.002"));
    }
}

#[test]
fn volume_usage_charges_volume_times_rate() {
    let v = usd_price("gen", "volume", json!({}), json!([{"volume_rate": 0.5}]));
    let table = [("0", "0"), ("1", "0.5"), ("3.3", "1.65"), ("0.1", "0.05")];
    for (volume, expected) in table {
        let e = event("gen", serde_json::from_str(&format!("{{\"volume\": {volume}}}")).expect("json"));
        assert_eq!(amount(&v, &e), d(expected), "volume {volume}");
    }
}

#[test]
fn unit_and_volume_usage_adds_unit_price_to_the_volume_part() {
    let v =
        usd_price("job", "unit_and_volume", json!({}), json!([{"unit_price": 0.10, "volume_rate": 0.01}]));
    assert_eq!(amount(&v, &event("job", json!({"volume": 30}))), d("0.40"));
}

#[test]
fn package_size_on_a_flat_price_is_pro_rata() {
    let v = usd_price("chat", "volume", json!({}), json!([{"volume_rate": 1.25, "package_size": 1000000}]));
    assert_eq!(amount(&v, &event("chat", json!({"volume": 2353}))), d("0.00294125"));
    assert_eq!(amount(&v, &event("chat", json!({"volume": 1000000}))), d("1.25"));
}

#[test]
fn pro_rata_division_rounds_half_even_to_12_digits() {
    let v = usd_price("x", "volume", json!({}), json!([{"volume_rate": 1, "package_size": 3}]));
    assert_eq!(amount(&v, &event("x", json!({"volume": 1}))), d("0.333333333333"));
    assert_eq!(amount(&v, &event("x", json!({"volume": 2}))), d("0.666666666667"));
}

#[test]
fn package_pricing_model_bills_whole_packages() {
    let v = usd_price(
        "sms",
        "volume",
        json!({"pricing_model": "package"}),
        json!([{"volume_rate": 2, "package_size": 100}]),
    );
    for (volume, expected) in [(0, "0"), (1, "2"), (100, "2"), (101, "4"), (250, "6")] {
        assert_eq!(amount(&v, &event("sms", json!({"volume": volume}))), d(expected), "volume {volume}");
    }
}

fn image_version() -> schemas::catalog::ProductVersion {
    version(
        1,
        json!([usage_price(
            "image",
            "unit",
            json!({"billable_dimensions": ["model", "size"]}),
            json!([{"asset": "USD", "values": [
                {"dimensions": {"model": "dall-e-3", "size": "*"}, "values": [{"unit_price": 0.05}]},
                {"dimensions": {"model": "dall-e-3", "size": "1024"}, "values": [{"unit_price": 0.08}]},
                {"dimensions": {"model": "*", "size": "*"}, "values": [{"unit_price": 0.03}]},
                {"dimensions": {"model": "*", "size": "hd"}, "values": [{"unit_price": 0.07}]},
                {"dimensions": {"model": "gpt-image", "size": "*"}, "values": [{"unit_price": 0.10}]}
            ]}])
        )]),
    )
}

#[test]
fn dimensional_most_specific_match_wins() {
    let v = image_version();
    let table = [
        (json!({"model": "dall-e-3", "size": 1024}), "0.08"),
        (json!({"model": "dall-e-3", "size": "512"}), "0.05"),
        (json!({"model": "gpt-image"}), "0.10"),
        (json!({"model": "midjourney", "size": "512"}), "0.03"),
    ];
    for (data, expected) in table {
        assert_eq!(amount(&v, &event("image", data.clone())), d(expected), "{data}");
    }
}

#[test]
fn dimensional_star_also_matches_a_missing_key() {
    assert_eq!(amount(&image_version(), &event("image", json!({}))), d("0.03"));
}

#[test]
fn dimensional_ties_go_to_the_first_in_list_order() {
    // `gpt-image`+`*` and `*`+`hd` are equally specific: the earlier one in the list wins.
    assert_eq!(
        amount(&image_version(), &event("image", json!({"model": "gpt-image", "size": "hd"}))),
        d("0.07")
    );
}

#[test]
fn dimensional_values_compare_as_strings() {
    let v = version(
        1,
        json!([usage_price(
            "x",
            "unit",
            json!({"billable_dimensions": ["hd"]}),
            json!([{"asset": "USD", "values": [
                {"dimensions": {"hd": "true"}, "values": [{"unit_price": 2}]},
                {"dimensions": {"hd": "false"}, "values": [{"unit_price": 1}]}
            ]}])
        )]),
    );
    assert_eq!(amount(&v, &event("x", json!({"hd": true}))), d("2"));
    assert_eq!(amount(&v, &event("x", json!({"hd": "false"}))), d("1"));
}

#[test]
fn dimensional_no_match_gives_no_fee_and_a_warning() {
    let v = version(
        1,
        json!([usage_price(
            "x",
            "unit",
            json!({"billable_dimensions": ["model"]}),
            json!([{"asset": "USD", "values": [
                {"dimensions": {"model": "a"}, "values": [{"unit_price": 2}]}
            ]}])
        )]),
    );
    let (fees, warnings) = rate_one(&v, &event("x", json!({"model": "b"})));
    assert!(fees.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("no dimensional price matches"), "{warnings:?}");
}

fn tiered(model: &str, period: &str) -> schemas::catalog::ProductVersion {
    version(
        1,
        json!([usage_price(
            "t",
            "volume",
            json!({"pricing_model": model, "tiering": {"period": period}}),
            usd(json!([
                {"up_to": 100, "volume_rate": 1},
                {"up_to": 1000, "volume_rate": 0.5},
                {"volume_rate": 0.1}
            ]))
        )]),
    )
}

#[test]
fn tiered_is_graduated_over_the_period_counter() {
    let v = tiered("tiered", "monthly");
    let e = event("t", json!({"volume": 20}));
    let subs = [Subscribed { product_id: "p", product_code: "p", version: &v }];
    let mut ctx = Scratch::new();
    let mut out = Rating::default();
    // 0..20 in tier 1.
    rate(&e, &subs, &ctx, &mut out);
    assert_eq!(out.fees[0].amount, d("20"));
    ctx.apply(&out.counters);
    assert_eq!(out.counters[0].period.to_string(), "2026-11");
    // Counter at 90: 10 units at 1 and 10 at 0.5.
    let mut ctx = Scratch::new();
    ctx.apply(&[rater::CounterDelta {
        price_id: "price_1_0",
        period: out.counters[0].period,
        quantity: d("90"),
    }]);
    rate(&e, &subs, &ctx, &mut out);
    assert_eq!(out.fees[0].amount, d("15"));
    // Counter at 990, volume 1020: 10 at 0.5 and 1010 at 0.1.
    let mut ctx = Scratch::new();
    ctx.apply(&[rater::CounterDelta {
        price_id: "price_1_0",
        period: out.counters[0].period,
        quantity: d("990"),
    }]);
    rate(&event("t", json!({"volume": 1020})), &subs, &ctx, &mut out);
    assert_eq!(out.fees[0].amount, d("106"));
    assert_eq!(out.counters[0].quantity, d("1020"));
}

#[test]
fn tiered_up_to_is_an_inclusive_cumulative_bound() {
    let v = tiered("tiered", "lifetime");
    // Exactly 100 stays in the first tier.
    assert_eq!(amount(&v, &event("t", json!({"volume": 100}))), d("100"));
    assert_eq!(amount(&v, &event("t", json!({"volume": 101}))), d("100.5"));
}

#[test]
fn tiered_counters_are_kept_per_calendar_period_in_utc() {
    let v = tiered("tiered", "quarterly");
    let subs = [Subscribed { product_id: "p", product_code: "p", version: &v }];
    let mut out = Rating::default();
    let mut e = event("t", json!({"volume": 1}));
    e.occurred_at = "2026-03-31T23:30:00-01:00".parse().expect("time");
    rate(&e, &subs, &Scratch::new(), &mut out);
    assert_eq!(out.counters[0].period.to_string(), "2026-Q2");
}

#[test]
fn bulk_prices_the_whole_event_quantity_at_its_tier() {
    let v = tiered("bulk", "lifetime");
    for (volume, expected) in [(100, "100"), (101, "50.5"), (5000, "500")] {
        assert_eq!(amount(&v, &event("t", json!({"volume": volume}))), d(expected), "volume {volume}");
    }
    let (_, warnings) = rate_one(&v, &event("t", json!({"volume": 5})));
    assert!(warnings.is_empty());
}

#[test]
fn min_amount_and_max_amount_clamp_one_events_fee() {
    let v =
        usd_price("x", "volume", json!({}), json!([{"volume_rate": 1, "min_amount": 0.5, "max_amount": 10}]));
    for (volume, expected) in [(0.1, "0.5"), (3.0, "3"), (50.0, "10")] {
        assert_eq!(amount(&v, &event("x", json!({"volume": volume}))), d(expected), "volume {volume}");
    }
}

#[test]
fn custom_assets_are_priced_like_currencies() {
    let v = version(
        1,
        json!([usage_price(
            "x",
            "unit",
            json!({}),
            json!([{"asset": "CREDIT", "values": [{"unit_price": 3}]}])
        )]),
    );
    assert_eq!(rate_one(&v, &event("x", json!({}))).0, [("CREDIT".to_string(), d("3"))]);
}

#[test]
fn several_assets_charge_the_first_covered_else_the_first_listed() {
    let v = version(
        1,
        json!([usage_price(
            "x",
            "volume",
            json!({}),
            json!([
                {"asset": "CREDIT", "values": [{"volume_rate": 10}]},
                {"asset": "USD", "values": [{"volume_rate": 0.12}]}
            ])
        )]),
    );
    let e = event("x", json!({"volume": 5}));
    let credits = |n: &str| Scratch::new().with_balance("CREDIT", d(n)).with_balance("USD", d("100"));
    assert_eq!(rate_with(&v, &e, &credits("50")).0, [("CREDIT".to_string(), d("50"))]);
    assert_eq!(rate_with(&v, &e, &credits("49.99")).0, [("USD".to_string(), d("0.60"))]);
    // Nothing covers it: the first listed asset (it becomes debt there).
    assert_eq!(rate_with(&v, &e, &Scratch::new()).0, [("CREDIT".to_string(), d("50"))]);
}

#[test]
fn one_fee_per_matching_price_across_subscribed_versions() {
    let a = version(
        1,
        json!([
            usage_price("chat", "volume", json!({}), usd(json!([{"volume_rate": 1}]))),
            usage_price("chat", "unit", json!({}), usd(json!([{"unit_price": 0.01}]))),
            usage_price("image", "unit", json!({}), usd(json!([{"unit_price": 5}])))
        ]),
    );
    let b = version(2, json!([usage_price("chat", "unit", json!({}), usd(json!([{"unit_price": 0.02}])))]));
    let subs = [
        Subscribed { product_id: "p1", product_code: "a", version: &a },
        Subscribed { product_id: "p2", product_code: "b", version: &b },
    ];
    let mut out = Rating::default();
    rate(&event("chat", json!({"volume": 2})), &subs, &Scratch::new(), &mut out);
    let amounts: Vec<_> =
        out.fees.iter().map(|f| (f.product_code, f.price_id().to_string(), f.amount)).collect();
    assert_eq!(
        amounts,
        [
            ("a", "price_1_0".into(), d("2")),
            ("a", "price_1_1".into(), d("0.01")),
            ("b", "price_2_0".into(), d("0.02"))
        ]
    );
}

#[test]
fn an_event_no_price_matches_has_no_fees_and_no_warning() {
    let v = usd_price("chat", "unit", json!({}), json!([{"unit_price": 1}]));
    assert_eq!(rate_one(&v, &event("other", json!({}))), (vec![], vec![]));
}

#[test]
fn a_missing_negative_or_non_numeric_volume_warns_and_yields_no_fee() {
    let v = usd_price("x", "volume", json!({}), json!([{"volume_rate": 1}]));
    for data in [json!({}), json!({"volume": "12"}), json!({"volume": -1}), json!({"volume": true})] {
        let (fees, warnings) = rate_one(&v, &event("x", data.clone()));
        assert!(fees.is_empty(), "{data}");
        assert_eq!(warnings.len(), 1, "{data}");
        assert!(warnings[0].contains("volume field `volume`"), "{warnings:?}");
    }
}

#[test]
fn amounts_out_of_decimal_range_warn_instead_of_panicking() {
    let v = usd_price("x", "volume", json!({}), json!([{"volume_rate": 10000000000u64}]));
    let (fees, warnings) = rate_one(&v, &event("x", json!({"volume": 79228162514264337593543950335u128})));
    assert!(fees.is_empty());
    assert!(warnings[0].contains("out of range"), "{warnings:?}");
}

#[test]
fn fee_amounts_are_written_exactly_as_computed() {
    let v = usd_price("chat", "volume", json!({}), json!([{"volume_rate": 1.25, "package_size": 1000000}]));
    let e = event("chat", json!({"volume": 2353}));
    let subs = [Subscribed { product_id: "p", product_code: "p", version: &v }];
    let mut out = Rating::default();
    rate(&e, &subs, &Scratch::new(), &mut out);
    let json = serde_json::to_string(&out.fees[0].to_calculated(&e)).expect("json");
    assert!(json.contains(r#""amount":0.00294125"#), "{json}");
    assert!(json.contains(r#""volume_rate":1.25"#), "{json}");
    let fee = out.fees[0].to_event_fee(&e);
    assert_eq!(fee.id, rater::fixtures::fee_id("evt_1", "price_1_0"));
}
