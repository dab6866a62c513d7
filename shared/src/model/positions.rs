//! How the encoder knows positions: transformers' learned absolute position embeddings (the
//! default, Hugging Face compatible), or the T5 relative position bias the Fast-ELECTRA paper's
//! main models use (Raffel et al., 2020; the paper: 32 buckets and maximum distance 128 for base,
//! 128 and 256 for large), with no absolute position embeddings.
//!
//! The relative bias is one table `encoder.relative_attention_bias.weight` of
//! `[num_buckets, heads]`, shared by every layer (as T5 computes it in the first layer and reuses
//! it), added to the attention logits: `bias[h, i, j] = table[bucket(j - i), h]`.
//!
//! Config fields (`config.json`, beside transformers' own): `position_embedding_type`
//! (`"absolute"` or `"t5_relative"`), `relative_attention_num_buckets`,
//! `relative_attention_max_distance`. A model with relative positions is not a transformers
//! BERT/ELECTRA model; see `docs/model-format.md`.
use anyhow::bail;
use tch::{Kind, Tensor};

use super::ModelConfig;

/// Config key of the position scheme.
pub const POSITION_EMBEDDING_TYPE: &str = "position_embedding_type";
/// Config key of the number of relative-position buckets.
pub const NUM_BUCKETS: &str = "relative_attention_num_buckets";
/// Config key of the distance from which all positions share the last bucket.
pub const MAX_DISTANCE: &str = "relative_attention_max_distance";

/// The position scheme of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Learned absolute position embeddings (transformers' BERT/ELECTRA).
    Absolute,
    /// T5 relative position bias, bidirectional.
    T5Relative { num_buckets: i64, max_distance: i64 },
}

impl Positions {
    /// The scheme `cfg` asks for, checked.
    pub fn of(cfg: &ModelConfig) -> anyhow::Result<Self> {
        let kind = match cfg.extra.get(POSITION_EMBEDDING_TYPE) {
            None => "absolute",
            Some(v) => match v.as_str() {
                Some(s) => s,
                None => bail!("field {POSITION_EMBEDDING_TYPE}: expected a string, found {v}"),
            },
        };
        match kind {
            "absolute" => Ok(Positions::Absolute),
            "t5_relative" => {
                let int = |key: &str, default: i64| -> anyhow::Result<i64> {
                    match cfg.extra.get(key) {
                        None => Ok(default),
                        Some(v) => v.as_i64().ok_or_else(|| {
                            anyhow::anyhow!("field {key}: expected an integer, found {v}")
                        }),
                    }
                };
                let num_buckets = int(NUM_BUCKETS, 32)?;
                let max_distance = int(MAX_DISTANCE, 128)?;
                if num_buckets < 4 || num_buckets % 2 != 0 {
                    bail!("field {NUM_BUCKETS}: expected an even number >= 4, found {num_buckets}");
                }
                if max_distance <= num_buckets / 4 {
                    bail!(
                        "field {MAX_DISTANCE}: expected more than {NUM_BUCKETS} / 4 = {}, found {max_distance}",
                        num_buckets / 4
                    );
                }
                Ok(Positions::T5Relative {
                    num_buckets,
                    max_distance,
                })
            }
            other => bail!(
                "field {POSITION_EMBEDDING_TYPE}: expected \"absolute\" or \"t5_relative\", found {other:?}"
            ),
        }
    }

    /// Sets `cfg` to this scheme.
    pub fn apply(self, cfg: &mut ModelConfig) {
        match self {
            Positions::Absolute => {
                cfg.extra.remove(NUM_BUCKETS);
                cfg.extra.remove(MAX_DISTANCE);
                cfg.extra
                    .insert(POSITION_EMBEDDING_TYPE.into(), "absolute".into());
            }
            Positions::T5Relative {
                num_buckets,
                max_distance,
            } => {
                cfg.extra
                    .insert(POSITION_EMBEDDING_TYPE.into(), "t5_relative".into());
                cfg.extra.insert(NUM_BUCKETS.into(), num_buckets.into());
                cfg.extra.insert(MAX_DISTANCE.into(), max_distance.into());
            }
        }
    }
}

/// T5's bidirectional bucket of each relative position (`memory - query`), computed with the
/// same tensor operations as transformers' `T5Attention._relative_position_bucket` (fp32 log,
/// truncation), so the buckets are identical: half the buckets for positive offsets; within a
/// half, exact buckets for distances below a quarter of the buckets, then logarithmically wider
/// ones up to `max_distance`, beyond which everything shares the last bucket.
pub fn relative_position_bucket(relative: &Tensor, num_buckets: i64, max_distance: i64) -> Tensor {
    let half = num_buckets / 2;
    let sign = relative.gt(0).to_kind(Kind::Int64) * half;
    let distance = relative.abs();
    let max_exact = half / 2;
    let is_small = distance.lt(max_exact);
    let scale = (max_distance as f64 / max_exact as f64).ln();
    let large = (distance.to_kind(Kind::Float) / max_exact as f64).log() / scale
        * (half - max_exact) as f64;
    let large = (large.to_kind(Kind::Int64) + max_exact).clamp_max(half - 1);
    sign + distance.where_self(&is_small, &large)
}

