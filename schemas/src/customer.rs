//! Customers with their subscriptions, wallet accounts, vendors and connected accounts, as
//! stored and (mostly) as served.

use crate::catalog::VersionSelector;
use crate::ids::{ConnectedAccountId, CustomerId, ProductId, SubscriptionId, VendorId};
use crate::{Decimal, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Metadata = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Inactive,
    Scheduled,
    ActionRequired,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalAccount {
    pub provider: String,
    pub provider_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_accounts: Option<Vec<ExternalAccount>>,
    pub created_at: Timestamp,
    /// Ids of the wallet accounts provisioned so far. Kept on the customer so that provisioning
    /// is serialized by the customer document's revision.
    #[serde(default)]
    pub accounts: Vec<String>,
}

impl Customer {
    pub fn active_subscription_count(&self) -> usize {
        self.subscriptions.iter().filter(|s| s.status == SubscriptionStatus::Active).count()
    }

    pub fn subscription_mut(&mut self, id: &str) -> Option<&mut Subscription> {
        self.subscriptions.iter_mut().find(|s| s.id.as_str() == id)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews_at: Option<Timestamp>,
    pub status: SubscriptionStatus,
    pub products: Vec<SubscribedProduct>,
}

/// A product pinned by a subscription: `default` is resolved to a number at subscribe time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscribedProduct {
    pub id: ProductId,
    pub code: String,
    pub version: u32,
}

/// A product as named in a subscription request: by id or code, version number or `default`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductReference {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub version: Option<VersionSelector>,
}

/// One account of a customer's wallet: `{name}:{ASSET}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WalletAccount {
    pub id: String,
    pub name: String,
    pub asset: String,
    pub available: Decimal,
}

impl WalletAccount {
    pub const DEFAULT_NAME: &'static str = "default";

    /// A fresh account at zero.
    pub fn new(name: &str, asset: &str) -> Self {
        Self {
            id: Self::account_id(name, asset),
            name: name.to_string(),
            asset: asset.to_string(),
            available: Decimal::ZERO,
        }
    }

    pub fn account_id(name: &str, asset: &str) -> String {
        format!("{name}:{asset}")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Vendor {
    pub id: VendorId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectedAccount {
    pub id: ConnectedAccountId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub name: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}
