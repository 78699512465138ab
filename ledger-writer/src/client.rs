//! How the API hands wallet commands to the writers and waits for them to be posted
//! (read-your-writes): append to `ledger.input` under the customer's partition, then wait until
//! that partition's writer has applied the offset.

use eventlog::{partition_for, LogError, SharedLog, Topic};
use schemas::ledger::LedgerInput;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Per partition, the next `ledger.input` offset its writer has applied (and persisted). The
/// writers publish; [`LedgerClient`] waits.
#[derive(Clone)]
pub struct Posted {
    partitions: Arc<Vec<watch::Sender<u64>>>,
}

impl Posted {
    pub fn new(partition_count: u32) -> Self {
        let partitions = (0..partition_count).map(|_| watch::Sender::new(0)).collect();
        Self { partitions: Arc::new(partitions) }
    }

    /// Called by a writer after a batch is durable: offsets below `next_offset` are posted.
    pub fn publish(&self, partition: u32, next_offset: u64) {
        if let Some(tx) = self.partitions.get(partition as usize) {
            tx.send_if_modified(|v| {
                let advanced = next_offset > *v;
                if advanced {
                    *v = next_offset;
                }
                advanced
            });
        }
    }

    /// The next offset applied in `partition`.
    pub fn applied(&self, partition: u32) -> u64 {
        self.partitions.get(partition as usize).map_or(0, |tx| *tx.borrow())
    }

    /// Resolves once the record at `offset` of `partition` is posted; false on timeout.
    pub async fn wait(&self, partition: u32, offset: u64, timeout: Duration) -> bool {
        let Some(tx) = self.partitions.get(partition as usize) else { return false };
        let mut rx = tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|&next| next > offset)).await.is_ok_and(|r| r.is_ok())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the ledger log is unavailable: {0}")]
    Log(#[from] LogError),
    #[error("the ledger writer did not post the command within {0:?}")]
    Timeout(Duration),
    #[error("cannot encode the command: {0}")]
    Encode(String),
}

/// The API's handle on the ledger.
#[derive(Clone)]
pub struct LedgerClient {
    log: SharedLog,
    posted: Posted,
    timeout: Duration,
}

impl LedgerClient {
    pub fn new(log: SharedLog, posted: Posted) -> Self {
        Self { log, posted, timeout: Duration::from_secs(30) }
    }

    /// Appends `input` to `ledger.input` under its customer's partition and returns once the
    /// partition's writer has posted it (or decided it posts nothing, e.g. an idempotent replay).
    pub async fn submit(&self, input: &LedgerInput) -> Result<(), SubmitError> {
        let key = input.customer_id().as_bytes().to_vec();
        let partition = partition_for(&key, self.log.partition_count());
        let value = serde_json::to_vec(input).map_err(|e| SubmitError::Encode(e.to_string()))?;
        let offset = self.log.append(Topic::LedgerInput, partition, vec![(key, value)]).await?;
        if self.posted.wait(partition, offset, self.timeout).await {
            Ok(())
        } else {
            Err(SubmitError::Timeout(self.timeout))
        }
    }
}
