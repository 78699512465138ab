//! The public Credyt tutorial examples, priced exactly.

mod support;

use rater::{rate, Rating, Scratch, Subscribed};
use serde_json::json;
use support::*;

fn gpt() -> schemas::catalog::ProductVersion {
    let tokens = |event_field: &str, rate: &str| {
        json!({
            "type": "usage_based", "name": format!("GPT {event_field}"),
            "usage_calculation": {"event_type": "chat_completion", "usage_type": "volume", "volume_field": event_field},
            "billing_model": {"type": "real_time"},
            "pricing": [{"asset": "USD", "values": [{"volume_rate": serde_json::Value::Number(rate.parse().expect("number")), "package_size": 1000000}]}]
        })
    };
    version(1, json!([tokens("input_tokens", "1.25"), tokens("output_tokens", "10.00")]))
}

#[test]
fn gpt_input_and_output_tokens_cost_exactly_the_list_price_per_million() {
    let v = gpt();
    let subs = [Subscribed { product_id: "prod_gpt", product_code: "gpt", version: &v }];
    let e = event("chat_completion", json!({"input_tokens": 1000000, "output_tokens": 1000000}));
    let mut out = Rating::default();
    rate(&e, &subs, &Scratch::new(), &mut out);
    let amounts: Vec<_> = out.fees.iter().map(|f| f.amount).collect();
    assert_eq!(amounts, [d("1.25"), d("10.00")]);
    let wire =
        serde_json::to_value(out.fees.iter().map(|f| f.to_calculated(&e)).collect::<Vec<_>>()).expect("json");
    // Computed amounts are written normalized: 10.00 is written as 10.
    assert_eq!((wire[0]["amount"].to_string(), wire[1]["amount"].to_string()), ("1.25".into(), "10".into()));
    assert_eq!(wire[0]["input_volume"].to_string(), "1000000");
}

#[test]
fn gpt_2353_input_tokens_cost_0_00294125() {
    let v = gpt();
    let (fees, _) =
        rate_one(&v, &event("chat_completion", json!({"input_tokens": 2353, "output_tokens": 0})));
    assert_eq!(fees, [("USD".to_string(), d("0.00294125")), ("USD".to_string(), d("0"))]);
}

#[test]
fn image_models_are_priced_per_model_with_a_star_fallback() {
    let v = version(
        1,
        json!([{
            "type": "usage_based", "name": "Image generation",
            "usage_calculation": {"event_type": "image_generated", "usage_type": "unit", "billable_dimensions": ["model"]},
            "billing_model": {"type": "real_time"},
            "pricing": [{"asset": "USD", "values": [
                {"dimensions": {"model": "dall-e-3"}, "values": [{"unit_price": 0.05}]},
                {"dimensions": {"model": "gpt-image-1"}, "values": [{"unit_price": 0.10}]},
                {"dimensions": {"model": "*"}, "values": [{"unit_price": 0.03}]}
            ]}]
        }]),
    );
    for (model, expected) in [("dall-e-3", "0.05"), ("gpt-image-1", "0.10"), ("stable-diffusion", "0.03")] {
        assert_eq!(amount(&v, &event("image_generated", json!({"model": model}))), d(expected), "{model}");
    }
}
