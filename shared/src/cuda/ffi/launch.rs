//! The typed launch of every kernel (rule 3 of [`super`]): each wrapper checks every tensor it
//! passes (CUDA, on the kernel's device, contiguous, of the kind and at least the number of
//! elements the kernel indexes, computed from the same integers it passes) before calling the
//! private `Kernels::launch`. No `unsafe` here.
#![deny(unsafe_code)]

use super::{Arg, Kernels};
use anyhow::bail;
use tch::{Device, Kind, Tensor};

/// Checks `t` for a kernel parameter (rule 3) and returns its device address.
fn ptr(t: &Tensor, device: Device, kind: Kind, at_least: i64, what: &str) -> anyhow::Result<Arg> {
    if t.device() != device {
        bail!(
            "{what}: expected a tensor on {device:?}, found {:?}",
            t.device()
        );
    }
    if t.kind() != kind {
        bail!("{what}: expected {kind:?}, found {:?}", t.kind());
    }
    if !t.is_contiguous() {
        bail!("{what}: expected a contiguous tensor");
    }
    if t.numel() < at_least as usize {
        bail!(
            "{what}: expected at least {at_least} elements, found {}",
            t.numel()
        );
    }
    Ok(Arg::Ptr(t.data_ptr() as u64))
}

/// [`ptr`] of an optional tensor (a null pointer for None: the kernel reads it as 0).
fn opt_ptr(
    t: Option<&Tensor>,
    device: Device,
    kind: Kind,
    at_least: i64,
    what: &str,
) -> anyhow::Result<Arg> {
    t.map_or(Ok(Arg::Ptr(0)), |t| ptr(t, device, kind, at_least, what))
}

/// Blocks of a kernel with one block per row: `n` (0 launches nothing), at most the grid's
/// 2^31 - 1.
pub fn row_blocks(n: i64) -> anyhow::Result<u32> {
    if !(0..=i32::MAX as i64).contains(&n) {
        bail!("{n} rows: expected 0 to {} (one block per row)", i32::MAX);
    }
    Ok(n as u32)
}

fn cuda_index(t: &Tensor) -> anyhow::Result<(Device, usize)> {
    match t.device() {
        Device::Cuda(i) => Ok((t.device(), i)),
        d => bail!("CUDA kernels need CUDA tensors, found {d:?}"),
    }
}

/// Threads per block of the row kernels (a power of two: block_sum's tree needs it).
pub const ROW_THREADS: u32 = 256;
/// Ids per tile of the sampler (its block size).
pub const SAMPLER_TILE: i64 = 256;

const BF16: Kind = Kind::BFloat16;
const F32: Kind = Kind::Float;
const I64: Kind = Kind::Int64;

/// A dropout site: rate, seed, site number (rate 0: no dropout).
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
    pub site: u64,
}

fn row_smem(c: i64) -> u32 {
    ((c + ROW_THREADS as i64) * 4) as u32
}

/// `embed_ln_fwd`: ids [N] (rows of S), tables fp32 -> y [N, C] fp32 and its bf16 copy yc,
/// mean/rstd [N] fp32.
#[allow(clippy::too_many_arguments)]
pub fn embed_ln_fwd(
    ids: &Tensor,
    word: &Tensor,
    pos: &Tensor,
    typ: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
    yc: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    s: i64,
    eps: f64,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(ids)?;
    let n = ids.numel() as i64;
    let c = w.numel() as i64;
    let k = Kernels::get(i)?;
    // The ids index the word table: the kernel bounds them by V itself (no host sync).
    let v = word.size()[0];
    if pos.size()[0] < s {
        bail!(
            "embed_ln_fwd: {s} positions, the table has {}",
            pos.size()[0]
        );
    }
    let args = [
        ptr(ids, dev, I64, n, "ids")?,
        ptr(word, dev, F32, v * c, "word")?,
        ptr(pos, dev, F32, s * c, "pos")?,
        ptr(typ, dev, F32, c, "typ")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(b, dev, F32, c, "b")?,
        ptr(y, dev, F32, n * c, "y")?,
        ptr(yc, dev, BF16, n * c, "yc")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        Arg::I32(s as i32),
        Arg::I32(c as i32),
        Arg::I64(v),
        Arg::F32(eps as f32),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "embed_ln_fwd",
        row_blocks(n)?,
        ROW_THREADS,
        row_smem(c),
        &args,
    )
}

