//! Model-free replaced-token distributions as exact inverse-CDF lookups (data-spec/epoch.md,
//! "Model-free distributions").
//!
//! Every one of them has the form, at a masked position whose original token is `o`,
//!
//! ```text
//! p(i) ∝ w[i]        for i != o,        p(o) ∝ r * w[o],
//! w[i] = a[i]^gamma  (0^0 = 1; w = 0 for special ids),
//! r    = ((1 - alpha) (N - 1) / alpha)^(1 - gamma),
//! ```
//!
//! with `a = 1` (uniform) or the term-frequency counts, `N` the number of non-special ids:
//! `p_A^gamma * p_SOH^(1 - gamma)` where `p_SOH` is `1 - alpha` on `o` and `alpha / (N - 1)` on
//! every other non-special id. Uniform and TF are gamma = 1 (r = 1), SOH is gamma = 0 with
//! a = 1. With gamma fixed for the epoch, `w` and its fp64 prefix sums `C` are one table; the
//! original token only rescales one entry, so a draw `t = u * (C[V] - w[o] + r w[o])` is located
//! by comparing with `o`'s interval and one binary search in `C` (shifted past `o`): O(log V) and
//! no pass over the vocabulary. The entropy and arg-max come from table constants the same way.
use tch::Device;

use crate::corruption::batch::{Inputs, Seq};
use crate::corruption::distributions::{Sampler, Setup};
use crate::corruption::sampling::Sampled;
use crate::runtime::clock::StageClock;

/// The epoch's table of one model-free distribution.
#[derive(Debug, Clone)]
pub struct ModelFree {
    /// `w[i]`, fp64.
    weights: Vec<f64>,
    /// `cum[i] = w[0] + ... + w[i-1]` (fp64, running sum), `cum.len() = V + 1`.
    cum: Vec<f64>,
    /// `r`: the original token's weight factor.
    boost: f64,
    /// `sum w ln w` (0 ln 0 = 0).
    w_ln_w: f64,
    /// The two largest weights `(w, id)`, ties to the smaller id.
    top: [(f64, usize); 2],
}

/// Why a table could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelFreeError {
    #[error("--distribution {0}: needs the term-frequency counts, found none")]
    NoCounts(&'static str),
    #[error("term-frequency counts: expected {expected} ids (the vocabulary), found {found}")]
    CountsSize { expected: usize, found: usize },
    #[error(
        "--distribution {0}: no non-special token has a positive weight (all term frequencies \
         of non-special ids are 0)"
    )]
    Empty(&'static str),
}

/// The weights' base `a`.
#[derive(Debug, Clone, Copy)]
pub enum Base<'a> {
    /// `a = 1` on every non-special id.
    Uniform,
    /// The term-frequency counts, one per id of the vocabulary.
    Counts(&'a [u64]),
}

/// The term-frequency counts of `setup` as a base, for the distribution `name`.
pub fn counts<'a>(setup: &Setup<'a>, name: &'static str) -> Result<Base<'a>, ModelFreeError> {
    setup
        .term_frequency
        .map(Base::Counts)
        .ok_or(ModelFreeError::NoCounts(name))
}

