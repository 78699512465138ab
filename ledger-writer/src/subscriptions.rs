//! Time-driven changes (`semantics.md` §2, §6, §7; `docs/subscriptions.md`): what a customer's
//! ledger does when time passes. Pure, like the rest of [`crate::apply`]: the writer calls it
//! before every input, at the input's time, and it applies every change due up to then in time
//! order, each at its own moment.
//!
//! Rules:
//! - At each due moment `t`, in this order: items whose period ends at `t` are closed
//!   (`in_arrears` fees, post-paid usage, a `rollover` grant's remainder taken), grants expiring
//!   at `t` are written off, the next periods (and cycles starting at `t`) are opened
//!   (entitlement grants, `in_advance` and `one_time` fees), then debt is repaid.
//! - Periods are anchored on the cycle's start: period `k` is `[anchor + k p, anchor + (k+1) p)`.
//! - Every change has an id made of (subscription, item, period start), so it is posted once
//!   whatever replays, late ticks or restarts happen.
//! - A cycle ends when the subscription stops billing or is re-anchored (made active again,
//!   moved to another version): post-paid usage counted so far is billed then; an `in_arrears`
//!   fee of the unfinished period is not; issued grants keep their expiry.

use super::{negated, posting_line, Known, Step};
use crate::posting::{Line, NewGrant, PostingError, Purpose};
use crate::state::{Item, SubscriptionLedger, Tally};
use rater::amount::{self, Usage};
use schemas::catalog::{
    BillingModel, Collection, CollectionTiming, Entitlement, EntitlementPurpose, FixedPrice, Period,
    PriceBase, PriceKind, PriceValues, RefreshStrategy, UsageBasedPrice,
};
use schemas::customer::{SubscribedProduct, WalletAccount};
use schemas::ledger::{CustomerSnapshot, DomainEvent, PostingLine, TransactionType};
use schemas::{Decimal, Timestamp};
use serde_json::json;
use std::collections::BTreeMap;

/// What an item of a cycle is, read from the pinned product version.
enum ItemDef<'a> {
    Entitlement(&'a Entitlement),
    Fee(&'a PriceBase, &'a FixedPrice),
    PostPaid(&'a PriceBase, &'a UsageBasedPrice, Period),
}

impl ItemDef<'_> {
    fn is_grant(&self) -> bool {
        matches!(self, ItemDef::Entitlement(_))
    }

    /// The item's period length (`None`: charged once).
    fn period(&self) -> Option<Period> {
        match self {
            ItemDef::Entitlement(e) => Some(e.period()),
            ItemDef::Fee(_, p) => match &p.billing_model {
                BillingModel::Recurring(r) => Some(r.recurring.period()),
                BillingModel::RealTime | BillingModel::OneTime(_) => None,
            },
            ItemDef::PostPaid(_, _, period) => Some(*period),
        }
    }
}

fn timing(base: &PriceBase) -> CollectionTiming {
    match &base.collection {
        Some(Collection::Balance(b)) => b.timing.unwrap_or(CollectionTiming::InAdvance),
        Some(Collection::Invoice(i)) => i.timing.unwrap_or(CollectionTiming::InAdvance),
        None => CollectionTiming::InAdvance,
    }
}

/// The last instant of a period ending at `end`: a closing charge (an `in_arrears` fee, a
/// period's post-paid usage) is taken from the credit valid during the period, including credit
/// that expires exactly when the period ends (`docs/subscriptions.md`).
fn within(end: Timestamp) -> Timestamp {
    end - chrono::Duration::microseconds(1)
}

fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// `unit_price * quantity` summed over the first asset's values, in that asset.
fn fixed_amount(price: &FixedPrice) -> Option<(&str, Decimal)> {
    let pricing = price.pricing.first()?;
    let mut total = Decimal::ZERO;
    for v in &pricing.values {
        total = total.checked_add(v.unit_price.checked_mul(v.quantity.unwrap_or(Decimal::ONE))?)?;
    }
    Some((pricing.asset.as_str(), total.normalize()))
}

