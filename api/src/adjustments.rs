//! Adjustments and charges (`semantics.md` §4): validated here, posted by the customer's ledger
//! writer, answered once posted (read-your-writes), idempotent on `transaction_id`.
//!
//! Idempotency: the posted transaction (`Table::Transactions`, `{customer}/{transaction_id}`)
//! carries the fingerprint of the request that created it (`body_hash`, hex SHA-256 of the parsed
//! request re-serialized, so whitespace and key order do not matter). The same id with the same
//! body answers the original `201` (same `created_at`); with another body it is a 409. Two
//! concurrent requests with one id are both appended; the writer posts the first and skips the
//! second, whose handler then finds the winner's transaction and answers accordingly.

use crate::auth::sha256_hex;
use crate::docs::load;
use crate::error::ApiError;
use crate::extract::Body;
use crate::extract::Path;
use crate::tenancy::Scope;
use crate::AppState;
use axum::http::StatusCode;
use axum::Json;
use ledger_writer::posting::PostingError;
use ledger_writer::LedgerState;
use schemas::currency::is_iso_currency;
use schemas::customer::{Customer, WalletAccount};
use schemas::ledger::{
    AdjustmentCommand, AdjustmentReason, ChargeCommand, CreateAdjustmentRequest, CreateChargeRequest,
    LedgerInput, Transaction,
};
use schemas::problem::ValidationErrors;
use schemas::wire::CreatedResponse;
use schemas::{validate, Decimal, Timestamp};
use serde::Serialize;
use store::typed::get_doc;
use store::{Store, Table};

/// Prefixes of the transaction ids the ledger writer derives itself (fees, expiries, and the
/// grants and fees of subscriptions, `{subscription id}.…`): a client's id may not take one, so a
/// client transaction can never collide with one the writer posts.
const RESERVED_PREFIXES: [&str; 3] = ["fee_", "exp_", "sub_"];

/// Rules shared by adjustments and charges: a `transaction_id`, a known asset, a valid account
/// name and metadata.
fn validate_common(
    errors: &mut ValidationErrors,
    transaction_id: &str,
    asset_known: bool,
    account_name: Option<&str>,
    metadata: Option<&schemas::customer::Metadata>,
) {
    validate::text(errors, "transaction_id", transaction_id);
    errors.check(
        !RESERVED_PREFIXES.iter().any(|p| transaction_id.starts_with(p)),
        "transaction_id",
        "`fee_`, `exp_` and `sub_` are reserved for the ids of fees, expiries and subscriptions",
    );
    errors.check(asset_known, "asset", "unknown asset: use an ISO 4217 currency or create the asset first");
    validate::optional_text(errors, "account_name", account_name);
    validate::metadata(errors, "metadata", metadata);
}

/// An adjustment: a non-zero amount; an `external_refund` takes credit back, so it must be
/// negative; `expires_at` must come after `effective_at` (which defaults to `now`).
pub fn validate_adjustment(
    req: &CreateAdjustmentRequest,
    asset_known: bool,
    now: Timestamp,
) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    validate_common(
        &mut errors,
        &req.transaction_id,
        asset_known,
        req.account_name.as_deref(),
        req.metadata.as_ref(),
    );
    if req.amount.is_zero() {
        errors.add("amount", "must not be 0");
    } else if req.reason == AdjustmentReason::ExternalRefund && req.amount > Decimal::ZERO {
        errors.add("amount", "an external_refund takes credit back: the amount must be negative");
    }
    if let Some(expires_at) = req.expires_at {
        let effective_at = req.effective_at.unwrap_or(now);
        errors.check(expires_at > effective_at, "expires_at", "must be after effective_at");
    }
    errors
}

/// A charge: an ad-hoc debit of exactly `amount`, which must be positive.
pub fn validate_charge(req: &CreateChargeRequest, asset_known: bool) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    validate_common(
        &mut errors,
        &req.transaction_id,
        asset_known,
        req.account_name.as_deref(),
        req.metadata.as_ref(),
    );
    errors.check(req.amount > Decimal::ZERO, "amount", "must be greater than 0");
    errors
}

/// ISO 4217 currencies exist without being created; custom assets must be in the store.
async fn asset_known(store: &dyn Store, code: &str) -> Result<bool, ApiError> {
    Ok(is_iso_currency(code) || store.get(Table::Assets, code).await?.is_some())
}

/// The request's fingerprint: hex SHA-256 of its canonical JSON.
pub fn body_hash<T: Serialize>(request: &T) -> Result<String, ApiError> {
    let bytes =
        serde_json::to_vec(request).map_err(|e| ApiError::Internal(format!("encode request: {e}")))?;
    Ok(sha256_hex(&bytes))
}

/// The answer for a request whose `transaction_id` is already posted: the original response
/// when the body is the same, else a 409.
pub fn replay(posted: &Transaction, body_hash: &str) -> Result<CreatedResponse, ApiError> {
    if posted.body_hash.as_deref() == Some(body_hash) {
        Ok(CreatedResponse { id: posted.id.clone(), created_at: posted.created_at })
    } else {
        Err(ApiError::Conflict(format!(
            "transaction `{}` already exists with a different request body",
            posted.id
        )))
    }
}

