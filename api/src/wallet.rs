//! Wallet reads: the accounts with their balances, one account's details and grants, and posted
//! transactions. Accounts are provisioned at zero when a subscription needs them; the ledger
//! writer owns everything posted to them (`Table::Ledger`), so a wallet is the union of both.

use crate::docs::{load, paginate};
use crate::error::ApiError;
use crate::extract::Params;
use crate::extract::Path;
use crate::grants;
use crate::stats::OutOfRange;
use crate::tenancy::Scope;
use axum::Json;
use ledger_writer::LedgerState;
use schemas::customer::{Customer, WalletAccount};
use schemas::ledger::{
    CreditGrantItem, GetAccountDetailsResponse, GetTransactionResponse, GrantFilter, Transaction,
};
use schemas::wire::{GetWalletResponse, Page, PageRequest};
use schemas::{Decimal, Timestamp};
use std::collections::BTreeMap;
use store::typed::{get_doc, list_docs};
use store::{Store, Table};

/// A customer's wallet as stored: provisioned accounts and the ledger (absent before the first
/// posting).
struct Wallet {
    provisioned: Vec<WalletAccount>,
    ledger: Option<LedgerState>,
    /// The customer's time (its test clock's, if attached): balances are read as of then.
    now: Timestamp,
}

impl Wallet {
    fn accounts(&self, now: Timestamp) -> Result<Vec<WalletAccount>, OutOfRange> {
        wallet_accounts(&self.provisioned, self.ledger.as_ref(), now)
    }

    /// One account, or a 404 naming it.
    fn account(
        &self,
        customer_id: &str,
        account_id: &str,
        now: Timestamp,
    ) -> Result<WalletAccount, ApiError> {
        self.accounts(now)?.into_iter().find(|a| a.id == account_id).ok_or_else(|| {
            ApiError::NotFound(format!("customer `{customer_id}` has no wallet account `{account_id}`"))
        })
    }
}

/// Loads a customer's wallet; 404 for an unknown customer.
async fn load_wallet(store: &dyn Store, customer_id: &str) -> Result<Wallet, ApiError> {
    let customer = load::<Customer>(store, Table::Customers, "customer", customer_id).await?.value;
    let now = crate::clocks::customer_now(store, &customer).await?;
    let provisioned = list_docs::<WalletAccount>(store, Table::WalletAccounts, &format!("{customer_id}/"))
        .await?
        .into_iter()
        .map(|d| d.value)
        .collect();
    let ledger = get_doc::<LedgerState>(store, Table::Ledger, customer_id).await?.map(|d| d.value);
    Ok(Wallet { provisioned, ledger, now })
}

/// The provisioned accounts united with those the ledger knows, sorted by id, each with its
/// `available` balance at `now` (zero while the ledger has nothing for it). Checked: an account
/// beyond the ledger bound (which the writer never lets happen) is an error, not a panic.
pub fn wallet_accounts(
    provisioned: &[WalletAccount],
    ledger: Option<&LedgerState>,
    now: Timestamp,
) -> Result<Vec<WalletAccount>, OutOfRange> {
    let mut accounts: BTreeMap<String, WalletAccount> =
        provisioned.iter().map(|a| (a.id.clone(), a.clone())).collect();
    for id in ledger.iter().flat_map(|l| l.accounts.keys()) {
        accounts.entry(id.clone()).or_insert_with(|| WalletAccount::from_id(id));
    }
    accounts
        .into_values()
        .map(|mut a| {
            a.available =
                ledger.map_or(Some(Decimal::ZERO), |l| l.available(&a.id, now)).ok_or(OutOfRange)?;
            Ok(a)
        })
        .collect()
}

pub async fn get_wallet(
    Scope(state): Scope,
    Path(id): Path<String>,
) -> Result<Json<GetWalletResponse>, ApiError> {
    let wallet = load_wallet(state.store.as_ref(), &id).await?;
    Ok(Json(GetWalletResponse { accounts: wallet.accounts(wallet.now)? }))
}

