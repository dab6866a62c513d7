//! A full disk, for every writer: `preprocess tokenize`, `preprocess --epoch E`, and the
//! trainer's checkpoints, export and metrics file. Each writes onto a small tmpfs
//! (`support::disk`: a mount namespace, or a plain mount as root; the test **fails** where this
//! machine allows neither), must fail cleanly (exit status 1, the file and "No space left on
//! device" named, no panic, nothing half-written visible: no manifest, no checkpoint or export
//! folder without all its files, only whole metrics lines), and the re-run with room must finish
//! as if nothing happened (byte-identical shards, the same export as an uninterrupted run).
//!
//! Data: the suite's cached fixtures (`moby_tokens`, `demo_data`) and 6 State of the Union
//! addresses; tiny models. Needs `cargo build --release --bins` first.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2e_tests::support::binaries::binary;
use e2e_tests::support::corpus::write_sotu;
use e2e_tests::support::data::s;
use e2e_tests::support::disk::with_small_disk;
use e2e_tests::support::equivalence::updates;
use e2e_tests::support::files::tree;
use e2e_tests::support::fixtures::{demo_data, moby_tokens};
use e2e_tests::{bert_tokenizer, expect_ok as ok, run};

/// `BIN ARGS` as one shell word list (every word quoted).
fn shell(bin: &str, args: &[String]) -> String {
    let mut line = format!("'{}'", s(&binary(bin)));
    for a in args {
        assert!(!a.contains('\''), "{a}");
        line.push_str(&format!(" '{a}'"));
    }
    line
}

/// What a script left in `tmp`: `NAME` (a file's text, empty when absent).
fn read(tmp: &Path, name: &str) -> String {
    std::fs::read_to_string(tmp.join(name)).unwrap_or_default()
}

/// The failing run's report: its exit status 1 and an error naming `file` and the full disk.
fn assert_failed_cleanly(tmp: &Path, file: &str) -> String {
    let log = read(tmp, "full.log");
    assert_eq!(read(tmp, "full.rc").trim(), "1", "{log}");
    assert!(
        log.contains("No space left on device") && log.contains(file) && !log.contains("panicked"),
        "expected an error naming {file} and the full disk:\n{log}"
    );
    log
}

/// The bytes a folder takes on a tmpfs (whole 4 KiB pages), recursively.
fn pages(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        total += if p.is_dir() {
            pages(&p)
        } else {
            std::fs::metadata(&p).unwrap().len().div_ceil(4096) * 4096
        };
    }
    total
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `preprocess tokenize` of the first 6 State of the Union addresses (shards of 50 rows).
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

#[test]
fn tokenize_on_a_full_disk_fails_cleanly_and_the_rerun_with_room_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let jsonl = write_sotu(t, 6);
    let reference = t.join("reference");
    ok(run("preprocess", &strs(&tokenize_args(&jsonl, &reference))));
    let mnt = t.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = mnt.join("tokens");
    let cmd = shell("preprocess", &tokenize_args(&jsonl, &out));
    // 32 KiB: smaller than the shards. Then room, the re-run, a copy out of the namespace.
    let st = with_small_disk(
        &mnt,
        "32k",
        &[],
        &format!(
            "{cmd} 2> {t}/full.log; echo $? > {t}/full.rc; ls -a {out} > {t}/full.ls; \
             mount -o remount,size=16m {mnt} || exit 91; \
             {cmd} 2> {t}/room.log || exit 92; cp -r {out} {t}/copy",
            t = s(t),
            out = s(&out),
            mnt = s(&mnt),
        ),
    );
    assert!(st.success(), "{st}: {}", read(t, "room.log"));
    assert_failed_cleanly(t, s(&out));
    assert!(
        !read(t, "full.ls").contains("manifest.json"),
        "{}",
        read(t, "full.ls")
    );
    assert_eq!(tree(&t.join("copy")), tree(&reference));
}

