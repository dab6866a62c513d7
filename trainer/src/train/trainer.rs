//! The training loop's state and its named stages: [`Trainer::start`] (optimizer, resume,
//! loader, metrics), [`Trainer::train_step`] (one update), [`Trainer::record_interval`] (a
//! metrics line), [`Trainer::validate`], [`Trainer::checkpoint`] and [`Trainer::finish`] (plots
//! and export). `super::run` calls them in order.
use anyhow::bail;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::Tensor;

use super::config::RunConfig;
use super::gpu;
use super::interval::Interval;
use super::setup::Setup;
use super::train_config::Runtime;
use super::validate::{self, ValidationSet};
use crate::checkpoint::{self, TrainState};
use crate::loader::{Cursor, Loader, LoaderConfig};
use crate::lr::LinearSchedule;
use crate::metrics::{Counts, TrainRecord};
use crate::objectives::{DeviceBatch, TrainObjective};
use crate::optim::{AdamW, AdamWConfig};
use crate::outputs::{ResumeFrom, RunOutputs};
use crate::parallel::Parallel;
use crate::plots::PlotInfo;
use shared::runtime::progress::Progress;

/// A run in progress.
pub struct Trainer {
    run: RunConfig,
    runtime: Runtime,
    objective: Box<dyn TrainObjective>,
    opt: AdamW,
    loader: Loader,
    sched: LinearSchedule,
    outputs: RunOutputs,
    validation: Option<ValidationSet>,
    temperatures: HashMap<u32, Option<f64>>,
    tokenizer_json: Vec<u8>,
    plot: PlotInfo,
    /// Peak FLOP/s of the device (MFU), if known.
    peak_flops: Option<f64>,
    peak_mem: Option<u64>,
    bar: Progress,
    /// Updates done.
    step: u64,
    /// Updates done when this invocation started.
    first_step: u64,
    /// The last checkpoint written (or resumed from).
    last_good: Option<PathBuf>,
    iv: Interval,
    /// Epoch of the last micro-batch and the data cursor after it.
    epoch_now: u32,
    cursor_now: Cursor,
    /// Learning rate of the last update.
    lr_now: f64,
    /// This process's place in a data-parallel run.
    par: Parallel,
    /// Time spent in the gradient all-reduce, and when this invocation started.
    allreduce_time: Duration,
    started: Instant,
}

/// Loads the checkpoint to continue from into the model and optimizer: (step, data cursor).
fn resume(
    from: &ResumeFrom,
    objective: &dyn TrainObjective,
    opt: &mut AdamW,
) -> anyhow::Result<(u64, Cursor)> {
    let Some((st, dir)) = from else {
        return Ok((0, Cursor::default()));
    };
    checkpoint::load_vars(objective.vars(), &dir.join("model.safetensors"))?;
    let opt_path = dir.join("optimizer.safetensors");
    opt.load_state(
        &checkpoint::read_tensors(&opt_path)?,
        &opt_path.display().to_string(),
    )?;
    let state = checkpoint::read_state(dir)?;
    if state.step != *st || opt.step_count() != *st {
        bail!(
            "{}: field step: expected {st} (the folder name and optimizer step), found {}",
            dir.join("state.json").display(),
            state.step
        );
    }
    eprintln!("trainer: resuming {} at step {st}", dir.display());
    Ok((state.step, state.cursor))
}

impl Trainer {
    /// Builds the optimizer, resumes from the checkpoint if any, starts the loader at the data
    /// cursor and opens the metrics.
    pub fn start(s: Setup) -> anyhow::Result<Self> {
        let rc = s.run;
        let mut opt = AdamW::new(
            s.objective.vars(),
            AdamWConfig {
                weight_decay: rc.weight_decay,
                ..Default::default()
            },
        )?;
        let (step, cursor) = resume(&s.resume_from, s.objective.as_ref(), &mut opt)?;
        let mut par = s.par;
        // Every rank starts from rank 0's weights (fresh runs: one initialisation; resumed runs
        // loaded the same checkpoint, so this only guards against a mixed-up file system).
        par.broadcast_from_rank0(opt.params(), "broadcasting rank 0's weights")?;
        if s.runtime.device.is_cuda() && s.objective.wants_bf16_weights() {
            // `--step fused`: the update writes the bf16 weights the next step's GEMMs read.
            s.objective
                .use_bf16_weights(opt.keep_bf16_copy(s.objective.vars())?);
        }
        let loader = Loader::start(
            Arc::new(s.epochs),
            Arc::new(s.decoder),
            LoaderConfig {
                seed: rc.seed,
                batch_size: rc.batch_size,
                window: rc.shuffle_window,
                prefetch: s.runtime.prefetch,
                pad_id: s.pad_id,
                kind: s.batch_kind,
                repeat_last_epoch: rc.repeat_last_epoch,
            },
            cursor,
        );
        let mut outputs = s.outputs;
        outputs.open_metrics(step)?;
        let device = s.runtime.device;
        let peak_flops = s
            .runtime
            .peak_flops
            .or_else(|| gpu::name(device).and_then(|n| shared::cost::peak_flops(&n)));
        let bar = Progress::new(
            "trainer",
            rc.total_steps,
            "updates",
            "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
        );
        bar.start_at(step);
        Ok(Self {
            sched: LinearSchedule {
                peak: rc.lr,
                warmup: rc.warmup_steps,
                total: rc.total_steps,
            },
            run: rc,
            runtime: s.runtime,
            objective: s.objective,
            opt,
            loader,
            outputs,
            validation: s.validation,
            temperatures: s.temperatures,
            tokenizer_json: s.tokenizer_json,
            plot: s.plot,
            peak_flops,
            peak_mem: None,
            bar,
            step,
            first_step: step,
            last_good: s.resume_from.map(|(_, d)| d),
            iv: Interval::new(),
            epoch_now: 0,
            cursor_now: cursor,
            lr_now: 0.0,
            par,
            allreduce_time: Duration::ZERO,
            started: Instant::now(),
        })
    }

