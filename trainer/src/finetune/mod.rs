//! `trainer finetune`: is a pre-trained model any good? Fine-tunes encoders on a sentence or
//! sentence-pair task (GLUE, this project's `mr`, any file) with transformers'
//! `ElectraForSequenceClassification` head, over a grid of hyper-parameters and seeds, and
//! ranks the models by the task's dev metric (docs/finetune.md).
//!
//! - [`task`]: the tasks, their files in every layout, their metrics and submission files;
//! - [`source`]: what `--model` names (run, checkpoint, Hugging Face folder, preset);
//! - [`model`]: the encoder with the classification head, and its export;
//! - [`encode`]: examples to padded batches; [`train`]: one run; [`results`]: records, the
//!   summary over seeds, the table; this file: the command, top to bottom.
pub mod encode;
pub mod model;
pub mod results;
pub mod source;
pub mod task;
pub mod train;

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::commands::finetune::FinetuneArgs;
use results::{RunKey, RunRecord};
use source::{Init, Source};
use train::{Data, Fixed, Recipe};

/// The best single run so far, exported under `OUT/best/`.
const BEST: &str = "best";

/// Checks the flags that need no file.
fn check(a: &FinetuneArgs) -> anyhow::Result<()> {
    let positive = |flag: &str, ok: bool, found: String| -> anyhow::Result<()> {
        if !ok {
            bail!("{flag}: expected positive numbers, found {found}");
        }
        Ok(())
    };
    positive(
        "--lr",
        a.lr.iter().all(|&v| v.is_finite() && v > 0.0),
        format!("{:?}", a.lr),
    )?;
    positive(
        "--epochs",
        a.epochs.iter().all(|&v| v > 0),
        format!("{:?}", a.epochs),
    )?;
    positive(
        "--batch-size",
        a.batch_size.iter().all(|&v| v > 0),
        format!("{:?}", a.batch_size),
    )?;
    positive("--seeds", a.seeds > 0, a.seeds.to_string())?;
    if a.weight_decay.iter().any(|&v| !(v.is_finite() && v >= 0.0)) {
        bail!(
            "--weight-decay: expected numbers >= 0, found {:?}",
            a.weight_decay
        );
    }
    if a.warmup_proportion
        .iter()
        .any(|&v| !(0.0..=1.0).contains(&v))
    {
        bail!(
            "--warmup-proportion: expected numbers in [0, 1], found {:?}",
            a.warmup_proportion
        );
    }
    if !(0.0..1.0).contains(&a.dropout) {
        bail!(
            "--dropout: expected a probability in [0, 1), found {}",
            a.dropout
        );
    }
    if !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) {
        bail!(
            "--beta1, --beta2: expected numbers in [0, 1), found {} and {}",
            a.beta1,
            a.beta2
        );
    }
    let eps_ok = a.eps.is_finite() && a.eps > 0.0;
    if !(eps_ok && a.clip_norm.is_finite() && a.clip_norm >= 0.0) {
        bail!(
            "--eps must be positive and --clip-norm >= 0, found {} and {}",
            a.eps,
            a.clip_norm
        );
    }
    if a.max_seq_len < 3 {
        bail!(
            "--max-seq-len: expected at least 3, found {}",
            a.max_seq_len
        );
    }
    Ok(())
}

/// Every point of the grid, in flag order (lr varies fastest).
fn grid(a: &FinetuneArgs) -> Vec<Recipe> {
    let mut out = vec![];
    for &epochs in &a.epochs {
        for &batch_size in &a.batch_size {
            for &weight_decay in &a.weight_decay {
                for &warmup_proportion in &a.warmup_proportion {
                    for &lr in &a.lr {
                        out.push(Recipe {
                            lr,
                            epochs,
                            batch_size,
                            weight_decay,
                            warmup_proportion,
                        });
                    }
                }
            }
        }
    }
    out
}

