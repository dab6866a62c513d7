//! What the loop accumulates between two metrics lines, and the finiteness check of the
//! losses and gradient norms at each host sync.
use anyhow::bail;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

use crate::parallel::Parallel;

/// Interval accumulators between two log lines.
pub struct Interval {
    pub start: Instant,
    /// Time spent waiting for the loader.
    pub wait: Duration,
    pub rows: u64,
    /// Real (non-padding) tokens.
    pub tokens: u64,
    /// Training FLOPs of the micro-batches (objective's count at their padded length).
    pub flops: f64,
    /// (update number, loss) on the device, checked for finiteness at the next sync.
    pub losses: Vec<(u64, Tensor)>,
    pub grad_norms: Vec<Tensor>,
    /// Sum of the micro-batches' metric counts (device 5-vector).
    pub counts: Option<Tensor>,
    /// Leading entries of `losses` already summed over the ranks.
    pub losses_reduced: usize,
}

impl Interval {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            wait: Duration::ZERO,
            rows: 0,
            tokens: 0,
            flops: 0.0,
            losses: vec![],
            grad_norms: vec![],
            counts: None,
            losses_reduced: 0,
        }
    }

    /// Data-parallel runs: sums over the ranks, in one all-reduce, the losses not summed yet
    /// (each rank holds its weighted share of every update's loss) and, with `counts`, the
    /// metric counts, so that every rank sees the global values (and stops on the same
    /// non-finite one). Nothing to do in a single process.
    pub fn reduce_over_ranks(
        &mut self,
        parallel: &mut Parallel,
        counts: bool,
    ) -> anyhow::Result<()> {
        if parallel.world == 1 {
            return Ok(());
        }
        let mut parts: Vec<Tensor> = self.losses[self.losses_reduced..]
            .iter()
            .map(|(_, t)| t.to_kind(Kind::Double).view([1]))
            .collect();
        let n = parts.len() as i64;
        let c = if counts { self.counts.take() } else { None };
        if let Some(c) = &c {
            parts.push(c.to_kind(Kind::Double).view([-1]));
        }
        if parts.is_empty() {
            return Ok(());
        }
        let flat = Tensor::cat(&parts, 0);
        let step = self.losses.last().map_or(0, |(s, _)| *s);
        parallel.sum(
            &flat,
            &format!("the all-reduce of the losses and metrics up to update {step}"),
        )?;
        for (i, entry) in self.losses[self.losses_reduced..].iter_mut().enumerate() {
            entry.1 = flat.get(i as i64);
        }
        self.losses_reduced = self.losses.len();
        if let Some(c) = c {
            self.counts = Some(flat.narrow(0, n, flat.size()[0] - n).to_kind(c.kind()));
        }
        Ok(())
    }

    /// Adds a micro-batch's counts.
    pub fn add_counts(&mut self, counts: Tensor) {
        self.counts = Some(match self.counts.take() {
            Some(c) => c + counts,
            None => counts,
        });
    }

    /// Syncs the interval's losses and gradient norms to the host; the first non-finite one
    /// stops the run, naming the step and the last good checkpoint.
    pub fn check_finite(&self, last_good: &Option<PathBuf>) -> anyhow::Result<Vec<f64>> {
        if self.losses.is_empty() {
            return Ok(vec![]);
        }
        let host = |ts: Vec<Tensor>| -> anyhow::Result<Vec<f64>> {
            let t = Tensor::stack(&ts, 0)
                .to_kind(Kind::Double)
                .to_device(Device::Cpu);
            Ok(Vec::<f64>::try_from(&t)?)
        };
        let losses = host(self.losses.iter().map(|(_, t)| t.shallow_clone()).collect())?;
        let norms = host(self.grad_norms.iter().map(|t| t.shallow_clone()).collect())?;
        for ((step, _), (l, n)) in self.losses.iter().zip(losses.iter().zip(&norms)) {
            if !l.is_finite() || !n.is_finite() {
                bail!(
                    "non-finite {} ({}) at step {step}: the run stopped; the last good checkpoint is {}",
                    if l.is_finite() { "gradient norm" } else { "loss" },
                    if l.is_finite() { n } else { l },
                    last_good.as_ref().map_or(
                        "none (no checkpoint was written yet)".to_string(),
                        |p| p.display().to_string()
                    )
                );
            }
        }
        Ok(losses)
    }

    /// The last update's gradient norm (host sync).
    pub fn last_grad_norm(&self) -> anyhow::Result<f64> {
        let Some(t) = self.grad_norms.last() else {
            return Ok(f64::NAN);
        };
        Ok(t.to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .double_value(&[]))
    }
}
