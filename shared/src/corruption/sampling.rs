//! Exact sampling of replacement tokens from softmax(logits / T), on the logits' device
//! (data-spec/epoch.md, "Sampling").
//!
//! For each masked position the host draws one uniform `u` in [0, 1) from
//! `CounterRng(seed, [domain::SAMPLE, epoch, sequence_id, position])`. On the device, per row of
//! logits `z` (bf16 on CUDA, fp32 on the CPU; columns past the vocabulary may be padding at
//! `-inf`):
//!
//! 1. `m = max(z)` (its index is the auxiliary model's top-1 guess) and, in fp32,
//!    `e = exp(z / T - m / T)`: the tempered softmax before normalisation.
//! 2. The row is cut into blocks of [`BLOCK`] ids; each block's mass is summed in fp64, and the
//!    running sum `C` of the block masses gives the row's total `S = C[last]`.
//! 3. With `t = u * S`, the sampled block is the first `k` with `C[k] > t`; inside it, the fp64
//!    running sum of the block's `e` (offset by `C[k-1]`) picks the first id whose sum exceeds
//!    `t`. That is inverse-CDF sampling from `e / S` with every sum in fp64, so each id's chance
//!    equals its fp32 probability up to fp64 rounding; an id with `e = 0` is never picked (a
//!    rounding guard falls back to the block's last id of positive mass).
//! 4. The entropy of `e / S` is `ln S - sum(e ln e) / S`.
//!
//! This reads the `[N, V]` logits a few times instead of making ten full-width fp32/fp64
//! temporaries (a full-width fp64 `cumsum` was the slowest kernel of the whole corruption).
//! Only N sampled ids, N arg-max ids and N entropies come back to the host, never the logits.
//! The result depends on the uniforms and each row's logits only.
use tch::{Kind, Tensor};

use crate::corruption::rng::{domain, CounterRng};

/// Ids per block of the two-level inverse CDF. A multiple of 64, so that a vocabulary padded to
/// it also suits the tensor cores of the vocabulary projection.
pub const BLOCK: i64 = 256;

/// Bytes of temporaries (about 16 per logit: the fp32 `e`, its fp64 copy, the entropy term) one
/// chunk of rows may take: large on a GPU, small on the CPU where fresh multi-GB buffers cost
/// more in page faults than they save.
const CHUNK_BYTES_CUDA: i64 = 2 << 30;
const CHUNK_BYTES_CPU: i64 = 16 << 20;

/// `v` rounded up to a whole number of [`BLOCK`]s.
pub fn padded_vocab(v: i64) -> i64 {
    (v + BLOCK - 1) / BLOCK * BLOCK
}

/// Rows per chunk of the sampling computation for `v` logit columns on `device`.
pub fn chunk_rows(v: i64, device: tch::Device) -> i64 {
    let budget = if device.is_cuda() {
        CHUNK_BYTES_CUDA
    } else {
        CHUNK_BYTES_CPU
    };
    (budget / (16 * v.max(1))).max(1)
}

/// What comes back from the device for N masked positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampled {
    /// The sampled token per position.
    pub ids: Vec<i64>,
    /// The arg-max of the logits per position (the auxiliary model's top-1 guess).
    pub top1: Vec<i64>,
    /// Entropy (nats) of softmax(logits / T) per position.
    pub entropy: Vec<f32>,
}

/// The uniform draw of masked `position` of sequence `sequence_id` in `epoch`.
pub fn position_uniform(seed: u64, epoch: u32, sequence_id: u64, position: u32) -> f64 {
    CounterRng::new(
        seed,
        &[domain::SAMPLE, epoch as u64, sequence_id, position as u64],
    )
    .next_f64()
}

