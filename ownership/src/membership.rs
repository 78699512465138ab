//! Which partitions of a topic this process owns. Partition tasks (raters, ledger writers) run
//! only for owned partitions, so each partition has one rater and one writer at a time.
//!
//! A process that is alone on its log owns every partition, forever ([`Membership::all`]).
//! Processes that share a log hold partitions through leases in the store ([`crate::lease`]),
//! whose task publishes each change into the [`Membership`]'s watch channel.
//!
//! [`supervise`] turns a membership into running partition tasks: one per owned partition,
//! started on assignment, stopped and awaited on revocation, restarted after a backoff when it
//! fails.

use eventlog::PartitionId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The partitions this member owns now, and every later change.
pub struct Membership {
    pub(crate) owned: watch::Receiver<BTreeSet<PartitionId>>,
    /// The sender of a fixed assignment ([`Membership::all`]), kept so it never "closes".
    fixed: Option<watch::Sender<BTreeSet<PartitionId>>>,
    /// The task that keeps the assignment (leases); it ends, releasing what it holds, once
    /// every receiver of `owned` is gone.
    pub(crate) task: Option<JoinHandle<()>>,
}

impl Membership {
    /// A membership whose assignment `owned` reports; it ends when the sender is dropped.
    pub fn new(owned: watch::Receiver<BTreeSet<PartitionId>>) -> Self {
        Self { owned, fixed: None, task: None }
    }

    /// A membership kept by `task`, which publishes into `owned`'s sender and ends once every
    /// receiver is dropped.
    pub fn kept_by(owned: watch::Receiver<BTreeSet<PartitionId>>, task: JoinHandle<()>) -> Self {
        Self { owned, fixed: None, task: Some(task) }
    }

    /// Every partition of a `count`-partition topic, forever (a process alone on its log).
    pub fn all(count: u32) -> Self {
        let (tx, owned) = watch::channel((0..count).collect());
        Self { owned, fixed: Some(tx), task: None }
    }

    /// The partitions owned now.
    pub fn owned(&self) -> BTreeSet<PartitionId> {
        self.owned.borrow().clone()
    }

    /// A receiver of the assignment, for a supervisor that reacts to changes.
    pub fn watch(&self) -> watch::Receiver<BTreeSet<PartitionId>> {
        self.owned.clone()
    }

    /// Leaves: drops this receiver and waits for the keeping task to release what it holds.
    /// Every receiver taken with [`Membership::watch`] must be dropped first.
    pub async fn leave(self) {
        let Membership { owned, fixed, task } = self;
        drop(owned);
        drop(fixed);
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the membership task failed");
            }
        }
    }
}

/// How [`supervise`] names and restarts its partition tasks.
#[derive(Clone, Debug)]
pub struct SuperviseOptions {
    /// What the tasks are, for the logs ("rater", "ledger writer").
    pub name: &'static str,
    /// The pause before restarting a task that failed; it doubles on each failure in a row.
    pub first_backoff: Duration,
    /// The longest pause; a task that ran at least this long starts over at `first_backoff`.
    pub max_backoff: Duration,
}

impl SuperviseOptions {
    pub fn named(name: &'static str) -> Self {
        Self { name, first_backoff: Duration::from_millis(500), max_backoff: Duration::from_secs(30) }
    }
}

/// [`supervise`] stopped because the assignment ended (the member left the group or its consumer
/// died), not because it was asked to: the caller may join again.
#[derive(Debug, thiserror::Error)]
#[error("the group membership ended: this member no longer receives assignments")]
pub struct MembershipEnded;

/// Runs one task per partition `membership` owns until `shutdown` becomes true (or its sender is
/// dropped), then stops every task and waits for them.
///
/// `start(partition, stop)` starts the task of one partition; the task must return soon after
/// `stop` becomes true. When the assignment changes, the tasks of partitions no longer owned are
/// stopped and awaited first, then tasks start for the newly owned ones. A task that fails (or
/// panics, or returns on its own) while its partition is still owned is logged and started again
/// after a backoff that doubles up to [`SuperviseOptions::max_backoff`]: a fenced writer does not
/// spin. Nothing else is ever restarted.
pub async fn supervise<F, Fut, E>(
    membership: Membership,
    mut shutdown: watch::Receiver<bool>,
    options: SuperviseOptions,
    start: F,
) -> Result<(), MembershipEnded>
where
    F: Fn(PartitionId, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let start = Arc::new(start);
    let mut owned = membership.watch();
    let mut running = BTreeMap::new();
    let ended = loop {
        if *shutdown.borrow() {
            break false;
        }
        let assigned = owned.borrow_and_update().clone();
        reconcile(&mut running, &assigned, &start, &options).await;
        tokio::select! {
            changed = owned.changed() => if changed.is_err() { break true },
            changed = shutdown.changed() => if changed.is_err() { break false },
        }
    };
    stop_all(std::mem::take(&mut running), &options).await;
    drop(owned);
    membership.leave().await;
    if ended {
        tracing::warn!(tasks = options.name, "group membership ended; every partition task stopped");
        Err(MembershipEnded)
    } else {
        Ok(())
    }
}

