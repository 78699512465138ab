//! Products and their versions (`semantics.md` §6): create, list, get, delete, new versions,
//! publish / make default / archive, and the subscribers of a product. Raters cache products and
//! reload one only when a pinned version is missing: published versions never change.

use crate::docs::{load, modify, paginate, Change};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{Body, Params};
use crate::tenancy::Scope;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use rater::{Rating, Scratch, Subscribed};
use schemas::catalog::{Asset, Entitlement, Price, Product, ProductVersion, VersionSelector, VersionStatus};
use schemas::currency::is_iso_currency;
use schemas::customer::Customer;
use schemas::ids::{PriceId, ProductId, ProductVersionId};
use schemas::problem::ValidationErrors;
use schemas::usage::{SimulateUsageRequest, SimulateUsageResponse};
use schemas::validate;
use schemas::wire::{
    CreateProductRequest, CreateProductVersionRequest, GetProductResponse, GetProductVersionResponse, Page,
    PageRequest, ProductListFilter, ProductSubscriber, ProductSummary, ProductVersionCreated,
    UpdateProductVersionRequest,
};
use std::collections::HashSet;
use store::typed::{get_doc, list_docs};
use store::{Expect, Op, Store, Table};

/// The custom assets among those a version references that exist in the store.
async fn existing_assets(
    store: &dyn Store,
    prices: &[Price],
    entitlements: &[Entitlement],
) -> Result<HashSet<String>, ApiError> {
    let draft = ProductVersion {
        id: ProductVersionId::from_raw(""),
        version: 0,
        status: VersionStatus::Draft,
        prices: prices.to_vec(),
        entitlements: entitlements.to_vec(),
        created_at: Utc::now(),
    };
    let mut found = HashSet::new();
    for code in draft.assets().into_iter().filter(|c| !is_iso_currency(c)) {
        if get_doc::<Asset>(store, Table::Assets, &code).await?.is_some() {
            found.insert(code);
        }
    }
    Ok(found)
}

/// Validates a version's content and builds it with server-assigned price ids.
async fn new_version(
    store: &dyn Store,
    number: u32,
    mut prices: Vec<Price>,
    entitlements: Vec<Entitlement>,
    publish: bool,
    mut errors: ValidationErrors,
) -> Result<ProductVersion, ApiError> {
    let assets = existing_assets(store, &prices, &entitlements).await?;
    for (field, messages) in
        validate::product_version(&prices, &entitlements, &|c| assets.contains(c)).into_map()
    {
        for m in messages {
            errors.add(field.clone(), m);
        }
    }
    errors.into_result()?;
    for price in prices.iter_mut().filter(|p| p.base.id.is_none()) {
        price.base.id = Some(PriceId::generate());
    }
    Ok(ProductVersion {
        id: ProductVersionId::generate(),
        version: number,
        status: if publish { VersionStatus::Published } else { VersionStatus::Draft },
        prices,
        entitlements,
        created_at: Utc::now(),
    })
}

/// A live (not deleted) product or 404.
fn live(product: &Product) -> Result<(), ApiError> {
    match product.deleted_at {
        Some(_) => Err(ApiError::not_found("product", product.id.as_str())),
        None => Ok(()),
    }
}

async fn load_live(store: &dyn Store, id: &str) -> Result<Product, ApiError> {
    let product = load::<Product>(store, Table::Products, "product", id).await?.value;
    live(&product)?;
    Ok(product)
}

fn no_such_version(product_id: &str, raw: &str) -> ApiError {
    ApiError::NotFound(format!("product `{product_id}` has no version `{raw}`"))
}

/// A `{version}` path segment: a number or `default`; anything else names no version (404).
fn parse_version(product_id: &str, raw: &str) -> Result<VersionSelector, ApiError> {
    raw.parse().map_err(|_| no_such_version(product_id, raw))
}

fn resolve_version<'p>(
    product: &'p Product,
    selector: VersionSelector,
    raw: &str,
) -> Result<&'p ProductVersion, ApiError> {
    product.resolve(selector).ok_or_else(|| no_such_version(product.id.as_str(), raw))
}

