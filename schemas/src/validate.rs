//! Request validation (`semantics.md` §5, §6). Every check names the failing field by its full
//! path (`prices[0].usage_calculation.volume_field`) so a 422 explains itself. Checks that need
//! the store (does an asset exist, is a code taken) receive that knowledge as arguments.

use crate::catalog::{
    BillingModel, Collection, DimensionalPrice, Entitlement, FixedPrice, Price, PriceBase, PriceKind,
    PriceValue, PriceValues, PricingModel, TierBasis, TierCadence, UsageBasedPrice, UsageType,
};
use crate::currency::is_iso_currency;
use crate::customer::{Metadata, ProductReference};
use crate::problem::{FieldPath, ValidationErrors};
use crate::usage::UsageEvent;
use crate::wire::{CreateAssetRequest, CreateSubscriptionRequest};
use crate::Decimal;

/// Longest accepted identifier-like string (ids, codes, event types, names).
pub const MAX_TEXT_LEN: usize = 255;

/// Records an error unless `value` is non-blank and at most [`MAX_TEXT_LEN`] characters.
pub fn text(errors: &mut ValidationErrors, path: impl Into<String>, value: &str) {
    if let Some(message) = text_problem(value) {
        errors.add(path, message);
    }
}

/// What is wrong with a required text field, if anything (see [`text`]).
fn text_problem(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        Some("must not be empty".to_string())
    } else if value.chars().count() > MAX_TEXT_LEN {
        Some(format!("must be at most {MAX_TEXT_LEN} characters"))
    } else {
        None
    }
}

/// Like [`text`] for an optional field: absent is fine, present must be valid.
pub fn optional_text(errors: &mut ValidationErrors, path: &str, value: Option<&str>) {
    if let Some(value) = value {
        text(errors, path, value);
    }
}

pub fn email(errors: &mut ValidationErrors, path: &str, value: Option<&str>) {
    if let Some(value) = value {
        let ok = value.len() <= MAX_TEXT_LEN
            && value
                .split_once('@')
                .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !host.contains('@'));
        errors.check(ok, path, "must be an email address");
    }
}

pub fn metadata(errors: &mut ValidationErrors, path: &str, value: Option<&Metadata>) {
    let Some(value) = value else { return };
    errors.check(value.len() <= 50, path, "must have at most 50 keys");
    for (key, v) in value {
        let p = format!("{path}.{key}");
        errors.check(!key.is_empty() && key.len() <= 40, &p, "keys must be 1 to 40 characters");
        errors.check(v.len() <= 500, &p, "values must be at most 500 characters");
    }
}

/// A custom asset code: 2 to 16 upper-case letters, digits or `_`, starting with a letter, and
/// not an ISO 4217 currency.
pub fn asset_code(errors: &mut ValidationErrors, path: &str, code: &str) {
    let well_formed = (2..=16).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !well_formed {
        errors.add(path, "must be 2 to 16 upper-case letters, digits or `_`, starting with a letter");
    } else if is_iso_currency(code) {
        errors.add(path, "is an ISO 4217 currency, which exists without being created");
    }
}

fn positive(errors: &mut ValidationErrors, path: impl Into<String>, value: Option<Decimal>) {
    if let Some(v) = value {
        errors.check(v > Decimal::ZERO, path, "must be greater than 0");
    }
}

fn non_negative(errors: &mut ValidationErrors, path: impl Into<String>, value: Option<Decimal>) {
    if let Some(v) = value {
        errors.check(v >= Decimal::ZERO, path, "must not be negative");
    }
}

