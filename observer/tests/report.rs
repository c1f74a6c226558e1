//! `observer report`: every figure drawn from the sample captures, checked by content
//! (series, bars, cells, edges, presence changes), the same figures from the
//! transactions CSV, and the HTML page opened in headless Chromium.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use observer::report::figures::{
    self, distribution, graph, matrix, overhead, presence, timeseries, Figure, Options, ReportData,
};
use observer::report::{read_transactions_csv, TransactionCsvWriter};
use observer::runtime::{self, PipelineConfig};

const TIMEOUT_NS: u64 = 10_000_000_000;

fn from_capture(name: &str) -> ReportData {
    let analysis = runtime::analyze(&[common::capture(name)], PipelineConfig::default(), false);
    assert!(!analysis.damaged());
    ReportData::from_analysis(analysis, TIMEOUT_NS, "observer report test")
}

/// As `analyze --csv` writes it: with the cause columns.
fn csv_bytes(data: &ReportData) -> Vec<u8> {
    let mut w = TransactionCsvWriter::with_cause_columns(Vec::new()).unwrap();
    for t in &data.transactions {
        w.write(t).unwrap();
    }
    w.into_inner().expect("csv")
}

fn from_csv(bytes: &[u8]) -> ReportData {
    let txs = read_transactions_csv(bytes).unwrap();
    ReportData::from_csv(txs, Vec::new(), TIMEOUT_NS, "observer report test")
}

fn svg<F: Figure>(f: &F) -> String {
    figures::svg(f).unwrap()
}

/// Elements `<tag ...>` whose attribute `attr` has `value`.
fn count_tags(svg: &str, tag: &str, attr: &str, value: &str) -> usize {
    let open = format!("<{tag} ");
    let want = format!("{attr}=\"{value}\"");
    svg.split(open.as_str())
        .skip(1)
        .filter(|rest| {
            let end = rest.find('>').unwrap_or(rest.len());
            rest[..end].contains(&want)
        })
        .count()
}

