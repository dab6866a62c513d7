//! The 9 GLUE tasks by name (`--task cola --data DIR`), in either layout users have, detected
//! from what is in DIR:
//!
//! - GLUE's original TSV files (`train.tsv`, `dev.tsv`, `test.tsv`; MNLI `dev_matched.tsv`,
//!   `dev_mismatched.tsv`, `test_matched.tsv`, `test_mismatched.tsv`), split on tabs with no
//!   quoting (as transformers' GLUE processors), each task's columns by header name; CoLA's
//!   train and dev have no header (source, label, original mark, sentence); QQP's rows with the
//!   wrong number of fields (a few in the real train file) are skipped, counted in the record and
//!   reported on stderr;
//! - the Hugging Face `glue` dataset's Parquet files (`train-*.parquet`, `validation-*.parquet`,
//!   `test-*.parquet`; MNLI `validation_matched-*`, `validation_mismatched-*`, `test_matched-*`,
//!   `test_mismatched-*`), integer labels in the same order as GLUE's label strings (the
//!   dataset card's `ClassLabel` names), -1 in test splits.
//!
//! Label maps are GLUE's label strings (what the TSVs hold and the submissions want): `0`/`1` for
//! CoLA, SST-2, MRPC, QQP and WNLI, `entailment, neutral, contradiction` for MNLI,
//! `entailment, not_entailment` for QNLI and RTE. STS-B is a regression on the 0-5 score.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use super::files::{self, Table};
use super::{Columns, LabelKind, Metric, Source, Split, Task};

/// One GLUE task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub name: &'static str,
    /// The submission file's stem (`CoLA`, `SST-2`, ...).
    pub submission: &'static str,
    /// GLUE's label strings in class-id order; None for STS-B (regression).
    pub labels: Option<&'static [&'static str]>,
    pub metric: Metric,
    /// TSV columns: first text, second text, label.
    pub tsv: (&'static str, Option<&'static str>, &'static str),
    /// Hugging Face columns: first text, second text.
    pub hf: (&'static str, Option<&'static str>),
    /// Two dev and test splits (MNLI matched and mismatched).
    pub matched: bool,
    /// Skip and count rows with the wrong number of fields (QQP).
    pub skip_malformed: bool,
}

const BINARY: &[&str] = &["0", "1"];
const NLI2: &[&str] = &["entailment", "not_entailment"];

/// CoLA's header-less train and dev columns.
const COLA_COLUMNS: &[&str] = &["source", "label", "original_label", "sentence"];

const fn new(
    name: &'static str,
    submission: &'static str,
    labels: Option<&'static [&'static str]>,
    metric: Metric,
    tsv: (&'static str, Option<&'static str>, &'static str),
    hf: (&'static str, Option<&'static str>),
) -> Spec {
    Spec {
        name,
        submission,
        labels,
        metric,
        tsv,
        hf,
        matched: false,
        skip_malformed: false,
    }
}

const PAIR: (&str, Option<&str>) = ("sentence1", Some("sentence2"));

/// The 9 tasks.
pub const TASKS: [Spec; 9] = [
    new("cola", "CoLA", Some(BINARY), Metric::Matthews, ("sentence", None, "label"), ("sentence", None)),
    new("sst2", "SST-2", Some(BINARY), Metric::Accuracy, ("sentence", None, "label"), ("sentence", None)),
    new(
        "mrpc",
        "MRPC",
        Some(BINARY),
        Metric::AccuracyF1,
        ("#1 String", Some("#2 String"), "Quality"),
        PAIR,
    ),
    Spec {
        skip_malformed: true,
        ..new(
            "qqp",
            "QQP",
            Some(BINARY),
            Metric::AccuracyF1,
            ("question1", Some("question2"), "is_duplicate"),
            ("question1", Some("question2")),
        )
    },
    new("stsb", "STS-B", None, Metric::Correlation, ("sentence1", Some("sentence2"), "score"), PAIR),
    Spec {
        matched: true,
        ..new(
            "mnli",
            "MNLI",
            Some(&["entailment", "neutral", "contradiction"]),
            Metric::Accuracy,
            ("sentence1", Some("sentence2"), "gold_label"),
            ("premise", Some("hypothesis")),
        )
    },
    new("qnli", "QNLI", Some(NLI2), Metric::Accuracy, ("question", Some("sentence"), "label"), ("question", Some("sentence"))),
    new("rte", "RTE", Some(NLI2), Metric::Accuracy, ("sentence1", Some("sentence2"), "label"), PAIR),
    new("wnli", "WNLI", Some(BINARY), Metric::Accuracy, ("sentence1", Some("sentence2"), "label"), PAIR),
];

/// The GLUE task named `name` (case-insensitive; `sst-2`, `sts-b` too).
pub fn spec(name: &str) -> Option<&'static Spec> {
    let n = name.to_ascii_lowercase().replace('-', "");
    TASKS.iter().find(|t| t.name == n)
}

