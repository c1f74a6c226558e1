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
//!
//! Over 600 lines with its tests (each exposition format, and every declared counter
//! found in its family's place); the exposition itself is one snapshot walk.

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
    /// Where [`Exposition::in_order`] puts it ([`Family::order`]).
    order: u16,
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
        self.family_at(u16::MAX, name, kind, help)
    }

    /// Opens a family that [`in_order`](Self::in_order) puts at `order` among the
    /// declared counter families ([`observer_core::counters::Family::order`]).
    pub fn family_at(
        &mut self,
        order: u16,
        name: &'static str,
        kind: MetricType,
        help: &'static str,
    ) -> FamilyBuilder<'_> {
        debug_assert!((kind == MetricType::Counter) == name.ends_with("_total"));
        self.families.push(Family {
            name,
            help,
            kind,
            order,
            samples: Vec::new(),
        });
        let last = self.families.len() - 1;
        FamilyBuilder(&mut self.families[last])
    }

    /// Adds each exported counter of a group (its [`iter`](observer_core::counters))
    /// to the family its declaration names, opening the family if it is not yet here.
    /// `of_group` is the label value of the counters declared `of_group` (the source's
    /// name).
    pub fn counters<C: 'static>(
        &mut self,
        group: impl Iterator<Item = (&'static observer_core::counters::Counter<C>, u64)>,
        of_group: &str,
    ) {
        use observer_core::counters::Sample as S;
        for (c, n) in group {
            let Some(m) = c.metric else { continue };
            let value = match m.sample {
                S::Labelled(v) => Some(v),
                S::Alone => None,
                S::OfGroup => Some(of_group),
            };
            // A labelled sample of an unlabelled family would be a second unlabelled one.
            debug_assert_eq!(m.family.label.is_some(), value.is_some(), "{}", c.key);
            let labels: Vec<(&'static str, &str)> = m.family.label.zip(value).into_iter().collect();
            let open = self.families.iter().position(|f| f.name == m.family.name);
            let i = match open {
                Some(i) => i,
                None => {
                    self.family_at(
                        m.family.order,
                        m.family.name,
                        MetricType::Counter,
                        m.family.help,
                    );
                    self.families.len() - 1
                }
            };
            FamilyBuilder(&mut self.families[i]).counter(&labels, n);
        }
    }

    /// The families by their order (those of equal order as they were opened).
    pub fn in_order(mut self) -> Exposition {
        self.families.sort_by_key(|f| f.order);
        self
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
    /// When the pair's latest transaction ended (its start while open).
    last_ns: u64,
}

use observer_core::counters::{by, of_group, Family as CounterFamily};

const SOURCE_EVENTS: CounterFamily = CounterFamily {
    name: "observer_source_events_total",
    help: "Events delivered by the capture source.",
    label: Some("source"),
    order: 160,
};
const SOURCE_BYTES: CounterFamily = CounterFamily {
    name: "observer_source_bytes_total",
    help: "Bytes delivered by the capture source.",
    label: Some("source"),
    order: 170,
};
const DROPS: CounterFamily = CounterFamily {
    name: "observer_drops_total",
    help: "Packets lost before analysis, by where.",
    label: Some("where"),
    order: 180,
};
const SOURCE_CLOCK_STEPS: CounterFamily = CounterFamily {
    name: "observer_source_clock_steps_total",
    help: "Times the wall clock was set while the source ran (its stamps follow it; an RTT spanning a step includes it).",
    label: Some("source"),
    order: 195,
};
const TAP_FLOW_MARKS: CounterFamily = CounterFamily {
    name: "observer_tap_flow_marks_total",
    help: "Flows let through the kernel tap by content, by outcome (failed: not seen beyond the configured ports).",
    label: Some("outcome"),
    order: 190,
};

observer_core::counters! {
    /// What the source itself counts (eBPF events and kernel drops, or libpcap's stats).
    /// The JSON summary, the live report and the metrics iterate it.
    #[derive(Default, Clone, Debug)]
    pub struct SourceCounters {
        events: "events", metric: of_group(&SOURCE_EVENTS), anomaly: false, merge: Sum;
        bytes: "bytes", metric: of_group(&SOURCE_BYTES), anomaly: false, merge: Sum;
        kernel_drops: "kernel drops", metric: by(&DROPS, "kernel"), anomaly: true, merge: Sum;
        userspace_drops: "user-space drops", metric: by(&DROPS, "userspace"), anomaly: true, merge: Sum;
        /// eBPF: marks that let a flow through the in-kernel filter by its content (the
        /// kernel's at a welcome line, both directions at once; user space's, one per
        /// direction, when it recognises a flow).
        flows_marked: "flows marked", metric: by(&TAP_FLOW_MARKS, "marked"), anomaly: false, merge: Sum;
        /// eBPF: marks that failed (an update refused): that traffic beyond the
        /// configured ports may not be seen. Non-zero means the tap may be blinded; the
        /// summary warns on its own line.
        flow_marks_failed: "flow marks failed", metric: by(&TAP_FLOW_MARKS, "failed"), anomaly: false, merge: Sum;
        /// eBPF: times the wall clock was set during the run. The tap's stamps follow it
        /// (as a capture's do): an RTT that spans a step includes it.
        clock_steps: "wall clock steps", metric: of_group(&SOURCE_CLOCK_STEPS), anomaly: false, merge: Sum;
    }
    labels {
        /// Which source: its name in the metrics' `source` label and the JSON's `kind`.
        source: &'static str,
    }
}

const PAIRS_EXPIRED: CounterFamily = CounterFamily {
    name: "observer_pairs_expired_total",
    help: "Pairs dropped from the per-pair views (series, summary) after idling past the horizon, by view.",
    label: Some("view"),
    order: 200,
};

observer_core::counters! {
    /// Per-pair state a live run let go (`--pair-horizon`); the whole-run totals keep
    /// those pairs' transactions.
    #[derive(Default, Clone, Debug)]
    pub struct PairExpiry {
        /// Pairs whose `observer_transactions_total` and `observer_rtt_seconds` series
        /// were dropped.
        series: "pairs expired from the metrics", metric: by(&PAIRS_EXPIRED, "metrics"), anomaly: false, merge: Sum;
        /// Pairs dropped from the summary's per-pair table.
        summary: "pairs expired from the summary", metric: by(&PAIRS_EXPIRED, "summary"), anomaly: false, merge: Sum;
    }
}

#[derive(Default, Debug)]
pub struct LiveMetrics {
    pairs: BTreeMap<(String, String), PairMetrics>,
    pub expiry: PairExpiry,
}

fn label(name: Option<&str>, id: &Option<crate::jxta::PeerId>) -> String {
    match (name, id) {
        (Some(n), _) => n.to_owned(),
        (None, Some(id)) => id.to_string(),
        (None, None) => "unknown".into(),
    }
}

/// One presence series per `peer` label: a peer restarted under a new ID keeps its
/// name, and two series with the same labels would make the scrape invalid. The
/// label's state is the one its latest PONG carried, whichever ID sent it.
fn presence_series(
    current: Vec<&observer_core::transaction::PeerPresence>,
) -> BTreeMap<String, &observer_core::transaction::PeerPresence> {
    let mut series: BTreeMap<String, &observer_core::transaction::PeerPresence> = BTreeMap::new();
    for p in current {
        let slot = series
            .entry(label(p.name.as_deref(), &p.peer_id))
            .or_insert(p);
        if p.last_seen > slot.last_seen {
            *slot = p;
        }
    }
    series
}

impl LiveMetrics {
    pub fn record(&mut self, t: &Transaction) {
        let key = (
            label(t.poller_name.as_deref(), &t.poller_id),
            label(t.receiver_name.as_deref(), &t.receiver_id),
        );
        let m = self.pairs.entry(key).or_default();
        let idx = match t.status {
            TxStatus::Ok => 0,
            TxStatus::Timeout => 1,
            TxStatus::Open => 2,
        };
        m.by_status[idx] += 1;
        m.last_ns = m.last_ns.max(t.stop.unwrap_or(t.start));
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

    /// Drops the series of the pairs whose latest transaction ended before `before`
    /// (as Prometheus exporters drop idle series: a gateway meets pairs by the hundred
    /// thousand); counted in `expiry.series`. A pair seen again starts from zero, which
    /// Prometheus reads as a counter reset.
    pub fn expire_idle(&mut self, before: u64) -> u64 {
        let held = self.pairs.len();
        self.pairs.retain(|_, m| m.last_ns >= before);
        let dropped = (held - self.pairs.len()) as u64;
        self.expiry.series += dropped;
        dropped
    }

    /// Pair series held now.
    pub fn pairs_held(&self) -> usize {
        self.pairs.len()
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
        // The counter groups' families, each in the place its declaration gives; the
        // packet counters before the flow counters, which share the dropped family.
        e.counters(jxta.iter(), "");
        e.counters(jxta.http.iter(), "");
        e.counters(matcher.anomalies().iter(), "");
        e.counters(matcher.expiry().iter(), "");
        e.counters(packets.iter(), "");
        e.counters(packets.reorder.iter(), "");
        e.counters(flows.iter(), "");
        e.counters(flows.reassembly.iter(), "");
        e.counters(jim.iter(), "");
        e.counters(source.iter(), source.source);
        e.counters(self.expiry.iter(), "");
        // The families written here take the places between (`order`).
        let mut f = e.family_at(
            10,
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
        let mut f = e.family_at(
            20,
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
        let mut f = e.family_at(
            30,
            "observer_presence_state",
            Gauge,
            "1 for each peer's current presence state (from its latest PONG).",
        );
        for (name, p) in presence_series(matcher.presence().current()) {
            for state in ["online", "busy", "away", "offline"] {
                let v = i64::from(p.status.as_str() == state);
                f.gauge(&[("peer", &name), ("state", state)], v);
            }
        }
        let o = matcher.overhead();
        e.family_at(
            40,
            "observer_correlator_bytes_total",
            Counter,
            "Bytes of <correlator> elements seen, by message kind.",
        )
        .counter(&[("kind", "ping")], o.ping.correlator_bytes)
        .counter(&[("kind", "pong")], o.pong.correlator_bytes);
        e.family_at(
            50,
            "observer_jim_messages_total",
            Counter,
            "PING and PONG documents seen.",
        )
        .counter(&[("kind", "ping")], o.ping.count)
        .counter(&[("kind", "pong")], o.pong.count);
        let mut f = e.family_at(
            80,
            "observer_jxta_malformed_total",
            Counter,
            "JXTA wire data that could not be decoded, by kind (http_* for the HTTP transport).",
        );
        for (k, n) in &jxta.malformed {
            f.counter(&[("kind", k.label())], *n);
        }
        e.family_at(250, "observer_active_flows", Gauge, "TCP flows tracked.")
            .gauge(&[], i64::try_from(active_flows).unwrap_or(i64::MAX));
        e.in_order()
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

    /// A pair idle past the horizon loses its series and is counted; a busy one keeps
    /// its counts.
    #[test]
    fn a_restarted_peer_has_one_presence_series_with_its_latest_state() {
        use observer_core::jim::Status;
        use observer_core::transaction::PeerPresence;
        let peer = |uuid: &str, name: &str, status, last_seen| PeerPresence {
            peer_id: crate::jxta::PeerId::parse(&format!(
                "urn:jxta:uuid-59616261646162614E50472050325033{uuid}03"
            )),
            name: Some(name.into()),
            status,
            since: 0,
            last_seen,
        };
        let uuid = |c: char| c.to_string().repeat(32);
        // alice's second run (another ID) is the later one, whatever the IDs' order.
        let (first, second) = (uuid('F'), uuid('A'));
        let peers = [
            peer(&first, "alice", Status::Online, 10),
            peer(&second, "alice", Status::Away, 20),
            peer(&uuid('B'), "bob", Status::Busy, 5),
        ];
        assert!(peers.iter().all(|p| p.peer_id.is_some()));
        let series = presence_series(peers.iter().collect());
        let states: Vec<(&str, Status)> = series
            .iter()
            .map(|(name, p)| (name.as_str(), p.status))
            .collect();
        assert_eq!(states, [("alice", Status::Away), ("bob", Status::Busy)]);
    }

    #[test]
    fn idle_pair_series_expire() {
        let mut m = LiveMetrics::default();
        let mut old = tx("alice", "bob", TxStatus::Ok, 300);
        old.start = 0;
        old.stop = Some(300_000_000);
        m.record(&old);
        let mut recent = tx("carol", "dave", TxStatus::Ok, 300);
        recent.start = 60_000_000_000;
        recent.stop = Some(60_300_000_000);
        m.record(&recent);
        assert_eq!(m.expire_idle(300_000_000), 0);
        assert_eq!(m.expire_idle(300_000_001), 1);
        assert_eq!((m.pairs_held(), m.expiry.series), (1, 1));
        let matcher = Matcher::new(MatcherConfig::default());
        let text = m.render(
            &matcher,
            &PacketStats::default(),
            &FlowStats::default(),
            &JxtaStats::default(),
            &JimStats::default(),
            0,
            &SourceCounters::default(),
        );
        assert!(!text.contains("poller=\"alice\""), "{text}");
        assert!(text.contains(
            "observer_transactions_total{poller=\"carol\",receiver=\"dave\",status=\"ok\"} 1"
        ));
        assert!(
            text.contains("observer_pairs_expired_total{view=\"metrics\"} 1"),
            "{text}"
        );
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

    use observer_core::counters::set_distinct as fill;

    /// The sample line each exported counter of a group must have, with its family's
    /// order.
    fn expected<C: 'static>(
        group: impl Iterator<Item = (&'static observer_core::counters::Counter<C>, u64)>,
        of_group: &str,
        out: &mut Vec<(u16, &'static str, String)>,
    ) {
        use observer_core::counters::Sample;
        for (c, n) in group {
            let Some(m) = c.metric else { continue };
            let name = m.family.name;
            let line = match (m.family.label, m.sample) {
                (Some(l), Sample::Labelled(v)) => format!("{name}{{{l}=\"{v}\"}} {n}"),
                (Some(l), Sample::OfGroup) => format!("{name}{{{l}=\"{of_group}\"}} {n}"),
                _ => format!("{name} {n}"),
            };
            out.push((m.family.order, name, line));
        }
    }

    #[test]
    fn every_declared_counter_is_exported_in_its_familys_place() {
        // Distinct values, so that a counter exported under another's name shows.
        let mut n = 100;
        let mut packets = PacketStats::default();
        fill(&mut packets, PacketStats::ALL, &mut n);
        fill(
            &mut packets.reorder,
            observer_core::capture::ReorderStats::ALL,
            &mut n,
        );
        let mut flows = FlowStats::default();
        fill(&mut flows, FlowStats::ALL, &mut n);
        fill(
            &mut flows.reassembly,
            observer_core::conntrack::ReassemblyStats::ALL,
            &mut n,
        );
        let mut jxta = JxtaStats::default();
        fill(&mut jxta, JxtaStats::ALL, &mut n);
        fill(&mut jxta.http, observer_core::jxta::HttpStats::ALL, &mut n);
        let mut jim = JimStats::default();
        fill(&mut jim, JimStats::ALL, &mut n);
        let mut source = SourceCounters {
            source: "ebpf",
            ..SourceCounters::default()
        };
        fill(&mut source, SourceCounters::ALL, &mut n);
        let mut live = LiveMetrics::default();
        fill(&mut live.expiry, PairExpiry::ALL, &mut n);
        let matcher = Matcher::new(MatcherConfig::default());
        let text = live.render(&matcher, &packets, &flows, &jxta, &jim, 7, &source);
        let mut want = Vec::new();
        expected(packets.iter(), "", &mut want);
        expected(packets.reorder.iter(), "", &mut want);
        expected(flows.iter(), "", &mut want);
        expected(flows.reassembly.iter(), "", &mut want);
        expected(jxta.iter(), "", &mut want);
        expected(jxta.http.iter(), "", &mut want);
        expected(jim.iter(), "", &mut want);
        expected(matcher.anomalies().iter(), "", &mut want);
        expected(matcher.expiry().iter(), "", &mut want);
        expected(source.iter(), source.source, &mut want);
        expected(live.expiry.iter(), "", &mut want);
        assert!(want.len() > 30, "{want:?}");
        for (_, _, line) in &want {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // The families come out in their declared order, the written ones between.
        let mut places: Vec<(u16, usize)> = want
            .iter()
            .map(|(order, name, _)| {
                let pos = text.find(&format!("# HELP {name} "));
                assert!(pos.is_some(), "{name}: no family in\n{text}");
                (*order, pos.unwrap_or(0))
            })
            .collect();
        places.sort();
        assert!(places.windows(2).all(|w| w[0].1 <= w[1].1), "{places:?}");
        let first_declared = places.first().map(|p| p.1);
        assert!(text.find("# HELP observer_jim_messages_total ") < first_declared);
        assert!(text.find("# HELP observer_active_flows ") > places.last().map(|p| p.1));
    }
}
