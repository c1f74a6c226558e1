//! Presence over time: each peer's state as coloured bands (unknown until the first
//! PONG shows one), and below, for every change of state, how long each buddy took to
//! learn it (its first PONG carrying the new state, counted from the first PONG that
//! showed the change to anyone): the staleness of every watcher's view, the study's
//! figure 2b obtained passively.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use std::collections::HashMap;

use super::{draw_legend, utc, DrawResult, Figure, LegendMark, ReportData};
use crate::report::summary::{ChangeOut, TOP_PAIRS};
use crate::report::table::short_label;

pub struct PresenceFigure<'a> {
    data: &'a ReportData,
}

/// Colour of a state band.
pub fn state_color(state: &str) -> RGBColor {
    match state {
        "online" => RGBColor(44, 160, 44),
        "busy" => RGBColor(255, 140, 0),
        "away" => RGBColor(240, 210, 60),
        "offline" => RGBColor(90, 90, 110),
        _ => RGBColor(215, 215, 215),
    }
}

/// States a band can show, in legend order.
pub const STATES: [&str; 5] = ["online", "busy", "away", "offline", "unknown"];

/// Colours of the buddies in the staleness panel: none near a state colour (no green,
/// orange, yellow, slate or light grey), so a dot never reads as a state.
const LEARNER_PALETTE: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (148, 103, 189),
    (227, 119, 194),
    (23, 190, 207),
    (140, 86, 75),
    (0, 90, 90),
    (57, 59, 121),
    (0, 0, 0),
];

/// Colour of the `i`-th buddy in the staleness panel.
pub fn learner_color(i: usize) -> RGBColor {
    let (r, g, b) = LEARNER_PALETTE[i % LEARNER_PALETTE.len()];
    RGBColor(r, g, b)
}

/// Smallest top of the staleness axis (s): all delays 0 still get a readable scale.
const MIN_DELAY_AXIS_S: f64 = 0.01;
/// Room above the longest delay for the change labels, as a share of it.
const LABEL_ROOM: f64 = 0.3;

/// The label of a change in the staleness panel (`bob: busy`).
pub fn change_text(c: &ChangeOut) -> String {
    format!("{}: {}", short_label(&c.peer), c.to)
}

/// A peer (label, ID) and its changes.
type PeerChanges<'a> = ((String, Option<String>), Vec<&'a ChangeOut>);

/// One peer's row: its label and its states as (from, to, state) in ns.
pub struct Row {
    pub peer: String,
    pub bands: Vec<(u64, u64, &'static str)>,
}

impl<'a> PresenceFigure<'a> {
    pub fn new(data: &'a ReportData) -> Self {
        PresenceFigure { data }
    }

    /// Each peer's changes, in summary order: by peer ID, or by label for a peer
    /// without one (a renamed peer's rows all show its ID's changes).
    fn changes_by_peer(&self) -> Vec<PeerChanges<'a>> {
        let changes = &self.data.summary.presence.changes;
        let mut by_id: HashMap<&str, Vec<&ChangeOut>> = HashMap::new();
        let mut by_name: HashMap<&str, Vec<&ChangeOut>> = HashMap::new();
        for c in changes {
            match &c.peer_id {
                Some(id) => by_id.entry(id).or_default().push(c),
                None => by_name.entry(&c.peer).or_default().push(c),
            }
        }
        let mut keys: Vec<(String, Option<String>)> = changes
            .iter()
            .map(|c| (c.peer.clone(), c.peer_id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let mut rows: Vec<PeerChanges<'a>> = keys
            .into_iter()
            .map(|(peer, id)| {
                let mine = match &id {
                    Some(id) => by_id.get(id.as_str()),
                    None => by_name.get(peer.as_str()),
                };
                let mine = mine.cloned().unwrap_or_default();
                ((peer, id), mine)
            })
            .collect();
        if rows.len() > TOP_PAIRS {
            // The peers whose state changed most; the rest would make rows no one
            // can read (150,000 receivers, 6.6 million pixels high).
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by_key(|&i| (std::cmp::Reverse(rows[i].1.len()), i));
            order.truncate(TOP_PAIRS);
            order.sort_unstable();
            let mut keep = order.into_iter().peekable();
            let mut i = 0;
            rows.retain(|_| {
                let k = keep.peek() == Some(&i);
                if k {
                    keep.next();
                }
                i += 1;
                k
            });
        }
        rows
    }

    /// Peers with a state but no row (beyond [`TOP_PAIRS`] rows).
    pub fn left_out(&self) -> usize {
        let mut keys: Vec<(&String, &Option<String>)> = self
            .data
            .summary
            .presence
            .changes
            .iter()
            .map(|c| (&c.peer, &c.peer_id))
            .collect();
        keys.sort();
        keys.dedup();
        keys.len().saturating_sub(TOP_PAIRS)
    }

    /// Rows sorted by peer label; the band before the first state is `unknown`. At
    /// most [`TOP_PAIRS`] rows: the peers with the most changes.
    pub fn rows(&self) -> Vec<Row> {
        let (t0, t_end) = (self.data.t0(), self.data.t_end());
        self.changes_by_peer()
            .into_iter()
            .map(|((peer, _), mine)| {
                let mut bands = Vec::new();
                let mut at = t0;
                let mut state = "unknown";
                for c in mine {
                    if c.time_unix_ns > at {
                        bands.push((at, c.time_unix_ns, state));
                    }
                    at = c.time_unix_ns.max(at);
                    state = c.to;
                }
                bands.push((at, t_end.max(at), state));
                Row { peer, bands }
            })
            .collect()
    }

    /// Changes that are changes (not a peer's first state) of the peers with a row,
    /// in time order.
    pub fn real_changes(&self) -> Vec<&'a ChangeOut> {
        let shown: std::collections::HashSet<*const ChangeOut> = self
            .changes_by_peer()
            .into_iter()
            .flat_map(|(_, mine)| mine)
            .map(|c| c as *const ChangeOut)
            .collect();
        let mut v: Vec<&ChangeOut> = self
            .data
            .summary
            .presence
            .changes
            .iter()
            .filter(|c| c.from.is_some() && shown.contains(&(*c as *const ChangeOut)))
            .collect();
        v.sort_by_key(|c| c.time_unix_ns);
        v
    }