/// The text elements' contents.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text ")
        .skip(1)
        .filter_map(|rest| {
            let body = &rest[rest.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_owned())
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[test]
fn timeseries_has_one_series_per_pair() {
    let d = from_capture("four-peers.pcap");
    let s = &d.summary;
    assert_eq!(s.pairs.len(), 12, "4 peers polling each other");
    let fig = timeseries::TimeSeries::new(&d, false);
    let all = fig.series();
    assert_eq!(all.len(), 12);
    let points: usize = all.iter().map(|s| s.points.len()).sum();
    assert_eq!(points as u64, s.transactions.ok);
    // Twelve pairs are a tangle: the busiest get lines, the rest one band.
    let (series, others) = fig.split();
    assert_eq!(series.len(), timeseries::MAX_DRAWN_PAIRS);
    let others = others.expect("an others band beyond the drawn pairs");
    assert_eq!(others.pairs, all.len() - series.len());
    let drawn: usize = series.iter().map(|s| s.points.len()).sum();
    assert_eq!(
        drawn + others.points,
        points,
        "every answer in a line or the band"
    );
    let least_drawn = series.iter().map(|s| s.points.len()).min().unwrap();
    for sr in all
        .iter()
        .filter(|a| !series.iter().any(|s| s.pair == a.pair))
    {
        assert!(
            sr.points.len() <= least_drawn,
            "the busiest pairs are drawn"
        );
    }
    let text = svg(&fig);
    let labels = texts(&text);
    assert!(
        labels.contains(&format!(
            "others: {} pairs ({})",
            others.pairs, others.points
        )),
        "{labels:?}"
    );
    let grey = figures::svg_color(timeseries::OTHERS_COLOR);
    assert_eq!(count_tags(&text, "polygon", "fill", &grey), 1, "one band");
    for sr in all
        .iter()
        .filter(|a| !series.iter().any(|s| s.pair == a.pair))
    {
        let c = figures::svg_color(figures::series_color(sr.pair));
        assert_eq!(count_tags(&text, "polyline", "stroke", &c), 0);
    }
    for sr in &series {
        let c = figures::svg_color(figures::series_color(sr.pair));
        assert_eq!(
            count_tags(&text, "polyline", "stroke", &c),
            1,
            "one line for pair {}",
            d.pair_label(sr.pair)
        );
        let want = format!("{} ({})", d.pair_label(sr.pair), sr.points.len());
        assert_eq!(
            labels.iter().filter(|l| unescape(l) == want).count(),
            1,
            "legend entry {want}"
        );
        assert_eq!(
            count_tags(&text, "circle", "fill", &c),
            sr.points.len(),
            "one dot per transaction of {want}"
        );
    }
    // Timeouts: red crosses (two lines each), with their legend entry.
    let timeouts = s.transactions.timeout as usize;
    assert_eq!(timeouts, 6);
    let red = figures::svg_color(figures::TIMEOUT_COLOR);
    assert_eq!(
        count_tags(&text, "line", "stroke", &red),
        2 * (timeouts + 1)
    );
    assert!(labels.contains(&format!("timeout ({timeouts})")));
    assert!(labels.contains(&format!("open at end ({})", s.transactions.open)));
    // Log scale draws the same series.
    let log = svg(&timeseries::TimeSeries::new(&d, true));
    for sr in &series {
        let c = figures::svg_color(figures::series_color(sr.pair));
        assert_eq!(count_tags(&log, "polyline", "stroke", &c), 1);
    }
}

/// Peaks with a cause are ringed in its colour, one legend entry per cause, and
/// every tail transaction with a cause is ringed.
#[test]
fn timeseries_rings_peaks_by_cause() {
    use observer::transaction::cause::Flag;
    let d = from_capture("four-peers.pcap");
    let tail = d.summary.tail.clone().expect("a tail");
    let fig = timeseries::TimeSeries::new(&d, false);
    let peaks = fig.peaks();
    assert_eq!(peaks.len() as u64, tail.count - tail.none, "{tail:?}");
    assert!(!peaks.is_empty(), "the sample's tail has causes: {tail:?}");
    let text = svg(&fig);
    let labels = texts(&text);
    for f in Flag::ALL {
        let n = peaks.iter().filter(|p| p.2 == f).count();
        assert!(n as u64 <= tail.by_cause.get(f.as_str()).copied().unwrap_or(0));
        let entry = format!("peak ≥ p90: {} ({n})", f.as_str());
        assert_eq!(labels.contains(&entry), n > 0, "{entry}: {labels:?}");
        let colour = figures::svg_color(timeseries::cause_color(f));
        // The rings, plus the legend's.
        assert_eq!(
            count_tags(&text, "circle", "stroke", &colour),
            if n > 0 { n + 1 } else { 0 },
            "{f:?}"
        );
    }
}

#[test]
fn histogram_counts_every_answered_transaction() {
    let d = from_capture("four-peers.pcap");
    let fig = distribution::Distribution::new(&d);
    let values = fig.values();
    assert_eq!(values.len() as u64, d.summary.transactions.ok);
    let bins = distribution::bins(&values);
    assert_eq!(bins.total(), d.summary.transactions.ok);
    let nonempty = bins.counts.iter().filter(|c| **c > 0).count();
    let text = svg(&fig);
    let bar = figures::svg_color(distribution::BAR_COLOR);
    assert_eq!(count_tags(&text, "rect", "fill", &bar), nonempty);
    let st = &d.summary.rtt_ms;
    let labels: Vec<String> = texts(&text).iter().map(|t| unescape(t)).collect();
    let has = |want: String| {
        assert!(
            labels.iter().any(|l| l == &want),
            "{want:?} not in {labels:?}"
        )
    };
    has(format!("mean {:.1} ± sd {:.1}", st.mean, st.sd));
    has(format!("p50 {:.1}", st.p50));
    has(format!("p90 {:.1}", st.p90));
    has(format!("p99 {:.1}", st.p99));
    has(format!("p99 {:.1} ms", st.p99));
    // Per pair: one panel per pair, each panel's bars counting that pair.
    let per = svg(&distribution::PerPair::new(&d));
    let per_labels: Vec<String> = texts(&per).iter().map(|t| unescape(t)).collect();
    for (i, p) in d.summary.pairs.iter().enumerate() {
        let title = format!(
            "{}  n={} timeouts={}",
            d.pair_label(i),
            p.rtt_ms.count,
            p.counts.timeout
        );
        assert!(per_labels.contains(&title), "{title}");
    }
}

#[test]
fn matrix_cells_hold_the_summary_means() {
    let d = from_capture("four-peers.pcap");
    let text = svg(&matrix::MatrixFigure::new(&d));
    let labels: Vec<String> = texts(&text).iter().map(|t| unescape(t)).collect();
    let means: Vec<&String> = labels
        .iter()
        .filter(|l| l.starts_with("mean ") && *l != "mean ms")
        .collect();
    assert_eq!(means.len(), 12);
    for p in &d.summary.pairs {
        let want = format!("mean {:.1} ms", p.rtt_ms.mean);
        assert_eq!(matrix::mean_text(p.rtt_ms.mean), want);
        assert!(
            labels.contains(&want),
            "{want} for {}→{}",
            p.poller,
            p.receiver
        );
        assert!(labels.contains(&format!("p90 {:.1} ms", p.rtt_ms.p90)));
    }
    // Every pair's mean matches the summary matrix.
    for (r, row) in d.summary.matrix.mean_ms.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            if let Some(v) = v {
                let p = d
                    .summary
                    .pairs
                    .iter()
                    .find(|p| {
                        *p.poller == *d.summary.matrix.pollers[r]
                            && *p.receiver == *d.summary.matrix.receivers[c]
                    })
                    .unwrap();
                assert_eq!(p.rtt_ms.mean, *v);
            }
        }
    }
    // Timeouts counted: the three pairs towards carol have 2 each.
    assert_eq!(labels.iter().filter(|l| *l == "2 timeouts").count(), 3);
}

