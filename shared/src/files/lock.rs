//! Advisory locks on shard and run folders: one writer per folder, and no reading while it
//! is written (data-spec/README.md, "Locks").
//!
//! A writer holds an OS file lock (`flock`, through std's [`File::try_lock`]) on a lock file
//! inside the folder for its whole run: [`FOLDER_LOCK`] (`.lock`) for a whole folder, or
//! `.lock-part-K-of-N` for one part of an epoch ([`part_lock_name`]). A second writer is refused
//! at once, with an error naming the folder and the holder's process id and host, which the
//! holder writes into the lock file (`pid=`, `host=`, `command=`, `started=` lines). That text
//! is informational only: the lock itself is the OS's, released when the holder's process ends
//! however it ends, so a lock file left by a killed process never blocks (its stale text is
//! overwritten by the next holder).
//!
//! Readers of a complete folder (the trainer's `--shards` and `--validation`, `preprocess
//! --epoch`'s `--tokens`, `trainer loader-bench`) hold `.lock` shared for as long as they read
//! ([`FolderLock::reader`]): readers coexist, and a writer and a reader exclude each other, so
//! a folder is never read while `preprocess tokenize --overwrite` (or any writer) rewrites it.
//!
//! An exclusive holder removes the lock file when it is done (while still holding the lock), so
//! a clean run leaves nothing behind; a taker checks after locking that the file it locked is
//! still the one at the path (else it was removed meanwhile, and it tries again). A shared holder
//! removes it only if it can convert its lock to an exclusive one, i.e. it is the last holder.
//!
//! `flock` works on local file systems and on NFS (v4, where the Linux client maps it to POSIX
//! byte-range locks shared by every client); a file system without locks refuses the lock with
//! an error saying so.
use anyhow::{bail, Context};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The lock file of a whole folder.
pub const FOLDER_LOCK: &str = ".lock";

/// The lock file of part `index` of `count` of an epoch folder.
pub fn part_lock_name(index: usize, count: usize) -> String {
    format!(".lock-part-{index}-of-{count}")
}

/// Whether `name` is a lock file's name (`.lock`, `.lock-*`): not data, left out of listings.
pub fn is_lock_file(name: &str) -> bool {
    name == FOLDER_LOCK || name.starts_with(".lock-")
}

/// Exclusive (one holder) or shared (many shared holders, no exclusive one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

