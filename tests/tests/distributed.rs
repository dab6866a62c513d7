//! Data-parallel training end to end: the real `trainer` started by the real
//! `torchrun` (`python3 -m torch.distributed.run --standalone --no-python ...`), 2 ranks on the
//! CPU with Gloo, a tiny model with dropout off, on a slice of the shared corpus. The fixture
//! (built once per test binary) follows tests/tests/trainer.rs: tokenize 20 SOTU speeches, a
//! short MLM run as the auxiliary model, two corrupted epochs. Needs `cargo build --release
//! --bins` first.
use e2e_tests::support::equivalence::{assert_same_training, updates, Tolerance};
use e2e_tests::{bert_tokenizer, binary, expect_err as err, expect_ok as ok, run, shared_data};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `tokens/`, `mlm/export` (the auxiliary model), `data/epoch-00{0,1}`, and `tiny.json`: the
/// tiny model's config with dropout off.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let text = std::fs::read_to_string(shared_data().join("corpus/sotu.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().take(20).collect();
        let corpus = dir.join("sotu-20.jsonl");
        std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
        let tokens = dir.join("tokens");
        ok(run(
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
                "--row-group-rows",
                "64",
                "--rows-per-shard",
                "256",
            ],
        ));
        let mlm = dir.join("mlm");
        ok(run(
            "trainer",
            &[
                "--objective",
                "mlm",
                "--shards",
                s(&tokens),
                "--run-dir",
                s(&mlm),
                "--model",
                "tiny",
                "--batch-size",
                "16",
                "--max-steps",
                "4",
                "--lr",
                "2e-3",
                "--warmup-steps",
                "2",
                "--device",
                "cpu",
            ],
        ));
        for epoch in ["0", "1"] {
            ok(run(
                "preprocess",
                &[
                    "--epoch",
                    epoch,
                    "--epochs",
                    "2",
                    "--tokens",
                    s(&tokens),
                    "--aux-model",
                    s(&mlm.join("export")),
                    "--out",
                    s(&dir.join("data")),
                    "--device",
                    "cpu",
                    "--threads",
                    "2",
                ],
            ));
        }
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(mlm.join("export/config.json")).unwrap())
                .unwrap();
        cfg["hidden_dropout_prob"] = 0.0.into();
        cfg["attention_probs_dropout_prob"] = 0.0.into();
        std::fs::write(dir.join("tiny.json"), cfg.to_string()).unwrap();
        dir
    })
}

