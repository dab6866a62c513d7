//! `preprocess --epoch E`, run for real on a slice of Moby-Dick tokenized by
//! `preprocess tokenize`, with a tiny random auxiliary model (`MaskedLm::new` +
//! `save_pretrained`) whose decoder bias favours the slice's most frequent token, so that the
//! temperature visibly changes how often the original token is sampled back: the suite's cached
//! fixture `support::fixtures::moby_tokens`. Outputs go to this binary's own temporary folder.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use e2e_tests::support::files::{copy_dir, copy_files, parquet_files as shard_files};
use e2e_tests::support::fixtures::{moby_tokens, save_tiny_aux, MobyTokens, SPECIAL};
use e2e_tests::support::shards::token_rows_by_id;
use e2e_tests::{bert_tokenizer, expect_ok as ok, stderr};
use shared::corruption::masking::num_to_mask;
use shared::format::epoch_shards::EpochRows;
use shared::format::manifest::EpochManifest;

struct Fixture {
    /// The suite's cached tokens and auxiliary model (read only).
    data: &'static MobyTokens,
    /// This test binary's own folder for outputs.
    work: PathBuf,
    /// sequence_id -> token row.
    rows: HashMap<u64, Vec<i32>>,
}

/// Runs `preprocess`.
fn run(args: &[&str]) -> Output {
    e2e_tests::run("preprocess", args)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let data = moby_tokens();
        Fixture {
            data,
            work: tempfile::tempdir().unwrap().keep(),
            rows: token_rows_by_id(&data.tokens()),
        }
    })
}

/// `preprocess --epoch E` on the fixture, CPU, one thread (unless `extra` says otherwise: torch's
/// intra-op threads crawl on a busy 2-core machine), into `out`.
fn corrupt(out: &Path, epoch: u32, extra: &[&str]) -> Output {
    let f = fixture();
    let e = epoch.to_string();
    let mut args = vec![
        "--epoch",
        &e,
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let (tokens, aux) = (f.data.tokens(), f.data.aux());
    let defaults = [
        ("--tokens", tokens.to_str().unwrap()),
        ("--aux-model", aux.to_str().unwrap()),
        ("--threads", "1"),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    run(&args)
}

/// Epoch 1 with default settings, made once: the reference the other runs must reproduce.
fn reference() -> &'static Path {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let out = fixture().work.join("reference");
        ok(corrupt(&out, 1, &["--batch-size", "16"]));
        out.join("epoch-001")
    })
}

fn manifest(dir: &Path) -> EpochManifest {
    let mut m: EpochManifest = shared::format::manifest::read_manifest(dir).unwrap();
    m.report.remove("sequences_per_second");
    m.aux_model.path.clear();
    m
}

/// Same file names, same bytes, same manifest (but the throughput).
fn assert_same_epoch(a: &Path, b: &Path) {
    let (fa, fb) = (shard_files(a), shard_files(b));
    assert_eq!(fa.len(), fb.len());
    assert!(fa.len() >= 3, "the fixture should give several shards");
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.file_name(), y.file_name());
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} and {} differ",
            x.display(),
            y.display()
        );
    }
    assert_eq!(manifest(a), manifest(b));
}

fn epoch_rows(dir: &Path) -> Vec<(PathBuf, EpochRows)> {
    shard_files(dir)
        .into_iter()
        .map(|path| {
            let rows = e2e_tests::read_epoch_shard(&path);
            (path, rows)
        })
        .collect()
}

/// Every invariant of data-spec/epoch.md that ties an epoch to its token folder.
fn check_invariants(dir: &Path, mask_rate: f64) {
    let f = fixture();
    let mut seen = 0;
    for (path, rows) in epoch_rows(dir) {
        let ids: Vec<u64> = rows.sequence_ids.clone();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_ne!(ids, sorted, "{}: rows are not shuffled", path.display());
        for i in 0..rows.len() {
            let original = &f.rows[&rows.sequence_ids[i]];
            let (input, targets) = (rows.row(i), rows.targets_row(i));
            let masked = rows.masked_row(i);
            assert_eq!(input.len(), original.len());
            assert_eq!(rows.original_sequence(i), *original);
            let candidates = original.iter().filter(|id| !SPECIAL.contains(id)).count();
            assert_eq!(masked.len(), num_to_mask(candidates, mask_rate));
            assert!(masked.windows(2).all(|w| w[0] < w[1]));
            for p in 0..input.len() {
                let is_masked = masked.contains(&(p as i32));
                if is_masked {
                    assert!(!SPECIAL.contains(&original[p]), "special token masked");
                    assert_eq!(targets[p] == 1, input[p] != original[p], "target at {p}");
                } else {
                    assert_eq!(targets[p], 0);
                    assert_eq!(input[p], original[p]);
                }
            }
            seen += 1;
        }
    }
    assert_eq!(seen, f.rows.len(), "every sequence appears once");
}