/// `embed_ln_bwd`: the output's gradient dy [N, C] fp32 + dyc [N, C] bf16 (either may be None)
/// -> dx [N, C] fp32 (the LN input's gradient).
#[allow(clippy::too_many_arguments)]
pub fn embed_ln_bwd(
    dy: Option<&Tensor>,
    dyc: Option<&Tensor>,
    ids: &Tensor,
    word: &Tensor,
    pos: &Tensor,
    typ: &Tensor,
    w: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    s: i64,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(ids)?;
    let n = ids.numel() as i64;
    let c = w.numel() as i64;
    let v = word.size()[0];
    let k = Kernels::get(i)?;
    if pos.size()[0] < s {
        bail!(
            "embed_ln_bwd: {s} positions, the table has {}",
            pos.size()[0]
        );
    }
    let args = [
        opt_ptr(dy, dev, F32, n * c, "dy")?,
        opt_ptr(dyc, dev, BF16, n * c, "dyc")?,
        ptr(ids, dev, I64, n, "ids")?,
        ptr(word, dev, F32, v * c, "word")?,
        ptr(pos, dev, F32, s * c, "pos")?,
        ptr(typ, dev, F32, c, "typ")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        ptr(dx, dev, F32, n * c, "dx")?,
        Arg::I32(s as i32),
        Arg::I32(c as i32),
        Arg::I64(v),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "embed_ln_bwd",
        row_blocks(n)?,
        ROW_THREADS,
        ROW_THREADS * 4,
        &args,
    )
}

/// `residual_ln_fwd`: branch [N, C] bf16 (a GEMM output), residual [N, C] fp32 -> y [N, C] fp32,
/// its bf16 copy yc, the LN input xs [N, C] fp32, mean, rstd [N].
#[allow(clippy::too_many_arguments)]
pub fn residual_ln_fwd(
    branch: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
    yc: &Tensor,
    xs: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    eps: f64,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(branch)?;
    let c = w.numel() as i64;
    let n = branch.numel() as i64 / c.max(1);
    let k = Kernels::get(i)?;
    let args = [
        ptr(branch, dev, BF16, n * c, "branch")?,
        ptr(bias, dev, F32, c, "bias")?,
        ptr(residual, dev, F32, n * c, "residual")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(b, dev, F32, c, "b")?,
        ptr(y, dev, F32, n * c, "y")?,
        ptr(yc, dev, BF16, n * c, "yc")?,
        ptr(xs, dev, F32, n * c, "xs")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        Arg::I32(c as i32),
        Arg::F32(eps as f32),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "residual_ln_fwd",
        row_blocks(n)?,
        ROW_THREADS,
        row_smem(c),
        &args,
    )
}

/// `residual_ln_bwd`: the output's gradient dy [N, C] fp32 + dyc [N, C] bf16 (either may be
/// None), xs [N, C] fp32 -> dx [N, C] fp32 (the residual's gradient), dbranch [N, C] bf16.
#[allow(clippy::too_many_arguments)]
pub fn residual_ln_bwd(
    dy: Option<&Tensor>,
    dyc: Option<&Tensor>,
    xs: &Tensor,
    w: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    dbranch: &Tensor,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(xs)?;
    let c = w.numel() as i64;
    let n = xs.numel() as i64 / c.max(1);
    let k = Kernels::get(i)?;
    let args = [
        opt_ptr(dy, dev, F32, n * c, "dy")?,
        opt_ptr(dyc, dev, BF16, n * c, "dyc")?,
        ptr(xs, dev, F32, n * c, "xs")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        ptr(dx, dev, F32, n * c, "dx")?,
        ptr(dbranch, dev, BF16, n * c, "dbranch")?,
        Arg::I32(c as i32),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "residual_ln_bwd",
        row_blocks(n)?,
        ROW_THREADS,
        ROW_THREADS * 4,
        &args,
    )
}

/// Rows per chunk of the column reductions (their partial sums are then added in order): 32,
/// so that a base-sized step (16,384 rows of 768) has 1,536 blocks of 32 serial rows each.
pub const CHUNK_ROWS: i64 = 32;

/// Chunks of [`CHUNK_ROWS`] rows of `n` rows.
pub fn chunks_of(n: i64) -> i64 {
    (n + CHUNK_ROWS - 1) / CHUNK_ROWS
}