impl ModelFree {
    /// The table of the distribution `name` over `vocab` ids: `w = a^gamma` from `base`
    /// (special ids get weight 0), the original's factor `r` from `alpha` where the smoothed
    /// one-hot distribution takes part (`None`: `r = 1`). `alpha` in (0, 1), `gamma` in [0, 1]:
    /// uniform and term frequency are `gamma = 1` without alpha, SOH is `gamma = 0` with it.
    pub fn new(
        name: &'static str,
        vocab: usize,
        special: &[i32],
        base: Base,
        alpha: Option<f64>,
        gamma: f64,
    ) -> Result<Self, ModelFreeError> {
        let counts = match base {
            Base::Uniform => None,
            Base::Counts(c) if c.len() != vocab => {
                return Err(ModelFreeError::CountsSize {
                    expected: vocab,
                    found: c.len(),
                })
            }
            Base::Counts(c) => Some(c),
        };
        let is_special = |i: usize| special.iter().any(|&s| s as usize == i);
        let mut weights = vec![0.0f64; vocab];
        let mut non_special = 0usize;
        for (i, w) in weights.iter_mut().enumerate() {
            if is_special(i) {
                continue;
            }
            non_special += 1;
            let a = counts.map_or(1.0, |c| c[i] as f64);
            // a^gamma with 0^0 = 1 (powf's convention), so gamma = 0 is SOH exactly; gamma = 1
            // gives a itself.
            *w = a.powf(gamma);
        }
        let boost = match alpha {
            Some(alpha) if non_special > 1 => {
                ((1.0 - alpha) * (non_special - 1) as f64 / alpha).powf(1.0 - gamma)
            }
            _ => 1.0,
        };
        let mut cum = Vec::with_capacity(vocab + 1);
        let (mut c, mut w_ln_w) = (0.0f64, 0.0f64);
        let mut top = [(f64::NEG_INFINITY, usize::MAX); 2];
        cum.push(0.0);
        for (i, &w) in weights.iter().enumerate() {
            c += w;
            cum.push(c);
            if w > 0.0 {
                w_ln_w += w * w.ln();
            }
            if w > top[0].0 {
                top = [(w, i), top[0]];
            } else if w > top[1].0 {
                top[1] = (w, i);
            }
        }
        if c <= 0.0 {
            return Err(ModelFreeError::Empty(name));
        }
        Ok(Self {
            weights,
            cum,
            boost,
            w_ln_w,
            top,
        })
    }

    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        self.weights.len()
    }

    /// The first id `i` with `cum[i + 1] > t` (an id of positive weight), or the last id of
    /// positive weight when rounding puts `t` past the end.
    fn search(&self, t: f64) -> usize {
        let i = self.cum[1..].partition_point(|&c| c <= t);
        if i < self.weights.len() {
            i
        } else {
            self.weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
        }
    }

    /// The unnormalised weights of the distribution at a position whose original is
    /// `original`: `(w[o], r w[o], Z)`.
    fn at(&self, original: usize) -> (f64, f64, f64) {
        let wo = self.weights.get(original).copied().unwrap_or(0.0);
        let bo = self.boost * wo;
        let total = self.cum[self.weights.len()] - wo + bo;
        (wo, bo, total)
    }

    /// The id drawn with uniform `u` in [0, 1) at a position whose original token is `original`.
    pub fn sample(&self, original: usize, u: f64) -> usize {
        let (wo, bo, total) = self.at(original);
        let t = u * total;
        if original >= self.weights.len() || wo == 0.0 {
            return self.search(t);
        }
        let start = self.cum[original];
        if t < start {
            return self.search(t);
        }
        if t < start + bo {
            return original;
        }
        // Past o's interval: the rest of the table, shifted by o's change of weight.
        let i = self.search(t - bo + wo);
        if i > original {
            i
        } else {
            // Rounding put t2 back on o or before: the next id of positive weight, if any.
            self.weights[original + 1..]
                .iter()
                .position(|&w| w > 0.0)
                .map_or(original, |j| original + 1 + j)
        }
    }

    /// The probability of every id at a position whose original is `original` (for tests and
    /// figures; O(V)).
    pub fn probabilities(&self, original: usize) -> Vec<f64> {
        let (_, bo, total) = self.at(original);
        let mut p: Vec<f64> = self.weights.iter().map(|&w| w / total).collect();
        if let Some(x) = p.get_mut(original) {
            *x = bo / total;
        }
        p
    }

    /// The arg-max id at a position whose original is `original` (ties: the smaller id).
    pub fn top1(&self, original: usize) -> usize {
        let (_, bo, _) = self.at(original);
        let other = if self.top[0].1 != original {
            self.top[0]
        } else {
            self.top[1]
        };
        if original < self.weights.len() && (bo > other.0 || (bo == other.0 && original < other.1))
        {
            original
        } else {
            other.1
        }
    }

    /// The entropy (nats) at a position whose original is `original`: `ln Z - S / Z` with
    /// `S = sum w ln w` after rescaling the original's weight.
    pub fn entropy(&self, original: usize) -> f64 {
        let (wo, bo, total) = self.at(original);
        let xlx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
        let s = self.w_ln_w - xlx(wo) + xlx(bo);
        total.ln() - s / total
    }

    /// Samples every position: `originals[j]` with `uniforms[j]`.
    pub fn sample_all(&self, originals: &[i32], uniforms: &[f64]) -> Sampled {
        let mut out = Sampled {
            ids: Vec::with_capacity(originals.len()),
            top1: Vec::with_capacity(originals.len()),
            entropy: Vec::with_capacity(originals.len()),
        };
        for (&o, &u) in originals.iter().zip(uniforms) {
            let o = o as usize;
            out.ids.push(self.sample(o, u) as i64);
            out.top1.push(self.top1(o) as i64);
            out.entropy.push(self.entropy(o) as f32);
        }
        out
    }
}

