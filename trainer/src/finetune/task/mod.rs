//! The tasks `trainer finetune` fine-tunes on (docs/finetune.md): the 9 GLUE tasks by name in
//! either layout users have ([`glue`]), the built-in `mr` and `mr-rating` ([`mr`]),
//! `uci-sentiment` ([`uci`]: `mr` with out-of-domain dev splits), and any other task from JSONL,
//! CSV, TSV or Parquet files ([`custom`]); read by [`files`], scored by [`metrics`] as GLUE
//! reports them, predictions written as GLUE submissions ([`submission`]).
//!
//! Bad input is an error naming the file, the row (line) and the column: a missing column, a
//! label not in the task's label map, a regression label that is not a number, an empty split.
pub mod custom;
pub mod files;
pub mod glue;
pub mod metrics;
pub mod mr;
pub mod submission;
pub mod uci;

use anyhow::{bail, ensure};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use submission::{submission_file_name, write_submission};

/// The task flags of `trainer finetune` (flattened into its flags).
#[derive(Debug, Clone, Default, Args)]
pub struct TaskArgs {
    /// The task: a GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli; with --data),
    /// the built-in mr or mr-rating (movie-review sentences, data-spec/mr.md), uci-sentiment (mr
    /// scored on Amazon, IMDB and Yelp sentences too), or any other name with --train, --dev and
    /// --text-fields.
    #[arg(long)]
    pub task: String,
    /// GLUE: the task's folder, either GLUE's TSV files (train.tsv, dev.tsv, test.tsv) or the
    /// Hugging Face glue Parquet files (train-*.parquet, validation-*.parquet, test-*.parquet).
    /// mr: the folder holding movieReviewSnippets_GroundTruth.txt [default: found in the data
    /// folder of scripts/fetch-data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Any other task: the training file (.jsonl, .csv, .tsv or .parquet).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Any other task: the dev files (the first one's main metric ranks the runs).
    #[arg(long, value_delimiter = ',')]
    pub dev: Vec<PathBuf>,
    /// Any other task: test files (predicted with --predict; labels not read).
    #[arg(long, value_delimiter = ',')]
    pub test: Vec<PathBuf>,
    /// Any other task: the text field, or the two fields of a sentence pair.
    #[arg(long, value_delimiter = ',')]
    pub text_fields: Vec<String>,
    /// Any other task: the label field.
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// Any other task: the field naming each example in predictions [default: its 0-based row].
    #[arg(long)]
    pub id_field: Option<String>,
    /// Any other task: the label is a number to predict (MSE; Spearman and Pearson).
    #[arg(long)]
    pub regression: bool,
    /// Any other task: the label map, in class-id order [default: the distinct training labels,
    /// sorted (numerically when all are integers)].
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
}

impl TaskArgs {
    /// Reads the task's files (every split, checked).
    pub fn load(&self) -> anyhow::Result<Task> {
        let name = self.task.trim();
        ensure!(!name.is_empty(), "--task: expected a task name");
        let builtin = glue::spec(name).is_some() || mr::is_mr(name) || uci::is_uci(name);
        if builtin {
            let custom = [
                ("--train", self.train.is_some()),
                ("--dev", !self.dev.is_empty()),
                ("--test", !self.test.is_empty()),
                ("--text-fields", !self.text_fields.is_empty()),
                ("--id-field", self.id_field.is_some()),
                ("--regression", self.regression),
                ("--labels", !self.labels.is_empty()),
            ];
            if let Some((flag, _)) = custom.iter().find(|(_, given)| *given) {
                bail!("--task {name} is built in: {flag} is for other tasks (give --data DIR)");
            }
        }
        if let Some(spec) = glue::spec(name) {
            let Some(dir) = &self.data else {
                bail!("--task {name}: GLUE needs --data DIR (the task's TSV or Parquet files)");
            };
            return glue::load(spec, dir);
        }
        if mr::is_mr(name) {
            return mr::load(name, self.data.as_deref());
        }
        if uci::is_uci(name) {
            return uci::load(self.data.as_deref());
        }
        custom::load(self)
    }
}

/// A class id (into the task's label map) or a value (regression).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Label {
    Class(usize),
    Value(f64),
}

