//! The CPU emulation of the one-pass sampler kernel (`shared/kernels/sampler.cu`), operation for
//! operation: the same tiles, the same reduction trees, the same fp32 and fp64 arithmetic in the
//! same order. It proves the kernel's algorithm on any machine: the tests below draw with it and
//! with the reference sampler ([`super::sampling::sample_tempered`]) at the same uniforms and
//! require the same ids except at rounding ties (where `u` lies within fp32 rounding of a CDF
//! boundary, the two may pick the neighbours either side of it), the same arg-max and the same
//! entropy within fp32 rounding.
//!
//! What differs from the reference, by design: the reference computes `e = exp(z/T - max/T)`
//! with the row's global max, then sums 256-id blocks in fp64; the kernel reads the logits once,
//! exponentiating each tile against its own max `m_t` in fp32 (`s_t`), and rescales the tile
//! sums by `exp(m_t/T - M/T)` in fp64. Both are exact inverse-CDF draws of the same
//! distribution; their cumulative sums differ by fp32 rounding (about 1e-7 relative).
//!
//! Every product and sum of the kernel goes through an explicit round-to-nearest intrinsic
//! (`__fmul_rn`, `__fadd_rn`, `__dmul_rn`, `__dadd_rn`), so NVRTC fuses none into a multiply-add
//! (`cuda::tests::the_sampler_has_no_contracted_arithmetic` proves it), and the emulation
//! rounds exactly where the kernel does. What it cannot pin down: the GPU's `expf` (CUDA's,
//! within 2 ulp) and fp64 `exp` and `log` (within 1 ulp) against the host's; a kernel draw may
//! therefore differ from the emulation's at the same rounding ties, which the GPU check
//! measures (share of identical draws), and the draws' distribution is tested against the exact
//! probabilities there (`super::chi_square`).
use super::sampling::{padded_vocab, NonFiniteLogits, Sampled};
use tch::{Kind, Tensor};

/// Ids per tile = threads per block of the kernel.
pub const TILE: usize = 256;

/// `block_sum` of common.cuh: `buf[i] += buf[i + s]` for s = 128, 64, ..., 1.
fn tree_sum(mut v: [f32; TILE]) -> f32 {
    let mut s = TILE / 2;
    while s > 0 {
        for i in 0..s {
            v[i] += v[i + s];
        }
        s /= 2;
    }
    v[0]
}

/// The tile's max and its first index, by the kernel's tree.
fn tree_max(z: &[f32], base: usize) -> (f32, usize) {
    let mut v: [f32; TILE] = [0.0; TILE];
    let mut idx: [usize; TILE] = [0; TILE];
    for i in 0..TILE {
        v[i] = z[i];
        idx[i] = base + i;
    }
    let mut s = TILE / 2;
    while s > 0 {
        for i in 0..s {
            let (a, b) = (v[i], v[i + s]);
            if b > a || (b == a && idx[i + s] < idx[i]) {
                v[i] = b;
                idx[i] = idx[i + s];
            }
        }
        s /= 2;
    }
    (v[0], idx[0])
}

/// `e_i` of one tile against its max `m` (pass 1 and pass 2 of the kernel compute it alike).
fn tile_e(z: &[f32], m: f32, inv_t: f32) -> ([f32; TILE], [f32; TILE]) {
    let mut e = [0f32; TILE];
    let mut ed = [0f32; TILE];
    if m == f32::NEG_INFINITY {
        return (e, ed);
    }
    let neg_m = m * -inv_t;
    for i in 0..TILE {
        if z[i] != f32::NEG_INFINITY {
            let d = z[i] * inv_t + neg_m;
            e[i] = d.exp();
            ed[i] = if e[i] > 0.0 { e[i] * d } else { 0.0 };
        }
    }
    (e, ed)
}

