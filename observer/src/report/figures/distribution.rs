//! RTT distribution (the study's figure 8b): a histogram whose bins follow the
//! Freedman–Diaconis rule, the ECDF below it, the mean and mean ± standard deviation
//! marked, p50/p90/p99 annotated. `PerPair` draws one histogram panel per pair, all on
//! one x scale.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{DrawResult, Figure, ReportData};
use crate::report::stats::{percentile, RttStats};

/// Histogram bins: `counts[i]` values fall in `[lo + i·width, lo + (i+1)·width)`, the
/// last bin closed on the right.
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    pub lo: f64,
    pub width: f64,
    pub counts: Vec<u64>,
}

impl Bins {
    pub fn edges(&self, i: usize) -> (f64, f64) {
        let a = self.lo + i as f64 * self.width;
        (a, a + self.width)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Most bins a histogram gets, whatever the rule says.
pub const MAX_BINS: usize = 80;

/// Bins for `values` (any order): width 2·IQR·n^(−1/3) (Freedman–Diaconis); Sturges'
/// rule (⌈log₂ n⌉ + 1 bins) when the IQR is 0; one bin when all values are equal;
/// between 1 and [`MAX_BINS`] bins. Every value is counted once.
pub fn bins(values: &[f64]) -> Bins {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Bins {
            lo: 0.0,
            width: 1.0,
            counts: Vec::new(),
        };
    }
    v.sort_by(f64::total_cmp);
    let (lo, hi) = (v[0], v[v.len() - 1]);
    let range = hi - lo;
    if range <= 0.0 {
        return Bins {
            lo: lo - 0.5,
            width: 1.0,
            counts: vec![v.len() as u64],
        };
    }
    let n = v.len() as f64;
    let iqr = percentile(&v, 0.75) - percentile(&v, 0.25);
    let k = if iqr > 0.0 {
        (range / (2.0 * iqr / n.cbrt())).ceil()
    } else {
        n.log2().ceil() + 1.0
    };
    let k = (k as usize).clamp(1, MAX_BINS);
    let width = range / k as f64;
    let mut counts = vec![0u64; k];
    for x in &v {
        let i = (((x - lo) / width).floor() as usize).min(k - 1);
        counts[i] += 1;
    }
    Bins { lo, width, counts }
}

/// Fill colour of histogram bars (tests find the bars by it).
pub const BAR_COLOR: RGBColor = RGBColor(70, 130, 180);
const MEAN_COLOR: RGBColor = RGBColor(200, 30, 30);
const PCT_COLOR: RGBColor = RGBColor(60, 60, 60);

/// Every answered transaction's RTT (ms).
fn ms_of(data: &ReportData) -> Vec<f64> {
    data.transactions
        .iter()
        .filter_map(|t| t.rtt_ns())
        .map(|ns| ns as f64 / 1e6)
        .collect()
}

/// RTTs of one pair, given every transaction's pair (see [`ReportData::pair_of`]).
fn ms_of_pair(data: &ReportData, pair_of: &[Option<usize>], pair: Option<usize>) -> Vec<f64> {
    data.transactions
        .iter()
        .zip(pair_of)
        .filter(|(_, p)| **p == pair)
        .filter_map(|(t, _)| t.rtt_ns())
        .map(|ns| ns as f64 / 1e6)
        .collect()
}

/// The x axis that shows every bin, with a little room either side.
fn x_range_of(b: &Bins) -> (f64, f64) {
    if b.counts.is_empty() {
        return (0.0, 1.0);
    }
    let (a, _) = b.edges(0);
    let (_, z) = b.edges(b.counts.len() - 1);
    let pad = (z - a) * 0.04;
    ((a - pad).max(0.0), z + pad)
}

/// Histogram with mean, ±sd band and percentile lines on `area`; `x_range` fixes the
/// x axis (panels compared side by side share one).
fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    values: &[f64],
    stats: &RttStats,
    small: bool,
    x_range: Option<(f64, f64)>,
) -> DrawResult<DB> {
    let b = bins(values);
    let max_count = b.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (x0, x1) = x_range.unwrap_or_else(|| x_range_of(&b));
    let font = if small { 12 } else { 14 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", if small { 14 } else { 18 }))
        .margin(10)
        .x_label_area_size(if small { 30 } else { 45 })
        .y_label_area_size(if small { 45 } else { 70 })
        .build_cartesian_2d(x0..x1, 0.0..max_count * 1.35)?;
    let mut mesh = chart.configure_mesh();
    mesh.label_style(("sans-serif", font))
        .axis_desc_style(("sans-serif", font + 2))
        .light_line_style(RGBColor(235, 235, 235))
        .y_labels(if small { 4 } else { 8 })
        .x_labels(if small { 5 } else { 10 })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        });
    if !small {
        mesh.x_desc("round-trip time (ms)")
            .y_desc("transactions per bin");
    }
    mesh.draw()?;
    if stats.count == 0 {
        return Ok(());
    }
    let top = max_count * 1.35;
    // mean ± sd as a light band behind the bars.
    chart.draw_series(std::iter::once(Rectangle::new(
        [
            ((stats.mean - stats.sd).max(x0), 0.0),
            ((stats.mean + stats.sd).min(x1), top),
        ],
        MEAN_COLOR.mix(0.08).filled(),
    )))?;
    chart.draw_series(
        b.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, &c)| {
                let (a, z) = b.edges(i);
                let mut r = Rectangle::new([(a, 0.0), (z, c as f64)], BAR_COLOR.filled());
                r.set_margin(0, 0, 1, 1);
                r
            }),
    )?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(stats.mean, 0.0), (stats.mean, top)],
        MEAN_COLOR.stroke_width(2),
    )))?;
    for x in [stats.mean - stats.sd, stats.mean + stats.sd] {
        if x > x0 && x < x1 {
            chart.draw_series(std::iter::once(DashedPathElement::new(
                vec![(x, 0.0), (x, top)],
                5,
                4,
                MEAN_COLOR.mix(0.7).stroke_width(1),
            )))?;
        }
    }
    let f = ("sans-serif", font).into_font();
    // Percentile lines, their labels staggered so close percentiles stay readable.
    for (k, (name, v)) in [("p50", stats.p50), ("p90", stats.p90), ("p99", stats.p99)]
        .into_iter()
        .enumerate()
    {
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(v, 0.0), (v, top)],
            2,
            3,
            PCT_COLOR.stroke_width(1),
        )))?;
        let y = top * (0.97 - 0.07 * k as f64);
        // Labels right of their line, or left of it near the right edge.
        let h = if v > x0 + 0.7 * (x1 - x0) {
            HPos::Right
        } else {
            HPos::Left
        };
        chart.draw_series(std::iter::once(Text::new(
            format!(" {name} {v:.1} "),
            (v, y),
            f.clone().color(&PCT_COLOR).pos(Pos::new(h, VPos::Top)),
        )))?;
    }
    let y = top * 0.76;
    let h = if stats.mean > x0 + 0.6 * (x1 - x0) {
        HPos::Right
    } else {
        HPos::Left
    };
    chart.draw_series(std::iter::once(Text::new(
        format!(" mean {:.1} ± sd {:.1} ", stats.mean, stats.sd),
        (stats.mean, y),
        f.color(&MEAN_COLOR).pos(Pos::new(h, VPos::Top)),
    )))?;
    Ok(())
}

