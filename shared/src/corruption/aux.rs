//! The frozen auxiliary masked LM: inspecting its folder before any work, loading it, and
//! turning one host batch into sampled replacement tokens on its device.
use std::borrow::Cow;
use std::path::Path;

use crate::corruption::sampling::{padded_vocab, sample_tempered, Sampled};
use crate::format::manifest::AuxModelInfo;
use crate::model::{
    checkpoint_fingerprint, load_masked_lm_with, MaskedLm, ModelConfig, Pretrained,
};
use anyhow::Context;
use tch::{Device, Tensor};

use super::batch::Inputs;
use crate::runtime::clock::StageClock;

/// What the folder says about the model, read without loading the weights.
#[derive(Debug, Clone)]
pub struct AuxSummary {
    pub info: AuxModelInfo,
    pub max_position_embeddings: i64,
}

/// Reads `dir/config.json` and fingerprints the folder (config + weights).
pub fn inspect(dir: &Path) -> anyhow::Result<AuxSummary> {
    let config_path = dir.join("config.json");
    let config = ModelConfig::from_file(&config_path)
        .with_context(|| format!("--aux-model {}", dir.display()))?;
    let architecture = config
        .architectures
        .as_ref()
        .and_then(|a| a.first().cloned())
        .unwrap_or_else(|| match config.model_type.as_str() {
            "bert" => "BertForMaskedLM".to_string(),
            _ => "ElectraForMaskedLM".to_string(),
        });
    let sha256 =
        checkpoint_fingerprint(dir).with_context(|| format!("--aux-model {}", dir.display()))?;
    Ok(AuxSummary {
        info: AuxModelInfo {
            path: dir.display().to_string(),
            sha256,
            architecture,
            num_layers: config.num_hidden_layers as u32,
            vocab_size: config.vocab_size as u32,
        },
        max_position_embeddings: config.max_position_embeddings,
    })
}

/// A loaded auxiliary model, inference only.
///
/// On CUDA its weights are cast to bf16 once ([`AuxModel::use_bf16`]) and the whole forward runs
/// in bf16 (LayerNorm statistics in fp32 inside the kernel): the model is frozen, so there are no
/// fp32 master weights to keep, and every activation costs half the memory traffic. The
/// vocabulary projection is padded to a whole number of sampling blocks (the extra ids have a
/// `-inf` bias, hence probability 0), which also aligns its GEMM for the tensor cores.
///
/// On CUDA every batch is also padded to the same shape (rows up to [`AuxModel::pad_rows_to`]
/// with empty rows, masked positions up to a multiple of [`POSITIONS_MULTIPLE`]): libtorch
/// picks GEMM kernels, and builds cuDNN attention graphs, per new shape, so one shape for the
/// whole run keeps that out of the loop; the padding costs about 1% of the work.
pub struct AuxModel {
    lm: Pretrained<MaskedLm>,
    device: Device,
    /// On CUDA, rows every batch is padded to (0: no padding).
    pad_rows: usize,
    /// [V', E] with V' = padded_vocab(V): the decoder weight, zero rows past V.
    decoder_weight: Tensor,
    /// [V']: the decoder bias, `-inf` past V.
    decoder_bias: Tensor,
    /// Runs the encoder with its dropout on (the dropout and drop-attention augmentations).
    dropout: bool,
    /// Tempered draws by the one-pass CUDA kernel (`preprocess --sampler kernel`) instead of
    /// the reference sampler.
    kernel_sampler: bool,
}

/// What is done to the auxiliary model's logits `z` before the exact sampler draws from
/// softmax(logits / T): nothing (Fast-ELECTRA's tempering), or a replacement of the logits
/// (tf-interp). The reported top-1 is always the model's own arg-max.
pub struct AuxSampling {
    /// T.
    pub temperature: f64,
    /// Replaces `z` `[N, V']` by other logits `[N, V']` (fp32) before sampling.
    pub logits: Option<Box<dyn LogitsTransform>>,
}

impl AuxSampling {
    /// softmax(z / T).
    pub fn tempered(temperature: f64) -> Self {
        Self {
            temperature,
            logits: None,
        }
    }
}

/// A change of the auxiliary model's logits before sampling.
pub trait LogitsTransform {
    /// The logits to sample from, `[N, V']` fp32, for the model's `z` `[N, V']`.
    fn logits(&self, z: &Tensor) -> Tensor;
}

