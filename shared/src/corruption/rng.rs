//! A counter-based random number generator: the value drawn is a pure function of a key
//! (seed, stream words) and a counter, so results do not depend on batch size, thread count,
//! device or the order in which sequences are processed.
//!
//! The key is built by absorbing each stream word with SplitMix64's finaliser; draws are
//! SplitMix64 outputs of `key + counter * GOLDEN`. Used for masking and sampling in
//! `preprocess` (stream = [domain, epoch, sequence_id]) and for dynamic masking in `trainer`.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Named domains so that different uses of the same (seed, epoch, sequence) never share draws.
pub mod domain {
    /// Choosing masked positions.
    pub const MASK: u64 = 1;
    /// Sampling replacement tokens (one stream per masked position).
    pub const SAMPLE: u64 = 2;
    /// Shuffling rows.
    pub const SHUFFLE: u64 = 3;
    /// Dynamic masking of the MLM objective in the trainer.
    pub const MLM: u64 = 4;
    /// Splitting documents into train and validation.
    pub const SPLIT: u64 = 5;
    /// Seeding torch's generator for the auxiliary model's dropout, once per batch.
    pub const DROPOUT: u64 = 6;
    /// Choosing the auxiliary model's input tokens that become [UNK] (drop-token).
    pub const DROP_TOKEN: u64 = 7;
}

/// A stream of pseudo-random numbers keyed by `seed` and `stream`.
#[derive(Debug, Clone)]
pub struct CounterRng {
    key: u64,
    counter: u64,
}

impl CounterRng {
    /// The stream for `seed` and the words of `stream` (e.g. `[domain::MASK, epoch, sequence_id]`).
    pub fn new(seed: u64, stream: &[u64]) -> Self {
        let mut key = mix(seed ^ GOLDEN);
        for &w in stream {
            key = mix(key ^ mix(w.wrapping_add(GOLDEN)));
        }
        Self { key, counter: 0 }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix(self.key.wrapping_add(self.counter.wrapping_mul(GOLDEN)))
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (Lemire's multiply-shift with rejection; `n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "CounterRng::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_draws_and_streams_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = CounterRng::new(7, &[1, 2]);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = CounterRng::new(7, &[1, 2]);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = CounterRng::new(7, &[1, 3]);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut r = CounterRng::new(0, &[]);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[r.below(10) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }
}
