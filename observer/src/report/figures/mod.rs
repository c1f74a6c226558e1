//! Figures: the study's pictures (RTT time series and distribution, the global view of
//! figure 3), the RTT matrix, presence timelines with each watcher's staleness, the
//! correlator overhead, and one self-contained HTML page holding them all.
//!
//! Every figure is drawn once, as SVG (plotters); the PNG (`--png`) is that SVG rendered
//! by resvg. Text is measured (plotters' `ab_glyph`) and rendered (resvg) with the
//! DejaVu Sans font shipped in `observer/assets/fonts`: no system font is needed.
//! Everything from the wire (peer names, IDs) goes through [`super::table::short_label`]
//! before it is drawn; the SVG backend escapes text, and `html.rs` escapes the page.
//!
//! Over 600 lines: the figures' shared data, colours and file writing.

pub mod distribution;
pub mod graph;
pub mod html;
pub mod matrix;
pub mod overhead;
pub mod presence;
pub mod timeseries;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::summary::{changes_out, Summary};
use crate::jxta::PeerId;
use crate::transaction::{
    Matcher, MatcherConfig, PeerKey, Presence, PresenceChange, Transaction, TxStatus,
};
use observer_core::engine::Analysis;

#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("drawing {figure}: {message}")]
    Draw {
        figure: &'static str,
        message: String,
    },
    #[error("PNG encoding: {0}")]
    Png(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The result type of a figure's drawing code, for any backend.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A picture drawn the same way on every backend.
pub trait Figure {
    /// File stem (`timeseries` → `timeseries.svg`).
    fn name(&self) -> &'static str;
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// Registers the shipped font for every family and style the figures use.
pub fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            for style in [FontStyle::Normal, FontStyle::Bold] {
                // The font is compiled in; it parses (checked by the tests).
                let _ = plotters::style::register_font(family, style, FONT);
            }
        }
    });
}

fn draw_err<E: std::fmt::Display>(figure: &'static str, e: E) -> FigureError {
    FigureError::Draw {
        figure,
        message: e.to_string(),
    }
}

/// The figure as an SVG document.
pub fn svg<F: Figure>(fig: &F) -> Result<String, FigureError> {
    register_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, fig.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(fig.name(), e))?;
        fig.draw(&root).map_err(|e| draw_err(fig.name(), e))?;
        root.present().map_err(|e| draw_err(fig.name(), e))?;
    }
    Ok(out)
}

/// The figure as a PNG image: its SVG rendered by resvg, so both files are one
/// drawing. (plotters' bitmap backend placed glyphs one by one and broke the text:
/// raised decimal points, lost spaces, uneven kerning.)
pub fn png<F: Figure>(fig: &F) -> Result<Vec<u8>, FigureError> {
    png_from_svg(fig.name(), &svg(fig)?)
}

/// The family every text of the figures is rendered in (the shipped font), whatever
/// the SVG asks for: the PNG must not depend on the fonts of the machine.
const FONT_FAMILY: &str = "DejaVu Sans";

fn font_db() -> std::sync::Arc<resvg::usvg::fontdb::Database> {
    static DB: std::sync::OnceLock<std::sync::Arc<resvg::usvg::fontdb::Database>> =
        std::sync::OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_serif_family(FONT_FAMILY);
        db.set_monospace_family(FONT_FAMILY);
        std::sync::Arc::new(db)
    })
    .clone()
}

/// Renders an SVG written by [`svg`] to PNG (RGBA, white background), at its own size.
pub fn png_from_svg(figure: &'static str, svg: &str) -> Result<Vec<u8>, FigureError> {
    use resvg::{tiny_skia, usvg};
    let opt = usvg::Options {
        font_family: FONT_FAMILY.to_string(),
        fontdb: font_db(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt).map_err(|e| draw_err(figure, e))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| draw_err(figure, "empty picture"))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| FigureError::Png(e.to_string()))
}

/// Options of `observer report`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Logarithmic RTT axis in the time series.
    pub log: bool,
    /// Also one distribution panel per (poller, receiver) pair (`distribution-pairs.svg`).
    pub per_pair: bool,
    /// PNG files next to the SVGs.
    pub png: bool,
}

