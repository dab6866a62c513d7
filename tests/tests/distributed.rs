//! Data-parallel training end to end: the real `trainer` started by the real
//! `torchrun` (`python3 -m torch.distributed.run --standalone --no-python ...`), 2 ranks on the
//! CPU with Gloo, a tiny model with dropout off, on a slice of the shared corpus. The fixture
//! (built once per test binary) follows tests/tests/trainer.rs: tokenize 20 SOTU speeches, a
//! short MLM run as the auxiliary model, two corrupted epochs. Needs `cargo build --release
//! --bins` first.
use e2e_tests::{bert_tokenizer, binary, expect_err as err, expect_ok as ok, run, shared_data};
use serde_json::Value;
use std::io::{BufRead, BufReader};
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
    let mut c = Command::new("python3");
    c.args(["-m", "torch.distributed.run", "--standalone"])
        .arg(format!("--nproc-per-node={n}"))
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

fn losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["split"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn assert_close(a: &[(u64, f64)], b: &[(u64, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} vs {b:?}");
    for ((sa, la), (sb, lb)) in a.iter().zip(b) {
        assert_eq!(sa, sb, "{what}");
        let rel = (la - lb).abs() / la.abs().max(1e-12);
        assert!(
            rel <= 1e-5,
            "{what}: step {sa}: loss {la} vs {lb} (relative {rel:e})"
        );
    }
}

#[test]
fn two_ranks_equal_one_process_and_resume_across_world_sizes() {
    let d = fixture();
    let runs = d.join("runs-equal");
    let steps = ["--max-steps", "20"];
    // One process on global batches of 16; two ranks of 8.
    let one = runs.join("one");
    ok(single(&args(&one, "16", &steps)));
    let two = runs.join("two");
    let out = ok(torchrun(2, &args(&two, "8", &steps)));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("rank 1 of 2 (pid") && log.contains("Gloo"),
        "{log}"
    );
    let reference = losses(&one);
    assert_eq!(reference.len(), 20);
    assert_close(&losses(&two), &reference, "2 ranks x 8 vs 1 x 16");
    // run.json records the global batch.
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("run.json")).unwrap()).unwrap();
    assert_eq!(cfg["batch_size"], 16);

    // Stopped by 2 ranks after 8 updates (last checkpoint at 5), resumed by one process.
    let stop = ["--max-steps", "20", "--debug-stop-after", "8"];
    let resume = ["--max-steps", "20", "--resume"];
    let a = runs.join("two-then-one");
    ok(torchrun(2, &args(&a, "8", &stop)));
    ok(single(&args(&a, "16", &resume)));
    assert_close(&losses(&a), &reference, "2 ranks then 1 process");
    // And the reverse.
    let b = runs.join("one-then-two");
    ok(single(&args(&b, "16", &stop)));
    ok(torchrun(2, &args(&b, "8", &resume)));
    assert_close(&losses(&b), &reference, "1 process then 2 ranks");
    // Rank 0 alone wrote the outputs: one metrics line per update, one export.
    assert!(two.join("export/model.safetensors").exists());
}

#[test]
fn a_lost_rank_stops_the_other_within_the_timeout() {
    let d = fixture();
    let run_dir = d.join("runs-kill");
    let a = args(
        &run_dir,
        "8",
        &[
            "--max-steps",
            "150",
            "--dist-timeout",
            "30",
            "--repeat-last-epoch",
        ],
    );
    let mut child = torchrun_cmd(2, &binary("trainer"), &a)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let t0 = Instant::now();
    let mut log = String::new();
    let mut pid: Option<String> = None;
    // Wait for rank 1's pid and a few updates (metric lines written by rank 0).
    while t0.elapsed() < Duration::from_secs(120) {
        while let Ok(line) = rx.try_recv() {
            if let Some(rest) = line.split("rank 1 of 2 (pid ").nth(1) {
                pid = rest.split(',').next().map(str::to_string);
            }
            log.push_str(&line);
            log.push('\n');
        }
        let lines = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if pid.is_some() && lines >= 7 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = pid.unwrap_or_else(|| panic!("rank 1 never started:\n{log}"));
    let killed = Instant::now();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if killed.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("torchrun still runs 90 s after rank 1 was killed:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    log.extend(rx.try_iter().map(|l| l + "\n"));
    assert!(!status.success(), "{log}");
    assert!(
        killed.elapsed() < Duration::from_secs(45),
        "{:?}",
        killed.elapsed()
    );
    // torchrun's report or rank 0's own error names the lost rank.
    assert!(
        log.contains("lost rank(s) 1") || log.contains("rank      : 1"),
        "the lost rank is not named:\n{log}"
    );
    // The last checkpoint is complete, and a single process resumes from it.
    let ckpts = run_dir.join("checkpoints");
    let last = std::fs::read_dir(&ckpts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .max()
        .expect("a checkpoint");
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        assert!(ckpts.join(&last).join(f).exists(), "{last}/{f}");
    }
    let mut again = args(
        &run_dir,
        "16",
        &[
            "--max-steps",
            "150",
            "--dist-timeout",
            "30",
            "--repeat-last-epoch",
        ],
    );
    again.extend([
        "--resume".to_string(),
        "--debug-stop-after".into(),
        "1".into(),
    ]);
    let out = ok(single(&again));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));
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
        !d.join("runs-bad/x/metrics.jsonl").exists() || losses(&d.join("runs-bad/x")).is_empty()
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
