//! Hostile input on every route (issue 17): a proptest generator of malformed and hostile
//! requests (bad JSON, deep nesting, huge strings and numbers, `1e400`, negative zero, invalid
//! UTF-8, lone surrogates, wrong types, absurd dates, ids with `/`, `..`, `%2F`, NUL) sent to
//! every authenticated route of the table, with hostile query strings, for a bounded time.
//!
//! Each answer must be the route's success or a 4xx ProblemDetails (JSON with `status` and
//! `title`), never a 5xx or a dropped connection; afterwards every customer's wallet still
//! reads. Each run appends how many inputs it tried, by answer, to `target/tmp/fuzz-runs.log`.

mod common;

use common::{must, unique, TestServer, KEY};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long the generator runs (a bound on the test's time, not a performance assertion).
const BUDGET: Duration = Duration::from_secs(25);

/// Field names the routes read, so generated objects reach past "unknown shape" into validation.
const FIELDS: &[&str] = &[
    "name",
    "code",
    "amount",
    "asset",
    "transaction_id",
    "events",
    "prices",
    "frozen_time",
    "customer_id",
    "customer_external_id",
    "subscriptions",
    "products",
    "rates",
    "source",
    "rate",
    "inverse_rate",
    "id",
    "external_id",
    "status",
    "reason",
    "effective_at",
    "expires_at",
    "data",
    "metadata",
    "valid_from",
    "event_type",
    "occurred_at",
    "costs",
    "type",
    "billing_model",
    "pricing",
    "values",
    "unit_price",
    "usage_calculation",
    "entitlements",
    "publish",
    "precision",
    "test_clock",
    "account_name",
    "version",
];

/// Hostile leaves.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1e400".to_string()),
        Just("-0".to_string()),
        Just("-0.0".to_string()),
        Just("1e-400".to_string()),
        Just("79228162514264337593543950336".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1000000000".to_string()),
        Just("0.0000000000000000000000000001".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just(r#""\ud800""#.to_string()),
        Just(r#""a\u0000b""#.to_string()),
        Just(r#""0000-00-00T00:00:00Z""#.to_string()),
        Just(r#""9999-12-31T23:59:59Z""#.to_string()),
        Just(r#""+275760-09-13T00:00:00Z""#.to_string()),
        Just(r#""-001000-01-01T00:00:00Z""#.to_string()),
        Just(r#""2026-02-30T00:00:00Z""#.to_string()),
        Just(r#""../../etc/passwd""#.to_string()),
        Just(r#""a/b%2Fc""#.to_string()),
        Just(r#""USD""#.to_string()),
        Just(r#""""#.to_string()),
        (1usize..16_000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
        "[a-z_]{0,12}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
    ]
}

/// A JSON text of hostile values, objects keyed by the routes' own field names.
fn json_text() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..8).prop_map(|fields| {
                let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A request body's bytes: hostile JSON objects mostly, and broken bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec((prop::sample::select(FIELDS), json_text()), 0..8).prop_map(|fields| {
            let fields: Vec<String> = fields.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(",")).into_bytes()
        }),
        1 => json_text().prop_map(String::into_bytes),
        1 => (1usize..5000).prop_map(|depth| format!("{{\"name\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        1 => Just(b"{\"name\": \"\xff\xfe\xc0\x80\"}".to_vec()),
        1 => Just(b"{\"name\": ".to_vec()),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A path parameter: a real id of the right kind, or a hostile one (percent-encoded as a client
/// would send it).
fn segment(real: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(real),
        1 => prop::sample::select(vec![
            "..".to_string(), "%2F".to_string(), "a%2F..%2Fb".to_string(), "%00".to_string(),
            "%FF%FE".to_string(), "%ED%A0%80".to_string(), "x".repeat(5000), "default:USD".to_string(),
            "%20".to_string(), "-1".to_string(), "99999999999999999999".to_string(),
        ]),
        1 => "[a-zA-Z0-9_:.-]{1,40}",
    ]
}

/// A query string: the routes' parameters with hostile values.
fn query() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "limit",
        "offset",
        "customer_id",
        "period_from",
        "period_to",
        "time_gte",
        "external_id",
        "status",
        "event_type",
        "purpose",
        "include_expired",
        "page",
        "cursor",
    ]);
    let values = prop::sample::select(vec![
        "-1",
        "0",
        "18446744073709551616",
        "1e400",
        "abc",
        "%00",
        "%FF",
        "..%2F..",
        "9999-99-99",
        "2026-01-01",
        "true",
        "",
        "%",
        "a=b=c",
    ]);
    prop::collection::vec((names, values), 0..4)
        .prop_map(|pairs| pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

struct Ids {
    customers: Vec<String>,
    products: Vec<String>,
    others: Vec<String>,
}

/// A small world for the routes' real ids: an asset, a product, a customer with a posted wallet,
/// a vendor, a connected account and a test clock.
fn world(base: &str) -> Ids {
    must(base, 201, "POST", "/assets", Some(json!({"code": "CRD", "name": "Credits"})));
    let product = must(
        base,
        201,
        "POST",
        "/products",
        Some(
            json!({"name": "P", "code": unique("p-"), "publish": true, "prices": [common::unit_price("call", "USD", "0.5")]}),
        ),
    );
    let product = product["id"].as_str().expect("id").to_string();
    let customer = must(
        base,
        201,
        "POST",
        "/customers",
        Some(
            json!({"name": "C", "external_id": unique("c-"), "subscriptions": [{"products": [{"id": product}]}]}),
        ),
    );
    let customer = customer["id"].as_str().expect("id").to_string();
    let body = json!({"transaction_id": "t1", "asset": "USD", "amount": 10, "reason": "gift"});
    must(base, 201, "POST", &format!("/customers/{customer}/wallet/adjustments"), Some(body));
    let vendor = must(base, 201, "POST", "/vendors", Some(json!({"name": "V"})))["id"]
        .as_str()
        .expect("id")
        .to_string();
    let account = must(base, 201, "POST", "/accounts", Some(json!({"name": "A"})))["id"]
        .as_str()
        .expect("id")
        .to_string();
    let clock = must(base, 201, "POST", "/test-clocks", Some(json!({"frozen_time": "2030-01-01T00:00:00Z"})));
    let clock = clock["id"].as_str().expect("id").to_string();
    Ids {
        customers: vec![customer],
        products: vec![product],
        others: vec![
            vendor,
            account,
            clock,
            "CRD".into(),
            "USD".into(),
            "1".into(),
            "t1".into(),
            "default:USD".into(),
        ],
    }
}

/// The path of `template` with each `{param}` replaced by a generated segment.
fn fill(template: &str, segments: &[String]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut i = 0;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&segments[i % segments.len()]);
        i += 1;
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// At most this much of a body in a failure message.
fn shown(body: Option<&[u8]>) -> String {
    body.map(|b| String::from_utf8_lossy(&b[..b.len().min(600)]).into_owned()).unwrap_or_default()
}

/// Sends one request; an error when the connection failed (itself a finding).
fn send(base: &str, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String), String> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let req = agent.request(method, &format!("{base}{path}")).set("X-CREDYT-API-KEY", KEY);
    let result = match body {
        Some(bytes) => req.set("Content-Type", "application/json").send_bytes(bytes),
        None => req.call(),
    };
    match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn every_route_answers_hostile_input_with_a_4xx_problem_or_success() {
    let server = TestServer::start();
    let base = server.base.clone();
    let ids = world(&base);
    let real: Vec<String> = ids.customers.iter().chain(&ids.products).chain(&ids.others).cloned().collect();
    let request = (
        prop::sample::select(api::routes::ROUTES.to_vec()),
        prop::collection::vec(segment(real), 1..4),
        query(),
        body(),
    );
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    let started = Instant::now();
    let mut tried = 0u64;
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    while started.elapsed() < BUDGET {
        let (route, segments, query, body) =
            request.new_tree(&mut runner).expect("a generated request").current();
        let (method, template) = route;
        let method = method.to_uppercase();
        let mut path = fill(template, &segments);
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        let body = (method != "GET" && method != "DELETE").then_some(body.as_slice());
        let (status, text) = send(&base, &method, &path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e}); body {}", shown(body)));
        tried += 1;
        *by_status.entry(status).or_default() += 1;
        assert!(status < 500, "{method} {path} answered {status}: {text}\nbody: {}", shown(body));
        if status >= 400 {
            let problem: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                panic!("{method} {path} answered {status} without a ProblemDetails: {text}")
            });
            assert_eq!(problem["status"], status, "{method} {path}: {problem}");
            assert!(problem["title"].is_string(), "{method} {path}: {problem}");
        }
    }
    let summary = format!(
        "{} fuzz: {tried} hostile requests in {:.0?}, answers by status: {by_status:?}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        started.elapsed()
    );
    eprintln!("{summary}");
    // Each run's count is kept beside the build (`target/tmp/fuzz-runs.log`).
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-runs.log");
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        use std::io::Write;
        let _ = writeln!(file, "{summary}");
    }
    // Every customer's wallet still reads, the fuzzed ones included.
    let customers = must(&base, 200, "GET", "/customers?limit=100", None);
    let mut offset = 0;
    let total = customers["total_count"].as_u64().unwrap_or(0);
    while offset < total {
        let page = must(&base, 200, "GET", &format!("/customers?limit=100&offset={offset}"), None);
        for c in page["items"].as_array().expect("items") {
            let id = c["id"].as_str().expect("id");
            let encoded: String = id
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            must(&base, 200, "GET", &format!("/customers/{encoded}/wallet"), None);
        }
        offset += 100;
    }
}
