//! Who owns which partition of a pipeline stage, and the tasks that run for owned partitions.
//!
//! A process alone on its log (the embedded log) owns every partition. Processes that share a
//! log (Kafka) hold partitions through leases in the store they share: a dead member's leases
//! expire and the live members take them, a restarted member with the same instance id takes
//! its own back at once, a new member takes its share from the others. Kafka's consumer-group
//! protocol is not used: a Kafka-protocol broker that does not reassign a dead member's
//! partitions (tansu 0.6) would otherwise leave them unowned for good (docs/distributed.md).
//!
//! - [`plan`]: the lease rules, a pure function.
//! - [`lease`]: the leases in the store, renewed and taken in rounds.
//! - [`membership`]: the owned set as a watch channel, and [`membership::supervise`], one task
//!   per owned partition.

pub mod lease;
pub mod membership;
pub mod plan;

pub use lease::LeaseOptions;
pub use membership::{supervise, Membership, MembershipEnded, SuperviseOptions};

use store::{SharedStore, StoreError};

/// How a process comes to own partitions.
#[derive(Clone)]
pub enum Ownership {
    /// Every partition: the process is alone on its log.
    Exclusive { partitions: u32 },
    /// Leases in the shared store.
    Leases { store: SharedStore, partitions: u32, options: LeaseOptions },
}

impl Ownership {
    /// Joins `group`: the partitions owned now, and every change.
    pub async fn join(&self, group: &'static str) -> Result<Membership, StoreError> {
        match self {
            Ownership::Exclusive { partitions } => {
                for partition in 0..*partitions {
                    telemetry::METRICS.partition_owned.set(group, partition, 1);
                }
                Ok(Membership::all(*partitions))
            }
            Ownership::Leases { store, partitions, options } => {
                lease::join(store.clone(), group, *partitions, options.clone()).await
            }
        }
    }

    /// For the start-up line: how partitions are owned.
    pub fn describe(&self) -> String {
        match self {
            Ownership::Exclusive { .. } => "every partition (alone on the log)".to_string(),
            Ownership::Leases { options, .. } => {
                format!("leases in the store (instance {}, timeout {:?})", options.instance, options.timeout)
            }
        }
    }
}