/// Samples one token per row of `logits` (`[N, W]`, bf16 or fp32, any device) from
/// softmax(logits / temperature), using `uniforms[i]` for row `i`. Columns whose logit is
/// `-inf` (the padding of a vocabulary padded to [`padded_vocab`], or banned ids) have
/// probability 0. A row with a NaN or `+inf` logit, or without any finite one, is an error
/// naming the row.
pub fn sample_tempered(
    logits: &Tensor,
    temperature: f64,
    uniforms: &[f64],
) -> anyhow::Result<Sampled> {
    let size = logits.size();
    anyhow::ensure!(
        size.len() == 2 && size[0] == uniforms.len() as i64,
        "sample_tempered: logits: expected shape [{}, V], found {size:?}",
        uniforms.len()
    );
    anyhow::ensure!(
        temperature.is_finite() && temperature > 0.0,
        "sample_tempered: temperature: expected a finite number > 0, found {temperature}"
    );
    let (n, v) = (size[0], size[1]);
    if n == 0 {
        return Ok(Sampled::default());
    }
    let device = logits.device();
    // Pad here only when the caller did not (the auxiliary model's projection pads already).
    let padded;
    let logits = if v % BLOCK == 0 {
        logits
    } else {
        let pad = Tensor::full(
            [n, padded_vocab(v) - v],
            f64::NEG_INFINITY,
            (logits.kind(), device),
        );
        padded = Tensor::cat(&[logits, &pad], 1);
        &padded
    };
    let all_u = Tensor::from_slice(uniforms).to_device(device).unsqueeze(1);
    // 1/T rounded to fp32 once, used both for m/T and inside the fused z/T - m/T.
    let inv_t = (1.0 / temperature) as f32 as f64;
    let inv_t_dev = Tensor::scalar_tensor(inv_t, (Kind::Float, device));
    // Results stay on the device until the end: one host transfer (and sync) per call.
    let (mut ids, mut top1, mut entropy) = (Vec::new(), Vec::new(), Vec::new());
    let mut start = 0;
    while start < n {
        let rows = chunk_rows(padded_vocab(v), device).min(n - start);
        let part = sample_chunk(
            &logits.narrow(0, start, rows),
            inv_t,
            &inv_t_dev,
            &all_u.narrow(0, start, rows),
        );
        ids.push(part.0);
        top1.push(part.1);
        entropy.push(part.2);
        start += rows;
    }
    let host = |parts: &[Tensor]| Tensor::cat(parts, 0).to_device(tch::Device::Cpu);
    let out = Sampled {
        ids: Vec::<i64>::try_from(host(&ids))?,
        top1: Vec::<i64>::try_from(host(&top1))?,
        entropy: Vec::<f32>::try_from(host(&entropy))?,
    };
    // NaN or +inf logits, or a row without a finite one, make the entropy non-finite.
    if let Some(row) = out.entropy.iter().position(|h| !h.is_finite()) {
        return Err(NonFiniteLogits {
            row,
            rows: n as usize,
        }
        .into());
    }
    Ok(out)
}

/// The error of [`sample_tempered`] for a row of logits that holds a NaN or `+inf`, or no finite
/// value at all; callers can downcast to it to name the sequence and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonFiniteLogits {
    pub row: usize,
    pub rows: usize,
}

impl std::fmt::Display for NonFiniteLogits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "logits of row {} of {}: expected finite values (or -inf for an id of probability 0), \
             found NaN, +inf or no finite value",
            self.row, self.rows
        )
    }
}

impl std::error::Error for NonFiniteLogits {}

