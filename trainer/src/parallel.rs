//! What data-parallel training adds to the loop, in one place: the launched group (or a
//! single process), each rank's share of the global batch, the loss weights that make the
//! averaged gradient equal to a single process's on the global batch, the gradient all-reduce,
//! the initial broadcast and the agreement on the run's configuration.
//!
//! The arithmetic: the objectives return a micro-batch's *mean* loss over its terms (real
//! tokens for RTD, masked positions for MLM). Rank r's share holds n_r of the global batch's N
//! terms, so it weights its mean by n_r / N and the ranks' gradients are *summed*: the sum is
//! exactly the gradient of the global batch's mean loss, whatever the padding and however the
//! terms fall between ranks. The loader yields global batches (`--batch-size` x world size rows,
//! in the one order the seed gives) and every rank takes its rows from them, so the data cursor
//! in a checkpoint is global and a run resumes on another number of ranks.
use anyhow::bail;
use std::time::Duration;
use tch::{Device, Tensor};

use crate::dist::{Dist, Launch};
use crate::loader::HostBatch;

/// This process's place in the run.
pub struct Parallel {
    pub rank: usize,
    pub world: usize,
    dist: Option<Dist>,
}

impl Parallel {
    /// A single process.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            dist: None,
        }
    }

    /// Joins the launched group (Gloo on the CPU, NCCL on CUDA).
    pub fn join(l: &Launch, device: Device, timeout: Duration) -> anyhow::Result<Self> {
        let dist = Dist::init(l, device.is_cuda(), timeout)?;
        // One write, so that the ranks' lines do not interleave.
        let line = format!(
            "trainer: rank {} of {} (pid {}, local rank {}, device {device:?}, {}; global batch = {} ranks x --batch-size)\n",
            l.rank,
            l.world_size,
            std::process::id(),
            l.local_rank,
            if dist.is_nccl() { "NCCL" } else { "Gloo" },
            l.world_size
        );
        eprint!("{line}");
        Ok(Self {
            rank: l.rank,
            world: l.world_size,
            dist: Some(dist),
        })
    }

    /// Whether this process writes the run's outputs (rank 0).
    pub fn writes(&self) -> bool {
        self.rank == 0
    }

    /// This rank's rows of a global batch.
    pub fn share(&self, global: &HostBatch) -> HostBatch {
        global.shard(self.rank, self.world)
    }

    /// The weight of this rank's mean loss: its share of the global batch's loss terms.
    pub fn loss_weight(&self, global: &HostBatch, mine: &HostBatch) -> f64 {
        if self.world == 1 {
            return 1.0;
        }
        mine.loss_terms() as f64 / global.loss_terms().max(1) as f64
    }

    /// Sums `t` over the ranks (nothing to do in a single process).
    pub fn sum(&mut self, t: &Tensor, what: &str) -> anyhow::Result<()> {
        match &mut self.dist {
            Some(d) if self.world > 1 => d.all_reduce_sum(t, what),
            _ => Ok(()),
        }
    }

    /// Copies rank 0's `t` to every rank.
    pub fn broadcast_from_rank0(&mut self, t: &Tensor, what: &str) -> anyhow::Result<()> {
        match &mut self.dist {
            Some(d) => d.broadcast(t, 0, what),
            None => Ok(()),
        }
    }

    /// Rank 0's `value` on every rank.
    pub fn shared_from_rank0(&mut self, key: &str, value: String) -> anyhow::Result<String> {
        match &mut self.dist {
            Some(d) => Ok(
                String::from_utf8_lossy(&d.share_from_rank0(key, value.as_bytes())?).into_owned(),
            ),
            None => Ok(value),
        }
    }

    /// Refuses to start when this rank's resolved configuration (flags, data fingerprints,
    /// model) differs from rank 0's, naming the first differing field.
    pub fn check_same_config(&mut self, config: &serde_json::Value) -> anyhow::Result<()> {
        let mine = serde_json::to_string(config)?;
        let theirs = self.shared_from_rank0("run-config", mine)?;
        let theirs: serde_json::Value = serde_json::from_str(&theirs)?;
        if let (Some(a), Some(b)) = (theirs.as_object(), config.as_object()) {
            for (key, va) in a {
                let vb = b.get(key).unwrap_or(&serde_json::Value::Null);
                if va != vb {
                    bail!(
                        "rank {}: the ranks were started with different settings: field {key} ({}): rank 0 has {va}, this rank {vb}",
                        self.rank,
                        flag_of(key)
                    );
                }
            }
        }
        Ok(())
    }
}

/// The flag behind a field of the run configuration, for error messages.
fn flag_of(field: &str) -> String {
    match field {
        "data" => "--shards: the data folders or their manifests".into(),
        "validation" => "--validation".into(),
        "model_config" => "--model".into(),
        "batch_size" => "--batch-size x world size".into(),
        "total_steps" => "--max-steps, or the data it implies".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}
