//! Pearson's chi-square goodness of fit of sampled ids against exact probabilities: whether a
//! sampler (the sampler kernel on a GPU, in `trainer fused-check`; its CPU emulation and
//! deliberately wrong samplers in the tests here) draws from the distribution it should.
//!
//! Comparing two samplers' draws at the same uniforms only measures how often they agree;
//! this compares the draws of one sampler, at independent uniforms, with the exact fp64
//! probabilities of softmax(z / T), so a sampler that is wrong everywhere (wrong temperature,
//! an off-by-one id, a tile never drawn) fails it.
use anyhow::{bail, ensure};

/// Ids whose expected count is below this share one pooled bin (Pearson's statistic needs
/// expectations of about 5 or more per bin).
pub const MIN_EXPECTED: f64 = 5.0;

/// The outcome of [`chi_square`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Pearson's statistic, sum over bins of (observed - expected)^2 / expected.
    pub statistic: f64,
    /// Degrees of freedom: bins - 1.
    pub dof: usize,
    /// P(chi-square with `dof` degrees of freedom >= `statistic`); 0 when an id of probability 0
    /// was drawn.
    pub p_value: f64,
    /// Draws of ids of probability 0.
    pub impossible: u64,
}

impl std::fmt::Display for Fit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chi-square {:.1} with {} degrees of freedom, p = {:.3e}, {} draws of probability-0 ids",
            self.statistic, self.dof, self.p_value, self.impossible
        )
    }
}

/// The exact probabilities of softmax(z / temperature) in fp64 (-inf: probability 0).
pub fn tempered_probs(z: &[f32], temperature: f64) -> Vec<f64> {
    let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = z
        .iter()
        .map(|&x| {
            if x == f32::NEG_INFINITY {
                0.0
            } else {
                ((x as f64 - m) / temperature).exp()
            }
        })
        .collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|x| x / total).collect()
}

/// How often each of `n_ids` ids was drawn; an id outside `[0, n_ids)` is an error.
pub fn counts_of(ids: &[i64], n_ids: usize) -> anyhow::Result<Vec<u64>> {
    let mut c = vec![0u64; n_ids];
    for (i, &id) in ids.iter().enumerate() {
        if id < 0 || id as usize >= n_ids {
            bail!("draw {i}: id {id}: expected an id in [0, {n_ids})");
        }
        c[id as usize] += 1;
    }
    Ok(c)
}

/// Pearson's chi-square of `counts` (draws per id) against `probs` (per id, summing to 1).
/// Every id expected [`MIN_EXPECTED`] times or more is a bin of its own; the others of
/// positive probability are pooled into one bin, which joins the bin of least expectation if
/// it is itself expected fewer than [`MIN_EXPECTED`] times.
pub fn chi_square(probs: &[f64], counts: &[u64]) -> anyhow::Result<Fit> {
    ensure!(
        probs.len() == counts.len(),
        "chi-square: {} probabilities, {} counts: expected as many",
        probs.len(),
        counts.len()
    );
    let total = probs.iter().sum::<f64>();
    ensure!(
        (total - 1.0).abs() < 1e-9 && probs.iter().all(|p| *p >= 0.0),
        "chi-square: probabilities: expected non-negative numbers summing to 1, found a sum of {total}"
    );
    let n: u64 = counts.iter().sum();
    ensure!(n > 0, "chi-square: no draws");
    let nf = n as f64;
    let impossible: u64 = probs
        .iter()
        .zip(counts)
        .filter(|(p, _)| **p == 0.0)
        .map(|(_, c)| *c)
        .sum();
    // (observed, expected) per bin.
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let mut pooled = (0.0, 0.0);
    for (&p, &c) in probs.iter().zip(counts) {
        if p == 0.0 {
            continue;
        }
        let e = p * nf;
        if e >= MIN_EXPECTED {
            bins.push((c as f64, e));
        } else {
            pooled.0 += c as f64;
            pooled.1 += e;
        }
    }
    if pooled.1 > 0.0 {
        if pooled.1 >= MIN_EXPECTED || bins.is_empty() {
            bins.push(pooled);
        } else {
            let smallest = (0..bins.len())
                .min_by(|&a, &b| bins[a].1.total_cmp(&bins[b].1))
                .expect("a bin");
            bins[smallest].0 += pooled.0;
            bins[smallest].1 += pooled.1;
        }
    }
    let statistic: f64 = bins.iter().map(|(o, e)| (o - e).powi(2) / e).sum();
    let dof = bins.len().saturating_sub(1);
    let p_value = if impossible > 0 {
        0.0
    } else if dof == 0 {
        1.0
    } else {
        upper_gamma_regularized(dof as f64 / 2.0, statistic / 2.0)
    };
    Ok(Fit {
        statistic,
        dof,
        p_value,
        impossible,
    })
}

/// ln Gamma(x) for x > 0: Stirling's series (to x^-9) after shifting x to at least 15 with
/// Gamma(x) = Gamma(x + k) / (x (x + 1) ... (x + k - 1)). Accurate to about 1e-14.
fn ln_gamma(x: f64) -> f64 {
    let mut x = x;
    let mut shift = 0.0;
    while x < 15.0 {
        shift += x.ln();
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    // Bernoulli terms B_2k / (2k (2k - 1) x^(2k - 1)), k = 1..5.
    let series = inv
        * (1.0 / 12.0
            - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0))));
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series - shift
}