    /// Whether every update of the run is done.
    pub fn done(&self) -> bool {
        self.step >= self.run.total_steps
    }

    /// `--debug-stop-after N`: true (and the progress bar closed) once this invocation did N
    /// updates; the caller then returns as if killed, writing nothing more.
    pub fn debug_stop(&self) -> bool {
        let stop = self
            .runtime
            .debug
            .stop_after
            .is_some_and(|n| self.step - self.first_step >= n);
        if stop {
            self.bar.finish_and_clear();
            eprintln!(
                "trainer: stopped after step {} (--debug-stop-after)",
                self.step
            );
        }
        stop
    }

    /// Whether `every` divides the updates done, or the run just finished.
    pub fn due(&self, every: u64) -> bool {
        self.step.is_multiple_of(every) || self.done()
    }

    /// Checks that every weight is finite (one device sync over the optimizer's flat buffer)
    /// before `what` is written; otherwise stops the run naming the step, the first tensor
    /// holding NaN or infinity and the last good checkpoint. Called at each checkpoint and
    /// before the export, so that a non-finite update is never saved.
    fn check_weights(&self, what: &str) -> anyhow::Result<()> {
        let all_finite = |t: &Tensor| -> anyhow::Result<bool> {
            Ok(tch::no_grad(|| t.isfinite().all()).f_int64_value(&[])? != 0)
        };
        if all_finite(self.opt.params())? {
            return Ok(());
        }
        let mut vars: Vec<(String, Tensor)> =
            self.objective.vars().variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut bad = Vec::new();
        for (name, t) in &vars {
            if !all_finite(t)? {
                bad.push(name.clone());
            }
        }
        bail!(
            "non-finite weights after step {} ({} of {} tensors hold NaN or infinity, first {}): the update of step {} (lr {:e}) made them so; the run stopped without writing {what}; the last good checkpoint is {}",
            self.step,
            bad.len(),
            vars.len(),
            bad.first().map_or("?", String::as_str),
            self.step,
            self.lr_now,
            self.last_good.as_ref().map_or(
                "none (no checkpoint was written yet)".to_string(),
                |p| p.display().to_string()
            )
        );
    }

    pub fn run_config(&self) -> &RunConfig {
        &self.run
    }

