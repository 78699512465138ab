//! Customers and their subscriptions (`semantics.md` §2, §6). Subscribing pins product versions
//! (`default` resolved now) and provisions the wallet accounts those versions use, in the same
//! atomic write as the customer. Raters see the change on their next batch: they revalidate the
//! batch's customers against the store (`rater::cache`).

use crate::clocks::{customer_now, schedule_op, tick};
use crate::docs::{load, modify, paginate, Change};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{Body, Params};
use crate::products::subscriber_key;
use crate::tenancy::Scope;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use schemas::catalog::{
    BillingModel, Period, PriceKind, Product, ProductVersion, VersionSelector, VersionStatus,
};
use schemas::clock::TestClock;
use schemas::customer::{
    Customer, ProductReference, SubscribedProduct, Subscription, SubscriptionStatus, WalletAccount,
};
use schemas::ids::{CustomerId, SubscriptionId};
use schemas::problem::{FieldPath, ValidationErrors};
use schemas::wire::{
    CreateCustomerRequest, CreateCustomerResponse, CreateSubscriptionRequest, CustomerListFilter,
    CustomerSummary, GetCustomerResponse, Page, PageRequest, UpdateCustomerRequest,
    UpdateSubscriptionProductRequest, UpdateSubscriptionRequest,
};
use schemas::{validate, Timestamp};
use store::typed::{find_doc, get_doc, list_docs};
use store::{Expect, Op, Store, Table};

/// A product version a subscription will pin, with the assets it uses and its billing period.
struct Pinned {
    product: SubscribedProduct,
    assets: Vec<String>,
    period: Option<Period>,
}

/// The period `renews_at` follows for a version: its first recurring price's (fixed or
/// post-paid), else its first refreshing entitlement's.
fn billing_period(version: &ProductVersion) -> Option<Period> {
    let recurring = version.prices.iter().find_map(|p| {
        let model = match &p.kind {
            PriceKind::Fixed(f) => &f.billing_model,
            PriceKind::UsageBased(u) => &u.billing_model,
        };
        match model {
            BillingModel::Recurring(r) => Some(r.recurring.period()),
            _ => None,
        }
    });
    recurring
        .or_else(|| version.entitlements.iter().find(|e| e.lifecycle.refresh.is_some()).map(|e| e.period()))
}

/// Resolves a product reference to a published, subscribable version; errors name `path`.
async fn resolve_product(
    store: &dyn Store,
    path: &FieldPath,
    reference: &ProductReference,
) -> Result<Pinned, ApiError> {
    let (field, product) = match (&reference.id, &reference.code) {
        (Some(id), _) => ("id", get_doc::<Product>(store, Table::Products, id).await?),
        (None, Some(code)) => ("code", find_doc::<Product>(store, Table::Products, "code", code).await?),
        (None, None) => return Err(ApiError::invalid(path.field("id"), "give the product `id` or `code`")),
    };
    let product = product
        .map(|d| d.value)
        .filter(|p| p.deleted_at.is_none())
        .ok_or_else(|| ApiError::invalid(path.field(field), "unknown product"))?;
    if let (Some(id), Some(code)) = (&reference.id, &reference.code) {
        if product.id.as_str() != id || &product.code != code {
            return Err(ApiError::invalid(path.field("code"), "does not match the product `id`"));
        }
    }
    pin(&product, reference.version.unwrap_or(VersionSelector::Default), &path.field("version"))
}

fn pin(product: &Product, selector: VersionSelector, path: &FieldPath) -> Result<Pinned, ApiError> {
    let version = product.resolve(selector).ok_or_else(|| match selector {
        VersionSelector::Default => ApiError::invalid(path, "the product has no published default version"),
        VersionSelector::Number(n) => ApiError::invalid(path, format!("the product has no version {n}")),
    })?;
    match version.status {
        VersionStatus::Published => Ok(Pinned {
            product: SubscribedProduct {
                id: product.id.clone(),
                code: product.code.clone(),
                version: version.version,
            },
            assets: version.assets(),
            period: billing_period(version),
        }),
        VersionStatus::Draft => {
            Err(ApiError::invalid(path, format!("version {} is a draft; publish it first", version.version)))
        }
        VersionStatus::Archived => Err(ApiError::invalid(
            path,
            format!("version {} is archived and takes no new subscriptions", version.version),
        )),
    }
}