/// The splits of a task: (name, TSV file stem, Hugging Face file prefix), train first, then dev,
/// then test.
fn splits(spec: &Spec) -> Vec<(&'static str, &'static str)> {
    if spec.matched {
        vec![
            ("train", "train"),
            ("dev_matched", "validation_matched"),
            ("dev_mismatched", "validation_mismatched"),
            ("test_matched", "test_matched"),
            ("test_mismatched", "test_mismatched"),
        ]
    } else {
        vec![("train", "train"), ("dev", "validation"), ("test", "test")]
    }
}

/// The Parquet files of a split: `PREFIX.parquet` or `PREFIX-*.parquet`, sorted.
fn parquet_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name == format!("{prefix}.parquet")
                || (name.starts_with(&format!("{prefix}-")) && name.ends_with(".parquet"))
        })
        .collect();
    out.sort();
    out
}

/// Reads GLUE task `spec` from `dir`, in whichever layout it holds.
pub fn load(spec: &Spec, dir: &Path) -> anyhow::Result<Task> {
    let layout = if dir.join("train.tsv").is_file() {
        "glue-tsv"
    } else if !parquet_files(dir, "train").is_empty() {
        "hf-parquet"
    } else {
        bail!(
            "--data {}: expected GLUE's TSV files of {} (train.tsv, {}) or the Hugging Face glue \
             dataset's Parquet files (train-*.parquet, {}), found neither",
            dir.display(),
            spec.name,
            if spec.matched { "dev_matched.tsv, dev_mismatched.tsv" } else { "dev.tsv" },
            if spec.matched {
                "validation_matched-*.parquet, validation_mismatched-*.parquet"
            } else {
                "validation-*.parquet"
            }
        );
    };
    let mut train = None;
    let (mut dev, mut test) = (vec![], vec![]);
    for (name, hf) in splits(spec) {
        let is_test = name.starts_with("test");
        let split = if layout == "glue-tsv" {
            let file = dir.join(format!("{name}.tsv"));
            if !file.is_file() {
                if is_test {
                    continue;
                }
                bail!("--data {}: {} is missing ({} in GLUE's TSV layout)", dir.display(), file.display(), spec.name);
            }
            tsv_split(spec, name, &file, is_test)?
        } else {
            let found = parquet_files(dir, hf);
            if found.is_empty() {
                if is_test {
                    continue;
                }
                bail!(
                    "--data {}: no {hf}-*.parquet ({} in the Hugging Face layout)",
                    dir.display(),
                    spec.name
                );
            }
            parquet_split(spec, name, &found, is_test)?
        };
        match name {
            "train" => train = Some(split),
            n if n.starts_with("dev") => dev.push(split),
            _ => test.push(split),
        }
    }
    for s in std::iter::once(train.as_ref()).flatten().chain(&dev) {
        if !s.skipped.is_empty() {
            eprintln!(
                "finetune: {} {}: skipped {} malformed rows (wrong number of fields), e.g. {}",
                spec.name,
                s.name,
                s.skipped.len(),
                s.skipped[0]
            );
        }
    }
    Ok(Task {
        name: spec.name.to_string(),
        train: train.context("the train split is read first")?,
        dev,
        test,
        metric: spec.metric,
        label_names: spec.labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
        source: Source::Glue { layout },
    })
}

fn tsv_split(spec: &Spec, name: &str, file: &Path, is_test: bool) -> anyhow::Result<Split> {
    let header_less = spec.name == "cola" && !is_test;
    let mut table = files::read_tsv(file, header_less.then_some(COLA_COLUMNS))?;
    let mut skipped = vec![];
    if spec.skip_malformed {
        let width = table.columns.len();
        let path = table.path.display().to_string();
        table.rows.retain(|r| {
            let ok = r.fields.len() == width;
            if !ok {
                skipped.push(format!("{path}: line {}", r.at));
            }
            ok
        });
    }
    let id = ["index", "id"].into_iter().find(|c| table.columns.iter().any(|h| h == c));
    let names: Vec<String> = spec.labels.unwrap_or_default().iter().map(|s| s.to_string()).collect();
    let examples = super::examples(
        &table,
        name,
        Columns {
            id,
            text_a: spec.tsv.0,
            text_b: spec.tsv.1,
            label: (!is_test).then_some(spec.tsv.2),
        },
        match spec.labels {
            None => LabelKind::Value,
            Some(_) => LabelKind::Names(&names),
        },
    )?;
    Ok(Split {
        name: name.to_string(),
        files: vec![file.to_path_buf()],
        examples,
        skipped,
    })
}

fn parquet_split(spec: &Spec, name: &str, found: &[PathBuf], is_test: bool) -> anyhow::Result<Split> {
    let mut examples = vec![];
    for file in found {
        let table: Table = files::read(file)?;
        let id = table.columns.iter().any(|c| c == "idx").then_some("idx");
        examples.extend(super::examples(
            &table,
            name,
            Columns {
                id,
                text_a: spec.hf.0,
                text_b: spec.hf.1,
                label: (!is_test).then_some("label"),
            },
            match spec.labels {
                None => LabelKind::Value,
                Some(l) => LabelKind::Ids(l.len()),
            },
        )?);
    }
    Ok(Split {
        name: name.to_string(),
        files: found.to_vec(),
        examples,
        skipped: vec![],
    })
}
