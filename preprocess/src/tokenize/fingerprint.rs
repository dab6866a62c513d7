//! What identifies a dataset: the sources' hashes, the tokenizer's hash and the settings, hashed
//! together into the dataset fingerprint (data-spec "Token manifest").
use anyhow::Context;
use rayon::prelude::*;
use shared::format::manifest::SourceFile;
use shared::format::spec::DATA_SPEC_VERSION;
use shared::tokenizer::LoadedTokenizer;
use std::collections::BTreeMap;

use super::args::TokenizeConfig;
use super::inputs::Source;

/// The packing rule as recorded in the manifest's settings.
pub const PACKING_RULE: &str = "greedy per document: chunks of max_seq_len-2 tokens as \
    [CLS] chunk [SEP]; a last chunk shorter than min_tail is dropped; rows never cross documents";

/// Size and SHA-256 of every source, hashed in parallel.
pub fn hash_sources(sources: &[Source]) -> anyhow::Result<Vec<SourceFile>> {
    sources
        .par_iter()
        .map(|s| {
            let bytes = std::fs::metadata(&s.path)
                .with_context(|| format!("{}: cannot read input", s.path.display()))?
                .len();
            Ok(SourceFile {
                path: s.path.display().to_string(),
                bytes,
                sha256: shared::files::hash::sha256_file(&s.path)?,
            })
        })
        .collect()
}

/// The settings that decide the content, as recorded in the manifests.
pub fn settings(cfg: &TokenizeConfig) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    BTreeMap::from([
        ("packing".to_string(), json!(PACKING_RULE)),
        ("min_tail".to_string(), json!(cfg.min_tail)),
        ("text_field".to_string(), json!(cfg.text_field)),
        (
            "txt_blank_line_docs".to_string(),
            json!(cfg.txt_blank_line_docs),
        ),
        (
            "validation_fraction".to_string(),
            json!(cfg.validation_fraction),
        ),
        ("split_seed".to_string(), json!(cfg.split_seed)),
        ("rows_per_shard".to_string(), json!(cfg.rows_per_shard)),
        ("row_group_rows".to_string(), json!(cfg.row_group_rows)),
        (
            "special_tokens_in_text".to_string(),
            json!("encoded as plain text"),
        ),
    ])
}

/// SHA-256 over the data-spec version, the sources' hashes in order, the tokenizer's hash, the
/// maximum length and the settings: equal fingerprints mean equal shards.
pub fn dataset_fingerprint(
    cfg: &TokenizeConfig,
    sources: &[SourceFile],
    tok: &LoadedTokenizer,
    settings: &BTreeMap<String, serde_json::Value>,
) -> String {
    let canonical = serde_json::json!({
        "data_spec_version": DATA_SPEC_VERSION,
        "sources": sources.iter().map(|s| s.sha256.as_str()).collect::<Vec<_>>(),
        "tokenizer": tok.info.sha256,
        "max_seq_len": cfg.max_seq_len,
        "settings": settings,
    });
    shared::files::hash::sha256_hex(canonical.to_string().as_bytes())
}
