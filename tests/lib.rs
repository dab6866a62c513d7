//! Helpers for the end-to-end tests in `tests/tests/`: where the repository, the shared data and
//! the built binaries are.
use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `../shared/data` beside the repository (the corpus and tokenizer of DESIGN.md), or
/// `$FAST_ELECTRA_SHARED_DATA`.
pub fn shared_data() -> PathBuf {
    std::env::var_os("FAST_ELECTRA_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

/// The shared BERT `tokenizer.json`.
pub fn bert_tokenizer() -> PathBuf {
    shared_data().join("tokenizers/bert-base-uncased/tokenizer.json")
}

/// Path of a binary of this workspace built in the same profile as the running test
/// (`scripts/test` runs `cargo build --release --bins` first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --release --bins` (scripts/test does)",
        path.display()
    );
    path
}
