//! The time-driven rules of `semantics.md` §2, §6 and §7 (`docs/subscriptions.md`), one test per
//! rule, named after it, against the pure core: ticks and inputs applied to one customer's
//! ledger, no IO.

use ledger_writer::apply::{apply, Known, Postings};
use ledger_writer::fixtures::{adjustment, at, d, product, usage};
use ledger_writer::LedgerState;
use schemas::catalog::{Asset, Entitlement, Product};
use schemas::customer::{SubscribedProduct, Subscription, SubscriptionStatus};
use schemas::ids::{ProductId, SubscriptionId};
use schemas::ledger::{
    AdjustmentReason, CustomerSnapshot, LedgerInput, RatedEvent, TickCommand, Transaction, TransactionType,
};
use schemas::{Decimal, Timestamp};
use serde_json::{json, Value};
use std::collections::HashMap;

const C: &str = "cust_1";
const SUB: &str = "sub_1";

#[derive(Default)]
struct Catalog {
    products: HashMap<String, Product>,
}

impl Known for Catalog {
    fn posted_event(&self, _key: &str) -> Option<&schemas::usage::UsageEvent> {
        None
    }
    fn transaction_exists(&self, _key: &str) -> bool {
        false
    }
    fn product(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }
    fn asset(&self, _code: &str) -> Option<&Asset> {
        None
    }
}

/// Product `prod_{version}` version `version` (id `prv_{version}`) with `prices` and
/// `entitlements` as the API takes them; price ids are `price_{version}_{i}`.
fn plan(version: u32, prices: Value, entitlements: Value) -> Product {
    let mut v = rater::fixtures::version(version, prices);
    v.entitlements = serde_json::from_value::<Vec<Entitlement>>(entitlements).expect("entitlements");
    let mut p = product(&format!("prod_{version}"), v);
    p.id = ProductId::from_raw(format!("prod_{version}"));
    p
}

fn entitlement(asset: &str, amount: u32, purpose: &str, lifecycle: Value) -> Value {
    json!({"name": "allowance", "asset": asset, "amount": amount, "purpose": purpose, "lifecycle": lifecycle})
}

fn fixed(amount: &str, billing: Value, timing: Option<&str>) -> Value {
    let mut price = json!({"type": "fixed", "name": "fee", "billing_model": billing,
        "pricing": [{"asset": "USD", "values": [{"unit_price": d(amount)}]}]});
    if let Some(timing) = timing {
        price["collection"] = json!({"type": "balance", "timing": timing});
    }
    price
}

fn monthly() -> Value {
    json!({"type": "recurring", "recurring": {"interval": "month"}})
}

fn ms(text: &str) -> i64 {
    at(text).timestamp_millis()
}

/// One customer's ledger fed through `apply`.
struct Ledger {
    state: LedgerState,
    catalog: Catalog,
    out: Postings,
    offset: u64,
    revision: u64,
}

impl Ledger {
    fn new(products: Vec<Product>) -> Self {
        let catalog = Catalog { products: products.into_iter().map(|p| (p.id.to_string(), p)).collect() };
        Self { state: LedgerState::new(C), catalog, out: Postings::default(), offset: 0, revision: 0 }
    }

    fn input(&mut self, input: LedgerInput) {
        apply(&mut self.state, self.offset, input, &self.catalog, &mut self.out);
        self.offset += 1;
    }

    /// The customer document changed (stored at the next revision): its tick at `when`.
    fn subscriptions(&mut self, subscriptions: Vec<Subscription>, when: &str) {
        self.revision += 1;
        let snapshot = CustomerSnapshot { revision: self.revision, test_clock: None, subscriptions };
        self.tick_with(when, Some(snapshot));
    }

    fn tick_with(&mut self, when: &str, customer: Option<CustomerSnapshot>) {
        self.input(LedgerInput::Tick(TickCommand {
            customer_id: C.into(),
            accepted_at: at(when),
            due_key: None,
            customer,
        }));
    }

    /// A charge of `amount` USD under transaction `id` at `when`.
    fn charge(&mut self, id: &str, amount: &str, when: &str) {
        self.input(LedgerInput::Charge(ledger_writer::fixtures::charge(C, id, amount, when)));
    }

