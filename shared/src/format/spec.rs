//! Schema constants of the shard formats. The single source of truth is `data-spec/README.md`
//! (data-spec version 2); every name here is defined there, and a change to either is a change
//! to both.

/// Version of `data-spec/` these constants implement. Written into every manifest and every
/// Parquet file's key-value metadata (`fast_electra.data_spec_version`).
pub const DATA_SPEC_VERSION: u32 = 2;

/// Versions a reader accepts. Version 1 differs only in what version 2 added: epoch manifests
/// and settings without `distribution` (= `aux`), `augmentation` (= `temperature`), `alpha`,
/// `gamma`, `gamma_schedule`, `term_frequency_sha256`, `dropout_batch_size`, and token folders
/// without a term-frequency file.
pub const READABLE_DATA_SPEC_VERSIONS: [u32; 2] = [1, 2];

/// The term-frequency file of a token folder's training split (data-spec "Term frequency").
pub mod term_frequency {
    /// File name inside the token folder.
    pub const FILE: &str = "term_frequency.parquet";
    /// `UInt32`: the token id, 0..vocab_size, one row per id in order.
    pub const TOKEN_ID: &str = "token_id";
    /// `UInt64`: occurrences of the id in the split's rows.
    pub const COUNT: &str = "count";
    /// Value of [`super::META_KIND`] for the file.
    pub const KIND: &str = "term_frequency";
}

/// A folder's manifest; written last, so its presence means the folder is complete.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Name of shard number `index` in a folder: `part-00000.parquet`, ...
pub fn shard_file_name(index: usize) -> String {
    format!("part-{index:05}.parquet")
}

/// The index in a shard's file name (`part-00042.parquet` -> 42; any digit count), if it is one.
pub fn shard_index(name: &str) -> Option<usize> {
    name.strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
        .and_then(|n| n.parse::<usize>().ok())
}

/// Prefix of every key this project writes into Parquet key-value metadata.
pub const METADATA_PREFIX: &str = "fast_electra.";

/// Parquet key-value metadata key holding the data-spec version.
pub const META_DATA_SPEC_VERSION: &str = "fast_electra.data_spec_version";
/// Parquet key-value metadata key holding the kind of shard: `tokens` or `epoch`.
pub const META_KIND: &str = "fast_electra.kind";

/// Columns of a token shard (`data/tokens/part-*.parquet`), data-spec section "Token shards".
pub mod tokens {
    /// `UInt64`, not null: the sequence's index in its dataset (0..num_sequences, corpus order).
    /// Keys the corruption RNG, so it never changes once written.
    pub const SEQUENCE_ID: &str = "sequence_id";
    /// `UInt64`, not null: index of the source document in corpus order.
    pub const DOC_ID: &str = "doc_id";
    /// `List<Int32>` (items not null): `[CLS] tokens [SEP]`, no padding, length 3..=max_seq_len.
    pub const INPUT_IDS: &str = "input_ids";
    /// Value of [`super::META_KIND`] for token shards.
    pub const KIND: &str = "tokens";
}

/// Columns of an epoch (corrupted) shard (`data/epoch-EEE/part-*.parquet`), data-spec section
/// "Epoch shards".
pub mod epoch {
    /// `UInt64`, not null: the token shard's `sequence_id` this row was made from.
    pub const SEQUENCE_ID: &str = "sequence_id";
    /// `List<Int32>`: the corrupted sequence, same length as the original, no padding.
    pub const INPUT_IDS: &str = "input_ids";
    /// `List<Int8>`: 1 where `input_ids` differs from the original token, else 0; same length.
    pub const TARGETS: &str = "targets";
    /// `List<Int32>`: the masked positions, ascending.
    pub const MASKED_POSITIONS: &str = "masked_positions";
    /// `List<Int32>`: the original token ids at `masked_positions`, same length as it.
    pub const ORIGINAL_IDS: &str = "original_ids";
    /// Value of [`super::META_KIND`] for epoch shards.
    pub const KIND: &str = "epoch";

    /// Folder name of epoch `e` under the output root: `epoch-003`.
    pub fn folder_name(epoch: u32) -> String {
        format!("epoch-{epoch:03}")
    }
}

/// Token-folder conventions beyond the columns (data-spec "Token shards", "Token manifest").
/// Kept in their own module so other shard kinds can add theirs without clashing.
pub mod token_dir {
    /// Subfolder of a token folder holding the validation split (its own shards and manifest).
    pub const VALIDATION_DIR: &str = "validation";
    /// Value of the manifest's `split` and of [`META_SPLIT`] for the training split.
    pub const SPLIT_TRAIN: &str = "train";
    /// Value of the manifest's `split` and of [`META_SPLIT`] for the validation split.
    pub const SPLIT_VALIDATION: &str = "validation";
    /// Rows per row group of token shards (the trainer's loader decodes row groups in parallel).
    pub const DEFAULT_ROW_GROUP_ROWS: usize = 1024;

    /// Parquet key-value metadata of a token shard: the dataset fingerprint of its manifest.
    pub const META_DATASET_FINGERPRINT: &str = "fast_electra.dataset_fingerprint";
    /// Parquet key-value metadata of a token shard: `train` or `validation`.
    pub const META_SPLIT: &str = "fast_electra.split";
    /// Parquet key-value metadata of a token shard: SHA-256 of the tokenizer.json.
    pub const META_TOKENIZER_SHA256: &str = "fast_electra.tokenizer_sha256";
    /// Parquet key-value metadata of a token shard: the maximum sequence length (decimal).
    pub const META_MAX_SEQ_LEN: &str = "fast_electra.max_seq_len";
    /// Parquet key-value metadata of a token shard: vocabulary size incl. added tokens (decimal).
    pub const META_VOCAB_SIZE: &str = "fast_electra.vocab_size";
}
