//! Turning `--input` arguments (files, folders, globs) into the ordered list of corpus files.
use anyhow::Context;
use std::path::{Path, PathBuf};

/// The format of a corpus file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `.txt`: one document per file, or blank-line separated documents.
    Txt,
    /// `.jsonl`: one JSON object per line.
    Jsonl,
    /// `.parquet`: a string column.
    Parquet,
}

impl SourceKind {
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "txt" => Some(Self::Txt),
            "jsonl" => Some(Self::Jsonl),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// One corpus file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub kind: SourceKind,
}

/// Expands `inputs` in order: a file is taken as is (its extension must be known), a folder
/// gives its `.txt`/`.jsonl`/`.parquet` files (recursively, hidden entries skipped, sorted by
/// path), a glob pattern gives its matches (sorted). Each error names the argument.
pub fn expand_inputs(inputs: &[String]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if path.exists() {
            add_path(path, input, true, &mut out)?;
        } else if input.contains(['*', '?', '[']) {
            // As a shell does: `*` does not match a leading dot (hidden files stay out).
            let options = glob::MatchOptions {
                require_literal_leading_dot: true,
                ..glob::MatchOptions::new()
            };
            let mut matches = glob::glob_with(input, options)
                .with_context(|| format!("--input {input}: not a valid glob pattern"))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--input {input}: listing matches"))?;
            matches.sort();
            anyhow::ensure!(
                !matches.is_empty(),
                "--input {input}: expected matching files, found none"
            );
            let before = out.len();
            for m in matches {
                add_path(&m, input, false, &mut out)?;
            }
            anyhow::ensure!(
                out.len() > before,
                "--input {input}: expected .txt, .jsonl or .parquet files among the matches, \
                 found none"
            );
        } else {
            anyhow::bail!("--input {input}: no such file or folder");
        }
    }
    Ok(out)
}

/// Adds `path` (a file or a folder). `explicit`: named on the command line, so an unknown
/// extension is an error rather than skipped.
fn add_path(path: &Path, input: &str, explicit: bool, out: &mut Vec<Source>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--input {input}: reading {}", path.display()))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        anyhow::ensure!(
            !files.is_empty(),
            "--input {input}: expected .txt, .jsonl or .parquet files in the folder, found none"
        );
        out.extend(files);
    } else if let Some(kind) = SourceKind::of(path) {
        out.push(Source {
            path: path.to_path_buf(),
            kind,
        });
    } else if explicit {
        anyhow::bail!(
            "--input {}: extension: expected .txt, .jsonl or .parquet, found {:?}",
            path.display(),
            path.extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<Source>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if let Some(kind) = SourceKind::of(&path) {
            out.push(Source { path, kind });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_recursive_and_sorted_globs_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("b/c")).unwrap();
        for f in [
            "b/c/z.txt",
            "b/a.jsonl",
            "b/skip.md",
            "b/.hidden.txt",
            "a.parquet",
        ] {
            std::fs::write(d.join(f), "x").unwrap();
        }
        let got = expand_inputs(&[d.join("b").display().to_string()]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|s| s.path.strip_prefix(d).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("b/a.jsonl"), PathBuf::from("b/c/z.txt")]
        );
        assert_eq!(got[0].kind, SourceKind::Jsonl);
        let got = expand_inputs(&[format!("{}/b/**/*.txt", d.display())]).unwrap();
        assert_eq!(got.len(), 1);
        let err = expand_inputs(&[format!("{}/nothing*.txt", d.display())]).unwrap_err();
        assert!(format!("{err:#}").contains("found none"), "{err:#}");
        let err = expand_inputs(&[d.join("b/skip.md").display().to_string()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("expected .txt, .jsonl or .parquet"),
            "{err:#}"
        );
        let err = expand_inputs(&[d.join("missing.txt").display().to_string()]).unwrap_err();
        assert!(format!("{err:#}").contains("no such file"), "{err:#}");
    }
}
