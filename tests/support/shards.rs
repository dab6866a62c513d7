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
