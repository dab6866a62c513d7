//! PNG plots of the run (plotters' bitmap backend): `loss.png` and `accuracy.png`.
//!
//! plotters needs a font file to draw text, and a fresh machine may have none, so the tick
//! labels are drawn with a built-in 3x5 pixel font (digits, `.`, `-`, `e`) and there are no
//! words: blue is training, red is validation, grey is the all-"original" baseline (accuracy).
use anyhow::Context;
use plotters::prelude::*;
use std::path::Path;

use crate::metrics::{read_split, TrainRecord, ValidationRecord};

/// One curve: points and colour.
pub struct Curve {
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

const GLYPHS: &[(char, [u8; 5])] = &[
    ('0', [0b111, 0b101, 0b101, 0b101, 0b111]),
    ('1', [0b010, 0b110, 0b010, 0b010, 0b111]),
    ('2', [0b111, 0b001, 0b111, 0b100, 0b111]),
    ('3', [0b111, 0b001, 0b111, 0b001, 0b111]),
    ('4', [0b101, 0b101, 0b111, 0b001, 0b001]),
    ('5', [0b111, 0b100, 0b111, 0b001, 0b111]),
    ('6', [0b111, 0b100, 0b111, 0b101, 0b111]),
    ('7', [0b111, 0b001, 0b010, 0b010, 0b010]),
    ('8', [0b111, 0b101, 0b111, 0b101, 0b111]),
    ('9', [0b111, 0b101, 0b111, 0b001, 0b111]),
    ('.', [0b000, 0b000, 0b000, 0b000, 0b010]),
    ('-', [0b000, 0b000, 0b111, 0b000, 0b000]),
    ('e', [0b000, 0b111, 0b111, 0b100, 0b111]),
];

/// Draws `text` with the built-in font, `scale` pixels per font pixel, top-left at `(x, y)`.
fn draw_label<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    (x, y): (i32, i32),
    scale: i32,
) -> anyhow::Result<()> {
    let mut cx = x;
    for ch in text.chars() {
        if let Some((_, rows)) = GLYPHS.iter().find(|(c, _)| *c == ch) {
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        let (px, py) = (cx + col * scale, y + r as i32 * scale);
                        area.draw(&Rectangle::new(
                            [(px, py), (px + scale, py + scale)],
                            BLACK.filled(),
                        ))
                        .map_err(|e| anyhow::anyhow!("drawing: {e:?}"))?;
                    }
                }
            }
        }
        cx += 4 * scale;
    }
    Ok(())
}

/// A short label for a tick value.
fn tick_text(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws `curves` into a PNG at `path` (800 x 500).
pub fn line_plot(path: &Path, curves: &[Curve]) -> anyhow::Result<()> {
    let pts: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|c| c.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in &pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("{}: drawing: {e:?}", path.display());
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin_left(80)
        .margin_bottom(30)
        .margin_top(15)
        .margin_right(20)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    let grey = RGBColor(220, 220, 220);
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        let x = x0 + (x1 - x0) * k as f64 / 4.0;
        chart
            .draw_series(LineSeries::new([(x0, y), (x1, y)], grey))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new([(x, y0), (x, y1)], grey))
            .map_err(|e| err(&e))?;
        let (_, py) = chart.backend_coord(&(x0, y));
        draw_label(&root, &tick_text(y), (4, py - 5), 2)?;
        let (px, _) = chart.backend_coord(&(x, y0));
        draw_label(&root, &tick_text(x), (px - 10, 500 - 22), 2)?;
    }
    for c in curves {
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()),
                c.color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes `loss.png` and `accuracy.png` from the run's `metrics.jsonl`.
pub fn write_run_plots(run_dir: &Path) -> anyhow::Result<()> {
    let train: Vec<TrainRecord> = read_split(run_dir, "train")?;
    let val: Vec<ValidationRecord> = read_split(run_dir, "validation")?;
    let blue = RGBColor(31, 119, 180);
    let red = RGBColor(214, 39, 40);
    let grey = RGBColor(150, 150, 150);
    let xy = |f: &dyn Fn(&TrainRecord) -> f64| train.iter().map(|r| (r.step as f64, f(r))).collect();
    line_plot(
        &run_dir.join("loss.png"),
        &[
            Curve { points: xy(&|r| r.loss), color: blue },
            Curve { points: val.iter().map(|r| (r.step as f64, r.loss)).collect(), color: red },
        ],
    )
    .context("plotting the loss")?;
    line_plot(
        &run_dir.join("accuracy.png"),
        &[
            Curve { points: xy(&|r| r.accuracy), color: blue },
            Curve { points: val.iter().map(|r| (r.step as f64, r.accuracy)).collect(), color: red },
            Curve {
                points: val
                    .iter()
                    .filter_map(|r| r.baseline_accuracy.map(|b| (r.step as f64, b)))
                    .collect(),
                color: grey,
            },
        ],
    )
    .context("plotting the accuracy")?;
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
            &[Curve {
                points: vec![(0.0, 0.7), (10.0, 0.5), (20.0, 0.31)],
                color: RGBColor(0, 0, 255),
            }],
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(tick_text(0.25), "0.25");
        assert_eq!(tick_text(1.5e-5), "1.5e-5");
    }
}
