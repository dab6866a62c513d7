//! Progress on stderr: an `indicatif` bar on a terminal; otherwise (a batch job's log file) one
//! plain line at most every [`PLAIN_EVERY`], so that long runs never go silent.
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Interval between two plain progress lines.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    bar: ProgressBar,
    /// Set when stderr is not a terminal.
    plain: Option<Mutex<Plain>>,
}

struct Plain {
    label: String,
    unit: &'static str,
    total: u64,
    pos: u64,
    /// Position when timing started (a resumed run's first update), for the rate.
    base: u64,
    message: String,
    started: Instant,
    last: Instant,
}

impl Progress {
    /// A progress report of `total` `unit`s named `label`; `template` is the bar's
    /// `indicatif` template on a terminal.
    pub fn new(label: &str, total: u64, unit: &'static str, template: &str) -> Self {
        let bar = ProgressBar::new(total);
        if std::io::stderr().is_terminal() {
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar.set_prefix(label.to_string());
            return Self { bar, plain: None };
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        let now = Instant::now();
        Self {
            bar,
            plain: Some(Mutex::new(Plain {
                label: label.to_string(),
                unit,
                total,
                pos: 0,
                base: 0,
                message: String::new(),
                started: now,
                last: now,
            })),
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.update(|p| p.pos += n);
    }

    /// Starts at `pos` (a resumed run): the rate counts from here.
    pub fn start_at(&self, pos: u64) {
        self.bar.set_position(pos);
        self.bar.reset_eta();
        self.update(|p| {
            p.pos = pos;
            p.base = pos;
        });
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        self.update(|p| p.pos = pos);
    }

    pub fn set_message(&self, message: String) {
        if let Some(plain) = &self.plain {
            plain.lock().expect("progress lock").message = message;
        } else {
            self.bar.set_message(message);
        }
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }

    fn update(&self, change: impl FnOnce(&mut Plain)) {
        let Some(plain) = &self.plain else { return };
        let mut p = plain.lock().expect("progress lock");
        change(&mut p);
        let now = Instant::now();
        if now - p.last >= PLAIN_EVERY {
            p.last = now;
            eprintln!(
                "{}",
                plain_line(
                    &p.label,
                    (p.base, p.pos),
                    p.total,
                    p.unit,
                    now - p.started,
                    &p.message
                )
            );
        }
    }
}

/// `label: pos/total unit (pct%, rate unit/s, eta ...) message`; the rate counts from `base`
/// (`(base, pos)`).
pub fn plain_line(
    label: &str,
    (base, pos): (u64, u64),
    total: u64,
    unit: &str,
    elapsed: Duration,
    message: &str,
) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = pos.saturating_sub(base) as f64 / secs;
    let eta = if rate > 0.0 && total >= pos {
        format_duration((total - pos) as f64 / rate)
    } else {
        "?".to_string()
    };
    let pct = if total > 0 {
        100.0 * pos as f64 / total as f64
    } else {
        100.0
    };
    let mut line = format!(
        "{label}: {pos}/{total} {unit} ({pct:.1}%, {rate:.1} {unit}/s, elapsed {}, eta {eta})",
        format_duration(secs)
    );
    if !message.is_empty() {
        line.push(' ');
        line.push_str(message);
    }
    line
}

/// `1h02m03s`, `4m05s`, `6s`.
fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_reads_well() {
        let line = plain_line(
            "epoch 3",
            (0, 2_500),
            10_000,
            "sequences",
            Duration::from_secs(50),
            "",
        );
        assert_eq!(
            line,
            "epoch 3: 2500/10000 sequences (25.0%, 50.0 sequences/s, elapsed 50s, eta 2m30s)"
        );
        let line = plain_line(
            "train",
            (0, 0),
            7,
            "steps",
            Duration::from_secs(3725),
            "loss 0.5",
        );
        assert_eq!(
            line,
            "train: 0/7 steps (0.0%, 0.0 steps/s, elapsed 1h02m05s, eta ?) loss 0.5"
        );
        // A resumed run's rate counts from where it resumed.
        let line = plain_line(
            "train",
            (100, 160),
            200,
            "steps",
            Duration::from_secs(6),
            "",
        );
        assert_eq!(
            line,
            "train: 160/200 steps (80.0%, 10.0 steps/s, elapsed 6s, eta 4s)"
        );
    }
}
