//! The lease rules as a pure function: given what a member saw of every lease of its group in
//! one round, which leases it renews and which it takes. No IO and no clock: the shell
//! ([`crate::lease`]) reads the leases, measures how long each has been unchanged, and writes
//! what [`plan`] says with a precondition on the revision it read.
//!
//! Invariants (each one is a test below):
//! 1. A member renews exactly the leases it holds (same instance, same incarnation).
//! 2. A member takes only leases that are free: never held, released, expired (unchanged for a
//!    whole timeout by its own clock: no clocks are compared between processes), or, on its first
//!    round, held by an earlier incarnation of its own instance (a restarted replica takes its
//!    partitions back at once, as static membership does on Kafka).
//! 3. A member never takes a live lease of another member unless that member holds more than
//!    its fair share (`ceil(partitions / live members)`), and then one lease per round: load
//!    moves to a new member gradually, and two members can never take from each other back and
//!    forth (the one below its share takes from the one above it, never the reverse).
//! 4. Every free lease is taken by someone: a member takes free leases up to its fair share,
//!    and a member that sees no other live member has a fair share of every partition.

use eventlog::PartitionId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Who holds a lease: the member's stable instance id (configured, or the host name) and the
/// incarnation of the process (new at every start).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Holder {
    pub instance: String,
    pub incarnation: String,
}

/// One lease as a member saw it in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub partition: PartitionId,
    /// The record's revision; `None` when the lease was never written.
    pub revision: Option<u64>,
    /// `None` when never held or released.
    pub holder: Option<Holder>,
    /// How long, by this member's clock, the record has had this revision.
    pub unchanged_for: Duration,
}

/// What a member writes in one round. Every write carries the precondition "the revision is
/// still the one I saw" (`None`: still absent), so a lease changed meanwhile is not written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The leases this member holds, to renew.
    pub renew: Vec<(PartitionId, u64)>,
    /// Free leases to take, and at most one lease of an overloaded member.
    pub take: Vec<(PartitionId, Option<u64>)>,
    /// This member's fair share this round.
    pub share: usize,
}

