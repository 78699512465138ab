//! Shared test harness: drawdown started in-process on an ephemeral port, and a small JSON-over-
//! HTTP client.
#![allow(dead_code)]

pub mod process;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

pub const KEY: &str = "sk_test_integration_0123456789";

pub struct TestServer {
    pub base: String,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir)
    }

    pub fn start_in(dir: tempfile::TempDir) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = drawdown::Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().to_path_buf(),
            api_key: Some(KEY.to_string()),
            partitions: 4,
            log: None,
            lease: ownership::LeaseOptions {
                instance: "test".into(),
                timeout: ownership::LeaseOptions::DEFAULT_TIMEOUT,
            },
        };
        let server = runtime.block_on(drawdown::Server::bind(&config)).expect("bind");
        let base = format!("http://{}", server.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self { base, runtime: Some(runtime), stop: Some(stop), dir }
    }

    /// Stops the server gracefully and hands back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        request(&self.base, Some(KEY), method, path, body.map(|b| b.to_string()))
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A call that must answer `expected`.
    pub fn expect(&self, expected: u16, method: &str, path: &str, body: Value) -> Value {
        let (status, response) = self.call(method, path, Some(body));
        assert_eq!(status, expected, "{method} {path}: {response}");
        response
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One HTTP request; any status is returned (non-JSON bodies come back as a JSON string).
pub fn request(
    base: &str,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(30));
    if let Some(key) = key {
        req = req.set("X-CREDYT-API-KEY", key);
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// `prefix` plus 10 random hex characters, so codes never collide between tests.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

pub fn data_file_exists(dir: &Path) -> bool {
    dir.join("store").join("store.redb").exists()
}

/// The current time, in microseconds: never before what the server stamped in an earlier
/// request. At millisecond precision it often was (91 of 200 tries read "now" before the
/// `started_at` of the subscription created just before), and an event dated before its
/// customer's subscription is not billed by it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Polls `check` until it returns `Some`, failing the test with `what` after a generous deadline
/// (a safety net against hanging, not a performance assertion).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Calls `base` with the test key; the status must be `expected`.
pub fn must(base: &str, expected: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, response) = request(base, Some(KEY), method, path, body.map(|b| b.to_string()));
    assert_eq!(status, expected, "{method} {path}: {response}");
    response
}

/// POSTs usage to `base` until it is acknowledged (204), re-sending after a 429 as a client does:
/// ingest refuses new usage while a partition's raters or writers are behind (backlog
/// admission), which a test that stops a stage, or a stalled machine, can cause. Any other
/// answer fails the test.
pub fn send_usage(base: &str, body: &Value) {
    eventually("usage acknowledged", || {
        match request(base, Some(KEY), "POST", "/events", Some(body.to_string())) {
            (204, _) => Some(()),
            (429, _) => None,
            (status, response) => panic!("POST /events answered {status}: {response}"),
        }
    });
}

/// A published product with one usage price per `(event_type, usage, pricing)` and a customer
/// subscribed to it; returns `(product_id, customer_id)`.
pub fn subscribed_customer(base: &str, prices: Value) -> (String, String) {
    let code = unique("plan-");
    let product = must(
        base,
        201,
        "POST",
        "/products",
        Some(serde_json::json!({"name": "Plan", "code": code, "publish": true, "prices": prices})),
    );
    let product_id = product["id"].as_str().expect("product id").to_string();
    let customer = must(
        base,
        201,
        "POST",
        "/customers",
        Some(serde_json::json!({
            "name": "Acme", "external_id": unique("acme-"),
            "subscriptions": [{"products": [{"id": product_id}],
                               "return_url": "https://example.com/ok", "failure_url": "https://example.com/ko"}]
        })),
    );
    (product_id, customer["id"].as_str().expect("customer id").to_string())
}

/// A unit price: `amount` `asset` per event of `event_type`.
pub fn unit_price(event_type: &str, asset: &str, amount: &str) -> Value {
    let text = format!(
        r#"{{"type": "usage_based", "name": "{event_type} unit", "billing_model": {{"type": "real_time"}},
            "usage_calculation": {{"event_type": "{event_type}", "usage_type": "unit"}},
            "pricing": [{{"asset": "{asset}", "values": [{{"unit_price": {amount}}}]}}]}}"#
    );
    serde_json::from_str(&text).expect("price json")
}

/// The exact `available` of a wallet account (zero when the account does not exist).
pub fn available(base: &str, customer: &str, account: &str) -> schemas::Decimal {
    let wallet = must(base, 200, "GET", &format!("/customers/{customer}/wallet"), None);
    wallet["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == account))
        .map_or(schemas::Decimal::ZERO, |a| dec(&a["available"].to_string()))
}

/// An exact decimal from its text.
pub fn dec(text: &str) -> schemas::Decimal {
    text.parse().unwrap_or_else(|e| panic!("`{text}` is not a decimal: {e}"))
}

/// Sends until acknowledged (2xx), following the server across restarts. A refusal other
/// than "server gone" / 429 / 503 fails the test, and so does no acknowledgement in two minutes.
pub fn send_until_acknowledged(base: &std::sync::RwLock<String>, method: &str, path: &str, body: &Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "{method} {path}: not acknowledged in two minutes");
        let current = base.read().expect("base").clone();
        let req = ureq::request(method, &format!("{current}{path}"))
            .timeout(Duration::from_secs(10))
            .set("X-CREDYT-API-KEY", KEY)
            .set("Content-Type", "application/json");
        match req.send_string(&body.to_string()) {
            Ok(r) if (200..300).contains(&r.status()) => return,
            Ok(r) => panic!("{path}: unexpected {}", r.status()),
            Err(ureq::Error::Status(429 | 503, _)) | Err(ureq::Error::Transport(_)) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(ureq::Error::Status(code, r)) => {
                panic!("{path}: {code} {}", r.into_string().unwrap_or_default())
            }
        }
    }
}