/// Steps 1-4 of the module documentation for `z` `[n, W]` (W a multiple of [`BLOCK`]) and the
/// uniforms `u` `[n, 1]` (fp64): sampled ids `[n]`, arg-max ids `[n]`, entropies `[n]` (fp32).
fn sample_chunk(
    z: &Tensor,
    inv_t: f64,
    inv_t_dev: &Tensor,
    u: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let (n, w) = z.size2().expect("logits are [n, W]");
    let blocks = w / BLOCK;
    let (m, top1) = z.max_dim(-1, true);
    // e = exp(z / T - m / T): one fp32 pass over the (bf16 or fp32) logits, then exp in place.
    let neg_m = m.to_kind(Kind::Float) * -inv_t;
    let mut e = neg_m.addcmul(z, inv_t_dev);
    let _ = e.exp_();
    // sum(e ln e), with 0 ln 0 = 0 for the ids of probability 0.
    let e_ln_e = e.xlogy(&e).sum_dim_intlist(-1, false, Kind::Float);
    let e64 = e.to_kind(Kind::Double).view([n, blocks, BLOCK]);
    drop(e);
    let cum = e64
        .sum_dim_intlist(-1, false, Kind::Double)
        .cumsum(-1, Kind::Double);
    let total = cum.narrow(1, blocks - 1, 1);
    let entropy = (total.log() - e_ln_e.to_kind(Kind::Double).unsqueeze(1) / &total)
        .squeeze_dim(1)
        .to_kind(Kind::Float);
    let t = u * &total;
    let block = t
        .searchsorted(&cum, false, true, "right", None::<Tensor>)
        .clamp_max(blocks - 1);
    let before = cum
        .gather(1, &(&block - 1).clamp_min(0), false)
        .where_self(&block.gt(0), &Tensor::zeros_like(&t));
    let mass = e64
        .gather(
            1,
            &block.view([n, 1, 1]).expand([n, 1, BLOCK], false),
            false,
        )
        .view([n, BLOCK]);
    let within = mass.cumsum(-1, Kind::Double) + before;
    let j = t
        .searchsorted(&within, false, true, "right", None::<Tensor>)
        .clamp_max(BLOCK - 1);
    // Rounding guard: the block's scan may end just below its summed mass (t beyond the scan),
    // or a parallel scan may step on an id of mass 0; take the block's last id of positive mass.
    let positive = mass.gt(0);
    let last = positive
        .flip([-1])
        .to_kind(Kind::Int)
        .argmax(-1, true)
        .neg()
        + (BLOCK - 1);
    let beyond = within.narrow(1, BLOCK - 1, 1).le_tensor(&t);
    let bad = beyond.logical_or(&positive.gather(1, &j, false).logical_not());
    let j = last.where_self(&bad, &j);
    let ids = (block * BLOCK + j).squeeze_dim(1);
    (ids, top1.squeeze_dim(1), entropy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson chi-square statistic of `counts` against probabilities `p` over `n` draws.
    fn chi_square(counts: &[u64], p: &[f64], n: u64) -> f64 {
        counts
            .iter()
            .zip(p)
            .map(|(&c, &p)| {
                let e = p * n as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    fn softmax(logits: &[f32], t: f64) -> Vec<f64> {
        let z: Vec<f64> = logits.iter().map(|&l| l as f64 / t).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    /// Samples `n` times from one row of logits (as n identical rows) and counts.
    fn counts(logits: &[f32], t: f64, n: usize) -> Vec<u64> {
        let v = logits.len() as i64;
        let row = Tensor::from_slice(logits).view([1, v]);
        let all = row.expand([n as i64, v], false).contiguous();
        let uniforms: Vec<f64> = (0..n as u64)
            .map(|s| position_uniform(11, 0, s, 3))
            .collect();
        let s = sample_tempered(&all, t, &uniforms).unwrap();
        let mut c = vec![0u64; logits.len()];
        for id in s.ids {
            c[id as usize] += 1;
        }
        c
    }

    const LOGITS: [f32; 8] = [2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0, 3.0];

    #[test]
    fn chi_square_matches_tempered_softmax() {
        // 7 degrees of freedom: the 0.999 quantile is 24.3.
        for t in [1.0, 1.5, 2.0] {
            let n = 40_000;
            let c = counts(&LOGITS, t, n);
            let x2 = chi_square(&c, &softmax(&LOGITS, t), n as u64);
            assert!(x2 < 24.3, "T={t}: chi2 = {x2}, counts {c:?}");
            // The same counts are far from the untempered distribution when T != 1.
            if t == 2.0 {
                let wrong = chi_square(&c, &softmax(&LOGITS, 1.0), n as u64);
                assert!(wrong > 100.0, "T=2 looks like T=1: chi2 = {wrong}");
            }
        }
    }

    #[test]
    fn large_temperature_is_near_uniform() {
        let n = 40_000;
        let c = counts(&LOGITS, 1e4, n);
        let x2 = chi_square(&c, &[0.125; 8], n as u64);
        assert!(x2 < 24.3, "chi2 against uniform = {x2}, counts {c:?}");
    }

    #[test]
    fn zero_probability_is_never_sampled_and_stats_are_right() {
        let logits =
            Tensor::from_slice(&[0.0f32, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]).view([1, 4]);
        let all = logits.expand([1000, 4], false).contiguous();
        let uniforms: Vec<f64> = (0..1000).map(|s| position_uniform(0, 0, s, 0)).collect();
        let s = sample_tempered(&all, 1.0, &uniforms).unwrap();
        assert!(s.ids.iter().all(|&i| i == 0 || i == 2));
        assert!(s.top1.iter().all(|&i| i == 0));
        let h = s.entropy[0] as f64;
        assert!((h - 2f64.ln()).abs() < 1e-6, "{h}");
        // Extreme uniforms stay in range.
        let s = sample_tempered(&all.narrow(0, 0, 2), 1.0, &[0.0, 1.0 - f64::EPSILON]).unwrap();
        assert_eq!(s.ids, vec![0, 2]);
    }

    /// Logits spread like a trained model's over `v` ids, seeded.
    fn random_logits(rows: usize, v: usize, seed: u64) -> Vec<f32> {
        let mut rng = CounterRng::new(seed, &[]);
        (0..rows * v)
            .map(|_| (rng.next_f64() as f32 - 0.5) * 24.0)
            .collect()
    }

    #[test]
    fn picks_the_inverse_cdf_id_across_blocks() {
        // 1,000 ids = 4 blocks (the last one partly padding); check each pick against an fp64
        // inverse CDF computed on the host from the fp64 tempered softmax.
        let (rows, v, t) = (300usize, 1000usize, 1.7);
        let logits = random_logits(rows, v, 5);
        let uniforms: Vec<f64> = (0..rows as u64)
            .map(|s| position_uniform(3, 1, s, 9))
            .collect();
        let z = Tensor::from_slice(&logits).view([rows as i64, v as i64]);
        let s = sample_tempered(&z, t, &uniforms).unwrap();
        for r in 0..rows {
            let p = softmax(&logits[r * v..(r + 1) * v], t);
            let mut c = 0.0;
            let mut expected = v - 1;
            for (i, &pi) in p.iter().enumerate() {
                c += pi;
                if c > uniforms[r] {
                    expected = i;
                    break;
                }
            }
            let got = s.ids[r] as usize;
            if got != expected {
                // Only a uniform within fp32 rounding of a CDF step may land on a neighbour.
                let step: f64 = p[..expected.min(got) + 1].iter().sum();
                assert!(
                    (step - uniforms[r]).abs() < 1e-6,
                    "row {r}: expected id {expected}, got {got} (u = {}, C = {step})",
                    uniforms[r]
                );
            }
            let top = (0..v).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            assert_eq!(s.top1[r] as usize, top, "row {r}");
            let h: f64 = -p
                .iter()
                .map(|&q| if q > 0.0 { q * q.ln() } else { 0.0 })
                .sum::<f64>();
            assert!(
                (s.entropy[r] as f64 - h).abs() < 1e-4,
                "row {r}: {} vs {h}",
                s.entropy[r]
            );
        }
    }

    #[test]
    fn padding_and_chunking_do_not_change_the_result() {
        let (rows, v) = (64usize, 300usize);
        let logits = random_logits(rows, v, 8);
        let uniforms: Vec<f64> = (0..rows as u64)
            .map(|s| position_uniform(0, 2, s, 1))
            .collect();
        let z = Tensor::from_slice(&logits).view([rows as i64, v as i64]);
        let plain = sample_tempered(&z, 1.3, &uniforms).unwrap();
        let pad = Tensor::full(
            [rows as i64, padded_vocab(v as i64) - v as i64],
            f64::NEG_INFINITY,
            (Kind::Float, tch::Device::Cpu),
        );
        let padded = sample_tempered(&Tensor::cat(&[&z, &pad], 1), 1.3, &uniforms).unwrap();
        assert_eq!(plain, padded);
        // Row by row (other chunk boundaries) gives the same ids.
        for r in [0usize, 17, 63] {
            let one = sample_tempered(&z.narrow(0, r as i64, 1), 1.3, &uniforms[r..r + 1]).unwrap();
            assert_eq!(one.ids[0], plain.ids[r]);
            assert_eq!(one.entropy[0], plain.entropy[r]);
        }
    }

    #[test]
    fn non_finite_logits_are_an_error_naming_the_row() {
        let mut logits = random_logits(4, 10, 1);
        logits[2 * 10 + 3] = f32::NAN;
        let z = Tensor::from_slice(&logits).view([4, 10]);
        let err = sample_tempered(&z, 1.0, &[0.5; 4]).unwrap_err().to_string();
        assert!(err.contains("row 2 of 4"), "{err}");
        let all_banned = Tensor::full([1, 10], f64::NEG_INFINITY, (Kind::Float, tch::Device::Cpu));
        let err = sample_tempered(&all_banned, 1.0, &[0.5])
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 0 of 1"), "{err}");
    }
}
