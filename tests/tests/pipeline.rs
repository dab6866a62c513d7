//! The pipeline of `scripts/demo`, end to end through the real binaries, at tiny scale.
//!
//! Stages 1-3 are the suite's cached fixture `support::fixtures::demo_data` (made once for the
//! whole suite, about a minute on 2 cores): a slice of the shared corpus (16 State of the Union
//! addresses + the first 30 kB of Moby-Dick)
//!   1. `preprocess tokenize` (sequence length 64, a document-level validation split);
//!   2. `trainer --objective mlm` (a tiny masked LM: the auxiliary model);
//!   3. `preprocess --epoch E --temperature-schedule exp` for 3 epochs, and the validation split
//!      once at the last epoch's temperature;
//!
//! and this binary runs the rest once (into its own temporary folder):
//!   4. `trainer --shards data/epoch-*` (tiny discriminator, validated, exported);
//!   5. a second trainer run with another learning rate on the same dumps.
//!
//! Every file under `data/` is hashed (with its mtime) before run 1, before run 2 and after
//! run 2. The tests then check the manifests, equation 2, the replaced fractions, the validation
//! accuracy against the all-"original" baseline, the export in `transformers` against the Rust
//! model, and that the second run read the same shards without writing into them.
//! Needs `cargo build --release --bins` first (scripts/test does it) and `python3` with
//! transformers for the export test (`$PYTHON` overrides).
use e2e_tests::support::data::s;
use e2e_tests::support::files::{read_json as json, snapshot, Snapshot};
use e2e_tests::support::fixtures::{
    demo_data, DemoData, DEMO_EPOCHS as EPOCHS, DEMO_SEQ_LEN as SEQ_LEN, DEMO_T0 as T0,
    DEMO_TAU as TAU,
};
use e2e_tests::support::runs::metrics;
use e2e_tests::{bert_tokenizer, expect_ok, run};
use shared::files::hash::sha256_file;
use shared::format::epoch_shards::EpochRows;
use shared::format::manifest::{read_manifest, EpochManifest, ShardEntry, TokenManifest};
use shared::format::shard_reader::ShardFile;
use shared::format::token_shards::TokenRows;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

const BATCH: u64 = 32;
const BATCH_2: u64 = 16;

struct Pipeline {
    /// Stages 1-3, cached for the suite (read only).
    demo: &'static DemoData,
    /// This binary's folder: `runs/` of stages 4 and 5.
    work: PathBuf,
    before_first: Snapshot,
    before_second: Snapshot,
    after_second: Snapshot,
}

impl Pipeline {
    fn data(&self) -> PathBuf {
        self.demo.data()
    }
    fn tokens(&self) -> PathBuf {
        self.demo.tokens()
    }
    fn epoch(&self, e: u32) -> PathBuf {
        self.demo.epoch(e)
    }
    fn validation(&self) -> PathBuf {
        self.demo.validation()
    }
    fn aux(&self) -> PathBuf {
        self.demo.aux()
    }
    fn run(&self, name: &str) -> PathBuf {
        self.work.join("runs").join(name)
    }
}

/// Runs a binary of the workspace and fails the test with its stderr if it fails.
fn run_ok(bin: &str, args: &[&str]) {
    expect_ok(run(bin, args));
}

