//! Reading a trainer run folder back.
use serde_json::Value;
use std::path::Path;

/// Lines of one split (`train`, `validation`) of a run's `metrics.jsonl`.
pub fn metrics(run_dir: &Path, split: &str) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["split"] == split)
        .collect()
}
