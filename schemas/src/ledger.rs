//! The ledger's vocabulary: what travels on the two log topics, what the ledger writer stores
//! (events, transactions), and the wallet/event bodies of the HTTP API built on them.
//!
//! Log records are JSON (exact decimals, like every other document). Every record carries the
//! moment it was accepted (`accepted_at`): the writer takes its clock from its inputs, never
//! from the wall, so the same inputs always produce the same ledger (architecture invariant 5).

use crate::customer::{Metadata, SubscribedProduct, Subscription};
use crate::usage::{EventFee, UsageEvent};
use crate::{Decimal, Timestamp};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// usage.raw

/// One accepted `POST /events` request, as ingest appends it to `usage.raw` under the customer's
/// partition (key: the customer id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawUsage {
    pub customer_id: String,
    pub accepted_at: Timestamp,
    pub events: Vec<UsageEvent>,
}

// ---------------------------------------------------------------------------------------------
// ledger.input

/// One record of `ledger.input` (key: the customer id). Everything that changes a customer's
/// ledger is one of these, applied by the partition's single writer in log order.
///
/// Externally tagged (`{"usage": {...}}`): an internally tagged enum makes serde buffer every
/// record into an intermediate tree before decoding it, which cost the writer ~10% of its time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerInput {
    /// Events of one accepted request, priced by a rater.
    Usage(RatedUsage),
    Adjustment(AdjustmentCommand),
    Charge(ChargeCommand),
    /// Time passed for the customer (a due change, a subscription change, a test clock): the
    /// writer applies every time-driven change up to `accepted_at`.
    Tick(TickCommand),
}

impl LedgerInput {
    pub fn customer_id(&self) -> &str {
        match self {
            LedgerInput::Usage(u) => &u.customer_id,
            LedgerInput::Adjustment(a) => &a.customer_id,
            LedgerInput::Charge(c) => &c.customer_id,
            LedgerInput::Tick(t) => &t.customer_id,
        }
    }

    pub fn accepted_at(&self) -> Timestamp {
        match self {
            LedgerInput::Usage(u) => u.accepted_at,
            LedgerInput::Adjustment(a) => a.accepted_at,
            LedgerInput::Charge(c) => c.accepted_at,
            LedgerInput::Tick(t) => t.accepted_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatedUsage {
    pub customer_id: String,
    /// The customer's external id at rating time (shown by `GET /events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_external_id: Option<String>,
    pub accepted_at: Timestamp,
    pub events: Vec<RatedEvent>,
}

/// An event with the fees a rater computed for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatedEvent {
    pub event: UsageEvent,
    /// The product versions the customer was actively subscribed to at `occurred_at`; sent only
    /// with `needs_state` (the writer rates those again against them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<SubscribedProduct>,
    /// Fees as rated without customer state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fees: Vec<EventFee>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Rating read customer state (a graduated tier counter or a balance to choose an asset):
    /// the writer, which owns that state, rates the event again against `products`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_state: bool,
}

/// `POST /customers/{id}/wallet/adjustments`, validated, on its way to the writer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdjustmentCommand {
    pub customer_id: String,
    pub accepted_at: Timestamp,
    /// Fingerprint of the request body: a replay with another body is a 409.
    pub body_hash: String,
    pub request: CreateAdjustmentRequest,
}

/// `POST /customers/{id}/wallet/charges`, validated, on its way to the writer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChargeCommand {
    pub customer_id: String,
    pub accepted_at: Timestamp,
    pub body_hash: String,
    pub request: CreateChargeRequest,
}

/// Time moved for a customer: everything due up to `accepted_at` is applied, in time order
/// (`docs/subscriptions.md`). Sent by the partition's scheduler when a change falls due, by the
/// API after a subscription change, and by a test clock's advance. Applying one twice, or one
/// that is late, changes nothing more: every change it causes has an id of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TickCommand {
    pub customer_id: String,
    pub accepted_at: Timestamp,
    /// The schedule entry (`Table::Schedule` key) this tick answers: removed when it is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_key: Option<String>,
    /// The customer's subscriptions as stored: the writer adopts them unless it has already
    /// seen a later revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerSnapshot>,
}

/// What the writer needs of a customer document to bill its subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerSnapshot {
    /// The customer document's store revision.
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clock: Option<String>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

