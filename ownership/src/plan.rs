//! The lease rules as a pure function: given what a member saw of every lease of its group in
//! one round, which leases it renews and which it takes. No IO and no clock: the shell
//! ([`crate::lease`]) reads the leases, measures how long each has been unchanged, and writes
//! what [`plan`] says with a precondition on the revision it read.
//!
//! Invariants (each one is a test below):
//! 1. A member renews exactly the leases it holds (same instance, same incarnation).
//! 2. A member takes only leases that are free: never held, released, expired (unchanged for a
//!    whole timeout by its own clock: no clocks are compared between processes), or, on its first
//!    round, held by an earlier incarnation of its own instance (a restarted replica takes all its
//!    partitions back at once, as static membership does on Kafka).
//! 3. A member takes a live lease of another member (a steal) only from a member holding at least
//!    two more than it will, and one per round: each steal narrows the gap, so two members never
//!    take from each other back and forth.
//! 4. Every free lease is taken by someone: a member takes free leases up to its fair share
//!    (`ceil(partitions / live members)`), and a member that sees no other live member has a fair
//!    share of every partition.
//! 5. Rounds converge: whatever the start, members that keep running rounds end up holding every
//!    partition once, their counts at most one apart.

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
    /// Free leases to take: usable at once, nobody else runs them.
    pub take: Vec<(PartitionId, Option<u64>)>,
    /// At most one live lease of the busiest member, to take: its holder runs it until its next
    /// round, so the shell starts it later.
    pub steal: Option<(PartitionId, u64)>,
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
    // Members start their scan of free leases at different partitions, so that after a death
    // the survivors do not all race for the same lease first.
    let start = start_of(&me.instance, seen.len());
    free.sort_by_key(|&(p, _)| (p as usize + seen.len() - start) % seen.len().max(1));
    let want = share.saturating_sub(renew.len() + reclaimable.len());
    let mut take = reclaimable;
    take.extend(free.into_iter().take(want));
    let mine = renew.len() + take.len();
    let mut steal = None;
    if mine < share {
        // The busiest member (the last by holder on a tie, so every member picks the same).
        let busiest = others.values().max_by_key(|held| held.len());
        if let Some(held) = busiest.filter(|held| held.len() >= mine + 2) {
            steal = held.last().and_then(|lease| Some((lease.partition, lease.revision?)));
        }
    }
    Plan { renew, take, steal, share }
}

