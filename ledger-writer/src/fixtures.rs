//! Builders of `ledger.input` records for the writer's tests (unit and integration): one set of
//! builders, so every test means the same thing by "a top-up" or "a fee". Panics on malformed
//! input, which is always a bug in the test that wrote it.

use schemas::catalog::{Product, ProductVersion};
use schemas::ids::ProductId;
use schemas::ledger::{
    AdjustmentCommand, AdjustmentReason, ChargeCommand, CreateAdjustmentRequest, CreateChargeRequest,
    LedgerInput, RatedEvent, RatedUsage,
};
use schemas::usage::{EventFee, UsageEvent};
use schemas::{Decimal, Timestamp};
use serde_json::json;
use std::str::FromStr;

/// An exact decimal from its text.
pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

/// A UTC timestamp from RFC 3339 text.
pub fn at(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

/// An adjustment of `amount` USD on the default account, accepted at `accepted_at`.
pub fn adjustment(
    customer: &str,
    transaction_id: &str,
    amount: &str,
    reason: AdjustmentReason,
    accepted_at: &str,
) -> AdjustmentCommand {
    AdjustmentCommand {
        customer_id: customer.to_string(),
        accepted_at: at(accepted_at),
        body_hash: format!("hash_{transaction_id}_{amount}"),
        request: CreateAdjustmentRequest {
            transaction_id: transaction_id.to_string(),
            account_name: None,
            asset: "USD".to_string(),
            amount: d(amount),
            description: None,
            reason,
            effective_at: None,
            expires_at: None,
            metadata: None,
        },
    }
}

/// A charge of `amount` USD on the default account.
pub fn charge(customer: &str, transaction_id: &str, amount: &str, accepted_at: &str) -> ChargeCommand {
    ChargeCommand {
        customer_id: customer.to_string(),
        accepted_at: at(accepted_at),
        body_hash: format!("hash_{transaction_id}_{amount}"),
        request: CreateChargeRequest {
            transaction_id: transaction_id.to_string(),
            account_name: None,
            asset: "USD".to_string(),
            subject: None,
            description: None,
            metadata: None,
            input_units: None,
            input_volume: None,
            unit_price: None,
            volume_rate: None,
            package_size: None,
            amount: d(amount),
        },
    }
}

/// A `call` event `id` occurring 2026-11-15 with `data`.
pub fn event(id: &str, data: serde_json::Value) -> UsageEvent {
    rater::fixtures::event_with_id(id, "call", data)
}

/// The fee a rater computed for `event_id` and `price_id`: `amount` in `currency`.
pub fn fee(event_id: &str, price_id: &str, currency: &str, amount: &str) -> EventFee {
    serde_json::from_value(json!({
        "id": rater::fixtures::fee_id(event_id, price_id),
        "product_id": "prod_1", "product_code": "p", "product_version": 1,
        "price_id": price_id, "price_name": "call", "currency": currency, "usage_type": "unit",
        "amount": d(amount),
    }))
    .expect("fee")
}

/// An event priced by a rater, needing no customer state.
pub fn rated(event: UsageEvent, fees: Vec<EventFee>) -> RatedEvent {
    RatedEvent { event, products: Vec::new(), fees, warnings: Vec::new(), needs_state: false }
}

/// An event the writer must rate again against `product_id` version 1.
pub fn needs_state(event: UsageEvent, product_id: &str, provisional: Vec<EventFee>) -> RatedEvent {
    let products =
        serde_json::from_value(json!([{"id": product_id, "code": "p", "version": 1}])).expect("product");
    RatedEvent { event, products, fees: provisional, warnings: Vec::new(), needs_state: true }
}

/// One accepted `POST /events` request.
pub fn usage(customer: &str, accepted_at: &str, events: Vec<RatedEvent>) -> LedgerInput {
    LedgerInput::Usage(RatedUsage {
        customer_id: customer.to_string(),
        customer_external_id: None,
        accepted_at: at(accepted_at),
        events,
    })
}

/// A usage input with one `call` event `event_id` costing `amount` USD (price `price_1`).
pub fn usage_fee(customer: &str, event_id: &str, amount: &str, accepted_at: &str) -> LedgerInput {
    usage(
        customer,
        accepted_at,
        vec![rated(event(event_id, json!({})), vec![fee(event_id, "price_1", "USD", amount)])],
    )
}

/// Product `id` with one published version (code `p`).
pub fn product(id: &str, version: ProductVersion) -> Product {
    Product {
        id: ProductId::from_raw(id),
        code: "p".to_string(),
        name: "p".to_string(),
        created_at: at("2026-01-01T00:00:00Z"),
        default_version: Some(version.version),
        versions: vec![version],
        deleted_at: None,
    }
}

/// Product `id` whose version 1 prices `call` events by `data.volume`, graduated over the
/// customer's lifetime counter: up to 100 at 1 USD, up to 1,000 at 0.5, then 0.1 (price
/// `price_1_0`).
pub fn graduated_product(id: &str) -> Product {
    let price = rater::fixtures::usage_price(
        "call",
        "volume",
        json!({"pricing_model": "tiered", "tiering": {"period": "lifetime"}}),
        json!([{"asset": "USD", "values": [
            {"up_to": 100, "volume_rate": 1},
            {"up_to": 1000, "volume_rate": 0.5},
            {"volume_rate": 0.1}
        ]}]),
    );
    product(id, rater::fixtures::version(1, json!([price])))
}