    /// Time passes to `when`.
    fn tick(&mut self, when: &str) {
        self.tick_with(when, None);
    }

    fn tx(&self, id: &str) -> Option<&Transaction> {
        self.out.transactions.get(&Transaction::key(C, id))
    }

    fn available(&self, account: &str, when: &str) -> Decimal {
        self.state.available(account, at(when)).expect("the account is within the ledger bound")
    }

    fn count(&self, kind: TransactionType) -> usize {
        self.out.transactions.values().filter(|t| t.kind == kind).count()
    }
}

fn subscription(product: &Product, started_at: &str) -> Subscription {
    Subscription {
        id: SubscriptionId::from_raw(SUB),
        started_at: at(started_at),
        renews_at: None,
        status: SubscriptionStatus::Active,
        products: vec![SubscribedProduct {
            id: product.id.clone(),
            code: product.code.clone(),
            version: product.versions[0].version,
        }],
        anchored_at: None,
        period: None,
    }
}

/// A tick at `when` for `product` subscribed from `started_at`.
fn subscribed(product: Product, started_at: &str, when: &str) -> Ledger {
    let sub = subscription(&product, started_at);
    let mut ledger = Ledger::new(vec![product]);
    ledger.subscriptions(vec![sub], when);
    ledger
}

/// A $20 monthly fee and 100 USD of bundled credit a month refreshed with `strategy`.
fn fee_and_allowance(strategy: &str) -> Product {
    let life = json!({"duration": "month", "refresh": {"strategy": strategy}});
    plan(1, json!([fixed("20", monthly(), None)]), json!([entitlement("USD", 100, "bundled", life)]))
}

/// A `call` event on 2026-01-10 with `data`, for the writer to rate against `product` (post-paid
/// prices are counted by the writer).
fn postpaid_call(product: &Product, id: &str, data: Value) -> RatedEvent {
    let mut event = ledger_writer::fixtures::event(id, data);
    event.occurred_at = at("2026-01-10T00:00:00Z");
    RatedEvent {
        event,
        products: vec![SubscribedProduct { id: product.id.clone(), code: "p".into(), version: 1 }],
        fees: Vec::new(),
        warnings: Vec::new(),
        needs_state: true,
    }
}

fn grant_tx(version: u32, index: u32, start: &str) -> String {
    format!("{SUB}.prv_{version}.e{index}.{}", ms(start))
}

fn fee_tx(price: &str, start: &str) -> String {
    format!("{SUB}.{price}.{}", ms(start))
}

#[test]
fn an_entitlement_is_issued_as_a_grant_when_the_subscription_becomes_active() {
    let p = plan(1, json!([]), json!([entitlement("USD", 1000, "bundled", json!({"duration": "month"}))]));
    let ledger = subscribed(p, "2026-01-10T00:00:00Z", "2026-01-10T00:00:00Z");
    let id = grant_tx(1, 0, "2026-01-10T00:00:00Z");
    let tx = ledger.tx(&id).expect("the entitlement's grant transaction");
    assert_eq!((tx.kind, tx.amount), (TransactionType::Adjustment, d("1000")));
    let grant = &ledger.state.accounts["default:USD"].grants[0];
    assert_eq!(grant.id, format!("grant_{id}"));
    assert_eq!((grant.priority, grant.effective_at), (20, at("2026-01-10T00:00:00Z")));
    assert_eq!(grant.expires_at, at("2026-02-10T00:00:00Z"), "it lasts one period");
    assert_eq!(ledger.out.outbox.iter().filter(|(_, e)| e.kind == "subscription.activated").count(), 1);
}

#[test]
fn a_one_off_entitlement_expires_at_the_period_end_and_is_not_replaced() {
    let p = plan(
        1,
        json!([]),
        json!([entitlement("USD", 50, "promotion", json!({"duration": "week", "duration_count": 2}))]),
    );
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    ledger.tick("2026-03-01T00:00:00Z");
    let grant = format!("grant_{}", grant_tx(1, 0, "2026-01-01T00:00:00Z"));
    let expiry = ledger.tx(&format!("exp_{grant}")).expect("written off at its end");
    assert_eq!((expiry.amount, expiry.created_at), (d("-50"), at("2026-01-15T00:00:00Z")));
    assert_eq!(ledger.count(TransactionType::Adjustment), 1, "never issued again");
    assert_eq!(ledger.available("default:USD", "2026-03-01T00:00:00Z"), d("0"));
    assert_eq!(ledger.state.next_due(), None, "nothing more is due");
}

