//! `trainer finetune` end to end on small tasks written here (docs/finetune.md):
//! - a grid over two learning rates with two seeds gives four runs, a point per learning rate
//!   with the median and mean over its seeds, and the best point per model; a second command
//!   into another folder gives the same scores bit for bit (results are reproducible by seed);
//! - an interrupted grid resumes: the same command in the same folder skips the finished runs
//!   (it says so) and re-runs only the missing one, with the same score;
//! - several models in one command: a pre-training run folder, one of its checkpoints, and both
//!   from random initialisation, each named in one ranked table with its pre-training updates;
//! - bad input is refused naming the file, the row and the field.
//!
//! Uses the suite's cached `demo_data` fixture (its tiny masked-LM run is the pre-trained model).
//! Needs `cargo build --release --bins` first.
use e2e_tests::support::data::{bert_tokenizer, s};
use e2e_tests::support::files::read_json;
use e2e_tests::support::fixtures::demo_data;
use e2e_tests::{binary, expect_err, expect_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const WORDS: [&str; 16] = [
    "good", "great", "fine", "lovely", "bad", "awful", "dull", "poor", "the", "film", "was", "a",
    "very", "plot", "and", "story",
];

/// A small sentiment-like task: label 1 when the sentence has more words of the first four
/// than of the next four (so there is something to learn), deterministic.
fn write_task(dir: &Path, name: &str, n: usize, salt: u64) -> PathBuf {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::new();
    for _ in 0..n {
        let len = 4 + (next() % 10) as usize;
        let words: Vec<&str> = (0..len).map(|_| WORDS[(next() % 16) as usize]).collect();
        let pos = words.iter().filter(|w| WORDS[..4].contains(w)).count();
        let neg = words.iter().filter(|w| WORDS[4..8].contains(w)).count();
        let label = if pos > neg { "pos" } else { "neg" };
        let line = serde_json::json!({ "sentence": words.join(" "), "y": label });
        text += &format!("{line}\n");
    }
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, text).unwrap();
    path
}

struct Task {
    train: PathBuf,
    dev: PathBuf,
    /// `--text-fields`.
    text: &'static str,
}

fn task(dir: &Path) -> Task {
    Task {
        train: write_task(dir, "train", 96, 1),
        dev: write_task(dir, "dev", 40, 2),
        text: "sentence",
    }
}

