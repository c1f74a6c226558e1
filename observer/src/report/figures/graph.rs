//! The global view (the study's figure 3): peers on a circle, one arrow per
//! (poller, receiver) pair, as wide as the pair's mean RTT and labelled with it. A pair
//! that never got an answer is a thin dashed red arrow labelled with its timeouts.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{DrawResult, Figure, ReportData, TIMEOUT_COLOR};
use crate::report::table::short_label;

pub struct Graph<'a> {
    data: &'a ReportData,
}

/// Colour of the RTT arrows (tests count the arrowheads by it).
pub const EDGE_COLOR: RGBColor = RGBColor(31, 119, 180);
const NODE_R: f64 = 34.0;
const SIZE: i32 = 820;

/// The text labelling an answered pair's arrow.
pub fn edge_text(mean_ms: f64) -> String {
    format!("{mean_ms:.0} ms")
}

impl<'a> Graph<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        Graph { data }
    }

    /// Every peer (poller or receiver), sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .data
            .summary
            .pairs
            .iter()
            .flat_map(|p| [p.poller.clone(), p.receiver.clone()])
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn pt(x: f64, y: f64) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

impl Figure for Graph<'_> {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn size(&self) -> (u32, u32) {
        (SIZE as u32, SIZE as u32 + 40)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let peers = self.peers();
        let n = peers.len().max(1);
        let (cx, cy) = (SIZE as f64 / 2.0, SIZE as f64 / 2.0 + 30.0);
        let radius = SIZE as f64 * 0.33;
        let pos: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let a = -std::f64::consts::FRAC_PI_2 + std::f64::consts::TAU * i as f64 / n as f64;
                (cx + radius * a.cos(), cy + radius * a.sin())
            })
            .collect();
        let idx = |name: &str| peers.iter().position(|p| p == name);
        let max_mean = self
            .data
            .summary
            .pairs
            .iter()
            .filter(|p| p.rtt_ms.count > 0)
            .map(|p| p.rtt_ms.mean)
            .fold(0.0, f64::max)
            .max(1e-9);
        root.draw(&Text::new(
            "Presence round trips: arrow poller → receiver, width ∝ mean RTT".to_owned(),
            (16, 14),
            ("sans-serif", 20).into_font(),
        ))?;
        root.draw(&Text::new(
            format!("widest = {max_mean:.0} ms; dashed red = no answer (timeouts only)"),
            (16, 42),
            ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
        ))?;
        let label_font = ("sans-serif", 14).into_font();
        for p in &self.data.summary.pairs {
            let (Some(a), Some(b)) = (idx(&p.poller), idx(&p.receiver)) else {
                continue;
            };
            if a == b {
                continue;
            }
            let (ax, ay) = pos[a];
            let (bx, by) = pos[b];
            let (dx, dy) = (bx - ax, by - ay);
            let len = (dx * dx + dy * dy).sqrt().max(1e-9);
            let (ux, uy) = (dx / len, dy / len);
            // Normal to the right of the direction: the two directions of a pair sit
            // on either side of the line between the peers.
            let (nx, ny) = (-uy, ux);
            let answered = p.rtt_ms.count > 0;
            let width = if answered {
                2.0 + 14.0 * p.rtt_ms.mean / max_mean
            } else {
                1.5
            };
            let off = 6.0 + width / 2.0;
            let start = (ax + ux * NODE_R + nx * off, ay + uy * NODE_R + ny * off);
            let head_len = 12.0 + width;
            let tip = (
                bx - ux * (NODE_R + 2.0) + nx * off,
                by - uy * (NODE_R + 2.0) + ny * off,
            );
            let base = (tip.0 - ux * head_len, tip.1 - uy * head_len);
            let color = if answered { EDGE_COLOR } else { TIMEOUT_COLOR };
            if answered {
                root.draw(&PathElement::new(
                    vec![pt(start.0, start.1), pt(base.0, base.1)],
                    color.mix(0.75).stroke_width(width.round() as u32),
                ))?;
            } else {
                root.draw(&DashedPathElement::new(
                    vec![pt(start.0, start.1), pt(base.0, base.1)],
                    6,
                    5,
                    color.stroke_width(2),
                ))?;
            }
            let hw = width / 2.0 + 6.0;
            root.draw(&Polygon::new(
                vec![
                    pt(tip.0, tip.1),
                    pt(base.0 + nx * hw, base.1 + ny * hw),
                    pt(base.0 - nx * hw, base.1 - ny * hw),
                ],
                color.filled(),
            ))?;
            // Label a third of the way from the poller, beside its arrow: crossing
            // diagonals do not put their labels on top of each other.
            let t = 0.3;
            let lx = start.0 + (tip.0 - start.0) * t + nx * (width / 2.0 + 12.0);
            let ly = start.1 + (tip.1 - start.1) * t + ny * (width / 2.0 + 12.0);
            let text = if answered {
                edge_text(p.rtt_ms.mean)
            } else {
                format!("{} timeouts", p.counts.timeout)
            };
            let h = if nx > 0.3 {
                HPos::Left
            } else if nx < -0.3 {
                HPos::Right
            } else {
                HPos::Center
            };
            let v = if ny > 0.3 {
                VPos::Top
            } else if ny < -0.3 {
                VPos::Bottom
            } else {
                VPos::Center
            };
            root.draw(&Text::new(
                text,
                pt(lx, ly),
                label_font
                    .clone()
                    .color(&if answered {
                        RGBColor(20, 50, 90)
                    } else {
                        color
                    })
                    .pos(Pos::new(h, v)),
            ))?;
        }
        for (i, name) in peers.iter().enumerate() {
            let (x, y) = pos[i];
            root.draw(&Circle::new(
                pt(x, y),
                NODE_R as u32,
                RGBColor(250, 250, 250).filled(),
            ))?;
            root.draw(&Circle::new(
                pt(x, y),
                NODE_R as u32,
                RGBColor(60, 60, 60).stroke_width(2),
            ))?;
            root.draw(&Text::new(
                short_label(name),
                pt(x, y),
                ("sans-serif", 16)
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}