/// A model's output for one example.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Prediction {
    Class(usize),
    Value(f64),
}

/// One example: one text or a pair, and its label (None only in test splits).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// How predictions name it: the file's id or index column, else the 0-based row.
    pub id: String,
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Label>,
}

/// A split: its name (`train`, `dev`, `dev_matched`, `test`, ...), the files it was read from,
/// and its examples in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub name: String,
    pub files: Vec<PathBuf>,
    pub examples: Vec<Example>,
    /// Malformed rows left out (QQP's TSV only), as `FILE: line N`.
    pub skipped: Vec<String>,
}

/// How a task is scored (metrics.rs): the main metric ranks the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Accuracy.
    Accuracy,
    /// Accuracy (main, ELECTRA's choice) and F1 of class 1 (MRPC, QQP).
    AccuracyF1,
    /// Matthews correlation (main) and accuracy (CoLA).
    Matthews,
    /// Spearman (main, ELECTRA's choice) and Pearson correlation (STS-B, mr-rating,
    /// any regression).
    Correlation,
}

impl Metric {
    /// The name of the main metric (in tables and `Scores::all` keys).
    pub fn main_name(&self) -> &'static str {
        match self {
            Metric::Accuracy | Metric::AccuracyF1 => "accuracy",
            Metric::Matthews => "mcc",
            Metric::Correlation => "spearman",
        }
    }

    /// Every metric reported, main first.
    pub fn names(&self) -> &'static [&'static str] {
        match self {
            Metric::Accuracy => &["accuracy"],
            Metric::AccuracyF1 => &["accuracy", "f1"],
            Metric::Matthews => &["mcc", "accuracy"],
            Metric::Correlation => &["spearman", "pearson"],
        }
    }
}

/// Where a task comes from (for its record).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A GLUE task in `layout` (`glue-tsv` or `hf-parquet`).
    Glue { layout: &'static str },
    /// `mr` or `mr-rating`.
    Builtin,
    /// Files and fields given by flags.
    Files,
}

/// A task: its splits, label map and metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    pub train: Split,
    /// At least one; the first one's main metric ranks the runs.
    pub dev: Vec<Split>,
    /// Possibly none.
    pub test: Vec<Split>,
    pub metric: Metric,
    /// The label map (class id -> label string); None for regression.
    pub label_names: Option<Vec<String>>,
    pub source: Source,
}

impl Task {
    /// The label map, None for regression.
    pub fn labels(&self) -> Option<&[String]> {
        self.label_names.as_deref()
    }

    fn splits(&self) -> impl Iterator<Item = &Split> {
        std::iter::once(&self.train)
            .chain(&self.dev)
            .chain(&self.test)
    }

    /// What results.json records of the task: name, kind, label map, metric, every split's files
    /// with their SHA-256 and its row counts.
    pub fn record(&self) -> serde_json::Value {
        let (kind, layout) = match &self.source {
            Source::Glue { layout } => ("glue", Some(*layout)),
            Source::Builtin => ("builtin", None),
            Source::Files => ("files", None),
        };
        let splits: Vec<serde_json::Value> = self
            .splits()
            .map(|s| {
                let files: Vec<serde_json::Value> = s
                    .files
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "path": f.display().to_string(),
                            "sha256": shared::files::hash::sha256_file(f).ok(),
                        })
                    })
                    .collect();
                let labelled = s.examples.iter().filter(|e| e.label.is_some()).count();
                serde_json::json!({
                    "name": s.name,
                    "files": files,
                    "rows": s.examples.len(),
                    "labelled": labelled,
                    "skipped_malformed": s.skipped.len(),
                })
            })
            .collect();
        let label_map: Option<BTreeMap<String, usize>> = self
            .labels()
            .map(|l| l.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect());
        serde_json::json!({
            "name": self.name,
            "kind": kind,
            "layout": layout,
            "problem": if self.labels().is_some() { "classification" } else { "regression" },
            "labels": self.labels(),
            "label_map": label_map,
            "metric": self.metric,
            "metrics": self.metric.names(),
            "main_metric": self.metric.main_name(),
            "splits": splits,
        })
    }
}

