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

use super::config::Runtime;
use super::gpu;
use super::interval::Interval;
use super::run_record::RunRecord;
use super::setup::Setup;
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
    run: RunRecord,
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
    interval: Interval,
    /// Epoch of the last micro-batch and the data cursor after it.
    epoch_now: u32,
    cursor_now: Cursor,
    /// Learning rate of the last update.
    lr_now: f64,
    /// This process's place in a data-parallel run.
    parallel: Parallel,
    /// Time spent in the gradient all-reduce, and when this invocation started.
    allreduce_time: Duration,
    started: Instant,
    /// `--comm-timing`: the last update's bucketed all-reduce.
    last_comm: Option<crate::metrics::records::CommTiming>,
}

/// The timing of one update's bucketed all-reduce relative to its last gradient (the last
/// bucket's launch); `backward_end`: when the backward pass returned (after the Reducer waited
/// for every bucket), which bounds the completions not yet recorded.
fn comm_timing(
    times: &[crate::ext::BucketTime],
    backward_end: i64,
) -> Option<crate::metrics::records::CommTiming> {
    let last_grad = times.iter().map(|t| t.launched_ns).max()?;
    let first = times.iter().map(|t| t.launched_ns).min()?;
    let ms = |ns: i64| (ns - last_grad) as f64 / 1e6;
    let done: Vec<i64> = times
        .iter()
        .map(|t| {
            if t.done_ns > 0 {
                t.done_ns
            } else {
                backward_end
            }
        })
        .collect();
    Some(crate::metrics::records::CommTiming {
        tail_ms: ms(*done.iter().max()?),
        launch_ms: times.iter().map(|t| ms(t.launched_ns)).collect(),
        done_ms: done.iter().map(|&d| ms(d)).collect(),
        backward_span_ms: (last_grad - first) as f64 / 1e6,
    })
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
        let run = s.run;
        let mut opt = AdamW::new(
            s.objective.vars(),
            AdamWConfig {
                weight_decay: run.hyper.weight_decay,
                ..Default::default()
            },
        )?;
        let (step, cursor) = resume(&s.resume_from, s.objective.as_ref(), &mut opt)?;
        let mut parallel = s.parallel;
        // Every rank starts from rank 0's weights (fresh runs: one initialisation; resumed runs
        // loaded the same checkpoint, so this only guards against a mixed-up file system).
        parallel.broadcast_from_rank0(opt.params(), "broadcasting rank 0's weights")?;
        let buckets = s.runtime.buckets;
        if parallel.world > 1 {
            let autograd = s.runtime.step == crate::fused::StepKind::Autograd;

            if buckets.bucket_bytes > 0 {
                if autograd {
                    parallel.use_reducer(s.objective.vars(), buckets)?;
                } else {
                    parallel.use_fused_buckets(s.objective.vars(), opt.grads(), buckets)?;
                }
            } else if buckets.bf16 {
                bail!(
                    "--grad-comm bf16 needs the bucketed all-reduce: --bucket-mb above 0 (found --step {}, --bucket-mb 0)",
                    if autograd { "autograd" } else { "fused" },
                );
            }
        }
        if s.runtime.device.is_cuda() && s.objective.wants_bf16_weights() {
            // `--step fused`: the update writes the bf16 weights the next step's GEMMs read.
            s.objective
                .use_bf16_weights(opt.keep_bf16_copy(s.objective.vars())?);
        }
        let loader = Loader::start(
            Arc::new(s.epochs),
            Arc::new(s.decoder),
            LoaderConfig {
                seed: run.hyper.seed,
                batch_size: run.hyper.batch_size,
                window: run.hyper.shuffle_window,
                prefetch: s.runtime.prefetch,
                pad_id: s.pad_id,
                kind: s.batch_kind,
                repeat_last_epoch: run.hyper.repeat_last_epoch,
            },
            cursor,
        );
        let mut outputs = s.outputs;
        outputs.open_metrics(step, &s.runtime.tensorboard)?;
        let device = s.runtime.device;
        let peak_flops = s
            .runtime
            .peak_flops
            .or_else(|| gpu::name(device).and_then(|n| shared::cost::peak_flops(&n)));
        let bar = Progress::new(
            "trainer",
            run.total_steps,
            "updates",
            "{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}",
        );
        bar.start_at(step);
        Ok(Self {
            sched: LinearSchedule {
                peak: run.hyper.lr,
                warmup: run.hyper.warmup_steps,
                total: run.total_steps,
            },
            run,
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
            interval: Interval::new(),
            epoch_now: 0,
            cursor_now: cursor,
            lr_now: 0.0,
            parallel,
            allreduce_time: Duration::ZERO,
            started: Instant::now(),
            last_comm: None,
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

    pub fn run_record(&self) -> &RunRecord {
        &self.run
    }

    /// One update: `grad_accum` micro-batches forward and backward (dropout seeded from
    /// (seed, step)), then clipping, the AdamW step and the schedule. Losses and gradient norms
    /// stay on the device until the next sync.
    pub fn train_step(&mut self) -> anyhow::Result<()> {
        self.maybe_die();
        let k = self.run.hyper.grad_accum;
        let device = self.runtime.device;
        // Dropout masks (both steps): rank 0 keeps the single-process rule, the other ranks
        // differ from it.
        tch::manual_seed(crate::rng::dropout_seed(
            self.run.hyper.seed,
            self.parallel.rank,
            self.step,
        ));
        self.objective.begin_update(self.step, self.run.total_steps);
        let mut step_loss: Option<Tensor> = None;
        // With the Reducer the gradients are all-reduced during the last micro-batch's backward
        // pass and arrive averaged over the ranks: each rank's loss is scaled by the world size
        // so that the average is the sum the loss weights are made for (crate::parallel).
        let reducing = self.parallel.reduces_in_backward();
        // `--step fused --bucket-mb`: the hand-written backward starts the bucket all-reduces
        // (summing, as the flat all-reduce: no world factor).
        let fused_buckets = self.parallel.buckets_in_fused_backward();
        let world_factor = if reducing {
            self.parallel.world as f64
        } else {
            1.0
        };
        let mut backward_end = 0i64;
        for micro in 0..k {
            let t0 = Instant::now();
            let global = self.loader.next_batch()?;
            self.interval.wait += t0.elapsed();
            self.interval.rows += global.rows as u64;
            self.interval.tokens += global.real_tokens;
            self.interval.flops +=
                global.rows as f64 * self.objective.train_flops_per_row(global.len as u64);
            self.epoch_now = global.epoch;
            self.cursor_now = global.cursor_after;
            // `global` is the global micro-batch; this rank computes on its share, weighted so that
            // the sum over the ranks is the global batch's mean loss (crate::parallel).
            let mine = self.parallel.share(&global);
            let weight = self.parallel.loss_weight(&global, &mine);
            let mut batch = DeviceBatch::new(&mine, device);
            batch.masked_term_factor = self.parallel.masked_term_factor(&global, &mine);
            let mut scale = weight * world_factor / k as f64;
            if self.runtime.debug.nan_at_step == Some(self.step + 1) {
                scale = f64::NAN;
            }
            self.objective.prepare(&batch, true)?;
            let sync = (reducing || fused_buckets) && micro + 1 == k;
            if sync {
                self.parallel.before_sync_backward()?;
            }
            let objective = &self.objective;
            let out = match self.parallel.grad_ready() {
                Some(mut ready) => shared::runtime::device::with_autocast(device, || {
                    objective.train_micro_batch_telling(&batch, scale, &mut ready)
                }),
                None => shared::runtime::device::with_autocast(device, || {
                    objective.train_micro_batch(&batch, scale)
                }),
            };
            let out = match out {
                Ok(out) => out,
                Err(e) if sync => {
                    return Err(self.parallel.failed(
                        &format!(
                            "the backward pass of update {} and its bucketed gradient all-reduce",
                            self.step + 1
                        ),
                        e,
                    ))
                }
                Err(e) => return Err(e),
            };
            if sync {
                backward_end = crate::ext::now_ns();
                if reducing {
                    self.parallel
                        .after_sync_backward(self.run.objective.name(), self.step + 1)?;
                }
            }
            // The loss as today's semantics weigh it (the Reducer's factor taken out).
            let detached = if reducing {
                out.loss / world_factor
            } else {
                out.loss
            };
            step_loss = Some(match step_loss {
                Some(acc) => acc + detached,
                None => detached,
            });
            self.interval.add_counts(out.counts);
        }
        let timing = self.runtime.buckets.timing && self.parallel.world > 1;
        if reducing {
            if timing {
                self.last_comm = comm_timing(&self.parallel.take_bucket_times()?, backward_end);
            }
        } else if fused_buckets {
            // The buckets the backward started (and the rest), waited for before clipping.
            let t_sync = Instant::now();
            let times = self.parallel.finish_buckets(&format!(
                "the bucketed all-reduce of the gradients of update {}",
                self.step + 1
            ))?;
            self.allreduce_time += t_sync.elapsed();
            if timing {
                self.last_comm = comm_timing(&times, crate::ext::now_ns());
            }
        } else {
            let t_sync = Instant::now();
            let launched_ns = crate::ext::now_ns();
            self.parallel.sum(
                self.opt.grads(),
                &format!(
                    "the all-reduce of the gradients of update {}",
                    self.step + 1
                ),
            )?;
            self.allreduce_time += t_sync.elapsed();
            if timing {
                // One all-reduce, launched when the backward pass ended: all of it is tail.
                let done_ns = crate::ext::now_ns();
                let flat = crate::ext::BucketTime {
                    bucket: 0,
                    launched_ns,
                    done_ns,
                };
                self.last_comm = comm_timing(&[flat], done_ns);
            }
        }
        self.lr_now = self.sched.at(self.step);
        let norm = self
            .opt
            .clip_and_step(self.lr_now, self.run.hyper.clip_norm)?;
        self.opt.zero_grad();
        self.step += 1;
        self.interval
            .losses
            .push((self.step, step_loss.expect("grad_accum >= 1")));
        self.interval.grad_norms.push(norm);
        self.bar.set_position(self.step);
        Ok(())
    }

    /// Testing aid ([`super::config::DebugFlags::die_at_update`]): rank 1 SIGKILLs itself as
    /// update K starts, the first time only (a marker file in the run folder).
    fn maybe_die(&self) {
        let Some(k) = self.runtime.debug.die_at_update else {
            return;
        };
        if self.parallel.rank != 1 || self.step + 1 != k {
            return;
        }
        let marker = self.outputs.dir().join(format!(".test-died-at-update-{k}"));
        if marker.exists() {
            return;
        }
        if std::fs::write(&marker, b"").is_err() {
            return;
        }
        eprintln!(
            "trainer: rank 1: SIGKILL at update {k} ({})",
            super::config::DIE_AT_UPDATE_ENV
        );
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        std::thread::sleep(Duration::from_secs(60));
    }

    /// Syncs the interval (stopping on a non-finite loss or norm) and writes its metrics line.
    pub fn record_interval(&mut self) -> anyhow::Result<()> {
        self.interval.reduce_over_ranks(&mut self.parallel, true)?;
        let losses = self.interval.check_finite(&self.last_good)?;
        let counts = match self.interval.counts.take() {
            Some(t) => Counts::from_device(&t)?,
            None => Counts::default(),
        };
        let secs = self.interval.start.elapsed().as_secs_f64().max(1e-9);
        let device = self.runtime.device;
        if device.is_cuda() {
            self.peak_mem = self.peak_mem.max(gpu::memory_used(device));
        }
        let binary = self.objective.reports().positive_class.is_some();
        let figures = self.objective.take_figures();
        let interval = &self.interval;
        let record = TrainRecord {
            split: "train".into(),
            step: self.step,
            epoch: self.epoch_now,
            temperature: (self.temperatures.get(&self.epoch_now).copied().flatten())
                .or(figures.temperature),
            objective_figures: figures
                .own
                .into_iter()
                .map(|(name, v)| (name.to_string(), v))
                .collect(),
            lr: self.lr_now,
            loss: losses.iter().sum::<f64>() / losses.len() as f64,
            grad_norm: interval.last_grad_norm()?,
            accuracy: counts.accuracy(),
            precision: counts.precision().filter(|_| binary),
            recall: counts.recall().filter(|_| binary),
            f1: counts.f1().filter(|_| binary),
            seq_per_s: interval.rows as f64 / secs,
            tokens_per_s: interval.tokens as f64 / secs,
            mfu: self
                .peak_flops
                .map(|p| interval.flops / secs / (p * self.parallel.world as f64)),
            peak_memory_bytes: self.peak_mem,
            data_wait_fraction: interval.wait.as_secs_f64() / secs,
            allreduce: self.last_comm.take(),
        };
        self.bar.set_message(format!(
            "loss {:.4} acc {:.4}",
            record.loss, record.accuracy
        ));
        self.outputs.record(&record)?;
        self.interval = Interval::new();
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
        self.interval.reduce_over_ranks(&mut self.parallel, false)?;
        self.interval.check_finite(&self.last_good)?;
        self.check_weights(&format!(
            "checkpoint {}",
            checkpoint::folder_name(self.step)
        ))?;
        let state = TrainState {
            step: self.step,
            cursor: self.cursor_now,
            seed: self.run.hyper.seed,
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
        if self.parallel.writes() {
            // The last checkpoint checked them already; the export is never made of others.
            self.interval.check_finite(&self.last_good)?;
            self.check_weights("the export")?;
        }
        drop(self.loader);
        if self.parallel.world > 1 {
            let total = self.started.elapsed().as_secs_f64();
            let sync = self.allreduce_time.as_secs_f64();
            // One write, so that the ranks' lines do not interleave.
            let line = if self.parallel.buckets_in_fused_backward() {
                format!(
                    "trainer: rank {}: {} updates in {total:.2} s, {sync:.2} s of it waiting for the bucketed gradient all-reduce after the backward pass ({:.1}%)\n",
                    self.parallel.rank,
                    self.step - self.first_step,
                    100.0 * sync / total.max(1e-9)
                )
            } else if self.parallel.reduces_in_backward() {
                format!(
                    "trainer: rank {}: {} updates in {total:.2} s, the gradient all-reduce in buckets during the backward pass (--comm-timing times it)\n",
                    self.parallel.rank,
                    self.step - self.first_step,
                )
            } else {
                format!(
                    "trainer: rank {}: {} updates in {total:.2} s, {sync:.2} s of it in the gradient all-reduce ({:.1}%)\n",
                    self.parallel.rank,
                    self.step - self.first_step,
                    100.0 * sync / total.max(1e-9)
                )
            };
            eprint!("{line}");
        }
        if !self.parallel.writes() {
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
