//! The built-in `uci-sentiment` task: an out-of-domain check of `mr`. It trains and ranks as
//! `mr` (its train split and its dev split's accuracy) and also scores, after every epoch, UCI's
//! Sentiment Labelled Sentences (Kotzias et al., KDD 2015: 1,000 Amazon, IMDB and Yelp review
//! sentences each, half positive), which are only ever dev splits (`uci-amazon`, `uci-imdb`,
//! `uci-yelp`), never trained on. The files ship in npm's `sentiment@5.0.2` as
//! `test/fixtures/{amazon,imdb,yelp}.json` (a JSON array of `{"text", "class"}`, class 1
//! positive, and an empty last record, dropped); `scripts/fetch-data` puts them in
//! `DATA/tasks/uci/` (data-spec/mr.md).
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use super::{mr, Example, Label, Split, Task};

/// The task's name.
pub const NAME: &str = "uci-sentiment";
/// The three files, in split order.
pub const FILES: [&str; 3] = ["amazon", "imdb", "yelp"];

/// Whether `name` is this task.
pub fn is_uci(name: &str) -> bool {
    name == NAME
}

/// The folder of the three files: `--data DIR` itself or its `tasks/uci`, else `tasks/uci` of
/// the data folder the mr file was found in.
fn folder(data: Option<&Path>, mr_file: &Path) -> anyhow::Result<PathBuf> {
    let beside = mr_file
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("uci"));
    let candidates: Vec<PathBuf> = data
        .into_iter()
        .flat_map(|d| [d.to_path_buf(), d.join("tasks/uci")])
        .chain(beside)
        .collect();
    for c in &candidates {
        if FILES.iter().all(|f| c.join(format!("{f}.json")).is_file()) {
            return Ok(c.clone());
        }
    }
    bail!(
        "the uci-sentiment files (amazon.json, imdb.json, yelp.json) are in none of {:?}: run \
         scripts/fetch-data (it fetches them into tasks/uci of its data folder), or pass --data DIR",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>()
    )
}

/// The examples of one file: every record but an empty last one.
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Vec<Example>> {
    let v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{}: not JSON", path.display()))?;
    let Some(records) = v.as_array() else {
        bail!(
            "{}: expected a JSON array of {{\"text\", \"class\"}} records",
            path.display()
        );
    };
    let mut records = records.as_slice();
    if let Some(last) = records.last() {
        if last["text"].as_str() == Some("") && last["class"].is_null() {
            records = &records[..records.len() - 1];
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let at = |field: &str| format!("{}: record {}, field \"{field}\"", path.display(), i + 1);
        let Some(text) = r["text"].as_str().filter(|t| !t.is_empty()) else {
            bail!("{}: expected a non-empty string", at("text"));
        };
        let class = match r["class"].as_u64() {
            Some(c @ (0 | 1)) => c as usize,
            _ => bail!("{}: expected 0 or 1, found {}", at("class"), r["class"]),
        };
        out.push(Example {
            id: i.to_string(),
            text_a: text.to_string(),
            text_b: None,
            label: Some(Label::Class(class)),
        });
    }
    if out.is_empty() {
        bail!("{}: split has no examples", path.display());
    }
    Ok(out)
}

/// `mr` with the three UCI files as extra dev splits.
pub fn load(data: Option<&Path>) -> anyhow::Result<Task> {
    let mr_file = mr::find(data)?;
    let mut task = mr::load("mr", Some(mr_file.parent().context("a file has a folder")?))?;
    let dir = folder(data, &mr_file)?;
    for f in FILES {
        let path = dir.join(format!("{f}.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        task.dev.push(Split {
            name: format!("uci-{f}"),
            examples: parse(&path, &text)?,
            files: vec![path],
            skipped: vec![],
        });
    }
    task.name = NAME.to_string();
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_the_empty_last_one() {
        let p = Path::new("amazon.json");
        let e = parse(
            p,
            r#"[{"text":"Great.","class":1},{"text":"Broke.","class":0},{"text":"","class":null}]"#,
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].label, Some(Label::Class(0)));
        assert_eq!(e[1].id, "1");
        let err = parse(p, r#"[{"text":"Great.","class":2}]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("amazon.json: record 1, field \"class\": expected 0 or 1"),
            "{err}"
        );
        let err = parse(p, r#"[{"text":"","class":null},{"text":"x","class":1}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("record 1, field \"text\""), "{err}");
        assert!(parse(p, r#"[{"text":"","class":null}]"#).is_err(), "empty");
        assert!(parse(p, r#"{"text":"x"}"#).is_err());
    }

    /// The real files, when `scripts/fetch-data` has fetched them (CI runs it first).
    #[test]
    fn the_real_files_are_three_dev_splits_of_1000() {
        let Ok(task) = load(None) else {
            eprintln!("SKIPPED: no mr or uci-sentiment data (run scripts/fetch-data)");
            return;
        };
        assert_eq!(task.name, NAME);
        let names: Vec<&str> = task.dev.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["dev", "uci-amazon", "uci-imdb", "uci-yelp"]);
        for s in &task.dev[1..] {
            assert_eq!(s.examples.len(), 1000, "{}", s.name);
            let positive = s
                .examples
                .iter()
                .filter(|e| e.label == Some(Label::Class(1)))
                .count();
            assert_eq!(positive, 500, "{}", s.name);
        }
        assert_eq!(task.train.examples.len(), 8566);
    }
}
