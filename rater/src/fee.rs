//! A fee as computed: it borrows the catalog (no allocation per fee on the hot path) and is
//! turned into its wire forms only when shown or posted.

use crate::period::PeriodKey;
use schemas::catalog::{PriceBase, PriceValue, UsageCalculation};
use schemas::usage::{CalculatedFee, EventFee, FeeBreakdown, UsageEvent};
use schemas::Decimal;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One fee: one price of one subscribed product version, charged in one asset.
#[derive(Clone, Debug, PartialEq)]
pub struct Fee<'a> {
    pub product_id: &'a str,
    pub product_code: &'a str,
    pub product_version: u32,
    pub price: &'a PriceBase,
    pub usage: &'a UsageCalculation,
    pub asset: &'a str,
    /// The dimensions of the dimensional price that matched, if the price is dimensional.
    pub dimensions: Option<&'a BTreeMap<String, String>>,
    /// The value (or tier) the amount was priced at.
    pub value: &'a PriceValue,
    /// The event's volume, for volume usage.
    pub volume: Option<Decimal>,
    pub amount: Decimal,
}

/// What a fee adds to a tier counter.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterDelta<'a> {
    pub price_id: &'a str,
    pub period: PeriodKey,
    pub quantity: Decimal,
}

/// The result of rating one event; reusable across events to avoid allocations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rating<'a> {
    pub fees: Vec<Fee<'a>>,
    pub warnings: Vec<String>,
    pub counters: Vec<CounterDelta<'a>>,
}

impl Rating<'_> {
    pub fn clear(&mut self) {
        self.fees.clear();
        self.warnings.clear();
        self.counters.clear();
    }
}

/// The stable id of the fee of `price_id` for `event_id`: re-rating an event can never produce a
/// second fee for the same price.
pub fn fee_id(event_id: &str, price_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(price_id.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(4 + 32);
    id.push_str("fee_");
    schemas::ids::push_hex(&mut id, &digest[..16]);
    id
}

impl Fee<'_> {
    pub fn price_id(&self) -> &str {
        self.price.id.as_ref().map_or("", |id| id.as_str())
    }

    /// The price, value and amount, as both wire shapes show them.
    pub fn breakdown(&self) -> FeeBreakdown {
        FeeBreakdown {
            price_id: self.price_id().to_string(),
            price_name: self.price.name.clone(),
            currency: self.asset.to_string(),
            dimensions: self.dimensions.cloned(),
            usage_type: self.usage.usage_type,
            volume_field: self.usage.volume_field.clone(),
            input_volume: self.volume,
            unit_price: self.value.unit_price,
            volume_rate: self.value.volume_rate,
            package_size: self.value.package_size,
            description: self.value.name.clone(),
            amount: self.amount,
        }
    }

    pub fn to_calculated(&self, event: &UsageEvent) -> CalculatedFee {
        CalculatedFee {
            usage_id: event.id.clone(),
            event_type: event.event_type.clone(),
            fee: self.breakdown(),
        }
    }

    pub fn to_event_fee(&self, event: &UsageEvent) -> EventFee {
        EventFee {
            id: fee_id(&event.id, self.price_id()),
            product_id: self.product_id.to_string(),
            product_code: self.product_code.to_string(),
            product_version: self.product_version,
            fee: self.breakdown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_ids_derive_from_event_and_price() {
        let a = fee_id("evt_1", "price_a");
        assert_eq!(a, fee_id("evt_1", "price_a"));
        assert_ne!(a, fee_id("evt_1", "price_b"));
        assert_ne!(a, fee_id("evt_2", "price_a"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fee_id("ab", "c"), fee_id("a", "bc"));
        assert!(a.starts_with("fee_") && a.len() == 36);
    }
}
