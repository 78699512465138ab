//! Byte-weighted admission control: a request may proceed only while the bytes of the requests
//! in flight (admitted, not yet durable) fit the budget. Over budget, ingest refuses (429)
//! instead of queueing without limit.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A budget of in-flight request bytes, one semaphore permit per byte.
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    /// Permits in the semaphore: the configured budget, clamped to what a single
    /// `try_acquire_many` can take (`u32::MAX`) and to at least 1.
    total: u32,
}

/// Held for as long as a request's bytes count against the budget.
pub(crate) type Permit = OwnedSemaphorePermit;

impl Budget {
    pub(crate) fn new(max_inflight_bytes: usize) -> Self {
        let total = u32::try_from(max_inflight_bytes.min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX).max(1);
        Self { permits: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Room for `bytes`, without waiting. A request larger than the whole budget takes the whole
    /// budget (so it runs alone rather than never), and an empty one still takes one byte.
    pub(crate) fn try_admit(&self, bytes: usize) -> Option<Permit> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, self.total);
        Arc::clone(&self.permits).try_acquire_many_owned(wanted).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_larger_than_the_budget_takes_the_whole_budget() {
        let budget = Budget::new(100);
        let big = budget.try_admit(1_000).expect("an idle budget admits an oversized request");
        assert!(budget.try_admit(1).is_none());
        drop(big);
        assert!(budget.try_admit(100).is_some());
    }

    #[test]
    fn requests_are_admitted_while_their_bytes_fit() {
        let budget = Budget::new(100);
        let a = budget.try_admit(60);
        assert!(a.is_some());
        assert!(budget.try_admit(50).is_none());
        let b = budget.try_admit(40);
        assert!(b.is_some());
        drop(a);
        assert!(budget.try_admit(50).is_some());
    }
}