/// Validates and resolves a subscription request into a subscription and its pinned versions;
/// `now` is the customer's time.
async fn build_subscription(
    store: &dyn Store,
    path: &FieldPath,
    req: &CreateSubscriptionRequest,
    now: Timestamp,
) -> Result<(Subscription, Vec<Pinned>), ApiError> {
    let mut errors = ValidationErrors::new();
    validate::subscription(&mut errors, path, req);
    errors.into_result()?;
    let mut pinned = Vec::new();
    for (j, reference) in req.products.iter().enumerate() {
        pinned.push(resolve_product(store, &path.at("products", j), reference).await?);
    }
    let started_at = req.starts_at.unwrap_or(now);
    let mut subscription = Subscription {
        id: SubscriptionId::generate(),
        started_at,
        renews_at: req.renews_at,
        status: if started_at > now { SubscriptionStatus::Scheduled } else { SubscriptionStatus::Active },
        products: pinned.iter().map(|p| p.product.clone()).collect(),
        anchored_at: None,
        period: pinned.iter().find_map(|p| p.period),
    };
    subscription.settle(now);
    Ok((subscription, pinned))
}

/// The writes that go with adding `pinned` to `customer` under `subscription`: missing wallet
/// accounts (recorded on the customer) and the product-subscriber index.
fn subscription_ops(
    customer: &mut Customer,
    subscription: &str,
    pinned: &[Pinned],
) -> Result<Vec<Op>, ApiError> {
    let mut ops = Vec::new();
    for p in pinned {
        ops.push(Op::put_doc(
            Table::ProductSubscribers,
            subscriber_key(p.product.id.as_str(), customer.id.as_str(), subscription),
            &serde_json::json!({}),
        )?);
        for asset in &p.assets {
            let account = WalletAccount::new(WalletAccount::DEFAULT_NAME, asset);
            if customer.accounts.contains(&account.id) {
                continue;
            }
            customer.accounts.push(account.id.clone());
            let key = format!("{}/{}", customer.id, account.id);
            ops.push(Op::put_doc(Table::WalletAccounts, key, &account)?.expect(Expect::Absent));
        }
    }
    Ok(ops)
}

fn validate_details(
    errors: &mut ValidationErrors,
    name: Option<&str>,
    external_id: Option<&str>,
    email: Option<&str>,
) {
    if let Some(name) = name {
        validate::text(errors, "name", name);
    }
    validate::optional_text(errors, "external_id", external_id);
    validate::email(errors, "email", email);
}

/// The test clock a new customer is attached to (404 for a live key, 422 when unknown), with
/// its revision.
async fn attach_clock(
    store: &dyn Store,
    environment: Option<Extension<crate::auth::Environment>>,
    id: Option<&str>,
) -> Result<Option<(TestClock, u64)>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    if let Some(Extension(crate::auth::Environment::Live)) = environment {
        return Err(ApiError::not_found("test clock", id));
    }
    match get_doc::<TestClock>(store, Table::TestClocks, id).await? {
        Some(doc) => Ok(Some((doc.value, doc.revision))),
        None => Err(ApiError::invalid("test_clock", "unknown test clock")),
    }
}

