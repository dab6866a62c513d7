//! One fine-tuning run: a model, one point of the grid, one seed. Top to bottom as the
//! pre-training loop: for each epoch, a seeded order of the training examples, micro-batches
//! padded to their longest row, forward, loss (cross-entropy, or MSE for regression),
//! backward, clipping, the optimizer's step on the linear schedule (warm-up over a proportion of
//! the updates, then decay to 0); after each epoch, the task's metric on every dev split, also
//! written as TensorBoard scalars when asked.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shared::corruption::rng::CounterRng;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

use super::encode::{self, Encoded};
use super::model::{Classifier, Output, Weights};
use super::task::{Example, Prediction, Scores, Split, Task};
use crate::lr::LinearSchedule;
use crate::optim::{AdamW, AdamWConfig, Rule};
use crate::tensorboard::{wall_time_now, EventWriter};
use shared::model::ModelConfig;

/// Domain word of the training order's stream: `CounterRng(seed, [ORDER_DOMAIN, epoch])`
/// (distinct from the trainer's and the corruption's domains).
pub const ORDER_DOMAIN: u64 = 0xf1_7e;

/// One point of the hyper-parameter grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub lr: f64,
    pub epochs: u32,
    pub batch_size: usize,
    pub weight_decay: f64,
    pub warmup_proportion: f64,
}

/// What every run of a command shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixed {
    pub optimizer: Optimizer,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clipping (0 = off).
    pub clip_norm: f64,
    /// Hidden, attention and classifier dropout while fine-tuning.
    pub dropout: f64,
    pub max_seq_len: usize,
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// AdamW (decoupled weight decay).
    Adamw,
    /// AdaMax with decoupled weight decay (the paper's fine-tuning optimizer).
    Adamax,
}

/// A model to fine-tune: its encoder's config and weights.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    pub config: ModelConfig,
    pub weights: Weights,
}

/// A task's splits, encoded for one tokenizer.
pub struct Data<'a> {
    pub task: &'a Task,
    pub train: Vec<Encoded>,
    /// Every dev split with its encoding.
    pub dev: Vec<(&'a Split, Vec<Encoded>)>,
    pub pad_id: i64,
}

/// A run's figures after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochScores {
    /// 1-based.
    pub epoch: u32,
    /// Mean training loss of the epoch's updates.
    pub train_loss: f64,
    /// The dev scores (every dev split's; the main one the first split's).
    pub dev: Scores,
}

/// What a run produced.
pub struct Outcome {
    pub epochs: Vec<EpochScores>,
    pub seconds: f64,
    /// Training examples per second over the run's updates (dev evaluation excluded).
    pub train_examples_per_s: f64,
    /// The fine-tuned model.
    pub model: Classifier,
}

/// The task's output for the model.
pub fn output_of(task: &Task) -> Output {
    match task.labels() {
        Some(labels) => Output::Classes(labels.len()),
        None => Output::Regression,
    }
}

