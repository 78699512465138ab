//! The distributed roles wired over shared embedded backends in one test process: each role
//! serves what it should and is ready, and usage and wallet commands flow through separate
//! roles as they do through `drawdown serve`. (The Kafka and ScyllaDB backends have their own
//! tests.)

mod common;

use clap::Parser;
use common::{
    available, dec, eventually, must, now, request, send_usage, subscribed_customer, unique, unit_price, KEY,
};
use drawdown::cli::{Cli, Invocation};
use drawdown::{Backends, Role, RoleConfig, Server};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const PARTITIONS: u32 = 4;

/// Roles started in-process over one embedded store and log, each on its own port.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    backends: [Backends; 2],
    config: RoleConfig,
    bases: HashMap<&'static str, String>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    running: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(roles: &[Role]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (log, store) = (
            drawdown::backends::embedded_log_url(dir.path()),
            drawdown::backends::embedded_store_url(dir.path()),
        );
        let backends =
            runtime.block_on(Backends::connect_environments(&log, &store, PARTITIONS)).expect("backends");
        let config = RoleConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            log: "embedded:shared".into(),
            store: "embedded:shared".into(),
            api_key: Some(KEY.to_string()),
            partitions: PARTITIONS,
            lease: ownership::LeaseOptions {
                instance: "roles".into(),
                timeout: ownership::LeaseOptions::DEFAULT_TIMEOUT,
            },
        };
        let mut cluster = Self {
            runtime,
            backends,
            config,
            bases: HashMap::new(),
            stops: Vec::new(),
            running: Vec::new(),
            _dir: dir,
        };
        for &role in roles {
            cluster.add(role);
        }
        cluster
    }

    /// Starts `role` over the cluster's backends.
    fn add(&mut self, role: Role) {
        let bound = Server::bind_role(role, self.backends.clone(), &self.config);
        let server = self.runtime.block_on(bound).expect("bind the role");
        assert_eq!(server.generated_api_key, None, "the configured key is used");
        self.bases.insert(role.name(), format!("http://{}", server.local_addr().expect("addr")));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.running.push(self.runtime.spawn(server.run(async move {
            let _ = stopped.await;
        })));
        self.stops.push(stop);
    }

    fn base(&self, role: Role) -> &str {
        &self.bases[role.name()]
    }

    /// Waits until every role answers `/readyz` with 200.
    fn wait_ready(&self) {
        for (role, base) in &self.bases {
            eventually(&format!("{role} ready"), || {
                (request(base, None, "GET", "/readyz", None) == (200, json!({"status": "ready"})))
                    .then_some(())
            });
        }
    }

    /// Stops every role as SIGTERM does; each must stop cleanly and promptly.
    fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.running.drain(..) {
            let stopped =
                self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await });
            stopped.expect("stopped in time").expect("no panic").expect("a clean stop");
        }
    }
}

fn parse(args: &[&str]) -> anyhow::Result<Invocation> {
    let cli = Cli::try_parse_from(args.iter().copied())?;
    cli.resolve(Some("sk_test_cli".into()))
}

#[test]
fn the_cli_parses_every_role_with_its_backends() {
    let roles = [
        ("ingest", Role::Ingest),
        ("rater", Role::Rater),
        ("ledger-writer", Role::LedgerWriter),
        ("api", Role::Api),
    ];
    for (command, expected) in roles {
        let invocation = parse(&[
            "drawdown",
            command,
            "--log",
            "kafka://kafka:9092?prefix=dd",
            "--store",
            "scylla://scylla:9042/drawdown",
            "--listen",
            "0.0.0.0:9000",
            "--partitions",
            "16",
        ])
        .expect("parses");
        let Invocation::Role(role, config) = invocation else { panic!("{command} is a role") };
        assert_eq!(role, expected);
        assert_eq!(role.name(), command);
        assert_eq!(config.log, "kafka://kafka:9092?prefix=dd");
        assert_eq!(config.store, "scylla://scylla:9042/drawdown");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.partitions, 16);
        assert_eq!(config.api_key.as_deref(), Some("sk_test_cli"));
    }
    let serve = parse(&["drawdown", "serve", "--data-dir", "/tmp/dd", "--partitions", "2"]).expect("parses");
    let Invocation::Serve(config) = serve else { panic!("serve is the embedded mode") };
    assert_eq!((config.data_dir.to_str(), config.partitions), (Some("/tmp/dd"), 2));
    assert_eq!(config.log, None, "serve runs on the embedded log by default");
    let on_kafka = parse(&["drawdown", "serve", "--log", "kafka://kafka:9092"]).expect("parses");
    let Invocation::Serve(config) = on_kafka else { panic!("serve") };
    assert_eq!(config.log.as_deref(), Some("kafka://kafka:9092"), "everything in one process on Kafka");
    assert!(parse(&["drawdown", "rater", "--log", "x", "--store", "y", "--partitions", "0"]).is_err());
    assert!(parse(&["drawdown", "scheduler"]).is_err(), "an unknown role is refused");
}

