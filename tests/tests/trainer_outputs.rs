//! `trainer` outputs: without `--run-dir` a run gets a new folder
//! `runs/<objective>-<model>-<UTC time>` under the current directory; validation records carry
//! `auc` and `f1` (RTD) or null (MLM); `--resume` needs `--run-dir`; a token folder given to the
//! RTD objective is refused naming both kinds. Uses the suite's cached `demo_data` fixture (tokens,
//! epochs, validation split); each test runs in its own temporary working directory. Needs
//! `cargo build --release --bins` first.
use e2e_tests::support::fixtures::demo_data;
use e2e_tests::support::runs::metrics;
use e2e_tests::{binary, expect_err, expect_ok};
use std::path::{Path, PathBuf};
use std::process::Output;

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

#[test]
fn mlm_without_run_dir_makes_a_default_folder() {
    let d = demo_data();
    let cwd = tempfile::tempdir().unwrap();
    let out = expect_ok(trainer_in(
        cwd.path(),
        &[
            "--objective",
            "mlm",
            "--shards",
            s(&d.tokens()),
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
            s(&d.tokens().join("validation")),
            "--validate-every",
            "2",
            "--device",
            "cpu",
        ],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run_dir = run_folder(cwd.path(), "mlm-tiny-");
    assert_default_name(&run_dir, "mlm-tiny-");
    assert!(
        stderr.contains("trainer: run folder runs/mlm-tiny-"),
        "{stderr}"
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
fn rtd_without_run_dir_reports_auc_and_f1() {
    let d = demo_data();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().to_path_buf();
    let out = expect_ok(trainer_in(
        &cwd,
        &[
            "--shards",
            s(&d.epoch(0)),
            "--validation",
            s(&d.validation()),
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
    let e = expect_err(trainer_in(&cwd, &["--shards", s(&d.epoch(0)), "--resume"]));
    assert!(e.contains("--resume: expected --run-dir"), "{e}");
}

#[test]
fn a_token_folder_is_refused_for_rtd_naming_the_kinds() {
    let d = demo_data();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().to_path_buf();
    let e = expect_err(trainer_in(
        &cwd,
        &[
            "--shards",
            s(&d.tokens()),
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