impl Sampler for ModelFree {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn sample(
        &self,
        seqs: &[Seq],
        inputs: &Inputs,
        _clock: &mut StageClock,
    ) -> anyhow::Result<Sampled> {
        let originals: Vec<i32> = seqs
            .iter()
            .flat_map(|s| s.masked.iter().map(|&p| s.ids[p as usize]))
            .collect();
        Ok(self.sample_all(&originals, &inputs.uniforms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corruption::distributions::Interpolation;
    use crate::corruption::sampling::position_uniform;

    const V: usize = 12;
    /// Ids 0 ([PAD]) and 1, 2, 3 ([CLS], [SEP], [MASK]) are special.
    const SPECIAL: [i32; 4] = [0, 1, 2, 3];
    const COUNTS: [u64; V] = [50, 40, 40, 0, 30, 0, 1, 9, 20, 5, 100, 3];

    /// The five model-free distributions of data-spec/epoch.md, as the closed forms below
    /// define them.
    #[derive(Debug, Clone, Copy)]
    enum Distribution {
        Uniform,
        TermFrequency,
        SmoothedOneHot,
        UnfSoh,
        TfSoh,
    }

    /// The epoch's setup of the tests: [`V`] ids, [`SPECIAL`], alpha 0.35, `gamma`, `counts`.
    fn setup(gamma: f64, counts: Option<&[u64]>) -> Setup<'_> {
        Setup {
            keys: crate::corruption::batch::Keys {
                seed: 0,
                epoch: 0,
                mask_rate: 0.15,
                special: crate::corruption::masking::SpecialIds {
                    pad: 0,
                    cls: 1,
                    sep: 2,
                    mask: 3,
                },
            },
            vocab_size: V,
            tokens: std::path::Path::new("tokens"),
            alpha: Some(0.35),
            gamma,
            temperature: 1.0,
            term_frequency: counts,
            unk: None,
            aux: None,
        }
    }

    /// The registry's entry of `d`.
    fn entry(d: Distribution) -> &'static Interpolation {
        use crate::corruption::distributions as ds;
        match d {
            Distribution::Uniform => &ds::UNIFORM,
            Distribution::TermFrequency => &ds::TERM_FREQUENCY,
            Distribution::SmoothedOneHot => &ds::SMOOTHED_ONE_HOT,
            Distribution::UnfSoh => &ds::UNF_SOH,
            Distribution::TfSoh => &ds::TF_SOH,
        }
    }

    /// The table the registry's entry of `d` makes at `gamma` (fixed distributions ignore it).
    fn table(d: Distribution, gamma: f64) -> ModelFree {
        entry(d).table(&setup(gamma, Some(&COUNTS))).unwrap()
    }

    /// The closed form, computed directly from its definition with normalised p_A and p_SOH.
    fn closed_form(d: Distribution, original: usize, alpha: f64, gamma: f64) -> Vec<f64> {
        let special = |i: usize| SPECIAL.contains(&(i as i32));
        let n = (0..V).filter(|&i| !special(i)).count() as f64;
        let total: f64 = (0..V)
            .filter(|&i| !special(i))
            .map(|i| COUNTS[i] as f64)
            .sum();
        let unf = |i: usize| if special(i) { 0.0 } else { 1.0 / n };
        let tf = |i: usize| {
            if special(i) {
                0.0
            } else {
                COUNTS[i] as f64 / total
            }
        };
        let soh = |i: usize| {
            if special(i) {
                0.0
            } else if i == original {
                1.0 - alpha
            } else {
                alpha / (n - 1.0)
            }
        };
        let interp = |a: &dyn Fn(usize) -> f64, g: f64| -> Vec<f64> {
            (0..V)
                .map(|i| {
                    if special(i) {
                        0.0
                    } else {
                        a(i).powf(g) * soh(i).powf(1.0 - g)
                    }
                })
                .collect()
        };
        let raw: Vec<f64> = match d {
            Distribution::Uniform => (0..V).map(unf).collect(),
            Distribution::TermFrequency => (0..V).map(tf).collect(),
            Distribution::SmoothedOneHot => (0..V).map(soh).collect(),
            Distribution::UnfSoh => interp(&unf, gamma),
            Distribution::TfSoh => interp(&tf, gamma),
        };
        let z: f64 = raw.iter().sum();
        raw.iter().map(|x| x / z).collect()
    }

    fn draws(t: &ModelFree, original: usize, n: u64, seed: u64) -> Vec<usize> {
        (0..n)
            .map(|s| t.sample(original, position_uniform(seed, 0, s, original as u32)))
            .collect()
    }

    /// Pearson's statistic against `p` over the ids of positive probability, and the number of
    /// those ids; panics if an id of probability 0 was drawn.
    fn chi_square(ids: &[usize], p: &[f64]) -> (f64, usize) {
        let mut counts = vec![0u64; p.len()];
        for &i in ids {
            assert!(p[i] > 0.0, "id {i} of probability 0 drawn");
            counts[i] += 1;
        }
        let n = ids.len() as f64;
        let mut x2 = 0.0;
        let mut k = 0;
        for (c, &q) in counts.iter().zip(p) {
            if q > 0.0 {
                x2 += (*c as f64 - q * n).powi(2) / (q * n);
                k += 1;
            }
        }
        (x2, k)
    }

    #[test]
    fn chi_square_per_distribution_against_its_closed_form() {
        // Upper 0.999 quantiles of chi-square with df = 1..=10.
        const Q999: [f64; 11] = [
            0.0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59,
        ];
        let cases = [
            (Distribution::Uniform, 1.0),
            (Distribution::TermFrequency, 1.0),
            (Distribution::SmoothedOneHot, 0.0),
            (Distribution::UnfSoh, 0.6),
            (Distribution::TfSoh, 0.6),
            (Distribution::TfSoh, 0.25),
        ];
        for (d, gamma) in cases {
            for original in [4usize, 9] {
                let t = table(d, gamma);
                let p = closed_form(d, original, 0.35, gamma);
                // The table's own probabilities are the closed form.
                for (a, b) in t.probabilities(original).iter().zip(&p) {
                    assert!((a - b).abs() < 1e-12, "{d:?} gamma {gamma}: {a} vs {b}");
                }
                let (x2, k) = chi_square(&draws(&t, original, 40_000, 7), &p);
                assert!(
                    x2 < Q999[k - 1],
                    "{d:?} gamma {gamma} o {original}: chi2 {x2}"
                );
                // Entropy and arg-max agree with the closed form.
                let h: f64 = -p
                    .iter()
                    .filter(|&&q| q > 0.0)
                    .map(|q| q * q.ln())
                    .sum::<f64>();
                assert!((t.entropy(original) - h).abs() < 1e-9, "{d:?}");
                let best = (0..V).max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)));
                assert_eq!(t.top1(original), best.unwrap(), "{d:?} gamma {gamma}");
            }
        }
    }

    #[test]
    fn chi_square_on_the_real_vocabulary() {
        // BERT's 30,522 ids with its special ids as `preprocess` passes them ([CLS], [SEP],
        // [PAD], [MASK]), Zipf-like counts over a shuffled rank with 2,522 ids never seen. The
        // draws are binned into about 50 runs of ids of equal expected mass.
        const VOCAB: usize = 30_522;
        let special = [101, 102, 0, 103];
        let is_special = |i: usize| special.contains(&(i as i32));
        let counts: Vec<u64> = (0..VOCAB)
            .map(|i| {
                let rank = (i * 7919) % VOCAB;
                if rank >= 28_000 {
                    0
                } else {
                    2_000_000 / (1 + rank as u64)
                }
            })
            .collect();
        let total: f64 = (0..VOCAB)
            .filter(|&i| !is_special(i))
            .map(|i| counts[i] as f64)
            .sum();
        let n_ok = (VOCAB - special.len()) as f64;
        for (d, gamma) in [
            (Distribution::Uniform, 1.0),
            (Distribution::TermFrequency, 1.0),
            (Distribution::SmoothedOneHot, 0.0),
            (Distribution::UnfSoh, 0.6),
            (Distribution::TfSoh, 0.6),
        ] {
            // The registry's entry, as `preprocess` makes it.
            let setup = Setup {
                keys: crate::corruption::batch::Keys {
                    seed: 0,
                    epoch: 0,
                    mask_rate: 0.15,
                    special: crate::corruption::masking::SpecialIds {
                        pad: 0,
                        cls: 101,
                        sep: 102,
                        mask: 103,
                    },
                },
                vocab_size: VOCAB,
                tokens: std::path::Path::new("tokens"),
                alpha: Some(0.35),
                gamma,
                temperature: 1.0,
                term_frequency: Some(&counts),
                unk: None,
                aux: None,
            };
            let t = entry(d).table(&setup).unwrap();
            for original in [1996usize, 29_999] {
                let unf = |_: usize| 1.0 / n_ok;
                let tf = |i: usize| counts[i] as f64 / total;
                let soh = |i: usize| {
                    if i == original {
                        0.65
                    } else {
                        0.35 / (n_ok - 1.0)
                    }
                };
                let raw: Vec<f64> = (0..VOCAB)
                    .map(|i| {
                        if is_special(i) {
                            return 0.0;
                        }
                        let a = match d {
                            Distribution::Uniform | Distribution::UnfSoh => unf(i),
                            _ => tf(i),
                        };
                        let g = match d {
                            Distribution::Uniform | Distribution::TermFrequency => 1.0,
                            Distribution::SmoothedOneHot => 0.0,
                            _ => gamma,
                        };
                        a.powf(g) * soh(i).powf(1.0 - g)
                    })
                    .collect();
                let z: f64 = raw.iter().sum();
                let p: Vec<f64> = raw.iter().map(|x| x / z).collect();
                for (i, (a, b)) in t.probabilities(original).iter().zip(&p).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-12,
                        "{d:?} o {original}: id {i}: {a} vs {b}"
                    );
                }
                // Bins: consecutive ids until about 1/50 of the mass.
                let mut bin = vec![0usize; VOCAB];
                let (mut k, mut mass) = (0usize, 0.0);
                for i in 0..VOCAB {
                    bin[i] = k;
                    mass += p[i];
                    if mass >= 0.02 {
                        k += 1;
                        mass = 0.0;
                    }
                }
                let bins = k + 1;
                let mut expected = vec![0.0f64; bins];
                for i in 0..VOCAB {
                    expected[bin[i]] += p[i];
                }
                let n = 200_000u64;
                let mut observed = vec![0u64; bins];
                for s in 0..n {
                    let id = t.sample(original, position_uniform(11, 0, s, original as u32));
                    assert!(p[id] > 0.0, "{d:?}: id {id} of probability 0 drawn");
                    observed[bin[id]] += 1;
                }
                let (mut x2, mut df) = (0.0, 0i64 - 1);
                for (o, e) in observed.iter().zip(&expected) {
                    if *e > 0.0 {
                        let e = e * n as f64;
                        x2 += (*o as f64 - e).powi(2) / e;
                        df += 1;
                    }
                }
                // The upper 0.999 quantile by Wilson-Hilferty (z = 3.09).
                let df = df as f64;
                let c = 2.0 / (9.0 * df);
                let q999 = df * (1.0 - c + 3.09 * c.sqrt()).powi(3);
                assert!(
                    x2 < q999,
                    "{d:?} gamma {gamma} o {original}: chi2 {x2} over {df} df (0.999: {q999})"
                );
            }
        }
    }

    #[test]
    fn special_tokens_are_never_drawn_and_soh_keeps_the_original_at_one_minus_alpha() {
        let soh = table(Distribution::SmoothedOneHot, 0.0);
        let n = 100_000;
        let ids = draws(&soh, 8, n, 3);
        assert!(ids.iter().all(|&i| !SPECIAL.contains(&(i as i32))));
        let kept = ids.iter().filter(|&&i| i == 8).count() as f64 / n as f64;
        // 1 - alpha = 0.65; the standard error is 0.0015.
        assert!((kept - 0.65).abs() < 0.006, "kept {kept}");
        for d in [Distribution::Uniform, Distribution::TermFrequency] {
            assert!(draws(&table(d, 1.0), 5, 20_000, 1)
                .iter()
                .all(|&i| !SPECIAL.contains(&(i as i32))));
        }
    }

    #[test]
    fn interpolation_ends_are_the_pure_distributions_draw_for_draw() {
        for (interp, easy) in [
            (Distribution::UnfSoh, Distribution::Uniform),
            (Distribution::TfSoh, Distribution::TermFrequency),
        ] {
            for original in [4usize, 5, 10] {
                assert_eq!(
                    draws(&table(interp, 1.0), original, 5_000, 2),
                    draws(&table(easy, 1.0), original, 5_000, 2)
                );
                assert_eq!(
                    draws(&table(interp, 0.0), original, 5_000, 2),
                    draws(
                        &table(Distribution::SmoothedOneHot, 0.0),
                        original,
                        5_000,
                        2
                    )
                );
            }
        }
    }

    #[test]
    fn extreme_uniforms_and_zero_count_originals_stay_in_range() {
        let tf = table(Distribution::TermFrequency, 1.0);
        for o in 0..V {
            for u in [0.0, 0.5, 1.0 - f64::EPSILON] {
                let i = tf.sample(o, u);
                assert!(
                    COUNTS[i] > 0 && !SPECIAL.contains(&(i as i32)),
                    "o {o} u {u}: {i}"
                );
            }
        }
        // A zero-count original (id 5) in tf-soh with gamma > 0 has probability 0.
        let t = table(Distribution::TfSoh, 0.5);
        assert_eq!(t.probabilities(5)[5], 0.0);
        assert!(draws(&t, 5, 5_000, 4).iter().all(|&i| i != 5));
        assert_eq!(tf.sample(4, 0.0), 4);
        assert_eq!(tf.sample(4, 1.0 - f64::EPSILON), 11);
    }

    #[test]
    fn bad_tables_are_refused() {
        let none = entry(Distribution::TfSoh).table(&setup(0.5, None));
        assert!(matches!(none, Err(ModelFreeError::NoCounts("tf-soh"))));
        let short = entry(Distribution::TermFrequency).table(&setup(1.0, Some(&[1, 2])));
        assert!(matches!(short, Err(ModelFreeError::CountsSize { .. })));
        let zeros = [0u64; V];
        let empty = entry(Distribution::TermFrequency).table(&setup(1.0, Some(&zeros)));
        assert!(matches!(empty, Err(ModelFreeError::Empty(_))));
        // Through the registry, the error names the token folder.
        let err = crate::corruption::distributions::find("tf-soh", None)
            .unwrap()
            .sampler(&setup(0.5, None))
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").starts_with("--tokens tokens: --distribution tf-soh: needs"),
            "{err:#}"
        );
    }
}
