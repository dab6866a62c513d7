//! The metrics as GLUE reports them (and as scikit-learn and SciPy compute them):
//!
//! - accuracy;
//! - F1 of class 1 (MRPC, QQP), 0 when there is no true or predicted positive (scikit-learn's
//!   `zero_division` default);
//! - Matthews correlation (CoLA), scikit-learn's multi-class form, 0 when either the labels or
//!   the predictions hold one class;
//! - Pearson and Spearman correlation (STS-B, regression), Spearman on average ranks for ties;
//!   0 where one side is constant (SciPy returns NaN there; a number keeps the run rankable and
//!   its record JSON).
use anyhow::{bail, ensure};

use super::{Example, Label, Metric, Prediction};

/// Share of equal pairs.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    let right = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    right as f64 / gold.len().max(1) as f64
}

/// F1 of class 1: `2 tp / (2 tp + fp + fn)`.
pub fn f1(pred: &[usize], gold: &[usize]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let d = 2 * tp + fp + fn_;
    if d == 0 {
        0.0
    } else {
        2.0 * tp as f64 / d as f64
    }
}

/// Matthews correlation coefficient, multi-class (scikit-learn's `matthews_corrcoef`).
pub fn matthews(pred: &[usize], gold: &[usize]) -> f64 {
    let k = pred.iter().chain(gold).copied().max().map_or(0, |m| m + 1);
    let (mut t, mut p) = (vec![0f64; k], vec![0f64; k]);
    let mut correct = 0f64;
    for (&a, &b) in pred.iter().zip(gold) {
        p[a] += 1.0;
        t[b] += 1.0;
        if a == b {
            correct += 1.0;
        }
    }
    let n = gold.len() as f64;
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    let cov_tp = correct * n - dot(&t, &p);
    let cov_pp = n * n - dot(&p, &p);
    let cov_tt = n * n - dot(&t, &t);
    if cov_pp * cov_tt == 0.0 {
        0.0
    } else {
        cov_tp / (cov_tt * cov_pp).sqrt()
    }
}

/// Pearson correlation; 0 where either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
    }
}

/// 1-based ranks, ties sharing their average rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = avg;
        }
        i = j + 1;
    }
    out
}

/// Spearman correlation: Pearson of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Every metric of `metric` (main first, named as [`Metric::names`]) of `preds` against the
/// labels of `examples`.
pub fn score(
    metric: Metric,
    examples: &[Example],
    preds: &[Prediction],
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    ensure!(
        preds.len() == examples.len(),
        "{} predictions for {} examples",
        preds.len(),
        examples.len()
    );
    ensure!(!examples.is_empty(), "no examples to score");
    let values = |v: Vec<f64>| metric.names().iter().copied().zip(v).collect();
    if metric == Metric::Correlation {
        let mut x = Vec::with_capacity(preds.len());
        let mut y = Vec::with_capacity(preds.len());
        for (e, p) in examples.iter().zip(preds) {
            let (Some(Label::Value(g)), Prediction::Value(v)) = (e.label, p) else {
                bail!(
                    "example {}: expected a labelled regression example and value",
                    e.id
                );
            };
            x.push(*v);
            y.push(g);
        }
        return Ok(values(vec![spearman(&x, &y), pearson(&x, &y)]));
    }
    let mut pred = Vec::with_capacity(preds.len());
    let mut gold = Vec::with_capacity(preds.len());
    for (e, p) in examples.iter().zip(preds) {
        let (Some(Label::Class(g)), Prediction::Class(c)) = (e.label, p) else {
            bail!(
                "example {}: expected a labelled class example and a class",
                e.id
            );
        };
        pred.push(*c);
        gold.push(g);
    }
    let acc = accuracy(&pred, &gold);
    Ok(values(match metric {
        Metric::Accuracy => vec![acc],
        Metric::AccuracyF1 => vec![acc, f1(&pred, &gold)],
        Metric::Matthews => vec![matthews(&pred, &gold), acc],
        Metric::Correlation => unreachable!(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    // Expected values computed once with scikit-learn 1.9.1 and SciPy 1.17.1 (python3), each with
    // its line beside it (P, G, P3, G3, X, Y as below).
    const P: [usize; 10] = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1];
    const G: [usize; 10] = [1, 0, 0, 1, 0, 1, 1, 0, 1, 0];

    #[test]
    fn accuracy_f1_and_matthews_as_sklearn() {
        // accuracy_score(G, P)
        close(accuracy(&P, &G), 0.7);
        // f1_score(G, P)
        close(f1(&P, &G), SK_F1);
        // matthews_corrcoef(G, P)
        close(matthews(&P, &G), SK_MCC);
        // matthews_corrcoef(G3, P3), three classes
        close(matthews(&P3, &G3), SK_MCC3);
    }

    #[test]
    fn degenerate_cases_as_sklearn() {
        // matthews_corrcoef([0,1,1,0], [1,1,1,1]) == 0.0 (one predicted class)
        assert_eq!(matthews(&[1, 1, 1, 1], &[0, 1, 1, 0]), 0.0);
        // matthews_corrcoef([1,1], [1,1]) == 0.0 (one class on both sides)
        assert_eq!(matthews(&[1, 1], &[1, 1]), 0.0);
        // f1_score([0,0], [0,0]) == 0.0 (zero_division)
        assert_eq!(f1(&[0, 0], &[0, 0]), 0.0);
        // f1_score([1,1], [0,0]) == 0.0
        assert_eq!(f1(&[0, 0], &[1, 1]), 0.0);
        // pearsonr(const, y) is nan in SciPy: 0 here
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(spearman(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), 0.0);
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0);
        close(spearman(&[1.0, 2.0, 3.0], &[9.0, 4.0, 1.0]), -1.0);
    }

    #[test]
    fn correlations_with_ties_as_scipy() {
        // scipy.stats.rankdata(X)
        assert_eq!(
            ranks(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]),
            [4.5, 1.5, 6.0, 1.5, 7.5, 10.0, 3.0, 9.0, 7.5, 4.5]
        );
        // scipy.stats.pearsonr(X, Y)[0]
        close(pearson(&X, &Y), SP_PEARSON);
        // scipy.stats.spearmanr(X, Y)[0]
        close(spearman(&X, &Y), SP_SPEARMAN);
    }

    const P3: [usize; 9] = [0, 1, 2, 2, 1, 0, 0, 2, 1];
    const G3: [usize; 9] = [0, 1, 2, 1, 1, 0, 2, 2, 0];
    const X: [f64; 10] = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0];
    const Y: [f64; 10] = [2.5, 0.5, 4.0, 1.0, 4.0, 4.8, 2.0, 3.5, 4.0, 3.0];
    // python3 -c "from sklearn.metrics import f1_score as f; print(repr(f(G, P)))"
    const SK_F1: f64 = 0.7272727272727273;
    // python3 -c "from sklearn.metrics import matthews_corrcoef as m; print(repr(m(G, P)))"
    const SK_MCC: f64 = 0.408248290463863;
    // python3 -c "from sklearn.metrics import matthews_corrcoef as m; print(repr(m(G3, P3)))"
    const SK_MCC3: f64 = 0.5;
    // python3 -c "from scipy.stats import pearsonr; print(repr(pearsonr(X, Y)[0]))"
    const SP_PEARSON: f64 = 0.8899414610508947;
    // python3 -c "from scipy.stats import spearmanr; print(repr(spearmanr(X, Y)[0]))"
    const SP_SPEARMAN: f64 = 0.9102210805397429;
}
