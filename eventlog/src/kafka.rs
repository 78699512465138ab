//! The Kafka backend: the [`Log`] contract on a Kafka cluster (or any broker speaking its
//! protocol, such as tansu), through librdkafka (`rdkafka`).
//!
//! URL: `kafka://host:port[,host:port...][?prefix=P&replication=N&produce_timeout_ms=N]`.
//! The topics are `{P}usage.raw` and `{P}ledger.input`; opening creates them with
//! [`LogOptions::partitions`] partitions and replication `N` (default 1) when absent, and refuses
//! topics that exist with another partition count ([`LogError::PartitionCountMismatch`]).
//!
//! - Appending: an idempotent producer (`acks=all`) sends every record to the partition the
//!   caller chose and awaits every delivery report, so an append returns once the records are
//!   fully replicated. `produce_timeout_ms` (default 10 s) bounds every broker round trip: an
//!   unreachable broker fails an append with [`LogError::Unavailable`] instead of hanging.
//! - Reading: progress belongs to the callers (their offsets live in the store), never to
//!   Kafka's committed offsets. Each (topic, partition) gets its own consumer, assigned to that
//!   one partition at an explicit offset, created on first use and kept with its position and a
//!   small buffer, so sequential reads never re-position it; a read elsewhere re-assigns it.
//! - Retention: [`Log::retain_from`] does not delete; see its implementation's docs.
//! - Ownership: not the log's business. Consumer groups are not used; processes that share
//!   this log hold its partitions through leases in the store (the `ownership` crate).
//!
//! The tests run against tansu 0.6, which departs from Kafka in three ways this backend absorbs
//! without changing its behaviour on Kafka: a fetch from the middle of a record batch skips that
//! batch (readers start a little early and step back further when needed, see `Reader`);
//! ListOffsets(latest) can fall short of the end (the end offset is never below what this
//! process has appended or read, see `KafkaLog::end`); and it refuses the epochs an idempotent
//! producer bumps on its own after a lost delivery (a producer whose delivery failed is
//! replaced by a new one).

use crate::{Log, LogError, LogOptions, PartitionId, Record, Topic};
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

/// The largest record batch a producer sends and a topic accepts (topic `max.message.bytes`):
/// room for the 1 MiB values the embedded log takes, which Kafka's 1 MB default refuses.
const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// How long a reader's broker waits for new records before answering an empty fetch: the
/// latency of a tailing reader when records arrive.
const FETCH_WAIT_MS: &str = "100";
/// Fetched records a reader's consumer may hold before the application takes them.
const READER_QUEUE_KBYTES: &str = "16384";
/// How long one slice of `wait_for` holds a reader before letting another caller in.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// A reader buffers at most this many records ahead of its callers.
const BUFFER_RECORDS: usize = 4096;
/// How far before the offset asked for a reader starts fetching (see [`Reader`]).
const FIRST_RETREAT: u64 = 16;
/// How long a reader that is not known to be positioned waits before starting further back.
const RETREAT_AFTER: Duration = Duration::from_millis(500);

/// What a `kafka://` URL says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`, librdkafka's `bootstrap.servers`.
    pub brokers: String,
    /// Prepended to every topic and group name, so several deployments (or tests) share a cluster.
    pub prefix: String,
    /// Replication factor of the topics this backend creates.
    pub replication: i32,
    /// Bounds an append's delivery and every other request to the brokers.
    pub produce_timeout: Duration,
}

