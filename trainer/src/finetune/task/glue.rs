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
    new(
        "cola",
        "CoLA",
        Some(BINARY),
        Metric::Matthews,
        ("sentence", None, "label"),
        ("sentence", None),
    ),
    new(
        "sst2",
        "SST-2",
        Some(BINARY),
        Metric::Accuracy,
        ("sentence", None, "label"),
        ("sentence", None),
    ),
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
    new(
        "stsb",
        "STS-B",
        None,
        Metric::Correlation,
        ("sentence1", Some("sentence2"), "score"),
        PAIR,
    ),
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
    new(
        "qnli",
        "QNLI",
        Some(NLI2),
        Metric::Accuracy,
        ("question", Some("sentence"), "label"),
        ("question", Some("sentence")),
    ),
    new(
        "rte",
        "RTE",
        Some(NLI2),
        Metric::Accuracy,
        ("sentence1", Some("sentence2"), "label"),
        PAIR,
    ),
    new(
        "wnli",
        "WNLI",
        Some(BINARY),
        Metric::Accuracy,
        ("sentence1", Some("sentence2"), "label"),
        PAIR,
    ),
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
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name == format!("{prefix}.parquet")
                || (name.starts_with(&format!("{prefix}-")) && name.ends_with(".parquet"))
        })
        .collect();
    out.sort();
    out
}