/// `trainer` arguments of an RTD run on the fixture with `batch` sequences per rank.
fn args(run_dir: &Path, batch: &str, extra: &[&str]) -> Vec<String> {
    let d = fixture();
    let mut a: Vec<String> = [
        "--shards",
        s(&d.join("data/epoch-000")),
        s(&d.join("data/epoch-001")),
        "--run-dir",
        s(run_dir),
        "--model",
        s(&d.join("tiny.json")),
        "--batch-size",
        batch,
        "--device",
        "cpu",
        "--lr",
        "2e-3",
        "--warmup-steps",
        "3",
        "--log-every",
        "1",
        "--checkpoint-every",
        "5",
        "--seed",
        "5",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

/// One process.
fn single(a: &[String]) -> Output {
    run("trainer", &a.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `torchrun --standalone --nproc-per-node N --no-python PROGRAM ARGS` (a free port each time).
fn torchrun_cmd(n: usize, program: &Path, a: &[String]) -> Command {
    torchrun_with(n, &[], program, a)
}

/// [`torchrun_cmd`] with more of torchrun's own options (`--max-restarts=1`).
fn torchrun_with(n: usize, launcher: &[&str], program: &Path, a: &[String]) -> Command {
    let mut c = Command::new("python3");
    c.args(["-m", "torch.distributed.run", "--standalone"])
        .arg(format!("--nproc-per-node={n}"))
        .args(launcher)
        .args(["--no-python", s(program)])
        .args(a)
        .env("OMP_WAIT_POLICY", "passive");
    c
}

fn torchrun(n: usize, a: &[String]) -> Output {
    torchrun_cmd(n, &binary("trainer"), a)
        .output()
        .expect("running torchrun")
}

/// How close a data-parallel run must be to one process on the same global batches: fp32 sums
/// in another order (two halves, then the all-reduce), nothing more. Measured: about 1e-7 for
/// each (losses and gradient norms relative, weights absolute, the largest weight about 1); a
/// gradient summed where it should be averaged doubles every gradient norm.
const SAME: Tolerance = Tolerance {
    loss: 1e-5,
    grad_norm: 1e-5,
    weight: 1e-6,
};

/// The clipping norm of these runs: between the smallest and the largest gradient norm of the
/// reference's updates, so that some updates are clipped and some are not (asserted).
const CLIP: &str = "0.6";

/// Asserts that `run` trained what `reference` did (support::equivalence) and logs by how much.
fn assert_same(reference: &Path, run: &Path, what: &str) {
    let d = assert_same_training(reference, run, SAME, what);
    eprintln!("{what}: {d:?}");
}

#[test]
fn two_ranks_train_the_same_weights_as_one_process_and_across_resumes() {
    let d = fixture();
    let runs = d.join("runs-equal");
    let steps = ["--max-steps", "20", "--clip-norm", CLIP];
    // One process on global batches of 16; two ranks of 8.
    let one = runs.join("one");
    ok(single(&args(&one, "16", &steps)));
    let reference = updates(&one);
    assert_eq!(reference.len(), 20);
    // Clipping acted in some updates and not in others.
    let clip: f64 = CLIP.parse().unwrap();
    let clipped = reference.iter().filter(|u| u.grad_norm > clip).count();
    assert!(
        clipped > 0 && clipped < reference.len(),
        "{clipped} of {} updates clipped at {clip}: {reference:?}",
        reference.len()
    );
    let two = runs.join("two");
    let out = ok(torchrun(2, &args(&two, "8", &steps)));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("rank 1 of 2 (pid") && log.contains("Gloo"),
        "{log}"
    );
    assert_same(&one, &two, "2 ranks x 8 vs 1 x 16");
    // run.json records the global batch.
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("run.json")).unwrap()).unwrap();
    assert_eq!(cfg["batch_size"], 16);

    // Stopped by 2 ranks after 8 updates (last checkpoint at 5), resumed by one process.
    let stop = [&steps[..], &["--debug-stop-after", "8"]].concat();
    let resume = [&steps[..], &["--resume"]].concat();
    let a = runs.join("two-then-one");
    ok(torchrun(2, &args(&a, "8", &stop)));
    ok(single(&args(&a, "16", &resume)));
    assert_same(&one, &a, "2 ranks then 1 process");
    // And the reverse.
    let b = runs.join("one-then-two");
    ok(single(&args(&b, "16", &stop)));
    ok(torchrun(2, &args(&b, "8", &resume)));
    assert_same(&one, &b, "1 process then 2 ranks");

    // Gradient accumulation: 2 micro-batches per update, of 8 rows (one process) or 2 x 4.
    let accum = [
        "--max-steps",
        "10",
        "--clip-norm",
        CLIP,
        "--grad-accum",
        "2",
    ];
    let one_accum = runs.join("one-accum");
    ok(single(&args(&one_accum, "8", &accum)));
    let two_accum = runs.join("two-accum");
    ok(torchrun(2, &args(&two_accum, "4", &accum)));
    assert_same(
        &one_accum,
        &two_accum,
        "2 ranks x 4 vs 1 x 8, 2 micro-batches per update",
    );
}

/// The `allreduce` objects of a run's `train` lines (`--comm-timing`).
fn comm_timings(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .map(|v| v["allreduce"].clone())
        .collect()
}

/// The bucketed all-reduce (c10d's DDP Reducer, the default `--bucket-mb 25`) against one
/// process and against the flat all-reduce after the backward pass (`--bucket-mb 0`): small
/// buckets (several per update) with and without `--grad-accum 2`, and 3 ranks, train what one
/// process trains within `SAME`; with 2 ranks the losses and gradient norms equal the flat
/// all-reduce's exactly. `--comm-timing` shows buckets launched before the backward pass ends
/// (in every update, also after the Reducer re-formed its buckets in gradient-ready order).
/// `--grad-comm bf16` trains close to fp32 (the difference is logged).
#[test]
fn bucketed_all_reduce_overlaps_the_backward_pass_and_trains_the_same_weights() {
    let d = fixture();
    let runs = d.join("runs-buckets");
    let steps = ["--max-steps", "20", "--clip-norm", CLIP];
    let one = runs.join("one");
    ok(single(&args(&one, "16", &steps)));
    let flat = runs.join("flat");
    ok(torchrun(
        2,
        &args(&flat, "8", &[&steps[..], &["--bucket-mb", "0"]].concat()),
    ));
    let small = [&steps[..], &["--bucket-mb", "0.25", "--comm-timing"]].concat();
    let buckets = runs.join("buckets");
    let out = ok(torchrun(2, &args(&buckets, "8", &small)));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("by c10d's Reducer: 3 bucket(s)"), "{log}");
    assert!(
        log.contains("in the order the gradients became ready: 2 bucket(s)"),
        "{log}"
    );
    assert_same(&one, &buckets, "2 ranks, 3 buckets vs 1 process");
    assert_eq!(
        updates(&buckets),
        updates(&flat),
        "buckets vs one flat all-reduce"
    );
    // Overlap: every update launched its earlier buckets before its last gradient.
    let timings = comm_timings(&buckets);
    assert_eq!(timings.len(), 20);
    let mut hidden = 0;
    for t in &timings {
        let launch: Vec<f64> = serde_json::from_value(t["launch_ms"].clone()).unwrap();
        let done: Vec<f64> = serde_json::from_value(t["done_ms"].clone()).unwrap();
        // 3 buckets in the first update, 2 after the Reducer re-formed them in ready order.
        let n = launch.len();
        assert!(n >= 2, "{t}");
        assert!(
            launch[..n - 1].iter().all(|&x| x < 0.0) && launch[n - 1] == 0.0,
            "{t}"
        );
        assert!(t["tail_ms"].as_f64().unwrap() >= 0.0, "{t}");
        hidden += done.iter().filter(|&&x| x < 0.0).count();
    }
    eprintln!(
        "--comm-timing: {hidden} bucket all-reduces done before the last gradient in 20 updates; last update {}",
        timings[19]
    );

    accumulation_three_ranks_and_bf16(&runs, &[], &buckets, "");
    std::fs::remove_dir_all(&runs).unwrap();
}

