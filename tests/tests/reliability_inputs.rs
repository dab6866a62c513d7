//! The readers under bad input: bad input reaches every reader of shards (`preprocess --epoch`,
//! `trainer` with rtd and mlm, `trainer loader-bench`) and each refuses it with an error naming
//! the file, and where it is a row the row group, row and field; nothing panics. On the suite's
//! `demo_data` fixture: its validation token folder (54 rows of at most 64 tokens, one shard) and
//! its validation epoch, copied into this binary's own folder and edited there.
//! - a token shard changed behind its manifest (one flipped byte), or a manifest whose SHA-256 or
//!   vocabulary size was edited: refused before any work, unless `--no-verify-shards` (the SHA-256
//!   only), which is then recorded in the epoch's shards and manifest;
//! - rows that break the data-spec (an id out of the vocabulary, a negative id, a row longer than
//!   `max_seq_len` or than the model's positions, an empty row, a missing `[CLS]`, a `[SEP]` inside)
//!   written consistently (the manifest lists the edited file), so only the per-row check can tell;
//! - seeded fuzzing: flipped bytes, zeroed ranges and truncations of a token and an epoch shard
//!   read with `--no-verify-shards`: every reader ends with an error or succeeds, never a panic;
//! - a folder a writer holds (`tokenize --overwrite` rewriting it) is refused by every reader at
//!   once, and a writer is refused on a folder a trainer reads (readers hold its lock shared).
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use e2e_tests::support::data::s;
use e2e_tests::support::files::{copy_dir, edit_manifest, read_json};
use e2e_tests::support::fixtures::demo_data;
use e2e_tests::support::shards::{rewrite_epoch_shard, rewrite_token_shard};
use e2e_tests::{expect_err as err, expect_ok as ok, run, stderr};
use shared::corruption::rng::CounterRng;
use shared::files::lock::FolderLock;
use shared::format::shard_reader::ShardFile;

const SHARD: &str = "part-00000.parquet";
const CLS: i32 = 101;
const SEP: i32 = 102;

/// This test binary's own folder.
fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap().keep())
}

/// A fresh copy of the fixture's validation token folder, named `name`.
fn tokens(name: &str) -> PathBuf {
    let dir = work().join(name);
    copy_dir(&demo_data().tokens().join("validation"), &dir);
    dir
}

/// A fresh copy of the fixture's validation epoch, named `name`.
fn epoch(name: &str) -> PathBuf {
    let dir = work().join(name);
    copy_dir(&demo_data().validation(), &dir);
    dir
}

