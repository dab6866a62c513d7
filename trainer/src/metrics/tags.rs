//! The TensorBoard tags of the records of `metrics.jsonl`: every number of a line (its `step`
//! aside, which is the event's step) becomes the scalar `<group>/<field>`, under the field's
//! name in the line, grouped by kind:
//!
//! | group | fields |
//! | --- | --- |
//! | `train/` | `loss`, `accuracy`, `precision`, `recall`, `f1`, `grad_norm`, `lr`, and the objective's own figures (electra: `generator_loss`) |
//! | `val/` | `loss`, `accuracy`, `precision`, `recall`, `f1`, `auc`, `baseline_accuracy`, `rows`, `tokens` |
//! | `perf/` | `seq_per_s`, `tokens_per_s`, `mfu`, `peak_memory_bytes`, `data_wait_fraction` |
//! | `curriculum/` | `epoch`, `temperature` |
//!
//! A null field (MLM's class metrics, MFU on the CPU) has no value at that step. README,
//! "TensorBoard", lists the same.
use super::{TrainRecord, ValidationRecord};

/// A record's scalars for TensorBoard.
pub trait Scalars {
    /// The update it was logged at (the event's step).
    fn step(&self) -> u64;
    /// (tag, value) of every number of the record but its step.
    fn scalars(&self) -> Vec<(String, f64)>;
}

/// Collects `group/name` for the fields that hold a value.
struct Tags(Vec<(String, f64)>);

impl Tags {
    fn put(&mut self, group: &str, name: &str, v: impl Into<Option<f64>>) -> &mut Self {
        if let Some(v) = v.into() {
            self.0.push((format!("{group}/{name}"), v));
        }
        self
    }
}

impl Scalars for TrainRecord {
    fn step(&self) -> u64 {
        self.step
    }

    fn scalars(&self) -> Vec<(String, f64)> {
        let mut t = Tags(vec![]);
        t.put("train", "loss", self.loss)
            .put("train", "accuracy", self.accuracy)
            .put("train", "precision", self.precision)
            .put("train", "recall", self.recall)
            .put("train", "f1", self.f1)
            .put("train", "grad_norm", self.grad_norm)
            .put("train", "lr", self.lr);
        for (name, v) in &self.objective_figures {
            t.put("train", name, *v);
        }
        t.put("perf", "seq_per_s", self.seq_per_s)
            .put("perf", "tokens_per_s", self.tokens_per_s)
            .put("perf", "mfu", self.mfu)
            .put(
                "perf",
                "peak_memory_bytes",
                self.peak_memory_bytes.map(|b| b as f64),
            )
            .put("perf", "data_wait_fraction", self.data_wait_fraction)
            .put(
                "perf",
                "allreduce_tail_ms",
                self.allreduce.as_ref().map(|c| c.tail_ms),
            )
            .put("curriculum", "epoch", f64::from(self.epoch))
            .put("curriculum", "temperature", self.temperature);
        t.0
    }
}

impl Scalars for ValidationRecord {
    fn step(&self) -> u64 {
        self.step
    }

    fn scalars(&self) -> Vec<(String, f64)> {
        let mut t = Tags(vec![]);
        t.put("val", "loss", self.loss)
            .put("val", "accuracy", self.accuracy)
            .put("val", "precision", self.precision)
            .put("val", "recall", self.recall)
            .put("val", "f1", self.f1)
            .put("val", "auc", self.auc)
            .put("val", "baseline_accuracy", self.baseline_accuracy)
            .put("val", "rows", self.rows as f64)
            .put("val", "tokens", self.tokens as f64);
        t.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A train record with every field set.
    pub fn train() -> TrainRecord {
        TrainRecord {
            split: "train".into(),
            step: 50,
            epoch: 2,
            temperature: Some(1.25),
            lr: 1e-3,
            loss: 0.5,
            grad_norm: 1.5,
            accuracy: 0.75,
            precision: Some(0.25),
            recall: Some(0.125),
            f1: Some(0.0625),
            seq_per_s: 400.0,
            tokens_per_s: 25600.0,
            mfu: Some(0.375),
            peak_memory_bytes: Some(3 << 30),
            data_wait_fraction: 0.03125,
            allreduce: None,
            objective_figures: BTreeMap::from([("generator_loss".to_string(), 6.5)]),
        }
    }

    fn val() -> ValidationRecord {
        ValidationRecord {
            split: "validation".into(),
            step: 100,
            loss: 0.4,
            accuracy: 0.85,
            precision: Some(0.5),
            recall: Some(0.25),
            f1: Some(1.0 / 3.0),
            auc: Some(0.66),
            baseline_accuracy: Some(0.853),
            rows: 1145,
            tokens: 70_000,
        }
    }

    /// Every number of the record's JSON line but its step, by field name.
    fn json_numbers<T: serde::Serialize>(r: &T) -> BTreeMap<String, f64> {
        let serde_json::Value::Object(m) = serde_json::to_value(r).unwrap() else {
            panic!("a record is an object")
        };
        m.into_iter()
            .filter(|(k, _)| k != "step")
            .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
            .collect()
    }

    /// The scalars by the last part of their tag, checking the group of each.
    fn by_field(scalars: Vec<(String, f64)>, groups: &[&str]) -> BTreeMap<String, f64> {
        let n = scalars.len();
        let out: BTreeMap<String, f64> = scalars
            .into_iter()
            .map(|(tag, v)| {
                let (group, field) = tag.split_once('/').expect("group/field");
                assert!(groups.contains(&group), "{tag}");
                (field.to_string(), v)
            })
            .collect();
        assert_eq!(out.len(), n, "a field under two groups");
        out
    }

    #[test]
    fn every_number_of_a_metrics_line_has_its_tag() {
        // A field added to a record without a tag fails here.
        let t = train();
        let groups = ["train", "perf", "curriculum"];
        assert_eq!(by_field(t.scalars(), &groups), json_numbers(&t));
        let v = val();
        assert_eq!(by_field(v.scalars(), &["val"]), json_numbers(&v));
        assert_eq!((t.step(), v.step()), (50, 100));
    }

    #[test]
    fn tags_are_grouped_by_kind_and_nulls_are_left_out() {
        let tags: Vec<String> = train().scalars().into_iter().map(|(t, _)| t).collect();
        for want in [
            "train/loss",
            "train/generator_loss",
            "train/lr",
            "perf/seq_per_s",
            "perf/peak_memory_bytes",
            "curriculum/temperature",
        ] {
            assert!(tags.iter().any(|t| t == want), "{want} in {tags:?}");
        }
        let mlm = TrainRecord {
            temperature: None,
            precision: None,
            recall: None,
            f1: None,
            mfu: None,
            peak_memory_bytes: None,
            objective_figures: BTreeMap::new(),
            ..train()
        };
        let tags: Vec<String> = mlm.scalars().into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            tags,
            [
                "train/loss",
                "train/accuracy",
                "train/grad_norm",
                "train/lr",
                "perf/seq_per_s",
                "perf/tokens_per_s",
                "perf/data_wait_fraction",
                "curriculum/epoch"
            ]
        );
    }
}
