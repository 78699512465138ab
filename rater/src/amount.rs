//! The arithmetic of every pricing model. All operations are checked: an amount that would
//! overflow the decimal range is `None` (the price then yields a warning, never a panic).
//! Only division rounds (to 12 fractional digits, half-even: `schemas::money::divide`).

use schemas::catalog::{PriceValue, PricingModel, TierBasis, UsageType};
use schemas::money::divide;
use schemas::Decimal;

/// What one event brings to one price: its usage type and, for volume usage, the volume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub usage_type: UsageType,
    pub volume: Option<Decimal>,
}

impl Usage {
    /// The quantity a tier counter counts: the volume, or one unit per event.
    pub fn quantity(&self) -> Decimal {
        self.volume.unwrap_or(Decimal::ONE)
    }
}

/// An amount and the value (tier) it was priced at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Priced<'a> {
    pub amount: Decimal,
    pub value: &'a PriceValue,
}

fn zero_or(v: Option<Decimal>) -> Decimal {
    v.unwrap_or(Decimal::ZERO)
}

/// `volume * volume_rate`, pro-rata per `package_size` when the value has one.
pub fn prorata(volume: Decimal, v: &PriceValue) -> Option<Decimal> {
    let gross = volume.checked_mul(zero_or(v.volume_rate))?;
    match v.package_size {
        Some(size) if !size.is_zero() => divide(gross, size),
        _ => Some(gross),
    }
}

/// A flat price: `unit_price` per event, `volume` at the (pro-rata) rate, or both.
pub fn flat(usage: Usage, v: &PriceValue) -> Option<Decimal> {
    match usage.usage_type {
        UsageType::Unit => Some(zero_or(v.unit_price)),
        UsageType::Volume => prorata(usage.volume?, v),
        UsageType::UnitAndVolume => zero_or(v.unit_price).checked_add(prorata(usage.volume?, v)?),
        UsageType::Custom => None,
    }
}

/// Whole packages: `ceil(quantity / package_size) * rate` (plus `unit_price` for
/// unit-and-volume usage).
pub fn package(usage: Usage, v: &PriceValue) -> Option<Decimal> {
    let size = v.package_size.filter(|s| !s.is_zero())?;
    let packages = usage.quantity().checked_div(size)?.ceil();
    match usage.usage_type {
        UsageType::Unit => packages.checked_mul(v.volume_rate.or(v.unit_price).unwrap_or_default()),
        UsageType::Volume => packages.checked_mul(zero_or(v.volume_rate)),
        UsageType::UnitAndVolume => {
            zero_or(v.unit_price).checked_add(packages.checked_mul(zero_or(v.volume_rate))?)
        }
        UsageType::Custom => None,
    }
}

/// The tier containing cumulative position `at` (bounds are inclusive; the last tier is open).
fn tier_at(tiers: &[PriceValue], at: Decimal) -> Option<&PriceValue> {
    tiers.iter().find(|t| t.up_to.is_none_or(|bound| at <= bound)).or_else(|| tiers.last())
}

/// Graduated tiers: the event's quantity occupies `(before, before + quantity]` of the period's
/// cumulative counter, and each slice is priced at the tier it falls in. Unit-and-volume usage
/// adds the `unit_price` of the tier where the event ends, once.
pub fn graduated<'a>(usage: Usage, tiers: &'a [PriceValue], before: Decimal) -> Option<Priced<'a>> {
    let quantity = usage.quantity();
    let end = before.checked_add(quantity)?;
    let mut amount = Decimal::ZERO;
    let mut lower = Decimal::ZERO;
    for tier in tiers {
        let upper = tier.up_to;
        let from = before.max(lower);
        let to = upper.map_or(end, |u| end.min(u));
        if to > from {
            let slice = to - from;
            let part = match usage.usage_type {
                UsageType::Unit => slice.checked_mul(zero_or(tier.unit_price))?,
                UsageType::Volume | UsageType::UnitAndVolume => prorata(slice, tier)?,
                UsageType::Custom => return None,
            };
            amount = amount.checked_add(part)?;
        }
        match upper {
            Some(u) if u < end => lower = u,
            _ => break,
        }
    }
    let value = tier_at(tiers, end.max(Decimal::ZERO))?;
    if usage.usage_type == UsageType::UnitAndVolume {
        amount = amount.checked_add(zero_or(value.unit_price))?;
    }
    Some(Priced { amount, value })
}

