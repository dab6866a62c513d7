//! `--augmentation drop-token`: softmax(z) of the auxiliary model whose input has each unmasked,
//! non-special token replaced by [UNK] with probability gamma. Only the model's view changes: the
//! stored `input_ids` keep the original tokens.
use crate::corruption::batch::{Inputs, Keys, Seq};
use crate::corruption::rng::{domain, CounterRng};

use super::augmentation::Augmentation;
use super::interface::{Named, Setup, Uses};

pub struct DropToken;

impl Augmentation for DropToken {
    fn named(&self) -> Named {
        Named {
            name: "drop-token",
            about: "a gamma fraction of the model's unmasked input tokens become [UNK]",
        }
    }

    fn uses(&self) -> Uses {
        Uses {
            unk: true,
            gamma: true,
            ..Uses::default()
        }
    }

    fn prepare(&self, setup: &Setup, inputs: &mut Inputs, seqs: &[Seq]) {
        if let Some(unk) = setup.unk {
            drop_tokens(inputs, seqs, &setup.keys, setup.gamma, unk);
        }
    }
}

/// Drop-token: each unmasked, non-special token of the auxiliary model's input becomes `unk` with
/// probability `gamma`, one uniform per such position in order from
/// `CounterRng(seed, [DROP_TOKEN, epoch, sequence_id])`. Only `inputs` change (the model's view);
/// the sequences, hence the main model's input, keep their tokens. Returns how many were dropped.
pub fn drop_tokens(inputs: &mut Inputs, seqs: &[Seq], keys: &Keys, gamma: f64, unk: i32) -> usize {
    if gamma <= 0.0 {
        return 0;
    }
    let mut dropped = 0;
    for (b, seq) in seqs.iter().enumerate() {
        let mut rng = CounterRng::new(
            keys.seed,
            &[domain::DROP_TOKEN, keys.epoch as u64, seq.sequence_id],
        );
        let mut masked = seq.masked.iter().peekable();
        for (p, &id) in seq.ids.iter().enumerate() {
            if masked.peek().is_some_and(|&&m| m as usize == p) {
                masked.next();
                continue;
            }
            if keys.special.is_special(id) {
                continue;
            }
            if rng.next_f64() < gamma {
                inputs.input_ids[b * inputs.width + p] = unk as i64;
                dropped += 1;
            }
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::batch::build_inputs;
    use crate::corruption::masking::SpecialIds;

    const KEYS: Keys = Keys {
        seed: 3,
        epoch: 1,
        mask_rate: 0.3,
        special: SpecialIds {
            cls: 101,
            sep: 102,
            pad: 0,
            mask: 103,
        },
    };
    const UNK: i32 = 100;

    #[test]
    fn drop_token_never_touches_masks_specials_or_the_sequences() {
        let seqs: Vec<Seq> = (0..20u64)
            .map(|s| {
                let mut ids = vec![101];
                ids.extend((0..30).map(|j| 1000 + ((s as i32 * 7 + j) % 50)));
                ids.push(102);
                Seq::new(s as usize, s, &ids, &KEYS)
            })
            .collect();
        let before = seqs.clone();
        let clean = build_inputs(&seqs, 34, &KEYS);
        let mut inputs = clean.clone();
        let dropped = drop_tokens(&mut inputs, &seqs, &KEYS, 0.4, UNK);
        let eligible: usize = seqs.iter().map(|s| 30 - s.masked.len()).sum();
        let rate = dropped as f64 / eligible as f64;
        assert!((0.3..0.5).contains(&rate), "dropped {rate}");
        for (b, seq) in seqs.iter().enumerate() {
            for p in 0..34 {
                let (x, y) = (clean.input_ids[b * 34 + p], inputs.input_ids[b * 34 + p]);
                if x != y {
                    assert_eq!(y, UNK as i64);
                    assert!(!seq.masked.contains(&(p as i32)), "masked position dropped");
                    assert!(!KEYS.special.is_special(x as i32), "special token dropped");
                }
            }
        }
        // The sequences (the main model's input) and the mask tokens are untouched.
        assert!(seqs.iter().zip(&before).all(|(a, b)| a.ids == b.ids));
        assert_eq!(inputs.positions, clean.positions);
        for &p in &inputs.positions {
            assert_eq!(inputs.input_ids[p as usize], KEYS.special.mask as i64);
        }
        // Keyed by sequence: the same row alone gets the same drops; gamma 0 drops nothing.
        let mut alone = build_inputs(&seqs[7..8], 34, &KEYS);
        drop_tokens(&mut alone, &seqs[7..8], &KEYS, 0.4, UNK);
        assert_eq!(alone.input_ids, inputs.input_ids[7 * 34..8 * 34]);
        let mut none = clean.clone();
        assert_eq!(drop_tokens(&mut none, &seqs, &KEYS, 0.0, UNK), 0);
        assert_eq!(none, clean);
    }

    #[test]
    fn drop_token_replaces_a_gamma_fraction_of_the_unmasked_inputs_and_all_at_gamma_one() {
        let seqs: Vec<Seq> = (0..300u64)
            .map(|s| {
                let mut ids = vec![101];
                ids.extend((0..40).map(|j| 1000 + ((s as i32 * 13 + j * 7) % 500)));
                ids.push(102);
                Seq::new(s as usize, s, &ids, &KEYS)
            })
            .collect();
        let clean = build_inputs(&seqs, 42, &KEYS);
        let eligible: usize = seqs.iter().map(|s| 40 - s.masked.len()).sum();
        for gamma in [0.1, 0.5] {
            let mut inputs = clean.clone();
            let dropped = drop_tokens(&mut inputs, &seqs, &KEYS, gamma, UNK);
            // Counted from the inputs, not from the return value.
            let unk = inputs
                .input_ids
                .iter()
                .zip(&clean.input_ids)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(unk, dropped);
            let rate = unk as f64 / eligible as f64;
            let se = (gamma * (1.0 - gamma) / eligible as f64).sqrt();
            assert!(
                (rate - gamma).abs() <= 4.5 * se,
                "gamma {gamma}: dropped {rate} of {eligible} (standard error {se})"
            );
        }
        // gamma = 1: every unmasked, non-special input token is [UNK]; the rest is untouched.
        let mut all = clean.clone();
        assert_eq!(drop_tokens(&mut all, &seqs, &KEYS, 1.0, UNK), eligible);
        for (b, seq) in seqs.iter().enumerate() {
            for (p, &id) in seq.ids.iter().enumerate() {
                let got = all.input_ids[b * 42 + p];
                if seq.masked.contains(&(p as i32)) {
                    assert_eq!(got, KEYS.special.mask as i64);
                } else if KEYS.special.is_special(id) {
                    assert_eq!(got, id as i64);
                } else {
                    assert_eq!(got, UNK as i64);
                }
            }
        }
    }
}
