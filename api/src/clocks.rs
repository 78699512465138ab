//! Test clocks (`semantics.md` §12, `api.md` "drawdown extensions"): a frozen time for the
//! customers attached to it, advanced on request. Advancing sends each attached customer a tick
//! at the new time and answers once every one is applied: everything due up to then (refreshes,
//! fees, period closes, expiries) has been posted, in time order, exactly as if the time had
//! passed. Test environment only: a live key gets 404.
//!
//! Also the one place the API asks what time it is for a customer ([`customer_now`]).

use crate::auth::Environment;
use crate::docs::{load, modify, Change};
use crate::error::ApiError;
use crate::extract::Body;
use crate::extract::Path;
use crate::tenancy::Scope;
use crate::AppState;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::Utc;
use eventlog::Topic;
use rater::RaterProgress;
use schemas::clock::{
    customer_time, AdvanceTestClockRequest, CreateTestClockRequest, TestClock, TestClockStatus,
};
use schemas::customer::Customer;
use schemas::ids::TestClockId;
use schemas::ledger::LedgerInput;
use schemas::problem::ValidationErrors;
use schemas::{validate, Timestamp};
use std::time::Duration;
use store::typed::get_doc;
use store::{Op, Store, Table};

/// A customer's time: its test clock's frozen time, else the wall clock.
pub async fn customer_now(store: &dyn Store, customer: &Customer) -> Result<Timestamp, ApiError> {
    let clock = match &customer.test_clock {
        Some(id) => get_doc::<TestClock>(store, Table::TestClocks, id).await?.map(|d| d.value),
        None => None,
    };
    Ok(customer_time(clock.as_ref(), Utc::now()))
}

/// The schedule entry an API change of `customer` writes in its own commit, so that a crash
/// before the change's tick is appended still brings the change to the ledger (the partition's
/// scheduler ticks it).
pub fn schedule_op(state: &AppState, customer: &str, now: Timestamp) -> Result<(String, Op), ApiError> {
    let key = ledger_writer::scheduler::due_key(state.ledger.partition_of(customer), now, customer);
    let op = Op::put_doc(Table::Schedule, key.as_str(), &serde_json::json!({}))?;
    Ok((key, op))
}

/// Sends `customer` a tick carrying its subscriptions as now stored, and waits until it is
/// applied (read-your-writes for subscription changes and clock advances).
pub async fn tick(state: &AppState, customer: &str, due_key: Option<String>) -> Result<(), ApiError> {
    let store = state.store.as_ref();
    let doc = load::<Customer>(store, Table::Customers, "customer", customer).await?;
    let tick =
        ledger_writer::scheduler::tick_for(store, doc.value, doc.revision, Utc::now(), due_key).await?;
    state.ledger.submit(&LedgerInput::Tick(tick)).await?;
    Ok(())
}