/// A seeded permutation of `0..n` for `epoch` (Fisher-Yates over a counter-based stream).
pub fn order(seed: u64, epoch: u32, n: usize) -> Vec<usize> {
    let mut rng = CounterRng::new(seed, &[ORDER_DOMAIN, epoch as u64]);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// The loss of `logits` `[B, N]` against `labels`.
fn loss(output: Output, logits: &Tensor, labels: &Tensor) -> Tensor {
    match output {
        Output::Classes(_) => logits.cross_entropy_for_logits(labels),
        Output::Regression => logits
            .squeeze_dim(-1)
            .mse_loss(&labels.to_kind(Kind::Float), tch::Reduction::Mean),
    }
}

/// Runs the model over `encoded` (no dropout, no gradient) and returns its logits, `[N]` per
/// example (N classes, or 1 value for regression), in fp32.
pub fn logits(
    model: &Classifier,
    encoded: &[Encoded],
    examples: &[Example],
    pad_id: i64,
    batch_size: usize,
    device: Device,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let rows: Vec<usize> = (0..encoded.len()).collect();
    let width = model.output.width() as usize;
    let mut out = Vec::with_capacity(encoded.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let b = encode::batch(encoded, examples, chunk, pad_id, device);
        let z = tch::no_grad(|| {
            shared::runtime::device::with_autocast(device, || {
                model.forward_t(&b.input_ids, &b.token_type_ids, &b.attention_mask, false)
            })
        });
        let flat = Vec::<f32>::try_from(z.to_kind(Kind::Float).flatten(0, -1))
            .context("copying the logits to the host")?;
        out.extend(flat.chunks(width).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// The prediction of one example's logits: the first largest class, or the value.
pub fn prediction(output: Output, logits: &[f32]) -> Prediction {
    match output {
        Output::Classes(_) => {
            let mut best = 0;
            for (i, &z) in logits.iter().enumerate() {
                if z > logits[best] {
                    best = i;
                }
            }
            Prediction::Class(best)
        }
        Output::Regression => Prediction::Value(logits.first().copied().unwrap_or(f32::NAN) as f64),
    }
}

/// Where a run computes and reports: its device, its name in messages, and its TensorBoard
/// folder, if any.
#[derive(Debug, Clone, Copy)]
pub struct RunIo<'a> {
    pub device: Device,
    /// Names the run in errors.
    pub what: &'a str,
    /// The run's own TensorBoard folder (emptied first: events of an unfinished try are stale).
    pub tensorboard: Option<&'a Path>,
}

/// Fine-tunes `choice` on `data` with `recipe` and `seed`, computing and reporting as `io` says.
pub fn finetune(
    choice: &ModelChoice,
    data: &Data,
    recipe: &Recipe,
    seed: u64,
    fixed: &Fixed,
    io: &RunIo,
) -> anyhow::Result<Outcome> {
    let RunIo {
        device,
        what,
        tensorboard,
    } = *io;
    let started = Instant::now();
    let mut events = match tensorboard {
        Some(dir) => {
            // Events of an unfinished earlier try of this run are stale: start the folder anew.
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            Some(EventWriter::create(dir, None)?)
        }
        None => None,
    };
    let task = data.task;
    let output = output_of(task);
    tch::manual_seed(crate::rng::init_seed(seed));
    let model = Classifier::new(&choice.config, output, &choice.weights, device)?;
    let mut opt = AdamW::new(
        &model.vs,
        AdamWConfig {
            beta1: fixed.beta1,
            beta2: fixed.beta2,
            eps: fixed.eps,
            weight_decay: recipe.weight_decay,
            rule: match fixed.optimizer {
                Optimizer::Adamw => Rule::AdamW,
                Optimizer::Adamax => Rule::Adamax,
            },
        },
    )?;
    let n = data.train.len();
    let per_epoch = n.div_ceil(recipe.batch_size) as u64;
    let total = per_epoch * recipe.epochs as u64;
    let warmup = (total as f64 * recipe.warmup_proportion).ceil() as u64;
    let sched = LinearSchedule {
        peak: recipe.lr,
        warmup: warmup.max(1),
        total,
    };
    let examples = &task.train.examples;
    let mut step = 0u64;
    let mut train_time = 0.0;
    let mut epochs = Vec::with_capacity(recipe.epochs as usize);
    for epoch in 0..recipe.epochs {
        let t0 = Instant::now();
        let mut sum: Option<Tensor> = None;
        for rows in order(seed, epoch, n).chunks(recipe.batch_size) {
            tch::manual_seed(crate::rng::torch_seed(seed, step));
            let b = encode::batch(&data.train, examples, rows, data.pad_id, device);
            let Some(labels) = &b.labels else {
                bail!(
                    "{what}: task {}: a training example has no label",
                    task.name
                );
            };
            let l = shared::runtime::device::with_autocast(device, || {
                let logits =
                    model.forward_t(&b.input_ids, &b.token_type_ids, &b.attention_mask, true);
                loss(output, &logits, labels)
            });
            l.backward();
            let _norm = opt.clip_and_step(sched.at(step), fixed.clip_norm)?;
            opt.zero_grad();
            step += 1;
            let l = l.detach();
            sum = Some(match sum {
                Some(s) => s + l,
                None => l,
            });
        }
        let train_loss = sum.map_or(0.0, |s| s.double_value(&[])) / per_epoch.max(1) as f64;
        train_time += t0.elapsed().as_secs_f64();
        if !train_loss.is_finite() {
            bail!(
                "{what}: the training loss of epoch {} is {train_loss} (lr {:e}); lower --lr",
                epoch + 1,
                recipe.lr
            );
        }
        let preds: Vec<Vec<Prediction>> = data
            .dev
            .iter()
            .map(|(split, encoded)| {
                let size = recipe.batch_size * 2;
                let z = logits(&model, encoded, &split.examples, data.pad_id, size, device)?;
                Ok(z.iter().map(|z| prediction(output, z)).collect())
            })
            .collect::<anyhow::Result<_>>()?;
        let dev = super::task::score_dev(task, &preds)?;
        if let Some(w) = events.as_mut() {
            let mut scalars = vec![("train/loss".to_string(), train_loss)];
            scalars.extend(dev.all.iter().map(|(k, v)| (k.clone(), *v)));
            w.scalars(step, wall_time_now(), &scalars)?;
            w.flush()?;
        }
        epochs.push(EpochScores {
            epoch: epoch + 1,
            train_loss,
            dev,
        });
    }
    Ok(Outcome {
        epochs,
        seconds: started.elapsed().as_secs_f64(),
        train_examples_per_s: (n as f64 * recipe.epochs as f64) / train_time.max(1e-9),
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_a_seeded_permutation() {
        let a = order(3, 0, 100);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, order(3, 0, 100));
        assert_ne!(a, order(3, 1, 100));
        assert_ne!(a, order(4, 0, 100));
    }
}