/// Bulk tiers: the whole quantity is priced at the tier its own quantity falls in.
pub fn bulk<'a>(usage: Usage, tiers: &'a [PriceValue]) -> Option<Priced<'a>> {
    let value = tier_at(tiers, usage.quantity())?;
    Some(Priced { amount: flat(usage, value)?, value })
}

/// Prices one event with one list of values under `model`. `before` is the period counter for
/// tiered prices; with `basis: unit` tiers count events and each event is priced flat at the tier
/// its position falls in.
pub fn price<'a>(
    model: Option<PricingModel>,
    basis: Option<TierBasis>,
    usage: Usage,
    values: &'a [PriceValue],
    before: Decimal,
) -> Option<Priced<'a>> {
    let priced = match model.unwrap_or(PricingModel::Flat) {
        PricingModel::Flat => {
            let value = values.first()?;
            Priced { amount: flat(usage, value)?, value }
        }
        PricingModel::Package => {
            let value = values.first()?;
            Priced { amount: package(usage, value)?, value }
        }
        PricingModel::Tiered if basis == Some(TierBasis::Unit) && usage.usage_type != UsageType::Unit => {
            let value = tier_at(values, before.checked_add(Decimal::ONE)?)?;
            Priced { amount: flat(usage, value)?, value }
        }
        PricingModel::Tiered => graduated(usage, values, before)?,
        PricingModel::Bulk => bulk(usage, values)?,
    };
    // Computed amounts are normalized (`10.00` becomes `10`): one representation per value.
    Some(Priced { amount: clamp(priced.amount, priced.value).normalize(), value: priced.value })
}

/// A post-paid period's amount (`semantics.md` §6): the period's `events` and total volume
/// (`usage.volume`) priced as one quantity, so tiers, packages and clamps apply to the period.
/// Unit usage counts events; `unit_and_volume` adds `unit_price` per event to the volume's
/// amount.
pub fn period_total(
    model: Option<PricingModel>,
    usage: Usage,
    events: Decimal,
    values: &[PriceValue],
) -> Option<Decimal> {
    let quantity = match usage.usage_type {
        UsageType::Unit => events,
        UsageType::Volume | UsageType::UnitAndVolume => usage.volume?,
        UsageType::Custom => return None,
    };
    // Price the quantity as a volume, then add per-event unit prices where they apply.
    let as_volume = Usage { usage_type: UsageType::Volume, volume: Some(quantity) };
    let unit_only =
        |v: &PriceValue| PriceValue { volume_rate: v.unit_price, package_size: None, ..v.clone() };
    let (amount, value) = match model.unwrap_or(PricingModel::Flat) {
        PricingModel::Flat | PricingModel::Package | PricingModel::Bulk => {
            let value = match model {
                Some(PricingModel::Bulk) => tier_at(values, quantity)?,
                _ => values.first()?,
            };
            let amount = match (model, usage.usage_type) {
                (Some(PricingModel::Package), UsageType::Unit) => package(
                    as_volume,
                    &PriceValue { volume_rate: value.volume_rate.or(value.unit_price), ..value.clone() },
                )?,
                (Some(PricingModel::Package), _) => package(as_volume, value)?,
                (_, UsageType::Unit) => prorata(quantity, &unit_only(value))?,
                _ => prorata(quantity, value)?,
            };
            (amount, value)
        }
        PricingModel::Tiered => {
            let tiers: Vec<PriceValue>;
            let priced_tiers = if usage.usage_type == UsageType::Unit {
                tiers = values.iter().map(unit_only).collect();
                tiers.as_slice()
            } else {
                values
            };
            let priced = graduated(as_volume, priced_tiers, Decimal::ZERO)?;
            (priced.amount, tier_at(values, quantity)?)
        }
    };
    let per_event = match usage.usage_type {
        UsageType::UnitAndVolume => events.checked_mul(zero_or(value.unit_price))?,
        _ => Decimal::ZERO,
    };
    Some(clamp(amount.checked_add(per_event)?, value).normalize())
}

/// `min_amount` / `max_amount` of the value applied.
pub fn clamp(amount: Decimal, v: &PriceValue) -> Decimal {
    let amount = v.min_amount.map_or(amount, |min| amount.max(min));
    v.max_amount.map_or(amount, |max| amount.min(max))
}

/// What a tier counter adds for this event (`basis: unit` counts events).
pub fn counted(basis: Option<TierBasis>, usage: Usage) -> Decimal {
    if basis == Some(TierBasis::Unit) {
        Decimal::ONE
    } else {
        usage.quantity()
    }
}