/// Equation 2 of docs/design.md, computed here: T = 1 + (T0 - 1) exp(-u / tau), u = epoch / epochs.
fn equation_2(epoch: u32) -> f64 {
    let u = epoch as f64 / EPOCHS as f64;
    1.0 + (T0 - 1.0) * (-u / TAU).exp()
}

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        let demo = demo_data();
        let work = tempfile::tempdir().unwrap().keep();
        let mut timings = vec![];
        let mut stage = |name: &str, f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            let secs = t.elapsed().as_secs_f64();
            eprintln!("pipeline: {name}: {secs:.1} s");
            timings.push((name.to_string(), secs));
        };
        let data = demo.data();
        let runs = work.join("runs");
        let shards = demo.epochs();
        let validation = demo.validation();
        let disc = |name: &str, lr: &str, batch: u64, extra: &[&str]| {
            let mut a = vec!["--shards"];
            a.extend(shards.iter().map(|p| s(p)));
            let run_dir = runs.join(name);
            let batch = batch.to_string();
            let args: Vec<String> = a
                .into_iter()
                .map(String::from)
                .chain(
                    [
                        "--validation",
                        s(&validation),
                        "--model",
                        "tiny",
                        "--run-dir",
                        s(&run_dir),
                        "--batch-size",
                        &batch,
                        "--lr",
                        lr,
                        "--weight-decay",
                        "0",
                        "--validate-every",
                        "100",
                        "--checkpoint-every",
                        "1000",
                        "--log-every",
                        "5",
                        "--device",
                        "cpu",
                    ]
                    .map(String::from),
                )
                .chain(extra.iter().map(|x| x.to_string()))
                .collect();
            run_ok(
                "trainer",
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        };
        let before_first = snapshot(&data);
        stage("4 discriminator", &mut || {
            // Warm-up matters: at 5e-3 after 10 updates the tiny post-LN encoder collapsed to
            // one output for every token (the all-original prior) and never left it.
            let steps = [
                "--warmup-steps",
                "100",
                "--max-steps",
                "300",
                "--repeat-last-epoch",
            ];
            disc("disc-lr1e-3", "1e-3", BATCH, &steps)
        });
        let before_second = snapshot(&data);
        stage("5 second run", &mut || {
            disc("disc-lr5e-4", "5e-4", BATCH_2, &["--warmup-steps", "50"])
        });
        let after_second = snapshot(&data);
        let total: f64 = timings.iter().map(|t| t.1).sum();
        eprintln!("pipeline: stages 4 and 5 took {total:.1} s in all");
        Pipeline {
            demo,
            work,
            before_first,
            before_second,
            after_second,
        }
    })
}

/// Checks a manifest's shard list against the folder: every listed file exists with the listed
/// size, SHA-256 and row count, and the folder holds no other file (nothing half-written).
fn check_shards(dir: &Path, shards: &[ShardEntry], subdirs: &[&str]) {
    assert!(!shards.is_empty(), "{}: no shards", dir.display());
    let mut expected: BTreeSet<String> = shards.iter().map(|e| e.file.clone()).collect();
    expected.insert("manifest.json".into());
    expected.extend(subdirs.iter().map(|d| d.to_string()));
    let found: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(found, expected, "{}: files", dir.display());
    for e in shards {
        let p = dir.join(&e.file);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            e.bytes,
            "{}: bytes",
            p.display()
        );
        assert_eq!(
            sha256_file(&p).unwrap(),
            e.sha256,
            "{}: sha256",
            p.display()
        );
        assert_eq!(
            ShardFile::open(&p).unwrap().num_rows(),
            e.rows,
            "{}: rows",
            p.display()
        );
    }
}

/// Rows of a token folder: (sequence id, document id, token count) per row.
fn token_rows(dir: &Path, m: &TokenManifest) -> Vec<(u64, u64, u64)> {
    let mut out = vec![];
    for e in &m.shards {
        let path = dir.join(&e.file);
        let file = ShardFile::open(&path).unwrap();
        let mut tokens = 0;
        for g in 0..file.num_row_groups() {
            let r = TokenRows::from_batch(&file.read_row_group(g).unwrap(), &path).unwrap();
            for i in 0..r.len() {
                out.push((r.sequence_ids[i], r.doc_ids[i], r.row(i).len() as u64));
                tokens += r.row(i).len() as u64;
            }
        }
        assert_eq!(tokens, e.tokens, "{}: tokens", path.display());
    }
    out
}

