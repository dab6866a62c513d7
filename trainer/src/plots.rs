//! PNG plots of a run (plotters' bitmap backend): `loss.png` (train and validation loss) and
//! `accuracy.png` (train and validation accuracy, the all-"original" baseline and the
//! validation ROC AUC when present), each with a title, axis labels, a legend and the epoch
//! boundaries as vertical lines labelled with the epoch's temperature ("epoch 1, T=1.04"), so
//! the curriculum can be seen.
//!
//! Text is drawn with plotters' `ab_glyph` feature from a font compiled into the binary
//! (DejaVu Sans, `trainer/assets/`, licence beside it), so plots have words on a machine without
//! any font installed.
use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

use crate::metrics::{read_split, TrainRecord, ValidationRecord};

/// DejaVu Sans (Bitstream Vera licence + public domain changes; `assets/DejaVuSans-LICENSE`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The font family the plots name.
const FAMILY: &str = "sans-serif";

/// Registers the embedded font as [`FAMILY`] (once per process).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            eprintln!("trainer: warning: the embedded plot font could not be read");
        }
    });
}

/// Where an epoch starts, for the plots.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMark {
    /// Updates done when its first micro-batch is consumed (fractional with gradient
    /// accumulation).
    pub update: f64,
    pub epoch: u32,
    /// Its temperature (from its manifest).
    pub temperature: f64,
}

impl EpochMark {
    fn label(&self) -> String {
        format!("epoch {}, T={:.2}", self.epoch, self.temperature)
    }
}

/// What the plots of a run show beyond `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotInfo {
    /// y-axis label of the loss plot (the objective's loss).
    pub loss_label: &'static str,
    /// Epoch boundaries (RTD epochs; none for token folders).
    pub epochs: Vec<EpochMark>,
}

/// One curve: points, colour and legend label.
pub struct Curve {
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub label: String,
}

/// The `i`-th colour of matplotlib's tab10 cycle (for charts with many curves).
pub fn palette(i: usize) -> RGBColor {
    const TAB10: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    TAB10[i % TAB10.len()]
}

/// One chart.
pub struct Chart<'a> {
    pub title: String,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub curves: Vec<Curve>,
    pub marks: &'a [EpochMark],
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(150, 150, 150);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const MARK: RGBColor = RGBColor(120, 120, 120);

fn finite(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// The x and y ranges of the curves (and the marks on x), padded; None without points.
fn ranges(c: &Chart) -> Option<((f64, f64), (f64, f64))> {
    let pts: Vec<(f64, f64)> = c.curves.iter().flat_map(|c| finite(&c.points)).collect();
    if pts.is_empty() {
        return None;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &pts {
        (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
    }
    for m in c.marks {
        (x0, x1) = (x0.min(m.update), x1.max(m.update));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    // Room above the curves for the epoch labels.
    let pad = (y1 - y0) * 0.05;
    let top = if c.marks.is_empty() {
        pad
    } else {
        (y1 - y0) * 0.25
    };
    Some(((x0, x1), (y0 - pad, y1 + top)))
}

/// Height in pixels of the legend strip under the chart.
const LEGEND_HEIGHT: u32 = 50;

/// The legend, in a strip under the chart (so it never hides a curve): a coloured line and the
/// label of each curve with points, left to right, wrapping to a second row.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    curves: &[Curve],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (width, _) = area.dim_in_pixel();
    let (mut x, mut y) = (90i32, 8i32);
    for curve in curves.iter().filter(|c| finite(&c.points).next().is_some()) {
        // DejaVu Sans at 14 px: about 6.6 px per character.
        let w = 30 + (curve.label.chars().count() as f64 * 6.6) as i32 + 24;
        if x + w > width as i32 && x > 90 {
            (x, y) = (90, y + 20);
        }
        area.draw(&PathElement::new(
            vec![(x, y + 8), (x + 24, y + 8)],
            curve.color.stroke_width(3),
        ))?;
        area.draw(&Text::new(
            curve.label.as_str(),
            (x + 30, y),
            (FAMILY, 14).into_font().color(&BLACK),
        ))?;
        x += w;
    }
    Ok(())
}

/// Draws `chart` into a PNG at `path` (900 x 600); nothing when there are no points.
pub fn line_plot(path: &Path, chart: &Chart) -> anyhow::Result<()> {
    let Some(((x0, x1), (y0, y1))) = ranges(chart) else {
        return Ok(());
    };
    register_font();
    let err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("{}: drawing: {e:?}", path.display());
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, legend) = root.split_vertically(600 - LEGEND_HEIGHT);
    let mut c = ChartBuilder::on(&plot)
        .caption(&chart.title, (FAMILY, 22))
        .margin(12)
        .margin_right(30)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    let whole = |x: &f64| format!("{x:.0}");
    let mut mesh = c.configure_mesh();
    if x1 - x0 >= 10.0 {
        mesh.x_label_formatter(&whole);
    }
    mesh.x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, m) in chart.marks.iter().enumerate() {
        c.draw_series(LineSeries::new([(m.update, y0), (m.update, y1)], MARK))
            .map_err(|e| err(&e))?;
        // Labels staggered over three rows so that close boundaries stay readable.
        let row = (i % 3) as f64;
        let y = y1 - (y1 - y0) * (0.02 + 0.06 * row);
        c.draw_series(std::iter::once(Text::new(
            format!(" {}", m.label()),
            (m.update, y),
            (FAMILY, 14).into_font().color(&BLACK),
        )))
        .map_err(|e| err(&e))?;
    }
    for curve in &chart.curves {
        let points: Vec<(f64, f64)> = finite(&curve.points).collect();
        let style = curve.color.stroke_width(2);
        if points.len() == 1 {
            c.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, curve.color.filled())),
            )
        } else {
            c.draw_series(LineSeries::new(points, style))
        }
        .map_err(|e| err(&e))?;
    }
    draw_legend(&legend, &chart.curves).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes `loss.png` and `accuracy.png` from the run's `metrics.jsonl`.