/// `POST /assets`, apart from the uniqueness of the code.
pub fn create_asset(req: &CreateAssetRequest) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    asset_code(&mut errors, "code", &req.code);
    text(&mut errors, "name", &req.name);
    if let Some(p) = req.precision {
        errors.check(p <= 18, "precision", "must be at most 18");
    }
    let root = FieldPath::root();
    for (i, rate) in req.rates.iter().flatten().enumerate() {
        let path = root.at("rates", i);
        rate_source(&mut errors, path.field("source").as_str(), &rate.source);
        positive(&mut errors, path.field("rate"), rate.rate);
        positive(&mut errors, path.field("inverse_rate"), rate.inverse_rate);
        invertible(&mut errors, path.field("rate"), rate.rate);
        invertible(&mut errors, path.field("inverse_rate"), rate.inverse_rate);
        match (rate.rate, rate.inverse_rate) {
            (None, None) => errors.add(path.field("rate"), "give `rate` or `inverse_rate`"),
            (Some(r), Some(inv)) if r > Decimal::ZERO && inv > Decimal::ZERO => {
                let tolerance = Decimal::new(1, 9);
                let product = r.checked_mul(inv).unwrap_or(Decimal::MAX);
                errors.check(
                    (product - Decimal::ONE).abs() <= tolerance,
                    path.field("inverse_rate"),
                    "must be 1 / rate",
                );
            }
            _ => {}
        }
        let duplicate = req.rates.iter().flatten().take(i).any(|r| r.source == rate.source);
        errors.check(!duplicate, path.field("source"), "appears more than once");
    }
    errors
}

/// An exchange rate whose inverse is within the request bound too (at least 10^-9), so that
/// conversions either way stay bounded. Non-positive rates are `positive`'s to report.
pub fn invertible(errors: &mut ValidationErrors, path: FieldPath, rate: Option<Decimal>) {
    if let Some(rate) = rate.filter(|r| *r > Decimal::ZERO) {
        let inverse_within =
            crate::money::divide(Decimal::ONE, rate).is_some_and(crate::money::within_request_bound);
        errors.check(
            inverse_within,
            path,
            "must be at least 0.000000001 (its inverse is bounded like every rate)",
        );
    }
}

/// Exchange rates are quoted against an ISO 4217 currency.
pub fn rate_source(errors: &mut ValidationErrors, path: &str, source: &str) {
    errors.check(is_iso_currency(source), path, "must be an ISO 4217 currency such as USD");
}

/// A product version's prices and entitlements. `asset_exists` answers for custom assets (ISO
/// currencies always exist).
pub fn product_version(
    prices: &[Price],
    entitlements: &[Entitlement],
    asset_exists: &dyn Fn(&str) -> bool,
) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    let root = FieldPath::root();
    let known = |code: &str| is_iso_currency(code) || asset_exists(code);
    errors.check(!prices.is_empty(), "prices", "must contain at least one price");
    for (i, price) in prices.iter().enumerate() {
        let path = root.at("prices", i);
        let base = &price.base;
        if let Some(id) = &base.id {
            text(&mut errors, path.field("id"), id.as_str());
            let duplicate = prices[..i].iter().any(|p| p.base.id.as_ref() == Some(id));
            errors.check(!duplicate, path.field("id"), "must be unique within the version");
        }
        text(&mut errors, path.field("name"), &base.name);
        pricing_model_supported(&mut errors, &path, base);
        errors.check(
            !matches!(base.collection, Some(Collection::Invoice(_))),
            path.field("collection").field("type"),
            "`invoice` collection needs payments, which drawdown does not take yet; use `balance`",
        );
        match &price.kind {
            PriceKind::UsageBased(p) => usage_price(&mut errors, &path, base.pricing_model, p, &known),
            PriceKind::Fixed(p) => fixed_price(&mut errors, &path, p, &known),
        }
    }
    for (i, e) in entitlements.iter().enumerate() {
        let path = root.at("entitlements", i);
        text(&mut errors, path.field("name"), &e.name);
        errors.check(known(&e.asset), path.field("asset"), "unknown asset");
        errors.check(e.amount > Decimal::ZERO, path.field("amount"), "must be greater than 0");
        if let Some(n) = e.lifecycle.duration_count {
            errors.check(n >= 1, path.field("lifecycle").field("duration_count"), "must be at least 1");
        }
        if let Some(a) = &e.accounting {
            non_negative(&mut errors, path.field("accounting").field("revenue_basis"), Some(a.revenue_basis));
        }
    }
    errors
}

