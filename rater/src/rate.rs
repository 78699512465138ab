//! Rating one event (`semantics.md` §3): every usage-based price whose `event_type` matches, in
//! every subscribed version, yields at most one fee.

use crate::amount::{self, Usage};
use crate::context::RatingContext;
use crate::fee::{CounterDelta, Deferred, Fee, Rating};
use crate::period::PeriodKey;
use schemas::catalog::{
    BillingModel, DimensionalPrice, PriceBase, PriceKind, PriceValue, PriceValues, PricingModel,
    ProductVersion, TierBasis, UsageBasedAssetPricing, UsageBasedPrice, UsageType,
};
use schemas::usage::UsageEvent;
use schemas::Decimal;
use std::collections::BTreeMap;

/// A product version the customer is actively subscribed to at the event's `occurred_at`.
#[derive(Clone, Copy, Debug)]
pub struct Subscribed<'a> {
    pub product_id: &'a str,
    pub product_code: &'a str,
    pub version: &'a ProductVersion,
}

/// Rates `event` into `out` (cleared first).
pub fn rate<'a>(
    event: &UsageEvent,
    products: &[Subscribed<'a>],
    ctx: &dyn RatingContext,
    out: &mut Rating<'a>,
) {
    out.clear();
    for sub in products {
        for price in &sub.version.prices {
            if let PriceKind::UsageBased(usage_price) = &price.kind {
                if usage_price.usage_calculation.event_type == event.event_type {
                    rate_price(event, sub, &price.base, usage_price, ctx, out);
                }
            }
        }
    }
}

fn warn(out: &mut Rating<'_>, base: &PriceBase, event: &UsageEvent, why: &str) {
    let id = base.id.as_ref().map_or("", |id| id.as_str());
    out.warnings.push(format!("price `{}` ({id}) matched event `{}` but {why}", base.name, event.id));
}

/// The usage this event brings to a price, or why it brings none.
fn usage_of(event: &UsageEvent, price: &UsageBasedPrice) -> Result<Usage, String> {
    let calc = &price.usage_calculation;
    let volume = match calc.usage_type {
        UsageType::Unit => None,
        UsageType::Volume | UsageType::UnitAndVolume => {
            let field = calc.volume_field.as_deref().unwrap_or_default();
            match event.data.get(field).and_then(|v| v.as_number()) {
                Some(v) if v >= Decimal::ZERO => Some(v),
                Some(_) => return Err(format!("its volume field `{field}` is negative")),
                None => return Err(format!("its volume field `{field}` is missing or not a number")),
            }
        }
        UsageType::Custom => return Err("custom usage cannot be rated".to_string()),
    };
    Ok(Usage { usage_type: calc.usage_type, volume })
}

/// The most specific dimensional price matching the event: each dimension value equals the
/// event's `data[key]` compared as strings, or is `*` (which also matches a missing key). Most
/// non-`*` dimensions wins; ties go to the first in list order.
pub fn best_dimensional<'p>(
    event: &UsageEvent,
    prices: &'p [DimensionalPrice],
) -> Option<&'p DimensionalPrice> {
    let mut best: Option<(&DimensionalPrice, usize)> = None;
    for dp in prices {
        let mut specific = 0;
        let matches = dp.dimensions.iter().all(|(key, want)| {
            if want == "*" {
                return true;
            }
            specific += 1;
            event.data.get(key).is_some_and(|have| have.matches_text(want))
        });
        if matches && best.is_none_or(|(_, s)| specific > s) {
            best = Some((dp, specific));
        }
    }
    best.map(|(dp, _)| dp)
}

/// One asset's candidate fee for a price.
struct Candidate<'a> {
    asset: &'a str,
    dimensions: Option<&'a BTreeMap<String, String>>,
    value: &'a PriceValue,
    amount: Decimal,
}

fn candidate<'a>(
    event: &UsageEvent,
    base: &PriceBase,
    basis: Option<TierBasis>,
    pricing: &'a UsageBasedAssetPricing,
    usage: Usage,
    before: Decimal,
) -> Result<Candidate<'a>, &'static str> {
    let (dimensions, values) = match &pricing.values {
        PriceValues::Plain(values) => (None, values.as_slice()),
        PriceValues::Dimensional(list) => {
            let dp = best_dimensional(event, list).ok_or("no dimensional price matches the event's data")?;
            (Some(&dp.dimensions), dp.values.as_slice())
        }
    };
    let priced = amount::price(base.pricing_model, basis, usage, values, before)
        .ok_or("its amount cannot be computed (out of range)")?;
    Ok(Candidate { asset: &pricing.asset, dimensions, value: priced.value, amount: priced.amount })
}

fn rate_price<'a>(
    event: &UsageEvent,
    sub: &Subscribed<'a>,
    base: &'a PriceBase,
    price: &'a UsageBasedPrice,
    ctx: &dyn RatingContext,
    out: &mut Rating<'a>,
) {
    let usage = match usage_of(event, price) {
        Ok(u) => u,
        Err(why) => return warn(out, base, event, &why),
    };
    let price_id = base.id.as_ref().map_or("", |id| id.as_str());
    if matches!(price.billing_model, BillingModel::Recurring(_)) {
        // Post-paid: counted now, priced on the period's totals when it closes.
        let dimensions = match price.pricing.first().map(|p| &p.values) {
            Some(PriceValues::Dimensional(list)) => match best_dimensional(event, list) {
                Some(dp) => Some(&dp.dimensions),
                None => return warn(out, base, event, "no dimensional price matches the event's data"),
            },
            _ => None,
        };
        let volume = usage.volume.unwrap_or(Decimal::ZERO);
        out.deferred.push(Deferred { price_id, dimensions, volume });
        return;
    }
    let tiering = base.tiering.as_ref();
    let basis = tiering.and_then(|t| t.basis);
    let tiered = base.pricing_model == Some(PricingModel::Tiered);
    let period = tiered.then(|| PeriodKey::of(tiering.and_then(|t| t.period), event.occurred_at));
    let before = period.map_or(Decimal::ZERO, |p| ctx.cumulative(price_id, p));
    // Several assets: the first whose available balance covers its amount, else the first. With
    // one asset there is nothing to choose, so no balance is looked up.
    let choose = price.pricing.len() > 1;
    let mut chosen: Option<Candidate<'a>> = None;
    let mut first: Option<Candidate<'a>> = None;
    let mut failure = None;
    for pricing in &price.pricing {
        match candidate(event, base, basis, pricing, usage, before) {
            Ok(c) => {
                if choose && ctx.available(c.asset).is_some_and(|available| available >= c.amount) {
                    chosen = Some(c);
                    break;
                }
                if first.is_none() {
                    first = Some(c);
                }
            }
            Err(why) => failure = failure.or(Some(why)),
        }
    }
    let Some(c) = chosen.or(first) else {
        return warn(out, base, event, failure.unwrap_or("it has no pricing"));
    };
    if let Some(period) = period {
        out.counters.push(CounterDelta { price_id, period, quantity: amount::counted(basis, usage) });
    }
    out.fees.push(Fee {
        product_id: sub.product_id,
        product_code: sub.product_code,
        product_version: sub.version.version,
        price: base,
        usage: &price.usage_calculation,
        asset: c.asset,
        dimensions: c.dimensions,
        value: c.value,
        volume: usage.volume,
        amount: c.amount,
    });
}
