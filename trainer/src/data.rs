//! Opens the `--shards` folders, checks that they belong together, and memory-maps their
//! shards. Each folder is held for reading (its `.lock` shared, `shared::files::lock`) while the
//! run reads it: many runs read a folder at once, and none reads one that a writer is
//! rewriting. Nothing else is written into these folders.
use anyhow::bail;
use shared::files::lock::FolderLock;
use shared::format::epoch_meta::open_epoch_dir;
use shared::format::epoch_shards::EpochRows;
use shared::format::manifest::{EpochManifest, TokenManifest, TokenizerInfo};
use shared::format::row_rules::{RowRules, RowsAt};
use shared::format::shard_reader::ShardFile;
use shared::format::spec::MANIFEST_FILE;
use shared::format::token_shards::{open_token_dir, TokenRows};
use shared::format::validate::{open_all_checked, ShardExpectation};
use std::path::{Path, PathBuf};

use crate::loader::pipeline::Decoder;
use crate::loader::{EpochData, Group, Rows};

/// The kind of shard folder an objective reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Epoch folders of corrupted rows (`preprocess --epoch E`, `data/epoch-NNN`).
    Epochs,
    /// Token folders (`preprocess tokenize`, `data/tokens`).
    Tokens,
}

impl DataKind {
    /// The manifest `kind` of such folders.
    pub fn manifest_kind(self) -> &'static str {
        match self {
            DataKind::Epochs => shared::format::spec::epoch::KIND,
            DataKind::Tokens => shared::format::spec::tokens::KIND,
        }
    }

    /// What such folders are, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            DataKind::Epochs => {
                "epoch folders (made by `preprocess --epoch E`, e.g. data/epoch-000)"
            }
            DataKind::Tokens => "token folders (made by `preprocess tokenize`, e.g. data/tokens)",
        }
    }
}

/// One opened folder: its manifest's facts the trainer uses, and its shards.
pub struct Folder {
    pub dir: PathBuf,
    /// Epoch number (0 for token folders).
    pub epoch: u32,
    /// The epoch's temperature (None for token folders).
    pub temperature: Option<f64>,
    pub tokenizer: TokenizerInfo,
    pub max_seq_len: u32,
    pub vocab_size: u32,
    /// SHA-256 of the folder's manifest: identifies the data in run.json and checkpoints.
    pub manifest_sha256: String,
    pub shards: Vec<ShardFile>,
    /// The epoch manifest (RTD) for cross-checks.
    pub epoch_manifest: Option<EpochManifest>,
    /// What every row must satisfy (data-spec), checked as rows are decoded.
    pub rules: RowRules,
    /// The folder held for reading (its `.lock` shared) while it is read.
    pub lock: Option<FolderLock>,
}

