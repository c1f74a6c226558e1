//! The global view (the study's figure 3): peers on a circle, one arrow per
//! (poller, receiver) pair, as wide as the pair's mean RTT and labelled with it. A pair
//! that never got an answer is a thin dashed red arrow labelled with its timeouts.
//!
//! Widths run linearly from [`W_MIN`] at the capture's smallest pair mean to [`W_MAX`]
//! at its largest, not from zero: means of one capture are often within a factor of
//! two (745 to 1,612 ms in the sample), which widths proportional to the mean drew as
//! near-equal arrows. A legend below shows the scale. Each label sits beside the middle
//! of its own arrow, on the side away from the arrow of the opposite direction; where
//! that spot is taken (crossing diagonals meet in the middle), it slides along its arrow.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{DrawResult, Figure, ReportData, TIMEOUT_COLOR};
use crate::report::summary::{top_pairs, PairSummary, TOP_PAIRS};
use crate::report::table::short_label;

pub struct Graph<'a> {
    data: &'a ReportData,
    /// The pairs drawn (indices into `summary.pairs`): the busiest
    /// [`TOP_PAIRS`]; every arrow beyond would only hide the others.
    shown: Vec<usize>,
}

/// Colour of the RTT arrows (tests count the arrowheads by it).
pub const EDGE_COLOR: RGBColor = RGBColor(31, 119, 180);
/// Shaft width (px) of the pair with the smallest mean RTT.
pub const W_MIN: f64 = 2.0;
/// Shaft width (px) of the pair with the largest mean RTT.
pub const W_MAX: f64 = 22.0;
/// Width of an arrow that never got an answer.
const W_UNANSWERED: f64 = 1.5;
/// Space between a shaft's edge and its label.
pub const LABEL_GAP: f64 = 5.0;
const NODE_R: f64 = 34.0;
const SIZE: i32 = 820;
/// Room below the circle for the width legend.
const LEGEND_H: i32 = 90;
const LABEL_SIZE: u32 = 14;
/// Where along its shaft a label may sit (fraction from the poller), best first.
const LABEL_AT: [f64; 9] = [0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82];

/// Shaft width for a pair mean of `mean_ms` when the capture's pair means run from
/// `min_ms` to `max_ms`: linear from [`W_MIN`] to [`W_MAX`], the middle when all are equal.
pub fn width_for(mean_ms: f64, min_ms: f64, max_ms: f64) -> f64 {
    let span = max_ms - min_ms;
    // NaN (no means) and a single mean alike: no scale to draw.
    if span.is_nan() || span <= 1e-9 {
        return (W_MIN + W_MAX) / 2.0;
    }
    W_MIN + (W_MAX - W_MIN) * ((mean_ms - min_ms) / span).clamp(0.0, 1.0)
}

/// An axis-aligned box (x0, y0, x1, y1), y down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelBox {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl LabelBox {
    pub fn center(&self) -> (f64, f64) {
        ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }

    pub fn overlaps(&self, o: &LabelBox) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    /// Distance from the box to point `p` (0 inside).
    pub fn distance_to(&self, p: (f64, f64)) -> f64 {
        let dx = (self.x0 - p.0).max(p.0 - self.x1).max(0.0);
        let dy = (self.y0 - p.1).max(p.1 - self.y1).max(0.0);
        (dx * dx + dy * dy).sqrt()
    }

    /// Distance from the box to the segment a–b (sampled every pixel: a figure holds
    /// a few dozen arrows at most per label).
    pub fn distance_to_segment(&self, a: (f64, f64), b: (f64, f64)) -> f64 {
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let steps = len.ceil().max(1.0) as usize;
        (0..=steps)
            .map(|i| {
                let t = i as f64 / steps as f64;
                self.distance_to((a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t))
            })
            .fold(f64::INFINITY, f64::min)
    }
}

