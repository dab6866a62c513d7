//! The results of a `trainer finetune` command: one record per run (model x grid point x
//! seed), written atomically as the run ends under `OUT/runs/` so that an interrupted grid
//! resumes by skipping them; the summary over seeds (median, the paper's and ELECTRA's
//! convention, and mean +- std) per model and grid point; the best grid point per model by dev
//! median; `results.json`, the Markdown table `results.md` and the plot.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::train::{EpochScores, Fixed, Recipe};

/// Folder of the per-run records inside `--out`.
pub const RUNS: &str = "runs";
pub const RESULTS_JSON: &str = "results.json";
pub const RESULTS_MD: &str = "results.md";
pub const PLOT: &str = "scores.png";

/// Everything that decides a run's result; its SHA-256 names the run's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunKey {
    /// Task name and SHA-256 of its files (train, dev and test, in order).
    pub task: String,
    pub task_sha256: String,
    /// The model: its fingerprint (weights and config, or the config for random init).
    pub model_sha256: String,
    /// Pre-trained or random.
    pub init: super::source::Init,
    pub tokenizer_sha256: String,
    pub recipe: Recipe,
    pub seed: u64,
    pub fixed: Fixed,
}

impl RunKey {
    /// The record's file name: 16 hex digits of the key's SHA-256.
    pub fn file_name(&self) -> anyhow::Result<String> {
        let json = serde_json::to_string(self)?;
        Ok(format!(
            "{}.json",
            &shared::files::hash::sha256_hex(json.as_bytes())[..16]
        ))
    }
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub key: RunKey,
    /// How the table names the model.
    pub model: String,
    /// Pre-training updates of the model, where known.
    pub pretrain_updates: Option<u64>,
    /// Dev scores after every epoch.
    pub epochs: Vec<EpochScores>,
    /// The score the run counts with: the task's main metric on its first dev split after the
    /// last epoch.
    pub score: f64,
    pub seconds: f64,
    pub train_examples_per_s: f64,
}

/// Reads the record of `key` under `out`, if a finished run left one.
pub fn read(out: &Path, key: &RunKey) -> anyhow::Result<Option<RunRecord>> {
    let path = out.join(RUNS).join(key.file_name()?);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let r: RunRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: unexpected contents", path.display()))?;
    Ok((r.key == *key).then_some(r))
}

/// Writes a finished run's record atomically.
pub fn write(out: &Path, r: &RunRecord) -> anyhow::Result<PathBuf> {
    let dir = out.join(RUNS);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(r.key.file_name()?);
    shared::files::atomic::write_json_atomic(&path, r)?;
    Ok(path)
}

/// The seeds' scores of one model at one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub model: String,
    pub pretrain_updates: Option<u64>,
    pub recipe: Recipe,
    pub scores: Vec<f64>,
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for one seed.
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

/// Median (mean of the middle two for an even count), mean and sample standard deviation.
pub fn summarise(scores: &[f64]) -> (f64, f64, f64) {
    let n = scores.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = scores.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let mean = s.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    (median, mean, std)
}

/// Groups `runs` by model and grid point, in the order first seen.
pub fn points(runs: &[RunRecord]) -> Vec<Point> {
    let mut out: Vec<Point> = vec![];
    for r in runs {
        let found = out
            .iter_mut()
            .find(|p| p.model == r.model && p.recipe == r.key.recipe);
        match found {
            Some(p) => p.scores.push(r.score),
            None => out.push(Point {
                model: r.model.clone(),
                pretrain_updates: r.pretrain_updates,
                recipe: r.key.recipe,
                scores: vec![r.score],
                median: 0.0,
                mean: 0.0,
                std: 0.0,
                min: 0.0,
                max: 0.0,
            }),
        }
    }
    for p in &mut out {
        (p.median, p.mean, p.std) = summarise(&p.scores);
        p.min = p.scores.iter().copied().fold(f64::INFINITY, f64::min);
        p.max = p.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
    out
}

/// Each model's best grid point by dev median (ties: the higher mean, then the first), best
/// model first.
pub fn best_per_model(points: &[Point]) -> Vec<Point> {
    let mut best: Vec<Point> = vec![];
    for p in points {
        match best.iter_mut().find(|b| b.model == p.model) {
            Some(b) if (p.median, p.mean) > (b.median, b.mean) => *b = p.clone(),
            Some(_) => {}
            None => best.push(p.clone()),
        }
    }
    best.sort_by(|a, b| {
        b.median
            .total_cmp(&a.median)
            .then(b.mean.total_cmp(&a.mean))
    });
    best
}

/// The ranked Markdown table: each model at its best grid point.
pub fn markdown(task: &str, metric: &str, best: &[Point], seeds: usize) -> String {
    let mut s = format!(
        "| rank | model | pre-training updates | {task} dev {metric}: median | mean ± std | min-max | seeds | lr | epochs | batch | weight decay | warm-up |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (i, p) in best.iter().enumerate() {
        s += &format!(
            "| {} | {} | {} | {:.4} | {:.4} ± {:.4} | {:.4}-{:.4} | {}/{seeds} | {:e} | {} | {} | {} | {} |\n",
            i + 1,
            p.model,
            p.pretrain_updates.map_or("-".to_string(), |u| u.to_string()),
            p.median,
            p.mean,
            p.std,
            p.min,
            p.max,
            p.scores.len(),
            p.recipe.lr,
            p.recipe.epochs,
            p.recipe.batch_size,
            p.recipe.weight_decay,
            p.recipe.warmup_proportion
        );
    }
    s
}

/// The dev median per epoch of each model at its best grid point (`scores.png`); when a
/// pre-training run comes with two or more of its checkpoints (or export), also each run's best
/// median against its updates beside random initialisation's (`scores-vs-updates.png`, the
/// paper's Figure 4, left; [`score_series`]).
pub fn plot(
    path: &Path,
    task: &str,
    metric: &str,
    best: &[Point],
    runs: &[RunRecord],
) -> anyhow::Result<()> {
    use crate::plots::{line_plot, palette, Chart, Curve};
    let curves = best
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mine: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| r.model == p.model && r.key.recipe == p.recipe)
                .collect();
            let points = (1..=p.recipe.epochs)
                .map(|epoch| {
                    let scores: Vec<f64> = mine
                        .iter()
                        .filter_map(|r| r.epochs.get(epoch as usize - 1))
                        .map(|e| e.dev.main)
                        .collect();
                    (epoch as f64, summarise(&scores).0)
                })
                .collect();
            Curve {
                points,
                color: palette(i),
                label: p.model.clone(),
            }
        })
        .collect();
    let y = format!("dev {metric} (median over seeds)");
    line_plot(
        path,
        &Chart {
            title: format!("{task}: each model at its best grid point"),
            x_label: "fine-tuning epoch",
            y_label: &y,
            curves,
            marks: &[],
        },
    )?;
    let by_updates = score_series(best);
    if by_updates.iter().any(|c| c.points.len() >= 2) {
        line_plot(
            &path.with_file_name("scores-vs-updates.png"),
            &Chart {
                title: format!("{task}: score against pre-training updates"),
                x_label: "pre-training updates",
                y_label: &y,
                curves: by_updates,
                marks: &[],
            },
        )?;
    }
    Ok(())
}