/// `preprocess --epoch 1` of the Moby-Dick fixture into `out`.
fn epoch_args(out: &Path) -> Vec<String> {
    let f = moby_tokens();
    [
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
    .to_vec()
}

/// Every file of an epoch folder; the manifest without the writer's own throughput.
fn epoch_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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
fn an_epoch_on_a_full_disk_fails_cleanly_and_the_rerun_with_room_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let reference = t.join("reference");
    ok(run("preprocess", &strs(&epoch_args(&reference))));
    let shard = std::fs::metadata(reference.join("epoch-001/part-00000.parquet"))
        .unwrap()
        .len();
    let mnt = t.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = mnt.join("data");
    let cmd = shell("preprocess", &epoch_args(&out));
    // Room for the lock file and about one shard of four.
    let size = format!("{}k", 8 + shard.div_ceil(1024) * 3 / 2);
    let st = with_small_disk(
        &mnt,
        &size,
        &[],
        &format!(
            "{cmd} 2> {t}/full.log; echo $? > {t}/full.rc; ls -a {out}/epoch-001 > {t}/full.ls; \
             mount -o remount,size=16m {mnt} || exit 91; \
             {cmd} 2> {t}/room.log || exit 92; cp -r {out}/epoch-001 {t}/copy",
            t = s(t),
            out = s(&out),
            mnt = s(&mnt),
        ),
    );
    assert!(st.success(), "{st}: {}", read(t, "room.log"));
    assert_failed_cleanly(t, s(&out.join("epoch-001")));
    let listing = read(t, "full.ls");
    assert!(!listing.contains("manifest.json"), "{listing}");
    assert!(
        listing.lines().all(|n| !n.ends_with(".tmp")),
        "a partial shard left behind: {listing}"
    );
    assert!(
        read(t, "room.log").contains("makes"),
        "{}",
        read(t, "room.log")
    );
    assert!(
        epoch_tree(&t.join("copy")) == epoch_tree(&reference.join("epoch-001")),
        "not byte-identical to the epoch made with room"
    );
}

/// `trainer` RTD, tiny, on the demo fixture's epoch 0 into `run_dir`: 6 updates, a checkpoint
/// every 3, a metrics line every update.
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
        "--lr",
        "2e-3",
        "--warmup-steps",
        "2",
        "--log-every",
        "1",
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

const SIX: [&str; 4] = ["--max-steps", "6", "--checkpoint-every", "3"];

/// One uninterrupted run of [`SIX`], made once per test binary.
fn reference_run() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("reference");
        ok(run("trainer", &strs(&train_args(&dir, &SIX))));
        dir
    })
}

/// Runs [`SIX`] into `MNT/run` on a tmpfs of `size`, expecting a failure, then again with room
/// and `--resume`; copies the run folder out to `TMP/copy` and the checkpoint folders' listing
/// after the failure to `TMP/full.ls`.
fn train_on_a_small_disk(t: &Path, size: &str) -> PathBuf {
    let mnt = t.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let run_dir = mnt.join("run");
    let first = shell("trainer", &train_args(&run_dir, &SIX));
    let resume = shell(
        "trainer",
        &train_args(&run_dir, &[&SIX[..], &["--resume"]].concat()),
    );
    let st = with_small_disk(
        &mnt,
        size,
        &[("OMP_WAIT_POLICY", "passive")],
        &format!(
            "{first} 2> {t}/full.log; echo $? > {t}/full.rc; \
             (cd {run} && find . | sort) > {t}/full.ls; cp {run}/metrics.jsonl {t}/full.metrics; \
             mount -o remount,size=128m {mnt} || exit 91; \
             {resume} 2> {t}/room.log || exit 92; cp -r {run} {t}/copy",
            t = s(t),
            run = s(&run_dir),
            mnt = s(&mnt),
        ),
    );
    assert!(st.success(), "{st}: {}", read(t, "room.log"));
    t.join("copy")
}

/// The resumed run equals the uninterrupted one: every update's loss and gradient norm, and the
/// exported weights byte for byte.
fn assert_same_as_reference(copy: &Path) {
    let reference = reference_run();
    assert_eq!(updates(copy), updates(reference));
    assert!(
        std::fs::read(copy.join("export/model.safetensors")).unwrap()
            == std::fs::read(reference.join("export/model.safetensors")).unwrap(),
        "the export differs from the uninterrupted run's"
    );
}