/// `ln_param_grads`: g = dy [N, C] fp32 + dyc [N, C] bf16 (either may be None), xs [N, C]
/// fp32, mean/rstd [N] -> [2, C] fp32: dw (sum_rows g * xhat), then db (sum_rows g), partial
/// sums over chunks of rows summed in order (one allocation, which the kernel writes whole, and
/// one sum). No rows: zeros, no launch.
pub fn ln_param_grads(
    dy: Option<&Tensor>,
    dyc: Option<&Tensor>,
    xs: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    c: i64,
) -> anyhow::Result<Tensor> {
    let (dev, i) = cuda_index(xs)?;
    let n = xs.numel() as i64 / c.max(1);
    let chunks = chunks_of(n);
    let k = Kernels::get(i)?;
    let part = Tensor::empty([2, chunks, c], (F32, dev));
    let args = [
        opt_ptr(dy, dev, F32, n * c, "dy")?,
        opt_ptr(dyc, dev, BF16, n * c, "dyc")?,
        ptr(xs, dev, F32, n * c, "xs")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        ptr(&part, dev, F32, 2 * chunks * c, "partials")?,
        Arg::I64(n),
        Arg::I32(c as i32),
        Arg::I64(CHUNK_ROWS),
    ];
    let blocks = (c as u32).div_ceil(ROW_THREADS);
    k.launch(
        "ln_param_grads",
        (blocks, chunks as u32),
        ROW_THREADS,
        0,
        &args,
    )?;
    Ok(part.sum_dim_intlist(1, false, F32))
}

/// `col_sum_bf16`: x [N, C] bf16 -> out [C] fp32 (partial sums as [`ln_param_grads`]).
pub fn col_sum(x: &Tensor, out: &Tensor) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(x)?;
    let c = out.numel() as i64;
    let n = x.numel() as i64 / c.max(1);
    let chunks = chunks_of(n);
    let k = Kernels::get(i)?;
    let part = Tensor::empty([chunks, c], (F32, dev));
    let args = [
        ptr(x, dev, BF16, n * c, "x")?,
        ptr(&part, dev, F32, chunks * c, "partials")?,
        Arg::I64(n),
        Arg::I32(c as i32),
        Arg::I64(CHUNK_ROWS),
    ];
    let blocks = (c as u32).div_ceil(ROW_THREADS);
    k.launch(
        "col_sum_bf16",
        (blocks, chunks as u32),
        ROW_THREADS,
        0,
        &args,
    )?;
    out.shallow_clone().copy_(
        &part
            .sum_dim_intlist(0, false, F32)
            .view(out.size().as_slice()),
    );
    Ok(())
}

/// `dropout_mask`: the scaled keep mask (fp32) the kernels use for `drop`, over `out`.
pub fn dropout_mask(out: &Tensor, drop: Dropout) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(out)?;
    let n = out.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(out, dev, F32, n, "out")?,
        Arg::I64(n),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "dropout_mask",
        row_blocks((n + ROW_THREADS as i64 - 1) / ROW_THREADS as i64)?,
        ROW_THREADS,
        0,
        &args,
    )
}

fn grid_stride_blocks(n: i64) -> u32 {
    (n as u64).div_ceil(ROW_THREADS as u64).min(65_535) as u32
}

/// `bias_gelu_fwd`: y = gelu(x + bias), x, y [N, C] bf16.
pub fn bias_gelu_fwd(x: &Tensor, bias: &Tensor, y: &Tensor) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(x)?;
    let c = bias.numel() as i64;
    let n = x.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(x, dev, BF16, n, "x")?,
        ptr(bias, dev, F32, c, "bias")?,
        ptr(y, dev, BF16, n, "y")?,
        Arg::I64(n),
        Arg::I32(c as i32),
    ];
    k.launch(
        "bias_gelu_fwd",
        grid_stride_blocks(n),
        ROW_THREADS,
        0,
        &args,
    )
}

/// `bias_gelu_bwd`: dx = dy gelu'(x + bias).
pub fn bias_gelu_bwd(dy: &Tensor, x: &Tensor, bias: &Tensor, dx: &Tensor) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(x)?;
    let c = bias.numel() as i64;
    let n = x.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(dy, dev, BF16, n, "dy")?,
        ptr(x, dev, BF16, n, "x")?,
        ptr(bias, dev, F32, c, "bias")?,
        ptr(dx, dev, BF16, n, "dx")?,
        Arg::I64(n),
        Arg::I32(c as i32),
    ];
    k.launch(
        "bias_gelu_bwd",
        grid_stride_blocks(n),
        ROW_THREADS,
        0,
        &args,
    )
}