/// Q(a, x) = Gamma(a, x) / Gamma(a), the upper regularized incomplete gamma function (the
/// chi-square survival function is Q(dof / 2, statistic / 2)): the power series of P = 1 - Q
/// below x = a + 1, the continued fraction of Q (Lentz's method) above.
fn upper_gamma_regularized(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        // P(a, x) = e^-x x^a / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n)).
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term < sum * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).max(0.0)
    } else {
        // Q(a, x) = e^-x x^a / Gamma(a) / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / ...)).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::rng::CounterRng;
    use crate::corruption::sampling::position_uniform;
    use crate::corruption::sampling_tiled::{sample_row, TILE};

    /// Q(k, y) for an integer k in closed form: e^-y sum_{j < k} y^j / j!.
    fn q_integer(k: u32, y: f64) -> f64 {
        let (mut term, mut sum) = (1.0, 1.0);
        for j in 1..k {
            term *= y / j as f64;
            sum += term;
        }
        (-y + sum.ln()).exp()
    }

    #[test]
    fn the_p_value_is_the_chi_square_survival_function() {
        // Even degrees of freedom have a closed form; both branches (series, fraction).
        for dof in [2u32, 4, 10, 40, 120] {
            for x in [
                0.5,
                3.0,
                dof as f64 * 0.7,
                dof as f64,
                dof as f64 * 1.5,
                dof as f64 * 3.0,
            ] {
                let want = q_integer(dof / 2, x / 2.0);
                let got = upper_gamma_regularized(dof as f64 / 2.0, x / 2.0);
                assert!(
                    (got - want).abs() <= 1e-10 * want.max(1e-300) + 1e-15,
                    "dof {dof}, x {x}: {got} vs {want}"
                );
            }
        }
        // Odd ones against tables: the 95% quantile of 1 and 39 degrees, the 99.9% of 39.
        for (dof, x, p) in [
            (1.0, 3.841_458_820_694_124, 0.05),
            (39.0, 54.572_227_758_941_73, 0.05),
        ] {
            let got = upper_gamma_regularized(dof / 2.0, x / 2.0);
            assert!((got - p).abs() < 1e-9, "dof {dof}: {got}");
        }
        // ln Gamma at half-integers: Gamma(1/2) = sqrt(pi), Gamma(7/2) = 15 sqrt(pi) / 8.
        let sp = std::f64::consts::PI.sqrt();
        assert!((ln_gamma(0.5) - sp.ln()).abs() < 1e-13);
        assert!((ln_gamma(3.5) - (15.0 * sp / 8.0).ln()).abs() < 1e-13);
    }

    /// A row of `v` logits: `scale` times a roughly normal draw (peaked for a large scale).
    fn row(v: usize, scale: f32, seed: u64) -> Vec<f32> {
        let mut r = CounterRng::new(seed, &[91]);
        (0..v)
            .map(|_| ((0..4).map(|_| r.next_f64()).sum::<f64>() - 2.0) as f32 * scale)
            .collect()
    }

    /// `n` draws of `sampler(u)` at independent uniforms.
    fn draws(n: u64, seed: u64, sampler: impl Fn(f64) -> i64) -> Vec<i64> {
        (0..n)
            .map(|i| sampler(position_uniform(seed, 0, i, 3)))
            .collect()
    }

    fn fit(z: &[f32], t: f64, ids: &[i64]) -> Fit {
        chi_square(&tempered_probs(z, t), &counts_of(ids, z.len()).unwrap()).unwrap()
    }

    const N: u64 = 40_000;

    #[test]
    fn the_emulated_kernel_passes_on_peaked_and_flat_rows() {
        for (scale, t) in [(6.0f32, 1.0), (6.0, 2.0), (0.2, 1.0)] {
            let z = row(4 * TILE, scale, 1);
            let inv_t = (1.0 / t) as f32;
            let f = fit(&z, t, &draws(N, 7, |u| sample_row(&z, inv_t, u).0));
            eprintln!("emulation, scale {scale}, T {t}: {f}");
            assert!(f.dof >= 20, "{f}");
            assert!(f.p_value > 1e-3 && f.impossible == 0, "{f}");
        }
    }

    #[test]
    fn wrong_samplers_fail() {
        let peaked = row(4 * TILE, 6.0, 1);
        let flat = row(4 * TILE, 0.2, 1);
        // A temperature 5% off.
        let f = fit(
            &peaked,
            1.0,
            &draws(N, 7, |u| sample_row(&peaked, 1.0 / 1.05, u).0),
        );
        eprintln!("T 1.05 instead of 1: {f}");
        assert!(f.p_value < 1e-6, "{f}");
        // Off by one id.
        let f = fit(
            &peaked,
            1.0,
            &draws(N, 7, |u| {
                (sample_row(&peaked, 1.0, u).0 + 1) % peaked.len() as i64
            }),
        );
        eprintln!("off by one: {f}");
        assert!(f.p_value < 1e-6, "{f}");
        // The last tile never drawn (a flat row: the draws are renormalised over three tiles).
        let short = &flat[..3 * TILE];
        let f = fit(&flat, 1.0, &draws(N, 7, |u| sample_row(short, 1.0, u).0));
        eprintln!("last tile missing: {f}");
        assert!(f.p_value < 1e-6, "{f}");
        // An id of probability 0 drawn.
        let mut banned = flat.clone();
        banned[5] = f32::NEG_INFINITY;
        let f = fit(&banned, 1.0, &draws(N, 7, |u| sample_row(&flat, 1.0, u).0));
        assert!(f.impossible > 0 && f.p_value == 0.0, "{f}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(counts_of(&[0, 3], 3)
            .unwrap_err()
            .to_string()
            .contains("id 3"));
        assert!(chi_square(&[0.5, 0.5], &[1]).is_err());
        assert!(chi_square(&[0.5, 0.6], &[1, 1]).is_err());
        assert!(chi_square(&[0.5, 0.5], &[0, 0]).is_err());
    }
}
