//! Test predictions as GLUE's submission files: `index<TAB>prediction` lines under that header,
//! the label string for classification (`0`/`1`, `entailment`, ...), the value with 3 decimals
//! for regression; named as the GLUE server wants (`CoLA.tsv`, `MNLI-m.tsv`, `MNLI-mm.tsv`,
//! `STS-B.tsv`, ...); other tasks `NAME.tsv` (`NAME-SPLIT.tsv` with several test splits).
//! Written atomically.
use anyhow::{bail, ensure};
use std::fmt::Write as _;
use std::path::Path;

use super::{glue, Prediction, Split, Task};

/// The submission file of `split` of `task`.
pub fn submission_file_name(task: &Task, split: &Split) -> String {
    if let Some(spec) = glue::spec(&task.name) {
        return match split.name.as_str() {
            "test_matched" => format!("{}-m.tsv", spec.submission),
            "test_mismatched" => format!("{}-mm.tsv", spec.submission),
            _ => format!("{}.tsv", spec.submission),
        };
    }
    if task.test.len() > 1 || split.name != "test" {
        format!("{}-{}.tsv", task.name, split.name)
    } else {
        format!("{}.tsv", task.name)
    }
}

/// Writes `preds` of `split`'s examples to `path` in GLUE's submission format.
pub fn write_submission(
    task: &Task,
    split: &Split,
    preds: &[Prediction],
    path: &Path,
) -> anyhow::Result<()> {
    ensure!(
        preds.len() == split.examples.len(),
        "task {} split {}: {} predictions for {} examples",
        task.name,
        split.name,
        preds.len(),
        split.examples.len()
    );
    let mut out = String::from("index\tprediction\n");
    for (e, p) in split.examples.iter().zip(preds) {
        let value = match (p, task.labels()) {
            (Prediction::Class(c), Some(labels)) => match labels.get(*c) {
                Some(l) => l.clone(),
                None => bail!("task {}: class {c} has no label ({labels:?})", task.name),
            },
            (Prediction::Value(v), None) => format!("{v:.3}"),
            _ => bail!("task {}: a prediction of the wrong kind: {p:?}", task.name),
        };
        let _ = writeln!(out, "{}\t{value}", e.id);
    }
    shared::files::atomic::write_atomic(path, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::{Example, Metric, Source};
    use super::*;

    fn split(name: &str, n: usize) -> Split {
        Split {
            name: name.into(),
            files: vec![],
            examples: (0..n)
                .map(|i| Example {
                    id: (i + 10).to_string(),
                    text_a: "a".into(),
                    text_b: None,
                    label: None,
                })
                .collect(),
            skipped: vec![],
        }
    }

    fn task(name: &str, labels: Option<&[&str]>, test: Vec<Split>) -> Task {
        Task {
            name: name.into(),
            train: split("train", 1),
            dev: vec![split("dev", 1)],
            test,
            metric: Metric::Accuracy,
            label_names: labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
            source: Source::Files,
        }
    }

    #[test]
    fn glue_names_and_label_strings() {
        let nli = ["entailment", "neutral", "contradiction"];
        let t = task(
            "mnli",
            Some(&nli),
            vec![split("test_matched", 2), split("test_mismatched", 2)],
        );
        assert_eq!(submission_file_name(&t, &t.test[0]), "MNLI-m.tsv");
        assert_eq!(submission_file_name(&t, &t.test[1]), "MNLI-mm.tsv");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("MNLI-m.tsv");
        write_submission(
            &t,
            &t.test[0],
            &[Prediction::Class(2), Prediction::Class(0)],
            &p,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "index\tprediction\n10\tcontradiction\n11\tentailment\n"
        );
        let s = task("stsb", None, vec![split("test", 1)]);
        assert_eq!(submission_file_name(&s, &s.test[0]), "STS-B.tsv");
        write_submission(&s, &s.test[0], &[Prediction::Value(3.24681)], &p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "index\tprediction\n10\t3.247\n"
        );
        let c = task("cola", Some(&["0", "1"]), vec![split("test", 1)]);
        assert_eq!(submission_file_name(&c, &c.test[0]), "CoLA.tsv");
        assert!(write_submission(&c, &c.test[0], &[], &p).is_err());
        assert!(write_submission(&c, &c.test[0], &[Prediction::Class(2)], &p).is_err());
        let m = task("mine", Some(&["a", "b"]), vec![split("test", 1)]);
        assert_eq!(submission_file_name(&m, &m.test[0]), "mine.tsv");
    }
}