/// One row as the kernel samples it: `z` (a multiple of [`TILE`] long; -inf = probability 0),
/// `inv_t` = 1/T rounded to fp32, uniform `u` in [0, 1). Returns (id, arg-max, entropy); the
/// entropy is NaN for a row with a NaN or +inf logit or without a finite one.
#[allow(clippy::manual_is_multiple_of, clippy::needless_range_loop)] // is_multiple_of needs Rust 1.87; indices mirror the kernel's
pub fn sample_row(z: &[f32], inv_t: f32, u: f64) -> (i64, i64, f32) {
    assert!(
        !z.is_empty() && z.len() % TILE == 0,
        "a row of a multiple of {TILE}"
    );
    let tiles = z.len() / TILE;
    let bad = z.iter().any(|x| x.is_nan() || *x == f32::INFINITY);
    let (mut tm, mut ts, mut ta, mut ti) = (
        vec![0f32; tiles],
        vec![0f32; tiles],
        vec![0f32; tiles],
        vec![0usize; tiles],
    );
    for t in 0..tiles {
        let zt = &z[t * TILE..(t + 1) * TILE];
        let (m, mi) = tree_max(zt, t * TILE);
        let (e, ed) = tile_e(zt, m, inv_t);
        tm[t] = m;
        ti[t] = mi;
        ts[t] = tree_sum(e);
        ta[t] = tree_sum(ed);
    }
    // Combine: thread 0, tiles in order, fp64.
    let (mut big_m, mut top1) = (f32::NEG_INFINITY, 0usize);
    for t in 0..tiles {
        if tm[t] > big_m {
            big_m = tm[t];
            top1 = ti[t];
        }
    }
    let mi = big_m as f64 * inv_t as f64;
    let c_of = |t: usize| (tm[t] as f64 * inv_t as f64 - mi).exp();
    let (mut zsum, mut a) = (0f64, 0f64);
    for t in 0..tiles {
        if ts[t] > 0.0 {
            let lt = tm[t] as f64 * inv_t as f64 - mi;
            let c = lt.exp();
            zsum += ts[t] as f64 * c;
            a += c * (ta[t] as f64 + ts[t] as f64 * lt);
        }
    }
    let mut ent = zsum.ln() - a / zsum;
    if bad || big_m == f32::NEG_INFINITY {
        ent = f64::NAN;
    }
    let target = u * zsum;
    let (mut before, mut p) = (0f64, 0f64);
    let (mut k, mut last) = (None, None);
    for t in 0..tiles {
        if ts[t] > 0.0 {
            let next = p + ts[t] as f64 * c_of(t);
            last = Some(t);
            if k.is_none() && next > target {
                k = Some(t);
                before = p;
            }
            p = next;
        }
    }
    let k = match k {
        Some(k) => k,
        None => {
            // Rounding: u Z at or beyond the last prefix.
            let k = last.unwrap_or(0);
            before = (0..k)
                .filter(|&t| ts[t] > 0.0)
                .fold(0f64, |acc, t| acc + ts[t] as f64 * c_of(t));
            k
        }
    };
    let ck = if ts[k] > 0.0 { c_of(k) } else { 0.0 };
    // Pass 2: tile k again; thread 0 scans in id order.
    let (e, _) = tile_e(&z[k * TILE..(k + 1) * TILE], tm[k], inv_t);
    let mut w = before;
    let (mut pick, mut lastpos) = (None, None);
    for (j, &ej) in e.iter().enumerate() {
        if ej > 0.0 {
            lastpos = Some(j);
            w += ej as f64 * ck;
            if w > target {
                pick = Some(j);
                break;
            }
        }
    }
    let j = pick.or(lastpos).unwrap_or(0);
    ((k * TILE + j) as i64, top1 as i64, ent as f32)
}

/// [`sample_row`] over the rows of `logits` (row-major, `width` columns, padded here with -inf
/// to a multiple of [`TILE`] when needed), one uniform per row, at `temperature`.
pub fn sample_rows(logits: &[f32], width: usize, temperature: f64, uniforms: &[f64]) -> Sampled {
    let inv_t = (1.0 / temperature) as f32;
    let padded = width.div_ceil(TILE) * TILE;
    let mut row = vec![f32::NEG_INFINITY; padded];
    let mut out = Sampled::default();
    for (r, &u) in uniforms.iter().enumerate() {
        row[..width].copy_from_slice(&logits[r * width..(r + 1) * width]);
        let (id, top1, ent) = sample_row(&row, inv_t, u);
        out.ids.push(id);
        out.top1.push(top1);
        out.entropy.push(ent);
    }
    out
}

