//! The default run folder: `runs/<objective>-<model>-<UTC yyyymmdd-HHMMSS>` under the current
//! directory (model = the preset name, or the file stem of a config.json), made with
//! `create_dir` so that it is never another run's folder: if the name is taken, `-2`, `-3`, ...
//! is appended.
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Parent folder of default run folders, relative to the current directory.
pub const RUNS: &str = "runs";

/// Seconds since 1970-01-01 UTC as `yyyymmdd-HHMMSS` (proleptic Gregorian calendar).
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The model part of the name: a preset as it is, a config file by its stem; characters other
/// than letters, digits, `.`, `_` and `-` become `_`.
pub fn model_label(model: &str) -> String {
    let stem = if matches!(model, "tiny" | "small" | "base" | "large") {
        model.to_string()
    } else {
        Path::new(model)
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
    };
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The default folder name for `objective`, `--model` and a time.
pub fn default_name(objective: &str, model: &str, unix_secs: u64) -> String {
    format!(
        "{objective}-{}-{}",
        model_label(model),
        utc_stamp(unix_secs)
    )
}

/// Creates a new folder `parent/name`, or `parent/name-2`, `-3`, ... if taken; returns it.
pub fn create_unique(parent: &Path, name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    for n in 1..10_000u32 {
        let dir = if n == 1 {
            parent.join(name)
        } else {
            parent.join(format!("{name}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!(
        "{}: expected a free name {name}[-N], found 10,000 taken",
        parent.display()
    )
}

/// Creates the default run folder `runs/<objective>-<model>-<now>` (relative to the current
/// directory).
pub fn create_default(objective: &str, model: &str) -> anyhow::Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    create_unique(Path::new(RUNS), &default_name(objective, model, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC (a leap day) and 2026-11-30 06:00:54 UTC.
        assert_eq!(utc_stamp(951_827_696), "20000229-123456");
        assert_eq!(utc_stamp(1_796_018_454), "20261130-060054");
        assert_eq!(utc_stamp(1_796_083_199), "20261130-235959");
    }

    #[test]
    fn names_from_presets_and_config_files() {
        assert_eq!(default_name("rtd", "tiny", 0), "rtd-tiny-19700101-000000");
        assert_eq!(
            default_name("mlm", "configs/my model.json", 0),
            "mlm-my_model-19700101-000000"
        );
        assert_eq!(model_label("/x/electra-small.json"), "electra-small");
    }

    #[test]
    fn never_overwrites_a_run() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        let a = create_unique(&runs, "rtd-tiny-t").unwrap();
        std::fs::write(a.join("run.json"), "{}").unwrap();
        let b = create_unique(&runs, "rtd-tiny-t").unwrap();
        let c = create_unique(&runs, "rtd-tiny-t").unwrap();
        assert_eq!(a, runs.join("rtd-tiny-t"));
        assert_eq!(b, runs.join("rtd-tiny-t-2"));
        assert_eq!(c, runs.join("rtd-tiny-t-3"));
        assert!(a.join("run.json").exists());
        assert_eq!(std::fs::read_dir(&b).unwrap().count(), 0);
    }
}
