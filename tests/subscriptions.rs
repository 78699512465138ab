//! A hybrid customer lives through 13 months on a test clock (`semantics.md` §6, §7, §12), and
//! the ledger it ends with equals one computed by hand, here. The same run with the server
//! killed (`kill -9`) in the middle of every period boundary gives the identical ledger.
//!
//! The plan: a $20 monthly fee (in advance, from USD), 1,000 CREDIT bundled each month
//! (`expire_and_replace`, written in the integration guide's older `refresh` shape, revenue
//! basis 0.02 USD per credit), 100 CREDIT promotion each month with `rollover` (priority 40, so
//! the bundled credit goes first and the promotion piles up), images at 10 CREDIT in real time,
//! API calls post-paid at 0.01 USD each, billed per month. The customer gets a $300 paid
//! adjustment on day one (it expires a year later) and, every day from 2027-01-01 to
//! 2028-01-31, makes 2 images and 5 API calls. The clock ends at 2028-02-01.

mod common;

use chrono::{Datelike, Months, Utc};
use common::process::{self, Process};
use common::{dec, must, request, unique, KEY};
use schemas::{Decimal, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// One heavy test at a time: both runs post ~800 requests and the crash run restarts 13 times.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const START: &str = "2027-01-01T00:00:00Z";
const END: &str = "2028-02-01T00:00:00Z";
/// Months from `START` whose periods close before `END` (January 2027 to January 2028).
const MONTHS: u32 = 13;

fn at(text: &str) -> Timestamp {
    text.parse().expect("time")
}

fn month_start(m: u32) -> Timestamp {
    at(START).checked_add_months(Months::new(m)).expect("month")
}

fn days_in(m: u32) -> i64 {
    (month_start(m + 1) - month_start(m)).num_days()
}

fn rfc(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What the test needs to find the customer's transactions.
struct Ids {
    credit: String,
    customer: String,
    clock: String,
    subscription: String,
    version: String,
    fee_price: String,
    postpaid_price: String,
}

/// The server under test: its address, and (crash run) the process to kill at boundaries.
struct Target {
    base: RwLock<String>,
    process: Option<Process>,
    dir: Option<tempfile::TempDir>,
}

impl Target {
    fn base(&self) -> String {
        self.base.read().expect("base").clone()
    }

    fn must(&self, expected: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        must(&self.base(), expected, method, path, body)
    }

    /// Moves the clock to `to`. In the crash run, at a period boundary the server is killed
    /// while the advance is in flight, restarted, and the advance sent again until answered.
    fn advance(&mut self, ids: &Ids, to: Timestamp, boundary: bool) {
        let path = format!("/test-clocks/{}/advance", ids.clock);
        let body = json!({"frozen_time": rfc(to)});
        if let (true, Some(_)) = (boundary, &self.process) {
            let base = self.base();
            let (path2, body2) = (path.clone(), body.to_string());
            let inflight = std::thread::spawn(move || {
                let _ = std::panic::catch_unwind(|| request(&base, Some(KEY), "POST", &path2, Some(body2)));
            });
            std::thread::sleep(std::time::Duration::from_millis(15));
            self.process.take().expect("process").kill_9();
            let _ = inflight.join();
            let dir = self.dir.as_ref().expect("data dir").path().to_path_buf();
            let restarted = process::start(&dir);
            *self.base.write().expect("base") = restarted.base.clone();
            self.process = Some(restarted);
        }
        common::send_until_acknowledged(&self.base, "POST", &path, &body);
    }
}

fn setup(target: &Target) -> Ids {
    let credit = unique("CR").to_uppercase().replace('-', "");
    target.must(
        201,
        "POST",
        "/assets",
        Some(json!({
            "code": credit, "name": "Credits", "precision": 0, "symbol": "⭐", "label": "CR",
            "rates": [{"source": "USD", "rate": 0.05}]
        })),
    );
    let code = unique("premium-");
    let product = target.must(201, "POST", "/products", Some(json!({
        "name": "Premium Plan", "code": code,
        "entitlements": [
            {"name": "Monthly Credit Allowance", "asset": credit, "amount": 1000, "purpose": "bundled",
             "refresh": {"interval": "month", "strategy": "expire_and_replace"},
             "accounting": {"revenue_basis": 0.02, "cost_basis": "auto"}},
            {"name": "Loyalty credits", "asset": credit, "amount": 100, "purpose": "promotion", "priority": 40,
             "lifecycle": {"duration": "month", "refresh": {"strategy": "rollover"}}}
        ],
        "prices": [
            {"name": "Monthly Subscription Fee", "type": "fixed",
             "billing_model": {"type": "recurring", "recurring": {"interval": "month"}},
             "pricing": [{"asset": "USD", "values": [{"unit_price": 20}]}]},
            {"name": "Image Generation", "type": "usage_based", "billing_model": {"type": "real_time"},
             "usage_calculation": {"event_type": "image_generated", "usage_type": "unit"},
             "pricing": [{"asset": credit, "values": [{"unit_price": 10}]}]},
            {"name": "API calls", "type": "usage_based",
             "billing_model": {"type": "recurring", "recurring": {"interval": "month"}},
             "usage_calculation": {"event_type": "api_call", "usage_type": "unit"},
             "pricing": [{"asset": "USD", "values": [{"unit_price": 0.01}]}]}
        ],
        "publish": true
    })));
    let product_id = product["id"].as_str().expect("product id").to_string();
    let version = target.must(200, "GET", &format!("/products/{product_id}/1"), None);
    let price_id = |i: usize| version["prices"][i]["id"].as_str().expect("price id").to_string();
    let clock =
        target.must(201, "POST", "/test-clocks", Some(json!({"frozen_time": START, "name": "13 months"})));
    let clock_id = clock["id"].as_str().expect("clock id").to_string();
    let customer = target.must(
        201,
        "POST",
        "/customers",
        Some(json!({
            "name": "Hybrid Co", "external_id": unique("hybrid-"), "test_clock": clock_id,
            "subscriptions": [{"products": [{"code": code}]}]
        })),
    );
    let subscribers = target.must(200, "GET", &format!("/products/{product_id}/subscribers"), None);
    let rate_plan = subscribers["items"][0]["product_rate_plan_id"].as_str().expect("rate plan").to_string();
    let ids = Ids {
        credit,
        customer: customer["id"].as_str().expect("customer").to_string(),
        clock: clock_id,
        subscription: customer["subscriptions"][0]["id"].as_str().expect("subscription").to_string(),
        version: rate_plan,
        fee_price: price_id(0),
        postpaid_price: price_id(2),
    };
    target.must(
        201,
        "POST",
        &format!("/customers/{}/wallet/adjustments", ids.customer),
        Some(json!({
            "transaction_id": "topup", "asset": "USD", "amount": 300, "reason": "external_topup"
        })),
    );
    ids
}

/// Every day from `START` to the day before `END`: the clock moves to noon, then the day's usage.
fn live_thirteen_months(target: &mut Target, ids: &Ids) {
    let mut day = at(START) + chrono::Duration::hours(12);
    let mut month = day.month();
    while day < at(END) {
        let boundary = day.month() != month;
        month = day.month();
        target.advance(ids, day, boundary);
        let stamp = rfc(day);
        let tag = day.format("%Y%m%d");
        let mut events: Vec<Value> = (0..2)
            .map(|i| json!({"id": format!("img-{tag}-{i}"), "event_type": "image_generated", "occurred_at": stamp, "data": {}}))
            .collect();
        events.extend((0..5).map(|i| {
            json!({"id": format!("api-{tag}-{i}"), "event_type": "api_call", "occurred_at": stamp, "data": {}})
        }));
        let body = json!({"customer_id": ids.customer, "events": events});
        common::send_until_acknowledged(&target.base, "POST", "/events", &body);
        day += chrono::Duration::days(1);
    }
    target.advance(ids, at(END), true);
}

/// The ledger as the API shows it: every transaction the plan implies, balances, live grants,
/// revenue and the subscription, by line (the custom asset's random code shown as `CREDIT`).
fn ledger_summary(target: &Target, ids: &Ids) -> BTreeMap<String, String> {
    let c = &ids.customer;
    let mut lines = BTreeMap::new();
    let tx = |id: &str| -> String {
        let v = target.must(200, "GET", &format!("/customers/{c}/wallet/transactions/{id}"), None);
        format!("{} {} {} at {}", v["type"], v["amount"], v["asset"], v["created_at"])
            .replace(&ids.credit, "CREDIT")
    };
    for m in 0..=MONTHS {
        let ms = month_start(m).timestamp_millis();
        let bundled = format!("{}.{}.e0.{ms}", ids.subscription, ids.version);
        let promotion = format!("{}.{}.e1.{ms}", ids.subscription, ids.version);
        lines.insert(format!("month {m:02} bundled grant"), tx(&bundled));
        lines.insert(format!("month {m:02} promotion grant"), tx(&promotion));
        lines
            .insert(format!("month {m:02} fee"), tx(&format!("{}.{}.{ms}", ids.subscription, ids.fee_price)));
        if m < MONTHS {
            lines.insert(format!("month {m:02} bundled expiry"), tx(&format!("exp_grant_{bundled}")));
            let calls = format!("{}.{}.{ms}", ids.subscription, ids.postpaid_price);
            lines.insert(format!("month {m:02} api calls"), tx(&calls));
        }
    }
    lines.insert("top-up expiry".into(), tx("exp_grant_topup"));
    let wallet = target.must(200, "GET", &format!("/customers/{c}/wallet"), None);
    for account in wallet["accounts"].as_array().expect("accounts") {
        let id = account["id"].as_str().expect("id");
        let name = id.replace(&ids.credit, "CREDIT");
        lines.insert(format!("available {name}"), account["available"].to_string());
        let path = format!("/customers/{c}/wallet/{id}/grants?exclude_expired=true&limit=100");
        let grants = target.must(200, "GET", &path, None);
        let live: Vec<String> = grants["items"]
            .as_array()
            .expect("grants")
            .iter()
            .filter(|g| dec(&g["available"].to_string()) > Decimal::ZERO)
            .map(|g| format!("{} {} until {}", g["purpose"], g["available"], g["expires_at"]))
            .collect();
        lines.insert(format!("live grants {name}"), live.join("; "));
    }
    let stats = target.must(
        200,
        "GET",
        &format!("/customers/{c}/stats?period_from=2027-01-01&period_to=2028-02-01"),
        None,
    );
    lines.insert("gross revenue".into(), stats["gross_revenue"].to_string());
    let customer = target.must(200, "GET", &format!("/customers/{c}"), None);
    let sub = &customer["subscriptions"][0];
    lines.insert("subscription".into(), format!("{} renews {}", sub["status"], sub["renews_at"]));
    lines
}

/// The same lines, computed by hand from the plan.
fn expected_summary() -> BTreeMap<String, String> {
    let q = |t: Timestamp| format!("\"{}\"", rfc(t));
    let money = |d: Decimal| d.normalize().to_string();
    let mut lines = BTreeMap::new();
    let mut revenue = Decimal::ZERO;
    for m in 0..=MONTHS {
        let start = q(month_start(m));
        let days = Decimal::from(days_in(m));
        lines.insert(
            format!("month {m:02} bundled grant"),
            format!("\"adjustment\" 1000 \"CREDIT\" at {start}"),
        );
        // The promotion is never touched (the bundled credit goes first): it rolls over whole.
        let promotion = 100 * (m + 1);
        lines.insert(
            format!("month {m:02} promotion grant"),
            format!("\"adjustment\" {promotion} \"CREDIT\" at {start}"),
        );
        lines.insert(format!("month {m:02} fee"), format!("\"fee\" -20 \"USD\" at {start}"));
        if m < MONTHS {
            // 2 images a day at 10 credits, all from the bundled grant, recognised at 0.02.
            let used = Decimal::from(20) * days;
            revenue += used * Decimal::new(2, 2);
            let end = q(month_start(m + 1));
            let left = money(Decimal::from(1000) - used);
            lines.insert(
                format!("month {m:02} bundled expiry"),
                format!("\"expiry\" -{left} \"CREDIT\" at {end}"),
            );
            let calls = money(Decimal::new(5, 2) * days);
            lines.insert(format!("month {m:02} api calls"), format!("\"fee\" -{calls} \"USD\" at {end}"));
        }
    }
    // USD in time order: each month's fee at its start, the month before's calls just before
    // it; the $300 expires on 2028-01-01 after December's calls, before January's fee.
    let (mut credit, mut debt) = (Decimal::from(300), Decimal::ZERO);
    let debit = |amount: Decimal, credit: &mut Decimal, debt: &mut Decimal| {
        let covered = amount.min(*credit);
        *credit -= covered;
        *debt += amount - covered;
    };
    for m in 0..=MONTHS {
        if m > 0 {
            debit(Decimal::new(5, 2) * Decimal::from(days_in(m - 1)), &mut credit, &mut debt);
        }
        if month_start(m) == at("2028-01-01T00:00:00Z") {
            lines.insert(
                "top-up expiry".into(),
                format!("\"expiry\" -{} \"USD\" at \"2028-01-01T00:00:00Z\"", money(credit)),
            );
            revenue += credit; // breakage
            credit = Decimal::ZERO;
        }
        debit(Decimal::from(20), &mut credit, &mut debt);
    }
    // Every USD fee is revenue at 1 (from paid credit or as debt): 14 fees, 13 months of calls.
    let days: i64 = (0..MONTHS).map(days_in).sum();
    revenue += Decimal::from(20 * 14) + Decimal::new(5, 2) * Decimal::from(days);
    lines.insert("available default:USD".into(), money(-debt));
    lines.insert("live grants default:USD".into(), String::new());
    lines.insert("available default:CREDIT".into(), "2400".into());
    lines.insert(
        "live grants default:CREDIT".into(),
        "\"bundled\" 1000 until \"2028-03-01T00:00:00Z\"; \"promotion\" 1400 until \"2028-03-01T00:00:00Z\""
            .into(),
    );
    lines.insert("gross revenue".into(), money(revenue));
    lines.insert("subscription".into(), "\"active\" renews \"2028-03-01T00:00:00Z\"".into());
    lines
}

fn check(actual: &BTreeMap<String, String>) {
    for (what, value) in actual {
        println!("{what:>28}: {value}");
    }
    assert_eq!(actual, &expected_summary());
}

#[test]
fn thirteen_months_of_a_hybrid_customer_equal_the_hand_computed_ledger() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = common::TestServer::start();
    let mut target = Target { base: RwLock::new(server.base.clone()), process: None, dir: None };
    let ids = setup(&target);
    live_thirteen_months(&mut target, &ids);
    check(&ledger_summary(&target, &ids));
}

#[test]
fn thirteen_months_killed_at_every_period_boundary_give_the_identical_ledger() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("dir");
    let server = process::start(dir.path());
    let mut target = Target { base: RwLock::new(server.base.clone()), process: Some(server), dir: Some(dir) };
    let ids = setup(&target);
    live_thirteen_months(&mut target, &ids);
    check(&ledger_summary(&target, &ids));
}