/// SHA-256 over the task's files, in split order.
fn task_fingerprint(t: &task::Task) -> anyhow::Result<String> {
    let mut all = String::new();
    for s in std::iter::once(&t.train).chain(&t.dev).chain(&t.test) {
        for f in &s.files {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            all += &shared::files::hash::sha256_hex(&bytes);
        }
    }
    Ok(shared::files::hash::sha256_hex(all.as_bytes()))
}

/// The default results folder: a new `finetune/<task>-<UTC time>` (`-2`, `-3`, ... if taken).
fn default_out(task: &str) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("{task}-{}", crate::outputs::run_dir::utc_stamp(secs));
    crate::outputs::run_dir::create_unique(Path::new("finetune"), &name)
}

/// A tokenizer and the task encoded with it.
struct Encoded {
    tokenizer: shared::tokenizer::LoadedTokenizer,
    sha256: String,
    train: Vec<encode::Encoded>,
    dev: Vec<Vec<encode::Encoded>>,
    test: Vec<Vec<encode::Encoded>>,
}

fn encode_task(path: &Path, t: &task::Task, max_len: usize) -> anyhow::Result<Encoded> {
    let tokenizer = shared::tokenizer::load_tokenizer(path)?;
    let split = |s: &task::Split| {
        let what = format!("task {} split {}", t.name, s.name);
        encode::encode(&tokenizer, &s.examples, max_len, &what)
    };
    Ok(Encoded {
        sha256: tokenizer.info.sha256.clone(),
        train: split(&t.train)?,
        dev: t.dev.iter().map(split).collect::<anyhow::Result<_>>()?,
        test: t.test.iter().map(split).collect::<anyhow::Result<_>>()?,
        tokenizer,
    })
}