/// `preprocess --epoch 0` of `tokens` with the fixture's auxiliary model, into `NAME-out`.
fn corrupt(tokens: &Path, extra: &[&str]) -> (PathBuf, Output) {
    let out = tokens.with_extension("out");
    let aux = demo_data().aux();
    let mut a = vec![
        "--epoch",
        "0",
        "--tokens",
        s(tokens),
        "--aux-model",
        s(&aux),
        "--out",
        s(&out),
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    a.extend_from_slice(extra);
    let o = run("preprocess", &a);
    (out.join("epoch-000"), o)
}

/// Two updates of a tiny model on `shards` (`--objective OBJ`), CPU.
fn train(objective: &str, shards: &Path, extra: &[&str]) -> Output {
    let run_dir = shards.with_extension(format!("run-{objective}"));
    let mut a = vec![
        "--objective",
        objective,
        "--shards",
        s(shards),
        "--run-dir",
        s(&run_dir),
        "--model",
        "tiny",
        "--batch-size",
        "16",
        "--max-steps",
        "2",
        "--device",
        "cpu",
    ];
    a.extend_from_slice(extra);
    run("trainer", &a)
}

/// `trainer loader-bench` over `shards` (`--objective OBJ`).
fn load(objective: &str, shards: &Path, extra: &[&str]) -> Output {
    let mut a = vec![
        "loader-bench",
        "--objective",
        objective,
        "--shards",
        s(shards),
        "--threads",
        "1",
    ];
    a.extend_from_slice(extra);
    run("trainer", &a)
}

/// Fails unless `out` ended with an error (not a panic, not a signal) whose text holds every
/// one of `want`.
fn refused(out: Output, want: &[&str]) -> String {
    let e = no_panic(&out);
    assert!(
        !out.status.success(),
        "expected a failure, got success:\n{e}"
    );
    for w in want {
        assert!(e.contains(w), "expected {w:?} in:\n{e}");
    }
    e
}

/// The stderr of `out`, failing if the process panicked or died of a signal.
fn no_panic(out: &Output) -> String {
    let e = stderr(out);
    assert!(
        out.status.code().is_some_and(|c| c != 101) && !e.contains("panicked"),
        "a panic or a signal ({:?}):\n{e}",
        out.status
    );
    e
}

#[test]
fn token_shard_changed_behind_its_manifest_is_refused_before_work() {
    let t = tokens("flipped");
    let path = t.join(SHARD);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let (out, o) = corrupt(&t, &[]);
    refused(
        o,
        &[
            "flipped/part-00000.parquet: sha256: expected",
            "manifest.json",
        ],
    );
    assert!(!out.exists(), "nothing written before the check");
    // The manifest's own SHA-256 edited: the same refusal, by the trainer's reader too.
    let t = tokens("sha-edited");
    edit_manifest(&t, |m| m["shards"][0]["sha256"] = "00".repeat(32).into());
    refused(corrupt(&t, &[]).1, &["sha256: expected 0000"]);
    refused(train("mlm", &t, &[]), &["sha256: expected 0000"]);
}

#[test]
fn no_verify_shards_is_explicit_and_recorded() {
    let t = tokens("unverified");
    let (out, o) = corrupt(&t, &["--no-verify-shards"]);
    let e = stderr(&ok(o));
    assert!(e.contains("--no-verify-shards"), "{e}");
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["unverified_token_shards"], serde_json::json!([SHARD]));
    let shard = ShardFile::open(&out.join(SHARD)).unwrap();
    assert_eq!(
        shard.key_value("fast_electra.source_unverified").as_deref(),
        Some("true")
    );
    // Verified (the default): neither record.
    let (out, o) = corrupt(&tokens("verified"), &[]);
    ok(o);
    assert!(read_json(&out.join("manifest.json"))
        .get("unverified_token_shards")
        .is_none());
    let shard = ShardFile::open(&out.join(SHARD)).unwrap();
    assert_eq!(shard.key_value("fast_electra.source_unverified"), None);
}

#[test]
fn manifest_vocabulary_disagreeing_with_the_shards_is_refused() {
    let t = tokens("vocab");
    edit_manifest(&t, |m| m["tokenizer"]["vocab_size"] = 30000.into());
    let want = [
        "vocab/part-00000.parquet: metadata fast_electra.vocab_size: expected 30000",
        "found 30522",
    ];
    refused(train("mlm", &t, &[]), &want);
    refused(load("mlm", &t, &[]), &want);
    // preprocess names the auxiliary model first (its vocabulary is the tokenizer's, 30,522).
    refused(corrupt(&t, &[]).1, &["vocab_size: expected 30000"]);
}

/// Row 5 of the shard replaced by `row(original row 5)`.
fn with_row5(name: &str, row: impl FnOnce(&[i32]) -> Vec<i32>) -> PathBuf {
    let t = tokens(name);
    rewrite_token_shard(&t, SHARD, |rows| rows[5].2 = row(&rows[5].2));
    t
}

