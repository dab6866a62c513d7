//! Everything checked before any work: the token folder, the auxiliary model against the
//! tokenizer, and what the output folder already holds (complete shards of these settings are
//! skipped; anything from other settings is refused unless `--overwrite`).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use shared::corruption::batch::Keys;
use shared::corruption::distributions::{AuxSetup, Setup};
use shared::corruption::masking::SpecialIds;
use shared::files::lock::FolderLock;
use shared::format::epoch_meta::{EpochSettings, META_SETTINGS, META_SETTINGS_FINGERPRINT};
use shared::format::epoch_record::Corruption;
use shared::format::manifest::{AuxModelInfo, EpochManifest, TokenManifest};
use shared::format::shard_reader::ShardFile;
use shared::format::spec::{shard_file_name, shard_index, DATA_SPEC_VERSION, MANIFEST_FILE};
use shared::format::term_frequency::load_for_tokens;
use shared::format::validate::{open_checked, ShardExpectation};

use super::args::CorruptConfig;

/// A checked run: inputs, settings, and which shards this process makes.
#[derive(Debug)]
pub struct Plan {
    pub config: CorruptConfig,
    pub tokens: TokenManifest,
    pub token_paths: Vec<PathBuf>,
    /// Empty ([`AuxModelInfo::is_absent`]) for a model-free distribution.
    pub aux: AuxModelInfo,
    /// The training split's term-frequency counts, where the distribution or augmentation uses
    /// them.
    pub term_frequency: Option<Vec<u64>>,
    /// drop-token: the [UNK] id.
    pub unk: Option<i32>,
    pub settings: EpochSettings,
    pub special: SpecialIds,
    /// Shards of this part still to make, ascending.
    pub todo: Vec<usize>,
    /// The folder already holds this epoch's manifest with these settings.
    pub complete: bool,
    /// Files to delete before starting: shards and a manifest of other settings, shards
    /// beyond the token folder's count (these only with `--overwrite`); a manifest whose listed
    /// shards are missing or resized, and those shards.
    pub stale: Vec<PathBuf>,
    /// Listed shards of a complete folder found missing or resized (file name, what was
    /// found): made again.
    pub redo: Vec<(String, String)>,
    /// The token folder held for reading (its `.lock` shared) until the epoch is written.
    _tokens_lock: Option<FolderLock>,
}

/// What the output folder holds.
#[derive(Debug, Default)]
pub struct Scan {
    /// Per token shard: the epoch shard is present and made with these settings.
    pub present: Vec<bool>,
    /// Shard files made with other settings (or unreadable, or beyond the token folder's
    /// count), with their index and a line saying why.
    pub foreign: Vec<(PathBuf, usize, String)>,
}

/// Builds the settings record of this run.
pub fn settings_of(
    config: &CorruptConfig,
    tokens: &TokenManifest,
    aux: &AuxModelInfo,
    term_frequency_sha256: Option<String>,
) -> EpochSettings {
    EpochSettings {
        data_spec_version: DATA_SPEC_VERSION,
        corruption: Corruption {
            epoch: config.epoch,
            epochs: config.epochs,
            schedule: config.choice.schedule.to_info(),
            temperature: config.choice.temperature,
            seed: config.seed,
            mask_rate: config.mask_rate,
        },
        mask_token_id: tokens.tokenizer.special_tokens.mask,
        replacement: config
            .choice
            .replacement(term_frequency_sha256, config.batch_size),
        aux_model_sha256: aux.sha256.clone(),
        tokenizer_sha256: tokens.tokenizer.sha256.clone(),
        tokens_fingerprint: tokens.dataset_fingerprint.clone(),
        tokens_split: tokens.split.clone(),
        max_seq_len: tokens.max_seq_len,
        vocab_size: tokens.tokenizer.vocab_size,
    }
}