/// The task of one owned partition, and the switch that stops it.
struct Slot {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// Stops the tasks of partitions no longer in `assigned`, then starts tasks for new ones.
async fn reconcile<F, Fut, E>(
    running: &mut BTreeMap<PartitionId, Slot>,
    assigned: &BTreeSet<PartitionId>,
    start: &Arc<F>,
    options: &SuperviseOptions,
) where
    F: Fn(PartitionId, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let revoked: Vec<PartitionId> = running.keys().filter(|p| !assigned.contains(p)).copied().collect();
    let stopping = revoked.iter().filter_map(|p| running.remove_entry(p)).collect();
    if !revoked.is_empty() {
        tracing::info!(tasks = options.name, ?revoked, "partitions revoked; stopping their tasks");
    }
    stop_all(stopping, options).await;
    for &partition in assigned {
        if running.contains_key(&partition) {
            continue;
        }
        tracing::info!(tasks = options.name, partition, "partition assigned; starting its task");
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(keep_running(partition, Arc::clone(start), stopped, options.clone()));
        running.insert(partition, Slot { stop, handle });
    }
}

/// Signals every task, then waits for each.
async fn stop_all(slots: BTreeMap<PartitionId, Slot>, options: &SuperviseOptions) {
    for slot in slots.values() {
        let _ = slot.stop.send(true);
    }
    for (partition, slot) in slots {
        if let Err(e) = slot.handle.await {
            tracing::error!(tasks = options.name, partition, error = %e, "partition supervisor failed");
        }
    }
}

/// Runs `start(partition)` until `stop`, starting it again after a backoff each time it ends.
async fn keep_running<F, Fut, E>(
    partition: PartitionId,
    start: Arc<F>,
    mut stop: watch::Receiver<bool>,
    options: SuperviseOptions,
) where
    F: Fn(PartitionId, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let name = options.name;
    let mut backoff = options.first_backoff;
    loop {
        let started = Instant::now();
        // A task of its own, so a panic is reported here instead of ending the supervision.
        let outcome = tokio::spawn(start(partition, stop.clone())).await;
        let stopping = *stop.borrow();
        match (outcome, stopping) {
            (Ok(Ok(())), true) => return,
            (Ok(Err(e)), true) => {
                tracing::warn!(tasks = name, partition, error = %e, "partition task failed while stopping");
                return;
            }
            (Err(e), true) => {
                tracing::error!(tasks = name, partition, error = %e, "partition task panicked while stopping");
                return;
            }
            (Ok(Ok(())), false) => {
                tracing::warn!(tasks = name, partition, "partition task ended on its own; restarting it")
            }
            (Ok(Err(e)), false) => {
                tracing::error!(tasks = name, partition, error = %e, "partition task failed")
            }
            (Err(e), false) => {
                tracing::error!(tasks = name, partition, error = %e, "partition task panicked")
            }
        }
        if started.elapsed() >= options.max_backoff {
            backoff = options.first_backoff;
        }
        tracing::info!(tasks = name, partition, retry_in = ?backoff, "restarting the partition task after a pause");
        // A revoked partition is never started again, even when the pause ends at the moment
        // of the revocation: a restarted writer would take the partition's fence from its new
        // owner.
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        if *stop.borrow() {
            return;
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(5);

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Started(PartitionId),
        Stopped(PartitionId),
    }

    fn options() -> SuperviseOptions {
        SuperviseOptions {
            name: "test",
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(80),
        }
    }

    fn set(partitions: &[PartitionId]) -> BTreeSet<PartitionId> {
        partitions.iter().copied().collect()
    }

    /// A hand-driven assignment, a shutdown switch, and a supervisor whose tasks report when
    /// they start and stop (they run until told to stop).
    struct Harness {
        assign: watch::Sender<BTreeSet<PartitionId>>,
        shutdown: watch::Sender<bool>,
        seen: mpsc::UnboundedReceiver<Seen>,
        supervisor: JoinHandle<Result<(), MembershipEnded>>,
    }

    impl Harness {
        fn start(initial: &[PartitionId]) -> Self {
            let (assign, owned) = watch::channel(set(initial));
            let (shutdown, shutdown_rx) = watch::channel(false);
            let (tx, seen) = mpsc::unbounded_channel();
            let supervisor =
                tokio::spawn(supervise(Membership::new(owned), shutdown_rx, options(), move |p, stop| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(Seen::Started(p));
                        let mut stop: watch::Receiver<bool> = stop;
                        let _ = stop.wait_for(|s| *s).await;
                        let _ = tx.send(Seen::Stopped(p));
                        Ok::<(), String>(())
                    }
                }));
            Self { assign, shutdown, seen, supervisor }
        }

        /// The next `n` reports, in any order.
        async fn next(&mut self, n: usize) -> Vec<Seen> {
            let mut out = Vec::new();
            for _ in 0..n {
                let seen = tokio::time::timeout(WAIT, self.seen.recv()).await.expect("a report in time");
                out.push(seen.expect("the supervisor is alive"));
            }
            out.sort_by_key(|s| match s {
                Seen::Started(p) => (0, *p),
                Seen::Stopped(p) => (1, *p),
            });
            out
        }

        /// Nothing more is reported for a while.
        async fn quiet(&mut self) {
            let more = tokio::time::timeout(Duration::from_millis(150), self.seen.recv()).await;
            assert!(more.is_err(), "unexpected report: {more:?}");
        }
    }

