//! Exact sampling of replacement tokens from softmax(logits / T), on the logits' device
//! (data-spec/epoch.md, "Sampling").
//!
//! For each masked position the host draws one uniform `u` in [0, 1) from
//! `CounterRng(seed, [domain::SAMPLE, epoch, sequence_id, position])`; the device computes
//! `p = softmax(logits.float() / T)` in fp32, its running sum `c = cumsum(p)` in fp64, and picks
//! the first token `i` with `c[i] > u * c[V-1]` (inverse CDF; a token of probability 0 is never
//! picked). Only N sampled ids, N arg-max ids and N entropies come back to the host — never the
//! `[N, V]` logits. The result depends on the uniforms and each row's logits only.
use tch::{Kind, Tensor};

use crate::rng::{domain, CounterRng};

/// Bytes of fp32/fp64 temporaries (about 24 per logit) one chunk of rows may take: large on a
/// GPU, small on the CPU where fresh multi-GB buffers cost more in page faults than they save.
const CHUNK_BYTES_CUDA: i64 = 1 << 30;
const CHUNK_BYTES_CPU: i64 = 4 << 20;

/// Rows per chunk of the sampling computation for vocabulary size `v` on `device`.
pub fn chunk_rows(v: i64, device: tch::Device) -> i64 {
    let budget = if device.is_cuda() {
        CHUNK_BYTES_CUDA
    } else {
        CHUNK_BYTES_CPU
    };
    (budget / (24 * v.max(1))).max(1)
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

/// Samples one token per row of `logits` (`[N, V]`, any float kind, any device) from
/// softmax(logits / temperature), using `uniforms[i]` for row `i`.
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
    let device = logits.device();
    let mut out = Sampled {
        ids: Vec::with_capacity(n as usize),
        top1: Vec::with_capacity(n as usize),
        entropy: Vec::with_capacity(n as usize),
    };
    let mut start = 0;
    while start < n {
        let rows = chunk_rows(v, device).min(n - start);
        let chunk = logits.narrow(0, start, rows);
        let z = chunk.to_kind(Kind::Float) / temperature;
        let logp = z.log_softmax(-1, Kind::Float);
        let p = logp.exp();
        // Clamped so that a token of probability 0 (logit -inf) adds 0, not NaN.
        let entropy =
            -(&p * logp.clamp_min(f32::MIN as f64)).sum_dim_intlist(-1, false, Kind::Float);
        // Converting first is exact and lets the scan run on doubles (several times faster on
        // the CPU than converting inside the scan).
        let cdf = p.to_kind(Kind::Double).cumsum(-1, Kind::Double);
        let total = cdf.narrow(1, v - 1, 1);
        let u = Tensor::from_slice(&uniforms[start as usize..(start + rows) as usize])
            .to_device(device)
            .unsqueeze(1);
        let target = u * total;
        let ids = target
            .searchsorted(&cdf, false, true, "right", None::<Tensor>)
            .squeeze_dim(1)
            .clamp_max(v - 1);
        let top1 = chunk.argmax(-1, false);
        out.ids
            .extend(Vec::<i64>::try_from(ids.to_device(tch::Device::Cpu))?);
        out.top1
            .extend(Vec::<i64>::try_from(top1.to_device(tch::Device::Cpu))?);
        out.entropy
            .extend(Vec::<f32>::try_from(entropy.to_device(tch::Device::Cpu))?);
        start += rows;
    }
    Ok(out)
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
}