/// One arrow as drawn.
#[derive(Clone)]
pub struct Edge {
    /// Index in `summary.pairs`.
    pub pair: usize,
    /// Mean RTT (ms); `None` when the pair never got an answer.
    pub mean_ms: Option<f64>,
    pub width: f64,
    /// Shaft start (beside the poller) and arrow tip (beside the receiver).
    pub start: (f64, f64),
    pub tip: (f64, f64),
    /// Unit normal on the side of the label (and away from the opposite arrow).
    pub normal: (f64, f64),
    pub label: String,
    /// Where the label's text is anchored, and how.
    pub label_at: (f64, f64),
    pub label_pos: (HPos, VPos),
    /// The space the label takes.
    pub label_box: LabelBox,
}

/// The text labelling an answered pair's arrow.
pub fn edge_text(mean_ms: f64) -> String {
    format!("{mean_ms:.0} ms")
}

impl<'a> Graph<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        Graph {
            data,
            shown: top_pairs(&data.summary.pairs, TOP_PAIRS),
        }
    }

    /// The pairs drawn, in pair order.
    fn shown_pairs(&self) -> impl Iterator<Item = (usize, &PairSummary)> + '_ {
        self.shown
            .iter()
            .filter_map(|&i| self.data.summary.pairs.get(i).map(|p| (i, p)))
    }

    /// Pairs left out of the picture.
    pub fn left_out(&self) -> usize {
        self.data.summary.pairs.len() - self.shown.len()
    }

    /// Every peer (poller or receiver) of a drawn pair, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shown_pairs()
            .flat_map(|(_, p)| [String::from(&*p.poller), String::from(&*p.receiver)])
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn pt(x: f64, y: f64) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

fn label_font() -> FontDesc<'static> {
    ("sans-serif", LABEL_SIZE).into_font()
}

/// The text's size in pixels as the shipped font lays it out (an estimate from the
/// size when the font cannot measure it).
fn text_size(text: &str) -> (f64, f64) {
    super::register_fonts();
    match label_font().box_size(text) {
        Ok((w, h)) => (w as f64, h as f64),
        Err(_) => (
            text.chars().count() as f64 * LABEL_SIZE as f64 * 0.6,
            LABEL_SIZE as f64,
        ),
    }
}

/// Anchor of a label beside a point, on the side of `normal`.
fn anchor_for(normal: (f64, f64)) -> (HPos, VPos) {
    let h = if normal.0 > 0.3 {
        HPos::Left
    } else if normal.0 < -0.3 {
        HPos::Right
    } else {
        HPos::Center
    };
    let v = if normal.1 > 0.3 {
        VPos::Top
    } else if normal.1 < -0.3 {
        VPos::Bottom
    } else {
        VPos::Center
    };
    (h, v)
}

fn box_at(at: (f64, f64), pos: (HPos, VPos), size: (f64, f64)) -> LabelBox {
    let x0 = match pos.0 {
        HPos::Left => at.0,
        HPos::Center => at.0 - size.0 / 2.0,
        HPos::Right => at.0 - size.0,
    };
    let y0 = match pos.1 {
        VPos::Top => at.1,
        VPos::Center => at.1 - size.1 / 2.0,
        VPos::Bottom => at.1 - size.1,
    };
    LabelBox {
        x0,
        y0,
        x1: x0 + size.0,
        y1: y0 + size.1,
    }
}

