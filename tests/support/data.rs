//! Where the repository and the public data (corpus and tokenizer) are.
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The public data folder (layout of `../shared/data`: `corpus/sotu.jsonl`,
/// `corpus/moby-dick.txt`, `tokenizers/bert-base-uncased/`), looked up as `scripts/fetch-data`
/// does: `$FAST_ELECTRA_SHARED_DATA`, else `../shared/data` beside the repository, else the fetch
/// cache (`$FAST_ELECTRA_DATA_CACHE`, default `.cache/data` in the repository). `scripts/test`
/// runs the fetch first and exports the first variable; a plain `cargo test` finds the others.
/// Panics, saying to run `scripts/fetch-data`, when none holds the data.
pub fn shared_data() -> PathBuf {
    find_shared_data().unwrap_or_else(|e| panic!("{e}"))
}

/// [`shared_data`], or why there is none.
pub fn find_shared_data() -> Result<PathBuf, String> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let found = if let Some(dir) = env("FAST_ELECTRA_SHARED_DATA") {
        PathBuf::from(dir)
    } else {
        let beside = repo_root().join("../shared/data");
        let cache = env("FAST_ELECTRA_DATA_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".cache/data"));
        if beside.is_dir() {
            beside
        } else {
            cache
        }
    };
    if found.join("corpus/sotu.jsonl").is_file() {
        Ok(found)
    } else {
        Err(format!(
            "no public data at {}: run scripts/fetch-data (it fetches the corpus and tokenizer \
             into .cache/data; scripts/test runs it) or set FAST_ELECTRA_SHARED_DATA",
            found.display()
        ))
    }
}

/// The shared BERT `tokenizer.json`.
pub fn bert_tokenizer() -> PathBuf {
    shared_data().join("tokenizers/bert-base-uncased/tokenizer.json")
}

/// A path as `&str`, for argument lists (the tests' paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
