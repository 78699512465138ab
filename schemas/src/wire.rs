//! Request and response bodies of the HTTP API that are not stored documents as they are.
//! Field names follow `shared/docs/api.md` exactly.

use crate::catalog::{
    Asset, AssetExchangeRate, Entitlement, Price, Product, ProductVersion, VersionSelector, VersionStatus,
};
use crate::customer::{
    Customer, ExternalAccount, Metadata, ProductReference, Subscription, SubscriptionStatus, WalletAccount,
};
use crate::{Decimal, Timestamp};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Pagination

/// `offset`/`limit` query parameters (limit defaults to 20, at most 100).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct PageRequest {
    #[serde(default)]
    pub offset: usize,
    #[serde(default = "PageRequest::default_limit")]
    pub limit: usize,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: usize = 20;
    pub const MAX_LIMIT: usize = 100;

    fn default_limit() -> usize {
        Self::DEFAULT_LIMIT
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { offset: 0, limit: Self::DEFAULT_LIMIT }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_count: usize,
    pub limit: usize,
    pub offset: usize,
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountContext {
    pub account_id: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CreateAccountRequest {
    pub name: String,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdResponse {
    pub id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreatedResponse {
    pub id: String,
    pub created_at: Timestamp,
}

/// `?external_id=` filter shared by vendors and connected accounts.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ExternalIdFilter {
    #[serde(default)]
    pub external_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Vendors

#[derive(Clone, Debug, Deserialize)]
pub struct CreateVendorRequest {
    pub name: String,
    #[serde(default)]
    pub external_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Assets

#[derive(Clone, Debug, Deserialize)]
pub struct CreateAssetRequest {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub precision: Option<u32>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub symbol: Option<String>,
    #[serde(default)]
    pub rates: Option<Vec<StartingExchangeRate>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct StartingExchangeRate {
    pub source: String,
    #[serde(default)]
    pub rate: Option<Decimal>,
    #[serde(default)]
    pub inverse_rate: Option<Decimal>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateAssetResponse {
    pub code: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListAssetsItem {
    pub code: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GetAssetResponse {
    pub code: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub rates: Vec<AssetRatesView>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, Serialize)]
pub struct AssetRatesView {
    pub source: String,
    pub schedule: Vec<AssetExchangeRateView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AssetExchangeRateView {
    pub valid_from: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<Timestamp>,
    pub rate: Decimal,
    pub inverse_rate: Decimal,
}

impl From<&AssetExchangeRate> for AssetExchangeRateView {
    fn from(r: &AssetExchangeRate) -> Self {
        Self { valid_from: r.valid_from, valid_to: r.valid_to, rate: r.rate, inverse_rate: r.inverse_rate }
    }
}

impl From<&Asset> for GetAssetResponse {
    fn from(a: &Asset) -> Self {
        Self {
            code: a.code.clone(),
            name: a.name.clone(),
            precision: a.precision,
            label: a.label.clone(),
            symbol: a.symbol.clone(),
            rates: a
                .rates
                .iter()
                .map(|r| AssetRatesView {
                    source: r.source.clone(),
                    schedule: r.schedule.iter().map(Into::into).collect(),
                })
                .collect(),
            created_at: a.created_at,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct AddAssetRateRequest {
    pub source: String,
    #[serde(default)]
    pub valid_from: Option<Timestamp>,
    #[serde(default)]
    pub valid_to: Option<Timestamp>,
    pub rate: Decimal,
}

#[derive(Clone, Debug, Deserialize)]
pub struct QuoteAssetRequest {
    pub source: String,
    pub amount: Decimal,
    #[serde(default)]
    pub exchange_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuoteAssetResponse {
    pub source: String,
    pub source_amount: Decimal,
    pub destination: String,
    pub destination_amount: Decimal,
    pub rate: Decimal,
    pub inverse_rate: Decimal,
}

// ---------------------------------------------------------------------------------------------
// Products

#[derive(Clone, Debug, Deserialize)]
pub struct CreateProductRequest {
    pub name: String,
    pub code: String,
    pub prices: Vec<Price>,
    #[serde(default)]
    pub entitlements: Option<Vec<Entitlement>>,
    #[serde(default)]
    pub publish: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CreateProductVersionRequest {
    pub prices: Vec<Price>,
    #[serde(default)]
    pub entitlements: Option<Vec<Entitlement>>,
    #[serde(default)]
    pub publish: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct UpdateProductVersionRequest {
    #[serde(default)]
    pub publish: Option<bool>,
    #[serde(default)]
    pub make_default: Option<bool>,
}

/// Body of `CreateProductResponse` and `CreateProductVersionResponse`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductVersionCreated {
    pub id: String,
    pub code: String,
    pub version: u32,
    pub status: VersionStatus,
    pub is_default: bool,
}

impl ProductVersionCreated {
    pub fn new(product: &Product, version: &ProductVersion) -> Self {
        Self {
            id: product.id.to_string(),
            code: product.code.clone(),
            version: version.version,
            status: version.status,
            is_default: product.default_version == Some(version.version),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProductListFilter {
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductSummary {
    pub id: String,
    pub code: String,
    pub name: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GetProductResponse {
    pub id: String,
    pub code: String,
    pub name: String,
    /// `null` while the product has no published version.
    pub default_version: Option<DefaultVersionView>,
    pub versions: Vec<ProductVersionReference>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DefaultVersionView {
    pub version: u32,
    pub entitlements: Vec<Entitlement>,
    pub prices: Vec<Price>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProductVersionReference {
    pub version: u32,
    pub created_at: Timestamp,
    pub status: VersionStatus,
}

impl From<&Product> for GetProductResponse {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.to_string(),
            code: p.code.clone(),
            name: p.name.clone(),
            default_version: p.resolve(VersionSelector::Default).map(|v| DefaultVersionView {
                version: v.version,
                entitlements: v.entitlements.clone(),
                prices: v.prices.clone(),
            }),
            versions: p
                .versions
                .iter()
                .map(|v| ProductVersionReference {
                    version: v.version,
                    created_at: v.created_at,
                    status: v.status,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GetProductVersionResponse {
    pub id: String,
    pub version: u32,
    pub code: String,
    pub name: String,
    pub prices: Vec<Price>,
    pub entitlements: Vec<Entitlement>,
    pub status: VersionStatus,
    pub is_default: bool,
}

impl GetProductVersionResponse {
    pub fn new(p: &Product, v: &ProductVersion) -> Self {
        Self {
            id: p.id.to_string(),
            version: v.version,
            code: p.code.clone(),
            name: p.name.clone(),
            prices: v.prices.clone(),
            entitlements: v.entitlements.clone(),
            status: v.status,
            is_default: p.default_version == Some(v.version),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductSubscriber {
    pub customer_id: String,
    pub customer_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub subscription_id: String,
    pub subscription_status: SubscriptionStatus,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renews_at: Option<Timestamp>,
    pub product_rate_plan_id: String,
    pub version: u32,
}

// ---------------------------------------------------------------------------------------------
// Customers

#[derive(Clone, Debug, Deserialize)]
pub struct CreateCustomerRequest {
    pub name: String,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub subscriptions: Option<Vec<CreateSubscriptionRequest>>,
    #[serde(default)]
    pub external_accounts: Option<Vec<ExternalAccount>>,
    /// A test clock to attach the customer to (test environment only).
    #[serde(default)]
    pub test_clock: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CreateSubscriptionRequest {
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    #[serde(default)]
    pub renews_at: Option<Timestamp>,
    pub products: Vec<ProductReference>,
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(default)]
    pub failure_url: Option<String>,
    #[serde(default)]
    pub redirect_to: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CreateCustomerResponse {
    pub id: String,
    pub subscriptions: Vec<Subscription>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct UpdateCustomerRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UpdateSubscriptionRequest {
    pub status: SubscriptionStatus,
}

#[derive(Clone, Debug, Deserialize)]
pub struct UpdateSubscriptionProductRequest {
    pub version: VersionSelector,
}

/// `GET /customers` filters.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CustomerListFilter {
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<SubscriptionStatus>,
}

impl CustomerListFilter {
    /// Exact match on ids, case-insensitive match on email, case-insensitive substring on name;
    /// `status=active` keeps customers with an active subscription, `inactive` those without.
    pub fn matches(&self, c: &Customer) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        eq(&self.customer_id, Some(c.id.as_str()))
            && eq(&self.external_id, c.external_id.as_deref())
            && self
                .email
                .as_deref()
                .is_none_or(|w| c.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(w)))
            && self.name.as_deref().is_none_or(|w| c.name.to_lowercase().contains(&w.to_lowercase()))
            && self.status.is_none_or(|s| {
                let active = c.active_subscription_count() > 0;
                match s {
                    SubscriptionStatus::Active => active,
                    _ => !active,
                }
            })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CustomerSummary {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub active_subscription_count: usize,
}

impl From<&Customer> for CustomerSummary {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id.to_string(),
            external_id: c.external_id.clone(),
            name: c.name.clone(),
            email: c.email.clone(),
            active_subscription_count: c.active_subscription_count(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GetCustomerResponse {
    #[serde(flatten)]
    pub summary: CustomerSummary,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    pub subscriptions: Vec<Subscription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_accounts: Option<Vec<ExternalAccount>>,
}

impl GetCustomerResponse {
    /// The customer as shown at `now` (its own time: a test clock's, if attached).
    pub fn at(c: &Customer, now: Timestamp) -> Self {
        Self {
            summary: c.into(),
            created_at: c.created_at,
            metadata: c.metadata.clone(),
            subscriptions: c.subscriptions.iter().map(|s| s.view(now)).collect(),
            external_accounts: c.external_accounts.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetWalletResponse {
    pub accounts: Vec<WalletAccount>,
}
