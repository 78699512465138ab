//! ingest: the `POST /events` service (`semantics.md` §3). Validates a whole request, resolves
//! the customer, drops recently seen duplicate event ids, and appends the request to `usage.raw`
//! under the customer's partition; it returns only once the append is durable. Admission control
//! refuses work (429) instead of buffering without limit: a byte budget bounds the requests in
//! flight, and a partition whose raters or ledger writers are too far behind takes no new events
//! until they catch up.
//!
//! The HTTP handler in `api` reads the body, asks [`Ingest::admit`] for room, parses the body
//! into a [`UsageRequest`] and calls [`Ingest::accept`].
//!
//! - `admission` (private): the in-flight byte budget.
//! - [`backlog`]: how far behind the downstream stages are, per partition.
//! - `dedupe` (private): the bounded memory of recently accepted (customer, event id) pairs.

mod admission;
pub mod backlog;
mod dedupe;

use admission::{Budget, Permit};
use backlog::{Backlog, Downstream};
use dedupe::{RecentEvents, Seen};
use eventlog::{SharedLog, Topic};
use schemas::clock::TestClock;
use schemas::ledger::{RawUsage, UsageRequest};
use schemas::problem::ValidationErrors;
use schemas::{validate, Timestamp};
use std::time::{Duration, Instant};
use store::{SharedStore, Store, StoreError, Table};
use telemetry::METRICS;

/// Limits of the ingest service.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Request bytes that may be in flight (admitted, not yet durable) at once.
    pub max_inflight_bytes: usize,
    /// (customer, event id) pairs remembered for the fast duplicate check.
    pub dedupe_capacity: usize,
    /// The stages whose backlog bounds acceptance ([`backlog`]); none: no bound.
    pub downstream: Vec<Downstream>,
    /// New events for a partition are refused (429) while its backlog is older than this: how far
    /// behind the balances may fall under a sustained overload. It is measured every twentieth
    /// of it.
    pub max_backlog_age: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            max_inflight_bytes: 64 << 20,
            dedupe_capacity: 1 << 20,
            downstream: Vec::new(),
            max_backlog_age: DEFAULT_MAX_BACKLOG_AGE,
        }
    }
}

/// The default of [`IngestOptions::max_backlog_age`].
pub const DEFAULT_MAX_BACKLOG_AGE: Duration = Duration::from_secs(1);

/// The `Retry-After` of a 429.
const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 422: the request is invalid; nothing was accepted.
    #[error("one or more validation errors occurred")]
    Invalid(ValidationErrors),
    /// 429: over capacity; retry after this many seconds.
    #[error("ingest is over capacity; retry in {retry_after_secs} s")]
    Overloaded { retry_after_secs: u64 },
    /// 503: the log could not make the events durable; they were not accepted.
    #[error("the usage log is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The duplicates dropped from one request: same body as the first, or another body.
#[derive(Default)]
struct Duplicates {
    same: u64,
    conflicts: u64,
}

impl Duplicates {
    fn count(self) {
        METRICS.events_duplicate_total.add(self.same + self.conflicts);
        METRICS.events_duplicate_conflict_total.add(self.conflicts);
    }
}

/// A 429, counted.
fn overloaded() -> IngestError {
    METRICS.ingest_overload_total.add(1);
    IngestError::Overloaded { retry_after_secs: RETRY_AFTER_SECS }
}

/// Room for one request's bytes; released when dropped (after the append is durable).
pub struct Admission {
    _permit: Permit,
}

/// The ingest service; cheap to share behind an `Arc`.
pub struct Ingest {
    store: SharedStore,
    log: SharedLog,
    budget: Budget,
    recent: RecentEvents,
    backlog: Backlog,
}

impl Ingest {
    pub fn new(store: SharedStore, log: SharedLog, options: IngestOptions) -> Self {
        Self {
            backlog: Backlog::new(store.clone(), log.clone(), options.downstream, options.max_backlog_age),
            store,
            log,
            budget: Budget::new(options.max_inflight_bytes),
            recent: RecentEvents::new(options.dedupe_capacity),
        }
    }

