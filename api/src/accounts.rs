//! Connected accounts (`/accounts`) and the caller's own context (`/accounts/self`).

use crate::auth::Environment;
use crate::docs::{insert, list_page, load};
use crate::error::ApiError;
use crate::extract::Path;
use crate::extract::{Body, Params};
use crate::tenancy::Scope;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use schemas::customer::ConnectedAccount;
use schemas::ids::ConnectedAccountId;
use schemas::problem::ValidationErrors;
use schemas::validate;
use schemas::wire::{AccountContext, CreateAccountRequest, ExternalIdFilter, IdResponse, Page, PageRequest};
use store::typed::get_doc;
use store::{Expect, Op, Store, Table};

const PLATFORM_ACCOUNT_KEY: &str = "platform_account_id";

/// The id of the platform account this server bills for, created on first start.
pub async fn platform_account_id(store: &dyn Store) -> Result<String, ApiError> {
    if let Some(doc) = get_doc::<String>(store, Table::Meta, PLATFORM_ACCOUNT_KEY).await? {
        return Ok(doc.value);
    }
    let id = ConnectedAccountId::generate().to_string();
    let op = Op::put_doc(Table::Meta, PLATFORM_ACCOUNT_KEY, &id)?.expect(Expect::Absent);
    match store.write(vec![op]).await {
        Ok(()) => Ok(id),
        // Another node created it first: use theirs.
        Err(store::StoreError::Conflict { .. }) => {
            Ok(crate::docs::load::<String>(store, Table::Meta, "setting", PLATFORM_ACCOUNT_KEY).await?.value)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn context(Scope(state): Scope, Extension(env): Extension<Environment>) -> Json<AccountContext> {
    Json(AccountContext {
        // A request for a connected account acts as that account.
        account_id: state.tenant.0.as_deref().unwrap_or(&state.account_id).to_string(),
        environment: env.as_str().to_string(),
        org_id: None,
        name: None,
    })
}

pub async fn create(
    Scope(state): Scope,
    Body(req): Body<CreateAccountRequest>,
) -> Result<(StatusCode, Json<IdResponse>), ApiError> {
    let mut errors = ValidationErrors::new();
    validate::text(&mut errors, "name", &req.name);
    validate::optional_text(&mut errors, "external_id", req.external_id.as_deref());
    validate::metadata(&mut errors, "metadata", req.metadata.as_ref());
    errors.into_result()?;
    let account = ConnectedAccount {
        id: ConnectedAccountId::generate(),
        external_id: req.external_id,
        name: req.name,
        created_at: Utc::now(),
        metadata: req.metadata,
    };
    insert(
        state.store.as_ref(),
        Table::ConnectedAccounts,
        account.id.as_str(),
        &account,
        account.external_id.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(IdResponse { id: account.id.to_string() })))
}

pub async fn list(
    Scope(state): Scope,
    Params(page): Params<PageRequest>,
    Params(filter): Params<ExternalIdFilter>,
) -> Result<Json<Page<ConnectedAccount>>, ApiError> {
    let page = list_page(state.store.as_ref(), Table::ConnectedAccounts, page, |a: &ConnectedAccount| {
        filter.external_id.is_none() || a.external_id == filter.external_id
    })
    .await?;
    Ok(Json(page))
}

pub async fn get(Scope(state): Scope, Path(id): Path<String>) -> Result<Json<ConnectedAccount>, ApiError> {
    Ok(Json(load(state.store.as_ref(), Table::ConnectedAccounts, "account", &id).await?.value))
}
