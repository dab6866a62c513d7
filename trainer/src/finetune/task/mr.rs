//! The built-in `mr` and `mr-rating` tasks (data-spec/mr.md): the movie-review sentences of Pang
//! and Lee with the mean human rating (-4 to +4) of Hutto and Gilbert (VADER, ICWSM 2014),
//! `movieReviewSnippets_GroundTruth.txt` (id, rating, sentence; tab-separated, CRLF), which
//! `scripts/fetch-data` fetches from PyPI's `vaderSentiment==3.3.2` source archive into
//! `DATA/tasks/mr/`.
//!
//! A fixed split: CRLF stripped, ratings of exactly 0 dropped, repeated sentences dropped (the
//! first kept), then a seeded permutation (`CounterRng(SPLIT_SEED, [SPLIT_DOMAIN])`,
//! Fisher-Yates) whose first 1,000 rows are dev, the next 1,000 test and the rest (8,566) train,
//! each part in file order. `mr`: binary (rating > 0 is `positive`), accuracy; `mr-rating`:
//! regression on the rating, Spearman (and Pearson).
use anyhow::{bail, ensure, Context};
use shared::corruption::rng::CounterRng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Example, Label, Metric, Source, Split, Task};

/// The file's name.
pub const FILE: &str = "movieReviewSnippets_GroundTruth.txt";
/// Where `scripts/fetch-data` puts it in a data folder.
pub const DATA_PATH: &str = "tasks/mr/movieReviewSnippets_GroundTruth.txt";
/// The split's stream: `CounterRng::new(SPLIT_SEED, &[SPLIT_DOMAIN])` ("mr-split" in ASCII).
pub const SPLIT_DOMAIN: u64 = 0x6d72_2d73_706c_6974;
pub const SPLIT_SEED: u64 = 0;
pub const DEV_ROWS: usize = 1000;
pub const TEST_ROWS: usize = 1000;
/// The label map of `mr`.
pub const LABELS: [&str; 2] = ["negative", "positive"];

/// Whether `name` is `mr` or `mr-rating`.
pub fn is_mr(name: &str) -> bool {
    matches!(name, "mr" | "mr-rating")
}

/// One kept row of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: String,
    pub rating: f64,
    pub text: String,
}

/// The file's rows, CRLF stripped, zero ratings and repeated sentences dropped (first kept).
pub fn parse(path: &Path, text: &str) -> anyhow::Result<Vec<Review>> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}: line {}", path.display(), i + 1);
        let mut f = line.splitn(3, '\t');
        let (Some(id), Some(rating), Some(text)) = (f.next(), f.next(), f.next()) else {
            bail!("{}: expected id, rating and sentence, tab-separated", at());
        };
        let rating: f64 = match rating.trim().parse() {
            Ok(r) if f64::is_finite(r) => r,
            _ => bail!("{}, column \"rating\": {rating:?} is not a number", at()),
        };
        if rating == 0.0 || !seen.insert(text.to_string()) {
            continue;
        }
        out.push(Review {
            id: id.to_string(),
            rating,
            text: text.to_string(),
        });
    }
    Ok(out)
}

/// The row indices of (train, dev, test) for `n` kept rows, each in file order.
pub fn split_indices(n: usize) -> anyhow::Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    ensure!(
        n > DEV_ROWS + TEST_ROWS,
        "{n} rows: the mr split needs more than {}",
        DEV_ROWS + TEST_ROWS
    );
    let mut order: Vec<usize> = (0..n).collect();
    CounterRng::new(SPLIT_SEED, &[SPLIT_DOMAIN]).shuffle(&mut order);
    let sorted = |s: &[usize]| {
        let mut v = s.to_vec();
        v.sort_unstable();
        v
    };
    Ok((
        sorted(&order[DEV_ROWS + TEST_ROWS..]),
        sorted(&order[..DEV_ROWS]),
        sorted(&order[DEV_ROWS..DEV_ROWS + TEST_ROWS]),
    ))
}

/// The data folders searched for [`DATA_PATH`] without `--data`, in order, as
/// `scripts/fetch-data` and the tests find data: `$FAST_ELECTRA_SHARED_DATA`, `../shared/data`
/// beside the repository (the working directory's or the one this binary was built in), the
/// fetch cache (`$FAST_ELECTRA_DATA_CACHE`, else `.cache/data` in the repository).
pub fn data_folders() -> Vec<PathBuf> {
    let env = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut roots: Vec<PathBuf> = vec![];
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Some(repo) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        roots.push(repo.to_path_buf());
    }
    let mut out: Vec<PathBuf> = env("FAST_ELECTRA_SHARED_DATA").into_iter().collect();
    out.extend(roots.iter().map(|r| r.join("../shared/data")));
    match env("FAST_ELECTRA_DATA_CACHE") {
        Some(c) => out.push(c),
        None => out.extend(roots.iter().map(|r| r.join(".cache/data"))),
    }
    out
}

