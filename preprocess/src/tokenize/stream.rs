//! The streaming core: a reader thread cuts the corpus into chunks of documents, each chunk is
//! tokenized and packed in parallel, and its rows are numbered and written in document order.
use rayon::prelude::*;
use shared::corruption::rng::{domain, CounterRng};
use shared::tokenizer::LoadedTokenizer;

use super::args::TokenizeConfig;
use super::inputs::Source;
use super::pack::Packer;
use super::reader::{read_documents, ReadOptions};
use super::writer::SplitWriter;

/// Text bytes read before a chunk of documents is tokenized in parallel.
const CHUNK_BYTES: usize = 4 << 20;

/// Counts over the whole corpus.
#[derive(Debug, Default)]
pub struct Stats {
    pub documents: u64,
    pub empty_documents: u64,
    pub text_bytes: u64,
    pub tokens: u64,
    pub dropped_chunks: u64,
    pub dropped_tokens: u64,
}

/// Streams the corpus: a reader thread cuts it into chunks of about [`CHUNK_BYTES`] of text;
/// each chunk is tokenized and packed in parallel (inside the current rayon pool), then its rows
/// are numbered and written in document order, so the output does not depend on the pool size.
pub fn tokenize_all(
    cfg: &TokenizeConfig,
    tok: &LoadedTokenizer,
    sources: &[Source],
    train: &mut SplitWriter,
    validation: &mut SplitWriter,
    progress: &shared::runtime::progress::Progress,
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
