//! The fast duplicate check: a bounded memory of recently accepted (customer, event id) pairs
//! and a fingerprint of each event's body.
//!
//! This is only the fast path. The ledger writer checks every event exactly against the store,
//! so forgetting a pair (eviction, restart) can never post an event twice; remembering lets
//! ingest skip appending retries it has just seen. Pairs are remembered only once their append
//! is durable, so a failed append is never mistaken for an accepted event.
//!
//! The memory is split into shards, each behind a `std::sync::Mutex` held only for one lookup or
//! insert (never across an `.await`), with first-in-first-out eviction per shard. Keys and
//! fingerprints are SHA-256 prefixes (128 and 64 bits), so an entry costs the same whatever the
//! ids look like; two distinct pairs colliding on 128 bits is not a practical concern.

use schemas::usage::UsageEvent;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::{Mutex, PoisonError};

/// Shards of the default memory.
pub(crate) const SHARDS: usize = 64;

/// A (customer, event id) pair, hashed.
pub(crate) type EventKey = u128;

/// What the memory knows about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not remembered: append it.
    New,
    /// Remembered with the same body: drop it.
    Same,
    /// Remembered with another body: drop it (the first wins) and count the conflict.
    Conflict,
}

pub(crate) fn event_key(customer_id: &str, event_id: &str) -> EventKey {
    let mut hasher = Sha256::new();
    hasher.update(customer_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(event_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

/// A 64-bit fingerprint of the event's JSON body.
pub(crate) fn fingerprint(event: &UsageEvent) -> u64 {
    // The memory lives in this process only, so a fixed-key SipHash of the event's fields is
    // enough: no JSON encoding and no SHA-256 per event on the hot path. Equal values hash alike
    // (`1.0` and `1` are the same number).
    BuildHasherDefault::<DefaultHasher>::default().hash_one(event)
}

#[derive(Default)]
struct Shard {
    fingerprints: HashMap<EventKey, u64>,
    order: VecDeque<EventKey>,
    capacity: usize,
}

/// Recently accepted events, at most `capacity` pairs in total.
pub(crate) struct RecentEvents {
    shards: Box<[Mutex<Shard>]>,
}

impl RecentEvents {
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_shards(capacity, SHARDS)
    }

    /// `capacity` is split over `shards` as evenly as possible (the totals add up exactly).
    pub(crate) fn with_shards(capacity: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let (each, extra) = (capacity / shards, capacity % shards);
        let shards = (0..shards)
            .map(|i| Mutex::new(Shard { capacity: each + usize::from(i < extra), ..Shard::default() }))
            .collect();
        Self { shards }
    }

    fn shard(&self, key: EventKey) -> &Mutex<Shard> {
        // The key is a hash already: its low bits spread evenly.
        &self.shards[(key % self.shards.len() as u128) as usize]
    }

    pub(crate) fn check(&self, key: EventKey, fingerprint: u64) -> Seen {
        let shard = self.shard(key).lock().unwrap_or_else(PoisonError::into_inner);
        match shard.fingerprints.get(&key) {
            None => Seen::New,
            Some(&first) if first == fingerprint => Seen::Same,
            Some(_) => Seen::Conflict,
        }
    }

    /// Remembers `key`; a pair already remembered keeps its first fingerprint. The oldest pair
    /// of the shard is forgotten when the shard is full.
    pub(crate) fn remember(&self, key: EventKey, fingerprint: u64) {
        let mut shard = self.shard(key).lock().unwrap_or_else(PoisonError::into_inner);
        if shard.capacity == 0 || shard.fingerprints.contains_key(&key) {
            return;
        }
        while shard.order.len() >= shard.capacity {
            match shard.order.pop_front() {
                Some(oldest) => {
                    shard.fingerprints.remove(&oldest);
                }
                None => break,
            }
        }
        shard.fingerprints.insert(key, fingerprint);
        shard.order.push_back(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).order.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_event_is_seen_again_and_a_different_body_is_a_conflict() {
        let memory = RecentEvents::new(1_000);
        let key = event_key("cust_1", "evt_1");
        assert_eq!(memory.check(key, 7), Seen::New);
        memory.remember(key, 7);
        assert_eq!(memory.check(key, 7), Seen::Same);
        assert_eq!(memory.check(key, 8), Seen::Conflict);
        memory.remember(key, 8);
        assert_eq!(memory.check(key, 7), Seen::Same, "the first body wins");
    }

    #[test]
    fn the_same_event_id_of_another_customer_is_another_event() {
        assert_ne!(event_key("cust_1", "evt_1"), event_key("cust_2", "evt_1"));
        assert_ne!(event_key("cust_1", "evt_1"), event_key("cust_1e", "vt_1"));
    }

    #[test]
    fn the_oldest_pair_is_forgotten_when_the_memory_is_full() {
        let memory = RecentEvents::with_shards(2, 1);
        let [a, b, c] = ["a", "b", "c"].map(|id| event_key("cust_1", id));
        memory.remember(a, 1);
        memory.remember(b, 1);
        memory.remember(c, 1);
        assert_eq!(memory.check(a, 1), Seen::New);
        assert_eq!(memory.check(b, 1), Seen::Same);
        assert_eq!(memory.check(c, 1), Seen::Same);
        assert_eq!(memory.len(), 2);
    }

    #[test]
    fn the_capacity_is_a_total_over_all_shards() {
        let memory = RecentEvents::new(100);
        for i in 0..10_000 {
            memory.remember(event_key("cust_1", &i.to_string()), 1);
        }
        assert_eq!(memory.len(), 100);
        let none = RecentEvents::new(0);
        none.remember(event_key("cust_1", "a"), 1);
        assert_eq!(none.len(), 0);
    }
}