// ---------------------------------------------------------------------------------------------
// The same rules on the wall clock, and what the API refuses.

fn premium(server: &common::TestServer, extra_price: Option<Value>) -> (String, String) {
    let code = unique("plan-");
    let mut prices = vec![json!({"name": "Monthly fee", "type": "fixed",
        "billing_model": {"type": "recurring", "recurring": {"interval": "month"}},
        "pricing": [{"asset": "USD", "values": [{"unit_price": 20}]}]})];
    prices.extend(extra_price);
    let product = server.expect(201, "POST", "/products", json!({
        "name": "Plan", "code": code, "publish": true, "prices": prices,
        "entitlements": [{"name": "Allowance", "asset": "USD", "amount": 5, "purpose": "promotion",
                          "lifecycle": {"duration": "day", "refresh": {"strategy": "expire_and_replace"}}}]
    }));
    (product["id"].as_str().expect("id").to_string(), code)
}

#[test]
fn a_subscription_is_billed_as_soon_as_it_is_created() {
    let server = common::TestServer::start();
    let (_, code) = premium(&server, None);
    let customer = server.expect(
        201,
        "POST",
        "/customers",
        json!({
            "name": "Now", "subscriptions": [{"products": [{"code": code}]}]
        }),
    );
    let id = customer["id"].as_str().expect("id");
    let sub = &customer["subscriptions"][0];
    assert_eq!(sub["status"], "active");
    let renews: Timestamp = sub["renews_at"].as_str().expect("renews_at").parse().expect("time");
    let started: Timestamp = sub["started_at"].as_str().expect("started_at").parse().expect("time");
    assert_eq!(renews, started.checked_add_months(Months::new(1)).expect("month"), "one period on");
    // The $20 fee and the 5 USD promotion grant are posted before the 201.
    assert_eq!(common::available(&server.base, id, "default:USD"), dec("-15"));
}

