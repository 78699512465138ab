//! `POST /products/{id}/{version}/simulate-usage` over HTTP.

mod common;

use common::{request, unique, TestServer, KEY};
use serde_json::{json, Value};

fn create(s: &TestServer, prices: &str, publish: bool) -> String {
    let body = format!(
        r#"{{"name": "Sim", "code": "{}", "publish": {publish}, "prices": {prices}}}"#,
        unique("sim-")
    );
    let (status, created) = request(&s.base, Some(KEY), "POST", "/products", Some(body));
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_string()
}

const GPT: &str = r#"[
  {"type": "usage_based", "name": "Input", "billing_model": {"type": "real_time"},
   "usage_calculation": {"event_type": "chat", "usage_type": "volume", "volume_field": "input_tokens"},
   "pricing": [{"asset": "USD", "values": [{"volume_rate": 1.25, "package_size": 1000000}]}]},
  {"type": "usage_based", "name": "Output", "billing_model": {"type": "real_time"},
   "usage_calculation": {"event_type": "chat", "usage_type": "volume", "volume_field": "output_tokens"},
   "pricing": [{"asset": "USD", "values": [{"volume_rate": 10.00, "package_size": 1000000}]}]}
]"#;

fn simulate(s: &TestServer, id: &str, version: &str, events: Value) -> (u16, Value) {
    s.call("POST", &format!("/products/{id}/{version}/simulate-usage"), Some(json!({ "events": events })))
}

fn event(id: &str, event_type: &str, data: Value) -> Value {
    json!({"id": id, "event_type": event_type, "occurred_at": "2026-11-01T10:00:00Z", "data": data})
}

#[test]
fn simulate_usage_prices_tokens_exactly() {
    let s = TestServer::start();
    let id = create(&s, GPT, true);
    let (status, body) = simulate(
        &s,
        &id,
        "default",
        json!([
            event("e1", "chat", json!({"input_tokens": 2353, "output_tokens": 1000000})),
            event("e2", "other", json!({}))
        ]),
    );
    assert_eq!(status, 200, "{body}");
    let fees = body["fees"].as_array().expect("fees");
    assert_eq!(fees.len(), 2);
    assert_eq!(fees[0]["amount"].to_string(), "0.00294125");
    assert_eq!(fees[1]["amount"].to_string(), "10");
    assert_eq!((fees[0]["usage_id"].as_str(), fees[0]["event_type"].as_str()), (Some("e1"), Some("chat")));
    assert_eq!(fees[0]["input_volume"].to_string(), "2353");
    assert_eq!(fees[0]["volume_rate"].to_string(), "1.25");
    assert_eq!(fees[0]["usage_type"], "volume");
    assert!(fees[0]["price_id"].as_str().is_some_and(|p| p.starts_with("price_")));
    assert!(body.get("warnings").is_none(), "{body}");
}

#[test]
fn simulate_usage_counts_tiers_from_zero_across_the_request() {
    let s = TestServer::start();
    let tiered = r#"[{"type": "usage_based", "name": "Tiered", "pricing_model": "tiered",
        "tiering": {"period": "monthly"}, "billing_model": {"type": "real_time"},
        "usage_calculation": {"event_type": "gen", "usage_type": "volume", "volume_field": "n"},
        "pricing": [{"asset": "USD", "values": [{"up_to": 100, "volume_rate": 1}, {"volume_rate": 0.5}]}]}]"#;
    let id = create(&s, tiered, false);
    let events = json!([event("a", "gen", json!({"n": 60})), event("b", "gen", json!({"n": 60}))]);
    // Drafts can be simulated before publishing.
    let (status, body) = simulate(&s, &id, "1", events.clone());
    assert_eq!(status, 200, "{body}");
    let amounts: Vec<String> =
        body["fees"].as_array().expect("fees").iter().map(|f| f["amount"].to_string()).collect();
    assert_eq!(amounts, ["60", "50"]);
    // Nothing was remembered: the same request gives the same answer.
    assert_eq!(simulate(&s, &id, "1", events).1, body);
}

#[test]
fn simulate_usage_reports_warnings_and_validates_events() {
    let s = TestServer::start();
    let id = create(&s, GPT, true);
    let (status, body) =
        simulate(&s, &id, "1", json!([event("e1", "chat", json!({"input_tokens": "many"}))]));
    assert_eq!(status, 200);
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 2, "{body}");
    assert!(body["fees"].as_array().is_some_and(Vec::is_empty));
    let (status, body) =
        simulate(&s, &id, "1", json!([event("e1", "chat", json!({})), event("", "", json!({}))]));
    assert_eq!(status, 422);
    assert!(
        body["errors"]["events[1].id"].is_array() && body["errors"]["events[1].event_type"].is_array(),
        "{body}"
    );
    let (status, body) = simulate(&s, &id, "1", json!([event("e1", "chat", json!({"x": null}))]));
    assert_eq!(status, 422);
    assert!(body["errors"]["events[0].data.x"].is_array(), "{body}");
    let many: Vec<Value> = (0..1001).map(|i| event(&format!("e{i}"), "chat", json!({}))).collect();
    assert!(simulate(&s, &id, "1", json!(many)).1["errors"]["events"].is_array());
    assert_eq!(simulate(&s, &id, "7", json!([event("e", "chat", json!({}))])).0, 404);
    assert_eq!(simulate(&s, "prod_missing", "1", json!([event("e", "chat", json!({}))])).0, 404);
}