/// Every row of an epoch folder, shard by shard.
fn epoch_rows(dir: &Path, m: &EpochManifest) -> Vec<EpochRows> {
    m.shards
        .iter()
        .map(|e| {
            let path = dir.join(&e.file);
            let all = e2e_tests::read_epoch_shard(&path);
            assert_eq!(
                all.num_tokens() as u64,
                e.tokens,
                "{}: tokens",
                path.display()
            );
            all
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(1.0)
}

#[test]
fn every_manifest_is_complete_and_consistent() {
    let p = pipeline();
    let tokenizer_sha = sha256_file(&bert_tokenizer()).unwrap();
    let aux_sha = shared::model::checkpoint_fingerprint(&p.aux()).unwrap();

    // Token folders: both splits, disjoint documents, sums add up.
    let train: TokenManifest = read_manifest(&p.tokens()).unwrap();
    let val: TokenManifest = read_manifest(&p.tokens().join("validation")).unwrap();
    let mut docs = vec![];
    for (dir, m, split, sub) in [
        (p.tokens(), &train, "train", &["validation"][..]),
        (p.tokens().join("validation"), &val, "validation", &[][..]),
    ] {
        assert_eq!((m.kind.as_str(), m.split.as_str()), ("tokens", split));
        assert_eq!(m.tokenizer.sha256, tokenizer_sha);
        assert_eq!(m.max_seq_len, SEQ_LEN);
        // The training split also lists its term-frequency file (data-spec version 2).
        let mut listed: Vec<&str> = sub.to_vec();
        if let Some(tf) = &m.term_frequency {
            assert_eq!(
                split, "train",
                "only the training split lists term frequencies"
            );
            let path = dir.join(&tf.file);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), tf.bytes);
            assert_eq!(sha256_file(&path).unwrap(), tf.sha256, "{}", path.display());
            listed.push(&tf.file);
        }
        check_shards(&dir, &m.shards, &listed);
        let rows = token_rows(&dir, m);
        assert_eq!(rows.len() as u64, m.num_sequences, "{split}: sequences");
        assert_eq!(
            m.shards.iter().map(|e| e.rows).sum::<u64>(),
            m.num_sequences
        );
        assert_eq!(
            rows.iter().map(|r| r.2).sum::<u64>(),
            m.num_tokens,
            "{split}: tokens"
        );
        assert!(rows.iter().all(|r| r.2 <= SEQ_LEN as u64));
        let ids: BTreeSet<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(ids.len(), rows.len(), "{split}: sequence ids are unique");
        docs.push(rows.iter().map(|r| r.1).collect::<BTreeSet<u64>>());
    }
    assert!(!docs[1].is_empty(), "the validation split holds documents");
    assert!(
        docs[0].is_disjoint(&docs[1]),
        "a document is in both splits"
    );
    assert_eq!(train.dataset_fingerprint, val.dataset_fingerprint);
    assert!(
        train.shards.len() >= 2,
        "a slice this size makes several shards of 512 rows"
    );

    // Epoch folders: the same sequences as their token folder, corrupted; counts from the rows.
    let mut folders: Vec<(PathBuf, &TokenManifest, u32)> =
        (0..EPOCHS).map(|e| (p.epoch(e), &train, e)).collect();
    folders.push((p.validation(), &val, EPOCHS - 1));
    for (dir, tm, epoch) in folders {
        let m: EpochManifest = read_manifest(&dir).unwrap();
        let what = dir.display().to_string();
        assert_eq!(
            (m.kind.as_str(), m.corruption.epoch, m.corruption.epochs),
            ("epoch", epoch, EPOCHS),
            "{what}"
        );
        assert_eq!(m.split, tm.split, "{what}");
        assert_eq!(m.tokens_fingerprint, tm.dataset_fingerprint, "{what}");
        assert_eq!(m.tokenizer, tm.tokenizer, "{what}");
        assert_eq!(m.aux_model.sha256, aux_sha, "{what}");
        assert_eq!(m.aux_model.architecture, "ElectraForMaskedLM", "{what}");
        assert_eq!((m.max_seq_len, m.vocab_size), (SEQ_LEN, 30522), "{what}");
        check_shards(&dir, &m.shards, &[]);
        assert_eq!(
            m.shards.len(),
            tm.shards.len(),
            "{what}: one epoch shard per token shard"
        );
        assert_eq!(
            m.shards.iter().map(|e| e.rows).sum::<u64>(),
            m.num_sequences
        );
        assert_eq!(m.num_sequences, tm.num_sequences, "{what}: sequences");
        assert_eq!(m.num_tokens, tm.num_tokens, "{what}: tokens");
        let rows = epoch_rows(&dir, &m);
        let ids: BTreeSet<u64> = rows.iter().flat_map(|r| r.sequence_ids.clone()).collect();
        assert_eq!(
            ids.len() as u64,
            tm.num_sequences,
            "{what}: every sequence once"
        );
        let masked: u64 = rows.iter().map(|r| r.masked_positions.len() as u64).sum();
        let replaced: u64 = rows
            .iter()
            .map(|r| r.targets.iter().filter(|&&t| t == 1).count() as u64)
            .sum();
        assert_eq!(
            (m.num_masked, m.num_replaced),
            (masked, replaced),
            "{what}: counts"
        );
        assert!(close(
            m.report["replaced_fraction_of_masked"],
            replaced as f64 / masked as f64
        ));
        assert!(close(
            m.report["replaced_fraction_of_tokens"],
            replaced as f64 / m.num_tokens as f64
        ));
        // Every shard carries the manifest's settings fingerprint and temperature.
        for e in &m.shards {
            let f = ShardFile::open(&dir.join(&e.file)).unwrap();
            let kv = |k: &str| {
                f.key_value(k)
                    .unwrap_or_else(|| panic!("{what}/{}: {k}", e.file))
            };
            assert_eq!(
                kv("fast_electra.settings_fingerprint"),
                m.settings_fingerprint
            );
            assert_eq!(kv("fast_electra.epoch"), epoch.to_string());
            assert_eq!(
                kv("fast_electra.temperature").parse::<f64>().unwrap(),
                m.corruption.temperature
            );
        }
    }
}