/// Runs `trainer finetune` (flags in [`crate::commands::finetune`]).
pub fn run(a: &FinetuneArgs) -> anyhow::Result<()> {
    check(a)?;
    let device = shared::runtime::device::parse_device(&a.device)
        .map_err(|e| anyhow::anyhow!("--device: {e:#}"))?;
    let task = a.task.load()?;
    let task_sha256 = task_fingerprint(&task)?;
    let fixed = Fixed {
        optimizer: a.optimizer,
        beta1: a.beta1,
        beta2: a.beta2,
        eps: a.eps,
        clip_norm: a.clip_norm,
        dropout: a.dropout,
        max_seq_len: a.max_seq_len,
    };
    let vocab = |p: &Path| -> anyhow::Result<i64> {
        Ok(shared::tokenizer::load_tokenizer(p)?.info.vocab_size as i64)
    };
    let mut sources: Vec<Source> = vec![];
    for m in &a.model {
        for &init in &a.init {
            let mut s = source::resolve(m, init, a.tokenizer.as_deref(), &vocab)?;
            let cfg = &mut s.choice.config;
            cfg.hidden_dropout_prob = a.dropout;
            cfg.attention_probs_dropout_prob = a.dropout;
            cfg.extra.remove("classifier_dropout");
            if cfg.max_position_embeddings < a.max_seq_len as i64 {
                bail!(
                    "--max-seq-len {}: --model {m} has {} positions",
                    a.max_seq_len,
                    cfg.max_position_embeddings
                );
            }
            sources.push(s);
        }
    }
    let out = match &a.out {
        Some(o) => o.clone(),
        None => default_out(&task.name)?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let _lock = shared::files::lock::FolderLock::folder(&out, "trainer finetune")?;
    eprintln!("finetune: results in {}", out.display());
    let mut encodings: HashMap<PathBuf, Encoded> = HashMap::new();
    for s in &sources {
        if !encodings.contains_key(&s.tokenizer) {
            encodings.insert(
                s.tokenizer.clone(),
                encode_task(&s.tokenizer, &task, a.max_seq_len)?,
            );
        }
        let e = &encodings[&s.tokenizer];
        if e.tokenizer.info.vocab_size as i64 != s.choice.config.vocab_size {
            bail!(
                "--model {}: vocab_size {} differs from the tokenizer {}'s {}",
                s.given,
                s.choice.config.vocab_size,
                s.tokenizer.display(),
                e.tokenizer.info.vocab_size
            );
        }
    }
    let tensorboard = match (&a.tensorboard_dir, a.no_tensorboard) {
        (_, true) => None,
        (Some(dir), false) => Some(dir.clone()),
        (None, false) => Some(out.join("tensorboard")),
    };
    let recipes = grid(a);
    let total = sources.len() * recipes.len() * a.seeds as usize;
    let mut records: Vec<RunRecord> = vec![];
    let mut best = read_best(&out)?;
    let mut k = 0;
    for s in &sources {
        let e = &encodings[&s.tokenizer];
        let data = Data {
            task: &task,
            train: e.train.clone(),
            dev: task.dev.iter().zip(e.dev.iter().cloned()).collect(),
            pad_id: e.tokenizer.info.special_tokens.pad as i64,
        };
        for recipe in &recipes {
            for seed in 0..a.seeds {
                k += 1;
                let key = RunKey {
                    task: task.name.clone(),
                    task_sha256: task_sha256.clone(),
                    model_sha256: s.fingerprint.clone(),
                    init: if matches!(s.choice.weights, model::Weights::Random) {
                        Init::Random
                    } else {
                        Init::Pretrained
                    },
                    tokenizer_sha256: e.sha256.clone(),
                    recipe: *recipe,
                    seed,
                    fixed: fixed.clone(),
                };
                let what = format!(
                    "[{k}/{total}] {} lr {:e} epochs {} batch {} seed {seed}",
                    s.label, recipe.lr, recipe.epochs, recipe.batch_size
                );
                if let Some(r) = results::read(&out, &key)? {
                    eprintln!("finetune: {what}: done before ({:.4})", r.score);
                    records.push(r);
                    continue;
                }
                let events = tensorboard.as_ref().map(|dir| {
                    dir.join(tensorboard_name(&s.label))
                        .join(tensorboard_run(recipe, seed, &key))
                });
                let o = train::finetune(
                    &s.choice,
                    &data,
                    recipe,
                    seed,
                    &fixed,
                    &train::RunIo {
                        device,
                        what: &what,
                        tensorboard: events.as_deref(),
                    },
                )?;
                let score = o
                    .epochs
                    .last()
                    .map(|ep| ep.dev.main)
                    .context("a run has at least one epoch")?;
                let record = RunRecord {
                    key,
                    model: s.label.clone(),
                    pretrain_updates: s.pretrain_updates,
                    epochs: o.epochs.clone(),
                    score,
                    seconds: o.seconds,
                    train_examples_per_s: o.train_examples_per_s,
                };
                eprintln!(
                    "finetune: {what}: dev {} {score:.4} ({:.1} s, {:.0} train examples/s)",
                    task.metric.main_name(),
                    o.seconds,
                    o.train_examples_per_s
                );
                results::write(&out, &record)?;
                if best.as_ref().is_none_or(|b| score > b.score) {
                    save_best(&out, &o.model, &task, e, &record, a.predict, device)?;
                    best = Some(record.clone());
                }
                records.push(record);
            }
        }
    }
    report(&out, &task, &records, a.seeds as usize, best.as_ref())
}

/// A model's TensorBoard folder: its label, path separators and spaces replaced (`disc`,
/// `disc-random`, `run_step-500`).
fn tensorboard_name(label: &str) -> String {
    label
        .replace(" (random init)", "-random")
        .replace(['/', '\\', ' '], "_")
}

/// A run's TensorBoard folder inside its model's: the grid point, the seed and 8 hex digits of
/// the run's key (two commands with other fixed settings never share a folder).
fn tensorboard_run(r: &Recipe, seed: u64, key: &RunKey) -> String {
    let hash = key.file_name().unwrap_or_default();
    format!(
        "lr{:e}-ep{}-bs{}-wd{}-wu{}-seed{seed}-{}",
        r.lr,
        r.epochs,
        r.batch_size,
        r.weight_decay,
        r.warmup_proportion,
        hash.get(..8).unwrap_or("")
    )
}

/// The record of the run exported under `OUT/best/`, if any.
fn read_best(out: &Path) -> anyhow::Result<Option<RunRecord>> {
    let path = out.join(BEST).join("run.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{}: unexpected contents", path.display()))
}