/// One account with its pending amounts (no top-ups or holds exist yet, so both are 0).
pub async fn get_account(
    Scope(state): Scope,
    Path((id, account_id)): Path<(String, String)>,
) -> Result<Json<GetAccountDetailsResponse>, ApiError> {
    let wallet = load_wallet(state.store.as_ref(), &id).await?;
    let account = wallet.account(&id, &account_id, wallet.now)?;
    Ok(Json(GetAccountDetailsResponse {
        id: account.id,
        name: account.name,
        asset: account.asset,
        available: account.available,
        pending_in: Decimal::ZERO,
        pending_out: Decimal::ZERO,
    }))
}

pub async fn get_credit_grants(
    Scope(state): Scope,
    Path((id, account_id)): Path<(String, String)>,
    Params(page): Params<PageRequest>,
    Params(filter): Params<GrantFilter>,
) -> Result<Json<Page<CreditGrantItem>>, ApiError> {
    let wallet = load_wallet(state.store.as_ref(), &id).await?;
    let now = wallet.now;
    wallet.account(&id, &account_id, now)?;
    let account = wallet.ledger.as_ref().and_then(|l| l.accounts.get(&account_id));
    Ok(Json(paginate(grants::list(account, &filter, now), page, |g| g)))
}

pub async fn get_transaction(
    Scope(state): Scope,
    Path((id, transaction_id)): Path<(String, String)>,
) -> Result<Json<GetTransactionResponse>, ApiError> {
    // The customer first: its transactions are reached only through it (and its tenant).
    load::<Customer>(state.store.as_ref(), Table::Customers, "customer", &id).await?;
    let key = Transaction::key(&id, &transaction_id);
    let transaction =
        get_doc::<Transaction>(state.store.as_ref(), Table::Transactions, &key).await?.ok_or_else(|| {
            ApiError::NotFound(format!("customer `{id}` has no transaction `{transaction_id}`"))
        })?;
    Ok(Json(transaction.value.view()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_writer::posting::{Account, NewGrant};
    use schemas::ledger::Purpose;

    fn t(day: u32) -> Timestamp {
        format!("2026-01-{day:02}T00:00:00Z").parse().unwrap()
    }

    #[test]
    fn a_wallet_is_the_provisioned_accounts_united_with_the_ledgers_sorted_by_id() {
        let provisioned = [WalletAccount::new("default", "USD"), WalletAccount::new("default", "CREDIT")];
        let mut ledger = LedgerState::new("cust_1");
        let mut eur = Account::new();
        let grant = NewGrant {
            id: "g".into(),
            purpose: Purpose::Paid,
            amount: Decimal::from(7),
            effective_at: t(1),
            expires_at: t(20),
            priority: None,
            revenue_basis: Decimal::ONE,
            source: "g".into(),
        };
        eur.credit(grant, t(1)).unwrap();
        ledger.accounts.insert("bonus:EUR".into(), eur);
        let mut usd = Account::new();
        usd.debit(Decimal::from(2), t(1)).unwrap();
        ledger.accounts.insert("default:USD".into(), usd);

        let accounts = wallet_accounts(&provisioned, Some(&ledger), t(2)).unwrap();
        let shown: Vec<_> = accounts
            .iter()
            .map(|a| (a.id.as_str(), a.name.as_str(), a.asset.as_str(), a.available))
            .collect();
        assert_eq!(
            shown,
            [
                ("bonus:EUR", "bonus", "EUR", Decimal::from(7)),
                ("default:CREDIT", "default", "CREDIT", Decimal::ZERO),
                ("default:USD", "default", "USD", Decimal::from(-2)),
            ]
        );
        // Balances are taken at `now`: the grant has expired by day 20.
        assert_eq!(wallet_accounts(&provisioned, Some(&ledger), t(20)).unwrap()[0].available, Decimal::ZERO);
        assert_eq!(wallet_accounts(&provisioned, None, t(2)).unwrap().len(), 2);
    }
}