#[test]
fn identical_shards_whatever_threads_and_batch_size() {
    let reference = reference();
    check_invariants(reference, 0.15);
    for (name, threads, batch) in [("one", "1", "5"), ("many", "2", "64")] {
        let out = fixture().work.join(format!("threads-{name}"));
        ok(corrupt(
            &out,
            1,
            &["--threads", threads, "--batch-size", batch],
        ));
        assert_same_epoch(reference, &out.join("epoch-001"));
    }
}

#[test]
fn five_epochs_of_exp_temperature_and_replacements_fall() {
    let out = fixture().work.join("five");
    let mut temps = Vec::new();
    let mut replaced = Vec::new();
    for e in 0..5 {
        ok(corrupt(
            &out,
            e,
            &[
                "--epochs",
                "5",
                "--t0",
                "2",
                "--tau",
                "0.7",
                "--mask-rate",
                "0.5",
                "--batch-size",
                "16",
            ],
        ));
        let dir = out.join(format!("epoch-{e:03}"));
        let m = manifest(&dir);
        assert_eq!(
            (
                m.corruption.epoch,
                m.corruption.epochs,
                m.corruption.schedule.name.as_str()
            ),
            (e, 5, "exp")
        );
        let expect_t = 1.0 + (-(e as f64 / 5.0) / 0.7).exp();
        assert!(
            (m.corruption.temperature - expect_t).abs() < 1e-12,
            "T of epoch {e}"
        );
        let fraction = m.num_replaced as f64 / m.num_tokens as f64;
        assert!((fraction - m.report["replaced_fraction_of_tokens"]).abs() < 1e-12);
        temps.push(m.corruption.temperature);
        replaced.push(m.report["replaced_fraction_of_tokens"]);
        if e == 4 {
            check_invariants(&dir, 0.5);
        }
    }
    assert!(temps.windows(2).all(|w| w[1] < w[0]), "T: {temps:?}");
    assert!(
        replaced.windows(2).all(|w| w[1] < w[0]),
        "replaced: {replaced:?}"
    );
}

#[test]
fn killed_mid_epoch_resumes_to_the_same_shards() {
    let reference = reference();
    let out = fixture().work.join("killed");
    let dir = out.join("epoch-001");
    // One encoding thread: the abort comes before any other shard is dispatched.
    let crash = corrupt(
        &out,
        1,
        &[
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--abort-after-shards",
            "1",
        ],
    );
    assert!(!crash.status.success(), "the run should have been aborted");
    assert!(
        !dir.join("manifest.json").exists(),
        "no manifest after a crash"
    );
    let made = shard_files(&dir).len();
    assert!((1..4).contains(&made), "{made} shards after the crash");
    // A half-written shard of the crashed process.
    std::fs::write(dir.join(".part-00003.parquet.4242.tmp"), b"PAR1 half").unwrap();
    let again = ok(corrupt(&out, 1, &["--batch-size", "16"]));
    assert!(
        stderr(&again).contains(&format!("makes {} of them", 4 - made)),
        "{}",
        stderr(&again)
    );
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
    assert_same_epoch(reference, &dir);
}

#[test]
fn parts_share_an_epoch_and_the_last_writes_the_manifest() {
    let reference = reference();
    let out = fixture().work.join("parts");
    let dir = out.join("epoch-001");
    ok(corrupt(&out, 1, &["--part", "1/2"]));
    assert!(!dir.join("manifest.json").exists());
    let names: Vec<String> = shard_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["part-00001.parquet", "part-00003.parquet"]);
    ok(corrupt(&out, 1, &["--part", "0/2"]));
    assert_same_epoch(reference, &dir);
}