fn finetune(t: &Task, out: &Path, extra: &[&str]) -> Output {
    let tok = bert_tokenizer();
    let mut args = vec![
        "finetune",
        "--task",
        "toy",
        "--train",
        s(&t.train),
        "--dev",
        s(&t.dev),
        "--text-fields",
        t.text,
        "--label-field",
        "y",
        "--tokenizer",
        s(&tok),
        "--max-seq-len",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    std::process::Command::new(binary("trainer"))
        .args(&args)
        .env("OMP_WAIT_POLICY", "passive")
        .output()
        .expect("running trainer finetune")
}

/// `(model, lr, seed) -> score` of every run in `OUT/results.json`.
fn scores(out: &Path) -> Vec<(String, f64, u64, f64)> {
    let r = read_json(&out.join("results.json"));
    let mut v: Vec<(String, f64, u64, f64)> = r["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["model"].as_str().unwrap().to_string(),
                run["key"]["recipe"]["lr"].as_f64().unwrap(),
                run["key"]["seed"].as_u64().unwrap(),
                run["score"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

#[test]
fn a_grid_is_summarised_per_point_reproduced_by_seed_and_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = task(tmp.path());
    let grid = ["--model", "tiny", "--lr", "1e-3,3e-3", "--seeds", "2"];
    let a = tmp.path().join("a");
    expect_ok(finetune(&t, &a, &grid));
    let first = scores(&a);
    assert_eq!(first.len(), 4, "2 learning rates x 2 seeds: {first:?}");
    assert!(
        first.iter().all(|r| (0.0..=1.0).contains(&r.3)),
        "{first:?}"
    );
    let results = read_json(&a.join("results.json"));
    let points = results["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "a point per learning rate");
    for p in points {
        let s: Vec<f64> = p["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(s.len(), 2);
        let mean = (s[0] + s[1]) / 2.0;
        assert!(
            (p["median"].as_f64().unwrap() - mean).abs() < 1e-12,
            "median of 2 = mean"
        );
        assert!((p["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
        let std = ((s[0] - mean).powi(2) + (s[1] - mean).powi(2)).sqrt();
        assert!(
            (p["std"].as_f64().unwrap() - std).abs() < 1e-12,
            "sample std (n - 1)"
        );
    }
    let best = &results["best_per_model"].as_array().unwrap()[0];
    let best_median = best["median"].as_f64().unwrap();
    assert!(points
        .iter()
        .all(|p| p["median"].as_f64().unwrap() <= best_median));
    let table = std::fs::read_to_string(a.join("results.md")).unwrap();
    assert!(table.contains("| 1 | tiny |"), "{table}");
    assert!(a.join("best/config.json").is_file() && a.join("scores.png").is_file());

    // Reproducible by seed: the same command elsewhere gives the same scores, bit for bit.
    // (without TensorBoard events, which change no result).
    let grid: Vec<&str> = grid.iter().copied().chain(["--no-tensorboard"]).collect();
    let b = tmp.path().join("b");
    expect_ok(finetune(&t, &b, &grid));
    assert_eq!(scores(&b), first);
    assert!(a.join("tensorboard").is_dir() && !b.join("tensorboard").exists());

    // Resume: one run's record is lost (as if interrupted before it ended); the same command
    // skips the three finished runs and re-runs the fourth to the same score.
    let runs: Vec<PathBuf> = std::fs::read_dir(b.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 4);
    std::fs::remove_file(&runs[0]).unwrap();
    let out = expect_ok(finetune(&t, &b, &grid));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("done before").count(), 3, "{err}");
    assert_eq!(err.matches("dev accuracy").count(), 1, "{err}");
    assert_eq!(scores(&b), first);
}

#[test]
fn models_of_a_sweep_and_their_random_controls_share_one_table() {
    let d = demo_data();
    let tmp = tempfile::tempdir().unwrap();
    let t = task(tmp.path());
    let run = d.aux_run();
    let checkpoint = run.join("checkpoints/step-0000060");
    assert!(
        checkpoint.join("state.json").is_file(),
        "{}",
        checkpoint.display()
    );
    let out = tmp.path().join("out");
    let tb_dir = tmp.path().join("tb");
    expect_ok(finetune(
        &t,
        &out,
        &[
            "--tensorboard-dir",
            s(&tb_dir),
            "--model",
            s(&run),
            "--model",
            s(&checkpoint),
            "--init",
            "pretrained,random",
            "--lr",
            "2e-3",
            "--seeds",
            "1",
        ],
    ));
    let results = read_json(&out.join("results.json"));
    let ranked = results["best_per_model"].as_array().unwrap();
    let mut models: Vec<(String, Value)> = ranked
        .iter()
        .map(|p| {
            (
                p["model"].as_str().unwrap().to_string(),
                p["pretrain_updates"].clone(),
            )
        })
        .collect();
    models.sort_by(|a, b| a.0.cmp(&b.0));
    let name = run.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(models.len(), 4, "{models:?}");
    assert!(
        models.contains(&(name.clone(), Value::from(60))),
        "{models:?}"
    );
    assert!(
        models.contains(&(format!("{name}/step-0000060"), Value::from(60))),
        "{models:?}"
    );
    assert!(
        models
            .iter()
            .filter(|m| m.0.ends_with("(random init)"))
            .count()
            == 2,
        "{models:?}"
    );
    // Pre-trained and random runs of one model differ (the weights were loaded).
    let s = scores(&out);
    let pretrained = s.iter().find(|r| r.0 == name).unwrap();
    let random = s
        .iter()
        .find(|r| r.0 == format!("{name} (random init)"))
        .unwrap();
    assert_eq!(pretrained.2, random.2);
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    for (m, _) in &models {
        assert!(table.contains(m.as_str()), "{m} in {table}");
    }
    // One TensorBoard folder per model, one run each, where --tensorboard-dir says.
    assert!(!out.join("tensorboard").exists());
    let tb: Vec<String> = std::fs::read_dir(&tb_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tb.len(), 4, "{tb:?}");
}

#[test]
fn bad_task_files_are_refused_naming_file_row_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let t = task(tmp.path());
    // A dev label the training split never had.
    let dev = tmp.path().join("dev-bad.jsonl");
    let mut text = std::fs::read_to_string(&t.dev).unwrap();
    text += "{\"sentence\": \"a film\", \"y\": \"meh\"}\n";
    std::fs::write(&dev, text).unwrap();
    let bad = Task {
        train: t.train.clone(),
        dev: dev.clone(),
        text: "sentence",
    };
    let err = expect_err(finetune(
        &bad,
        &tmp.path().join("o1"),
        &["--model", "tiny", "--seeds", "1"],
    ));
    assert!(
        err.contains("dev-bad.jsonl") && err.contains("41") && err.contains("meh"),
        "{err}"
    );
    // A missing text field.
    let missing = Task { text: "text", ..t };
    let err = expect_err(finetune(
        &missing,
        &tmp.path().join("o2"),
        &["--model", "tiny", "--seeds", "1"],
    ));
    assert!(err.contains("train.jsonl") && err.contains("text"), "{err}");
    assert!(!tmp.path().join("o1/best").exists() && !tmp.path().join("o2/best").exists());
}