#[test]
fn a_role_reads_its_backends_from_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("drawdown.toml");
    std::fs::write(
        &file,
        "log = \"kafka://k:9092\"\nstore = \"scylla://s:9042/d\"\nlisten = \"0.0.0.0:7000\"\n",
    )
    .expect("write config");
    let path = file.to_str().expect("utf-8 path");
    let Invocation::Role(_, config) =
        parse(&["drawdown", "ledger-writer", "--config", path, "--store", "embedded:/tmp/s"])
            .expect("parses")
    else {
        panic!("a role")
    };
    assert_eq!((config.log.as_str(), config.store.as_str()), ("kafka://k:9092", "embedded:/tmp/s"));
    assert_eq!(config.listen.to_string(), "0.0.0.0:7000");
}

#[test]
fn serve_is_ready_and_alive() {
    let s = common::TestServer::start();
    eventually("serve ready", || {
        (request(&s.base, None, "GET", "/readyz", None) == (200, json!({"status": "ready"}))).then_some(())
    });
    assert_eq!(request(&s.base, None, "GET", "/healthz", None), (200, json!({"status": "ok"})));
}

#[test]
fn every_role_is_ready_and_serves_only_its_routes() {
    let cluster = Cluster::start(&[Role::Ingest, Role::Rater, Role::LedgerWriter, Role::Api]);
    cluster.wait_ready();
    for role in [Role::Ingest, Role::Rater, Role::LedgerWriter, Role::Api] {
        let base = cluster.base(role);
        assert_eq!(request(base, None, "GET", "/healthz", None).0, 200, "{role:?}");
        assert_eq!(request(base, None, "GET", "/metrics", None).0, 200, "{role:?}");
    }
    // The probes only, on the pipeline roles.
    for role in [Role::Rater, Role::LedgerWriter] {
        assert_eq!(request(cluster.base(role), Some(KEY), "GET", "/accounts/self", None).0, 404, "{role:?}");
        assert_eq!(request(cluster.base(role), Some(KEY), "POST", "/events", Some("{}".into())).0, 404);
    }
    // Ingest: `POST /events` (authenticated), nothing else.
    let ingest = cluster.base(Role::Ingest);
    assert_eq!(request(ingest, Some(KEY), "GET", "/accounts/self", None).0, 404);
    assert_eq!(request(ingest, None, "POST", "/events", Some("{}".into())).0, 401);
    assert_eq!(request(ingest, Some(KEY), "POST", "/events", Some("{}".into())).0, 422);
    // The api: everything.
    let api = cluster.base(Role::Api);
    assert_eq!(must(api, 200, "GET", "/accounts/self", None)["environment"], "test");
    assert_eq!(request(api, None, "GET", "/openapi.json", None).0, 200);
    cluster.stop();
}

#[test]
fn an_adjustment_on_the_api_role_is_answered_once_the_writer_role_posted_it() {
    let cluster = Cluster::start(&[Role::Api, Role::LedgerWriter]);
    cluster.wait_ready();
    let api = cluster.base(Role::Api);
    let (_, customer) = subscribed_customer(api, json!([unit_price("image", "USD", "0.05")]));
    let body =
        json!({"transaction_id": unique("top-"), "asset": "USD", "amount": 10, "reason": "external_topup"});
    let path = format!("/customers/{customer}/wallet/adjustments");
    let created = must(api, 201, "POST", &path, Some(body.clone()));
    assert_eq!(created["id"], body["transaction_id"]);
    // Answered 201 only once posted: the very next read sees it.
    assert_eq!(available(api, &customer, "default:USD"), dec("10"));
    // A replay is answered from the posted transaction.
    assert_eq!(must(api, 201, "POST", &path, Some(body))["id"], created["id"]);
    assert_eq!(available(api, &customer, "default:USD"), dec("10"));
    cluster.stop();
}