#[test]
fn complete_epoch_is_kept_and_other_settings_are_refused_unless_overwrite() {
    let reference = reference();
    let out = fixture().work.join("rerun");
    let dir = out.join("epoch-001");
    copy_dir(reference, &dir);
    let again = ok(corrupt(&out, 1, &[]));
    assert!(
        stderr(&again).contains("already complete"),
        "{}",
        stderr(&again)
    );
    assert_same_epoch(reference, &dir);

    let refused = corrupt(&out, 1, &["--seed", "7"]);
    assert!(!refused.status.success());
    let msg = stderr(&refused);
    assert!(
        msg.contains("seed: this run 7, existing 0") && msg.contains("--overwrite"),
        "{msg}"
    );

    // A stray shard from other settings is refused too, even without a manifest.
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let refused = corrupt(&out, 1, &["--mask-rate", "0.2"]);
    let msg = stderr(&refused);
    assert!(
        !refused.status.success() && msg.contains("mask_rate"),
        "{msg}"
    );

    ok(corrupt(&out, 1, &["--seed", "7", "--overwrite"]));
    let m = manifest(&dir);
    assert_eq!(m.corruption.seed, 7);
    assert_eq!(m.shards.len(), 4);
    let before = manifest(reference);
    assert!(m
        .shards
        .iter()
        .zip(&before.shards)
        .all(|(a, b)| a.sha256 != b.sha256));
}

#[test]
fn bad_inputs_fail_before_any_work() {
    let f = fixture();
    let out = f.work.join("bad");
    let fails = |extra: &[&str], epoch: u32, needles: &[&str]| {
        let o = corrupt(&out, epoch, extra);
        let msg = stderr(&o);
        assert!(!o.status.success(), "should fail: {extra:?}");
        for n in needles {
            assert!(msg.contains(n), "{extra:?}: {n:?} not in {msg}");
        }
        assert!(!out.exists(), "{extra:?}: the output folder was created");
    };
    fails(&[], 10, &["--epoch", "0..10", "found 10"]);
    fails(&["--t0", "0.5"], 0, &["t0", ">= 1", "0.5"]);
    fails(&["--tau", "inf"], 0, &["tau", "inf"]);
    fails(
        &["--temperature-schedule", "poly", "--k", "nan"],
        0,
        &["k", "NaN"],
    );
    fails(&["--mask-rate", "1.5"], 0, &["--mask-rate", "1.5"]);
    fails(&["--part", "3/2"], 0, &["--part", "3/2"]);

    let small = f.work.join("aux-small-vocab");
    save_tiny_aux(&small, 1000, None);
    fails(
        &["--aux-model", small.to_str().unwrap()],
        0,
        &["vocab_size", "expected 30522", "found 1000"],
    );

    let incomplete = f.work.join("tokens-incomplete");
    copy_files(&f.data.tokens(), &incomplete, |p| {
        p.file_name().unwrap() != "manifest.json"
    });
    fails(
        &["--tokens", incomplete.to_str().unwrap()],
        0,
        &["--tokens", "manifest"],
    );
}

#[test]
fn validation_split_is_corrupted_like_training() {
    let f = fixture();
    let tokens = f.work.join("split-tokens");
    ok(run(&[
        "tokenize",
        "--input",
        f.data.corpus().to_str().unwrap(),
        "--tokenizer",
        bert_tokenizer().to_str().unwrap(),
        "--out",
        tokens.to_str().unwrap(),
        "--max-seq-len",
        "64",
        "--txt-blank-line-docs",
        "--validation-fraction",
        "0.3",
    ]));
    let out = f.work.join("split-validation");
    let e = ok(run(&[
        "--epoch",
        "4",
        "--tokens",
        tokens.join("validation").to_str().unwrap(),
        "--aux-model",
        f.data.aux().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--profile-batches",
    ]));
    let m = manifest(&out.join("epoch-004"));
    assert_eq!(m.split, "validation", "{}", stderr(&e));
    assert!(m.num_sequences > 0);
    // Where the time went: the pipeline's stages and, with --profile-batches, the model thread's.
    let log = stderr(&e);
    let stages = format!("pipeline: {} sequences in ", m.num_sequences);
    assert!(log.contains(&stages), "{log}");
    assert!(
        log.contains("model thread per batch (synchronised): inputs to device"),
        "{log}"
    );
}
