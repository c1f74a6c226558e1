//! `index.html`: one self-contained page (every SVG inlined, no script, no stylesheet
//! or image fetched from anywhere) with the figures, the summary tables, the capture's
//! metadata and the command that produced it. Everything from the wire is escaped.

use std::fmt::Write as _;

use super::{utc, ReportData};
use crate::report::table::sanitize;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Title and caption of each figure, by file stem.
fn describe(name: &str) -> (&'static str, &'static str) {
    match name {
        "timeseries" => (
            "Round-trip time over time",
            "Every answered PING/PONG transaction at the time its PING was sent, one colour per (poller, receiver) pair; timeouts are red crosses, PINGs still unanswered at the end of the capture grey triangles; the dashed line is the mean. Peaks are slow answers (the study's figure 8a).",
        ),
        "distribution" => (
            "Distribution of round-trip times",
            "Histogram (Freedman–Diaconis bins) and empirical CDF of the RTT of every answered transaction; red: the mean, shaded: mean ± standard deviation; p50, p90 and p99 marked (the study's figure 8b).",
        ),
        "distribution-pairs" => (
            "Distribution per pair",
            "One histogram per (poller, receiver) pair, with its mean ± standard deviation and percentiles.",
        ),
        "matrix" => (
            "RTT matrix",
            "Pollers (rows) × receivers (columns): each cell's colour is the pair's mean RTT; it shows the mean, the 90th percentile, the answered transactions and the timeouts.",
        ),
        "graph" => (
            "Global view",
            "Peers as nodes, one arrow per (poller, receiver) pair, as wide as the pair's mean RTT and labelled with it (the study's figure 3).",
        ),
        "presence" => (
            "Presence and staleness",
            "Each peer's state as the PONGs carried it (grey: not yet known). Below, for every change of state, how long each buddy took to learn it: the time from the first PONG showing the new state to the first PONG carrying it to that buddy (the study's figure 2b, measured passively).",
        ),
        "overhead" => (
            "Correlator overhead",
            "The correlator element of PINGs and PONGs apart, as the decoder measured every message: its bytes (bar: mean, tick: largest) and its share of the jxmg message and of the framed message. Dashed: the study's ≤ 50 bytes per message and ~10 %. From a transactions CSV, which records a transaction's PING and PONG correlator bytes together, one PING + PONG bar per panel.",
        ),
        _ => ("Figure", ""),
    }
}

