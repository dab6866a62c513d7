//! `metrics.jsonl`: one JSON object per line ([`super::records`]), appended as the run goes;
//! a resumed run first drops the lines written after its checkpoint.
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends records to `metrics.jsonl`.
pub struct MetricsWriter {
    path: PathBuf,
    file: std::fs::File,
    /// The file's length: whole lines only.
    len: u64,
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
        let len = file
            .metadata()
            .with_context(|| format!("reading the length of {}", path.display()))?
            .len();
        Ok(Self { path, file, len })
    }

    /// Appends one record as a line. A line that cannot be written whole (a full disk) is
    /// taken back: the file keeps whole lines only.
    pub fn write<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            let _ = self.file.set_len(self.len);
            return Err(e).with_context(|| format!("writing {}", self.path.display()));
        }
        self.len += line.len() as u64;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