/// Dropout rates of the auxiliary model for the dropout augmentations: (activation/hidden,
/// attention probabilities). `None` keeps the model deterministic (no dropout).
pub type DropoutRates = Option<(f64, f64)>;

impl AuxModel {
    /// Loads the folder's weights onto `device` (bf16 on CUDA, fp32 on the CPU).
    pub fn load(dir: &Path, device: Device) -> anyhow::Result<Self> {
        Self::load_with_dropout(dir, device, None)
    }

    /// [`Self::load`]; with `Some((hidden, attention))` the encoder's dropout runs at those rates
    /// (the folder's own rates are replaced), masks drawn from torch's generator: seed it per
    /// batch (`tch::manual_seed`) for reproducible masks.
    pub fn load_with_dropout(
        dir: &Path,
        device: Device,
        dropout: DropoutRates,
    ) -> anyhow::Result<Self> {
        let lm = load_masked_lm_with(dir, device, |cfg| {
            if let Some((hidden, attention)) = dropout {
                cfg.hidden_dropout_prob = hidden;
                cfg.attention_probs_dropout_prob = attention;
            }
        })
        .with_context(|| format!("loading the auxiliary model {}", dir.display()))?;
        let mut model = Self::new(lm, device);
        model.dropout = dropout.is_some();
        if device.is_cuda() {
            model.use_bf16();
        }
        Ok(model)
    }

    /// Wraps an already built model as it is (fp32 unless cast; the benchmark's randomly
    /// initialised one).
    pub fn new(mut lm: Pretrained<MaskedLm>, device: Device) -> Self {
        lm.vs.freeze();
        let (decoder_weight, decoder_bias) = padded_decoder(&lm.model);
        Self {
            lm,
            device,
            pad_rows: 0,
            decoder_weight,
            decoder_bias,
            dropout: false,
            kernel_sampler: false,
        }
    }

