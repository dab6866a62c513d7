//! Atomic file writes: write to a temporary name in the same folder, fsync, rename. A reader
//! never sees half a file, and an interrupted writer leaves only a `*.tmp` file that the next
//! run removes or overwrites.
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: `.NAME.PID.tmp` beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Moves a finished temporary file into place (fsync first, then rename, then fsync the folder).
pub fn commit(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        // Best effort: some filesystems refuse to open a folder for syncing.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically. On failure (a full disk) the temporary file is removed,
/// giving its space back, and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))
        .and_then(|mut f| {
            f.write_all(bytes)
                .with_context(|| format!("writing {}", tmp.display()))
        })
        .and_then(|()| commit(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .with_context(|| format!("serialising {}", path.display()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Removes leftover temporary files (`.*.tmp`) of earlier, interrupted runs from `dir`.
pub fn remove_stale_temps(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        super::write_json_atomic(&p, &serde_json::json!({"x": 1})).unwrap();
        assert!(p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