/// The dev scores of a run after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// The main metric on the first dev split.
    pub main: f64,
    /// Every metric of every dev split: `SPLIT/METRIC` (`dev/accuracy`, `dev_mismatched/accuracy`,
    /// `dev/f1`, ...) -> value.
    pub all: BTreeMap<String, f64>,
}

/// Scores `preds` (one list per dev split, in the order of `task.dev`) against the dev labels.
pub fn score_dev(task: &Task, preds: &[Vec<Prediction>]) -> anyhow::Result<Scores> {
    ensure!(
        preds.len() == task.dev.len(),
        "task {}: {} prediction lists for {} dev splits",
        task.name,
        preds.len(),
        task.dev.len()
    );
    let mut all = BTreeMap::new();
    let mut main = f64::NAN;
    for (i, (split, p)) in task.dev.iter().zip(preds).enumerate() {
        let scores = metrics::score(task.metric, &split.examples, p)
            .map_err(|e| anyhow::anyhow!("task {} split {}: {e:#}", task.name, split.name))?;
        if i == 0 {
            main = scores[0].1;
        }
        for (name, v) in scores {
            all.insert(format!("{}/{name}", split.name), v);
        }
    }
    Ok(Scores { main, all })
}

/// How a label field is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LabelKind<'a> {
    /// A string of the label map.
    Names(&'a [String]),
    /// An integer class id below the count (Hugging Face's `ClassLabel`; -1: unlabelled).
    Ids(usize),
    /// A number (regression; Hugging Face's -1 in test splits is not read).
    Value,
}

/// The columns an example is read from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Columns<'a> {
    pub id: Option<&'a str>,
    pub text_a: &'a str,
    pub text_b: Option<&'a str>,
    /// None for a test split (labels are not read).
    pub label: Option<&'a str>,
}

/// Reads one label field.
pub(crate) fn parse_label(
    raw: &str,
    kind: LabelKind,
    at: &dyn Fn() -> String,
) -> anyhow::Result<Label> {
    let v = raw.trim();
    match kind {
        LabelKind::Names(names) => match names.iter().position(|n| n == v) {
            Some(i) => Ok(Label::Class(i)),
            None => bail!("{}: unknown label {v:?} (the label map is {names:?})", at()),
        },
        LabelKind::Ids(n) => match v.parse::<i64>() {
            Ok(i) if (0..n as i64).contains(&i) => Ok(Label::Class(i as usize)),
            Ok(i) => bail!("{}: label {i} out of range (expected 0..{})", at(), n - 1),
            Err(_) => bail!(
                "{}: label {v:?} is not a class id (expected 0..{})",
                at(),
                n - 1
            ),
        },
        LabelKind::Value => match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Label::Value(x)),
            _ => bail!("{}: regression label {v:?} is not a finite number", at()),
        },
    }
}