#[test]
fn a_checkpoint_on_a_full_disk_fails_cleanly_and_the_resume_finishes() {
    let reference = reference_run();
    let checkpoint = pages(&reference.join("checkpoints/step-0000003"));
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Room for the first checkpoint and half of the second.
    let size = format!("{}k", (checkpoint * 3 / 2).div_ceil(1024) + 256);
    let copy = train_on_a_small_disk(t, &size);
    let log = assert_failed_cleanly(t, "checkpoints/.step-0000006");
    let listing = read(t, "full.ls");
    assert!(
        listing.contains("./checkpoints/step-0000003/state.json")
            && !listing.contains("step-0000006")
            && !listing.contains("./export"),
        "{log}\n{listing}"
    );
    assert!(
        read(t, "room.log").contains("resuming") && read(t, "room.log").contains("at step 3"),
        "{}",
        read(t, "room.log")
    );
    assert_same_as_reference(&copy);
}

#[test]
fn an_export_on_a_full_disk_fails_cleanly_and_the_resume_finishes() {
    let reference = reference_run();
    let checkpoint = pages(&reference.join("checkpoints/step-0000003"));
    let export = pages(&reference.join("export"));
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Room for both checkpoints and half of the export.
    let size = format!("{}k", (2 * checkpoint + export / 2).div_ceil(1024) + 256);
    let copy = train_on_a_small_disk(t, &size);
    let log = assert_failed_cleanly(t, "export/");
    let listing = read(t, "full.ls");
    assert!(
        listing.contains("./checkpoints/step-0000006/state.json")
            && !listing.contains("./export/model.safetensors")
            && !listing.contains("./export/config.json")
            && !listing.contains(".tmp"),
        "{log}\n{listing}"
    );
    assert!(
        read(t, "room.log").contains("at step 6"),
        "{}",
        read(t, "room.log")
    );
    assert_same_as_reference(&copy);
}

#[test]
fn metrics_on_a_full_disk_fail_cleanly_keeping_whole_lines_and_the_resume_finishes() {
    // A run with no checkpoint before its end; once its first metrics line is there, the disk
    // is filled: a later line needs a new page of the file and finds none.
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mnt = t.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let run_dir = mnt.join("run");
    let steps = ["--max-steps", "60", "--checkpoint-every", "1000"];
    let first = shell("trainer", &train_args(&run_dir, &steps));
    let resume = shell(
        "trainer",
        &train_args(&run_dir, &[&steps[..], &["--resume"]].concat()),
    );
    let metrics = run_dir.join("metrics.jsonl");
    let st = with_small_disk(
        &mnt,
        "1m",
        &[("OMP_WAIT_POLICY", "passive")],
        &format!(
            "{first} 2> {t}/full.log & pid=$!; \
             while ! grep -qs step {metrics}; do sleep 0.02; done; \
             dd if=/dev/zero of={mnt}/filler bs=4k 2>/dev/null; \
             wait $pid; echo $? > {t}/full.rc; cp {metrics} {t}/full.metrics; \
             (cd {run} && find . | sort) > {t}/full.ls; \
             rm {mnt}/filler; mount -o remount,size=128m {mnt} || exit 91; \
             {resume} 2> {t}/room.log || exit 92; cp -r {run} {t}/copy",
            t = s(t),
            run = s(&run_dir),
            mnt = s(&mnt),
            metrics = s(&metrics),
        ),
    );
    assert!(st.success(), "{st}: {}", read(t, "room.log"));
    assert_failed_cleanly(t, "metrics.jsonl");
    // Only whole lines: the line that did not fit was taken back.
    let kept = read(t, "full.metrics");
    assert!(kept.ends_with('\n'), "{kept}");
    let lines: Vec<serde_json::Value> = kept
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn line {l:?}: {e}")))
        .collect();
    assert!(
        lines.len() >= 2 && lines.len() < 60,
        "{} lines before the disk filled",
        lines.len()
    );
    let listing = read(t, "full.ls");
    assert!(
        !listing.contains("checkpoints/step-") && !listing.contains("./export"),
        "{listing}"
    );
    // The resume (no checkpoint yet: from the start) writes every update once, in order.
    let copy = t.join("copy");
    let steps: Vec<u64> = updates(&copy).iter().map(|u| u.step).collect();
    assert_eq!(steps, (1..=60).collect::<Vec<u64>>());
    assert!(copy.join("export/model.safetensors").exists());
}