#[test]
fn a_grant_expires_on_time_without_the_customer_being_touched() {
    let server = common::TestServer::start();
    let customer = server.expect(201, "POST", "/customers", json!({"name": "Idle"}));
    let id = customer["id"].as_str().expect("id");
    let expires = (Utc::now() + chrono::Duration::milliseconds(1500))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    server.expect(
        201,
        "POST",
        &format!("/customers/{id}/wallet/adjustments"),
        json!({
            "transaction_id": "short", "asset": "USD", "amount": 7, "reason": "gift", "expires_at": expires
        }),
    );
    // Nothing else is sent for this customer: the scheduler posts the expiry.
    let expiry = common::eventually("the expiry is posted", || {
        let (status, body) =
            server.call("GET", &format!("/customers/{id}/wallet/transactions/exp_grant_short"), None);
        (status == 200).then_some(body)
    });
    assert_eq!(expiry["type"], "expiry");
    assert_eq!(dec(&expiry["amount"].to_string()), dec("-7"));
    let created: Timestamp = expiry["created_at"].as_str().expect("created_at").parse().expect("time");
    assert_eq!(created, expires.parse::<Timestamp>().expect("time"), "dated when the grant expired");
}

#[test]
fn a_scheduled_subscription_is_stored_as_active_once_it_starts() {
    let server = common::TestServer::start();
    let (_, code) = premium(&server, None);
    let starts = Utc::now() + chrono::Duration::milliseconds(1500);
    let customer = server.expect(
        201,
        "POST",
        "/customers",
        json!({
            "name": "Later", "subscriptions": [{"products": [{"code": code}],
                "starts_at": starts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}]
        }),
    );
    let id = customer["id"].as_str().expect("id");
    assert_eq!(customer["subscriptions"][0]["status"], "scheduled");
    assert_eq!(
        common::available(&server.base, id, "default:USD"),
        dec("0"),
        "nothing billed before its start"
    );
    // `active_subscription_count` counts what is stored: the scheduler stored the change.
    common::eventually("stored as active", || {
        let c = server.get(&format!("/customers/{id}"));
        (c["active_subscription_count"] == 1 && c["subscriptions"][0]["status"] == "active").then_some(())
    });
    common::eventually("billed at its start", || {
        (common::available(&server.base, id, "default:USD") == dec("-15")).then_some(())
    });
}

