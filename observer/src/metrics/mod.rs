//! Live metrics in the Prometheus text exposition format: the study's JMX agent, in
//! today's form. [`LiveMetrics`] accumulates finished transactions; `render` writes the
//! exposition with the pipeline's counters; [`http`] serves it.

pub mod http;
pub mod window;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::conntrack::FlowStats;
use crate::jim::JimStats;
use crate::jxta::JxtaStats;
use crate::packet::PacketStats;
use crate::transaction::{Matcher, Transaction, TxStatus};

/// Upper bounds (seconds) of the RTT histogram buckets: fine below a second, where LAN
/// round trips sit, and up to the default 10 s timeout.
pub const RTT_BUCKETS_S: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
];

#[derive(Default, Clone, Debug)]
struct PairMetrics {
    by_status: [u64; 3],
    buckets: [u64; RTT_BUCKETS_S.len()],
    rtt_sum_s: f64,
    rtt_count: u64,
}

/// What the source itself counts (eBPF events and kernel drops, or libpcap's stats).
#[derive(Default, Clone, Debug)]
pub struct SourceCounters {
    pub source: &'static str,
    pub events: u64,
    pub bytes: u64,
    pub kernel_drops: u64,
    pub userspace_drops: u64,
    /// eBPF: marks that let a flow through the in-kernel filter by its content (the
    /// kernel's at a welcome line, both directions at once; user space's, one per
    /// direction, when it recognises a flow).
    pub flows_marked: u64,
    /// eBPF: marks that failed (an update refused): that traffic beyond the
    /// configured ports may not be seen. Non-zero means the tap may be blinded.
    pub flow_marks_failed: u64,
}

#[derive(Default, Debug)]
pub struct LiveMetrics {
    pairs: BTreeMap<(String, String), PairMetrics>,
}

fn label(name: &Option<String>, id: &Option<crate::jxta::PeerId>) -> String {
    match (name, id) {
        (Some(n), _) => n.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => "unknown".into(),
    }
}

impl LiveMetrics {
    pub fn record(&mut self, t: &Transaction) {
        let key = (
            label(&t.poller_name, &t.poller_id),
            label(&t.receiver_name, &t.receiver_id),
        );
        let m = self.pairs.entry(key).or_default();
        let idx = match t.status {
            TxStatus::Ok => 0,
            TxStatus::Timeout => 1,
            TxStatus::Open => 2,
        };
        m.by_status[idx] += 1;
        if let Some(ns) = t.rtt_ns() {
            let s = ns as f64 / 1e9;
            for (i, le) in RTT_BUCKETS_S.iter().enumerate() {
                if s <= *le {
                    m.buckets[i] += 1;
                }
            }
            m.rtt_sum_s += s;
            m.rtt_count += 1;
        }
    }

