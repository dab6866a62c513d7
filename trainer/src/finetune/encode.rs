//! Examples to model inputs: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` with token types 0 for
//! `[CLS] a [SEP]` and 1 for `b [SEP]` (BERT's template), truncated longest-first to
//! `--max-seq-len` (one token at a time from the longer text, from the second on a tie, as
//! transformers' `truncation="longest_first"`), and padded batches of them.
use anyhow::Context;
use rayon::prelude::*;
use shared::tokenizer::LoadedTokenizer;
use tch::{Device, Kind, Tensor};

use super::task::{Example, Label};

/// One example as the model reads it (unpadded).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i32>,
    /// 0 for the first segment, 1 for the second.
    pub types: Vec<u8>,
}

/// Truncates the pair `(a, b)` to at most `budget` tokens in all, longest first.
fn truncate_longest_first(a: &mut Vec<u32>, b: &mut Vec<u32>, budget: usize) {
    while a.len() + b.len() > budget {
        if a.len() > b.len() {
            a.pop();
        } else {
            b.pop();
        }
    }
}

/// Encodes `examples` with `tok` (its own truncation and padding are off) to at most `max_len`
/// tokens each, on rayon's threads; errors name `what` (the split's file) and the example.
pub fn encode(
    tok: &LoadedTokenizer,
    examples: &[Example],
    max_len: usize,
    what: &str,
) -> anyhow::Result<Vec<Encoded>> {
    let special = &tok.info.special_tokens;
    let (cls, sep) = (special.cls as i32, special.sep as i32);
    examples
        .par_iter()
        .enumerate()
        .map(|(i, e)| {
            let text = |s: &str| -> anyhow::Result<Vec<u32>> {
                Ok(tok
                    .tokenizer
                    .encode(s, false)
                    .map_err(|err| anyhow::anyhow!("{err}"))
                    .with_context(|| {
                        format!("{what}: example {} (id {}): tokenizing", i + 1, e.id)
                    })?
                    .get_ids()
                    .to_vec())
            };
            let mut a = text(&e.text_a)?;
            let mut b = match &e.text_b {
                Some(t) => text(t)?,
                None => vec![],
            };
            let specials = if e.text_b.is_some() { 3 } else { 2 };
            truncate_longest_first(&mut a, &mut b, max_len.saturating_sub(specials));
            let mut ids = Vec::with_capacity(a.len() + b.len() + specials);
            ids.push(cls);
            ids.extend(a.iter().map(|&t| t as i32));
            ids.push(sep);
            let first = ids.len();
            if e.text_b.is_some() {
                ids.extend(b.iter().map(|&t| t as i32));
                ids.push(sep);
            }
            let mut types = vec![0u8; first];
            types.resize(ids.len(), 1);
            Ok(Encoded { ids, types })
        })
        .collect()
}

/// A padded micro-batch on the device.
pub struct Batch {
    /// `[B, S]` int64.
    pub input_ids: Tensor,
    pub token_type_ids: Tensor,
    /// `[B, S]` int64, 1 on real tokens.
    pub attention_mask: Tensor,
    /// `[B]`: class ids (int64) or values (fp32); None for unlabelled (test) rows.
    pub labels: Option<Tensor>,
}

/// Collates the examples `rows` of `encoded` (with their `examples`' labels) into a batch padded
/// to its longest row with `pad`.
pub fn batch(
    encoded: &[Encoded],
    examples: &[Example],
    rows: &[usize],
    pad: i64,
    device: Device,
) -> Batch {
    let len = rows
        .iter()
        .map(|&r| encoded[r].ids.len())
        .max()
        .unwrap_or(0);
    let n = rows.len();
    let mut ids = vec![pad; n * len];
    let mut types = vec![0i64; n * len];
    let mut mask = vec![0i64; n * len];
    for (k, &r) in rows.iter().enumerate() {
        let e = &encoded[r];
        for (j, (&t, &ty)) in e.ids.iter().zip(&e.types).enumerate() {
            ids[k * len + j] = t as i64;
            types[k * len + j] = ty as i64;
            mask[k * len + j] = 1;
        }
    }
    let shape = [n as i64, len as i64];
    let up = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
    let labels = rows
        .iter()
        .map(|&r| examples[r].label)
        .collect::<Option<Vec<Label>>>()
        .map(|ls| {
            let classes: Option<Vec<i64>> = ls
                .iter()
                .map(|l| match l {
                    Label::Class(c) => Some(*c as i64),
                    Label::Value(_) => None,
                })
                .collect();
            match classes {
                Some(c) => Tensor::from_slice(&c),
                None => Tensor::from_slice(
                    &ls.iter()
                        .map(|l| match l {
                            Label::Class(c) => *c as f32,
                            Label::Value(v) => *v as f32,
                        })
                        .collect::<Vec<f32>>(),
                )
                .to_kind(Kind::Float),
            }
            .to_device(device)
        });
    Batch {
        input_ids: up(&ids),
        token_type_ids: up(&types),
        attention_mask: up(&mask),
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_takes_from_the_longer_and_from_the_second_on_a_tie() {
        let (mut a, mut b) = ((0..10).collect::<Vec<u32>>(), (0..4).collect::<Vec<u32>>());
        truncate_longest_first(&mut a, &mut b, 9);
        assert_eq!((a.len(), b.len()), (5, 4));
        let (mut a, mut b) = ((0..10).collect::<Vec<u32>>(), (0..10).collect::<Vec<u32>>());
        truncate_longest_first(&mut a, &mut b, 7);
        assert_eq!((a.len(), b.len()), (4, 3));
        assert_eq!(a, vec![0, 1, 2, 3], "the end of a text goes first");
        let (mut a, mut b) = ((0..3).collect::<Vec<u32>>(), vec![]);
        truncate_longest_first(&mut a, &mut b, 8);
        assert_eq!(a.len(), 3);
    }
}