/// The items of a cycle's pinned versions, by item key: `{version id}.e{i}` for the `i`-th
/// entitlement, the price id for a fixed or post-paid price.
fn item_defs<'k>(
    known: &'k dyn Known,
    customer: &str,
    products: &[SubscribedProduct],
) -> BTreeMap<String, ItemDef<'k>> {
    let mut defs = BTreeMap::new();
    for pinned in products {
        let Some(version) = known.product(pinned.id.as_str()).and_then(|p| p.version(pinned.version)) else {
            tracing::error!(
                customer,
                product = %pinned.id,
                version = pinned.version,
                "subscribed product version unknown: its entitlements and fees are not applied"
            );
            continue;
        };
        for (i, e) in version.entitlements.iter().enumerate() {
            defs.insert(format!("{}.e{i}", version.id), ItemDef::Entitlement(e));
        }
        for price in &version.prices {
            let Some(price_id) = price.base.id.as_ref() else { continue };
            let def = match &price.kind {
                PriceKind::Fixed(f) => ItemDef::Fee(&price.base, f),
                PriceKind::UsageBased(u) => match &u.billing_model {
                    BillingModel::Recurring(r) => ItemDef::PostPaid(&price.base, u, r.recurring.period()),
                    _ => continue,
                },
            };
            defs.insert(price_id.to_string(), def);
        }
    }
    defs
}

impl<'a> Step<'a> {
    /// Applies every time-driven change due up to `now`, in time order, then repays debt.
    pub(super) fn advance(&mut self) -> Result<(), PostingError> {
        let now = self.now;
        while let Some(t) = self.draft.next_due().filter(|t| *t <= now) {
            self.moment(t)?;
        }
        for account in self.draft.accounts.values_mut() {
            account.settle_debt(now);
        }
        Ok(())
    }

    /// Everything due at `t`.
    fn moment(&mut self, t: Timestamp) -> Result<(), PostingError> {
        // The items of the subscriptions with something due at `t`, read from the catalog once.
        let due: Vec<(String, BTreeMap<String, ItemDef<'a>>)> = self
            .draft
            .subscriptions
            .iter()
            .filter(|(_, s)| {
                s.anchor.is_some_and(|a| !s.opened && a <= t)
                    || s.items.values().any(|i| i.end.is_some_and(|e| e <= t))
            })
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
            .into_iter()
            .map(|id| {
                let defs = self.defs(&id);
                (id, defs)
            })
            .collect();
        let mut reopen = Vec::new();
        for (id, defs) in &due {
            for (key, carry) in self.close_due(id, t, defs)? {
                reopen.push((id, defs, key, carry));
            }
        }
        self.expire(t)?;
        for (id, defs) in &due {
            self.open_cycle(id, t, defs)?;
        }
        // Grants before fees, so a fee collected at a period's start can use that period's credit.
        reopen.sort_by_key(|(_, defs, key, _)| !defs.get(key).is_some_and(ItemDef::is_grant));
        for (id, defs, key, carry) in reopen {
            self.open_item(id, &key, t, carry, defs)?;
        }
        for account in self.draft.accounts.values_mut() {
            account.settle_debt(t);
        }
        Ok(())
    }

    /// The items of subscription `id`'s cycle (see [`item_defs`]).
    fn defs(&self, id: &str) -> BTreeMap<String, ItemDef<'a>> {
        let products = self.draft.subscriptions.get(id).map(|s| s.products.as_slice()).unwrap_or_default();
        item_defs(self.known, &self.draft.customer_id, products)
    }

    /// Opens the cycle of subscription `id` if it starts at or before `t` and is not open yet.
    fn open_cycle(
        &mut self,
        id: &str,
        t: Timestamp,
        defs: &BTreeMap<String, ItemDef<'a>>,
    ) -> Result<(), PostingError> {
        let Some(sub) = self.draft.subscriptions.get(id) else { return Ok(()) };
        let Some(anchor) = sub.anchor.filter(|a| !sub.opened && *a <= t) else { return Ok(()) };
        // Grants before fees, so a fee collected at the start can use the period's credit.
        let mut keys: Vec<(bool, String)> =
            defs.iter().map(|(key, def)| (!def.is_grant(), key.clone())).collect();
        keys.sort();
        let keys: Vec<String> = keys.into_iter().map(|(_, key)| key).collect();
        if let Some(sub) = self.draft.subscriptions.get_mut(id) {
            sub.opened = true;
        }
        for key in keys {
            if let Some(sub) = self.draft.subscriptions.get_mut(id) {
                sub.items.insert(key.clone(), Item { period: 0, start: anchor, end: None, grant: None });
            }
            self.open_item(id, &key, anchor, None, defs)?;
        }
        self.event(
            &format!("{id}.activated.{}", millis(anchor)),
            "subscription.activated",
            anchor,
            json!({
                "subscription_id": id,
                "started_at": anchor,
            }),
        );
        Ok(())
    }

