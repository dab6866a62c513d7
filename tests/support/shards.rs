//! Reading token and epoch shards back, row by row.
use shared::format::epoch_shards::EpochRows;
use shared::format::shard_reader::ShardFile;
use shared::format::token_shards::TokenRows;
use std::collections::HashMap;
use std::path::Path;

/// Every row of one epoch shard (all its row groups, in file order).
pub fn read_epoch_shard(path: &Path) -> EpochRows {
    let file = ShardFile::open(path).unwrap();
    let mut all = EpochRows::new();
    for g in 0..file.num_row_groups() {
        let r = EpochRows::from_batch(&file.read_row_group(g).unwrap(), path).unwrap();
        for i in 0..r.len() {
            all.push(
                r.sequence_ids[i],
                r.row(i),
                r.targets_row(i),
                r.masked_row(i),
                r.original_row(i),
            );
        }
    }
    all
}

/// Every row of one token shard (all its row groups, in file order).
pub fn read_token_shard(path: &Path) -> TokenRows {
    let file = ShardFile::open(path).unwrap();
    let mut all = TokenRows::new();
    for g in 0..file.num_row_groups() {
        let r = TokenRows::from_batch(&file.read_row_group(g).unwrap(), path).unwrap();
        for i in 0..r.len() {
            all.push(r.sequence_ids[i], r.doc_ids[i], r.row(i));
        }
    }
    all
}

/// The rows of a complete token folder by sequence id.
pub fn token_rows_by_id(dir: &Path) -> HashMap<u64, Vec<i32>> {
    let (_, paths) = shared::format::token_shards::open_token_dir(dir).unwrap();
    let mut rows = HashMap::new();
    for path in paths {
        let t = read_token_shard(&path);
        for i in 0..t.len() {
            rows.insert(t.sequence_ids[i], t.row(i).to_vec());
        }
    }
    rows
}

/// Rewrites shard `file` of the folder `dir` with its rows passed through `edit`, keeping its
/// key-value metadata, and lists the new file in the manifest (rows, tokens, bytes, SHA-256): a
/// shard changed consistently behind the writer's back, which only the per-row checks can tell.
fn rewrite_shard(dir: &Path, file: &str, batch: arrow::record_batch::RecordBatch, tokens: u64) {
    let path = dir.join(file);
    let kvs = ShardFile::open(&path).unwrap().key_values();
    let rows = batch.num_rows() as u64;
    let tmp = dir.join(format!("{file}.rewrite"));
    let entry = shared::format::shard_writer::write_shard(
        &tmp,
        batch.schema(),
        &[batch],
        &kvs,
        128,
        tokens,
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    super::files::edit_manifest(dir, |m| {
        let shards = m["shards"].as_array_mut().unwrap();
        let e = shards.iter_mut().find(|e| e["file"] == file).unwrap();
        e["rows"] = rows.into();
        e["tokens"] = tokens.into();
        e["bytes"] = entry.bytes.into();
        e["sha256"] = entry.sha256.into();
    });
}

/// [`rewrite_shard`] for a token shard: `edit` gets every row as (sequence_id, doc_id, ids).
pub fn rewrite_token_shard(
    dir: &Path,
    file: &str,
    edit: impl FnOnce(&mut Vec<(u64, u64, Vec<i32>)>),
) {
    let old = read_token_shard(&dir.join(file));
    let mut rows: Vec<_> = (0..old.len())
        .map(|i| (old.sequence_ids[i], old.doc_ids[i], old.row(i).to_vec()))
        .collect();
    edit(&mut rows);
    let mut new = TokenRows::new();
    for (s, d, ids) in &rows {
        new.push(*s, *d, ids);
    }
    rewrite_shard(dir, file, new.to_batch().unwrap(), new.num_tokens());
}

/// [`rewrite_shard`] for an epoch shard: `edit` gets every row as (sequence_id, input_ids,
/// targets, masked_positions, original_ids).
#[allow(clippy::type_complexity)]
pub fn rewrite_epoch_shard(
    dir: &Path,
    file: &str,
    edit: impl FnOnce(&mut Vec<(u64, Vec<i32>, Vec<i8>, Vec<i32>, Vec<i32>)>),
) {
    let old = read_epoch_shard(&dir.join(file));
    let mut rows: Vec<_> = (0..old.len())
        .map(|i| {
            (
                old.sequence_ids[i],
                old.row(i).to_vec(),
                old.targets_row(i).to_vec(),
                old.masked_row(i).to_vec(),
                old.original_row(i).to_vec(),
            )
        })
        .collect();
    edit(&mut rows);
    let mut new = EpochRows::new();
    for (s, ids, t, m, o) in &rows {
        new.push(*s, ids, t, m, o);
    }
    let tokens = rows.iter().map(|r| r.1.len() as u64).sum();
    rewrite_shard(dir, file, new.to_batch().unwrap(), tokens);
}
