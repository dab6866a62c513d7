//! One split's output: rows are numbered (`sequence_id` 0.. in corpus order) and written as
//! shards of `rows_per_shard` rows as they fill; the manifest is written by the caller, last.
use shared::format::manifest::ShardEntry;
use shared::format::spec::token_dir::{
    META_DATASET_FINGERPRINT, META_MAX_SEQ_LEN, META_SPLIT, META_TOKENIZER_SHA256, META_VOCAB_SIZE,
};
use shared::format::spec::{shard_file_name, META_KIND};
use shared::format::token_shards::{token_schema, TokenRows};
use std::path::PathBuf;

/// What every shard of a dataset carries in its Parquet key-value metadata.
#[derive(Debug, Clone)]
pub struct ShardMeta {
    pub fingerprint: String,
    pub tokenizer_sha256: String,
    pub max_seq_len: usize,
    pub vocab_size: u32,
}

/// Accumulates one split's rows and writes full shards.
pub struct SplitWriter {
    dir: PathBuf,
    split: &'static str,
    meta: ShardMeta,
    rows_per_shard: usize,
    row_group_rows: usize,
    pending: TokenRows,
    next_sequence_id: u64,
    /// Documents assigned to this split (including those that gave no row).
    pub documents: u64,
    /// Shards written so far, in order.
    pub shards: Vec<ShardEntry>,
    /// Occurrences of every token id in the rows so far (data-spec "Term frequency").
    pub counts: Vec<u64>,
}

impl SplitWriter {
    pub fn new(
        dir: PathBuf,
        split: &'static str,
        meta: ShardMeta,
        rows_per_shard: usize,
        row_group_rows: usize,
    ) -> Self {
        Self {
            dir,
            split,
            rows_per_shard,
            row_group_rows,
            pending: TokenRows::new(),
            next_sequence_id: 0,
            documents: 0,
            shards: Vec::new(),
            counts: vec![0; meta.vocab_size as usize],
            meta,
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Rows numbered so far (written or pending).
    pub fn num_sequences(&self) -> u64 {
        self.next_sequence_id
    }

    /// Adds one row of document `doc_id`; writes a shard when `rows_per_shard` rows are pending.
    pub fn push(&mut self, doc_id: u64, ids: &[i32]) -> anyhow::Result<()> {
        for &id in ids {
            // Ids come from the tokenizer, below its vocabulary size (checked by the tests).
            if let Some(c) = self.counts.get_mut(id as usize) {
                *c += 1;
            }
        }
        self.pending.push(self.next_sequence_id, doc_id, ids);
        self.next_sequence_id += 1;
        if self.pending.len() >= self.rows_per_shard {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending rows (if any) as the next shard.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.pending, TokenRows::new());
        let path = self.dir.join(shard_file_name(self.shards.len()));
        let metadata = [
            (META_KIND, shared::format::spec::tokens::KIND.to_string()),
            (META_SPLIT, self.split.to_string()),
            (META_DATASET_FINGERPRINT, self.meta.fingerprint.clone()),
            (META_TOKENIZER_SHA256, self.meta.tokenizer_sha256.clone()),
            (META_MAX_SEQ_LEN, self.meta.max_seq_len.to_string()),
            (META_VOCAB_SIZE, self.meta.vocab_size.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let entry = shared::format::shard_writer::write_shard(
            &path,
            token_schema(),
            &[rows.to_batch()?],
            &metadata,
            self.row_group_rows,
            rows.num_tokens(),
        )?;
        self.shards.push(entry);
        Ok(())
    }
}
