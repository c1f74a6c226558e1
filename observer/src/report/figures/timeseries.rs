//! RTT of every transaction over time (the study's figure 8a): one coloured series per
//! (poller, receiver) pair, timeouts as red crosses, PINGs still open at the end of the
//! capture as grey triangles, the overall mean as a dashed line. Beyond
//! [`MAX_DRAWN_PAIRS`] pairs, only the busiest get their own line; the rest share one
//! grey "others" band (their lowest to highest RTT over time), or the picture is a tangle.
//! Peaks (RTT at or above the p90) the wire shows a cause for are ringed in that
//! cause's colour (docs/explain.md).

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::TIMEOUT_COLOR;
use super::{draw_legend, series_color, utc, DrawResult, Figure, LegendMark, ReportData};
use crate::transaction::cause::Flag;
use crate::transaction::TxStatus;

/// A peak's ring colour: its first cause in [`Flag::ALL`] order.
pub fn cause_color(f: Flag) -> RGBColor {
    match f {
        Flag::Retrans => RGBColor(220, 20, 60),
        Flag::Conn => RGBColor(255, 140, 0),
        Flag::Queue => RGBColor(138, 43, 226),
        Flag::Relay => RGBColor(0, 139, 139),
        Flag::Route => RGBColor(139, 69, 19),
        Flag::Far => RGBColor(30, 30, 30),
        Flag::Window => RGBColor(30, 144, 255),
        Flag::Reset => RGBColor(199, 21, 133),
        Flag::Jxta => RGBColor(85, 107, 47),
    }
}

pub struct TimeSeries<'a> {
    data: &'a ReportData,
    log: bool,
}

/// Pairs drawn with their own line and legend entry.
pub const MAX_DRAWN_PAIRS: usize = 8;

/// Time slices of the "others" band.
const BAND_SLICES: usize = 60;

pub const OTHERS_COLOR: RGBColor = RGBColor(150, 150, 150);

/// The pairs beyond [`MAX_DRAWN_PAIRS`], drawn as one band.
pub struct Others {
    pub pairs: usize,
    pub points: usize,
    /// (slice middle s, lowest RTT ms, highest RTT ms) of every slice with a point.
    pub band: Vec<(f64, f64, f64)>,
}

/// Points of one pair: (seconds since the first PING, RTT ms).
pub struct Series {
    pub pair: usize,
    pub points: Vec<(f64, f64)>,
}

impl<'a> TimeSeries<'a> {
    pub fn new(data: &'a ReportData, log: bool) -> Self {
        TimeSeries { data, log }
    }

