//! The Kafka backend against a real broker: tansu, started once for this test binary
//! (`eventlog::testing`), each test on its own topic prefix. Runs the log conformance suite and
//! the Kafka-specific behaviour (reading from the middle of batches, partition counts).

#![allow(clippy::unwrap_used)] // test code: a failed step should panic with its location

use eventlog::conformance::{read_all, Harness};
use eventlog::testing::{self, Broker};
use eventlog::{KafkaLog, Log, LogError, LogOptions, PartitionId, Record, Topic};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;
/// How long anything asynchronous (a broker coming back, records arriving) may take.
const EVENTUALLY: Duration = Duration::from_secs(60);

fn options(partitions: u32) -> LogOptions {
    LogOptions { partitions, ..LogOptions::default() }
}

async fn connect(url: &str) -> KafkaLog {
    KafkaLog::connect(url, options(PARTITIONS)).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// A fresh prefix on the shared broker.
struct Kafka {
    url: String,
}

impl Harness for Kafka {
    type Backend = KafkaLog;

    fn new() -> Self {
        Kafka { url: testing::shared().url(&testing::prefix()) }
    }

    /// Kafka has no segments this backend controls (and the retention test is left out).
    fn with_segment_bytes(_segment_bytes: u64) -> Self {
        Self::new()
    }

    /// The harness is synchronous and the conformance tests run on a multi-threaded runtime:
    /// connect on this worker thread, letting the runtime move its other tasks away meanwhile.
    fn open(&self) -> KafkaLog {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(connect(&self.url)))
    }
}

// Everything but `retention_drops_whole_old_segments`: the Kafka backend does not delete records
// (tansu has no DeleteRecords; see `KafkaLog::retain_from`).
eventlog::log_conformance_tests!(Kafka, without_retention);

fn record(value: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(b"customer".to_vec(), value.as_bytes().to_vec())]
}

/// Reads like the services do: `read`, and `wait_for` when it finds nothing yet.
async fn read_at(log: &KafkaLog, topic: Topic, partition: PartitionId, from: u64, max: usize) -> Vec<Record> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let records = log.read(topic, partition, from, max).await.unwrap();
        if !records.is_empty() {
            return records;
        }
        assert!(Instant::now() < deadline, "nothing to read at {topic}/{partition} offset {from}");
        log.wait_for(topic, partition, from, Duration::from_secs(1)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_reads_every_record_in_order_from_any_offset() {
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 5;
    const TOTAL: u64 = BATCHES * PER_BATCH;
    let topic = Topic::UsageRaw;
    let url = testing::shared().url(&testing::prefix());
    let (writer, tail) = (connect(&url).await, connect(&url).await);
    let appending = tokio::spawn(async move {
        for batch in 0..BATCHES {
            let records = (0..PER_BATCH)
                .map(|i| (b"k".to_vec(), (batch * PER_BATCH + i).to_string().into_bytes()))
                .collect();
            writer.append(topic, 1, records).await.unwrap();
        }
    });

    // Tailing while the other process appends, in reads that end mid-batch.
    let mut next = 0;
    while next < TOTAL {
        for record in read_at(&tail, topic, 1, next, 7).await {
            assert_eq!((record.offset, record.value), (next, next.to_string().into_bytes()));
            next += 1;
        }
    }
    appending.await.unwrap();

    // A process that saw nothing yet reads from the middle of batches, and jumps around.
    let fresh = connect(&url).await;
    for from in [3, 7, 12, 199, 0, 101] {
        let offsets: Vec<u64> = read_at(&fresh, topic, 1, from, 4).await.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (from..(from + 4).min(TOTAL)).collect::<Vec<_>>(), "reading from {from}");
    }
    assert_eq!(fresh.end_offset(topic, 1).await.unwrap(), TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_another_partition_count_is_refused() {
    let url = testing::shared().url(&testing::prefix());
    drop(connect(&url).await);
    let err = KafkaLog::connect(&url, options(PARTITIONS + 1)).await.unwrap_err();
    assert!(matches!(err, LogError::PartitionCountMismatch { found: 4, requested: 5, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_picks_the_backend_by_url() {
    let url = testing::shared().url(&testing::prefix());
    let log = eventlog::connect(&url, options(3)).await.unwrap();
    assert_eq!(log.partition_count(), 3);
    assert_eq!(log.append(Topic::UsageRaw, 2, record("x")).await.unwrap(), 0);

    let dir = tempfile::tempdir().unwrap();
    let embedded =
        eventlog::connect(&format!("embedded:{}", dir.path().display()), options(2)).await.unwrap();
    assert_eq!(embedded.partition_count(), 2);
    let err = eventlog::connect("kafka://nowhere", options(2)).await.err().unwrap();
    assert!(matches!(err, LogError::InvalidOptions(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_appends_and_they_succeed_again_once_it_is_back() {
    let broker = Broker::start();
    let url = format!("{}&produce_timeout_ms=2000", broker.url(&testing::prefix()));
    let log = connect(&url).await;
    assert_eq!(log.append(Topic::LedgerInput, 1, record("before")).await.unwrap(), 0);

    broker.pause();
    let err = log.append(Topic::LedgerInput, 1, record("while paused")).await.unwrap_err();
    assert!(matches!(err, LogError::Unavailable(_)), "{err}");
    let err = log.end_offset(Topic::LedgerInput, 1).await.unwrap_err();
    assert!(matches!(err, LogError::Unavailable(_)), "{err}");
    broker.resume();

    let deadline = Instant::now() + EVENTUALLY;
    let offset = loop {
        match log.append(Topic::LedgerInput, 1, record("after")).await {
            Ok(offset) => break offset,
            Err(err) => {
                assert!(Instant::now() < deadline, "appends still fail after the broker is back: {err}")
            }
        }
    };
    // The append that failed may or may not have been stored; the others are, in order.
    let values: Vec<String> = read_all(&log, Topic::LedgerInput, 1, 0)
        .await
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert_eq!(values.first().map(String::as_str), Some("before"));
    assert_eq!(values.last().map(String::as_str), Some("after"));
    assert_eq!(offset as usize, values.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_unlimited_retention() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;
    let broker = testing::shared();
    let prefix = testing::prefix();
    connect(&broker.url(&prefix)).await;
    let address = broker.url("").trim_start_matches("kafka://").split('?').next().unwrap().to_string();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &address).create().unwrap();
    for topic in Topic::ALL {
        let name = format!("{prefix}{}", topic.name());
        let described =
            admin.describe_configs([&ResourceSpecifier::Topic(&name)], &AdminOptions::new()).await.unwrap();
        let config = described.into_iter().next().unwrap().unwrap();
        for key in ["retention.ms", "retention.bytes"] {
            let entry =
                config.get(key).unwrap_or_else(|| panic!("{name} has no {key}: {:?}", config.entries));
            assert_eq!(entry.value.as_deref(), Some("-1"), "{name} {key}");
        }
    }
}
