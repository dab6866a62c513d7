//! Every replaced-token distribution of the paper, run for real by `preprocess --epoch E`
//! on a slice of Moby-Dick: the model-free distributions (no auxiliary model anywhere), the
//! augmentations of a tiny random auxiliary model, the term-frequency file, the manifests, and the
//! errors. The maths (chi-square against the closed forms, interpolation ends, SOH's rate) is
//! unit-tested in `shared::corruption::model_free`; here the binaries keep those properties.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use e2e_tests::{bert_tokenizer, expect_err, expect_ok, read_epoch_shard, shared_data};
use serde_json::Value;
use shared::format::epoch_shards::EpochRows;
use shared::format::shard_reader::ShardFile;
use shared::format::token_shards::TokenRows;
use shared::model::{save_pretrained, Architecture, MaskedLm, ModelConfig};

/// [PAD], [CLS], [SEP], [MASK] of the BERT tokenizer.
const SPECIAL: [i32; 4] = [0, 101, 102, 103];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Training split (with term frequencies); `tokens/validation` is the validation split.
    tokens: PathBuf,
    aux: PathBuf,
    /// sequence_id -> token row, training split.
    rows: HashMap<u64, Vec<i32>>,
    /// Term frequency per id, counted here.
    counts: Vec<u64>,
}

fn preprocess(args: &[&str]) -> Output {
    e2e_tests::run("preprocess", args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let text = std::fs::read_to_string(shared_data().join("corpus/moby-dick.txt")).unwrap();
        let mut end = 40_000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        std::fs::write(root.join("slice.txt"), &text[..end]).unwrap();
        let tokens = root.join("tokens");
        expect_ok(preprocess(&[
            "tokenize",
            "--input",
            s(&root.join("slice.txt")),
            "--tokenizer",
            s(&bert_tokenizer()),
            "--out",
            s(&tokens),
            "--max-seq-len",
            "64",
            "--rows-per-shard",
            "48",
            "--row-group-rows",
            "16",
            "--txt-blank-line-docs",
            "--validation-fraction",
            "0.2",
        ]));
        let (_, paths) = shared::format::token_shards::open_token_dir(&tokens).unwrap();
        let mut rows = HashMap::new();
        let mut counts = vec![0u64; 30522];
        for path in paths {
            let file = ShardFile::open(&path).unwrap();
            for g in 0..file.num_row_groups() {
                let t = TokenRows::from_batch(&file.read_row_group(g).unwrap(), &path).unwrap();
                for i in 0..t.len() {
                    for &id in t.row(i) {
                        counts[id as usize] += 1;
                    }
                    rows.insert(t.sequence_ids[i], t.row(i).to_vec());
                }
            }
        }
        let aux = root.join("aux");
        let cfg = ModelConfig::aux_preset("tiny", 30522).unwrap();
        tch::manual_seed(0);
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _model = MaskedLm::new(&vs.root(), &cfg, Architecture::ElectraForMaskedLM).unwrap();
        save_pretrained(&vs, &cfg, Architecture::ElectraForMaskedLM, &aux).unwrap();
        Fixture {
            _dir: dir,
            root,
            tokens,
            aux,
            rows,
            counts,
        }
    })
}

/// `preprocess --epoch E --epochs 4` on the fixture's training split into `root/out`, on the
/// CPU with one thread unless `extra` says otherwise. No `--aux-model` unless given (a
/// model-free run must not look for one; `models/aux` does not exist in the test's folder).
fn corrupt(out: &str, epoch: u32, extra: &[&str]) -> (Output, PathBuf) {
    let f = fixture();
    let out = f.root.join(out);
    let e = epoch.to_string();
    let mut args = vec![
        "--epoch",
        &e,
        "--epochs",
        "4",
        "--out",
        s(&out),
        "--device",
        "cpu",
    ];
    if !extra.contains(&"--tokens") {
        args.extend(["--tokens", s(&f.tokens)]);
    }
    if !extra.contains(&"--threads") {
        args.extend(["--threads", "1"]);
    }
    args.extend_from_slice(extra);
    let dir = out.join(format!("epoch-{epoch:03}"));
    (preprocess(&args), dir)
}

fn with_aux<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--aux-model", s(&fixture().aux)];
    v.extend_from_slice(extra);
    v
}

fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

