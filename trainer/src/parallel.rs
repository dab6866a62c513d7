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
//!
//! The sum happens in one of two ways. By default (`--bucket-mb` > 0, the autograd step) c10d's
//! DDP `Reducer` (`csrc/reducer.cpp`) all-reduces the gradients in buckets launched from
//! autograd's hooks during the last micro-batch's backward pass; it *averages*, so the trainer
//! multiplies each rank's loss weight by the world size ([`Parallel::reduces_in_backward`]).
//! With `--step fused` (and `--bucket-mb` > 0) the hand-written backward starts bucket
//! all-reduces itself as it finishes layers (`crate::buckets`; summing, as the flat path).
//! Otherwise [`Parallel::sum`] all-reduces the flat gradient buffer after the backward pass.
use anyhow::bail;
use std::time::Duration;
use tch::{Device, Tensor};

use crate::buckets::FusedBuckets;
use crate::dist::{Dist, Launch};
use crate::ext::{BucketTime, Reducer, ReducerOptions};
use crate::loader::HostBatch;

/// This process's place in the run.
pub struct Parallel {
    pub rank: usize,
    pub world: usize,
    dist: Option<Dist>,
    /// `--bucket-mb`: the gradients are all-reduced in buckets during the backward pass.
    reducer: Option<Reducer>,
    /// The Reducer's parameters' names, in its order.
    reducer_names: Vec<String>,
    /// `--step fused --bucket-mb`: likewise, started by the hand-written backward.
    fused_buckets: Option<FusedBuckets>,
}

impl Parallel {
    /// A single process.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            dist: None,
            reducer: None,
            reducer_names: Vec::new(),
            fused_buckets: None,
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
            reducer: None,
            reducer_names: Vec::new(),
            fused_buckets: None,
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

    /// The factor of a corrupting objective's MLM term (`DeviceBatch::masked_term_factor`):
    /// [`Parallel::loss_weight`] weighs by real tokens, the MLM term of electra is a mean over
    /// the masked positions, so it is multiplied by this rank's share of the global batch's
    /// masked positions over its share of the real tokens. 1 in one process and for batches
    /// without such a term.
    pub fn masked_term_factor(&self, global: &HostBatch, mine: &HostBatch) -> f64 {
        if self.world == 1 {
            return 1.0;
        }
        match (global.masked_positions(), mine.masked_positions()) {
            (Some(g), Some(m)) => {
                let real = self.loss_weight(global, mine);
                if real > 0.0 {
                    m as f64 / g.max(1) as f64 / real
                } else {
                    0.0
                }
            }
            _ => 1.0,
        }
    }

    /// Builds c10d's DDP Reducer over the trainable variables of `vars` (more than one rank
    /// only): from then on [`Parallel::before_sync_backward`] precedes the last micro-batch's
    /// backward of each update, whose gradients arrive averaged over the ranks.
    pub fn use_reducer(
        &mut self,
        vars: &tch::nn::VarStore,
        opts: ReducerOptions,
    ) -> anyhow::Result<()> {
        let Some(d) = &self.dist else {
            return Ok(());
        };
        if self.world == 1 {
            return Ok(());
        }
        let mut named: Vec<(String, Tensor)> = vars
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        // Forward order, as DDP assumes of registration order: the buckets are formed from it
        // and launched in reverse, the last layers' gradients being ready first.
        named.sort_by_cached_key(|(n, _)| forward_order(n));
        let (names, params): (Vec<String>, Vec<Tensor>) = named.into_iter().unzip();
        let r = d.reducer(&params, &names, opts)?;
        self.reducer_names = names;
        if self.rank == 0 {
            eprintln!(
                "trainer: gradients all-reduced during the backward pass by c10d's Reducer: {} bucket(s) of at most {:.2} MB{}",
                r.buckets(),
                opts.bucket_bytes as f64 / 1e6,
                if opts.bf16 { ", sent in bf16" } else { "" }
            );
        }
        self.reducer = Some(r);
        Ok(())
    }

