//! `ElectraForMaskedLM` / `BertForMaskedLM`: encoder + masked-LM head.
use super::encoder::Encoder;
use super::mlm_head::MlmHead;
use super::{Architecture, ModelConfig};
use anyhow::bail;
use tch::{nn, Tensor};

/// A masked language model (the auxiliary model of Fast-ELECTRA), ELECTRA or BERT naming.
#[derive(Debug)]
pub struct MaskedLm {
    pub encoder: Encoder,
    pub head: MlmHead,
    pub architecture: Architecture,
}

impl MaskedLm {
    /// Builds the model under `p` (the root of a `VarStore`), initialised for training from
    /// scratch.
    pub fn new(p: &nn::Path, cfg: &ModelConfig, arch: Architecture) -> anyhow::Result<Self> {
        if !arch.is_masked_lm() {
            bail!("MaskedLm: expected ElectraForMaskedLM or BertForMaskedLM, found {arch}");
        }
        let encoder = Encoder::new(p, cfg, arch)?;
        let head = MlmHead::new(p, cfg, arch, &encoder.embeddings.word_embeddings)?;
        Ok(MaskedLm {
            encoder,
            head,
            architecture: arch,
        })
    }

    /// `input_ids` [B, S] i64, `attention_mask` [B, S] (1 = real token, 0 = padding; i64 or
    /// bool) -> vocabulary logits [B, S, V] (fp32).
    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let hidden = self.encoder.forward_t(input_ids, attention_mask, train);
        self.head.forward(&hidden)
    }

    /// Vocabulary logits only at `positions` (flat indices b*S+s into [B, S], i64 [N]) ->
    /// [N, V] (fp32). The vocabulary projection runs on the N gathered rows only.
    pub fn logits_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        train: bool,
    ) -> Tensor {
        self.head
            .forward(&self.hidden_at(input_ids, attention_mask, positions, train))
    }

    /// Makes this model read `from`'s word, position and token-type embedding tensors (the same
    /// tensors, not copies: joint ELECTRA's sharing, so both models' losses reach one gradient);
    /// a tied decoder follows the word embeddings. The model's own embedding tensors are left
    /// unused: drop them from its `VarStore` (the caller knows their names).
    pub fn share_embeddings(&mut self, from: &super::embeddings::Embeddings, tied: bool) {
        let e = &mut self.encoder.embeddings;
        e.word_embeddings = from.word_embeddings.shallow_clone();
        e.position_embeddings = from.position_embeddings.as_ref().map(Tensor::shallow_clone);
        e.token_type_embeddings = from.token_type_embeddings.shallow_clone();
        if tied {
            self.head.tie_decoder(&from.word_embeddings);
        }
    }

    /// The encoder's hidden states only at `positions` (as in [`Self::logits_at`]) -> [N, H],
    /// for callers that run the head's pieces themselves.
    pub fn hidden_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        train: bool,
    ) -> Tensor {
        let hidden = self.encoder.forward_t(input_ids, attention_mask, train);
        let h = hidden.size()[2];
        hidden
            .view([-1, h])
            .index_select(0, &positions.to_device(hidden.device()))
    }
}