fn manifest_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Every row of every shard, in file order.
fn epoch_rows(dir: &Path) -> Vec<EpochRows> {
    shard_files(dir)
        .iter()
        .map(|p| read_epoch_shard(p))
        .collect()
}

/// The rows of two epochs are the same (file by file, row by row).
fn assert_same_rows(a: &Path, b: &Path) {
    let (ra, rb) = (epoch_rows(a), epoch_rows(b));
    assert_eq!(ra.len(), rb.len());
    assert!(ra.len() >= 3, "the fixture should give several shards");
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.sequence_ids, y.sequence_ids);
        assert_eq!(
            x.input_ids,
            y.input_ids,
            "{} vs {}",
            a.display(),
            b.display()
        );
        assert_eq!(x.targets, y.targets);
        assert_eq!(x.masked_positions, y.masked_positions);
    }
}

/// Same file names and bytes.
fn assert_same_bytes(a: &Path, b: &Path) {
    let (fa, fb) = (shard_files(a), shard_files(b));
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} and {} differ",
            x.display(),
            y.display()
        );
    }
}

/// The invariants tying an epoch to its token rows; returns every masked (original, sampled)
/// pair.
fn check_rows(dir: &Path) -> Vec<(i32, i32)> {
    let f = fixture();
    let mut pairs = Vec::new();
    let mut seen = 0;
    for rows in epoch_rows(dir) {
        for i in 0..rows.len() {
            let original = &f.rows[&rows.sequence_ids[i]];
            let (input, targets, masked) = (rows.row(i), rows.targets_row(i), rows.masked_row(i));
            assert_eq!(rows.original_sequence(i), *original);
            for p in 0..input.len() {
                if let Ok(j) = masked.binary_search(&(p as i32)) {
                    assert_eq!(rows.original_row(i)[j], original[p]);
                    assert_eq!(targets[p] == 1, input[p] != original[p]);
                    pairs.push((original[p], input[p]));
                } else {
                    // The main model's input keeps the original token (drop-token included).
                    assert_eq!((input[p], targets[p]), (original[p], 0));
                }
            }
            seen += 1;
        }
    }
    assert_eq!(seen, f.rows.len());
    pairs
}

/// Checks how often the original was drawn back against the closed form of data-spec/epoch.md:
/// `p(o) = r w_o / (W - w_o + r w_o)` with `w_i = a(c_i)^gamma` on non-special ids (0^0 = 1),
/// `r = ((1 - alpha)(N - 1) / alpha)^(1 - gamma)`, alpha 0.35; within 4 standard deviations.
fn assert_kept(pairs: &[(i32, i32)], name: &str, a: impl Fn(f64) -> f64, gamma: f64) {
    let counts = &fixture().counts;
    let special = |i: usize| SPECIAL.contains(&(i as i32));
    let w: Vec<f64> = (0..counts.len())
        .map(|i| {
            if special(i) {
                0.0
            } else {
                a(counts[i] as f64).powf(gamma)
            }
        })
        .collect();
    let total: f64 = w.iter().sum();
    let n = (0..counts.len()).filter(|&i| !special(i)).count() as f64;
    let r = (0.65 * (n - 1.0) / 0.35).powf(1.0 - gamma);
    let (mut mean, mut var) = (0.0, 0.0);
    for &(o, _) in pairs {
        let wo = w[o as usize];
        let p = r * wo / (total - wo + r * wo);
        mean += p;
        var += p * (1.0 - p);
    }
    let kept = pairs.iter().filter(|(o, x)| o == x).count() as f64;
    assert!(
        (kept - mean).abs() <= 4.0 * var.sqrt() + 1.0,
        "{name}: kept the original {kept} times of {}, expected {mean:.1} (sd {:.1})",
        pairs.len(),
        var.sqrt()
    );
}

