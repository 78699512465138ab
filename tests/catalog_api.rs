//! The catalog API over real HTTP against the embedded store: every endpoint of issue 2's scope,
//! its status codes, fields, filters and pagination.

mod common;

use common::{request, unique, TestServer, KEY};
use serde_json::{json, Value};

fn image_price(dimension_values: &[(&str, f64)]) -> Value {
    let values: Vec<Value> = dimension_values
        .iter()
        .map(|(model, price)| json!({"dimensions": {"model": model}, "values": [{"unit_price": price}]}))
        .collect();
    json!({
        "type": "usage_based", "name": "Images",
        "usage_calculation": {"event_type": "image_generated", "usage_type": "unit", "billable_dimensions": ["model"]},
        "billing_model": {"type": "real_time"},
        "pricing": [{"asset": "USD", "values": values}]
    })
}

fn token_price(asset: &str) -> Value {
    json!({
        "type": "usage_based", "name": "Input tokens",
        "usage_calculation": {"event_type": "chat", "usage_type": "volume", "volume_field": "input_tokens"},
        "billing_model": {"type": "real_time"},
        "pricing": [{"asset": asset, "values": [{"volume_rate": 1.25, "package_size": 1000000}]}]
    })
}

/// Creates a product and returns its id.
fn product(s: &TestServer, code: &str, prices: Value, publish: bool) -> String {
    let body = s.expect(
        201,
        "POST",
        "/products",
        json!({"name": "P", "code": code, "prices": prices, "publish": publish}),
    );
    body["id"].as_str().expect("id").to_string()
}

fn customer(s: &TestServer, body: Value) -> Value {
    s.expect(201, "POST", "/customers", body)
}

#[test]
fn accounts_self_reports_the_key_environment_and_requires_a_key() {
    let s = TestServer::start();
    let me = s.get("/accounts/self");
    assert_eq!(me["environment"], "test");
    assert!(me["account_id"].as_str().is_some_and(|id| id.starts_with("acct_")));
    let (status, body) = request(&s.base, None, "GET", "/accounts/self", None);
    assert_eq!(status, 401);
    assert_eq!(body["status"], 401);
    let (status, _) = request(&s.base, Some("sk_test_wrong"), "GET", "/customers", None);
    assert_eq!(status, 401);
}

#[test]
fn connected_accounts_are_created_listed_filtered_and_read() {
    let s = TestServer::start();
    let a = s.expect(
        201,
        "POST",
        "/accounts",
        json!({"name": "Team A", "external_id": "team-a", "metadata": {"tier": "gold"}}),
    );
    s.expect(201, "POST", "/accounts", json!({"name": "Team B"}));
    let id = a["id"].as_str().expect("id");
    let got = s.get(&format!("/accounts/{id}"));
    assert_eq!((got["name"].as_str(), got["external_id"].as_str()), (Some("Team A"), Some("team-a")));
    assert_eq!(got["metadata"], json!({"tier": "gold"}));
    assert_eq!(s.get("/accounts")["total_count"], 2);
    let filtered = s.get("/accounts?external_id=team-a");
    assert_eq!(filtered["total_count"], 1);
    assert_eq!(filtered["items"][0]["id"], id);
    let dup = s.expect(422, "POST", "/accounts", json!({"name": "Again", "external_id": "team-a"}));
    assert!(dup["errors"]["external_id"].is_array());
    assert_eq!(s.call("GET", "/accounts/acct_missing", None).0, 404);
}

