//! Slices of the public corpus written as small corpus files.
use std::path::{Path, PathBuf};

use super::data::shared_data;

/// The first `n` State of the Union addresses: lines of `sotu.jsonl`.
pub fn sotu_lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(shared_data().join("corpus/sotu.jsonl")).unwrap();
    let lines: Vec<String> = text.lines().take(n).map(String::from).collect();
    assert_eq!(lines.len(), n, "sotu.jsonl has fewer than {n} addresses");
    lines
}

/// Writes the first `n` addresses as `dir/sotu-{n}.jsonl` and returns its path.
pub fn write_sotu(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("sotu-{n}.jsonl"));
    std::fs::write(&path, sotu_lines(n).join("\n") + "\n").unwrap();
    path
}

/// Moby-Dick from its start, at most `max_bytes` long, cut at a character boundary.
pub fn moby_dick_prefix(max_bytes: usize) -> String {
    let mut text = std::fs::read_to_string(shared_data().join("corpus/moby-dick.txt")).unwrap();
    let mut end = max_bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}
