//! Everything checked before any work: the token folder, the auxiliary model against the
//! tokenizer, and what the output folder already holds (complete shards of these settings are
//! skipped; anything from other settings is refused unless `--overwrite`).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use shared::corruption::masking::SpecialIds;
use shared::format::epoch_meta::{EpochSettings, META_SETTINGS, META_SETTINGS_FINGERPRINT};
use shared::format::manifest::{AuxModelInfo, EpochManifest, TokenManifest};
use shared::format::shard_reader::ShardFile;
use shared::format::spec::{shard_file_name, DATA_SPEC_VERSION, MANIFEST_FILE};

use super::args::CorruptConfig;

/// A checked run: inputs, settings, and which shards this process makes.
#[derive(Debug)]
pub struct Plan {
    pub config: CorruptConfig,
    pub tokens: TokenManifest,
    pub token_paths: Vec<PathBuf>,
    pub aux: AuxModelInfo,
    pub settings: EpochSettings,
    pub special: SpecialIds,
    /// Shards of this part still to make, ascending.
    pub todo: Vec<usize>,
    /// The folder already holds this epoch's manifest with these settings.
    pub complete: bool,
    /// Files to delete before starting (only with `--overwrite`): shards and a manifest of
    /// other settings, shards beyond the token folder's count.
    pub stale: Vec<PathBuf>,
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
) -> EpochSettings {
    EpochSettings {
        data_spec_version: DATA_SPEC_VERSION,
        epoch: config.epoch,
        epochs: config.epochs,
        schedule: config.schedule.to_info(),
        temperature: config.temperature,
        seed: config.seed,
        mask_rate: config.mask_rate,
        mask_token_id: tokens.tokenizer.special_tokens.mask,
        aux_model_sha256: aux.sha256.clone(),
        tokenizer_sha256: tokens.tokenizer.sha256.clone(),
        tokens_fingerprint: tokens.dataset_fingerprint.clone(),
        tokens_split: tokens.split.clone(),
        max_seq_len: tokens.max_seq_len,
        vocab_size: tokens.tokenizer.vocab_size,
    }
}

/// The settings an epoch manifest records.
pub fn settings_of_manifest(m: &EpochManifest) -> EpochSettings {
    EpochSettings {
        data_spec_version: m.data_spec_version,
        epoch: m.epoch,
        epochs: m.epochs,
        schedule: m.schedule.clone(),
        temperature: m.temperature,
        seed: m.seed,
        mask_rate: m.mask_rate,
        mask_token_id: m.tokenizer.special_tokens.mask,
        aux_model_sha256: m.aux_model.sha256.clone(),
        tokenizer_sha256: m.tokenizer.sha256.clone(),
        tokens_fingerprint: m.tokens_fingerprint.clone(),
        tokens_split: m.split.clone(),
        max_seq_len: m.max_seq_len,
        vocab_size: m.vocab_size,
    }
}

pub fn plan(config: CorruptConfig) -> anyhow::Result<Plan> {
    let (tokens, token_paths) = shared::format::token_shards::open_token_dir(&config.tokens)
        .with_context(|| {
            format!(
                "--tokens {}: not a complete token folder",
                config.tokens.display()
            )
        })?;
    let aux = shared::corruption::aux::inspect(&config.aux_model)?;
    let tok = &tokens.tokenizer;
    if aux.info.vocab_size != tok.vocab_size {
        bail!(
            "--aux-model {}: field vocab_size: expected {} (the tokenizer's, {} in {}), found {}",
            config.aux_model.display(),
            tok.vocab_size,
            tok.path,
            config.tokens.join(MANIFEST_FILE).display(),
            aux.info.vocab_size
        );
    }
    if aux.max_position_embeddings < tokens.max_seq_len as i64 {
        bail!(
            "--aux-model {}: field max_position_embeddings: expected at least {} (max_seq_len of {}), found {}",
            config.aux_model.display(),
            tokens.max_seq_len,
            config.tokens.display(),
            aux.max_position_embeddings
        );
    }
    let special = SpecialIds::from(&tok.special_tokens);
    let settings = settings_of(&config, &tokens, &aux.info);
    let shards = token_paths.len();
    let out = &config.out_dir;

    let mut stale = Vec::new();
    let mut complete = false;
    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        let why = match shared::format::manifest::read_manifest::<EpochManifest>(out) {
            Ok(m) => {
                let d = settings.differences(&settings_of_manifest(&m).to_json());
                if d.is_empty() && m.shards.len() == shards {
                    complete = true;
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
            refuse_unless_overwrite(&config, &manifest_path, &why)?;
            stale.push(manifest_path.clone());
        }
    }
    let scan = scan(out, shards, &settings)?;
    for (path, index, why) in &scan.foreign {
        refuse_unless_overwrite(&config, path, why)?;
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
    let todo = if complete {
        Vec::new()
    } else {
        (0..shards)
            .filter(|&k| config.part.owns(k) && !scan.present[k])
            .collect()
    };
    Ok(Plan {
        config,
        tokens,
        token_paths,
        aux: aux.info,
        settings,
        special,
        todo,
        complete,
        stale,
    })
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
        let Some(index) = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
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
