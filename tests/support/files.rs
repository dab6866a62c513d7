//! Folders and files: snapshots, copies, listings, JSON.
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// SHA-256 and modification time of every file under a folder.
pub type Snapshot = BTreeMap<PathBuf, (String, SystemTime)>;

/// Whether `p` is a lock file (`.lock`, `.lock-*`): not data (data-spec/README.md, "Locks"),
/// and present while any reader or writer holds the folder, so listings leave it out.
fn is_lock(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| shared::files::lock::is_lock_file(&n.to_string_lossy()))
}

/// A [`Snapshot`] of every file under `dir` (recursively), lock files left out.
pub fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if is_lock(&p) {
            continue;
        }
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
            out.insert(
                p.clone(),
                (shared::files::hash::sha256_file(&p).unwrap(), mtime),
            );
        }
    }
    out
}

/// Every file under `dir` (recursively), lock files left out: path relative to `dir` -> bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if is_lock(&p) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// A copy of the files of `src` (a shard folder, not recursive) at `dst`; `keep` picks them.
pub fn copy_files(src: &Path, dst: &Path, keep: impl Fn(&Path) -> bool) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() && keep(&p) {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// A copy of every file of `src` (a shard folder, not recursive) at `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    copy_files(src, dst, |_| true);
}

/// The `.parquet` files of a folder, sorted by name.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Edits `dir/manifest.json` in place as JSON.
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("manifest.json");
    let mut v = read_json(&p);
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}
