//! Live metrics: the study's JMX agent, in today's form. [`LiveMetrics`] accumulates
//! finished transactions; `exposition` takes a snapshot of them with the pipeline's
//! counters; [`http`] serves it.
//!
//! The snapshot is encoded by the official `prometheus-client` crate, in the format the
//! scraper asks for in its `Accept` header ([`Format::negotiate`]): OpenMetrics 1.0
//! (`prometheus_client::encoding::text`) or the classic Prometheus text format 0.0.4
//! (`prometheus_client::encoding::prometheus_text`). The values are counts the pipeline
//! already keeps (plain `u64`s on its own thread, no atomics per packet), so they enter
//! the crate's registry as a [`Collector`] over the snapshot rather than as live
//! `Counter`s.

pub mod http;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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

/// The two text formats a scraper can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The classic Prometheus text format, 0.0.4: what a scraper gets unless it asks
    /// for OpenMetrics (curl, older Prometheus, the default of most tools).
    Prometheus,
}

/// `Content-Type` of OpenMetrics text 1.0 (the version `prometheus-client` writes).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format an `Accept` header prefers: the acceptable media range with the
    /// highest `q` (the first of equals), OpenMetrics for `application/openmetrics-text`
    /// (of no version or 1.0.0), the classic format for `text/plain`, `text/*` and
    /// `*/*`. With no header, or none of these acceptable, the classic format: a
    /// scraper that cannot say what it wants gets what every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f64, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0;
            let mut version = None;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse::<f64>().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            let format = match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    Format::OpenMetrics
                }
                "text/plain" | "text/*" | "*/*" => Format::Prometheus,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Prometheus, |(_, f)| f)
    }
}

/// One value of a family.
#[derive(Clone, Debug)]
enum Value {
    Counter(u64),
    CounterF64(f64),
    Gauge(i64),
    GaugeF64(f64),
    /// Per-bucket (not cumulative) counts, the last bucket's bound +Inf.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Clone, Debug)]
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: Value,
}

#[derive(Clone, Debug)]
struct Family {
    /// The name as a scraper sees it (counters with their `_total`).
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<Sample>,
}

/// A snapshot of every metric, ready to be encoded in either format. Cheap to share:
/// the server thread encodes it per scrape while the pipeline builds the next one.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

/// Adds samples to the family [`Exposition::family`] opened.
pub struct FamilyBuilder<'a>(&'a mut Family);

