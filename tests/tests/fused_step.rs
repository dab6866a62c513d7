//! `trainer --step fused` (docs/fused-step.md) end to end on the suite's `demo_data`
//! fixture: a short CPU run with the hand-written step trains the same model as `--step
//! autograd` (on the CPU both draw the same dropout masks from torch's generator, so the losses
//! and gradient norms agree to float rounding, with dropout on), and what the fused step does not
//! implement is refused before training, saying why. Needs `cargo build --release --bins` first.
use e2e_tests::support::data::s;
use e2e_tests::support::fixtures::demo_data;
use e2e_tests::support::runs::metrics;
use e2e_tests::{expect_err as err, expect_ok as ok, run};
use std::path::PathBuf;

/// `trainer --step STEP` on epoch 0 into `DIR/STEP` (tiny, CPU, batch 16, 12 updates, a line per
/// update), with `extra` flags (which replace the defaults of the same name).
fn train(step: &str, dir: &std::path::Path, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let d = demo_data();
    let run_dir = dir.join(step);
    let epoch = d.epoch(0);
    let mut a = vec![
        "--shards",
        s(&epoch),
        "--run-dir",
        s(&run_dir),
        "--step",
        step,
    ];
    let defaults = [
        ("--model", "tiny"),
        ("--batch-size", "16"),
        ("--device", "cpu"),
        ("--max-steps", "12"),
        ("--warmup-steps", "3"),
        ("--lr", "2e-3"),
        ("--log-every", "1"),
        ("--checkpoint-every", "1000"),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            a.extend([flag, value]);
        }
    }
    a.extend_from_slice(extra);
    let out = run("trainer", &a);
    (run_dir, out)
}

/// (loss, grad norm, accuracy) of every train line of a run.
fn lines(dir: &std::path::Path) -> Vec<(f64, f64, f64)> {
    metrics(dir, "train")
        .iter()
        .map(|v| {
            (
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
                v["accuracy"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Trains `--step autograd` and `--step fused` with `extra` and checks every update's loss and
/// gradient norm agree within 1e-5 relative (and the accuracy within 1e-3).
fn same_runs(tmp: &std::path::Path, extra: &[&str], updates: usize) {
    let (auto_dir, out) = train("autograd", tmp, extra);
    ok(out);
    let (fused_dir, out) = train("fused", tmp, extra);
    ok(out);
    let (a, f) = (lines(&auto_dir), lines(&fused_dir));
    assert_eq!(a.len(), updates);
    assert_eq!(a.len(), f.len());
    let rel = |p: f64, q: f64| (p - q).abs() / q.abs().max(1e-12);
    let worst = a
        .iter()
        .zip(&f)
        .map(|(x, y)| (rel(y.0, x.0), rel(y.1, x.1)))
        .fold((0f64, 0f64), |m, r| (m.0.max(r.0), m.1.max(r.1)));
    eprintln!(
        "fused vs autograd {extra:?}: loss within {:.1e}, grad norm within {:.1e} (relative)",
        worst.0, worst.1
    );
    for (i, (x, y)) in a.iter().zip(&f).enumerate() {
        assert!(
            rel(y.0, x.0) < 1e-5 && rel(y.1, x.1) < 1e-5,
            "update {}: fused (loss {}, grad norm {}) vs autograd (loss {}, grad norm {})",
            i + 1,
            y.0,
            y.1,
            x.0,
            x.1
        );
        assert!(
            (y.2 - x.2).abs() < 1e-3,
            "update {}: accuracy {} vs {}",
            i + 1,
            y.2,
            x.2
        );
    }
}

#[test]
fn fused_step_trains_the_same_model_as_autograd_on_the_cpu() {
    // Dropout 0.1 (the preset's): the CPU fused step draws autograd's masks.
    let tmp = tempfile::tempdir().unwrap();
    same_runs(tmp.path(), &["--dropout", "0.1"], 12);
    // Gradient accumulation: two micro-batches add into .grad() before each update.
    let tmp = tempfile::tempdir().unwrap();
    same_runs(
        tmp.path(),
        &[
            "--dropout",
            "0",
            "--grad-accum",
            "2",
            "--batch-size",
            "8",
            "--max-steps",
            "6",
        ],
        6,
    );
}

#[test]
fn fused_step_refuses_what_it_does_not_implement() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = train("fused", tmp.path(), &["--model", "tiny-rel"]);
    let e = err(out);
    assert!(e.contains("--step fused") && e.contains("relative"), "{e}");
    let d = demo_data();
    let tokens = d.tokens();
    let out = run(
        "trainer",
        &[
            "--objective",
            "mlm",
            "--shards",
            s(&tokens),
            "--run-dir",
            s(&tmp.path().join("mlm")),
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--step",
            "fused",
        ],
    );
    let e = err(out);
    assert!(e.contains("--step fused") && e.contains("rtd"), "{e}");
}