impl Graph<'_> {
    /// Smallest and largest mean RTT over the answered pairs.
    pub fn mean_range(&self) -> Option<(f64, f64)> {
        let means = self
            .shown_pairs()
            .map(|(_, p)| p)
            .filter(|p| p.rtt_ms.count > 0)
            .map(|p| p.rtt_ms.mean);
        means.fold(None, |acc, m| match acc {
            None => Some((m, m)),
            Some((lo, hi)) => Some((f64::min(lo, m), f64::max(hi, m))),
        })
    }

    /// Means shown in the width legend: the smallest, the middle and the largest.
    pub fn legend_means(&self) -> Vec<f64> {
        match self.mean_range() {
            None => Vec::new(),
            Some((lo, hi)) if hi - lo < 1e-9 => vec![lo],
            Some((lo, hi)) => vec![lo, (lo + hi) / 2.0, hi],
        }
    }

    /// Node centres, in [`Graph::peers`] order.
    fn positions(&self, n: usize) -> Vec<(f64, f64)> {
        let (cx, cy) = (SIZE as f64 / 2.0, SIZE as f64 / 2.0 + 30.0);
        let radius = SIZE as f64 * 0.33;
        (0..n)
            .map(|i| {
                let a = -std::f64::consts::FRAC_PI_2 + std::f64::consts::TAU * i as f64 / n as f64;
                (cx + radius * a.cos(), cy + radius * a.sin())
            })
            .collect()
    }

    /// Every arrow with its label placed.
    pub fn edges(&self) -> Vec<Edge> {
        let peers = self.peers();
        let pos = self.positions(peers.len().max(1));
        let idx = |name: &str| peers.iter().position(|p| p == name);
        let (lo, hi) = self.mean_range().unwrap_or((0.0, 0.0));
        let mut edges = Vec::new();
        for (i, p) in self.shown_pairs() {
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
                width_for(p.rtt_ms.mean, lo, hi)
            } else {
                W_UNANSWERED
            };
            let off = 6.0 + width / 2.0;
            let start = (ax + ux * NODE_R + nx * off, ay + uy * NODE_R + ny * off);
            let tip = (
                bx - ux * (NODE_R + 2.0) + nx * off,
                by - uy * (NODE_R + 2.0) + ny * off,
            );
            let label = if answered {
                edge_text(p.rtt_ms.mean)
            } else {
                format!("{} timeouts", p.counts.timeout)
            };
            edges.push(Edge {
                pair: i,
                mean_ms: answered.then_some(p.rtt_ms.mean),
                width,
                start,
                tip,
                normal: (nx, ny),
                label,
                label_at: start,
                label_pos: anchor_for((nx, ny)),
                label_box: LabelBox {
                    x0: start.0,
                    y0: start.1,
                    x1: start.0,
                    y1: start.1,
                },
            });
        }
        place_labels(&mut edges, &pos);
        edges
    }
}

/// Puts each label beside its shaft at the first spot of [`LABEL_AT`] clear of the other
/// labels, shafts and nodes; the least crowded one when none is clear.
fn place_labels(edges: &mut [Edge], nodes: &[(f64, f64)]) {
    // (start, tip, width) of every shaft.
    type Shaft = ((f64, f64), (f64, f64), f64);
    let shafts: Vec<Shaft> = edges.iter().map(|e| (e.start, e.tip, e.width)).collect();
    let mut placed: Vec<LabelBox> = Vec::new();
    for (k, e) in edges.iter_mut().enumerate() {
        let size = text_size(&e.label);
        let clear = e.width / 2.0 + LABEL_GAP;
        let mut best: Option<(usize, (f64, f64), LabelBox)> = None;
        for t in LABEL_AT {
            let on = (
                e.start.0 + (e.tip.0 - e.start.0) * t,
                e.start.1 + (e.tip.1 - e.start.1) * t,
            );
            let at = (on.0 + e.normal.0 * clear, on.1 + e.normal.1 * clear);
            let b = box_at(at, e.label_pos, size);
            let crowding = placed.iter().filter(|o| o.overlaps(&b)).count()
                + shafts
                    .iter()
                    .enumerate()
                    .filter(|&(j, &(s, tip, w))| {
                        j != k && b.distance_to_segment(s, tip) < w / 2.0 + 2.0
                    })
                    .count()
                + nodes
                    .iter()
                    .filter(|&&c| b.distance_to(c) < NODE_R + 2.0)
                    .count();
            if best.as_ref().is_none_or(|(c, _, _)| crowding < *c) {
                best = Some((crowding, at, b));
            }
            if crowding == 0 {
                break;
            }
        }
        if let Some((_, at, b)) = best {
            e.label_at = at;
            e.label_box = b;
            placed.push(b);
        }
    }
}

