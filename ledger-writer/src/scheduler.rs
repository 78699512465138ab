//! The scheduler: turns time into ledger inputs (`docs/subscriptions.md`). One per partition of
//! `ledger.input`, run beside that partition's writer (so wherever the writer runs, it runs).
//!
//! The writer keeps one `Table::Schedule` entry per customer, `{partition}/{due}/{customer}`, at
//! the customer's next due change (a grant's expiry, a period's end, a cycle's start), written in
//! the same commit as the ledger. The scheduler reads its partition's entries in time order and,
//! for those due, appends a [`TickCommand`] carrying the customer's subscriptions as stored; the
//! writer applies everything due up to the tick's time and moves the entry on.
//!
//! A tick changes nothing by itself: every change it causes has its own id (subscription, item,
//! period) and the writer posts each once. So a tick appended twice, by a scheduler that lost
//! the partition, or late after downtime, is harmless; the fence that matters is the writer's.
//! Customers on a test clock are moved by the clock's advances, not by the wall clock: their
//! tick (after a crash left an entry) carries the clock's time.

use eventlog::{SharedLog, Topic};
use schemas::clock::{customer_time, Clock, TestClock};
use schemas::customer::Customer;
use schemas::ledger::{CustomerSnapshot, LedgerInput, TickCommand};
use schemas::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::typed::{decode, get_doc};
use store::{Expect, Op, SharedStore, Store, StoreError, Table};
use tokio::sync::watch;

/// How often the schedule is read when nothing was due.
const POLL: Duration = Duration::from_millis(200);
/// Entries read per listing, and ticks per append.
const PAGE: usize = 2000;
/// Most ticks appended per round.
const MAX_PER_ROUND: usize = 50_000;
/// A tick appended for an entry is not appended again before this (the writer removes or moves
/// the entry once it applies the tick).
const RETICK_AFTER: Duration = Duration::from_secs(30);

/// The schedule key of `customer`'s next change at `at`, in partition `partition`: sorted by
/// partition, then time.
pub fn due_key(partition: u32, at: Timestamp, customer: &str) -> String {
    format!("{partition:05}/{}/{customer}", due_time(at))
}

/// The time part of a schedule key: fixed width, so keys sort by time.
fn due_time(at: Timestamp) -> impl std::fmt::Display {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
}

/// `(due, customer)` of a schedule key.
pub fn parse_due_key(key: &str) -> Option<(Timestamp, &str)> {
    let mut parts = key.splitn(3, '/');
    let _partition = parts.next()?;
    let at = parts.next()?.parse().ok()?;
    Some((at, parts.next()?))
}

/// The tick that brings `customer` (stored at `revision`) to its time: the test clock's, else
/// `wall`. A subscription whose start has passed is stored as `active` first (one conditional
/// write; on a conflict the next tick tries again).
pub async fn tick_for(
    store: &dyn Store,
    customer: Customer,
    revision: u64,
    wall: Timestamp,
    due_key: Option<String>,
) -> Result<TickCommand, StoreError> {
    let clock = match &customer.test_clock {
        Some(id) => get_doc::<TestClock>(store, Table::TestClocks, id).await?.map(|d| d.value),
        None => None,
    };
    let now = customer_time(clock.as_ref(), wall);
    let mut customer = customer;
    let mut revision = revision;
    // Settling changes nothing the writer bills by (start, billing or not, products), so the
    // snapshot carries it whether or not this conditional write wins.
    if customer.subscriptions.iter_mut().fold(false, |changed, s| s.settle(now) | changed) {
        let mut op = Op::put_doc(Table::Customers, customer.id.as_str(), &customer)?
            .expect(Expect::Revision(revision));
        if let Some(ext) = &customer.external_id {
            op = op.unique("external_id", ext.clone());
        }
        if store.write(vec![op]).await.is_ok() {
            revision += 1;
        }
    }
    Ok(TickCommand {
        customer_id: customer.id.to_string(),
        accepted_at: now,
        due_key,
        customer: Some(CustomerSnapshot {
            revision,
            test_clock: customer.test_clock,
            subscriptions: customer.subscriptions,
        }),
    })
}

/// Runs partition `partition`'s scheduler until `shutdown`.
pub async fn run(
    store: SharedStore,
    log: SharedLog,
    partition: u32,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticked: HashMap<String, Instant> = HashMap::new();
    loop {
        let wait = match round(store.as_ref(), &log, partition, clock.as_ref(), &mut ticked).await {
            Ok(0) => POLL,
            Ok(_) => Duration::ZERO,
            Err(error) => {
                tracing::warn!(partition, %error, "scheduler round failed; retrying");
                POLL * 5
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Appends ticks for the due entries not ticked recently (at most [`MAX_PER_ROUND`]); returns how
/// many. Only due entries are read: the range ends at `now`, and entries ticked but not yet moved
/// on by the writer are paged past.
async fn round(
    store: &dyn Store,
    log: &SharedLog,
    partition: u32,
    clock: &dyn Clock,
    ticked: &mut HashMap<String, Instant>,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let now = clock.now();
    ticked.retain(|_, at| at.elapsed() < RETICK_AFTER);
    // Every key due at or before `now` sorts below this one (`/` < `0` after the time).
    let until = format!("{partition:05}/{}0", due_time(now));
    let mut from = format!("{partition:05}/");
    let mut count = 0;
    while count < MAX_PER_ROUND {
        let page = store.range(Table::Schedule, &from, &until, PAGE).await?;
        let listed = page.len();
        let mut due = Vec::new();
        if let Some(last) = page.last() {
            from = format!("{}\0", last.key);
        }
        for record in page {
            match parse_due_key(&record.key) {
                Some((_, customer)) if !ticked.contains_key(&record.key) => {
                    due.push((record.key.clone(), customer.to_string()));
                }
                Some(_) => {}
                None => {
                    tracing::error!(key = record.key, "malformed schedule entry removed");
                    store.write(vec![Op::delete(Table::Schedule, record.key.clone())]).await?;
                }
            }
        }
        count += tick(store, log, partition, now, due, ticked).await?;
        if listed < PAGE {
            break;
        }
    }
    Ok(count)
}

/// Appends one tick per `(schedule key, customer)`, at `now` (or the customer's test clock).
async fn tick(
    store: &dyn Store,
    log: &SharedLog,
    partition: u32,
    now: Timestamp,
    due: Vec<(String, String)>,
    ticked: &mut HashMap<String, Instant>,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = due.iter().map(|(_, c)| c.clone()).collect();
    let docs = store.get_many(Table::Customers, &ids).await?;
    let mut records = Vec::with_capacity(due.len());
    let mut keys = Vec::with_capacity(due.len());
    for ((key, customer_id), doc) in due.into_iter().zip(docs) {
        let tick = match doc {
            Some(record) => {
                let doc = decode::<Customer>(Table::Customers, record)?;
                tick_for(store, doc.value, doc.revision, now, Some(key.clone())).await?
            }
            // A ledger without a customer document (it was never created): time still moves.
            None => TickCommand {
                customer_id: customer_id.clone(),
                accepted_at: now,
                due_key: Some(key.clone()),
                customer: None,
            },
        };
        records.push((customer_id.into_bytes(), serde_json::to_vec(&LedgerInput::Tick(tick))?));
        keys.push(key);
    }
    let count = records.len();
    log.append(Topic::LedgerInput, partition, records).await?;
    let at = Instant::now();
    ticked.extend(keys.into_iter().map(|k| (k, at)));
    Ok(count)
}
