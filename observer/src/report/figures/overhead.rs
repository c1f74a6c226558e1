//! Correlator overhead, PING and PONG apart: the correlator element's bytes per
//! message (mean, and the largest as a tick) against the study's ≤ 50 B, and its share
//! of the JIM document, of the `jxmg` message and of the framed message against the study's ~10 %. Axes are
//! fitted to the data (the reference marks are always in view).
//!
//! From a capture the figures are the decoder's, per message kind (every distinct PING
//! and PONG, `Summary::overhead`). A transactions CSV records only the PING's and the
//! PONG's correlator bytes together, so from a CSV one "PING + PONG" bar per panel is
//! drawn from the transactions ([`Overhead::points`]), and the figure says so.
//!
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{DrawResult, Figure, ReportData};
use crate::transaction::TxStatus;

/// (message bytes, correlator bytes) per message.
pub type Points = Vec<(f64, f64)>;

pub struct Overhead<'a> {
    data: &'a ReportData,
}

pub const PING_COLOR: RGBColor = RGBColor(31, 119, 180);
pub const PONG_COLOR: RGBColor = RGBColor(255, 127, 14);

impl<'a> Overhead<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        Overhead { data }
    }

    /// (message bytes, correlator bytes) of every PING and every PONG.
    pub fn points(&self) -> (Points, Points) {
        let mut ping = Vec::new();
        let mut pong = Vec::new();
        for t in &self.data.transactions {
            let answered = t.status == TxStatus::Ok && t.pong_bytes.is_some();
            let per = if answered {
                t.correlator_overhead_bytes as f64 / 2.0
            } else {
                t.correlator_overhead_bytes as f64
            };
            ping.push((t.ping_bytes as f64, per));
            if let (true, Some(b)) = (answered, t.pong_bytes) {
                pong.push((b as f64, per));
            }
        }
        (ping, pong)
    }
}

/// One bar group: its label, colour, correlator bytes (mean, max) and shares (% of
/// the `jxmg` message, % of the framed message).
pub struct Bar {
    pub label: String,
    pub color: RGBColor,
    pub bytes_mean: f64,
    pub bytes_max: f64,
    pub pct_document: Option<f64>,
    pub pct_message: Option<f64>,
    pub pct_framed: f64,
}

impl Overhead<'_> {
    /// The bars drawn: PING and PONG from the decoder's tally when there is one, else
    /// one PING + PONG bar from the transactions (a CSV).
    pub fn bars(&self) -> Vec<Bar> {
        let o = &self.data.summary.overhead;
        let mut bars = Vec::new();
        if o.pings_with_correlator + o.pongs_with_correlator > 0 {
            for (label, color, mean, max, pct_doc, pct_msg, pct_framed) in [
                (
                    "PING",
                    PING_COLOR,
                    o.correlator_bytes_per_ping_mean,
                    o.correlator_bytes_per_ping_max,
                    o.correlator_pct_of_ping_document,
                    o.correlator_pct_of_ping_message,
                    o.correlator_pct_of_ping_framed,
                ),
                (
                    "PONG",
                    PONG_COLOR,
                    o.correlator_bytes_per_pong_mean,
                    o.correlator_bytes_per_pong_max,
                    o.correlator_pct_of_pong_document,
                    o.correlator_pct_of_pong_message,
                    o.correlator_pct_of_pong_framed,
                ),
            ] {
                if let (Some(mean), Some(framed)) = (mean, pct_framed) {
                    bars.push(Bar {
                        label: label.to_owned(),
                        color,
                        bytes_mean: mean,
                        bytes_max: max as f64,
                        pct_document: pct_doc,
                        pct_message: pct_msg,
                        pct_framed: framed,
                    });
                }
            }
            return bars;
        }
        let with: Vec<&crate::transaction::Transaction> = self
            .data
            .transactions
            .iter()
            .filter(|t| t.correlator_overhead_bytes > 0)
            .collect();
        if with.is_empty() {
            return bars;
        }
        let bytes: u64 = with.iter().map(|t| t.correlator_overhead_bytes).sum();
        let framed: u64 = with
            .iter()
            .map(|t| t.ping_bytes + t.pong_bytes.unwrap_or(0))
            .sum();
        bars.push(Bar {
            label: "PING + PONG".to_owned(),
            color: RGBColor(120, 120, 120),
            bytes_mean: bytes as f64 / with.len() as f64,
            bytes_max: with
                .iter()
                .map(|t| t.correlator_overhead_bytes)
                .max()
                .unwrap_or(0) as f64,
            pct_document: None,
            pct_message: None,
            pct_framed: if framed > 0 {
                100.0 * bytes as f64 / framed as f64
            } else {
                0.0
            },
        });
        bars
    }
}

