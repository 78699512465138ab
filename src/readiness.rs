//! `GET /readyz` of each role: ready when the store answers a point read, the log answers
//! `end_offset` on every topic the role uses, and every group (raters, writers) the role runs in has
//! been joined.

use eventlog::{SharedLog, Topic};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use store::SharedStore;

/// Whether this process is a member of its group (raters, writers) now (set while it supervises the
/// group's partitions).
#[derive(Clone, Debug)]
pub struct GroupStatus {
    group: &'static str,
    joined: Arc<AtomicBool>,
}

impl GroupStatus {
    pub fn new(group: &'static str) -> Self {
        Self { group, joined: Arc::new(AtomicBool::new(false)) }
    }

    pub fn group(&self) -> &'static str {
        self.group
    }

    pub fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    pub(crate) fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::Release);
    }
}

/// The dependencies of one role, checked on every `/readyz`.
#[derive(Clone)]
pub struct Dependencies {
    pub store: SharedStore,
    pub log: SharedLog,
    /// The topics the role reads or appends to.
    pub topics: Vec<Topic>,
    /// The groups the role must be a member of.
    pub groups: Vec<GroupStatus>,
}

impl Dependencies {
    /// What is not ready now, one entry per dependency (empty: ready).
    pub async fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> =
            api::routes::store_problem(self.store.as_ref()).await.into_iter().collect();
        for &topic in &self.topics {
            if let Err(e) = self.log.end_offset(topic, 0).await {
                problems.push(format!("log ({topic}): {e}"));
            }
        }
        for status in &self.groups {
            if !status.is_joined() {
                problems.push(format!("group `{}`: not joined yet", status.group));
            }
        }
        problems
    }
}

/// The check `/readyz` runs over several environments' dependencies: ready when all are.
pub fn all(checks: Vec<Dependencies>) -> api::routes::Readiness {
    let checks = Arc::new(checks);
    api::routes::Readiness::new(move || {
        let checks = Arc::clone(&checks);
        async move {
            let mut problems = Vec::new();
            for check in checks.iter() {
                problems.extend(check.problems().await);
            }
            problems
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backends;

    #[tokio::test]
    async fn ready_only_once_every_group_is_joined() {
        let dir = tempfile::tempdir().unwrap();
        let Backends { store, log } = Backends::embedded(dir.path(), 2).await.unwrap();
        let raters = GroupStatus::new("raters");
        let dependencies =
            Dependencies { store, log, topics: Topic::ALL.to_vec(), groups: vec![raters.clone()] };
        assert_eq!(dependencies.problems().await, vec!["group `raters`: not joined yet".to_string()]);
        raters.set_joined(true);
        assert!(dependencies.problems().await.is_empty());
        assert!(all(vec![dependencies]).problems().await.is_empty());
    }
}
