//! Wallet reads. Accounts are provisioned at zero when a subscription needs them; posting to
//! them belongs to the ledger writer.

use crate::docs::load;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use schemas::customer::{Customer, WalletAccount};
use schemas::wire::GetWalletResponse;
use store::typed::list_docs;
use store::Table;

pub async fn get_wallet(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<GetWalletResponse>, ApiError> {
    let store = state.store.as_ref();
    load::<Customer>(store, Table::Customers, "customer", &id).await?;
    let accounts = list_docs::<WalletAccount>(store, Table::WalletAccounts, &format!("{id}/")).await?;
    Ok(Json(GetWalletResponse { accounts: accounts.into_iter().map(|d| d.value).collect() }))
}