/// A held lock; released (and its file removed when possible) on drop.
#[derive(Debug)]
pub struct FolderLock {
    file: Option<File>,
    path: PathBuf,
    mode: Mode,
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`), or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The text a holder writes into its lock file.
fn holder_text(command: &str) -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "pid={}\nhost={}\ncommand={command}\nstarted={started}\n",
        std::process::id(),
        host_name()
    )
}

/// "pid P on host H (COMMAND)" from a lock file's text, or None if it holds none.
pub fn describe_holder(text: &str) -> Option<String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .filter(|v| !v.is_empty())
    };
    let pid = field("pid=")?;
    let host = field("host=").unwrap_or("unknown");
    Some(match field("command=") {
        Some(c) => format!("pid {pid} on host {host} ({c})"),
        None => format!("pid {pid} on host {host}"),
    })
}

/// Who holds the folder's locks, from the texts of its lock files (for an error message).
fn holders(dir: &Path, first: &Path) -> String {
    let mut found: Vec<String> = std::fs::read_to_string(first)
        .ok()
        .as_deref()
        .and_then(describe_holder)
        .into_iter()
        .collect();
    if found.is_empty() {
        // A shared holder writes nothing into the folder lock; its part lock says who it is.
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| is_lock_file(&n.to_string_lossy()))
                        && p != first
                })
                .collect();
            names.sort();
            for p in names {
                if let Some(h) = std::fs::read_to_string(&p)
                    .ok()
                    .as_deref()
                    .and_then(describe_holder)
                {
                    found.push(h);
                }
            }
        }
    }
    if found.is_empty() {
        "a reader of the folder (readers hold it shared and name no one) or another process \
         whose lock file names none"
            .into()
    } else {
        found.join(", ")
    }
}

/// Who takes a lock: a writer of the folder, or a reader of a complete one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Writer,
    Reader,
}

/// The error of a lock that another process holds.
fn refused(dir: &Path, path: &Path, role: Role) -> anyhow::Error {
    match role {
        Role::Writer => anyhow::anyhow!(
            "{}: in use by another writer: {} holds {}; wait for it to finish or stop it, or \
             write elsewhere (a lock left by a process that died does not block)",
            dir.display(),
            holders(dir, path),
            path.display()
        ),
        Role::Reader => anyhow::anyhow!(
            "{}: being written right now: {} holds {}; read it once that writer has finished \
             (a folder is never read while it is written or rewritten, e.g. by `preprocess \
             tokenize --overwrite`)",
            dir.display(),
            holders(dir, path),
            path.display()
        ),
    }
}

impl FolderLock {
    /// Takes the lock file `name` of `dir` (creating the folder if needed) in `mode` without
    /// waiting; `command` says who holds it (written into the file by an exclusive holder).
    /// Refused at once, naming the folder and the holder, when another process holds it.
    pub fn acquire(dir: &Path, name: &str, mode: Mode, command: &str) -> anyhow::Result<Self> {
        Self::take(dir, name, mode, command, Role::Writer)
    }

    /// Takes a complete folder `dir` for reading: its [`FOLDER_LOCK`] shared, for as long as
    /// the reader reads it. Readers coexist; a writer (which holds the lock exclusively while
    /// it writes, e.g. `preprocess tokenize --overwrite` rewriting a token folder) and a reader
    /// exclude each other, so the reader is refused at once, naming the writer, and a writer
    /// started while a folder is read is refused. Without a folder there is nothing to lock
    /// (`None`: the reader names what is missing). In a folder this process cannot write (a
    /// read-only mount) an existing lock file is taken read-only, and without one the folder
    /// is read unlocked (`None`).
    pub fn reader(dir: &Path, command: &str) -> anyhow::Result<Option<Self>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        let path = dir.join(FOLDER_LOCK);
        let writable = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        match writable {
            Ok(_) => Self::take(dir, FOLDER_LOCK, Mode::Shared, command, Role::Reader).map(Some),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                let Ok(file) = File::open(&path) else {
                    return Ok(None);
                };
                match file.try_lock_shared() {
                    Ok(()) => Ok(Some(Self {
                        file: Some(file),
                        path,
                        mode: Mode::Shared,
                    })),
                    Err(TryLockError::WouldBlock) => Err(refused(dir, &path, Role::Reader)),
                    Err(TryLockError::Error(e)) => Err(e).with_context(|| {
                        format!(
                            "locking {}: expected a file system with file locks (flock)",
                            path.display()
                        )
                    }),
                }
            }
            Err(e) => Err(e).with_context(|| format!("opening the lock file {}", path.display())),
        }
    }

    fn take(dir: &Path, name: &str, mode: Mode, command: &str, role: Role) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        // A few tries: the holder may remove the file between our open and our lock.
        for _ in 0..100 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening the lock file {}", path.display()))?;
            let locked = match mode {
                Mode::Exclusive => file.try_lock(),
                Mode::Shared => file.try_lock_shared(),
            };
            match locked {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(refused(dir, &path, role)),
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| {
                        format!(
                            "locking {}: expected a file system with file locks (flock)",
                            path.display()
                        )
                    })
                }
            }
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue; // removed by its last holder meanwhile: take the new one
            }
            // An exclusive holder says who it is; shared holders clear what a dead exclusive
            // holder may have left (they name themselves in their part locks).
            let text = match mode {
                Mode::Exclusive => holder_text(command),
                Mode::Shared => String::new(),
            };
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(text.as_bytes()))
                .with_context(|| format!("writing {}", path.display()))?;
            return Ok(Self {
                file: Some(file),
                path,
                mode,
            });
        }
        bail!(
            "{}: could not take the lock file {} (it kept being removed)",
            dir.display(),
            path.display()
        )
    }

    /// Takes the whole folder `dir` exclusively (`.lock`).
    pub fn folder(dir: &Path, command: &str) -> anyhow::Result<Self> {
        Self::acquire(dir, FOLDER_LOCK, Mode::Exclusive, command)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text of the lock file (what the holder wrote).
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(mut f) = self.file.as_ref() {
            let _ = f.rewind().and_then(|()| f.read_to_string(&mut s));
        }
        s
    }
}

/// Who holds the lock file `name` of `dir`, if a live process holds it (probed with a shared
/// lock taken and released at once; a missing or stale file is held by no one).
pub fn held_by(dir: &Path, name: &str) -> Option<String> {
    let path = dir.join(name);
    let file = File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(
            std::fs::read_to_string(&path)
                .ok()
                .as_deref()
                .and_then(describe_holder)
                .unwrap_or_else(|| "another process".into()),
        ),
    }
}

/// The locks of a writer of part `index` of `count` of an epoch folder `dir`: its own part lock
/// (exclusive: the same part twice is refused) and the folder lock shared with the other parts
/// of the same `count` (so a whole-folder writer is refused while parts run, and parts while
/// it runs). A live writer of a part with another count (whose shards overlap) is refused too.
/// With `count == 1` this is the folder lock alone, exclusive.
pub fn lock_part(
    dir: &Path,
    index: usize,
    count: usize,
    command: &str,
) -> anyhow::Result<Vec<FolderLock>> {
    if count <= 1 {
        return Ok(vec![FolderLock::folder(dir, command)?]);
    }
    let own = part_lock_name(index, count);
    let part = FolderLock::acquire(dir, &own, Mode::Exclusive, command)?;
    let folder = FolderLock::acquire(dir, FOLDER_LOCK, Mode::Shared, command)?;
    let suffix = format!("-of-{count}");
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".lock-part-") && !n.ends_with(&suffix))
            .collect();
        names.sort();
        for n in names {
            if let Some(h) = held_by(dir, &n) {
                bail!(
                    "{}: in use by another writer: {h} holds {} (a part of another count, whose \
                     shards overlap this run's part {index}/{count}); the parts of one epoch \
                     must share one count",
                    dir.display(),
                    dir.join(&n).display()
                );
            }
        }
    }
    Ok(vec![part, folder])
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        // Remove the file only while holding it exclusively (a shared holder converts first,
        // which succeeds only for the last one), so that no one else is relying on it.
        let exclusive = self.mode == Mode::Exclusive || file.try_lock().is_ok();
        if exclusive {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(file); // closing releases the lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_first() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let held = FolderLock::folder(&dir, "test one").unwrap();
        assert!(held.text().contains(&format!("pid={}", std::process::id())));
        let e = format!("{:#}", FolderLock::folder(&dir, "test two").unwrap_err());
        assert!(
            e.contains(&dir.display().to_string())
                && e.contains(&format!("pid {}", std::process::id()))
                && e.contains(&format!("host {}", host_name()))
                && e.contains("test one"),
            "{e}"
        );
        drop(held);
        assert!(
            !dir.join(FOLDER_LOCK).exists(),
            "a clean release removes the file"
        );
        let again = FolderLock::folder(&dir, "test two").unwrap();
        drop(again);
    }

    #[test]
    fn a_stale_lock_file_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(FOLDER_LOCK),
            "pid=4242\nhost=gone\ncommand=x\n",
        )
        .unwrap();
        let l = FolderLock::folder(tmp.path(), "new").unwrap();
        assert!(l.text().contains("command=new") && !l.text().contains("4242"));
    }

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let tmp = tempfile::tempdir().unwrap();
        let a = FolderLock::acquire(tmp.path(), FOLDER_LOCK, Mode::Shared, "a").unwrap();
        let _pa = FolderLock::acquire(
            tmp.path(),
            &part_lock_name(0, 2),
            Mode::Exclusive,
            "part 0/2",
        )
        .unwrap();
        let b = FolderLock::acquire(tmp.path(), FOLDER_LOCK, Mode::Shared, "b").unwrap();
        let e = format!("{:#}", FolderLock::folder(tmp.path(), "whole").unwrap_err());
        assert!(e.contains("part 0/2"), "{e}");
        drop(a);
        assert!(tmp.path().join(FOLDER_LOCK).exists(), "b still holds it");
        drop(b);
        assert!(!tmp.path().join(FOLDER_LOCK).exists());
        assert!(is_lock_file(".lock") && is_lock_file(".lock-part-0-of-2"));
        assert!(held_by(tmp.path(), FOLDER_LOCK).is_none());
    }

    #[test]
    fn readers_coexist_and_exclude_a_writer_both_ways() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // A writer at work: a reader is refused at once, naming it.
        let w = FolderLock::folder(d, "preprocess tokenize --overwrite").unwrap();
        let e = format!("{:#}", FolderLock::reader(d, "trainer").unwrap_err());
        assert!(
            e.contains(&d.display().to_string())
                && e.contains("being written right now")
                && e.contains(&format!("pid {}", std::process::id()))
                && e.contains("preprocess tokenize --overwrite"),
            "{e}"
        );
        drop(w);
        // Readers share the folder; a writer is refused while any reads, naming readers.
        let r1 = FolderLock::reader(d, "trainer").unwrap().expect("a lock");
        let r2 = FolderLock::reader(d, "preprocess --epoch")
            .unwrap()
            .expect("a lock");
        let e = format!("{:#}", FolderLock::folder(d, "tokenize").unwrap_err());
        assert!(
            e.contains("in use by another writer") && e.contains("a reader of the folder"),
            "{e}"
        );
        drop(r1);
        assert!(FolderLock::folder(d, "tokenize").is_err(), "r2 still reads");
        drop(r2);
        assert!(
            !d.join(FOLDER_LOCK).exists(),
            "the last reader removes the file"
        );
        drop(FolderLock::folder(d, "tokenize").unwrap());
        // No folder: nothing to lock, and nothing is created.
        assert!(FolderLock::reader(&d.join("missing"), "trainer")
            .unwrap()
            .is_none());
        assert!(!d.join("missing").exists());
    }

    #[test]
    fn parts_of_one_count_coexist_and_others_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let p0 = lock_part(d, 0, 2, "part 0/2").unwrap();
        let p1 = lock_part(d, 1, 2, "part 1/2").unwrap();
        let e = format!("{:#}", lock_part(d, 1, 2, "again 1/2").unwrap_err());
        assert!(
            e.contains("part 1/2") && e.contains(".lock-part-1-of-2"),
            "{e}"
        );
        let e = format!("{:#}", lock_part(d, 0, 1, "whole").unwrap_err());
        assert!(e.contains("part 0/2"), "{e}");
        let e = format!("{:#}", lock_part(d, 2, 3, "part 2/3").unwrap_err());
        assert!(e.contains("another count"), "{e}");
        drop((p0, p1));
        let names: Vec<_> = std::fs::read_dir(d).unwrap().collect();
        assert!(names.is_empty(), "{names:?}");
        drop(lock_part(d, 0, 1, "whole").unwrap());
        assert!(!is_lock_file("lock") && !is_lock_file(".locker"));
    }
}