/// The file: in `--data DIR` (`DIR/FILE` or `DIR/tasks/mr/FILE`), else in a data folder.
pub fn find(data: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = data {
        for p in [dir.join(FILE), dir.join(DATA_PATH)] {
            if p.is_file() {
                return Ok(p);
            }
        }
        bail!(
            "--data {}: expected {FILE} in it or in its {}",
            dir.display(),
            Path::new(DATA_PATH)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let folders = data_folders();
    for f in &folders {
        let p = f.join(DATA_PATH);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "the mr data ({DATA_PATH}) is in none of {:?}: run scripts/fetch-data (it fetches it), or \
         pass --data DIR",
        folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
    )
}

/// Reads `mr` or `mr-rating` from `data` or the data folders.
pub fn load(name: &str, data: Option<&Path>) -> anyhow::Result<Task> {
    let path = find(data)?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let text =
        String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", path.display()))?;
    build(name, &path, &text)
}

/// The task `name` from the file's `text`.
pub fn build(name: &str, path: &Path, text: &str) -> anyhow::Result<Task> {
    let rows = parse(path, text)?;
    let (train, dev, test) =
        split_indices(rows.len()).with_context(|| path.display().to_string())?;
    let rating = name == "mr-rating";
    let split = |split: &str, idx: &[usize]| Split {
        name: split.to_string(),
        files: vec![path.to_path_buf()],
        examples: idx
            .iter()
            .map(|&i| {
                let r = &rows[i];
                Example {
                    id: r.id.clone(),
                    text_a: r.text.clone(),
                    text_b: None,
                    label: Some(if rating {
                        Label::Value(r.rating)
                    } else {
                        Label::Class(usize::from(r.rating > 0.0))
                    }),
                }
            })
            .collect(),
        skipped: vec![],
    };
    Ok(Task {
        name: name.to_string(),
        train: split("train", &train),
        dev: vec![split("dev", &dev)],
        test: vec![split("test", &test)],
        metric: if rating {
            Metric::Correlation
        } else {
            Metric::Accuracy
        },
        label_names: (!rating).then(|| LABELS.iter().map(|s| s.to_string()).collect()),
        source: Source::Builtin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic file of `n` rows: every 10th rating 0, row 5 repeats row 3's sentence.
    fn synthetic(n: usize) -> String {
        (1..=n)
            .map(|i| {
                let rating = if i % 10 == 0 {
                    0.0
                } else {
                    (i % 9) as f64 - 4.5
                };
                let text = if i == 5 {
                    "sentence 3".to_string()
                } else {
                    format!("sentence {i}")
                };
                format!("{i}\t{rating}\t{text}\r\n")
            })
            .collect()
    }

    #[test]
    fn parse_strips_crlf_drops_zeros_and_repeats() {
        let rows = parse(Path::new("f.txt"), &synthetic(30)).unwrap();
        assert_eq!(rows.len(), 30 - 3 - 1);
        assert!(rows
            .iter()
            .all(|r| r.rating != 0.0 && !r.text.ends_with('\r')));
        assert_eq!(rows[2].id, "3");
        assert_eq!(rows[3].id, "4", "row 5 repeats row 3");
        let e = parse(Path::new("f.txt"), "1\tx\ttext\r\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.txt: line 1, column \"rating\""), "{e}");
        let e = parse(Path::new("f.txt"), "1\t2.0\r\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.txt: line 1: expected id, rating and sentence"),
            "{e}"
        );
    }

    #[test]
    fn the_split_is_fixed_disjoint_and_complete() {
        let (train, dev, test) = split_indices(5000).unwrap();
        assert_eq!((train.len(), dev.len(), test.len()), (3000, 1000, 1000));
        let mut all: Vec<usize> = train.iter().chain(&dev).chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..5000).collect::<Vec<_>>(), "disjoint and complete");
        assert_eq!(
            split_indices(5000).unwrap(),
            (train.clone(), dev.clone(), test)
        );
        assert!(dev.windows(2).all(|w| w[0] < w[1]), "file order");
        assert!(split_indices(2000).is_err());
    }

    #[test]
    fn mr_and_mr_rating_from_one_file() {
        let text = synthetic(2500);
        let t = build("mr", Path::new("f.txt"), &text).unwrap();
        assert_eq!(t.labels().unwrap(), ["negative", "positive"]);
        assert_eq!(t.metric, Metric::Accuracy);
        let r = build("mr-rating", Path::new("f.txt"), &text).unwrap();
        assert!(r.labels().is_none());
        assert_eq!(r.metric.main_name(), "spearman");
        for (a, b) in t.train.examples.iter().zip(&r.train.examples) {
            assert_eq!(a.id, b.id);
            let (Some(Label::Class(c)), Some(Label::Value(v))) = (a.label, b.label) else {
                panic!("labels");
            };
            assert_eq!(c == 1, v > 0.0);
        }
    }

    /// The real file, when `scripts/fetch-data` has fetched it (CI runs it first).
    #[test]
    fn the_real_file_splits_into_8566_1000_1000() {
        let Ok(path) = find(None) else {
            eprintln!(
                "SKIPPED: {DATA_PATH} is in none of {:?} (run scripts/fetch-data)",
                data_folders()
            );
            return;
        };
        let t = load("mr", Some(path.parent().unwrap())).unwrap();
        let sizes = (
            t.train.examples.len(),
            t.dev[0].examples.len(),
            t.test[0].examples.len(),
        );
        assert_eq!(sizes, (8566, 1000, 1000));
        let ids = |s: &Split| {
            s.examples
                .iter()
                .map(|e| e.id.clone())
                .collect::<HashSet<_>>()
        };
        let (a, b, c) = (ids(&t.train), ids(&t.dev[0]), ids(&t.test[0]));
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
        let positive = t
            .train
            .examples
            .iter()
            .filter(|e| e.label == Some(Label::Class(1)))
            .count();
        assert!((4000..4600).contains(&positive), "{positive}");
        assert_eq!(
            t,
            load("mr", Some(path.parent().unwrap())).unwrap(),
            "deterministic"
        );
    }
}
