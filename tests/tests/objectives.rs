//! The objectives that corrupt while training, end to end on the suite's cached
//! `demo_data` fixture: `--objective online` (a frozen auxiliary model corrupts inline; its
//! per-epoch rows equal `preprocess`'s dumped epoch byte for byte) and `--objective electra`
//! (generator and discriminator trained jointly); exact resume for both; their bad inputs
//! (another vocabulary, the wrong kind of folder, a missing `--aux-model`). Needs `cargo build --release --bins` first.
use e2e_tests::support::data::s;
use e2e_tests::support::files::{parquet_files, read_json};
use e2e_tests::support::fixtures::{demo_data, save_tiny_aux, DEMO_EPOCHS, DEMO_T0, DEMO_TAU};
use e2e_tests::support::runs::metrics;
use e2e_tests::{expect_err as err, expect_ok as ok, read_epoch_shard, run, stderr};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This test binary's own folder for runs.
fn work() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap().keep())
}

/// `trainer --objective OBJ` on the demo's training tokens (tiny model, CPU, batch 16) into
/// `runs/NAME`, with `extra` flags (which replace the defaults of the same name).
fn train(objective: &str, name: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let d = demo_data();
    let run_dir = work().join("runs").join(name);
    let (tokens, aux) = (d.tokens(), d.aux());
    let mut a: Vec<&str> = vec![
        "--objective",
        objective,
        "--shards",
        s(&tokens),
        "--run-dir",
        s(&run_dir),
    ];
    let mut defaults = vec![
        ("--model", "tiny"),
        ("--batch-size", "16"),
        ("--device", "cpu"),
        ("--warmup-steps", "3"),
        ("--lr", "2e-3"),
    ];
    if objective == "online" {
        defaults.extend([
            ("--aux-model", s(&aux)),
            ("--epochs", "3"),
            ("--t0", "2"),
            ("--tau", "0.5"),
        ]);
    }
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            a.extend([flag, value]);
        }
    }
    a.extend_from_slice(extra);
    let out = run("trainer", &a);
    (run_dir, out)
}

/// (step, loss, generator_loss) of every train line.
fn losses(dir: &Path) -> Vec<(u64, f64, Option<f64>)> {
    metrics(dir, "train")
        .iter()
        .map(|v| {
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["generator_loss"].as_f64(),
            )
        })
        .collect()
}

#[test]
fn online_epoch_rows_equal_the_dumped_epoch_byte_for_byte() {
    // The fixture's epochs are `preprocess --epoch E --epochs 3` (exp, T0 2, tau 0.5, seed 0,
    // mask rate 0.15) of the same tokens with the same auxiliary model.
    assert_eq!((DEMO_EPOCHS, DEMO_T0, DEMO_TAU), (3, 2.0, 0.5));
    let dump = work().join("online-rows.jsonl");
    let (dir, out) = train(
        "online",
        "online-rows",
        &[
            "--max-steps",
            "6",
            "--log-every",
            "3",
            "--checkpoint-every",
            "6",
            "--debug-dump-corrupted",
            s(&dump),
        ],
    );
    ok(out);
    let mut dumped: HashMap<u64, (Vec<i32>, Vec<i8>)> = HashMap::new();
    for shard in parquet_files(&demo_data().epoch(0)) {
        let r = read_epoch_shard(&shard);
        for i in 0..r.len() {
            dumped.insert(
                r.sequence_ids[i],
                (r.row(i).to_vec(), r.targets_row(i).to_vec()),
            );
        }
    }
    let text = std::fs::read_to_string(&dump).unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6 * 16);
    let mut replaced = 0;
    for row in &rows {
        assert_eq!(row["epoch"], 0);
        let id = row["sequence_id"].as_u64().unwrap();
        let (ids, targets) = &dumped[&id];
        let got: Vec<i32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
        let got_t: Vec<i8> = serde_json::from_value(row["targets"].clone()).unwrap();
        assert_eq!(&got, ids, "sequence {id}: input_ids");
        assert_eq!(&got_t, targets, "sequence {id}: targets");
        replaced += got_t.iter().filter(|&&t| t == 1).count();
    }
    assert!(replaced > 0, "some tokens were replaced");
    let train = metrics(&dir, "train");
    assert_eq!(train[0]["temperature"], 2.0);
    let run: Value = read_json(&dir.join("run.json"));
    assert_eq!(run["objective_settings"]["objective"], "online");
    assert!(dir.join("export/model.safetensors").exists());
}

#[test]
fn online_per_update_temperature_falls_within_the_epoch() {
    let (dir, out) = train(
        "online",
        "online-update",
        &[
            "--temperature-per",
            "update",
            "--max-steps",
            "8",
            "--log-every",
            "2",
            "--checkpoint-every",
            "8",
        ],
    );
    ok(out);
    let t: Vec<f64> = metrics(&dir, "train")
        .iter()
        .map(|v| v["temperature"].as_f64().unwrap())
        .collect();
    // u = update / 8 of the interval's last update: 1/8, 3/8, 5/8, 7/8.
    let want: Vec<f64> = [1.0, 3.0, 5.0, 7.0]
        .iter()
        .map(|k| 1.0 + (-(k / 8.0) / 0.5f64).exp())
        .collect();
    for (a, b) in t.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{t:?} vs {want:?}");
    }
}

