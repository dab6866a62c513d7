//! Micro-batches: rows padded to the longest row of the batch, with an attention mask; RTD
//! targets or MLM masked positions and labels.
use shared::corruption::batch::{build_inputs, Inputs, Keys, Seq};
use shared::corruption::masking::{mask_positions, SpecialIds};
use shared::corruption::rng::{domain, CounterRng};

use super::rows::{Cursor, Rows};

/// What the batches are for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchKind {
    /// Replaced-token detection on epoch shards: targets per token.
    Rtd,
    /// Masked LM on token shards with dynamic masking.
    Mlm(MlmMasking),
    /// Token shards masked as `preprocess` masks epoch `pass` (online and joint objectives):
    /// the auxiliary model's inputs are built with the library's code and keys.
    Corrupt(CorruptMasking),
}

/// Masking of the objectives that corrupt while training (`online`, `electra`): pass `p` over
/// the token folder is epoch `p` of `preprocess`, masked with
/// `CounterRng(seed, [MASK, p, sequence_id])` and sampled with the same per-position uniforms
/// ([`shared::corruption::batch`]), so the rows equal `preprocess --epoch p`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorruptMasking {
    pub seed: u64,
    pub rate: f64,
    pub special: SpecialIds,
    /// Width the model inputs are padded to: `Some(max_seq_len)` as `preprocess` pads (a row's
    /// logits then do not depend on its batch), `None` the batch's longest row.
    pub width: Option<usize>,
}

/// The masked rows of a [`BatchKind::Corrupt`] batch and the model inputs made of them.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptRows {
    /// The pass (= `preprocess` epoch) the keys use.
    pub epoch: u32,
    pub seqs: Vec<Seq>,
    /// Masked ids, attention mask, flat masked positions (at `inputs.width`) and uniforms.
    pub inputs: Inputs,
}

/// Dynamic masking of the MLM objective: `rate` of the non-special tokens (round half up, at
/// least one; `shared::corruption::masking`), chosen and replaced with a [`CounterRng`] keyed (seed, MLM,
/// pass, sequence_id), so each pass over the data masks a sequence anew, independently of batch
/// size and threads. Of the chosen positions 80% become [MASK], 10% a uniform random token and
/// 10% keep their token (BERT's rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlmMasking {
    pub seed: u64,
    pub rate: f64,
    pub special: SpecialIds,
    pub vocab: u32,
}

/// What a micro-batch carries besides its ids and mask: one variant per [`BatchKind`], so an
/// objective reads the labels of its own kind and no field stands empty for "absent".
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// RTD: `[rows, len]` targets, 1.0 = replaced (0 on padding).
    Rtd { targets: Vec<f32> },
    /// MLM: flat indices `row * len + position` of the masked positions (in row order) and the
    /// original ids there.
    Mlm {
        positions: Vec<i64>,
        labels: Vec<i64>,
    },
    /// Corrupting objectives: the masked rows and the auxiliary model's inputs.
    Corrupt(CorruptRows),
}

/// A collated micro-batch on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    pub rows: usize,
    /// Padded length (the batch's longest row).
    pub len: usize,
    /// `[rows, len]`, padded with the pad id.
    pub input_ids: Vec<i64>,
    /// `[rows, len]`: 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// Real (non-padding) tokens.
    pub real_tokens: u64,
    /// The objective's labels.
    pub labels: Labels,
    /// Epoch number the rows come from.
    pub epoch: u32,
    /// Where the next micro-batch starts.
    pub cursor_after: Cursor,
}