#[test]
fn usage_sent_to_the_ingest_role_is_rated_and_posted_by_the_other_roles() {
    let cluster = Cluster::start(&[Role::Ingest, Role::Rater, Role::LedgerWriter, Role::Api]);
    cluster.wait_ready();
    let api = cluster.base(Role::Api);
    let (_, customer) = subscribed_customer(api, json!([unit_price("image", "USD", "0.05")]));
    let topup =
        json!({"transaction_id": unique("top-"), "asset": "USD", "amount": 1, "reason": "external_topup"});
    must(api, 201, "POST", &format!("/customers/{customer}/wallet/adjustments"), Some(topup));
    let events: Vec<Value> = (0..3)
        .map(|_| json!({"id": unique("img-"), "event_type": "image", "occurred_at": now(), "data": {}}))
        .collect();
    send_usage(cluster.base(Role::Ingest), &json!({"customer_id": customer, "events": events}));
    eventually("three images drawn down", || {
        (available(api, &customer, "default:USD") == dec("0.85")).then_some(())
    });
    cluster.stop();
}

#[test]
fn ingest_refuses_new_usage_while_no_rater_takes_it_and_takes_it_again_once_one_does() {
    let mut cluster = Cluster::start(&[Role::Ingest, Role::LedgerWriter, Role::Api]);
    cluster.wait_ready();
    let api = cluster.base(Role::Api).to_string();
    let ingest = cluster.base(Role::Ingest).to_string();
    let (_, customer) = subscribed_customer(&api, json!([unit_price("image", "USD", "0.05")]));
    let topup =
        json!({"transaction_id": unique("top-"), "asset": "USD", "amount": 100, "reason": "external_topup"});
    must(&api, 201, "POST", &format!("/customers/{customer}/wallet/adjustments"), Some(topup));
    let send = || {
        let event = json!({"id": unique("img-"), "event_type": "image", "occurred_at": now(), "data": {}});
        let body = json!({"customer_id": customer, "events": [event]}).to_string();
        request(&ingest, Some(KEY), "POST", "/events", Some(body))
    };

    // No rater: usage.raw only grows. Once its backlog is older than the bound (1 s), ingest
    // refuses new events for the partition with a 429 problem.
    let mut accepted = 0;
    let refused = eventually("a 429 once the backlog is too old", || match send() {
        (204, _) => {
            accepted += 1;
            None
        }
        (429, problem) => Some(problem),
        other => panic!("unexpected answer {other:?}"),
    });
    assert_eq!(refused["status"], 429, "{refused}");

    // A rater joins: the backlog drains and the partition takes events again.
    cluster.add(Role::Rater);
    eventually("accepted again once rated", || match send() {
        (204, _) => Some(()),
        (429, _) => None,
        other => panic!("unexpected answer {other:?}"),
    });
    accepted += 1;
    // Every accepted event is billed, no refused one is.
    let expected = dec("100") - dec("0.05") * schemas::Decimal::from(accepted);
    eventually("every accepted event drawn down", || {
        (available(&api, &customer, "default:USD") == expected).then_some(())
    });
    cluster.stop();
}

/// A role as its own process on a free port over `dir`, ready.
fn spawn_role(role: &str, dir: &std::path::Path) -> (std::process::Child, String) {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_drawdown"))
        .arg(role)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--partitions", "2"])
        .arg("--log")
        .arg(format!("embedded:{}", dir.join("log").display()))
        .arg("--store")
        .arg(format!("embedded:{}", dir.join("store").display()))
        .env_remove("DRAWDOWN_CONFIG")
        .env("DRAWDOWN_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn drawdown");
    let base = format!("http://127.0.0.1:{port}");
    eventually(&format!("{role} ready"), || {
        let ready = ureq::get(&format!("{base}/readyz")).timeout(Duration::from_secs(1)).call();
        ready.is_ok_and(|r| r.status() == 200).then_some(())
    });
    (child, base)
}

#[test]
fn a_role_process_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    for role in ["ledger-writer", "api"] {
        let (mut child, _) = spawn_role(role, dir.path());
        let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        assert!(killed.expect("kill runs").success());
        let status = eventually(&format!("{role} exits"), || child.try_wait().expect("wait"));
        assert!(status.success(), "{role} exited with {status}");
    }
}
