//! Human-readable tables (plain aligned text, like `ss` or `tshark -z`).
//!
//! Everything that came from the wire (names, IDs) is sanitised: a hostile peer name
//! must not be able to move the cursor or recolour the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

use unicode_width::UnicodeWidthStr as _;

use super::stats::RttStats;
use super::summary::{other_pairs, top_pairs, Summary, TOP_PAIRS};

/// Replaces control characters (C0, DEL, C1, so every escape sequence loses its
/// introducer) and bidi overrides with `?`; caps the length.
pub fn sanitize(s: &str) -> String {
    sanitize_to(s, 64)
}

/// [`sanitize`] with a longer cap, for full peer IDs (`messages --wide`): long enough
/// for any real ID (about 80 characters), still bounded for hostile input.
pub fn sanitize_wide(s: &str) -> String {
    sanitize_to(s, 256)
}

fn sanitize_to(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 3));
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        let bad = c.is_control()
            || matches!(c, '\u{200e}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        out.push(if bad { '?' } else { c });
    }
    out
}

/// `2026-01-01 00:00:05.123 UTC`: the figures' UTC form, to the millisecond.
pub(crate) fn utc_ms(ns: u64) -> String {
    let whole = super::figures::utc(ns);
    let ms = ns % 1_000_000_000 / 1_000_000;
    match whole.strip_suffix(" UTC") {
        Some(t) => format!("{t}.{ms:03} UTC"),
        None => whole,
    }
}

/// A label for a column: names are kept; long peer IDs are cut to `uuid-…ab12`.
pub fn short_label(s: &str) -> String {
    // Shorten before sanitising, whose length cap would otherwise eat the tail.
    let Some(unique) = s.strip_prefix("urn:jxta:") else {
        return sanitize(s);
    };
    match unique.split_once('-') {
        Some((format, body)) if body.chars().count() > 8 => {
            let tail: String = body.chars().skip(body.chars().count() - 6).collect();
            sanitize(&format!("{format}-…{tail}"))
        }
        _ => sanitize(unique),
    }
}

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    opt_cell(v, digits).into_owned()
}

/// [`opt`] as a cell: a missing value borrowed, not a `String` of its own (the matrix's
/// empty cells).
fn opt_cell(v: Option<f64>, digits: usize) -> Cow<'static, str> {
    v.map_or(Cow::Borrowed("-"), |v| Cow::Owned(format!("{v:.digits$}")))
}

fn stats_cells(s: &RttStats) -> [String; 7] {
    if s.count == 0 {
        return std::array::from_fn(|_| "-".to_owned());
    }
    [
        ms(s.mean),
        ms(s.sd),
        ms(s.min),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
    ]
}

/// Renders rows as columns aligned to the widest cell (first column left-aligned,
/// the others right-aligned, as numbers are). Widths are terminal columns
/// (`unicode-width`), not characters: a peer named in CJK takes two per character.
///
/// Written straight into `out`, each cell measured once: the matrix's 4,000 cells cost
/// a padding `String` each, a line grown as it went and a second measure (~540
/// instructions a cell).
fn grid<S: AsRef<str>>(out: &mut String, rows: &[Vec<S>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    let mut cell_widths = Vec::with_capacity(rows.iter().map(Vec::len).sum());
    for r in rows {
        for (cell, max) in r.iter().zip(widths.iter_mut()) {
            let w = cell_width(cell.as_ref());
            *max = (*max).max(w);
            cell_widths.push(w);
        }
    }
    let line = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1) + 1;
    out.reserve(line * rows.len());
    let mut cell_widths = cell_widths.into_iter();
    for r in rows {
        let start = out.len();
        for (c, (cell, max)) in r.iter().zip(&widths).enumerate() {
            let pad = max.saturating_sub(cell_widths.next().unwrap_or(0));
            if c == 0 {
                out.push_str(cell.as_ref());
                push_spaces(out, pad);
            } else {
                out.push_str("  ");
                push_spaces(out, pad);
                out.push_str(cell.as_ref());
            }
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    }
}

/// A cell's width in terminal columns: its length when it is all printable ASCII
/// (every number, most names), each a column; else `unicode-width`'s, whose tables cost
/// ~60 instructions a cell of the matrix.
fn cell_width(s: &str) -> usize {
    if s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        s.len()
    } else {
        s.width()
    }
}

