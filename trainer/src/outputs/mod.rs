//! The one place that writes a run's outputs: `RUN/run.json`, `RUN/metrics.jsonl` and its
//! TensorBoard twin (`RUN/tensorboard/`, [`tensorboard`]), the plots (`loss.png`,
//! `accuracy.png`), `RUN/checkpoints/step-*` and `RUN/export/`. Reading (the
//! resume checkpoint, `run.json` to compare) may happen anywhere; every write goes through
//! [`RunOutputs`]. Its `writes` flag says whether this process writes at all: with data-parallel
//! training only rank 0 will, the other ranks compute the same records and skip the writes.
pub mod run_dir;
pub mod tensorboard;

use anyhow::{bail, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

use crate::checkpoint::{self, TrainState};
use crate::metrics::{MetricsWriter, Scalars};
use crate::objectives::TrainObjective;
use crate::plots::PlotInfo;
use crate::train::config::{RunDirChoice, TensorBoardDir};
use crate::train::run_record::{self, RunRecord, RUN_FILE};
use shared::files::lock::FolderLock;

/// Sub-folder of the run folder holding the Hugging Face export.
pub const EXPORT: &str = "export";

/// The run folder and its writers.
pub struct RunOutputs {
    dir: PathBuf,
    writes: bool,
    metrics: Option<MetricsWriter>,
    /// This invocation's TensorBoard event file (none with `--no-tensorboard`).
    events: Option<tensorboard::RunEvents>,
    /// Whether the folder held the run already (`--resume`, a restart): its TensorBoard folder
    /// may then hold its event files.
    resumed: bool,
    /// The writer's lock on the run folder (`RUN/.lock`), held until the run ends.
    _lock: Option<FolderLock>,
}

/// A checkpoint to continue from: (step, folder).
pub type ResumeFrom = Option<(u64, PathBuf)>;

impl RunOutputs {
    /// Sets up the run folder for `run`: a fresh run gets its folder (the given one, which must
    /// be new or empty, or a new default one named after `objective` and `model`) and
    /// `run.json`; `--resume` needs a folder holding a run with the same configuration and
    /// returns its latest checkpoint. Prints the folder.
    pub fn prepare(
        choice: &RunDirChoice,
        resume: bool,
        (objective, model): (&str, &str),
        run: &RunRecord,
        writes: bool,
    ) -> anyhow::Result<(Self, ResumeFrom)> {
        let (dir, fresh_default) = match choice {
            RunDirChoice::Given(d) => (d.clone(), false),
            RunDirChoice::Default if writes => (run_dir::create_default(objective, model)?, true),
            RunDirChoice::Default => bail!(
                "--run-dir: expected the run folder for a process that does not write (the writer names it), found none"
            ),
        };
        eprintln!("trainer: run folder {}", dir.display());
        let existed = dir.is_dir();
        // One writer per run folder, for the whole run (export included); taken before the
        // folder is looked at (data-spec/README.md, "Locks").
        let lock = if writes {
            Some(FolderLock::folder(&dir, "trainer")?)
        } else {
            None
        };
        let mut out = Self {
            dir,
            writes,
            metrics: None,
            events: None,
            resumed: false,
            _lock: lock,
        };
        // A given folder holding a run passes the check only with --resume.
        out.resumed = !fresh_default && out.dir.join(RUN_FILE).exists();
        let resume_from = if fresh_default {
            out.start_fresh(run)?;
            None
        } else {
            match out.check_given(resume, existed, run) {
                Ok(r) => r,
                Err(e) => {
                    let dir = out.dir.clone();
                    drop(out);
                    if !existed {
                        let _ = std::fs::remove_dir(&dir); // made only for the lock
                    }
                    return Err(e);
                }
            }
        };
        Ok((out, resume_from))
    }

    /// The outputs of a process that does not write (a data-parallel rank other than 0): the
    /// run folder rank 0 prepared.
    pub fn follower(dir: PathBuf) -> Self {
        Self {
            dir,
            writes: false,
            metrics: None,
            events: None,
            resumed: false,
            _lock: None,
        }
    }

    /// Checks a given folder: an existing run is refused without `--resume` and must match
    /// with it; a fresh one must be new or empty (lock files and temporary files of an
    /// interrupted start aside: those are removed). `--resume` of a folder that existed but
    /// holds no run (a start stopped before writing `run.json`) starts the run.
    fn check_given(
        &self,
        resume: bool,
        existed: bool,
        run: &RunRecord,
    ) -> anyhow::Result<ResumeFrom> {
        let run_file = self.dir.join(RUN_FILE);
        if run_file.exists() {
            if !resume {
                bail!(
                    "{}: the run folder already holds a run; pass --resume to continue it, or choose another --run-dir",
                    run_file.display()
                );
            }
            let stored = run_record::read(&run_file)?;
            run_record::check_same(&stored, run, &run_file)?;
            return checkpoint::latest(&self.dir);
        }
        if resume && !existed {
            bail!(
                "--resume: {} holds no run (no {RUN_FILE})",
                self.dir.display()
            );
        }
        if self.writes {
            remove_run_file_temps(&self.dir)?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries {
                let name = e?.file_name().to_string_lossy().into_owned();
                if shared::files::lock::is_lock_file(&name) {
                    continue;
                }
                bail!(
                    "{}: the run folder is not empty (it holds {name}) but has no {RUN_FILE}; {}",
                    self.dir.display(),
                    if resume {
                        "there is no run to resume: choose an empty or new --run-dir"
                    } else {
                        "choose an empty or new --run-dir"
                    }
                );
            }
        }
        if resume {
            eprintln!(
                "trainer: --resume: {} holds no {RUN_FILE} yet (a start stopped before writing it): starting the run",
                self.dir.display()
            );
        }
        self.start_fresh(run)?;
        Ok(None)
    }

    /// Creates the folder and writes `run.json`.
    fn start_fresh(&self, run: &RunRecord) -> anyhow::Result<()> {
        if !self.writes {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        shared::files::atomic::write_json_atomic(&self.dir.join(RUN_FILE), run)
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens `metrics.jsonl` for appending, dropping lines after `step` (the checkpoint a
    /// resumed run continues from; 0 for a fresh run), and a new TensorBoard event file in the
    /// folder `tensorboard` names (purging the updates after `step`).
    pub fn open_metrics(&mut self, step: u64, tensorboard: &TensorBoardDir) -> anyhow::Result<()> {
        if !self.writes {
            return Ok(());
        }
        self.metrics = Some(MetricsWriter::open(&self.dir, Some(step))?);
        if let Some((dir, own)) = tensorboard::folder(&self.dir, tensorboard)? {
            let events = tensorboard::RunEvents::open(&dir, own, self.resumed, step)?;
            eprintln!("trainer: TensorBoard events in {}", events.path().display());
            self.events = Some(events);
        }
        Ok(())
    }

    /// Appends a record to `metrics.jsonl` and its scalars to the event file, flushed.
    pub fn record<T: Serialize + Scalars>(&mut self, record: &T) -> anyhow::Result<()> {
        match (&mut self.metrics, self.writes) {
            (Some(m), _) => m.write(record)?,
            (None, false) => return Ok(()),
            (None, true) => bail!("metrics.jsonl was not opened (RunOutputs::open_metrics)"),
        }
        match &mut self.events {
            Some(e) => e.record(record),
            None => Ok(()),
        }
    }

    /// Writes checkpoint `state.step` (atomically) and refreshes the plots, which may fail
    /// without stopping the run; returns the checkpoint's folder.
    pub fn checkpoint(
        &self,
        vs: &VarStore,
        optimizer: &[(String, Tensor)],
        state: &TrainState,
        plot: &PlotInfo,
    ) -> anyhow::Result<PathBuf> {
        if !self.writes {
            return Ok(self
                .dir
                .join(checkpoint::CHECKPOINTS)
                .join(checkpoint::folder_name(state.step)));
        }
        let dir = checkpoint::save(&self.dir, vs, optimizer, state)?;
        if let Err(e) = self.plots(plot) {
            eprintln!("trainer: warning: {e:#}");
        }
        Ok(dir)
    }

    /// Writes `loss.png` and `accuracy.png` from `metrics.jsonl`.
    pub fn plots(&self, plot: &PlotInfo) -> anyhow::Result<()> {
        if !self.writes {
            return Ok(());
        }
        crate::plots::write_run_plots(&self.dir, plot)
    }

    /// Writes the objective's Hugging Face folder(s) under `RUN/export/`, each with the data's
    /// `tokenizer.json`; returns `RUN/export`.
    pub fn export(
        &self,
        objective: &dyn TrainObjective,
        tokenizer_json: &[u8],
    ) -> anyhow::Result<PathBuf> {
        let root = self.dir.join(EXPORT);
        if !self.writes {
            return Ok(root);
        }
        for m in objective.exports() {
            let dir = if m.folder.is_empty() {
                root.clone()
            } else {
                root.join(m.folder)
            };
            shared::model::save_pretrained(m.vs, m.config, m.architecture, &dir)
                .with_context(|| format!("exporting into {}", dir.display()))?;
            shared::files::atomic::write_atomic(&dir.join("tokenizer.json"), tokenizer_json)?;
        }
        Ok(root)
    }
}

/// Removes what an interrupted write of `run.json` left in `dir`: `.run.json.*.tmp` (this
/// project's temporary name) and `run.json.tmp*`.
fn remove_run_file_temps(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with(&format!(".{RUN_FILE}.")) && name.ends_with(".tmp");
        if (ours || name.starts_with(&format!("{RUN_FILE}.tmp"))) && e.path().is_file() {
            eprintln!(
                "trainer: removing {} (left by an interrupted start)",
                e.path().display()
            );
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::Objective;

    fn cfg() -> RunRecord {
        crate::train::run_record::tests::cfg(Objective::by_name("rtd").unwrap())
    }

    #[test]
    fn a_given_folder_is_refused_if_it_holds_something_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let choice = RunDirChoice::Given(dir.clone());
        let e = RunOutputs::prepare(&choice, false, ("rtd", "tiny"), &cfg(), true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not empty (it holds notes.txt)"), "{e}");
        std::fs::remove_file(dir.join("notes.txt")).unwrap();
        let (out, from) =
            RunOutputs::prepare(&choice, false, ("rtd", "tiny"), &cfg(), true).unwrap();
        assert!(from.is_none() && out.dir().join(RUN_FILE).exists());
        // While it runs, the folder is locked: a second writer is refused at once.
        let e = RunOutputs::prepare(&choice, true, ("rtd", "tiny"), &cfg(), true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("in use by another writer")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(out);
        assert!(!dir.join(".lock").exists());
        let e = RunOutputs::prepare(&choice, false, ("rtd", "tiny"), &cfg(), true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("already holds a run") && e.contains("--resume"),
            "{e}"
        );
        let mut other = cfg();
        other.hyper.lr = 5.0;
        let e = RunOutputs::prepare(&choice, true, ("rtd", "tiny"), &other, true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("field lr"), "{e}");
    }

    #[test]
    fn a_stale_temporary_run_json_does_not_block_a_start_or_a_resume() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, resume) in [(".run.json.77.tmp", false), ("run.json.tmp-77", true)] {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(name), "{").unwrap();
            let choice = RunDirChoice::Given(dir.clone());
            let (out, from) =
                RunOutputs::prepare(&choice, resume, ("rtd", "tiny"), &cfg(), true).unwrap();
            assert!(from.is_none() && dir.join(RUN_FILE).exists() && !dir.join(name).exists());
            drop(out);
        }
        // --resume of a folder that does not exist is still refused, and leaves nothing.
        let none = tmp.path().join("none");
        let e = RunOutputs::prepare(
            &RunDirChoice::Given(none.clone()),
            true,
            ("rtd", "tiny"),
            &cfg(),
            true,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("holds no run"), "{e}");
        assert!(!none.exists());
    }

    #[test]
    fn a_process_that_does_not_write_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        let choice = RunDirChoice::Given(dir.clone());
        let (mut out, _) =
            RunOutputs::prepare(&choice, false, ("rtd", "tiny"), &cfg(), false).unwrap();
        out.open_metrics(0, &TensorBoardDir::InRun).unwrap();
        out.record(&crate::metrics::tags::tests::train()).unwrap();
        assert!(!dir.exists());
    }
}
