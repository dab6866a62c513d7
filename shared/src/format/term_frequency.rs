//! The term-frequency file of a token folder (data-spec "Term frequency"): how often each token id
//! occurs in the training split's rows. Written by `preprocess tokenize` (and by `preprocess
//! term-frequency` for an older folder), listed with its SHA-256 in the training manifest, and
//! read by the term-frequency distributions of `preprocess --epoch E`.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow::array::{ArrayRef, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::format::manifest::{read_manifest, TermFrequencyEntry, TokenManifest};
use crate::format::row_rules::{RowRules, RowsAt};
use crate::format::shard_reader::ShardFile;
use crate::format::spec::term_frequency::{COUNT, FILE, KIND, TOKEN_ID};
use crate::format::spec::token_dir::{META_DATASET_FINGERPRINT, META_VOCAB_SIZE, SPLIT_TRAIN};
use crate::format::spec::{MANIFEST_FILE, META_KIND};
use crate::format::token_shards::TokenRows;
use crate::format::validate::{open_checked, ShardExpectation};

/// Rows per row group of the file.
const ROW_GROUP_ROWS: usize = 65_536;

/// Columns: `token_id` (`UInt32`), `count` (`UInt64`), no nulls.
pub fn term_frequency_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(TOKEN_ID, DataType::UInt32, false),
        Field::new(COUNT, DataType::UInt64, false),
    ]))
}

/// Adds the ids of `rows` to `counts` (ids outside `counts` are an error naming `file`).
pub fn count_rows(counts: &mut [u64], rows: &TokenRows, file: &Path) -> anyhow::Result<()> {
    let vocab = counts.len();
    for &id in &rows.ids {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| counts.get_mut(i))
            .with_context(|| {
                format!(
                    "{}: column input_ids: expected ids in 0..{vocab}, found {id}",
                    file.display()
                )
            })?;
        *slot += 1;
    }
    Ok(())
}

/// Counts every id of the token folder whose manifest `m` (at `manifest`) lists the shards at
/// `paths`, over its vocabulary. Each shard is checked as every reader checks it first (size,
/// SHA-256, schema, metadata, row count: [`crate::format::validate`]) and every row as it is
/// decoded ([`RowRules`]).
pub fn count_shards(
    m: &TokenManifest,
    paths: &[PathBuf],
    manifest: &Path,
) -> anyhow::Result<Vec<u64>> {
    let mut counts = vec![0u64; m.tokenizer.vocab_size as usize];
    let expect = ShardExpectation::tokens(m);
    let rules = RowRules::tokens(m);
    for (path, entry) in paths.iter().zip(&m.shards) {
        let file = open_checked(path, entry, &expect, true, manifest)?;
        let mut first_row = 0;
        for g in 0..file.num_row_groups() {
            let rows = TokenRows::from_batch(&file.read_row_group(g)?, path)?;
            let at = RowsAt {
                file: path,
                row_group: g,
                first_row,
            };
            rules.check(&rows.offsets, &rows.ids, &rows.sequence_ids, at)?;
            count_rows(&mut counts, &rows, path)?;
            first_row += rows.len() as u64;
        }
    }
    Ok(counts)
}