impl HostBatch {
    /// Rank `rank`'s share of a global batch of `world` equal shares: rows
    /// `[rank * rows / world, (rank + 1) * rows / world)`, at the same padded length, with their
    /// labels; epoch and cursor are the global batch's.
    pub fn shard(&self, rank: usize, world: usize) -> HostBatch {
        if world == 1 {
            return self.clone();
        }
        assert!(
            rank < world && self.rows.is_multiple_of(world),
            "a global batch splits evenly"
        );
        let per = self.rows / world;
        let (a, b) = (rank * per * self.len, (rank + 1) * per * self.len);
        let attention_mask = self.attention_mask[a..b].to_vec();
        let labels = match &self.labels {
            Labels::Rtd { targets } => Labels::Rtd {
                targets: targets[a..b].to_vec(),
            },
            Labels::Mlm { positions, labels } => {
                let (first, count) = run_within(positions, a, b);
                Labels::Mlm {
                    positions: positions[first..first + count]
                        .iter()
                        .map(|p| p - a as i64)
                        .collect(),
                    labels: labels[first..first + count].to_vec(),
                }
            }
            Labels::Corrupt(c) => Labels::Corrupt(c.shard(rank, world)),
        };
        HostBatch {
            rows: per,
            len: self.len,
            input_ids: self.input_ids[a..b].to_vec(),
            real_tokens: attention_mask.iter().map(|&m| m as u64).sum(),
            attention_mask,
            labels,
            epoch: self.epoch,
            cursor_after: self.cursor_after,
        }
    }

    /// The masked positions of a corrupting objective's batch (the terms of electra's MLM
    /// loss); None for the other kinds.
    pub fn masked_positions(&self) -> Option<u64> {
        match &self.labels {
            Labels::Corrupt(c) => Some(c.inputs.positions.len() as u64),
            _ => None,
        }
    }

    /// The number of terms the objective's mean loss is taken over: masked positions (MLM) or
    /// real tokens (RTD; the corrupting objectives' RTD term; electra's MLM term is corrected by
    /// `DeviceBatch::masked_term_factor`).
    pub fn loss_terms(&self) -> u64 {
        match &self.labels {
            Labels::Mlm { positions, .. } => positions.len() as u64,
            Labels::Rtd { .. } | Labels::Corrupt(_) => self.real_tokens,
        }
    }
}

/// The flat positions in `[a, b)` of the sorted `positions`: (index of the first, count). Positions
/// are in row order, so a shard's are one contiguous run.
fn run_within(positions: &[i64], a: usize, b: usize) -> (usize, usize) {
    let in_shard = |p: &i64| (a as i64..b as i64).contains(p);
    let first = positions.iter().position(in_shard).unwrap_or(0);
    (first, positions.iter().filter(|p| in_shard(p)).count())
}

/// Collates `rows` (each a decoded group and a row index in it).
pub fn collate(rows: &[(&Rows, usize)], pad_id: i32, kind: BatchKind, pass: u64) -> HostBatch {
    let len = rows.iter().map(|(r, i)| r.ids(*i).len()).max().unwrap_or(0);
    let n = rows.len();
    let mut input_ids = vec![pad_id as i64; n * len];
    let mut attention_mask = vec![0; n * len];
    let mut real_tokens = 0;
    let mut targets = vec![];
    let (mut positions, mut labels) = (vec![], vec![]);
    let mut seqs = vec![];
    if kind == BatchKind::Rtd {
        targets = vec![0.0; n * len];
    }
    for (k, (r, i)) in rows.iter().enumerate() {
        let ids = r.ids(*i);
        let base = k * len;
        for (j, &t) in ids.iter().enumerate() {
            input_ids[base + j] = t as i64;
            attention_mask[base + j] = 1;
        }
        real_tokens += ids.len() as u64;
        match kind {
            BatchKind::Rtd => {
                for (j, &t) in r.targets(*i).iter().enumerate() {
                    targets[base + j] = t as f32;
                }
            }
            BatchKind::Mlm(m) => {
                let mut masked = MaskedRow {
                    input_ids: &mut input_ids[base..base + len],
                    base,
                    positions: &mut positions,
                    labels: &mut labels,
                };
                mask_row(&m, pass, r.sequence_ids[*i], ids, &mut masked);
            }
            BatchKind::Corrupt(m) => {
                seqs.push(Seq::new(k, r.sequence_ids[*i], ids, &m.keys(pass)));
            }
        }
    }
    let labels = match kind {
        BatchKind::Rtd => Labels::Rtd { targets },
        BatchKind::Mlm(_) => Labels::Mlm { positions, labels },
        BatchKind::Corrupt(m) => {
            let inputs = build_inputs(&seqs, m.width.unwrap_or(len).max(len), &m.keys(pass));
            Labels::Corrupt(CorruptRows {
                epoch: pass as u32,
                seqs,
                inputs,
            })
        }
    };
    HostBatch {
        rows: n,
        len,
        input_ids,
        attention_mask,
        real_tokens,
        labels,
        epoch: 0,
        cursor_after: Cursor::default(),
    }
}