/// The hand-written step's bucketed all-reduce (`--step fused --bucket-mb`, `crate::buckets`)
/// against one process and against its flat all-reduce after the backward pass (`--bucket-mb
/// 0`): 3 buckets of whole layers per update (head + layer 1, layer 0, embeddings) with and
/// without `--grad-accum 2`, and 3 ranks, train what one process trains within `SAME`; with 2
/// ranks every update's loss and gradient norm and the final weights equal the flat
/// all-reduce's exactly. `--comm-timing` shows the first two buckets launched before the
/// backward pass ends in every update, and times the flat all-reduce as all tail.
/// `--grad-comm bf16` trains close to fp32 (the difference is logged).
#[test]
fn fused_step_all_reduces_in_buckets_during_its_backward_and_trains_the_same_weights() {
    let d = fixture();
    let runs = d.join("runs-fused-buckets");
    let steps = ["--max-steps", "20", "--clip-norm", CLIP, "--step", "fused"];
    let one = runs.join("one");
    ok(single(&args(&one, "16", &steps)));
    let flat = runs.join("flat");
    let out = ok(torchrun(
        2,
        &args(
            &flat,
            "8",
            &[&steps[..], &["--bucket-mb", "0", "--comm-timing"]].concat(),
        ),
    ));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("bucket(s)"), "{log}");
    // The flat all-reduce is timed as one launch at the end of the backward pass: all tail.
    for t in comm_timings(&flat) {
        assert_eq!(t["launch_ms"], serde_json::json!([0.0]), "{t}");
        assert!(t["tail_ms"].as_f64().unwrap() > 0.0, "{t}");
    }
    let small = [&steps[..], &["--bucket-mb", "0.25", "--comm-timing"]].concat();
    let buckets = runs.join("buckets");
    let out = ok(torchrun(2, &args(&buckets, "8", &small)));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("hand-written backward pass: 3 bucket(s)")
            && log.contains("head, layer 1 (")
            && log.contains("; layer 0 (")
            && log.contains("; embeddings ("),
        "{log}"
    );
    assert_same(&one, &buckets, "fused, 2 ranks, 3 buckets vs 1 process");
    assert_eq!(
        updates(&buckets),
        updates(&flat),
        "fused: buckets vs one flat all-reduce"
    );
    let (wb, wf) = (
        last_checkpoint_weights(&buckets),
        last_checkpoint_weights(&flat),
    );
    assert_eq!(wb.len(), wf.len());
    for ((n, a), (_, b)) in wb.iter().zip(&wf) {
        assert!(a.equal(b), "{n}: buckets and flat differ");
    }
    let timings = comm_timings(&buckets);
    assert_eq!(timings.len(), 20);
    let mut hidden = 0;
    for t in &timings {
        let launch: Vec<f64> = serde_json::from_value(t["launch_ms"].clone()).unwrap();
        let done: Vec<f64> = serde_json::from_value(t["done_ms"].clone()).unwrap();
        assert_eq!(launch.len(), 3, "{t}");
        assert!(
            launch[..2].iter().all(|&x| x < 0.0) && launch[2] == 0.0,
            "{t}"
        );
        assert!(t["tail_ms"].as_f64().unwrap() >= 0.0, "{t}");
        hidden += done.iter().filter(|&&x| x < 0.0).count();
    }
    eprintln!(
        "fused --comm-timing: {hidden} of 60 bucket all-reduces done before the last gradient; last update {}",
        timings[19]
    );

    accumulation_three_ranks_and_bf16(&runs, &["--step", "fused"], &buckets, "fused ");
    std::fs::remove_dir_all(&runs).unwrap();
}

