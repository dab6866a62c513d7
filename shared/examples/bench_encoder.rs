//! Forward+backward time of the encoder: a discriminator (RTD loss) or a masked LM
//! (MLM loss at 15% of positions) of a preset size on random tokens, median over warm iterations.
//!
//!     cargo run --release -p fast-electra-shared --example bench_encoder -- --preset base
//!
//! On CUDA the forward runs under bf16 mixed precision (`with_autocast`).
use clap::Parser;
use shared::model::{init_discriminator, init_masked_lm, Architecture, ModelConfig};
use shared::runtime::device::{parse_device, with_autocast};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Parser, Debug)]
struct Args {
    /// Model size: tiny, small, base or large.
    #[arg(long, default_value = "base")]
    preset: String,
    /// Which model: discriminator (ElectraForPreTraining) or generator (ElectraForMaskedLM).
    #[arg(long, default_value = "discriminator")]
    model: String,
    /// Use the auxiliary (generator) depth of the preset: 4 layers for base, 6 for large.
    #[arg(long)]
    aux: bool,
    /// Sequences per batch.
    #[arg(long, default_value_t = 8)]
    batch: i64,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq: i64,
    /// Vocabulary size (BERT uncased: 30522).
    #[arg(long, default_value_t = 30522)]
    vocab: i64,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed iterations (the median is reported).
    #[arg(long, default_value_t = 5)]
    iters: usize,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = parse_device(&args.device)?;
    tch::manual_seed(0);
    let cfg = if args.aux {
        ModelConfig::aux_preset(&args.preset, args.vocab)?
    } else {
        ModelConfig::preset(&args.preset, args.vocab)?
    };
    let (b, s) = (args.batch, args.seq);
    let ids = Tensor::randint(args.vocab, [b, s], (Kind::Int64, device));
    let mask = Tensor::ones([b, s], (Kind::Int64, device));
    let targets = Tensor::randint(2, [b, s], (Kind::Float, device));
    let n_masked = (b * s * 15 / 100).max(1);
    let positions = Tensor::randperm(b * s, (Kind::Int64, device)).narrow(0, 0, n_masked);
    let labels = ids.view(-1).index_select(0, &positions);

    let (vs, step): (tch::nn::VarStore, Box<dyn Fn() -> Tensor>) = match args.model.as_str() {
        "discriminator" => {
            let m = init_discriminator(&cfg, device)?;
            let vs = m.vs;
            let model = m.model;
            (
                vs,
                Box::new(move || {
                    let logits = with_autocast(device, || model.forward_t(&ids, &mask, true));
                    logits.binary_cross_entropy_with_logits::<Tensor>(
                        &targets,
                        None,
                        None,
                        tch::Reduction::Mean,
                    )
                }),
            )
        }
        "generator" => {
            let m = init_masked_lm(&cfg, Architecture::ElectraForMaskedLM, device)?;
            let vs = m.vs;
            let model = m.model;
            (
                vs,
                Box::new(move || {
                    let logits =
                        with_autocast(device, || model.logits_at(&ids, &mask, &positions, true));
                    logits.cross_entropy_for_logits(&labels)
                }),
            )
        }
        other => anyhow::bail!("--model {other:?}: expected discriminator or generator"),
    };
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.warmup + args.iters {
        vs.trainable_variables()
            .iter_mut()
            .for_each(|t| t.zero_grad());
        sync(device);
        let start = Instant::now();
        step().backward();
        sync(device);
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    if device.is_cuda() && args.model == "discriminator" {
        // How far bf16 mixed precision moves the eval logits from fp32 on this batch.
        let m = init_discriminator(&cfg, device)?;
        let ids = Tensor::randint(args.vocab, [b, s], (Kind::Int64, device));
        let mask = Tensor::ones([b, s], (Kind::Int64, device));
        let (full, mixed) = tch::no_grad(|| {
            let full = m.model.forward_t(&ids, &mask, false);
            let mixed = with_autocast(device, || m.model.forward_t(&ids, &mask, false));
            (full, mixed)
        });
        println!(
            "bf16 vs fp32 eval logits: max |diff| {:.4}, max |logit| {:.4}, output dtype {:?}",
            (&full - &mixed).abs().max().double_value(&[]),
            full.abs().max().double_value(&[]),
            mixed.kind()
        );
    }
    let median = times[times.len() / 2];
    println!(
        "{}{} {} ({params} parameters) batch {b} x seq {s} on {device:?}{}: forward+backward \
         median {:.1} ms over {} warm iterations (min {:.1}, max {:.1}); {:.0} tokens/s; \
         {} threads",
        args.preset,
        if args.aux { " aux" } else { "" },
        args.model,
        if device.is_cuda() {
            " bf16 autocast"
        } else {
            " fp32"
        },
        median * 1e3,
        times.len(),
        times[0] * 1e3,
        times[times.len() - 1] * 1e3,
        (b * s) as f64 / median,
        tch::get_num_threads(),
    );
    Ok(())
}