pub async fn create(
    Scope(state): Scope,
    Body(req): Body<CreateProductRequest>,
) -> Result<(StatusCode, Json<ProductVersionCreated>), ApiError> {
    let mut errors = ValidationErrors::new();
    validate::text(&mut errors, "name", &req.name);
    validate::text(&mut errors, "code", &req.code);
    let publish = req.publish.unwrap_or(false);
    let version = new_version(
        state.store.as_ref(),
        1,
        req.prices,
        req.entitlements.unwrap_or_default(),
        publish,
        errors,
    )
    .await?;
    let product = Product {
        id: ProductId::generate(),
        code: req.code,
        name: req.name,
        created_at: version.created_at,
        default_version: publish.then_some(1),
        versions: vec![version],
        deleted_at: None,
    };
    let op = Op::put_doc(Table::Products, product.id.as_str(), &product)?
        .expect(Expect::Absent)
        .unique("code", product.code.clone());
    state.store.write(vec![op]).await?;
    Ok((StatusCode::CREATED, Json(ProductVersionCreated::new(&product, &product.versions[0]))))
}

pub async fn list(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
    Params(filter): Params<ProductListFilter>,
) -> Result<Json<Page<ProductSummary>>, ApiError> {
    let products = list_docs::<Product>(state.store.as_ref(), Table::Products, "").await?;
    let matching: Vec<Product> = products
        .into_iter()
        .map(|d| d.value)
        .filter(|p| p.deleted_at.is_none() && filter.code.as_ref().is_none_or(|c| &p.code == c))
        .collect();
    Ok(Json(paginate(matching, page, |p| ProductSummary {
        id: p.id.to_string(),
        code: p.code,
        name: p.name,
    })))
}

pub async fn get(Scope(state): Scope, Path(id): Path<String>) -> Result<Json<GetProductResponse>, ApiError> {
    Ok(Json(GetProductResponse::from(&load_live(state.store.as_ref(), &id).await?)))
}

