//! Kafka's default partitioner, ported bit for bit so the embedded and Kafka backends put every
//! customer in the same partition (a customer moving partitions would break per-customer order).

use crate::PartitionId;

/// Kafka's `org.apache.kafka.common.utils.Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`.
/// Java's `int` arithmetic wraps, hence `u32` wrapping ops and logical shifts (`>>>`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java takes the length as an `int`; arrays never exceed `i32::MAX`, so this matches it.
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // Java's fall-through `switch (length % 4)`.
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key`: `toPositive(murmur2(key)) % partition_count`, as Kafka's
/// `BuiltInPartitioner.partitionForKey`. A count of 0 (never a valid log) maps to partition 0
/// rather than panicking.
pub fn partition_for(key: &[u8], partition_count: u32) -> PartitionId {
    ((murmur2(key) as u32) & 0x7fff_ffff).checked_rem(partition_count).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "murmur2({:?})", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn partition_for_is_stable_and_in_range() {
        // (-790332482 & 0x7fffffff) % 50 == 16, as Kafka places "foobar" among 50 partitions.
        assert_eq!(partition_for(b"foobar", 50), 16);
        for count in 1..=64 {
            for i in 0..200 {
                let key = format!("cust_{i:032x}");
                let p = partition_for(key.as_bytes(), count);
                assert!(p < count);
                assert_eq!(p, partition_for(key.as_bytes(), count));
            }
        }
        assert_eq!(partition_for(b"anything", 0), 0);
    }
}