impl Folder {
    /// The row groups of this folder, for the loader.
    pub fn epoch_data(&self) -> EpochData {
        let mut groups = vec![];
        for (file, shard) in self.shards.iter().enumerate() {
            for index in 0..shard.num_row_groups() {
                groups.push(Group {
                    file,
                    index,
                    rows: shard.row_group_rows(index) as usize,
                });
            }
        }
        EpochData {
            epoch: self.epoch,
            files: self.shards.iter().map(|s| s.path().to_path_buf()).collect(),
            groups,
        }
    }
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// Opens an epoch folder (RTD).
pub fn open_epoch_folder(dir: &Path, verify: bool) -> anyhow::Result<Folder> {
    let lock = FolderLock::reader(dir, "trainer (reading)")?;
    let (m, paths): (EpochManifest, Vec<PathBuf>) = open_epoch_dir(dir)?;
    let mpath = manifest_path(dir);
    let expect = ShardExpectation::epoch(&m);
    let shards = open_all_checked(&paths, &m.shards, &expect, verify, &mpath)?;
    Ok(Folder {
        dir: dir.to_path_buf(),
        epoch: m.corruption.epoch,
        temperature: Some(m.corruption.temperature),
        tokenizer: m.tokenizer.clone(),
        max_seq_len: m.max_seq_len,
        vocab_size: m.vocab_size,
        manifest_sha256: shared::files::hash::sha256_file(&mpath)?,
        shards,
        rules: RowRules::epoch(&m),
        epoch_manifest: Some(m),
        lock,
    })
}

/// Opens a token folder (MLM).
pub fn open_token_folder(dir: &Path, verify: bool) -> anyhow::Result<Folder> {
    let lock = FolderLock::reader(dir, "trainer (reading)")?;
    let (m, paths): (TokenManifest, Vec<PathBuf>) = open_token_dir(dir)?;
    let mpath = manifest_path(dir);
    let expect = ShardExpectation::tokens(&m);
    let shards = open_all_checked(&paths, &m.shards, &expect, verify, &mpath)?;
    Ok(Folder {
        dir: dir.to_path_buf(),
        epoch: 0,
        temperature: None,
        vocab_size: m.tokenizer.vocab_size,
        rules: RowRules::tokens(&m),
        tokenizer: m.tokenizer,
        max_seq_len: m.max_seq_len,
        manifest_sha256: shared::files::hash::sha256_file(&mpath)?,
        shards,
        epoch_manifest: None,
        lock,
    })
}

/// Refuses a folder of the other kind before reading it as this one, naming both: e.g. a token
/// folder given to `--objective rtd`. `objective` names who reads it.
fn check_kind(dir: &Path, kind: DataKind, objective: &str) -> anyhow::Result<()> {
    let path = manifest_path(dir);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(()); // the reader names the missing manifest
    };
    let found = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string));
    match found {
        Some(found) if found != kind.manifest_kind() => bail!(
            "{}: field kind: expected {:?}, found {found:?}: --objective {objective} reads {}",
            path.display(),
            kind.manifest_kind(),
            kind.describe()
        ),
        _ => Ok(()),
    }
}

/// Opens a folder of `kind` for `--objective objective`.
pub fn open_folder(
    dir: &Path,
    kind: DataKind,
    objective: &str,
    verify: bool,
) -> anyhow::Result<Folder> {
    check_kind(dir, kind, objective)?;
    match kind {
        DataKind::Epochs => open_epoch_folder(dir, verify),
        DataKind::Tokens => open_token_folder(dir, verify),
    }
}

/// Errors unless `found` equals `expected`, naming the file and field.
fn same<T: PartialEq + std::fmt::Debug>(
    field: &str,
    reference: &Folder,
    other: &Folder,
    expected: T,
    found: T,
) -> anyhow::Result<()> {
    if expected != found {
        bail!(
            "{}: field {field}: expected {expected:?} (as in {}), found {found:?}",
            manifest_path(&other.dir).display(),
            manifest_path(&reference.dir).display()
        );
    }
    Ok(())
}

/// Checks that `other` is compatible with `reference`: tokenizer, replaced-token distribution and
/// augmentation, auxiliary model, sequence length, vocabulary (and, for two training epochs, the
/// corruption settings: schedules, alpha, term frequencies).
pub fn check_compatible(reference: &Folder, other: &Folder, same_run: bool) -> anyhow::Result<()> {
    same(
        "tokenizer.sha256",
        reference,
        other,
        &reference.tokenizer.sha256,
        &other.tokenizer.sha256,
    )?;
    same(
        "max_seq_len",
        reference,
        other,
        reference.max_seq_len,
        other.max_seq_len,
    )?;
    same(
        "vocab_size",
        reference,
        other,
        reference.vocab_size,
        other.vocab_size,
    )?;
    if let (Some(a), Some(b)) = (&reference.epoch_manifest, &other.epoch_manifest) {
        // The replaced-token distribution (data-spec version 1 reads as aux + temperature).
        same(
            "distribution",
            reference,
            other,
            &a.replacement.distribution,
            &b.replacement.distribution,
        )?;
        same(
            "augmentation",
            reference,
            other,
            &a.replacement.augmentation,
            &b.replacement.augmentation,
        )?;
        same(
            "aux_model.sha256",
            reference,
            other,
            &a.aux_model.sha256,
            &b.aux_model.sha256,
        )?;
        if same_run {
            same("split", reference, other, &a.split, &b.split)?;
            same(
                "tokens_fingerprint",
                reference,
                other,
                &a.tokens_fingerprint,
                &b.tokens_fingerprint,
            )?;
            same(
                "seed",
                reference,
                other,
                a.corruption.seed,
                b.corruption.seed,
            )?;
            same(
                "epochs",
                reference,
                other,
                a.corruption.epochs,
                b.corruption.epochs,
            )?;
            same(
                "schedule",
                reference,
                other,
                &a.corruption.schedule,
                &b.corruption.schedule,
            )?;
            same(
                "mask_rate",
                reference,
                other,
                a.corruption.mask_rate,
                b.corruption.mask_rate,
            )?;
            same(
                "alpha",
                reference,
                other,
                a.replacement.alpha,
                b.replacement.alpha,
            )?;
            same(
                "gamma_schedule",
                reference,
                other,
                &a.replacement.gamma_schedule,
                &b.replacement.gamma_schedule,
            )?;
            same(
                "term_frequency_sha256",
                reference,
                other,
                &a.replacement.term_frequency_sha256,
                &b.replacement.term_frequency_sha256,
            )?;
        }
    }
    Ok(())
}

