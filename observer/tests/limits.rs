//! State stays within the configured caps under floods: a million tiny TCP flows and a
//! million PINGs that are never answered; the oldest is evicted and every eviction is
//! counted.

use std::net::{Ipv4Addr, SocketAddr};

use observer::conntrack::{
    CloseReason, Delivery, Dir, FlowConfig, FlowHandler, FlowInfo, FlowTable, Interest, TcpSegment,
};
use observer::jim::{Document, Kind};
use observer::jxta::PeerId;
use observer::transaction::{Matcher, MatcherConfig, Sighting, Transaction, Transport, TxStatus};

struct Count {
    open: u64,
    closed: u64,
    /// First sighting of the newest flow the cap evicted.
    newest_evicted: u64,
    /// First sighting of the oldest flow still open at the end, and how many were.
    oldest_survivor: u64,
    survivors: u64,
}

impl FlowHandler for Count {
    type State = ();
    fn open(&mut self, _: &FlowInfo) {
        self.open += 1;
    }
    fn deliver(&mut self, _: &mut (), _: &FlowInfo, _: Dir, _: Delivery<'_>) -> Interest {
        Interest::Keep
    }
    fn close(&mut self, _: &mut (), info: &FlowInfo, reason: CloseReason) {
        self.closed += 1;
        match reason {
            CloseReason::Evicted => self.newest_evicted = self.newest_evicted.max(info.first_seen),
            CloseReason::EndOfInput => {
                self.oldest_survivor = self.oldest_survivor.min(info.first_seen);
                self.survivors += 1;
            }
            other => panic!("flow {} closed by {other:?}", info.id),
        }
    }
}

#[test]
fn a_million_tiny_flows_stay_within_the_flow_cap() {
    let cfg = FlowConfig {
        max_flows: 50_000,
        max_total_buffer: 1 << 20,
        ..FlowConfig::default()
    };
    let mut table: FlowTable<()> = FlowTable::new(cfg);
    let mut h = Count {
        open: 0,
        closed: 0,
        newest_evicted: 0,
        oldest_survivor: u64::MAX,
        survivors: 0,
    };
    let server = SocketAddr::from(([10, 0, 0, 1], 9701));
    for i in 0u32..1_000_000 {
        // SYN-flood-like: each from a new address and port, some with a byte of data
        // out of order so that they hold buffered bytes too.
        let src = SocketAddr::from((Ipv4Addr::from(0x0b00_0000 + i), 1024 + (i % 60_000) as u16));
        let seg = TcpSegment {
            ts: u64::from(i) * 1_000,
            src,
            dst: server,
            seq: i,
            // Data needs an ACK to be taken (a host drops it otherwise).
            ack: (i % 3 == 0).then_some(0),
            syn: i % 3 != 0,
            fin: false,
            rst: false,
            window: 65535,
            payload: if i % 3 == 0 { b"x" } else { b"" },
            checksum: observer::packet::Checksum::Valid,
            interface: 0,
        };
        table.segment(&seg, &mut h);
        assert!(table.active_flows() <= 50_000);
        assert!(table.buffered_bytes() <= 1 << 20);
    }
    assert_eq!(h.open, 1_000_000);
    assert!(
        table.stats.evicted_flow_cap >= 900_000,
        "{:?}",
        table.stats.evicted_flow_cap
    );
    assert_eq!(h.open - h.closed, table.active_flows() as u64);
    let active = table.active_flows() as u64;
    table.finish(&mut h);
    assert_eq!(h.open, h.closed, "every flow closed exactly once");
    // Each flow is seen once, flow i at i µs: the cap must have evicted the oldest, so
    // the survivors are exactly the newest `active` flows.
    assert_eq!(h.survivors, active);
    assert_eq!(h.oldest_survivor, (1_000_000 - active) * 1_000);
    assert!(
        h.newest_evicted < h.oldest_survivor,
        "evicted a flow first seen at {} while one from {} survived",
        h.newest_evicted,
        h.oldest_survivor
    );
}

fn ping(from: &PeerId, to: &PeerId, corr: u64, t: u64) -> (Document, Sighting) {
    let doc = Document {
        kind: Kind::Ping,
        name: Some("p".into()),
        correlator: Some(corr.to_string()),
        ..Document::default()
    };
    let s = Sighting {
        start: t,
        stop: t,
        src_peer: Some(from.clone()),
        dst_peer: Some(to.clone()),
        hop_src: None,
        hop_dst: None,
        framed_bytes: 1000,
        message_bytes: 940,
        transport: Transport::Tcp,
        wire: Default::default(),
    };
    (doc, s)
}