#[test]
fn model_free_distributions_run_without_an_aux_model() {
    let f = fixture();
    let tf_sha = manifest_json(&f.tokens)["term_frequency"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, extra) in [
        ("uniform", vec![]),
        ("term-frequency", vec![]),
        ("smoothed-one-hot", vec!["--alpha", "0.35"]),
        ("unf-soh", vec!["--gamma-max", "0.5"]),
        (
            "tf-soh",
            vec!["--gamma-schedule", "const", "--gamma-max", "0.7"],
        ),
    ] {
        let mut args = vec!["--distribution", name];
        args.extend(extra);
        let (out, dir) = corrupt(&format!("free-{name}"), 1, &args);
        let log = String::from_utf8_lossy(&expect_ok(out).stderr).into_owned();
        assert!(log.contains(&format!("distribution {name}")), "{log}");
        let pairs = check_rows(&dir);
        assert!(pairs.len() > 1000, "{} masked positions", pairs.len());
        assert!(
            pairs.iter().all(|(_, x)| !SPECIAL.contains(x)),
            "{name}: a special token was drawn"
        );
        let m = manifest_json(&dir);
        assert_eq!(m["data_spec_version"], 2);
        assert_eq!(m["distribution"], name);
        assert!(m["augmentation"].is_null(), "{name}");
        assert!(m.get("aux_model").is_none(), "{name}: aux_model recorded");
        let kept = pairs.iter().filter(|(o, x)| o == x).count() as f64 / pairs.len() as f64;
        // The closed form's rate of keeping the original, from the counts recounted here.
        let gamma = m["gamma"].as_f64().unwrap_or(0.0);
        match name {
            "smoothed-one-hot" => assert_kept(&pairs, name, |_| 1.0, 0.0),
            "unf-soh" => assert_kept(&pairs, name, |_| 1.0, gamma),
            "tf-soh" => assert_kept(&pairs, name, |c| c, gamma),
            _ => {}
        }
        match name {
            "uniform" => {
                assert!(m.get("alpha").is_none() && m.get("gamma").is_none());
                assert!(kept < 0.01, "uniform kept {kept}");
            }
            "term-frequency" => {
                assert_eq!(m["term_frequency_sha256"], tf_sha.as_str());
                assert!(pairs.iter().all(|&(_, x)| f.counts[x as usize] > 0));
            }
            "smoothed-one-hot" => {
                assert_eq!(m["alpha"], 0.35);
            }
            "unf-soh" => {
                // exp schedule, tau 0.1, epoch 1 of 4: gamma = 0.5 e^(-2.5).
                let g = m["gamma"].as_f64().unwrap();
                assert!((g - 0.5 * (-2.5f64).exp()).abs() < 1e-15, "{g}");
                assert_eq!(m["gamma_schedule"]["name"], "exp");
                assert_eq!(m["gamma_schedule"]["gamma_max"], 0.5);
            }
            _ => {
                assert_eq!(
                    (m["gamma"].as_f64(), m["alpha"].as_f64()),
                    (Some(0.7), Some(0.35))
                );
                assert_eq!(m["term_frequency_sha256"], tf_sha.as_str());
            }
        }
    }
}

#[test]
fn shards_do_not_depend_on_threads_or_batch_size() {
    for (name, extra) in [
        (
            "tf-soh",
            vec!["--distribution", "tf-soh", "--gamma-max", "0.5"],
        ),
        (
            "drop-token",
            with_aux(&["--augmentation", "drop-token", "--gamma-max", "0.3"]),
        ),
        (
            "tf-interp",
            with_aux(&["--augmentation", "tf-interp", "--gamma-max", "0.5"]),
        ),
    ] {
        let one = [&extra[..], &["--threads", "1", "--batch-size", "5"]].concat();
        let many = [&extra[..], &["--threads", "2", "--batch-size", "64"]].concat();
        let (o, a) = corrupt(&format!("threads-one-{name}"), 2, &one);
        expect_ok(o);
        let (o, b) = corrupt(&format!("threads-many-{name}"), 2, &many);
        expect_ok(o);
        assert_same_bytes(&a, &b);
        check_rows(&a);
    }
}

#[test]
fn augmentations_at_gamma_zero_are_plain_temperature_one() {
    let (o, plain) = corrupt(
        "zero-temperature",
        0,
        &with_aux(&["--temperature-schedule", "const", "--t0", "1"]),
    );
    expect_ok(o);
    for aug in ["tf-interp", "dropout", "drop-attention", "drop-token"] {
        let (o, dir) = corrupt(
            &format!("zero-{aug}"),
            0,
            &with_aux(&[
                "--augmentation",
                aug,
                "--gamma-max",
                "0",
                "--batch-size",
                "16",
            ]),
        );
        expect_ok(o);
        // Same rows; the files differ only in the settings their metadata records.
        assert_same_rows(&plain, &dir);
        let m = manifest_json(&dir);
        assert_eq!(
            (m["augmentation"].as_str(), m["gamma"].as_f64()),
            (Some(aug), Some(0.0))
        );
    }
}