/// The SVG document without any XML prolog, ready to inline.
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// The whole page.
pub fn page(data: &ReportData, svgs: &[(&'static str, String)]) -> String {
    let m = &data.meta;
    let s = &data.summary;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let first = m
        .inputs
        .first()
        .map(|i| sanitize(&i.name))
        .unwrap_or_default();
    let _ = writeln!(h, "<title>observer report: {}</title>", escape(&first));
    h.push_str(
        "<style>\nbody{font-family:sans-serif;margin:2em auto;max-width:1240px;color:#222;padding:0 1em}\n\
         figure{margin:2em 0;border-top:1px solid #ddd;padding-top:1em}\n\
         figure svg{max-width:100%;height:auto;display:block}\n\
         figcaption{color:#444;margin:.5em 0 1em}\n\
         table.meta td,table.meta th{text-align:left;padding:2px 12px 2px 0;vertical-align:top}\n\
         pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:13px}\n\
         code{background:#f0f0f0;padding:2px 4px}\n</style>\n</head>\n<body>\n",
    );
    h.push_str("<h1>JIM presence round trips</h1>\n");
    h.push_str("<section id=\"metadata\">\n<h2>Capture</h2>\n<table class=\"meta\">\n");
    for i in &m.inputs {
        let mut d = escape(&sanitize(&i.format));
        if let Some(f) = i.frames {
            let _ = write!(d, ", {f} frames");
        }
        let _ = write!(d, ", {} bytes", i.bytes);
        if let Some(e) = &i.error {
            let _ = write!(d, " <strong>DAMAGED: {}</strong>", escape(&sanitize(e)));
        }
        let _ = writeln!(
            h,
            "<tr><th>file</th><td><code>{}</code> ({d})</td></tr>",
            escape(&sanitize(&i.name))
        );
    }
    let t0 = data.t0();
    if !data.transactions.is_empty() {
        let _ = writeln!(h, "<tr><th>first PING</th><td>{}</td></tr>", utc(t0));
    }
    let _ = writeln!(
        h,
        "<tr><th>duration</th><td>{:.3} s</td></tr>",
        m.duration_ns as f64 / 1e9
    );
    if let Some(p) = m.packets {
        let _ = writeln!(h, "<tr><th>packets</th><td>{p}</td></tr>");
    }
    if let Some(f) = m.flows {
        let _ = writeln!(h, "<tr><th>TCP flows</th><td>{f}</td></tr>");
    }
    if let Some(j) = m.jxta_messages {
        let _ = writeln!(h, "<tr><th>JXTA messages</th><td>{j}</td></tr>");
    }
    let t = &s.transactions;
    let _ = writeln!(
        h,
        "<tr><th>transactions</th><td>{} ({} ok, {} timeout, {} open), {} pairs</td></tr>",
        t.total,
        t.ok,
        t.timeout,
        t.open,
        s.pairs.len()
    );
    let anomalies = if m.anomalies.is_empty() {
        "none".to_owned()
    } else {
        m.anomalies
            .iter()
            .map(|(k, n)| format!("{} {n}", escape(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(h, "<tr><th>anomalies</th><td>{anomalies}</td></tr>");
    let _ = writeln!(
        h,
        "<tr><th>command</th><td><code id=\"command\">{}</code></td></tr>",
        escape(&sanitize_command(&m.command))
    );
    h.push_str("</table>\n</section>\n");

    h.push_str("<nav><h2>Figures</h2><ul>\n");
    for (name, _) in svgs {
        let (title, _) = describe(name);
        let _ = writeln!(h, "<li><a href=\"#fig-{name}\">{title}</a></li>");
    }
    h.push_str("<li><a href=\"#summary\">Summary tables</a></li>\n</ul></nav>\n");
    for (name, svg) in svgs {
        let (title, caption) = describe(name);
        let _ = writeln!(
            h,
            "<figure id=\"fig-{name}\">\n<h2>{title}</h2>\n{}\n<figcaption>{caption} (<code>{name}.svg</code>)</figcaption>\n</figure>",
            inline_svg(svg)
        );
    }
    causes_table(&mut h, data);
    h.push_str("<section id=\"summary\">\n<h2>Summary tables</h2>\n<pre>");
    h.push_str(&escape(&m.text_report));
    h.push_str("</pre>\n</section>\n</body>\n</html>\n");
    h
}

/// Pairs the causes table shows at most (those with the most flagged transactions).
const CAUSE_PAIRS_MAX: usize = 20;

/// (all, in the tail) per cause, in `Flag::ALL` order.
type CauseCounts = [(u64, u64); crate::transaction::cause::Flag::ALL.len()];

/// Per pair, its transactions carrying each cause, those in the tail (RTT at or above
/// the p90) in brackets; only when some transaction carries a cause (docs/explain.md).
fn causes_table(h: &mut String, data: &ReportData) {
    use crate::transaction::cause::Flag;
    let from_ms = data
        .summary
        .tail
        .as_ref()
        .map_or(f64::INFINITY, |t| t.from_ms);
    // Per pair: flagged transactions, then (all, tail) per cause in `Flag::ALL` order.
    let mut rows: Vec<(usize, u64, CauseCounts)> = Vec::new();
    let mut at: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (t, p) in data.transactions.iter().zip(data.pair_of()) {
        let (Some(p), Some(ns)) = (p, t.rtt_ns()) else {
            continue;
        };
        if t.cause.flags.is_empty() {
            continue;
        }
        let i = *at.entry(p).or_insert_with(|| {
            rows.push((p, 0, [(0, 0); Flag::ALL.len()]));
            rows.len() - 1
        });
        let tail = ns as f64 / 1e6 >= from_ms;
        rows[i].1 += 1;
        for (k, f) in Flag::ALL.iter().enumerate() {
            if t.cause.flags.contains(*f) {
                rows[i].2[k].0 += 1;
                rows[i].2[k].1 += u64::from(tail);
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let pairs = rows.len();
    rows.sort_by_key(|r| (std::cmp::Reverse(r.1), r.0));
    rows.truncate(CAUSE_PAIRS_MAX);
    rows.sort_by_key(|r| r.0);
    h.push_str("<section id=\"causes\">\n<h2>Causes per pair</h2>\n<table class=\"meta\">\n<tr><th>poller → receiver</th>");
    for f in Flag::ALL {
        let _ = write!(h, "<th>{}</th>", f.as_str());
    }
    h.push_str("</tr>\n");
    for (p, _, counts) in &rows {
        let _ = write!(h, "<tr><td>{}</td>", escape(&data.pair_label(*p)));
        for (all, tail) in counts {
            let _ = write!(h, "<td>{all} ({tail})</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<p>Answered transactions carrying each cause; in brackets those at or above the p90 RTT.");
    if pairs > rows.len() {
        let _ = write!(
            h,
            " {} of {pairs} pairs with a cause shown, those with the most.",
            rows.len()
        );
    }
    h.push_str("</p>\n</section>\n");
}

/// The command line, control characters removed (it may hold file names).
fn sanitize_command(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
