//! The real-time pipeline end to end over HTTP: `POST /events` → ingest → usage.raw → raters →
//! ledger.input → ledger writers → store → wallet reads; adjustments and charges through the
//! same writers.

mod common;

use common::{
    available, dec, eventually, must, now, send_usage, subscribed_customer, unique, unit_price, TestServer,
};
use serde_json::{json, Value};

fn tokens_price() -> Value {
    json!({"type": "usage_based", "name": "Input tokens", "billing_model": {"type": "real_time"},
           "usage_calculation": {"event_type": "chat", "usage_type": "volume", "volume_field": "tokens"},
           "pricing": [{"asset": "USD", "values": [{"volume_rate": 1.25, "package_size": 1000000}]}]})
}

fn adjust(base: &str, customer: &str, body: Value) -> (u16, Value) {
    common::request(
        base,
        Some(common::KEY),
        "POST",
        &format!("/customers/{customer}/wallet/adjustments"),
        Some(body.to_string()),
    )
}

fn topup(base: &str, customer: &str, asset: &str, amount: &str) -> Value {
    let body: Value = serde_json::from_str(&format!(
        r#"{{"transaction_id": "{}", "asset": "{asset}", "amount": {amount}, "reason": "external_topup"}}"#,
        unique("top-")
    ))
    .expect("json");
    let (status, response) = adjust(base, customer, body);
    assert_eq!(status, 201, "{response}");
    response
}

fn send(base: &str, customer: &str, events: Value) {
    send_usage(base, &json!({"customer_id": customer, "events": events}));
}

fn event(id: &str, event_type: &str, data: Value) -> Value {
    json!({"id": id, "event_type": event_type, "occurred_at": now(), "data": data})
}

/// Waits until the event is posted and returns `GET /events/{id}`.
fn posted_event(base: &str, id: &str) -> Value {
    eventually(&format!("event {id} posted"), || {
        let (status, body) = common::request(base, Some(common::KEY), "GET", &format!("/events/{id}"), None);
        (status == 200).then_some(body)
    })
}

#[test]
fn an_event_is_priced_and_drawn_down_from_the_wallet_exactly() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([tokens_price()]));
    topup(&s.base, &customer, "USD", "10");
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("10"));
    let id = unique("evt-");
    send(&s.base, &customer, json!([event(&id, "chat", json!({"tokens": 2353}))]));
    let posted = posted_event(&s.base, &id);
    assert_eq!(posted["fees"][0]["amount"].to_string(), "0.00294125", "{posted}");
    assert_eq!(posted["customer_id"], customer.as_str());
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("9.99705875"));
    // The fee is a transaction of its own, keyed by the fee id.
    let fee_id = posted["fees"][0]["id"].as_str().expect("fee id");
    let txn = s.get(&format!("/customers/{customer}/wallet/transactions/{fee_id}"));
    assert_eq!((txn["type"].as_str(), txn["amount"].to_string()), (Some("fee"), "-0.00294125".to_string()));
}

#[test]
fn a_duplicate_event_is_accepted_and_changes_nothing() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "0.05")]));
    let id = unique("img-");
    send(&s.base, &customer, json!([event(&id, "image", json!({}))]));
    posted_event(&s.base, &id);
    // Same id again (even with another body), and alongside a new one.
    let second = unique("img-");
    send(
        &s.base,
        &customer,
        json!([event(&id, "image", json!({"size": "big"})), event(&second, "image", json!({}))]),
    );
    posted_event(&s.base, &second);
    send(&s.base, &customer, json!([event(&id, "image", json!({}))]));
    let listed = s.get(&format!("/events?customer_id={customer}"));
    assert_eq!(listed["total_count"], 2, "{listed}");
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("-0.10"));
}

