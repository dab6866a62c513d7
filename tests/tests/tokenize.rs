//! `preprocess tokenize` end to end: the real binary on slices of the shared corpus and
//! small fixtures. Needs `cargo build --release --bins` first (scripts/test does it).
use e2e_tests::support::corpus::{moby_dick_prefix, sotu_lines};
use e2e_tests::support::data::s;
use e2e_tests::support::files::tree;
use e2e_tests::{bert_tokenizer, binary, expect_ok as ok, stderr};
use shared::format::manifest::TokenManifest;
use shared::format::shard_reader::ShardFile;
use shared::format::spec::token_dir::VALIDATION_DIR;
use shared::format::token_shards::{open_token_dir, TokenRows};
use shared::format::validate::{check_shard, open_checked, ShardExpectation};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CLS: i32 = 101;
const SEP: i32 = 102;
const MASK: i32 = 103;
const PAD: i32 = 0;

/// Runs `preprocess tokenize ARGS` with the BERT tokenizer unless `args` names one.
fn tokenize(args: &[&str]) -> Output {
    let mut cmd = Command::new(binary("preprocess"));
    cmd.arg("tokenize");
    if !args.contains(&"--tokenizer") {
        cmd.arg("--tokenizer").arg(bert_tokenizer());
    }
    cmd.args(args).output().expect("running preprocess")
}

/// The first `n` SOTU speeches as a JSONL file in `dir`; returns it and their texts.
fn sotu_slice(dir: &Path, n: usize) -> (PathBuf, Vec<String>) {
    let lines = sotu_lines(n);
    let path = dir.join(format!("sotu-{n}.jsonl"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let texts = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect();
    (path, texts)
}

/// Every row of a token folder (all shards, all row groups, in order) and its manifest.
fn read_rows(dir: &Path) -> (TokenManifest, TokenRows) {
    let (manifest, paths) = open_token_dir(dir).unwrap();
    let mut all = TokenRows::new();
    for (path, entry) in paths.iter().zip(&manifest.shards) {
        let expect = ShardExpectation::tokens(&manifest);
        let mpath = dir.join(shared::format::spec::MANIFEST_FILE);
        let shard = open_checked(path, entry, &expect, true, &mpath).unwrap();
        for g in 0..shard.num_row_groups() {
            let rows = TokenRows::from_batch(&shard.read_row_group(g).unwrap(), path).unwrap();
            for i in 0..rows.len() {
                all.push(rows.sequence_ids[i], rows.doc_ids[i], rows.row(i));
            }
        }
    }
    (manifest, all)
}

/// The invariants of data-spec "Token shards" that hold for any token folder.
fn check_invariants(manifest: &TokenManifest, rows: &TokenRows) {
    assert_eq!(rows.len() as u64, manifest.num_sequences);
    assert_eq!(rows.num_tokens(), manifest.num_tokens);
    let max = manifest.max_seq_len as usize;
    for i in 0..rows.len() {
        assert_eq!(
            rows.sequence_ids[i], i as u64,
            "sequence_id is 0..n in order"
        );
        if i > 0 {
            assert!(
                rows.doc_ids[i] >= rows.doc_ids[i - 1],
                "doc_id non-decreasing"
            );
        }
        let row = rows.row(i);
        assert!(
            (3..=max).contains(&row.len()),
            "row {i} length {}",
            row.len()
        );
        assert_eq!((row[0], row[row.len() - 1]), (CLS, SEP));
        let body = &row[1..row.len() - 1];
        assert!(
            body.iter().all(|t| ![CLS, SEP, MASK, PAD].contains(t)),
            "row {i}"
        );
        assert!(body
            .iter()
            .all(|&t| (t as u32) < manifest.tokenizer.vocab_size));
    }
}

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn decoded_rows_give_back_the_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, mut docs) = sotu_slice(tmp.path(), 3);
    // The start of Moby-Dick, cut at a line end, as blank-line separated documents.
    let moby = moby_dick_prefix(30_000);
    let end = moby.rfind('\n').unwrap() + 1;
    let moby_path = tmp.path().join("moby.txt");
    std::fs::write(&moby_path, &moby[..end]).unwrap();
    let paragraphs: Vec<String> = moby[..end]
        .split("\n\n")
        .map(|p| p.trim_matches('\n').to_string())
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert!(paragraphs.len() > 20);
    docs.extend(paragraphs);

    let out = tmp.path().join("tokens");
    ok(tokenize(&[
        "--input",
        s(&jsonl),
        s(&moby_path),
        "--txt-blank-line-docs",
        "--out",
        s(&out),
        "--max-seq-len",
        "64",
        "--min-tail",
        "1",
        "--rows-per-shard",
        "50",
        "--row-group-rows",
        "16",
    ]));
    let (manifest, rows) = read_rows(&out);
    check_invariants(&manifest, &rows);
    assert!(manifest.shards.len() > 1);
    assert_eq!(manifest.num_documents, docs.len() as u64);
    assert_eq!(manifest.tokenizer.special_tokens.mask, MASK as u32);
    assert!(
        !out.join(VALIDATION_DIR).exists(),
        "no validation split by default"
    );

    let tok = shared::tokenizer::load_tokenizer(&bert_tokenizer()).unwrap();
    let normalizer = tok
        .tokenizer
        .get_normalizer()
        .expect("BERT has a normalizer");
    let mut bodies: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for i in 0..rows.len() {
        let row = rows.row(i);
        let body = bodies.entry(rows.doc_ids[i]).or_default();
        body.extend(row[1..row.len() - 1].iter().map(|&t| t as u32));
    }
    assert_eq!(
        bodies.len(),
        docs.len(),
        "every document gave rows (--min-tail 1)"
    );
    for (doc_id, ids) in bodies {
        let original = &docs[doc_id as usize];
        let decoded = tok.tokenizer.decode(&ids, false).unwrap();
        let mut normalized = tokenizers::NormalizedString::from(original.as_str());
        tokenizers::Normalizer::normalize(normalizer, &mut normalized).unwrap();
        assert_eq!(
            without_whitespace(&decoded),
            without_whitespace(normalized.get()),
            "document {doc_id} does not decode back to its text"
        );
    }
}

