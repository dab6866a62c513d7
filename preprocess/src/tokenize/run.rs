//! `preprocess tokenize` from checked settings to manifests: load the tokenizer, list and hash
//! the sources, check the output folder, then stream documents through a reader thread, tokenize
//! each chunk in parallel, pack and number rows in corpus order, write shards, write manifests.
use anyhow::Context;
use rayon::prelude::*;
use shared::manifest::{SourceFile, TokenManifest};
use shared::rng::{domain, CounterRng};
use shared::spec::token_dir::{SPLIT_TRAIN, SPLIT_VALIDATION, VALIDATION_DIR};
use shared::spec::DATA_SPEC_VERSION;
use shared::tokenizer::{load_tokenizer, LoadedTokenizer};
use std::collections::BTreeMap;
use std::time::Instant;

use super::args::TokenizeConfig;
use super::inputs::{expand_inputs, Source};
use super::output::{prepare_output, OutputState};
use super::pack::Packer;
use super::reader::{read_documents, ReadOptions};
use super::writer::{ShardMeta, SplitWriter};

/// Text bytes read before a chunk of documents is tokenized in parallel.
const CHUNK_BYTES: usize = 4 << 20;

/// The packing rule as recorded in the manifest's settings.
pub const PACKING_RULE: &str = "greedy per document: chunks of max_seq_len-2 tokens as \
    [CLS] chunk [SEP]; a last chunk shorter than min_tail is dropped; rows never cross documents";