impl Figure for Graph<'_> {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn size(&self) -> (u32, u32) {
        (SIZE as u32, (SIZE + 40 + LEGEND_H) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let peers = self.peers();
        let pos = self.positions(peers.len().max(1));
        root.draw(&Text::new(
            "Presence round trips: arrow poller → receiver, wider = slower (mean RTT)".to_owned(),
            (16, 14),
            ("sans-serif", 20).into_font(),
        ))?;
        let legend = match self.left_out() {
            0 => "label = mean RTT; dashed red = no answer (timeouts only)".to_owned(),
            n => format!(
                "label = mean RTT; dashed red = no answer (timeouts only); the {} busiest pairs, {n} others not drawn",
                self.shown.len()
            ),
        };
        root.draw(&Text::new(
            legend,
            (16, 42),
            ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
        ))?;
        for e in self.edges() {
            let (ux, uy) = {
                let (dx, dy) = (e.tip.0 - e.start.0, e.tip.1 - e.start.1);
                let len = (dx * dx + dy * dy).sqrt().max(1e-9);
                (dx / len, dy / len)
            };
            let (nx, ny) = e.normal;
            let head_len = 12.0 + e.width;
            let base = (e.tip.0 - ux * head_len, e.tip.1 - uy * head_len);
            let answered = e.mean_ms.is_some();
            let color = if answered { EDGE_COLOR } else { TIMEOUT_COLOR };
            if answered {
                root.draw(&PathElement::new(
                    vec![pt(e.start.0, e.start.1), pt(base.0, base.1)],
                    color.mix(0.75).stroke_width(e.width.round() as u32),
                ))?;
            } else {
                root.draw(&DashedPathElement::new(
                    vec![pt(e.start.0, e.start.1), pt(base.0, base.1)],
                    6,
                    5,
                    color.stroke_width(2),
                ))?;
            }
            let hw = e.width / 2.0 + 6.0;
            root.draw(&Polygon::new(
                vec![
                    pt(e.tip.0, e.tip.1),
                    pt(base.0 + nx * hw, base.1 + ny * hw),
                    pt(base.0 - nx * hw, base.1 - ny * hw),
                ],
                color.filled(),
            ))?;
            let b = e.label_box;
            // A white ground keeps the label legible where it still touches a line.
            root.draw(&Rectangle::new(
                [pt(b.x0 - 1.0, b.y0), pt(b.x1 + 1.0, b.y1)],
                WHITE.mix(0.8).filled(),
            ))?;
            root.draw(&Text::new(
                e.label,
                pt(e.label_at.0, e.label_at.1),
                label_font()
                    .color(&if answered {
                        RGBColor(20, 50, 90)
                    } else {
                        color
                    })
                    .pos(Pos::new(e.label_pos.0, e.label_pos.1)),
            ))?;
        }
        self.draw_width_legend(root)?;
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

impl Graph<'_> {
    /// The width scale: a short arrow for the smallest, middle and largest mean.
    fn draw_width_legend<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> DrawResult<DB> {
        let means = self.legend_means();
        let Some((lo, hi)) = self.mean_range() else {
            return Ok(());
        };
        let top = (SIZE + 40) as f64;
        root.draw(&Text::new(
            format!(
                "arrow width: {W_MIN:.0} px at the smallest pair mean ({}) to {W_MAX:.0} px at the largest ({})",
                edge_text(lo),
                edge_text(hi)
            ),
            (16, top as i32),
            ("sans-serif", 14).into_font().color(&RGBColor(60, 60, 60)),
        ))?;
        let y = top + 40.0;
        for (k, &m) in means.iter().enumerate() {
            let w = width_for(m, lo, hi);
            let x0 = 40.0 + 250.0 * k as f64;
            let head_len = 12.0 + w;
            let tip = x0 + 110.0;
            let base = tip - head_len;
            root.draw(&Rectangle::new(
                [pt(x0, y - w / 2.0), pt(base, y + w / 2.0)],
                EDGE_COLOR.mix(0.75).filled(),
            ))?;
            let hw = w / 2.0 + 6.0;
            root.draw(&Polygon::new(
                vec![pt(tip, y), pt(base, y - hw), pt(base, y + hw)],
                EDGE_COLOR.filled(),
            ))?;
            root.draw(&Text::new(
                edge_text(m),
                pt(tip + 10.0, y),
                label_font()
                    .color(&RGBColor(20, 50, 90))
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}
