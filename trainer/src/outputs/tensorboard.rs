//! The run's TensorBoard event files: `RUN/tensorboard/` or `--tensorboard-dir`, one new event
//! file per invocation (fresh, `--resume`, a torchrun restart), holding the scalars of every
//! line of `metrics.jsonl` (tags: [`crate::metrics::tags`]) at the line's step, flushed with the
//! line.
//!
//! Every invocation's file starts with the `SessionLog` START event at the first update it will
//! log (the update after its checkpoint; 1 for a fresh run), so that TensorBoard drops what the
//! discarded updates of an earlier invocation logged, as `metrics.jsonl` drops their lines.
//! A fresh run writes one too, although it purges nothing: TensorBoard's server
//! (`plugin_event_accumulator`) takes a run's first START for a session's start and purges
//! only at the later ones (TensorFlow's Supervisor writes one per session), so a run whose
//! first file had none would keep the updates its first resume discarded.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use crate::metrics::Scalars;
use crate::tensorboard::{event_files, wall_time_now, EventWriter};
use crate::train::config::TensorBoardDir;
use shared::files::lock::FolderLock;

/// Sub-folder of the run folder holding the event files by default.
pub const TENSORBOARD: &str = "tensorboard";

/// The event file of this invocation.
pub struct RunEvents {
    writer: EventWriter,
    /// The lock of a `--tensorboard-dir` of its own (the default folder is under the run's).
    _lock: Option<FolderLock>,
}

/// The folder the event files go to, if any, and whether it is outside the run folder (then it
/// gets a lock of its own; inside, the run's lock covers it). Creates it.
pub fn folder(run_dir: &Path, choice: &TensorBoardDir) -> anyhow::Result<Option<(PathBuf, bool)>> {
    let dir = match choice {
        TensorBoardDir::InRun => run_dir.join(TENSORBOARD),
        TensorBoardDir::Given(d) => d.clone(),
        TensorBoardDir::Off => return Ok(None),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let real = |p: &Path| {
        p.canonicalize()
            .with_context(|| format!("resolving {}", p.display()))
    };
    let outside = !real(&dir)?.starts_with(real(run_dir)?);
    Ok(Some((dir, outside)))
}

impl RunEvents {
    /// Opens a new event file in `dir` for a run that continues after update `step` (purging
    /// from `step + 1` on), locking `dir` if it is the run's `own_folder`; a fresh run (not
    /// `resumed`) refuses a folder holding event files (another run's).
    pub fn open(dir: &Path, own_folder: bool, resumed: bool, step: u64) -> anyhow::Result<Self> {
        let lock = if own_folder {
            Some(FolderLock::folder(dir, "trainer")?)
        } else {
            None
        };
        if !resumed {
            if let Some(f) = event_files(dir)?.first() {
                bail!(
                    "--tensorboard-dir {}: expected a folder without event files for a new run, found {}; TensorBoard would show both runs as one: give each run a folder of its own",
                    dir.display(),
                    f.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        let writer = EventWriter::create(dir, Some(step + 1))?;
        Ok(Self {
            writer,
            _lock: lock,
        })
    }

    /// Writes the record's scalars at its step and flushes them.
    pub fn record<T: Scalars>(&mut self, record: &T) -> anyhow::Result<()> {
        self.writer
            .scalars(record.step(), wall_time_now(), &record.scalars())?;
        self.writer.flush()
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::read_events;

    #[test]
    fn a_folder_outside_the_run_folder_is_the_runs_own() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let given = |d: PathBuf| folder(&run, &TensorBoardDir::Given(d)).unwrap();
        assert_eq!(
            folder(&run, &TensorBoardDir::InRun).unwrap(),
            Some((run.join(TENSORBOARD), false))
        );
        assert_eq!(given(run.clone()), Some((run.clone(), false)));
        assert_eq!(given(run.join("a/b")), Some((run.join("a/b"), false)));
        let out = tmp.path().join("tb/run");
        assert_eq!(given(out.clone()), Some((out.clone(), true)));
        assert!(out.is_dir());
        assert_eq!(folder(&run, &TensorBoardDir::Off).unwrap(), None);
    }

    #[test]
    fn each_invocation_starts_a_file_purging_after_its_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tb");
        let mut fresh = RunEvents::open(&dir, true, false, 0).unwrap();
        fresh.record(&crate::metrics::tags::tests::train()).unwrap();
        // The given folder is locked while the run writes it.
        let e = RunEvents::open(&dir, true, true, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("in use by another writer"), "{e}");
        let first = fresh.path().to_path_buf();
        drop(fresh);
        let ev = read_events(&first).unwrap();
        assert!(ev[1].is_start() && ev[1].step == 1, "{ev:?}");
        let want: Vec<(String, f32)> = (crate::metrics::tags::tests::train().scalars())
            .into_iter()
            .map(|(t, v)| (t, v as f32))
            .collect();
        let got: Vec<(String, f32)> = (ev[2].scalars().into_iter())
            .map(|(t, v)| (t.to_string(), v))
            .collect();
        assert_eq!((ev[2].step, got), (50, want));
        // A new run in the same folder is refused, naming a file; a resume is not.
        let e = RunEvents::open(&dir, true, false, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("without event files for a new run")
                && e.contains(&*first.file_name().unwrap().to_string_lossy()),
            "{e}"
        );
        let resumed = RunEvents::open(&dir, true, true, 40).unwrap();
        let ev = read_events(resumed.path()).unwrap();
        assert!(ev.len() == 2 && ev[1].is_start() && ev[1].step == 41);
        assert_eq!(event_files(&dir).unwrap().len(), 2);
    }
}
