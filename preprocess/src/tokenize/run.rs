//! `preprocess tokenize` from checked settings to manifests: load the tokenizer, list and hash
//! the sources, check the output folder, then stream documents through a reader thread, tokenize
//! each chunk in parallel, pack and number rows in corpus order, write shards, write manifests.
use anyhow::Context;
use shared::format::manifest::TokenManifest;
use shared::format::spec::token_dir::{SPLIT_TRAIN, SPLIT_VALIDATION, VALIDATION_DIR};
use shared::format::spec::DATA_SPEC_VERSION;
use shared::tokenizer::load_tokenizer;
use std::time::Instant;

use super::args::TokenizeConfig;
use super::fingerprint::{dataset_fingerprint, hash_sources, settings};
use super::inputs::expand_inputs;
use super::output::{prepare_output, OutputState};
use super::stream::tokenize_all;
use super::writer::{ShardMeta, SplitWriter};

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

    // One writer per output folder, for the whole run (data-spec/README.md, "Locks").
    let _lock = shared::files::lock::FolderLock::folder(&cfg.out, "preprocess tokenize")?;
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
    let progress = shared::runtime::progress::Progress::new(
        "tokenize",
        total_bytes,
        "bytes",
        "{prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} \
         {binary_bytes_per_sec} eta {eta}",
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
    // The training split's term frequencies, before any manifest (which lists the file).
    let term_frequency = shared::format::term_frequency::write_term_frequency(
        train.dir(),
        &train.counts,
        &fingerprint,
    )?;

    let manifest = |w: &SplitWriter, split: &str| TokenManifest {
        data_spec_version: DATA_SPEC_VERSION,
        kind: shared::format::spec::tokens::KIND.to_string(),
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
        term_frequency: (split == SPLIT_TRAIN).then(|| term_frequency.clone()),
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
        shared::files::atomic::write_json_atomic(
            &validation.dir().join(shared::format::spec::MANIFEST_FILE),
            &m,
        )?;
    }
    let m = manifest(&train, SPLIT_TRAIN);
    shared::files::atomic::write_json_atomic(
        &train.dir().join(shared::format::spec::MANIFEST_FILE),
        &m,
    )?;

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