pub async fn create(
    Scope(state): Scope,
    environment: Option<Extension<crate::auth::Environment>>,
    Body(req): Body<CreateCustomerRequest>,
) -> Result<(StatusCode, Json<CreateCustomerResponse>), ApiError> {
    let store = state.store.as_ref();
    let mut errors = ValidationErrors::new();
    validate_details(&mut errors, Some(&req.name), req.external_id.as_deref(), req.email.as_deref());
    validate::metadata(&mut errors, "metadata", req.metadata.as_ref());
    for (i, account) in req.external_accounts.iter().flatten().enumerate() {
        let path = FieldPath::root().at("external_accounts", i);
        validate::text(&mut errors, path.field("provider"), &account.provider);
        validate::text(&mut errors, path.field("provider_id"), &account.provider_id);
    }
    errors.into_result()?;
    let clock = attach_clock(store, environment, req.test_clock.as_deref()).await?;
    let now = clock.as_ref().map_or_else(Utc::now, |(c, _)| c.frozen_time);
    let mut customer = Customer {
        id: CustomerId::generate(),
        external_id: req.external_id,
        name: req.name,
        email: req.email,
        metadata: req.metadata,
        subscriptions: Vec::new(),
        external_accounts: req.external_accounts,
        created_at: now,
        accounts: Vec::new(),
        test_clock: clock.as_ref().map(|(c, _)| c.id.to_string()),
    };
    let mut ops = Vec::new();
    for (i, sub) in req.subscriptions.iter().flatten().enumerate() {
        let (subscription, pinned) =
            build_subscription(store, &FieldPath::root().at("subscriptions", i), sub, now).await?;
        ops.extend(subscription_ops(&mut customer, subscription.id.as_str(), &pinned)?);
        customer.subscriptions.push(subscription);
    }
    let mut put = Op::put_doc(Table::Customers, customer.id.as_str(), &customer)?.expect(Expect::Absent);
    if let Some(ext) = &customer.external_id {
        put = put.unique("external_id", ext.clone());
    }
    ops.insert(0, put);
    if let Some((mut clock, revision)) = clock {
        clock.customers.push(customer.id.to_string());
        ops.push(
            Op::put_doc(Table::TestClocks, clock.id.as_str(), &clock)?.expect(Expect::Revision(revision)),
        );
    }
    let due = if customer.subscriptions.is_empty() {
        None
    } else {
        Some(schedule_op(&state, customer.id.as_str(), now)?)
    };
    ops.extend(due.as_ref().map(|(_, op)| op.clone()));
    store.write(ops).await?;
    if let Some((key, _)) = due {
        tick(&state, customer.id.as_str(), Some(key)).await?;
    }
    let subscriptions = customer.subscriptions.iter().map(|s| s.view(now)).collect();
    Ok((StatusCode::CREATED, Json(CreateCustomerResponse { id: customer.id.to_string(), subscriptions })))
}

pub async fn list(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
    Params(filter): Params<CustomerListFilter>,
) -> Result<Json<Page<CustomerSummary>>, ApiError> {
    let customers = list_docs::<Customer>(state.store.as_ref(), Table::Customers, "").await?;
    let matching: Vec<Customer> =
        customers.into_iter().map(|d| d.value).filter(|c| filter.matches(c)).collect();
    Ok(Json(paginate(matching, page, |c| CustomerSummary::from(&c))))
}

pub async fn get(Scope(state): Scope, Path(id): Path<String>) -> Result<Json<GetCustomerResponse>, ApiError> {
    let store = state.store.as_ref();
    let customer = load::<Customer>(store, Table::Customers, "customer", &id).await?.value;
    let now = customer_now(store, &customer).await?;
    Ok(Json(GetCustomerResponse::at(&customer, now)))
}

/// Modifies a customer document, keeping its `external_id` claimed.
async fn modify_customer<R>(
    store: &dyn Store,
    id: &str,
    mut edit: impl FnMut(&mut Customer) -> Result<(R, Vec<Op>), ApiError>,
) -> Result<R, ApiError> {
    modify(store, Table::Customers, "customer", id, |customer: &mut Customer| {
        let (result, ops) = edit(customer)?;
        Ok(Change::new(result).unique("external_id", customer.external_id.as_deref()).also(ops))
    })
    .await
}