fn usage_price(
    errors: &mut ValidationErrors,
    path: &FieldPath,
    pricing_model: Option<PricingModel>,
    p: &UsageBasedPrice,
    known: &dyn Fn(&str) -> bool,
) {
    let calc = &p.usage_calculation;
    let calc_path = path.field("usage_calculation");
    text(errors, calc_path.field("event_type"), &calc.event_type);
    match calc.usage_type {
        UsageType::Volume | UsageType::UnitAndVolume => {
            let ok = calc.volume_field.as_deref().is_some_and(|f| !f.trim().is_empty());
            errors.check(ok, calc_path.field("volume_field"), "is required for volume pricing");
        }
        UsageType::Unit => {}
        UsageType::Custom => errors.add(calc_path.field("usage_type"), "`custom` usage is not supported"),
    }
    match &p.billing_model {
        BillingModel::RealTime => {}
        BillingModel::Recurring(r) => recurring_count(errors, path, r.recurring.interval_count),
        BillingModel::OneTime(_) => errors.add(
            path.field("billing_model").field("type"),
            "usage-based prices are `real_time` or post-paid `recurring`",
        ),
    }
    errors.check(!p.pricing.is_empty(), path.field("pricing"), "must contain at least one asset");
    let dimensions = calc.billable_dimensions.as_deref().unwrap_or_default();
    for (i, pricing) in p.pricing.iter().enumerate() {
        let ppath = path.at("pricing", i);
        errors.check(known(&pricing.asset), ppath.field("asset"), "unknown asset");
        let duplicate = p.pricing[..i].iter().any(|other| other.asset == pricing.asset);
        errors.check(!duplicate, ppath.field("asset"), "appears more than once in this price");
        let vpath = ppath.field("values");
        match &pricing.values {
            PriceValues::Plain(values) => value_list(errors, &vpath, values, pricing_model, calc.usage_type),
            PriceValues::Dimensional(list) => {
                errors.check(!list.is_empty(), &vpath, "must not be empty");
                for (j, dp) in list.iter().enumerate() {
                    dimensional(errors, &vpath.index(j), dp, dimensions, pricing_model, calc.usage_type);
                }
            }
        }
    }
}

fn dimensional(
    errors: &mut ValidationErrors,
    path: &FieldPath,
    dp: &DimensionalPrice,
    billable: &[String],
    model: Option<PricingModel>,
    usage: UsageType,
) {
    errors.check(!dp.dimensions.is_empty(), path.field("dimensions"), "must name at least one dimension");
    for (key, value) in &dp.dimensions {
        let dpath = path.field("dimensions").field(key);
        errors.check(
            billable.iter().any(|b| b == key),
            &dpath,
            "is not listed in usage_calculation.billable_dimensions",
        );
        errors.check(!value.is_empty(), &dpath, "must not be empty (use `*` to match any value)");
    }
    value_list(errors, &path.field("values"), &dp.values, model, usage);
}

fn pricing_model_supported(errors: &mut ValidationErrors, path: &FieldPath, base: &PriceBase) {
    let model = base.pricing_model;
    if let Some(t) = &base.tiering {
        let tpath = path.field("tiering");
        errors.check(
            !matches!(t.basis, Some(TierBasis::Custom | TierBasis::Package)),
            tpath.field("basis"),
            "only `unit` and `volume` tier bases are supported",
        );
        errors.check(
            t.period != Some(TierCadence::Custom),
            tpath.field("period"),
            "`custom` is not supported",
        );
        errors.check(
            matches!(model, Some(PricingModel::Tiered | PricingModel::Bulk)),
            &tpath,
            "applies only to `tiered` or `bulk` pricing models",
        );
    }
}