impl FamilyBuilder<'_> {
    pub fn counter(&mut self, labels: &[(&'static str, &str)], v: u64) -> &mut Self {
        self.push(labels, Value::Counter(v))
    }

    pub fn counter_f64(&mut self, labels: &[(&'static str, &str)], v: f64) -> &mut Self {
        self.push(labels, Value::CounterF64(v))
    }

    /// `buckets`: each bound with the count in that bucket alone (not cumulative), the
    /// last bound +Inf; the encoders accumulate them.
    pub fn histogram(
        &mut self,
        labels: &[(&'static str, &str)],
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    ) -> &mut Self {
        self.push(
            labels,
            Value::Histogram {
                sum,
                count,
                buckets,
            },
        )
    }

    pub fn gauge(&mut self, labels: &[(&'static str, &str)], v: i64) -> &mut Self {
        self.push(labels, Value::Gauge(v))
    }

    pub fn gauge_f64(&mut self, labels: &[(&'static str, &str)], v: f64) -> &mut Self {
        self.push(labels, Value::GaugeF64(v))
    }

    fn push(&mut self, labels: &[(&'static str, &str)], value: Value) -> &mut Self {
        let labels = labels.iter().map(|(k, v)| (*k, clean(v))).collect();
        self.0.samples.push(Sample { labels, value });
        self
    }
}

impl Exposition {
    /// Opens a family: `kind` is a counter (name ending in `_total`), a gauge or a
    /// histogram.
    pub fn family(
        &mut self,
        name: &'static str,
        kind: MetricType,
        help: &'static str,
    ) -> FamilyBuilder<'_> {
        debug_assert!((kind == MetricType::Counter) == name.ends_with("_total"));
        self.families.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        let last = self.families.len() - 1;
        FamilyBuilder(&mut self.families[last])
    }

    /// A counter family with one sample per `(label value, count)`, as the counter
    /// groups give them.
    pub fn labelled_counters<'v>(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: impl IntoIterator<Item = (&'v str, u64)>,
    ) {
        let mut f = self.family(name, MetricType::Counter, help);
        for (v, n) in values {
            f.counter(&[(label, v)], n);
        }
    }

    /// Adds the families of `other` after these.
    pub fn extend(&mut self, other: Exposition) {
        self.families.extend(other.families);
    }

    /// The text a scraper asking for `format` gets.
    pub fn encode(self: &Arc<Self>, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail, nor can the collector (it only writes).
        let _ = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
        };
        out
    }

    /// The classic text format (tests and tools that read the exposition as text).
    pub fn to_text(self) -> String {
        Arc::new(self).encode(Format::Prometheus)
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            // The encoders add `_total` to a counter's name themselves.
            let name = match f.kind {
                MetricType::Counter => f.name.strip_suffix("_total").unwrap_or(f.name),
                _ => f.name,
            };
            let mut metric = encoder.encode_descriptor(name, f.help, None, f.kind)?;
            for s in &f.samples {
                let mut m = metric.encode_family(&s.labels)?;
                match &s.value {
                    Value::Counter(v) => ConstCounter::new(*v).encode(m)?,
                    Value::CounterF64(v) => ConstCounter::new(*v).encode(m)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(m)?,
                    Value::GaugeF64(v) => ConstGauge::new(*v).encode(m)?,
                    Value::Histogram {
                        sum,
                        count,
                        buckets,
                    } => m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        *sum, *count, buckets, None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// Names come from the wire: control characters are dropped so that a hostile name
/// cannot break a line (the encoders escape backslash, quote and newline themselves).
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

#[derive(Default, Clone, Debug)]
struct PairMetrics {
    by_status: [u64; 3],
    /// Per bucket of [`RTT_BUCKETS_S`], then above the last bound.
    buckets: [u64; RTT_BUCKETS_S.len() + 1],
    rtt_sum_s: f64,
    rtt_count: u64,
}

observer_core::counters! {
    /// What the source itself counts (eBPF events and kernel drops, or libpcap's stats).
    /// The JSON summary and the live report iterate it; its metric families (by source,
    /// by where, by outcome) are written in `exposition`.
    #[derive(Default, Clone, Debug)]
    pub struct SourceCounters {
        events: "events", metric: None, anomaly: false, merge: Sum;
        bytes: "bytes", metric: None, anomaly: false, merge: Sum;
        kernel_drops: "kernel drops", metric: Some("kernel"), anomaly: true, merge: Sum;
        userspace_drops: "user-space drops", metric: Some("userspace"), anomaly: true, merge: Sum;
        /// eBPF: marks that let a flow through the in-kernel filter by its content (the
        /// kernel's at a welcome line, both directions at once; user space's, one per
        /// direction, when it recognises a flow).
        flows_marked: "flows marked", metric: Some("marked"), anomaly: false, merge: Sum;
        /// eBPF: marks that failed (an update refused): that traffic beyond the
        /// configured ports may not be seen. Non-zero means the tap may be blinded; the
        /// summary warns on its own line.
        flow_marks_failed: "flow marks failed", metric: Some("failed"), anomaly: false, merge: Sum;
    }
    labels {
        /// Which source: its name in the metrics' `source` label and the JSON's `kind`.
        source: &'static str,
    }
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

/// The label values of a counter group's exported counters.
fn group<'a, C: 'static>(
    it: impl Iterator<Item = (&'static observer_core::counters::Counter<C>, u64)> + 'a,
) -> impl Iterator<Item = (&'static str, u64)> + 'a {
    it.filter_map(|(c, n)| c.metric.map(|k| (k, n)))
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
            let i = RTT_BUCKETS_S
                .iter()
                .position(|le| s <= *le)
                .unwrap_or(RTT_BUCKETS_S.len());
            m.buckets[i] += 1;
            m.rtt_sum_s += s;
            m.rtt_count += 1;
        }
    }

    /// The whole exposition in the classic text format.
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
        self.exposition(matcher, packets, flows, jxta, jim, active_flows, source)
            .to_text()
    }

    /// A snapshot of every metric.
    #[allow(clippy::too_many_arguments)]
    pub fn exposition(
        &self,
        matcher: &Matcher,
        packets: &PacketStats,
        flows: &FlowStats,
        jxta: &JxtaStats,
        jim: &JimStats,
        active_flows: usize,
        source: &SourceCounters,
    ) -> Exposition {
        use MetricType::{Counter, Gauge, Histogram};
        let mut e = Exposition::default();
        let mut f = e.family(
            "observer_transactions_total",
            Counter,
            "PING/PONG transactions finished, by pair and status.",
        );
        for ((p, r), m) in &self.pairs {
            for (i, status) in ["ok", "timeout", "open"].iter().enumerate() {
                f.counter(
                    &[("poller", p), ("receiver", r), ("status", status)],
                    m.by_status[i],
                );
            }
        }
        let mut f = e.family(
            "observer_rtt_seconds",
            Histogram,
            "Presence round-trip time of ok transactions, by pair.",
        );
        for ((p, r), m) in &self.pairs {
            let buckets = RTT_BUCKETS_S
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(m.buckets)
                .collect();
            f.histogram(
                &[("poller", p), ("receiver", r)],
                m.rtt_sum_s,
                m.rtt_count,
                buckets,
            );
        }
        let mut f = e.family(
            "observer_presence_state",
            Gauge,
            "1 for each peer's current presence state (from its latest PONG).",
        );
        for p in matcher.presence().current() {
            let name = label(&p.name, &p.peer_id);
            for state in ["online", "busy", "away", "offline"] {
                let v = i64::from(p.status.as_str() == state);
                f.gauge(&[("peer", &name), ("state", state)], v);
            }
        }
        let o = matcher.overhead();
        e.family(
            "observer_correlator_bytes_total",
            Counter,
            "Bytes of <correlator> elements seen, by message kind.",
        )
        .counter(&[("kind", "ping")], o.ping.correlator_bytes)
        .counter(&[("kind", "pong")], o.pong.correlator_bytes);
        e.family(
            "observer_jim_messages_total",
            Counter,
            "PING and PONG documents seen.",
        )
        .counter(&[("kind", "ping")], o.ping.count)
        .counter(&[("kind", "pong")], o.pong.count);
        e.labelled_counters(
            "observer_jxta_messages_total",
            "JXTA messages decoded, by transport.",
            "transport",
            group(jxta.iter()),
        );
        e.labelled_counters(
            "observer_jxta_http_total",
            "JXTA's HTTP transport: requests, responses, bodies of type application/x-jxta-msg (and of those chunked), messages decoded from them (also counted under transport tcp).",
            "kind",
            group(jxta.http.iter()),
        );
        e.labelled_counters(
            "observer_jxta_malformed_total",
            "JXTA wire data that could not be decoded, by kind (http_* for the HTTP transport).",
            "kind",
            jxta.malformed.iter().map(|(k, n)| (k.label(), *n)),
        );
        e.labelled_counters(
            "observer_anomalies_total",
            "PING/PONG anomalies (never transactions), by kind.",
            "kind",
            group(matcher.anomalies().iter()),
        );
        e.family(
            "observer_packets_total",
            Counter,
            "Frames handed to the pipeline.",
        )
        .counter(&[], packets.frames);
        e.labelled_counters(
            "observer_reorder_frames_total",
            "Frames put back in time order (reordered), later than the window (late, used as they came), or released before their window by the hold bound (forced).",
            "kind",
            group(packets.reorder.iter()),
        );
        e.labelled_counters(
            "observer_packets_dropped_total",
            "Packets the receiving host would drop, dropped here too, by reason.",
            "reason",
            group(packets.iter()).chain(group(flows.iter())),
        );
        e.family(
            "observer_jim_oversized_documents_total",
            Counter,
            "JIM documents larger than --max-document, not decoded.",
        )
        .counter(&[], jim.oversized_documents);
        e.family(
            "observer_tcp_conflicting_overlap_total",
            Counter,
            "TCP segments overlapping earlier bytes with different contents (first copy kept).",
        )
        .counter(&[], flows.reassembly.conflicting_overlap);
        e.family(
            "observer_checksum_offloaded_directions_total",
            Counter,
            "TCP flow directions whose checksums are offloaded (filled in after capture), not verified.",
        )
        .counter(&[], flows.checksum_offloaded_directions);
        e.family(
            "observer_source_events_total",
            Counter,
            "Events delivered by the capture source.",
        )
        .counter(&[("source", source.source)], source.events);
        e.family(
            "observer_source_bytes_total",
            Counter,
            "Bytes delivered by the capture source.",
        )
        .counter(&[("source", source.source)], source.bytes);
        e.family(
            "observer_drops_total",
            Counter,
            "Packets lost before analysis, by where.",
        )
        .counter(&[("where", "kernel")], source.kernel_drops)
        .counter(&[("where", "userspace")], source.userspace_drops);
        e.family(
            "observer_tap_flow_marks_total",
            Counter,
            "Flows let through the kernel tap by content, by outcome (failed: not seen beyond the configured ports).",
        )
        .counter(&[("outcome", "marked")], source.flows_marked)
        .counter(&[("outcome", "failed")], source.flow_marks_failed);
        e.family("observer_active_flows", Gauge, "TCP flows tracked.")
            .gauge(&[], i64::try_from(active_flows).unwrap_or(i64::MAX));
        e
    }
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
