//! `preprocess bench`: sequences per second of the model thread's work in `preprocess --epoch`
//! (inputs to the device, auxiliary forward with logits only at masked positions, exact tempered
//! sampling, results back to the host) on random token sequences, after a warm-up; then the same
//! batches synchronised after each stage for the split per stage. Without `--aux-model` the model
//! is a randomly initialised auxiliary preset (e.g. base width, 4 layers), which costs the same.
//! On CUDA it first compares the fp32 model with its bf16 cast on one batch.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use shared::corruption::masking::SpecialIds;
use shared::corruption::rng::CounterRng;
use shared::model::{init_masked_lm, load_masked_lm, Architecture, ModelConfig};

use shared::corruption::aux::AuxModel;
use shared::corruption::batch::{build_inputs, Inputs, Keys, Seq};
use shared::runtime::clock::StageClock;

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
    let device = shared::runtime::device::parse_device(&a.device)?;
    if let Some(t) = a.threads {
        tch::set_num_threads(t as i32);
    }
    let lm = match &a.aux_model {
        Some(dir) => load_masked_lm(dir, device)
            .with_context(|| format!("loading the auxiliary model {}", dir.display()))?,
        None => {
            let mut cfg = ModelConfig::aux_preset(&a.preset, a.vocab_size)?;
            if let Some(l) = a.layers {
                cfg.num_hidden_layers = l;
            }
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq_len as i64);
            tch::manual_seed(0);
            init_masked_lm(&cfg, Architecture::ElectraForMaskedLM, device)?
        }
    };
    let mut model = AuxModel::new(lm, device);
    model.pad_rows_to(a.batch_size);
    let cfg = model.config().clone();
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
    // Inputs are built beforehand: in `preprocess --epoch` the reader thread builds them while
    // the model thread runs the previous batch, so the model thread's work is what is timed.
    let mut rng = CounterRng::new(0, &[]);
    let batches: Vec<Inputs> = (0..a.warmup + a.batches)
        .map(|b| {
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
            build_inputs(&seqs, a.seq_len, &keys)
        })
        .collect();
    if device.is_cuda() {
        precision_report(&mut model, &batches[0], a.temperature, vocab)?;
    }
    let mut times = Vec::with_capacity(a.batches);
    for (b, inputs) in batches.iter().enumerate() {
        let start = Instant::now();
        // `corrupt` returns host vectors, so the device work is complete when it returns.
        let sampled = model
            .corrupt(inputs, a.temperature)
            .context("bench batch")?;
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(sampled.ids.len() == inputs.positions.len());
        if b >= a.warmup {
            times.push(seconds);
        }
    }
    // The same batches again, synchronised after each stage.
    let mut clock = StageClock::new(device, true);
    for inputs in &batches[a.warmup..] {
        model.corrupt_timed(inputs, a.temperature, &mut clock)?;
    }
    eprintln!("bench: {clock}");
    times.sort_by(f64::total_cmp);
    let median_s = times[times.len() / 2];
    let rate = a.batch_size as f64 / median_s;
    println!(
        "median {:.4} s per batch of {} x {} tokens: {:.1} sequences/s ({:.0} tokens/s)",
        median_s,
        a.batch_size,
        a.seq_len,
        rate,
        rate * a.seq_len as f64
    );
    Ok(())
}

/// On CUDA, compares the fp32 model with its bf16 cast on one batch (logit differences, arg-max
/// and sampled-token agreement at the same uniforms), then leaves the model in bf16.
fn precision_report(
    model: &mut AuxModel,
    inputs: &Inputs,
    temperature: f64,
    vocab: i64,
) -> anyhow::Result<()> {
    let l32 = model.logits(inputs).narrow(1, 0, vocab);
    let s32 = model.corrupt(inputs, temperature)?;
    model.use_bf16();
    let l16 = model
        .logits(inputs)
        .narrow(1, 0, vocab)
        .to_kind(tch::Kind::Float);
    let s16 = model.corrupt(inputs, temperature)?;
    let diff = (&l32 - &l16).abs().max().double_value(&[]);
    let scale = l32.abs().max().double_value(&[]);
    // Mean total-variation distance between the two tempered distributions: the chance that
    // an optimal coupling of the two samplers picks different tokens.
    let tempered = |l: &tch::Tensor| (l / temperature).softmax(-1, tch::Kind::Float);
    let tv = (tempered(&l32) - tempered(&l16))
        .abs()
        .sum_dim_intlist(-1, false, tch::Kind::Float)
        .mean(tch::Kind::Float)
        .double_value(&[])
        / 2.0;
    let n = s32.ids.len().max(1) as f64;
    let same = |a: &[i64], b: &[i64]| a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n;
    eprintln!(
        "bench: bf16 vs fp32 auxiliary model on {} masked positions: logits max |diff| {diff:.4} \
         (max |logit| {scale:.2}), mean total-variation distance of the tempered distributions \
         {tv:.5}, same arg-max {:.2}%, same sampled token at the same uniform {:.2}%",
        s32.ids.len(),
        100.0 * same(&s32.top1, &s16.top1),
        100.0 * same(&s32.ids, &s16.ids)
    );
    Ok(())
}
