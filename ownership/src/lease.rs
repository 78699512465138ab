//! Partition leases in the store: the shell around [`crate::plan`].
//!
//! Each partition of a group has one lease record, `lease/{group}/{partition}` in
//! `Table::Offsets`, holding its [`Holder`] (or none). A member runs rounds every quarter of the
//! timeout: it reads every lease of its group with one `get_many`, asks [`plan`] what to renew
//! and take, renews the leases it holds with one conditional batch (a put moves the record's
//! revision: that is the heartbeat), takes leases one conditional put at a time, and publishes
//! the partitions it holds into its [`Membership`].
//!
//! Expiry needs no shared clock: a lease is expired for an observer once the observer has seen
//! the same revision for a whole timeout by its own monotonic clock. A round that takes half a
//! timeout fails, and a holder gives its partitions up by itself once a round fails half a
//! timeout after the start of its last good one (a store it cannot reach, or that does not
//! answer): at most three quarters of a timeout after its last renewal, before any observer can
//! count its leases expired. Leases are liveness only: the ledger
//! writer's epoch fence (docs/distributed.md) keeps a holder that has not noticed a lost lease yet
//! (a paused process) from posting.

use crate::membership::Membership;
use crate::plan::{plan, Holder, Seen};
use eventlog::PartitionId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use store::typed::decode;
use store::{Expect, Op, SharedStore, StoreError, Table};
use telemetry::METRICS;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a member holds leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The stable id of this replica (configured, or the host name): a process restarted with
    /// the same id takes its leases back at once.
    pub instance: String,
    /// How long a lease lives without renewal before another member may take it.
    pub timeout: Duration,
}

impl LeaseOptions {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
}

/// The key of a lease record in `Table::Offsets`.
pub fn lease_key(group: &str, partition: PartitionId) -> String {
    format!("lease/{group}/{partition}")
}

/// A lease record.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: Option<Holder>,
}

/// Joins `group` over `partitions` partitions: runs a first round (its error is the join's),
/// then keeps the leases in a task of its own until the membership is dropped or left, when it
/// releases them.
pub async fn join(
    store: SharedStore,
    group: &'static str,
    partitions: u32,
    options: LeaseOptions,
) -> Result<Membership, StoreError> {
    let mut member = Member::new(store, group, partitions, options);
    member.bounded_round().await?;
    let (tx, rx) = watch::channel(BTreeSet::new());
    member.publish(&tx);
    let task = tokio::spawn(member.run(tx));
    Ok(Membership::kept_by(rx, task))
}

/// A lease this member holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// The revision of this member's last write of it.
    revision: u64,
    /// When its partition may run here: at once for a free lease; for one taken from a live
    /// member, after that member has had rounds to notice and stop its task.
    usable_from: Instant,
}

struct Member {
    store: SharedStore,
    group: &'static str,
    keys: Vec<String>,
    me: Holder,
    timeout: Duration,
    /// Per partition: the revision last seen, and when this member first saw it.
    observed: Vec<(Option<u64>, Instant)>,
    held: BTreeMap<PartitionId, Held>,
    first_round: bool,
    /// When the last round that renewed every held lease began.
    renewed_at: Instant,
    /// A xorshift state for the jitter of the pauses between rounds.
    jitter: u64,
}

impl Member {
    fn new(store: SharedStore, group: &'static str, partitions: u32, options: LeaseOptions) -> Self {
        let now = Instant::now();
        let incarnation = uuid::Uuid::new_v4();
        let jitter = (incarnation.as_u128() as u64) | 1;
        let me = Holder { instance: options.instance, incarnation: incarnation.simple().to_string() };
        tracing::info!(group, instance = %me.instance, incarnation = %me.incarnation, "joining the group through leases in the store");
        Self {
            store,
            group,
            keys: (0..partitions).map(|p| lease_key(group, p)).collect(),
            me,
            timeout: options.timeout,
            observed: vec![(None, now); partitions as usize],
            held: BTreeMap::new(),
            first_round: true,
            renewed_at: now,
            jitter,
        }
    }

