//! Environments and keys (issue 17, `semantics.md` §9): a live key and a test key see nothing of
//! each other's data on any route; keys are created, listed, rotated and revoked with
//! `drawdown keys` against a running server's data directory, and a revoked key is refused by
//! the next request.

mod common;

use common::{must, request, unique, KEY};
use serde_json::json;
use serde_json::Value;
use std::process::Command;

/// `drawdown keys <args> --data-dir <dir>`: its stdout, or the test fails with its stderr.
fn keys(dir: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_drawdown"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run drawdown keys");
    assert!(output.status.success(), "drawdown keys {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Who calls: a key, and the connected account it acts for (`X-CREDYT-ACCOUNT`), if any.
struct Caller {
    key: String,
    account: Option<String>,
}

impl Caller {
    fn key(key: &str) -> Self {
        Self { key: key.to_string(), account: None }
    }

    fn call(&self, base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = ureq::request(method, &format!("{base}{path}")).set("X-CREDYT-API-KEY", &self.key);
        if let Some(account) = &self.account {
            req = req.set("X-CREDYT-ACCOUNT", account);
        }
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// Everything a platform creates, in the environment of `key`: ids to look for from the other.
struct Made {
    customer: String,
    product: String,
    vendor: String,
    /// Connected accounts are the platform's, whoever created them: checked across environments
    /// only.
    account: Option<String>,
    code: String,
}

fn make(base: &str, caller: &Caller) -> Made {
    let call = |method: &str, path: &str, body: serde_json::Value| {
        let (status, answer) = caller.call(base, method, path, Some(body));
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    };
    let code = unique("A").to_uppercase();
    if caller.account.is_none() {
        call("POST", "/assets", json!({"code": code, "name": "Credits"}));
    }
    let product = call(
        "POST",
        "/products",
        json!({"name": "P", "code": unique("p-"), "publish": true,
        "prices": [common::unit_price("call", "USD", "1")]}),
    )["id"]
        .as_str()
        .expect("id")
        .to_string();
    let customer = call(
        "POST",
        "/customers",
        json!({"name": "C", "external_id": "shared-external-id",
        "subscriptions": [{"products": [{"id": product}]}]}),
    )["id"]
        .as_str()
        .expect("id")
        .to_string();
    call(
        "POST",
        &format!("/customers/{customer}/wallet/adjustments"),
        json!({"transaction_id": "t1", "asset": "USD", "amount": 10, "reason": "gift"}),
    );
    let event = json!({"customer_id": customer, "events": [{"id": "e1", "event_type": "call", "occurred_at": common::now()}]});
    call("POST", "/events", event);
    let vendor = call("POST", "/vendors", json!({"name": "V"}))["id"].as_str().expect("id").to_string();
    let account = call("POST", "/accounts", json!({"name": "A"}))["id"].as_str().expect("id").to_string();
    Made { customer, product, vendor, account: Some(account), code }
}

/// Every read of `made` with `key` of the other environment: 404, or a list without it.
fn sees_nothing_of(base: &str, caller: &Caller, made: &Made) {
    let c = &made.customer;
    for path in [
        format!("/customers/{c}"),
        format!("/customers/{c}/wallet"),
        format!("/customers/{c}/wallet/default:USD"),
        format!("/customers/{c}/wallet/default:USD/grants"),
        format!("/customers/{c}/wallet/transactions/t1"),
        format!("/customers/{c}/stats"),
        format!("/products/{}", made.product),
        format!("/products/{}/subscribers", made.product),
        format!("/vendors/{}", made.vendor),
        format!("/vendors/{}/stats", made.vendor),
        format!("/assets/{}", made.code),
    ] {
        let (status, answer) = caller.call(base, "GET", &path, None);
        assert_eq!(status, 404, "GET {path} from the other environment: {answer}");
    }
    // Both environments have an event `e1`: each sees its own.
    let (status, event) = caller.call(base, "GET", "/events/e1", None);
    assert!(
        status == 404 || event["customer_id"] != c.as_str(),
        "GET /events/e1 from the other environment: {event}"
    );
    for path in [
        "/customers",
        "/products",
        "/vendors",
        "/accounts",
        "/assets",
        "/customers/stats",
        &format!("/events?customer_id={c}"),
    ] {
        let (status, answer) = caller.call(base, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {answer}");
        let text = answer.to_string();
        for id in [c, &made.product, &made.vendor, &made.code].into_iter().chain(made.account.as_ref()) {
            assert!(!text.contains(id.as_str()), "GET {path} from the other environment shows {id}: {text}");
        }
    }
    if let Some(account) = &made.account {
        let (status, answer) = caller.call(base, "GET", &format!("/accounts/{account}"), None);
        assert_eq!(status, 404, "GET /accounts/{account} from the other environment: {answer}");
    }
    // Writes cannot reach it either.
    let adjustment = json!({"transaction_id": "t2", "asset": "USD", "amount": 1, "reason": "gift"});
    let (status, _) =
        caller.call(base, "POST", &format!("/customers/{c}/wallet/adjustments"), Some(adjustment));
    assert_eq!(status, 404);
    let usage = |reference: Value, id: &str| {
        let mut body = json!({"events": [{"id": id, "event_type": "call", "occurred_at": common::now()}]});
        body.as_object_mut().expect("object").extend(reference.as_object().expect("object").clone());
        body
    };
    let (status, _) = caller.call(base, "POST", "/events", Some(usage(json!({"customer_id": c}), "e2")));
    assert_eq!(status, 422, "usage for a customer of another environment or account");
    let (status, answer) = caller.call(
        base,
        "POST",
        "/events",
        Some(usage(json!({"customer_external_id": "shared-external-id"}), "e3")),
    );
    assert_eq!(status, 204, "the same external id names the caller's own customer: {answer}");
}

#[test]
fn test_and_live_share_no_data_and_keys_rotate_and_revoke_while_serving() {
    let dir = tempfile::tempdir().expect("dir");
    let server = common::process::start(dir.path());
    let base = &server.base;

    let live_key = keys(dir.path(), &["create", "--env", "live", "--name", "prod"]).trim().to_string();
    assert!(live_key.starts_with("sk_live_") && live_key.len() == 72, "{live_key}");
    let (status, context) = request(base, Some(&live_key), "GET", "/accounts/self", None);
    assert_eq!((status, context["environment"].as_str()), (200, Some("live")), "{context}");
    assert_eq!(must(base, 200, "GET", "/accounts/self", None)["environment"], "test");

    // The same external id and event id in both: no clash, each sees its own.
    let in_test = make(base, &Caller::key(KEY));
    let in_live = make(base, &Caller::key(&live_key));
    sees_nothing_of(base, &Caller::key(&live_key), &in_test);
    sees_nothing_of(base, &Caller::key(KEY), &in_live);
    let (_, clock) = request(
        base,
        Some(&live_key),
        "POST",
        "/test-clocks",
        Some(json!({"frozen_time": "2030-01-01T00:00:00Z"}).to_string()),
    );
    assert_eq!(clock["status"], 404, "test clocks refuse live keys: {clock}");

    // Rotation: a second live key works beside the first; the list shows both, never a key.
    let second = keys(dir.path(), &["create", "--env", "live", "--name", "prod-next"]).trim().to_string();
    assert_eq!(request(base, Some(&second), "GET", "/customers", None).0, 200);
    assert_eq!(request(base, Some(&live_key), "GET", "/customers", None).0, 200);
    let listed = keys(dir.path(), &["list"]);
    assert!(
        listed.contains("prod-next") && listed.contains("sk_live_") && listed.contains(" test "),
        "{listed}"
    );
    assert!(!listed.contains(&live_key) && !listed.contains(&second), "the list shows no key: {listed}");
    let first_line = listed.lines().find(|l| l.ends_with(" prod")).expect("the first live key is listed");
    assert!(!first_line.contains("never"), "used keys have a last use: {first_line}");
    let id = first_line.split_whitespace().next().expect("id").to_string();

    // Revocation: refused by the very next request (nothing is cached).
    keys(dir.path(), &["revoke", &id]);
    assert_eq!(request(base, Some(&live_key), "GET", "/customers", None).0, 401);
    assert_eq!(request(base, Some(&second), "GET", "/customers", None).0, 200);
    // A key of one environment is never accepted for the other.
    let forged = live_key.replacen("sk_live_", "sk_test_", 1);
    assert_eq!(request(base, Some(&forged), "GET", "/customers", None).0, 401);
}

#[test]
fn a_connected_account_sees_and_changes_only_its_own_data() {
    let server = common::TestServer::start();
    let base = &server.base;
    let account = |name: &str| {
        must(base, 201, "POST", "/accounts", Some(json!({"name": name})))["id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let (a, b) = (account("Tenant A"), account("Tenant B"));
    let platform = Caller::key(KEY);
    let tenant_a = Caller { key: KEY.into(), account: Some(a.clone()) };
    let tenant_b = Caller { key: KEY.into(), account: Some(b.clone()) };

    let (_, context) = tenant_a.call(base, "GET", "/accounts/self", None);
    assert_eq!(context["account_id"], a.as_str(), "{context}");
    // The Accounts routes keep working with the header.
    assert_eq!(tenant_a.call(base, "GET", &format!("/accounts/{b}"), None).0, 200);

    let without_account = |made: Made| Made { account: None, ..made };
    let of_platform = without_account(make(base, &platform));
    let of_a = without_account(make(base, &tenant_a));
    let of_b = without_account(make(base, &tenant_b));
    for (caller, others) in
        [(&platform, [&of_a, &of_b]), (&tenant_a, [&of_platform, &of_b]), (&tenant_b, [&of_platform, &of_a])]
    {
        for made in others {
            sees_nothing_of(base, caller, made);
        }
    }
    // Each sees its own.
    assert_eq!(tenant_a.call(base, "GET", &format!("/customers/{}/wallet", of_a.customer), None).0, 200);
    let (_, listed) = tenant_a.call(base, "GET", "/customers", None);
    assert_eq!(listed["total_count"], 1, "{listed}");
    // A connected account cannot create custom assets yet, and sees the platform's none.
    let (status, problem) = tenant_a.call(base, "POST", "/assets", Some(json!({"code": "TCR", "name": "T"})));
    assert_eq!(status, 422, "{problem}");
    // An unknown account, or one of the other environment, is a 404.
    let unknown = Caller { key: KEY.into(), account: Some("acct_unknown".into()) };
    assert_eq!(unknown.call(base, "GET", "/customers", None).0, 404);
}
