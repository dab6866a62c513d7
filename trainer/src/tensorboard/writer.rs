//! [`EventWriter`]: one TensorBoard event file, `DIR/events.out.tfevents.<secs>.<host>.<pid>.<n>`
//! (TensorBoard's own naming; `<n>` counts the writers of this process), appended record by
//! record and flushed to the OS on [`EventWriter::flush`], so that TensorBoard shows a run as it
//! goes. A writer never appends to an existing file: each makes a new one whose name sorts after
//! every event file already in the folder (TensorBoard reads a folder's files in name order).
//! Its first event is the `file_version`; with a purge step, the second is the `SessionLog`
//! START at that step, after which TensorBoard drops the values it read at that step or later,
//! the two events of PyTorch's `SummaryWriter(purge_step=..)`.
use anyhow::{bail, Context};
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::proto::{Event, SessionLog, SessionStatus, Summary, SummaryValue, Value, What};
use super::record::frame;

/// The `file_version` of the first event of every file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// The part of an event file's name TensorBoard looks for.
const MARK: &str = "tfevents";

/// Writers made by this process, for the unique last part of the file name.
static WRITERS: AtomicU64 = AtomicU64::new(0);

/// Seconds since 1970-01-01 UTC, the `wall_time` of an event.
pub fn wall_time_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The event files in `dir` (names holding `tfevents`, as TensorBoard finds them), sorted by
/// name; none if `dir` does not exist.
pub fn event_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = vec![];
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.file_name().to_string_lossy().contains(MARK) && e.path().is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The `<secs>` of an event file name `events.out.tfevents.<secs>...`.
fn name_secs(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let rest = &name[name.find(MARK)? + MARK.len()..];
    rest.strip_prefix('.')?.split('.').next()?.parse().ok()
}

/// An event step from an update count (TensorBoard's steps are int64).
fn step_i64(step: u64, path: &Path) -> anyhow::Result<i64> {
    i64::try_from(step).with_context(|| {
        format!(
            "{}: step: expected at most {} (int64), found {step}",
            path.display(),
            i64::MAX
        )
    })
}

