//! Fixtures made once for the whole suite and kept on disk, under
//! `target/<profile>/e2e-fixtures/NAME-KEY/`, where KEY hashes everything that decides the content
//! (the recipe's source, the arguments, the input files, the built binaries). Each test binary is
//! its own process: the first that needs a fixture makes it, the others (and the next runs of the
//! suite) find it. It is made in a temporary folder beside its place and renamed into place when
//! complete, so a folder under its final name is always whole; when two processes race, the
//! loser drops its copy and uses the winner's. Tests read a cached fixture and never write into
//! it (write into your own temporary folder). Delete `target/*/e2e-fixtures` to force a rebuild.
use std::path::{Path, PathBuf};

/// What decides a fixture's content (hashed into the folder name).
pub struct Key(Vec<u8>);

impl Key {
    /// A key for the fixture made by the source text `recipe` (pass `include_str!` of the file
    /// that makes it: editing the recipe makes a new fixture).
    pub fn new(recipe: &str) -> Self {
        Key(Vec::new()).text(include_str!("cache.rs")).text(recipe)
    }

    /// Adds a string (an argument, a path).
    pub fn text(mut self, s: &str) -> Self {
        self.0.extend((s.len() as u64).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }

    /// Adds the bytes of a file.
    pub fn file(self, path: &Path) -> Self {
        let sha = shared::files::hash::sha256_file(path).unwrap();
        self.text(&path.display().to_string()).text(&sha)
    }

    /// Adds a built binary of the workspace by path, size and modification time (a rebuild makes
    /// a new fixture; hashing the bytes would cost a second per binary).
    pub fn binary(self, name: &str) -> Self {
        let path = super::binaries::binary(name);
        let meta = std::fs::metadata(&path).unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        self.text(&format!("{} {} {mtime}", path.display(), meta.len()))
    }

    fn hex(self) -> String {
        shared::files::hash::sha256_hex(&self.0)[..16].to_string()
    }
}

/// `target/<profile>/e2e-fixtures`, beside the binaries the fixtures are made with.
pub fn cache_root() -> PathBuf {
    super::binaries::binary("preprocess")
        .parent()
        .unwrap()
        .join("e2e-fixtures")
}

/// The cached folder `NAME-KEY`, made first by `make` (which fills the empty folder it is given)
/// if it is not there yet. Folders of older keys of the same name are removed once the new one
/// is in place. Prints (to the test's stderr) whether it was made or found.
pub fn cached_dir(name: &str, key: Key, make: impl FnOnce(&Path)) -> PathBuf {
    let root = cache_root();
    let dir = root.join(format!("{name}-{}", key.hex()));
    if dir.is_dir() {
        eprintln!("fixture {name}: cached in {}", dir.display());
        return dir;
    }
    std::fs::create_dir_all(&root).unwrap();
    let started = std::time::Instant::now();
    // Removed on a panic in `make`; kept (and renamed) once complete.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(&root)
        .unwrap();
    make(tmp.path());
    let made = tmp.keep();
    if std::fs::rename(&made, &dir).is_err() {
        // Another process put it there first: the same content, by the key.
        assert!(
            dir.is_dir(),
            "cannot rename {} to {}",
            made.display(),
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&made);
    }
    eprintln!(
        "fixture {name}: made in {:.1} s, cached in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let old = entry.path();
        let file_name = entry.file_name();
        let file = file_name.to_string_lossy();
        if old != dir && file.starts_with(&format!("{name}-")) && old.is_dir() {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    dir
}