/// The leases `me` renews and takes, from `seen` (one entry per partition of the group).
/// `first_round`: nothing has been taken by this process yet, so leases of `me.instance` held
/// by another incarnation are its own from before a restart.
pub fn plan(me: &Holder, seen: &[Seen], timeout: Duration, first_round: bool) -> Plan {
    let mut renew = Vec::new();
    let mut reclaimable = Vec::new();
    let mut free = Vec::new();
    let mut others: BTreeMap<&Holder, Vec<&Seen>> = BTreeMap::new();
    for lease in seen {
        match &lease.holder {
            Some(holder) if holder == me => {
                if let Some(revision) = lease.revision {
                    renew.push((lease.partition, revision));
                }
            }
            Some(holder) if first_round && holder.instance == me.instance => {
                reclaimable.push((lease.partition, lease.revision))
            }
            Some(holder) if lease.unchanged_for < timeout => others.entry(holder).or_default().push(lease),
            _ => free.push((lease.partition, lease.revision)),
        }
    }
    let members = others.len() + 1;
    let share = seen.len().div_ceil(members);
    let mut want = share.saturating_sub(renew.len());
    let mut take: Vec<(PartitionId, Option<u64>)> = reclaimable.into_iter().chain(free).take(want).collect();
    want -= take.len();
    if want > 0 {
        // The most loaded member (the first by holder on a tie, so every member picks the same).
        let busiest = others.values().filter(|held| held.len() > share).max_by_key(|held| held.len());
        if let Some(lease) = busiest.and_then(|held| held.last()) {
            take.push((lease.partition, lease.revision));
        }
    }
    Plan { renew, take, share }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn holder(instance: &str, incarnation: &str) -> Holder {
        Holder { instance: instance.into(), incarnation: incarnation.into() }
    }

    fn lease(partition: PartitionId, holder: Option<&Holder>, revision: u64, unchanged_secs: u64) -> Seen {
        Seen {
            partition,
            revision: Some(revision),
            holder: holder.cloned(),
            unchanged_for: Duration::from_secs(unchanged_secs),
        }
    }

    fn never_written(partition: PartitionId) -> Seen {
        Seen { partition, revision: None, holder: None, unchanged_for: Duration::ZERO }
    }

    fn taken(plan: &Plan) -> Vec<PartitionId> {
        plan.take.iter().map(|(p, _)| *p).collect()
    }

    #[test]
    fn a_lone_member_takes_every_lease_never_written() {
        let me = holder("a", "1");
        let seen: Vec<Seen> = (0..4).map(never_written).collect();
        let plan = plan(&me, &seen, TIMEOUT, true);
        assert_eq!(plan.take, vec![(0, None), (1, None), (2, None), (3, None)]);
        assert!(plan.renew.is_empty());
        assert_eq!(plan.share, 4);
    }

    #[test]
    fn a_member_renews_exactly_the_leases_it_holds() {
        let me = holder("a", "1");
        let earlier = holder("a", "0");
        let other = holder("b", "1");
        let seen =
            vec![lease(0, Some(&me), 7, 1), lease(1, Some(&other), 3, 1), lease(2, Some(&earlier), 2, 1)];
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert_eq!(plan.renew, vec![(0, 7)]);
    }

    #[test]
    fn a_live_lease_of_another_member_is_not_taken_within_the_share() {
        let me = holder("a", "1");
        let (b, c) = (holder("b", "1"), holder("c", "1"));
        // Nine seconds unchanged: live still. Share: ceil(2 / 3) = 1, and nobody holds more.
        let seen = vec![lease(0, Some(&b), 3, 9), lease(1, Some(&c), 3, 9)];
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert!(plan.take.is_empty(), "{plan:?}");
        assert_eq!(plan.share, 1);
    }

    #[test]
    fn a_lease_unchanged_for_a_whole_timeout_is_expired_and_taken() {
        let me = holder("a", "1");
        let dead = holder("b", "1");
        let seen =
            vec![lease(0, Some(&dead), 3, 10), lease(1, Some(&dead), 5, 10), lease(2, Some(&me), 9, 0)];
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert_eq!(plan.take, vec![(0, Some(3)), (1, Some(5))]);
        assert_eq!(plan.share, 3, "a dead member does not count");
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let me = holder("a", "1");
        let other = holder("b", "1");
        let seen = vec![lease(0, None, 4, 0), lease(1, Some(&other), 3, 0)];
        assert_eq!(taken(&plan(&me, &seen, TIMEOUT, false)), vec![0]);
    }

    #[test]
    fn a_restarted_instance_takes_its_own_leases_back_on_its_first_round_only() {
        let me = holder("a", "2");
        let before = holder("a", "1");
        let seen = vec![lease(0, Some(&before), 3, 0), lease(1, Some(&before), 4, 0)];
        assert_eq!(plan(&me, &seen, TIMEOUT, true).take, vec![(0, Some(3)), (1, Some(4))]);
        // Later, another live process with the same instance id is just another member.
        assert_eq!(plan(&me, &seen, TIMEOUT, false).take, vec![(1, Some(4))]);
    }

    #[test]
    fn a_new_member_takes_one_lease_a_round_from_a_member_over_its_share() {
        let me = holder("b", "1");
        let busy = holder("a", "1");
        let seen: Vec<Seen> = (0..4).map(|p| lease(p, Some(&busy), 5, 0)).collect();
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert_eq!(plan.take, vec![(3, Some(5))]);
        assert_eq!(plan.share, 2);
    }

    #[test]
    fn a_member_at_its_share_takes_from_nobody() {
        let me = holder("b", "1");
        let other = holder("a", "1");
        let seen =
            vec![lease(0, Some(&other), 5, 0), lease(1, Some(&me), 5, 0), lease(2, Some(&other), 5, 0)];
        // Share: ceil(3 / 2) = 2; `other` holds 2, not more.
        assert!(plan(&me, &seen, TIMEOUT, false).take.is_empty());
    }

    /// Members seen by everyone, each holding some partitions; `alive[i]` says whether member
    /// `i` renews its leases (a dead member's leases are a timeout old).
    fn world(held: &[usize], alive: &[bool]) -> Vec<Seen> {
        held.iter()
            .enumerate()
            .map(|(p, &m)| {
                let h = holder(&format!("m{m}"), "1");
                lease(p as PartitionId, Some(&h), 1, if alive[m] { 0 } else { 10 })
            })
            .collect()
    }

    proptest! {
        /// Invariant 3: a member takes a live lease only from a member over the share, and at
        /// most one such lease a round; it never takes more than its share.
        #[test]
        fn live_leases_move_only_from_a_member_over_its_share(
            held in proptest::collection::vec(0usize..4, 1..24),
            alive in proptest::collection::vec(any::<bool>(), 4),
            me in 0usize..4,
        ) {
            let seen = world(&held, &alive);
            let holder_me = holder(&format!("m{me}"), "1");
            let plan = plan(&holder_me, &seen, TIMEOUT, false);
            let mut live_taken = 0;
            for (p, _) in &plan.take {
                let owner = held[*p as usize];
                prop_assert_ne!(owner, me);
                if alive[owner] {
                    live_taken += 1;
                    let owner_holds = held.iter().filter(|&&o| o == owner).count();
                    prop_assert!(owner_holds > plan.share);
                }
            }
            prop_assert!(live_taken <= 1);
            prop_assert!(plan.renew.len() + plan.take.len() <= plan.share.max(plan.renew.len()));
        }

        /// Invariant 4: when every other member is dead, a member's share is every partition
        /// and it takes every lease it does not hold.
        #[test]
        fn the_last_live_member_takes_everything(
            held in proptest::collection::vec(0usize..4, 1..24),
            me in 0usize..4,
        ) {
            let alive: Vec<bool> = (0..4).map(|m| m == me).collect();
            let seen = world(&held, &alive);
            let plan = plan(&holder(&format!("m{me}"), "1"), &seen, TIMEOUT, false);
            prop_assert_eq!(plan.renew.len() + plan.take.len(), held.len());
        }
    }
}