/// What a command does to one wallet account, for the ledger-bound check.
struct Posting<'a> {
    account_id: String,
    /// A credit (a new grant) when true, else a debit.
    credit: bool,
    amount: Decimal,
    now: Timestamp,
    customer_id: &'a str,
}

impl Posting<'_> {
    /// A 422 naming `amount` when the posting would take the account beyond the ledger bound
    /// (`semantics.md` §1), which the ledger writer would refuse.
    async fn check_bound(&self, store: &dyn Store) -> Result<(), ApiError> {
        let ledger = get_doc::<LedgerState>(store, Table::Ledger, self.customer_id).await?;
        let account =
            ledger.and_then(|d| d.value.accounts.get(&self.account_id).cloned()).unwrap_or_default();
        let fits = if self.credit {
            account.credit_fits(self.amount)
        } else {
            account.debit_fits(self.amount, self.now)
        };
        if fits {
            Ok(())
        } else {
            Err(ApiError::invalid("amount", PostingError::Bound.to_string()))
        }
    }
}

/// Replays an existing transaction, or submits `input` to the ledger writer and answers from the
/// transaction it posted.
async fn post_once(
    state: &AppState,
    posting: Posting<'_>,
    transaction_id: &str,
    body_hash: &str,
    input: LedgerInput,
) -> Result<(StatusCode, Json<CreatedResponse>), ApiError> {
    let store = state.store.as_ref();
    let customer_id = posting.customer_id;
    let key = Transaction::key(customer_id, transaction_id);
    if let Some(posted) = get_doc::<Transaction>(store, Table::Transactions, &key).await? {
        return replay(&posted.value, body_hash).map(|r| (StatusCode::CREATED, Json(r)));
    }
    posting.check_bound(store).await?;
    state.ledger.submit(&input).await?;
    match get_doc::<Transaction>(store, Table::Transactions, &key).await? {
        Some(posted) => replay(&posted.value, body_hash).map(|r| (StatusCode::CREATED, Json(r))),
        None => {
            // Refused: a concurrent posting took the account to the bound since the check.
            posting.check_bound(store).await?;
            Err(ApiError::Internal(format!(
                "the ledger could not post transaction `{transaction_id}` of customer `{customer_id}`"
            )))
        }
    }
}

pub async fn create_adjustment(
    Scope(state): Scope,
    Path(id): Path<String>,
    Body(request): Body<CreateAdjustmentRequest>,
) -> Result<(StatusCode, Json<CreatedResponse>), ApiError> {
    let store = state.store.as_ref();
    let customer = load::<Customer>(store, Table::Customers, "customer", &id).await?.value;
    let now = crate::clocks::customer_now(store, &customer).await?;
    validate_adjustment(&request, asset_known(store, &request.asset).await?, now).into_result()?;
    let body_hash = body_hash(&request)?;
    let transaction_id = request.transaction_id.clone();
    let posting = Posting {
        account_id: WalletAccount::account_id(
            request.account_name.as_deref().unwrap_or(WalletAccount::DEFAULT_NAME),
            &request.asset,
        ),
        credit: request.amount > Decimal::ZERO,
        amount: request.amount.abs(),
        now,
        customer_id: &id,
    };
    let input = LedgerInput::Adjustment(AdjustmentCommand {
        customer_id: id.clone(),
        accepted_at: now,
        body_hash: body_hash.clone(),
        request,
    });
    post_once(&state, posting, &transaction_id, &body_hash, input).await
}