/// `[1, heads, s, s]` fp32 attention bias of sequences of `s` tokens from `table`
/// `[num_buckets, heads]`.
pub fn relative_bias(table: &Tensor, s: i64, num_buckets: i64, max_distance: i64) -> Tensor {
    let device = table.device();
    let pos = Tensor::arange(s, (Kind::Int64, device));
    let relative = pos.unsqueeze(0) - pos.unsqueeze(1); // [query i, memory j] = j - i
    let buckets = relative_position_bucket(&relative, num_buckets, max_distance);
    Tensor::embedding(table, &buckets, -1, false, false)
        .to_kind(Kind::Float)
        .permute([2, 0, 1])
        .unsqueeze(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(d: &[i64], nb: i64, md: i64) -> Vec<i64> {
        Vec::<i64>::try_from(relative_position_bucket(&Tensor::from_slice(d), nb, md)).unwrap()
    }

    #[test]
    fn t5_buckets_by_hand() {
        // 32 buckets, max distance 128: 16 per direction, exact below 8, log-spaced 8..16.
        assert_eq!(buckets(&[0, -1, -7, 1, 7], 32, 128), [0, 1, 7, 17, 23]);
        // distance 8 -> 8 + floor(log(1)/log(16) * 8) = 8; 127 -> 8 + floor(log(15.875)/log(16)*8) = 15.
        assert_eq!(
            buckets(&[-8, -127, -128, -10_000], 32, 128),
            [8, 15, 15, 15]
        );
        assert_eq!(buckets(&[8, 10_000], 32, 128), [24, 31]);
    }

    #[test]
    fn the_model_adds_the_bias_of_key_minus_query() {
        // T5's bias is a function of memory - query = j - i. A table that favours j - i = +1
        // (and nothing else) makes the attention of query i read position i + 1: with zero
        // query and key weights the scores are the bias alone, and with identity value and
        // output projections on one-hot inputs the attention branch returns what it read.
        use crate::model::{encoder::Encoder, Architecture};
        let mut cfg = ModelConfig::preset("tiny-rel", 50).unwrap();
        cfg.num_hidden_layers = 1;
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let enc = Encoder::new(&vs.root(), &cfg, Architecture::ElectraForPreTraining).unwrap();
        let h = cfg.hidden_size;
        let plus_one = buckets(&[1], 32, 128)[0];
        let vars = vs.variables();
        let set = |name: &str, value: &Tensor| {
            vars[name].shallow_clone().copy_(value);
        };
        let att = "electra.encoder.layer.0.attention";
        tch::no_grad(|| {
            let mut table = Tensor::full(
                [32, cfg.num_attention_heads],
                -20.0,
                (Kind::Float, tch::Device::Cpu),
            );
            let _ = table.get(plus_one).fill_(20.0);
            set("electra.encoder.relative_attention_bias.weight", &table);
            table = Tensor::zeros([h, h], (Kind::Float, tch::Device::Cpu));
            for m in ["self.query", "self.key"] {
                set(&format!("{att}.{m}.weight"), &table);
            }
            for m in ["self.query", "self.key", "self.value", "output.dense"] {
                set(
                    &format!("{att}.{m}.bias"),
                    &Tensor::zeros([h], (Kind::Float, tch::Device::Cpu)),
                );
            }
            let eye = Tensor::eye(h, (Kind::Float, tch::Device::Cpu));
            set(&format!("{att}.self.value.weight"), &eye);
            set(&format!("{att}.output.dense.weight"), &eye);
        });
        let s = 16;
        let x = Tensor::eye(h, (Kind::Float, tch::Device::Cpu))
            .narrow(0, 0, s)
            .unsqueeze(0);
        let mask = enc.attention_mask(
            &Tensor::ones([1, s], (Kind::Int64, tch::Device::Cpu)),
            tch::Device::Cpu,
        );
        let out = tch::no_grad(|| enc.layers[0].attention().branch(&x, &mask, false));
        let read = Vec::<i64>::try_from(out.argmax(-1, false).view([-1])).unwrap();
        // The last query has no position after it (every key is equally unlikely).
        let want: Vec<i64> = (1..s).collect();
        assert_eq!(&read[..s as usize - 1], &want[..], "{read:?}");
    }

    #[test]
    fn config_round_trip_and_errors() {
        let mut cfg = ModelConfig::preset("tiny", 50).unwrap();
        assert_eq!(Positions::of(&cfg).unwrap(), Positions::Absolute);
        let rel = Positions::T5Relative {
            num_buckets: 32,
            max_distance: 128,
        };
        rel.apply(&mut cfg);
        assert_eq!(Positions::of(&cfg).unwrap(), rel);
        cfg.extra.insert(NUM_BUCKETS.into(), 7.into());
        let e = Positions::of(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("relative_attention_num_buckets") && e.contains('7'),
            "{e}"
        );
        cfg.extra
            .insert(POSITION_EMBEDDING_TYPE.into(), "relative_key".into());
        let e = Positions::of(&cfg).unwrap_err().to_string();
        assert!(e.contains("relative_key"), "{e}");
    }
}