/// ECDF step curve with the three percentiles marked.
fn ecdf<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    values: &[f64],
    stats: &RttStats,
    x_range: (f64, f64),
) -> DrawResult<DB> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mut chart = ChartBuilder::on(area)
        .caption("empirical CDF", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.0..x_range.1, 0.0..1.02)?;
    chart
        .configure_mesh()
        .x_desc("round-trip time (ms)")
        .y_desc("fraction of transactions ≤ x")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if v.is_empty() {
        return Ok(());
    }
    let n = v.len() as f64;
    let mut pts = vec![(x_range.0, 0.0)];
    for (i, x) in v.iter().enumerate() {
        pts.push((*x, i as f64 / n));
        pts.push((*x, (i + 1) as f64 / n));
    }
    pts.push((x_range.1, 1.0));
    chart.draw_series(LineSeries::new(pts, BAR_COLOR.stroke_width(2)))?;
    let f = ("sans-serif", 14).into_font();
    for (name, q, x) in [
        ("p50", 0.5, stats.p50),
        ("p90", 0.9, stats.p90),
        ("p99", 0.99, stats.p99),
    ] {
        chart.draw_series(std::iter::once(Circle::new((x, q), 4, PCT_COLOR.filled())))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{name} {x:.1} ms"),
            (x, q),
            f.clone()
                .color(&PCT_COLOR)
                .pos(Pos::new(HPos::Right, VPos::Bottom)),
        )))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(stats.mean, 0.0), (stats.mean, 1.02)],
        MEAN_COLOR.stroke_width(2),
    )))?;
    Ok(())
}