/// One input as shown in the page's metadata.
#[derive(Clone, Debug, Default)]
pub struct InputMeta {
    pub name: String,
    pub format: String,
    pub frames: Option<u64>,
    pub bytes: u64,
    pub error: Option<String>,
}

/// What the page says about where the figures come from.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub inputs: Vec<InputMeta>,
    /// Capture duration (first to last frame); for a CSV, first PING to last stop.
    pub duration_ns: u64,
    pub packets: Option<u64>,
    pub flows: Option<u64>,
    pub jxta_messages: Option<u64>,
    /// Named counters of what went wrong (anomalies, decoding issues); zeros left out.
    pub anomalies: Vec<(String, u64)>,
    /// The command line that produced the report.
    pub command: String,
    /// The text report (`observer analyze` output), shown in the page.
    pub text_report: String,
}

/// Everything the figures are drawn from, whatever the input was.
pub struct ReportData {
    pub transactions: Vec<Transaction>,
    pub summary: Summary,
    /// The PING timeout in force (timeouts are drawn at this value).
    pub timeout_ns: u64,
    pub meta: Meta,
}

fn label(name: Option<&str>, id: &Option<PeerId>) -> String {
    match (name, id) {
        (Some(n), _) => n.to_owned(),
        (None, Some(id)) => id.as_str().to_owned(),
        (None, None) => "?".to_owned(),
    }
}

/// Presence rebuilt from transactions alone (a CSV): the `receiver_status` of every ok
/// transaction, in stop order, learned by its poller at its stop, exactly as the
/// matcher feeds presence when a PONG completes a transaction.
pub fn presence_from_transactions(txs: &[Transaction]) -> Vec<PresenceChange> {
    let mut ok: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.status == TxStatus::Ok && t.receiver_status.is_some() && t.stop.is_some())
        .collect();
    ok.sort_by_key(|t| t.stop);
    let mut p = Presence::default();
    for t in ok {
        let (Some(stop), Some(status)) = (t.stop, t.receiver_status) else {
            continue;
        };
        let key = PeerKey::new(t.receiver_id.as_ref(), t.receiver_name.as_deref());
        p.observe(
            stop,
            &key,
            t.receiver_id.as_ref(),
            t.receiver_name.as_deref(),
            status,
            t.poller_id.as_ref(),
            t.poller_name.as_deref(),
        );
    }
    p.changes().to_vec()
}

/// The anomalies proper (normal traffic such as relay sightings is left out), those
/// seen only.
fn anomaly_list(a: &crate::transaction::Anomalies) -> Vec<(String, u64)> {
    a.iter()
        .filter(|(c, n)| c.anomaly && *n > 0)
        .map(|(c, n)| (c.label.to_owned(), n))
        .collect()
}

/// The decoding anomalies the page lists (the counters declared `figures: true`), those
/// seen only. The groups go in the order the page has always listed them.
pub fn decoding_anomalies(r: &observer_core::engine::PipelineResult) -> Vec<(&'static str, u64)> {
    fn of<S: 'static>(
        group: impl Iterator<Item = (&'static observer_core::counters::Counter<S>, u64)>,
    ) -> impl Iterator<Item = (&'static str, u64)> {
        group
            .filter(|(c, n)| c.figures && *n > 0)
            .map(|(c, n)| (c.label, n))
    }
    of(r.flows.reassembly.iter())
        .chain(of(r.flows.iter()))
        .chain(of(r.packets.iter()))
        .chain(of(r.packets.reorder.iter()))
        .chain(of(r.jxta.iter()))
        .chain(of(r.jxta.http.iter()))
        .chain(of(r.jim.iter()))
        .collect()
}