pub fn write_run_plots(run_dir: &Path, info: &PlotInfo) -> anyhow::Result<()> {
    let train: Vec<TrainRecord> = read_split(run_dir, "train")?;
    let val: Vec<ValidationRecord> = read_split(run_dir, "validation")?;
    let name = run_dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let t = |f: fn(&TrainRecord) -> f64| train.iter().map(|r| (r.step as f64, f(r))).collect();
    let v = |f: fn(&ValidationRecord) -> Option<f64>| {
        val.iter()
            .filter_map(|r| f(r).map(|y| (r.step as f64, y)))
            .collect()
    };
    let loss = Chart {
        title: format!("Loss, run {name}"),
        x_label: "update",
        y_label: info.loss_label,
        curves: vec![
            Curve {
                points: t(|r| r.loss),
                color: BLUE,
                label: "train (mean over the logged interval)".into(),
            },
            Curve {
                points: v(|r| Some(r.loss)),
                color: RED,
                label: "validation".into(),
            },
        ],
        marks: &info.epochs,
    };
    line_plot(&run_dir.join("loss.png"), &loss).context("plotting the loss")?;
    let has_auc = val.iter().any(|r| r.auc.is_some());
    let accuracy = Chart {
        title: format!("Accuracy, run {name}"),
        x_label: "update",
        y_label: if has_auc {
            "accuracy, ROC AUC"
        } else {
            "accuracy"
        },
        curves: vec![
            Curve {
                points: t(|r| r.accuracy),
                color: BLUE,
                label: "train accuracy".into(),
            },
            Curve {
                points: v(|r| r.baseline_accuracy),
                color: GREY,
                label: "validation, all-\"original\" baseline".into(),
            },
            Curve {
                points: v(|r| Some(r.accuracy)),
                color: RED,
                label: "validation accuracy".into(),
            },
            Curve {
                points: v(|r| r.auc),
                color: GREEN,
                label: "validation ROC AUC of \"replaced\"".into(),
            },
        ],
        marks: &info.epochs,
    };
    line_plot(&run_dir.join("accuracy.png"), &accuracy).context("plotting the accuracy")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        line_plot(
            &p,
            &Chart {
                title: "t".into(),
                x_label: "update",
                y_label: "loss",
                curves: vec![Curve {
                    points: vec![(0.0, 0.7), (10.0, 0.5), (20.0, 0.31)],
                    color: BLUE,
                    label: "train".into(),
                }],
                marks: &[EpochMark {
                    update: 10.0,
                    epoch: 1,
                    temperature: 1.04,
                }],
            },
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(
            EpochMark {
                update: 0.0,
                epoch: 1,
                temperature: 1.0367
            }
            .label(),
            "epoch 1, T=1.04"
        );
    }

    #[test]
    fn run_plots_from_metrics() {
        let dir = match std::env::var_os("TRAINER_PLOT_TEST_DIR") {
            // Set it to keep the pictures for a look.
            Some(d) => std::path::PathBuf::from(d),
            None => tempfile::tempdir().unwrap().keep(),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let mut lines = String::new();
        for step in (10..=300).step_by(10) {
            let (epoch, t) = if step <= 150 { (0, 2.0) } else { (1, 1.04) };
            let loss = 0.69 - 0.1 * (step as f64 / 300.0) + if epoch == 1 { 0.05 } else { 0.0 };
            lines += &format!(
                r#"{{"split":"train","step":{step},"epoch":{epoch},"temperature":{t},"lr":0.001,"loss":{loss},"grad_norm":1.0,"accuracy":0.85,"precision":null,"recall":0.0,"f1":0.0,"seq_per_s":1.0,"tokens_per_s":1.0,"mfu":null,"peak_memory_bytes":null,"data_wait_fraction":0.0}}"#
            );
            lines.push('\n');
            if step % 100 == 0 {
                let auc = 0.5 + step as f64 / 1000.0;
                lines += &format!(
                    r#"{{"split":"validation","step":{step},"loss":{loss},"accuracy":0.86,"precision":0.5,"recall":0.1,"f1":0.2,"auc":{auc},"baseline_accuracy":0.855,"rows":10,"tokens":100}}"#
                );
                lines.push('\n');
            }
        }
        std::fs::write(dir.join(crate::metrics::METRICS_FILE), lines).unwrap();
        let info = PlotInfo {
            loss_label: "loss (binary cross-entropy)",
            epochs: vec![
                EpochMark {
                    update: 0.0,
                    epoch: 0,
                    temperature: 2.0,
                },
                EpochMark {
                    update: 150.5,
                    epoch: 1,
                    temperature: 1.0367,
                },
            ],
        };
        write_run_plots(&dir, &info).unwrap();
        for f in ["loss.png", "accuracy.png"] {
            assert_eq!(&std::fs::read(dir.join(f)).unwrap()[1..4], b"PNG");
        }
        if std::env::var_os("TRAINER_PLOT_TEST_DIR").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