/// Opens the training folders, orders epoch folders by epoch number and checks them against
/// each other (consecutive epochs, same settings).
pub fn open_training(
    dirs: &[PathBuf],
    kind: DataKind,
    objective: &str,
    verify: bool,
) -> anyhow::Result<Vec<Folder>> {
    let mut folders = dirs
        .iter()
        .map(|d| open_folder(d, kind, objective, verify))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if kind == DataKind::Epochs {
        folders.sort_by_key(|f| f.epoch);
        for w in folders.windows(2) {
            if w[1].epoch != w[0].epoch + 1 {
                bail!(
                    "{}: field epoch: expected {} (the epoch after {}), found {}",
                    manifest_path(&w[1].dir).display(),
                    w[0].epoch + 1,
                    manifest_path(&w[0].dir).display(),
                    w[1].epoch
                );
            }
        }
    }
    for f in &folders[1..] {
        check_compatible(&folders[0], f, true)?;
    }
    Ok(folders)
}

/// Decodes row groups of epoch or token shards into [`Rows`], checking every row against the
/// data-spec's invariants ([`RowRules`]: length, ends, ids in range).
pub struct ShardDecoder {
    /// Per loader epoch, its shards.
    pub shards: Vec<Vec<ShardFile>>,
    /// Per loader epoch, its rows' rules.
    pub rules: Vec<RowRules>,
    pub kind: DataKind,
    /// The folders held for reading as long as their shards are read.
    _locks: Vec<FolderLock>,
}

impl ShardDecoder {
    /// Takes the shards of `folders` (one loader epoch each) and their read locks, leaving them
    /// empty.
    pub fn take(folders: &mut [Folder], kind: DataKind) -> Self {
        Self {
            shards: folders
                .iter_mut()
                .map(|f| std::mem::take(&mut f.shards))
                .collect(),
            rules: folders.iter().map(|f| f.rules.clone()).collect(),
            kind,
            _locks: folders.iter_mut().filter_map(|f| f.lock.take()).collect(),
        }
    }
}

impl Decoder for ShardDecoder {
    fn decode(&self, epoch: usize, group: &Group) -> anyhow::Result<Rows> {
        let shard = &self.shards[epoch][group.file];
        let path = shard.path();
        let batch = shard.read_row_group(group.index)?; // names the file and group
        let rows = match self.kind {
            DataKind::Epochs => {
                let r = EpochRows::from_batch(&batch, path)?;
                Rows {
                    sequence_ids: r.sequence_ids,
                    offsets: r.offsets,
                    ids: r.input_ids,
                    targets: r.targets,
                }
            }
            DataKind::Tokens => {
                let r = TokenRows::from_batch(&batch, path)?;
                Rows {
                    sequence_ids: r.sequence_ids,
                    offsets: r.offsets,
                    ids: r.ids,
                    targets: vec![],
                }
            }
        };
        let at = RowsAt {
            file: path,
            row_group: group.index,
            first_row: shard.first_row_of_group(group.index),
        };
        self.rules[epoch].check(&rows.offsets, &rows.ids, &rows.sequence_ids, at)?;
        Ok(rows)
    }
}