#[test]
fn temperature_follows_equation_2_and_the_replaced_fraction_falls_with_it() {
    let p = pipeline();
    let mut temps = vec![];
    let mut replaced = vec![];
    for e in 0..EPOCHS {
        let m: EpochManifest = read_manifest(&p.epoch(e)).unwrap();
        assert_eq!(
            (
                m.corruption.schedule.name.as_str(),
                m.corruption.schedule.t0,
                m.corruption.schedule.tau
            ),
            ("exp", T0, TAU)
        );
        assert!(
            close(m.corruption.temperature, equation_2(e)),
            "epoch {e}: T = {} in the manifest, equation 2 gives {}",
            m.corruption.temperature,
            equation_2(e)
        );
        temps.push(m.corruption.temperature);
        replaced.push(m.report["replaced_fraction_of_masked"]);
    }
    let v: EpochManifest = read_manifest(&p.validation()).unwrap();
    assert!(close(v.corruption.temperature, equation_2(EPOCHS - 1)));
    assert!(temps.windows(2).all(|w| w[1] < w[0]), "T {temps:?}");
    assert!(
        replaced.windows(2).all(|w| w[1] < w[0]),
        "replaced fraction of masked {replaced:?} at T {temps:?}"
    );
    // The trainer saw the same temperatures, epoch by epoch.
    for run in ["disc-lr1e-3", "disc-lr5e-4"] {
        for line in metrics(&p.run(run), "train") {
            let e = line["epoch"].as_u64().unwrap() as u32;
            let t = line["temperature"].as_f64().unwrap();
            assert!(close(t, equation_2(e)), "{run}: epoch {e} at T {t}");
        }
    }
}

