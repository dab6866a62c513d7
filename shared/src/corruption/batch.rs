//! Host side of one auxiliary-model batch: masking token rows, the padded input tensors, the
//! per-position uniforms, and applying the sampled tokens to make the corrupted rows.
use crate::corruption::masking::{mask_positions, SpecialIds};
use crate::corruption::rng::{domain, CounterRng};
use crate::corruption::sampling::{position_uniform, Sampled};

/// One token row with its masked positions.
#[derive(Debug, Clone, PartialEq)]
pub struct Seq {
    /// Row index inside its token shard (fixes the order before shuffling).
    pub row: usize,
    pub sequence_id: u64,
    pub ids: Vec<i32>,
    /// Ascending.
    pub masked: Vec<i32>,
}

/// What decides masking and sampling, besides the sequence itself.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub seed: u64,
    pub epoch: u32,
    pub mask_rate: f64,
    pub special: SpecialIds,
}

impl Seq {
    /// Masks `ids` with `CounterRng(seed, [MASK, epoch, sequence_id])`.
    pub fn new(row: usize, sequence_id: u64, ids: &[i32], keys: &Keys) -> Self {
        let mut rng = CounterRng::new(keys.seed, &[domain::MASK, keys.epoch as u64, sequence_id]);
        let masked = mask_positions(ids, &keys.special, keys.mask_rate, &mut rng);
        Self {
            row,
            sequence_id,
            ids: ids.to_vec(),
            masked,
        }
    }
}

/// Row-major host tensors of a batch of `rows` sequences padded to `width` tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub rows: usize,
    pub width: usize,
    /// `[rows * width]`: the sequence with masked positions set to the mask id, then pad ids.
    pub input_ids: Vec<i64>,
    /// `[rows * width]`: 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// `[N]`: flat index `b * width + s` of every masked position, in batch order.
    pub positions: Vec<i64>,
    /// `[N]`: the sampling uniform of every masked position.
    pub uniforms: Vec<f64>,
    /// The id padding fills rows with.
    pub pad_id: i64,
}

/// Builds the auxiliary model's inputs for `seqs`, padded to `width` (>= the longest row).
pub fn build_inputs(seqs: &[Seq], width: usize, keys: &Keys) -> Inputs {
    let rows = seqs.len();
    let mut input_ids = vec![keys.special.pad as i64; rows * width];
    let mut attention_mask = vec![0i64; rows * width];
    let n: usize = seqs.iter().map(|s| s.masked.len()).sum();
    let mut positions = Vec::with_capacity(n);
    let mut uniforms = Vec::with_capacity(n);
    for (b, seq) in seqs.iter().enumerate() {
        assert!(seq.ids.len() <= width, "row longer than the batch width");
        let base = b * width;
        for (s, &id) in seq.ids.iter().enumerate() {
            input_ids[base + s] = id as i64;
            attention_mask[base + s] = 1;
        }
        for &p in &seq.masked {
            input_ids[base + p as usize] = keys.special.mask as i64;
            positions.push((base + p as usize) as i64);
            uniforms.push(position_uniform(
                keys.seed,
                keys.epoch,
                seq.sequence_id,
                p as u32,
            ));
        }
    }
    Inputs {
        rows,
        width,
        input_ids,
        attention_mask,
        positions,
        uniforms,
        pad_id: keys.special.pad as i64,
    }
}

/// One corrupted row, ready for its shard.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptedRow {
    pub row: usize,
    pub sequence_id: u64,
    pub input_ids: Vec<i32>,
    pub targets: Vec<i8>,
    pub masked_positions: Vec<i32>,
    pub original_ids: Vec<i32>,
    /// Masked positions whose sampled token differs from the original.
    pub replaced: u32,
    /// Masked positions where the auxiliary model's arg-max is the original token.
    pub correct_top1: u32,
    /// Entropies of the tempered distribution at the masked positions (in position order).
    pub entropy: Vec<f32>,
}

/// Applies the sampled tokens (in the order of [`build_inputs`]'s positions) to `seqs`.
/// Target 1 where the sampled token differs from the original; a sampled token equal to the
/// original counts as original.
pub fn apply(seqs: Vec<Seq>, sampled: &Sampled) -> Vec<CorruptedRow> {
    let mut at = 0;
    seqs.into_iter()
        .map(|seq| {
            let m = seq.masked.len();
            let (ids, top1, entropy) = (
                &sampled.ids[at..at + m],
                &sampled.top1[at..at + m],
                &sampled.entropy[at..at + m],
            );
            at += m;
            let mut input_ids = seq.ids.clone();
            let mut targets = vec![0i8; seq.ids.len()];
            let mut original_ids = Vec::with_capacity(m);
            let (mut replaced, mut correct_top1) = (0, 0);
            for (j, &p) in seq.masked.iter().enumerate() {
                let p = p as usize;
                let original = seq.ids[p];
                original_ids.push(original);
                input_ids[p] = ids[j] as i32;
                if ids[j] != original as i64 {
                    targets[p] = 1;
                    replaced += 1;
                }
                if top1[j] == original as i64 {
                    correct_top1 += 1;
                }
            }
            CorruptedRow {
                row: seq.row,
                sequence_id: seq.sequence_id,
                input_ids,
                targets,
                masked_positions: seq.masked,
                original_ids,
                replaced,
                correct_top1,
                entropy: entropy.to_vec(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: Keys = Keys {
        seed: 1,
        epoch: 2,
        mask_rate: 0.5,
        special: SpecialIds {
            cls: 101,
            sep: 102,
            pad: 0,
            mask: 103,
        },
    };

    #[test]
    fn inputs_mask_and_pad() {
        let seqs = vec![
            Seq::new(0, 10, &[101, 5, 6, 7, 102], &KEYS),
            Seq::new(1, 11, &[101, 8, 102], &KEYS),
        ];
        assert_eq!(seqs[0].masked.len(), 2); // 1.5 rounds up
        assert_eq!(seqs[1].masked, vec![1]);
        let inp = build_inputs(&seqs, 6, &KEYS);
        assert_eq!(inp.attention_mask, vec![1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0]);
        assert_eq!(&inp.input_ids[6..], &[101, 103, 102, 0, 0, 0]);
        assert_eq!(inp.positions.len(), 3);
        assert_eq!(inp.positions[2], 7);
        for &p in &inp.positions {
            assert_eq!(inp.input_ids[p as usize], 103);
        }
        // The same sequence in another batch gets the same uniforms.
        let alone = build_inputs(&seqs[1..], 3, &KEYS);
        assert_eq!(alone.uniforms, inp.uniforms[2..]);
    }

    #[test]
    fn targets_mark_replacements_only() {
        let seqs = vec![Seq {
            row: 0,
            sequence_id: 1,
            ids: vec![101, 5, 6, 7, 102],
            masked: vec![1, 3],
        }];
        let sampled = Sampled {
            ids: vec![5, 9],
            top1: vec![5, 5],
            entropy: vec![0.5, 1.5],
        };
        let out = apply(seqs, &sampled);
        assert_eq!(out[0].input_ids, vec![101, 5, 6, 9, 102]);
        assert_eq!(out[0].targets, vec![0, 0, 0, 1, 0]);
        assert_eq!(out[0].original_ids, vec![5, 7]);
        assert_eq!((out[0].replaced, out[0].correct_top1), (1, 1));
    }
}