/// The kernel on CUDA logits `[N, W]` (bf16 or fp32; padded here with -inf to a multiple of
/// [`TILE`] when needed): the same contract as [`super::sampling::sample_tempered`], one pass
/// over the logits, only ids, arg-max and entropies back to the host. Not run by the tests (no
/// GPU); `trainer fused-check` compares it with the reference on the GPU.
pub fn sample_tempered_kernel(
    logits: &Tensor,
    temperature: f64,
    uniforms: &[f64],
) -> anyhow::Result<Sampled> {
    let (n, v) = logits.size2()?;
    anyhow::ensure!(
        n == uniforms.len() as i64,
        "sample_tempered_kernel: logits: expected [{}, V], found [{n}, {v}]",
        uniforms.len()
    );
    anyhow::ensure!(
        temperature.is_finite() && temperature > 0.0,
        "sample_tempered_kernel: temperature: expected a finite number > 0, found {temperature}"
    );
    if n == 0 {
        return Ok(Sampled::default());
    }
    let device = logits.device();
    let kind = if logits.kind() == Kind::BFloat16 {
        Kind::BFloat16
    } else {
        Kind::Float
    };
    let mut z = logits.to_kind(kind);
    if v % TILE as i64 != 0 {
        let pad = Tensor::full([n, padded_vocab(v) - v], f64::NEG_INFINITY, (kind, device));
        z = Tensor::cat(&[&z, &pad], 1);
    }
    let z = z.contiguous();
    let u = Tensor::from_slice(uniforms).to_device(device);
    let ids = Tensor::empty([n], (Kind::Int64, device));
    let top1 = Tensor::empty([n], (Kind::Int64, device));
    let entropy = Tensor::empty([n], (Kind::Float, device));
    let inv_t = (1.0 / temperature) as f32;
    crate::cuda::ffi::sample_tempered(&z, &u, inv_t, &ids, &top1, &entropy)?;
    let host = |t: &Tensor| t.to_device(tch::Device::Cpu);
    let out = Sampled {
        ids: Vec::<i64>::try_from(host(&ids))?,
        top1: Vec::<i64>::try_from(host(&top1))?,
        entropy: Vec::<f32>::try_from(host(&entropy))?,
    };
    if let Some(row) = out.entropy.iter().position(|h| !h.is_finite()) {
        return Err(NonFiniteLogits {
            row,
            rows: n as usize,
        }
        .into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::rng::CounterRng;
    use crate::corruption::sampling::{position_uniform, sample_tempered};
    use tch::Tensor;

    fn logits(rows: usize, v: usize, scale: f32, seed: u64) -> Vec<f32> {
        let mut r = CounterRng::new(seed, &[77]);
        (0..rows * v)
            .map(|_| {
                // A sum of uniforms: roughly normal, with a heavier head for some ids.
                let x: f64 = (0..4).map(|_| r.next_f64()).sum::<f64>() - 2.0;
                (x as f32) * scale
            })
            .collect()
    }

    /// The exact fp64 CDF of softmax(z / T) just after id `j`.
    fn cdf_after(z: &[f32], t: f64, j: usize) -> f64 {
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let p: Vec<f64> = z.iter().map(|&x| ((x as f64 - m) / t).exp()).collect();
        let total: f64 = p.iter().sum();
        p[..=j].iter().sum::<f64>() / total
    }

    /// Emulation against the reference at the same uniforms: same ids except at rounding ties
    /// (checked to be ties), same arg-max, entropy within fp32 rounding. Returns the ties.
    fn agree(z: &[f32], v: usize, t: f64, seed: u64) -> usize {
        let rows = z.len() / v;
        let uniforms: Vec<f64> = (0..rows)
            .map(|i| position_uniform(seed, 3, i as u64, (i % 128) as u32))
            .collect();
        let reference = sample_tempered(
            &Tensor::from_slice(z).view([rows as i64, v as i64]),
            t,
            &uniforms,
        )
        .unwrap();
        let ours = sample_rows(z, v, t, &uniforms);
        assert_eq!(ours.top1, reference.top1, "arg-max");
        let mut ties = 0;
        for r in 0..rows {
            let (a, b) = (ours.ids[r], reference.ids[r]);
            let row = &z[r * v..(r + 1) * v];
            let he = (ours.entropy[r] - reference.entropy[r]).abs();
            assert!(
                he <= 1e-5 * reference.entropy[r].abs().max(1.0),
                "row {r}: entropy {} vs {}",
                ours.entropy[r],
                reference.entropy[r]
            );
            assert!(
                row[a as usize] > f32::NEG_INFINITY,
                "row {r}: picked an id of probability 0"
            );
            if a != b {
                // A tie: u is within rounding of the CDF boundary between the two picks.
                let lo = a.min(b) as usize;
                let gap = (cdf_after(row, t, lo) - uniforms[r]).abs();
                assert!(
                    gap < 1e-6,
                    "row {r}: ids {a} vs {b}, u {} is {gap:e} from their CDF boundary",
                    uniforms[r]
                );
                ties += 1;
            }
        }
        ties
    }

    #[test]
    fn emulated_kernel_draws_equal_the_reference_sampler_except_at_rounding_ties() {
        let mut ties = 0;
        let mut rows = 0;
        // BERT's vocabulary (padded by both to 30720), at the schedule's temperatures.
        for (i, t) in [2.0, 1.0357, 1.0, 0.7].into_iter().enumerate() {
            let z = logits(96, 30522, 3.0, i as u64);
            ties += agree(&z, 30522, t, i as u64);
            rows += 96;
        }
        // A small vocabulary, many rows, peaked and flat logits.
        for (i, scale) in [0.1f32, 2.0, 12.0].into_iter().enumerate() {
            let z = logits(2000, 300, scale, 10 + i as u64);
            ties += agree(&z, 300, 1.0, 10 + i as u64);
            rows += 2000;
        }
        eprintln!("{rows} rows: {ties} rounding ties");
        assert!(ties * 1000 <= rows, "{ties} ties in {rows} rows");
    }

    #[test]
    fn the_kernel_sampler_refuses_cpu_logits() {
        let z = Tensor::zeros([2, 256], (tch::Kind::Float, tch::Device::Cpu));
        let err = sample_tempered_kernel(&z, 1.0, &[0.1, 0.2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("CUDA"), "{err}");
    }

    #[test]
    fn banned_ids_are_never_drawn_even_at_the_edges() {
        // 512 ids, only 3 of positive probability, spread over two tiles; u at both ends.
        let mut z = vec![f32::NEG_INFINITY; 512];
        z[5] = 0.0;
        z[300] = 1.0;
        z[301] = -1.0;
        for u in [0.0, 1e-300, 0.5, 1.0 - f64::EPSILON, 1.0 - 1e-17] {
            let (id, top1, ent) = sample_row(&z, 1.0, u);
            assert!([5, 300, 301].contains(&id), "u {u}: id {id}");
            assert_eq!(top1, 300);
            assert!(ent.is_finite() && ent > 0.0);
        }
        assert_eq!(sample_row(&z, 1.0, 0.0).0, 5);
        assert_eq!(sample_row(&z, 1.0, 1.0 - f64::EPSILON).0, 301);
        let (id, _, ent) = sample_row(&[f32::NEG_INFINITY; 256], 1.0, 0.3);
        assert!(
            ent.is_nan(),
            "no finite logit: NaN entropy (an error), id {id}"
        );
        let mut nan = vec![0f32; 256];
        nan[7] = f32::NAN;
        assert!(sample_row(&nan, 1.0, 0.3).2.is_nan());
    }

    #[test]
    fn emulated_draws_follow_the_tempered_softmax() {
        // Chi-square over 40 ids of positive probability in 512 (12 tiles' worth of -inf).
        let mut z = vec![f32::NEG_INFINITY; 512];
        let ids: Vec<usize> = (0..40).map(|i| i * 12 + 3).collect();
        for (k, &i) in ids.iter().enumerate() {
            z[i] = (k as f32 * 0.37).sin() * 2.0;
        }
        let t = 1.5;
        let n = 40_000u64;
        let mut counts = vec![0u64; 512];
        for s in 0..n {
            let (id, _, _) = sample_row(&z, (1.0 / t) as f32, position_uniform(9, 0, s, 0));
            counts[id as usize] += 1;
        }
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let total: f64 = ids.iter().map(|&i| ((z[i] as f64 - m) / t).exp()).sum();
        let chi: f64 = ids
            .iter()
            .map(|&i| {
                let e = ((z[i] as f64 - m) / t).exp() / total * n as f64;
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum();
        assert_eq!(counts.iter().sum::<u64>(), n);
        // 39 degrees of freedom: the 99.9% quantile is 72.1.
        assert!(chi < 72.1, "chi-square {chi}");
    }
}