#[test]
fn bad_token_rows_are_refused_by_every_reader_naming_the_row() {
    let at = "part-00000.parquet: row group 0, row 5 (row 5 of the file, sequence_id 5): \
              column input_ids";
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "id beyond the vocabulary",
            with_row5("id-high", |r| [&r[..2], &[30522], &r[3..]].concat()),
            "token id: expected 0..30522 (the vocabulary) at position 2, found 30522",
        ),
        (
            "negative id",
            with_row5("id-negative", |r| [&r[..2], &[-7], &r[3..]].concat()),
            "found -7",
        ),
        (
            "600 tokens",
            with_row5("long", |_| [vec![CLS], vec![2000; 598], vec![SEP]].concat()),
            "length: expected 3..=64 (max_seq_len), found 600",
        ),
        (
            "65 tokens",
            with_row5("long65", |_| {
                [vec![CLS], vec![2000; 63], vec![SEP]].concat()
            }),
            "found 65",
        ),
        (
            "empty",
            with_row5("empty", |_| vec![]),
            "length: expected 3..=64 (max_seq_len), found 0",
        ),
        (
            "no [CLS]",
            with_row5("no-cls", |r| [&[2000], &r[1..]].concat()),
            "first token: expected [CLS] = 101, found 2000",
        ),
        (
            "[SEP] inside",
            with_row5("inner-sep", |r| [&r[..3], &[SEP], &r[4..]].concat()),
            "special token inside the row",
        ),
    ];
    for (i, (what, t, want)) in cases.iter().enumerate() {
        eprintln!("case: {what}");
        let name = t.file_name().unwrap().to_str().unwrap();
        let at = format!("{name}/{at}");
        refused(corrupt(t, &[]).1, &[&at, want]);
        refused(train("mlm", t, &[]), &[&at, want]);
        // The loader benchmark shares the trainer's decoder: two cases suffice.
        if i < 2 {
            refused(load("mlm", t, &[]), &[&at, want]);
        }
    }
}

#[test]
fn bad_epoch_rows_are_refused_by_the_trainer() {
    let e = epoch("epoch-long");
    rewrite_epoch_shard(&e, SHARD, |rows| {
        let r = &mut rows[3];
        r.1 = [vec![CLS], vec![2000; 598], vec![SEP]].concat();
        r.2 = vec![0; 600];
        (r.3, r.4) = (vec![], vec![]);
    });
    let at = "epoch-long/part-00000.parquet: row group 0, row 3 (row 3 of the file, sequence_id";
    let want = "length: expected 3..=64 (max_seq_len), found 600";
    refused(train("rtd", &e, &[]), &[at, want]);
    refused(load("rtd", &e, &[]), &[at, want]);
    let e = epoch("epoch-id");
    rewrite_epoch_shard(&e, SHARD, |rows| rows[0].1[1] = 40000);
    refused(
        train("rtd", &e, &[]),
        &[
            "epoch-id/part-00000.parquet: row group 0, row 0",
            "found 40000",
        ],
    );
}

/// One seeded mutation of a shard's bytes: a flipped byte, a zeroed range, or a truncation.
fn mutate(bytes: &mut Vec<u8>, rng: &mut CounterRng) -> String {
    let n = bytes.len() as u64;
    let at = (rng.next_u64() % n) as usize;
    match rng.next_u64() % 5 {
        0 | 1 => {
            let bit = 1u8 << (rng.next_u64() % 8);
            bytes[at] ^= bit;
            format!("flip bit {bit:#x} of byte {at}")
        }
        2 | 3 => {
            let len = (1 + rng.next_u64() % 64) as usize;
            let end = (at + len).min(bytes.len());
            bytes[at..end].fill(0);
            format!("zero bytes {at}..{end}")
        }
        _ => {
            bytes.truncate(at);
            format!("truncate to {at} bytes")
        }
    }
}

/// A reader of a folder, by name.
type Reader<'a> = (&'a str, &'a dyn Fn(&Path) -> Output);

/// Replaces `dir`'s shard by a seeded mutation of `src` and runs each reader on it with
/// `--no-verify-shards`, failing on a panic or a signal.
fn fuzz_once(dir: &Path, src: &[u8], rng: &mut CounterRng, readers: &[Reader]) {
    let mut bytes = src.to_vec();
    let what = mutate(&mut bytes, rng);
    std::fs::write(dir.join(SHARD), &bytes).unwrap();
    eprintln!("{}: {what}", dir.display());
    for (name, read) in readers {
        let o = read(dir);
        eprintln!("  {name}: {}", no_panic(&o).lines().last().unwrap_or(""));
    }
}

