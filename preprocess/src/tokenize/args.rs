//! Flags of `preprocess tokenize`, and their checked form ([`TokenizeConfig`]).
use clap::Args;
use std::path::PathBuf;

/// Tokenize a corpus and pack it into token shards (data-spec "Token shards").
#[derive(Debug, Clone, Args)]
pub struct TokenizeArgs {
    /// Corpus files, folders (searched recursively, files sorted by path) or glob patterns.
    /// `.txt` (one document per file, see --txt-blank-line-docs), `.jsonl` (one JSON object per
    /// line, text in --text-field) and `.parquet` (string column --text-field).
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    pub input: Vec<String>,
    /// Hugging Face `tokenizer.json`. Its own truncation and padding are switched off.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    /// Output folder: training shards `part-NNNNN.parquet` + `manifest.json`; the validation
    /// split goes to `<out>/validation/`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Maximum sequence length in tokens, including [CLS] and [SEP] (3 or more).
    #[arg(long, default_value_t = 512, value_name = "TOKENS")]
    pub max_seq_len: usize,
    /// Field of a `.jsonl` line, or column of a `.parquet` file, holding the text.
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_field: String,
    /// In `.txt` files, a blank line separates documents (default: one document per file).
    #[arg(long)]
    pub txt_blank_line_docs: bool,
    /// Shortest row kept, in text tokens (without [CLS]/[SEP]): a document's last chunk (or a
    /// whole short document) with fewer tokens is dropped and counted. 1 keeps everything.
    #[arg(long, default_value_t = 16, value_name = "TOKENS")]
    pub min_tail: usize,
    /// Fraction of documents (0 to <1) sent to the validation split, chosen per document from
    /// its index with a counter-based RNG keyed by --split-seed. 0: no validation split.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub validation_fraction: f64,
    /// Seed of the document-level validation split.
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    pub split_seed: u64,
    /// Rows (sequences) per shard file; the last shard of a split holds the rest.
    #[arg(long, default_value_t = 65536, value_name = "ROWS")]
    pub rows_per_shard: usize,
    /// Rows per Parquet row group inside a shard (the trainer decodes row groups in parallel).
    #[arg(long, default_value_t = shared::format::spec::token_dir::DEFAULT_ROW_GROUP_ROWS, value_name = "ROWS")]
    pub row_group_rows: usize,
    /// Tokenizer threads; 0 = all cores. The output is byte-identical for any value.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Replace an output folder that holds a different (or unreadable) dataset.
    #[arg(long)]
    pub overwrite: bool,
}

/// Checked settings: every value is in range. Built once, before any work.
#[derive(Debug, Clone)]
pub struct TokenizeConfig {
    pub inputs: Vec<String>,
    pub tokenizer: PathBuf,
    pub out: PathBuf,
    pub max_seq_len: usize,
    pub text_field: String,
    pub txt_blank_line_docs: bool,
    pub min_tail: usize,
    pub validation_fraction: f64,
    pub split_seed: u64,
    pub rows_per_shard: usize,
    pub row_group_rows: usize,
    pub threads: usize,
    pub overwrite: bool,
}

impl TokenizeConfig {
    /// Text tokens per row: `max_seq_len - 2` ([CLS] and [SEP] take the rest).
    pub fn body_len(&self) -> usize {
        self.max_seq_len - 2
    }
}

impl TryFrom<TokenizeArgs> for TokenizeConfig {
    type Error = anyhow::Error;

    fn try_from(a: TokenizeArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (3..=1 << 20).contains(&a.max_seq_len),
            "--max-seq-len: expected 3 to 1048576 tokens, found {}",
            a.max_seq_len
        );
        anyhow::ensure!(
            a.min_tail >= 1 && a.min_tail <= a.max_seq_len - 2,
            "--min-tail: expected 1 to --max-seq-len minus 2 ({}), found {}",
            a.max_seq_len - 2,
            a.min_tail
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&a.validation_fraction),
            "--validation-fraction: expected a number in [0, 1), found {}",
            a.validation_fraction
        );
        anyhow::ensure!(
            a.rows_per_shard >= 1,
            "--rows-per-shard: expected at least 1, found 0"
        );
        anyhow::ensure!(
            a.row_group_rows >= 1,
            "--row-group-rows: expected at least 1, found 0"
        );
        anyhow::ensure!(
            !a.text_field.is_empty(),
            "--text-field: expected a field name, found an empty string"
        );
        let threads = if a.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            a.threads
        };
        Ok(Self {
            inputs: a.input,
            tokenizer: a.tokenizer,
            out: a.out,
            max_seq_len: a.max_seq_len,
            text_field: a.text_field,
            txt_blank_line_docs: a.txt_blank_line_docs,
            min_tail: a.min_tail,
            validation_fraction: a.validation_fraction,
            split_seed: a.split_seed,
            rows_per_shard: a.rows_per_shard,
            row_group_rows: a.row_group_rows,
            threads,
            overwrite: a.overwrite,
        })
    }
}