pub fn run(cfg: TokenizeConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .context("starting the tokenizer threads")?;
    let tok = load_tokenizer(&cfg.tokenizer)?;
    let sources = expand_inputs(&cfg.inputs)?;
    let source_files = pool.install(|| hash_sources(&sources))?;
    let settings = settings(&cfg);
    let fingerprint = dataset_fingerprint(&cfg, &source_files, &tok, &settings);
    let with_validation = cfg.validation_fraction > 0.0;

    if prepare_output(&cfg.out, &fingerprint, with_validation, cfg.overwrite)?
        == OutputState::Complete
    {
        eprintln!(
            "preprocess tokenize: {} already holds this dataset (fingerprint {}): nothing to do",
            cfg.out.display(),
            &fingerprint[..16]
        );
        return Ok(());
    }

    let meta = ShardMeta {
        fingerprint: fingerprint.clone(),
        tokenizer_sha256: tok.info.sha256.clone(),
        max_seq_len: cfg.max_seq_len,
        vocab_size: tok.info.vocab_size,
    };
    let mut train = SplitWriter::new(
        cfg.out.clone(),
        SPLIT_TRAIN,
        meta.clone(),
        cfg.rows_per_shard,
        cfg.row_group_rows,
    );
    let val_dir = cfg.out.join(VALIDATION_DIR);
    if with_validation {
        std::fs::create_dir_all(&val_dir)
            .with_context(|| format!("creating {}", val_dir.display()))?;
    } else if val_dir.is_dir() {
        let _ = std::fs::remove_dir(&val_dir); // empty after prepare_output; leave it otherwise
    }
    let mut validation = SplitWriter::new(
        val_dir,
        SPLIT_VALIDATION,
        meta,
        cfg.rows_per_shard,
        cfg.row_group_rows,
    );

    let total_bytes: u64 = source_files.iter().map(|s| s.bytes).sum();
    let progress = indicatif::ProgressBar::new(total_bytes).with_style(
        indicatif::ProgressStyle::with_template(
            "tokenize [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} \
             {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    let tokenize_started = Instant::now();
    let stats = pool
        .install(|| tokenize_all(&cfg, &tok, &sources, &mut train, &mut validation, &progress))?;
    progress.finish_and_clear();
    let seconds = tokenize_started.elapsed().as_secs_f64();

    anyhow::ensure!(
        stats.documents > 0,
        "empty corpus: expected documents in {} input file(s), found none",
        sources.len()
    );
    anyhow::ensure!(
        train.num_sequences() > 0,
        "no training sequences: all {} document(s) are shorter than --min-tail {} tokens (or \
         went to the validation split)",
        stats.documents,
        cfg.min_tail
    );
    train.flush()?;
    validation.flush()?;

    let manifest = |w: &SplitWriter, split: &str| TokenManifest {
        data_spec_version: DATA_SPEC_VERSION,
        kind: shared::spec::tokens::KIND.to_string(),
        split: split.to_string(),
        dataset_fingerprint: fingerprint.clone(),
        tokenizer: tok.info.clone(),
        max_seq_len: cfg.max_seq_len as u32,
        settings: settings.clone(),
        num_documents: w.documents,
        num_sequences: w.num_sequences(),
        num_tokens: w.shards.iter().map(|s| s.tokens).sum(),
        shards: w.shards.clone(),
        sources: source_files.clone(),
    };
    // The validation manifest first, the training manifest last: its presence means all is done.
    if with_validation {
        if validation.num_sequences() == 0 {
            eprintln!(
                "preprocess tokenize: warning: the validation split is empty (--validation-fraction \
                 {} of {} documents)",
                cfg.validation_fraction, stats.documents
            );
        }
        let m = manifest(&validation, SPLIT_VALIDATION);
        shared::atomic::write_json_atomic(&validation.dir().join(shared::spec::MANIFEST_FILE), &m)?;
    }
    let m = manifest(&train, SPLIT_TRAIN);
    shared::atomic::write_json_atomic(&train.dir().join(shared::spec::MANIFEST_FILE), &m)?;

    let mb = stats.text_bytes as f64 / 1e6;
    eprintln!(
        "preprocess tokenize: {} documents ({} empty), {} tokens -> train {} sequences / {} \
         tokens in {} shard(s){}",
        stats.documents,
        stats.empty_documents,
        stats.tokens,
        train.num_sequences(),
        m.num_tokens,
        train.shards.len(),
        if with_validation {
            format!(
                ", validation {} sequences from {} documents",
                validation.num_sequences(),
                validation.documents
            )
        } else {
            String::new()
        }
    );
    eprintln!(
        "preprocess tokenize: dropped {} short chunk(s) holding {} tokens ({:.3}% of tokens, \
         --min-tail {})",
        stats.dropped_chunks,
        stats.dropped_tokens,
        100.0 * stats.dropped_tokens as f64 / stats.tokens.max(1) as f64,
        cfg.min_tail
    );
    eprintln!(
        "preprocess tokenize: throughput {:.2} MB/s of text ({mb:.1} MB in {seconds:.2} s, {} \
         threads; {:.2} s in all) -> {}",
        mb / seconds,
        cfg.threads,
        started.elapsed().as_secs_f64(),
        cfg.out.display()
    );
    Ok(())
}

/// Counts over the whole corpus.
#[derive(Debug, Default)]
struct Stats {
    documents: u64,
    empty_documents: u64,
    text_bytes: u64,
    tokens: u64,
    dropped_chunks: u64,
    dropped_tokens: u64,
}

/// Streams the corpus: a reader thread cuts it into chunks of about [`CHUNK_BYTES`] of text;
/// each chunk is tokenized and packed in parallel (inside the current rayon pool), then its rows
/// are numbered and written in document order, so the output does not depend on the pool size.
fn tokenize_all(
    cfg: &TokenizeConfig,
    tok: &LoadedTokenizer,
    sources: &[Source],
    train: &mut SplitWriter,
    validation: &mut SplitWriter,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Stats> {
    let special = &tok.info.special_tokens;
    let packer = Packer {
        cls: special.cls as i32,
        sep: special.sep as i32,
        body: cfg.body_len(),
        min_tail: cfg.min_tail,
    };
    let opts = ReadOptions {
        text_field: cfg.text_field.clone(),
        txt_blank_line_docs: cfg.txt_blank_line_docs,
    };
    let (tx, rx) = crossbeam_channel::bounded::<anyhow::Result<Vec<String>>>(2);
    let mut stats = Stats::default();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            let result = read_documents(sources, &opts, |doc| {
                bytes += doc.len();
                chunk.push(doc);
                if bytes >= CHUNK_BYTES {
                    bytes = 0;
                    tx.send(Ok(std::mem::take(&mut chunk)))
                        .map_err(|_| anyhow::anyhow!("tokenizer stopped"))?;
                }
                Ok(())
            });
            let last = match result {
                Ok(()) => Ok(chunk),
                Err(e) => Err(e),
            };
            let _ = tx.send(last); // the receiver is gone only after an error of its own
        });
        for chunk in rx {
            let chunk = chunk?;
            let packed = chunk
                .par_iter()
                .map(|text| {
                    let enc = tok
                        .tokenizer
                        .encode_fast(text.as_str(), false)
                        .map_err(|e| anyhow::anyhow!("tokenizing document: {e}"))?;
                    Ok(packer.pack(enc.get_ids()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (text, doc) in chunk.iter().zip(packed) {
                let doc_id = stats.documents;
                stats.documents += 1;
                stats.text_bytes += text.len() as u64;
                stats.tokens += doc.tokens;
                stats.empty_documents += u64::from(doc.tokens == 0);
                stats.dropped_chunks += u64::from(doc.dropped_tokens > 0);
                stats.dropped_tokens += doc.dropped_tokens;
                let split = if is_validation(cfg, doc_id) {
                    &mut *validation
                } else {
                    &mut *train
                };
                split.documents += 1;
                for row in &doc.rows {
                    split.push(doc_id, row)?;
                }
            }
            progress.set_position(stats.text_bytes);
        }
        Ok(())
    })?;
    Ok(stats)
}

/// Whether document `doc_id` goes to the validation split: a pure function of (seed, doc_id).
fn is_validation(cfg: &TokenizeConfig, doc_id: u64) -> bool {
    cfg.validation_fraction > 0.0
        && CounterRng::new(cfg.split_seed, &[domain::SPLIT, doc_id]).next_f64()
            < cfg.validation_fraction
}

/// Size and SHA-256 of every source, hashed in parallel.
fn hash_sources(sources: &[Source]) -> anyhow::Result<Vec<SourceFile>> {
    sources
        .par_iter()
        .map(|s| {
            let bytes = std::fs::metadata(&s.path)
                .with_context(|| format!("{}: cannot read input", s.path.display()))?
                .len();
            Ok(SourceFile {
                path: s.path.display().to_string(),
                bytes,
                sha256: shared::hash::sha256_file(&s.path)?,
            })
        })
        .collect()
}

/// The settings that decide the content, as recorded in the manifests.
fn settings(cfg: &TokenizeConfig) -> BTreeMap<String, serde_json::Value> {
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
fn dataset_fingerprint(
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
    shared::hash::sha256_hex(canonical.to_string().as_bytes())
}
