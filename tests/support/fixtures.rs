//! The fixtures of the end-to-end tests, each made once for the whole suite and cached on disk
//! ([`super::cache`]): read them, never write into them.
//! - [`demo_data`]: the demo's stages 1-3 at tiny scale (tokens with a validation split, a tiny
//!   auxiliary model trained with `trainer --objective mlm`, three corrupted epochs and the
//!   validation epoch), for every test that trains or reads epochs (`pipeline.rs`, `trainer.rs`).
//! - [`moby_tokens`]: four small token shards of Moby-Dick and a tiny random auxiliary model
//!   that favours the slice's most frequent token, for the corruption tests (`corrupt.rs`).
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use super::binaries::{expect_ok, run};
use super::cache::{cached_dir, Key};
use super::corpus::{moby_dick_prefix, write_sotu};
use super::data::{bert_tokenizer, s};
use shared::model::{save_pretrained, Architecture, MaskedLm, ModelConfig};

/// Epochs of [`demo_data`].
pub const DEMO_EPOCHS: u32 = 3;
/// T0 of [`demo_data`]'s exp schedule.
pub const DEMO_T0: f64 = 2.0;
/// Its decay constant: with only 3 epochs, tau = 0.1 would put T within 0.04 of 1 after the first
/// epoch, too close to tell replaced fractions apart on a slice this small.
pub const DEMO_TAU: f64 = 0.5;
/// Sequence length of [`demo_data`].
pub const DEMO_SEQ_LEN: u32 = 64;

/// The demo's data at tiny scale, as `scripts/demo` lays it out under its root.
pub struct DemoData {
    pub root: PathBuf,
}

impl DemoData {
    /// `corpus/`: the first 16 State of the Union addresses and the first 30 kB of Moby-Dick
    /// (17 documents; about 730 training rows at length 64: more than one shard of 512 rows, and
    /// fewer than 50 updates of 16 rows).
    pub fn corpus(&self) -> PathBuf {
        self.root.join("corpus")
    }
    /// `data/`: everything `preprocess` wrote.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    /// `data/tokens`: `preprocess tokenize --max-seq-len 64 --validation-fraction 0.15
    /// --row-group-rows 128 --rows-per-shard 512`; the split in `data/tokens/validation`.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("data/tokens")
    }
    /// `runs/aux-mlm`: the auxiliary model's `trainer --objective mlm` run (tiny, 60 updates).
    pub fn aux_run(&self) -> PathBuf {
        self.root.join("runs/aux-mlm")
    }
    /// `runs/aux-mlm/export`: the auxiliary model (`ElectraForMaskedLM`).
    pub fn aux(&self) -> PathBuf {
        self.aux_run().join("export")
    }
    /// `data/epoch-00E`: epoch `e` of [`DEMO_EPOCHS`], exp schedule ([`DEMO_T0`], [`DEMO_TAU`]).
    pub fn epoch(&self, e: u32) -> PathBuf {
        self.root.join(format!("data/epoch-{e:03}"))
    }
    /// Every epoch folder, in order.
    pub fn epochs(&self) -> Vec<PathBuf> {
        (0..DEMO_EPOCHS).map(|e| self.epoch(e)).collect()
    }
    /// `data/validation/epoch-002`: the validation split at the last epoch's temperature.
    pub fn validation(&self) -> PathBuf {
        self.root
            .join(format!("data/validation/epoch-{:03}", DEMO_EPOCHS - 1))
    }
}

/// Runs a binary of the workspace and fails with its stderr if it fails.
fn run_ok(bin: &str, args: &[&str]) {
    expect_ok(run(bin, args));
}

/// Times one stage of a fixture on stderr.
fn stage(name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    eprintln!("fixture: {name}: {:.1} s", t.elapsed().as_secs_f64());
}

/// Makes [`DemoData`] in `root`: stages 1-3 of `scripts/demo` with tiny settings.
fn make_demo_data(root: &Path) {
    let d = DemoData {
        root: root.to_path_buf(),
    };
    let corpus = d.corpus();
    std::fs::create_dir_all(&corpus).unwrap();
    write_sotu(&corpus, 16);
    std::fs::write(corpus.join("moby-dick-30k.txt"), moby_dick_prefix(30_000)).unwrap();
    let (tokens, data) = (d.tokens(), d.data());
    stage("demo data: 1 tokenize", || {
        run_ok(
            "preprocess",
            &[
                "tokenize",
                "--input",
                s(&corpus),
                "--tokenizer",
                s(&bert_tokenizer()),
                "--out",
                s(&tokens),
                "--max-seq-len",
                &DEMO_SEQ_LEN.to_string(),
                "--validation-fraction",
                "0.15",
                "--row-group-rows",
                "128",
                "--rows-per-shard",
                "512",
            ],
        )
    });
    stage("demo data: 2 auxiliary masked LM", || {
        run_ok(
            "trainer",
            &[
                "--objective",
                "mlm",
                "--shards",
                s(&tokens),
                "--validation",
                s(&tokens.join("validation")),
                "--model",
                "tiny",
                "--run-dir",
                s(&d.aux_run()),
                "--max-steps",
                "60",
                "--batch-size",
                "16",
                "--lr",
                "3e-3",
                "--warmup-steps",
                "6",
                "--validate-every",
                "60",
                "--checkpoint-every",
                "60",
                "--log-every",
                "20",
                "--device",
                "cpu",
                "--repeat-last-epoch",
            ],
        )
    });
    stage("demo data: 3 corrupt", || {
        let last = (DEMO_EPOCHS - 1).to_string();
        let mut jobs: Vec<(String, PathBuf, PathBuf)> = (0..DEMO_EPOCHS)
            .map(|e| (e.to_string(), tokens.clone(), data.clone()))
            .collect();
        jobs.push((last, tokens.join("validation"), data.join("validation")));
        for (e, toks, out) in &jobs {
            run_ok(
                "preprocess",
                &[
                    "--epoch",
                    e,
                    "--epochs",
                    &DEMO_EPOCHS.to_string(),
                    "--temperature-schedule",
                    "exp",
                    "--t0",
                    &DEMO_T0.to_string(),
                    "--tau",
                    &DEMO_TAU.to_string(),
                    "--tokens",
                    s(toks),
                    "--aux-model",
                    s(&d.aux()),
                    "--out",
                    s(out),
                    "--device",
                    "cpu",
                    "--batch-size",
                    "64",
                ],
            );
        }
    });
}