impl KafkaSettings {
    /// Parses `kafka://host:port[,host:port...][?prefix=P&replication=N&produce_timeout_ms=N]`.
    pub fn parse(url: &str) -> Result<Self, LogError> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or(LogError::InvalidOptions("a Kafka URL starts with kafka://"))?;
        let (brokers, query) = rest.split_once('?').unwrap_or((rest, ""));
        let valid_broker =
            |b: &str| b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !brokers.split(',').all(valid_broker) {
            return Err(LogError::InvalidOptions(
                "a Kafka URL names its brokers as host:port[,host:port...]",
            ));
        }
        let mut settings = KafkaSettings {
            brokers: brokers.to_string(),
            prefix: String::new(),
            replication: 1,
            produce_timeout: Duration::from_secs(10),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "prefix" => settings.prefix = parse_prefix(value)?,
                "replication" => {
                    settings.replication = parse_number(value, "replication must be a number from 1")?
                }
                "session_timeout_ms" => {
                    return Err(LogError::InvalidOptions(
                        "session_timeout_ms is no longer a Kafka URL parameter: partitions are owned \
                         through leases in the store (--lease-timeout-ms)",
                    ))
                }
                "produce_timeout_ms" => {
                    settings.produce_timeout =
                        parse_millis(value, "produce_timeout_ms must be a positive number of milliseconds")?
                }
                _ => {
                    return Err(LogError::InvalidOptions(
                        "a Kafka URL takes only prefix, replication and produce_timeout_ms",
                    ))
                }
            }
        }
        Ok(settings)
    }

    /// The Kafka topic of `topic`.
    pub fn topic_name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.name())
    }

    /// Settings every client shares.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.timeout.ms", millis(self.produce_timeout))
            .set("client.id", "drawdown");
        config
    }

    fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", millis(self.produce_timeout))
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string());
        config
    }

    /// A consumer that reads one partition at the offsets it is told. librdkafka wants a
    /// group id for `assign`, but the consumer never joins that group nor commits to it.
    fn reader_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("group.id", format!("{}drawdown.readers", self.prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", FETCH_WAIT_MS)
            .set("queued.max.messages.kbytes", READER_QUEUE_KBYTES);
        config
    }
}

fn parse_prefix(value: &str) -> Result<String, LogError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.len() > 200 || !value.chars().all(legal) {
        return Err(LogError::InvalidOptions("a Kafka topic prefix is at most 200 of [A-Za-z0-9._-]"));
    }
    Ok(value.to_string())
}

fn parse_number(value: &str, error: &'static str) -> Result<i32, LogError> {
    value.parse().ok().filter(|&n: &i32| n >= 1).ok_or(LogError::InvalidOptions(error))
}

fn parse_millis(value: &str, error: &'static str) -> Result<Duration, LogError> {
    let ms: u32 = value.parse().ok().filter(|&n| n >= 1).ok_or(LogError::InvalidOptions(error))?;
    Ok(Duration::from_millis(ms.into()))
}

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

/// A librdkafka failure as a log error: the broker is unreachable or refused.
fn unavailable(context: impl fmt::Display) -> impl FnOnce(KafkaError) -> LogError {
    move |error| LogError::Unavailable(format!("{context}: {error}"))
}

fn task_failed(context: &str, error: tokio::task::JoinError) -> LogError {
    LogError::Unavailable(format!("{context}: the blocking task failed: {error}"))
}

/// Blocking cluster queries (watermarks, metadata) on a client that consumes nothing.
#[derive(Clone)]
struct Cluster {
    client: Arc<BaseConsumer>,
    timeout: Duration,
}

impl Cluster {
    /// The (low, high) watermarks of a partition, asked of its leader now.
    async fn watermarks(&self, topic: &str, partition: PartitionId) -> Result<(u64, u64), LogError> {
        let (client, timeout, name) = (Arc::clone(&self.client), self.timeout, topic.to_string());
        let context = format!("watermarks of {topic}/{partition}");
        let index =
            i32::try_from(partition).map_err(|_| LogError::InvalidOptions("partition out of i32 range"))?;
        let queried = tokio::task::spawn_blocking(move || client.fetch_watermarks(&name, index, timeout))
            .await
            .map_err(|e| task_failed(&context, e))?;
        let (low, high) = queried.map_err(unavailable(&context))?;
        Ok((u64::try_from(low).unwrap_or(0), u64::try_from(high).unwrap_or(0)))
    }

    /// The partition count of `topic` once its metadata shows it, or `None` if it does not
    /// exist by the deadline.
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>, LogError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let (client, timeout, name) = (Arc::clone(&self.client), self.timeout, topic.to_string());
            let context = format!("metadata of {topic}");
            let metadata = tokio::task::spawn_blocking(move || client.fetch_metadata(Some(&name), timeout))
                .await
                .map_err(|e| task_failed(&context, e))?
                .map_err(unavailable(&context))?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| u32::try_from(t.partitions().len()).unwrap_or(u32::MAX));
            if count.is_some() || Instant::now() >= deadline {
                return Ok(count);
            }
            // A topic just created may take a moment to show in every broker's metadata.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The Kafka log. See the module docs.
