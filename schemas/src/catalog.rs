//! The product catalog as stored and served: assets with exchange-rate schedules, products with
//! numbered versions, prices (every pricing model of the Credyt catalog) and entitlements.
//!
//! Prices and billing models are `type`-tagged on the wire; they serialize with serde's tag and
//! deserialize through [`crate::tagged`] so that decimals stay exact.

use crate::ids::{PriceId, ProductId, ProductVersionId};
use crate::tagged;
use crate::{Decimal, Timestamp};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Assets

/// A custom asset (`CREDIT`, `TOK`, ...). ISO 4217 currencies exist without being stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub code: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default)]
    pub rates: Vec<AssetRates>,
    pub created_at: Timestamp,
}

/// The exchange-rate schedule of an asset against one source currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetRates {
    pub source: String,
    pub schedule: Vec<AssetExchangeRate>,
}

/// Which side of a rate the client gave; the other side is derived by an exact or rounded
/// division, so conversions use the given side to stay exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateBasis {
    #[default]
    Rate,
    InverseRate,
}

/// One entry of a schedule: `rate` source units per asset unit, valid in `[valid_from, valid_to)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssetExchangeRate {
    pub valid_from: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<Timestamp>,
    pub rate: Decimal,
    pub inverse_rate: Decimal,
    #[serde(default)]
    pub basis: RateBasis,
}

impl AssetExchangeRate {
    pub fn is_valid_at(&self, at: Timestamp) -> bool {
        self.valid_from <= at && self.valid_to.is_none_or(|to| at < to)
    }

    /// Asset units bought by `source_amount` of the source currency.
    pub fn to_asset_units(&self, source_amount: Decimal) -> Option<Decimal> {
        match self.basis {
            RateBasis::InverseRate => source_amount.checked_mul(self.inverse_rate),
            RateBasis::Rate => crate::money::divide(source_amount, self.rate),
        }
    }
}

impl Asset {
    /// The rate against `source` valid at `at`, if any.
    pub fn rate_at(&self, source: &str, at: Timestamp) -> Option<&AssetExchangeRate> {
        self.rates
            .iter()
            .find(|r| r.source == source)
            .and_then(|r| r.schedule.iter().rev().find(|e| e.is_valid_at(at)))
    }
}

// ---------------------------------------------------------------------------------------------
// Products and versions

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Draft,
    Published,
    Archived,
}

/// A product and all its versions, stored as one document so a version change is atomic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub code: String,
    pub name: String,
    pub created_at: Timestamp,
    pub versions: Vec<ProductVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_version: Option<u32>,
    /// Deleted products are hidden from the catalog; existing subscribers keep their pinned
    /// version (see docs/decisions.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductVersion {
    pub id: ProductVersionId,
    pub version: u32,
    pub status: VersionStatus,
    pub prices: Vec<Price>,
    #[serde(default)]
    pub entitlements: Vec<Entitlement>,
    pub created_at: Timestamp,
}

impl Product {
    pub fn version(&self, number: u32) -> Option<&ProductVersion> {
        self.versions.iter().find(|v| v.version == number)
    }

    pub fn version_mut(&mut self, number: u32) -> Option<&mut ProductVersion> {
        self.versions.iter_mut().find(|v| v.version == number)
    }

    /// Resolves `default` or a number to a version.
    pub fn resolve(&self, selector: VersionSelector) -> Option<&ProductVersion> {
        match selector {
            VersionSelector::Default => self.default_version.and_then(|n| self.version(n)),
            VersionSelector::Number(n) => self.version(n),
        }
    }

    pub fn latest_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0)
    }
}

impl ProductVersion {
    /// Every asset this version's prices and entitlements use, in first-use order.
    pub fn assets(&self) -> Vec<String> {
        let mut assets: Vec<String> = Vec::new();
        let mut add = |code: &str| {
            if !assets.iter().any(|a| a == code) {
                assets.push(code.to_string());
            }
        };
        for price in &self.prices {
            match &price.kind {
                PriceKind::UsageBased(p) => p.pricing.iter().for_each(|a| add(&a.asset)),
                PriceKind::Fixed(p) => p.pricing.iter().for_each(|a| add(&a.asset)),
            }
        }
        self.entitlements.iter().for_each(|e| add(&e.asset));
        assets
    }
}

