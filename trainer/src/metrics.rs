//! `metrics.jsonl`: one JSON object per line, `"split": "train"` every `--log-every` updates
//! and `"split": "validation"` every `--validate-every` updates.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One logged interval of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    pub split: String,
    /// Updates done at the end of the interval.
    pub step: u64,
    /// Epoch number of the interval's last micro-batch.
    pub epoch: u32,
    /// That epoch's temperature (from its manifest; null for MLM).
    pub temperature: Option<f64>,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Mean loss over the interval's updates.
    pub loss: f64,
    /// Gradient norm before clipping, last update.
    pub grad_norm: f64,
    /// RTD: accuracy over real tokens; MLM: accuracy at masked positions.
    pub accuracy: f64,
    /// RTD: precision of "replaced" (null when nothing was predicted replaced, and for MLM).
    pub precision: Option<f64>,
    /// RTD: recall of "replaced" (null when nothing was replaced, and for MLM).
    pub recall: Option<f64>,
    pub seq_per_s: f64,
    /// Real (non-padding) tokens per second.
    pub tokens_per_s: f64,
    /// Model FLOPs utilisation (shared::cost FLOPs / device peak; null where the peak is unknown).
    pub mfu: Option<f64>,
    /// Peak CUDA memory in bytes (null on the CPU or where libtorch does not report it).
    pub peak_memory_bytes: Option<u64>,
    /// Fraction of the interval's wall time spent waiting for the loader.
    pub data_wait_fraction: f64,
}

/// One validation pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub split: String,
    pub step: u64,
    pub loss: f64,
    pub accuracy: f64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// RTD: accuracy of predicting "original" everywhere (1 - replaced fraction).
    pub baseline_accuracy: Option<f64>,
    pub rows: u64,
    pub tokens: u64,
}

/// Appends records to `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsWriter {
    /// Opens `run_dir/metrics.jsonl` for appending. When resuming after `step`, lines of
    /// later steps (written after the checkpoint) are dropped first.
    pub fn open(run_dir: &Path, resume_step: Option<u64>) -> anyhow::Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        if let Some(step) = resume_step {
            if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                            .is_some_and(|s| s <= step)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                shared::files::atomic::write_atomic(&path, kept.as_bytes())?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { path, file })
    }

    /// Appends one record as a line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Reads the records of one split from `metrics.jsonl`.
pub fn read_split<T: serde::de::DeserializeOwned>(
    run_dir: &Path,
    split: &str,
) -> anyhow::Result<Vec<T>> {
    let path = run_dir.join(METRICS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {}: not JSON", path.display(), n + 1))?;
        if v.get("split").and_then(|s| s.as_str()) == Some(split) {
            out.push(
                serde_json::from_value(v)
                    .with_context(|| format!("{}: line {}", path.display(), n + 1))?,
            );
        }
    }
    Ok(out)
}

/// Accuracy, precision and recall of "replaced" from counts
/// `[correct, total, true_positive, predicted_positive, actual_positive]`.
pub fn rates(c: &[f64; 5]) -> (f64, Option<f64>, Option<f64>) {
    let acc = if c[1] > 0.0 { c[0] / c[1] } else { 0.0 };
    let precision = (c[3] > 0.0).then(|| c[2] / c[3]);
    let recall = (c[4] > 0.0).then(|| c[2] / c[4]);
    (acc, precision, recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_counts() {
        let (a, p, r) = rates(&[8.0, 10.0, 2.0, 4.0, 3.0]);
        assert_eq!((a, p, r), (0.8, Some(0.5), Some(2.0 / 3.0)));
        assert_eq!(rates(&[1.0, 1.0, 0.0, 0.0, 0.0]).1, None);
    }

    #[test]
    fn resume_drops_lines_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = MetricsWriter::open(dir.path(), None).unwrap();
        for step in [1u64, 2, 3] {
            w.write(&serde_json::json!({"split": "train", "step": step}))
                .unwrap();
        }
        drop(w);
        let _ = MetricsWriter::open(dir.path(), Some(2)).unwrap();
        let v: Vec<serde_json::Value> = read_split(dir.path(), "train").unwrap();
        assert_eq!(v.len(), 2);
    }
}