#[test]
fn graph_has_one_edge_per_pair() {
    let d = from_capture("four-peers.pcap");
    let g = graph::Graph::new(&d);
    assert_eq!(g.peers(), vec!["alice", "bob", "carol", "dave"]);
    let text = svg(&g);
    let edge = figures::svg_color(graph::EDGE_COLOR);
    assert_eq!(
        count_tags(&text, "polygon", "fill", &edge),
        12 + g.legend_means().len(),
        "one arrowhead per pair and per width-legend sample"
    );
    assert_eq!(text.matches("<polyline ").count(), 12, "one shaft per pair");
    let labels = texts(&text);
    for p in &d.summary.pairs {
        assert!(labels.contains(&graph::edge_text(p.rtt_ms.mean)));
    }
    // Widths follow the mean RTT: the slowest pair has the widest arrow.
    let widths: Vec<u32> = text
        .split("<polyline ")
        .skip(1)
        .map(|r| {
            let w = r.split("stroke-width=\"").nth(1).unwrap();
            w[..w.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert!(widths.iter().max() > widths.iter().min());
}

/// Distance from point `p` to the segment a–b, and where along it (0..1) `p` projects.
fn to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    let q = (a.0 + dx * t, a.1 + dy * t);
    (((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt(), t)
}

/// Each label sits beside its own arrow, clear of every other arrow and label, and the
/// SVG draws it there; widths grow with the mean RTT over the whole scale.
#[test]
fn graph_labels_sit_on_their_arrows_and_widths_follow_rtt() {
    let d = from_capture("four-peers.pcap");
    let g = graph::Graph::new(&d);
    let edges = g.edges();
    assert_eq!(edges.len(), d.summary.pairs.len());
    let text = svg(&g);
    for (k, e) in edges.iter().enumerate() {
        let b = e.label_box;
        // Beside the shaft's middle part, on its own side, just off its edge.
        let (dist, t) = to_segment(b.center(), e.start, e.tip);
        assert!((0.1..=0.9).contains(&t), "{}: label at {t} along", e.label);
        let side =
            (b.center().0 - e.start.0) * e.normal.0 + (b.center().1 - e.start.1) * e.normal.1;
        assert!(side > e.width / 2.0, "{}: label on the wrong side", e.label);
        let own = b.distance_to_segment(e.start, e.tip);
        assert!(
            own >= e.width / 2.0 && own <= e.width / 2.0 + graph::LABEL_GAP + 2.0,
            "{}: {own} px from its shaft (width {})",
            e.label,
            e.width
        );
        assert!(dist < 200.0);
        // Nearer to its own arrow than to any other, and clear of the other shafts.
        for (_, o) in edges.iter().enumerate().filter(|&(j, _)| j != k) {
            let other = b.distance_to_segment(o.start, o.tip);
            assert!(
                other > own && other >= o.width / 2.0,
                "{} is {other} px from the arrow labelled {} ({own} px from its own)",
                e.label,
                o.label
            );
            assert!(
                !b.overlaps(&o.label_box),
                "{} overlaps {}",
                e.label,
                o.label
            );
        }
        // Drawn where the layout put it.
        let at = format!(
            "x=\"{}\" y=\"{}\"",
            e.label_at.0.round() as i32,
            e.label_at.1.round() as i32
        );
        let drawn = text
            .split("<text ")
            .filter(|t| t.starts_with(&at))
            .any(|t| texts(&format!("<text {t}")).first() == Some(&e.label));
        assert!(drawn, "{} not drawn at {at}", e.label);
    }
    // Widths are monotonic in the mean and span the whole scale.
    let mut by_mean: Vec<(f64, f64)> = edges
        .iter()
        .filter_map(|e| e.mean_ms.map(|m| (m, e.width)))
        .collect();
    by_mean.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in by_mean.windows(2) {
        assert!(w[0].1 <= w[1].1, "{w:?}: a slower pair is thinner");
        if w[1].0 > w[0].0 + 1.0 {
            assert!(w[0].1 < w[1].1, "{w:?}: different means, same width");
        }
    }
    let (thin, wide) = (by_mean[0].1, by_mean[by_mean.len() - 1].1);
    assert_eq!((thin, wide), (graph::W_MIN, graph::W_MAX));
    // The drawn shafts: their stroke widths in pair order follow the layout's.
    let strokes: Vec<u32> = text
        .split("<polyline ")
        .skip(1)
        .map(|r| {
            let w = r.split("stroke-width=\"").nth(1).unwrap();
            w[..w.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    let want: Vec<u32> = edges.iter().map(|e| e.width.round() as u32).collect();
    assert_eq!(strokes, want);
    // The legend states the scale's two ends.
    let labels = texts(&text);
    let (lo, hi) = g.mean_range().unwrap();
    assert!(labels.iter().any(|l| unescape(l).contains(&format!(
        "at the smallest pair mean ({})",
        graph::edge_text(lo)
    )) && unescape(l)
        .contains(&format!("at the largest ({})", graph::edge_text(hi)))));
    for m in g.legend_means() {
        assert!(labels.contains(&graph::edge_text(m)), "legend sample {m}");
    }
}

#[test]
fn presence_shows_bobs_changes_and_who_learned_them() {
    let d = from_capture("four-peers.pcap");
    let fig = presence::PresenceFigure::new(&d);
    let rows = fig.rows();
    let names: Vec<&str> = rows.iter().map(|r| r.peer.as_str()).collect();
    assert_eq!(names, vec!["alice", "bob", "carol", "dave"]);
    let bob: Vec<&str> = rows[1].bands.iter().map(|b| b.2).collect();
    assert_eq!(
        bob,
        vec!["unknown", "online", "busy", "away", "offline", "online"]
    );
    let changes = fig.real_changes();
    let text = svg(&fig);
    let labels = texts(&text);
    for (c, want) in changes.iter().zip(["busy", "away", "offline", "online"]) {
        assert_eq!(c.peer, "bob");
        assert_eq!(c.to, want);
        assert!(labels.contains(&format!("bob: {want}")));
        assert!(!c.learned_by.is_empty());
        assert!(c.learned_by.iter().all(|l| l.poller != "bob"));
    }
    assert_eq!(changes.len(), 4);
    // One dot per (change, watcher who learned it).
    let dots: usize = changes.iter().map(|c| c.learned_by.len()).sum();
    assert_eq!(text.matches("<circle ").count(), dots);
}

/// The staleness panel: buddies' dots in colours no state uses, and a delay axis that
/// the data fills (labels above the longest delay, nothing far past it).
#[test]
fn staleness_colours_differ_from_states_and_axis_fits_the_delays() {
    let d = from_capture("four-peers.pcap");
    let fig = presence::PresenceFigure::new(&d);
    let dist = |a: plotters::style::RGBColor, b: plotters::style::RGBColor| {
        let sq = |x: u8, y: u8| (x as f64 - y as f64).powi(2);
        (sq(a.0, b.0) + sq(a.1, b.1) + sq(a.2, b.2)).sqrt()
    };
    let watchers = fig.watchers();
    assert!(watchers.len() >= 2);
    let learners: Vec<_> = (0..watchers.len()).map(presence::learner_color).collect();
    for (i, &l) in learners.iter().enumerate() {
        for s in presence::STATES {
            let c = presence::state_color(s);
            assert!(
                dist(l, c) > 80.0,
                "learner {i} {l:?} looks like state {s} {c:?}"
            );
        }
        assert!(
            dist(l, figures::TIMEOUT_COLOR) > 80.0,
            "learner {i} looks like a timeout"
        );
        for &o in &learners[..i] {
            assert!(dist(l, o) > 60.0, "two learners look alike: {l:?} {o:?}");
        }
    }
    let text = svg(&fig);
    let fills: Vec<String> = text
        .split("<circle ")
        .skip(1)
        .map(|r| {
            let f = r.split("fill=\"").nth(1).unwrap();
            f[..f.find('"').unwrap()].to_owned()
        })
        .collect();
    assert!(!fills.is_empty());
    let learner_fills: Vec<String> = learners.iter().map(|&c| figures::svg_color(c)).collect();
    for f in &fills {
        assert!(
            learner_fills.contains(f),
            "dot coloured {f}, not a learner colour"
        );
    }
    // The longest delay, from the summary, and the axis above it.
    let longest = fig
        .real_changes()
        .iter()
        .flat_map(|c| c.learned_by.iter().map(|l| l.delay_ms / 1e3))
        .fold(0.0, f64::max);
    assert!(longest > 0.0);
    assert_eq!(fig.max_delay_s(), longest);
    let top = fig.delay_axis_max_s();
    assert!(
        longest < top && longest / top >= 0.7,
        "longest delay {longest} s on an axis to {top} s"
    );
}

#[test]
fn overhead_plots_every_ping_and_pong() {
    let d = from_capture("four-peers.pcap");
    let fig = overhead::Overhead::new(&d);
    let (ping, pong) = fig.points();
    assert_eq!(ping.len() as u64, d.summary.transactions.total);
    assert_eq!(pong.len() as u64, d.summary.transactions.ok);
    // From a capture: PING and PONG apart, as the decoder measured them (not halves
    // of a transaction's total).
    let o = &d.summary.overhead;
    let bars = fig.bars();
    let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["PING", "PONG"]);
    assert_eq!(Some(bars[0].bytes_mean), o.correlator_bytes_per_ping_mean);
    assert_eq!(Some(bars[1].bytes_mean), o.correlator_bytes_per_pong_mean);
    assert_eq!(Some(bars[0].pct_framed), o.correlator_pct_of_ping_framed);
    assert_eq!(bars[1].pct_message, o.correlator_pct_of_pong_message);
    assert_eq!(bars[0].pct_document, o.correlator_pct_of_ping_document);
    // The JIM document's size is the element that carries it, as `messages` lists it.
    let cfg = PipelineConfig {
        record_messages: true,
        ..PipelineConfig::default()
    };
    let a = runtime::analyze(&[common::capture("four-peers.pcap")], cfg, false);
    for (kind, mean) in [
        ("PING", o.ping_document_bytes_mean),
        ("PONG", o.pong_document_bytes_mean),
    ] {
        let sizes: Vec<u64> = a
            .result
            .messages
            .iter()
            .filter(|m| m.kind == kind)
            .filter_map(|m| m.elements.iter().find(|e| e.namespace != "jxta"))
            .map(|e| e.length)
            .collect();
        assert!(!sizes.is_empty(), "{kind}");
        let want = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64;
        let got = mean.expect("document size");
        assert!((got - want).abs() < 1e-9, "{kind}: {got} vs {want}");
    }
    let doc_pct = o.correlator_pct_of_ping_document.expect("share");
    assert!(
        doc_pct > o.correlator_pct_of_ping_message.expect("share"),
        "the document is smaller than the message that carries it"
    );
    let text = svg(&fig);
    let texts: Vec<String> = texts(&text).iter().map(|t| unescape(t)).collect();
    let study = &o.study;
    for want in [
        format!("study: ≤ {} B", study.max_correlator_bytes_per_message),
        format!("study: ~{:.0} %", study.correlator_pct_of_ping),
        format!(
            "{:.1} B (max {})",
            bars[0].bytes_mean, o.correlator_bytes_per_ping_max
        ),
        format!("{:.1} % framed", bars[1].pct_framed),
        format!("{doc_pct:.1} % JIM"),
    ] {
        assert!(texts.contains(&want), "{want:?} in {texts:?}");
    }
    // From a CSV: one PING + PONG bar, from the transactions.
    let csv = from_csv(&csv_bytes(&d));
    let bars = overhead::Overhead::new(&csv).bars();
    assert_eq!(bars.len(), 1);
    assert_eq!(bars[0].label, "PING + PONG");
    let with: Vec<u64> = d
        .transactions
        .iter()
        .map(|t| t.correlator_overhead_bytes)
        .filter(|b| *b > 0)
        .collect();
    let mean = with.iter().sum::<u64>() as f64 / with.len() as f64;
    assert!((bars[0].bytes_mean - mean).abs() < 1e-9);
}

#[test]
fn csv_gives_the_same_figures() {
    for name in ["four-peers.pcap", "two-peers.pcap", "relayed.pcap"] {
        let cap = from_capture(name);
        let csv = from_csv(&csv_bytes(&cap));
        assert_eq!(cap.summary.pairs, csv.summary.pairs, "{name}");
        assert_eq!(cap.timeout_ns, csv.timeout_ns);
        assert_eq!(
            cap.summary.presence.changes, csv.summary.presence.changes,
            "{name}: presence rebuilt from the CSV"
        );
        assert_eq!(
            svg(&timeseries::TimeSeries::new(&cap, false)),
            svg(&timeseries::TimeSeries::new(&csv, false)),
            "{name}"
        );
        assert_eq!(
            svg(&distribution::Distribution::new(&cap)),
            svg(&distribution::Distribution::new(&csv))
        );
        assert_eq!(
            svg(&matrix::MatrixFigure::new(&cap)),
            svg(&matrix::MatrixFigure::new(&csv))
        );
        assert_eq!(svg(&graph::Graph::new(&cap)), svg(&graph::Graph::new(&csv)));
        assert_eq!(
            svg(&presence::PresenceFigure::new(&cap)),
            svg(&presence::PresenceFigure::new(&csv))
        );
        assert_eq!(
            overhead::Overhead::new(&cap).points(),
            overhead::Overhead::new(&csv).points()
        );
    }
}

fn run_report(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("report")
        .args(args)
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "observer report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const FIGURES: [&str; 7] = [
    "timeseries",
    "distribution",
    "distribution-pairs",
    "matrix",
    "graph",
    "presence",
    "overhead",
];

/// `observer report` on the capture and on its `analyze --csv` output.
fn cli_reports() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = common::capture("four-peers.pcap");
    let csv = tmp.path().join("tx.csv");
    let st = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["analyze", "--no-progress", "--csv"])
        .arg(&csv)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(st.status.success());
    let a = tmp.path().join("from-pcap");
    let b = tmp.path().join("from-csv");
    let listed = run_report(&[
        pcap.to_str().unwrap(),
        "-o",
        a.to_str().unwrap(),
        "--png",
        "--per-pair",
    ]);
    for f in FIGURES {
        assert!(listed.contains(&format!("{f}.svg")), "{listed}");
        assert!(listed.contains(&format!("{f}.png")), "{listed}");
        let png = std::fs::read(a.join(format!("{f}.png"))).unwrap();
        assert!(distinct_colours(&png) > 8, "{f}.png has content");
    }
    // A CSV is recognised by content too, whatever its name.
    let renamed = tmp.path().join("transactions.txt");
    std::fs::copy(&csv, &renamed).unwrap();
    run_report(&[
        renamed.to_str().unwrap(),
        "-o",
        b.to_str().unwrap(),
        "--per-pair",
    ]);
    (tmp, a, b)
}

#[test]
fn cli_report_from_capture_and_from_csv_agree() {
    let (_tmp, a, b) = cli_reports();
    for f in ["timeseries", "distribution", "matrix", "graph", "presence"] {
        let x = std::fs::read_to_string(a.join(format!("{f}.svg"))).unwrap();
        let y = std::fs::read_to_string(b.join(format!("{f}.svg"))).unwrap();
        assert_eq!(x, y, "{f}.svg differs between capture and CSV");
    }
    let html = std::fs::read_to_string(a.join("index.html")).unwrap();
    check_html(&html);
    // The causes per pair, the same from the CSV's cause columns as from the capture.
    let causes = |html: &str| -> String {
        let at = html
            .find("<section id=\"causes\">")
            .expect("causes section");
        html[at..at + html[at..].find("</section>").unwrap()].to_owned()
    };
    let from_csv = std::fs::read_to_string(b.join("index.html")).unwrap();
    assert_eq!(causes(&html), causes(&from_csv));
    assert!(causes(&html).contains("<th>conn</th>"), "{}", causes(&html));
    assert!(html.contains("four-peers.pcap"));
    assert!(html.contains("569 frames"), "capture metadata");
    assert!(html.contains("observer report"), "the command line");
    assert!(
        html.contains("PING/PONG transactions (RTT in ms)"),
        "summary table"
    );
}

/// Self-contained: every figure inline, nothing fetched.
fn check_html(html: &str) {
    for f in FIGURES {
        let at = html
            .find(&format!("<figure id=\"fig-{f}\">"))
            .unwrap_or_else(|| panic!("figure {f}"));
        let end = at + html[at..].find("</figure>").unwrap();
        assert!(html[at..end].contains("<svg"), "{f} inlined");
    }
    for bad in [
        " src=\"",
        "<link",
        "<script",
        "url(",
        "@import",
        "href=\"http",
    ] {
        assert!(!html.contains(bad), "{bad} in the page");
    }
    for (i, _) in html.match_indices("http") {
        assert!(
            html[i..].starts_with("http://www.w3.org/"),
            "external URL at {}",
            &html[i..i + 40]
        );
    }
}

#[test]
fn wire_text_is_escaped_in_the_page() {
    let d = from_capture("two-peers.pcap");
    let mut txs = d.transactions.clone();
    for t in &mut txs {
        t.poller_name = Some("<script>alert(1)</script>".into());
        t.receiver_name = Some("a&b\"<img src=x>".into());
    }
    let data = ReportData::from_csv(txs, Vec::new(), TIMEOUT_NS, "observer report '<x>'");
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        per_pair: true,
        ..Options::default()
    };
    figures::write_all(&data, tmp.path(), &opts).unwrap();
    let html = std::fs::read_to_string(tmp.path().join("index.html")).unwrap();
    assert!(!html.contains("<script"), "names escaped");
    assert!(!html.contains("<img"));
    assert!(!html.contains("<x>"));
    assert!(html.contains("&lt;script&gt;"));
    check_html(&html);
}

#[test]
fn empty_input_still_gives_every_figure() {
    let data = ReportData::from_csv(Vec::new(), Vec::new(), TIMEOUT_NS, "observer report");
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        per_pair: true,
        png: true,
        log: true,
    };
    let written = figures::write_all(&data, tmp.path(), &opts).unwrap();
    assert_eq!(written.files.len(), 2 * FIGURES.len() + 1);
    let html = std::fs::read_to_string(tmp.path().join("index.html")).unwrap();
    check_html(&html);
}

fn distinct_colours(png_bytes: &[u8]) -> usize {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let ch = info.color_type.samples();
    let mut seen = std::collections::HashSet::new();
    for px in buf[..info.buffer_size()].chunks(ch) {
        seen.insert(px[..3.min(ch)].to_vec());
        if seen.len() > 1000 {
            break;
        }
    }
    seen.len()
}

fn chromium(page: &Path, extra: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

#[test]
fn index_html_renders_in_headless_chromium() {
    if !common::have(&[common::Need::Tool("chromium")]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = from_capture("four-peers.pcap");
    let opts = Options {
        per_pair: true,
        ..Options::default()
    };
    figures::write_all(&d, tmp.path(), &opts).unwrap();
    let page = tmp.path().join("index.html").canonicalize().unwrap();
    let shot = tmp.path().join("shot.png");
    let out = chromium(&page, &[&format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    let colours = distinct_colours(&png);
    assert!(colours > 50, "screenshot looks blank: {colours} colours");

    let out = chromium(&page, &["--dump-dom"]);
    assert!(out.status.success());
    let dom = String::from_utf8_lossy(&out.stdout);
    for f in FIGURES {
        let at = dom
            .find(&format!("id=\"fig-{f}\""))
            .unwrap_or_else(|| panic!("figure {f} in the DOM"));
        let end = at + dom[at..].find("</figure>").unwrap();
        let fig = &dom[at..end];
        assert!(fig.contains("<svg"), "{f}: svg loaded");
        assert!(fig.contains("<text"), "{f}: svg has its text");
    }
    assert!(dom.contains("PING/PONG transactions (RTT in ms)"));
}

/// A PNG as a grid of darkness (0 white .. 1 black) averaged over `block`-pixel
/// squares, with its size in pixels.
fn darkness(png_bytes: &[u8], block: usize) -> ((usize, usize), Vec<Vec<f64>>) {
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let ch = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut grid = vec![vec![0.0; w.div_ceil(block)]; h.div_ceil(block)];
    for y in 0..h {
        for x in 0..w {
            let px = &buf[(y * w + x) * ch..][..ch];
            let lum = if ch >= 3 {
                (px[0] as f64 + px[1] as f64 + px[2] as f64) / 3.0
            } else {
                px[0] as f64
            };
            grid[y / block][x / block] += (255.0 - lum) / 255.0 / (block * block) as f64;
        }
    }
    ((w, h), grid)
}

fn report_pngs(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let d = from_capture("four-peers.pcap");
    let opts = Options {
        per_pair: true,
        png: true,
        ..Options::default()
    };
    figures::write_all(&d, dir, &opts).unwrap();
    FIGURES
        .iter()
        .map(|f| {
            let svg = std::fs::read_to_string(dir.join(format!("{f}.svg"))).unwrap();
            let png = std::fs::read(dir.join(format!("{f}.png"))).unwrap();
            (f.to_string(), svg, png)
        })
        .collect()
}

fn without_text(svg: &str) -> String {
    let mut bare = String::new();
    let mut rest = svg;
    while let Some(at) = rest.find("<text") {
        bare.push_str(&rest[..at]);
        let end = rest[at..].find("</text>").unwrap() + at + "</text>".len();
        rest = &rest[end..];
    }
    bare.push_str(rest);
    bare
}

/// Blocks inked in either picture, and those of them that differ beyond what fonts
/// and anti-aliasing explain.
fn block_difference(ours: &[Vec<f64>], theirs: &[Vec<f64>]) -> (usize, usize) {
    let (mut differ, mut inked) = (0, 0);
    for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
        if a.max(*b) > 0.02 {
            inked += 1;
            if (a - b).abs() > 0.5 * a.max(*b) + 0.02 {
                differ += 1;
            }
        }
    }
    (differ, inked)
}

/// At most this share (in %) of inked blocks may differ from Chromium's rendering.
const MAX_DIFFERING_BLOCKS_PCT: usize = 3;

/// Every PNG is its SVG rendered (same size) and carries the SVG's text: the same
/// SVG with its text elements removed renders measurably lighter.
#[test]
fn each_png_is_its_svg_with_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, svg, png) in report_pngs(tmp.path()) {
        let size = |s: &str, attr: &str| -> usize {
            let at = s.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
            s[at..].split('"').next().unwrap().parse().unwrap()
        };
        let ((w, h), with_text) = darkness(&png, 1);
        assert_eq!(
            (w, h),
            (size(&svg, "width"), size(&svg, "height")),
            "{name}"
        );
        let texts = svg.matches("<text").count();
        assert!(texts > 3, "{name}: the SVG has text");
        let bare_png = figures::png_from_svg("test", &without_text(&svg)).unwrap();
        let (_, without_text) = darkness(&bare_png, 1);
        let ink: f64 = with_text
            .iter()
            .flatten()
            .zip(without_text.iter().flatten())
            .map(|(a, b)| (a - b).max(0.0))
            .sum();
        eprintln!("{name}: {texts} labels, {ink:.0} px of text ink");
        // Each label is at least a few characters of ~20 dark pixels each.
        assert!(
            ink > 40.0 * texts as f64,
            "{name}: the PNG's text adds only {ink:.0} px of ink for {texts} labels"
        );
    }
}

/// Each PNG against its SVG as Chromium renders it: the same picture block by block
/// (text present, nothing clipped or moved), with small differences of anti-aliasing.
#[test]
fn each_png_matches_its_svg_in_chromium() {
    if !common::have(&[common::Need::Tool("chromium")]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    const BLOCK: usize = 16;
    for (name, svg, png) in report_pngs(tmp.path()) {
        let ((w, h), ours) = darkness(&png, BLOCK);
        let page = tmp
            .path()
            .join(format!("{name}.svg"))
            .canonicalize()
            .unwrap();
        let shot = tmp.path().join(format!("{name}-chromium.png"));
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--window-size={w},{h}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ((cw, ch), theirs) = darkness(&std::fs::read(&shot).unwrap(), BLOCK);
        assert_eq!((cw, ch), (w, h), "{name}: screenshot size");
        // The check must see a missing label: the picture without its text fails it.
        let bare = figures::png_from_svg("test", &without_text(&svg)).unwrap();
        let (bare_differ, bare_inked) = block_difference(&darkness(&bare, BLOCK).1, &theirs);
        assert!(
            bare_differ * 100 > bare_inked * MAX_DIFFERING_BLOCKS_PCT,
            "{name}: without text only {bare_differ} of {bare_inked} blocks differ"
        );
        let (differ, inked) = block_difference(&ours, &theirs);
        eprintln!(
            "{name}: {differ} of {inked} inked blocks differ from Chromium's ({bare_differ} without text)"
        );
        assert!(inked > 20, "{name}: something is drawn");
        assert!(
            differ * 100 <= inked * MAX_DIFFERING_BLOCKS_PCT,
            "{name}: {differ} of {inked} inked {BLOCK}-px blocks differ from Chromium's rendering"
        );
    }
}

/// Per-pair panels share one x scale: every panel shows the same RTT ticks, and the
/// scale holds every pair's answered transactions.
#[test]
fn per_pair_panels_share_the_x_scale() {
    let d = from_capture("four-peers.pcap");
    let fig = distribution::PerPair::new(&d);
    let (x0, x1) = fig.x_range();
    for t in &d.transactions {
        if let Some(ns) = t.rtt_ns() {
            let ms = ns as f64 / 1e6;
            assert!(x0 <= ms && ms <= x1, "{ms} ms outside {x0}..{x1}");
        }
    }
    let labels = texts(&svg(&fig));
    // Each panel's labels follow its title ("… n=…"); x ticks are RTTs in ms, far
    // above the per-bin counts of the y axis in this sample.
    let mut panels: Vec<std::collections::BTreeSet<String>> = Vec::new();
    for l in labels {
        if l.contains("n=") {
            panels.push(Default::default());
        } else if let (Some(p), Ok(v)) = (panels.last_mut(), l.parse::<f64>()) {
            if v >= 100.0 {
                p.insert(l);
            }
        }
    }
    assert_eq!(panels.len(), d.summary.pairs.len());
    let first = panels[0].clone();
    assert!(first.len() >= 3, "{first:?}");
    for (i, p) in panels.iter().enumerate() {
        assert_eq!(p, &first, "panel {i} has its own x ticks");
    }
}
