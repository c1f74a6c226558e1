//! One transaction of a rendered scenario drawn as the capture saw it: every packet a
//! mark on its direction's row (data, a retransmission, an ACK, a zero window, SYN,
//! FIN, RST), the PING's and PONG's bytes and the RTT below. docs/explain.md shows one
//! per cause; `tests/explain.rs` regenerates them and fails when they differ.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::net::Ipv4Addr;

use super::Rendered;
use crate::UnixNanos;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 270.0;
const LEFT: f64 = 30.0;
const RIGHT: f64 = 30.0;
/// Baselines of the two rows: the poller's packets, the receiver's.
const ROW_POLLER: f64 = 85.0;
const ROW_RECEIVER: f64 = 150.0;

type Endpoint = (Ipv4Addr, u16);

/// What a figure needs of one IPv4/TCP packet.
struct Seen {
    ts: UnixNanos,
    src: Endpoint,
    dst: Endpoint,
    seq: u32,
    flags: u8,
    window: u16,
    len: u32,
    /// Its bytes name a discovery, SRDI or resolver element.
    service: bool,
}

/// Element names of the JXTA services the `jxta` cause counts, as the bytes show them.
const SERVICE_NAMES: [&[u8]; 5] = [
    b"jxta-NetGroupSrdi",
    b"jxta-NetGroupORes",
    b"jxta-NetGroupIRes",
    b"jxta-NetGroupDiscQuery",
    b"jxta-NetGroupDiscResponse",
];

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

fn parse(ts: UnixNanos, ip: &[u8]) -> Option<Seen> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let addr = |at: usize| -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(
            *ip.get(at)?,
            *ip.get(at + 1)?,
            *ip.get(at + 2)?,
            *ip.get(at + 3)?,
        ))
    };
    let tcp = ip.get(ihl..)?;
    let be16 =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*tcp.get(at)?, *tcp.get(at + 1)?])) };
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(doff..).unwrap_or_default();
    let service = SERVICE_NAMES
        .iter()
        .any(|n| payload.windows(n.len()).any(|w| w == *n));
    Some(Seen {
        ts,
        src: (addr(12)?, be16(0)?),
        dst: (addr(16)?, be16(2)?),
        seq: u32::from_be_bytes([*tcp.get(4)?, *tcp.get(5)?, *tcp.get(6)?, *tcp.get(7)?]),
        flags: *tcp.get(13)?,
        window: be16(14)?,
        len: u32::try_from(total.saturating_sub(ihl + doff)).unwrap_or(0),
        service,
    })
}

/// The kinds of mark, in the legend's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Data,
    Service,
    Retransmission,
    Ack,
    ZeroWindow,
    Syn,
    Fin,
    Rst,
}

impl Mark {
    fn of(p: &Seen, retransmitted: bool) -> Mark {
        if p.flags & RST != 0 {
            Mark::Rst
        } else if p.flags & SYN != 0 {
            Mark::Syn
        } else if p.flags & FIN != 0 {
            Mark::Fin
        } else if p.len > 0 && retransmitted {
            Mark::Retransmission
        } else if p.service {
            Mark::Service
        } else if p.len > 0 {
            Mark::Data
        } else if p.window == 0 {
            Mark::ZeroWindow
        } else {
            Mark::Ack
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Mark::Data => "#4682b4",
            Mark::Service => "#556b2f",
            Mark::Retransmission => "#dc143c",
            Mark::Ack => "#999999",
            Mark::ZeroWindow => "#1e90ff",
            Mark::Syn => "#228b22",
            Mark::Fin => "#8b4513",
            Mark::Rst => "#c71585",
        }
    }

    /// Height of the mark above (or below) its row.
    fn height(self) -> f64 {
        match self {
            Mark::Data => 16.0,
            Mark::Service => 20.0,
            Mark::Retransmission => 24.0,
            Mark::Ack => 6.0,
            Mark::ZeroWindow => 12.0,
            Mark::Syn | Mark::Fin => 28.0,
            // Higher: a reset is often followed at once by a new connection's SYN.
            Mark::Rst => 42.0,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mark::Data => "data",
            Mark::Service => "SRDI/resolver/discovery",
            Mark::Retransmission => "retransmission",
            Mark::Ack => "ACK",
            Mark::ZeroWindow => "zero window",
            Mark::Syn => "SYN",
            Mark::Fin => "FIN",
            Mark::Rst => "RST",
        }
    }
}