    /// One series per pair with at least one answered transaction, in pair order.
    pub fn series(&self) -> Vec<Series> {
        let t0 = self.data.t0();
        let pairs = self.data.pair_of();
        let mut out: Vec<Series> = (0..self.data.summary.pairs.len())
            .map(|pair| Series {
                pair,
                points: Vec::new(),
            })
            .collect();
        for (t, p) in self.data.transactions.iter().zip(&pairs) {
            if let (Some(p), Some(rtt)) = (p, t.rtt_ns()) {
                out[*p]
                    .points
                    .push((t.start.saturating_sub(t0) as f64 / 1e9, rtt as f64 / 1e6));
            }
        }
        for s in &mut out {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        out.retain(|s| !s.points.is_empty());
        out
    }

    /// The series drawn on their own (the [`MAX_DRAWN_PAIRS`] with the most answered
    /// transactions, in pair order) and, when there are more pairs, the others.
    pub fn split(&self) -> (Vec<Series>, Option<Others>) {
        let mut series = self.series();
        if series.len() <= MAX_DRAWN_PAIRS {
            return (series, None);
        }
        let mut order: Vec<usize> = (0..series.len()).collect();
        // Stable: among equally busy pairs the earlier in pair order is kept.
        order.sort_by_key(|&i| std::cmp::Reverse(series[i].points.len()));
        let keep: std::collections::BTreeSet<usize> =
            order.into_iter().take(MAX_DRAWN_PAIRS).collect();
        let mut top = Vec::with_capacity(MAX_DRAWN_PAIRS);
        let mut rest = Vec::new();
        for (i, s) in series.drain(..).enumerate() {
            if keep.contains(&i) {
                top.push(s);
            } else {
                rest.push(s);
            }
        }
        let points: Vec<(f64, f64)> = rest.iter().flat_map(|s| s.points.iter().copied()).collect();
        let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
        let width = x_max / BAND_SLICES as f64;
        let mut slices = vec![None::<(f64, f64)>; BAND_SLICES + 1];
        for &(x, y) in &points {
            let i = ((x / width) as usize).min(BAND_SLICES);
            let e = slices[i].get_or_insert((y, y));
            *e = (e.0.min(y), e.1.max(y));
        }
        let band = slices
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|(lo, hi)| ((i as f64 + 0.5) * width, lo, hi)))
            .collect();
        let others = Others {
            pairs: rest.len(),
            points: points.len(),
            band,
        };
        (top, Some(others))
    }

    /// Answered transactions at or above the summary's p90 that carry a cause:
    /// (seconds since the first PING, RTT ms, first cause). None without a tail.
    pub fn peaks(&self) -> Vec<(f64, f64, Flag)> {
        let Some(from_ms) = self.data.summary.tail.as_ref().map(|t| t.from_ms) else {
            return Vec::new();
        };
        let t0 = self.data.t0();
        self.data
            .transactions
            .iter()
            .filter_map(|t| {
                let ms = t.rtt_ns()? as f64 / 1e6;
                let first = t.cause.flags.iter().next()?;
                (ms >= from_ms).then(|| (t.start.saturating_sub(t0) as f64 / 1e9, ms, first))
            })
            .collect()
    }

    fn marks(&self, status: TxStatus) -> Vec<f64> {
        let t0 = self.data.t0();
        self.data
            .transactions
            .iter()
            .filter(|t| t.status == status)
            .map(|t| t.start.saturating_sub(t0) as f64 / 1e9)
            .collect()
    }

    fn plot<DB: DrawingBackend, Y>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
        series: &[Series],
        others: Option<&Others>,
        marker_y: f64,
    ) -> DrawResult<DB>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc("time since the first PING (s)")
            .y_desc("round-trip time (ms)")
            .x_label_formatter(&super::seconds_label)
            .y_label_formatter(&|v| {
                // Log scale: label 1, 2, 5 × 10^k only, or the top labels crowd.
                let m = *v / 10f64.powf(v.log10().floor());
                if self.log && ![1.0, 2.0, 5.0].iter().any(|k| (m - k).abs() < 1e-6) {
                    String::new()
                } else if *v >= 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v}")
                }
            })
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        if let Some(o) = others {
            // Behind the lines; outlined so that a slice with one point still shows.
            let outline: Vec<(f64, f64)> = o
                .band
                .iter()
                .map(|&(x, _, hi)| (x, hi))
                .chain(o.band.iter().rev().map(|&(x, lo, _)| (x, lo)))
                .collect();
            let mut closed = outline.clone();
            closed.extend(outline.first().copied());
            chart.draw_series(std::iter::once(Polygon::new(
                outline,
                OTHERS_COLOR.mix(0.35).filled(),
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                closed,
                OTHERS_COLOR.stroke_width(1),
            )))?;
        }
        for s in series {
            let c = series_color(s.pair);
            chart.draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(1)))?;
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, c.filled())),
            )?;
        }
        chart.draw_series(
            self.peaks()
                .into_iter()
                .map(|(x, y, f)| Circle::new((x, y), 7, cause_color(f).stroke_width(2))),
        )?;
        let mean = self.data.summary.rtt_ms.mean;
        if self.data.summary.rtt_ms.count > 0 {
            let (x0, x1) = (chart.x_range().start, chart.x_range().end);
            chart.draw_series(std::iter::once(DashedPathElement::new(
                vec![(x0, mean), (x1, mean)],
                6,
                4,
                BLACK.mix(0.6).stroke_width(1),
            )))?;
        }
        chart.draw_series(
            self.marks(TxStatus::Timeout)
                .into_iter()
                .map(|x| Cross::new((x, marker_y), 5, TIMEOUT_COLOR.stroke_width(2))),
        )?;
        chart.draw_series(
            self.marks(TxStatus::Open)
                .into_iter()
                .map(|x| TriangleMarker::new((x, marker_y), 6, RGBColor(90, 90, 90).filled())),
        )?;
        Ok(())
    }
}