pub fn plan(config: CorruptConfig) -> anyhow::Result<Plan> {
    // Held for reading until the epoch is written: no writer rewrites the tokens meanwhile.
    let tokens_lock = FolderLock::reader(&config.tokens, "preprocess --epoch (reading)")
        .with_context(|| format!("--tokens {}", config.tokens.display()))?;
    let (tokens, token_paths) = shared::format::token_shards::open_token_dir(&config.tokens)
        .with_context(|| {
            format!(
                "--tokens {}: not a complete token folder",
                config.tokens.display()
            )
        })?;
    let tok = &tokens.tokenizer;
    let aux = match &config.aux_model {
        Some(dir) => check_aux(dir, &config, &tokens)?,
        None => AuxModelInfo::default(),
    };
    let distribution = config.choice.distribution;
    let uses = distribution.uses();
    let (term_frequency, tf_sha256) = if uses.term_frequency {
        let (counts, sha) = load_for_tokens(&config.tokens, &tokens).with_context(|| {
            format!(
                "--tokens {}: term-frequency counts (for {})",
                config.tokens.display(),
                distribution.flag()
            )
        })?;
        (Some(counts), Some(sha))
    } else {
        (None, None)
    };
    let unk = if uses.unk {
        let unk = tok.special_tokens.unk.with_context(|| {
            format!(
                "{}: {}: field tokenizer.special_tokens.unk: expected the [UNK] id, found null \
                 (the tokenizer has no unknown token)",
                distribution.flag(),
                config.tokens.join(MANIFEST_FILE).display()
            )
        })?;
        Some(unk as i32)
    } else {
        None
    };
    let special = SpecialIds::from(&tok.special_tokens);
    let settings = settings_of(&config, &tokens, &aux, tf_sha256);
    let mut plan = Plan {
        config,
        tokens,
        token_paths,
        aux,
        term_frequency,
        unk,
        settings,
        special,
        todo: Vec::new(),
        complete: false,
        stale: Vec::new(),
        redo: Vec::new(),
        _tokens_lock: tokens_lock,
    };
    plan.scan_output()?;
    verify_sources(&plan.config, &plan.tokens, &plan.token_paths, &plan.todo)?;
    Ok(plan)
}

impl Plan {
    /// What the distribution builds its sampler from: this epoch's keys and parameters and the
    /// inputs loaded for it; the auxiliary model (where used) runs on `device`.
    pub fn setup(&self, device: tch::Device) -> Setup<'_> {
        let c = &self.config;
        Setup {
            keys: Keys {
                seed: c.seed,
                epoch: c.epoch,
                mask_rate: c.mask_rate,
                special: self.special,
            },
            vocab_size: self.tokens.tokenizer.vocab_size as usize,
            tokens: &c.tokens,
            alpha: c.choice.alpha,
            gamma: c.choice.gamma_value(),
            temperature: c.choice.temperature,
            term_frequency: self.term_frequency.as_deref(),
            unk: self.unk,
            aux: c.aux_model.as_deref().map(|dir| AuxSetup {
                dir,
                device,
                batch_size: c.batch_size,
                kernel_sampler: c.sampler == super::args::SamplerKind::Kernel,
            }),
        }
    }

    /// Looks at what the output folder holds (again, e.g. once its lock is held): whether it is
    /// complete, which files must go first, which shards this part still makes. A manifest with
    /// these settings is trusted as far as a cheap look: every shard it lists is there with its
    /// listed size; a missing or resized one is made again (the manifest and the damaged file
    /// are removed first, and [`Plan::redo`] says why).
    pub fn scan_output(&mut self) -> anyhow::Result<()> {
        let config = &self.config;
        let settings = &self.settings;
        let shards = self.token_paths.len();
        let out = &config.out_dir;
        let mut stale = Vec::new();
        let mut redo = Vec::new();
        let mut complete = false;
        let manifest_path = out.join(MANIFEST_FILE);
        if manifest_path.exists() {
            let why = match shared::format::manifest::read_manifest::<EpochManifest>(out) {
                Ok(m) => {
                    let d = settings.differences(&m.settings().to_json());
                    if d.is_empty() && m.shards.len() == shards {
                        let listed = m.shards.iter().map(|e| (e.file.as_str(), e.bytes));
                        redo = shared::files::listed::damaged(out, listed);
                        if redo.is_empty() {
                            complete = true;
                        } else {
                            // Our own manifest, no longer true: it goes, with the damaged files.
                            stale.push(manifest_path.clone());
                            for (name, _) in &redo {
                                let p = out.join(name);
                                if p.is_file() {
                                    stale.push(p);
                                }
                            }
                        }
                        None
                    } else if d.is_empty() {
                        Some(format!(
                            "{} shards listed, the token folder has {shards}",
                            m.shards.len()
                        ))
                    } else {
                        Some(d.join("; "))
                    }
                }
                Err(e) => Some(format!("{e:#}")),
            };
            if let Some(why) = why {
                refuse_unless_overwrite(config, &manifest_path, &why)?;
                stale.push(manifest_path.clone());
            }
        }
        let scan = scan(out, shards, settings)?;
        let mut present = scan.present;
        for (path, index, why) in &scan.foreign {
            if stale.contains(path) {
                continue; // a damaged listed shard, made again
            }
            refuse_unless_overwrite(config, path, why)?;
            // Each part replaces its own shards; part 0 also removes shards beyond the count.
            let owner = if *index < shards {
                index % config.part.count
            } else {
                0
            };
            if owner == config.part.index {
                stale.push(path.clone());
            }
        }
        for (name, _) in &redo {
            if let Some(k) = shard_index(name).filter(|&k| k < shards) {
                present[k] = false;
            }
        }
        self.todo = if complete {
            Vec::new()
        } else {
            (0..shards)
                .filter(|&k| config.part.owns(k) && !present[k])
                .collect()
        };
        self.complete = complete;
        self.stale = stale;
        self.redo = redo;
        Ok(())
    }
}

