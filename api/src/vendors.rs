//! Vendors: the suppliers whose costs events carry (`semantics.md` §7).

use crate::docs::{insert, list_page, load};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{Body, Params};
use crate::tenancy::Scope;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use schemas::customer::Vendor;
use schemas::ids::VendorId;
use schemas::problem::ValidationErrors;
use schemas::validate;
use schemas::wire::{CreateVendorRequest, CreatedResponse, ExternalIdFilter, Page, PageRequest};
use store::Table;

pub async fn create(
    Scope(state): Scope,
    Body(req): Body<CreateVendorRequest>,
) -> Result<(StatusCode, Json<CreatedResponse>), ApiError> {
    let mut errors = ValidationErrors::new();
    validate::text(&mut errors, "name", &req.name);
    validate::optional_text(&mut errors, "external_id", req.external_id.as_deref());
    errors.into_result()?;
    let vendor = Vendor {
        id: VendorId::generate(),
        external_id: req.external_id,
        name: req.name,
        created_at: Utc::now(),
    };
    insert(state.store.as_ref(), Table::Vendors, vendor.id.as_str(), &vendor, vendor.external_id.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedResponse { id: vendor.id.to_string(), created_at: vendor.created_at }),
    ))
}

pub async fn list(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
    Params(filter): Params<ExternalIdFilter>,
) -> Result<Json<Page<Vendor>>, ApiError> {
    let page = list_page(state.store.as_ref(), Table::Vendors, page, |v: &Vendor| {
        filter.external_id.is_none() || v.external_id == filter.external_id
    })
    .await?;
    Ok(Json(page))
}

pub async fn get(Scope(state): Scope, Path(id): Path<String>) -> Result<Json<Vendor>, ApiError> {
    Ok(Json(load(state.store.as_ref(), Table::Vendors, "vendor", &id).await?.value))
}