impl Figure for TimeSeries<'_> {
    fn name(&self) -> &'static str {
        "timeseries"
    }

    fn size(&self) -> (u32, u32) {
        (1200, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let d = self.data;
        let (plot, side) = root.split_horizontally(920);
        let (series, others) = self.split();
        let t_end = d.t_end().saturating_sub(d.t0()) as f64 / 1e9;
        let x_max = t_end.max(1.0) * 1.02;
        let max_rtt = d.summary.rtt_ms.max.max(1.0);
        let timeout_ms = d.timeout_ns as f64 / 1e6;
        let has_marks = d.summary.transactions.timeout + d.summary.transactions.open > 0;
        let caption = if d.transactions.is_empty() {
            "PING/PONG round-trip time: no transaction".to_owned()
        } else {
            format!("PING/PONG round-trip time, first PING at {}", utc(d.t0()))
        };
        let mut builder = ChartBuilder::on(&plot);
        builder
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(80);
        // Timeouts are drawn at the timeout value when it fits the picture; when it
        // would crush the RTTs (linear scale, timeout far above them) they sit on the
        // top edge instead, and the legend says so.
        let (marker_y, marker_note);
        if self.log {
            let min = d.summary.rtt_ms.min.max(0.001);
            let top = if has_marks {
                max_rtt.max(timeout_ms)
            } else {
                max_rtt
            } * 1.5;
            marker_y = timeout_ms;
            marker_note = format!("at the timeout ({:.0} ms)", timeout_ms);
            let mut chart =
                builder.build_cartesian_2d(0.0..x_max, ((min / 1.5)..top).log_scale())?;
            self.plot(&mut chart, &series, others.as_ref(), marker_y)?;
        } else {
            let top = if has_marks && timeout_ms <= max_rtt * 1.5 {
                marker_y = timeout_ms;
                marker_note = format!("at the timeout ({:.0} ms)", timeout_ms);
                timeout_ms * 1.08
            } else {
                let top = max_rtt * 1.12;
                marker_y = top * 0.985;
                marker_note = format!("on the top edge (timeout {:.0} ms)", timeout_ms);
                top
            };
            let mut chart = builder.build_cartesian_2d(0.0..x_max, 0.0..top)?;
            self.plot(&mut chart, &series, others.as_ref(), marker_y)?;
        }

        let mut entries: Vec<(String, LegendMark)> = series
            .iter()
            .map(|s| {
                (
                    format!("{} ({})", d.pair_label(s.pair), s.points.len()),
                    LegendMark::Box(series_color(s.pair)),
                )
            })
            .collect();
        if let Some(o) = &others {
            entries.push((
                format!("others: {} pairs ({})", o.pairs, o.points),
                LegendMark::Box(OTHERS_COLOR),
            ));
        }
        let t = &d.summary.transactions;
        if t.timeout > 0 {
            entries.push((
                format!("timeout ({})", t.timeout),
                LegendMark::Cross(TIMEOUT_COLOR),
            ));
        }
        if t.open > 0 {
            entries.push((
                format!("open at end ({})", t.open),
                LegendMark::Triangle(RGBColor(90, 90, 90)),
            ));
        }
        if d.summary.rtt_ms.count > 0 {
            entries.push((
                format!("mean {:.1} ms", d.summary.rtt_ms.mean),
                LegendMark::Line(RGBColor(100, 100, 100)),
            ));
        }
        let peaks = self.peaks();
        for f in Flag::ALL {
            let n = peaks.iter().filter(|p| p.2 == f).count();
            if n > 0 {
                entries.push((
                    format!("peak ≥ p90: {} ({n})", f.as_str()),
                    LegendMark::Ring(cause_color(f)),
                ));
            }
        }
        let side = side.margin(40, 10, 0, 0);
        draw_legend(&side, "poller → receiver (ok)", &entries)?;
        if has_marks {
            let y = 36 + 22 * entries.len() as i32 + 10;
            for (k, line) in ["timeouts and open PINGs drawn".to_owned(), marker_note]
                .into_iter()
                .enumerate()
            {
                side.draw(&Text::new(
                    line,
                    (8, y + 16 * k as i32),
                    ("sans-serif", 12).into_font().color(&RGBColor(80, 80, 80)),
                ))?;
            }
        }
        Ok(())
    }
}