pub struct KafkaLog {
    settings: KafkaSettings,
    partition_count: u32,
    /// Replaced after a failed delivery (see [`KafkaLog::replace_after_failure`]).
    producer: RwLock<Arc<FutureProducer>>,
    cluster: Cluster,
    /// One per (topic, partition), `Topic::ALL` order then partition order; created on first use.
    readers: Vec<OnceCell<Mutex<Reader>>>,
    /// Per (topic, partition) like `readers`: past the last record this process appended or
    /// read. The end offset is never below it (see [`KafkaLog::end`]).
    known_ends: Vec<Arc<AtomicU64>>,
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLog")
            .field("settings", &self.settings)
            .field("partition_count", &self.partition_count)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects to the cluster named by a `kafka://` URL, creating the topics if absent.
    pub async fn connect(url: &str, options: LogOptions) -> Result<Self, LogError> {
        Self::open(KafkaSettings::parse(url)?, options).await
    }

    /// Like [`KafkaLog::connect`], with the URL already parsed.
    pub async fn open(settings: KafkaSettings, options: LogOptions) -> Result<Self, LogError> {
        if options.partitions == 0 {
            return Err(LogError::InvalidOptions("partitions must be at least 1"));
        }
        let client: BaseConsumer =
            settings.client_config().create().map_err(unavailable("create a Kafka metadata client"))?;
        let cluster = Cluster { client: Arc::new(client), timeout: settings.produce_timeout };
        ensure_topics(&settings, &cluster, options.partitions).await?;
        let producer = new_producer(&settings)?;
        let slots = Topic::ALL.len() * options.partitions as usize;
        let readers = (0..slots).map(|_| OnceCell::new()).collect();
        let known_ends = (0..slots).map(|_| Arc::new(AtomicU64::new(0))).collect();
        Ok(Self {
            settings,
            partition_count: options.partitions,
            producer: RwLock::new(Arc::new(producer)),
            cluster,
            readers,
            known_ends,
        })
    }

    fn check(&self, topic: Topic, partition: PartitionId) -> Result<usize, LogError> {
        let count = self.partition_count;
        if partition >= count {
            return Err(LogError::PartitionOutOfRange { topic, partition, count });
        }
        let topic_index = match topic {
            Topic::UsageRaw => 0,
            Topic::LedgerInput => 1,
        };
        Ok(topic_index * count as usize + partition as usize)
    }

    /// The reader of a partition, created on first use.
    async fn reader(&self, topic: Topic, partition: PartitionId) -> Result<&Mutex<Reader>, LogError> {
        let index = self.check(topic, partition)?;
        let cell = self.readers.get(index).ok_or(LogError::PartitionOutOfRange {
            topic,
            partition,
            count: self.partition_count,
        })?;
        let known_end = Arc::clone(&self.known_ends[index]);
        cell.get_or_try_init(|| async {
            Reader::new(&self.settings, &self.cluster, topic, partition, known_end).map(Mutex::new)
        })
        .await
    }

    /// The end offset: the high watermark, but never below what this process has seen.
    /// On Kafka the watermark is always at least that. tansu 0.6 answers ListOffsets(latest)
    /// with the base offset of the newest record batch + 1, short of the end whenever that
    /// batch holds several records; its fetch responses and produce offsets are right.
    async fn end(&self, topic: Topic, partition: PartitionId) -> Result<u64, LogError> {
        let index = self.check(topic, partition)?;
        let (_, high) = self.cluster.watermarks(&self.settings.topic_name(topic), partition).await?;
        Ok(high.max(self.known_ends[index].load(Ordering::Acquire)))
    }