#[test]
fn output_is_byte_identical_for_1_and_2_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = sotu_slice(tmp.path(), 30);
    let run = |threads: &str| {
        let out = tmp.path().join(format!("t{threads}"));
        ok(tokenize(&[
            "--input",
            s(&jsonl),
            "--out",
            s(&out),
            "--max-seq-len",
            "128",
            "--rows-per-shard",
            "200",
            "--row-group-rows",
            "64",
            "--validation-fraction",
            "0.2",
            "--threads",
            threads,
        ]));
        tree(&out)
    };
    let one = run("1");
    let two = run("2");
    assert!(one.keys().filter(|p| p.starts_with("validation")).count() >= 2);
    assert!(one.len() >= 5, "several shards: {:?}", one.keys());
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        two.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &one {
        assert!(
            bytes == &two[path],
            "{} differs between --threads 1 and 2",
            path.display()
        );
    }
}

#[test]
fn validation_split_is_document_level_and_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = sotu_slice(tmp.path(), 40);
    let out = tmp.path().join("tokens");
    let fraction = 0.25;
    ok(tokenize(&[
        "--input",
        s(&jsonl),
        "--out",
        s(&out),
        "--max-seq-len",
        "256",
        "--validation-fraction",
        "0.25",
        "--split-seed",
        "7",
    ]));
    let (train_m, train) = read_rows(&out);
    let (val_m, val) = read_rows(&out.join(VALIDATION_DIR));
    check_invariants(&train_m, &train);
    check_invariants(&val_m, &val);
    assert_eq!(
        (train_m.split.as_str(), val_m.split.as_str()),
        ("train", "validation")
    );
    assert_eq!(train_m.dataset_fingerprint, val_m.dataset_fingerprint);
    let train_docs: BTreeSet<u64> = train.doc_ids.iter().copied().collect();
    let val_docs: BTreeSet<u64> = val.doc_ids.iter().copied().collect();
    assert!(
        train_docs.is_disjoint(&val_docs),
        "a document is in one split only"
    );
    assert_eq!(train_docs.len() + val_docs.len(), 40);
    assert_eq!(train_m.num_documents + val_m.num_documents, 40);
    // The rule of data-spec "Validation split", recomputed independently.
    for doc in 0..40u64 {
        let draw = shared::corruption::rng::CounterRng::new(
            7,
            &[shared::corruption::rng::domain::SPLIT, doc],
        )
        .next_f64();
        assert_eq!(val_docs.contains(&doc), draw < fraction, "document {doc}");
    }
    assert!(
        (2..=20).contains(&val_docs.len()),
        "{} validation documents",
        val_docs.len()
    );
}