    /// Draws tempered replacements with the one-pass CUDA kernel
    /// ([`crate::corruption::sampling_tiled`]) instead of the reference sampler: CUDA only (the
    /// draws equal the reference's except at rounding ties).
    pub fn use_kernel_sampler(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.device.is_cuda(),
            "--sampler kernel: the one-pass sampler is a CUDA kernel; on {:?} use --sampler reference",
            self.device
        );
        self.kernel_sampler = true;
        Ok(())
    }

    /// On CUDA, pads every batch to `rows` rows (the batch size), so that all batches share one
    /// shape. No effect on the CPU.
    pub fn pad_rows_to(&mut self, rows: usize) {
        self.pad_rows = rows;
    }

    /// Casts every weight to bf16 for a bf16 forward.
    pub fn use_bf16(&mut self) {
        self.lm.vs.bfloat16();
        let (w, b) = padded_decoder(&self.lm.model);
        self.decoder_weight = w;
        self.decoder_bias = b;
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn config(&self) -> &ModelConfig {
        &self.lm.config
    }

    /// Runs the model on one batch and samples a token at every masked position from
    /// softmax(logits / temperature). Only the `[N]` results come back to the host.
    pub fn corrupt(&self, inputs: &Inputs, temperature: f64) -> anyhow::Result<Sampled> {
        self.corrupt_timed(inputs, temperature, &mut StageClock::off())
    }

    /// [`Self::corrupt`], charging each stage's time to `clock`.
    pub fn corrupt_timed(
        &self,
        inputs: &Inputs,
        temperature: f64,
        clock: &mut StageClock,
    ) -> anyhow::Result<Sampled> {
        self.corrupt_with(inputs, &AuxSampling::tempered(temperature), clock)
    }

    /// Runs the model on one batch and samples a token at every masked position from the
    /// distribution `sampling` makes of its logits; stages charged to `clock`. The reported top-1
    /// is always the model's own arg-max.
    pub fn corrupt_with(
        &self,
        inputs: &Inputs,
        sampling: &AuxSampling,
        clock: &mut StageClock,
    ) -> anyhow::Result<Sampled> {
        let n = inputs.positions.len();
        if n == 0 {
            return Ok(Sampled::default());
        }
        clock.start();
        let logits = self.logits_timed(inputs, clock);
        // Padded positions (a copy of the first one) get a dummy uniform; their draws are dropped.
        let uniforms = padded(&inputs.uniforms, logits.size()[0] as usize, 0.5);
        let t = sampling.temperature;
        let mut s = tch::no_grad(|| match &sampling.logits {
            None if self.kernel_sampler => {
                crate::corruption::sampling_tiled::sample_tempered_kernel(&logits, t, &uniforms)
            }
            None => sample_tempered(&logits, t, &uniforms),
            Some(transform) => {
                let mut s = sample_tempered(&transform.logits(&logits), t, &uniforms)?;
                s.top1 = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?;
                Ok(s)
            }
        })?;
        clock.mark(3);
        s.ids.truncate(n);
        s.top1.truncate(n);
        s.entropy.truncate(n);
        Ok(s)
    }

    /// Vocabulary logits `[N', V']` at the masked positions of `inputs`, on the device: N' = N
    /// (on CUDA rounded up to a multiple of [`POSITIONS_MULTIPLE`], the extra rows repeating the
    /// first position), V' = [`padded_vocab`]`(V)`.
    pub fn logits(&self, inputs: &Inputs) -> Tensor {
        self.logits_timed(inputs, &mut StageClock::off())
    }

    fn logits_timed(&self, inputs: &Inputs, clock: &mut StageClock) -> Tensor {
        let cuda = self.device.is_cuda();
        let rows = if cuda {
            inputs.rows.max(self.pad_rows)
        } else {
            inputs.rows
        };
        let cells = rows * inputs.width;
        // Empty rows: all padding, attention mask 0; nothing of them is read back.
        let input_ids = padded(&inputs.input_ids, cells, inputs.pad_id);
        let attention_mask = padded(&inputs.attention_mask, cells, 0);
        let n = inputs.positions.len();
        let n_padded = if cuda {
            n.max(1).div_ceil(POSITIONS_MULTIPLE) * POSITIONS_MULTIPLE
        } else {
            n
        };
        let first = inputs.positions.first().copied().unwrap_or(0);
        let positions = padded(&inputs.positions, n_padded, first);
        let shape = [rows as i64, inputs.width as i64];
        tch::no_grad(|| {
            let ids = Tensor::from_slice(&input_ids)
                .view(shape)
                .to_device(self.device);
            let mask = Tensor::from_slice(&attention_mask)
                .view(shape)
                .to_device(self.device);
            let positions = Tensor::from_slice(&positions).to_device(self.device);
            clock.mark(0);
            crate::runtime::device::with_autocast(self.device, || {
                let model = &self.lm.model;
                let hidden = model.hidden_at(&ids, &mask, &positions, self.dropout);
                clock.mark(1);
                let logits = model
                    .head
                    .transform(&hidden)
                    .to_kind(self.decoder_weight.kind())
                    .linear(&self.decoder_weight, Some(&self.decoder_bias));
                clock.mark(2);
                logits
            })
        })
    }
}

/// `v` extended to `len` entries with `fill` (borrowed when already that long).
fn padded<T: Clone>(v: &[T], len: usize, fill: T) -> Cow<'_, [T]> {
    if v.len() >= len {
        Cow::Borrowed(v)
    } else {
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(v);
        p.resize(len, fill);
        Cow::Owned(p)
    }
}

/// On CUDA, the masked positions of a batch are padded to a multiple of this many rows.
pub const POSITIONS_MULTIPLE: usize = 256;