#[test]
fn bad_subscription_catalog_input_is_a_422_naming_the_field_and_creates_nothing() {
    let server = common::TestServer::start();
    let entitlement = |patch: Value| {
        let mut e = json!({"name": "A", "asset": "USD", "amount": 10, "purpose": "bundled",
            "lifecycle": {"duration": "month", "refresh": {"strategy": "rollover"}}});
        for (k, v) in patch.as_object().expect("patch") {
            e[k] = v.clone();
        }
        e
    };
    let fee = |patch: Value| {
        let mut p = json!({"name": "Fee", "type": "fixed",
            "billing_model": {"type": "recurring", "recurring": {"interval": "month"}},
            "pricing": [{"asset": "USD", "values": [{"unit_price": 1}]}]});
        for (k, v) in patch.as_object().expect("patch") {
            p[k] = v.clone();
        }
        p
    };
    let cases = [
        (json!([entitlement(json!({"asset": "NOPE"}))]), json!([fee(json!({}))]), "entitlements[0].asset"),
        (json!([entitlement(json!({"amount": 0}))]), json!([fee(json!({}))]), "entitlements[0].amount"),
        (
            json!([entitlement(json!({"lifecycle": {"duration": "month", "duration_count": 0}}))]),
            json!([fee(json!({}))]),
            "entitlements[0].lifecycle.duration_count",
        ),
        (
            json!([entitlement(
                json!({"lifecycle": {"duration": "month", "refresh": {"strategy": "hoard"}}})
            )]),
            json!([fee(json!({}))]),
            "entitlements[0].lifecycle.refresh.strategy",
        ),
        (
            json!([entitlement(json!({"lifecycle": {"duration": "fortnight"}}))]),
            json!([fee(json!({}))]),
            "entitlements[0].lifecycle.duration",
        ),
        (
            json!([]),
            json!([fee(json!({"usage_calculation": {"event_type": "x", "usage_type": "unit"}}))]),
            "prices[0]",
        ),
        (
            json!([]),
            json!([fee(json!({"billing_model": {"type": "recurring", "recurring": {"interval": "hour"}}}))]),
            "prices[0].billing_model.recurring.interval",
        ),
        (json!([]), json!([fee(json!({"collection": {"type": "invoice"}}))]), "prices[0].collection.type"),
    ];
    for (entitlements, prices, field) in cases {
        let code = unique("bad-");
        let body = json!({"name": "Bad", "code": code, "publish": true, "prices": prices, "entitlements": entitlements});
        let (status, problem) = server.call("POST", "/products", Some(body));
        assert_eq!(status, 422, "{field}: {problem}");
        let named = problem["errors"].as_object().expect("errors").keys().any(|k| k.starts_with(field));
        assert!(named, "{field} not named in {problem}");
    }
    let listed = server.get("/products");
    assert_eq!(listed["total_count"], 0, "no refused product was stored: {listed}");
}

