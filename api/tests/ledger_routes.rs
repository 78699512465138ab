//! The wallet, event, stats and metrics routes through the router, over an embedded store and
//! log. Ledger documents are seeded directly, or posted by the real ledger writers (the whole
//! pipeline with raters is exercised by the root package's end-to-end tests).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use eventlog::LogOptions;
use ledger_writer::posting::{Account, NewGrant};
use ledger_writer::{LedgerClient, LedgerState, Posted};
use schemas::ledger::{Purpose, StoredEvent, Transaction, TransactionType};
use schemas::usage::{CostData, UsageEvent};
use schemas::{Decimal, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use store::{Op, SharedStore, Table};
use tower::ServiceExt;

const KEY: &str = "sk_test_ledger_routes";

struct Harness {
    app: Router,
    store: SharedStore,
    /// Keeps the writers running while the harness lives.
    _writers: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// With `writer`, the ledger writers run and post every adjustment and charge.
    async fn start(writer: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: SharedStore =
            Arc::new(store::EmbeddedStore::open(dir.path().join("store")).expect("store"));
        let options = LogOptions { partitions: 2, ..LogOptions::default() };
        let log =
            eventlog::open(&format!("embedded:{}", dir.path().join("log").display()), options).expect("log");
        api::auth::provision_test_key(store.as_ref(), Some(KEY)).await.expect("key");
        let posted = Posted::new(2);
        let (writers, stop) = tokio::sync::watch::channel(false);
        if writer {
            let options = ledger_writer::WriterOptions::default();
            ledger_writer::spawn_all(store.clone(), log.clone(), posted.clone(), options, stop);
        }
        let ingest = Arc::new(ingest::Ingest::new(store.clone(), log.clone(), Default::default()));
        let state =
            api::AppState::load(store.clone(), ingest, LedgerClient::new(log, posted)).await.expect("state");
        Self { app: api::router(state), store, _writers: writers, _dir: dir }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(api::auth::HEADER, KEY)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let response = self.app.clone().oneshot(req).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn get(&self, uri: &str) -> Value {
        let (status, body) = self.call("GET", uri, None).await;
        assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
        body
    }

    async fn customer(&self, name: &str, external_id: &str) -> String {
        let (status, body) =
            self.call("POST", "/customers", Some(json!({"name": name, "external_id": external_id}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    async fn put<T: serde::Serialize>(&self, table: Table, key: &str, doc: &T) {
        self.store.write(vec![Op::put_doc(table, key, doc).expect("encode")]).await.expect("write");
    }
}

fn posted_transaction(
    kind: TransactionType,
    customer: &str,
    id: &str,
    amount: Decimal,
    at: Timestamp,
    body_hash: &str,
) -> Transaction {
    Transaction {
        id: id.into(),
        kind,
        customer_id: customer.into(),
        account_id: "default:USD".into(),
        asset: "USD".into(),
        amount,
        description: None,
        metadata: None,
        created_at: at,
        executed_at: at,
        lines: Vec::new(),
        event_id: None,
        body_hash: (!body_hash.is_empty()).then(|| body_hash.to_string()),
        revenue: Decimal::ZERO,
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn grant(
    id: &str,
    purpose: Purpose,
    amount: &str,
    effective_at: Timestamp,
    expires_at: Timestamp,
) -> NewGrant {
    NewGrant {
        id: id.into(),
        purpose,
        amount: d(amount),
        effective_at,
        expires_at,
        priority: None,
        revenue_basis: Decimal::ONE,
        source: id.into(),
    }
}

fn cost(vendor: &str, category: &str, amount: &str) -> CostData {
    serde_json::from_value(json!({"vendor_id": vendor, "category": category, "amount": d(amount)}))
        .expect("cost")
}

fn event(id: &str, customer: &str, event_type: &str, occurred_at: &str, costs: Vec<CostData>) -> StoredEvent {
    StoredEvent {
        customer_id: customer.into(),
        customer_external_id: None,
        event: UsageEvent {
            id: id.into(),
            event_type: event_type.into(),
            occurred_at: at(occurred_at),
            subject: None,
            description: None,
            data: BTreeMap::new(),
            costs: (!costs.is_empty()).then_some(costs),
        },
        created_at: at(occurred_at),
        fees: Vec::new(),
        warnings: Vec::new(),
        revenue: Decimal::ZERO,
    }
}

#[tokio::test]
async fn the_wallet_unites_provisioned_accounts_with_the_ledger_and_shows_grants_and_transactions() {
    let h = Harness::start(false).await;
    let customer = h.customer("Ada", "ext-ada").await;
    let now = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    let mut usd = Account::new();
    usd.credit(grant("g_paid", Purpose::Paid, "10", now - day, now + day * 30), now - day).expect("credit");
    usd.credit(grant("g_promo", Purpose::Promotion, "5", now - day, now + day * 30), now - day)
        .expect("credit");
    usd.credit(grant("g_old", Purpose::Paid, "3", now - day * 9, now - day * 2), now - day * 9)
        .expect("credit");
    usd.debit(d("4"), now).expect("debit");
    let mut ledger = LedgerState::new(&customer);
    ledger.accounts.insert("default:USD".into(), usd);
    h.put(Table::Ledger, &customer, &ledger).await;

    let wallet = h.get(&format!("/customers/{customer}/wallet")).await;
    assert_eq!(wallet["accounts"].as_array().map(Vec::len), Some(1), "{wallet}");
    assert_eq!(wallet["accounts"][0]["id"], "default:USD");
    assert_eq!(d(&wallet["accounts"][0]["available"].to_string()), d("11"));

    let account = h.get(&format!("/customers/{customer}/wallet/default:USD")).await;
    assert_eq!((account["name"].as_str(), account["asset"].as_str()), (Some("default"), Some("USD")));
    assert_eq!(d(&account["pending_in"].to_string()), Decimal::ZERO);
    let (status, _) = h.call("GET", &format!("/customers/{customer}/wallet/default:EUR"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.call("GET", "/customers/cust_missing/wallet/default:USD", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let grants = h.get(&format!("/customers/{customer}/wallet/default:USD/grants")).await;
    let shown: Vec<(String, Decimal)> = grants["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|g| (g["id"].as_str().unwrap_or_default().to_string(), d(&g["available"].to_string())))
        .collect();
    assert_eq!(
        shown,
        [("g_paid".to_string(), d("10")), ("g_promo".to_string(), d("1")), ("g_old".to_string(), d("0"))]
    );
    let promos = h.get(&format!("/customers/{customer}/wallet/default:USD/grants?purpose=promotion")).await;
    assert_eq!(promos["total_count"], 1, "{promos}");
    let live =
        h.get(&format!("/customers/{customer}/wallet/default:USD/grants?exclude_expired=true&limit=1")).await;
    assert_eq!((live["total_count"].as_u64(), live["items"].as_array().map(Vec::len)), (Some(2), Some(1)));

    let (status, _) = h.call("GET", &format!("/customers/{customer}/wallet/transactions/nope"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let fee = posted_transaction(TransactionType::Fee, &customer, "fee_1", d("-4"), now, "");
    h.put(Table::Transactions, &format!("{customer}/fee_1"), &fee).await;
    let txn = h.get(&format!("/customers/{customer}/wallet/transactions/fee_1")).await;
    assert_eq!((txn["type"].as_str(), txn["amount"].to_string()), (Some("fee"), "-4".to_string()));
    assert!(txn.get("lines").is_none(), "posting lines stay internal: {txn}");
}

#[tokio::test]
async fn adjustments_and_charges_are_posted_once_and_replayed_by_transaction_id() {
    let h = Harness::start(true).await;
    let customer = h.customer("Bo", "ext-bo").await;
    let uri = format!("/customers/{customer}/wallet/adjustments");
    let body =
        json!({"transaction_id": "refill-1", "asset": "USD", "amount": 25.5, "reason": "external_topup"});
    let (status, first) = h.call("POST", &uri, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["id"], "refill-1");
    let (status, replay) = h.call("POST", &uri, Some(body)).await;
    assert_eq!((status, &replay), (StatusCode::CREATED, &first), "a replay answers the original response");
    let other =
        json!({"transaction_id": "refill-1", "asset": "USD", "amount": 30, "reason": "external_topup"});
    let (status, conflict) = h.call("POST", &uri, Some(other)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");

    let invalid = json!({"transaction_id": "x", "asset": "NOPE", "amount": 0, "reason": "gift"});
    let (status, problem) = h.call("POST", &uri, Some(invalid)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(problem["errors"]["asset"].is_array() && problem["errors"]["amount"].is_array(), "{problem}");
    let refund = json!({"transaction_id": "r", "asset": "USD", "amount": 5, "reason": "external_refund"});
    assert_eq!(h.call("POST", &uri, Some(refund)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = json!({"transaction_id": "y", "asset": "USD", "amount": 1, "reason": "gift"});
    let (status, _) = h.call("POST", "/customers/cust_missing/wallet/adjustments", Some(missing)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let charges = format!("/customers/{customer}/wallet/charges");
    let charge =
        json!({"transaction_id": "setup-fee", "asset": "USD", "amount": 7.25, "description": "setup"});
    let (status, created) = h.call("POST", &charges, Some(charge.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(h.call("POST", &charges, Some(charge)).await, (StatusCode::CREATED, created));
    let negative = json!({"transaction_id": "neg", "asset": "USD", "amount": -1});
    assert_eq!(h.call("POST", &charges, Some(negative)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let txn = h.get(&format!("/customers/{customer}/wallet/transactions/setup-fee")).await;
    assert_eq!((txn["type"].as_str(), txn["amount"].to_string()), (Some("fee"), "-7.25".to_string()));
}

#[tokio::test]
async fn concurrent_requests_with_one_transaction_id_post_one_and_conflict_the_other() {
    let h = Arc::new(Harness::start(true).await);
    let customer = h.customer("Cy", "ext-cy").await;
    let uri = format!("/customers/{customer}/wallet/charges");
    let calls = [json!(1), json!(2)].map(|amount| {
        let (h, uri) = (h.clone(), uri.clone());
        let body = json!({"transaction_id": "race", "asset": "USD", "amount": amount});
        tokio::spawn(async move { h.call("POST", &uri, Some(body)).await.0 })
    });
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.expect("task"));
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
}

#[tokio::test]
async fn posted_events_are_listed_newest_first_and_shown_one_by_one() {
    let h = Harness::start(false).await;
    let a = h.customer("Ann", "ext-ann").await;
    let b = h.customer("Ben", "ext-ben").await;
    for e in [
        event("e1", &a, "chat", "2026-01-01T10:00:00Z", Vec::new()),
        event("e2", &a, "image", "2026-01-03T10:00:00Z", Vec::new()),
        event("e3", &b, "chat", "2026-01-02T10:00:00Z", vec![cost("vnd_x", "llm", "0.5")]),
    ] {
        h.put(Table::Events, &StoredEvent::key(&e.event.id, &e.customer_id), &e).await;
    }
    let all = h.get("/events").await;
    let ids: Vec<&str> =
        all["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, ["e2", "e3", "e1"]);
    assert_eq!(all["items"][1]["external_id"], "ext-ben");
    assert_eq!(all["items"][1]["stats"]["total_costs"].to_string(), "0.5");
    let ann = h.get("/events?customer_external_id=ext-ann&event_types=chat,image&period_to=2026-01-02").await;
    assert_eq!((ann["total_count"].as_u64(), ann["items"][0]["id"].as_str()), (Some(1), Some("e1")));
    let nobody = h.get("/events?customer_external_id=ext-nobody").await;
    assert_eq!(nobody["total_count"], 0);

    let one = h.get("/events/e3").await;
    assert_eq!((one["customer_id"].as_str(), one["event_type"].as_str()), (Some(b.as_str()), Some("chat")));
    assert_eq!(one["fees"], json!([]));
    assert_eq!(one["stats"]["net_revenue"].to_string(), "-0.5");
    assert_eq!(h.call("GET", "/events/e4", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stats_report_revenue_costs_and_margin_per_customer_and_vendor() {
    let h = Harness::start(false).await;
    let a = h.customer("Ann", "ext-ann").await;
    let b = h.customer("Ben", "ext-ben").await;
    let (status, vendor) =
        h.call("POST", "/vendors", Some(json!({"name": "OpenAI", "external_id": "openai"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{vendor}");
    let vendor = vendor["id"].as_str().expect("vendor id").to_string();
    for (customer, id, revenue, created_at) in [
        (&a, "t1", "8", "2026-01-05T00:00:00Z"),
        (&a, "t2", "2", "2026-02-05T00:00:00Z"),
        (&b, "t3", "4", "2026-01-06T00:00:00Z"),
    ] {
        let mut t = posted_transaction(TransactionType::Fee, customer, id, d("-1"), at(created_at), "");
        t.revenue = d(revenue);
        h.put(Table::Transactions, &format!("{customer}/{id}"), &t).await;
    }
    let mut by_external: CostData = cost("someone", "search", "0.25");
    by_external.vendor_external_id = Some("openai".into());
    for e in [
        event("e1", &a, "chat", "2026-01-10T00:00:00Z", vec![cost(&vendor, "llm", "1.5"), by_external]),
        event("e2", &b, "chat", "2026-01-11T00:00:00Z", vec![cost(&vendor, "llm", "5")]),
        event("e3", &a, "chat", "2026-03-11T00:00:00Z", vec![cost(&vendor, "llm", "100")]),
    ] {
        h.put(Table::Events, &StoredEvent::key(&e.event.id, &e.customer_id), &e).await;
    }
    let january = "period_from=2026-01-01&period_to=2026-01-31";
    let stats = h.get(&format!("/customers/{a}/stats?{january}")).await;
    assert_eq!(
        stats,
        json!({"gross_revenue": 8, "total_costs": 1.75, "net_revenue": 6.25, "margin": 78.12, "currency": "USD"})
    );
    let (status, _) = h
        .call("GET", &format!("/customers/{a}/stats?period_from=2026-02-01&period_to=2026-01-01"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.call("GET", "/customers/cust_missing/stats", None).await.0, StatusCode::NOT_FOUND);

    let page = h.get(&format!("/customers/stats?{january}&limit=1")).await;
    assert_eq!(
        (page["period_from"].as_str(), page["period_to"].as_str()),
        (Some("2026-01-01"), Some("2026-01-31"))
    );
    assert_eq!((page["total_count"].as_u64(), page["items"].as_array().map(Vec::len)), (Some(2), Some(1)));
    assert_eq!(page["items"][0]["external_id"], "ext-ann");
    assert_eq!(page["summary"]["gross_revenue"], json!(12));
    assert_eq!(page["summary"]["net_revenue"], json!(5.25));

    let vendor_stats = h.get(&format!("/vendors/{vendor}/stats?{january}")).await;
    assert_eq!(
        vendor_stats,
        json!({"total_costs": 6.75, "categories": [{"category": "llm", "cost": 6.5}, {"category": "search", "cost": 0.25}]})
    );
    let llm = h.get(&format!("/vendors/{vendor}/stats?{january}&category=search")).await;
    assert_eq!(llm["total_costs"], json!(0.25));
    assert_eq!(h.call("GET", "/vendors/vnd_missing/stats", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn post_events_hands_well_formed_requests_to_ingest() {
    let h = Harness::start(false).await;
    let customer = h.customer("Di", "ext-di").await;
    let now = chrono::Utc::now().to_rfc3339();
    let request =
        json!({"customer_id": customer, "events": [{"id": "e1", "event_type": "chat", "occurred_at": now}]});
    assert_eq!(h.call("POST", "/events", Some(request)).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.call("POST", "/events", Some(json!("not an object"))).await.0, StatusCode::BAD_REQUEST);
    let (status, problem) =
        h.call("POST", "/events", Some(json!({"customer_id": customer, "events": [{"id": 1}]}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["errors"].as_object().is_some_and(|e| e.keys().any(|k| k.starts_with("events[0]"))),
        "{problem}"
    );
    let unknown = json!({"customer_id": "cust_nope", "events": [{"id": "e", "event_type": "chat", "occurred_at": now}]});
    let (status, problem) = h.call("POST", "/events", Some(unknown)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}

#[tokio::test]
async fn metrics_are_public_prometheus_text() {
    let h = Harness::start(false).await;
    let req = Request::builder().uri("/metrics").body(Body::empty()).expect("request");
    let response = h.app.clone().oneshot(req).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    assert!(String::from_utf8_lossy(&bytes).contains("# TYPE drawdown_events_accepted_total counter"));
}
