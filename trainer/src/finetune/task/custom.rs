//! Any other task: `--task NAME --train F --dev F[,F] [--test F[,F]] --text-fields a[,b]
//! [--label-field y] [--id-field i] [--regression] [--labels l1,l2,...]`, from JSONL, CSV, TSV or
//! Parquet files (by extension, files.rs). Classification labels are strings (integers too, as
//! their text); the label map is `--labels` in that order, else the distinct training labels
//! sorted (numerically when all are integers). Accuracy for classification, Spearman (and
//! Pearson) for regression.
use anyhow::{bail, ensure};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::files::{self, Table};
use super::{Columns, LabelKind, Metric, Source, Split, Task, TaskArgs};

/// A split's name: `train`, `dev`/`test` for one file, else `dev-STEM`/`test-STEM`.
fn split_name(kind: &str, file: &Path, several: bool) -> String {
    if several {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{kind}-{stem}")
    } else {
        kind.to_string()
    }
}

/// The label map of a classification task: `given`, else the training labels sorted.
fn label_map(table: &Table, field: &str, given: &[String]) -> anyhow::Result<Vec<String>> {
    if !given.is_empty() {
        let distinct: BTreeSet<&String> = given.iter().collect();
        ensure!(
            distinct.len() == given.len(),
            "--labels {given:?}: a label is given twice"
        );
        return Ok(given.to_vec());
    }
    let c = table.column(field)?;
    let mut seen = BTreeSet::new();
    for row in &table.rows {
        seen.insert(table.field(row, c, field)?.trim().to_string());
    }
    let mut labels: Vec<String> = seen.into_iter().collect();
    if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
        labels.sort_by_key(|l| l.parse::<i64>().unwrap_or_default());
    }
    ensure!(
        labels.len() >= 2,
        "{}: column \"{field}\": expected at least 2 distinct labels for classification, found \
         {labels:?} (a number to predict? pass --regression)",
        table.path.display()
    );
    Ok(labels)
}