#[test]
fn a_test_clock_never_goes_backwards_and_an_unknown_one_attaches_nothing() {
    let server = common::TestServer::start();
    let clock = server.expect(201, "POST", "/test-clocks", json!({"frozen_time": "2027-05-01T00:00:00Z"}));
    let id = clock["id"].as_str().expect("id");
    assert_eq!(clock["status"], "ready");
    let (status, problem) = server.call(
        "POST",
        &format!("/test-clocks/{id}/advance"),
        Some(json!({"frozen_time": "2027-04-30T00:00:00Z"})),
    );
    assert_eq!(status, 422, "{problem}");
    assert!(problem["errors"]["frozen_time"].is_array(), "{problem}");
    assert_eq!(server.get(&format!("/test-clocks/{id}"))["frozen_time"], "2027-05-01T00:00:00Z", "unchanged");
    let (status, problem) = server.call(
        "POST",
        "/customers",
        Some(json!({"name": "X", "external_id": "clocked", "test_clock": "clock_nope"})),
    );
    assert_eq!(status, 422, "{problem}");
    assert!(problem["errors"]["test_clock"].is_array(), "{problem}");
    assert_eq!(server.get("/customers?external_id=clocked")["total_count"], 0, "no customer was created");
    let (status, _) = server.call("GET", "/test-clocks/clock_nope", None);
    assert_eq!(status, 404);
    let (status, _) = server.call("DELETE", &format!("/test-clocks/{id}"), None);
    assert_eq!(status, 204);
    let (status, _) = server.call("GET", &format!("/test-clocks/{id}"), None);
    assert_eq!(status, 404);
}

