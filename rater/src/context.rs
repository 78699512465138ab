//! What rating reads about the customer. The ledger writer owns the real values (one writer per
//! customer keeps tiers exact); simulations use [`Scratch`], which starts at zero.

use crate::fee::CounterDelta;
use crate::period::PeriodKey;
use schemas::Decimal;
use std::collections::HashMap;

pub trait RatingContext {
    /// Quantity already counted for `price` in `period`, before the event being rated.
    fn cumulative(&self, price: &str, period: PeriodKey) -> Decimal;
    /// Available balance of the customer's default account in `asset`, if it has one.
    fn available(&self, asset: &str) -> Option<Decimal>;
}

/// Counters that start at zero and accumulate the deltas applied to them; no balances.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// Keyed by period, then price: the inner key is looked up by `&str`, without allocating.
    counters: HashMap<PeriodKey, HashMap<String, Decimal>>,
    balances: HashMap<String, Decimal>,
}

impl Scratch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_balance(mut self, asset: &str, available: Decimal) -> Self {
        self.balances.insert(asset.to_string(), available);
        self
    }

    pub fn apply(&mut self, deltas: &[CounterDelta<'_>]) {
        for d in deltas {
            let prices = self.counters.entry(d.period).or_default();
            match prices.get_mut(d.price_id) {
                Some(total) => *total += d.quantity,
                None => {
                    prices.insert(d.price_id.to_string(), d.quantity);
                }
            }
        }
    }
}

impl RatingContext for Scratch {
    fn cumulative(&self, price: &str, period: PeriodKey) -> Decimal {
        self.counters.get(&period).and_then(|prices| prices.get(price)).copied().unwrap_or_default()
    }

    fn available(&self, asset: &str) -> Option<Decimal> {
        self.balances.get(asset).copied()
    }
}
