//! The durable, partitioned, append-only log between pipeline stages, behind one narrow trait,
//! [`Log`], so the services never know which backend they run on.
//!
//! Topics are fixed ([`Topic::UsageRaw`]: ingest → raters, [`Topic::LedgerInput`]: raters and api →
//! ledger writers). Everything about one customer goes to one partition ([`partition_for`] of the
//! customer id), so one ledger writer sees a customer's inputs in one total order. `append`
//! returns only once its records are durable: ingest answers 204 on that promise.
//!
//! Backends, chosen by URL ([`connect`]):
//!
//! - [`embedded`] (`embedded:<dir>` or a bare path): the default backend, segment files on local
//!   disk (`<dir>/<topic>/<partition>/<20-digit base offset>.log`) and the recovery that runs on
//!   open. One process owns every partition.
//! - [`kafka`] (`kafka://host:port[,...][?prefix=...]`): topics `{prefix}usage.raw` and
//!   `{prefix}ledger.input` on a Kafka cluster, through librdkafka; several processes share it,
//!   owning its partitions through leases in the store (the `ownership` crate).
//!
//! Modules:
//!
//! - [`embedded`]: the embedded backend and the recovery that runs on open.
//! - `segment` (private): the record frame, positional frame reads, the sparse offset index.
//! - `group_commit` (private): one writer thread per partition turning many queued appends into
//!   one write and one fsync.
//! - `partitioner` (private): Kafka's murmur2 partitioner, so a Kafka backend places keys
//!   identically.
//! - [`codec`]: the record frame's encoder and checked decoder, public for the benches and tools
//!   that inspect segment bytes.
//! - [`conformance`]: the contract as a test suite, generic over the backend; every backend runs
//!   it (`log_conformance_tests!`).
//! - [`kafka`]: the Kafka backend.
//! - [`testing`]: a real tansu broker (Kafka protocol) for tests.

pub mod conformance;
pub mod embedded;
mod group_commit;
pub mod kafka;
mod partitioner;
mod segment;
pub mod testing;

pub use embedded::{EmbeddedLog, LogStats};
pub use kafka::KafkaLog;
pub use partitioner::{murmur2, partition_for};

/// The record frame of a segment file (`len | crc | offset | key_len | key | value`, see the
/// `segment` module): how a record is encoded on disk and decoded back, with no IO.
pub mod codec {
    pub use crate::segment::{decode_frame_parts, encode_frame, frame_size};
}

use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A partition number within a topic, `0..partition_count`.
pub type PartitionId = u32;

/// Every topic the pipeline uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Accepted usage events, ingest → raters.
    UsageRaw,
    /// Rated events and wallet commands, raters and api → ledger writers.
    LedgerInput,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::UsageRaw, Topic::LedgerInput];

    /// The topic name, also its directory in the embedded backend and its Kafka topic.
    pub fn name(self) -> &'static str {
        match self {
            Topic::UsageRaw => "usage.raw",
            Topic::LedgerInput => "ledger.input",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// How a log is laid out and batched. The partition count is part of the data: reopening with
/// another count is refused, because it would move customers to other partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Partitions per topic.
    pub partitions: u32,
    /// A segment file is rolled once the next record would take it past this size.
    pub segment_bytes: u64,
    /// The most record bytes one group commit (one fsync) gathers from queued appends.
    pub max_batch_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { partitions: 8, segment_bytes: 64 << 20, max_batch_bytes: 4 << 20 }
    }
}

