//! `trainer dist-check`: checks and times the process group under a launcher (torchrun): an
//! all-reduce, a broadcast and a barrier of every rank, then the all-reduce's time and bus
//! bandwidth.
use anyhow::{bail, Context};
use clap::Args;
use std::time::Duration;
use tch::Tensor;

use crate::dist::{launch_from_env, Dist};
use crate::ext;

#[derive(Debug, Clone, Args)]
pub struct DistCheckArgs {
    /// fp32 elements all-reduced (the base model's gradient is 110M).
    #[arg(long, default_value_t = 1 << 20)]
    pub numel: i64,
    /// Timed all-reduces.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Device: auto (cuda:$LOCAL_RANK when CUDA is available: NCCL), cpu (Gloo), cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seconds to wait for the other ranks.
    #[arg(long, default_value_t = 120)]
    pub dist_timeout: u64,
}

/// `trainer dist-check`: joins the launched group, checks an all-reduce (each rank
/// contributes rank + 1), a broadcast and a barrier, then times `--iters` all-reduces.
pub fn run(args: &DistCheckArgs) -> anyhow::Result<()> {
    let l = launch_from_env()?.context(
        "trainer dist-check runs under a launcher: torchrun --nproc-per-node N --no-python trainer dist-check",
    )?;
    let f = args.device.trim().to_ascii_lowercase();
    let device = match f.as_str() {
        "auto" if tch::Cuda::is_available() => tch::Device::Cuda(l.local_rank),
        "auto" | "cpu" => tch::Device::Cpu,
        "cuda" => shared::runtime::device::parse_device(&format!("cuda:{}", l.local_rank))?,
        other => bail!("--device {other:?}: expected auto, cpu or cuda"),
    };
    let t0 = std::time::Instant::now();
    let mut d = Dist::init(&l, device.is_cuda(), Duration::from_secs(args.dist_timeout))?;
    let joined = t0.elapsed();
    let w = l.world_size as f64;
    let t = Tensor::full(
        [args.numel],
        (l.rank + 1) as f64,
        (tch::Kind::Float, device),
    );
    d.all_reduce_sum(&t, "the check all-reduce")?;
    let want = w * (w + 1.0) / 2.0;
    let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
    if lo != want || hi != want {
        bail!(
            "rank {}: all-reduce gave values in [{lo}, {hi}], expected {want}",
            l.rank
        );
    }
    let b = Tensor::full([4], l.rank as f64, (tch::Kind::Float, device));
    if l.rank == 0 {
        let _ = b.shallow_clone().fill_(42.0);
    }
    d.broadcast(&b, 0, "the check broadcast")?;
    if b.min().double_value(&[]) != 42.0 {
        bail!("rank {}: broadcast did not deliver rank 0's tensor", l.rank);
    }
    d.barrier("the check barrier")?;
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.iters {
        let t1 = std::time::Instant::now();
        d.all_reduce_sum(&t, &format!("timed all-reduce {i}"))?;
        if device.is_cuda() {
            tch::Cuda::synchronize(l.local_rank as i64);
        }
        times.push(t1.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let bytes = args.numel as f64 * 4.0;
    // Bus bandwidth as nccl-tests defines it for all-reduce: size x 2 (w - 1) / w / time.
    let bus = if median > 0.0 {
        bytes * 2.0 * (w - 1.0) / w / median / 1e9
    } else {
        0.0
    };
    eprintln!(
        "trainer dist-check: rank {} of {} ({}, {device:?}, NCCL compiled in: {}): joined in {:.2} s; all-reduce, broadcast, barrier ok; all-reduce of {} fp32 ({:.1} MB): median {:.3} ms over {} runs, bus bandwidth {bus:.2} GB/s",
        l.rank,
        l.world_size,
        if d.is_nccl() { "NCCL" } else { "Gloo" },
        ext::has_nccl(),
        joined.as_secs_f64(),
        args.numel,
        bytes / 1e6,
        median * 1e3,
        args.iters
    );
    Ok(())
}