/// The overall distribution: histogram above, ECDF below.
pub struct Distribution<'a> {
    data: &'a ReportData,
}

impl<'a> Distribution<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        Distribution { data }
    }

    /// The RTTs (ms) of every answered transaction.
    pub fn values(&self) -> Vec<f64> {
        ms_of(self.data)
    }
}

impl Figure for Distribution<'_> {
    fn name(&self) -> &'static str {
        "distribution"
    }

    fn size(&self) -> (u32, u32) {
        (1100, 900)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let values = self.values();
        let stats = &self.data.summary.rtt_ms;
        let (top, bottom) = root.split_vertically(540);
        let b = bins(&values);
        let title = format!(
            "RTT distribution: {} answered transactions, {} bins of {:.1} ms (Freedman–Diaconis)",
            stats.count,
            b.counts.len(),
            b.width
        );
        histogram(&top, &title, &values, stats, false, None)?;
        let range = if b.counts.is_empty() {
            (0.0, 1.0)
        } else {
            let (a, _) = b.edges(0);
            let (_, z) = b.edges(b.counts.len() - 1);
            let pad = (z - a) * 0.04;
            ((a - pad).max(0.0), z + pad)
        };
        ecdf(&bottom, &values, stats, range)
    }
}

/// One histogram panel per (poller, receiver) pair, for the busiest
/// [`TOP_PAIRS`](crate::report::summary::TOP_PAIRS) pairs.
pub struct PerPair<'a> {
    data: &'a ReportData,
    shown: Vec<usize>,
}

impl<'a> PerPair<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        use crate::report::summary::{top_pairs, TOP_PAIRS};
        PerPair {
            data,
            shown: top_pairs(&data.summary.pairs, TOP_PAIRS),
        }
    }

    /// The x axis all panels share: every answered transaction of every pair.
    pub fn x_range(&self) -> (f64, f64) {
        x_range_of(&bins(&ms_of(self.data)))
    }

    fn grid(&self) -> (usize, usize) {
        let n = self.shown.len().max(1);
        let cols = (n as f64).sqrt().ceil() as usize;
        (cols, n.div_ceil(cols))
    }
}

impl Figure for PerPair<'_> {
    fn name(&self) -> &'static str {
        "distribution-pairs"
    }

    fn size(&self) -> (u32, u32) {
        let (cols, rows) = self.grid();
        (cols as u32 * 420, rows as u32 * 300 + 40)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (cols, rows) = self.grid();
        let left_out = self.data.summary.pairs.len() - self.shown.len();
        let title = match left_out {
            0 => "RTT distribution per pair (ms): mean (red) ± sd, p50/p90/p99".to_owned(),
            n => format!(
                "RTT distribution per pair (ms): mean (red) ± sd, p50/p90/p99; the {} busiest pairs, {n} others not drawn",
                self.shown.len()
            ),
        };
        let root = root.titled(&title, ("sans-serif", 20))?;
        let panels = root.split_evenly((rows, cols));
        // One x scale for every panel: pairs are compared by where their bars sit.
        let x_range = self.x_range();
        let pair_of = self.data.pair_of();
        for (&i, panel) in self.shown.iter().zip(panels.iter()) {
            let Some(p) = self.data.summary.pairs.get(i) else {
                break;
            };
            let values = ms_of_pair(self.data, &pair_of, Some(i));
            let title = format!(
                "{}  n={} timeouts={}",
                self.data.pair_label(i),
                p.rtt_ms.count,
                p.counts.timeout
            );
            histogram(panel, &title, &values, &p.rtt_ms, true, Some(x_range))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_count_every_value_once() {
        let v: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 * 1.3)
            .collect();
        let b = bins(&v);
        assert_eq!(b.total(), 1000);
        assert!(b.counts.len() > 5 && b.counts.len() <= MAX_BINS);
        // FD: 2·IQR·n^(-1/3) = 2·649.35·0.1 ≈ 129.9 → ⌈1298.7/129.9⌉ = 10 bins.
        assert_eq!(b.counts.len(), 10);
        assert_eq!(bins(&[]).total(), 0);
        assert_eq!(bins(&[5.0, 5.0, 5.0]).counts, vec![3]);
        // IQR 0 → Sturges: 9 values → ⌈log2 9⌉ + 1 = 5 bins.
        let b = bins(&[1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 9.0]);
        assert_eq!(b.counts.len(), 5);
        assert_eq!(b.total(), 9);
        assert_eq!(b.counts[4], 1, "the maximum falls in the last bin");
    }
}