/// Reads GLUE task `spec` from `dir`, in whichever layout it holds.
pub fn load(spec: &Spec, dir: &Path) -> anyhow::Result<Task> {
    let layout =
        if dir.join("train.tsv").is_file() {
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
                bail!(
                    "--data {}: {} is missing ({} in GLUE's TSV layout)",
                    dir.display(),
                    file.display(),
                    spec.name
                );
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
        label_names: spec
            .labels
            .map(|l| l.iter().map(|s| s.to_string()).collect()),
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
    let id = ["index", "id"]
        .into_iter()
        .find(|c| table.columns.iter().any(|h| h == c));
    let names: Vec<String> = spec
        .labels
        .unwrap_or_default()
        .iter()
        .map(|s| s.to_string())
        .collect();
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

fn parquet_split(
    spec: &Spec,
    name: &str,
    found: &[PathBuf],
    is_test: bool,
) -> anyhow::Result<Split> {
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

#[cfg(test)]
mod tests {
    use super::super::files::tests::write;
    use super::super::Label;
    use super::*;
    use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    fn load_named(name: &str, dir: &Path) -> anyhow::Result<Task> {
        load(spec(name).unwrap(), dir)
    }

    #[test]
    fn names_metrics_and_label_maps() {
        assert_eq!(spec("SST-2").unwrap().name, "sst2");
        assert_eq!(spec("sts-b").unwrap().metric, Metric::Correlation);
        assert!(spec("boolq").is_none());
        assert_eq!(
            spec("mnli").unwrap().labels.unwrap(),
            ["entailment", "neutral", "contradiction"]
        );
        assert_eq!(spec("cola").unwrap().metric.main_name(), "mcc");
        assert_eq!(spec("mrpc").unwrap().metric.names(), ["accuracy", "f1"]);
    }

    #[test]
    fn cola_tsv_has_no_header_but_its_test_has() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "train.tsv",
            "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tThey drank the pub.\n",
        );
        write(
            d.path(),
            "dev.tsv",
            "gj04\t1\t\tThe sailors rode the breeze.\n",
        );
        write(
            d.path(),
            "test.tsv",
            "index\tsentence\n0\tBill whistled past the house.\n1\t\"Quoted\" text.\n",
        );
        let t = load_named("cola", d.path()).unwrap();
        assert_eq!(t.source, Source::Glue { layout: "glue-tsv" });
        assert_eq!(t.train.examples.len(), 2);
        assert_eq!(t.train.examples[1].text_a, "They drank the pub.");
        assert_eq!(t.train.examples[1].label, Some(Label::Class(0)));
        assert_eq!(t.dev[0].examples[0].label, Some(Label::Class(1)));
        assert_eq!(t.test[0].examples[1].id, "1");
        assert_eq!(t.test[0].examples[1].text_a, "\"Quoted\" text.");
        assert_eq!(t.test[0].examples[1].label, None);
        // A label outside GLUE's map names the file, line and column.
        write(d.path(), "dev.tsv", "gj04\t1\t\tfine\ngj04\t2\t\tbad\n");
        let e = format!("{:#}", load_named("cola", d.path()).unwrap_err());
        assert!(
            e.contains("dev.tsv: line 2, column \"label\": unknown label \"2\""),
            "{e}"
        );
    }

    #[test]
    fn mnli_tsv_matched_and_mismatched() {
        let d = tempfile::tempdir().unwrap();
        let header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n";
        write(d.path(), "train.tsv", &format!("{header}0\t1\t1e\tgov\tA \"p\".\tA h.\tneutral\tneutral\n1\t2\t2e\tgov\tB.\tC.\tcontradiction\tcontradiction\n"));
        write(
            d.path(),
            "dev_matched.tsv",
            &format!("{header}7\t1\t1e\tgov\tA.\tB.\tentailment\tentailment\n"),
        );
        write(
            d.path(),
            "dev_mismatched.tsv",
            &format!("{header}8\t1\t1e\tgov\tA.\tB.\tneutral\tneutral\n"),
        );
        write(
            d.path(),
            "test_matched.tsv",
            "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\n3\t1\t1\tgov\tA.\tB.\n",
        );
        let t = load_named("mnli", d.path()).unwrap();
        assert_eq!(t.train.examples[0].text_a, "A \"p\".");
        assert_eq!(t.train.examples[0].text_b.as_deref(), Some("A h."));
        assert_eq!(t.train.examples[1].label, Some(Label::Class(2)));
        assert_eq!(
            t.dev.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["dev_matched", "dev_mismatched"]
        );
        assert_eq!(t.dev[0].examples[0].id, "7");
        assert_eq!(t.test.len(), 1, "test_mismatched.tsv is absent: no split");
        assert_eq!(
            super::super::submission_file_name(&t, &t.test[0]),
            "MNLI-m.tsv"
        );
        std::fs::remove_file(d.path().join("dev_mismatched.tsv")).unwrap();
        let e = format!("{:#}", load_named("mnli", d.path()).unwrap_err());
        assert!(e.contains("dev_mismatched.tsv is missing"), "{e}");
    }

    #[test]
    fn qqp_skips_and_counts_malformed_rows_others_fail() {
        let d = tempfile::tempdir().unwrap();
        let header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n";
        write(
            d.path(),
            "train.tsv",
            &format!("{header}0\t1\t2\tWhy?\tHow?\t0\n1\t3\t4\tbroken row\n2\t5\t6\tA?\tB?\t1\n"),
        );
        write(
            d.path(),
            "dev.tsv",
            &format!("{header}5\t1\t2\tWhy?\tHow?\t1\n"),
        );
        let t = load_named("qqp", d.path()).unwrap();
        assert_eq!(t.train.examples.len(), 2);
        assert_eq!(t.train.skipped.len(), 1);
        assert!(
            t.train.skipped[0].ends_with("train.tsv: line 3"),
            "{:?}",
            t.train.skipped
        );
        assert_eq!(t.record()["splits"][0]["skipped_malformed"], 1);
        assert_eq!(t.train.examples[1].id, "2");
        // RTE does not skip: the short row is an error naming it.
        let r = tempfile::tempdir().unwrap();
        write(
            r.path(),
            "train.tsv",
            "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tA.\n",
        );
        write(
            r.path(),
            "dev.tsv",
            "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n",
        );
        let e = format!("{:#}", load_named("rte", r.path()).unwrap_err());
        assert!(
            e.contains("train.tsv: line 3, column \"sentence2\": missing value"),
            "{e}"
        );
    }

    #[test]
    fn stsb_and_mrpc_columns_by_header() {
        let d = tempfile::tempdir().unwrap();
        let header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
        write(d.path(), "train.tsv", &format!("{header}0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\t5.000\n"));
        write(d.path(), "dev.tsv", &format!("{header}0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA man.\tA cat.\t0.5\n"));
        let t = load_named("stsb", d.path()).unwrap();
        assert_eq!(t.train.examples[0].label, Some(Label::Value(5.0)));
        assert_eq!(t.dev[0].examples[0].text_b.as_deref(), Some("A cat."));
        assert!(t.labels().is_none());
        write(
            d.path(),
            "dev.tsv",
            &format!("{header}0\tg\tf\ty\to\tn\tn\tA.\tB.\tabout 3\n"),
        );
        let e = format!("{:#}", load_named("stsb", d.path()).unwrap_err());
        assert!(
            e.contains("dev.tsv: line 2, column \"score\": regression label \"about 3\""),
            "{e}"
        );

        let m = tempfile::tempdir().unwrap();
        let header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
        write(
            m.path(),
            "train.tsv",
            &format!("{header}1\t702876\t702977\tAmrozi accused.\tReferring to him.\n"),
        );
        write(m.path(), "dev.tsv", &format!("{header}0\t1\t2\tA.\tB.\n"));
        write(
            m.path(),
            "test.tsv",
            "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tC.\tD.\n",
        );
        let t = load_named("mrpc", m.path()).unwrap();
        assert_eq!(t.train.examples[0].text_a, "Amrozi accused.");
        assert_eq!(t.train.examples[0].label, Some(Label::Class(1)));
        assert_eq!(t.test[0].examples[0].text_b.as_deref(), Some("D."));
    }

    fn parquet(path: &Path, cols: Vec<(&str, ArrayRef)>) {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let f = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn rte_parquet(path: &Path, labels: Vec<i64>) {
        let n = labels.len();
        let s = |p: &str| -> ArrayRef {
            Arc::new(StringArray::from(
                (0..n).map(|i| format!("{p} {i}")).collect::<Vec<_>>(),
            ))
        };
        parquet(
            path,
            vec![
                ("sentence1", s("premise")),
                ("sentence2", s("hypothesis")),
                ("label", Arc::new(Int64Array::from(labels))),
                (
                    "idx",
                    Arc::new(Int32Array::from((0..n as i32).collect::<Vec<_>>())),
                ),
            ],
        );
    }

    #[test]
    fn hugging_face_parquet_layout() {
        let d = tempfile::tempdir().unwrap();
        rte_parquet(&d.path().join("train-00000-of-00002.parquet"), vec![0, 1]);
        rte_parquet(&d.path().join("train-00001-of-00002.parquet"), vec![1]);
        rte_parquet(
            &d.path().join("validation-00000-of-00001.parquet"),
            vec![1, 0],
        );
        rte_parquet(
            &d.path().join("test-00000-of-00001.parquet"),
            vec![-1, -1, -1],
        );
        let t = load_named("rte", d.path()).unwrap();
        assert_eq!(
            t.source,
            Source::Glue {
                layout: "hf-parquet"
            }
        );
        assert_eq!(t.train.files.len(), 2);
        assert_eq!(t.train.examples.len(), 3);
        assert_eq!(t.train.examples[1].label, Some(Label::Class(1)));
        assert_eq!(t.train.examples[1].text_b.as_deref(), Some("hypothesis 1"));
        assert_eq!(t.dev[0].examples[1].id, "1");
        assert_eq!(t.test[0].examples.len(), 3);
        assert!(t.test[0].examples.iter().all(|e| e.label.is_none()));
        assert_eq!(t.labels().unwrap(), ["entailment", "not_entailment"]);
        // -1 (unlabelled) in a dev split names the file, row and column.
        rte_parquet(
            &d.path().join("validation-00000-of-00001.parquet"),
            vec![1, -1],
        );
        let e = format!("{:#}", load_named("rte", d.path()).unwrap_err());
        assert!(
            e.contains(
                "validation-00000-of-00001.parquet: row 2, column \"label\": label -1 out of range"
            ),
            "{e}"
        );
        // The wrong task's columns.
        let e = format!("{:#}", load_named("qqp", d.path()).unwrap_err());
        assert!(e.contains("missing column \"question1\""), "{e}");
    }

    #[test]
    fn neither_layout_names_the_folder_and_what_was_expected() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "train.csv", "a,b\n");
        let e = format!("{:#}", load_named("sst2", d.path()).unwrap_err());
        assert!(e.contains(&format!("--data {}", d.path().display())), "{e}");
        assert!(
            e.contains("train.tsv, dev.tsv") && e.contains("train-*.parquet"),
            "{e}"
        );
    }
}
