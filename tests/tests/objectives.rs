//! The objectives that corrupt while training, end to end on the suite's cached
//! `demo_data` fixture: `--objective online` (a frozen auxiliary model corrupts inline; its
//! per-epoch rows equal `preprocess`'s dumped epoch byte for byte) and `--objective electra`
//! (generator and discriminator trained jointly); exact resume for both; their bad inputs
//! (another vocabulary, the wrong kind of folder, a missing `--aux-model`, schedule flags
//! outside fp32, non-finite auxiliary logits). Needs `cargo build --release --bins` first.
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

/// One corrupted row: input ids, targets, masked positions, original ids.
type Row = (Vec<i32>, Vec<i8>, Vec<i32>, Vec<i32>);

/// Every row of a dumped epoch folder by sequence id, all four columns.
fn dumped_rows(dir: &Path) -> HashMap<u64, Row> {
    let mut rows = HashMap::new();
    for shard in parquet_files(dir) {
        let r = read_epoch_shard(&shard);
        for i in 0..r.len() {
            let start = r.mask_offsets[i];
            let end = r.mask_offsets[i + 1];
            rows.insert(
                r.sequence_ids[i],
                (
                    r.row(i).to_vec(),
                    r.targets_row(i).to_vec(),
                    r.masked_positions[start..end].to_vec(),
                    r.original_ids[start..end].to_vec(),
                ),
            );
        }
    }
    rows
}

/// A line of `--debug-dump-corrupted`: (pass, temperature, sequence id, row).
fn online_rows(dump: &Path) -> Vec<(u64, f64, u64, Row)> {
    let text = std::fs::read_to_string(dump).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let ids = |k: &str| -> Vec<i32> { serde_json::from_value(v[k].clone()).unwrap() };
            let targets: Vec<i8> = serde_json::from_value(v["targets"].clone()).unwrap();
            (
                v["epoch"].as_u64().unwrap(),
                v["temperature"].as_f64().unwrap(),
                v["sequence_id"].as_u64().unwrap(),
                (
                    ids("input_ids"),
                    targets,
                    ids("masked_positions"),
                    ids("original_ids"),
                ),
            )
        })
        .collect()
}

/// Asserts that `rows` (online) are byte for byte `reference`'s rows of the same sequences,
/// each sequence once; returns how many tokens were replaced.
fn assert_rows_equal(
    rows: &[&(u64, f64, u64, Row)],
    reference: &HashMap<u64, Row>,
    what: &str,
) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut replaced = 0;
    for (_, _, id, row) in rows {
        assert!(seen.insert(*id), "{what}: sequence {id} twice");
        let want = reference
            .get(id)
            .unwrap_or_else(|| panic!("{what}: sequence {id} is not in the dump"));
        assert_eq!(&row.0, &want.0, "{what}: sequence {id}: input_ids");
        assert_eq!(&row.1, &want.1, "{what}: sequence {id}: targets");
        assert_eq!(&row.2, &want.2, "{what}: sequence {id}: masked positions");
        assert_eq!(&row.3, &want.3, "{what}: sequence {id}: original ids");
        assert!(!row.2.is_empty(), "{what}: sequence {id}: nothing masked");
        replaced += row.1.iter().filter(|&&t| t == 1).count();
    }
    replaced
}

#[test]
fn online_rows_equal_the_dumped_epochs_at_every_epoch() {
    // The fixture's epochs are `preprocess --epoch E --epochs 3` (exp, T0 2, tau 0.5, seed 0,
    // mask rate 0.15) of the same tokens with the same auxiliary model: T = 2, 1.51, 1.26.
    assert_eq!((DEMO_EPOCHS, DEMO_T0, DEMO_TAU), (3, 2.0, 0.5));
    let d = demo_data();
    let sequences = read_json(&d.tokens().join("manifest.json"))["num_sequences"]
        .as_u64()
        .unwrap();
    // Three whole passes over the token folder (its last partial micro-batch is dropped).
    let per_pass = sequences / 16;
    let steps = (3 * per_pass).to_string();
    let dump = work().join("online-epochs.jsonl");
    let (dir, out) = train(
        "online",
        "online-epochs",
        &[
            "--max-steps",
            &steps,
            "--repeat-last-epoch",
            "--log-every",
            &per_pass.to_string(),
            "--checkpoint-every",
            &steps,
            "--debug-dump-corrupted",
            s(&dump),
        ],
    );
    ok(out);
    let rows = online_rows(&dump);
    assert_eq!(rows.len() as u64, 3 * per_pass * 16, "rows dumped");
    let train = metrics(&dir, "train");
    assert_eq!(train.len(), 3, "one metrics line per pass");
    for e in 0..DEMO_EPOCHS {
        let manifest = read_json(&d.epoch(e).join("manifest.json"));
        let t = manifest["temperature"].as_f64().unwrap();
        let pass: Vec<_> = rows.iter().filter(|r| r.0 == e as u64).collect();
        assert_eq!(pass.len() as u64, per_pass * 16, "pass {e}");
        assert!(pass.iter().all(|r| r.1 == t), "pass {e}: temperature {t}");
        let replaced = assert_rows_equal(&pass, &dumped_rows(&d.epoch(e)), &format!("epoch {e}"));
        assert!(replaced > 0, "epoch {e}: some tokens were replaced");
        // The pass's metrics line reports the dumped epoch's temperature.
        assert_eq!(
            train[e as usize]["temperature"].as_f64(),
            Some(t),
            "pass {e}"
        );
    }
    let run: Value = read_json(&dir.join("run.json"));
    assert_eq!(run["objective_settings"]["objective"], "online");
    assert!(dir.join("export/model.safetensors").exists());
}