    /// One update: `grad_accum` micro-batches forward and backward (dropout seeded from
    /// (seed, step)), then clipping, the AdamW step and the schedule. Losses and gradient norms
    /// stay on the device until the next sync.
    pub fn train_step(&mut self) -> anyhow::Result<()> {
        let k = self.run.grad_accum;
        let device = self.runtime.device;
        // Dropout masks: rank 0 keeps the single-process rule, the other ranks differ from it.
        let seed = match self.par.rank {
            0 => self.run.seed,
            r => self.run.seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        tch::manual_seed(crate::rng::torch_seed(seed, self.step));
        self.objective.begin_update(self.step, self.run.total_steps);
        let mut step_loss: Option<Tensor> = None;
        for _ in 0..k {
            let t0 = Instant::now();
            let hb = self.loader.next_batch()?;
            self.iv.wait += t0.elapsed();
            self.iv.rows += hb.rows as u64;
            self.iv.tokens += hb.real_tokens;
            self.iv.flops += hb.rows as f64 * self.objective.train_flops_per_row(hb.len as u64);
            self.epoch_now = hb.epoch;
            self.cursor_now = hb.cursor_after;
            // `hb` is the global micro-batch; this rank computes on its share, weighted so that
            // the sum over the ranks is the global batch's mean loss (crate::parallel).
            let mine = self.par.share(&hb);
            let weight = self.par.loss_weight(&hb, &mine);
            let db = DeviceBatch::new(&mine, device);
            let mut scale = weight / k as f64;
            if self.runtime.debug.nan_at_step == Some(self.step + 1) {
                scale = f64::NAN;
            }
            self.objective.prepare(&db, true)?;
            let out = shared::runtime::device::with_autocast(device, || {
                self.objective.train_micro_batch(&db, scale)
            });
            let detached = out.loss;
            step_loss = Some(match step_loss {
                Some(acc) => acc + detached,
                None => detached,
            });
            self.iv.add_counts(out.counts);
        }
        let t_sync = Instant::now();
        self.par.sum(
            self.opt.grads(),
            &format!(
                "the all-reduce of the gradients of update {}",
                self.step + 1
            ),
        )?;
        self.allreduce_time += t_sync.elapsed();
        self.lr_now = self.sched.at(self.step);
        let norm = self.opt.clip_and_step(self.lr_now, self.run.clip_norm)?;
        self.opt.zero_grad();
        self.step += 1;
        self.iv
            .losses
            .push((self.step, step_loss.expect("grad_accum >= 1")));
        self.iv.grad_norms.push(norm);
        self.bar.set_position(self.step);
        Ok(())
    }

    /// Syncs the interval (stopping on a non-finite loss or norm) and writes its metrics line.
    pub fn record_interval(&mut self) -> anyhow::Result<()> {
        self.iv.reduce_over_ranks(&mut self.par, true)?;
        let losses = self.iv.check_finite(&self.last_good)?;
        let counts = match self.iv.counts.take() {
            Some(t) => Counts::from_device(&t)?,
            None => Counts::default(),
        };
        let secs = self.iv.start.elapsed().as_secs_f64().max(1e-9);
        let device = self.runtime.device;
        if device.is_cuda() {
            self.peak_mem = self.peak_mem.max(gpu::memory_used(device));
        }
        let binary = self.objective.reports().positive_class.is_some();
        let extras = self.objective.take_extras();
        let iv = &self.iv;
        let record = TrainRecord {
            split: "train".into(),
            step: self.step,
            epoch: self.epoch_now,
            temperature: (self.temperatures.get(&self.epoch_now).copied().flatten())
                .or(extras.temperature),
            generator_loss: extras.generator_loss,
            lr: self.lr_now,
            loss: losses.iter().sum::<f64>() / losses.len() as f64,
            grad_norm: iv.last_grad_norm()?,
            accuracy: counts.accuracy(),
            precision: counts.precision().filter(|_| binary),
            recall: counts.recall().filter(|_| binary),
            f1: counts.f1().filter(|_| binary),
            seq_per_s: iv.rows as f64 / secs,
            tokens_per_s: iv.tokens as f64 / secs,
            mfu: self
                .peak_flops
                .map(|p| iv.flops / secs / (p * self.par.world as f64)),
            peak_memory_bytes: self.peak_mem,
            data_wait_fraction: iv.wait.as_secs_f64() / secs,
        };
        self.bar.set_message(format!(
            "loss {:.4} acc {:.4}",
            record.loss, record.accuracy
        ));
        self.outputs.record(&record)?;
        self.iv = Interval::new();
        Ok(())
    }

    /// A validation pass, when there is a validation set; writes its metrics line.
    pub fn validate(&mut self) -> anyhow::Result<()> {
        let Some(set) = &self.validation else {
            return Ok(());
        };
        let record = validate::run(self.objective.as_ref(), set, self.runtime.device, self.step)?;
        self.outputs.record(&record)
    }

    /// Checks the losses not yet synced, then writes a checkpoint (and refreshes the plots).
    pub fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.iv.reduce_over_ranks(&mut self.par, false)?;
        self.iv.check_finite(&self.last_good)?;
        self.check_weights(&format!(
            "checkpoint {}",
            checkpoint::folder_name(self.step)
        ))?;
        let state = TrainState {
            step: self.step,
            cursor: self.cursor_now,
            seed: self.run.seed,
            config: serde_json::to_value(&self.run)?,
        };
        let dir = self.outputs.checkpoint(
            self.objective.vars(),
            &self.opt.state(),
            &state,
            &self.plot,
        )?;
        self.last_good = Some(dir);
        Ok(())
    }

    /// Stops the loader, writes the plots and the export.
    pub fn finish(self) -> anyhow::Result<()> {
        self.bar.finish_and_clear();
        if self.par.writes() {
            // The last checkpoint checked them already; the export is never made of others.
            self.iv.check_finite(&self.last_good)?;
            self.check_weights("the export")?;
        }
        drop(self.loader);
        if self.par.world > 1 {
            let total = self.started.elapsed().as_secs_f64();
            let sync = self.allreduce_time.as_secs_f64();
            // One write, so that the ranks' lines do not interleave.
            let line = format!(
                "trainer: rank {}: {} updates in {total:.2} s, {sync:.2} s of it in the gradient all-reduce ({:.1}%)\n",
                self.par.rank,
                self.step - self.first_step,
                100.0 * sync / total.max(1e-9)
            );
            eprint!("{line}");
        }
        if !self.par.writes() {
            return Ok(());
        }
        self.outputs.plots(&self.plot)?;
        let export = self
            .outputs
            .export(self.objective.as_ref(), &self.tokenizer_json)?;
        eprintln!(
            "trainer: {} steps done; metrics in {}, export in {}",
            self.step,
            self.outputs
                .dir()
                .join(crate::metrics::METRICS_FILE)
                .display(),
            export.display()
        );
        Ok(())
    }
}