    /// Opens the current period of an item (already positioned at its `start`): issues an
    /// entitlement's grant (plus `carry` rolled over), collects an `in_advance` or `one_time`
    /// fee, and sets when the period ends.
    fn open_item(
        &mut self,
        id: &str,
        key: &str,
        t: Timestamp,
        carry: Option<Line>,
        defs: &BTreeMap<String, ItemDef<'a>>,
    ) -> Result<(), PostingError> {
        let Some(sub) = self.draft.subscriptions.get(id) else { return Ok(()) };
        let Some(anchor) = sub.anchor else { return Ok(()) };
        let Some(item) = sub.items.get(key).cloned() else { return Ok(()) };
        let Some(def) = defs.get(key) else { return Ok(()) };
        let end = def.period().and_then(|p| p.boundary(anchor, item.period + 1));
        let txid = format!("{id}.{key}.{}", millis(item.start));
        let mut grant = None;
        match def {
            ItemDef::Entitlement(e) => {
                let Some(end) = end else {
                    self.finish(id, key);
                    return Ok(());
                };
                let carried = carry.as_ref().map_or(Decimal::ZERO, Line::amount);
                let amount = e.amount.checked_add(carried).ok_or(PostingError::Overflow)?;
                let account_id = WalletAccount::account_id(WalletAccount::DEFAULT_NAME, &e.asset);
                let (purpose, basis) = match e.purpose {
                    EntitlementPurpose::Bundled => {
                        (Purpose::Bundled, e.accounting.as_ref().map_or(Decimal::ZERO, |a| a.revenue_basis))
                    }
                    EntitlementPurpose::Promotion => (Purpose::Promotion, Decimal::ZERO),
                };
                let new = NewGrant {
                    id: format!("grant_{txid}"),
                    purpose,
                    amount,
                    effective_at: item.start,
                    expires_at: end,
                    priority: e.priority,
                    revenue_basis: basis.normalize(),
                    source: txid.clone(),
                };
                if let Some(key) = self.free_key(&txid) {
                    grant = Some(format!("{account_id}|{}", new.id));
                    let credit = PostingLine { kind: "credit".into(), grant: Some(new.id.clone()), amount };
                    let account = self.draft.accounts.entry(account_id.clone()).or_default();
                    let repaid = account.credit(new, t)?;
                    let mut tx = self.transaction(&txid, TransactionType::Adjustment, &account_id, amount);
                    tx.lines = carry
                        .iter()
                        .map(posting_line)
                        .chain(std::iter::once(credit))
                        .chain(repaid.iter().map(posting_line))
                        .collect();
                    tx.description = Some(format!("{} (entitlement)", e.name));
                    (tx.created_at, tx.executed_at) = (t, t);
                    self.record(key, tx);
                }
            }
            ItemDef::Fee(base, price) => {
                let once = end.is_none();
                if once || timing(base) == CollectionTiming::InAdvance {
                    let txid = if once { format!("{id}.{key}.once") } else { txid };
                    self.collect(&txid, price, &base.name, t, false)?;
                }
                if once {
                    self.finish(id, key);
                    return Ok(());
                }
            }
            ItemDef::PostPaid(..) => {}
        }
        if let Some(item) = self.draft.subscriptions.get_mut(id).and_then(|s| s.items.get_mut(key)) {
            item.end = end;
            item.grant = grant;
        }
        Ok(())
    }

    /// Marks an item done: it is never due again in this cycle.
    fn finish(&mut self, id: &str, key: &str) {
        if let Some(item) = self.draft.subscriptions.get_mut(id).and_then(|s| s.items.get_mut(key)) {
            item.end = None;
        }
    }