    fn producer(&self) -> Arc<FutureProducer> {
        Arc::clone(&self.producer.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces a producer whose delivery failed (unless that happened already). After a lost
    /// delivery an idempotent producer bumps its epoch on its own, which brokers without that
    /// protocol (tansu 0.6) refuse from then on ("producer fenced"), and a fatal error ends a
    /// producer for good; a new producer starts a new idempotent session either way. The old
    /// one is dropped on a blocking thread (dropping purges and flushes it for up to 500 ms).
    fn replace_after_failure(&self, failed: Arc<FutureProducer>, error: &LogError) {
        let replaced = {
            let mut current = self.producer.write().unwrap_or_else(PoisonError::into_inner);
            if !Arc::ptr_eq(&current, &failed) {
                None
            } else {
                match new_producer(&self.settings) {
                    Ok(producer) => Some(std::mem::replace(&mut *current, Arc::new(producer))),
                    Err(new_error) => {
                        tracing::error!(%new_error, "cannot replace the Kafka producer");
                        None
                    }
                }
            }
        };
        if replaced.is_some() {
            let fatal = failed.client().fatal_error().map(|(code, reason)| format!("{code}: {reason}"));
            tracing::warn!(%error, ?fatal, "a Kafka append failed; replaced the producer");
        }
        tokio::task::spawn_blocking(move || drop((failed, replaced)));
    }

    /// Sends every record and awaits every delivery; the first record's offset.
    async fn produce(
        &self,
        producer: &FutureProducer,
        topic: Topic,
        partition: PartitionId,
        records: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<u64, LogError> {
        let name = self.settings.topic_name(topic);
        let index =
            i32::try_from(partition).map_err(|_| LogError::InvalidOptions("partition out of i32 range"))?;
        let context = || format!("append to {name}/{partition}");
        let deadline = Instant::now() + self.settings.produce_timeout;
        let mut deliveries = Vec::with_capacity(records.len());
        for (key, value) in records {
            let mut record = FutureRecord::to(&name).partition(index).key(key).payload(value);
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => break deliveries.push(delivery),
                    Err((error, back)) if is_queue_full(&error) && Instant::now() < deadline => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(delivery_error(error, key, value, context())),
                }
            }
        }
        let mut first = None;
        for (delivery, (key, value)) in deliveries.into_iter().zip(records) {
            let delivered = delivery
                .await
                .map_err(|_| LogError::Unavailable(format!("{}: the producer stopped", context())))?
                .map_err(|(error, _message)| delivery_error(error, key, value, context()))?;
            first.get_or_insert(delivered.offset);
        }
        let first =
            first.ok_or_else(|| LogError::Unavailable(format!("{}: no delivery report", context())))?;
        u64::try_from(first)
            .map_err(|_| LogError::Unavailable(format!("{}: negative offset {first}", context())))
    }
}

fn new_producer(settings: &KafkaSettings) -> Result<FutureProducer, LogError> {
    settings.producer_config().create().map_err(unavailable("create a Kafka producer"))
}

fn is_queue_full(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
}

fn delivery_error(error: KafkaError, key: &[u8], value: &[u8], context: String) -> LogError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
            LogError::RecordTooLarge { bytes: key.len() + value.len() }
        }
        _ => LogError::Unavailable(format!("{context}: {error}")),
    }
}

/// Creates the topics that do not exist yet and checks the partition count of every topic.
async fn ensure_topics(settings: &KafkaSettings, cluster: &Cluster, partitions: u32) -> Result<(), LogError> {
    let requested = i32::try_from(partitions).map_err(|_| LogError::InvalidOptions("too many partitions"))?;
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config().create().map_err(unavailable("create a Kafka admin client"))?;
    let names = Topic::ALL.map(|topic| settings.topic_name(topic));
    let max_message = MAX_MESSAGE_BYTES.to_string();
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            // Unbilled usage must never expire: the broker's default retention (7 days on Apache
            // Kafka) would drop records a stopped rater or writer has not read yet.
            NewTopic::new(name, requested, TopicReplication::Fixed(settings.replication))
                .set("max.message.bytes", &max_message)
                .set("retention.ms", "-1")
                .set("retention.bytes", "-1")
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(settings.produce_timeout))
        .operation_timeout(Some(settings.produce_timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(unavailable(format!("create topics {}", names.join(", "))))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(LogError::Unavailable(format!("create topic {name}: {code}"))),
        }
    }
    for name in &names {
        let found = cluster.partition_count(name).await?.ok_or_else(|| {
            LogError::Unavailable(format!(
                "topic {name} does not show in the metadata of {}",
                settings.brokers
            ))
        })?;
        if found != partitions {
            let location = format!("kafka://{}/{name}", settings.brokers);
            return Err(LogError::PartitionCountMismatch { location, found, requested: partitions });
        }
    }
    Ok(())
}

/// What one wait on a reader's consumer gave.
enum Pulled {
    /// A record arrived (kept, or dropped as below the reader's position).
    Message,
    /// Nothing within the wait.
    Nothing,
    /// The consumer reported an error (often transient: a broker connection went down).
    Error(KafkaError),
}

