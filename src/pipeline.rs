//! The pipeline's partition tasks as this process runs them: a stage joins its group and
//! supervises one task per partition it owns ([`ownership::supervise`]). Raters join `raters`
//! (partitions of `usage.raw`); ledger writers join `writers` (partitions of `ledger.input`). On
//! the embedded log a process owns every partition; on a shared log, the partitions it holds
//! leases on ([`ownership::lease`]).

use crate::readiness::GroupStatus;
use crate::Backends;
use eventlog::{PartitionId, Topic};
use ingest::backlog::Downstream;
use ledger_writer::writer::WriterOptions;
use ledger_writer::Posted;
use ownership::{supervise, Membership, Ownership, SuperviseOptions};
use rater::worker::RaterOptions;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The group of the raters.
pub const RATERS: &str = "raters";
/// The group of the ledger writers.
pub const WRITERS: &str = "writers";

/// The pause before joining again after a failed join or a lost membership; it doubles up to
/// [`MAX_REJOIN_BACKOFF`].
const FIRST_REJOIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_REJOIN_BACKOFF: Duration = Duration::from_secs(30);

/// A running stage and the switch that stops it.
pub struct Stage {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: GroupStatus,
}

impl Stage {
    /// Whether this stage is ledger writers (stopped after every rater stage).
    pub fn is_writers(&self) -> bool {
        self.status.group() == WRITERS
    }

    /// Whether the stage is a member of its group now (for `/readyz`).
    pub fn status(&self) -> GroupStatus {
        self.status.clone()
    }

    /// Stops every partition task (each finishes the batch in hand) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(stage = self.name, error = %e, "stage task failed");
        }
    }
}

/// The stages after ingest, in the order an event passes them, and where each stores its
/// progress: ingest bounds their backlog ([`ingest::backlog`]).
pub fn downstream() -> Vec<Downstream> {
    vec![
        Downstream { topic: Topic::UsageRaw, progress_key: rater::worker::RaterProgress::key },
        Downstream { topic: Topic::LedgerInput, progress_key: ledger_writer::PartitionProgress::key },
    ]
}

/// Raters for the partitions of `usage.raw` this process owns.
pub fn raters(backends: &Backends, ownership: &Ownership, options: RaterOptions) -> Stage {
    let Backends { store, log } = backends.clone();
    let rate = {
        let log = log.clone();
        move |partition, stop| {
            rater::worker::run_partition(store.clone(), log.clone(), partition, options.clone(), stop)
        }
    };
    spawn(ownership.clone(), RATERS, SuperviseOptions::named("rater"), rate)
}

/// Ledger writers for the partitions of `ledger.input` this process owns; each publishes what it
/// posted into `posted`.
pub fn writers(backends: &Backends, ownership: &Ownership, posted: Posted, options: WriterOptions) -> Stage {
    let Backends { store, log } = backends.clone();
    let write = {
        let log = log.clone();
        move |partition, stop| {
            ledger_writer::writer::run_partition(
                store.clone(),
                log.clone(),
                partition,
                posted.clone(),
                options,
                stop,
            )
        }
    };
    spawn(ownership.clone(), WRITERS, SuperviseOptions::named("ledger writer"), write)
}

/// Starts a stage: join `group`, supervise, join again if the membership ends.
fn spawn<F, Fut, E>(ownership: Ownership, group: &'static str, options: SuperviseOptions, start: F) -> Stage
where
    F: Fn(PartitionId, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    tracing::info!(group, ownership = %ownership.describe(), "starting a stage");
    let (stop, stopped) = watch::channel(false);
    let status = GroupStatus::new(group);
    let name = options.name;
    let task = tokio::spawn(run(ownership, status.clone(), stopped, options, Arc::new(start)));
    Stage { name, stop, task, status }
}

/// The stage loop: a membership at a time, until `stop`.
async fn run<F, Fut, E>(
    ownership: Ownership,
    status: GroupStatus,
    mut stop: watch::Receiver<bool>,
    options: SuperviseOptions,
    start: Arc<F>,
) where
    F: Fn(PartitionId, watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let group = status.group();
    let mut backoff = FIRST_REJOIN_BACKOFF;
    loop {
        let Some(membership) = join(&ownership, group, &mut stop).await else { return };
        tracing::info!(group, owned = ?membership.owned(), "joined the group");
        status.set_joined(true);
        let joined = std::time::Instant::now();
        let start = Arc::clone(&start);
        let supervised = supervise(membership, stop.clone(), options.clone(), move |p, s| start(p, s)).await;
        status.set_joined(false);
        let Err(ended) = supervised else { return };
        backoff = rejoin_backoff(backoff, joined.elapsed());
        tracing::warn!(group, error = %ended, retry_in = ?backoff, "joining the group again");
        if !pause(backoff, &mut stop).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_REJOIN_BACKOFF);
    }
}

/// The pause before joining again after a membership of `lasted` ended, `backoff` being the
/// pause the last one would have had. It grows while memberships end one after the other, and
/// starts over after one that lasted: a hiccup hours later is not waited out for the longest.
fn rejoin_backoff(backoff: Duration, lasted: Duration) -> Duration {
    if lasted >= MAX_REJOIN_BACKOFF {
        FIRST_REJOIN_BACKOFF
    } else {
        backoff
    }
}

/// Joins `group`, retrying with a backoff; `None` once `stop` is set.
async fn join(
    ownership: &Ownership,
    group: &'static str,
    stop: &mut watch::Receiver<bool>,
) -> Option<Membership> {
    let mut backoff = FIRST_REJOIN_BACKOFF;
    loop {
        if *stop.borrow() {
            return None;
        }
        let joined = tokio::select! {
            joined = ownership.join(group) => joined,
            _ = stop.wait_for(|s| *s) => return None,
        };
        match joined {
            Ok(membership) => return Some(membership),
            Err(error) => {
                tracing::warn!(group, %error, retry_in = ?backoff, "cannot join the group");
                if !pause(backoff, stop).await {
                    return None;
                }
                backoff = (backoff * 2).min(MAX_REJOIN_BACKOFF);
            }
        }
    }
}

/// Sleeps `duration`; false if `stop` was set (or its sender dropped) meanwhile.
async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let slept = tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    slept && !*stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rejoin_backoff_starts_over_after_a_membership_that_lasted() {
        assert_eq!(rejoin_backoff(MAX_REJOIN_BACKOFF, Duration::from_secs(3600)), FIRST_REJOIN_BACKOFF);
        assert_eq!(rejoin_backoff(Duration::from_secs(8), Duration::from_secs(1)), Duration::from_secs(8));
    }
}
