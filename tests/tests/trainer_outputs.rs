//! `trainer` outputs (issue 15): without `--run-dir` a run gets a new folder
//! `runs/<objective>-<model>-<UTC time>` under the current directory; validation records carry
//! `auc` and `f1` (RTD) or null (MLM); `--resume` needs `--run-dir`; a token folder given to the
//! RTD objective is refused naming both kinds. One fixture: 10 SOTU speeches tokenized, a 2-update
//! masked LM trained in a default run folder, its export used to corrupt one training and one
//! validation epoch. Needs `cargo build --release --bins` first.
use e2e_tests::{bert_tokenizer, binary, expect_err, expect_ok, run, shared_data};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `trainer` with `args` in the working directory `cwd`.
fn trainer_in(cwd: &Path, args: &[&str]) -> Output {
    std::process::Command::new(binary("trainer"))
        .args(args)
        .current_dir(cwd)
        .env("OMP_WAIT_POLICY", "passive")
        .output()
        .expect("running trainer")
}

/// The only folder under `cwd/runs` whose name starts with `prefix`.
fn run_folder(cwd: &Path, prefix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(cwd.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// `runs/<prefix>yyyymmdd-HHMMSS`: the name's time part is 15 characters `dddddddd-dddddd`.
fn assert_default_name(dir: &Path, prefix: &str) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = name.strip_prefix(prefix).expect("prefix");
    let ok = stamp.len() == 15
        && stamp
            .char_indices()
            .all(|(i, c)| if i == 8 { c == '-' } else { c.is_ascii_digit() });
    assert!(ok, "{name}: expected {prefix}yyyymmdd-HHMMSS");
    assert_eq!(dir.parent().unwrap().file_name().unwrap(), "runs");
}

fn metrics(run_dir: &Path, split: &str) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["split"] == split)
        .collect()
}

struct Fixture {
    dir: PathBuf,
    /// The working directory of the MLM run and its stderr.
    mlm_cwd: PathBuf,
    mlm_stderr: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let text = std::fs::read_to_string(shared_data().join("corpus/sotu.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().take(10).collect();
        let corpus = dir.join("sotu-10.jsonl");
        std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
        let tokens = dir.join("tokens");
        expect_ok(run(
            "preprocess",
            &[
                "tokenize",
                "--input",
                s(&corpus),
                "--tokenizer",
                s(&bert_tokenizer()),
                "--out",
                s(&tokens),
                "--max-seq-len",
                "64",
                "--validation-fraction",
                "0.2",
                "--row-group-rows",
                "64",
            ],
        ));
        let mlm_cwd = dir.join("mlm-cwd");
        std::fs::create_dir(&mlm_cwd).unwrap();
        let out = expect_ok(trainer_in(
            &mlm_cwd,
            &[
                "--objective",
                "mlm",
                "--shards",
                s(&tokens),
                "--model",
                "tiny",
                "--batch-size",
                "16",
                "--max-steps",
                "2",
                "--warmup-steps",
                "1",
                "--log-every",
                "1",
                "--validation",
                s(&tokens.join("validation")),
                "--validate-every",
                "2",
                "--device",
                "cpu",
            ],
        ));
        let mlm_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let aux = run_folder(&mlm_cwd, "mlm-tiny-").join("export");
        for (toks, out) in [
            (tokens.clone(), dir.join("data")),
            (tokens.join("validation"), dir.join("val")),
        ] {
            expect_ok(run(
                "preprocess",
                &[
                    "--epoch",
                    "0",
                    "--epochs",
                    "1",
                    "--tokens",
                    s(&toks),
                    "--aux-model",
                    s(&aux),
                    "--out",
                    s(&out),
                    "--device",
                    "cpu",
                    "--threads",
                    "2",
                ],
            ));
        }
        Fixture {
            dir,
            mlm_cwd,
            mlm_stderr,
        }
    })
}

#[test]
fn issue15_mlm_without_run_dir_makes_a_default_folder() {
    let f = fixture();
    let run_dir = run_folder(&f.mlm_cwd, "mlm-tiny-");
    assert_default_name(&run_dir, "mlm-tiny-");
    assert!(
        f.mlm_stderr.contains("trainer: run folder runs/mlm-tiny-"),
        "{}",
        f.mlm_stderr
    );
    for file in [
        "run.json",
        "metrics.jsonl",
        "loss.png",
        "export/config.json",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    // MLM reports accuracy only: the class metrics are null.
    let v = metrics(&run_dir, "validation");
    assert_eq!(v.len(), 1);
    assert!(v[0]["accuracy"].is_f64(), "{}", v[0]);
    assert!(v[0]["auc"].is_null() && v[0]["f1"].is_null(), "{}", v[0]);
}

#[test]
fn issue15_rtd_without_run_dir_reports_auc_and_f1() {
    let f = fixture();
    let cwd = f.dir.join("rtd-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = expect_ok(trainer_in(
        &cwd,
        &[
            "--shards",
            s(&f.dir.join("data/epoch-000")),
            "--validation",
            s(&f.dir.join("val/epoch-000")),
            "--model",
            "tiny",
            "--batch-size",
            "16",
            "--max-steps",
            "4",
            "--warmup-steps",
            "2",
            "--log-every",
            "2",
            "--validate-every",
            "2",
            "--checkpoint-every",
            "4",
            "--device",
            "cpu",
        ],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("trainer: run folder runs/rtd-tiny-"),
        "{stderr}"
    );
    let run_dir = run_folder(&cwd, "rtd-tiny-");
    assert_default_name(&run_dir, "rtd-tiny-");
    for file in [
        "run.json",
        "loss.png",
        "accuracy.png",
        "checkpoints/step-0000004/state.json",
        "export/model.safetensors",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    let val = metrics(&run_dir, "validation");
    assert_eq!(val.len(), 2);
    for v in &val {
        let auc = v["auc"].as_f64().unwrap_or_else(|| panic!("auc: {v}"));
        assert!((0.0..=1.0).contains(&auc), "{v}");
        let f1 = v["f1"].as_f64().unwrap_or_else(|| panic!("f1: {v}"));
        assert!((0.0..=1.0).contains(&f1), "{v}");
        assert!(v["baseline_accuracy"].is_f64(), "{v}");
    }
    for t in metrics(&run_dir, "train") {
        assert!(t.get("f1").is_some(), "{t}");
    }
    // --resume continues a named run only.
    let e = expect_err(trainer_in(
        &cwd,
        &["--shards", s(&f.dir.join("data/epoch-000")), "--resume"],
    ));
    assert!(e.contains("--resume: expected --run-dir"), "{e}");
}

#[test]
fn issue15_a_token_folder_is_refused_for_rtd_naming_the_kinds() {
    let f = fixture();
    let cwd = f.dir.join("kind-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let e = expect_err(trainer_in(
        &cwd,
        &[
            "--shards",
            s(&f.dir.join("tokens")),
            "--model",
            "tiny",
            "--device",
            "cpu",
        ],
    ));
    assert!(
        e.contains("field kind") && e.contains("--objective rtd reads epoch folders"),
        "{e}"
    );
    // Nothing was created for a run that never started.
    assert!(!cwd.join("runs").exists());
}
