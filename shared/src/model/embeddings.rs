//! `ElectraEmbeddings` / `BertEmbeddings`: word + position + token-type embeddings, LayerNorm,
//! dropout. Positions are 0..S; token types are all 0, as transformers does when they are not
//! given, or the segment ids of a sentence pair (fine-tuning). A model with relative positions ([`super::positions`]) has no position embeddings.
use super::dense::LayerNorm;
use super::{init, ModelConfig};
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct Embeddings {
    pub word_embeddings: Tensor,
    /// None with relative positions.
    pub position_embeddings: Option<Tensor>,
    pub token_type_embeddings: Tensor,
    pub layer_norm: LayerNorm,
    dropout: f64,
}

impl Embeddings {
    /// `p` is the `embeddings` path; `dim` is the embedding width.
    pub fn new(p: nn::Path, cfg: &ModelConfig, dim: i64) -> Self {
        let range = cfg.initializer_range;
        let word_embeddings =
            (&p / "word_embeddings").var("weight", &[cfg.vocab_size, dim], init::normal(range));
        if let Some(pad) = cfg
            .pad_token_id
            .filter(|&t| (0..cfg.vocab_size).contains(&t))
        {
            // transformers zeroes the padding_idx row of the word embeddings at init.
            tch::no_grad(|| {
                let _ = word_embeddings.get(pad).zero_();
            });
        }
        Embeddings {
            word_embeddings,
            position_embeddings: (super::positions::Positions::of(cfg).ok()
                == Some(super::positions::Positions::Absolute))
            .then(|| {
                (&p / "position_embeddings").var(
                    "weight",
                    &[cfg.max_position_embeddings, dim],
                    init::normal(range),
                )
            }),
            token_type_embeddings: (&p / "token_type_embeddings").var(
                "weight",
                &[cfg.type_vocab_size, dim],
                init::normal(range),
            ),
            layer_norm: LayerNorm::new(&p / "LayerNorm", dim, cfg.layer_norm_eps),
            dropout: cfg.hidden_dropout_prob,
        }
    }

    /// `input_ids` [B, S] -> [B, S, dim] (fp32), every token of type 0.
    pub fn forward_t(&self, input_ids: &Tensor, train: bool) -> Tensor {
        self.forward_typed(input_ids, None, train)
    }

    /// `input_ids` [B, S] with `token_type_ids` [B, S] (segment A = 0, B = 1, as transformers
    /// takes them; None = all 0) -> [B, S, dim] (fp32).
    pub fn forward_typed(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let words = Tensor::embedding(&self.word_embeddings, input_ids, -1, false, false);
        let types = match token_type_ids {
            Some(t) => Tensor::embedding(&self.token_type_embeddings, t, -1, false, false),
            None => self.token_type_embeddings.get(0),
        };
        let x = match &self.position_embeddings {
            // words + positions + types, in transformers' order (same rounding).
            Some(table) => {
                let seq = input_ids.size()[1];
                let max = table.size()[0];
                assert!(
                    seq <= max,
                    "sequence length {seq} exceeds max_position_embeddings {max}"
                );
                let positions = Tensor::arange(seq, (Kind::Int64, input_ids.device()));
                let pos = Tensor::embedding(table, &positions, -1, false, false);
                words + pos.unsqueeze(0) + types
            }
            None => words + types,
        };
        self.layer_norm.forward(&x).dropout(self.dropout, train)
    }
}
