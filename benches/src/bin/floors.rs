//! `floors`: what the stages under drawdown's request path cost on this machine in isolation,
//! each at its best, so a target can be checked against the sum of its floors
//! (`docs/benchmarks.md`, "What bounds each figure"). The ledger writer's floor is `postings`.
//!
//! - `floors http`: a null server in a child process (the same stack as drawdown: axum on hyper,
//!   tokio's default multi-thread runtime, mimalloc) whose `POST /events` reads the body and
//!   answers 204, doing nothing else, driven by `loadgen`'s own client (`--batch`-event bodies
//!   on `--concurrency` keep-alive connections, one runtime thread).
//! - `floors log`: durable appends of one record each (the `usage.raw` record ingest appends for
//!   a single-event request) to the embedded log from `--concurrency` tasks,
//!   spread over its partitions, each append fsync'd by the log's group commit.
//!
//! Each reports its rate and the CPU it took per request or append (user + system time of the
//! processes, from `/proc`).
//!
//!   target/release/floors http --batch 1 --concurrency 64 --duration 20
//!   target/release/floors log --concurrency 64 --duration 20

use anyhow::{bail, Context};
use axum::http::StatusCode;
use axum::routing::{get, post};
use benches::fixtures;
use benches::load::http::{Connection, Endpoint};
use benches::load::pricing::{occurred_at, Event, EventsWriter};
use benches::load::spawn::{free_port, SpawnedServer};
use clap::{Args, Parser, Subcommand};
use eventlog::{EmbeddedLog, Log, LogOptions, Topic};
use hyper::Method;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "floors", about = "What HTTP alone and the durable log alone cost per request")]
struct Cli {
    #[command(subcommand)]
    floor: Floor,
}

#[derive(Subcommand, Debug)]
enum Floor {
    /// Requests/s and CPU per request of a server that does nothing.
    Http {
        /// Events per POST /events body.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[command(flatten)]
        load: Load,
    },
    /// Durable one-record appends/s and CPU per append of the embedded log.
    Log {
        /// Partitions of the log (the server's default).
        #[arg(long, default_value_t = 8)]
        partitions: u32,
        #[command(flatten)]
        load: Load,
    },
    /// The null server itself (what `floors http` starts).
    #[command(hide = true)]
    NullServer { addr: String },
}

#[derive(Args, Debug)]
struct Load {
    /// Concurrent requests (connections, or appending tasks).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run for.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
}

