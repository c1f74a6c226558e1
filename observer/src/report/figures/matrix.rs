//! The RTT matrix as a heat map: pollers (rows) × receivers (columns), each cell
//! coloured by the pair's mean RTT and showing mean, p90, answered and timed-out
//! transactions.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{DrawResult, Figure, ReportData};
use crate::report::summary::PairSummary;
use crate::report::table::short_label;

pub struct MatrixFigure<'a> {
    data: &'a ReportData,
}

/// The text of a cell's first line: the mean as the table prints it.
pub fn mean_text(mean_ms: f64) -> String {
    format!("mean {mean_ms:.1} ms")
}

const CELL_W: i32 = 170;
const CELL_H: i32 = 92;
const LEFT: i32 = 150;
const TOP: i32 = 110;

/// Light yellow (fast) to dark red (slow).
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        (255.0, 245.0, 200.0),
        (250.0, 160.0, 60.0),
        (170.0, 20.0, 30.0),
    ];
    let (a, b, u) = if t < 0.5 {
        (stops[0], stops[1], t * 2.0)
    } else {
        (stops[1], stops[2], (t - 0.5) * 2.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

impl<'a> MatrixFigure<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        MatrixFigure { data }
    }

    fn pair(&self, poller: &str, receiver: &str) -> Option<&PairSummary> {
        self.data
            .summary
            .pairs
            .iter()
            .find(|p| *p.poller == *poller && *p.receiver == *receiver)
    }

    fn range(&self) -> (f64, f64) {
        let means: Vec<f64> = self
            .data
            .summary
            .pairs
            .iter()
            .filter(|p| p.rtt_ms.count > 0)
            .map(|p| p.rtt_ms.mean)
            .collect();
        let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        }
    }
}

impl Figure for MatrixFigure<'_> {
    fn name(&self) -> &'static str {
        "matrix"
    }

    fn size(&self) -> (u32, u32) {
        let m = &self.data.summary.matrix;
        let w = LEFT + CELL_W * m.receivers.len().max(1) as i32 + 140;
        let h = TOP + CELL_H * m.pollers.len().max(1) as i32 + 40;
        (w.max(560) as u32, h.max(300) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let m = &self.data.summary.matrix;
        let title = ("sans-serif", 20).into_font();
        let f = ("sans-serif", 14).into_font();
        let bold = ("sans-serif", 15).into_font().style(FontStyle::Bold);
        root.draw(&Text::new(
            "RTT matrix: poller (row) → receiver (column), ms".to_owned(),
            (16, 14),
            title,
        ))?;
        root.draw(&Text::new(
            "receiver".to_owned(),
            (LEFT + CELL_W * m.receivers.len() as i32 / 2, 50),
            f.clone()
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        root.draw(&Text::new(
            "poller".to_owned(),
            (16, TOP - 22),
            f.clone().color(&RGBColor(90, 90, 90)),
        ))?;
        for (c, r) in m.receivers.iter().enumerate() {
            root.draw(&Text::new(
                short_label(r),
                (LEFT + CELL_W * c as i32 + CELL_W / 2, TOP - 10),
                bold.clone()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))?;
        }
        let (lo, hi) = self.range();
        let span = (hi - lo).max(1e-9);
        for (ri, p) in m.pollers.iter().enumerate() {
            let y = TOP + CELL_H * ri as i32;
            root.draw(&Text::new(
                short_label(p),
                (LEFT - 12, y + CELL_H / 2),
                bold.clone()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            for (ci, r) in m.receivers.iter().enumerate() {
                let x = LEFT + CELL_W * ci as i32;
                let cell = [(x + 1, y + 1), (x + CELL_W - 1, y + CELL_H - 1)];
                let Some(pair) = self.pair(p, r) else {
                    root.draw(&Rectangle::new(cell, RGBColor(242, 242, 242).filled()))?;
                    root.draw(&Text::new(
                        "–".to_owned(),
                        (x + CELL_W / 2, y + CELL_H / 2),
                        f.clone()
                            .color(&RGBColor(150, 150, 150))
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                    continue;
                };
                let mut lines = Vec::new();
                let t = if pair.rtt_ms.count > 0 {
                    (pair.rtt_ms.mean - lo) / span
                } else {
                    -1.0
                };
                let fill = if t < 0.0 {
                    RGBColor(220, 220, 220)
                } else {
                    heat(t)
                };
                root.draw(&Rectangle::new(cell, fill.filled()))?;
                if pair.rtt_ms.count > 0 {
                    lines.push(mean_text(pair.rtt_ms.mean));
                    lines.push(format!("p90 {:.1} ms", pair.rtt_ms.p90));
                } else {
                    lines.push("no answer".to_owned());
                }
                lines.push(format!("{} ok", pair.counts.ok));
                if pair.counts.timeout > 0 {
                    lines.push(format!("{} timeouts", pair.counts.timeout));
                }
                let ink = if t > 0.55 {
                    WHITE
                } else {
                    RGBColor(20, 20, 20)
                };
                let n = lines.len() as i32;
                for (k, line) in lines.into_iter().enumerate() {
                    let ly = y + CELL_H / 2 + (k as i32 * 2 - (n - 1)) * 9;
                    let style = if k == 0 {
                        ("sans-serif", 15).into_font().style(FontStyle::Bold)
                    } else {
                        ("sans-serif", 13).into_font()
                    };
                    let style = if line.contains("timeout") {
                        style.color(&if t > 0.55 {
                            RGBColor(255, 220, 220)
                        } else {
                            RGBColor(190, 20, 20)
                        })
                    } else {
                        style.color(&ink)
                    };
                    root.draw(&Text::new(
                        line,
                        (x + CELL_W / 2, ly),
                        style.pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                }
            }
        }
        // Colour scale.
        let x = LEFT + CELL_W * m.receivers.len() as i32 + 40;
        let h = (CELL_H * m.pollers.len() as i32).max(120);
        for k in 0..h {
            let t = 1.0 - k as f64 / h as f64;
            root.draw(&Rectangle::new(
                [(x, TOP + k), (x + 18, TOP + k + 1)],
                heat(t).filled(),
            ))?;
        }
        let small = ("sans-serif", 12).into_font();
        root.draw(&Text::new(
            format!("{hi:.0}"),
            (x + 24, TOP),
            small
                .clone()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
        root.draw(&Text::new(
            format!("{lo:.0}"),
            (x + 24, TOP + h),
            small
                .clone()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Bottom)),
        ))?;
        root.draw(&Text::new(
            "mean ms".to_owned(),
            (x - 6, TOP - 10),
            small.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Bottom)),
        ))?;
        Ok(())
    }
}