impl CorruptRows {
    /// Rank `rank`'s rows of `world` equal shares (as [`HostBatch::shard`]).
    pub fn shard(&self, rank: usize, world: usize) -> CorruptRows {
        let per = self.seqs.len() / world;
        let w = self.inputs.width;
        let (a, b) = (rank * per * w, (rank + 1) * per * w);
        let (first, count) = run_within(&self.inputs.positions, a, b);
        let seqs = self.seqs[rank * per..(rank + 1) * per]
            .iter()
            .map(|s| Seq {
                row: s.row - rank * per,
                ..s.clone()
            })
            .collect();
        CorruptRows {
            epoch: self.epoch,
            seqs,
            inputs: Inputs {
                rows: per,
                width: w,
                input_ids: self.inputs.input_ids[a..b].to_vec(),
                attention_mask: self.inputs.attention_mask[a..b].to_vec(),
                positions: self.inputs.positions[first..first + count]
                    .iter()
                    .map(|p| p - a as i64)
                    .collect(),
                uniforms: self.inputs.uniforms[first..first + count].to_vec(),
                pad_id: self.inputs.pad_id,
            },
        }
    }
}

impl CorruptMasking {
    /// `preprocess`'s keys of epoch `pass`.
    pub fn keys(&self, pass: u64) -> Keys {
        Keys {
            seed: self.seed,
            epoch: pass as u32,
            mask_rate: self.rate,
            special: self.special,
        }
    }
}

/// Where [`mask_row`] writes one row's masking: the row's ids in the batch (from flat index
/// `base`) and the batch's flat positions and labels.
struct MaskedRow<'a> {
    input_ids: &'a mut [i64],
    base: usize,
    positions: &'a mut Vec<i64>,
    labels: &'a mut Vec<i64>,
}

