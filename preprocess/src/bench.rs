//! `preprocess bench`: sequences per second of the corruption's device work (masked input,
//! auxiliary forward with logits only at masked positions, exact tempered sampling, results back
//! to the host) on random token sequences, after a warm-up. Without `--aux-model` the model is a
//! randomly initialised auxiliary preset (e.g. base width, 4 layers), which costs the same.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use shared::masking::SpecialIds;
use shared::model::{init_masked_lm, Architecture, ModelConfig};
use shared::rng::CounterRng;

use crate::corrupt::aux::AuxModel;
use crate::corrupt::batch::{build_inputs, Keys, Seq};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Auxiliary model folder to benchmark [default: a random `--preset` auxiliary model].
    #[arg(long)]
    pub aux_model: Option<PathBuf>,
    /// Preset of the random auxiliary model: tiny, small, base or large (auxiliary depth:
    /// 1, 4, 4, 6 layers).
    #[arg(long, default_value = "base")]
    pub preset: String,
    /// Override the number of layers of the random auxiliary model.
    #[arg(long)]
    pub layers: Option<i64>,
    /// Vocabulary size of the random auxiliary model (BERT's by default).
    #[arg(long, default_value_t = 30522)]
    pub vocab_size: i64,
    /// Tokens per sequence, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Timed batches (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
    /// Untimed warm-up batches.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Temperature.
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// Fraction of tokens masked.
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads for torch [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if a.seq_len < 3 || a.batch_size == 0 || a.batches == 0 {
        bail!(
            "bench: expected --seq-len >= 3, --batch-size >= 1, --batches >= 1, found {}, {}, {}",
            a.seq_len,
            a.batch_size,
            a.batches
        );
    }
    let device = shared::device::parse_device(&a.device)?;
    if let Some(t) = a.threads {
        tch::set_num_threads(t as i32);
    }
    let model = match &a.aux_model {
        Some(dir) => AuxModel::load(dir, device)?,
        None => {
            let mut cfg = ModelConfig::aux_preset(&a.preset, a.vocab_size)?;
            if let Some(l) = a.layers {
                cfg.num_hidden_layers = l;
            }
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq_len as i64);
            tch::manual_seed(0);
            AuxModel::new(
                init_masked_lm(&cfg, Architecture::ElectraForMaskedLM, device)?,
                device,
            )
        }
    };
    let cfg = model.config();
    let vocab = cfg.vocab_size;
    anyhow::ensure!(
        vocab > 1000,
        "bench: expected a vocabulary above 1000 ids, found {vocab}"
    );
    eprintln!(
        "bench: {} layers, hidden {}, vocab {vocab}, seq {} x batch {}, T = {}, on {device:?}",
        cfg.num_hidden_layers, cfg.hidden_size, a.seq_len, a.batch_size, a.temperature
    );
    let keys = Keys {
        seed: 0,
        epoch: 0,
        mask_rate: a.mask_rate,
        special: SpecialIds {
            cls: 101,
            sep: 102,
            pad: 0,
            mask: 103,
        },
    };
    let mut rng = CounterRng::new(0, &[]);
    let mut times = Vec::with_capacity(a.batches);
    for b in 0..a.warmup + a.batches {
        let seqs: Vec<Seq> = (0..a.batch_size)
            .map(|i| {
                let mut ids = vec![101i32];
                ids.extend(
                    (0..a.seq_len - 2).map(|_| 1000 + rng.below(vocab as u64 - 1000) as i32),
                );
                ids.push(102);
                Seq::new(i, (b * a.batch_size + i) as u64, &ids, &keys)
            })
            .collect();
        let start = Instant::now();
        let inputs = build_inputs(&seqs, a.seq_len, &keys);
        // `corrupt` returns host vectors, so the device work is complete when it returns.
        let sampled = model
            .corrupt(&inputs, a.temperature)
            .context("bench batch")?;
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(sampled.ids.len() == inputs.positions.len());
        if b >= a.warmup {
            times.push(seconds);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let rate = a.batch_size as f64 / median;
    println!(
        "median {:.4} s per batch of {} x {} tokens: {:.1} sequences/s ({:.0} tokens/s)",
        median,
        a.batch_size,
        a.seq_len,
        rate,
        rate * a.seq_len as f64
    );
    Ok(())
}
