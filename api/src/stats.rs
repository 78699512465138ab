//! Profitability arithmetic (`semantics.md` §7), pure: revenue, costs, net revenue and margin
//! per event, per customer and per vendor over a period. The handlers
//! ([`crate::profitability`], [`crate::events`]) load documents; every figure they show is
//! computed here.
//!
//! Rules:
//! - The report currency is USD. A cost counts when its `currency` is absent or `USD`; costs in
//!   any other currency are skipped (no exchange source for vendor costs exists yet).
//! - A customer's `gross_revenue` is the sum of `revenue` of its transactions created in the
//!   period; `total_costs` the sum of the costs of its events that occurred in the period. An
//!   event's own stats use the revenue its fees recognised.
//! - `net_revenue = gross_revenue - total_costs` (may be negative);
//!   `margin = net / gross * 100`, rounded half-even to 2 places, and 0 when gross is 0.
//! - Periods are inclusive UTC dates; by default the 30 days ending today.
//! - Every sum is checked: a total beyond the decimal range is [`OutOfRange`], never a panic.
//! - Figures are normalized (`10.00` is written `10`), like computed fees.

use chrono::{Days, NaiveDate};
use rust_decimal::RoundingStrategy;
use schemas::ledger::{ProfitabilityStats, StoredEvent, Transaction, VendorCategoryStats, VendorStats};
use schemas::problem::ValidationErrors;
use schemas::usage::{CostData, UsageEvent};
use schemas::{Decimal, Timestamp};
use std::collections::BTreeMap;

/// The currency every report is in.
pub const REPORT_CURRENCY: &str = "USD";

/// The category of a cost that names none.
pub const UNCATEGORIZED: &str = "uncategorized";

/// Days in the default report period (ending today, inclusive).
pub const DEFAULT_PERIOD_DAYS: u64 = 30;

/// Decimal places of `margin`.
pub const MARGIN_DECIMALS: u32 = 2;

/// A total left the decimal range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a report total is outside the decimal range")]
pub struct OutOfRange;

/// Whether `at` falls on a UTC date within the inclusive bounds (either may be open).
pub fn within_dates(at: Timestamp, from: Option<NaiveDate>, to: Option<NaiveDate>) -> bool {
    let day = at.date_naive();
    from.is_none_or(|f| f <= day) && to.is_none_or(|t| day <= t)
}

/// An inclusive range of UTC dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// `to` defaults to `today`, `from` to the [`DEFAULT_PERIOD_DAYS`] days ending at `to`.
    /// A `from` after `to` is a 422 naming `period_from`.
    pub fn resolve(
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        today: NaiveDate,
    ) -> Result<Self, ValidationErrors> {
        let to = to.unwrap_or(today);
        let from = from.unwrap_or_else(|| {
            to.checked_sub_days(Days::new(DEFAULT_PERIOD_DAYS - 1)).unwrap_or(NaiveDate::MIN)
        });
        if from > to {
            return Err(ValidationErrors::single("period_from", "must not be after period_to"));
        }
        Ok(Self { from, to })
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        within_dates(at, Some(self.from), Some(self.to))
    }
}

fn add(total: Decimal, amount: Decimal) -> Result<Decimal, OutOfRange> {
    total.checked_add(amount).ok_or(OutOfRange)
}