#[test]
fn post_events_validates_the_whole_request_and_accepts_nothing_on_error() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "1")]));
    let good = unique("ok-");
    let (status, body) = s.call(
        "POST",
        "/events",
        Some(json!({"customer_id": customer, "events": [
            event(&good, "image", json!({})),
            {"id": unique("old-"), "event_type": "image", "occurred_at": "2020-01-01T00:00:00Z"},
            {"id": "", "event_type": "image", "occurred_at": now()}
        ]})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["events[1].occurred_at"].is_array(), "{body}");
    assert!(body["errors"]["events[2].id"].is_array(), "{body}");
    let (status, body) = s.call(
        "POST",
        "/events",
        Some(json!({"customer_id": "cust_nope", "events": [event("x", "image", json!({}))]})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"]["customer_id"].is_array(), "{body}");
    let (status, body) = s.call("POST", "/events", Some(json!({"events": [event("x", "image", json!({}))]})));
    assert_eq!(status, 422, "{body}");
    let (status, _) = s.call("POST", "/events", Some(json!("not an object")));
    assert_eq!(status, 400);
    // Nothing of the invalid request was accepted.
    let (status, _) = s.call("GET", &format!("/events/{good}"), None);
    assert_eq!(status, 404);
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("0"));
}

#[test]
fn events_sent_by_external_id_are_listed_newest_first_with_their_fees() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "0.05")]));
    let external = s.get(&format!("/customers/{customer}"))["external_id"].as_str().expect("ext").to_string();
    let (older, newer) = (unique("a-"), unique("b-"));
    // Both after the subscription started (an event before it would not be billed).
    let at = |minutes_ahead: i64| {
        (chrono::Utc::now() + chrono::Duration::minutes(minutes_ahead))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    must(
        &s.base,
        204,
        "POST",
        "/events",
        Some(json!({"customer_external_id": external, "events": [
            {"id": older, "event_type": "image", "occurred_at": at(0)},
            {"id": newer, "event_type": "unpriced", "occurred_at": at(2)}
        ]})),
    );
    posted_event(&s.base, &older);
    posted_event(&s.base, &newer);
    let listed = s.get(&format!("/events?customer_id={customer}"));
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["id"].as_str(), items[0]["has_fees"].as_bool()),
        (Some(newer.as_str()), Some(false))
    );
    assert_eq!((items[1]["id"].as_str(), items[1]["has_fees"].as_bool()), (Some(older.as_str()), Some(true)));
    assert_eq!(items[1]["total_fees"].to_string(), "0.05");
    assert_eq!(items[1]["external_id"], external.as_str());
    let only_fees = s.get(&format!("/events?customer_id={customer}&has_fees=true"));
    assert_eq!(only_fees["total_count"], 1, "{only_fees}");
}

#[test]
fn adjustments_replay_the_original_response_and_conflict_on_another_body() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "1")]));
    let body =
        json!({"transaction_id": "refill-1", "asset": "USD", "amount": 25.5, "reason": "external_topup"});
    let (status, first) = adjust(&s.base, &customer, body.clone());
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["id"], "refill-1");
    let (status, replay) = adjust(&s.base, &customer, body);
    assert_eq!((status, &replay), (201, &first), "a replay answers the original response");
    let (status, conflict) = adjust(
        &s.base,
        &customer,
        json!({"transaction_id": "refill-1", "asset": "USD", "amount": 30, "reason": "external_topup"}),
    );
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("25.5"));
    let txn = s.get(&format!("/customers/{customer}/wallet/transactions/refill-1"));
    assert_eq!((txn["type"].as_str(), txn["amount"].to_string()), (Some("adjustment"), "25.5".to_string()));
    // Validation names the field.
    let (status, invalid) = adjust(
        &s.base,
        &customer,
        json!({"transaction_id": "x", "asset": "NOPE", "amount": 0, "reason": "gift"}),
    );
    assert_eq!(status, 422, "{invalid}");
    assert!(invalid["errors"]["asset"].is_array() && invalid["errors"]["amount"].is_array(), "{invalid}");
    let (status, _) = adjust(
        &s.base,
        "cust_missing",
        json!({"transaction_id": "y", "asset": "USD", "amount": 1, "reason": "gift"}),
    );
    assert_eq!(status, 404);
}