/// Checks the token shards this run will read against their manifest before any work: SHA-256
/// (unless `--no-verify-shards`), schema, metadata (the manifest's facts each shard repeats, the
/// vocabulary size among them) and row count, on scoped threads (rayon's global pool is not
/// built yet: the pipeline sizes it later). The rows themselves are checked as the reader decodes
/// them.
fn verify_sources(
    config: &CorruptConfig,
    tokens: &TokenManifest,
    paths: &[PathBuf],
    todo: &[usize],
) -> anyhow::Result<()> {
    let expect = ShardExpectation::tokens(tokens);
    let manifest = config.tokens.join(MANIFEST_FILE);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = todo.len().div_ceil(threads).max(1);
    let check = |ks: &[usize]| -> anyhow::Result<()> {
        for &k in ks {
            let entry = &tokens.shards[k];
            open_checked(&paths[k], entry, &expect, config.verify_shards, &manifest)?;
        }
        Ok(())
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = todo.chunks(chunk).map(|ks| s.spawn(|| check(ks))).collect();
        handles
            .into_iter()
            .try_for_each(|h| shared::runtime::panic::joined(h.join()))
    })
    .with_context(|| format!("--tokens {}", config.tokens.display()))?;
    if !config.verify_shards && !todo.is_empty() {
        eprintln!(
            "--no-verify-shards: the SHA-256 of {} token shard(s) was not checked; the epoch's \
             shards and manifest record it",
            todo.len()
        );
    }
    Ok(())
}

/// Inspects the auxiliary model at `dir` and checks it against the token folder.
fn check_aux(
    dir: &Path,
    config: &CorruptConfig,
    tokens: &TokenManifest,
) -> anyhow::Result<AuxModelInfo> {
    let aux = shared::corruption::aux::inspect(dir)?;
    let tok = &tokens.tokenizer;
    if aux.info.vocab_size != tok.vocab_size {
        bail!(
            "--aux-model {}: field vocab_size: expected {} (the tokenizer's, {} in {}), found {}",
            dir.display(),
            tok.vocab_size,
            tok.path,
            config.tokens.join(MANIFEST_FILE).display(),
            aux.info.vocab_size
        );
    }
    if aux.max_position_embeddings < tokens.max_seq_len as i64 {
        bail!(
            "--aux-model {}: field max_position_embeddings: expected at least {} (max_seq_len of {}), found {}",
            dir.display(),
            tokens.max_seq_len,
            config.tokens.display(),
            aux.max_position_embeddings
        );
    }
    Ok(aux.info)
}

fn refuse_unless_overwrite(config: &CorruptConfig, path: &Path, why: &str) -> anyhow::Result<()> {
    if config.overwrite {
        eprintln!("--overwrite: replacing {} ({why})", path.display());
        return Ok(());
    }
    bail!(
        "{}: holds epoch {} made with other settings ({why}); pass --overwrite to replace it, or \
         choose another --out",
        path.display(),
        config.epoch
    )
}

/// Lists the epoch shards in `out`: which of the `shards` expected ones are present with these
/// settings (footer fingerprint), and which files are foreign.
pub fn scan(out: &Path, shards: usize, settings: &EpochSettings) -> anyhow::Result<Scan> {
    let mut scan = Scan {
        present: vec![false; shards],
        foreign: Vec::new(),
    };
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(scan);
    };
    let fingerprint = settings.fingerprint();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", out.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(index) = shard_index(&name) else {
            continue;
        };
        let path = entry.path();
        if index >= shards || name != shard_file_name(index) {
            scan.foreign
                .push((path, index, format!("the token folder has {shards} shards")));
            continue;
        }
        match ShardFile::open(&path) {
            Ok(file)
                if file.key_value(META_SETTINGS_FINGERPRINT).as_deref() == Some(&fingerprint) =>
            {
                scan.present[index] = true;
            }
            Ok(file) => {
                let stored = file.key_value(META_SETTINGS).unwrap_or_default();
                scan.foreign
                    .push((path, index, settings.differences(&stored).join("; ")));
            }
            Err(e) => scan
                .foreign
                .push((path, index, format!("unreadable: {e:#}"))),
        }
    }
    scan.foreign.sort();
    Ok(scan)
}