#[test]
fn fuzzed_shards_end_in_an_error_or_success_never_a_panic() {
    let mut rng = CounterRng::new(10, &[1]);
    let token_src = std::fs::read(tokens("fuzz-src").join(SHARD)).unwrap();
    let epoch_src = std::fs::read(epoch("fuzz-epoch-src").join(SHARD)).unwrap();
    let flag = ["--no-verify-shards"];
    let load_tokens = |d: &Path| load("mlm", d, &flag);
    let corrupt_tokens = |d: &Path| corrupt(d, &flag).1;
    let load_epoch = |d: &Path| load("rtd", d, &flag);
    for k in 0..6 {
        let token_readers: [Reader; 2] = [
            ("loader-bench", &load_tokens),
            ("preprocess", &corrupt_tokens),
        ];
        fuzz_once(
            &tokens(&format!("fuzz-{k}")),
            &token_src,
            &mut rng,
            &token_readers,
        );
        let epoch_readers: [Reader; 1] = [("loader-bench", &load_epoch)];
        fuzz_once(
            &epoch(&format!("fuzz-epoch-{k}")),
            &epoch_src,
            &mut rng,
            &epoch_readers,
        );
    }
}

#[test]
fn loader_bench_refuses_a_zero_batch() {
    let t = demo_data().tokens().join("validation");
    let e = err(load("mlm", &t, &["--batch-size", "0"]));
    assert!(
        e.contains("--batch-size: expected a positive number, found 0"),
        "{e}"
    );
}

#[test]
fn a_folder_is_not_read_while_rewritten_nor_rewritten_while_read() {
    // A writer at work on a token folder (the lock `preprocess tokenize --overwrite` holds):
    // every reader is refused at once, naming it, and reads nothing.
    let t = tokens("rewritten");
    let held = FolderLock::folder(&t, "preprocess tokenize --overwrite (the test's)").unwrap();
    let pid = format!("pid {} ", std::process::id());
    let want = [
        "being written right now",
        &pid,
        "tokenize --overwrite (the test's)",
    ];
    let started = std::time::Instant::now();
    refused(train("mlm", &t, &[]), &want);
    refused(load("mlm", &t, &[]), &want);
    let (out, o) = corrupt(&t, &[]);
    refused(o, &want);
    assert!(!out.exists(), "nothing written");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "refused at once: {:?}",
        started.elapsed()
    );
    drop(held);

    // A trainer reading the folder: `preprocess tokenize --overwrite` on it is refused, naming
    // a reader; once the reader is gone (even killed), the writer runs.
    let run_dir = t.with_extension("reader-run");
    let mut reader = std::process::Command::new(e2e_tests::binary("trainer"))
        .args([
            "--objective",
            "mlm",
            "--shards",
            s(&t),
            "--run-dir",
            s(&run_dir),
            "--model",
            "tiny",
            "--batch-size",
            "4",
            "--max-steps",
            "100000",
            "--repeat-last-epoch",
            "--log-every",
            "1",
            "--device",
            "cpu",
        ])
        .env("OMP_WAIT_POLICY", "passive")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = run_dir.join("metrics.jsonl");
    while !std::fs::read_to_string(&metrics).is_ok_and(|m| !m.is_empty()) {
        assert!(reader.try_wait().unwrap().is_none(), "the reader ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let d = demo_data();
    let tokenize = || {
        run(
            "preprocess",
            &[
                "tokenize",
                "--input",
                s(&d.corpus()),
                "--tokenizer",
                s(&e2e_tests::bert_tokenizer()),
                "--out",
                s(&t),
                "--max-seq-len",
                "64",
                "--overwrite",
            ],
        )
    };
    let e = refused(
        tokenize(),
        &["in use by another writer", "a reader of the folder"],
    );
    assert!(e.contains(s(&t)), "{e}");
    assert!(
        reader.try_wait().unwrap().is_none(),
        "the reader still reads"
    );
    let _ = reader.kill();
    let _ = reader.wait();
    ok(tokenize());
}
