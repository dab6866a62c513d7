//! The output folder before a run: finished with the same dataset (nothing to do), holding a
//! different dataset (refused unless --overwrite), or empty / interrupted (cleaned, then run).
use anyhow::Context;
use shared::format::manifest::{read_manifest, TokenManifest};
use shared::format::spec::token_dir::VALIDATION_DIR;
use shared::format::spec::MANIFEST_FILE;
use std::path::Path;

/// What to do with the output folder.
#[derive(Debug, PartialEq, Eq)]
pub enum OutputState {
    /// A complete dataset with this fingerprint is there: nothing to do.
    Complete,
    /// The folder was prepared (old manifests, shards and temporary files removed): run.
    Ready,
}

/// Checks `out` against `fingerprint` and prepares it. `with_validation`: this run writes a
/// validation split (so a complete folder must have its manifest too).
pub fn prepare_output(
    out: &Path,
    fingerprint: &str,
    with_validation: bool,
    overwrite: bool,
) -> anyhow::Result<OutputState> {
    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        match read_manifest::<TokenManifest>(out) {
            Ok(m) if m.dataset_fingerprint == fingerprint => {
                let val_dir = out.join(VALIDATION_DIR);
                let val_ok = !with_validation
                    || read_manifest::<TokenManifest>(&val_dir)
                        .is_ok_and(|v| v.dataset_fingerprint == fingerprint);
                if val_ok {
                    // Trust the manifests only as far as a cheap look: every listed file there
                    // with its listed size. Otherwise make the dataset again (deterministic:
                    // the same bytes) and say why.
                    let damaged = damaged_files(out, &m, with_validation);
                    if damaged.is_empty() {
                        return Ok(OutputState::Complete);
                    }
                    for why in &damaged {
                        eprintln!("preprocess tokenize: {why}");
                    }
                    eprintln!(
                        "preprocess tokenize: {} lists {} damaged file(s): making the dataset \
                         again",
                        manifest_path.display(),
                        damaged.len()
                    );
                }
                // The training split is complete but its validation manifest is missing or
                // stale: make everything again.
            }
            Ok(m) if !overwrite => anyhow::bail!(
                "{}: field dataset_fingerprint: expected {fingerprint} (this corpus, tokenizer \
                 and settings), found {} (a different dataset); pass --overwrite to replace it",
                manifest_path.display(),
                m.dataset_fingerprint
            ),
            Err(e) if !overwrite => {
                return Err(e.context(format!(
                    "{}: expected a token manifest (or no manifest); pass --overwrite to \
                     replace the folder's shards",
                    out.display()
                )))
            }
            _ => {}
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Manifests go first: from here on the folder no longer claims to be complete.
    clean_dir(out)?;
    clean_dir(&out.join(VALIDATION_DIR))?;
    Ok(OutputState::Ready)
}

/// The listed files of a complete folder (shards, term-frequency file, the validation split's
/// shards) that are missing or not of their listed size, each as a line saying so.
fn damaged_files(out: &Path, m: &TokenManifest, with_validation: bool) -> Vec<String> {
    use shared::files::listed::damaged;
    let listed = m
        .shards
        .iter()
        .map(|e| (e.file.as_str(), e.bytes))
        .chain(m.term_frequency.iter().map(|t| (t.file.as_str(), t.bytes)));
    let mut lines: Vec<String> = damaged(out, listed).into_iter().map(|d| d.1).collect();
    let val_dir = out.join(VALIDATION_DIR);
    if with_validation {
        if let Ok(v) = read_manifest::<TokenManifest>(&val_dir) {
            let listed = v.shards.iter().map(|e| (e.file.as_str(), e.bytes));
            lines.extend(damaged(&val_dir, listed).into_iter().map(|d| d.1));
        }
    }
    lines
}

/// Removes the manifest, the shards (`part-*.parquet`) and stale temporary files of `dir`.
fn clean_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.exists() {
        std::fs::remove_file(&manifest)
            .with_context(|| format!("removing {}", manifest.display()))?;
    }
    shared::files::atomic::remove_stale_temps(dir)?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") && name.ends_with(".parquet") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}