#[test]
fn parquet_folder_and_glob_inputs_give_the_same_rows() {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let (_, texts) = sotu_slice(tmp.path(), 4);
    // The same documents as a Parquet file (text in column `body`) and as JSONL in a folder.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("body", DataType::Utf8, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..4)),
        Arc::new(StringArray::from_iter_values(&texts)),
    ];
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), cols).unwrap();
    let pq = tmp.path().join("docs.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&pq).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let folder = tmp.path().join("folder/sub");
    std::fs::create_dir_all(&folder).unwrap();
    let (a, b) = texts.split_at(2);
    for (name, part) in [("a.jsonl", a), ("b.jsonl", b)] {
        let lines: Vec<String> = part
            .iter()
            .map(|t| serde_json::json!({ "body": t }).to_string())
            .collect();
        std::fs::write(folder.join(name), lines.join("\n")).unwrap();
    }
    std::fs::write(folder.join("notes.md"), "ignored: not a corpus extension").unwrap();

    let rows_of = |input: &str, name: &str| {
        let out = tmp.path().join(name);
        ok(tokenize(&[
            "--input",
            input,
            "--text-field",
            "body",
            "--out",
            s(&out),
        ]));
        let (m, rows) = read_rows(&out);
        check_invariants(&m, &rows);
        (m, rows)
    };
    let (m_pq, from_parquet) = rows_of(s(&pq), "pq");
    let (m_dir, from_folder) = rows_of(s(&tmp.path().join("folder")), "dir");
    let glob = format!("{}/folder/*/*.jsonl", tmp.path().display());
    let (m_glob, from_glob) = rows_of(&glob, "glob");
    assert_eq!(from_parquet, from_folder);
    assert_eq!(from_parquet, from_glob);
    assert_eq!(m_pq.num_documents, 4);
    assert_eq!(m_dir.sources.len(), 2, "notes.md is skipped");
    assert_eq!(m_dir.dataset_fingerprint, m_glob.dataset_fingerprint);
    assert_ne!(
        m_pq.dataset_fingerprint, m_dir.dataset_fingerprint,
        "different sources"
    );
}

/// Runs a failing case: exit status 1, every `needles` in stderr, no manifest in `out`.
fn fails(args: &[&str], out: &Path, needles: &[&str]) {
    let res = tokenize(args);
    let err = stderr(&res);
    assert!(!res.status.success(), "expected a failure for {args:?}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    assert!(
        !out.join("manifest.json").exists(),
        "{args:?} left a manifest"
    );
}

