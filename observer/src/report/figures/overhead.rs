//! Correlator overhead against message size, per message type.
//!
//! What is plotted, from the transactions (so a CSV gives the same picture): one PING
//! point per transaction at x = the PING's framed bytes (`ping_bytes`), and one PONG
//! point per answered transaction at x = `pong_bytes`; y = the correlator bytes each
//! message carries. A transaction records the PING's and the PONG's correlator element
//! bytes together (`correlator_overhead_bytes`); the PONG copies the PING's correlator,
//! so each message is drawn with half of it (exact when both carry the same element,
//! as the reference peer sends it). Reference lines: the study's 50 bytes per message
//! and 10 % of the message size.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{draw_legend, DrawResult, Figure, LegendMark, ReportData};
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

impl Figure for Overhead<'_> {
    fn name(&self) -> &'static str {
        "overhead"
    }

    fn size(&self) -> (u32, u32) {
        (1100, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (ping, pong) = self.points();
        let (plot, side) = root.split_horizontally(820);
        let max_x = ping
            .iter()
            .chain(&pong)
            .map(|p| p.0)
            .fold(0.0, f64::max)
            .max(100.0)
            * 1.1;
        let max_y = ping.iter().chain(&pong).map(|p| p.1).fold(50.0, f64::max) * 1.3;
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                "Correlator bytes per message against message size",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
        chart
            .configure_mesh()
            .x_desc("message size on the wire, framed (bytes)")
            .y_desc("correlator element (bytes)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(0.0, 50.0), (max_x, 50.0)],
            6,
            4,
            RGBColor(200, 30, 30).stroke_width(1),
        )))?;
        let ten = (max_x * 0.1).min(max_y);
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(0.0, 0.0), (ten * 10.0, ten)],
            3,
            4,
            RGBColor(100, 100, 100).stroke_width(1),
        )))?;
        chart.draw_series(
            ping.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, PING_COLOR.mix(0.6).filled())),
        )?;
        chart.draw_series(
            pong.iter()
                .map(|&(x, y)| TriangleMarker::new((x, y), 5, PONG_COLOR.mix(0.6).filled())),
        )?;
        let o = &self.data.summary.overhead;
        let entries = vec![
            (
                format!("PING ({})", ping.len()),
                LegendMark::Box(PING_COLOR),
            ),
            (
                format!("PONG ({})", pong.len()),
                LegendMark::Triangle(PONG_COLOR),
            ),
            (
                "study: ≤ 50 B per message".to_owned(),
                LegendMark::Line(RGBColor(200, 30, 30)),
            ),
            (
                "10 % of the message".to_owned(),
                LegendMark::Line(RGBColor(100, 100, 100)),
            ),
        ];
        let side = side.margin(40, 0, 0, 0);
        draw_legend(&side, "message type", &entries)?;
        let mut notes = vec![
            "y: the transaction's correlator".to_owned(),
            "bytes (PING + PONG) / 2".to_owned(),
        ];
        if o.pings > 0 {
            notes.push(format!(
                "decoder: PING {} / PONG {} B",
                o.correlator_bytes_per_ping_mean
                    .map_or("-".to_owned(), |v| format!("{v:.1}")),
                o.correlator_bytes_per_pong_mean
                    .map_or("-".to_owned(), |v| format!("{v:.1}")),
            ));
        }
        for (i, n) in notes.into_iter().enumerate() {
            side.draw(&Text::new(
                n,
                (8, 150 + 18 * i as i32),
                ("sans-serif", 12).into_font().color(&RGBColor(80, 80, 80)),
            ))?;
        }
        Ok(())
    }
}
