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

/// Runs binary `name` of this workspace with `args` and returns its output. OpenMP threads sleep
/// while they wait (`OMP_WAIT_POLICY=passive`): on 2 shared cores, spinning torch threads made
/// the trainer and the preprocessor 10-20 times slower.
pub fn run(name: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary(name))
        .args(args)
        .env("OMP_WAIT_POLICY", "passive")
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Fails the test with the command's stderr unless it succeeded; returns the output.
pub fn expect_ok(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "command failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails the test unless the command failed; returns its stderr.
pub fn expect_err(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every row of one epoch shard (all its row groups, in file order).
pub fn read_epoch_shard(path: &std::path::Path) -> shared::format::epoch_shards::EpochRows {
    use shared::format::epoch_shards::EpochRows;
    let file = shared::format::shard_reader::ShardFile::open(path).unwrap();
    let mut all = EpochRows::new();
    for g in 0..file.num_row_groups() {
        let r = EpochRows::from_batch(&file.read_row_group(g).unwrap(), path).unwrap();
        for i in 0..r.len() {
            all.push(
                r.sequence_ids[i],
                r.row(i),
                r.targets_row(i),
                r.masked_row(i),
                r.original_row(i),
            );
        }
    }
    all
}
