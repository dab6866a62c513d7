//! `preprocess term-frequency --tokens DIR`: counts the token ids of an existing training split
//! (one made before `preprocess tokenize` wrote the counts itself), writes its term-frequency
//! file and lists it in the manifest (data-spec "Term frequency").
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use shared::format::spec::token_dir::SPLIT_TRAIN;
use shared::format::spec::MANIFEST_FILE;
use shared::format::term_frequency::{count_shards, write_term_frequency};

/// Count the token ids of a token folder's training split into its term-frequency file.
#[derive(Debug, Clone, Args)]
pub struct TermFrequencyArgs {
    /// Training token folder made by `preprocess tokenize` (its manifest.json must be present).
    #[arg(long, default_value = "data/tokens")]
    pub tokens: PathBuf,
}

pub fn run(args: TermFrequencyArgs) -> anyhow::Result<()> {
    let dir = &args.tokens;
    let mpath = dir.join(MANIFEST_FILE);
    // The token folder's writer lock (as `preprocess tokenize`'s), for the whole run; only an
    // existing folder is locked (a missing one is refused below, not created).
    let _lock = if dir.is_dir() {
        Some(shared::files::lock::FolderLock::folder(
            dir,
            "preprocess term-frequency",
        )?)
    } else {
        None
    };
    let (mut manifest, paths) = shared::format::token_shards::open_token_dir(dir)
        .with_context(|| format!("--tokens {}: not a complete token folder", dir.display()))?;
    if manifest.split != SPLIT_TRAIN {
        bail!(
            "{}: field split: expected \"{SPLIT_TRAIN}\" (counts are made over the training \
             split; a {} split uses its training folder's), found {:?}",
            mpath.display(),
            manifest.split,
            manifest.split
        );
    }
    if let Some(entry) = &manifest.term_frequency {
        let path = dir.join(&entry.file);
        if path.exists() && shared::files::hash::sha256_file(&path)? == entry.sha256 {
            eprintln!(
                "preprocess term-frequency: {} already lists {} (sha256 {}): nothing to do",
                mpath.display(),
                entry.file,
                entry.sha256
            );
            return Ok(());
        }
    }
    let counts = count_shards(&manifest, &paths, &mpath)?;
    let entry = write_term_frequency(dir, &counts, &manifest.dataset_fingerprint)?;
    eprintln!(
        "preprocess term-frequency: {} tokens counted over {} ids -> {} (sha256 {})",
        entry.tokens,
        counts.len(),
        dir.join(&entry.file).display(),
        entry.sha256
    );
    manifest.term_frequency = Some(entry);
    shared::files::atomic::write_json_atomic(&mpath, &manifest)?;
    Ok(())
}
