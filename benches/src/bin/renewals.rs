//! `renewals`: many subscriptions renewing at the same instant (`docs/benchmarks.md`, issue 16).
//!
//! Creates one product (a $20 monthly fee and 1,000 USD of bundled credit each month,
//! `expire_and_replace`) and `--subscriptions` customers subscribed to it from exactly one month
//! before a renewal instant `--lead` seconds ahead, then waits for that instant and measures how
//! long the server takes to apply every renewal (an expiry, a fresh grant and a fee each), from
//! the instant to `drawdown_subscriptions_renewed_total` reaching the count. Run `loadgen`
//! against the same server meanwhile to see what the burst does to usage.

use anyhow::{bail, Context};
use benches::load::http::{Connection, Endpoint};
use benches::load::scrape::{self, Metrics};
use benches::load::spawn::SpawnedServer;
use bytes::Bytes;
use clap::Parser;
use hyper::Method;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Measures N subscriptions renewing at one instant")]
struct Cli {
    /// Base url of a running server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "DRAWDOWN_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Start this drawdown binary (fresh data dir, free port, generated key) instead of --url.
    #[arg(long, value_name = "BINARY")]
    spawn: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    #[arg(long, default_value_t = 100_000)]
    subscriptions: usize,
    /// Connections creating customers.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds from start to the renewal instant (setup must finish before it).
    #[arg(long, default_value_t = 180)]
    lead: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let spawned = match &cli.spawn {
        Some(binary) => Some(SpawnedServer::start(binary, cli.partitions).await?),
        None => None,
    };
    let (url, key) = match &spawned {
        Some(s) => (s.url.clone(), s.api_key.clone()),
        None => (cli.url.clone(), cli.key.clone().context("--key or DRAWDOWN_API_KEY is required")?),
    };
    if let Some(s) = &spawned {
        println!("server {url} (pid {})", s.pid());
    }
    let endpoint = Arc::new(Endpoint::parse(&url, &key)?);
    let started = Instant::now();
    let instant = chrono::Utc::now() + chrono::Duration::seconds(cli.lead as i64);
    let start = instant.checked_sub_months(chrono::Months::new(1)).context("one month before")?;
    let code = format!("renew-{}", uuid::Uuid::new_v4().simple());
    let product = serde_json::json!({
        "name": "Renewing plan", "code": code, "publish": true,
        "prices": [{"name": "Monthly fee", "type": "fixed",
                    "billing_model": {"type": "recurring", "recurring": {"interval": "month"}},
                    "pricing": [{"asset": "USD", "values": [{"unit_price": 20}]}]}],
        "entitlements": [{"name": "Monthly credit", "asset": "USD", "amount": 1000, "purpose": "bundled",
                          "lifecycle": {"duration": "month", "refresh": {"strategy": "expire_and_replace"}}}]
    });
    let mut connection = Connection::new(Arc::clone(&endpoint));
    let answer = connection.call(Method::POST, "/products", Bytes::from(product.to_string())).await?;
    if answer.status != 201 {
        bail!("POST /products answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    let starts_at = start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..cli.concurrency {
        let (endpoint, next, code, starts_at) =
            (Arc::clone(&endpoint), Arc::clone(&next), code.clone(), starts_at.clone());
        let total = cli.subscriptions;
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::new(endpoint);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                let body = serde_json::json!({"name": format!("customer {i}"),
                    "subscriptions": [{"products": [{"code": code}], "starts_at": starts_at}]});
                loop {
                    match connection.call(Method::POST, "/customers", Bytes::from(body.to_string())).await {
                        Ok(a) if a.status == 201 => break,
                        Ok(a) if a.status == 429 || a.status == 503 => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        Ok(a) => bail!(
                            "POST /customers answered {}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body)
                        ),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let setup = started.elapsed();
    println!(
        "setup: {} subscriptions in {:.1} s ({:.0}/s)",
        cli.subscriptions,
        setup.as_secs_f64(),
        cli.subscriptions as f64 / setup.as_secs_f64()
    );
    let left = (instant - chrono::Utc::now()).to_std().unwrap_or_default();
    if left < Duration::from_secs(2) {
        bail!("setup ended {:.1} s before the renewal instant: raise --lead", left.as_secs_f64());
    }
    let before = scrape(&mut connection).await?;
    println!(
        "renewal instant {instant} in {:.1} s (start loadgen now to measure usage during the burst)",
        left.as_secs_f64()
    );
    tokio::time::sleep(left).await;
    let due = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let now = scrape(&mut connection).await?;
        let renewed = now.renewed - before.renewed;
        if renewed >= cli.subscriptions as f64 {
            let elapsed = due.elapsed();
            println!(
                "renewed: {renewed:.0} subscriptions in {:.2} s after the instant ({:.0}/s); {:.0} postings",
                elapsed.as_secs_f64(),
                renewed / elapsed.as_secs_f64(),
                now.postings - before.postings
            );
            let batches = now.batches - before.batches;
            println!(
                "writer: {batches:.0} batches of {:.0} records on average, commits {:.1} ms on average",
                (now.batch_records - before.batch_records) / batches.max(1.0),
                (now.commit_seconds - before.commit_seconds) * 1000.0 / batches.max(1.0)
            );
            break;
        }
        if last_report.elapsed() > Duration::from_secs(1) {
            println!("  {:.1} s: {renewed:.0} renewed", due.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
        if due.elapsed() > Duration::from_secs(600) {
            bail!("only {renewed} renewals after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(server) = spawned {
        server.stop(false)?;
    }
    Ok(())
}

async fn scrape(connection: &mut Connection) -> anyhow::Result<Metrics> {
    let answer = connection.get("/metrics").await?;
    Ok(scrape::parse(&String::from_utf8_lossy(&answer.body)))
}