/// A domain event recorded with the change it reports (`Table::Outbox`, key
/// `{partition}/{ledger.input offset}/{id}`), for webhooks to deliver: a partition's events are
/// stored in log order, so one reader per partition delivers them in order per customer, and the
/// store appends them instead of updating a page per customer. Ids are stable functions of the
/// change, and the key of the input that made it: an input applied again rewrites the same keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub customer_id: String,
    /// When the change took effect (the customer's time).
    pub created: Timestamp,
    pub data: serde_json::Value,
}

impl DomainEvent {
    pub fn key(partition: u32, offset: u64, id: &str) -> String {
        format!("{partition:05}/{offset:020}/{id}")
    }
}

// ---------------------------------------------------------------------------------------------
// Grants

/// Why a grant exists; it sets the default priority and how consumption is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Top-ups and `external_topup` adjustments.
    Paid,
    /// `gift` adjustments and promotion entitlements.
    Promotion,
    /// Bundled entitlements.
    Bundled,
    /// Adjustments with reason `other`.
    Other,
}

impl Purpose {
    /// Lower is consumed first: promotion 10, bundled 20, paid 30, other 30.
    pub fn default_priority(self) -> i32 {
        match self {
            Purpose::Promotion => 10,
            Purpose::Bundled => 20,
            Purpose::Paid | Purpose::Other => 30,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Paid => "paid",
            Purpose::Promotion => "promotion",
            Purpose::Bundled => "bundled",
            Purpose::Other => "other",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adjustments and charges (requests as the API receives them)

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentReason {
    Gift,
    ExternalTopup,
    ExternalRefund,
    Other,
}

impl AdjustmentReason {
    /// The purpose of the grant a positive adjustment creates.
    pub fn purpose(self) -> Purpose {
        match self {
            AdjustmentReason::Gift => Purpose::Promotion,
            AdjustmentReason::ExternalTopup | AdjustmentReason::ExternalRefund => Purpose::Paid,
            AdjustmentReason::Other => Purpose::Other,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateAdjustmentRequest {
    pub transaction_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    pub asset: String,
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub reason: AdjustmentReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateChargeRequest {
    pub transaction_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    pub asset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_units: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_volume: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_size: Option<Decimal>,
    pub amount: Decimal,
}

// ---------------------------------------------------------------------------------------------
// Stored by the writer

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    /// Adjustments (either sign).
    Adjustment,
    /// Usage fees and ad-hoc charges.
    Fee,
    /// A grant's remainder written off at `expires_at`.
    Expiry,
}

/// Where one slice of a transaction went (`grant` is absent for debt).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostingLine {
    /// `from_grant`, `to_debt`, `repaid_debt`, `expired` or `credit` (a new grant's amount).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    pub amount: Decimal,
}

/// A posted transaction (`Table::Transactions`, key `{customer_id}/{transaction_id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TransactionType,
    pub customer_id: String,
    pub account_id: String,
    pub asset: String,
    /// Positive for credits, negative for debits (fees, charges, expiries, negative adjustments).
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
    pub executed_at: Timestamp,
    pub lines: Vec<PostingLine>,
    /// The event a fee belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Fingerprint of the request that created an adjustment or charge (idempotency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
    /// Revenue recognised by this transaction, in USD (`semantics.md` §7).
    #[serde(default)]
    pub revenue: Decimal,
}

impl Transaction {
    /// The store key of a customer's transaction (`Table::Transactions`).
    pub fn key(customer_id: &str, transaction_id: &str) -> String {
        format!("{customer_id}/{transaction_id}")
    }

    /// `GET /customers/{id}/wallet/transactions/{id}`; the posting lines stay internal.
    pub fn view(&self) -> GetTransactionResponse {
        GetTransactionResponse {
            id: self.id.clone(),
            kind: self.kind,
            account_id: self.account_id.clone(),
            asset: self.asset.clone(),
            amount: self.amount,
            description: self.description.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at,
            executed_at: Some(self.executed_at),
        }
    }
}

/// A posted usage event (`Table::Events`, key `{event_id}/{customer_id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_external_id: Option<String>,
    pub event: UsageEvent,
    /// When ingest accepted it.
    pub created_at: Timestamp,
    pub fees: Vec<EventFee>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Revenue the event's fees recognised, in USD.
    #[serde(default)]
    pub revenue: Decimal,
}

impl StoredEvent {
    pub fn key(event_id: &str, customer_id: &str) -> String {
        format!("{event_id}/{customer_id}")
    }
}

// ---------------------------------------------------------------------------------------------
// Wallet and event responses

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetTransactionResponse {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TransactionType,
    pub account_id: String,
    pub asset: String,
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_at: Option<Timestamp>,
}

/// `GET /customers/{id}/wallet/{accountId}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetAccountDetailsResponse {
    pub id: String,
    pub name: String,
    pub asset: String,
    pub available: Decimal,
    pub pending_in: Decimal,
    pub pending_out: Decimal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreditGrantItem {
    pub id: String,
    pub available: Decimal,
    pub effective_at: Timestamp,
    pub expires_at: Timestamp,
    pub purpose: Purpose,
    pub created_at: Timestamp,
}

/// `GET /customers/{id}/wallet/{accountId}/grants` filters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GrantFilter {
    #[serde(default)]
    pub purpose: Option<Purpose>,
    #[serde(default)]
    pub exclude_expired: Option<bool>,
    #[serde(default)]
    pub effective_from: Option<Timestamp>,
    #[serde(default)]
    pub effective_to: Option<Timestamp>,
    #[serde(default)]
    pub expired_from: Option<Timestamp>,
    #[serde(default)]
    pub expired_to: Option<Timestamp>,
}

/// Revenue, costs and margin over a period (`semantics.md` §7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfitabilityStats {
    pub gross_revenue: Decimal,
    pub total_costs: Decimal,
    pub net_revenue: Decimal,
    pub margin: Decimal,
    pub currency: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListEventsItem {
    pub id: String,
    pub customer_id: String,
    pub external_id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub occurred_at: Timestamp,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_fees: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_currency: Option<String>,
    pub has_fees: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ProfitabilityStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetEventResponse {
    #[serde(flatten)]
    pub event: UsageEvent,
    pub customer_id: String,
    pub created_at: Timestamp,
    pub fees: Vec<EventFee>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ProfitabilityStats>,
    /// drawdown's extension: why a price of the event charged nothing (no matching dimension,
    /// an amount out of range, a fee beyond the ledger bound). Absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// POST /events

/// `POST /events`: one customer (`customer_id` or `customer_external_id`), 1 to 1,000 events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_external_id: Option<String>,
    pub events: Vec<UsageEvent>,
}

// ---------------------------------------------------------------------------------------------
// Event listing and profitability reports

/// `GET /events` filters. `period_from`/`period_to` are inclusive UTC dates of `occurred_at`;
/// `event_types` is a comma-separated list.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub customer_external_id: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub period_from: Option<NaiveDate>,
    #[serde(default)]
    pub period_to: Option<NaiveDate>,
    #[serde(default)]
    pub event_types: Option<String>,
    #[serde(default)]
    pub has_fees: Option<bool>,
}

/// `period_from`/`period_to` query parameters of the stats reports (inclusive UTC dates).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct PeriodFilter {
    #[serde(default)]
    pub period_from: Option<NaiveDate>,
    #[serde(default)]
    pub period_to: Option<NaiveDate>,
}

/// `GET /vendors/{id}/stats` filter besides the period.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VendorStatsFilter {
    #[serde(default)]
    pub category: Option<String>,
}

/// `GET /customers/{id}/stats`: the same figures as [`ProfitabilityStats`].
pub type CustomerProfitability = ProfitabilityStats;

/// One customer of `GET /customers/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustomerStatsItem {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub name: String,
    pub stats: CustomerProfitability,
}

/// `GET /customers/stats`: a page of customers and the summary over all of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustomerStatsPage {
    pub summary: CustomerProfitability,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub items: Vec<CustomerStatsItem>,
    pub total_count: usize,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorCategoryStats {
    pub category: String,
    pub cost: Decimal,
}

/// `GET /vendors/{id}/stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VendorStats {
    pub total_costs: Decimal,
    pub categories: Vec<VendorCategoryStats>,
}