    /// `--step fused`: all-reduces the gradients of `vars` (views into `flat`, the optimizer's
    /// flat gradient buffer) in buckets of whole layers of at most `opts.bucket_bytes`, started
    /// by the hand-written backward pass of the synchronising micro-batch (more than one rank
    /// only): [`Parallel::before_sync_backward`], [`Parallel::grad_ready`] for the backward,
    /// then [`Parallel::finish_buckets`].
    pub fn use_fused_buckets(
        &mut self,
        vars: &tch::nn::VarStore,
        flat: &Tensor,
        opts: ReducerOptions,
    ) -> anyhow::Result<()> {
        if self.dist.is_none() || self.world == 1 {
            return Ok(());
        }
        let b = FusedBuckets::new(
            crate::buckets::named_grads(vars)?,
            flat,
            opts.bucket_bytes,
            opts.bf16,
            opts.timing,
        )?;
        if self.rank == 0 {
            eprintln!(
                "trainer: gradients all-reduced during the hand-written backward pass: {} bucket(s) of whole layers of at most {:.2} MB ({} in place, {} copied){}: {}",
                b.len(),
                opts.bucket_bytes as f64 / 1e6,
                b.in_place(),
                b.len() - b.in_place(),
                if opts.bf16 { ", sent in bf16" } else { "" },
                b.describe()
            );
        }
        self.fused_buckets = Some(b);
        Ok(())
    }

    /// Whether the hand-written backward starts the all-reduce in buckets.
    pub fn buckets_in_fused_backward(&self) -> bool {
        self.fused_buckets.is_some()
    }