    /// The longest time (s) any buddy took to learn a change.
    pub fn max_delay_s(&self) -> f64 {
        self.real_changes()
            .iter()
            .flat_map(|c| c.learned_by.iter().map(|l| l.delay_ms / 1e3))
            .fold(0.0, f64::max)
    }

    /// Top of the staleness panel's delay axis (s): the longest delay and room for the
    /// change labels above it.
    pub fn delay_axis_max_s(&self) -> f64 {
        self.max_delay_s().max(MIN_DELAY_AXIS_S) * (1.0 + LABEL_ROOM)
    }

    /// The buddies shown in the staleness panel (who learned a change), sorted; the
    /// `i`-th is drawn in [`learner_color`]`(i)`.
    pub fn watchers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .real_changes()
            .iter()
            .flat_map(|c| c.learned_by.iter().map(|l| l.poller.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Figure for PresenceFigure<'_> {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn size(&self) -> (u32, u32) {
        let rows = self.rows().len().max(1) as u32;
        (1200, 120 + 44 * rows + 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let d = self.data;
        let rows = self.rows();
        let t0 = d.t0();
        let secs = |ns: u64| ns.saturating_sub(t0) as f64 / 1e9;
        let x_max = secs(d.t_end()).max(1.0) * 1.02;
        let band_h = 120 + 44 * rows.len().max(1) as u32;
        let (top, bottom) = root.split_vertically(band_h);
        let (top_plot, top_side) = top.split_horizontally(920);
        let (bottom_plot, bottom_side) = bottom.split_horizontally(920);

        let n = rows.len().max(1);
        let mut chart = ChartBuilder::on(&top_plot)
            .caption(
                match self.left_out() {
                    0 => format!("Presence states over time (first PING at {})", utc(t0)),
                    n => format!(
                        "Presence states over time (first PING at {}; {n} peers with fewer changes not drawn)",
                        utc(t0)
                    ),
                },
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(100)
            .build_cartesian_2d(0.0..x_max, 0.0..n as f64)?;
        let labels: Vec<String> = rows.iter().map(|r| short_label(&r.peer)).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                // Row i occupies [n-1-i, n-i); label at its middle.
                let k = (n as f64 - y - 0.5).round();
                if ((n as f64 - y - 0.5) - k).abs() < 0.01 && k >= 0.0 {
                    labels.get(k as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("time since the first PING (s)")
            .x_label_formatter(&super::seconds_label)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, row) in rows.iter().enumerate() {
            let y0 = (n - 1 - i) as f64 + 0.15;
            let y1 = (n - i) as f64 - 0.15;
            chart.draw_series(row.bands.iter().map(|&(a, b, s)| {
                Rectangle::new([(secs(a), y0), (secs(b), y1)], state_color(s).filled())
            }))?;
        }
        let entries: Vec<(String, LegendMark)> = STATES
            .iter()
            .map(|s| (s.to_string(), LegendMark::Box(state_color(s))))
            .collect();
        draw_legend(&top_side.margin(40, 0, 0, 0), "state", &entries)?;

        // Staleness: one dot per (change, watcher) at the change's time.
        let changes = self.real_changes();
        let watchers = self.watchers();
        let max_delay = self.max_delay_s().max(MIN_DELAY_AXIS_S);
        let mut chart = ChartBuilder::on(&bottom_plot)
            .caption(
                "Staleness: time until each buddy learned a change (s)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(100)
            .build_cartesian_2d(0.0..x_max, 0.0..self.delay_axis_max_s())?;
        chart
            .configure_mesh()
            .x_desc("time of the change: first PONG showing it (s)")
            .x_label_formatter(&super::seconds_label)
            .y_desc("delay until learned (s)")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let f = ("sans-serif", 13).into_font();
        for (k, c) in changes.iter().enumerate() {
            let x = secs(c.time_unix_ns);
            let top = c
                .learned_by
                .iter()
                .map(|l| l.delay_ms / 1e3)
                .fold(0.0, f64::max);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, top)],
                state_color(c.to).stroke_width(2),
            )))?;
            chart.draw_series(c.learned_by.iter().map(|l| {
                let w = watchers.iter().position(|p| *p == l.poller).unwrap_or(0);
                Circle::new((x, l.delay_ms / 1e3), 5, learner_color(w).filled())
            }))?;
            // Stagger labels of neighbouring changes, within the room above the data.
            let y = top + max_delay * (0.04 + 0.12 * (k % 2) as f64);
            chart.draw_series(std::iter::once(Text::new(
                change_text(c),
                (x, y),
                f.clone()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
        }
        let entries: Vec<(String, LegendMark)> = watchers
            .iter()
            .enumerate()
            .map(|(i, w)| (short_label(w), LegendMark::Box(learner_color(i))))
            .collect();
        draw_legend(&bottom_side.margin(40, 0, 0, 0), "learned by", &entries)?;
        Ok(())
    }
}
