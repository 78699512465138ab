//! Customers with their subscriptions, wallet accounts, vendors and connected accounts, as
//! stored and (mostly) as served.

use crate::catalog::{Period, VersionSelector};
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
    /// The test clock the customer was attached to at creation (test environment only): its
    /// time is the customer's time, for usage, commands and every time-driven change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clock: Option<String>,
}

impl Customer {
    pub fn active_subscription_count(&self) -> usize {
        self.subscriptions.iter().filter(|s| s.status == SubscriptionStatus::Active).count()
    }

    pub fn subscription_mut(&mut self, id: &str) -> Option<&mut Subscription> {
        self.subscriptions.iter_mut().find(|s| s.id.as_str() == id)
    }

    /// The product versions an event occurring at `at` is billed against: those of every
    /// subscription that is `active`, or `scheduled` with a start that has passed, and whose
    /// `started_at <= at`, where `started_at` counts from the start of its second: platforms often
    /// send second-precision timestamps, and usage in the very second a customer subscribed must
    /// not go unbilled. `inactive` and `action_required` subscriptions bill nothing. A version
    /// pinned by several subscriptions is listed once (in first-seen order), so one price never
    /// yields two fees for the same event.
    pub fn products_active_at(&self, at: Timestamp) -> Vec<&SubscribedProduct> {
        let mut products: Vec<&SubscribedProduct> = Vec::new();
        let billed = self.subscriptions.iter().filter(|s| {
            matches!(s.status, SubscriptionStatus::Active | SubscriptionStatus::Scheduled)
                && chrono::SubsecRound::trunc_subsecs(s.started_at, 0) <= at
        });
        for product in billed.flat_map(|s| &s.products) {
            if !products.iter().any(|p| p.id == product.id && p.version == product.version) {
                products.push(product);
            }
        }
        products
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
    /// Where the current billing cycle is anchored: the start, or the moment the subscription
    /// was last made active again or moved to another version (`docs/subscriptions.md`).
    /// Internal: not part of the API's view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchored_at: Option<Timestamp>,
    /// The cycle's period (the first recurring price's, else the first refreshing
    /// entitlement's), which `renews_at` follows. Internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

impl Subscription {
    /// The start of the current billing cycle.
    pub fn anchor(&self) -> Timestamp {
        self.anchored_at.unwrap_or(self.started_at)
    }

    /// Whether the subscription bills (now or from its start).
    pub fn is_billing(&self) -> bool {
        matches!(self.status, SubscriptionStatus::Active | SubscriptionStatus::Scheduled)
    }

    /// Brings the lifecycle to `now`: a `scheduled` subscription whose start has passed is
    /// `active`, and `renews_at` is the cycle's next boundary after `now`. Returns whether
    /// anything changed.
    pub fn settle(&mut self, now: Timestamp) -> bool {
        let before = (self.status, self.renews_at);
        if self.status == SubscriptionStatus::Scheduled && self.started_at <= now {
            self.status = SubscriptionStatus::Active;
        }
        if let (true, Some(period)) = (self.is_billing(), self.period) {
            self.renews_at = period.next_after(self.anchor(), now.max(self.anchor())).or(self.renews_at);
        }
        before != (self.status, self.renews_at)
    }

    /// The subscription as the API shows it at `now` (settled, internals left out).
    pub fn view(&self, now: Timestamp) -> Subscription {
        let mut view = self.clone();
        view.settle(now);
        view.anchored_at = None;
        view.period = None;
        view
    }
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

    /// `(name, asset)` of an account id `{name}:{ASSET}` (asset codes hold no `:`).
    pub fn split_id(id: &str) -> (&str, &str) {
        id.rsplit_once(':').unwrap_or((id, ""))
    }

    /// The account an id names, at zero.
    pub fn from_id(id: &str) -> Self {
        let (name, asset) = Self::split_id(id);
        Self::new(name, asset)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn subscription(
        id: &str,
        started_at: &str,
        status: SubscriptionStatus,
        products: &[(&str, u32)],
    ) -> Subscription {
        Subscription {
            id: SubscriptionId::from_raw(id),
            started_at: at(started_at),
            renews_at: None,
            status,
            anchored_at: None,
            period: None,
            products: products
                .iter()
                .map(|(p, v)| SubscribedProduct {
                    id: ProductId::from_raw(*p),
                    code: p.to_string(),
                    version: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn only_started_active_or_scheduled_subscriptions_bill_an_event() {
        use SubscriptionStatus::*;
        let customer = Customer {
            id: CustomerId::from_raw("cust_1"),
            external_id: None,
            name: "c".into(),
            email: None,
            metadata: None,
            subscriptions: vec![
                subscription("sub_a", "2026-01-01T00:00:00Z", Active, &[("prod_a", 1)]),
                subscription("sub_i", "2026-01-01T00:00:00Z", Inactive, &[("prod_i", 1)]),
                subscription("sub_s", "2026-03-01T00:00:00Z", Scheduled, &[("prod_s", 1)]),
                subscription("sub_r", "2026-01-01T00:00:00Z", ActionRequired, &[("prod_r", 1)]),
                subscription("sub_dup", "2026-01-01T00:00:00Z", Active, &[("prod_a", 1), ("prod_a", 2)]),
            ],
            external_accounts: None,
            created_at: at("2026-01-01T00:00:00Z"),
            accounts: Vec::new(),
            test_clock: None,
        };
        let ids = |when: &str| {
            customer
                .products_active_at(at(when))
                .iter()
                .map(|p| format!("{}@{}", p.id.as_str(), p.version))
                .collect::<Vec<_>>()
        };
        assert!(ids("2025-12-31T23:59:59Z").is_empty());
        assert_eq!(ids("2026-02-01T00:00:00Z"), ["prod_a@1", "prod_a@2"]);
        assert_eq!(ids("2026-03-01T00:00:00Z"), ["prod_a@1", "prod_s@1", "prod_a@2"]);
    }

    #[test]
    fn an_event_in_the_second_a_subscription_started_is_billed_by_it() {
        let mut customer = Customer {
            id: CustomerId::from_raw("cust_1"),
            external_id: None,
            name: "c".into(),
            email: None,
            metadata: None,
            subscriptions: vec![subscription(
                "sub",
                "2026-01-01T10:00:00Z",
                SubscriptionStatus::Active,
                &[("p", 1)],
            )],
            external_accounts: None,
            created_at: at("2026-01-01T10:00:00Z"),
            accounts: Vec::new(),
            test_clock: None,
        };
        customer.subscriptions[0].started_at = at("2026-01-01T10:00:00.734Z");
        assert_eq!(customer.products_active_at(at("2026-01-01T10:00:00Z")).len(), 1);
        assert_eq!(customer.products_active_at(at("2026-01-01T10:00:00.2Z")).len(), 1);
        assert!(customer.products_active_at(at("2026-01-01T09:59:59.999Z")).is_empty());
    }
}