impl ReportData {
    /// From the analysis of captures; its transactions move into the report (a copy of
    /// 150,000 of them was 60 MB).
    pub fn from_analysis(mut analysis: Analysis, timeout_ns: u64, command: &str) -> ReportData {
        let transactions = std::mem::take(&mut analysis.result.transactions);
        let analysis = &analysis;
        let r = &analysis.result;
        let summary = Summary::build(&transactions, &r.matcher, r.duration_ns());
        let mut anomalies = anomaly_list(&summary.anomalies);
        anomalies.extend(
            decoding_anomalies(r)
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n)),
        );
        let j = &r.jxta;
        let meta = Meta {
            inputs: analysis
                .inputs
                .iter()
                .map(|i| InputMeta {
                    name: i.name.clone(),
                    format: i.format.clone(),
                    frames: Some(i.frames),
                    bytes: i.bytes,
                    error: i.error.clone(),
                })
                .collect(),
            duration_ns: r.duration_ns(),
            packets: Some(r.packets.frames),
            flows: Some(r.flows.flows),
            jxta_messages: Some(j.messages_tcp + j.messages_udp),
            anomalies,
            command: command.to_owned(),
            text_report: super::render_analysis(&summary, analysis),
        };
        ReportData {
            transactions,
            summary,
            timeout_ns,
            meta,
        }
    }

    /// From transactions read from CSV files (`analyze --csv`). Presence is rebuilt
    /// from the transactions ([`presence_from_transactions`]); the timeout is the one the
    /// timeout rows show (`default_timeout_ns` when there is none).
    pub fn from_csv(
        transactions: Vec<Transaction>,
        inputs: Vec<InputMeta>,
        default_timeout_ns: u64,
        command: &str,
    ) -> ReportData {
        let first = transactions.iter().map(|t| t.start).min().unwrap_or(0);
        let last = transactions
            .iter()
            .map(|t| t.stop.unwrap_or(t.start))
            .max()
            .unwrap_or(0);
        let duration_ns = last.saturating_sub(first);
        let timeout_ns = transactions
            .iter()
            .filter(|t| t.status == TxStatus::Timeout)
            .filter_map(|t| t.stop.map(|s| s.saturating_sub(t.start)))
            .max()
            .unwrap_or(default_timeout_ns);
        let mut summary = Summary::build(
            &transactions,
            &Matcher::new(MatcherConfig::default()),
            duration_ns,
        );
        summary.presence.changes = changes_out(&presence_from_transactions(&transactions));
        let meta = Meta {
            inputs,
            duration_ns,
            anomalies: Vec::new(),
            command: command.to_owned(),
            text_report: super::table::render(&summary),
            ..Meta::default()
        };
        ReportData {
            transactions,
            summary,
            timeout_ns,
            meta,
        }
    }

    /// Time origin of every time axis: the first PING.
    pub fn t0(&self) -> u64 {
        self.transactions.iter().map(|t| t.start).min().unwrap_or(0)
    }

    /// End of every time axis: the last PING or PONG.
    pub fn t_end(&self) -> u64 {
        self.transactions
            .iter()
            .map(|t| t.stop.unwrap_or(t.start))
            .max()
            .unwrap_or(0)
    }

    /// For each transaction, the index of its pair in `summary.pairs`.
    pub fn pair_of(&self) -> Vec<Option<usize>> {
        let key = |id: &Option<Arc<str>>, label: &str| id.as_deref().unwrap_or(label).to_owned();
        let index: HashMap<(String, String), usize> = self
            .summary
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    (
                        key(&p.poller_id, &p.poller),
                        key(&p.receiver_id, &p.receiver),
                    ),
                    i,
                )
            })
            .collect();
        self.transactions
            .iter()
            .map(|t| {
                let pk = t
                    .poller_id
                    .as_ref()
                    .map_or_else(|| label(t.poller_name.as_deref(), &None), |i| i.to_string());
                let rk = t.receiver_id.as_ref().map_or_else(
                    || label(t.receiver_name.as_deref(), &None),
                    |i| i.to_string(),
                );
                index.get(&(pk, rk)).copied()
            })
            .collect()
    }

    /// `poller → receiver` for pair `i`, safe to draw.
    pub fn pair_label(&self, i: usize) -> String {
        let p = &self.summary.pairs[i];
        format!(
            "{} → {}",
            super::table::short_label(&p.poller),
            super::table::short_label(&p.receiver)
        )
    }
}

/// Twenty distinguishable colours (Tableau 20 order: strong ones first).
const PALETTE: [(u8, u8, u8); 20] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (57, 59, 121),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
    (99, 121, 57),
];

