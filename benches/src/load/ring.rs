//! Small pieces of the sending loop's state: the ring of recently acknowledged events a
//! connection re-sends as deliberate duplicates (one ring per customer, since an event id is
//! unique per customer), the run id, and a tiny PRNG (no dependency, not cryptographic).

use std::collections::VecDeque;

/// Events remembered per customer and connection.
pub const RING_CAPACITY: usize = 16;

/// The last [`RING_CAPACITY`] acknowledged items, oldest evicted first.
#[derive(Debug)]
pub struct Ring<T> {
    items: VecDeque<T>,
}

impl<T: Copy> Ring<T> {
    /// An empty ring; allocates on the first push only.
    pub fn new() -> Self {
        Self { items: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn push(&mut self, item: T) {
        if self.items.len() == RING_CAPACITY {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// A random item not yet `used` (a bit per slot), marking it used; `None` once every item is
    /// used, so one request never carries the same event twice.
    pub fn pick(&self, rng: &mut Rng, used: &mut u32) -> Option<T> {
        let is_free = |i: &usize| *used & (1u32 << i) == 0;
        let free = (0..self.len()).filter(is_free).count();
        if free == 0 {
            return None;
        }
        let nth = rng.below(free as u64) as usize;
        let slot = (0..self.len()).filter(is_free).nth(nth)?;
        *used |= 1u32 << slot;
        self.items.get(slot).copied()
    }
}

impl<T: Copy> Default for Ring<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Picks a `share` of occasions, spread evenly (one in `1/share`, from a random phase) rather than
/// drawn: a run of `n` occasions gets `n × share` picks, give or take one, never zero by bad luck.
#[derive(Debug)]
pub struct Spread {
    share: f64,
    credit: f64,
}

impl Spread {
    pub fn new(share: f64, rng: &mut Rng) -> Self {
        Self { share, credit: rng.unit() }
    }

    /// Whether this occasion is picked.
    pub fn pick(&mut self) -> bool {
        self.credit += self.share;
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A short random id that keeps this run's event ids, codes and transaction ids apart from any
/// earlier run's against the same server.
pub fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

/// SplitMix64: fast, small, good enough to spread tokens, dimensions and shares.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from a fresh v4 UUID.
    pub fn random() -> Self {
        Self::seeded(uuid::Uuid::new_v4().as_u64_pair().0)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_items() {
        let mut ring = Ring::new();
        for i in 0..40u64 {
            ring.push(i);
        }
        assert_eq!(ring.len(), RING_CAPACITY);
        let mut rng = Rng::seeded(7);
        let mut used = 0;
        let mut picked: Vec<u64> = std::iter::from_fn(|| ring.pick(&mut rng, &mut used)).collect();
        picked.sort_unstable();
        assert_eq!(picked, (24..40).collect::<Vec<_>>(), "each item once, only the newest 16");
    }

    #[test]
    fn an_empty_ring_has_nothing_to_duplicate() {
        let ring: Ring<u64> = Ring::new();
        assert_eq!(ring.pick(&mut Rng::seeded(1), &mut 0), None);
    }

    #[test]
    fn picks_skip_used_slots() {
        let mut ring = Ring::new();
        ring.push(1u8);
        ring.push(2u8);
        let mut used = 0b01;
        assert_eq!(ring.pick(&mut Rng::seeded(3), &mut used), Some(2));
        assert_eq!(used, 0b11);
    }

    #[test]
    fn spreads_pick_their_share_evenly() {
        let mut rng = Rng::seeded(5);
        for _ in 0..100 {
            let mut spread = Spread::new(0.05, &mut rng);
            let picks: Vec<usize> = (0..100).filter(|_| spread.pick()).collect();
            // Five, give or take the float rounding of the running credit.
            assert!((4..=6).contains(&picks.len()), "{picks:?}");
            assert!(picks.windows(2).all(|w| (19..=21).contains(&(w[1] - w[0]))), "{picks:?}");
        }
        let mut never = Spread::new(0.0, &mut rng);
        assert!(!(0..1000).any(|_| never.pick()));
    }

    #[test]
    fn chances_follow_their_probability() {
        let mut rng = Rng::seeded(11);
        let hits = (0..100_000).filter(|_| rng.chance(0.05)).count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
        assert!((0..1000).all(|_| rng.below(7) < 7));
        assert_eq!(run_id().len(), 10);
    }
}