/// What both bucket tests check after their 2-rank runs (`step`: the step's flags, none for
/// autograd; `buckets`: the 2-rank run with 3 buckets): with `--grad-accum 2` (the first
/// micro-batch only accumulates: `no_sync`) and with 3 ranks, the bucketed all-reduce trains what
/// one process trains within `SAME`; `--grad-comm bf16` trains close to fp32, not equal to it.
fn accumulation_three_ranks_and_bf16(runs: &Path, step: &[&str], buckets: &Path, what: &str) {
    let steps = [&["--max-steps", "20", "--clip-norm", CLIP][..], step].concat();
    let small = [&steps[..], &["--bucket-mb", "0.25", "--comm-timing"]].concat();
    let accum = [
        &["--max-steps", "10", "--clip-norm", CLIP][..],
        step,
        &["--bucket-mb", "0.25", "--grad-accum", "2"],
    ]
    .concat();
    let one_accum = runs.join("one-accum");
    ok(single(&args(&one_accum, "8", &accum)));
    let two_accum = runs.join("two-accum");
    ok(torchrun(2, &args(&two_accum, "4", &accum)));
    assert_same(
        &one_accum,
        &two_accum,
        &format!("{what}2 ranks x 4, 3 buckets, 2 micro-batches per update"),
    );

    // 3 ranks of 5 against one process of 15.
    let one15 = runs.join("one-15");
    ok(single(&args(&one15, "15", &steps)));
    let three = runs.join("three");
    ok(torchrun(3, &args(&three, "5", &small)));
    assert_same(
        &one15,
        &three,
        &format!("{what}3 ranks x 5, 3 buckets vs 1 process"),
    );

    let bf16 = runs.join("bf16");
    ok(torchrun(
        2,
        &args(&bf16, "8", &[&small[..], &["--grad-comm", "bf16"]].concat()),
    ));
    let (a, b) = (updates(buckets), updates(&bf16));
    let last = |u: &[e2e_tests::support::equivalence::Update]| u.last().unwrap().loss;
    let diff = (last(&a) - last(&b)).abs();
    eprintln!(
        "{what}--grad-comm bf16: final loss {} vs fp32 {} (difference {diff:.2e}, relative {:.2e})",
        last(&b),
        last(&a),
        diff / last(&a)
    );
    assert!(a != b, "{what}bf16 changed nothing");
    assert!(
        diff / last(&a) < 0.05,
        "{what}bf16 final loss {} vs {}",
        last(&b),
        last(&a)
    );
}