    /// Closes every item of `id` whose period ends at or before `t`; returns the items to open
    /// for their next period, with what a rollover carries.
    fn close_due(
        &mut self,
        id: &str,
        t: Timestamp,
        defs: &BTreeMap<String, ItemDef<'a>>,
    ) -> Result<Vec<(String, Option<Line>)>, PostingError> {
        let Some(sub) = self.draft.subscriptions.get(id) else { return Ok(Vec::new()) };
        let due: Vec<(String, Item)> = sub
            .items
            .iter()
            .filter(|(_, item)| item.end.is_some_and(|end| end <= t))
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect();
        let mut reopen = Vec::new();
        for (key, item) in due {
            let end = item.end.unwrap_or(t);
            let (refreshes, carry) = self.close_item(id, &key, &item, end, defs.get(&key))?;
            let Some(stored) = self.draft.subscriptions.get_mut(id).and_then(|s| s.items.get_mut(&key))
            else {
                continue;
            };
            if refreshes {
                *stored = Item { period: item.period + 1, start: end, end: None, grant: None };
                reopen.push((key, carry));
            } else {
                stored.end = None;
            }
        }
        if !reopen.is_empty() {
            self.new.renewals += 1;
            self.event(
                &format!("{id}.renewed.{}", millis(t)),
                "subscription.renewed",
                t,
                json!({
                    "subscription_id": id,
                    "period_start": t,
                }),
            );
        }
        Ok(reopen)
    }

    /// Closes one item's period `[item.start, end)`; returns whether a next period follows and
    /// what a rollover carries into it.
    fn close_item(
        &mut self,
        id: &str,
        key: &str,
        item: &Item,
        end: Timestamp,
        def: Option<&ItemDef<'a>>,
    ) -> Result<(bool, Option<Line>), PostingError> {
        let Some(def) = def else {
            // The version is gone from the catalog: nothing to bill, nothing to renew.
            return Ok((false, None));
        };
        let txid = format!("{id}.{key}.{}", millis(item.start));
        match def {
            ItemDef::Entitlement(e) => {
                let strategy = e.lifecycle.refresh.as_ref().map(|r| r.strategy);
                let mut carry = None;
                if strategy == Some(RefreshStrategy::Rollover) {
                    if let Some((account_id, grant)) = item.grant.as_deref().and_then(|g| g.split_once('|')) {
                        carry = self.draft.accounts.get_mut(account_id).and_then(|a| a.roll_over(grant));
                    }
                }
                Ok((strategy.is_some(), carry))
            }
            ItemDef::Fee(base, price) => {
                if timing(base) == CollectionTiming::InArrears {
                    self.collect(&txid, price, &base.name, end, true)?;
                }
                Ok((true, None))
            }
            ItemDef::PostPaid(base, price, _) => {
                let price_id = key.to_string();
                self.bill_postpaid(&txid, &price_id, base, price, end)?;
                Ok((true, None))
            }
        }
    }

    /// Debits a fixed price's amount at `t` under transaction `txid` (once). A period's closing
    /// charge (`closing`) is taken from the credit valid during the period (see [`within`]).
    fn collect(
        &mut self,
        txid: &str,
        price: &FixedPrice,
        name: &str,
        t: Timestamp,
        closing: bool,
    ) -> Result<(), PostingError> {
        let Some((asset, amount)) = fixed_amount(price) else { return Err(PostingError::Overflow) };
        let eligible_at = if closing { within(t) } else { t };
        self.fee_at(txid, asset, amount, name.to_string(), t, eligible_at)
    }

    /// Posts a time-driven fee (once per `txid`): `amount` debited from the default account of
    /// `asset` under the credit eligible at `eligible_at`, dated `t`.
    fn fee_at(
        &mut self,
        txid: &str,
        asset: &str,
        amount: Decimal,
        description: String,
        t: Timestamp,
        eligible_at: Timestamp,
    ) -> Result<(), PostingError> {
        let Some(key) = self.free_key(txid) else { return Ok(()) };
        let account_id = WalletAccount::account_id(WalletAccount::DEFAULT_NAME, asset);
        let (lines, revenue) = self.debit_at(&account_id, amount, eligible_at)?;
        let mut tx = self.transaction(txid, TransactionType::Fee, &account_id, negated(amount));
        tx.lines = lines;
        tx.revenue = revenue;
        tx.description = Some(description);
        (tx.created_at, tx.executed_at) = (t, t);
        self.record(key, tx);
        Ok(())
    }

    /// Bills the post-paid usage of one price counted in the period ending at `end`: one fee per
    /// dimension combination, priced on the period's totals.
    fn bill_postpaid(
        &mut self,
        txid: &str,
        price_id: &str,
        base: &PriceBase,
        price: &UsageBasedPrice,
        end: Timestamp,
    ) -> Result<(), PostingError> {
        let tallies = self.draft.postpaid.remove(price_id).unwrap_or_default();
        for (n, (dims, tally)) in tallies.into_iter().enumerate() {
            let Some((asset, amount)) = self.postpaid_amount(base, price, &dims, &tally, end) else {
                tracing::error!(customer = %self.draft.customer_id, price = price_id, "post-paid usage cannot be priced");
                continue;
            };
            let id = if n == 0 { txid.to_string() } else { format!("{txid}.{n}") };
            let description = format!("{} ({} events)", base.name, tally.events.normalize());
            self.fee_at(&id, &asset, amount, description, end, within(end))?;
        }
        Ok(())
    }