/// One partition's consumer, where it stands, and what it fetched that no caller took yet.
///
/// Positioning: to read from `from`, the consumer is assigned a little earlier (`from - 16`)
/// and drops what comes below `from`. A broker must answer a fetch from the middle of a record
/// batch with that whole batch (Kafka does, and the consumer skips the records before the
/// offset); tansu 0.6 answers with the batches that *start* at or after it, so the records of
/// the batch holding `from` would be skipped, or nothing returned at all when it is the last
/// batch. The reader takes itself as positioned once a record at or past `from - 1` arrived
/// (the batch holding `from - 1` came whole, so `from` comes next), or once it is assigned at
/// the log start. Until then, a record past `from` or a silence of [`RETREAT_AFTER`] makes
/// it start again twice as far back. On Kafka the first lookback always suffices.
///
/// Invariant: `buffer` holds records below `next`, in offset order, received since the last
/// repositioning.
struct Reader {
    consumer: StreamConsumer,
    cluster: Cluster,
    topic: String,
    partition: PartitionId,
    /// The offset of the next record to keep; records below it are dropped.
    next: u64,
    /// Where the consumer was last assigned (`None` before the first assignment), and when.
    assigned: Option<(u64, Instant)>,
    /// Whether the consumer is known to deliver `next` next (when it exists).
    positioned: bool,
    /// Whether a record was kept since the reader was last repositioned.
    synced: bool,
    /// How far below `next` the consumer was last assigned.
    retreat: u64,
    buffer: VecDeque<Record>,
    /// The partition's end as far as this process has seen (shared with the log).
    known_end: Arc<AtomicU64>,
}

impl Reader {
    fn new(
        settings: &KafkaSettings,
        cluster: &Cluster,
        topic: Topic,
        partition: PartitionId,
        known_end: Arc<AtomicU64>,
    ) -> Result<Self, LogError> {
        let name = settings.topic_name(topic);
        let consumer: StreamConsumer = settings
            .reader_config()
            .create()
            .map_err(unavailable(format!("create a Kafka consumer for {name}/{partition}")))?;
        Ok(Reader {
            consumer,
            cluster: cluster.clone(),
            topic: name,
            partition,
            next: 0,
            assigned: None,
            positioned: false,
            synced: false,
            retreat: 0,
            buffer: VecDeque::new(),
            known_end,
        })
    }

    /// Assigns the consumer at `start`, `self.retreat` below `next`.
    fn assign(&mut self, start: u64) -> Result<(), LogError> {
        let context = || format!("assign {}/{} at offset {start}", self.topic, self.partition);
        let position = i64::try_from(start)
            .map_err(|_| LogError::Unavailable(format!("{}: out of range", context())))?;
        let index = i32::try_from(self.partition)
            .map_err(|_| LogError::InvalidOptions("partition out of i32 range"))?;
        let mut assignment = TopicPartitionList::with_capacity(1);
        assignment
            .add_partition_offset(&self.topic, index, Offset::Offset(position))
            .map_err(unavailable(context()))?;
        self.consumer.assign(&assignment).map_err(unavailable(context()))?;
        self.assigned = Some((start, Instant::now()));
        self.positioned = start == 0;
        Ok(())
    }

    /// Positions the reader to return `from` next: from the buffer when it holds `from`, by
    /// staying put when the consumer is about to deliver it, else by re-assigning.
    fn seek(&mut self, from: u64) -> Result<(), LogError> {
        let buffered = self.buffer.front().is_some_and(|first| first.offset <= from) && from < self.next;
        if buffered || (self.assigned.is_some() && from == self.next) {
            while self.buffer.front().is_some_and(|first| first.offset < from) {
                self.buffer.pop_front();
            }
            return Ok(());
        }
        self.restart(from)
    }

    fn restart(&mut self, from: u64) -> Result<(), LogError> {
        self.buffer.clear();
        self.next = from;
        self.synced = false;
        self.retreat = FIRST_RETREAT;
        self.assign(from.saturating_sub(FIRST_RETREAT))
    }

    /// Assigns the consumer twice as far back as last time, if the log start allows.
    async fn retreat_further(&mut self, reason: &str) -> Result<bool, LogError> {
        let Some((start, _)) = self.assigned else { return Ok(false) };
        let (low, _) = self.cluster.watermarks(&self.topic, self.partition).await?;
        if start <= low || low > self.next {
            // Already at the start, or retention dropped `next`: nothing further back to find.
            self.positioned = true;
            return Ok(false);
        }
        self.retreat = self.retreat.saturating_mul(2).max(FIRST_RETREAT);
        let start = self.next.saturating_sub(self.retreat).max(low);
        tracing::debug!(topic = %self.topic, partition = self.partition, next = self.next, start, reason,
            "Kafka reader: fetching from further back");
        self.assign(start)?;
        self.positioned = start == low;
        Ok(true)
    }

