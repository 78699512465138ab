//! A fee as computed: it borrows the catalog (no allocation per fee on the hot path) and is
//! turned into its wire forms only when shown or posted.

use crate::period::PeriodKey;
use schemas::catalog::{PriceBase, PriceValue, UsageCalculation};
use schemas::usage::{CalculatedFee, EventFee, FeeBreakdown, UsageEvent};
use schemas::{Decimal, Timestamp};
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

/// Usage of a post-paid price (`billing_model: recurring`): counted now, billed at the period's
/// end on the period's totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Deferred<'a> {
    pub price_id: &'a str,
    /// The dimensions of the dimensional price that matched (the tally is kept per combination).
    pub dimensions: Option<&'a BTreeMap<String, String>>,
    /// The event's volume (0 for unit usage).
    pub volume: Decimal,
}

/// The result of rating one event; reusable across events to avoid allocations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rating<'a> {
    pub fees: Vec<Fee<'a>>,
    pub warnings: Vec<String>,
    pub counters: Vec<CounterDelta<'a>>,
    pub deferred: Vec<Deferred<'a>>,
}

impl Rating<'_> {
    pub fn clear(&mut self) {
        self.fees.clear();
        self.warnings.clear();
        self.counters.clear();
        self.deferred.clear();
    }
}

/// The stable id of the fee of `price_id` for an event: re-rating an event can never produce a
/// second fee for the same price.
///
/// `fee_` + 12 hex digits of the event's `occurred_at` in Unix milliseconds + 24 hex digits (96
/// bits) of SHA-256 over the event id and the price id. The time prefix keeps a customer's fee
/// transactions (`{customer_id}/{fee_id}`) in the order the usage happened, so a batch of new
/// fees lands at the end of each customer's key range instead of on a random B-tree leaf per fee
/// (`docs/decisions.md`, "Fee ids are time-ordered").
pub fn fee_id(event_id: &str, occurred_at: Timestamp, price_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(event_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(price_id.as_bytes());
    let digest = hasher.finalize();
    let millis = occurred_at.timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
    let mut id = String::with_capacity(4 + 12 + 24);
    id.push_str("fee_");
    schemas::ids::push_hex(&mut id, &millis.to_be_bytes()[2..]);
    schemas::ids::push_hex(&mut id, &digest[..12]);
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
            id: fee_id(&event.id, event.occurred_at, self.price_id()),
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

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn fee_ids_derive_from_event_and_price() {
        let t = at("2026-11-15T12:00:00Z");
        let a = fee_id("evt_1", t, "price_a");
        assert_eq!(a, fee_id("evt_1", t, "price_a"));
        assert_ne!(a, fee_id("evt_1", t, "price_b"));
        assert_ne!(a, fee_id("evt_2", t, "price_a"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(fee_id("ab", t, "c"), fee_id("a", t, "bc"));
        assert!(a.starts_with("fee_") && a.len() == 40, "{a}");
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{a}");
    }

    #[test]
    fn fee_ids_sort_by_when_the_usage_happened() {
        let ids: Vec<String> = [
            "2026-11-15T12:00:00Z",
            "2026-11-15T12:00:00.001Z",
            "2026-11-15T12:00:01Z",
            "2031-01-01T00:00:00Z",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| fee_id(&format!("evt_{}", 9 - i), at(t), "price_a"))
        .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(&ids[0][4..16], format!("{:012x}", at("2026-11-15T12:00:00Z").timestamp_millis()));
    }

    #[test]
    fn fee_ids_clamp_times_outside_the_prefix_range() {
        let before_1970 = fee_id("evt_1", at("1960-01-01T00:00:00Z"), "p");
        assert_eq!(&before_1970[4..16], "000000000000");
        let far_future = fee_id("evt_1", at("+20000-01-01T00:00:00Z"), "p");
        assert_eq!(&far_future[4..16], "ffffffffffff");
    }
}
