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
//! the same revision for a whole timeout by its own monotonic clock. A holder gives its
//! partitions up by itself once it has not renewed for half a timeout (a store it cannot reach),
//! before any observer can count its leases expired. Leases are liveness only: the ledger
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
    let owned = member.round().await?;
    member.renewed_at = Instant::now();
    let (tx, rx) = watch::channel(owned);
    member.publish(&tx);
    let task = tokio::spawn(member.run(tx));
    Ok(Membership::kept_by(rx, task))
}

struct Member {
    store: SharedStore,
    group: &'static str,
    keys: Vec<String>,
    me: Holder,
    timeout: Duration,
    /// Per partition: the revision last seen, and when this member first saw it.
    observed: Vec<(Option<u64>, Instant)>,
    /// The leases held, with the revision of this member's last write of each.
    held: BTreeMap<PartitionId, u64>,
    first_round: bool,
    /// When the last round that renewed every held lease began.
    renewed_at: Instant,
}

impl Member {
    fn new(store: SharedStore, group: &'static str, partitions: u32, options: LeaseOptions) -> Self {
        let now = Instant::now();
        let me =
            Holder { instance: options.instance, incarnation: uuid::Uuid::new_v4().simple().to_string() };
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
        }
    }

    fn interval(&self) -> Duration {
        (self.timeout / 4).max(Duration::from_millis(10))
    }

    /// Rounds until every receiver of the membership is gone, then releases what it holds.
    async fn run(mut self, tx: watch::Sender<BTreeSet<PartitionId>>) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval()) => {}
                () = tx.closed() => break,
            }
            let began = Instant::now();
            match self.round().await {
                Ok(_) => {
                    self.renewed_at = began;
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

    fn publish(&self, tx: &watch::Sender<BTreeSet<PartitionId>>) {
        let owned: BTreeSet<PartitionId> = self.held.keys().copied().collect();
        for partition in 0..self.keys.len() as PartitionId {
            METRICS.partition_owned.set(self.group, partition, u64::from(owned.contains(&partition)));
        }
        tx.send_if_modified(|current| {
            let changed = *current != owned;
            *current = owned;
            changed
        });
    }

    /// One round: read, plan, renew, take. Returns what is held after it.
    async fn round(&mut self) -> Result<BTreeSet<PartitionId>, StoreError> {
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
        let plan = plan(&self.me, &seen, self.timeout, self.first_round);
        self.first_round = false;

        let lost: Vec<PartitionId> =
            self.held.keys().filter(|p| !plan.renew.iter().any(|(r, _)| r == *p)).copied().collect();
        for partition in lost {
            let holder = seen[partition as usize].holder.as_ref().map(|h| h.instance.as_str());
            tracing::warn!(group = self.group, partition, taken_by = ?holder, "lease lost");
            self.held.remove(&partition);
        }
        self.renew(&plan.renew).await?;
        for (partition, revision) in plan.take {
            let previous = seen[partition as usize].holder.clone();
            if self.put(partition, revision).await? {
                tracing::info!(group = self.group, partition, from = ?previous.map(|h| h.instance), "lease taken");
            }
        }
        Ok(self.held.keys().copied().collect())
    }

    /// Renews every held lease with one batch; when that batch meets a conflict, lease by
    /// lease, to learn which were lost.
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
                    self.held.insert(partition, revision + 1);
                }
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => {
                for &(partition, revision) in leases {
                    if !self.put(partition, Some(revision)).await? {
                        tracing::warn!(group = self.group, partition, "lease lost while renewing it");
                        self.held.remove(&partition);
                    }
                }
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Holds `partition`'s lease if its revision is still `revision`; false when it moved.
    async fn put(&mut self, partition: PartitionId, revision: Option<u64>) -> Result<bool, StoreError> {
        let expect = revision.map_or(Expect::Absent, Expect::Revision);
        let op = self.op(partition, expect, Some(&self.me))?;
        match self.store.write(vec![op]).await {
            Ok(()) => {
                self.held.insert(partition, revision.map_or(1, |r| r + 1));
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

    /// Gives every held lease up, so a successor takes it at once instead of after a timeout.
    async fn release(mut self) {
        let held = std::mem::take(&mut self.held);
        for (&partition, &revision) in &held {
            METRICS.partition_owned.set(self.group, partition, 0);
            let released = match self.op(partition, Expect::Revision(revision), None) {
                Ok(op) => self.store.write(vec![op]).await,
                Err(error) => Err(error),
            };
            match released {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(error) => tracing::warn!(group = self.group, partition, %error, "cannot release a lease"),
            }
        }
        if !held.is_empty() {
            tracing::info!(group = self.group, released = ?held.keys().collect::<Vec<_>>(), "leases released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TIMEOUT: Duration = Duration::from_millis(400);

    fn store(dir: &tempfile::TempDir) -> SharedStore {
        Arc::new(store::EmbeddedStore::open(dir.path().join("store")).expect("store"))
    }

    fn options(instance: &str) -> LeaseOptions {
        LeaseOptions { instance: instance.into(), timeout: TIMEOUT }
    }

    async fn owned_eventually(membership: &Membership, want: impl Fn(&BTreeSet<PartitionId>) -> bool) {
        let mut watch = membership.watch();
        let wait = watch.wait_for(|owned| want(owned));
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("in time")
            .expect("membership alive");
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
        owned_eventually(&b, |owned| owned.len() == 2).await;
        owned_eventually(&a, |owned| owned.len() == 2).await;
        assert!(a.owned().is_disjoint(&b.owned()));
        a.leave().await;
        b.leave().await;
    }

    #[tokio::test]
    async fn a_member_that_leaves_releases_its_leases_to_the_other_before_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let slow = |instance| LeaseOptions { timeout: Duration::from_secs(4), ..options(instance) };
        let a = join(store.clone(), "g", 4, slow("a")).await.unwrap();
        let b = join(store.clone(), "g", 4, slow("b")).await.unwrap();
        let joined = Instant::now();
        a.leave().await;
        // Rounds every second: b takes the released leases at its next one or two, long before
        // the 4 s they would need to expire.
        owned_eventually(&b, |owned| owned.len() == 4).await;
        assert!(joined.elapsed() < Duration::from_secs(3), "{:?}", joined.elapsed());
        b.leave().await;
    }

    #[tokio::test]
    async fn the_leases_of_a_member_that_stopped_renewing_expire_and_move() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let a = join(store.clone(), "g", 4, options("a")).await.unwrap();
        // A process that died: its task stops without releasing anything.
        let Membership { task, .. } = a;
        task.expect("a lease task").abort();
        let b = join(store.clone(), "g", 4, options("b")).await.unwrap();
        let joined = Instant::now();
        // Until they expire, a's leases count as a live member's: b takes its share of 2.
        owned_eventually(&b, |owned| owned.len() == 4).await;
        assert!(joined.elapsed() >= TIMEOUT, "every lease after {:?}", joined.elapsed());
        b.leave().await;
    }

    #[tokio::test]
    async fn a_restarted_instance_takes_its_leases_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let long = |instance| LeaseOptions { timeout: Duration::from_secs(3600), ..options(instance) };
        let before = join(store.clone(), "g", 4, long("a")).await.unwrap();
        let Membership { task, .. } = before;
        task.expect("a lease task").abort();
        let after = join(store.clone(), "g", 4, long("a")).await.unwrap();
        assert_eq!(after.owned(), (0..4).collect(), "on its first round, with an hour-long timeout");
        after.leave().await;
    }
}