/// `rtd_loss`: z, t [N] fp32, real [N] i64 -> loss [1], dz [N] fp32.
pub fn rtd_loss(
    z: &Tensor,
    t: &Tensor,
    real: &Tensor,
    loss: &Tensor,
    dz: &Tensor,
    scale: f32,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(z)?;
    let n = z.numel() as i64;
    if n == 0 {
        // No token: the loss of an empty batch is 0 (no kernel sees an empty tensor).
        let _ = loss.shallow_clone().zero_();
        return Ok(());
    }
    let k = Kernels::get(i)?;
    let threads = 1024;
    let args = [
        ptr(z, dev, F32, n, "z")?,
        ptr(t, dev, F32, n, "targets")?,
        ptr(real, dev, I64, n, "real")?,
        ptr(loss, dev, F32, 1, "loss")?,
        ptr(dz, dev, F32, n, "dz")?,
        Arg::I64(n),
        Arg::F32(scale),
    ];
    k.launch("rtd_loss", 1, threads, threads * 4, &args)
}

/// AdamW hyper-parameters of one `adamw_bf16` call.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 - beta1^step, 1 - beta2^step.
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

/// `adamw_bf16`: updates param, m, v (fp32, flat) from grad / grad_scale[0] and writes the bf16
/// copy.
pub fn adamw_bf16(
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    param_bf16: &Tensor,
    grad_scale: &Tensor,
    h: AdamW,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(param)?;
    let n = param.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(param, dev, F32, n, "param")?,
        ptr(m, dev, F32, n, "exp_avg")?,
        ptr(v, dev, F32, n, "exp_avg_sq")?,
        ptr(grad, dev, F32, n, "grad")?,
        ptr(param_bf16, dev, BF16, n, "param_bf16")?,
        Arg::I64(n),
        Arg::F32(h.lr),
        Arg::F32(h.beta1),
        Arg::F32(h.beta2),
        Arg::F32(h.eps),
        Arg::F32(h.weight_decay),
        Arg::F32(h.bias_correction1),
        Arg::F32(h.bias_correction2),
        ptr(grad_scale, dev, F32, 1, "grad_scale")?,
    ];
    k.launch("adamw_bf16", grid_stride_blocks(n), ROW_THREADS, 0, &args)
}

/// The one-pass sampler: logits [N, W] (bf16 or fp32, W a multiple of 256), uniforms [N] f64 ->
/// ids, top1 [N] i64, entropy [N] f32.
pub fn sample_tempered(
    z: &Tensor,
    u: &Tensor,
    inv_t: f32,
    ids: &Tensor,
    top1: &Tensor,
    entropy: &Tensor,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(z)?;
    let (n, w) = z.size2()?;
    if w % SAMPLER_TILE != 0 || w == 0 {
        bail!("sample_tempered: {w} columns: expected a positive multiple of {SAMPLER_TILE}");
    }
    let k = Kernels::get(i)?;
    let (name, kind) = match z.kind() {
        Kind::BFloat16 => ("sample_tempered_bf16", BF16),
        _ => ("sample_tempered_f32", F32),
    };
    let tiles = w / SAMPLER_TILE;
    let args = [
        ptr(z, dev, kind, n * w, "logits")?,
        ptr(u, dev, Kind::Double, n, "uniforms")?,
        Arg::I64(w),
        Arg::F32(inv_t),
        ptr(ids, dev, I64, n, "ids")?,
        ptr(top1, dev, I64, n, "top1")?,
        ptr(entropy, dev, F32, n, "entropy")?,
    ];
    let smem = (SAMPLER_TILE * 4 + tiles * 16) as u32;
    k.launch(name, row_blocks(n)?, SAMPLER_TILE as u32, smem, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_every_row_and_none_for_no_rows() {
        assert_eq!(row_blocks(0).unwrap(), 0);
        assert_eq!(row_blocks(16384).unwrap(), 16384);
        let err = row_blocks(1 << 31).unwrap_err().to_string();
        assert!(err.contains("2147483648 rows"), "{err}");
        assert!(row_blocks(-1).is_err());
        assert_eq!(chunks_of(0), 0);
        assert_eq!(chunks_of(1), 1);
        assert_eq!(chunks_of(32), 1);
        assert_eq!(chunks_of(33), 2);
        assert_eq!(chunks_of(16384), 512);
    }
}