/// A tick spacing of 1, 2 or 5 × 10ⁿ ms giving at most eight ticks over `span_ns`.
fn tick_ns(span_ns: u64) -> u64 {
    let mut step: u64 = 1_000;
    loop {
        for m in [1, 2, 5] {
            if span_ns / (step * m) <= 8 {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// Draws transaction `i` of `r` between `view.0` and `view.1` (capture time), with
/// `title` on top. `None` when the transaction's PING was not seen.
pub fn figure(r: &Rendered, i: usize, view: (UnixNanos, UnixNanos), title: &str) -> Option<String> {
    let p = panel(r, i, view, None)?;
    Some(page(title, &[(0.0, None, p)], LanesKind::Two))
}

/// [`figure`] for a pair whose messages may pass through the rendezvous at `rendezvous`:
/// three rows, the poller's packets, the rendezvous's (both legs it forwards), the
/// receiver's.
pub fn figure_via(
    r: &Rendered,
    i: usize,
    view: (UnixNanos, UnixNanos),
    title: &str,
    rendezvous: Ipv4Addr,
) -> Option<String> {
    let p = panel(r, i, view, Some(rendezvous))?;
    Some(page(title, &[(0.0, None, p)], LanesKind::Three))
}

/// A route change: transaction `before` (the pair's previous one) drawn above
/// transaction `i`, each over its own view, on the three rows of [`figure_via`].
pub fn figure_route(
    r: &Rendered,
    before: (usize, (UnixNanos, UnixNanos), &str),
    after: (usize, (UnixNanos, UnixNanos), &str),
    title: &str,
    rendezvous: Ipv4Addr,
) -> Option<String> {
    let a = panel(r, before.0, before.1, Some(rendezvous))?;
    let b = panel(r, after.0, after.1, Some(rendezvous))?;
    Some(page(
        title,
        &[(0.0, Some(before.2), a), (PANEL_STEP, Some(after.2), b)],
        LanesKind::Three,
    ))
}

/// How many rows a figure has; the page's height follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LanesKind {
    Two,
    Three,
}

/// Baseline of the rendezvous's row, between the poller's and a lower receiver's.
const ROW_MIDDLE: f64 = ROW_RECEIVER;
const ROW_RECEIVER_VIA: f64 = ROW_RECEIVER + (ROW_RECEIVER - ROW_POLLER);
/// Vertical offset of a second panel (it repeats everything but the title and legend).
const PANEL_STEP: f64 = ROW_RECEIVER_VIA + 110.0;

/// One transaction's drawing, without the page around it.
struct Panel {
    body: String,
    kinds: BTreeSet<Mark>,
    /// Below the lowest thing drawn (the time axis' labels).
    bottom: f64,
}

fn page(title: &str, panels: &[(f64, Option<&str>, Panel)], lanes: LanesKind) -> String {
    let bottom = panels
        .iter()
        .map(|(dy, _, p)| dy + p.bottom)
        .fold(0.0, f64::max);
    let height = if lanes == LanesKind::Two && panels.len() == 1 {
        HEIGHT
    } else {
        bottom + 25.0
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"{WIDTH}\" height=\"{height}\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"13\">{}</text>\n",
        escape(title)
    );
    let mut kinds = BTreeSet::new();
    for (dy, sub, p) in panels {
        kinds.extend(p.kinds.iter().copied());
        if *dy == 0.0 && sub.is_none() {
            svg.push_str(&p.body);
            continue;
        }
        let _ = writeln!(svg, "<g transform=\"translate(0,{dy})\">");
        if let Some(sub) = sub {
            let _ = writeln!(
                svg,
                "<text x=\"{LEFT}\" y=\"36\" font-style=\"italic\">{}</text>",
                escape(sub)
            );
        }
        svg.push_str(&p.body);
        svg.push_str("</g>\n");
    }
    let mut lx = LEFT;
    let ly = height - 8.0;
    for m in kinds {
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{lx}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{ly}\">{}</text>",
            ly - 10.0,
            m.colour(),
            lx + 4.0,
            m.label()
        );
        lx += 16.0 + 6.5 * m.label().len() as f64;
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(
    r: &Rendered,
    i: usize,
    view: (UnixNanos, UnixNanos),
    rendezvous: Option<Ipv4Addr>,
) -> Option<Panel> {
    let t = r.truth.get(i)?;
    let spans = r.injected.get(i)?;
    let ping = spans.ping?;
    let mut packets: Vec<(usize, Seen)> = r
        .wire
        .packets
        .iter()
        .enumerate()
        .filter(|(_, p)| p.written && p.ts >= r.capture_start)
        .filter_map(|(k, p)| Some((k, parse(p.ts, &p.ip)?)))
        .collect();
    packets.sort_by_key(|(k, p)| (p.ts, *k));
    // The poller: the sender of the PING's first bytes.
    let poller = packets
        .iter()
        .find(|(_, p)| p.ts == ping.0 && p.len > 0)
        .map(|(_, p)| p.src.0)?;
    // Rows from the top; a mark points away from its addressee's row.
    let rows: Vec<(f64, &str)> = match rendezvous {
        None => vec![
            (ROW_POLLER, "poller → receiver"),
            (ROW_RECEIVER, "receiver → poller"),
        ],
        Some(_) => vec![
            (ROW_POLLER, "poller → rendezvous or receiver"),
            (
                ROW_MIDDLE,
                "rendezvous (forwards each leg): up to the receiver, down to the poller",
            ),
            (ROW_RECEIVER_VIA, "receiver → rendezvous or poller"),
        ],
    };
    let row_of = |a: Ipv4Addr| -> usize {
        if a == poller {
            0
        } else if Some(a) == rendezvous {
            1
        } else {
            rows.len() - 1
        }
    };
    let low = rows.last().map_or(ROW_RECEIVER, |r| r.0);
    let (t0, t1) = view;
    let span = t1.saturating_sub(t0).max(1);
    let x = |ts: UnixNanos| {
        let f = ts.saturating_sub(t0) as f64 / span as f64;
        LEFT + f.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    };
    let mut svg = String::new();
    for (k, (y, who)) in rows.iter().enumerate() {
        // Labels sit on the side marks do not point to.
        let dy = if k == 0 { -4.0 } else { 12.0 };
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#333\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#333\">{who}</text>",
            WIDTH - RIGHT,
            WIDTH - RIGHT,
            y + dy
        );
    }
    // Highest sequence number sent per direction: data at or below it was sent before.
    let mut sent: HashMap<(Endpoint, Endpoint), u32> = HashMap::new();
    // One mark per pixel, row, direction and kind: a fast send is a bar, not a
    // thousand lines.
    // Lower rows first at one pixel (the order the two-row figures were first drawn in).
    let mut marks: BTreeSet<(i64, Reverse<usize>, bool, Mark)> = BTreeSet::new();
    for (_, p) in &packets {
        let key = (p.src, p.dst);
        let end = p.seq.wrapping_add(p.len);
        let high = sent.get(&key).copied();
        let retransmitted = high.is_some_and(|h| h.wrapping_sub(end) < 1 << 31);
        if p.len > 0 && !retransmitted {
            sent.insert(key, end);
        } else if p.flags & SYN != 0 {
            sent.insert(key, p.seq.wrapping_add(1));
        }
        if p.ts < t0 || p.ts > t1 {
            continue;
        }
        let (from, to) = (row_of(p.src.0), row_of(p.dst.0));
        marks.insert((
            x(p.ts).round() as i64,
            Reverse(from),
            to > from,
            Mark::of(p, retransmitted),
        ));
    }
    let mut kinds = BTreeSet::new();
    for &(px, Reverse(row), up, m) in &marks {
        kinds.insert(m);
        let y = rows.get(row).map_or(low, |r| r.0);
        let dy = if up { -m.height() } else { m.height() };
        let _ = writeln!(
            svg,
            "<line x1=\"{px}\" y1=\"{y}\" x2=\"{px}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"/>",
            y + dy,
            m.colour(),
            if m == Mark::Data || m == Mark::Ack { 1 } else { 2 }
        );
        if matches!(m, Mark::Syn | Mark::Fin | Mark::Rst) {
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
                px + 3,
                y + dy + if up { 8.0 } else { 0.0 },
                m.colour(),
                m.label()
            );
        }
    }
    // The PING's bytes under the poller's row, the PONG's over the receiver's.
    let mut bar = |span: (UnixNanos, UnixNanos), y: f64, what: &str| {
        let (a, b) = (x(span.0), x(span.1).max(x(span.0) + 2.0));
        let _ = writeln!(
            svg,
            "<rect x=\"{a:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"5\" fill=\"#ffa500\"/>\
             <text x=\"{a:.1}\" y=\"{}\" fill=\"#b8860b\">{what}</text>",
            b - a,
            y + 15.0
        );
    };
    bar(ping, ROW_POLLER + 18.0, "PING");
    if let Some(pong) = spans.pong {
        bar(pong, low - 40.0, "PONG");
    }
    let y = low + 60.0;
    let rtt = match t.rtt_ns() {
        Some(ns) => format!("RTT {:.1} ms", ns as f64 / 1e6),
        None => format!("no answer ({})", t.status.as_str()),
    };
    let stop = t.stop.unwrap_or(t1).min(t1);
    let _ = writeln!(
        svg,
        "<line x1=\"{:.1}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"#000\" stroke-width=\"2\"/>\
         <text x=\"{:.1}\" y=\"{}\">{rtt}</text>",
        x(t.start),
        x(stop),
        x(t.start),
        y - 4.0
    );
    // Time axis, in ms from the PING's first byte.
    let axis = y + 20.0;
    let step = tick_ns(span);
    let first = t
        .start
        .saturating_sub(t.start.saturating_sub(t0) / step * step);
    let mut tick = first;
    while tick <= t1 {
        let ms = (tick as f64 - t.start as f64) / 1e6;
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{axis}\" x2=\"{:.1}\" y2=\"{}\" stroke=\"#333\"/>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{ms:+.0} ms</text>",
            x(tick),
            x(tick),
            axis + 4.0,
            x(tick),
            axis + 15.0
        );
        tick += step;
    }
    Some(Panel {
        body: svg,
        kinds,
        bottom: axis + 15.0,
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