const STUDY_COLOR: RGBColor = RGBColor(200, 30, 30);

impl Figure for Overhead<'_> {
    fn name(&self) -> &'static str {
        "overhead"
    }

    fn size(&self) -> (u32, u32) {
        (1100, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let bars = self.bars();
        let study = &self.data.summary.overhead.study;
        let max_b = study.max_correlator_bytes_per_message as f64;
        let ten = study.correlator_pct_of_ping;
        let from_tally = bars.iter().any(|b| b.label == "PING");
        let caption = if bars.is_empty() {
            "Correlator overhead: no message carried a correlator".to_owned()
        } else if from_tally {
            "Correlator overhead per message, as decoded".to_owned()
        } else {
            "Correlator overhead per transaction (PING + PONG, from the CSV)".to_owned()
        };
        let root = root.titled(&caption, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(500);
        let n = bars.len().max(1) as f64;
        let label_of = |v: &f64| -> String {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < bars.len() {
                bars[i as usize].label.clone()
            } else {
                String::new()
            }
        };

        // Bytes: mean bar, largest as a tick, the study's bound as a dashed line.
        let top_b = bars.iter().map(|b| b.bytes_max).fold(max_b, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(&left)
            .caption("correlator element (bytes per message)", ("sans-serif", 15))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.6..(n - 0.4), 0.0..top_b)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(12)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x - 0.3, 0.0), (x + 0.3, b.bytes_mean)],
                b.color.filled(),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x - 0.15, b.bytes_max), (x + 0.15, b.bytes_max)],
                BLACK.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{:.1} B (max {:.0})", b.bytes_mean, b.bytes_max),
                (x - 0.28, b.bytes_mean.max(b.bytes_max) + top_b * 0.03),
                ("sans-serif", 13),
            )))?;
        }
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(-0.6, max_b), (n - 0.4, max_b)],
            6,
            4,
            STUDY_COLOR.stroke_width(2),
        )))?;
        // Text hangs down from its anchor: anchored above the line to sit on it.
        chart.draw_series(std::iter::once(Text::new(
            format!("study: ≤ {max_b:.0} B"),
            (-0.55, max_b + top_b * 0.06),
            ("sans-serif", 13).into_font().color(&STUDY_COLOR),
        )))?;

        // Shares: of the jxmg message (full colour) and of the framed message (light).
        let top_p = bars
            .iter()
            .flat_map(|b| {
                [
                    b.pct_document.unwrap_or(0.0),
                    b.pct_message.unwrap_or(0.0),
                    b.pct_framed,
                ]
            })
            .fold(ten, f64::max)
            * 1.25;
        let mut chart = ChartBuilder::on(&right)
            .caption("its share of the message (%)", ("sans-serif", 15))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(56)
            // Room left of the first group for the study's label.
            .build_cartesian_2d(-1.0..(n - 0.4), 0.0..top_p)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(12)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            let parts = [
                (b.pct_document, b.color.filled(), "JIM"),
                (b.pct_message, b.color.mix(0.65).filled(), "jxmg"),
                (Some(b.pct_framed), b.color.mix(0.35).filled(), "framed"),
            ];
            for (k, (pct, style, what)) in parts.into_iter().enumerate() {
                let Some(pct) = pct else { continue };
                let x0 = x - 0.39 + 0.26 * k as f64;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x0 + 0.26, pct)],
                    style,
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{pct:.1} % {what}"),
                    (x0, pct + top_p * 0.045),
                    ("sans-serif", 11),
                )))?;
            }
        }
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(-1.0, ten), (n - 0.4, ten)],
            6,
            4,
            STUDY_COLOR.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("study: ~{ten:.0} %"),
            (-0.97, ten + top_p * 0.06),
            ("sans-serif", 13).into_font().color(&STUDY_COLOR),
        )))?;
        let note =
            "share of the JIM document, of the jxmg message, of the framed message (TCP payload)";
        right.draw(&Text::new(
            note,
            (14, right.dim_in_pixel().1 as i32 - 14),
            ("sans-serif", 12).into_font().color(&RGBColor(80, 80, 80)),
        ))?;
        Ok(())
    }
}