/// The examples of `table`; `split` names the split in errors. Fails on a missing column or
/// value, a bad label, and a table with no rows.
pub(crate) fn examples(
    table: &files::Table,
    split: &str,
    cols: Columns,
    labels: LabelKind,
) -> anyhow::Result<Vec<Example>> {
    let id = cols.id.map(|c| table.column(c)).transpose()?;
    let a = table.column(cols.text_a)?;
    let b = cols.text_b.map(|c| table.column(c)).transpose()?;
    let label = cols.label.map(|c| table.column(c)).transpose()?;
    let mut out = Vec::with_capacity(table.rows.len());
    for (k, row) in table.rows.iter().enumerate() {
        let id = match (id, cols.id) {
            (Some(i), Some(c)) => table.field(row, i, c)?.to_string(),
            _ => k.to_string(),
        };
        let text_a = table.field(row, a, cols.text_a)?.to_string();
        let text_b = match (b, cols.text_b) {
            (Some(i), Some(c)) => Some(table.field(row, i, c)?.to_string()),
            _ => None,
        };
        let label = match (label, cols.label) {
            (Some(i), Some(c)) => {
                let raw = table.field(row, i, c)?;
                Some(parse_label(raw, labels, &|| table.at(row, c))?)
            }
            _ => None,
        };
        out.push(Example {
            id,
            text_a,
            text_b,
            label,
        });
    }
    ensure!(
        !out.is_empty(),
        "{}: split {split} has no examples",
        table.path.display()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(label: Option<Label>) -> Example {
        Example {
            id: "0".into(),
            text_a: "a".into(),
            text_b: None,
            label,
        }
    }

    fn task(metric: Metric, dev: Vec<Vec<Label>>) -> Task {
        let split = |name: &str, ls: Vec<Label>| Split {
            name: name.into(),
            files: vec![],
            examples: ls.into_iter().map(|l| ex(Some(l))).collect(),
            skipped: vec![],
        };
        Task {
            name: "t".into(),
            train: split("train", vec![Label::Class(0)]),
            dev: dev
                .into_iter()
                .enumerate()
                .map(|(i, d)| split(&format!("dev{i}"), d))
                .collect(),
            test: vec![],
            metric,
            label_names: Some(vec!["a".into(), "b".into()]),
            source: Source::Files,
        }
    }

    #[test]
    fn score_dev_main_is_the_first_split_and_all_are_named() {
        let c = Label::Class;
        let t = task(
            Metric::Accuracy,
            vec![vec![c(0), c(1)], vec![c(1), c(1), c(0), c(0)]],
        );
        let p = Prediction::Class;
        let s = score_dev(&t, &[vec![p(0), p(0)], vec![p(1), p(1), p(1), p(0)]]).unwrap();
        assert_eq!(s.main, 0.5);
        assert_eq!(s.all["dev0/accuracy"], 0.5);
        assert_eq!(s.all["dev1/accuracy"], 0.75);
        assert!(score_dev(&t, &[vec![p(0), p(0)]]).is_err());
        let e = score_dev(&t, &[vec![p(0)], vec![p(1), p(1), p(1), p(0)]]).unwrap_err();
        assert!(format!("{e:#}").contains("split dev0"), "{e:#}");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Scores>(&json).unwrap(), s);
    }

    #[test]
    fn labels_of_every_kind() {
        let at = || "f.tsv: line 3, column \"label\"".to_string();
        let names = ["neg".to_string(), "pos".to_string()];
        assert_eq!(
            parse_label("pos", LabelKind::Names(&names), &at).unwrap(),
            Label::Class(1)
        );
        let e = parse_label("neutral", LabelKind::Names(&names), &at)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.tsv: line 3, column \"label\": unknown label \"neutral\""),
            "{e}"
        );
        assert_eq!(
            parse_label("2", LabelKind::Ids(3), &at).unwrap(),
            Label::Class(2)
        );
        let e = parse_label("3", LabelKind::Ids(3), &at)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3, column \"label\": label 3 out of range"),
            "{e}"
        );
        assert_eq!(
            parse_label("3.8", LabelKind::Value, &at).unwrap(),
            Label::Value(3.8)
        );
        let e = parse_label("high", LabelKind::Value, &at)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column \"label\": regression label \"high\" is not a finite"),
            "{e}"
        );
        assert!(parse_label("nan", LabelKind::Value, &at).is_err());
    }

    #[test]
    fn the_flags_parse_lists() {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            t: TaskArgs,
        }
        let w = W::try_parse_from([
            "w",
            "--task",
            "nli",
            "--train",
            "t.csv",
            "--dev",
            "a.csv,b.csv",
            "--text-fields",
            "p,h",
            "--labels",
            "yes,no",
        ])
        .unwrap();
        assert_eq!(w.t.dev, [PathBuf::from("a.csv"), PathBuf::from("b.csv")]);
        assert_eq!(w.t.text_fields, ["p", "h"]);
        assert_eq!(w.t.labels, ["yes", "no"]);
        assert_eq!(w.t.label_field, "label");
        assert!(!w.t.regression);
    }

    #[test]
    fn built_in_tasks_refuse_the_flags_of_other_tasks() {
        let a = TaskArgs {
            task: "rte".into(),
            train: Some("x.tsv".into()),
            ..Default::default()
        };
        let e = a.load().unwrap_err().to_string();
        assert!(e.contains("--task rte is built in: --train"), "{e}");
        let a = TaskArgs {
            task: "rte".into(),
            ..Default::default()
        };
        assert!(a.load().unwrap_err().to_string().contains("needs --data"));
    }
}