#[test]
fn electra_generator_learns_and_discriminator_beats_all_original() {
    let d = demo_data();
    let (dir, out) = train(
        "electra",
        "electra",
        &[
            "--max-steps",
            "40",
            "--log-every",
            "5",
            "--checkpoint-every",
            "40",
            "--validate-every",
            "40",
            "--validation",
            s(&d.tokens().join("validation")),
            "--lr",
            "3e-3",
        ],
    );
    let log = stderr(&ok(out));
    assert!(!log.contains("deeper"), "{log}");
    let l = losses(&dir);
    let (first, last) = (l[0].2.unwrap(), l.last().unwrap().2.unwrap());
    assert!(last < first - 0.5, "generator MLM loss {first} -> {last}");
    let v = metrics(&dir, "validation");
    let end = v.last().unwrap();
    let (acc, base) = (
        end["accuracy"].as_f64().unwrap(),
        end["baseline_accuracy"].as_f64().unwrap(),
    );
    // In 40 tiny updates the discriminator ranks replaced tokens well above the all-original
    // baseline (whose constant score has AUC 0.5), and is never less accurate than it.
    let auc = end["auc"].as_f64().unwrap();
    assert!(auc > 0.65, "validation AUC {auc}");
    assert!(
        acc >= base - 1e-9,
        "validation accuracy {acc} vs all-original {base}"
    );
    // Both models exported; the generator is an auxiliary model preprocess accepts.
    let cfg = |m: &str| read_json(&dir.join("export").join(m).join("config.json"));
    assert_eq!(
        cfg("discriminator")["architectures"][0],
        "ElectraForPreTraining"
    );
    assert_eq!(cfg("generator")["architectures"][0], "ElectraForMaskedLM");
    assert_eq!(cfg("generator")["num_hidden_layers"], 1);
    let word = "electra.embeddings.word_embeddings.weight";
    let table = |m: &str| {
        let t = tch::Tensor::read_safetensors(dir.join("export").join(m).join("model.safetensors"))
            .unwrap();
        t.into_iter().find(|(n, _)| n == word).unwrap().1
    };
    assert!(table("discriminator").equal(&table("generator")));
    let gen = dir.join("export/generator");
    let out_dir = work().join("from-generator");
    ok(run(
        "preprocess",
        &[
            "--epoch",
            "0",
            "--epochs",
            "1",
            "--tokens",
            s(&d.tokens().join("validation")),
            "--aux-model",
            s(&gen),
            "--out",
            s(&out_dir),
            "--device",
            "cpu",
        ],
    ));
    assert!(out_dir.join("epoch-000/manifest.json").exists());
}

/// Stops after 6 updates (last checkpoint at 4), resumes, and compares every line with an
/// uninterrupted run.
fn resume_is_exact(objective: &str) {
    let common = [
        "--max-steps",
        "10",
        "--log-every",
        "1",
        "--checkpoint-every",
        "4",
        "--grad-accum",
        "2",
        "--seed",
        "5",
    ];
    let (whole, out) = train(objective, &format!("{objective}-whole"), &common);
    ok(out);
    let mut first = common.to_vec();
    first.extend(["--debug-stop-after", "6"]);
    let name = format!("{objective}-parts");
    ok(train(objective, &name, &first).1);
    let mut again = common.to_vec();
    again.push("--resume");
    let (parts, out) = train(objective, &name, &again);
    ok(out);
    let a = losses(&whole);
    assert_eq!(a.len(), 10);
    assert_eq!(a, losses(&parts));
}

#[test]
fn online_resume_is_exact() {
    resume_is_exact("online");
}

#[test]
fn electra_resume_is_exact() {
    resume_is_exact("electra");
}

#[test]
fn online_and_electra_bad_inputs_get_clear_errors() {
    let d = demo_data();
    // An auxiliary model of another vocabulary.
    let other = work().join("aux-1000");
    save_tiny_aux(&other, 1000, None);
    let (_, out) = train(
        "online",
        "bad-vocab",
        &["--aux-model", s(&other), "--max-steps", "1"],
    );
    let e = err(out);
    assert!(
        e.contains("config.json: field vocab_size: expected 30522") && e.contains("found 1000"),
        "{e}"
    );
    // Objectives on the wrong kind of folder say which folders they take.
    let epoch = d.epoch(0);
    for objective in ["electra", "online"] {
        let mut a = vec![
            "--objective",
            objective,
            "--shards",
            s(&epoch),
            "--device",
            "cpu",
        ];
        let aux = d.aux();
        if objective == "online" {
            a.extend(["--aux-model", s(&aux)]);
        }
        let e = err(run("trainer", &a));
        assert!(
            e.contains(&format!("--objective {objective} reads token folders")),
            "{e}"
        );
    }
    let e = err(run(
        "trainer",
        &[
            "--objective",
            "rtd",
            "--shards",
            s(&d.tokens()),
            "--device",
            "cpu",
        ],
    ));
    assert!(e.contains("--objective rtd reads epoch folders"), "{e}");
    let e = err(run(
        "trainer",
        &["--objective", "online", "--shards", s(&d.tokens())],
    ));
    assert!(
        e.contains("--objective online: expected --aux-model"),
        "{e}"
    );
    // A generator deeper than the discriminator trains, with a warning.
    let (_, out) = train(
        "electra",
        "deep-generator",
        &[
            "--generator-layers",
            "3",
            "--max-steps",
            "1",
            "--checkpoint-every",
            "1",
        ],
    );
    let log = stderr(&ok(out));
    assert!(
        log.contains("--generator-layers 3 is deeper than the discriminator's 2 layers"),
        "{log}"
    );
}
