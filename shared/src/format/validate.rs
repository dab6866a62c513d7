//! The one shard validator: every reader of token or epoch shards (the trainer, the tests, and
//! any future reader) checks a shard against its folder's manifest here, so that a check added
//! once holds everywhere. It checks, in order: the SHA-256 against the manifest (unless the
//! caller skips it explicitly), the Parquet schema, the key-value metadata (data-spec version,
//! kind, and the manifest facts each kind repeats in its shards), and the row count. Errors
//! name the file, the key or column, what was expected and what was found.
use std::path::Path;

use anyhow::bail;
use arrow::datatypes::{DataType, SchemaRef};
use rayon::prelude::*;

use super::epoch_meta::{META_EPOCH, META_SETTINGS_FINGERPRINT};
use super::epoch_shards::epoch_schema;
use super::manifest::{EpochManifest, ShardEntry, TokenManifest};
use super::shard_reader::ShardFile;
use super::spec::token_dir::{
    META_DATASET_FINGERPRINT, META_MAX_SEQ_LEN, META_SPLIT, META_TOKENIZER_SHA256, META_VOCAB_SIZE,
};
use super::spec::{epoch, tokens, META_DATA_SPEC_VERSION, META_KIND};
use super::token_shards::token_schema;

/// What every shard of one folder must be, derived from the folder's manifest.
#[derive(Debug, Clone)]
pub struct ShardExpectation {
    /// The columns and their types (extra columns are allowed, as the data-spec says).
    pub schema: SchemaRef,
    /// Key-value metadata each shard must carry with exactly this value.
    pub metadata: Vec<(&'static str, String)>,
}

impl ShardExpectation {
    /// The shards of a token folder.
    pub fn tokens(m: &TokenManifest) -> Self {
        Self {
            schema: token_schema(),
            metadata: vec![
                // A folder's shards carry its manifest's version (1 or 2).
                (META_DATA_SPEC_VERSION, m.data_spec_version.to_string()),
                (META_KIND, tokens::KIND.to_string()),
                (META_SPLIT, m.split.clone()),
                (META_DATASET_FINGERPRINT, m.dataset_fingerprint.clone()),
                (META_TOKENIZER_SHA256, m.tokenizer.sha256.clone()),
                (META_MAX_SEQ_LEN, m.max_seq_len.to_string()),
                (META_VOCAB_SIZE, m.tokenizer.vocab_size.to_string()),
            ],
        }
    }

    /// The shards of an epoch folder.
    pub fn epoch(m: &EpochManifest) -> Self {
        Self {
            schema: epoch_schema(),
            metadata: vec![
                (META_DATA_SPEC_VERSION, m.data_spec_version.to_string()),
                (META_KIND, epoch::KIND.to_string()),
                (META_EPOCH, m.corruption.epoch.to_string()),
                (META_SETTINGS_FINGERPRINT, m.settings_fingerprint.clone()),
            ],
        }
    }
}

/// Equal types, except that a list's item field may have any name: the data-spec's writers call
/// it `item`, pyarrow (so pandas, polars and Hugging Face datasets) calls it `element`.
fn same_type(found: &DataType, want: &DataType) -> bool {
    match (found, want) {
        (DataType::List(a), DataType::List(b)) => {
            a.is_nullable() == b.is_nullable() && same_type(a.data_type(), b.data_type())
        }
        _ => found == want,
    }
}

/// Checks an opened shard's schema and key-value metadata against `expect`.
pub fn check_shard(shard: &ShardFile, expect: &ShardExpectation) -> anyhow::Result<()> {
    let path = shard.path().display();
    let schema = shard.schema();
    for field in expect.schema.fields() {
        let found = schema.field_with_name(field.name()).ok();
        if found.is_none_or(|f| !same_type(f.data_type(), field.data_type())) {
            bail!(
                "{path}: column {}: expected {}, found {}",
                field.name(),
                field.data_type(),
                found.map_or("no such column".to_string(), |f| f.data_type().to_string())
            );
        }
    }
    for (key, want) in &expect.metadata {
        let found = shard.key_value(key);
        if found.as_deref() != Some(want.as_str()) {
            bail!(
                "{path}: metadata {key}: expected {want} (from the manifest), found {}",
                found.unwrap_or_else(|| "nothing".to_string())
            );
        }
    }
    Ok(())
}

/// Opens one shard listed in the manifest at `manifest`: SHA-256 (when `verify_sha256`), then
/// [`check_shard`], then the row count.
pub fn open_checked(
    path: &Path,
    entry: &ShardEntry,
    expect: &ShardExpectation,
    verify_sha256: bool,
    manifest: &Path,
) -> anyhow::Result<ShardFile> {
    if verify_sha256 {
        let sha = crate::files::hash::sha256_file(path)?;
        if sha != entry.sha256 {
            bail!(
                "{}: sha256: expected {} as listed in {}, found {sha} (the file is corrupted or was replaced)",
                path.display(),
                entry.sha256,
                manifest.display()
            );
        }
    }
    let shard = ShardFile::open(path)?;
    check_shard(&shard, expect)?;
    if shard.num_rows() != entry.rows {
        bail!(
            "{}: rows: expected {} as listed in {}, found {}",
            path.display(),
            entry.rows,
            manifest.display(),
            shard.num_rows()
        );
    }
    Ok(shard)
}

/// [`open_checked`] for every shard of a folder, in parallel, in the listed order.
pub fn open_all_checked(
    paths: &[std::path::PathBuf],
    listed: &[ShardEntry],
    expect: &ShardExpectation,
    verify_sha256: bool,
    manifest: &Path,
) -> anyhow::Result<Vec<ShardFile>> {
    paths
        .par_iter()
        .zip(listed.par_iter())
        .map(|(path, entry)| open_checked(path, entry, expect, verify_sha256, manifest))
        .collect()
}
