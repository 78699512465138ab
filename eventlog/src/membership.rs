//! Which partitions of a topic this process owns. Partition tasks (raters, ledger writers) run
//! only for owned partitions, so each partition has one rater and one writer at a time.
//!
//! The embedded log owns every partition, forever ([`Membership::all`]). Kafka assigns them
//! through its consumer-group protocol and moves them when members join, leave or die; its
//! backend publishes each new assignment into the [`Membership`]'s watch channel.

use crate::PartitionId;
use std::collections::BTreeSet;
use tokio::sync::watch;

/// The partitions this member owns now, and every later change. Dropping it leaves the group.
pub struct Membership {
    owned: watch::Receiver<BTreeSet<PartitionId>>,
    /// Whatever keeps the membership alive (Kafka: the group consumer and its poll thread).
    _member: Option<Box<dyn Send + Sync>>,
}

impl Membership {
    /// A membership whose assignment `owned` reports; `member` is dropped with it.
    pub fn new(owned: watch::Receiver<BTreeSet<PartitionId>>, member: impl Send + Sync + 'static) -> Self {
        Self { owned, _member: Some(Box::new(member)) }
    }

    /// Every partition of a `count`-partition topic, forever (the embedded log: one process).
    pub fn all(count: u32) -> Self {
        let (tx, owned) = watch::channel((0..count).collect());
        // The sender lives as long as the membership, so the assignment never "closes".
        Self { owned, _member: Some(Box::new(tx)) }
    }

    /// The partitions owned now.
    pub fn owned(&self) -> BTreeSet<PartitionId> {
        self.owned.borrow().clone()
    }

    /// A receiver of the assignment, for a supervisor that reacts to changes.
    pub fn watch(&self) -> watch::Receiver<BTreeSet<PartitionId>> {
        self.owned.clone()
    }
}