/// `trainer --objective OBJECTIVE` arguments on the fixture's token folder (mlm, electra;
/// online with the fixture's auxiliary model) with `batch` sequences per rank.
fn token_args(objective: &str, run_dir: &Path, batch: &str, extra: &[&str]) -> Vec<String> {
    let d = fixture();
    let mut a: Vec<String> = vec!["--objective".into(), objective.into()];
    let mut rest = args(run_dir, batch, extra);
    // The epoch folders of `args` replaced by the token folder.
    let at = rest.iter().position(|x| x == "--shards").unwrap();
    rest.splice(at + 1..at + 3, [s(&d.join("tokens")).to_string()]);
    a.extend(rest);
    if objective == "online" {
        a.extend(["--aux-model".into(), s(&d.join("mlm/export")).into()]);
    }
    a
}

/// How close electra's 2 ranks come to one process: its replacements are sampled from the
/// generator's softmax (inverse CDF at fixed uniforms), so a rounding-level difference in the
/// generator's logits flips a sampled token now and then, and AdamW turns the gradient of a
/// rarely seen embedding row into a full step. Measured on the fixture, 20 updates: one process
/// with 1 thread against 2 threads differs exactly as much as 2 ranks against one process
/// (losses 8e-6 and gradient norms 8e-5 relative from update 8 on, final weights 1.0e-2).
const ELECTRA: Tolerance = Tolerance {
    loss: 1e-4,
    grad_norm: 1e-3,
    weight: 5e-2,
};

/// The bucketed all-reduce beyond rtd: `--objective mlm`, `electra` (a generator and a
/// discriminator, losses summed) and `online` (a frozen auxiliary model) on 2 ranks with 3 or
/// more buckets against one process, 20 updates each: mlm and online within `SAME`; electra's
/// first 5 updates within `SAME`, all 20 within `ELECTRA`, and its buckets equal its flat
/// all-reduce exactly. Electra's MLM term is a mean over masked positions while the loss weight
/// is each rank's share of real tokens: it is corrected by `masked_term_factor` (without it the
/// gradient norms differed by 1.3e-4 relative at update 3). Every parameter gets a gradient in
/// every update of these objectives (the Reducer's check after each backward would have
/// stopped the run otherwise; that check is
/// `parallel::tests::a_parameter_without_gradient_stops_the_reducer_with_a_clear_error`).
#[test]
fn mlm_electra_and_online_train_the_same_weights_on_two_ranks_with_buckets() {
    let runs = fixture().join("runs-objectives");
    let steps = ["--max-steps", "20"];
    for objective in ["mlm", "electra", "online"] {
        let one = runs.join(format!("{objective}-one"));
        ok(single(&token_args(objective, &one, "16", &steps)));
        let two = runs.join(format!("{objective}-two"));
        let out = ok(torchrun(
            2,
            &token_args(
                objective,
                &two,
                "8",
                &[&steps[..], &["--bucket-mb", "0.25"]].concat(),
            ),
        ));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("by c10d's Reducer: "), "{log}");
        let what = format!("--objective {objective}: 2 ranks, buckets vs 1 process");
        if objective != "electra" {
            assert_same(&one, &two, &what);
            continue;
        }
        let d = assert_same_training(&one, &two, ELECTRA, &what);
        eprintln!("{what}: {d:?}");
        let (a, b) = (updates(&one), updates(&two));
        for (x, y) in a.iter().zip(&b).take(5) {
            let rel = |p: f64, q: f64| (p - q).abs() / p.abs();
            assert!(
                rel(x.loss, y.loss) <= SAME.loss && rel(x.grad_norm, y.grad_norm) <= SAME.grad_norm,
                "{what}: update {}: {x:?} vs {y:?}",
                x.step
            );
        }
        let flat = runs.join("electra-flat");
        ok(torchrun(
            2,
            &token_args(
                objective,
                &flat,
                "8",
                &[&steps[..], &["--bucket-mb", "0"]].concat(),
            ),
        ));
        assert_eq!(updates(&flat), b, "electra: buckets vs one flat all-reduce");
    }
    std::fs::remove_dir_all(&runs).unwrap();
}