/// Hides the product from the catalog and frees its code. Subscribers keep their pinned version.
pub async fn delete(Scope(state): Scope, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    modify(state.store.as_ref(), Table::Products, "product", &id, |product: &mut Product| {
        live(product)?;
        product.deleted_at = Some(Utc::now());
        Ok(Change::new(()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create_version(
    Scope(state): Scope,
    Path(id): Path<String>,
    Body(req): Body<CreateProductVersionRequest>,
) -> Result<(StatusCode, Json<ProductVersionCreated>), ApiError> {
    let publish = req.publish.unwrap_or(false);
    let store = state.store.as_ref();
    let current = load_live(store, &id).await?;
    let version = new_version(
        store,
        current.latest_version() + 1,
        req.prices,
        req.entitlements.unwrap_or_default(),
        publish,
        ValidationErrors::new(),
    )
    .await?;
    let created = modify(store, Table::Products, "product", &id, |product: &mut Product| {
        live(product)?;
        let mut version = version.clone();
        version.version = product.latest_version() + 1;
        if publish && product.default_version.is_none() {
            product.default_version = Some(version.version);
        }
        product.versions.push(version.clone());
        let created = ProductVersionCreated::new(product, &version);
        Ok(Change::new(created).unique("code", Some(&product.code)))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn get_version(
    Scope(state): Scope,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Json<GetProductVersionResponse>, ApiError> {
    let selector = parse_version(&id, &raw)?;
    let product = load_live(state.store.as_ref(), &id).await?;
    let version = resolve_version(&product, selector, &raw)?;
    Ok(Json(GetProductVersionResponse::new(&product, version)))
}

/// Publishes a draft and/or makes a published version the default.
pub async fn update_version(
    Scope(state): Scope,
    Path((id, raw)): Path<(String, String)>,
    Body(req): Body<UpdateProductVersionRequest>,
) -> Result<StatusCode, ApiError> {
    let selector = parse_version(&id, &raw)?;
    modify(state.store.as_ref(), Table::Products, "product", &id, |product: &mut Product| {
        live(product)?;
        let number = resolve_version(product, selector, &raw)?.version;
        let had_default = product.default_version.is_some();
        let version =
            product.version_mut(number).ok_or_else(|| ApiError::Internal("version vanished".into()))?;
        match (req.publish, version.status) {
            (Some(true), VersionStatus::Draft) => version.status = VersionStatus::Published,
            (Some(true), VersionStatus::Archived) => {
                return Err(ApiError::invalid("publish", "an archived version cannot be published again"))
            }
            (Some(false), VersionStatus::Published) => {
                return Err(ApiError::invalid("publish", "a published version cannot be unpublished"))
            }
            _ => {}
        }
        let published = version.status == VersionStatus::Published;
        if req.make_default == Some(true) {
            if !published {
                return Err(ApiError::invalid("make_default", "only a published version can be the default"));
            }
            product.default_version = Some(number);
        } else if published && !had_default {
            // The first published version becomes the default.
            product.default_version = Some(number);
        }
        Ok(Change::new(()).unique("code", Some(&product.code)))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stops new subscriptions to a version; its subscribers keep being billed by it.
pub async fn archive_version(
    Scope(state): Scope,
    Path((id, raw)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let selector = parse_version(&id, &raw)?;
    modify(state.store.as_ref(), Table::Products, "product", &id, |product: &mut Product| {
        live(product)?;
        let number = resolve_version(product, selector, &raw)?.version;
        if product.default_version == Some(number) {
            return Err(ApiError::Conflict(format!(
                "version {number} is the default of product `{}`; make another version the default first",
                product.code
            )));
        }
        if let Some(v) = product.version_mut(number) {
            v.status = VersionStatus::Archived;
        }
        Ok(Change::new(()).unique("code", Some(&product.code)))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Index key of one (product, customer, subscription) link.
pub fn subscriber_key(product: &str, customer: &str, subscription: &str) -> String {
    format!("{product}/{customer}/{subscription}")
}

pub async fn subscribers(
    Scope(state): Scope,
    Path(id): Path<String>,
    Params(page): Params<PageRequest>,
) -> Result<Json<Page<ProductSubscriber>>, ApiError> {
    let store = state.store.as_ref();
    let product = load_live(store, &id).await?;
    let links = store.list(Table::ProductSubscribers, &format!("{id}/"), store::ListRange::ALL).await?;
    let mut rows = Vec::new();
    let mut customer: Option<Customer> = None;
    for link in links.records {
        let mut parts = link.key.splitn(3, '/').skip(1);
        let (Some(customer_id), Some(subscription_id)) = (parts.next(), parts.next()) else { continue };
        if customer.as_ref().is_none_or(|c| c.id.as_str() != customer_id) {
            customer = get_doc::<Customer>(store, Table::Customers, customer_id).await?.map(|d| d.value);
        }
        let Some(c) = &customer else { continue };
        let Some(sub) = c.subscriptions.iter().find(|s| s.id.as_str() == subscription_id) else { continue };
        for pinned in sub.products.iter().filter(|p| p.id == product.id) {
            rows.push(ProductSubscriber {
                customer_id: c.id.to_string(),
                customer_name: c.name.clone(),
                external_id: c.external_id.clone(),
                email: c.email.clone(),
                subscription_id: sub.id.to_string(),
                subscription_status: sub.status,
                started_at: sub.started_at,
                renews_at: sub.renews_at,
                product_rate_plan_id: product
                    .version(pinned.version)
                    .map(|v| v.id.to_string())
                    .unwrap_or_default(),
                version: pinned.version,
            });
        }
    }
    Ok(Json(paginate(rows, page, |r| r)))
}

/// Prices sample events with one version, touching no wallet and no counter: tier counters start
/// at zero and accumulate over the request's events, in order.
pub async fn simulate_usage(
    Scope(state): Scope,
    Path((id, raw)): Path<(String, String)>,
    Body(req): Body<SimulateUsageRequest>,
) -> Result<Json<SimulateUsageResponse>, ApiError> {
    let selector = parse_version(&id, &raw)?;
    let product = load_live(state.store.as_ref(), &id).await?;
    let version = resolve_version(&product, selector, &raw)?;
    let mut errors = ValidationErrors::new();
    validate::usage_events(&mut errors, &req.events);
    errors.into_result()?;
    let subscribed = [Subscribed { product_id: product.id.as_str(), product_code: &product.code, version }];
    let mut counters = Scratch::new();
    let mut rating = Rating::default();
    let mut response = SimulateUsageResponse { fees: Vec::new(), warnings: Vec::new() };
    for event in &req.events {
        rater::rate(event, &subscribed, &counters, &mut rating);
        response.fees.extend(rating.fees.iter().map(|fee| fee.to_calculated(event)));
        response.warnings.append(&mut rating.warnings);
        counters.apply(&rating.counters);
    }
    Ok(Json(response))
}