    /// What the synchronising micro-batch's hand-written backward tells as it finishes
    /// layers (armed by [`Parallel::before_sync_backward`]); None otherwise.
    pub fn grad_ready(&mut self) -> Option<crate::buckets::Ready<'_>> {
        match (&mut self.fused_buckets, &self.dist) {
            (Some(b), Some(d)) if b.armed() => Some(b.ready(d)),
            _ => None,
        }
    }

    /// After the synchronising micro-batch: waits for the bucket all-reduces of
    /// [`Parallel::use_fused_buckets`] (starting those the backward did not); their times.
    pub fn finish_buckets(&mut self, what: &str) -> anyhow::Result<Vec<BucketTime>> {
        match (&mut self.fused_buckets, &mut self.dist) {
            (Some(b), Some(d)) => b.finish(d, what),
            _ => Ok(Vec::new()),
        }
    }

    /// Refuses to start when this rank's gradient communication (`what`: `--step`,
    /// `--bucket-mb`, `--grad-comm`) differs from rank 0's: the ranks' collectives would not
    /// match.
    pub fn check_same_comm(&mut self, what: String) -> anyhow::Result<()> {
        let theirs = self.shared_from_rank0("grad-comm", what.clone())?;
        if theirs != what {
            bail!(
                "rank {}: the ranks were started with different gradient communication: rank 0 has {theirs}, this rank {what}",
                self.rank
            );
        }
        Ok(())
    }

    /// Whether the Reducer all-reduces the gradients during the backward pass (averaging them).
    pub fn reduces_in_backward(&self) -> bool {
        self.reducer.is_some()
    }

    /// Before the forward and backward pass whose gradients are to be all-reduced (the last
    /// micro-batch of an update); the earlier ones only accumulate (DDP's no_sync).
    pub fn before_sync_backward(&mut self) -> anyhow::Result<()> {
        if let Some(b) = &mut self.fused_buckets {
            b.arm();
        }
        let Some(r) = &mut self.reducer else {
            return Ok(());
        };
        let before = r.buckets();
        r.prepare()?;
        if r.buckets() != before && self.rank == 0 {
            eprintln!(
                "trainer: the Reducer re-formed its buckets in the order the gradients became ready: {} bucket(s)",
                r.buckets()
            );
        }
        Ok(())
    }

    /// After the synchronising backward pass of update `update`: refuses to go on when the
    /// Reducer did not finish it because some parameter got no gradient (DDP's
    /// find_unused_parameters case: its buckets were not all-reduced), naming the objective, the
    /// parameters and the flag that avoids the Reducer.
    pub fn after_sync_backward(&mut self, objective: &str, update: u64) -> anyhow::Result<()> {
        let Some(r) = &mut self.reducer else {
            return Ok(());
        };
        let Err(e) = r.check_finished() else {
            return Ok(());
        };
        let unused = unused_parameters(&format!("{e:#}"), &self.reducer_names);
        bail!(
            "rank {}: --objective {objective}: {} parameter(s) got no gradient in the backward pass of update {update} ({}), but the bucketed all-reduce of --step autograd (c10d's DDP Reducer, --bucket-mb above 0) needs every parameter's gradient in every update: run with --bucket-mb 0 (one flat all-reduce after the backward pass). c10d: {e:#}",
            self.rank,
            unused.len(),
            if unused.is_empty() {
                "see c10d's message".to_string()
            } else {
                unused.join(", ")
            }
        );
    }

    /// The Reducer's bucket times of the last synchronised backward pass (timing on).
    pub fn take_bucket_times(&mut self) -> anyhow::Result<Vec<BucketTime>> {
        match &mut self.reducer {
            Some(r) => r.take_times(),
            None => Ok(Vec::new()),
        }
    }

    /// The error of a failed collective inside an operation (`what`): this rank, c10d's message
    /// and the ranks whose heartbeat stopped (crate::dist).
    pub fn failed(&mut self, what: &str, e: anyhow::Error) -> anyhow::Error {
        match &mut self.dist {
            Some(d) => d.failed(what, e),
            None => e.context(what.to_string()),
        }
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

/// A parameter's place in the forward pass, from its name: embeddings first, then the encoder
/// layers by number, then the rest (heads), each group by name.
fn forward_order(name: &str) -> (u8, u64, String) {
    let parts: Vec<&str> = name.split('.').collect();
    let layer = parts
        .windows(2)
        .find(|w| w[0] == "layer" || w[0] == "layers")
        .and_then(|w| w[1].parse::<u64>().ok());
    match layer {
        _ if name.contains("embeddings") => (0, 0, name.to_string()),
        Some(l) => (1, l, name.to_string()),
        None => (2, 0, name.to_string()),
    }
}

/// The names of the parameters c10d's Reducer lists as without gradient in its error
/// ("... did not receive grad for rank R: 3 7 ..."; indices into `names`).
fn unused_parameters(message: &str, names: &[String]) -> Vec<String> {
    let Some(at) = message.find("did not receive grad for rank") else {
        return Vec::new();
    };
    let rest = &message[at..];
    let Some(colon) = rest.find(':') else {
        return Vec::new();
    };
    rest[colon + 1..]
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map_while(|t| t.parse::<usize>().ok())
        .map(|i| names.get(i).cloned().unwrap_or_else(|| format!("#{i}")))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reducers_unused_parameters_are_named() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let m = "Expected to have finished reduction in the prior iteration before starting a new one. ... Parameter indices which did not receive grad for rank 1: 0 2\n In addition, you can set the environment variable TORCH_DISTRIBUTED_DEBUG to either INFO or DETAIL";
        assert_eq!(unused_parameters(m, &names), vec!["a", "c"]);
        assert!(unused_parameters("something else: 1", &names).is_empty());
    }

    /// Two Gloo ranks in threads, a Reducer over `used.weight` and `unused.weight`; the loss
    /// reads only the first: the check after the backward pass refuses, naming the objective,
    /// the parameter and `--bucket-mb 0`.
    #[test]
    fn a_parameter_without_gradient_stops_the_reducer_with_a_clear_error() {
        let port = crate::dist::tests::free_port();
        let rank = move |rank: usize| -> String {
            let l = crate::dist::tests::launch(rank, port);
            let mut p = Parallel::join(&l, Device::Cpu, Duration::from_secs(30)).unwrap();
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let used = vs.root().sub("used").ones("weight", &[4]);
            let _unused = vs.root().sub("unused").ones("weight", &[4]);
            p.use_reducer(
                &vs,
                ReducerOptions {
                    bucket_bytes: 1 << 20,
                    bf16: false,
                    timing: false,
                },
            )
            .unwrap();
            p.before_sync_backward().unwrap();
            (&used * 2.0).sum(tch::Kind::Float).backward();
            p.after_sync_backward("test", 1).unwrap_err().to_string()
        };
        let peer = std::thread::spawn(move || rank(1));
        let e0 = rank(0);
        let e1 = peer.join().unwrap();
        for e in [e0, e1] {
            assert!(
                e.contains("--objective test: 1 parameter(s) got no gradient")
                    && e.contains("update 1 (unused.weight)")
                    && e.contains("--bucket-mb 0"),
                "{e}"
            );
        }
    }

    #[test]
    fn parameters_sort_in_forward_order() {
        let mut names = vec![
            "discriminator_predictions.dense.weight",
            "electra.encoder.layer.10.output.dense.bias",
            "electra.encoder.layer.2.attention.self.query.weight",
            "electra.embeddings.word_embeddings.weight",
            "electra.encoder.layer.0.output.LayerNorm.weight",
        ];
        names.sort_by_cached_key(|n| forward_order(n));
        assert_eq!(
            names,
            [
                "electra.embeddings.word_embeddings.weight",
                "electra.encoder.layer.0.output.LayerNorm.weight",
                "electra.encoder.layer.2.attention.self.query.weight",
                "electra.encoder.layer.10.output.dense.bias",
                "discriminator_predictions.dense.weight",
            ]
        );
    }
}