    /// Whether a record at or past `offset` is known to exist.
    fn covers(&self, offset: u64) -> bool {
        self.synced && self.next > offset
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        let n = max.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }

    /// Waits up to `wait` for one record from the consumer and files it.
    async fn pull(&mut self, wait: Duration) -> Result<Pulled, LogError> {
        let received = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_elapsed) => {
                let silent_for = self.assigned.map_or(Duration::ZERO, |(_, at)| at.elapsed());
                if !self.positioned && silent_for >= RETREAT_AFTER {
                    self.retreat_further("nothing arrived").await?;
                }
                return Ok(Pulled::Nothing);
            }
            Ok(Err(error)) => return Ok(Pulled::Error(error)),
            Ok(Ok(message)) => Record {
                offset: u64::try_from(message.offset()).unwrap_or(0),
                key: message.key().map(<[u8]>::to_vec).unwrap_or_default(),
                value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            },
        };
        self.file(received).await?;
        Ok(Pulled::Message)
    }

    /// Takes every record the consumer already holds, up to `max` buffered, without waiting.
    async fn pull_ready(&mut self, max: usize) -> Result<(), LogError> {
        while self.buffer.len() < max.min(BUFFER_RECORDS) {
            match self.pull(Duration::ZERO).await? {
                Pulled::Message => {}
                Pulled::Nothing => break,
                Pulled::Error(error) => {
                    tracing::debug!(topic = %self.topic, partition = self.partition, %error, "Kafka reader");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Keeps a record at or past `next` (see the positioning rules on [`Reader`]).
    async fn file(&mut self, record: Record) -> Result<(), LogError> {
        if record.offset + 1 == self.next {
            self.positioned = true;
        }
        if record.offset < self.next {
            return Ok(());
        }
        if record.offset > self.next && !self.synced && !self.positioned {
            // Records were skipped, unless retention dropped them (then the read starts at
            // the first retained record).
            if self.retreat_further("the broker skipped records").await? {
                return Ok(());
            }
        }
        self.positioned = true;
        self.synced = true;
        self.next = record.offset + 1;
        self.known_end.fetch_max(self.next, Ordering::AcqRel);
        self.buffer.push_back(record);
        Ok(())
    }

    /// Waits until the buffer holds `max` records or reaches `end`, or `deadline` passes; the
    /// last error the consumer reported, if any.
    async fn pull_until(
        &mut self,
        max: usize,
        end: u64,
        deadline: Instant,
    ) -> Result<Option<KafkaError>, LogError> {
        let mut last_error = None;
        while self.buffer.len() < max.min(BUFFER_RECORDS) && self.next < end {
            let wait = deadline.saturating_duration_since(Instant::now()).min(WAIT_SLICE);
            if wait.is_zero() {
                break;
            }
            if let Pulled::Error(error) = self.pull(wait).await? {
                tracing::debug!(topic = %self.topic, partition = self.partition, %error, "Kafka reader");
                last_error = Some(error);
                tokio::time::sleep(wait.min(Duration::from_millis(20))).await;
            }
        }
        Ok(last_error)
    }
}

#[async_trait]
impl Log for KafkaLog {
    fn partition_count(&self) -> u32 {
        self.partition_count
    }

    async fn append(
        &self,
        topic: Topic,
        partition: PartitionId,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<u64, LogError> {
        let index = self.check(topic, partition)?;
        if records.is_empty() {
            return self.end_offset(topic, partition).await;
        }
        if let Some((k, v)) = records.iter().find(|(k, v)| k.len() + v.len() > MAX_MESSAGE_BYTES - 1024) {
            return Err(LogError::RecordTooLarge { bytes: k.len() + v.len() });
        }
        let producer = self.producer();
        let produced = self.produce(&producer, topic, partition, &records).await;
        match &produced {
            Ok(first) => {
                let end = first + records.len() as u64;
                self.known_ends[index].fetch_max(end, Ordering::AcqRel);
            }
            Err(LogError::RecordTooLarge { .. }) => {}
            Err(error) => self.replace_after_failure(producer, error),
        }
        produced
    }

    /// Serves from the reader's buffer when it can; otherwise returns at once when nothing
    /// exists at `from` (the high watermark says so), and else waits for the records up to that
    /// watermark (at most `produce_timeout`).
    async fn read(
        &self,
        topic: Topic,
        partition: PartitionId,
        from: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, LogError> {
        let reader = self.reader(topic, partition).await?;
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let mut reader = reader.lock().await;
        reader.seek(from)?;
        reader.pull_ready(max_records).await?;
        if reader.buffer.is_empty() {
            let end = self.end(topic, partition).await?;
            if end <= from {
                return Ok(Vec::new());
            }
            let deadline = Instant::now() + self.settings.produce_timeout;
            let last_error = reader.pull_until(max_records, end, deadline).await?;
            if reader.buffer.is_empty() {
                let cause = last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
                return Err(LogError::Unavailable(format!(
                    "{}/{partition}: records from offset {from} (end {end}) did not arrive within {:?}{cause}",
                    reader.topic, self.settings.produce_timeout
                )));
            }
            // The rest of what the last fetch brought, past the end the watermark said.
            reader.pull_ready(max_records).await?;
        }
        Ok(reader.take(max_records))
    }

    async fn end_offset(&self, topic: Topic, partition: PartitionId) -> Result<u64, LogError> {
        self.end(topic, partition).await
    }

    /// Polls the partition's reader in short slices (so reads of the same partition get in
    /// between); what arrives stays buffered for the next read. Returns the high watermark.
    async fn wait_for(
        &self,
        topic: Topic,
        partition: PartitionId,
        offset: u64,
        timeout: Duration,
    ) -> Result<u64, LogError> {
        let reader = self.reader(topic, partition).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let failed = {
                let mut reader = reader.lock().await;
                if reader.covers(offset) {
                    break;
                }
                if reader.assigned.is_none() || reader.next != offset {
                    reader.restart(offset)?;
                }
                let wait = deadline.saturating_duration_since(Instant::now()).min(WAIT_SLICE);
                let pulled = reader.pull(wait).await?;
                reader.pull_ready(BUFFER_RECORDS).await?;
                if reader.covers(offset) {
                    break;
                }
                matches!(pulled, Pulled::Error(_))
            };
            if Instant::now() >= deadline {
                break;
            }
            if failed {
                // An error event (a broker went away): do not spin on the next one.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.end_offset(topic, partition).await
    }

    /// Does not delete anything: returns the first offset the topic still holds (its low
    /// watermark). Kafka's DeleteRecords would move it, but tansu (the broker the tests run)
    /// does not implement it (its storage engines answer with a panic), so retention on Kafka
    /// is the topics' own `retention.ms`/`retention.bytes`: unlimited as drawdown creates them,
    /// and only an operator who knows every stage has read a record may shorten it. Callers never
    /// rely on more than "the first retained offset is at most `offset`", which holds.
    async fn retain_from(&self, topic: Topic, partition: PartitionId, _offset: u64) -> Result<u64, LogError> {
        self.check(topic, partition)?;
        let (low, _) = self.cluster.watermarks(&self.settings.topic_name(topic), partition).await?;
        Ok(low)
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_parameters() {
        let s = KafkaSettings::parse("kafka://localhost:9092").unwrap();
        assert_eq!(s.brokers, "localhost:9092");
        assert_eq!((s.prefix.as_str(), s.replication), ("", 1));
        assert_eq!(s.produce_timeout, Duration::from_secs(10));
        assert_eq!(s.topic_name(Topic::UsageRaw), "usage.raw");

        let s = KafkaSettings::parse("kafka://a:1,b:2?prefix=prod.&replication=3&produce_timeout_ms=2500")
            .unwrap();
        assert_eq!(s.brokers, "a:1,b:2");
        assert_eq!(s.topic_name(Topic::LedgerInput), "prod.ledger.input");
        assert_eq!(s.replication, 3);
        assert_eq!(s.produce_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "kafka://",
            "kafka://localhost",
            "kafka://localhost:x",
            "kafka://a:1,:2",
            "http://localhost:9092",
            "kafka://a:1?prefix=no/slash",
            "kafka://a:1?replication=0",
            "kafka://a:1?session_timeout_ms=6000",
            "kafka://a:1?produce_timeout_ms=0",
            "kafka://a:1?partitions=4",
        ] {
            let err = KafkaSettings::parse(url).unwrap_err();
            assert!(matches!(err, LogError::InvalidOptions(_)), "{url}: {err}");
        }
    }
}
