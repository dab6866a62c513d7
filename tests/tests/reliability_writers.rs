//! "Nothing silent, nothing torn": the writers of output folders under faults.
//! - One writer per folder: a second `preprocess tokenize`, `preprocess --epoch` or `trainer`
//!   on a folder in use is refused at once, naming the folder and the first one's process id
//!   and host; a lock left by a killed process does not block; `--part` runs of one epoch run
//!   side by side.
//! - A re-run of a complete folder whose listed shard was deleted or truncated makes it again,
//!   byte-identical to the intact folder, and says so.
//! - Killed with SIGKILL at a random moment of the run, provably before its end (as a random shard
//!   or metrics line appears, with more to come), a tokenize run, an epoch and a training run finish
//!   byte-identical (also `tokenize.rs`, `interrupted_run_leaves_no_manifest_and_a_rerun_finishes`,
//!   and `corrupt.rs`, `killed_mid_epoch_resumes_to_the_same_shards`).
//! - The trainer never checkpoints or exports non-finite weights, and refuses float flags
//!   outside fp32's range; a run folder holding only a stale temporary `run.json` can be
//!   started and resumed.
//! - A full disk: `full_disk.rs`.
//!
//! Data: small slices of the shared corpus, the suite's cached fixtures (`moby_tokens`,
//! `demo_data`), tiny models. Needs `cargo build --release --bins` first.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::support::binaries::binary;
use e2e_tests::support::corpus::write_sotu;
use e2e_tests::support::data::s;
use e2e_tests::support::files::{copy_dir, parquet_files, tree};
use e2e_tests::support::fixtures::{demo_data, moby_tokens};
use e2e_tests::support::runs::metrics;
use e2e_tests::{bert_tokenizer, expect_err as err, expect_ok as ok, run, stderr};
use shared::files::lock::{host_name, FolderLock, FOLDER_LOCK};

/// `preprocess ARGS`, timed.
fn timed(bin: &str, args: &[&str]) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let o = run(bin, args);
    (o, t.elapsed())
}

