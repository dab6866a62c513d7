//! Choosing the masked positions of a sequence (data-spec/epoch.md, "Masking").
//!
//! Of the `n` non-special tokens of a sequence, `m = floor(rate * n + 1/2)` are masked
//! (round half up), at least 1 when `n > 0` and at most `n`. They are drawn uniformly without
//! replacement (a partial Fisher-Yates shuffle of the candidate positions driven by the caller's
//! [`CounterRng`]) and returned in ascending order. Special tokens ([CLS], [SEP], [PAD], [MASK])
//! are never masked.
//!
//! The corruption keys the RNG by `(seed, [domain::MASK, epoch, sequence_id])`; the trainer's MLM
//! objective passes its own key (e.g. `[domain::MLM, step, sequence_id]`).
use crate::corruption::rng::CounterRng;

/// Token ids never masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub cls: i32,
    pub sep: i32,
    pub pad: i32,
    pub mask: i32,
}

impl SpecialIds {
    pub fn is_special(&self, id: i32) -> bool {
        id == self.cls || id == self.sep || id == self.pad || id == self.mask
    }
}

impl From<&crate::format::manifest::SpecialTokens> for SpecialIds {
    fn from(s: &crate::format::manifest::SpecialTokens) -> Self {
        Self {
            cls: s.cls as i32,
            sep: s.sep as i32,
            pad: s.pad as i32,
            mask: s.mask as i32,
        }
    }
}

/// How many of `candidates` non-special tokens are masked at `rate` (in (0, 1]).
pub fn num_to_mask(candidates: usize, rate: f64) -> usize {
    if candidates == 0 {
        return 0;
    }
    let m = (rate * candidates as f64 + 0.5).floor() as usize;
    m.clamp(1, candidates)
}

/// The masked positions of `ids` (ascending), drawn with `rng`.
pub fn mask_positions(
    ids: &[i32],
    special: &SpecialIds,
    rate: f64,
    rng: &mut CounterRng,
) -> Vec<i32> {
    let mut candidates: Vec<i32> = ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| !special.is_special(id))
        .map(|(i, _)| i as i32)
        .collect();
    let m = num_to_mask(candidates.len(), rate);
    // Partial Fisher-Yates: the first m slots become a uniform m-subset.
    for i in 0..m {
        let j = i + rng.below((candidates.len() - i) as u64) as usize;
        candidates.swap(i, j);
    }
    candidates.truncate(m);
    candidates.sort_unstable();
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::rng::domain;

    const SPECIAL: SpecialIds = SpecialIds {
        cls: 101,
        sep: 102,
        pad: 0,
        mask: 103,
    };

    #[test]
    fn rounding_rule() {
        assert_eq!(num_to_mask(0, 0.15), 0);
        assert_eq!(num_to_mask(1, 0.15), 1); // at least one
        assert_eq!(num_to_mask(10, 0.15), 2); // 1.5 rounds up
        assert_eq!(num_to_mask(9, 0.15), 1); // 1.35 rounds down
        assert_eq!(num_to_mask(126, 0.15), 19); // 18.9
        assert_eq!(num_to_mask(4, 1.0), 4);
    }

    #[test]
    fn never_masks_specials_and_is_keyed() {
        let ids: Vec<i32> = [101].into_iter().chain(1000..1100).chain([102]).collect();
        let a = mask_positions(
            &ids,
            &SPECIAL,
            0.15,
            &mut CounterRng::new(0, &[domain::MASK, 1, 5]),
        );
        let b = mask_positions(
            &ids,
            &SPECIAL,
            0.15,
            &mut CounterRng::new(0, &[domain::MASK, 1, 5]),
        );
        let c = mask_positions(
            &ids,
            &SPECIAL,
            0.15,
            &mut CounterRng::new(0, &[domain::MASK, 2, 5]),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 15);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&p| p > 0 && p < 101));
    }

    #[test]
    fn positions_are_uniform() {
        let ids: Vec<i32> = [101].into_iter().chain(1000..1010).chain([102]).collect();
        let mut counts = [0u32; 12];
        for s in 0..20_000u64 {
            for p in mask_positions(
                &ids,
                &SPECIAL,
                0.2,
                &mut CounterRng::new(3, &[domain::MASK, 0, s]),
            ) {
                counts[p as usize] += 1;
            }
        }
        // 2 of 10 positions each time: 4000 expected per position.
        assert_eq!(counts[0] + counts[11], 0);
        for &c in &counts[1..11] {
            assert!((3700..4300).contains(&c), "{counts:?}");
        }
    }
}
