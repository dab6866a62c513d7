//! Loading a Hugging Face `tokenizer.json` for packing: its own truncation and padding are
//! switched off (the shared BERT file carries truncation 128 and padding 128, which would
//! silently cut every document), and the special tokens are found by their usual names.
use anyhow::Context;
use std::path::Path;

use crate::format::manifest::{SpecialTokens, TokenizerInfo};

/// A tokenizer ready to encode whole documents, with what the manifests record about it.
pub struct LoadedTokenizer {
    pub tokenizer: tokenizers::Tokenizer,
    pub info: TokenizerInfo,
}

/// Accepted spellings of each special token, in order of preference (BERT/ELECTRA WordPiece,
/// RoBERTa/BPE, XLNet/SentencePiece style).
pub const CLS_NAMES: &[&str] = &["[CLS]", "<s>", "<cls>", "[BOS]", "<bos>"];
pub const SEP_NAMES: &[&str] = &["[SEP]", "</s>", "<sep>", "[EOS]", "<eos>"];
pub const MASK_NAMES: &[&str] = &["[MASK]", "<mask>"];
pub const PAD_NAMES: &[&str] = &["[PAD]", "<pad>"];
pub const UNK_NAMES: &[&str] = &["[UNK]", "<unk>"];

/// Loads `path`, switches truncation and padding off, makes special-token strings in the text
/// encode as plain text, finds the special tokens and fingerprints
/// the file (SHA-256). Refuses a tokenizer without a mask, CLS, SEP or PAD token.
pub fn load_tokenizer(path: &Path) -> anyhow::Result<LoadedTokenizer> {
    let sha256 = crate::files::hash::sha256_file(path)
        .with_context(|| format!("tokenizer {}: unreadable", path.display()))?;
    let mut tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| {
        anyhow::anyhow!(
            "tokenizer {}: expected a Hugging Face tokenizer.json, found a file that does not \
             parse: {e}",
            path.display()
        )
    })?;
    tokenizer.with_truncation(None).map_err(|e| {
        anyhow::anyhow!(
            "tokenizer {}: switching truncation off: {e}",
            path.display()
        )
    })?;
    tokenizer.with_padding(None);
    // Special-token strings inside a document ("[MASK]" written in the text) are tokenized as
    // ordinary text, so a row holds CLS/SEP only at its ends and never the mask id.
    tokenizer.set_encode_special_tokens(true);

    let find = |role: &str, names: &[&str]| -> anyhow::Result<u32> {
        names
            .iter()
            .find_map(|n| tokenizer.token_to_id(n))
            .with_context(|| {
                format!(
                    "tokenizer {}: no {role} token: expected one of {names:?} in its vocabulary, \
                     found none",
                    path.display()
                )
            })
    };
    let special_tokens = SpecialTokens {
        cls: find("CLS (sequence start)", CLS_NAMES)?,
        sep: find("SEP (sequence end)", SEP_NAMES)?,
        mask: find("mask", MASK_NAMES)?,
        pad: find("padding", PAD_NAMES)?,
        unk: UNK_NAMES.iter().find_map(|n| tokenizer.token_to_id(n)),
    };
    let vocab_size = tokenizer.get_vocab_size(true) as u32;
    Ok(LoadedTokenizer {
        tokenizer,
        info: TokenizerInfo {
            path: path.display().to_string(),
            sha256,
            vocab_size,
            special_tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny WordPiece tokenizer.json; `specials` are added to the vocabulary.
    fn tiny(specials: &[&str]) -> String {
        let mut vocab = serde_json::Map::new();
        for (i, t) in specials.iter().chain(["hello", "world"].iter()).enumerate() {
            vocab.insert(t.to_string(), serde_json::json!(i));
        }
        serde_json::json!({
            "version": "1.0",
            "truncation": {"max_length": 4, "strategy": "LongestFirst", "stride": 0,
                           "direction": "Right"},
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                      "vocab": vocab}
        })
        .to_string()
    }

    #[test]
    fn finds_specials_and_turns_truncation_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tiny(&["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])).unwrap();
        let t = load_tokenizer(&path).unwrap();
        assert_eq!(
            t.info.special_tokens,
            SpecialTokens {
                pad: 0,
                unk: Some(1),
                cls: 2,
                sep: 3,
                mask: 4
            }
        );
        assert_eq!(t.info.vocab_size, 7);
        assert_eq!(
            t.info.sha256,
            crate::files::hash::sha256_file(&path).unwrap()
        );
        let enc = t
            .tokenizer
            .encode("hello world hello world hello world", false)
            .unwrap();
        assert_eq!(enc.get_ids().len(), 6, "truncation must be off");
    }

    #[test]
    fn refuses_a_tokenizer_without_mask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, tiny(&["[PAD]", "[UNK]", "[CLS]", "[SEP]"])).unwrap();
        let err = format!("{:#}", load_tokenizer(&path).err().unwrap());
        assert!(
            err.contains("no mask token") && err.contains("[MASK]"),
            "{err}"
        );
    }

    #[test]
    fn refuses_an_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = format!("{:#}", load_tokenizer(&path).err().unwrap());
        assert!(
            err.contains("tokenizer.json") && err.contains("does not parse"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            load_tokenizer(&dir.path().join("nope.json")).err().unwrap()
        );
        assert!(err.contains("nope.json"), "{err}");
    }
}