/// Starts binary `bin` with `args` in the background (stderr kept in `log`).
fn spawn(bin: &str, args: &[&str], log: &Path) -> Child {
    Command::new(binary(bin))
        .args(args)
        .env("OMP_WAIT_POLICY", "passive")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Asserts that a refusal names the folder, the holder's pid and this host, and came at once.
fn assert_refused(msg: &str, took: Duration, dir: &Path, pid: u32) {
    assert!(
        msg.contains(s(dir))
            && msg.contains("in use by another writer")
            && msg.contains(&format!("pid {pid} "))
            && msg.contains(&format!("host {}", host_name())),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
    assert!(took < Duration::from_secs(60), "refused after {took:?}");
}

/// A pseudo-random number in 0..n from the clock (the moment of a kill).
fn random_below(n: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (t.subsec_nanos() as u64 ^ t.as_secs().wrapping_mul(0x9e37_79b9)) % n
}

/// Waits (at most a minute) until `file` holds `text`, or `child` ended.
fn wait_for(file: &Path, text: &str, child: &mut Child) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if std::fs::read_to_string(file).is_ok_and(|s| s.contains(text)) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// `preprocess tokenize` of the first 6 State of the Union addresses into `out` (shards of 50
/// rows at length 128: several shards).
fn tokenize_args(jsonl: &Path, out: &Path) -> Vec<String> {
    let tok = bert_tokenizer();
    [
        "tokenize",
        "--input",
        s(jsonl),
        "--tokenizer",
        s(&tok),
        "--out",
        s(out),
        "--max-seq-len",
        "128",
        "--rows-per-shard",
        "50",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tokenize_one_writer_and_reruns_repair_damaged_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = write_sotu(tmp.path(), 6);
    let reference = tmp.path().join("reference");
    ok(run("preprocess", &strs(&tokenize_args(&jsonl, &reference))));
    let expected = tree(&reference);
    assert!(
        !reference.join(FOLDER_LOCK).exists(),
        "a clean run leaves no lock file"
    );

    // A second writer (this test process holds the folder) is refused at once.
    let out = tmp.path().join("tokens");
    let held = FolderLock::folder(&out, "the test's first writer").unwrap();
    let (o, took) = timed("preprocess", &strs(&tokenize_args(&jsonl, &out)));
    assert_refused(&err(o), took, &out, std::process::id());
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "only the lock file"
    );
    drop(held);

    // A lock file left by a dead process does not block.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(FOLDER_LOCK), "pid=999999\nhost=gone\n").unwrap();
    ok(run("preprocess", &strs(&tokenize_args(&jsonl, &out))));
    assert_eq!(tree(&out), expected);

    // A listed shard deleted, another truncated: the re-run says so and makes them again.
    let shards: Vec<_> = expected
        .keys()
        .filter(|p| p.to_string_lossy().starts_with("part-"))
        .collect();
    assert!(shards.len() >= 3, "{shards:?}");
    std::fs::remove_file(out.join("part-00001.parquet")).unwrap();
    let p0 = out.join("part-00000.parquet");
    let bytes = std::fs::read(&p0).unwrap();
    std::fs::write(&p0, &bytes[..bytes.len() / 2]).unwrap();
    let again = stderr(&ok(run("preprocess", &strs(&tokenize_args(&jsonl, &out)))));
    assert!(
        again.contains("part-00001.parquet: listed")
            && again.contains("missing")
            && again.contains(&format!(
                "part-00000.parquet: expected {} bytes (as listed), found {}",
                bytes.len(),
                bytes.len() / 2
            ))
            && again.contains("making the dataset again")
            && !again.contains("nothing to do"),
        "{again}"
    );
    assert_eq!(tree(&out), expected, "byte-identical to the intact run");
    let noop = stderr(&ok(run("preprocess", &strs(&tokenize_args(&jsonl, &out)))));
    assert!(noop.contains("nothing to do"), "{noop}");

    // SIGKILL provably mid-run: as a random one of its first shards appears, with more to come,
    // so the manifest (written last) is absent; the re-run finishes it byte-identical (the dead
    // run's lock does not block). 20 addresses: a run long enough to be caught mid-way.
    let big_dir = tmp.path().join("big");
    std::fs::create_dir(&big_dir).unwrap();
    let big = write_sotu(&big_dir, 20);
    let big_reference = tmp.path().join("big-reference");
    ok(run(
        "preprocess",
        &strs(&tokenize_args(&big, &big_reference)),
    ));
    let shards = parquet_files(&big_reference).len();
    assert!(shards >= 8, "{shards} shards");
    let killed = tmp.path().join("killed");
    let mut child = spawn(
        "preprocess",
        &strs(&tokenize_args(&big, &killed)),
        &tmp.path().join("killed.log"),
    );
    let k = random_below(shards as u64 / 2);
    let shard = killed.join(format!("part-{k:05}.parquet"));
    while !shard.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tokenize ended before its shard {k} appeared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    eprintln!("tokenize: killed as shard {k} of {shards} appeared ({status})");
    assert!(!status.success(), "the run ended before the kill");
    assert!(
        !killed.join("manifest.json").exists(),
        "the kill landed after the run's end"
    );
    ok(run("preprocess", &strs(&tokenize_args(&big, &killed))));
    assert_eq!(
        tree(&killed),
        tree(&big_reference),
        "not byte-identical after the kill"
    );

    // `preprocess term-frequency` writes into the token folder: the same lock.
    let held = FolderLock::folder(&out, "the test's writer").unwrap();
    let (o, took) = timed("preprocess", &["term-frequency", "--tokens", s(&out)]);
    assert_refused(&err(o), took, &out, std::process::id());
    drop(held);
}

/// `preprocess --epoch 1` of the Moby-Dick fixture into `out`, CPU, one thread.
fn epoch_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let f = moby_tokens();
    let mut a: Vec<String> = [
        "--epoch",
        "1",
        "--out",
        s(out),
        "--tokens",
        s(&f.tokens()),
        "--aux-model",
        s(&f.aux()),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--batch-size",
        "16",
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

/// Every file of an epoch folder, the manifest without the writer's own throughput
/// (`report.sequences_per_second`, the one field that is not a function of the shards).
fn epoch_tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut t = tree(dir);
    let m = t.get_mut(Path::new("manifest.json")).expect("a manifest");
    let mut v: serde_json::Value = serde_json::from_slice(m).unwrap();
    v["report"]
        .as_object_mut()
        .unwrap()
        .remove("sequences_per_second");
    *m = serde_json::to_vec(&v).unwrap();
    t
}

#[test]
fn epoch_one_writer_parts_side_by_side_repairs_and_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    ok(run("preprocess", &strs(&epoch_args(&reference, &[]))));
    let expected = epoch_tree(&reference.join("epoch-001"));

    // A second writer of the epoch folder is refused at once; so is a second run of one part.
    let out = tmp.path().join("held");
    let dir = out.join("epoch-001");
    let held = FolderLock::folder(&dir, "the test's first writer").unwrap();
    let (o, took) = timed("preprocess", &strs(&epoch_args(&out, &[])));
    assert_refused(&err(o), took, &dir, std::process::id());
    let (o, took) = timed("preprocess", &strs(&epoch_args(&out, &["--part", "1/2"])));
    assert_refused(&err(o), took, &dir, std::process::id());
    drop(held);
    let held = FolderLock::acquire(
        &dir,
        ".lock-part-1-of-2",
        shared::files::lock::Mode::Exclusive,
        "the test's part 1/2",
    )
    .unwrap();
    let (o, took) = timed("preprocess", &strs(&epoch_args(&out, &["--part", "1/2"])));
    let msg = err(o);
    assert_refused(&msg, took, &dir, std::process::id());
    assert!(msg.contains(".lock-part-1-of-2"), "{msg}");
    drop(held);

    // The two parts at the same time, into one folder: both run, the epoch is the reference.
    let parts = tmp.path().join("parts");
    let mut a = spawn(
        "preprocess",
        &strs(&epoch_args(&parts, &["--part", "0/2"])),
        &tmp.path().join("p0.log"),
    );
    let mut b = spawn(
        "preprocess",
        &strs(&epoch_args(&parts, &["--part", "1/2"])),
        &tmp.path().join("p1.log"),
    );
    let (sa, sb) = (a.wait().unwrap(), b.wait().unwrap());
    let logs = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap();
    assert!(
        sa.success() && sb.success(),
        "{}\n{}",
        logs("p0.log"),
        logs("p1.log")
    );
    assert!(
        epoch_tree(&parts.join("epoch-001")) == expected,
        "parts differ"
    );

    // Listed shards deleted and truncated: the re-run says so, makes them again, identical.
    let damaged = tmp.path().join("damaged");
    copy_dir(&reference.join("epoch-001"), &damaged.join("epoch-001"));
    let d = damaged.join("epoch-001");
    std::fs::remove_file(d.join("part-00002.parquet")).unwrap();
    let bytes = std::fs::read(d.join("part-00000.parquet")).unwrap();
    std::fs::write(d.join("part-00000.parquet"), &bytes[..100]).unwrap();
    let again = stderr(&ok(run("preprocess", &strs(&epoch_args(&damaged, &[])))));
    assert!(
        again.contains("part-00002.parquet: listed")
            && again.contains("part-00000.parquet: expected")
            && again.contains("making it again")
            && again.contains("makes 2 of them")
            && !again.contains("already complete"),
        "{again}"
    );
    assert!(
        epoch_tree(&d) == expected,
        "not byte-identical to the intact epoch"
    );

    // SIGKILL provably mid-run: after its lock is taken, at a random one of three moments
    // (before any shard, as shard 0 or shard 1 of 4 appears), with shards still to come, so the
    // manifest is absent; the re-run finishes it (the dead run's lock does not block),
    // byte-identical.
    let killed = tmp.path().join("killed");
    let log = tmp.path().join("killed.log");
    let mut child = spawn("preprocess", &strs(&epoch_args(&killed, &[])), &log);
    let kdir = killed.join("epoch-001");
    let pid = child.id();
    assert!(
        wait_for(&kdir.join(FOLDER_LOCK), &format!("pid={pid}"), &mut child),
        "the epoch never took its lock: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let moment = random_below(3);
    if moment > 0 {
        let shard = kdir.join(format!("part-{:05}.parquet", moment - 1));
        while !shard.exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the epoch ended before {} appeared",
                shard.display()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    eprintln!("epoch: killed at moment {moment} (0: after its lock, k: as shard k - 1 appeared) ({status})");
    assert!(!status.success(), "the run ended before the kill");
    assert!(
        !kdir.join("manifest.json").exists(),
        "the kill landed after the run's end"
    );
    assert!(
        kdir.join(FOLDER_LOCK).exists(),
        "the killed run's lock file is left"
    );
    ok(run("preprocess", &strs(&epoch_args(&killed, &[]))));
    assert!(
        epoch_tree(&kdir) == expected,
        "not byte-identical after the kill"
    );
}

/// `trainer` RTD, tiny, on the demo fixture's epoch 0 into `run_dir`.
fn train_args(run_dir: &Path, extra: &[&str]) -> Vec<String> {
    let d = demo_data();
    let mut a: Vec<String> = [
        "--shards",
        s(&d.epoch(0)),
        "--run-dir",
        s(run_dir),
        "--model",
        "tiny",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--log-every",
        "1",
    ]
    .map(String::from)
    .to_vec();
    for (flag, value) in [("--lr", "2e-3"), ("--warmup-steps", "2")] {
        if !extra.contains(&flag) {
            a.extend([flag.to_string(), value.to_string()]);
        }
    }
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

#[test]
fn trainer_one_writer_and_sigkill_then_resume_is_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let steps = ["--max-steps", "24", "--checkpoint-every", "3"];
    let reference = tmp.path().join("reference");
    ok(run("trainer", &strs(&train_args(&reference, &steps))));
    assert!(
        !reference.join(FOLDER_LOCK).exists(),
        "a clean run leaves no lock file"
    );

    // A long first run; a second writer on its folder while it runs is refused at once.
    let long = tmp.path().join("long");
    let long_steps = [
        "--max-steps",
        "5000",
        "--repeat-last-epoch",
        "--checkpoint-every",
        "50",
    ];
    let mut first = spawn(
        "trainer",
        &strs(&train_args(&long, &long_steps)),
        &tmp.path().join("long.log"),
    );
    let pid = first.id();
    assert!(
        wait_for(&long.join(FOLDER_LOCK), &format!("pid={pid}"), &mut first),
        "the first run never held its folder: {}",
        std::fs::read_to_string(tmp.path().join("long.log")).unwrap()
    );
    let mut resume_args = train_args(&long, &long_steps);
    resume_args.push("--resume".into());
    let (o, took) = timed("trainer", &strs(&resume_args));
    assert_refused(&err(o), took, &long, pid);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run was still running"
    );
    let _ = first.kill();
    first.wait().unwrap();
    // Its lock file is left, and does not block: the resume starts (and stops after 1 update).
    assert!(long.join(FOLDER_LOCK).exists());
    resume_args.extend(["--debug-stop-after".into(), "1".into()]);
    ok(run("trainer", &strs(&resume_args)));

    // SIGKILL at a random moment of the training (as soon as a random one of the 24 metrics
    // lines appears: mid-update, mid-checkpoint or mid-line), then --resume: the same export,
    // bit for bit, and the same losses.
    let killed = tmp.path().join("killed");
    let log = tmp.path().join("killed.log");
    let mut child = spawn("trainer", &strs(&train_args(&killed, &steps)), &log);
    let line = 1 + random_below(20) as usize;
    let metrics_file = killed.join("metrics.jsonl");
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(60) {
        let lines = std::fs::read_to_string(&metrics_file).map_or(0, |s| s.lines().count());
        if lines >= line {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    eprintln!("trainer: killed at metrics line {line} of 24 ({status})");
    assert!(!status.success(), "the run ended before the kill");
    let mut again = train_args(&killed, &steps);
    again.push("--resume".into());
    ok(run("trainer", &strs(&again)));
    let model = |d: &Path| std::fs::read(d.join("export/model.safetensors")).unwrap();
    assert!(
        model(&reference) == model(&killed),
        "the export differs after the kill"
    );
    let losses = |d: &Path| -> Vec<(u64, String)> {
        metrics(d, "train")
            .iter()
            .map(|v| (v["step"].as_u64().unwrap(), v["loss"].to_string()))
            .collect()
    };
    assert_eq!(losses(&reference), losses(&killed));
}

#[test]
fn trainer_never_saves_non_finite_weights_and_refuses_fp32_overflowing_flags() {
    let tmp = tempfile::tempdir().unwrap();
    // Finite in f64, not in fp32: refused before anything is written.
    for (flag, v) in [
        ("--lr", "1e39"),
        ("--weight-decay", "1e40"),
        ("--clip-norm", "5e38"),
        ("--lr", "1e-45"),
    ] {
        let dir = tmp
            .path()
            .join(format!("flag{}", flag.trim_start_matches('-')));
        let e = err(run(
            "trainer",
            &strs(&train_args(&dir, &[flag, v, "--max-steps", "2"])),
        ));
        assert!(
            e.contains(flag) && e.contains("fp32") && e.contains("found"),
            "{e}"
        );
        assert!(!dir.exists(), "{flag} {v}: the run folder was created");
    }
    // In fp32's range, but the first update overflows the weights (lr / (1 - beta1) does): the
    // loss and gradient norm of that update are finite; the checkpoint of step 1 is refused.
    let dir = tmp.path().join("overflow");
    let e = err(run(
        "trainer",
        &strs(&train_args(
            &dir,
            &[
                "--lr",
                "1e38",
                "--warmup-steps",
                "0",
                "--max-steps",
                "3",
                "--checkpoint-every",
                "1",
            ],
        )),
    ));
    assert!(
        e.contains("non-finite weights after step 1")
            && e.contains("without writing checkpoint step-0000001")
            && e.contains("none (no checkpoint was written yet)"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    let ck = dir.join("checkpoints");
    let written: Vec<_> = std::fs::read_dir(&ck)
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
    assert!(!dir.join("export").exists());
    // Without a checkpoint before the end, the export is refused the same way.
    let dir = tmp.path().join("overflow-export");
    let e = err(run(
        "trainer",
        &strs(&train_args(
            &dir,
            &[
                "--lr",
                "1e38",
                "--warmup-steps",
                "0",
                "--max-steps",
                "1",
                "--checkpoint-every",
                "100",
            ],
        )),
    ));
    assert!(e.contains("non-finite weights after step 1"), "{e}");
    assert!(!dir.join("export").exists() && !dir.join("checkpoints").exists());
}

#[test]
fn a_stale_temporary_run_json_neither_blocks_a_start_nor_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, resume) in [(".run.json.4242.tmp", false), ("run.json.tmp-4242", true)] {
        let dir = tmp.path().join(if resume { "resume" } else { "start" });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), "{\"objective\": ").unwrap();
        let mut a = train_args(&dir, &["--max-steps", "2"]);
        if resume {
            a.push("--resume".into());
        }
        let o = stderr(&ok(run("trainer", &strs(&a))));
        assert!(o.contains("left by an interrupted start"), "{o}");
        assert!(!dir.join(name).exists() && dir.join("run.json").exists());
        assert!(dir.join("export/model.safetensors").exists());
    }
}