/// `n` spaces onto `out`, a slice of them at a time.
fn push_spaces(out: &mut String, mut n: usize) {
    const SPACES: &str = "                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(SPACES.get(..k).unwrap_or_default());
        n -= k;
    }
}

/// The whole report as text.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str("PING/PONG transactions (RTT in ms)\n");
    if let Some(e) = s.rtt_percentiles_relative_error {
        // Past the exact limit the percentiles are sketched: say how close they are.
        out.push_str(&format!(
            "(percentiles from a DDSketch, within ±{}%: more answered transactions than the {} kept exactly)\n",
            e * 100.0,
            super::summary::EXACT_RTT_LIMIT
        ));
    }
    let mut rows = vec![[
        "poller", "receiver", "ok", "timeout", "open", "mean", "sd", "min", "p50", "p90", "p99",
        "max",
    ]
    .map(str::to_owned)
    .to_vec()];
    let shown = top_pairs(&s.pairs, TOP_PAIRS);
    for p in shown.iter().filter_map(|&i| s.pairs.get(i)) {
        let mut r = vec![
            short_label(&p.poller),
            short_label(&p.receiver),
            p.counts.ok.to_string(),
            p.counts.timeout.to_string(),
            p.counts.open.to_string(),
        ];
        r.extend(stats_cells(&p.rtt_ms));
        rows.push(r);
    }
    if let Some(o) = other_pairs(&s.pairs, &shown) {
        let mut r = vec![
            format!("others ({} pairs)", o.pairs),
            "".to_owned(),
            o.counts.ok.to_string(),
            o.counts.timeout.to_string(),
            o.counts.open.to_string(),
        ];
        let mut cells = stats_cells(&o.rtt_ms);
        if o.rtt_ms.count > 0 {
            // Percentiles of the union are not known from the pairs' summaries.
            for c in &mut cells[3..6] {
                *c = "-".to_owned();
            }
        }
        r.extend(cells);
        rows.push(r);
    }
    let t = &s.transactions;
    let mut r = vec![
        "all".to_owned(),
        "".to_owned(),
        t.ok.to_string(),
        t.timeout.to_string(),
        t.open.to_string(),
    ];
    r.extend(stats_cells(&s.rtt_ms));
    rows.push(r);
    grid(&mut out, &rows);
    if let Some(t) = s.tail.as_ref().filter(|t| t.count > 0) {
        let mut causes: Vec<String> = t.by_cause.iter().map(|(c, n)| format!("{c} {n}")).collect();
        causes.push(format!("none {}", t.none));
        out.push_str(&format!(
            "tail (RTT >= p90, {:.1} ms): {} transactions; by cause: {}\n",
            t.from_ms,
            t.count,
            causes.join(", ")
        ));
    }

    if !s.matrix.pollers.is_empty() {
        out.push_str("\nMean RTT matrix (ms, poller \\ receiver)\n");
        // An empty cell borrowed: a `String` for each was half the matrix's allocations.
        let mut rows: Vec<Vec<Cow<'static, str>>> = vec![std::iter::once(Cow::Borrowed(""))
            .chain(
                s.matrix
                    .receivers
                    .iter()
                    .map(|r| Cow::Owned(short_label(r))),
            )
            .collect()];
        for (p, row) in s.matrix.pollers.iter().zip(&s.matrix.mean_ms) {
            rows.push(
                std::iter::once(Cow::Owned(short_label(p)))
                    .chain(row.iter().map(|v| opt_cell(*v, 1)))
                    .collect(),
            );
        }
        grid(&mut out, &rows);
        let m = &s.matrix;
        if m.omitted_pollers + m.omitted_receivers > 0 {
            let _ = writeln!(
                out,
                "({} pollers and {} receivers with fewer transactions not shown; every pair is in the JSON)",
                m.omitted_pollers, m.omitted_receivers
            );
        }
    }

    if !s.presence.changes.is_empty() {
        out.push_str("\nPresence changes\n");
        // Times as the figures give them: since the first PING, and in UTC.
        let zero = s.first_ping_unix_ns.unwrap_or(0);
        let mut rows = vec![[
            "t (s)",
            "time (UTC)",
            "peer",
            "from",
            "to",
            "learned by (delay ms)",
        ]
        .map(str::to_owned)
        .to_vec()];
        for c in &s.presence.changes {
            let learned: Vec<String> = c
                .learned_by
                .iter()
                .map(|l| format!("{} (+{:.1})", short_label(&l.poller), l.delay_ms))
                .collect();
            rows.push(vec![
                format!("{:.3}", c.time_unix_ns.saturating_sub(zero) as f64 / 1e9),
                utc_ms(c.time_unix_ns),
                short_label(&c.peer),
                c.from.unwrap_or("-").to_owned(),
                c.to.to_owned(),
                learned.join(", "),
            ]);
        }
        grid(&mut out, &rows);
        if s.presence.dropped > 0 {
            let _ = writeln!(
                out,
                "({} changes not kept: cap reached)",
                s.presence.dropped
            );
        }
    }

    let o = &s.overhead;
    out.push_str("\nCorrelator overhead (measured vs study)\n");
    let st = &o.study;
    let rows = vec![
        vec!["".to_owned(), "measured".to_owned(), "study".to_owned()],
        vec![
            "PINGs / with correlator".to_owned(),
            format!("{} / {}", o.pings, o.pings_with_correlator),
            "".to_owned(),
        ],
        vec![
            "PONGs / with correlator".to_owned(),
            format!("{} / {}", o.pongs, o.pongs_with_correlator),
            "".to_owned(),
        ],
        vec![
            "correlator B per PING (mean/max)".to_owned(),
            format!(
                "{} / {}",
                opt(o.correlator_bytes_per_ping_mean, 1),
                o.correlator_bytes_per_ping_max
            ),
            format!("<= {}", st.max_correlator_bytes_per_message),
        ],
        vec![
            "correlator B per PONG (mean/max)".to_owned(),
            format!(
                "{} / {}",
                opt(o.correlator_bytes_per_pong_mean, 1),
                o.correlator_bytes_per_pong_max
            ),
            format!("<= {}", st.max_correlator_bytes_per_message),
        ],
        vec![
            "PING size B (JIM / jxmg / framed)".to_owned(),
            format!(
                "{} / {} / {}",
                opt(o.ping_document_bytes_mean, 1),
                opt(o.ping_message_bytes_mean, 1),
                opt(o.ping_framed_bytes_mean, 1)
            ),
            "".to_owned(),
        ],
        vec![
            "PONG size B (JIM / jxmg / framed)".to_owned(),
            format!(
                "{} / {} / {}",
                opt(o.pong_document_bytes_mean, 1),
                opt(o.pong_message_bytes_mean, 1),
                opt(o.pong_framed_bytes_mean, 1)
            ),
            "".to_owned(),
        ],
        vec![
            "% of PING (JIM / jxmg / framed)".to_owned(),
            format!(
                "{} / {} / {}",
                opt(o.correlator_pct_of_ping_document, 1),
                opt(o.correlator_pct_of_ping_message, 1),
                opt(o.correlator_pct_of_ping_framed, 1)
            ),
            format!("~{}", st.correlator_pct_of_ping),
        ],
        vec![
            "% of PONG (JIM / jxmg / framed)".to_owned(),
            format!(
                "{} / {} / {}",
                opt(o.correlator_pct_of_pong_document, 1),
                opt(o.correlator_pct_of_pong_message, 1),
                opt(o.correlator_pct_of_pong_framed, 1)
            ),
            "".to_owned(),
        ],
        vec![
            "total correlator B".to_owned(),
            o.total_correlator_bytes.to_string(),
            "".to_owned(),
        ],
        vec![
            "CSV B per record".to_owned(),
            opt(o.csv_bytes_per_record, 1),
            format!("~{}", st.csv_bytes_per_record),
        ],
        vec![
            "CSV B per hour".to_owned(),
            opt(o.csv_bytes_per_hour, 0),
            format!("~{}", st.csv_bytes_per_hour),
        ],
    ];
    grid(&mut out, &rows);
    out.push_str(
        "(CSV B per hour: transaction CSV bytes per hour of capture, for this capture's pairs and \
         polling rate; the study's figure is for its deployment's rate)\n",
    );

    out.push_str("\nAnomalies\n");
    let a = &s.anomalies;
    let rows: Vec<Vec<String>> = a
        .iter()
        .map(|(c, v)| vec![c.label.to_owned(), v.to_string()])
        .collect();
    grid(&mut out, &rows);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Double-width names keep the right-aligned column's end in one terminal column.
    #[test]
    fn wide_characters_align_by_terminal_columns() {
        let rows = vec![
            vec!["李雷".to_string(), "1".to_string()],
            vec!["bob".to_string(), "22".to_string()],
        ];
        let mut out = String::new();
        grid(&mut out, &rows);
        let widths: Vec<usize> = out.lines().map(|l| l.width()).collect();
        assert_eq!(widths, [8, 8], "{out}");
        assert!(out.starts_with("李雷   1\nbob   22\n"), "{out:?}");
    }

    /// The grid as it was written before it wrote into the output directly: a line
    /// built apart, a padding string per cell, each cell measured twice.
    fn grid_by_lines(out: &mut String, rows: &[Vec<String>]) {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.width())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        for r in rows {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                let pad = " ".repeat(widths[c].saturating_sub(cell.width()));
                if c == 0 {
                    line.push_str(cell);
                    line.push_str(&pad);
                } else {
                    line.push_str("  ");
                    line.push_str(&pad);
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }

    /// The grid writes what it wrote line by line: ragged rows, empty rows and cells,
    /// cells ending in spaces (ASCII and wide), wide characters, pads past one slice of
    /// spaces, after text already in the output; and random tables.
    #[test]
    fn grid_is_the_grid_by_lines() {
        let cells = [
            "",
            "-",
            "5.2",
            "alice",
            "李雷",
            "bob  ",
            "x\u{3000}",
            " ",
            "  lead",
            "é",
            "a-much-longer-cell-than-thirty-two-columns-of-spaces-wide",
        ];
        let mut tables: Vec<Vec<Vec<String>>> = vec![
            vec![],
            vec![vec![]],
            vec![vec![], vec!["a".into()], vec![]],
            vec![vec!["".into(), "".into()], vec!["".into()]],
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..300 {
            let rows = next(6);
            tables.push(
                (0..rows)
                    .map(|_| {
                        let n = next(5);
                        (0..n)
                            .map(|_| cells[next(cells.len())].to_owned())
                            .collect()
                    })
                    .collect(),
            );
        }
        for rows in &tables {
            let (mut new, mut old) = ("before\n".to_owned(), "before\n".to_owned());
            grid(&mut new, rows);
            grid_by_lines(&mut old, rows);
            assert_eq!(new, old, "{rows:?}");
            let borrowed: Vec<Vec<Cow<'_, str>>> = rows
                .iter()
                .map(|r| r.iter().map(|c| Cow::Borrowed(c.as_str())).collect())
                .collect();
            let mut cow = "before\n".to_owned();
            grid(&mut cow, &borrowed);
            assert_eq!(cow, old);
        }
    }

    /// Every ASCII byte alone and in a printable text, and texts with a control, DEL,
    /// an accent, CJK or a zero-width mark: the width `unicode-width` gives.
    #[test]
    fn cell_width_is_the_unicode_width() {
        let mut texts: Vec<String> = (0u8..=0x7f)
            .flat_map(|b| [char::from(b).to_string(), format!("5.{}2", char::from(b))])
            .collect();
        texts.extend(
            [
                "",
                "-",
                "peer000001",
                "é",
                "李雷",
                "a\u{200b}b",
                "x\u{7f}",
                "\u{3000}",
                "~ }",
            ]
            .map(str::to_owned),
        );
        for t in &texts {
            assert_eq!(cell_width(t), t.width(), "{t:?}");
        }
    }

    #[test]
    fn sanitize_and_shorten() {
        assert_eq!(sanitize("bob\u{1b}[31mred\u{7}\u{9b}2J"), "bob?[31mred??2J");
        assert_eq!(sanitize("a\u{202e}b"), "a?b");
        assert_eq!(
            short_label(
                "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603"
            ),
            "uuid-…281603"
        );
        assert_eq!(short_label("alice"), "alice");
        assert!(sanitize(&"x".repeat(1000)).chars().count() <= 65);
    }

    /// The table names the peers, shows the measured overhead next to the study's,
    /// and says when percentiles come from a sketch (and only then).
    #[test]
    fn table_of_a_small_run_exact_and_sketched() {
        let (txs, m) = observer_core::summary::example::example_run();
        let exact = Summary::build(&txs, &m, 3_600_000_000_000);
        let text = render(&exact);
        assert!(text.contains("alice"), "{text}");
        assert!(text.contains("Correlator overhead"));
        assert!(text.contains("~150"));
        assert!(!text.contains("DDSketch"));
        let mut b = crate::report::SummaryBuilder::with_exact_limit(1);
        for t in &txs {
            b.add(t);
        }
        let sketched = b.finish(&m, 3_600_000_000_000);
        assert!(sketched.rtt_percentiles_relative_error.is_some());
        assert!(render(&sketched).contains("DDSketch"));
    }

    /// 100 pairs, pair p with p + 1 transactions: the text table shows the
    /// [`TOP_PAIRS`] busiest and one "others" row summing the rest exactly (counts,
    /// RTT count, mean, min, max); the summary and its JSON keep every pair.
    #[test]
    fn table_shows_the_top_pairs_and_sums_the_others() {
        use crate::jxta::PeerId;
        use observer_core::summary::{other_pairs, top_pairs, TOP_PAIRS};
        let (base, m) = observer_core::summary::example::example_run();
        let mut ts = Vec::new();
        for p in 0..100u32 {
            for k in 0..=p {
                let mut t = base[0].clone();
                t.poller_name = Some(format!("p{p:03}").into());
                t.poller_id = PeerId::parse(&format!("urn:jxta:uuid-{p:04X}03"));
                t.correlator = Some(k.to_string().into());
                // RTTs 1 ms to 100 ms by pair.
                t.stop = Some(t.start + u64::from(p + 1) * 1_000_000);
                ts.push(t);
            }
        }
        let s = Summary::build(&ts, &m, 1);
        assert_eq!(s.pairs.len(), 100);
        assert_eq!(s.to_json()["pairs"].as_array().map(Vec::len), Some(100));
        let shown = top_pairs(&s.pairs, TOP_PAIRS);
        assert_eq!(shown.len(), TOP_PAIRS);
        // The busiest are the last pollers, in pair (name) order.
        let first_kept = 100 - TOP_PAIRS;
        assert_eq!(&*s.pairs[shown[0]].poller, format!("p{first_kept:03}"));
        let o = other_pairs(&s.pairs, &shown).expect("others");
        assert_eq!(o.pairs, first_kept);
        let n: u64 = (1..=first_kept as u64).sum();
        assert_eq!(o.counts.total, n);
        assert_eq!(o.counts.ok, n);
        assert_eq!(o.rtt_ms.count, n);
        // Pair p contributes p + 1 RTTs of p + 1 ms.
        let sum: u64 = (1..=first_kept as u64).map(|k| k * k).sum();
        assert!(
            (o.rtt_ms.mean - sum as f64 / n as f64).abs() < 1e-9,
            "{o:?}"
        );
        assert_eq!((o.rtt_ms.min, o.rtt_ms.max), (1.0, first_kept as f64));
        let text = render(&s);
        // The per-pair table ends with the "all" row (the matrix below has rows too).
        let rows = text
            .lines()
            .take_while(|l| !l.starts_with("all"))
            .filter(|l| l.starts_with("p0"))
            .count();
        assert_eq!(rows, TOP_PAIRS, "{text}");
        let others = text
            .lines()
            .find(|l| l.starts_with(&format!("others ({first_kept} pairs)")))
            .expect("others row");
        assert!(others.contains(&format!(" {n} ")), "{others}");
        // Below the bound nothing is summed.
        let (small, m) = observer_core::summary::example::example_run();
        let s = Summary::build(&small, &m, 1);
        assert!(other_pairs(&s.pairs, &top_pairs(&s.pairs, TOP_PAIRS)).is_none());
        assert!(!render(&s).contains("others"));
    }
}