/// The checked sum of `amounts`.
pub fn sum(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, OutOfRange> {
    amounts.into_iter().try_fold(Decimal::ZERO, add)
}

/// `net / gross * 100`, rounded half-even to [`MARGIN_DECIMALS`] places; 0 when `gross` is 0.
pub fn margin(gross: Decimal, net: Decimal) -> Result<Decimal, OutOfRange> {
    if gross.is_zero() {
        return Ok(Decimal::ZERO);
    }
    let ratio = net.checked_div(gross).ok_or(OutOfRange)?;
    let percent = ratio.checked_mul(Decimal::ONE_HUNDRED).ok_or(OutOfRange)?;
    Ok(percent.round_dp_with_strategy(MARGIN_DECIMALS, RoundingStrategy::MidpointNearestEven).normalize())
}

/// The one place that turns revenue and costs into the reported figures.
pub fn profitability(gross_revenue: Decimal, total_costs: Decimal) -> Result<ProfitabilityStats, OutOfRange> {
    let net = gross_revenue.checked_sub(total_costs).ok_or(OutOfRange)?;
    Ok(ProfitabilityStats {
        gross_revenue: gross_revenue.normalize(),
        total_costs: total_costs.normalize(),
        net_revenue: net.normalize(),
        margin: margin(gross_revenue, net)?,
        currency: REPORT_CURRENCY.to_string(),
    })
}

/// Whether a cost is in the report currency (absent means the report currency).
pub fn is_reportable(cost: &CostData) -> bool {
    cost.currency.as_deref().is_none_or(|c| c.eq_ignore_ascii_case(REPORT_CURRENCY))
}

/// The sum of an event's costs in the report currency.
pub fn event_costs(event: &UsageEvent) -> Result<Decimal, OutOfRange> {
    sum(event.costs.iter().flatten().filter(|c| is_reportable(c)).map(|c| c.amount))
}

/// An event's own stats: the revenue its fees recognised against its costs.
pub fn event_stats(stored: &StoredEvent) -> Result<ProfitabilityStats, OutOfRange> {
    profitability(stored.revenue, event_costs(&stored.event)?)
}

/// Running revenue and cost totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub gross_revenue: Decimal,
    pub total_costs: Decimal,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) -> Result<(), OutOfRange> {
        self.gross_revenue = add(self.gross_revenue, other.gross_revenue)?;
        self.total_costs = add(self.total_costs, other.total_costs)?;
        Ok(())
    }

    pub fn stats(&self) -> Result<ProfitabilityStats, OutOfRange> {
        profitability(self.gross_revenue, self.total_costs)
    }
}

/// Per customer id: the revenue of its transactions created in `period` and the costs of its
/// events that occurred in `period`. Customers with neither are absent.
pub fn totals_by_customer<'a>(
    transactions: impl IntoIterator<Item = &'a Transaction>,
    events: impl IntoIterator<Item = &'a StoredEvent>,
    period: &Period,
) -> Result<BTreeMap<String, Totals>, OutOfRange> {
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for t in transactions.into_iter().filter(|t| period.contains(t.created_at)) {
        let entry = totals.entry(t.customer_id.clone()).or_default();
        entry.gross_revenue = add(entry.gross_revenue, t.revenue)?;
    }
    for e in events.into_iter().filter(|e| period.contains(e.event.occurred_at)) {
        let costs = event_costs(&e.event)?;
        let entry = totals.entry(e.customer_id.clone()).or_default();
        entry.total_costs = add(entry.total_costs, costs)?;
    }
    Ok(totals)
}

/// The vendor a report is about: a cost is its when `vendor_id` is the vendor's id or
/// `vendor_external_id` its external id.
#[derive(Clone, Copy, Debug)]
pub struct VendorRef<'a> {
    pub id: &'a str,
    pub external_id: Option<&'a str>,
}

impl VendorRef<'_> {
    pub fn owns(&self, cost: &CostData) -> bool {
        cost.vendor_id.as_deref() == Some(self.id)
            || self.external_id.is_some_and(|ext| cost.vendor_external_id.as_deref() == Some(ext))
    }
}

/// A cost's category, [`UNCATEGORIZED`] when it names none.
pub fn category_of(cost: &CostData) -> &str {
    cost.category.as_deref().filter(|c| !c.trim().is_empty()).unwrap_or(UNCATEGORIZED)
}