/// A version number or the word `default`, as used in paths and subscription requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    Default,
    Number(u32),
}

impl std::str::FromStr for VersionSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "default" {
            return Ok(Self::Default);
        }
        s.parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Self::Number)
            .ok_or(())
            .map_err(|()| format!("expected a version number or `default`, got `{s}`"))
    }
}

impl Serialize for VersionSelector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Default => s.serialize_str("default"),
            Self::Number(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for VersionSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => s.parse().map_err(D::Error::custom),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .map(Self::Number)
                .ok_or_else(|| D::Error::custom("expected a positive version number")),
            other => {
                Err(D::Error::custom(format_args!("expected a version number or `default`, got {other}")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prices

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PricingModel {
    Flat,
    Tiered,
    Bulk,
    Package,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageType {
    Unit,
    Volume,
    UnitAndVolume,
    Custom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierBasis {
    Unit,
    Volume,
    Package,
    Custom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierCadence {
    Lifetime,
    Monthly,
    Quarterly,
    Yearly,
    Custom,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectionTiming {
    InAdvance,
    InArrears,
}

/// A price: the fields every price has, and what its kind adds (usage-based prices are rated per
/// event; fixed prices are recurring or one-time).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Price {
    #[serde(flatten)]
    pub base: PriceBase,
    #[serde(flatten)]
    pub kind: PriceKind,
}

/// `PriceBase` of the API: the fields shared by both kinds of price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceBase {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<PriceId>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_model: Option<PricingModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiering: Option<Tiering>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<Collection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_destination: Option<FundingDestination>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PriceKind {
    UsageBased(UsageBasedPrice),
    Fixed(FixedPrice),
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let usage_based = match tagged::tag_of(&value) {
            Some("usage_based") => true,
            Some("fixed") => false,
            _ => return Err(D::Error::custom("@type@ must be `usage_based` or `fixed`")),
        };
        // The shared fields first, so a price missing its name says so before anything else.
        let base = tagged::from_value(&value)?;
        let kind = if usage_based {
            PriceKind::UsageBased(tagged::from_value(&value)?)
        } else {
            if value.get("usage_calculation").is_some() {
                return Err(D::Error::custom(
                    "a `fixed` price has no `usage_calculation` (use a `usage_based` price)",
                ));
            }
            PriceKind::Fixed(tagged::from_value(&value)?)
        };
        Ok(Price { base, kind })
    }
}

/// What a usage-based price adds to [`PriceBase`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageBasedPrice {
    pub usage_calculation: UsageCalculation,
    pub billing_model: BillingModel,
    pub pricing: Vec<UsageBasedAssetPricing>,
}

/// What a fixed price adds to [`PriceBase`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedPrice {
    pub billing_model: BillingModel,
    pub pricing: Vec<FixedAssetPricing>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tiering {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<TierBasis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<TierCadence>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FundingDestination {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_rate: Option<Decimal>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageCalculation {
    pub event_type: String,
    pub usage_type: UsageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_aggregation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_aggregation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billable_dimensions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_reference_field: Option<String>,
}

/// How a price is billed: per event, on a recurring interval, or once.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BillingModel {
    RealTime,
    Recurring(RecurringBilling),
    OneTime(OneTimeBilling),
}

impl<'de> Deserialize<'de> for BillingModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match tagged::tag_of(&value) {
            Some("real_time") => Ok(BillingModel::RealTime),
            Some("recurring") => tagged::from_value(&value).map(BillingModel::Recurring),
            Some("one_time") => tagged::from_value(&value).map(BillingModel::OneTime),
            _ => Err(D::Error::custom("@type@ must be `real_time`, `recurring` or `one_time`")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecurringBilling {
    pub recurring: RecurringSchedule,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecurringSchedule {
    pub interval: Interval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_count: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneTimeBilling {
    pub one_time: OneTimeSchedule,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneTimeSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_period: Option<String>,
}

/// Where a price's amount is collected from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Collection {
    Balance(BalanceCollection),
    Invoice(InvoiceCollection),
}

impl<'de> Deserialize<'de> for Collection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match tagged::tag_of(&value) {
            Some("balance") => tagged::from_value(&value).map(Collection::Balance),
            Some("invoice") => tagged::from_value(&value).map(Collection::Invoice),
            _ => Err(D::Error::custom("@type@ must be `balance` or `invoice`")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalanceCollection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<CollectionTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvoiceCollection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<CollectionTiming>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageBasedAssetPricing {
    pub asset: String,
    pub values: PriceValues,
}

/// A price's values: one list of plain values (flat or tiers), or dimensional prices each with
/// their own values.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PriceValues {
    Plain(Vec<PriceValue>),
    Dimensional(Vec<DimensionalPrice>),
}

impl<'de> Deserialize<'de> for PriceValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let dimensional =
            value.as_array().is_some_and(|items| items.iter().any(|item| item.get("dimensions").is_some()));
        if dimensional {
            tagged::from_value(&value).map(PriceValues::Dimensional)
        } else {
            tagged::from_value(&value).map(PriceValues::Plain)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PriceValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_size: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_amount: Option<Decimal>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DimensionalPrice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub dimensions: BTreeMap<String, String>,
    pub values: Vec<PriceValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedAssetPricing {
    pub asset: String,
    pub values: Vec<FixedPriceValue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedPriceValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub unit_price: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Decimal>,
}

// ---------------------------------------------------------------------------------------------
// Entitlements

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementPurpose {
    Bundled,
    Promotion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStrategy {
    ExpireAndReplace,
    Rollover,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    Auto,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "EntitlementWire")]
pub struct Entitlement {
    pub name: String,
    pub asset: String,
    pub amount: Decimal,
    pub purpose: EntitlementPurpose,
    pub lifecycle: EntitlementLifecycle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<EntitlementAccounting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// An entitlement as a request may write it: the current shape (`lifecycle: {duration,
/// duration_count, refresh: {strategy}}`) or the older one of the integration guide
/// (`refresh: {interval, strategy}`, read as `duration: interval`, `duration_count: 1`).
#[derive(Deserialize)]
struct EntitlementWire {
    name: String,
    asset: String,
    amount: Decimal,
    purpose: EntitlementPurpose,
    #[serde(default)]
    lifecycle: Option<EntitlementLifecycle>,
    #[serde(default)]
    refresh: Option<LegacyRefresh>,
    #[serde(default)]
    accounting: Option<EntitlementAccounting>,
    #[serde(default)]
    priority: Option<i32>,
}

#[derive(Deserialize)]
struct LegacyRefresh {
    interval: Interval,
    strategy: RefreshStrategy,
}

impl TryFrom<EntitlementWire> for Entitlement {
    type Error = String;
    fn try_from(w: EntitlementWire) -> Result<Self, String> {
        let lifecycle = match (w.lifecycle, w.refresh) {
            (Some(lifecycle), None) => lifecycle,
            (None, Some(legacy)) => EntitlementLifecycle {
                duration: legacy.interval,
                duration_count: Some(1),
                refresh: Some(EntitlementRefresh { strategy: legacy.strategy }),
            },
            (Some(_), Some(_)) => return Err("give `lifecycle` or the older `refresh`, not both".into()),
            (None, None) => return Err("missing field `lifecycle`".into()),
        };
        Ok(Entitlement {
            name: w.name,
            asset: w.asset,
            amount: w.amount,
            purpose: w.purpose,
            lifecycle,
            accounting: w.accounting,
            priority: w.priority,
        })
    }
}

impl Entitlement {
    /// The length of one period of the entitlement.
    pub fn period(&self) -> Period {
        Period { interval: self.lifecycle.duration, count: self.lifecycle.duration_count.unwrap_or(1) }
    }
}

/// A billing period: `count` times `interval` (`duration * duration_count` of an entitlement,
/// `interval * interval_count` of a recurring price). Periods are anchored: the `k`-th boundary
/// is `anchor + k * count * interval`, computed from the anchor each time so that month ends do
/// not drift (Jan 31, Feb 28, Mar 31, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub interval: Interval,
    pub count: u32,
}

impl Period {
    /// `anchor + k` periods; `None` beyond the calendar's range.
    pub fn boundary(self, anchor: Timestamp, k: u32) -> Option<Timestamp> {
        let n = k.checked_mul(self.count.max(1))?;
        match self.interval {
            Interval::Day => anchor.checked_add_signed(chrono::Duration::days(i64::from(n))),
            Interval::Week => anchor.checked_add_signed(chrono::Duration::weeks(i64::from(n))),
            Interval::Month => anchor.checked_add_months(chrono::Months::new(n)),
            Interval::Year => anchor.checked_add_months(chrono::Months::new(n.checked_mul(12)?)),
        }
    }

    /// The first boundary strictly after `at` (the anchor itself if `at` is before it).
    pub fn next_after(self, anchor: Timestamp, at: Timestamp) -> Option<Timestamp> {
        if at < anchor {
            return Some(anchor);
        }
        // Start from a guess that never overshoots (the longest month and year), then step:
        // about one step per ten periods elapsed.
        let longest_days: i64 = match self.interval {
            Interval::Day => 1,
            Interval::Week => 7,
            Interval::Month => 31,
            Interval::Year => 366,
        } * i64::from(self.count.max(1));
        let mut k = u32::try_from((at - anchor).num_days() / longest_days).unwrap_or(u32::MAX);
        loop {
            let b = self.boundary(anchor, k)?;
            if b > at {
                return Some(b);
            }
            k = k.checked_add(1)?;
        }
    }
}

impl RecurringSchedule {
    pub fn period(&self) -> Period {
        Period { interval: self.interval, count: self.interval_count.unwrap_or(1) }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementLifecycle {
    pub duration: Interval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<EntitlementRefresh>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementRefresh {
    pub strategy: RefreshStrategy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntitlementAccounting {
    pub revenue_basis: Decimal,
    pub cost_basis: CostBasis,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    #[test]
    fn usage_price_round_trips_with_exact_decimals() {
        let text = r#"{"type":"usage_based","name":"Input tokens","usage_calculation":{"event_type":"chat","usage_type":"volume","volume_field":"input_tokens"},"billing_model":{"type":"real_time"},"pricing":[{"asset":"USD","values":[{"volume_rate":1.25,"package_size":1000000}]}]}"#;
        let price: Price = serde_json::from_str(text).unwrap();
        let PriceKind::UsageBased(p) = &price.kind else { panic!("not usage based") };
        let PriceValues::Plain(values) = &p.pricing[0].values else { panic!("not plain") };
        assert_eq!(values[0].volume_rate, Some(Decimal::from_str("1.25").unwrap()));
        assert_eq!(price.base.name, "Input tokens");
        let written: Value = serde_json::from_str(&serde_json::to_string(&price).unwrap()).unwrap();
        let read: Value = serde_json::from_str(text).unwrap();
        assert_eq!(written, read);
        assert!(serde_json::to_string(&price).unwrap().contains("\"volume_rate\":1.25,"));
    }

    #[test]
    fn dimensional_values_are_recognised_by_their_dimensions() {
        let values: PriceValues = serde_json::from_value(json!([
            {"dimensions": {"model": "gpt"}, "values": [{"unit_price": 0.05}]},
            {"dimensions": {"model": "*"}, "values": [{"unit_price": 0.03}]}
        ]))
        .unwrap();
        assert!(matches!(values, PriceValues::Dimensional(ref d) if d.len() == 2));
    }

    #[test]
    fn integers_inside_tagged_objects_deserialize() {
        let model: BillingModel = serde_json::from_value(
            json!({"type": "recurring", "recurring": {"interval": "month", "interval_count": 3}}),
        )
        .unwrap();
        assert_eq!(
            model,
            BillingModel::Recurring(RecurringBilling {
                recurring: RecurringSchedule { interval: Interval::Month, interval_count: Some(3) }
            })
        );
    }

    #[test]
    fn tagged_errors_carry_the_inner_field_path() {
        let err = serde_json::from_value::<Price>(json!({
            "type": "usage_based", "name": "x",
            "usage_calculation": {"event_type": "e", "usage_type": "sideways"},
            "billing_model": {"type": "real_time"}, "pricing": []
        }))
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("@usage_calculation.usage_type@"), "{err}");
    }

    #[test]
    fn version_selector_reads_numbers_and_default() {
        assert_eq!(serde_json::from_value::<VersionSelector>(json!(2)).unwrap(), VersionSelector::Number(2));
        assert_eq!(
            serde_json::from_value::<VersionSelector>(json!("default")).unwrap(),
            VersionSelector::Default
        );
        assert!(serde_json::from_value::<VersionSelector>(json!("latest")).is_err());
    }
}