/// The tensors of a checkpoint's `model.safetensors` (the last checkpoint of `run_dir`).
fn last_checkpoint_weights(run_dir: &Path) -> Vec<(String, tch::Tensor)> {
    let dir = run_dir.join("checkpoints");
    let last = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .max()
        .unwrap_or_else(|| panic!("no checkpoint in {}", dir.display()));
    let mut t = tch::Tensor::read_safetensors(dir.join(last).join("model.safetensors")).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// Elastic restarts: `--resume auto` and one command line for every attempt. Under
/// `torchrun --max-restarts 1`, rank 1 SIGKILLs itself as update 8 starts (the last checkpoint
/// is at 5); the agent restarts the group, which resumes the run folder and finishes with the
/// same weights (bit for bit) and the same losses and gradient norms in metrics.jsonl as an
/// uninterrupted 2-rank run. A relaunch with a different world size (1 process stopped after 6
/// updates, then 2 ranks with `--resume auto`) matches it within `SAME`; a folder holding
/// another run is refused.
#[test]
fn a_killed_rank_is_restarted_by_torchrun_and_the_run_resumes_exactly() {
    let d = fixture();
    let runs = d.join("runs-elastic");
    let steps = ["--max-steps", "12", "--resume", "auto"];
    // Uninterrupted (--resume auto on a new folder starts the run).
    let reference = runs.join("reference");
    let out = ok(torchrun(2, &args(&reference, "8", &steps)));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("holds no run: starting it"), "{log}");

    // Killed once at update 8, restarted by the agent with the same command line.
    let elastic = runs.join("elastic");
    let out = torchrun_with(
        2,
        &["--max-restarts=1"],
        &binary("trainer"),
        &args(&elastic, "8", &steps),
    )
    .env("FAST_ELECTRA_TEST_DIE_AT_UPDATE", "8")
    .output()
    .expect("running torchrun");
    let log = ok(out).stderr;
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("rank 1: SIGKILL at update 8"), "{log}");
    assert!(elastic.join(".test-died-at-update-8").exists());
    assert!(
        log.contains("holds a run: continuing it") && log.contains("at step 5"),
        "{log}"
    );
    assert_eq!(updates(&elastic), updates(&reference));
    assert_eq!(updates(&elastic).len(), 12);
    let (a, b) = (
        last_checkpoint_weights(&reference),
        last_checkpoint_weights(&elastic),
    );
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after the restart");
    }

    // Another run in the folder is refused, --resume auto or not.
    let other = [&steps[..], &["--weight-decay", "0.02"]].concat();
    let e = err(single(&args(&elastic, "16", &other)));
    assert!(e.contains("run.json") && e.contains("weight_decay"), "{e}");

    // A relaunch on another world size: 1 process stops after 6 updates (checkpoint at 5),
    // 2 ranks continue with the same --resume auto.
    let relaunch = runs.join("one-then-two");
    let stop = [&steps[..], &["--debug-stop-after", "6"]].concat();
    ok(single(&args(&relaunch, "16", &stop)));
    ok(torchrun(2, &args(&relaunch, "8", &steps)));
    assert_same(
        &reference,
        &relaunch,
        "--resume auto: 1 process then 2 ranks",
    );
    std::fs::remove_dir_all(&runs).unwrap();
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `trainer` ranks of one group started without any launcher watching them: each with the
/// rank environment set by hand (no torchrun agent, so rank 0 hosts the store), stderr into
/// `dir/rank-R.log`.
fn launch_by_hand(n: usize, a: &[String], dir: &Path) -> Vec<std::process::Child> {
    let port = free_port().to_string();
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|r| {
            Command::new(binary("trainer"))
                .args(a)
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", n.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env_remove("TORCHELASTIC_USE_AGENT_STORE")
                .env_remove("TORCHELASTIC_RESTART_COUNT")
                .env("OMP_WAIT_POLICY", "passive")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("rank-{r}.log"))).unwrap())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// How a rank is lost.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    /// SIGKILL: the process dies, its connections close.
    Killed,
    /// SIGSTOP: the process hangs with its connections open.
    Hung,
}

const DIST_TIMEOUT: u64 = 10;