impl Load {
    fn check(&self) -> anyhow::Result<Duration> {
        if self.concurrency == 0 {
            bail!("--concurrency must be positive");
        }
        Duration::try_from_secs_f64(self.duration)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--duration {} is not a positive number of seconds", self.duration))
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().floor {
        Floor::NullServer { addr } => tokio::runtime::Runtime::new()?.block_on(null_server(&addr)),
        Floor::Http { batch, load } => {
            let duration = load.check()?;
            if batch == 0 {
                bail!("--batch must be positive");
            }
            http(batch, load.concurrency, duration)
        }
        Floor::Log { partitions, load } => {
            let duration = load.check()?;
            // The server's runtime: tokio's default, one worker per core.
            tokio::runtime::Runtime::new()?.block_on(log(partitions, load.concurrency, duration))
        }
    }
}

/// The null server: `POST /events` reads the whole body and answers 204 (and `GET /metrics`
/// answers 200, for `SpawnedServer` to see it is up).
async fn null_server(addr: &str) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/events", post(|_body: bytes::Bytes| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// A `POST /events` body of `events` events, whose ids are unique from `first_seq` on.
fn body(writer: &mut EventsWriter, first_seq: u64, events: usize, at: &str) -> bytes::Bytes {
    writer.begin("cust_floor");
    for seq in first_seq..first_seq + events as u64 {
        writer.event(&Event { seq, tokens: 1000, combo: 0, at_ms: 0 }, at);
    }
    writer.finish()
}

/// The CPU the measured processes use over a window of the run.
struct Window {
    started: Instant,
    processes: Vec<(&'static str, u32, f64)>,
}

impl Window {
    fn start(processes: &[(&'static str, u32)]) -> anyhow::Result<Self> {
        let processes = processes
            .iter()
            .map(|&(name, pid)| Ok((name, pid, benches::cpu::seconds(pid)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { started: Instant::now(), processes })
    }

    /// Prints `done` units (`unit`s, of `events` events each) over the window, and the CPU each
    /// process spent per unit.
    fn report(&self, done: u64, unit: &str, events: usize) -> anyhow::Result<()> {
        let seconds = self.started.elapsed().as_secs_f64();
        let done_f = done as f64;
        let mut line = format!("{done} {unit}s in {seconds:.1} s: {:.0} {unit}s/s", done_f / seconds);
        if events > 1 {
            line += &format!(" ({:.0} events/s)", done_f * events as f64 / seconds);
        }
        line += "; CPU per ";
        line += unit;
        for (i, (name, pid, before)) in self.processes.iter().enumerate() {
            let cpu = benches::cpu::seconds(*pid)? - before;
            let sep = if i == 0 { ": " } else { ", " };
            line += &format!("{sep}{name} {:.1} µs ({:.2} cores)", cpu / done_f * 1e6, cpu / seconds);
        }
        println!("{line}");
        Ok(())
    }
}

/// Shared by the measured tasks: whether to go on, and what they completed.
#[derive(Clone, Default)]
struct Ticker {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

impl Ticker {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn tick(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Spawns `tasks`, which run until their ticker stops, lets them warm up for a second, then
/// reports what they complete over `duration`, and the CPU `processes` spend per unit (and how
/// many of `also` happened meanwhile).
async fn measure(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    ticker: &Ticker,
    duration: Duration,
    processes: &[(&'static str, u32)],
    unit: &str,
    events: usize,
    also: Option<(&str, &dyn Fn() -> u64)>,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Window::start(processes)?;
    let before = ticker.done.load(Ordering::Relaxed);
    let also_before = also.map(|(_, count)| count());
    tokio::time::sleep(duration).await;
    let measured = ticker.done.load(Ordering::Relaxed) - before;
    let reported = window.report(measured, unit, events);
    if let (Some((what, count)), Some(before)) = (also, also_before) {
        let n = count() - before;
        println!("{n} {what} in the window, {:.1} {unit}s each", measured as f64 / n.max(1) as f64);
    }
    ticker.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    reported
}

fn http(batch: usize, concurrency: usize, duration: Duration) -> anyhow::Result<()> {
    // The client runs on one thread, as `loadgen --threads 1` does.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let port = free_port()?;
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["null-server", &format!("127.0.0.1:{port}")]);
        // Stopped (killed) when dropped, however this ends.
        let server = SpawnedServer::spawn(command, port, "sk_test_floor".to_string(), None).await?;
        let processes = [("server", server.pid()), ("client", std::process::id())];
        let endpoint = Arc::new(Endpoint::parse(&server.url, &server.api_key)?);
        let ticker = Ticker::default();
        let tasks = (0..concurrency)
            .map(|task| {
                let (endpoint, ticker) = (Arc::clone(&endpoint), ticker.clone());
                tokio::spawn(async move {
                    let mut connection = Connection::new(endpoint);
                    let mut writer = EventsWriter::new("floor", task);
                    let at = occurred_at(0);
                    let mut seq = 0;
                    while ticker.running() {
                        let request = body(&mut writer, seq, batch, &at);
                        seq += batch as u64;
                        let answer = connection.call(Method::POST, "/events", request).await?;
                        if answer.status != StatusCode::NO_CONTENT {
                            bail!("the null server answered {}", answer.status);
                        }
                        ticker.tick();
                    }
                    Ok(())
                })
            })
            .collect();
        measure(tasks, &ticker, duration, &processes, "request", batch, None).await
    })
}

async fn log(partitions: u32, concurrency: usize, duration: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = Arc::new(EmbeddedLog::open(dir.path(), LogOptions { partitions, ..LogOptions::default() })?);
    let fsyncs = || telemetry::METRICS.log_fsync_seconds.count();
    // The record ingest appends for a one-event request, under its customer's key.
    let accepted_at = ledger_writer::fixtures::at(fixtures::ACCEPTED_AT);
    let value = fixtures::raw_usage_bytes(0, 1, accepted_at)?;
    let key = fixtures::CUSTOMER.as_bytes().to_vec();
    let ticker = Ticker::default();
    let tasks = (0..concurrency)
        .map(|task| {
            let (log, key, value, ticker) = (Arc::clone(&log), key.clone(), value.clone(), ticker.clone());
            let partition = task as u32 % partitions;
            tokio::spawn(async move {
                while ticker.running() {
                    log.append(Topic::UsageRaw, partition, vec![(key.clone(), value.clone())]).await?;
                    ticker.tick();
                }
                Ok(())
            })
        })
        .collect();
    println!("{partitions} partitions, {} bytes per record", value.len());
    measure(tasks, &ticker, duration, &[("log", std::process::id())], "append", 1, Some(("fsyncs", &fsyncs)))
        .await
}