fn pong(from: &PeerId, to: &PeerId, corr: u64, t: u64) -> (Document, Sighting) {
    let (mut doc, mut s) = ping(from, to, corr, t);
    doc.kind = Kind::Pong;
    s.framed_bytes = 900;
    (doc, s)
}

#[test]
fn a_million_unanswered_pings_stay_within_the_matcher_caps() {
    let cfg = MatcherConfig {
        max_outstanding_per_pair: 1024,
        max_pairs: 10_000,
        ..MatcherConfig::default()
    };
    let mut m = Matcher::new(cfg);
    let mut out = Vec::new();
    let rx = PeerId::parse("urn:jxta:uuid-00000000000000000000000000000000FFFF03").expect("id");
    // Half from one poller to one buddy (the per-pair cap), half from a million
    // distinct pollers (the pair cap); all within one second, so nothing times out.
    let one = PeerId::parse("urn:jxta:uuid-0000000000000000000000000000000000AA03").expect("id");
    for i in 0..500_000u64 {
        let (d, s) = ping(&one, &rx, i, 1_000_000_000 + i);
        m.observe(&d, &s, &mut out);
    }
    let sizes = m.sizes();
    assert!(sizes.outstanding <= 1024, "{sizes:?}");
    assert_eq!(m.anomalies().evicted_outstanding, 500_000 - 1024);
    // The per-pair cap dropped the oldest PINGs: the newest evicted one is unknown to a
    // PONG, the oldest kept one is answered.
    let t_pong = 1_000_000_000 + 500_000;
    let (d, s) = pong(&rx, &one, 500_000 - 1025, t_pong);
    m.observe(&d, &s, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(m.anomalies().unknown_correlator, 1, "{:?}", m.anomalies());
    let (d, s) = pong(&rx, &one, 500_000 - 1024, t_pong);
    m.observe(&d, &s, &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].correlator.as_deref(), Some("498976"));
    assert_eq!(out[0].status, TxStatus::Ok);
    out.clear();
    for i in 0..500_000u64 {
        let from = PeerId::parse(&format!("urn:jxta:uuid-{i:032X}03")).expect("id");
        let (d, s) = ping(&from, &rx, i, 1_500_000_000 + i);
        m.observe(&d, &s, &mut out);
        if i % 50_000 == 0 {
            let z = m.sizes();
            assert!(z.pairs <= 10_000 && z.names <= 20_000, "{z:?}");
        }
    }
    let z = m.sizes();
    assert!(z.pairs <= 10_000, "{z:?}");
    assert!(z.outstanding <= 10_000 * 1024, "{z:?}");
    assert!(z.deadlines <= 2 * z.outstanding + 1024, "{z:?}");
    assert!(z.names <= 20_000, "{z:?}");
    assert!(m.anomalies().evicted_pairs > 0, "{:?}", m.anomalies());
    assert!(out.is_empty(), "no PONG, no timeout yet: nothing finished");
    // Time passes: what is left times out, in bounded number.
    m.advance(20_000_000_000, &mut out);
    assert!(out.len() <= 10_000 + 1024);
    assert_eq!(m.sizes().outstanding, 0);
    // The pair cap evicted the least recently active pairs: `one`'s pair (active before
    // every other) first, and what times out now is the newest pollers, without a hole.
    let poller_index = |t: &Transaction| {
        let id = t.poller_id.as_ref().expect("poller").as_str();
        let hex = id
            .strip_prefix("urn:jxta:uuid-")
            .and_then(|h| h.strip_suffix("03"))
            .expect("synthetic id");
        u64::from_str_radix(hex, 16).expect("index")
    };
    assert!(out.iter().all(|t| t.poller_id.as_ref() != Some(&one)));
    let mut kept: Vec<u64> = out.iter().map(poller_index).collect();
    kept.sort_unstable();
    assert_eq!(
        kept.len() as u64,
        z.pairs as u64,
        "one timeout per surviving pair"
    );
    assert_eq!(kept.last(), Some(&499_999));
    assert_eq!(
        kept[0],
        500_000 - kept.len() as u64,
        "survivors are the newest pairs"
    );
}