    /// Reserves room for a request of `bytes`, or answers [`IngestError::Overloaded`]. Never
    /// waits: a full budget is a 429, not a queue.
    pub fn admit(&self, bytes: usize) -> Result<Admission, IngestError> {
        match self.budget.try_admit(bytes) {
            Some(permit) => Ok(Admission { _permit: permit }),
            None => Err(overloaded()),
        }
    }

    /// Validates, dedupes and durably appends one request. `Ok` means every event is durable in
    /// `usage.raw` (or was a duplicate of one that is). The admission is released on return.
    pub async fn accept(&self, request: UsageRequest, admission: Admission) -> Result<(), IngestError> {
        self.accept_from(request, admission, self.store.as_ref()).await
    }

    /// [`Ingest::accept`], finding the request's customer in `customers`: the API passes the
    /// store as the request's tenant sees it, so usage reaches only that tenant's customers.
    pub async fn accept_from(
        &self,
        request: UsageRequest,
        admission: Admission,
        customers: &dyn Store,
    ) -> Result<(), IngestError> {
        let result = self.accept_at(request, chrono::Utc::now(), customers).await;
        drop(admission);
        result
    }

    async fn accept_at(
        &self,
        request: UsageRequest,
        wall: Timestamp,
        customers: &dyn Store,
    ) -> Result<(), IngestError> {
        let (customer_id, now) = match self.validate(&request, wall, customers).await {
            Ok(found) => found,
            Err(err) => {
                if matches!(err, IngestError::Invalid(_)) {
                    METRICS.events_rejected_total.add(request.events.len() as u64);
                }
                return Err(err);
            }
        };

        // Fast duplicate check; the ledger writer does the exact one.
        let mut events = Vec::with_capacity(request.events.len());
        let mut remembered = Vec::with_capacity(request.events.len());
        // Counted once the request is acknowledged, so the retries of a refused one count nothing.
        let mut duplicates = Duplicates::default();
        for event in request.events {
            let key = dedupe::event_key(&customer_id, &event.id);
            let fingerprint = dedupe::fingerprint(&event);
            match self.recent.check(key, fingerprint) {
                Seen::New => {
                    remembered.push((key, fingerprint));
                    events.push(event);
                }
                Seen::Same => duplicates.same += 1,
                Seen::Conflict => duplicates.conflicts += 1,
            }
        }
        if events.is_empty() {
            duplicates.count();
            return Ok(());
        }

        let partition = eventlog::partition_for(customer_id.as_bytes(), self.log.partition_count());
        if self.backlog.too_old(partition) {
            return Err(overloaded());
        }
        let count = events.len() as u64;
        let record = RawUsage { customer_id, accepted_at: now, events };
        let value = serde_json::to_vec(&record)
            .map_err(|e| IngestError::Unavailable(format!("cannot encode the usage record: {e}")))?;
        let key = record.customer_id.into_bytes();
        let started = Instant::now();
        let appended = self.log.append(Topic::UsageRaw, partition, vec![(key, value)]).await;
        METRICS.log_append_seconds.observe_duration(started.elapsed());
        if let Err(err) = appended {
            tracing::warn!(partition, error = %err, "usage append failed; the request was not accepted");
            return Err(IngestError::Unavailable(err.to_string()));
        }

        // Durable: only now may a retry of these events be dropped.
        for (key, fingerprint) in remembered {
            self.recent.remember(key, fingerprint);
        }
        METRICS.events_accepted_total.add(count);
        duplicates.count();
        Ok(())
    }

