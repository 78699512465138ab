//! ingest: the `POST /events` service (`semantics.md` §3). Validates a whole request, resolves
//! the customer, drops recently seen duplicate event ids, and appends the request to `usage.raw`
//! under the customer's partition; it returns only once the append is durable. Byte-weighted
//! admission control refuses work (429) instead of buffering without limit.
//!
//! The HTTP handler in `api` reads the body, asks [`Ingest::admit`] for room, parses the body
//! into a [`UsageRequest`] and calls [`Ingest::accept`].

use eventlog::SharedLog;
use schemas::ledger::UsageRequest;
use schemas::problem::ValidationErrors;
use store::{SharedStore, StoreError};

/// Limits of the ingest service.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Request bytes that may be in flight (admitted, not yet durable) at once.
    pub max_inflight_bytes: usize,
    /// (customer, event id) pairs remembered for the fast duplicate check.
    pub dedupe_capacity: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { max_inflight_bytes: 64 << 20, dedupe_capacity: 1 << 20 }
    }
}

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

/// Room for one request's bytes; released when dropped (after the append is durable).
pub struct Admission {
    _private: (),
}

/// The ingest service; cheap to share behind an `Arc`.
pub struct Ingest {
    _store: SharedStore,
    _log: SharedLog,
    _options: IngestOptions,
}

impl Ingest {
    pub fn new(store: SharedStore, log: SharedLog, options: IngestOptions) -> Self {
        Self { _store: store, _log: log, _options: options }
    }

    /// Reserves room for a request of `bytes`, or answers [`IngestError::Overloaded`].
    pub fn admit(&self, _bytes: usize) -> Result<Admission, IngestError> {
        Ok(Admission { _private: () })
    }

    /// Validates, dedupes and durably appends one request. `Ok` means every event is durable in
    /// `usage.raw` (or was a duplicate of one that is).
    pub async fn accept(&self, _request: UsageRequest, _admission: Admission) -> Result<(), IngestError> {
        Err(IngestError::Unavailable("not built yet".into()))
    }
}
