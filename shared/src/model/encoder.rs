//! `ElectraModel` / `BertModel` (without pooler): embeddings, the projection ELECTRA uses when
//! `embedding_size != hidden_size` (`embeddings_project`), and the stack of layers; with relative
//! positions, the T5 bias table `encoder.relative_attention_bias.weight` shared by all layers.
use super::dense::Dense;
use super::embeddings::Embeddings;
use super::layer::Layer;
use super::positions::{relative_bias, Positions};
use super::{Architecture, ModelConfig};
use anyhow::bail;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Encoder {
    pub embeddings: Embeddings,
    embeddings_project: Option<Dense>,
    pub(crate) layers: Vec<Layer>,
    /// T5 relative position bias: (table [num_buckets, heads], num_buckets, max_distance).
    relative: Option<(Tensor, i64, i64)>,
}

impl Encoder {
    /// `p` is the model root; the encoder lives under `electra.` or `bert.` (by `arch`).
    pub fn new(p: &nn::Path, cfg: &ModelConfig, arch: Architecture) -> anyhow::Result<Self> {
        cfg.validate()?;
        let base = p / arch.base_prefix();
        let emb = match arch {
            Architecture::BertForMaskedLM => {
                let e = cfg.effective_embedding_size();
                if e != cfg.hidden_size {
                    bail!(
                        "field embedding_size: BertForMaskedLM needs embedding_size = hidden_size \
                         {}, found {e}",
                        cfg.hidden_size
                    );
                }
                e
            }
            _ => cfg.effective_embedding_size(),
        };
        let embeddings = Embeddings::new(&base / "embeddings", cfg, emb);
        let embeddings_project = (emb != cfg.hidden_size).then(|| {
            Dense::new(
                &base / "embeddings_project",
                emb,
                cfg.hidden_size,
                cfg.initializer_range,
            )
        });
        let relative = match Positions::of(cfg)? {
            Positions::Absolute => None,
            Positions::T5Relative {
                num_buckets,
                max_distance,
            } => Some((
                (&base / "encoder" / "relative_attention_bias").var(
                    "weight",
                    &[num_buckets, cfg.num_attention_heads],
                    super::init::normal(cfg.initializer_range),
                ),
                num_buckets,
                max_distance,
            )),
        };
        let layer_path = &base / "encoder" / "layer";
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(&layer_path / i, cfg))
            .collect::<anyhow::Result<_>>()?;
        Ok(Encoder {
            embeddings,
            embeddings_project,
            layers,
            relative,
        })
    }

    /// `input_ids` [B, S] i64, `attention_mask` [B, S] (nonzero = real token) -> [B, S, H] fp32.
    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        self.forward_typed(input_ids, None, attention_mask, train)
    }

    /// [`Encoder::forward_t`] with the token types of a sentence pair ([B, S] i64, 0 for the
    /// first segment, 1 for the second; None = all 0).
    pub fn forward_typed(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
        train: bool,
    ) -> Tensor {
        let x = self.embed_typed(input_ids, token_type_ids, train);
        let mask = self.attention_mask(attention_mask, input_ids.device());
        self.layers_forward(x, &mask, train)
    }

    /// Embeddings (and their projection): [B, S] ids -> [B, S, H].
    pub(crate) fn embed(&self, input_ids: &Tensor, train: bool) -> Tensor {
        self.embed_typed(input_ids, None, train)
    }

    fn embed_typed(&self, input_ids: &Tensor, types: Option<&Tensor>, train: bool) -> Tensor {
        let mut x = self.embeddings.forward_typed(input_ids, types, train);
        if let Some(project) = &self.embeddings_project {
            x = project.forward(&x).to_kind(x.kind());
        }
        x
    }

    /// The mask every layer's attention takes: the boolean key mask [B, 1, 1, S], or with
    /// relative positions the fp32 bias [1, heads, S, S] plus -inf at padded keys.
    pub(crate) fn attention_mask(&self, attention_mask: &Tensor, device: tch::Device) -> Tensor {
        let keys = key_mask(attention_mask, device);
        match &self.relative {
            None => keys,
            Some((table, num_buckets, max_distance)) => {
                let s = keys.size()[3];
                let bias = relative_bias(table, s, *num_buckets, *max_distance);
                let blocked = Tensor::zeros(keys.size(), (tch::Kind::Float, device))
                    .masked_fill(&keys.logical_not(), f64::NEG_INFINITY);
                bias + blocked
            }
        }
    }

    fn layers_forward(&self, mut x: Tensor, mask: &Tensor, train: bool) -> Tensor {
        for layer in &self.layers {
            x = layer.forward_t(&x, mask, train);
        }
        x
    }
}

/// [B, S] padding mask -> [B, 1, 1, S] boolean key mask for `scaled_dot_product_attention`.
/// A sequence with no real token at all attends to every position, so it gives finite values
/// instead of NaN.
fn key_mask(attention_mask: &Tensor, device: tch::Device) -> Tensor {
    let m = attention_mask.to_device(device).ne(0);
    let any = m.any_dims([1i64].as_slice(), true);
    let m = m.logical_or(&any.logical_not());
    let (b, s) = m.size2().expect("attention_mask is [B, S]");
    m.view([b, 1, 1, s])
}