fn mask_row(m: &MlmMasking, pass: u64, sequence_id: u64, ids: &[i32], out: &mut MaskedRow) {
    let mut rng = CounterRng::new(m.seed, &[domain::MLM, pass, sequence_id]);
    for p in mask_positions(ids, &m.special, m.rate, &mut rng) {
        let p = p as usize;
        out.positions.push((out.base + p) as i64);
        out.labels.push(ids[p] as i64);
        let u = rng.next_f64();
        let replacement = if u < 0.8 {
            m.special.mask as i64
        } else if u < 0.9 {
            rng.below(m.vocab as u64) as i64
        } else {
            ids[p] as i64
        };
        out.input_ids[p] = replacement;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Rows {
        Rows {
            sequence_ids: vec![10, 11],
            offsets: vec![0, 3, 8],
            ids: vec![101, 5, 102, 101, 6, 7, 8, 102],
            targets: vec![0, 1, 0, 0, 0, 1, 1, 0],
        }
    }

    #[test]
    fn shards_split_rows_targets_and_positions() {
        let r = rows();
        let b = collate(&[(&r, 0), (&r, 1)], 0, BatchKind::Rtd, 0);
        let (s0, s1) = (b.shard(0, 2), b.shard(1, 2));
        assert_eq!((s0.rows, s0.len, s0.real_tokens), (1, 5, 3));
        assert_eq!(s1.input_ids, vec![101, 6, 7, 8, 102]);
        assert_eq!(
            s1.labels,
            Labels::Rtd {
                targets: vec![0.0, 0.0, 1.0, 1.0, 0.0]
            }
        );
        assert_eq!(s0.real_tokens + s1.real_tokens, b.real_tokens);
        let mut m = b.clone();
        m.labels = Labels::Mlm {
            positions: vec![1, 6, 8],
            labels: vec![5, 6, 8],
        };
        let (m0, m1) = (m.shard(0, 2), m.shard(1, 2));
        assert_eq!(
            m0.labels,
            Labels::Mlm {
                positions: vec![1],
                labels: vec![5]
            }
        );
        assert_eq!(m1.loss_terms(), 2);
        assert_eq!(
            m1.labels,
            Labels::Mlm {
                positions: vec![1, 3],
                labels: vec![6, 8]
            }
        );
    }

    #[test]
    fn pads_to_longest_with_mask_and_targets() {
        let r = rows();
        let b = collate(&[(&r, 0), (&r, 1)], 0, BatchKind::Rtd, 0);
        assert_eq!((b.rows, b.len, b.real_tokens), (2, 5, 8));
        assert_eq!(b.input_ids, vec![101, 5, 102, 0, 0, 101, 6, 7, 8, 102]);
        assert_eq!(b.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(
            b.labels,
            Labels::Rtd {
                targets: vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
            }
        );
    }

    #[test]
    fn mlm_masks_inner_positions_deterministically() {
        let r = Rows {
            sequence_ids: vec![3],
            offsets: vec![0, 102],
            ids: std::iter::once(101)
                .chain((1..101).map(|i| 1000 + i))
                .chain(std::iter::once(102))
                .collect(),
            targets: vec![],
        };
        let m = MlmMasking {
            seed: 1,
            rate: 0.15,
            special: SpecialIds {
                cls: 101,
                sep: 102,
                pad: 0,
                mask: 103,
            },
            vocab: 30522,
        };
        let a = collate(&[(&r, 0)], 0, BatchKind::Mlm(m), 0);
        let Labels::Mlm { positions, labels } = &a.labels else {
            panic!("an MLM batch has MLM labels, found {:?}", a.labels);
        };
        assert_eq!(positions.len(), 15);
        assert!(positions.iter().all(|p| (1..=100).contains(p)));
        for (p, l) in positions.iter().zip(labels) {
            assert_eq!(*l, 1000 + *p);
        }
        let masked = positions
            .iter()
            .filter(|&&p| a.input_ids[p as usize] == 103)
            .count();
        assert!(masked >= 8, "{masked} of 15 became [MASK]");
        assert_eq!(a, collate(&[(&r, 0)], 0, BatchKind::Mlm(m), 0));
        assert_ne!(
            a.labels,
            collate(&[(&r, 0)], 0, BatchKind::Mlm(m), 1).labels
        );
    }

    #[test]
    fn corrupt_shards_equal_their_rows_collated_alone() {
        let r = rows();
        let kind = BatchKind::Corrupt(CorruptMasking {
            seed: 2,
            rate: 0.5,
            special: SpecialIds {
                cls: 101,
                sep: 102,
                pad: 0,
                mask: 103,
            },
            width: Some(6),
        });
        let both = collate(&[(&r, 0), (&r, 1)], 0, kind, 3);
        for k in 0..2 {
            let (Labels::Corrupt(alone), Labels::Corrupt(both)) =
                (collate(&[(&r, k)], 0, kind, 3).labels, &both.labels)
            else {
                panic!("corrupting batches carry their masked rows");
            };
            assert_eq!(both.shard(k, 2), alone);
        }
        assert_eq!(both.shard(1, 2).loss_terms(), 5);
    }
}