    /// The whole exposition.
    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &self,
        matcher: &Matcher,
        packets: &PacketStats,
        flows: &FlowStats,
        jxta: &JxtaStats,
        jim: &JimStats,
        active_flows: usize,
        source: &SourceCounters,
    ) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "observer_transactions_total",
            "counter",
            "PING/PONG transactions finished, by pair and status.",
        );
        for ((p, r), m) in &self.pairs {
            for (i, status) in ["ok", "timeout", "open"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "observer_transactions_total{{poller=\"{}\",receiver=\"{}\",status=\"{status}\"}} {}",
                    esc(p),
                    esc(r),
                    m.by_status[i]
                );
            }
        }
        header(
            &mut out,
            "observer_rtt_seconds",
            "histogram",
            "Presence round-trip time of ok transactions, by pair.",
        );
        for ((p, r), m) in &self.pairs {
            let l = format!("poller=\"{}\",receiver=\"{}\"", esc(p), esc(r));
            for (i, le) in RTT_BUCKETS_S.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "observer_rtt_seconds_bucket{{{l},le=\"{le}\"}} {}",
                    m.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "observer_rtt_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                m.rtt_count
            );
            let _ = writeln!(out, "observer_rtt_seconds_sum{{{l}}} {}", m.rtt_sum_s);
            let _ = writeln!(out, "observer_rtt_seconds_count{{{l}}} {}", m.rtt_count);
        }
        header(
            &mut out,
            "observer_presence_state",
            "gauge",
            "1 for each peer's current presence state (from its latest PONG).",
        );
        for p in matcher.presence().current() {
            let name = label(&p.name, &p.peer_id);
            for state in ["online", "busy", "away", "offline"] {
                let v = u8::from(p.status.as_str() == state);
                let _ = writeln!(
                    out,
                    "observer_presence_state{{peer=\"{}\",state=\"{state}\"}} {v}",
                    esc(&name)
                );
            }
        }
        let o = matcher.overhead();
        header(
            &mut out,
            "observer_correlator_bytes_total",
            "counter",
            "Bytes of <correlator> elements seen, by message kind.",
        );
        let _ = writeln!(
            out,
            "observer_correlator_bytes_total{{kind=\"ping\"}} {}",
            o.ping.correlator_bytes
        );
        let _ = writeln!(
            out,
            "observer_correlator_bytes_total{{kind=\"pong\"}} {}",
            o.pong.correlator_bytes
        );
        header(
            &mut out,
            "observer_jim_messages_total",
            "counter",
            "PING and PONG documents seen.",
        );
        let _ = writeln!(
            out,
            "observer_jim_messages_total{{kind=\"ping\"}} {}",
            o.ping.count
        );
        let _ = writeln!(
            out,
            "observer_jim_messages_total{{kind=\"pong\"}} {}",
            o.pong.count
        );
        header(
            &mut out,
            "observer_jxta_messages_total",
            "counter",
            "JXTA messages decoded, by transport.",
        );
        let _ = writeln!(
            out,
            "observer_jxta_messages_total{{transport=\"tcp\"}} {}",
            jxta.messages_tcp
        );
        let _ = writeln!(
            out,
            "observer_jxta_messages_total{{transport=\"udp\"}} {}",
            jxta.messages_udp
        );
        header(
            &mut out,
            "observer_jxta_http_total",
            "counter",
            "JXTA's HTTP transport: requests, responses, bodies of type application/x-jxta-msg (and of those chunked), messages decoded from them (also counted under transport tcp).",
        );
        let h = &jxta.http;
        for (kind, n) in [
            ("requests", h.requests),
            ("responses", h.responses),
            ("jxta_bodies", h.jxta_bodies),
            ("chunked_bodies", h.chunked_bodies),
            ("messages", h.messages),
        ] {
            let _ = writeln!(out, "observer_jxta_http_total{{kind=\"{kind}\"}} {n}");
        }
        header(
            &mut out,
            "observer_jxta_malformed_total",
            "counter",
            "JXTA wire data that could not be decoded, by kind (http_* for the HTTP transport).",
        );
        for (kind, n) in &jxta.malformed {
            let _ = writeln!(
                out,
                "observer_jxta_malformed_total{{kind=\"{}\"}} {n}",
                esc(kind)
            );
        }
        let a = matcher.anomalies();
        header(
            &mut out,
            "observer_anomalies_total",
            "counter",
            "PING/PONG anomalies (never transactions), by kind.",
        );
        for (kind, n) in [
            ("duplicate_pong", a.duplicate_pong),
            ("unknown_correlator", a.unknown_correlator),
            ("unsolicited_pong", a.unsolicited_pong),
            ("pong_without_ping", a.pong_without_ping),
            ("late_pong", a.late_pong),
            ("malformed_document", a.malformed_documents),
            ("evicted_outstanding", a.evicted_outstanding),
            ("clock_step", a.clock_steps),
        ] {
            let _ = writeln!(out, "observer_anomalies_total{{kind=\"{kind}\"}} {n}");
        }
        header(
            &mut out,
            "observer_packets_total",
            "counter",
            "Frames handed to the pipeline.",
        );
        let _ = writeln!(out, "observer_packets_total {}", packets.frames);
        header(
            &mut out,
            "observer_reorder_frames_total",
            "counter",
            "Frames put back in time order (reordered), later than the window (late, used as they came), or released before their window by the hold bound (forced).",
        );
        let r = &packets.reorder;
        for (kind, n) in [
            ("reordered", r.reordered_frames),
            ("late", r.late_frames),
            ("forced", r.forced_releases),
        ] {
            let _ = writeln!(out, "observer_reorder_frames_total{{kind=\"{kind}\"}} {n}");
        }
        header(
            &mut out,
            "observer_packets_dropped_total",
            "counter",
            "Packets the receiving host would drop, dropped here too, by reason.",
        );
        for (reason, n) in [
            ("bad_ip_length", packets.bad_ip_length),
            ("bad_ip_checksum", packets.bad_ip_checksum),
            ("bad_tcp_checksum", flows.bad_tcp_checksum),
            ("data_without_ack", flows.data_without_ack),
        ] {
            let _ = writeln!(
                out,
                "observer_packets_dropped_total{{reason=\"{reason}\"}} {n}"
            );
        }
        header(
            &mut out,
            "observer_jim_oversized_documents_total",
            "counter",
            "JIM documents larger than --max-document, not decoded.",
        );
        let _ = writeln!(
            out,
            "observer_jim_oversized_documents_total {}",
            jim.oversized_documents
        );
        header(
            &mut out,
            "observer_tcp_conflicting_overlap_total",
            "counter",
            "TCP segments overlapping earlier bytes with different contents (first copy kept).",
        );
        let _ = writeln!(
            out,
            "observer_tcp_conflicting_overlap_total {}",
            flows.reassembly.conflicting_overlap
        );
        header(
            &mut out,
            "observer_checksum_offloaded_directions_total",
            "counter",
            "TCP flow directions whose checksums are offloaded (filled in after capture), not verified.",
        );
        let _ = writeln!(
            out,
            "observer_checksum_offloaded_directions_total {}",
            flows.checksum_offloaded_directions
        );
        header(
            &mut out,
            "observer_source_events_total",
            "counter",
            "Events delivered by the capture source.",
        );
        let _ = writeln!(
            out,
            "observer_source_events_total{{source=\"{}\"}} {}",
            source.source, source.events
        );
        header(
            &mut out,
            "observer_source_bytes_total",
            "counter",
            "Bytes delivered by the capture source.",
        );
        let _ = writeln!(
            out,
            "observer_source_bytes_total{{source=\"{}\"}} {}",
            source.source, source.bytes
        );
        header(
            &mut out,
            "observer_drops_total",
            "counter",
            "Packets lost before analysis, by where.",
        );
        let _ = writeln!(
            out,
            "observer_drops_total{{where=\"kernel\"}} {}",
            source.kernel_drops
        );
        let _ = writeln!(
            out,
            "observer_drops_total{{where=\"userspace\"}} {}",
            source.userspace_drops
        );
        header(
            &mut out,
            "observer_tap_flow_marks_total",
            "counter",
            "Flows let through the kernel tap by content, by outcome (failed: not seen beyond the configured ports).",
        );
        let _ = writeln!(
            out,
            "observer_tap_flow_marks_total{{outcome=\"marked\"}} {}",
            source.flows_marked
        );
        let _ = writeln!(
            out,
            "observer_tap_flow_marks_total{{outcome=\"failed\"}} {}",
            source.flow_marks_failed
        );
        header(
            &mut out,
            "observer_active_flows",
            "gauge",
            "TCP flows tracked.",
        );
        let _ = writeln!(out, "observer_active_flows {active_flows}");
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label value escaping per the exposition format (backslash, quote, newline); other
/// control characters from the wire are dropped so a hostile name cannot break lines.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::MatcherConfig;

    fn tx(p: &str, r: &str, status: TxStatus, rtt_ms: u64) -> Transaction {
        Transaction {
            start: 1_000,
            stop: (status != TxStatus::Open).then_some(1_000 + rtt_ms * 1_000_000),
            poller_name: Some(p.into()),
            poller_id: None,
            receiver_name: Some(r.into()),
            receiver_id: None,
            receiver_status: None,
            status,
            correlator: None,
            match_method: None,
            ping_bytes: 1,
            pong_bytes: None,
            correlator_overhead_bytes: 0,
            cause: Default::default(),
        }
    }

    #[test]
    fn histogram_and_counters() {
        let mut m = LiveMetrics::default();
        m.record(&tx("alice", "bob", TxStatus::Ok, 300));
        m.record(&tx("alice", "bob", TxStatus::Ok, 900));
        m.record(&tx("alice", "bob", TxStatus::Timeout, 10_000));
        m.record(&tx("bob", "a\"l\nice\u{1b}", TxStatus::Open, 0));
        let matcher = Matcher::new(MatcherConfig::default());
        let mut packets = PacketStats::default();
        packets.reorder.late_frames = 4;
        let text = m.render(
            &matcher,
            &packets,
            &FlowStats::default(),
            &JxtaStats::default(),
            &JimStats::default(),
            3,
            &SourceCounters {
                source: "pcap",
                ..SourceCounters::default()
            },
        );
        assert!(text.contains(
            "observer_transactions_total{poller=\"alice\",receiver=\"bob\",status=\"ok\"} 2"
        ));
        assert!(text.contains(
            "observer_transactions_total{poller=\"alice\",receiver=\"bob\",status=\"timeout\"} 1"
        ));
        assert!(text.contains(
            "observer_rtt_seconds_bucket{poller=\"alice\",receiver=\"bob\",le=\"0.5\"} 1"
        ));
        assert!(text
            .contains("observer_rtt_seconds_bucket{poller=\"alice\",receiver=\"bob\",le=\"1\"} 2"));
        assert!(text.contains("observer_rtt_seconds_count{poller=\"alice\",receiver=\"bob\"} 2"));
        assert!(text.contains("observer_rtt_seconds_sum{poller=\"alice\",receiver=\"bob\"} 1.2"));
        assert!(text.contains("receiver=\"a\\\"l\\nice\",status=\"open\"} 1"));
        assert!(text.contains("observer_active_flows 3"));
        assert!(text.contains("observer_reorder_frames_total{kind=\"late\"} 4"));
        assert!(text.contains("observer_anomalies_total{kind=\"clock_step\"} 0"));
        assert!(text.contains("observer_packets_dropped_total{reason=\"bad_tcp_checksum\"} 0"));
        assert!(text.contains("observer_tcp_conflicting_overlap_total 0"));
        assert!(text.contains("observer_jim_oversized_documents_total 0"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(
                line.rsplit_once(' ').map(|(_, v)| v.parse::<f64>().is_ok()),
                Some(true),
                "{line}"
            );
        }
    }
}