/// Where `instance` starts scanning `partitions` free leases: a stable hash (FNV-1a) of its id.
fn start_of(instance: &str, partitions: usize) -> usize {
    let hash = instance
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (hash % partitions.max(1) as u64) as usize
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

    fn sorted(mut partitions: Vec<PartitionId>) -> Vec<PartitionId> {
        partitions.sort_unstable();
        partitions
    }

    #[test]
    fn a_lone_member_takes_every_lease_never_written() {
        let me = holder("a", "1");
        let seen: Vec<Seen> = (0..4).map(never_written).collect();
        let plan = plan(&me, &seen, TIMEOUT, true);
        assert_eq!(sorted(taken(&plan)), vec![0, 1, 2, 3]);
        assert!(plan.take.iter().all(|(_, revision)| revision.is_none()));
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
        assert!(plan.take.is_empty() && plan.steal.is_none(), "{plan:?}");
        assert_eq!(plan.share, 1);
    }

    #[test]
    fn a_lease_unchanged_for_a_whole_timeout_is_expired_and_taken() {
        let me = holder("a", "1");
        let dead = holder("b", "1");
        let seen =
            vec![lease(0, Some(&dead), 3, 10), lease(1, Some(&dead), 5, 10), lease(2, Some(&me), 9, 0)];
        let mut plan = plan(&me, &seen, TIMEOUT, false);
        plan.take.sort_unstable();
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
        let later = plan(&me, &seen, TIMEOUT, false);
        assert_eq!((later.take, later.steal), (vec![], Some((1, 4))));
    }

    #[test]
    fn a_restarted_instance_takes_back_all_it_held_even_above_its_share() {
        let me = holder("a", "2");
        let (before, other) = (holder("a", "1"), holder("b", "1"));
        let mut seen: Vec<Seen> = (0..6).map(|p| lease(p, Some(&before), 3, 0)).collect();
        seen.extend((6..8).map(|p| lease(p, Some(&other), 3, 0)));
        let plan = plan(&me, &seen, TIMEOUT, true);
        assert_eq!(sorted(taken(&plan)), vec![0, 1, 2, 3, 4, 5], "share 4, but its 6 have no other owner");
    }

    #[test]
    fn a_new_member_takes_one_lease_a_round_from_a_member_over_its_share() {
        let me = holder("b", "1");
        let busy = holder("a", "1");
        let seen: Vec<Seen> = (0..4).map(|p| lease(p, Some(&busy), 5, 0)).collect();
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert_eq!((plan.take.clone(), plan.steal), (vec![], Some((3, 5))));
        assert_eq!(plan.share, 2);
    }

    #[test]
    fn a_member_left_with_nothing_takes_from_one_holding_two_more_even_at_its_share() {
        // 8 partitions, 5 members: the share is 2 and four members hold 2 each.
        let me = holder("e", "1");
        let held: Vec<Holder> = ["a", "b", "c", "d"].iter().map(|m| holder(m, "1")).collect();
        let seen: Vec<Seen> = (0..8).map(|p| lease(p, Some(&held[p as usize / 2]), 1, 0)).collect();
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert!(plan.steal.is_some(), "{plan:?}");
    }

    #[test]
    fn a_member_at_its_share_takes_from_nobody() {
        let me = holder("b", "1");
        let other = holder("a", "1");
        let seen =
            vec![lease(0, Some(&other), 5, 0), lease(1, Some(&me), 5, 0), lease(2, Some(&other), 5, 0)];
        // Share: ceil(3 / 2) = 2; `other` holds 2, only one more than me.
        let plan = plan(&me, &seen, TIMEOUT, false);
        assert!(plan.take.is_empty() && plan.steal.is_none(), "{plan:?}");
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
        /// Invariants 2 and 3: live leases are only stolen, one a round, from a member holding
        /// at least two more than the thief will; free ones are taken within the share.
        #[test]
        fn live_leases_move_only_from_a_member_holding_two_more(
            held in proptest::collection::vec(0usize..4, 1..24),
            alive in proptest::collection::vec(any::<bool>(), 4),
            me in 0usize..4,
        ) {
            let seen = world(&held, &alive);
            let holder_me = holder(&format!("m{me}"), "1");
            let plan = plan(&holder_me, &seen, TIMEOUT, false);
            let mine = plan.renew.len() + plan.take.len();
            for (p, _) in &plan.take {
                let owner = held[*p as usize];
                prop_assert!(owner != me && !alive[owner], "took a live lease without stealing it");
            }
            prop_assert!(plan.renew.len().max(plan.share) >= mine);
            if let Some((p, _)) = plan.steal {
                let owner = held[p as usize];
                prop_assert!(owner != me && alive[owner]);
                prop_assert!(held.iter().filter(|&&o| o == owner).count() >= mine + 2);
            }
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

        /// Invariant 5: live members running rounds one after the other, each applying its plan,
        /// reach a state no round changes, where every partition has one holder and the counts
        /// are at most one apart.
        #[test]
        fn rounds_converge_to_a_balanced_assignment(
            start in proptest::collection::vec(proptest::option::of(0usize..6), 1..20),
            members in 1usize..7,
        ) {
            let names: Vec<Holder> = (0..members).map(|m| holder(&format!("m{m}"), "1")).collect();
            let mut owner: Vec<Option<usize>> = start.iter().map(|o| o.filter(|m| *m < members)).collect();
            let mut settled = false;
            for _ in 0..200 {
                let before = owner.clone();
                for m in 0..members {
                    let seen: Vec<Seen> = owner
                        .iter()
                        .enumerate()
                        .map(|(p, o)| match o {
                            Some(o) => lease(p as PartitionId, Some(&names[*o]), 1, 0),
                            None => never_written(p as PartitionId),
                        })
                        .collect();
                    let plan = plan(&names[m], &seen, TIMEOUT, false);
                    for (p, _) in plan.take {
                        owner[p as usize] = Some(m);
                    }
                    if let Some((p, _)) = plan.steal {
                        owner[p as usize] = Some(m);
                    }
                }
                if owner == before {
                    settled = true;
                    break;
                }
            }
            prop_assert!(settled, "no fixpoint in 200 rounds: {owner:?}");
            prop_assert!(owner.iter().all(Option::is_some), "a partition without a holder: {owner:?}");
            let counts: Vec<usize> = (0..members).map(|m| owner.iter().filter(|o| **o == Some(m)).count()).collect();
            let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "counts {counts:?}");
        }
    }
}