/// How long an advance waits for the raters to hand over the usage accepted before it.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves once every usage request accepted so far in `partition` has been rated and appended
/// to `ledger.input`, so that a tick appended next is applied after it.
async fn usage_barrier(state: &AppState, partition: u32) -> Result<(), ApiError> {
    let unavailable = |e: eventlog::LogError| ApiError::Unavailable(format!("usage log: {e}"));
    let end = state.ledger.log().end_offset(Topic::UsageRaw, partition).await.map_err(unavailable)?;
    let key = RaterProgress::key(partition);
    let deadline = tokio::time::Instant::now() + BARRIER_TIMEOUT;
    loop {
        let rated = get_doc::<RaterProgress>(state.store.as_ref(), Table::Offsets, &key).await?;
        if rated.is_some_and(|p| p.value.next_offset >= end) || end == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::Unavailable(format!(
                "usage of partition {partition} was not rated within {BARRIER_TIMEOUT:?}; advance again"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn test_only(environment: Option<Extension<Environment>>, id: &str) -> Result<(), ApiError> {
    match environment {
        Some(Extension(Environment::Live)) => Err(ApiError::not_found("test clock", id)),
        _ => Ok(()),
    }
}

pub async fn create(
    Scope(state): Scope,
    environment: Option<Extension<Environment>>,
    Body(req): Body<CreateTestClockRequest>,
) -> Result<(StatusCode, Json<TestClock>), ApiError> {
    if let Some(Extension(Environment::Live)) = environment {
        return Err(ApiError::NotFound("test clocks exist in the test environment only".into()));
    }
    let mut errors = ValidationErrors::new();
    validate::optional_text(&mut errors, "name", req.name.as_deref());
    errors.into_result()?;
    let clock = TestClock {
        id: TestClockId::generate(),
        name: req.name,
        frozen_time: req.frozen_time,
        status: TestClockStatus::Ready,
        created_at: Utc::now(),
        customers: Vec::new(),
    };
    let op = Op::put_doc(Table::TestClocks, clock.id.as_str(), &clock)?.expect(store::Expect::Absent);
    state.store.write(vec![op]).await?;
    Ok((StatusCode::CREATED, Json(clock)))
}

pub async fn get(
    Scope(state): Scope,
    environment: Option<Extension<Environment>>,
    Path(id): Path<String>,
) -> Result<Json<TestClock>, ApiError> {
    test_only(environment, &id)?;
    Ok(Json(
        load::<TestClock>(state.store.as_ref(), Table::TestClocks, "test clock", &id).await?.value.view(),
    ))
}

/// Moves the clock to `frozen_time` (never backwards) and applies every due change of its
/// customers up to then. Advancing to the clock's current time again re-applies nothing but
/// finishes an advance a crash interrupted.
pub async fn advance(
    Scope(state): Scope,
    environment: Option<Extension<Environment>>,
    Path(id): Path<String>,
    Body(req): Body<AdvanceTestClockRequest>,
) -> Result<Json<TestClock>, ApiError> {
    test_only(environment, &id)?;
    let store = state.store.as_ref();
    let customers = modify(store, Table::TestClocks, "test clock", &id, |clock: &mut TestClock| {
        if req.frozen_time < clock.frozen_time {
            return Err(ApiError::invalid("frozen_time", "a test clock never goes backwards"));
        }
        clock.frozen_time = req.frozen_time;
        clock.status = TestClockStatus::Advancing;
        Ok(Change::new(clock.customers.clone()))
    })
    .await?;
    // Usage accepted before the advance is posted before it, as if the time had passed.
    let mut partitions: Vec<u32> = customers.iter().map(|c| state.ledger.partition_of(c)).collect();
    partitions.sort_unstable();
    partitions.dedup();
    for partition in partitions {
        usage_barrier(&state, partition).await?;
    }
    // Customers are independent (one writer each, maybe on other partitions): tick them at
    // once, a bounded number in flight.
    for chunk in customers.chunks(64) {
        let mut ticks = tokio::task::JoinSet::new();
        for customer in chunk {
            let (state, customer) = (state.clone(), customer.clone());
            ticks.spawn(async move { tick(&state, &customer, None).await });
        }
        while let Some(result) = ticks.join_next().await {
            result.map_err(|e| ApiError::Internal(format!("tick task: {e}")))??;
        }
    }
    let clock = modify(store, Table::TestClocks, "test clock", &id, |clock: &mut TestClock| {
        if clock.frozen_time == req.frozen_time {
            clock.status = TestClockStatus::Ready;
        }
        Ok(Change::new(clock.view()))
    })
    .await?;
    Ok(Json(clock))
}

/// Deletes the clock. Its customers live by the wall clock from then on (their ledger's clock
/// never goes back, so time stands still for them until the wall clock catches up).
pub async fn delete(
    Scope(state): Scope,
    environment: Option<Extension<Environment>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    test_only(environment, &id)?;
    let store = state.store.as_ref();
    let doc = load::<TestClock>(store, Table::TestClocks, "test clock", &id).await?;
    store
        .write(vec![Op::delete(Table::TestClocks, id).expect(store::Expect::Revision(doc.revision))])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