#[test]
fn bad_inputs_get_errors_naming_file_and_place() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = d.join("tokens");
    let o = s(&out);
    let write = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let missing = d.join("missing.jsonl").display().to_string();
    fails(
        &["--input", &missing, "--out", o],
        &out,
        &["missing.jsonl", "no such file"],
    );
    let p = write(
        "bad-utf8.jsonl",
        b"{\"text\": \"fine\"}\n{\"text\": \"ba\xffd\"}\n",
    );
    fails(
        &["--input", &p, "--out", o],
        &out,
        &["bad-utf8.jsonl:2: invalid UTF-8 at byte offset 29"],
    );
    let p = write("bad-utf8.txt", b"line one\nline \xc3\x28two\n");
    fails(
        &["--input", &p, "--out", o],
        &out,
        &["bad-utf8.txt:2: invalid UTF-8 at byte offset 14"],
    );
    let p = write(
        "nofield.jsonl",
        b"{\"text\": \"a b c\"}\n{\"body\": \"x\"}\n",
    );
    fails(
        &["--input", &p, "--out", o],
        &out,
        &[
            "nofield.jsonl:2: field \"text\"",
            "found only [\"body\"]",
            "--text-field",
        ],
    );
    let p = write("badjson.jsonl", b"{\"text\": \"a\"}\n{\"text\" \"a\"}\n");
    fails(
        &["--input", &p, "--out", o],
        &out,
        &["badjson.jsonl:2: byte offset 14", "JSON"],
    );
    let p = write("empty.jsonl", b"\n  \n");
    fails(&["--input", &p, "--out", o], &out, &["empty corpus"]);
    let good = write("good.jsonl", b"{\"text\": \"a few words of text\"}\n");
    let short = ["--input", good.as_str(), "--out", o];
    fails(&short, &out, &["no training sequences", "--min-tail 16"]);
    let tok = d.join("nope.json").display().to_string();
    fails(
        &["--input", &good, "--out", o, "--tokenizer", &tok],
        &out,
        &["nope.json", "unreadable"],
    );
    let junk = write("junk.json", b"{\"model\": 3}");
    fails(
        &["--input", &good, "--out", o, "--tokenizer", &junk],
        &out,
        &["junk.json", "parse"],
    );
    // The BERT tokenizer with its mask token renamed.
    let bert = std::fs::read_to_string(bert_tokenizer()).unwrap();
    let no_mask = write(
        "no-mask.json",
        bert.replace("\"[MASK]\"", "\"[MASQUE]\"").as_bytes(),
    );
    fails(
        &["--input", &good, "--out", o, "--tokenizer", &no_mask],
        &out,
        &["no-mask.json", "no mask token", "[MASK]"],
    );
    fails(
        &["--input", &good, "--out", o, "--max-seq-len", "2"],
        &out,
        &["--max-seq-len"],
    );
    fails(
        &["--input", &good, "--out", o, "--validation-fraction", "1"],
        &out,
        &["--validation-fraction", "found 1"],
    );
    let md = write("notes.md", b"# not a corpus");
    fails(
        &["--input", &md, "--out", o],
        &out,
        &["notes.md", "expected .txt, .jsonl or .parquet"],
    );
    // Nothing half-written is visible in the output folder.
    let names: Vec<_> = std::fs::read_dir(&out)
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn rerun_is_a_noop_and_a_different_dataset_needs_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = sotu_slice(tmp.path(), 3);
    let out = tmp.path().join("tokens");
    let args = [
        "--input",
        s(&jsonl),
        "--out",
        s(&out),
        "--max-seq-len",
        "128",
    ];
    ok(tokenize(&args));
    let first = tree(&out);
    let mtime = std::fs::metadata(out.join("manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    let again = ok(tokenize(&args));
    assert!(
        stderr(&again).contains("nothing to do"),
        "{}",
        stderr(&again)
    );
    assert_eq!(tree(&out), first);
    let mtime2 = std::fs::metadata(out.join("manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, mtime2, "a no-op rewrites nothing");

    let other = [
        "--input",
        s(&jsonl),
        "--out",
        s(&out),
        "--max-seq-len",
        "64",
    ];
    let refused = tokenize(&other);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("dataset_fingerprint") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(tree(&out), first, "a refused run changes nothing");

    let mut forced = other.to_vec();
    forced.push("--overwrite");
    ok(tokenize(&forced));
    let (m, rows) = read_rows(&out);
    check_invariants(&m, &rows);
    assert_eq!(m.max_seq_len, 64);
    let parts = std::fs::read_dir(&out).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("part-")
    });
    assert_eq!(
        parts.count(),
        m.shards.len(),
        "no shard of the old dataset is left"
    );
}

#[test]
fn interrupted_run_leaves_no_manifest_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = sotu_slice(tmp.path(), 60);
    let reference = tmp.path().join("reference");
    let out = tmp.path().join("tokens");
    let args = |dir: &Path| -> Vec<String> {
        [
            "--input",
            s(&jsonl),
            "--out",
            s(dir),
            "--max-seq-len",
            "128",
            "--rows-per-shard",
            "40",
            "--threads",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    ok(tokenize(
        &args(&reference)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let expected = tree(&reference);

    // Kill the run as soon as its first shard appears.
    let mut child = Command::new(binary("preprocess"))
        .arg("tokenize")
        .arg("--tokenizer")
        .arg(bert_tokenizer())
        .args(args(&out))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = out.join("part-00000.parquet");
    while !first.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tokenize ended before its first shard appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    // Killed mid-run for sure: 60 addresses make dozens of shards after the first.
    assert!(!status.success(), "the run ended before the kill");
    assert!(
        !out.join("manifest.json").exists(),
        "an interrupted run leaves no manifest"
    );
    assert!(open_token_dir(&out).is_err());
    // Leftovers of the interrupted run: a stale temporary file and a shard beyond the end.
    std::fs::write(out.join(".part-00003.parquet.4242.tmp"), b"half").unwrap();
    std::fs::write(out.join("part-09999.parquet"), b"stale").unwrap();

    let rerun = ok(tokenize(
        &args(&out).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(!stderr(&rerun).contains("nothing to do"));
    assert_eq!(
        tree(&out),
        expected,
        "the re-run finishes with the reference output"
    );
}

#[test]
fn a_shard_of_another_dataset_is_refused_by_the_shard_validator() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, _) = sotu_slice(tmp.path(), 1);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(tokenize(&[
        "--input",
        s(&jsonl),
        "--out",
        s(&a),
        "--max-seq-len",
        "128",
    ]));
    ok(tokenize(&[
        "--input",
        s(&jsonl),
        "--out",
        s(&b),
        "--max-seq-len",
        "64",
    ]));
    let (manifest_a, _) = open_token_dir(&a).unwrap();
    let shard_b = ShardFile::open(&b.join("part-00000.parquet")).unwrap();
    let err = check_shard(&shard_b, &ShardExpectation::tokens(&manifest_a)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("b/part-00000.parquet"), "{msg}");
    assert!(msg.contains("fast_electra.dataset_fingerprint"), "{msg}");
}

#[test]
fn special_token_strings_in_the_text_are_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let doc = "The word [MASK] and [CLS] or [SEP] and [PAD] are just text here, like [UNK].";
    let jsonl = tmp.path().join("specials.jsonl");
    std::fs::write(&jsonl, serde_json::json!({ "text": doc }).to_string()).unwrap();
    let out = tmp.path().join("tokens");
    ok(tokenize(&[
        "--input",
        s(&jsonl),
        "--out",
        s(&out),
        "--min-tail",
        "1",
    ]));
    let (manifest, rows) = read_rows(&out);
    check_invariants(&manifest, &rows); // no CLS/SEP/MASK/PAD id inside a row
    assert_eq!(rows.len(), 1);
    let tok = shared::tokenizer::load_tokenizer(&bert_tokenizer()).unwrap();
    let row = rows.row(0);
    let ids: Vec<u32> = row[1..row.len() - 1].iter().map(|&t| t as u32).collect();
    let decoded = tok.tokenizer.decode(&ids, false).unwrap();
    assert!(
        decoded.contains("[ mask ]") && decoded.contains("[ unk ]"),
        "{decoded}"
    );
}
