//! The cheap check a re-run makes of a folder whose manifest says it is complete: every listed
//! file exists with its listed size (no hashing; readers verify the SHA-256 where they read).
use std::path::Path;

/// The listed files of `dir` (name, size in bytes) that are missing or of another size, each
/// with a line saying what was found (`part-00002.parquet: missing`, `...: expected 1234
/// bytes, found 567`).
pub fn damaged<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (&'a str, u64)>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == bytes => {}
            Ok(m) if m.is_file() => out.push((
                name.to_string(),
                format!(
                    "{}: expected {bytes} bytes (as listed), found {}",
                    path.display(),
                    m.len()
                ),
            )),
            Ok(_) => out.push((
                name.to_string(),
                format!("{}: expected a file, found a folder", path.display()),
            )),
            Err(_) => out.push((
                name.to_string(),
                format!("{}: listed ({bytes} bytes) but missing", path.display()),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_and_resized_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), b"abc").unwrap();
        std::fs::write(tmp.path().join("b"), b"ab").unwrap();
        let d = super::damaged(tmp.path(), [("a", 3), ("b", 3), ("c", 1)]);
        let names: Vec<&str> = d.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(d[0].1.contains("expected 3 bytes (as listed), found 2"));
        assert!(d[1].1.contains("missing"));
    }
}