/// An open event file.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, and writes its `file_version` event
    /// and, with `purge_step` (the first step this writer will log), the `SessionLog` START
    /// event at that step, then flushes them. TensorBoard's readers differ on START:
    /// `EventAccumulator` drops every point it read at or after each START's step; the server's
    /// `plugin_event_accumulator` does so from a run's second START on (the first marks a
    /// session's start); so a run that may be resumed gives a purge step from its first file on. The file's `<secs>` is now, or one more than
    /// the newest event file of `dir` if that is not earlier, so that the new file is read last.
    pub fn create(dir: &Path, purge_step: Option<u64>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = wall_time_now();
        let newest = event_files(dir)?.iter().filter_map(|p| name_secs(p)).max();
        let secs = match newest {
            Some(n) if n >= now as u64 => n + 1,
            _ => now as u64,
        };
        let name = format!(
            "events.out.{MARK}.{secs:010}.{}.{}.{}",
            shared::files::lock::host_name(),
            std::process::id(),
            WRITERS.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut w = Self {
            path,
            file: BufWriter::new(file),
        };
        let step = match purge_step {
            Some(s) => step_i64(s, &w.path)?,
            None => 0,
        };
        w.event(&Event {
            wall_time: now,
            step,
            what: Some(What::FileVersion(FILE_VERSION.into())),
        })?;
        if purge_step.is_some() {
            w.event(&Event {
                wall_time: now,
                step,
                what: Some(What::SessionLog(SessionLog {
                    status: SessionStatus::Start as i32,
                    ..Default::default()
                })),
            })?;
        }
        w.flush()?;
        Ok(w)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event (buffered until [`Self::flush`]).
    pub fn event(&mut self, event: &Event) -> anyhow::Result<()> {
        self.file
            .write_all(&frame(&event.encode_to_vec()))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Appends one scalar (fp32, as TensorBoard stores it) as its own event.
    pub fn scalar(
        &mut self,
        tag: &str,
        step: u64,
        wall_time: f64,
        value: f64,
    ) -> anyhow::Result<()> {
        self.scalars(step, wall_time, &[(tag.to_string(), value)])
    }

    /// Appends the scalars of one step as one event (one `Summary` with a value per tag); tags
    /// must be unique and non-empty.
    pub fn scalars(
        &mut self,
        step: u64,
        wall_time: f64,
        values: &[(String, f64)],
    ) -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for (tag, _) in values {
            if tag.is_empty() || !seen.insert(tag.as_str()) {
                bail!(
                    "{}: step {step}: expected unique non-empty tags, found {tag:?} {}",
                    self.path.display(),
                    if tag.is_empty() { "(empty)" } else { "twice" }
                );
            }
        }
        let step = step_i64(step, &self.path)?;
        self.event(&Event {
            wall_time,
            step,
            what: Some(What::Summary(Summary {
                value: values
                    .iter()
                    .map(|(tag, v)| SummaryValue {
                        tag: tag.clone(),
                        value: Some(Value::SimpleValue(*v as f32)),
                    })
                    .collect(),
            })),
        })
    }

    /// Hands what was appended to the OS (where TensorBoard reads it).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.file
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::read_events;

    #[test]
    fn events_are_encoded_as_tensorboards_protos() {
        // Bytes of the same events serialized by TensorBoard's own protos (tensorboard 2.21.0,
        // tensorboard.compat.proto.event_pb2.Event(...).SerializeToString()).
        let version = Event {
            wall_time: 1.5,
            step: 0,
            what: Some(What::FileVersion(FILE_VERSION.into())),
        };
        let mut want = vec![9, 0, 0, 0, 0, 0, 0, 248, 63, 26, 13];
        want.extend_from_slice(b"brain.Event:2");
        assert_eq!(version.encode_to_vec(), want);
        let summary = Event {
            wall_time: 2.0,
            step: 7,
            what: Some(What::Summary(Summary {
                value: [("train/loss", 0.25), ("val/auc", 0.5)]
                    .map(|(t, v)| SummaryValue {
                        tag: t.into(),
                        value: Some(Value::SimpleValue(v)),
                    })
                    .to_vec(),
            })),
        };
        let want: Vec<u8> = [
            &[9, 0, 0, 0, 0, 0, 0, 0, 64, 16, 7, 42, 35, 10, 17, 10, 10][..],
            b"train/loss",
            &[21, 0, 0, 128, 62, 10, 14, 10, 7],
            b"val/auc",
            &[21, 0, 0, 0, 63],
        ]
        .concat();
        assert_eq!(summary.encode_to_vec(), want);
        let start = Event {
            wall_time: 3.0,
            step: 11,
            what: Some(What::SessionLog(SessionLog {
                status: SessionStatus::Start as i32,
                ..Default::default()
            })),
        };
        assert_eq!(
            start.encode_to_vec(),
            [9, 0, 0, 0, 0, 0, 0, 8, 64, 16, 11, 58, 2, 8, 1]
        );
        assert!(start.is_start() && !summary.is_start());
    }

    #[test]
    fn a_file_holds_its_version_the_purge_and_the_scalars_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tb");
        let mut w = EventWriter::create(&dir, None).unwrap();
        w.scalar("train/loss", 3, 10.0, 0.1).unwrap();
        w.scalars(6, 11.0, &[("a".into(), 1.0), ("b".into(), 1e-40)])
            .unwrap();
        w.flush().unwrap();
        let first = w.path().to_path_buf();
        // Flushed: readable while the writer is open.
        let ev = read_events(&first).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        assert_eq!(ev[0].step, 0);
        assert_eq!((ev[1].step, ev[1].wall_time), (3, 10.0));
        assert_eq!(ev[1].scalars(), vec![("train/loss", 0.1f32)]);
        // fp32 as TensorBoard stores it: 1e-40 is an fp32 subnormal.
        assert_eq!(ev[2].scalars(), vec![("a", 1.0), ("b", 1e-40f32)]);
        let e = w
            .scalars(7, 0.0, &[("a".into(), 1.0), ("a".into(), 2.0)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unique non-empty tags") && e.contains("\"a\" twice"),
            "{e}"
        );
        let e = w.scalar("x", u64::MAX, 0.0, 1.0).unwrap_err().to_string();
        assert!(
            e.contains("step: expected at most 9223372036854775807"),
            "{e}"
        );
        drop(w);
        // A resumed writer: a new file, read after the first, starting with the purge.
        let w = EventWriter::create(&dir, Some(4)).unwrap();
        let files = event_files(&dir).unwrap();
        assert_eq!(files, vec![first.clone(), w.path().to_path_buf()]);
        assert!(name_secs(w.path()).unwrap() > name_secs(&first).unwrap());
        let ev = read_events(w.path()).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        assert!(ev[1].is_start() && ev[0].step == 4 && ev[1].step == 4);
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        let host = shared::files::lock::host_name();
        assert!(
            name.starts_with("events.out.tfevents.")
                && name.contains(&format!(".{host}.{}.", std::process::id())),
            "{name}"
        );
    }
}