#[test]
fn discriminator_beats_the_all_original_baseline_on_validation() {
    let p = pipeline();
    let run = p.run("disc-lr1e-3");
    let v: EpochManifest = read_manifest(&p.validation()).unwrap();
    let last = metrics(&run, "validation")
        .pop()
        .expect("a validation line");
    let (acc, base) = (
        last["accuracy"].as_f64().unwrap(),
        last["baseline_accuracy"].as_f64().unwrap(),
    );
    // The baseline is 1 - the validation epoch's replaced fraction (all of it was validated).
    assert_eq!(last["rows"].as_u64().unwrap(), v.num_sequences);
    assert_eq!(last["tokens"].as_u64().unwrap(), v.num_tokens);
    assert!(
        close(base, 1.0 - v.num_replaced as f64 / v.num_tokens as f64),
        "{base}"
    );
    assert!(
        acc > base,
        "validation RTD accuracy {acc} vs all-original {base}"
    );
    let train = metrics(&run, "train");
    let (first, end) = (
        train[0]["loss"].as_f64().unwrap(),
        train.last().unwrap()["loss"].as_f64().unwrap(),
    );
    assert!(end < first, "training loss {first} -> {end}");
    for f in [
        "export/config.json",
        "export/model.safetensors",
        "export/tokenizer.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
}

const LOAD_IN_TRANSFORMERS: &str = r#"
import json, sys, torch
from transformers import ElectraForPreTraining
export, rows, out = sys.argv[1:4]
model, info = ElectraForPreTraining.from_pretrained(export, output_loading_info=True)
model.eval()
with torch.no_grad():
    logits = [model(input_ids=torch.tensor([r])).logits[0].tolist() for r in json.load(open(rows))]
json.dump({"class": type(model).__name__,
           "missing": sorted(map(str, info["missing_keys"])),
           "unexpected": sorted(map(str, info["unexpected_keys"])),
           "mismatched": sorted(map(str, info["mismatched_keys"])),
           "logits": logits}, open(out, "w"))
"#;

#[test]
fn export_loads_in_transformers_with_the_rust_models_logits() {
    let p = pipeline();
    let export = p.run("disc-lr1e-3/export");
    // Validation rows of different lengths: Python runs each alone, Rust one padded batch.
    let v: EpochManifest = read_manifest(&p.validation()).unwrap();
    let shard = &epoch_rows(&p.validation(), &v)[0];
    let mut rows: Vec<Vec<i64>> = (0..shard.len())
        .map(|i| shard.row(i).iter().map(|&t| t as i64).collect())
        .collect();
    rows.sort_by_key(|r| r.len());
    let picked: Vec<Vec<i64>> = [0, rows.len() / 2, rows.len() - 1]
        .iter()
        .chain(&[1, 2, 3, 4, 5])
        .map(|&i| rows[i.min(rows.len() - 1)].clone())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (rows_json, out_json) = (dir.path().join("rows.json"), dir.path().join("out.json"));
    std::fs::write(&rows_json, serde_json::to_string(&picked).unwrap()).unwrap();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-c",
            LOAD_IN_TRANSFORMERS,
            s(&export),
            s(&rows_json),
            s(&out_json),
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "{python}: loading the export in transformers failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hf = json(&out_json);
    assert_eq!(hf["class"], "ElectraForPreTraining");
    for k in ["missing", "unexpected", "mismatched"] {
        assert_eq!(hf[k], serde_json::json!([]), "{k} keys");
    }

    // The same rows through the Rust model loaded from the export, padded into one batch.
    let model = shared::model::load_discriminator(&export, tch::Device::Cpu).unwrap();
    let width = picked.iter().map(Vec::len).max().unwrap();
    let mut ids = vec![0i64; picked.len() * width];
    let mut mask = vec![0i64; picked.len() * width];
    for (r, row) in picked.iter().enumerate() {
        ids[r * width..r * width + row.len()].copy_from_slice(row);
        mask[r * width..r * width + row.len()].fill(1);
    }
    let shape = [picked.len() as i64, width as i64];
    let logits = tch::no_grad(|| {
        model.model.forward_t(
            &tch::Tensor::from_slice(&ids).view(shape),
            &tch::Tensor::from_slice(&mask).view(shape),
            false,
        )
    });
    let logits: Vec<Vec<f32>> = Vec::try_from(&logits).unwrap();
    let mut max_diff = 0f64;
    let mut spread = (f64::MAX, f64::MIN);
    for (r, row) in picked.iter().enumerate() {
        let theirs = hf["logits"][r].as_array().unwrap();
        assert_eq!(theirs.len(), row.len(), "row {r}: logits per token");
        for (i, t) in theirs.iter().enumerate() {
            let (a, b) = (logits[r][i] as f64, t.as_f64().unwrap());
            max_diff = max_diff.max((a - b).abs());
            spread = (spread.0.min(a), spread.1.max(a));
        }
    }
    assert!(
        max_diff < 1e-4,
        "Rust and transformers logits differ by {max_diff}"
    );
    // Trained logits are not one constant (which would match trivially).
    assert!(spread.1 - spread.0 > 0.1, "logits span {spread:?}");
}

#[test]
fn second_run_read_the_same_shards_and_wrote_nothing_into_them() {
    let p = pipeline();
    // Nothing under data/ changed: the same files, bytes and modification times.
    assert!(p.before_first.len() > 10, "{} files", p.before_first.len());
    assert_eq!(p.before_first, p.before_second, "run 1 changed data/");
    assert_eq!(p.before_second, p.after_second, "run 2 changed data/");
    assert!(p.after_second.keys().all(|f| f.starts_with(p.data())));

    let epoch_manifests: Vec<EpochManifest> = (0..EPOCHS)
        .map(|e| read_manifest(&p.epoch(e)).unwrap())
        .collect();
    let (first, second) = (
        json(&p.run("disc-lr1e-3/run.json")),
        json(&p.run("disc-lr5e-4/run.json")),
    );
    assert_eq!(
        (first["lr"].as_f64(), second["lr"].as_f64()),
        (Some(1e-3), Some(5e-4))
    );
    // Both runs name the same folders with the same manifests (by SHA-256).
    assert_eq!(first["data"], second["data"]);
    let data = second["data"].as_array().unwrap();
    assert_eq!(data.len() as u32, EPOCHS);
    for (e, d) in data.iter().enumerate() {
        let dir = p.epoch(e as u32);
        assert_eq!(d["dir"].as_str().unwrap(), s(&dir));
        assert_eq!(d["epoch"].as_u64().unwrap(), e as u64);
        assert_eq!(
            d["manifest_sha256"].as_str().unwrap(),
            sha256_file(&dir.join("manifest.json")).unwrap()
        );
    }
    assert_eq!(
        second["validation"]["manifest_sha256"].as_str().unwrap(),
        sha256_file(&p.validation().join("manifest.json")).unwrap()
    );

    // The second run went through every epoch: one pass each, in order, batch by batch.
    let run = p.run("disc-lr5e-4");
    let per_epoch: Vec<u64> = epoch_manifests
        .iter()
        .map(|m| m.num_sequences / BATCH_2)
        .collect();
    let total: u64 = per_epoch.iter().sum();
    assert_eq!(second["total_steps"].as_u64().unwrap(), total);
    let train = metrics(&run, "train");
    assert_eq!(train.last().unwrap()["step"].as_u64().unwrap(), total);
    let mut done = 0;
    for line in &train {
        let step = line["step"].as_u64().unwrap();
        // The epoch of an interval's last micro-batch: the pass that micro-batch fell in.
        let mut e = 0;
        let mut end = per_epoch[0];
        while step > end {
            e += 1;
            end += per_epoch[e];
        }
        assert_eq!(line["epoch"].as_u64().unwrap(), e as u64, "step {step}");
        done = done.max(e + 1);
    }
    assert_eq!(done as u32, EPOCHS, "metrics name every epoch");
    // The final checkpoint's data cursor is at the end of the last pass.
    let ckpt = run.join(format!("checkpoints/step-{total:07}/state.json"));
    let state = json(&ckpt);
    let cursor = &state["cursor"];
    let last_rows = per_epoch[EPOCHS as usize - 1] * BATCH_2;
    // (the last pass, after its last whole micro-batch: the partial one is dropped).
    assert_eq!(
        (cursor["pass"].as_u64(), cursor["row"].as_u64()),
        (Some(EPOCHS as u64 - 1), Some(last_rows)),
        "{}: cursor after {total} updates",
        ckpt.display()
    );
}