#[test]
fn expire_and_replace_writes_off_the_remainder_and_issues_a_fresh_grant_each_period() {
    let life = json!({"duration": "month", "refresh": {"strategy": "expire_and_replace"}});
    let p = plan(1, json!([]), json!([entitlement("USD", 100, "bundled", life)]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    ledger.charge("spend", "30", "2026-01-05T00:00:00Z");
    ledger.tick("2026-03-15T00:00:00Z");
    let jan = format!("grant_{}", grant_tx(1, 0, "2026-01-01T00:00:00Z"));
    assert_eq!(ledger.tx(&format!("exp_{jan}")).map(|t| t.amount), Some(d("-70")));
    for start in ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"] {
        assert_eq!(ledger.tx(&grant_tx(1, 0, start)).map(|t| t.amount), Some(d("100")), "{start}");
    }
    assert_eq!(ledger.available("default:USD", "2026-03-15T00:00:00Z"), d("100"));
    let renewed: Vec<_> = ledger
        .out
        .outbox
        .iter()
        .filter(|(_, e)| e.kind == "subscription.renewed")
        .map(|(_, e)| e.created)
        .collect();
    assert_eq!(renewed, [at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")], "one event per renewal");
}

#[test]
fn rollover_carries_the_remainder_into_the_next_grant_without_expiry_revenue() {
    let life = json!({"duration": "month", "refresh": {"strategy": "rollover"}});
    let p = plan(1, json!([]), json!([entitlement("USD", 100, "promotion", life)]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    ledger.charge("spend", "30", "2026-01-05T00:00:00Z");
    ledger.tick("2026-02-01T00:00:00Z");
    let feb = ledger.tx(&grant_tx(1, 0, "2026-02-01T00:00:00Z")).expect("february's grant");
    assert_eq!(feb.amount, d("170"), "100 fresh + 70 carried");
    assert_eq!(feb.lines[0].kind, "rolled_over");
    assert_eq!(ledger.count(TransactionType::Expiry), 0, "the old grant is closed, not expired");
    assert_eq!(ledger.available("default:USD", "2026-02-01T00:00:00Z"), d("170"));
}

#[test]
fn periods_are_anchored_on_the_subscription_start_so_month_ends_do_not_drift() {
    let life = json!({"duration": "month", "refresh": {"strategy": "expire_and_replace"}});
    let p = plan(1, json!([]), json!([entitlement("USD", 1, "bundled", life)]));
    let mut ledger = subscribed(p, "2026-01-31T00:00:00Z", "2026-01-31T00:00:00Z");
    ledger.tick("2026-04-01T00:00:00Z");
    for start in ["2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"] {
        assert!(ledger.tx(&grant_tx(1, 0, start)).is_some(), "a period starts {start}");
    }
}

#[test]
fn a_recurring_fee_in_advance_is_debited_at_each_period_start() {
    let p = plan(1, json!([fixed("20", monthly(), None)]), json!([]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    ledger.tick("2026-03-01T00:00:00Z");
    for start in ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"] {
        let fee = ledger.tx(&fee_tx("price_1_0", start)).expect(start);
        assert_eq!((fee.kind, fee.amount, fee.created_at), (TransactionType::Fee, d("-20"), at(start)));
        assert_eq!(fee.revenue, d("20"), "debt on a currency account is recognised at 1");
    }
    assert_eq!(ledger.available("default:USD", "2026-03-01T00:00:00Z"), d("-60"));
}

#[test]
fn a_recurring_fee_in_arrears_is_debited_at_each_period_end() {
    let billing = json!({"type": "recurring", "recurring": {"interval": "week", "interval_count": 2}});
    let p = plan(1, json!([fixed("5", billing, Some("in_arrears"))]), json!([]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    assert_eq!(ledger.count(TransactionType::Fee), 0, "nothing at the start");
    ledger.tick("2026-01-29T00:00:00Z");
    let first = ledger.tx(&fee_tx("price_1_0", "2026-01-01T00:00:00Z")).expect("first period");
    assert_eq!(first.created_at, at("2026-01-15T00:00:00Z"), "posted at the period's end");
    assert!(ledger.tx(&fee_tx("price_1_0", "2026-01-15T00:00:00Z")).is_some());
    assert_eq!(ledger.count(TransactionType::Fee), 2);
}

#[test]
fn a_one_time_fee_is_charged_once_when_the_subscription_becomes_active() {
    let once = json!({"type": "one_time", "one_time": {}});
    let p = plan(1, json!([fixed("99", once, None)]), json!([]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    ledger.tick("2027-01-01T00:00:00Z");
    assert_eq!(ledger.tx(&format!("{SUB}.price_1_0.once")).map(|t| t.amount), Some(d("-99")));
    assert_eq!(ledger.count(TransactionType::Fee), 1);
}

#[test]
fn a_fixed_fee_is_unit_price_times_quantity_in_the_prices_first_asset() {
    let price = json!({"type": "fixed", "name": "seats", "billing_model": monthly(),
        "pricing": [{"asset": "EUR", "values": [{"unit_price": 7.5, "quantity": 3}, {"unit_price": 0.1}]},
                    {"asset": "USD", "values": [{"unit_price": 100}]}]});
    let ledger =
        subscribed(plan(1, json!([price]), json!([])), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let fee = ledger.tx(&fee_tx("price_1_0", "2026-01-01T00:00:00Z")).expect("fee");
    assert_eq!((fee.asset.as_str(), fee.amount), ("EUR", d("-22.6")));
}

#[test]
fn fixed_fees_are_debited_under_the_consumption_order() {
    let p = plan(
        1,
        json!([fixed("20", monthly(), None)]),
        json!([entitlement("USD", 15, "bundled", json!({"duration": "month"}))]),
    );
    let ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let fee = ledger.tx(&fee_tx("price_1_0", "2026-01-01T00:00:00Z")).expect("fee");
    let kinds: Vec<_> = fee.lines.iter().map(|l| (l.kind.as_str(), l.amount)).collect();
    assert_eq!(kinds, [("from_grant", d("15")), ("to_debt", d("5"))], "the new period's credit first");
}

#[test]
fn a_scheduled_subscription_starts_billing_at_its_start() {
    let p = plan(1, json!([fixed("20", monthly(), None)]), json!([]));
    let mut sub = subscription(&p, "2026-02-01T00:00:00Z");
    sub.status = SubscriptionStatus::Scheduled;
    let mut ledger = Ledger::new(vec![p]);
    ledger.subscriptions(vec![sub], "2026-01-10T00:00:00Z");
    assert_eq!(ledger.count(TransactionType::Fee), 0);
    assert_eq!(ledger.state.next_due(), Some(at("2026-02-01T00:00:00Z")), "due at its start");
    ledger.tick("2026-02-01T00:00:00Z");
    assert!(ledger.tx(&fee_tx("price_1_0", "2026-02-01T00:00:00Z")).is_some());
}

#[test]
fn post_paid_usage_is_billed_once_per_period_on_the_period_total() {
    let price = rater::fixtures::usage_price(
        "call",
        "volume",
        json!({"pricing_model": "tiered", "billing_model": monthly()}),
        json!([{"asset": "USD", "values": [{"up_to": 100, "volume_rate": 1}, {"volume_rate": 0.5}]}]),
    );
    let p = plan(1, json!([price]), json!([]));
    let mut ledger = subscribed(p.clone(), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let call = |id: &str, volume: u32| postpaid_call(&p, id, json!({"volume": volume}));
    ledger.input(usage(C, "2026-01-10T00:00:00Z", vec![call("e1", 80), call("e2", 80)]));
    assert_eq!(ledger.count(TransactionType::Fee), 0, "counted, not billed, as it arrives");
    assert!(ledger.out.events.values().all(|e| e.fees.is_empty()));
    ledger.tick("2026-02-01T00:00:00Z");
    let fee = ledger.tx(&fee_tx("price_1_0", "2026-01-01T00:00:00Z")).expect("the period's fee");
    // 160 in the period: 100 at 1, 60 at 0.5 (tiers over the period's total, not per event).
    assert_eq!((fee.amount, fee.created_at), (d("-130"), at("2026-02-01T00:00:00Z")));
    ledger.tick("2026-03-01T00:00:00Z");
    assert_eq!(ledger.count(TransactionType::Fee), 1, "an empty period bills nothing");
}

#[test]
fn an_inactive_subscription_stops_refreshes_and_fees_from_that_moment() {
    let p = fee_and_allowance("expire_and_replace");
    let mut sub = subscription(&p, "2026-01-01T00:00:00Z");
    let mut ledger = Ledger::new(vec![p]);
    ledger.subscriptions(vec![sub.clone()], "2026-01-01T00:00:00Z");
    sub.status = SubscriptionStatus::Inactive;
    ledger.subscriptions(vec![sub], "2026-01-20T00:00:00Z");
    ledger.tick("2026-06-01T00:00:00Z");
    assert_eq!(ledger.count(TransactionType::Fee), 1, "january's fee only");
    assert_eq!(ledger.count(TransactionType::Adjustment), 1, "january's grant only");
    let jan = format!("grant_{}", grant_tx(1, 0, "2026-01-01T00:00:00Z"));
    assert_eq!(
        ledger.tx(&format!("exp_{jan}")).map(|t| t.created_at),
        Some(at("2026-02-01T00:00:00Z")),
        "an issued grant keeps its expiry"
    );
}

#[test]
fn made_active_again_periods_resume_from_then_and_missed_periods_are_not_charged() {
    let p = plan(1, json!([fixed("20", monthly(), None)]), json!([]));
    let mut sub = subscription(&p, "2026-01-01T00:00:00Z");
    let mut ledger = Ledger::new(vec![p]);
    ledger.subscriptions(vec![sub.clone()], "2026-01-01T00:00:00Z");
    sub.status = SubscriptionStatus::Inactive;
    ledger.subscriptions(vec![sub.clone()], "2026-01-20T00:00:00Z");
    sub.status = SubscriptionStatus::Active;
    sub.anchored_at = Some(at("2026-04-10T00:00:00Z"));
    ledger.subscriptions(vec![sub], "2026-04-10T00:00:00Z");
    ledger.tick("2026-05-10T00:00:00Z");
    let fees: Vec<Timestamp> = ledger
        .out
        .transactions
        .values()
        .filter(|t| t.kind == TransactionType::Fee)
        .map(|t| t.created_at)
        .collect();
    assert_eq!(fees, [at("2026-01-01T00:00:00Z"), at("2026-04-10T00:00:00Z"), at("2026-05-10T00:00:00Z")]);
}

#[test]
fn a_version_change_starts_a_new_cycle_from_that_moment() {
    let life = json!({"duration": "month", "refresh": {"strategy": "expire_and_replace"}});
    let v1 = plan(1, json!([]), json!([entitlement("USD", 100, "bundled", life.clone())]));
    let mut v2 = plan(2, json!([]), json!([entitlement("USD", 300, "bundled", life)]));
    v2.id = v1.id.clone();
    let mut product = v1.clone();
    product.versions.push(v2.versions[0].clone());
    let mut sub = subscription(&v1, "2026-01-01T00:00:00Z");
    let mut ledger = Ledger::new(vec![product]);
    ledger.subscriptions(vec![sub.clone()], "2026-01-01T00:00:00Z");
    sub.products[0].version = 2;
    sub.anchored_at = Some(at("2026-01-15T00:00:00Z"));
    ledger.subscriptions(vec![sub], "2026-01-15T00:00:00Z");
    let v2_grant =
        ledger.tx(&grant_tx(2, 0, "2026-01-15T00:00:00Z")).expect("version 2's grant at the change");
    assert_eq!(v2_grant.amount, d("300"));
    let jan = format!("grant_{}", grant_tx(1, 0, "2026-01-01T00:00:00Z"));
    let old = ledger.state.accounts["default:USD"].grants.iter().find(|g| g.id == jan).expect("old grant");
    assert_eq!(old.expires_at, at("2026-02-01T00:00:00Z"), "issued grants keep their expiry");
    ledger.tick("2026-02-15T00:00:00Z");
    assert!(ledger.tx(&grant_tx(2, 0, "2026-02-15T00:00:00Z")).is_some(), "periods follow the new anchor");
    assert!(ledger.tx(&grant_tx(1, 0, "2026-02-01T00:00:00Z")).is_none(), "version 1 no longer refreshes");
}

#[test]
fn after_downtime_changes_are_applied_in_time_order_before_new_usage() {
    let life = json!({"duration": "month", "refresh": {"strategy": "expire_and_replace"}});
    let p = plan(1, json!([]), json!([entitlement("USD", 10, "bundled", life)]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    // Nothing for three months, then usage: the three missed periods come first.
    ledger.input(ledger_writer::fixtures::usage_fee(C, "late", "4", "2026-04-15T00:00:00Z"));
    let fee = ledger.tx(&rater::fixtures::fee_id("late", "price_1")).expect("the usage fee");
    let april = format!("grant_{}", grant_tx(1, 0, "2026-04-01T00:00:00Z"));
    assert_eq!(fee.lines[0].grant.as_deref(), Some(april.as_str()), "paid from april's credit");
    assert_eq!(ledger.count(TransactionType::Expiry), 3, "january to march written off");
    assert_eq!(ledger.available("default:USD", "2026-04-15T00:00:00Z"), d("6"));
}

#[test]
fn a_tick_applied_again_or_late_changes_nothing_more() {
    let p = fee_and_allowance("rollover");
    let sub = subscription(&p, "2026-01-01T00:00:00Z");
    let mut ledger = Ledger::new(vec![p]);
    ledger.subscriptions(vec![sub.clone()], "2026-01-01T00:00:00Z");
    ledger.tick("2026-03-01T00:00:00Z");
    let before = (ledger.out.transactions.clone(), ledger.available("default:USD", "2026-03-01T00:00:00Z"));
    // The same snapshot again (a retried API tick), a late scheduler tick, an earlier time.
    ledger.tick_with(
        "2026-03-01T00:00:00Z",
        Some(CustomerSnapshot { revision: 1, test_clock: None, subscriptions: vec![sub] }),
    );
    ledger.tick("2026-02-01T00:00:00Z");
    ledger.tick("2026-03-01T00:00:00Z");
    assert_eq!(
        (ledger.out.transactions.clone(), ledger.available("default:USD", "2026-03-01T00:00:00Z")),
        before
    );
}

#[test]
fn an_older_customer_snapshot_arriving_later_is_ignored() {
    let p = plan(1, json!([fixed("20", monthly(), None)]), json!([]));
    let mut sub = subscription(&p, "2026-01-01T00:00:00Z");
    let mut ledger = Ledger::new(vec![p]);
    ledger.subscriptions(vec![sub.clone()], "2026-01-01T00:00:00Z");
    sub.status = SubscriptionStatus::Inactive;
    ledger.subscriptions(vec![sub.clone()], "2026-01-10T00:00:00Z");
    sub.status = SubscriptionStatus::Active;
    ledger.tick_with(
        "2026-01-11T00:00:00Z",
        Some(CustomerSnapshot { revision: 1, test_clock: None, subscriptions: vec![sub] }),
    );
    ledger.tick("2026-03-01T00:00:00Z");
    assert_eq!(ledger.count(TransactionType::Fee), 1, "revision 1 is older than the inactive revision 2");
}

#[test]
fn a_promotion_entitlement_takes_its_own_priority_and_recognises_no_revenue() {
    let mut promo = entitlement("USD", 10, "promotion", json!({"duration": "month"}));
    promo["priority"] = json!(50);
    let bundled = json!({"name": "b", "asset": "USD", "amount": 10, "purpose": "bundled",
        "lifecycle": {"duration": "month"}, "accounting": {"revenue_basis": 0.5, "cost_basis": "auto"}});
    let p = plan(1, json!([]), json!([promo, bundled]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    ledger.charge("spend", "15", "2026-01-05T00:00:00Z");
    let spend = ledger.tx("spend").expect("charge");
    // Bundled (20) before promotion (50 here); 10 bundled at 0.5 + 5 promotion at 0.
    assert_eq!(spend.lines[0].grant.as_deref().map(|g| g.contains(".e1.")), Some(true));
    assert_eq!(spend.revenue, d("5"));
}

#[test]
fn an_adjustment_grant_is_due_at_its_expiry_without_the_customer_being_touched() {
    let mut ledger = Ledger::new(Vec::new());
    let mut gift = adjustment(C, "gift", "5", AdjustmentReason::Gift, "2026-01-01T00:00:00Z");
    gift.request.expires_at = Some(at("2026-01-20T00:00:00Z"));
    ledger.input(LedgerInput::Adjustment(gift));
    assert_eq!(ledger.state.next_due(), Some(at("2026-01-20T00:00:00Z")));
    ledger.tick("2026-01-20T00:00:00Z");
    let expiry = ledger.tx("exp_grant_gift").expect("posted by the tick");
    assert_eq!((expiry.amount, expiry.executed_at), (d("-5"), at("2026-01-20T00:00:00Z")));
    assert!(ledger.out.outbox.iter().any(|(_, e)| e.kind == "grant.expired"));
    assert_eq!(ledger.state.next_due(), None);
}

#[test]
fn a_closing_charge_is_paid_from_credit_valid_during_the_period() {
    let billing = json!({"type": "recurring", "recurring": {"interval": "month"}});
    let p = plan(1, json!([fixed("5", billing, Some("in_arrears"))]), json!([]));
    let mut ledger = subscribed(p, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let mut paid = adjustment(C, "paid", "8", AdjustmentReason::ExternalTopup, "2026-01-01T00:00:00Z");
    paid.request.expires_at = Some(at("2026-02-01T00:00:00Z"));
    ledger.input(LedgerInput::Adjustment(paid));
    ledger.tick("2026-02-01T00:00:00Z");
    let fee = ledger.tx(&fee_tx("price_1_0", "2026-01-01T00:00:00Z")).expect("january's fee");
    assert_eq!(fee.lines[0].kind, "from_grant", "credit expiring as the period ends still pays for it");
    assert_eq!(ledger.tx("exp_grant_paid").map(|t| t.amount), Some(d("-3")));
}

#[test]
fn post_paid_usage_bills_one_fee_per_dimension_combination_in_whole_packages_of_the_period() {
    let price = rater::fixtures::usage_price(
        "call",
        "volume",
        json!({"pricing_model": "package", "billing_model": monthly(), "billable_dimensions": ["model"]}),
        json!([{"asset": "USD", "values": [
            {"dimensions": {"model": "big"}, "values": [{"volume_rate": 2, "package_size": 100}]},
            {"dimensions": {"model": "*"}, "values": [{"volume_rate": 1, "package_size": 100}]}
        ]}]),
    );
    let p = plan(1, json!([price]), json!([]));
    let mut ledger = subscribed(p.clone(), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let call =
        |id: &str, model: &str, volume: u32| postpaid_call(&p, id, json!({"volume": volume, "model": model}));
    // big: 60 + 60 = 120 -> 2 packages at 2; small: 30 + 30 = 60 -> 1 package at 1 (per event it
    // would have been 4 + 2 packages).
    let events =
        vec![call("b1", "big", 60), call("b2", "big", 60), call("s1", "small", 30), call("s2", "small", 30)];
    ledger.input(usage(C, "2026-01-10T00:00:00Z", events));
    ledger.tick("2026-02-01T00:00:00Z");
    let first = fee_tx("price_1_0", "2026-01-01T00:00:00Z");
    let mut fees: Vec<Decimal> = [first.clone(), format!("{first}.1")]
        .iter()
        .map(|id| ledger.tx(id).map(|t| t.amount).expect("one fee per combination"))
        .collect();
    fees.sort();
    assert_eq!(fees, [d("-4"), d("-1")]);
}
