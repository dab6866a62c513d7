//! The on-disk cache of compiled kernels: one file per key, the key a SHA-256 of everything that
//! decides the CUBIN (the program, every option but the include path, the content of the header
//! folder, the NVRTC version and the identity of its builtins library), each file carrying the
//! SHA-256 of its CUBIN, so that a damaged or truncated file is found, reported and recompiled
//! instead of failing the module load.
//!
//! File format: the line `fast-electra cubin v1 <sha256 of the CUBIN, hex>\n`, then the CUBIN.
use crate::files::hash::sha256_hex;
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const MAGIC: &str = "fast-electra cubin v1 ";

/// SHA-256 (hex) of every file under `dir`: their paths relative to `dir`, sizes and contents,
/// in sorted order, so that any change to a header (an edit, a new or a removed file) changes it.
pub fn folder_hash(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = e
                .with_context(|| format!("listing {}", d.display()))?
                .path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The cache key of a CUBIN: `program`, `options` (without `-I`, whose folder enters by
/// `headers`, its content hash), `toolchain` (the NVRTC version and builtins' identity), `arch`.
pub fn key(
    program: &str,
    options: &[String],
    headers: &str,
    toolchain: &str,
    arch: &str,
) -> String {
    let mut k = String::from(program);
    for o in options.iter().filter(|o| !o.starts_with("-I")) {
        k.push('\0');
        k.push_str(o);
    }
    k.push_str(&format!("\0headers {headers}\0nvrtc {toolchain}\0{arch}"));
    sha256_hex(k.as_bytes())
}

/// The file of `key` in the cache folder `dir`.
pub fn path(dir: &Path, key: &str, arch: &str) -> PathBuf {
    dir.join(format!("{key}-{arch}.cubin"))
}

/// What a cache file holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// No file.
    Missing,
    /// A complete CUBIN whose checksum matches.
    Valid(Vec<u8>),
    /// A file that is not a complete cache entry: the reason.
    Corrupt(String),
}

/// Reads the cache file `p`.
pub fn read(p: &Path) -> Cached {
    let bytes = match std::fs::read(p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Cached::Missing,
        Err(e) => return Cached::Corrupt(format!("unreadable: {e}")),
    };
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Cached::Corrupt("no header line".into());
    };
    let header = String::from_utf8_lossy(&bytes[..nl]);
    let Some(want) = header.strip_prefix(MAGIC) else {
        return Cached::Corrupt(format!(
            "header: expected {MAGIC:?}<sha256>, found {:?}",
            header.chars().take(60).collect::<String>()
        ));
    };
    let body = &bytes[nl + 1..];
    let found = sha256_hex(body);
    if found != want {
        return Cached::Corrupt(format!(
            "checksum: expected {want}, found {found} ({} bytes)",
            body.len()
        ));
    }
    Cached::Valid(body.to_vec())
}

/// Writes `cubin` as the cache file `p` (atomically: a temporary name, then a rename).
pub fn write(p: &Path, cubin: &[u8]) -> anyhow::Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut bytes = format!("{MAGIC}{}\n", sha256_hex(cubin)).into_bytes();
    bytes.extend_from_slice(cubin);
    crate::files::atomic::write_atomic(p, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_found_and_a_written_one_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path(), "k", "sm_90");
        assert_eq!(read(&p), Cached::Missing);
        let cubin = b"\x7fELF and more bytes".to_vec();
        write(&p, &cubin).unwrap();
        assert_eq!(read(&p), Cached::Valid(cubin.clone()));
        let full = std::fs::read(&p).unwrap();
        // Truncated, one byte flipped, an old raw CUBIN without the header.
        for (bytes, needle) in [
            (full[..full.len() - 3].to_vec(), "checksum"),
            (
                {
                    let mut b = full.clone();
                    *b.last_mut().unwrap() ^= 1;
                    b
                },
                "checksum",
            ),
            (cubin.clone(), "header"),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            match read(&p) {
                Cached::Corrupt(why) => assert!(why.contains(needle), "{why}"),
                other => panic!("expected a corrupt entry, found {other:?}"),
            }
        }
    }

    #[test]
    fn the_key_follows_headers_toolchain_and_options_but_not_the_include_path() {
        let opts = |inc: &str| vec!["--gpu-architecture=sm_90".to_string(), format!("-I{inc}")];
        let k = key("src", &opts("/a"), "h1", "13.0 b1", "sm_90");
        assert_eq!(k, key("src", &opts("/b"), "h1", "13.0 b1", "sm_90"));
        assert_ne!(k, key("src", &opts("/a"), "h2", "13.0 b1", "sm_90"));
        assert_ne!(k, key("src", &opts("/a"), "h1", "13.1 b1", "sm_90"));
        assert_ne!(k, key("src2", &opts("/a"), "h1", "13.0 b1", "sm_90"));
        let mut more = opts("/a");
        more.push("-lineinfo".into());
        assert_ne!(k, key("src", &more, "h1", "13.0 b1", "sm_90"));
    }

    #[test]
    fn the_folder_hash_changes_with_any_header() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("crt")).unwrap();
        std::fs::write(d.path().join("a.h"), "int a;").unwrap();
        std::fs::write(d.path().join("crt/b.h"), "int b;").unwrap();
        let h0 = folder_hash(d.path()).unwrap();
        assert_eq!(h0, folder_hash(d.path()).unwrap());
        std::fs::write(d.path().join("crt/b.h"), "int c;").unwrap();
        let h1 = folder_hash(d.path()).unwrap();
        assert_ne!(h0, h1);
        std::fs::write(d.path().join("crt/new.h"), "").unwrap();
        assert_ne!(h1, folder_hash(d.path()).unwrap());
    }
}