/// Colour of series `i` (pairs, peers). Red is kept for timeouts.
pub fn series_color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// How the SVG backend writes a colour (`#1F77B4`).
pub fn svg_color(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Colour of timeouts everywhere.
pub const TIMEOUT_COLOR: RGBColor = RGBColor(214, 39, 40);

/// `1767225600000000000` → `2026-01-01 00:00:00 UTC`.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A time-axis tick (seconds): whole seconds, tenths below 10 s.
pub(crate) fn seconds_label(v: &f64) -> String {
    if v.abs() < 10.0 && v.fract().abs() > 1e-9 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Draws a legend (coloured swatch, text) down `area` from its top-left corner.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(String, LegendMark)],
) -> DrawResult<DB> {
    let font = ("sans-serif", 14).into_font();
    area.draw(&Text::new(
        title.to_owned(),
        (8, 10),
        ("sans-serif", 15).into_font().style(FontStyle::Bold),
    ))?;
    for (i, (text, mark)) in entries.iter().enumerate() {
        let y = 36 + 22 * i as i32;
        match *mark {
            LegendMark::Box(c) => {
                area.draw(&Rectangle::new([(10, y - 6), (24, y + 6)], c.filled()))?;
            }
            LegendMark::Cross(c) => {
                area.draw(&Cross::new((17, y), 5, c.stroke_width(2)))?;
            }
            LegendMark::Triangle(c) => {
                area.draw(&TriangleMarker::new((17, y), 6, c.filled()))?;
            }
            LegendMark::Line(c) => {
                area.draw(&Rectangle::new([(8, y - 1), (26, y + 1)], c.filled()))?;
            }
            LegendMark::Ring(c) => {
                area.draw(&Circle::new((17, y), 6, c.stroke_width(2)))?;
            }
        }
        area.draw(&Text::new(
            text.clone(),
            (32, y),
            font.clone()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

/// What a legend entry shows next to its text.
#[derive(Clone, Copy, Debug)]
pub enum LegendMark {
    Box(RGBColor),
    Cross(RGBColor),
    Triangle(RGBColor),
    Line(RGBColor),
    Ring(RGBColor),
}

/// The files `write_all` produced.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FigureError> {
    std::fs::write(path, bytes).map_err(|source| FigureError::Io {
        path: path.to_owned(),
        source,
    })
}

fn emit<F: Figure>(
    fig: &F,
    dir: &Path,
    opts: &Options,
    out: &mut Written,
    svgs: &mut Vec<(&'static str, String)>,
) -> Result<(), FigureError> {
    let text = svg(fig)?;
    let path = dir.join(format!("{}.svg", fig.name()));
    write_file(&path, text.as_bytes())?;
    out.files.push(path);
    if opts.png {
        let path = dir.join(format!("{}.png", fig.name()));
        write_file(&path, &png(fig)?)?;
        out.files.push(path);
    }
    svgs.push((fig.name(), text));
    Ok(())
}

/// Writes every figure and `index.html` into `dir` (created if needed).
pub fn write_all(data: &ReportData, dir: &Path, opts: &Options) -> Result<Written, FigureError> {
    std::fs::create_dir_all(dir).map_err(|source| FigureError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut out = Written::default();
    let mut svgs = Vec::new();
    emit(
        &timeseries::TimeSeries::new(data, opts.log),
        dir,
        opts,
        &mut out,
        &mut svgs,
    )?;
    emit(
        &distribution::Distribution::new(data),
        dir,
        opts,
        &mut out,
        &mut svgs,
    )?;
    if opts.per_pair {
        emit(
            &distribution::PerPair::new(data),
            dir,
            opts,
            &mut out,
            &mut svgs,
        )?;
    }
    emit(
        &matrix::MatrixFigure::new(data),
        dir,
        opts,
        &mut out,
        &mut svgs,
    )?;
    emit(&graph::Graph::new(data), dir, opts, &mut out, &mut svgs)?;
    emit(
        &presence::PresenceFigure::new(data),
        dir,
        opts,
        &mut out,
        &mut svgs,
    )?;
    emit(
        &overhead::Overhead::new(data),
        dir,
        opts,
        &mut out,
        &mut svgs,
    )?;
    let page = html::page(data, &svgs);
    let path = dir.join("index.html");
    write_file(&path, page.as_bytes())?;
    out.files.push(path);
    Ok(out)
}
