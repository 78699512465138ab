//! One accepted request (`RawUsage`) rated into what the ledger writer applies (`RatedUsage`),
//! without customer state: pure and synchronous, the worker's IO happens around it.
//!
//! Each event is rated against the product versions the customer is actively subscribed to at
//! its `occurred_at` ([`Customer::products_active_at`]). The rater owns no tier counters or
//! balances, so it rates with a [`Probe`] that answers zero counters and no balances and
//! remembers whether rating asked at all: if it did (a graduated tier, or a choice between
//! several assets), the event is marked `needs_state` and the writer, which owns that state,
//! rates it again against the same pinned versions.

use crate::context::RatingContext;
use crate::fee::Rating;
use crate::period::PeriodKey;
use crate::rate::{rate, Subscribed};
use schemas::catalog::Product;
use schemas::customer::Customer;
use schemas::ledger::{RatedEvent, RatedUsage, RawUsage};
use schemas::Decimal;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

/// A rating context with no state that records whether rating read any.
#[derive(Debug, Default)]
pub struct Probe {
    asked: Cell<bool>,
}

impl Probe {
    /// Whether rating read a tier counter or a balance.
    pub fn was_asked(&self) -> bool {
        self.asked.get()
    }
}

impl RatingContext for Probe {
    fn cumulative(&self, _price: &str, _period: PeriodKey) -> Decimal {
        self.asked.set(true);
        Decimal::ZERO
    }

    fn available(&self, _asset: &str) -> Option<Decimal> {
        self.asked.set(true);
        None
    }
}

/// Products by id, each holding (at least) the versions the customer's subscriptions pin.
pub type Products = HashMap<String, Arc<Product>>;

/// Rates every event of `raw` for `customer`. A pinned version missing from `products` is not
/// rated and leaves a warning on the event (the catalog lost a version it must keep).
pub fn rate_usage(raw: RawUsage, customer: &Customer, products: &Products) -> RatedUsage {
    let mut rating = Rating::default();
    let events = raw
        .events
        .into_iter()
        .map(|event| {
            let pinned = customer.products_active_at(event.occurred_at);
            let mut warnings = Vec::new();
            let mut subscribed = Vec::with_capacity(pinned.len());
            for p in &pinned {
                match products
                    .get(p.id.as_str())
                    .and_then(|product| Some((product, product.version(p.version)?)))
                {
                    Some((product, version)) => subscribed.push(Subscribed {
                        product_id: product.id.as_str(),
                        product_code: &product.code,
                        version,
                    }),
                    None => warnings.push(format!(
                        "subscribed product `{}` version {} was not found; its prices were not applied",
                        p.id.as_str(),
                        p.version
                    )),
                }
            }
            let probe = Probe::default();
            rate(&event, &subscribed, &probe, &mut rating);
            let fees = rating.fees.iter().map(|fee| fee.to_event_fee(&event)).collect();
            warnings.append(&mut rating.warnings);
            // Post-paid usage is counted by the writer, which owns the period's tallies.
            let needs_state = probe.was_asked() || !rating.deferred.is_empty();
            // Only the writer's second rating reads the pinned list: other events travel without it.
            let products = if needs_state { pinned.into_iter().cloned().collect() } else { Vec::new() };
            RatedEvent { products, fees, warnings, needs_state, event }
        })
        .collect();
    RatedUsage {
        customer_id: raw.customer_id,
        customer_external_id: customer.external_id.clone(),
        accepted_at: raw.accepted_at,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{event_with_id, usage_price, version};
    use schemas::customer::{SubscribedProduct, Subscription, SubscriptionStatus};
    use schemas::ids::{CustomerId, ProductId, SubscriptionId};
    use serde_json::json;

    fn at(text: &str) -> schemas::Timestamp {
        text.parse().unwrap()
    }

    fn customer(pinned: &[(&str, u32)]) -> Customer {
        Customer {
            id: CustomerId::from_raw("cust_1"),
            external_id: None,
            name: "c".into(),
            email: None,
            metadata: None,
            subscriptions: vec![Subscription {
                id: SubscriptionId::from_raw("sub_1"),
                started_at: at("2026-01-01T00:00:00Z"),
                renews_at: None,
                anchored_at: None,
                period: None,
                status: SubscriptionStatus::Active,
                products: pinned
                    .iter()
                    .map(|(id, v)| SubscribedProduct {
                        id: ProductId::from_raw(*id),
                        code: id.to_string(),
                        version: *v,
                    })
                    .collect(),
            }],
            external_accounts: None,
            created_at: at("2026-01-01T00:00:00Z"),
            accounts: Vec::new(),
            test_clock: None,
        }
    }

    fn products() -> Products {
        let price =
            usage_price("call", "unit", json!({}), json!([{"asset": "USD", "values": [{"unit_price": 2}]}]));
        let product = Product {
            id: ProductId::from_raw("prod_1"),
            code: "calls".into(),
            name: "Calls".into(),
            created_at: at("2026-01-01T00:00:00Z"),
            versions: vec![version(1, json!([price]))],
            default_version: Some(1),
            deleted_at: None,
        };
        Products::from([("prod_1".to_string(), Arc::new(product))])
    }

    fn raw(events: &[&str]) -> RawUsage {
        RawUsage {
            customer_id: "cust_1".into(),
            accepted_at: at("2026-11-15T12:00:01Z"),
            events: events.iter().map(|id| event_with_id(id, "call", json!({}))).collect(),
        }
    }

    #[test]
    fn every_event_is_rated_against_the_versions_pinned_at_its_occurrence() {
        let rated = rate_usage(raw(&["evt_1", "evt_2"]), &customer(&[("prod_1", 1)]), &products());
        assert_eq!(rated.events.len(), 2);
        for e in &rated.events {
            assert_eq!(e.fees.len(), 1);
            assert_eq!(e.fees[0].fee.amount, Decimal::from(2));
            assert_eq!(e.fees[0].product_code, "calls");
            assert!(!e.needs_state);
        }
    }

    #[test]
    fn a_pinned_version_the_catalog_lacks_leaves_a_warning_and_no_fee() {
        let rated = rate_usage(raw(&["evt_1"]), &customer(&[("prod_1", 7), ("prod_gone", 1)]), &products());
        let event = &rated.events[0];
        assert!(event.fees.is_empty());
        assert_eq!(event.warnings.len(), 2, "{:?}", event.warnings);
        assert!(event.warnings[0].contains("`prod_1` version 7 was not found"));
        assert!(event.products.is_empty(), "nothing to rate again: the writer needs no pinned list");
    }

    #[test]
    fn the_probe_remembers_whether_state_was_read() {
        let probe = Probe::default();
        assert!(!probe.was_asked());
        assert_eq!(probe.available("USD"), None);
        assert!(probe.was_asked());
        let probe = Probe::default();
        assert_eq!(
            probe.cumulative("price_1", PeriodKey::of(None, at("2026-11-15T12:00:00Z"))),
            Decimal::ZERO
        );
        assert!(probe.was_asked());
    }
}