    /// The whole request's validation, then the customer it names (its id).
    /// The request's customer and its time (`wall`, or its test clock's frozen time), with the
    /// whole request checked: every problem is reported at once, the grace window judged at the
    /// customer's time (at `wall` when the customer cannot be found).
    async fn validate(
        &self,
        request: &UsageRequest,
        wall: Timestamp,
        customers: &dyn Store,
    ) -> Result<(String, Timestamp), IngestError> {
        let mut errors = ValidationErrors::new();
        validate::customer_reference(
            &mut errors,
            request.customer_id.as_deref(),
            request.customer_external_id.as_deref(),
        );
        let resolved = if errors.is_empty() {
            let (id, ext) = (request.customer_id.as_deref(), request.customer_external_id.as_deref());
            match resolve_customer(customers, id, ext).await {
                Ok(found) => Some(found),
                Err(IngestError::Invalid(problems)) => {
                    for (field, messages) in problems.into_map() {
                        messages.into_iter().for_each(|m| errors.add(field.clone(), m));
                    }
                    None
                }
                Err(other) => return Err(other),
            }
        } else {
            None
        };
        let now = match resolved.as_ref().and_then(|(_, clock)| clock.as_deref()) {
            Some(clock) => self.clock_time(clock).await?.unwrap_or(wall),
            None => wall,
        };
        validate::usage_events(&mut errors, &request.events);
        validate::grace_window(&mut errors, &request.events, now);
        errors.into_result().map_err(IngestError::Invalid)?;
        let (customer, _) = resolved.ok_or_else(|| {
            IngestError::Invalid(ValidationErrors::single("customer_id", "no customer found"))
        })?;
        Ok((customer, now))
    }

    /// The frozen time of test clock `id` (`None` once it is deleted).
    async fn clock_time(&self, id: &str) -> Result<Option<Timestamp>, IngestError> {
        let clock = store::typed::get_doc::<TestClock>(self.store.as_ref(), Table::TestClocks, id).await?;
        Ok(clock.map(|d| d.value.frozen_time))
    }
}

/// The customer a request names in `store`, and the test clock it lives by, if any.
/// `customer_id` must name a customer; `customer_external_id` must be some customer's external
/// id; given both, they must name the same customer.
async fn resolve_customer(
    store: &dyn Store,
    id: Option<&str>,
    external_id: Option<&str>,
) -> Result<(String, Option<String>), IngestError> {
    let invalid = |field: &str, message: &str| IngestError::Invalid(ValidationErrors::single(field, message));
    let by_id = match id {
        Some(id) => match store.get(Table::Customers, id).await? {
            Some(record) => Some(record),
            None => return Err(invalid("customer_id", "no customer with this id")),
        },
        None => None,
    };
    let by_external_id = match external_id {
        Some(ext) => match store.find_unique(Table::Customers, "external_id", ext).await? {
            Some(key) => Some(key),
            None => return Err(invalid("customer_external_id", "no customer with this external id")),
        },
        None => None,
    };
    let record = match (by_id, by_external_id) {
        (Some(a), Some(b)) if a.key != b => {
            return Err(invalid("customer_external_id", "names another customer than `customer_id`"))
        }
        (Some(record), _) => record,
        // Found by external id: its document tells whether it lives by a test clock.
        (None, Some(id)) => match store.get(Table::Customers, &id).await? {
            Some(record) => record,
            None => return Err(invalid("customer_external_id", "no customer with this external id")),
        },
        (None, None) => return Err(invalid("customer_id", "give `customer_id` or `customer_external_id`")),
    };
    let clock = test_clock_of(&record.doc);
    Ok((record.key, clock))
}

/// The test clock a stored customer document names, if any. Most customers have none, and a
/// byte search says so without decoding the document on the hot path.
fn test_clock_of(doc: &[u8]) -> Option<String> {
    const FIELD: &[u8] = b"\"test_clock\"";
    if !doc.windows(FIELD.len()).any(|w| w == FIELD) {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Clocked {
        #[serde(default)]
        test_clock: Option<String>,
    }
    serde_json::from_slice::<Clocked>(doc).ok().and_then(|c| c.test_clock)
}
