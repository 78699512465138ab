//! Custom assets and their exchange-rate schedules (`semantics.md` §5).

use crate::docs::{list_page, load, modify, Change};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{Body, Params};
use crate::tenancy::Scope;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use schemas::catalog::{Asset, AssetExchangeRate, AssetRates, RateBasis};
use schemas::money::divide;
use schemas::problem::ValidationErrors;
use schemas::validate;
use schemas::wire::{
    AddAssetRateRequest, CreateAssetRequest, CreateAssetResponse, GetAssetResponse, ListAssetsItem, Page,
    PageRequest, QuoteAssetRequest, QuoteAssetResponse,
};
use schemas::{Decimal, Timestamp};
use store::{Expect, Op, StoreError, Table};

/// A schedule entry from whichever side of the rate the client gave.
fn exchange_rate(
    valid_from: Timestamp,
    valid_to: Option<Timestamp>,
    rate: Option<Decimal>,
    inverse_rate: Option<Decimal>,
) -> Option<AssetExchangeRate> {
    let (rate, inverse_rate, basis) = match (rate, inverse_rate) {
        (Some(r), Some(inv)) => (r, inv, RateBasis::Rate),
        (Some(r), None) => (r, divide(Decimal::ONE, r)?, RateBasis::Rate),
        (None, Some(inv)) => (divide(Decimal::ONE, inv)?, inv, RateBasis::InverseRate),
        (None, None) => return None,
    };
    Some(AssetExchangeRate { valid_from, valid_to, rate, inverse_rate, basis })
}

pub async fn create(
    Scope(state): Scope,
    Body(req): Body<CreateAssetRequest>,
) -> Result<(StatusCode, Json<CreateAssetResponse>), ApiError> {
    validate::create_asset(&req).into_result()?;
    if state.tenant.0.is_some() {
        return Err(ApiError::invalid(
            "code",
            "custom assets belong to the platform account: a connected account cannot create one yet (use an ISO currency)",
        ));
    }
    let now = Utc::now();
    let rates = req
        .rates
        .iter()
        .flatten()
        .filter_map(|r| {
            let entry = exchange_rate(now, None, r.rate, r.inverse_rate)?;
            Some(AssetRates { source: r.source.clone(), schedule: vec![entry] })
        })
        .collect();
    let asset = Asset {
        code: req.code,
        name: req.name,
        precision: req.precision,
        label: req.label,
        symbol: req.symbol,
        rates,
        created_at: now,
    };
    let op = Op::put_doc(Table::Assets, &asset.code, &asset)?.expect(Expect::Absent);
    match state.store.write(vec![op]).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::invalid("code", format!("asset `{}` already exists", asset.code)))
        }
        Err(e) => return Err(e.into()),
    }
    Ok((StatusCode::CREATED, Json(CreateAssetResponse { code: asset.code, created_at: now })))
}

pub async fn list(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
) -> Result<Json<Page<ListAssetsItem>>, ApiError> {
    let page = list_page::<Asset>(state.store.as_ref(), Table::Assets, page, |_| true).await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(|a| ListAssetsItem { code: a.code, name: a.name }).collect(),
        total_count: page.total_count,
        limit: page.limit,
        offset: page.offset,
    }))
}

pub async fn get(Scope(state): Scope, Path(code): Path<String>) -> Result<Json<GetAssetResponse>, ApiError> {
    let asset = load::<Asset>(state.store.as_ref(), Table::Assets, "asset", &code).await?;
    Ok(Json(GetAssetResponse::from(&asset.value)))
}

/// Adds a rate to the source's schedule; the open rate before it is closed at its `valid_from`.
pub async fn add_rate(
    Scope(state): Scope,
    Path(code): Path<String>,
    Body(req): Body<AddAssetRateRequest>,
) -> Result<StatusCode, ApiError> {
    let mut errors = ValidationErrors::new();
    validate::rate_source(&mut errors, "source", &req.source);
    errors.check(req.rate > Decimal::ZERO, "rate", "must be greater than 0");
    validate::invertible(&mut errors, schemas::problem::FieldPath::root().field("rate"), Some(req.rate));
    let valid_from = req.valid_from.unwrap_or_else(Utc::now);
    if let Some(to) = req.valid_to {
        errors.check(to > valid_from, "valid_to", "must be after valid_from");
    }
    errors.into_result()?;
    let entry = exchange_rate(valid_from, req.valid_to, Some(req.rate), None)
        .ok_or_else(|| ApiError::invalid("rate", "must be greater than 0"))?;
    modify(state.store.as_ref(), Table::Assets, "asset", &code, |asset: &mut Asset| {
        let schedule = match asset.rates.iter_mut().position(|r| r.source == req.source) {
            Some(i) => &mut asset.rates[i].schedule,
            None => {
                asset.rates.push(AssetRates { source: req.source.clone(), schedule: Vec::new() });
                &mut asset.rates.last_mut().expect("just pushed").schedule
            }
        };
        if let Some(open) = schedule.iter_mut().find(|e| e.valid_to.is_none()) {
            if open.valid_from >= valid_from {
                return Err(ApiError::invalid(
                    "valid_from",
                    format!("must be after the current rate's valid_from ({})", open.valid_from.to_rfc3339()),
                ));
            }
            open.valid_to = Some(valid_from);
        }
        schedule.push(entry.clone());
        schedule.sort_by_key(|e| e.valid_from);
        Ok(Change::new(()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn quote(
    Scope(state): Scope,
    Path(code): Path<String>,
    Body(req): Body<QuoteAssetRequest>,
) -> Result<Json<QuoteAssetResponse>, ApiError> {
    let asset = load::<Asset>(state.store.as_ref(), Table::Assets, "asset", &code).await?.value;
    let mut errors = ValidationErrors::new();
    validate::rate_source(&mut errors, "source", &req.source);
    errors.check(req.amount >= Decimal::ZERO, "amount", "must not be negative");
    errors.into_result()?;
    let at = req.exchange_at.unwrap_or_else(Utc::now);
    let rate = asset.rate_at(&req.source, at).ok_or_else(|| {
        ApiError::invalid(
            "exchange_at",
            format!("no {} rate of {} is valid at {}", req.source, asset.code, at.to_rfc3339()),
        )
    })?;
    let destination_amount = rate
        .to_asset_units(req.amount)
        .ok_or_else(|| ApiError::invalid("amount", "is too large to convert"))?;
    Ok(Json(QuoteAssetResponse {
        source: req.source,
        source_amount: req.amount,
        destination: asset.code.clone(),
        destination_amount,
        rate: rate.rate,
        inverse_rate: rate.inverse_rate,
    }))
}