#[test]
fn vendors_are_created_listed_filtered_and_read() {
    let s = TestServer::start();
    let v = s.expect(201, "POST", "/vendors", json!({"name": "OpenAI", "external_id": "openai"}));
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("vnd_")));
    assert!(v["created_at"].is_string());
    s.expect(201, "POST", "/vendors", json!({"name": "Anthropic"}));
    let got = s.get(&format!("/vendors/{}", v["id"].as_str().expect("id")));
    assert_eq!(got["name"], "OpenAI");
    assert_eq!(s.get("/vendors?external_id=openai")["total_count"], 1);
    let page = s.get("/vendors?limit=1&offset=1");
    assert_eq!(
        (page["total_count"].as_u64(), page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(page["items"][0]["name"], "Anthropic");
    assert_eq!(
        s.expect(422, "POST", "/vendors", json!({"name": ""}))["errors"]["name"][0],
        "must not be empty"
    );
    assert_eq!(s.call("GET", "/vendors/vnd_missing", None).0, 404);
}

#[test]
fn assets_keep_rates_exact_and_quote_at_the_rate_valid_then() {
    let s = TestServer::start();
    // Raw text, so that `0.10` reaches the server as written.
    let body = r#"{"code": "CREDIT", "name": "Credits", "precision": 2, "symbol": "¢", "rates": [{"source": "USD", "rate": 0.10}]}"#;
    let (status, created) = request(&s.base, Some(KEY), "POST", "/assets", Some(body.into()));
    assert_eq!((status, created["code"].as_str()), (201, Some("CREDIT")));
    let asset = s.get("/assets/CREDIT");
    let first = &asset["rates"][0]["schedule"][0];
    assert_eq!((first["rate"].to_string(), first["inverse_rate"].to_string()), ("0.10".into(), "10".into()));
    assert!(first.get("valid_to").is_none());
    // A quote now uses 0.10 USD per credit: 10 USD buy 100 credits.
    let q = s.expect(200, "POST", "/assets/CREDIT/quote", json!({"source": "USD", "amount": 10}));
    assert_eq!(q["destination_amount"].to_string(), "100");
    // A new rate closes the open one at its valid_from.
    let from = "2099-01-01T00:00:00Z";
    s.expect(204, "POST", "/assets/CREDIT/rates", json!({"source": "USD", "rate": 0.2, "valid_from": from}));
    let schedule = s.get("/assets/CREDIT")["rates"][0]["schedule"].clone();
    assert_eq!(schedule[0]["valid_to"].as_str().map(|t| t.starts_with("2099-01-01T00:00:00")), Some(true));
    assert_eq!(schedule[1]["inverse_rate"].to_string(), "5");
    let later = s.expect(
        200,
        "POST",
        "/assets/CREDIT/quote",
        json!({"source": "USD", "amount": 10, "exchange_at": "2099-06-01T00:00:00Z"}),
    );
    assert_eq!(
        (later["destination_amount"].to_string(), later["rate"].to_string()),
        ("50".into(), "0.2".into())
    );
    let now = s.expect(200, "POST", "/assets/CREDIT/quote", json!({"source": "USD", "amount": 10}));
    assert_eq!(now["destination_amount"].to_string(), "100");
    // Before the first rate there is none: 422.
    let none = s.expect(
        422,
        "POST",
        "/assets/CREDIT/quote",
        json!({"source": "USD", "amount": 1, "exchange_at": "2000-01-01T00:00:00Z"}),
    );
    assert!(none["errors"]["exchange_at"].is_array());
    // A rate not after the open one is refused.
    let stale = s.expect(
        422,
        "POST",
        "/assets/CREDIT/rates",
        json!({"source": "USD", "rate": 0.3, "valid_from": "2098-01-01T00:00:00Z"}),
    );
    assert!(stale["errors"]["valid_from"].is_array());
    // Listing.
    s.expect(
        201,
        "POST",
        "/assets",
        json!({"code": "TOK", "name": "Tokens", "rates": [{"source": "USD", "inverse_rate": 3}]}),
    );
    let list = s.get("/assets");
    assert_eq!(list["total_count"], 2);
    assert_eq!(list["items"][1], json!({"code": "TOK", "name": "Tokens"}));
    // An inverse rate given is used as given: 1 USD buys exactly 3 TOK.
    let tok = s.expect(200, "POST", "/assets/TOK/quote", json!({"source": "USD", "amount": 1}));
    assert_eq!(
        (tok["destination_amount"].to_string(), tok["rate"].to_string()),
        ("3".into(), "0.333333333333".into())
    );
    assert_eq!(s.call("GET", "/assets/NOPE", None).0, 404);
    assert_eq!(s.call("POST", "/assets/NOPE/quote", Some(json!({"source": "USD", "amount": 1}))).0, 404);
}

#[test]
fn asset_codes_are_unique_upper_case_and_never_a_currency() {
    let s = TestServer::start();
    s.expect(201, "POST", "/assets", json!({"code": "GEM", "name": "Gems"}));
    assert!(
        s.expect(422, "POST", "/assets", json!({"code": "GEM", "name": "Gems"}))["errors"]["code"].is_array()
    );
    assert!(s.expect(422, "POST", "/assets", json!({"code": "USD", "name": "Dollars"}))["errors"]["code"]
        .is_array());
    assert!(
        s.expect(422, "POST", "/assets", json!({"code": "gem2", "name": "x"}))["errors"]["code"].is_array()
    );
    let bad_rate = s.expect(
        422,
        "POST",
        "/assets",
        json!({"code": "RUBY", "name": "x", "rates": [{"source": "CREDIT", "rate": 0}]}),
    );
    assert!(bad_rate["errors"]["rates[0].source"].is_array());
    assert!(bad_rate["errors"]["rates[0].rate"].is_array());
}

#[test]
fn products_are_created_listed_by_code_and_read_with_exact_prices() {
    let s = TestServer::start();
    let code = unique("chat-");
    let id = product(&s, &code, json!([token_price("USD")]), true);
    assert!(id.starts_with("prod_"));
    product(&s, &unique("other-"), json!([token_price("USD")]), false);
    let p = s.get(&format!("/products/{id}"));
    assert_eq!(p["code"], code.as_str());
    assert_eq!(p["default_version"]["version"], 1);
    let price = &p["default_version"]["prices"][0];
    assert!(price["id"].as_str().is_some_and(|id| id.starts_with("price_")));
    assert_eq!(price["pricing"][0]["values"][0]["volume_rate"].to_string(), "1.25");
    assert_eq!(p["versions"][0]["status"], "published");
    assert!(p["versions"][0]["created_at"].is_string());
    assert_eq!(s.get("/products")["total_count"], 2);
    let by_code = s.get(&format!("/products?code={code}"));
    assert_eq!(by_code["total_count"], 1);
    assert_eq!(by_code["items"][0], json!({"id": id, "code": code, "name": "P"}));
    let dup = s.expect(
        422,
        "POST",
        "/products",
        json!({"name": "P", "code": code, "prices": [token_price("USD")]}),
    );
    assert!(dup["errors"]["code"].is_array());
    assert_eq!(s.call("GET", "/products/prod_missing", None).0, 404);
}

#[test]
fn product_validation_names_each_field_path() {
    let s = TestServer::start();
    let mut no_field = token_price("USD");
    no_field["usage_calculation"].as_object_mut().expect("object").remove("volume_field");
    let e = s.expect(422, "POST", "/products", json!({"name": "P", "code": "a", "prices": [no_field]}));
    assert!(e["errors"]["prices[0].usage_calculation.volume_field"].is_array(), "{e}");
    let e = s.expect(
        422,
        "POST",
        "/products",
        json!({"name": "P", "code": "b", "prices": [token_price("CREDIT")]}),
    );
    assert!(e["errors"]["prices[0].pricing[0].asset"].is_array(), "{e}");
    let mut dims = image_price(&[("a", 0.05)]);
    dims["pricing"][0]["values"][0]["dimensions"] = json!({"size": "large"});
    let e = s.expect(422, "POST", "/products", json!({"name": "P", "code": "c", "prices": [dims]}));
    assert!(e["errors"]["prices[0].pricing[0].values[0].dimensions.size"].is_array(), "{e}");
    let e =
        s.expect(422, "POST", "/products", json!({"name": "P", "code": "d", "prices": [{"type": "weird"}]}));
    assert!(e["errors"]["prices[0].type"].is_array(), "{e}");
    let e = s.expect(
        422,
        "POST",
        "/products",
        json!({"name": "P", "code": "e", "prices": [{"type": "usage_based"}]}),
    );
    assert!(e["errors"]["prices[0].name"].is_array(), "{e}");
}

#[test]
fn product_versions_publish_become_default_and_archive() {
    let s = TestServer::start();
    let id = product(&s, &unique("img-"), json!([image_price(&[("dall-e-3", 0.05), ("*", 0.03)])]), true);
    let v2 =
        s.expect(201, "POST", &format!("/products/{id}"), json!({"prices": [image_price(&[("*", 0.04)])]}));
    assert_eq!(
        (v2["version"].as_u64(), v2["status"].as_str(), v2["is_default"].as_bool()),
        (Some(2), Some("draft"), Some(false))
    );
    // Only a published version can be the default.
    let e = s.expect(422, "PATCH", &format!("/products/{id}/2"), json!({"make_default": true}));
    assert!(e["errors"]["make_default"].is_array());
    s.expect(204, "PATCH", &format!("/products/{id}/2"), json!({"publish": true, "make_default": true}));
    let by_default = s.get(&format!("/products/{id}/default"));
    assert_eq!((by_default["version"].as_u64(), by_default["is_default"].as_bool()), (Some(2), Some(true)));
    assert_eq!(
        by_default["prices"][0]["pricing"][0]["values"][0]["values"][0]["unit_price"].to_string(),
        "0.04"
    );
    let v1 = s.get(&format!("/products/{id}/1"));
    assert_eq!((v1["status"].as_str(), v1["is_default"].as_bool()), (Some("published"), Some(false)));
    // The default cannot be archived; another version can.
    assert_eq!(s.call("DELETE", &format!("/products/{id}/2"), None).0, 409);
    assert_eq!(s.call("DELETE", &format!("/products/{id}/1"), None).0, 204);
    assert_eq!(s.get(&format!("/products/{id}/1"))["status"], "archived");
    let e = s.expect(422, "PATCH", &format!("/products/{id}/1"), json!({"publish": true}));
    assert!(e["errors"]["publish"].is_array());
    assert_eq!(s.call("GET", &format!("/products/{id}/9"), None).0, 404);
    assert_eq!(s.call("GET", &format!("/products/{id}/latest"), None).0, 404);
    let p = s.get(&format!("/products/{id}"));
    assert_eq!(p["versions"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_deleted_product_disappears_and_frees_its_code() {
    let s = TestServer::start();
    let code = unique("gone-");
    let id = product(&s, &code, json!([token_price("USD")]), true);
    assert_eq!(s.call("DELETE", &format!("/products/{id}"), None).0, 204);
    assert_eq!(s.call("GET", &format!("/products/{id}"), None).0, 404);
    assert_eq!(s.call("DELETE", &format!("/products/{id}"), None).0, 404);
    assert_eq!(s.get(&format!("/products?code={code}"))["total_count"], 0);
    product(&s, &code, json!([token_price("USD")]), true);
}

#[test]
fn customers_subscribe_pin_versions_and_provision_wallet_accounts() {
    let s = TestServer::start();
    s.expect(201, "POST", "/assets", json!({"code": "CREDIT", "name": "Credits"}));
    let code = unique("hyb-");
    let id = product(&s, &code, json!([token_price("CREDIT"), image_price(&[("*", 0.03)])]), true);
    let created = customer(
        &s,
        json!({
            "name": "Acme", "external_id": "acme-1", "email": "billing@acme.test", "metadata": {"plan": "pro"},
            "subscriptions": [{"products": [{"code": code, "version": "default"}], "return_url": "https://x", "failure_url": "https://y"}]
        }),
    );
    let cid = created["id"].as_str().expect("id").to_string();
    assert!(cid.starts_with("cust_"));
    let sub = &created["subscriptions"][0];
    assert!(sub["id"].as_str().is_some_and(|id| id.starts_with("sub_")));
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["products"][0], json!({"id": id, "code": code, "version": 1}));
    let got = s.get(&format!("/customers/{cid}"));
    assert_eq!(
        (
            got["name"].as_str(),
            got["email"].as_str(),
            got["external_id"].as_str(),
            got["active_subscription_count"].as_u64()
        ),
        (Some("Acme"), Some("billing@acme.test"), Some("acme-1"), Some(1))
    );
    assert_eq!(got["metadata"], json!({"plan": "pro"}));
    assert!(got.get("accounts").is_none(), "internal bookkeeping stays off the wire");
    let wallet = s.get(&format!("/customers/{cid}/wallet"));
    let accounts: Vec<(String, String)> = wallet["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| (a["id"].as_str().unwrap_or("").to_string(), a["available"].to_string()))
        .collect();
    assert_eq!(
        accounts,
        [("default:CREDIT".to_string(), "0".to_string()), ("default:USD".to_string(), "0".to_string())]
    );
    let subscribers = s.get(&format!("/products/{id}/subscribers"));
    assert_eq!(subscribers["total_count"], 1);
    let row = &subscribers["items"][0];
    assert_eq!(
        (row["customer_id"].as_str(), row["customer_name"].as_str(), row["version"].as_u64()),
        (Some(cid.as_str()), Some("Acme"), Some(1))
    );
    assert!(row["product_rate_plan_id"].as_str().is_some_and(|p| p.starts_with("prv_")));
    assert_eq!(s.call("GET", "/customers/cust_missing/wallet", None).0, 404);
}

#[test]
fn customers_are_listed_with_every_filter() {
    let s = TestServer::start();
    let code = unique("f-");
    product(&s, &code, json!([token_price("USD")]), true);
    let a = customer(
        &s,
        json!({"name": "Alice Smith", "external_id": "a", "email": "alice@x.test",
        "subscriptions": [{"products": [{"code": code}]}]}),
    );
    let b = customer(&s, json!({"name": "Bob", "external_id": "b", "email": "bob@x.test"}));
    let ids = |q: &str| -> Vec<String> {
        s.get(&format!("/customers{q}"))["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (a, b) = (a["id"].as_str().expect("a").to_string(), b["id"].as_str().expect("b").to_string());
    assert_eq!(ids(""), [a.clone(), b.clone()]);
    assert_eq!(ids("?external_id=b"), std::slice::from_ref(&b));
    assert_eq!(ids(&format!("?customer_id={a}")), std::slice::from_ref(&a));
    assert_eq!(ids("?email=ALICE@x.test"), std::slice::from_ref(&a));
    assert_eq!(ids("?name=smith"), std::slice::from_ref(&a));
    assert_eq!(ids("?status=active"), std::slice::from_ref(&a));
    assert_eq!(ids("?status=inactive"), std::slice::from_ref(&b));
    assert_eq!(ids("?limit=1&offset=1"), [b]);
    assert_eq!(s.get("/customers?external_id=a")["items"][0]["active_subscription_count"], 1);
    assert_eq!(s.call("GET", "/customers?limit=abc", None).0, 400);
}

#[test]
fn customer_updates_keep_external_ids_unique() {
    let s = TestServer::start();
    let a = customer(&s, json!({"name": "A", "external_id": "one"}));
    customer(&s, json!({"name": "B", "external_id": "two"}));
    let dup = s.expect(422, "POST", "/customers", json!({"name": "C", "external_id": "one"}));
    assert!(dup["errors"]["external_id"].is_array(), "{dup}");
    let id = a["id"].as_str().expect("id");
    let clash = s.expect(422, "PATCH", &format!("/customers/{id}"), json!({"external_id": "two"}));
    assert!(clash["errors"]["external_id"].is_array());
    s.expect(
        204,
        "PATCH",
        &format!("/customers/{id}"),
        json!({"name": "A2", "external_id": "three", "email": "a@b.test"}),
    );
    let got = s.get(&format!("/customers/{id}"));
    assert_eq!(
        (got["name"].as_str(), got["external_id"].as_str(), got["email"].as_str()),
        (Some("A2"), Some("three"), Some("a@b.test"))
    );
    // The old external id is free again.
    customer(&s, json!({"name": "D", "external_id": "one"}));
    assert!(s.expect(422, "PATCH", &format!("/customers/{id}"), json!({"email": "nope"}))["errors"]["email"]
        .is_array());
    assert_eq!(s.call("PATCH", "/customers/cust_missing", Some(json!({"name": "x"}))).0, 404);
}

#[test]
fn subscriptions_are_added_paused_and_moved_between_versions() {
    let s = TestServer::start();
    s.expect(201, "POST", "/assets", json!({"code": "GEM", "name": "Gems"}));
    let id = product(&s, &unique("sub-"), json!([token_price("USD")]), true);
    let c = customer(&s, json!({"name": "C"}));
    let cid = c["id"].as_str().expect("id");
    let sub =
        s.expect(201, "POST", &format!("/customers/{cid}/subscriptions"), json!({"products": [{"id": id}]}));
    let sid = sub["id"].as_str().expect("sub id");
    assert_eq!(sub["products"][0]["version"], 1);
    // Draft versions are not subscribable; published ones are.
    s.expect(201, "POST", &format!("/products/{id}"), json!({"prices": [token_price("GEM")]}));
    let e = s.expect(
        422,
        "PATCH",
        &format!("/customers/{cid}/subscriptions/{sid}/products/{id}"),
        json!({"version": 2}),
    );
    assert!(e["errors"]["version"].is_array(), "{e}");
    s.expect(204, "PATCH", &format!("/products/{id}/2"), json!({"publish": true}));
    s.expect(
        204,
        "PATCH",
        &format!("/customers/{cid}/subscriptions/{sid}/products/{id}"),
        json!({"version": 2}),
    );
    let got = s.get(&format!("/customers/{cid}"));
    assert_eq!(got["subscriptions"][0]["products"][0]["version"], 2);
    let wallet = s.get(&format!("/customers/{cid}/wallet"));
    assert_eq!(wallet["accounts"].as_array().map(Vec::len), Some(2), "{wallet}");
    // Pause and resume.
    s.expect(204, "PATCH", &format!("/customers/{cid}/subscriptions/{sid}"), json!({"status": "inactive"}));
    assert_eq!(s.get(&format!("/customers/{cid}"))["active_subscription_count"], 0);
    s.expect(204, "PATCH", &format!("/customers/{cid}/subscriptions/{sid}"), json!({"status": "active"}));
    assert_eq!(s.get(&format!("/customers/{cid}"))["subscriptions"][0]["status"], "active");
    let e = s.expect(
        422,
        "PATCH",
        &format!("/customers/{cid}/subscriptions/{sid}"),
        json!({"status": "scheduled"}),
    );
    assert!(e["errors"]["status"].is_array());
    assert_eq!(
        s.call(
            "PATCH",
            &format!("/customers/{cid}/subscriptions/sub_missing"),
            Some(json!({"status": "active"}))
        )
        .0,
        404
    );
    // Archived versions take no new subscriptions.
    s.expect(204, "PATCH", &format!("/products/{id}/2"), json!({"make_default": true}));
    assert_eq!(s.call("DELETE", &format!("/products/{id}/1"), None).0, 204);
    let e = s.expect(
        422,
        "POST",
        &format!("/customers/{cid}/subscriptions"),
        json!({"products": [{"id": id, "version": 1}]}),
    );
    assert!(e["errors"]["products[0].version"].is_array(), "{e}");
    let e = s.expect(
        422,
        "POST",
        "/customers",
        json!({"name": "X", "subscriptions": [{"products": [{"code": "nope"}]}]}),
    );
    assert!(e["errors"]["subscriptions[0].products[0].code"].is_array(), "{e}");
}

#[test]
fn bad_input_gets_a_problem_body_never_a_panic() {
    let s = TestServer::start();
    let (status, body) = request(&s.base, Some(KEY), "POST", "/customers", Some("{\"name\": ".into()));
    assert_eq!((status, body["status"].as_u64()), (400, Some(400)));
    let (status, body) = request(&s.base, Some(KEY), "POST", "/customers", Some("[1,2]".into()));
    assert_eq!(status, 400, "{body}");
    let (status, body) = request(&s.base, Some(KEY), "POST", "/customers", Some("{\"name\": 5}".into()));
    assert_eq!(status, 422);
    assert!(body["errors"]["name"].is_array(), "{body}");
    let (status, body) = request(&s.base, Some(KEY), "POST", "/customers", Some("{}".into()));
    assert_eq!(status, 422);
    assert_eq!(body["errors"]["name"][0], "is required");
    assert_eq!(s.call("GET", "/no/such/route", None).0, 404);
    assert_eq!(s.call("PUT", "/customers", Some(json!({}))).0, 405);
    assert_eq!(oversized_post_status(&s.base, "/customers", 5 * 1024 * 1024), 413);
}

/// Announces a body of `length` bytes and sends none: the server must refuse from the header
/// alone. (Sending the body would race the server closing the connection after its 413.)
fn oversized_post_status(base: &str, path: &str, length: usize) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-CREDYT-API-KEY: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("status line");
    std::str::from_utf8(&head[9..12]).ok().and_then(|s| s.parse().ok()).expect("status code")
}

#[test]
fn the_openapi_document_and_health_need_no_key() {
    let s = TestServer::start();
    let (status, doc) = request(&s.base, None, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(request(&s.base, None, "GET", "/healthz", None), (200, json!({"status": "ok"})));
}

#[test]
fn data_survives_a_graceful_restart() {
    let s = TestServer::start();
    let c = customer(&s, json!({"name": "Persistent", "external_id": "p"}));
    let dir = s.stop();
    assert!(common::data_file_exists(dir.path()));
    let s = TestServer::start_in(dir);
    let id = c["id"].as_str().expect("id");
    assert_eq!(s.get(&format!("/customers/{id}"))["name"], "Persistent");
    assert!(s.expect(422, "POST", "/customers", json!({"name": "X", "external_id": "p"}))["errors"]
        ["external_id"]
        .is_array());
}