/// Everything that can go wrong in the log. Cloneable so one failed group commit can answer
/// every append it carried.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LogError {
    #[error("{context}: {source}")]
    Io { context: String, source: Arc<std::io::Error> },
    #[error("corrupt log data in {location}: {reason}")]
    Corrupt { location: String, reason: String },
    #[error("partition {partition} of {topic} is out of range (the log has {count} partitions)")]
    PartitionOutOfRange { topic: Topic, partition: PartitionId, count: u32 },
    #[error("the log is closed")]
    Closed,
    #[error("record of {bytes} bytes is too large for one frame")]
    RecordTooLarge { bytes: usize },
    #[error("the writer of {topic}/{partition} stopped after an earlier failure: {reason}")]
    WriterFailed { topic: Topic, partition: PartitionId, reason: String },
    #[error("the log at {location} has {found} partitions, not {requested}")]
    PartitionCountMismatch { location: String, found: u32, requested: u32 },
    #[error("invalid log options: {0}")]
    InvalidOptions(&'static str),
    #[error("unsupported log backend `{0}`")]
    UnsupportedBackend(String),
    /// The brokers are unreachable or refused (Kafka); retrying later may succeed.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
}

impl LogError {
    pub(crate) fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        LogError::Io { context: context.to_string(), source: Arc::new(source) }
    }

    pub(crate) fn corrupt(location: impl fmt::Display, reason: impl fmt::Display) -> Self {
        LogError::Corrupt { location: location.to_string(), reason: reason.to_string() }
    }
}

/// The log contract. See the crate docs for the guarantees every backend gives.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Partitions per topic.
    fn partition_count(&self) -> u32;

    /// Appends `(key, value)` records to one partition, in order, durably (on disk or fully
    /// replicated when it returns); returns the offset of the first. Offsets are dense: 0, 1, 2,
    /// ... per (topic, partition). An error means the records may or may not have been stored.
    async fn append(
        &self,
        topic: Topic,
        partition: PartitionId,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<u64, LogError>;

    /// Records with offset >= `from`, in offset order, at most `max_records` (may return fewer;
    /// empty when there are none yet).
    async fn read(
        &self,
        topic: Topic,
        partition: PartitionId,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, LogError>;

    /// The offset the next appended record will get (the high watermark).
    async fn end_offset(&self, topic: Topic, partition: PartitionId) -> Result<u64, LogError>;

    /// Resolves once `end_offset > offset` (a record at `offset` exists) or `timeout` passes;
    /// returns the current end offset. Tailing readers use it instead of polling.
    async fn wait_for(
        &self,
        topic: Topic,
        partition: PartitionId,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError>;

    /// Retention: drops whole segments whose records are all below `offset`; reads below the
    /// first retained offset then start at the first retained record. Returns the first retained
    /// offset: at most `offset`, unless an earlier call already went further (retention never
    /// moves back). Kafka may drop exactly up to `offset`; callers must not rely on either.
    async fn retain_from(&self, topic: Topic, partition: PartitionId, offset: u64) -> Result<u64, LogError>;

    /// Whether several processes may use this log at once (Kafka), so that they must agree on
    /// who owns each partition (the `ownership` crate: leases in the store). A log that is not
    /// shared (the embedded one, in one process's data directory) makes its process the owner
    /// of every partition.
    fn shared(&self) -> bool;
}

/// The log as the services hold it.
pub type SharedLog = Arc<dyn Log>;

/// Opens the backend named by `url`: `embedded:<directory>` (or a bare directory path). The
/// embedded backend starts one writer thread per partition.
pub fn open(url: &str, options: LogOptions) -> Result<SharedLog, LogError> {
    let path = url.strip_prefix("embedded:").unwrap_or(url);
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(LogError::UnsupportedBackend(scheme.to_string()));
    }
    Ok(Arc::new(EmbeddedLog::open(path, options)?))
}

/// Opens the backend named by `url`: `kafka://...` (the [`kafka`] module docs give the URL's
/// parameters; the topics are created if absent), `embedded:<directory>` or a bare directory
/// path.
pub async fn connect(url: &str, options: LogOptions) -> Result<SharedLog, LogError> {
    if url.starts_with("kafka://") {
        return Ok(Arc::new(KafkaLog::connect(url, options).await?));
    }
    open(url, options)
}