pub async fn update(
    Scope(state): Scope,
    Path(id): Path<String>,
    Body(req): Body<UpdateCustomerRequest>,
) -> Result<StatusCode, ApiError> {
    let mut errors = ValidationErrors::new();
    validate_details(&mut errors, req.name.as_deref(), req.external_id.as_deref(), req.email.as_deref());
    errors.into_result()?;
    modify_customer(state.store.as_ref(), &id, |customer| {
        if let Some(name) = &req.name {
            customer.name = name.clone();
        }
        if let Some(ext) = &req.external_id {
            customer.external_id = Some(ext.clone());
        }
        if let Some(email) = &req.email {
            customer.email = Some(email.clone());
        }
        Ok(((), Vec::new()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create_subscription(
    Scope(state): Scope,
    Path(id): Path<String>,
    Body(req): Body<CreateSubscriptionRequest>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let store = state.store.as_ref();
    // 404 before validating the body against the catalog.
    let customer = load::<Customer>(store, Table::Customers, "customer", &id).await?.value;
    let now = customer_now(store, &customer).await?;
    let (subscription, pinned) = build_subscription(store, &FieldPath::root(), &req, now).await?;
    let (due_key, due) = schedule_op(&state, &id, now)?;
    let created = modify_customer(store, &id, |customer| {
        let mut ops = subscription_ops(customer, subscription.id.as_str(), &pinned)?;
        ops.push(due.clone());
        customer.subscriptions.push(subscription.clone());
        Ok((subscription.clone(), ops))
    })
    .await?;
    tick(&state, &id, Some(due_key)).await?;
    Ok((StatusCode::CREATED, Json(created.view(now))))
}

fn subscription_not_found(customer: &str, subscription: &str) -> ApiError {
    ApiError::NotFound(format!("customer `{customer}` has no subscription `{subscription}`"))
}

pub async fn update_subscription(
    Scope(state): Scope,
    Path((id, subscription_id)): Path<(String, String)>,
    Body(req): Body<UpdateSubscriptionRequest>,
) -> Result<StatusCode, ApiError> {
    if !matches!(req.status, SubscriptionStatus::Active | SubscriptionStatus::Inactive) {
        return Err(ApiError::invalid("status", "must be `active` or `inactive`"));
    }
    let store = state.store.as_ref();
    let customer = load::<Customer>(store, Table::Customers, "customer", &id).await?.value;
    let now = customer_now(store, &customer).await?;
    let (due_key, due) = schedule_op(&state, &id, now)?;
    modify_customer(store, &id, |customer| {
        let subscription = customer
            .subscription_mut(&subscription_id)
            .ok_or_else(|| subscription_not_found(&id, &subscription_id))?;
        subscription.settle(now);
        // Made active again: periods resume from now, missed ones are not charged.
        if subscription.status == SubscriptionStatus::Inactive && req.status == SubscriptionStatus::Active {
            subscription.anchored_at = Some(now);
        }
        subscription.status = req.status;
        Ok(((), vec![due.clone()]))
    })
    .await?;
    tick(&state, &id, Some(due_key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves a subscription to another version of one of its products.
pub async fn update_subscription_product(
    Scope(state): Scope,
    Path((id, subscription_id, product_id)): Path<(String, String, String)>,
    Body(req): Body<UpdateSubscriptionProductRequest>,
) -> Result<StatusCode, ApiError> {
    let store = state.store.as_ref();
    let customer = load::<Customer>(store, Table::Customers, "customer", &id).await?.value;
    let subscription = customer
        .subscriptions
        .iter()
        .find(|s| s.id.as_str() == subscription_id)
        .ok_or_else(|| subscription_not_found(&id, &subscription_id))?;
    if !subscription.products.iter().any(|p| p.id.as_str() == product_id) {
        return Err(ApiError::NotFound(format!(
            "subscription `{subscription_id}` does not include product `{product_id}`"
        )));
    }
    let product = load::<Product>(store, Table::Products, "product", &product_id).await?.value;
    let pinned = pin(&product, req.version, &FieldPath::root().field("version"))?;
    let now = customer_now(store, &customer).await?;
    let (due_key, due) = schedule_op(&state, &id, now)?;
    modify_customer(store, &id, |customer| {
        let subscription = customer
            .subscription_mut(&subscription_id)
            .ok_or_else(|| subscription_not_found(&id, &subscription_id))?;
        let mut moved = false;
        for p in subscription.products.iter_mut().filter(|p| p.id == product.id) {
            moved |= p.version != pinned.product.version;
            p.version = pinned.product.version;
        }
        // Another version starts a new billing cycle now (`docs/subscriptions.md`).
        if moved {
            subscription.settle(now);
            subscription.anchored_at = Some(now);
            if subscription.products.first().is_some_and(|p| p.id == product.id) {
                subscription.period = pinned.period.or(subscription.period);
            }
        }
        let mut ops = subscription_ops(customer, &subscription_id, std::slice::from_ref(&pinned))?;
        ops.push(due.clone());
        Ok(((), ops))
    })
    .await?;
    tick(&state, &id, Some(due_key)).await?;
    Ok(StatusCode::NO_CONTENT)
}