/// [`DemoData`], made once for the suite (about a minute on 2 cores) and cached on disk.
pub fn demo_data() -> &'static DemoData {
    static D: OnceLock<DemoData> = OnceLock::new();
    D.get_or_init(|| {
        let key = Key::new(include_str!("fixtures.rs"))
            .file(&bert_tokenizer())
            .text(&moby_dick_prefix(30_000))
            .text(&super::corpus::sotu_lines(16).join("\n"))
            .binary("preprocess")
            .binary("trainer");
        DemoData {
            root: cached_dir("demo-data", key, make_demo_data),
        }
    })
}

/// Token ids the corruption never touches ([PAD], [CLS], [SEP], [MASK] of the BERT vocabulary).
pub const SPECIAL: [i32; 4] = [0, 101, 102, 103];

/// Four token shards of Moby-Dick and a tiny random auxiliary model favouring its mode.
pub struct MobyTokens {
    pub root: PathBuf,
}

impl MobyTokens {
    /// `slice.txt`: the first 60 kB of Moby-Dick (one document).
    pub fn corpus(&self) -> PathBuf {
        self.root.join("slice.txt")
    }
    /// `tokens/`: `preprocess tokenize --max-seq-len 64 --rows-per-shard 64 --row-group-rows
    /// 16` of the slice: four shards.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens")
    }
    /// `aux/`: [`save_tiny_aux`] favouring the slice's most frequent non-special token.
    pub fn aux(&self) -> PathBuf {
        self.root.join("aux")
    }
}

fn make_moby_tokens(root: &Path) {
    let f = MobyTokens {
        root: root.to_path_buf(),
    };
    std::fs::write(f.corpus(), moby_dick_prefix(60_000)).unwrap();
    run_ok(
        "preprocess",
        &[
            "tokenize",
            "--input",
            s(&f.corpus()),
            "--tokenizer",
            s(&bert_tokenizer()),
            "--out",
            s(&f.tokens()),
            "--max-seq-len",
            "64",
            "--rows-per-shard",
            "64",
            "--row-group-rows",
            "16",
        ],
    );
    let mut counts = std::collections::HashMap::<i32, usize>::new();
    for ids in super::shards::token_rows_by_id(&f.tokens()).values() {
        for &id in ids.iter().filter(|id| !SPECIAL.contains(id)) {
            *counts.entry(id).or_default() += 1;
        }
    }
    let (&mode, _) = counts.iter().max_by_key(|(id, c)| (**c, -**id)).unwrap();
    save_tiny_aux(&f.aux(), 30522, Some(mode));
}

/// [`MobyTokens`], made once for the suite (seconds) and cached on disk.
pub fn moby_tokens() -> &'static MobyTokens {
    static F: OnceLock<MobyTokens> = OnceLock::new();
    F.get_or_init(|| {
        let key = Key::new(include_str!("fixtures.rs"))
            .file(&bert_tokenizer())
            .text(&moby_dick_prefix(60_000))
            .binary("preprocess");
        MobyTokens {
            root: cached_dir("moby-tokens", key, make_moby_tokens),
        }
    })
}

/// A 1-layer, 64-wide random ELECTRA generator saved in `dir` (seed 0); with `favour`, its
/// decoder bias for that token is 16 (so at T = 1 it gets most of the mass, at T = 2 about 1%).
pub fn save_tiny_aux(dir: &Path, vocab: i64, favour: Option<i32>) {
    let cfg = ModelConfig::aux_preset("tiny", vocab).unwrap();
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let arch = Architecture::ElectraForMaskedLM;
    let _model = MaskedLm::new(&vs.root(), &cfg, arch).unwrap();
    if let Some(id) = favour {
        let vars = vs.variables();
        let (_, bias) = vars
            .iter()
            .find(|(name, t)| {
                name.ends_with("bias") && t.size() == [vocab] && name.contains("lm_head")
            })
            .expect("the decoder bias");
        tch::no_grad(|| {
            let _ = bias.get(id as i64).fill_(16.0);
        });
    }
    save_pretrained(&vs, &cfg, arch, dir).unwrap();
}