#[test]
fn online_per_update_temperature_falls_within_the_epoch() {
    let dump = work().join("online-update.jsonl");
    let (dir, out) = train(
        "online",
        "online-update",
        &[
            "--temperature-per",
            "update",
            "--max-steps",
            "8",
            "--log-every",
            "1",
            "--checkpoint-every",
            "8",
            "--debug-dump-corrupted",
            s(&dump),
        ],
    );
    ok(out);
    let t: Vec<f64> = metrics(&dir, "train")
        .iter()
        .map(|v| v["temperature"].as_f64().unwrap())
        .collect();
    // u = update / 8 of the update in progress: 0, 1/8, ..., 7/8.
    let want: Vec<f64> = (0..8)
        .map(|k| 1.0 + (-(k as f64 / 8.0) / 0.5f64).exp())
        .collect();
    assert_eq!(t.len(), want.len(), "{t:?}");
    for (a, b) in t.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{t:?} vs {want:?}");
    }
    // The rows of update 4 (u = 3/8) are `preprocess`'s rows of epoch 0 at the same T.
    let rows = online_rows(&dump);
    assert_eq!(rows.len(), 8 * 16);
    let at = t[3];
    let update: Vec<_> = rows.iter().filter(|r| r.1 == at).collect();
    assert_eq!(update.len(), 16, "rows drawn at T = {at}");
    let out_dir = work().join("at-update-4");
    let d = demo_data();
    ok(run(
        "preprocess",
        &[
            "--epoch",
            "0",
            "--epochs",
            "3",
            "--temperature-schedule",
            "const",
            "--t0",
            &at.to_string(),
            "--tokens",
            s(&d.tokens()),
            "--aux-model",
            s(&d.aux()),
            "--out",
            s(&out_dir),
            "--device",
            "cpu",
            "--batch-size",
            "64",
        ],
    ));
    let epoch = out_dir.join("epoch-000");
    assert_eq!(
        read_json(&epoch.join("manifest.json"))["temperature"].as_f64(),
        Some(at)
    );
    let replaced = assert_rows_equal(
        &update,
        &dumped_rows(&epoch),
        &format!("update 4, T = {at}"),
    );
    assert!(replaced > 0);
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
    // One embedding table, trained by both losses and checkpointed once: the two exported
    // files hold the same bytes for it, and so does the checkpoint's single copy (the
    // checkpoint holds no generator table of its own).
    let word = "electra.embeddings.word_embeddings.weight";
    let exported = |m: &str| tensor_bytes(&dir.join("export").join(m).join("model.safetensors"));
    let (disc, gen) = (exported("discriminator"), exported("generator"));
    assert_eq!(disc[word].0, [30522, 64]);
    assert!(disc[word] == gen[word], "the exported tables differ");
    let ckpt = tensor_bytes(&dir.join("checkpoints/step-0000040/model.safetensors"));
    assert!(ckpt[&format!("discriminator.{word}")] == disc[word]);
    let tables: Vec<&String> = ckpt
        .keys()
        .filter(|n| n.ends_with("word_embeddings.weight"))
        .collect();
    assert_eq!(tables, [&format!("discriminator.{word}")]);
    // The generator's own layers are its own: not the discriminator's first layer.
    let layer = "electra.encoder.layer.0.attention.self.query.weight";
    assert!(disc[layer] != gen[layer]);
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

/// Every tensor of a safetensors file as stored: name -> (shape, raw bytes), read from the file
/// itself (its JSON header and data), not through a tensor library.
fn tensor_bytes(path: &Path) -> HashMap<String, (Vec<u64>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, v)| {
            let shape = serde_json::from_value(v["shape"].clone()).unwrap();
            let [a, b]: [usize; 2] = serde_json::from_value(v["data_offsets"].clone()).unwrap();
            (name.clone(), (shape, data[a..b].to_vec()))
        })
        .collect()
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
    // The schedule's flags outside fp32's range are refused by name before any work.
    for (flag, v) in [("--t0", "1e39"), ("--tau", "1e-45"), ("--k", "4e38")] {
        let (dir, out) = train("online", "bad-fp32", &[flag, v, "--max-steps", "1"]);
        let e = err(out);
        assert!(
            e.contains(&format!(
                "{flag}: expected a positive number within fp32's range"
            )),
            "{e}"
        );
        assert!(!dir.exists(), "nothing written");
    }
    // Auxiliary logits holding a NaN: an error naming the sequence and the position, which is
    // a masked position of that sequence (the dumped epoch 0 masks with the same keys).
    let nan = work().join("aux-nan");
    save_tiny_aux(&nan, 30522, None);
    let weights = nan.join("model.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(&weights).unwrap();
    let (_, bias) = tensors
        .iter_mut()
        .find(|(n, t)| n.ends_with("lm_head.bias") && t.size() == [30522])
        .expect("the decoder bias");
    let _ = bias.get(1000).fill_(f64::NAN);
    tch::Tensor::write_safetensors(&tensors, &weights).unwrap();
    let (_, out) = train(
        "online",
        "nan-aux",
        &["--aux-model", s(&nan), "--max-steps", "2"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(!e.contains("panicked") && e.contains("found NaN"), "{e}");
    let words: Vec<&str> = e
        .split("the auxiliary model's logits at sequence_id ")
        .nth(1)
        .unwrap_or_else(|| panic!("no sequence named: {e}"))
        .split_whitespace()
        .collect();
    assert_eq!(words[1], "position", "{e}");
    let (id, pos): (u64, i32) = (words[0].parse().unwrap(), words[2].parse().unwrap());
    let masked = &dumped_rows(&d.epoch(0))[&id].2;
    assert!(
        masked.contains(&pos),
        "sequence {id}: position {pos} is not masked ({masked:?})"
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