    #[tokio::test]
    async fn starts_one_task_per_owned_partition() {
        let mut h = Harness::start(&[0, 2]);
        assert_eq!(h.next(2).await, vec![Seen::Started(0), Seen::Started(2)]);
        h.quiet().await;
    }

    #[tokio::test]
    async fn a_reassignment_stops_lost_partitions_and_starts_new_ones_only() {
        let mut h = Harness::start(&[0, 1]);
        h.next(2).await;
        h.assign.send(set(&[1, 2])).unwrap();
        assert_eq!(h.next(2).await, vec![Seen::Started(2), Seen::Stopped(0)]);
        h.quiet().await;
    }

    #[tokio::test]
    async fn revoking_every_partition_stops_every_task() {
        let mut h = Harness::start(&[0, 1]);
        h.next(2).await;
        h.assign.send(set(&[])).unwrap();
        assert_eq!(h.next(2).await, vec![Seen::Stopped(0), Seen::Stopped(1)]);
        h.quiet().await;
        h.assign.send(set(&[1])).unwrap();
        assert_eq!(h.next(1).await, vec![Seen::Started(1)]);
    }

    #[tokio::test]
    async fn shutdown_stops_every_task_and_waits_for_them() {
        let mut h = Harness::start(&[0, 1, 2]);
        h.next(3).await;
        h.shutdown.send(true).unwrap();
        let result = tokio::time::timeout(WAIT, h.supervisor).await.expect("returns").expect("no panic");
        assert!(result.is_ok());
        // Every task reported its stop before `supervise` returned.
        let mut stopped = Vec::new();
        while let Ok(seen) = h.seen.try_recv() {
            stopped.push(seen);
        }
        assert_eq!(stopped.len(), 3, "{stopped:?}");
        assert!(stopped.iter().all(|s| matches!(s, Seen::Stopped(_))));
    }

    #[tokio::test]
    async fn the_end_of_the_membership_stops_every_task_and_is_reported() {
        let mut h = Harness::start(&[0]);
        h.next(1).await;
        drop(h.assign);
        let result = tokio::time::timeout(WAIT, h.supervisor).await.expect("returns").expect("no panic");
        assert!(result.is_err());
        assert_eq!(h.seen.try_recv().ok(), Some(Seen::Stopped(0)));
    }

    #[tokio::test]
    async fn a_failing_task_is_restarted_after_a_backoff_while_owned_and_not_after() {
        let (assign, owned) = watch::channel(set(&[3]));
        let (_shutdown, shutdown_rx) = watch::channel(false);
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&attempts);
        let began = Instant::now();
        let supervisor =
            tokio::spawn(supervise(Membership::new(owned), shutdown_rx, options(), move |p, _| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { Err::<(), String>(format!("partition {p} is fenced")) }
            }));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let failed = attempts.load(Ordering::SeqCst);
        // Backoffs of 20, 40, 80, 80, ... ms: restarted, but a handful of times, not thousands.
        assert!((3..=9).contains(&failed), "{failed} attempts in {:?}", began.elapsed());
        assign.send(set(&[])).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after_revoke = attempts.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), after_revoke, "restarted after the revocation");
        supervisor.abort();
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted() {
        let (_assign, owned) = watch::channel(set(&[0]));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&attempts);
        let supervisor =
            tokio::spawn(supervise(Membership::new(owned), shutdown_rx, options(), move |_, stop| {
                let attempt = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert!(attempt > 0, "the first attempt panics");
                    let mut stop: watch::Receiver<bool> = stop;
                    let _ = stop.wait_for(|s| *s).await;
                    Ok::<(), String>(())
                }
            }));
        // (A panic may take a while to report: with RUST_BACKTRACE set, its backtrace is printed.)
        let restarted = async {
            while attempts.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, restarted).await.expect("restarted after the panic");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "the second attempt keeps running");
        shutdown.send(true).unwrap();
        let result = tokio::time::timeout(WAIT, supervisor).await.expect("returns").expect("no panic");
        assert!(result.is_ok());
    }
}