/// The vendor's costs (report currency) on events that occurred in `period`, grouped by
/// category (sorted by name), optionally only one category.
pub fn vendor_stats<'a>(
    events: impl IntoIterator<Item = &'a UsageEvent>,
    vendor: VendorRef<'_>,
    period: &Period,
    category: Option<&str>,
) -> Result<VendorStats, OutOfRange> {
    let mut by_category: BTreeMap<&str, Decimal> = BTreeMap::new();
    let costs = events
        .into_iter()
        .filter(|e| period.contains(e.occurred_at))
        .flat_map(|e| e.costs.iter().flatten())
        .filter(|c| vendor.owns(c) && is_reportable(c))
        .filter(|c| category.is_none_or(|wanted| category_of(c) == wanted));
    for cost in costs {
        let entry = by_category.entry(category_of(cost)).or_default();
        *entry = add(*entry, cost.amount)?;
    }
    Ok(VendorStats {
        total_costs: sum(by_category.values().copied())?.normalize(),
        categories: by_category
            .into_iter()
            .map(|(category, cost)| VendorCategoryStats {
                category: category.to_string(),
                cost: cost.normalize(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::ledger::TransactionType;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn cost(amount: &str, currency: Option<&str>, vendor: &str, category: Option<&str>) -> CostData {
        CostData {
            id: None,
            vendor_id: Some(vendor.to_string()),
            vendor_external_id: None,
            category: category.map(str::to_string),
            description: None,
            metadata: None,
            units: None,
            unit_price: None,
            input_volume: None,
            volume_rate: None,
            package_size: None,
            amount: d(amount),
            currency: currency.map(str::to_string),
        }
    }

    fn event(occurred_at: &str, costs: Vec<CostData>) -> UsageEvent {
        UsageEvent {
            id: "evt".into(),
            event_type: "chat".into(),
            occurred_at: at(occurred_at),
            subject: None,
            description: None,
            data: BTreeMap::new(),
            costs: Some(costs),
        }
    }

    fn stored(customer: &str, revenue: &str, event: UsageEvent) -> StoredEvent {
        StoredEvent {
            customer_id: customer.into(),
            customer_external_id: None,
            event,
            created_at: at("2026-03-01T00:00:00Z"),
            fees: Vec::new(),
            warnings: Vec::new(),
            revenue: d(revenue),
        }
    }

    fn transaction(customer: &str, revenue: &str, created_at: &str) -> Transaction {
        Transaction {
            id: "t".into(),
            kind: TransactionType::Fee,
            customer_id: customer.into(),
            account_id: "default:USD".into(),
            asset: "USD".into(),
            amount: d("-1"),
            description: None,
            metadata: None,
            created_at: at(created_at),
            executed_at: at(created_at),
            lines: Vec::new(),
            event_id: None,
            body_hash: None,
            revenue: d(revenue),
        }
    }

    fn march() -> Period {
        Period { from: day("2026-03-01"), to: day("2026-03-31") }
    }

    #[test]
    fn margin_is_net_over_gross_in_percent_rounded_half_even_to_two_places() {
        assert_eq!(margin(d("8"), d("1")), Ok(d("12.5")));
        // 0.125 % and 0.375 % are midpoints at two places: half-even goes to the even digit.
        assert_eq!(margin(d("800"), d("1")), Ok(d("0.12")));
        assert_eq!(margin(d("800"), d("3")), Ok(d("0.38")));
        assert_eq!(margin(d("3"), d("1")), Ok(d("33.33")));
        assert_eq!(margin(d("3"), d("2")), Ok(d("66.67")));
    }

    #[test]
    fn margin_is_zero_without_gross_revenue() {
        assert_eq!(margin(Decimal::ZERO, d("-5")), Ok(Decimal::ZERO));
        let stats = profitability(Decimal::ZERO, d("2.50")).unwrap();
        assert_eq!((stats.net_revenue, stats.margin), (d("-2.5"), Decimal::ZERO));
    }

    #[test]
    fn net_revenue_is_gross_minus_costs_and_may_be_negative() {
        let stats = profitability(d("10.00"), d("12.50")).unwrap();
        assert_eq!(stats.gross_revenue, d("10"));
        assert_eq!(stats.net_revenue, d("-2.5"));
        assert_eq!(stats.margin, d("-25"));
        assert_eq!(stats.currency, "USD");
        // Figures are exact and normalized on the wire.
        let exact = profitability(d("0.3"), d("0.1")).unwrap();
        assert_eq!(serde_json::to_string(&exact.net_revenue).unwrap(), "0.2");
        assert_eq!(serde_json::to_string(&exact.gross_revenue).unwrap(), "0.3");
    }

    #[test]
    fn totals_out_of_the_decimal_range_are_errors_not_panics() {
        assert_eq!(sum([Decimal::MAX, Decimal::ONE]), Err(OutOfRange));
        assert_eq!(profitability(Decimal::MIN, Decimal::MAX).map(|_| ()), Err(OutOfRange));
        assert_eq!(margin(d("0.0000000000000000000000000001"), Decimal::MAX), Err(OutOfRange));
        let huge =
            event("2026-03-02T00:00:00Z", vec![cost("79228162514264337593543950335", None, "v", None); 2]);
        assert_eq!(event_costs(&huge), Err(OutOfRange));
    }

    #[test]
    fn costs_in_other_currencies_are_skipped() {
        let e = event(
            "2026-03-02T00:00:00Z",
            vec![
                cost("0.10", None, "v", None),
                cost("0.20", Some("USD"), "v", None),
                cost("5", Some("EUR"), "v", None),
                cost("0.05", Some("usd"), "v", None),
            ],
        );
        assert_eq!(event_costs(&e), Ok(d("0.35")));
        let stats = event_stats(&stored("c", "1", e)).unwrap();
        assert_eq!((stats.total_costs, stats.net_revenue, stats.margin), (d("0.35"), d("0.65"), d("65")));
    }

    #[test]
    fn the_default_period_is_the_30_days_ending_today_and_bounds_are_inclusive() {
        let today = day("2026-03-31");
        assert_eq!(
            Period::resolve(None, None, today).unwrap(),
            Period { from: day("2026-03-02"), to: today }
        );
        let p = Period::resolve(None, Some(day("2026-02-10")), today).unwrap();
        assert_eq!(p, Period { from: day("2026-01-12"), to: day("2026-02-10") });
        let p = Period::resolve(Some(day("2026-03-05")), None, today).unwrap();
        assert_eq!(p, Period { from: day("2026-03-05"), to: today });
        assert!(march().contains(at("2026-03-01T00:00:00Z")));
        assert!(march().contains(at("2026-03-31T23:59:59.999Z")));
        assert!(!march().contains(at("2026-04-01T00:00:00Z")));
        assert!(!march().contains(at("2026-02-28T23:59:59Z")));
    }

    #[test]
    fn a_period_that_ends_before_it_starts_is_rejected_naming_period_from() {
        let err = Period::resolve(Some(day("2026-03-02")), Some(day("2026-03-01")), day("2026-03-31"));
        assert_eq!(err.unwrap_err().fields().collect::<Vec<_>>(), ["period_from"]);
    }

    #[test]
    fn customer_totals_take_revenue_from_transactions_and_costs_from_events_in_the_period() {
        let transactions = [
            transaction("a", "1.25", "2026-03-02T10:00:00Z"),
            transaction("a", "0.75", "2026-03-31T23:00:00Z"),
            transaction("a", "100", "2026-04-01T00:00:00Z"),
            transaction("b", "3", "2026-03-15T00:00:00Z"),
        ];
        let events = [
            stored("a", "9", event("2026-03-03T00:00:00Z", vec![cost("0.5", None, "v", None)])),
            stored("a", "9", event("2026-02-27T00:00:00Z", vec![cost("7", None, "v", None)])),
            stored("c", "0", event("2026-03-03T00:00:00Z", vec![cost("1", Some("USD"), "v", None)])),
        ];
        let totals = totals_by_customer(&transactions, &events, &march()).unwrap();
        assert_eq!(totals["a"], Totals { gross_revenue: d("2.00"), total_costs: d("0.5") });
        assert_eq!(totals["b"], Totals { gross_revenue: d("3"), total_costs: Decimal::ZERO });
        assert_eq!(totals["c"], Totals { gross_revenue: Decimal::ZERO, total_costs: d("1") });
        let mut all = Totals::default();
        for t in totals.values() {
            all.add(t).unwrap();
        }
        let summary = all.stats().unwrap();
        assert_eq!((summary.gross_revenue, summary.total_costs, summary.margin), (d("5"), d("1.5"), d("70")));
    }

    #[test]
    fn vendor_stats_group_the_vendors_costs_by_category() {
        let mut by_external = cost("0.25", None, "someone-else", Some("llm"));
        by_external.vendor_external_id = Some("openai".into());
        let events = [
            event(
                "2026-03-02T00:00:00Z",
                vec![
                    cost("0.10", None, "vnd_1", Some("llm")),
                    cost("0.05", Some("USD"), "vnd_1", None),
                    cost("9", Some("EUR"), "vnd_1", Some("llm")),
                    cost("1", None, "vnd_2", Some("llm")),
                    by_external,
                ],
            ),
            event("2026-04-02T00:00:00Z", vec![cost("50", None, "vnd_1", Some("llm"))]),
        ];
        let vendor = VendorRef { id: "vnd_1", external_id: Some("openai") };
        let stats = vendor_stats(&events, vendor, &march(), None).unwrap();
        assert_eq!(stats.total_costs, d("0.4"));
        assert_eq!(
            stats.categories,
            [
                VendorCategoryStats { category: "llm".into(), cost: d("0.35") },
                VendorCategoryStats { category: UNCATEGORIZED.into(), cost: d("0.05") },
            ]
        );
        let only = vendor_stats(&events, vendor, &march(), Some("uncategorized")).unwrap();
        assert_eq!((only.total_costs, only.categories.len()), (d("0.05"), 1));
        let no_external = VendorRef { id: "vnd_1", external_id: None };
        assert_eq!(vendor_stats(&events, no_external, &march(), None).unwrap().total_costs, d("0.15"));
    }
}