/// The model's decoder padded to [`padded_vocab`] ids: zero weight rows and `-inf` bias.
fn padded_decoder(model: &MaskedLm) -> (Tensor, Tensor) {
    let (w, b) = model.head.decoder();
    let (v, e) = w.size2().expect("decoder weight is [V, E]");
    let extra = padded_vocab(v) - v;
    tch::no_grad(|| {
        let zeros = Tensor::zeros([extra, e], (w.kind(), w.device()));
        let banned = Tensor::full([extra], f64::NEG_INFINITY, (b.kind(), b.device()));
        (
            Tensor::cat(&[w, &zeros], 0),
            Tensor::cat(&[b, &banned], 0).to_kind(w.kind()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::batch::{build_inputs, Keys, Seq};
    use crate::corruption::masking::SpecialIds;
    use crate::model::{init_masked_lm, Architecture};
    use tch::Kind;

    fn tiny_inputs(vocab: i32) -> Inputs {
        let keys = Keys {
            seed: 4,
            epoch: 1,
            mask_rate: 0.3,
            special: SpecialIds {
                cls: 1,
                sep: 2,
                pad: 0,
                mask: 3,
            },
        };
        let seqs: Vec<Seq> = (0..6)
            .map(|i| {
                let mut ids = vec![1];
                ids.extend((0..20).map(|j| 5 + (i * 37 + j * 11) % (vocab - 5)));
                ids.push(2);
                Seq::new(i as usize, i as u64, &ids, &keys)
            })
            .collect();
        build_inputs(&seqs, 24, &keys)
    }

    #[test]
    fn padded_projection_and_bf16_forward() {
        let cfg = ModelConfig::aux_preset("tiny", 1000).unwrap();
        tch::manual_seed(1);
        let lm = init_masked_lm(&cfg, Architecture::ElectraForMaskedLM, Device::Cpu).unwrap();
        let reference = lm.model.logits_at(
            &Tensor::from_slice(&tiny_inputs(1000).input_ids).view([6, 24]),
            &Tensor::from_slice(&tiny_inputs(1000).attention_mask).view([6, 24]),
            &Tensor::from_slice(&tiny_inputs(1000).positions),
            false,
        );
        let mut model = AuxModel::new(lm, Device::Cpu);
        let inputs = tiny_inputs(1000);
        let l32 = model.logits(&inputs);
        let n = inputs.positions.len() as i64;
        assert_eq!(l32.size(), vec![n, padded_vocab(1000)]);
        // The real ids are the model's logits; the padding is -inf.
        let real = l32.narrow(1, 0, 1000);
        assert!(real.allclose(&reference, 1e-6, 1e-6, false));
        let pad = l32.narrow(1, 1000, padded_vocab(1000) - 1000);
        assert!(pad.isinf().all().int64_value(&[]) == 1 && pad.lt(0).all().int64_value(&[]) == 1);
        // A bf16 cast of the whole model gives bf16 logits close to the fp32 ones.
        model.use_bf16();
        let l16 = model.logits(&inputs);
        assert_eq!(l16.kind(), Kind::BFloat16);
        let diff = (l16.narrow(1, 0, 1000).to_kind(Kind::Float) - &reference)
            .abs()
            .max()
            .double_value(&[]);
        let spread = reference.std(true).double_value(&[]);
        assert!(
            diff < 0.1 * spread.max(1e-3),
            "max |diff| {diff} vs logit std {spread}"
        );
        let s = model.corrupt(&inputs, 1.5).unwrap();
        assert_eq!(s.ids.len(), n as usize);
        assert!(s.ids.iter().chain(&s.top1).all(|&i| (0..1000).contains(&i)));
    }

    #[test]
    fn dropout_rates_reach_the_loaded_model_up_to_gamma_one() {
        // A folder of a random tiny masked LM, loaded as `preprocess` loads it for the dropout
        // augmentations.
        let dir = tempfile::tempdir().unwrap();
        let cfg = ModelConfig::aux_preset("tiny", 1000).unwrap();
        tch::manual_seed(2);
        let lm = init_masked_lm(&cfg, Architecture::ElectraForMaskedLM, Device::Cpu).unwrap();
        crate::model::save_pretrained(&lm.vs, &lm.config, lm.architecture, dir.path()).unwrap();
        let inputs = tiny_inputs(1000);
        let logits = |rates: DropoutRates, seed: i64| {
            let m = AuxModel::load_with_dropout(dir.path(), Device::Cpu, rates).unwrap();
            tch::manual_seed(seed);
            m.logits(&inputs).narrow(1, 0, 1000)
        };
        let plain = logits(None, 0);
        // Without dropout the model is deterministic; with it, the masks act (other logits,
        // and other ones under another seed).
        assert!(plain.equal(&logits(None, 1)));
        for rates in [Some((0.3, 0.0)), Some((0.0, 0.3))] {
            let a = logits(rates, 0);
            assert!(!a.equal(&plain), "{rates:?}: no dropout acted");
            assert!(a.equal(&logits(rates, 0)), "{rates:?}: seeded masks repeat");
            assert!(!a.equal(&logits(rates, 1)), "{rates:?}");
        }
        // gamma = 1 of `dropout`: every hidden state is dropped, so every masked position gets
        // the same logits, whatever its sequence; of `drop-attention`: no position reads any
        // other, and the logits stay finite.
        let all = logits(Some((1.0, 0.0)), 0);
        let spread = (&all - all.get(0).unsqueeze(0))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(
            spread, 0.0,
            "logits depend on the input at hidden dropout 1"
        );
        let alone = logits(Some((0.0, 1.0)), 0);
        assert!(alone.isfinite().all().int64_value(&[]) == 1);
        assert!(!alone.equal(&plain));
    }
}