/// Reads the task the flags describe.
pub fn load(a: &TaskArgs) -> anyhow::Result<Task> {
    let name = a.task.trim();
    let Some(train_file) = &a.train else {
        bail!(
            "--task {name}: not a built-in task (GLUE: cola, sst2, mrpc, qqp, stsb, mnli, qnli, \
             rte, wnli; mr, mr-rating): give its files with --train, --dev and --text-fields"
        );
    };
    ensure!(
        !a.dev.is_empty(),
        "--task {name}: --dev FILE[,FILE] is required"
    );
    ensure!(
        a.data.is_none(),
        "--task {name}: --data is for the built-in tasks (GLUE, mr); give files with --train, --dev"
    );
    let (text_a, text_b) = match a.text_fields.as_slice() {
        [x] => (x.as_str(), None),
        [x, y] => (x.as_str(), Some(y.as_str())),
        other => {
            bail!("--text-fields: expected one field or two (a sentence pair), found {other:?}")
        }
    };
    ensure!(
        !a.regression || a.labels.is_empty(),
        "--labels is for classification, not --regression"
    );
    let label = a.label_field.as_str();
    ensure!(!label.is_empty(), "--label-field: expected a field name");
    let train_table = files::read(train_file)?;
    let names = if a.regression {
        None
    } else {
        Some(label_map(&train_table, label, &a.labels)?)
    };
    let kind = match &names {
        Some(n) => LabelKind::Names(n),
        None => LabelKind::Value,
    };
    let cols = |labelled: bool| Columns {
        id: a.id_field.as_deref(),
        text_a,
        text_b,
        label: labelled.then_some(label),
    };
    let read = |file: &PathBuf,
                split: String,
                labelled: bool,
                table: Option<Table>|
     -> anyhow::Result<Split> {
        let table = match table {
            Some(t) => t,
            None => files::read(file)?,
        };
        Ok(Split {
            examples: super::examples(&table, &split, cols(labelled), kind)?,
            name: split,
            files: vec![file.clone()],
            skipped: vec![],
        })
    };
    let train = read(train_file, "train".into(), true, Some(train_table))?;
    let dev = a
        .dev
        .iter()
        .map(|f| read(f, split_name("dev", f, a.dev.len() > 1), true, None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let test = a
        .test
        .iter()
        .map(|f| read(f, split_name("test", f, a.test.len() > 1), false, None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Task {
        name: name.to_string(),
        train,
        dev,
        test,
        metric: if a.regression {
            Metric::Correlation
        } else {
            Metric::Accuracy
        },
        label_names: names,
        source: Source::Files,
    })
}

#[cfg(test)]
mod tests {
    use super::super::files::tests::write;
    use super::super::Label;
    use super::*;

    fn args(dir: &Path, train: &str, dev: &str) -> TaskArgs {
        TaskArgs {
            task: "mine".into(),
            train: Some(dir.join(train)),
            dev: vec![dir.join(dev)],
            text_fields: vec!["text".into()],
            label_field: "label".into(),
            ..Default::default()
        }
    }

    fn err(a: &TaskArgs) -> String {
        format!("{:#}", a.load().unwrap_err())
    }

    #[test]
    fn integer_and_string_labels_and_the_label_map() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t.jsonl", "{\"text\":\"a\",\"label\":10}\n{\"text\":\"b\",\"label\":2}\n{\"text\":\"c\",\"label\":2}\n");
        write(d.path(), "d.csv", "text,label\n\"x, y\",10\n");
        let t = args(d.path(), "t.jsonl", "d.csv").load().unwrap();
        assert_eq!(t.labels().unwrap(), ["2", "10"], "numeric order");
        assert_eq!(t.train.examples[0].label, Some(Label::Class(1)));
        assert_eq!(t.dev[0].examples[0].text_a, "x, y");
        assert_eq!(t.dev[0].name, "dev");
        assert_eq!(t.metric, Metric::Accuracy);
        let r = t.record();
        assert_eq!(r["label_map"]["10"], 1);
        assert_eq!(r["splits"][0]["rows"], 3);
        assert_eq!(
            r["splits"][1]["files"][0]["sha256"].as_str().unwrap().len(),
            64
        );

        write(d.path(), "s.tsv", "text\tlabel\nfine\tpos\nbad\tneg\n");
        write(d.path(), "sd.tsv", "text\tlabel\nok\tpos\n");
        let mut a = args(d.path(), "s.tsv", "sd.tsv");
        let t = a.load().unwrap();
        assert_eq!(t.labels().unwrap(), ["neg", "pos"]);
        a.labels = vec!["pos".into(), "neg".into()];
        let t = a.load().unwrap();
        assert_eq!(t.train.examples[1].label, Some(Label::Class(1)));
        assert_eq!(t.record()["labels"], serde_json::json!(["pos", "neg"]));
    }

    #[test]
    fn pairs_ids_and_several_dev_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t.csv", "id,p,h,y\nq1,a,b,yes\nq2,c,d,no\n");
        write(d.path(), "d1.csv", "id,p,h,y\nq3,e,f,no\n");
        write(d.path(), "d2.csv", "id,p,h,y\nq4,g,h,yes\n");
        write(d.path(), "test.csv", "id,p,h\nq5,i,j\n");
        let a = TaskArgs {
            task: "pairs".into(),
            train: Some(d.path().join("t.csv")),
            dev: vec![d.path().join("d1.csv"), d.path().join("d2.csv")],
            test: vec![d.path().join("test.csv")],
            text_fields: vec!["p".into(), "h".into()],
            label_field: "y".into(),
            id_field: Some("id".into()),
            ..Default::default()
        };
        let t = a.load().unwrap();
        assert_eq!(t.train.examples[0].text_b.as_deref(), Some("b"));
        assert_eq!(t.train.examples[1].id, "q2");
        assert_eq!(
            t.dev.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["dev-d1", "dev-d2"]
        );
        assert_eq!(t.test[0].examples[0].label, None);
    }

    #[test]
    fn regression_labels() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t.csv", "text,label\na,1.5\nb,-2\n");
        write(d.path(), "d.csv", "text,label\nc,0.25\nd,high\n");
        let mut a = args(d.path(), "t.csv", "d.csv");
        a.regression = true;
        let e = err(&a);
        assert!(
            e.contains(
                "d.csv: line 3, column \"label\": regression label \"high\" is not a finite number"
            ),
            "{e}"
        );
        write(d.path(), "d.csv", "text,label\nc,0.25\n");
        let t = a.load().unwrap();
        assert_eq!(t.train.examples[1].label, Some(Label::Value(-2.0)));
        assert!(t.labels().is_none());
        assert_eq!(t.metric, Metric::Correlation);
    }

    #[test]
    fn errors_name_the_file_row_and_column() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "t.tsv", "text\tlabel\na\tpos\nb\tneg\n");
        // A dev label not in the training labels.
        write(d.path(), "d.tsv", "text\tlabel\nc\tpos\nd\tneutral\n");
        let e = err(&args(d.path(), "t.tsv", "d.tsv"));
        assert!(
            e.contains("d.tsv: line 3, column \"label\": unknown label \"neutral\""),
            "{e}"
        );
        // A missing column.
        write(d.path(), "d.tsv", "sentence\tlabel\nc\tpos\n");
        let e = err(&args(d.path(), "t.tsv", "d.tsv"));
        assert!(e.contains("d.tsv: missing column \"text\""), "{e}");
        // A missing value (short row; JSONL null).
        write(d.path(), "d.tsv", "text\tlabel\nc\n");
        let e = err(&args(d.path(), "t.tsv", "d.tsv"));
        assert!(
            e.contains("d.tsv: line 2, column \"label\": missing value"),
            "{e}"
        );
        write(
            d.path(),
            "d.jsonl",
            "{\"text\": null, \"label\": \"pos\"}\n",
        );
        let e = err(&args(d.path(), "t.tsv", "d.jsonl"));
        assert!(
            e.contains("d.jsonl: line 1, column \"text\": missing value (null)"),
            "{e}"
        );
        // An empty split.
        write(d.path(), "d.tsv", "text\tlabel\n");
        let e = err(&args(d.path(), "t.tsv", "d.tsv"));
        assert!(e.contains("d.tsv: split dev has no examples"), "{e}");
        write(d.path(), "e.tsv", "");
        let e = err(&args(d.path(), "t.tsv", "e.tsv"));
        assert!(e.contains("e.tsv: empty file"), "{e}");
        // One class only.
        write(d.path(), "one.tsv", "text\tlabel\na\tpos\n");
        let e = err(&args(d.path(), "one.tsv", "t.tsv"));
        assert!(e.contains("expected at least 2 distinct labels"), "{e}");
        // --data is for the built-in tasks.
        let mut a = args(d.path(), "t.tsv", "t.tsv");
        a.data = Some(d.path().to_path_buf());
        assert!(err(&a).contains("--data is for the built-in tasks"));
        // Not a built-in task and no files.
        let e = err(&TaskArgs {
            task: "boolq".into(),
            ..Default::default()
        });
        assert!(e.contains("--task boolq: not a built-in task"), "{e}");
    }
}