#[test]
fn grants_are_consumed_promotion_first_and_listed_with_filters() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "4")]));
    topup(&s.base, &customer, "USD", "10");
    let (status, _) = adjust(
        &s.base,
        &customer,
        json!({"transaction_id": "promo", "asset": "USD", "amount": 5, "reason": "gift"}),
    );
    assert_eq!(status, 201);
    let id = unique("img-");
    send(&s.base, &customer, json!([event(&id, "image", json!({}))]));
    posted_event(&s.base, &id);
    let grants = s.get(&format!("/customers/{customer}/wallet/default:USD/grants"));
    let by_purpose = |purpose: &str| {
        grants["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|g| g["purpose"] == purpose)
            .map(|g| dec(&g["available"].to_string()))
    };
    // The 4 came out of the promotion grant (priority 10) before the paid one (30).
    assert_eq!(by_purpose("promotion"), Some(dec("1")), "{grants}");
    assert_eq!(by_purpose("paid"), Some(dec("10")), "{grants}");
    let promos = s.get(&format!("/customers/{customer}/wallet/default:USD/grants?purpose=promotion"));
    assert_eq!(promos["total_count"], 1, "{promos}");
    let account = s.get(&format!("/customers/{customer}/wallet/default:USD"));
    assert_eq!(dec(&account["available"].to_string()), dec("11"));
    assert_eq!(dec(&account["pending_in"].to_string()), dec("0"));
    let (status, _) = s.call("GET", &format!("/customers/{customer}/wallet/default:EUR"), None);
    assert_eq!(status, 404);
}

#[test]
fn charges_debit_exactly_and_overdraft_becomes_debt_repaid_by_the_next_grant() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("image", "USD", "1")]));
    let charge =
        json!({"transaction_id": "setup-fee", "asset": "USD", "amount": 7.25, "description": "setup"});
    let created =
        must(&s.base, 201, "POST", &format!("/customers/{customer}/wallet/charges"), Some(charge.clone()));
    let replay = must(&s.base, 201, "POST", &format!("/customers/{customer}/wallet/charges"), Some(charge));
    assert_eq!(created, replay);
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("-7.25"));
    topup(&s.base, &customer, "USD", "10");
    assert_eq!(available(&s.base, &customer, "default:USD"), dec("2.75"));
    let txn = s.get(&format!("/customers/{customer}/wallet/transactions/setup-fee"));
    assert_eq!((txn["type"].as_str(), txn["amount"].to_string()), (Some("fee"), "-7.25".to_string()));
}

#[test]
fn concurrency_many_clients_one_customer_events_adjustments_and_charges_end_exact() {
    let s = TestServer::start();
    let (_, customer) = subscribed_customer(&s.base, json!([unit_price("call", "USD", "0.01")]));
    let clients = 8;
    let rounds = 10;
    let events_per_request = 5;
    std::thread::scope(|scope| {
        for client in 0..clients {
            let (base, customer) = (s.base.clone(), customer.clone());
            scope.spawn(move || {
                for round in 0..rounds {
                    let events: Vec<Value> = (0..events_per_request)
                        .map(|i| event(&format!("c{client}-r{round}-e{i}"), "call", json!({})))
                        .collect();
                    send(&base, &customer, Value::Array(events));
                    let id = format!("c{client}-r{round}");
                    let adjustment = json!({"transaction_id": format!("top-{id}"), "asset": "USD", "amount": 0.3, "reason": "external_topup"});
                    let (status, body) = adjust(&base, &customer, adjustment);
                    assert_eq!(status, 201, "{body}");
                    let charge = json!({"transaction_id": format!("chg-{id}"), "asset": "USD", "amount": 0.07});
                    must(&base, 201, "POST", &format!("/customers/{customer}/wallet/charges"), Some(charge));
                }
            });
        }
    });
    // 80 rounds of: +0.30 top-up, -0.07 charge, -5 x 0.01 usage = +0.18 each.
    let expected = dec("0.18") * schemas::Decimal::from(clients * rounds);
    let total_events = clients * rounds * events_per_request;
    eventually("every event posted", || {
        let listed = s.get(&format!("/events?customer_id={customer}&limit=1"));
        (listed["total_count"] == total_events).then_some(())
    });
    assert_eq!(available(&s.base, &customer, "default:USD"), expected);
}