pub async fn create_charge(
    Scope(state): Scope,
    Path(id): Path<String>,
    Body(request): Body<CreateChargeRequest>,
) -> Result<(StatusCode, Json<CreatedResponse>), ApiError> {
    let store = state.store.as_ref();
    let customer = load::<Customer>(store, Table::Customers, "customer", &id).await?.value;
    let now = crate::clocks::customer_now(store, &customer).await?;
    validate_charge(&request, asset_known(store, &request.asset).await?).into_result()?;
    let body_hash = body_hash(&request)?;
    let transaction_id = request.transaction_id.clone();
    let posting = Posting {
        account_id: WalletAccount::account_id(
            request.account_name.as_deref().unwrap_or(WalletAccount::DEFAULT_NAME),
            &request.asset,
        ),
        credit: false,
        amount: request.amount,
        now,
        customer_id: &id,
    };
    let input = LedgerInput::Charge(ChargeCommand {
        customer_id: id.clone(),
        accepted_at: now,
        body_hash: body_hash.clone(),
        request,
    });
    post_once(&state, posting, &transaction_id, &body_hash, input).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;
    use schemas::ledger::TransactionType;
    use std::str::FromStr;

    fn t(day: u32) -> Timestamp {
        format!("2026-01-{day:02}T00:00:00Z").parse().unwrap()
    }

    fn adjustment(body: &str) -> CreateAdjustmentRequest {
        serde_json::from_str(body).unwrap()
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.fields().collect()
    }

    #[test]
    fn an_adjustment_names_every_invalid_field() {
        let req = adjustment(r#"{"transaction_id":" ","asset":"NOPE","amount":0,"reason":"gift"}"#);
        assert_eq!(fields(&validate_adjustment(&req, false, t(1))), ["amount", "asset", "transaction_id"]);
        let ok = adjustment(r#"{"transaction_id":"t1","asset":"USD","amount":-3.5,"reason":"gift"}"#);
        assert!(validate_adjustment(&ok, true, t(1)).is_empty());
    }

    #[test]
    fn a_transaction_id_may_not_take_a_prefix_reserved_for_fees_and_expiries() {
        for id in ["fee_0123", "exp_grant_x"] {
            let req = adjustment(&format!(
                r#"{{"transaction_id":"{id}","asset":"USD","amount":1,"reason":"gift"}}"#
            ));
            assert_eq!(fields(&validate_adjustment(&req, true, t(1))), ["transaction_id"], "{id}");
        }
    }

    #[test]
    fn a_positive_external_refund_is_rejected() {
        let positive =
            adjustment(r#"{"transaction_id":"r","asset":"USD","amount":5,"reason":"external_refund"}"#);
        assert_eq!(fields(&validate_adjustment(&positive, true, t(1))), ["amount"]);
        let negative =
            adjustment(r#"{"transaction_id":"r","asset":"USD","amount":-5,"reason":"external_refund"}"#);
        assert!(validate_adjustment(&negative, true, t(1)).is_empty());
    }

    #[test]
    fn an_adjustment_must_expire_after_it_becomes_effective() {
        let mut req = adjustment(r#"{"transaction_id":"e","asset":"USD","amount":5,"reason":"gift"}"#);
        req.expires_at = Some(t(5));
        assert!(validate_adjustment(&req, true, t(4)).is_empty());
        assert_eq!(
            fields(&validate_adjustment(&req, true, t(5))),
            ["expires_at"],
            "effective_at defaults to now"
        );
        req.effective_at = Some(t(6));
        assert_eq!(fields(&validate_adjustment(&req, true, t(1))), ["expires_at"]);
    }

    #[test]
    fn a_charge_must_be_positive() {
        let charge = |amount: &str| -> CreateChargeRequest {
            serde_json::from_str(&format!(r#"{{"transaction_id":"c","asset":"USD","amount":{amount}}}"#))
                .unwrap()
        };
        assert!(validate_charge(&charge("7.25"), true).is_empty());
        assert_eq!(fields(&validate_charge(&charge("0"), true)), ["amount"]);
        assert_eq!(fields(&validate_charge(&charge("-1"), true)), ["amount"]);
        assert_eq!(fields(&validate_charge(&charge("1"), false)), ["asset"]);
    }

    #[test]
    fn the_body_hash_ignores_formatting_but_not_content() {
        let a: CreateAdjustmentRequest =
            parse_json(br#"{"transaction_id":"t","asset":"USD","amount":25.5,"reason":"external_topup"}"#)
                .unwrap();
        let b: CreateAdjustmentRequest = parse_json(
            b"{ \"reason\": \"external_topup\",\n  \"amount\": 25.5, \"asset\": \"USD\", \"transaction_id\": \"t\" }",
        )
        .unwrap();
        let c: CreateAdjustmentRequest =
            parse_json(br#"{"transaction_id":"t","asset":"USD","amount":30,"reason":"external_topup"}"#)
                .unwrap();
        assert_eq!(body_hash(&a).unwrap(), body_hash(&b).unwrap());
        assert_ne!(body_hash(&a).unwrap(), body_hash(&c).unwrap());
        assert_eq!(body_hash(&a).unwrap().len(), 64);
    }

    #[test]
    fn a_replayed_transaction_id_answers_the_original_response_or_conflicts() {
        let posted = Transaction {
            id: "refill-1".into(),
            kind: TransactionType::Adjustment,
            customer_id: "cust_1".into(),
            account_id: "default:USD".into(),
            asset: "USD".into(),
            amount: Decimal::from_str("25.5").unwrap(),
            description: None,
            metadata: None,
            created_at: t(3),
            executed_at: t(3),
            lines: Vec::new(),
            event_id: None,
            body_hash: Some("abc".into()),
            revenue: Decimal::ZERO,
        };
        let same = replay(&posted, "abc").unwrap();
        assert_eq!((same.id.as_str(), same.created_at), ("refill-1", t(3)));
        assert!(matches!(replay(&posted, "other"), Err(ApiError::Conflict(_))));
        let fee = Transaction { body_hash: None, ..posted };
        assert!(matches!(replay(&fee, "abc"), Err(ApiError::Conflict(_))), "a fee's id is not reusable");
    }
}