#[test]
fn augmentations_at_gamma_one_run_at_epoch_zero() {
    // The default --gamma-max 1 makes gamma 1 at epoch 0: dropout drops every hidden state,
    // drop-attention every attention probability, drop-token every unmasked input token,
    // tf-interp samples the term frequencies alone. Each runs and records gamma = 1.
    for aug in ["tf-interp", "dropout", "drop-attention", "drop-token"] {
        let (o, dir) = corrupt(
            &format!("one-{aug}"),
            0,
            &with_aux(&["--augmentation", aug, "--batch-size", "16"]),
        );
        expect_ok(o);
        let pairs = check_rows(&dir);
        assert!(!pairs.is_empty());
        let m = manifest_json(&dir);
        assert_eq!(
            (m["augmentation"].as_str(), m["gamma"].as_f64()),
            (Some(aug), Some(1.0))
        );
    }
}

#[test]
fn augmentations_change_the_samples_and_dropout_is_reproducible() {
    let (o, plain) = corrupt(
        "on-temperature",
        0,
        &with_aux(&["--temperature-schedule", "const", "--t0", "1"]),
    );
    expect_ok(o);
    let plain_ids: Vec<Vec<i32>> = epoch_rows(&plain)
        .into_iter()
        .map(|r| r.input_ids)
        .collect();
    for aug in ["tf-interp", "dropout", "drop-attention", "drop-token"] {
        let extra = with_aux(&[
            "--augmentation",
            aug,
            "--gamma-max",
            "0.5",
            "--batch-size",
            "16",
        ]);
        let (o, dir) = corrupt(&format!("on-{aug}"), 0, &extra);
        expect_ok(o);
        let pairs = check_rows(&dir);
        let ids: Vec<Vec<i32>> = epoch_rows(&dir).into_iter().map(|r| r.input_ids).collect();
        assert_ne!(ids, plain_ids, "{aug} at gamma 0.5 changed nothing");
        let m = manifest_json(&dir);
        assert_eq!(m["temperature"], 1.0);
        if aug == "tf-interp" {
            // TF^gamma: ids never seen in the training split (and special ids) are never drawn.
            let f = fixture();
            assert!(pairs
                .iter()
                .all(|&(_, x)| f.counts[x as usize] > 0 && !SPECIAL.contains(&x)));
        }
        if matches!(aug, "dropout" | "drop-attention") {
            // Masks are seeded per batch: the batch size is part of the settings, and the
            // shards do not depend on the thread count.
            assert_eq!(m["dropout_batch_size"], 16);
            let (o, again) = corrupt(
                &format!("on-{aug}-threads"),
                0,
                &[&extra[..], &["--threads", "2"]].concat(),
            );
            expect_ok(o);
            assert_same_bytes(&dir, &again);
        }
    }
}

/// Copies a token folder's files (not its validation split).
fn copy_tokens(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(&fixture().tokens).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let mut v = manifest_json(dir);
    f(&mut v);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&v).unwrap(),
    )
    .unwrap();
}