    /// The asset and amount of a period's post-paid usage: the first asset whose account
    /// covers it, else the first (`semantics.md` §3).
    fn postpaid_amount(
        &self,
        base: &PriceBase,
        price: &UsageBasedPrice,
        dims: &str,
        tally: &Tally,
        at: Timestamp,
    ) -> Option<(String, Decimal)> {
        let mut first = None;
        for pricing in &price.pricing {
            let values = match &pricing.values {
                PriceValues::Plain(values) => values.as_slice(),
                PriceValues::Dimensional(list) => {
                    let wanted: BTreeMap<String, String> = serde_json::from_str(dims).ok()?;
                    list.iter().find(|d| d.dimensions == wanted)?.values.as_slice()
                }
            };
            let usage = Usage { usage_type: price.usage_calculation.usage_type, volume: Some(tally.volume) };
            let amount = amount::period_total(base.pricing_model, usage, tally.events, values)?;
            let available = self.draft.available(
                &WalletAccount::account_id(WalletAccount::DEFAULT_NAME, &pricing.asset),
                within(at),
            );
            if price.pricing.len() > 1 && available.is_some_and(|a| a >= amount) {
                return Some((pricing.asset.clone(), amount));
            }
            first = first.or(Some((pricing.asset.clone(), amount)));
        }
        first
    }

    /// Takes the subscriptions of a customer document, unless a later revision was taken
    /// already. A subscription whose cycle changed (it stopped billing, or was re-anchored) ends
    /// its cycle now and starts the new one (opened by [`Step::advance`]).
    pub(super) fn adopt(&mut self, snapshot: CustomerSnapshot) -> Result<(), PostingError> {
        if self.draft.customer_revision.is_some_and(|seen| snapshot.revision <= seen) {
            return Ok(());
        }
        self.draft.customer_revision = Some(snapshot.revision);
        self.draft.test_clock = snapshot.test_clock;
        let now = self.now;
        for sub in snapshot.subscriptions {
            let id = sub.id.to_string();
            let anchor = sub.is_billing().then(|| sub.anchor());
            let current = self.draft.subscriptions.get(&id);
            if current.is_some_and(|c| c.anchor == anchor && c.products == sub.products) {
                continue;
            }
            if current.is_some_and(|c| c.anchor.is_some()) {
                self.end_cycle(&id, now)?;
            }
            self.draft.subscriptions.insert(
                id,
                SubscriptionLedger { anchor, products: sub.products, opened: false, items: BTreeMap::new() },
            );
        }
        Ok(())
    }

    /// Ends a cycle at `t`: post-paid usage counted so far is billed; nothing else is charged
    /// for the unfinished periods, and issued grants keep their expiry.
    fn end_cycle(&mut self, id: &str, t: Timestamp) -> Result<(), PostingError> {
        let Some(sub) = self.draft.subscriptions.get(id) else { return Ok(()) };
        let open: Vec<(String, Item)> =
            sub.items.iter().filter(|(_, i)| i.end.is_some()).map(|(k, i)| (k.clone(), i.clone())).collect();
        let defs = self.defs(id);
        for (key, item) in open {
            if let Some(ItemDef::PostPaid(base, price, _)) = defs.get(key.as_str()) {
                let txid = format!("{id}.{key}.{}", millis(item.start));
                self.bill_postpaid(&txid, &key, base, price, t)?;
            }
        }
        self.event(
            &format!("{id}.ended.{}", millis(t)),
            "subscription.cycle_ended",
            t,
            json!({
                "subscription_id": id,
                "ended_at": t,
            }),
        );
        Ok(())
    }

    /// Records a domain event (once per id).
    pub(super) fn event(&mut self, id: &str, kind: &str, at: Timestamp, data: serde_json::Value) {
        self.new.events_recorded.entry(id.to_string()).or_insert_with(|| DomainEvent {
            id: id.to_string(),
            kind: kind.to_string(),
            customer_id: self.draft.customer_id.clone(),
            created: at,
            data,
        });
    }
}