    /// The pause before the next round: between three quarters of a quarter timeout and a
    /// quarter timeout, at random. Members started together would otherwise keep their rounds
    /// in step, and a member taking a lease would read it just before its holder renews it and
    /// write just after, every round.
    fn pause(&mut self) -> Duration {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let quarter = (self.timeout / 4).max(Duration::from_millis(10));
        quarter.mul_f64(0.75 + (self.jitter % 1000) as f64 / 4000.0)
    }

    /// Rounds until every receiver of the membership is gone, then releases what it holds.
    async fn run(mut self, tx: watch::Sender<BTreeSet<PartitionId>>) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.pause()) => {}
                () = tx.closed() => break,
            }
            match self.bounded_round().await {
                Ok(()) => {
                    if failing {
                        tracing::info!(group = self.group, "leases readable again");
                        failing = false;
                    }
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(group = self.group, %error, "cannot renew the leases");
                        failing = true;
                    }
                    if self.renewed_at.elapsed() >= self.timeout / 2 && !self.held.is_empty() {
                        tracing::error!(
                            group = self.group,
                            "leases not renewed for half their timeout: giving every partition up"
                        );
                        self.held.clear();
                    }
                }
            }
            self.publish(&tx);
        }
        self.release().await;
    }

    /// Publishes the partitions that may run here now.
    fn publish(&self, tx: &watch::Sender<BTreeSet<PartitionId>>) {
        let now = Instant::now();
        let owned: BTreeSet<PartitionId> =
            self.held.iter().filter(|(_, held)| held.usable_from <= now).map(|(&p, _)| p).collect();
        for partition in 0..self.keys.len() as PartitionId {
            METRICS.partition_owned.set(self.group, partition, u64::from(owned.contains(&partition)));
        }
        tx.send_if_modified(|current| {
            let changed = *current != owned;
            *current = owned;
            changed
        });
    }

    /// A round that fails once it has taken half a timeout: a holder must learn it could not
    /// renew (and give its partitions up) before any observer can count its leases expired,
    /// however long the store takes to answer.
    async fn bounded_round(&mut self) -> Result<(), StoreError> {
        let limit = self.timeout / 2;
        tokio::time::timeout(limit, self.round())
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend(format!("a lease round took over {limit:?}"))))
    }

    /// Every lease of the group as the store has it now.
    async fn read(&mut self) -> Result<Vec<Seen>, StoreError> {
        let records = self.store.get_many(Table::Offsets, &self.keys).await?;
        let now = Instant::now();
        let mut seen = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let partition = index as PartitionId;
            let (revision, holder) = match record {
                None => (None, None),
                Some(record) => {
                    let revision = record.revision;
                    match decode::<Lease>(Table::Offsets, record) {
                        Ok(doc) => (Some(revision), doc.value.holder),
                        Err(error) => {
                            tracing::error!(group = self.group, partition, %error, "unreadable lease: taken as free");
                            (Some(revision), None)
                        }
                    }
                }
            };
            let observed = &mut self.observed[index];
            if observed.0 != revision {
                *observed = (revision, now);
            }
            seen.push(Seen { partition, revision, holder, unchanged_for: now - observed.1 });
        }
        Ok(seen)
    }

    /// One round: read, plan, renew (an error here fails the round), then take (an error there
    /// is only logged: the renewal stands).
    async fn round(&mut self) -> Result<(), StoreError> {
        let began = Instant::now();
        let seen = self.read().await?;
        let plan = plan(&self.me, &seen, self.timeout, self.first_round);
        self.first_round = false;

        let lost: Vec<PartitionId> =
            self.held.keys().filter(|p| !plan.renew.iter().any(|(r, _)| r == *p)).copied().collect();
        for partition in lost {
            self.held.remove(&partition);
            self.report_lost(partition, seen[partition as usize].holder.as_ref());
        }
        self.renew(&plan.renew).await?;
        self.renewed_at = began;
        let now = Instant::now();
        let stolen = plan.steal.map(|(p, revision)| (p, Some(revision), now + self.timeout / 2));
        for (partition, revision, usable_from) in
            plan.take.into_iter().map(|(p, r)| (p, r, now)).chain(stolen)
        {
            let previous = seen[partition as usize].holder.as_ref().map(|h| h.instance.clone());
            match self.take(partition, revision, usable_from).await {
                Ok(true) => tracing::info!(group = self.group, partition, from = ?previous, "lease taken"),
                Ok(false) => {}
                Err(error) => tracing::warn!(group = self.group, partition, %error, "cannot take a lease"),
            }
        }
        Ok(())
    }

    fn report_lost(&self, partition: PartitionId, taker: Option<&Holder>) {
        match taker {
            Some(taker) if taker.instance == self.me.instance => tracing::error!(
                group = self.group,
                partition,
                instance = %taker.instance,
                "lease taken by another process with this instance id: give each process its own --instance-id"
            ),
            _ => {
                tracing::warn!(group = self.group, partition, taken_by = ?taker.map(|h| &h.instance), "lease lost")
            }
        }
    }

    /// Renews every held lease with one batch. When the batch meets a conflict (it may have
    /// been applied in part, on a store that applies a batch partition by partition), the leases
    /// are read again: those still naming this member stay held at the revision read.
    async fn renew(&mut self, leases: &[(PartitionId, u64)]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let batch = leases
            .iter()
            .map(|&(partition, revision)| self.op(partition, Expect::Revision(revision), Some(&self.me)))
            .collect::<Result<Vec<_>, _>>()?;
        match self.store.write(batch).await {
            Ok(()) => {
                for &(partition, revision) in leases {
                    if let Some(held) = self.held.get_mut(&partition) {
                        held.revision = revision + 1;
                    } else {
                        // Held by this member in the store, unknown here: a take whose answer
                        // was lost. Its task starts now.
                        let held = Held { revision: revision + 1, usable_from: Instant::now() };
                        self.held.insert(partition, held);
                    }
                }
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => {
                let seen = self.read().await?;
                for &(partition, _) in leases {
                    let lease = &seen[partition as usize];
                    match (
                        lease.holder.as_ref() == Some(&self.me),
                        lease.revision,
                        self.held.get_mut(&partition),
                    ) {
                        (true, Some(revision), Some(held)) => held.revision = revision,
                        (true, Some(revision), None) => {
                            self.held.insert(partition, Held { revision, usable_from: Instant::now() });
                        }
                        _ => {
                            self.held.remove(&partition);
                            self.report_lost(partition, lease.holder.as_ref());
                        }
                    }
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Holds `partition`'s lease if its revision is still `revision`; false when it moved.
    async fn take(
        &mut self,
        partition: PartitionId,
        revision: Option<u64>,
        usable_from: Instant,
    ) -> Result<bool, StoreError> {
        let expect = revision.map_or(Expect::Absent, Expect::Revision);
        let op = self.op(partition, expect, Some(&self.me))?;
        match self.store.write(vec![op]).await {
            Ok(()) => {
                self.held.insert(partition, Held { revision: revision.map_or(1, |r| r + 1), usable_from });
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn op(&self, partition: PartitionId, expect: Expect, holder: Option<&Holder>) -> Result<Op, StoreError> {
        let lease = Lease { holder: holder.cloned() };
        Ok(Op::put_doc(Table::Offsets, &self.keys[partition as usize], &lease)?.expect(expect))
    }

    /// Gives up every lease the store says this member holds (read again: what this member
    /// knows may be stale after a failed round), within half a timeout, so that a successor
    /// takes them at once instead of after a timeout.
    async fn release(mut self) {
        for partition in 0..self.keys.len() as PartitionId {
            METRICS.partition_owned.set(self.group, partition, 0);
        }
        let limit = self.timeout / 2;
        let released = tokio::time::timeout(limit, async {
            let seen = self.read().await?;
            let mut released = Vec::new();
            for lease in seen.iter().filter(|l| l.holder.as_ref() == Some(&self.me)) {
                let Some(revision) = lease.revision else { continue };
                let op = self.op(lease.partition, Expect::Revision(revision), None)?;
                match self.store.write(vec![op]).await {
                    Ok(()) => released.push(lease.partition),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok::<_, StoreError>(released)
        })
        .await;
        match released {
            Ok(Ok(released)) if !released.is_empty() => {
                tracing::info!(group = self.group, ?released, "leases released")
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(group = self.group, %error, "cannot release the leases"),
            Err(_) => tracing::warn!(group = self.group, "releasing the leases took over {limit:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Long enough that a loaded machine's fsync stalls do not expire a live member's leases.
    const TIMEOUT: Duration = Duration::from_secs(2);

    fn store(dir: &tempfile::TempDir) -> SharedStore {
        Arc::new(store::EmbeddedStore::open(dir.path().join("store")).expect("store"))
    }

    fn options(instance: &str) -> LeaseOptions {
        LeaseOptions { instance: instance.into(), timeout: TIMEOUT }
    }

    fn long(instance: &str) -> LeaseOptions {
        LeaseOptions { instance: instance.into(), timeout: Duration::from_secs(3600) }
    }

    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "not in time: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A process that dies: its lease task stops where it is, releasing nothing.
    fn die(membership: Membership) {
        let Membership { task, .. } = membership;
        task.expect("a lease task").abort();
    }

    #[tokio::test]
    async fn a_lone_member_holds_every_partition_from_its_first_round() {
        let dir = tempfile::tempdir().unwrap();
        let a = join(store(&dir), "g", 4, options("a")).await.unwrap();
        assert_eq!(a.owned(), (0..4).collect());
        a.leave().await;
    }

    #[tokio::test]
    async fn two_members_share_the_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let a = join(store.clone(), "g", 4, options("a")).await.unwrap();
        let b = join(store.clone(), "g", 4, options("b")).await.unwrap();
        eventually("two each, none twice", || {
            let (x, y) = (a.owned(), b.owned());
            x.len() == 2 && y.len() == 2 && x.is_disjoint(&y)
        })
        .await;
        a.leave().await;
        b.leave().await;
    }

    #[tokio::test]
    async fn a_member_that_leaves_releases_its_leases_to_the_other_before_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let slow = |instance| LeaseOptions { timeout: Duration::from_secs(6), ..options(instance) };
        let a = join(store.clone(), "g", 4, slow("a")).await.unwrap();
        let joined = Instant::now();
        let b = join(store.clone(), "g", 4, slow("b")).await.unwrap();
        a.leave().await;
        // Rounds every 1.5 s: b takes the released leases at its next one, and the one it may
        // have taken from a before that runs 3 s after it took it; a's leases would need 6 s
        // from b's first look to expire.
        eventually("b holds everything", || b.owned().len() == 4).await;
        assert!(joined.elapsed() < Duration::from_secs(6), "{:?}", joined.elapsed());
        b.leave().await;
    }

    #[tokio::test]
    async fn the_leases_of_a_member_that_stopped_renewing_expire_and_move() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        die(join(store.clone(), "g", 4, options("a")).await.unwrap());
        let joined = Instant::now();
        let b = join(store.clone(), "g", 4, options("b")).await.unwrap();
        // Until they expire, a's leases count as a live member's: b takes its share of 2 at most.
        eventually("b holds everything", || b.owned().len() == 4).await;
        assert!(joined.elapsed() >= TIMEOUT, "every lease after {:?}", joined.elapsed());
        b.leave().await;
    }

    #[tokio::test]
    async fn a_restarted_instance_takes_its_leases_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        die(join(store.clone(), "g", 4, long("a")).await.unwrap());
        let after = join(store.clone(), "g", 4, long("a")).await.unwrap();
        assert_eq!(after.owned(), (0..4).collect(), "on its first round, with an hour-long timeout");
        after.leave().await;
    }

    #[tokio::test]
    async fn a_lease_taken_from_a_live_member_runs_only_after_that_member_had_rounds_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let a = join(store.clone(), "g", 2, options("a")).await.unwrap();
        let b = join(store.clone(), "g", 2, options("b")).await.unwrap();
        // b's first round took one of a's two leases in the store; it runs it half a timeout
        // later, by when a (rounds every half second) has given it up.
        assert!(b.owned().is_empty(), "{:?}", b.owned());
        eventually("b runs one", || b.owned().len() == 1).await;
        assert_eq!(a.owned().len(), 1, "a gave it up first");
        a.leave().await;
        b.leave().await;
    }
}