/// The values of one asset (or one dimension combination): one value for flat and package
/// pricing, ascending tiers for tiered and bulk pricing.
fn value_list(
    errors: &mut ValidationErrors,
    path: &FieldPath,
    values: &[PriceValue],
    model: Option<PricingModel>,
    usage: UsageType,
) {
    let model = model.unwrap_or(PricingModel::Flat);
    if values.is_empty() {
        errors.add(path, "must not be empty");
        return;
    }
    match model {
        PricingModel::Flat | PricingModel::Package => {
            errors.check(values.len() == 1, path, "must contain exactly one value for this pricing model");
        }
        PricingModel::Tiered | PricingModel::Bulk => {
            let last = values.len() - 1;
            let mut previous: Option<Decimal> = None;
            for (i, v) in values.iter().enumerate() {
                let up_to = path.index(i).field("up_to");
                match (i == last, v.up_to) {
                    (true, Some(_)) => errors.add(up_to, "the last tier must not have `up_to`"),
                    (false, None) => errors.add(up_to, "is required on every tier but the last"),
                    (false, Some(bound)) => {
                        errors.check(bound > Decimal::ZERO, &up_to, "must be greater than 0");
                        if let Some(prev) = previous {
                            errors.check(bound > prev, &up_to, "must be greater than the previous tier's");
                        }
                        previous = Some(bound);
                    }
                    (true, None) => {}
                }
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let vpath = path.index(i);
        if !matches!(model, PricingModel::Tiered | PricingModel::Bulk) {
            errors.check(v.up_to.is_none(), vpath.field("up_to"), "only tiered and bulk prices have tiers");
        }
        non_negative(errors, vpath.field("unit_price"), v.unit_price);
        non_negative(errors, vpath.field("volume_rate"), v.volume_rate);
        positive(errors, vpath.field("package_size"), v.package_size);
        non_negative(errors, vpath.field("min_amount"), v.min_amount);
        non_negative(errors, vpath.field("max_amount"), v.max_amount);
        if let (Some(min), Some(max)) = (v.min_amount, v.max_amount) {
            errors.check(min <= max, vpath.field("min_amount"), "must not exceed max_amount");
        }
        match usage {
            UsageType::Unit => errors.check(
                v.unit_price.is_some(),
                vpath.field("unit_price"),
                "is required for unit pricing",
            ),
            UsageType::Volume => errors.check(
                v.volume_rate.is_some(),
                vpath.field("volume_rate"),
                "is required for volume pricing",
            ),
            UsageType::UnitAndVolume => errors.check(
                v.unit_price.is_some() || v.volume_rate.is_some(),
                vpath.field("volume_rate"),
                "unit_and_volume pricing needs `unit_price` and/or `volume_rate`",
            ),
            UsageType::Custom => {}
        }
        if model == PricingModel::Package {
            errors.check(
                v.package_size.is_some(),
                vpath.field("package_size"),
                "is required for package pricing",
            );
        }
    }
}

fn fixed_price(
    errors: &mut ValidationErrors,
    path: &FieldPath,
    p: &FixedPrice,
    known: &dyn Fn(&str) -> bool,
) {
    match &p.billing_model {
        BillingModel::RealTime => errors
            .add(path.field("billing_model").field("type"), "fixed prices are `recurring` or `one_time`"),
        BillingModel::Recurring(r) => recurring_count(errors, path, r.recurring.interval_count),
        BillingModel::OneTime(_) => {}
    }
    errors.check(!p.pricing.is_empty(), path.field("pricing"), "must contain at least one asset");
    for (i, pricing) in p.pricing.iter().enumerate() {
        let ppath = path.at("pricing", i);
        errors.check(known(&pricing.asset), ppath.field("asset"), "unknown asset");
        errors.check(!pricing.values.is_empty(), ppath.field("values"), "must not be empty");
        let mut total = Some(Decimal::ZERO);
        for (j, v) in pricing.values.iter().enumerate() {
            let vpath = ppath.at("values", j);
            non_negative(errors, vpath.field("unit_price"), Some(v.unit_price));
            positive(errors, vpath.field("quantity"), v.quantity);
            let fee = v.unit_price.checked_mul(v.quantity.unwrap_or(Decimal::ONE));
            total = total.zip(fee).and_then(|(t, f)| t.checked_add(f));
        }
        // The fee charged per period is bounded like any amount a request could carry.
        errors.check(
            total.is_some_and(crate::money::within_request_bound),
            ppath.field("values"),
            OUT_OF_BOUND,
        );
    }
}

fn recurring_count(errors: &mut ValidationErrors, path: &FieldPath, count: Option<u32>) {
    if let Some(n) = count {
        errors.check(
            n >= 1,
            path.field("billing_model").field("recurring").field("interval_count"),
            "must be at least 1",
        );
    }
}

/// The shape of a subscription request; whether the named products exist is checked by the
/// caller against the store.
pub fn subscription(errors: &mut ValidationErrors, path: &FieldPath, req: &CreateSubscriptionRequest) {
    errors.check(!req.products.is_empty(), path.field("products"), "must name at least one product");
    for (i, product) in req.products.iter().enumerate() {
        product_reference(errors, &path.at("products", i), product);
    }
    if let (Some(starts), Some(renews)) = (req.starts_at, req.renews_at) {
        errors.check(renews > starts, path.field("renews_at"), "must be after starts_at");
    }
}

fn product_reference(errors: &mut ValidationErrors, path: &FieldPath, r: &ProductReference) {
    if r.id.is_none() && r.code.is_none() {
        errors.add(path.field("id"), "give the product `id` or `code`");
    }
}

/// Most events one request may carry (`POST /events`, `simulate-usage`).
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// The shape of a batch of usage events: 1 to 1,000 events, each with a non-empty `id` and
/// `event_type` of at most 255 characters, unique ids, and non-negative costs.
pub fn usage_events(errors: &mut ValidationErrors, events: &[UsageEvent]) {
    errors.check(!events.is_empty(), "events", "must contain at least one event");
    errors.check(events.len() <= MAX_EVENTS_PER_REQUEST, "events", "at most 1,000 events per request");
    // Field paths are built only for errors: formatting eight per event was most of the cost
    // of validating a valid request.
    let path = |i: usize| FieldPath::root().at("events", i);
    // A set, not a scan of the earlier events: a full batch would otherwise cost ~500k compares.
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if let Some(message) = text_problem(&event.id) {
            errors.add(path(i).field("id"), message);
        }
        if let Some(message) = text_problem(&event.event_type) {
            errors.add(path(i).field("event_type"), message);
        }
        if !seen.insert(event.id.as_str()) {
            errors.add(path(i).field("id"), "appears more than once in this request");
        }
        for (name, value) in &event.data {
            if let Some(n) = value.as_number() {
                bounded(errors, || path(i).field("data").field(name), n);
            }
        }
        for (j, cost) in event.costs.iter().flatten().enumerate() {
            if cost.amount < Decimal::ZERO {
                errors.add(path(i).at("costs", j).field("amount"), "must not be negative");
            }
            let numbers = [
                ("amount", Some(cost.amount)),
                ("units", cost.units),
                ("unit_price", cost.unit_price),
                ("input_volume", cost.input_volume),
                ("volume_rate", cost.volume_rate),
                ("package_size", cost.package_size),
            ];
            for (field, n) in numbers {
                if let Some(n) = n {
                    bounded(errors, || path(i).at("costs", j).field(field), n);
                }
            }
            for (name, value) in cost.metadata.iter().flatten() {
                if let Some(n) = value.as_number() {
                    bounded(errors, || path(i).at("costs", j).field("metadata").field(name), n);
                }
            }
        }
    }
}

/// The message of a number beyond [`crate::money::REQUEST_BOUND`].
pub const OUT_OF_BOUND: &str =
    "must be a number between -1000000000 and 1000000000 (the bound on every amount, rate and quantity)";

/// Records an error for `value` at `path` unless it is within the request bound.
fn bounded(errors: &mut ValidationErrors, path: impl FnOnce() -> FieldPath, value: Decimal) {
    if !crate::money::within_request_bound(value) {
        errors.add(path(), OUT_OF_BOUND);
    }
}

/// Every number anywhere in a request body is within the request bound (`semantics.md` §1): the
/// one check that bounds every amount, rate and quantity of every route, whatever its shape.
/// A number too large for a decimal at all (`1e400`) is out of bound too.
pub fn numbers_within_bound(errors: &mut ValidationErrors, body: &serde_json::Value) {
    fn walk(errors: &mut ValidationErrors, path: &FieldPath, value: &serde_json::Value) {
        match value {
            serde_json::Value::Number(n) => {
                let within =
                    crate::usage::parse_number(n.as_str()).is_some_and(crate::money::within_request_bound);
                if !within {
                    errors.add(path.clone(), OUT_OF_BOUND);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(errors, &path.index(i), item);
                }
            }
            serde_json::Value::Object(fields) => {
                for (name, item) in fields {
                    walk(errors, &path.field(name), item);
                }
            }
            _ => {}
        }
    }
    walk(errors, &FieldPath::root(), body);
}

/// How far back an event's `occurred_at` may lie (`semantics.md` §3).
pub const GRACE_PAST: chrono::Duration = chrono::Duration::days(35);
/// How far ahead of the server clock an event's `occurred_at` may lie.
pub const GRACE_FUTURE: chrono::Duration = chrono::Duration::minutes(5);

/// `occurred_at` of every event inside `[now - 35 days, now + 5 minutes]`.
pub fn grace_window(errors: &mut ValidationErrors, events: &[UsageEvent], now: crate::Timestamp) {
    let (earliest, latest) = (now - GRACE_PAST, now + GRACE_FUTURE);
    let path = |i: usize| FieldPath::root().at("events", i).field("occurred_at");
    for (i, event) in events.iter().enumerate() {
        if event.occurred_at < earliest {
            errors.add(path(i), "is more than 35 days in the past");
        } else if event.occurred_at > latest {
            errors.add(path(i), "is more than 5 minutes in the future");
        }
    }
}

/// Which customer a `POST /events` request names: `customer_id` or `customer_external_id`, not
/// neither. (Whether they exist and agree is the caller's lookup.)
pub fn customer_reference(
    errors: &mut ValidationErrors,
    customer_id: Option<&str>,
    external_id: Option<&str>,
) {
    match (customer_id, external_id) {
        (None, None) => errors.add("customer_id", "give `customer_id` or `customer_external_id`"),
        (id, ext) => {
            optional_text(errors, "customer_id", id);
            optional_text(errors, "customer_external_id", ext);
        }
    }
}

/// A whole `POST /events` request, as far as it can be checked without the store: the customer
/// reference, every event, and the grace window at `now`.
pub fn usage_request(
    request: &crate::ledger::UsageRequest,
    now: crate::Timestamp,
) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    customer_reference(&mut errors, request.customer_id.as_deref(), request.customer_external_id.as_deref());
    usage_events(&mut errors, &request.events);
    grace_window(&mut errors, &request.events, now);
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prices(value: serde_json::Value) -> Vec<Price> {
        serde_json::from_value(value).unwrap()
    }

    fn volume_price(extra: serde_json::Value) -> serde_json::Value {
        let mut price = json!({
            "type": "usage_based", "name": "tokens",
            "usage_calculation": {"event_type": "chat", "usage_type": "volume", "volume_field": "tokens"},
            "billing_model": {"type": "real_time"},
            "pricing": [{"asset": "USD", "values": [{"volume_rate": 1.25, "package_size": 1000000}]}]
        });
        if let (Some(p), Some(e)) = (price.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                p.insert(k.clone(), v.clone());
            }
        }
        price
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.fields().collect()
    }

    #[test]
    fn a_valid_volume_price_passes() {
        let errors = product_version(&prices(json!([volume_price(json!({}))])), &[], &|_| false);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn volume_pricing_needs_volume_field() {
        let p = volume_price(json!({"usage_calculation": {"event_type": "chat", "usage_type": "volume"}}));
        let errors = product_version(&prices(json!([p])), &[], &|_| false);
        assert_eq!(fields(&errors), ["prices[0].usage_calculation.volume_field"]);
    }

    #[test]
    fn dimension_keys_must_be_billable_dimensions() {
        let p = json!({
            "type": "usage_based", "name": "images",
            "usage_calculation": {"event_type": "image", "usage_type": "unit", "billable_dimensions": ["model"]},
            "billing_model": {"type": "real_time"},
            "pricing": [{"asset": "USD", "values": [
                {"dimensions": {"model": "a"}, "values": [{"unit_price": 0.05}]},
                {"dimensions": {"size": "*"}, "values": [{"unit_price": 0.03}]}
            ]}]
        });
        let errors = product_version(&prices(json!([p])), &[], &|_| false);
        assert_eq!(fields(&errors), ["prices[0].pricing[0].values[1].dimensions.size"]);
    }

    #[test]
    fn assets_must_exist() {
        let p = volume_price(json!({"pricing": [{"asset": "CREDIT", "values": [{"volume_rate": 1}]}]}));
        let errors = product_version(&prices(json!([p.clone()])), &[], &|_| false);
        assert_eq!(fields(&errors), ["prices[0].pricing[0].asset"]);
        assert!(product_version(&prices(json!([p])), &[], &|code| code == "CREDIT").is_empty());
    }

    #[test]
    fn tiers_ascend_and_only_the_last_is_open() {
        let p = volume_price(json!({
            "pricing_model": "tiered",
            "pricing": [{"asset": "USD", "values": [
                {"up_to": 100, "volume_rate": 1}, {"up_to": 50, "volume_rate": 0.5}, {"volume_rate": 0.1, "up_to": 10}
            ]}]
        }));
        let errors = product_version(&prices(json!([p])), &[], &|_| false);
        assert_eq!(
            fields(&errors),
            ["prices[0].pricing[0].values[1].up_to", "prices[0].pricing[0].values[2].up_to"]
        );
    }

    #[test]
    fn negative_rates_and_inverted_clamps_are_rejected() {
        let p = volume_price(json!({
            "pricing": [{"asset": "USD", "values": [{"volume_rate": -1, "min_amount": 5, "max_amount": 1}]}]
        }));
        let errors = product_version(&prices(json!([p])), &[], &|_| false);
        assert_eq!(
            fields(&errors),
            ["prices[0].pricing[0].values[0].min_amount", "prices[0].pricing[0].values[0].volume_rate"]
        );
    }

    #[test]
    fn events_must_fall_inside_the_grace_window() {
        let now: crate::Timestamp = "2026-11-22T12:00:00Z".parse().unwrap();
        let event = |at: &str| -> UsageEvent {
            serde_json::from_value(json!({"id": "e", "event_type": "t", "occurred_at": at})).unwrap()
        };
        let events = [
            event("2026-10-18T12:00:00Z"), // exactly 35 days back: accepted
            event("2026-10-18T11:59:59Z"), // one second more: refused
            event("2026-11-22T12:05:00Z"), // exactly 5 minutes ahead: accepted
            event("2026-11-22T12:05:01Z"), // refused
        ];
        let mut errors = ValidationErrors::new();
        grace_window(&mut errors, &events, now);
        assert_eq!(fields(&errors), ["events[1].occurred_at", "events[3].occurred_at"]);
    }

    #[test]
    fn an_events_request_names_its_customer() {
        let check = |id: Option<&str>, ext: Option<&str>| {
            let mut errors = ValidationErrors::new();
            customer_reference(&mut errors, id, ext);
            errors.fields().map(str::to_string).collect::<Vec<_>>()
        };
        assert_eq!(check(None, None), ["customer_id"]);
        assert_eq!(check(Some(""), Some("ext")), ["customer_id"]);
        assert_eq!(check(Some("cust_1"), Some("")), ["customer_external_id"]);
        assert!(check(None, Some("ext-1")).is_empty());
        assert!(check(Some("cust_1"), None).is_empty());
    }

    #[test]
    fn usage_event_batches_are_bounded_and_ids_unique() {
        let event = |id: &str| -> UsageEvent {
            serde_json::from_value(
                json!({"id": id, "event_type": "t", "occurred_at": "2026-11-01T00:00:00Z"}),
            )
            .unwrap()
        };
        let mut errors = ValidationErrors::new();
        usage_events(&mut errors, &[event("a"), event("a"), event("")]);
        assert_eq!(fields(&errors), ["events[1].id", "events[2].id"]);
        let messages = errors.into_map();
        assert_eq!(messages["events[1].id"], ["appears more than once in this request"]);
        assert_eq!(messages["events[2].id"], ["must not be empty"]);

        let mut bad = event("b");
        bad.event_type = " ".into();
        bad.costs = Some(vec![
            serde_json::from_value(json!({"amount": 1})).unwrap(),
            serde_json::from_value(json!({"amount": -1})).unwrap(),
        ]);
        let mut errors = ValidationErrors::new();
        usage_events(&mut errors, &[event("a"), bad]);
        assert_eq!(fields(&errors), ["events[1].costs[1].amount", "events[1].event_type"]);
        let mut errors = ValidationErrors::new();
        usage_events(&mut errors, &[]);
        assert_eq!(fields(&errors), ["events"]);
    }

    #[test]
    fn asset_codes_are_upper_case_and_not_currencies() {
        let mut errors = ValidationErrors::new();
        asset_code(&mut errors, "a", "CREDIT");
        asset_code(&mut errors, "b", "credit");
        asset_code(&mut errors, "c", "USD");
        assert_eq!(fields(&errors), ["b", "c"]);
    }
}