/// Exports `model` as the best so far: `OUT/best/` (an `ElectraForSequenceClassification`
/// folder with tokenizer.json, its run record, and with `--predict` the logits of every dev
/// and test example and the test split's submission file),
/// built beside it and renamed into place.
fn save_best(
    out: &Path,
    model: &model::Classifier,
    task: &task::Task,
    e: &Encoded,
    record: &RunRecord,
    predict: bool,
    device: tch::Device,
) -> anyhow::Result<()> {
    let tmp = out.join(format!(".{BEST}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    model::save(model, task.labels().unwrap_or_default(), &tmp)?;
    std::fs::copy(&e.tokenizer.info.path, tmp.join("tokenizer.json"))
        .with_context(|| format!("copying {} into {}", e.tokenizer.info.path, tmp.display()))?;
    if predict {
        let dir = tmp.join("predictions");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pad = e.tokenizer.info.special_tokens.pad as i64;
        let splits = task
            .dev
            .iter()
            .zip(&e.dev)
            .chain(task.test.iter().zip(&e.test));
        for (k, (split, encoded)) in splits.enumerate() {
            let z = train::logits(model, encoded, &split.examples, pad, 64, device)?;
            write_logits(&dir.join(format!("{}.logits.jsonl", split.name)), split, &z)?;
            if k >= task.dev.len() {
                let preds: Vec<_> = z
                    .iter()
                    .map(|z| train::prediction(model.output, z))
                    .collect();
                let file = dir.join(task::submission_file_name(task, split));
                task::write_submission(task, split, &preds, &file)?;
            }
        }
    }
    shared::files::atomic::write_json_atomic(&tmp.join("run.json"), record)?;
    let dest = out.join(BEST);
    let old = out.join(format!(".{BEST}.old"));
    if dest.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dest, &old).with_context(|| format!("moving {} aside", dest.display()))?;
    }
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming into {}", dest.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Writes a split's logits, one JSON line per example in file order: `{"id", "logits"}`.
fn write_logits(path: &Path, split: &task::Split, logits: &[Vec<f32>]) -> anyhow::Result<()> {
    let mut text = String::new();
    for (example, z) in split.examples.iter().zip(logits) {
        text += &serde_json::json!({ "id": example.id, "logits": z }).to_string();
        text.push('\n');
    }
    shared::files::atomic::write_atomic(path, text.as_bytes())
}

/// Writes `results.json`, `results.md` and the plots, and prints the table.
fn report(
    out: &Path,
    task: &task::Task,
    records: &[RunRecord],
    seeds: usize,
    best: Option<&RunRecord>,
) -> anyhow::Result<()> {
    let points = results::points(records);
    let ranked = results::best_per_model(&points);
    let metric = task.metric.main_name();
    let json = serde_json::json!({
        "task": task.record(),
        "metric": metric,
        "seeds": seeds,
        "runs": records,
        "points": points,
        "best_per_model": ranked,
        "best_run": best,
    });
    shared::files::atomic::write_json_atomic(&out.join(results::RESULTS_JSON), &json)?;
    let md = results::markdown(&task.name, metric, &ranked, seeds);
    shared::files::atomic::write_atomic(&out.join(results::RESULTS_MD), md.as_bytes())?;
    results::plot(
        &out.join(results::PLOT),
        &task.name,
        metric,
        &ranked,
        records,
    )?;
    println!("{md}");
    Ok(())
}