#[test]
fn usage_of_a_test_clock_customer_is_judged_against_the_clocks_time() {
    let server = common::TestServer::start();
    let (_, code) = premium(&server, None);
    let clock = server.expect(201, "POST", "/test-clocks", json!({"frozen_time": "2030-01-01T00:00:00Z"}));
    let clock_id = clock["id"].as_str().expect("id");
    let customer = server.expect(
        201,
        "POST",
        "/customers",
        json!({
            "name": "Future", "test_clock": clock_id, "subscriptions": [{"products": [{"code": code}]}]
        }),
    );
    let id = customer["id"].as_str().expect("id");
    assert_eq!(customer["subscriptions"][0]["started_at"], "2030-01-01T00:00:00Z");
    let event = |when: &str| json!({"customer_id": id, "events": [{"id": unique("e-"), "event_type": "x", "occurred_at": when}]});
    let (status, _) = server.call("POST", "/events", Some(event("2030-01-01T00:00:00Z")));
    assert_eq!(status, 204, "inside the clock's grace window");
    let (status, problem) = server.call("POST", "/events", Some(event(&common::now())));
    assert_eq!(status, 422, "years before the clock's time: {problem}");
    // One monthly fee (20) and three daily 5 USD allowances: the first pays part of the fee, the
    // next two repay its debt as they land.
    server.expect(
        200,
        "POST",
        &format!("/test-clocks/{clock_id}/advance"),
        json!({"frozen_time": "2030-01-03T12:00:00Z"}),
    );
    assert_eq!(common::available(&server.base, id, "default:USD"), dec("-5"));
    let grants = server.get(&format!("/customers/{id}/wallet/default:USD/grants"));
    assert_eq!(grants["total_count"], 3, "{grants}");
}