#[test]
fn term_frequency_file_errors_and_the_subcommand() {
    let f = fixture();
    let listed = manifest_json(&f.tokens)["term_frequency"].clone();
    assert_eq!(listed["file"], "term_frequency.parquet");
    // A folder made before the counts existed: no file, no manifest field.
    let old = f.root.join("tokens-old");
    copy_tokens(&old);
    std::fs::remove_file(old.join("term_frequency.parquet")).unwrap();
    edit_manifest(&old, |v| {
        v.as_object_mut().unwrap().remove("term_frequency");
    });
    let e = expect_err(
        corrupt(
            "tf-old",
            0,
            &["--tokens", s(&old), "--distribution", "tf-soh"],
        )
        .0,
    );
    assert!(
        e.contains("field term_frequency") && e.contains("preprocess term-frequency --tokens"),
        "{e}"
    );
    // The subcommand makes the same file the tokenizer made.
    let log = expect_ok(preprocess(&["term-frequency", "--tokens", s(&old)]));
    assert!(String::from_utf8_lossy(&log.stderr).contains("tokens counted"));
    assert_eq!(manifest_json(&old)["term_frequency"], listed);
    let (o, dir) = corrupt(
        "tf-old",
        0,
        &["--tokens", s(&old), "--distribution", "term-frequency"],
    );
    expect_ok(o);
    let (o, reference) = corrupt("tf-new", 0, &["--distribution", "term-frequency"]);
    expect_ok(o);
    assert_same_rows(&reference, &dir);

    // A counts file from another token folder: the SHA-256 that differs is named.
    let other = f.root.join("tokens-other");
    expect_ok(preprocess(&[
        "tokenize",
        "--input",
        s(&shared_data().join("corpus/moby-dick.txt")),
        "--tokenizer",
        s(&bert_tokenizer()),
        "--out",
        s(&other),
        "--max-seq-len",
        "32",
    ]));
    let foreign = manifest_json(&other)["term_frequency"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::copy(
        other.join("term_frequency.parquet"),
        old.join("term_frequency.parquet"),
    )
    .unwrap();
    let e = expect_err(
        corrupt(
            "tf-foreign",
            0,
            &["--tokens", s(&old), "--distribution", "tf-soh"],
        )
        .0,
    );
    let expected = listed["sha256"].as_str().unwrap();
    assert!(
        e.contains("term_frequency.parquet: sha256: expected")
            && e.contains(expected)
            && e.contains(&foreign),
        "{e}"
    );
    // Missing.
    std::fs::remove_file(old.join("term_frequency.parquet")).unwrap();
    let e = expect_err(
        corrupt(
            "tf-missing",
            0,
            &[
                "--tokens",
                s(&old),
                "--augmentation",
                "tf-interp",
                "--aux-model",
                s(&f.aux),
            ],
        )
        .0,
    );
    assert!(
        e.contains("term_frequency.parquet") && e.contains("is missing"),
        "{e}"
    );
}

#[test]
fn validation_split_uses_the_training_counts() {
    let f = fixture();
    let (o, dir) = corrupt(
        "validation-tf",
        3,
        &[
            "--tokens",
            s(&f.tokens.join("validation")),
            "--distribution",
            "tf-soh",
        ],
    );
    expect_ok(o);
    let m = manifest_json(&dir);
    assert_eq!(m["split"], "validation");
    assert_eq!(
        m["term_frequency_sha256"],
        manifest_json(&f.tokens)["term_frequency"]["sha256"]
    );
}

#[test]
fn bad_flags_fail_before_any_work() {
    let f = fixture();
    let fails = |extra: &[&str], needles: &[&str]| {
        let (o, dir) = corrupt("bad", 0, extra);
        let e = expect_err(o);
        for n in needles {
            assert!(e.contains(n), "{extra:?}: {n:?} not in {e}");
        }
        assert!(!dir.exists(), "{extra:?}: output created");
    };
    fails(
        &["--distribution", "uniform", "--aux-model", s(&f.aux)],
        &["--aux-model", "unused by --distribution uniform"],
    );
    fails(
        &["--distribution", "unf-soh", "--gamma-max", "1.5"],
        &["--gamma-max", "[0, 1]", "found 1.5"],
    );
    fails(
        &["--distribution", "smoothed-one-hot", "--alpha", "1"],
        &["--alpha", "(0, 1)", "found 1"],
    );
    fails(
        &["--distribution", "uniform", "--augmentation", "dropout"],
        &["--augmentation dropout", "--distribution aux only"],
    );
    fails(&["--distribution", "zipf"], &["--distribution", "zipf"]);
}

#[test]
fn trainer_names_a_different_distribution() {
    let (o, e0) = corrupt("mix", 0, &["--distribution", "uniform"]);
    expect_ok(o);
    let (o, e1) = corrupt("mix", 1, &["--distribution", "smoothed-one-hot"]);
    expect_ok(o);
    let run_dir = fixture().root.join("mix-run");
    let e = expect_err(e2e_tests::run(
        "trainer",
        &[
            "--shards",
            s(&e0),
            s(&e1),
            "--run-dir",
            s(&run_dir),
            "--model",
            "tiny",
            "--device",
            "cpu",
            "--max-steps",
            "1",
        ],
    ));
    assert!(
        e.contains("epoch-001/manifest.json: field distribution")
            && e.contains("\"uniform\"")
            && e.contains("\"smoothed-one-hot\""),
        "{e}"
    );
}