/// Writes `dir/term_frequency.parquet` (atomically) for the token folder whose manifest has
/// `dataset_fingerprint`; returns the manifest's entry for it.
pub fn write_term_frequency(
    dir: &Path,
    counts: &[u64],
    dataset_fingerprint: &str,
) -> anyhow::Result<TermFrequencyEntry> {
    let ids: Vec<u32> = (0..counts.len() as u32).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(ids)),
        Arc::new(UInt64Array::from(counts.to_vec())),
    ];
    let batch = RecordBatch::try_new(term_frequency_schema(), columns)?;
    let metadata = [
        (META_KIND, KIND.to_string()),
        (META_DATASET_FINGERPRINT, dataset_fingerprint.to_string()),
        (META_VOCAB_SIZE, counts.len().to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let tokens: u64 = counts.iter().sum();
    let entry = crate::format::shard_writer::write_shard(
        &dir.join(FILE),
        term_frequency_schema(),
        &[batch],
        &metadata,
        ROW_GROUP_ROWS,
        tokens,
    )?;
    Ok(TermFrequencyEntry {
        file: entry.file,
        tokens,
        bytes: entry.bytes,
        sha256: entry.sha256,
    })
}

/// Reads the counts of a term-frequency file, checking its kind, fingerprint, vocabulary size
/// and that `token_id` is `0..vocab_size` in order.
pub fn read_term_frequency(
    path: &Path,
    dataset_fingerprint: &str,
    vocab_size: u32,
) -> anyhow::Result<Vec<u64>> {
    let file = ShardFile::open(path)?;
    for (key, want) in [
        (META_KIND, KIND.to_string()),
        (META_DATASET_FINGERPRINT, dataset_fingerprint.to_string()),
        (META_VOCAB_SIZE, vocab_size.to_string()),
    ] {
        let found = file.key_value(key);
        if found.as_deref() != Some(want.as_str()) {
            bail!(
                "{}: metadata {key}: expected {want} (the token folder's), found {}",
                path.display(),
                found.unwrap_or_else(|| "nothing".into())
            );
        }
    }
    let mut counts = Vec::with_capacity(vocab_size as usize);
    for g in 0..file.num_row_groups() {
        let batch = file.read_row_group(g)?;
        let col = |name: &str| {
            batch.column_by_name(name).with_context(|| {
                format!(
                    "{}: column {name}: expected it, found nothing",
                    path.display()
                )
            })
        };
        let ids = col(TOKEN_ID)?
            .as_any()
            .downcast_ref::<UInt32Array>()
            .with_context(|| format!("{}: column {TOKEN_ID}: expected UInt32", path.display()))?;
        let c = col(COUNT)?
            .as_any()
            .downcast_ref::<UInt64Array>()
            .with_context(|| format!("{}: column {COUNT}: expected UInt64", path.display()))?;
        for (id, n) in ids.values().iter().zip(c.values().iter()) {
            if *id as usize != counts.len() {
                bail!(
                    "{}: column {TOKEN_ID}: expected {} (ids in order), found {id}",
                    path.display(),
                    counts.len()
                );
            }
            counts.push(*n);
        }
    }
    if counts.len() != vocab_size as usize {
        bail!(
            "{}: rows: expected {vocab_size} (one per token id), found {}",
            path.display(),
            counts.len()
        );
    }
    Ok(counts)
}

/// The term-frequency counts that corrupting the token folder `tokens_dir` (with manifest `m`)
/// uses: those of its training split, listed in the training manifest (`tokens_dir` itself, or
/// its parent for a validation split). Returns the counts and the file's SHA-256. Errors name the
/// folder, file and field: no counts listed, the file missing, its SHA-256 not the listed one.
pub fn load_for_tokens(tokens_dir: &Path, m: &TokenManifest) -> anyhow::Result<(Vec<u64>, String)> {
    let train_dir = if m.split == SPLIT_TRAIN {
        tokens_dir.to_path_buf()
    } else {
        tokens_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    let train: TokenManifest = if m.split == SPLIT_TRAIN {
        m.clone()
    } else {
        read_manifest(&train_dir).with_context(|| {
            format!(
                "{}: the training split beside this {} split (its term frequencies are used)",
                train_dir.display(),
                m.split
            )
        })?
    };
    let mpath = train_dir.join(MANIFEST_FILE);
    if train.dataset_fingerprint != m.dataset_fingerprint {
        bail!(
            "{}: field dataset_fingerprint: expected {} (as in {}), found {}",
            mpath.display(),
            m.dataset_fingerprint,
            tokens_dir.join(MANIFEST_FILE).display(),
            train.dataset_fingerprint
        );
    }
    let Some(entry) = &train.term_frequency else {
        bail!(
            "{}: field term_frequency: expected the token folder's term-frequency counts, found \
             none (a folder made before data-spec version 2); make them with `preprocess \
             term-frequency --tokens {}`",
            mpath.display(),
            train_dir.display()
        );
    };
    let path = train_dir.join(&entry.file);
    if !path.exists() {
        bail!(
            "{}: term-frequency file listed in {} (sha256 {}) is missing",
            path.display(),
            mpath.display(),
            entry.sha256
        );
    }
    let sha = crate::files::hash::sha256_file(&path)?;
    if sha != entry.sha256 {
        bail!(
            "{}: sha256: expected {} as listed in {}, found {sha} (a file from another token \
             folder, or changed)",
            path.display(),
            entry.sha256,
            mpath.display()
        );
    }
    let counts = read_term_frequency(&path, &m.dataset_fingerprint, m.tokenizer.vocab_size)?;
    Ok((counts, sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let counts = vec![0u64, 5, 0, 7, 1];
        let entry = write_term_frequency(dir.path(), &counts, "fp").unwrap();
        assert_eq!((entry.file.as_str(), entry.tokens), (FILE, 13));
        let path = dir.path().join(FILE);
        assert_eq!(read_term_frequency(&path, "fp", 5).unwrap(), counts);
        let err = read_term_frequency(&path, "other", 5)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dataset_fingerprint") && err.contains("other"),
            "{err}"
        );
        let err = read_term_frequency(&path, "fp", 6).unwrap_err().to_string();
        assert!(err.contains("vocab_size"), "{err}");
    }

    #[test]
    fn counting_refuses_ids_outside_the_vocabulary() {
        let mut rows = TokenRows::new();
        rows.push(0, 0, &[1, 2, 2, 3]);
        let mut counts = vec![0u64; 4];
        count_rows(&mut counts, &rows, Path::new("x")).unwrap();
        assert_eq!(counts, vec![0, 1, 2, 1]);
        let mut small = vec![0u64; 3];
        let err = count_rows(&mut small, &rows, Path::new("x")).unwrap_err();
        assert!(err.to_string().contains("found 3"), "{err}");
    }
}