/// Two ranks started by hand; once rank 0 logged 7 updates (the group is mid-run: each update
/// all-reduces, so the other rank is in its 8th), `lost` is signalled as `how`. The survivor
/// must stop by itself, non-zero, within `--dist-timeout` plus a margin, with the trainer's own
/// message naming the lost rank; the last checkpoint must then resume in one process.
fn a_lost_rank_is_caught_by_the_trainer(lost: usize, how: Loss) {
    let d = fixture();
    let name = format!("runs-lost-{lost}-{how:?}");
    let run_dir = d.join(&name);
    let timeout = DIST_TIMEOUT.to_string();
    let flags = [
        "--max-steps",
        "200",
        "--dist-timeout",
        &timeout,
        "--repeat-last-epoch",
    ];
    let logs = d.join(format!("{name}-logs"));
    let mut ranks = launch_by_hand(2, &args(&run_dir, "8", &flags), &logs);
    let log = |r: usize| std::fs::read_to_string(logs.join(format!("rank-{r}.log"))).unwrap();
    let metrics = run_dir.join("metrics.jsonl");
    let t0 = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
        if lines >= 7 {
            break;
        }
        for (r, c) in ranks.iter_mut().enumerate() {
            if let Some(st) = c.try_wait().unwrap() {
                panic!("rank {r} ended ({st}) before the fault:\n{}", log(r));
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no 7 updates in 120 s:\n{}\n{}",
            log(0),
            log(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signal = match how {
        Loss::Killed => "-KILL",
        Loss::Hung => "-STOP",
    };
    let pid = ranks[lost].id().to_string();
    let at = Instant::now();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
    let survivor = 1 - lost;
    let limit = Duration::from_secs(DIST_TIMEOUT + 20);
    let status = loop {
        if let Some(st) = ranks[survivor].try_wait().unwrap() {
            break st;
        }
        if at.elapsed() > limit {
            for c in &mut ranks {
                let _ = c.kill();
                let _ = c.wait();
            }
            panic!(
                "rank {survivor} still runs {limit:?} after rank {lost} was {how:?}:\n{}",
                log(survivor)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = at.elapsed();
    // The lost rank is still there when hung: end it (SIGKILL reaches a stopped process).
    let _ = ranks[lost].kill();
    let _ = ranks[lost].wait();
    let text = log(survivor);
    eprintln!("rank {lost} {how:?}: rank {survivor} stopped after {took:?} ({status})");
    assert!(!status.success(), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // The trainer's own words: this rank, the operation, and who is lost.
    let named = if lost == 0 {
        // Rank 0 hosted the store: the survivor cannot read any heartbeat, and says why.
        text.contains("is unreachable too: the rank hosting it (rank 0")
            || text.contains("stopped answering")
    } else {
        text.contains("lost rank(s) 1: no heartbeat")
    };
    assert!(
        named && text.contains(&format!("rank {survivor} of 2: ")),
        "the trainer does not name the lost rank:\n{text}"
    );
    if how == Loss::Hung {
        // Nothing closed a connection: the collective's own timeout fired.
        assert!(
            took >= Duration::from_secs(DIST_TIMEOUT - 1),
            "stopped after {took:?}, before the {DIST_TIMEOUT} s timeout:\n{text}"
        );
    }
    // The last checkpoint is complete, and one process resumes from it.
    let ckpts = run_dir.join("checkpoints");
    let last = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .max()
        .expect("a checkpoint");
    let mut again = args(&run_dir, "16", &flags);
    again.extend(["--resume".into(), "--debug-stop-after".into(), "1".into()]);
    let out = ok(single(&again));
    let resumed = String::from_utf8_lossy(&out.stderr);
    let step: u64 = last["step-".len()..].parse().unwrap();
    assert!(
        resumed
            .lines()
            .any(|l| l.starts_with("trainer: resuming") && l.ends_with(&format!(" at step {step}"))),
        "{last}: {resumed}"
    );
}

#[test]
fn a_killed_rank_is_caught_by_the_trainer_not_a_launcher() {
    a_lost_rank_is_caught_by_the_trainer(1, Loss::Killed);
}

#[test]
fn a_hung_rank_is_caught_by_the_trainer_within_the_timeout() {
    a_lost_rank_is_caught_by_the_trainer(1, Loss::Hung);
}

#[test]
fn a_killed_store_host_is_caught_by_the_other_rank() {
    a_lost_rank_is_caught_by_the_trainer(0, Loss::Killed);
}

#[test]
fn bad_launches_are_refused_naming_the_variable_or_flag() {
    let d = fixture();
    let base = args(&d.join("runs-bad/x"), "8", &["--max-steps", "4"]);
    let refs: Vec<&str> = base.iter().map(String::as_str).collect();
    let with_env = |vars: &[(&str, &str)]| -> String {
        let mut c = Command::new(binary("trainer"));
        c.args(&refs);
        for (k, v) in vars {
            c.env(k, v);
        }
        err(c.output().unwrap())
    };
    let e = with_env(&[
        ("RANK", "2"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "1"),
    ]);
    assert!(e.contains("RANK=2") && e.contains("WORLD_SIZE=2"), "{e}");
    let e = with_env(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "0"),
        ("MASTER_PORT", "1"),
    ]);
    assert!(e.contains("MASTER_ADDR is not set"), "{e}");

    // Ranks started with different flags: refused before the first update, naming the field.
    let script = d.join("different-lr.sh");
    let mut cmd = format!("exec {}", s(&binary("trainer")));
    for a in &base {
        match a.as_str() {
            "2e-3" => cmd.push_str(" \"$LR\""),
            _ => cmd.push_str(&format!(" '{a}'")),
        }
    }
    std::fs::write(
        &script,
        format!("#!/bin/sh\nLR=2e-3\nif [ \"$RANK\" = 1 ]; then LR=3e-3; fi\n{cmd}\n"),
    )
    .unwrap();
    let out = torchrun_cmd(2, Path::new("sh"), &[s(&script).to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("different settings: field lr") && e.contains("rank 0 has 0.002"),
        "{e}"
    );
    assert!(
        !d.join("runs-bad/x/metrics.jsonl").exists() || updates(&d.join("runs-bad/x")).is_empty()
    );

    // Different gradient communication (not part of run.json): refused before the run folder
    // is written, naming both.
    let script = d.join("different-grad-comm.sh");
    let mut cmd = format!("exec {}", s(&binary("trainer")));
    for a in &base {
        cmd.push_str(&format!(" '{a}'"));
    }
    cmd.push_str(" --grad-comm \"$GC\"");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nGC=fp32\nif [ \"$RANK\" = 1 ]; then GC=bf16; fi\n{cmd}\n"),
    )
    .unwrap();
    let out = torchrun_cmd(2, Path::new("sh"), &[s(&script).to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("different gradient communication")
            && e.contains("rank 0 has --step autograd --bucket-mb 25 --grad-comm fp32"),
        "{e}"
    );

    // The process group itself: all-reduce, broadcast, barrier across 2 processes.
    let out = ok(torchrun_cmd(
        2,
        &binary("trainer"),
        &["dist-check".into(), "--device".into(), "cpu".into()],
    )
    .output()
    .unwrap());
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("all-reduce, broadcast, barrier ok").count(),
        2,
        "{log}"
    );
}

/// The Parquet shards of an epoch folder, by name.
fn shards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn preprocess_parts_from_the_launcher_equal_explicit_parts() {
    let d = fixture();
    let common = |out: &Path| -> Vec<String> {
        [
            "--epoch",
            "0",
            "--epochs",
            "2",
            "--tokens",
            s(&d.join("tokens")),
            "--aux-model",
            s(&d.join("mlm/export")),
            "--out",
            s(out),
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    // The fixture's epoch 0 was made by one process (--part 0/1).
    let reference = shards(&d.join("data/epoch-000"));
    assert!(reference.len() >= 3, "{} shards", reference.len());
    // torchrun: the part from RANK/WORLD_SIZE.
    let by_torchrun = d.join("parts-torchrun");
    let out = ok(
        torchrun_cmd(2, &binary("preprocess"), &common(&by_torchrun))
            .output()
            .unwrap(),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("part 1/2 (from RANK/WORLD_SIZE)"), "{log}");
    assert!(by_torchrun.join("epoch-000/manifest.json").exists());
    assert!(shards(&by_torchrun.join("epoch-000")) == reference);
    // A Slurm job array of 2 tasks numbered from 1, run one after the other.
    let by_slurm = d.join("parts-slurm");
    for task in ["1", "2"] {
        let a = common(&by_slurm);
        let out = ok(Command::new(binary("preprocess"))
            .args(&a)
            .env("SLURM_ARRAY_TASK_ID", task)
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("OMP_WAIT_POLICY", "passive")
            .output()
            .unwrap());
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"));
    }
    assert!(shards(&by_slurm.join("epoch-000")) == reference);
    // An inconsistent environment is refused naming the variable.
    let e = err(Command::new(binary("preprocess"))
        .args(common(&d.join("parts-bad")))
        .env("RANK", "3")
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap());
    assert!(e.contains("RANK=3, WORLD_SIZE=2"), "{e}");
}