/// The curves of `scores-vs-updates.png`: one per pre-training run (a run and its checkpoints,
/// `run` and `run/step-N`: the best median against the updates behind each), and every model
/// without pre-training (random initialisation) as a flat line across the updates' range, the
/// level a pre-trained model has to beat.
pub fn score_series(best: &[Point]) -> Vec<crate::plots::Curve> {
    use crate::plots::{palette, Curve};
    let mut runs: Vec<(String, Vec<(f64, f64)>)> = vec![];
    let mut flat: Vec<&Point> = vec![];
    for p in best {
        let Some(u) = p.pretrain_updates else {
            flat.push(p);
            continue;
        };
        let run = p.model.split('/').next().unwrap_or(&p.model).to_string();
        match runs.iter_mut().find(|(r, _)| *r == run) {
            Some((_, pts)) => pts.push((u as f64, p.median)),
            None => runs.push((run, vec![(u as f64, p.median)])),
        }
    }
    let xs = runs.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let mut curves: Vec<Curve> = runs
        .into_iter()
        .enumerate()
        .map(|(i, (run, mut points))| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            // A run's export and its last checkpoint are the same weights: one point.
            points.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            Curve {
                points,
                color: palette(i),
                label: run,
            }
        })
        .collect();
    if lo.is_finite() {
        let n = curves.len();
        curves.extend(flat.into_iter().enumerate().map(|(i, p)| Curve {
            points: vec![(lo, p.median), (hi.max(lo + 1.0), p.median)],
            color: palette(n + i),
            label: if p.model.ends_with("(random init)") {
                p.model.clone()
            } else {
                format!("{} (random init)", p.model)
            },
        }));
    }
    curves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(model: &str, updates: Option<u64>, median: f64) -> Point {
        Point {
            model: model.into(),
            pretrain_updates: updates,
            recipe: Recipe {
                lr: 1e-3,
                epochs: 3,
                batch_size: 32,
                weight_decay: 0.01,
                warmup_proportion: 0.1,
            },
            scores: vec![median],
            median,
            mean: median,
            std: 0.0,
            min: median,
            max: median,
        }
    }

    #[test]
    fn each_pre_training_run_is_its_own_curve_and_random_init_a_flat_line() {
        let best = [
            point("fe/step-0000800", Some(800), 0.74),
            point("mlm", Some(1600), 0.75),
            point("fe", Some(1600), 0.73),
            point("tiny", None, 0.76),
            point("fe/step-0000400", Some(400), 0.72),
            point("mlm/step-0000400", Some(400), 0.70),
            point("fe/step-0001600", Some(1600), 0.73),
            point("fe (random init)", None, 0.75),
        ];
        let c = score_series(&best);
        let got: Vec<(&str, &[(f64, f64)])> = c
            .iter()
            .map(|c| (c.label.as_str(), &c.points[..]))
            .collect();
        assert_eq!(
            got,
            vec![
                ("fe", &[(400.0, 0.72), (800.0, 0.74), (1600.0, 0.73)][..]),
                ("mlm", &[(400.0, 0.70), (1600.0, 0.75)][..]),
                ("tiny (random init)", &[(400.0, 0.76), (1600.0, 0.76)][..]),
                ("fe (random init)", &[(400.0, 0.75), (1600.0, 0.75)][..]),
            ]
        );
    }

    #[test]
    fn median_mean_and_sample_std() {
        let (m, mean, sd) = summarise(&[0.7, 0.9, 0.8]);
        assert_eq!(m, 0.8);
        assert!((mean - 0.8).abs() < 1e-12);
        assert!((sd - 0.1).abs() < 1e-12);
        assert_eq!(summarise(&[1.0, 4.0, 2.0, 3.0]).0, 2.5);
        assert_eq!(summarise(&[0.5]), (0.5, 0.5, 0.0));
    }
}
