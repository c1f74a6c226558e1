//! The attribution of causes (`transaction::cause`) against scenarios where the cause
//! is put on the wire on purpose: each transaction's expected flags come from the
//! simulation (what it injected, the route, which messages opened a connection
//! direction), never from the observer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use observer::capture::WriteFormat;
use observer::packet::build::LinkVariant;
use observer::runtime::{self, PipelineConfig};
use observer::synth::{self, Script};
use observer::transaction::cause::{Flag, Flags};
use observer::transaction::{Transaction, TxStatus};

/// Injected causes the observer must find (at least), and quiet transactions it may
/// wrongly flag (at most), from the definition of done.
const MIN_FOUND: f64 = 0.95;
const MAX_FALSE: f64 = 0.02;

struct Score {
    /// Per expected flag: (transactions expecting it, of them carrying it); the
    /// unanswered ones under `timeout <flag>`.
    found: BTreeMap<String, (u64, u64)>,
    quiet: u64,
    quiet_flagged: u64,
    /// Flags seen that were not expected, by flag (reported, not judged).
    extra: BTreeMap<&'static str, u64>,
}

fn key(t: &Transaction) -> (u64, Option<String>, Option<String>) {
    (
        t.start,
        t.poller_id.as_ref().map(|p| p.as_str().to_owned()),
        t.correlator.as_deref().map(str::to_owned),
    )
}

fn score(script: Script) -> (Score, Vec<Transaction>) {
    let rendered = script.render();
    assert_eq!(rendered.truth.len(), rendered.expected.len());
    let bytes = rendered
        .capture_bytes(
            LinkVariant::Ethernet,
            WriteFormat::Pcap {
                nanos: false,
                big_endian: false,
            },
        )
        .expect("capture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join(format!("{}.pcap", script.name));
    std::fs::write(&path, bytes).expect("write capture");
    let analysis = runtime::analyze(
        std::slice::from_ref(&path),
        PipelineConfig::default(),
        false,
    );
    assert!(!analysis.damaged(), "{:?}", analysis.inputs);
    // Decoders on other threads run ahead of the matcher: what later segments tell a
    // transaction (a connection's end, a PING's acknowledgement) is read with a time
    // bound, so the causes are the same.
    let mut parallel = Vec::new();
    runtime::analyze_parallel(&[path], PipelineConfig::default(), 3, false, &mut |t| {
        parallel.push(t)
    });
    let causes = |txs: &[Transaction]| -> Vec<(u64, String)> {
        let mut v: Vec<_> = txs.iter().map(|t| (t.start, t.cause.label())).collect();
        v.sort();
        v
    };
    assert_eq!(
        causes(&parallel),
        causes(&analysis.result.transactions),
        "{}: --threads 3",
        script.name
    );
    let got: BTreeMap<_, &Transaction> = analysis
        .result
        .transactions
        .iter()
        .map(|t| (key(t), t))
        .collect();
    let mut s = Score {
        found: BTreeMap::new(),
        quiet: 0,
        quiet_flagged: 0,
        extra: BTreeMap::new(),
    };
    for (truth, want) in rendered.truth.iter().zip(&rendered.expected) {
        // Unanswered PINGs are explained too (from the PING's side only).
        if truth.status == TxStatus::Open {
            continue;
        }
        let t = got
            .get(&key(truth))
            .unwrap_or_else(|| panic!("{}: transaction {:?} not found", script.name, key(truth)));
        assert_eq!(
            (t.status, t.stop),
            (truth.status, truth.stop),
            "{}: the RTT itself must be exact",
            script.name
        );
        let flags = t.cause.flags;
        if want.is_empty() {
            s.quiet += 1;
            if !flags.is_empty() {
                s.quiet_flagged += 1;
                eprintln!(
                    "{}: quiet transaction at {} flagged {flags} ({:?})",
                    script.name, t.start, t.cause
                );
            }
        }
        for f in want.iter() {
            let name = match truth.status {
                TxStatus::Ok => f.as_str().to_owned(),
                _ => format!("timeout {}", f.as_str()),
            };
            let e = s.found.entry(name).or_default();
            e.0 += 1;
            if flags.contains(f) {
                e.1 += 1;
            } else {
                eprintln!(
                    "{}: {} expected at {}, got `{flags}` ({:?})",
                    script.name,
                    f.as_str(),
                    t.start,
                    t.cause
                );
            }
        }
        for f in flags.iter().filter(|f| !want.contains(*f)) {
            *s.extra.entry(f.as_str()).or_default() += 1;
        }
    }
    (s, analysis.result.transactions)
}

fn judge(name: &str, s: &Score, must: &[&str]) {
    eprintln!(
        "{name}: found {:?}, quiet {} of which flagged {}, unexpected flags {:?}",
        s.found, s.quiet, s.quiet_flagged, s.extra
    );
    for f in must {
        let (n, hit) = s.found.get(*f).copied().unwrap_or_default();
        assert!(n >= 5, "{name}: only {n} transactions expect {f}");
        let share = hit as f64 / n as f64;
        assert!(share >= MIN_FOUND, "{name}: {f} found on {hit} of {n}");
    }
    let false_share = s.quiet_flagged as f64 / s.quiet.max(1) as f64;
    assert!(
        false_share <= MAX_FALSE,
        "{name}: {} of {} quiet transactions flagged",
        s.quiet_flagged,
        s.quiet
    );
}

#[test]
fn injected_causes_are_found_and_quiet_transactions_stay_quiet() {
    let (s, txs) = score(synth::explain());
    judge(
        "explain",
        &s,
        &[
            "retrans",
            "conn",
            "queue",
            "far",
            "window",
            "reset",
            "jxta",
            "timeout reset",
            "timeout far",
            "timeout retrans",
        ],
    );
    assert!(s.quiet >= 100, "too few quiet transactions: {}", s.quiet);
    // Every unanswered PING has something the wire shows (above: the right thing).
    let timeouts: Vec<String> = txs
        .iter()
        .filter(|t| t.status == TxStatus::Timeout)
        .map(|t| t.cause.label())
        .collect();
    assert!(timeouts.len() >= 15, "{timeouts:?}");
    assert!(timeouts.iter().all(|l| !l.is_empty()), "{timeouts:?}");
    // A zero window costs its stall (500 ms, less the 20 µs to the first segment's
    // ACK, which shuts it 50 µs after that segment): in `tcp_us`, not as a repair.
    let stalls: Vec<u64> = txs
        .iter()
        .filter(|t| t.cause.flags.contains(Flag::Window))
        .map(|t| t.cause.tcp_ns)
        .collect();
    eprintln!("zero-window stalls (ns): {stalls:?}");
    assert!(
        stalls
            .iter()
            .all(|&ns| (499_000_000..=500_000_000).contains(&ns)),
        "{stalls:?}"
    );
    // The slowest, as `observer explain` prints them (docs/explain.md quotes these).
    let mut top = observer::report::story::Slowest::new(6);
    for t in &txs {
        top.add(t.clone());
    }
    for t in top.into_sorted() {
        eprintln!("{}", observer::report::story::story(&t));
    }
    let summary = observer::report::Summary::build(
        &txs,
        &observer::transaction::Matcher::new(Default::default()),
        0,
    );
    eprintln!("{:?}", summary.tail);
    // The tail's breakdown, recounted from the transactions themselves.
    let tail = summary.tail.expect("answered transactions");
    let in_tail: Vec<&Transaction> = txs
        .iter()
        .filter(|t| t.rtt_ns().is_some_and(|ns| ns as f64 / 1e6 >= tail.from_ms))
        .collect();
    assert_eq!(tail.count, in_tail.len() as u64);
    assert!(tail.count >= 10, "{tail:?}");
    for f in Flag::ALL {
        let n = in_tail.iter().filter(|t| t.cause.flags.contains(f)).count() as u64;
        assert_eq!(
            tail.by_cause.get(f.as_str()).copied().unwrap_or(0),
            n,
            "{f:?}"
        );
    }
    let none = in_tail.iter().filter(|t| t.cause.flags.is_empty()).count() as u64;
    assert_eq!(tail.none, none);
    // The 2 s slow replies are all in the tail (with any quiet one flagged `far`).
    assert!(tail.by_cause.get("far").copied().unwrap_or(0) >= s.found["far"].0);
    // The repair time measured is the 300 ms retransmission timer injected (less the
    // 20 µs between the segments of a PONG whose hole it is measured from).
    let retrans: Vec<u64> = txs
        .iter()
        .filter(|t| t.status == TxStatus::Ok && t.cause.flags.contains(Flag::Retrans))
        .map(|t| t.cause.tcp_ns)
        .collect();
    assert!(
        retrans
            .iter()
            .all(|&ns| (299_900_000..=300_000_000).contains(&ns)),
        "{retrans:?}"
    );
}

#[test]
fn a_relayed_pair_is_relayed() {
    let (s, txs) = score(synth::relayed());
    judge("relayed", &s, &["relay"]);
    let relays: Vec<Option<&str>> = txs
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .map(|t| t.cause.relay.as_ref().map(|p| p.as_str()))
        .collect();
    assert!(relays.iter().all(|r| r.is_some()), "{relays:?}");
    assert!(txs
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .all(|t| t.cause.ping_legs == 2));
}

#[test]
fn a_route_failing_over_to_a_rendezvous_is_a_route_change() {
    let (s, txs) = score(synth::reroute());
    judge("reroute", &s, &["relay"]);
    let (n, hit) = s.found.get("route").copied().unwrap_or_default();
    assert!(n >= 2, "one change per direction at least: {n}");
    assert_eq!(hit, n, "route changes found");
    assert!(s.quiet >= 10, "{}", s.quiet);
    // Direct before, relayed after.
    let ok: Vec<&Transaction> = txs.iter().filter(|t| t.status == TxStatus::Ok).collect();
    assert!(ok.first().is_some_and(|t| t.cause.relay.is_none()));
    assert!(ok.last().is_some_and(|t| t.cause.relay.is_some()));
}

#[test]
fn flags_read_back() {
    let mut f = Flags::default();
    f.insert(Flag::Queue);
    assert_eq!(Flags::parse(&f.to_string()), Some(f));
}

/// docs/explain.md's figures: for each cause, the first transaction of
/// `synth::explain()` it was put on, drawn from the wire (`synth::figure`). They must
/// match the committed files; `UPDATE_FIGURES=1 cargo test -p observer --test explain
/// figures` rewrites them (`FIGURES_PNG=DIR` also writes PNGs there, to look at).
#[test]
fn cause_figures_are_current() {
    use std::mem::discriminant;
    use synth::Inject;
    const MS: u64 = 1_000_000;
    let r = synth::explain().render();
    let figures = [
        (
            "retrans",
            Inject::PingLoss(0),
            "retrans: a PING segment lost after the capture point, sent again 300 ms later",
        ),
        (
            "retrans-hole",
            Inject::PongLoss(0),
            "retrans: a PONG segment lost before the capture point (a hole), filled 300 ms later",
        ),
        (
            "conn",
            Inject::NewConnection,
            "conn: the connection closed, a new one opened for the PING",
        ),
        (
            "queue",
            Inject::QueueAhead(0),
            "queue: the PONG behind an 800,000-byte message on a slow link",
        ),
        (
            "far",
            Inject::ReplyDelay(0),
            "far: the receiver answers 2 s later than usual",
        ),
        (
            "window",
            Inject::ZeroWindow(0),
            "window: the receiver's zero window holds the PING's rest back 500 ms",
        ),
        (
            "reset",
            Inject::ResetBeforePong,
            "reset: the receiver resets the connection and answers on a new one",
        ),
        (
            "timeout",
            Inject::ResetUnanswered,
            "reset (a timeout): the receiver resets the connection and never answers",
        ),
        (
            "jxta",
            Inject::Service,
            "jxta: a resolver/SRDI message on the connection while the PING waits",
        ),
        (
            "timeout-far",
            Inject::Ignored,
            "far (a timeout): the receiver's TCP acknowledges the PING, nothing answers",
        ),
        (
            "timeout-retrans",
            Inject::LostIgnored(0),
            "retrans+far (a timeout): the PING sent again 300 ms later, acknowledged, never answered",
        ),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/figures");
    let update = std::env::var_os("UPDATE_FIGURES").is_some();
    let mut stale = Vec::new();
    for (name, inject, title) in figures {
        let i = r
            .injected
            .iter()
            .position(|j| {
                j.inject
                    .is_some_and(|k| discriminant(&k) == discriminant(&inject))
            })
            .unwrap_or_else(|| panic!("{name}: not injected"));
        let t = &r.truth[i];
        let stop = match t.status {
            TxStatus::Ok => t.stop.expect("answered"),
            _ => t.start + 500 * MS,
        };
        let pad = ((stop - t.start) / 20).max(10 * MS);
        let svg = synth::figure::figure(&r, i, (t.start - pad, stop + pad), title)
            .unwrap_or_else(|| panic!("{name}: PING not seen"));
        check_figure(&dir, name, &svg, update, &mut stale);
    }
    // `relay` and `route` need a rendezvous: `synth::reroute()`, direct until 30 s,
    // then through the rendezvous (its third peer).
    let script = synth::reroute();
    let rdv = match script.peers.get(2).map(|p| p.ip) {
        Some(std::net::IpAddr::V4(a)) => a,
        other => panic!("reroute's rendezvous is not IPv4: {other:?}"),
    };
    let r = script.render();
    let view = |i: usize| {
        let t = &r.truth[i];
        let stop = t.stop.expect("answered");
        let pad = ((stop - t.start) / 20).max(10 * MS);
        (t.start - pad, stop + pad)
    };
    let first_with = |f: Flag| {
        r.expected
            .iter()
            .zip(&r.truth)
            .position(|(e, t)| e.contains(f) && t.status == TxStatus::Ok)
    };
    let route = first_with(Flag::Route).expect("reroute: no route change");
    // The relayed transaction drawn is the one after the change, of the same pair.
    let same_pair = |a: &Transaction, b: &Transaction| {
        a.poller_id == b.poller_id && a.receiver_id == b.receiver_id
    };
    let relay = (route + 1..r.truth.len())
        .find(|&i| {
            same_pair(&r.truth[i], &r.truth[route])
                && r.truth[i].status == TxStatus::Ok
                && r.expected[i].contains(Flag::Relay)
                && !r.expected[i].contains(Flag::Route)
        })
        .expect("reroute: no relayed transaction after the change");
    let before = (0..route)
        .rev()
        .find(|&i| same_pair(&r.truth[i], &r.truth[route]) && r.truth[i].status == TxStatus::Ok)
        .expect("reroute: no transaction before the change");
    assert!(
        !r.expected[before].contains(Flag::Relay),
        "the previous one went direct"
    );
    let svg = synth::figure::figure_via(
        &r,
        relay,
        view(relay),
        "relay: the PING and the PONG each cross the rendezvous, two legs apiece",
        rdv,
    )
    .expect("relay: PING not seen");
    check_figure(&dir, "relay", &svg, update, &mut stale);
    let svg = synth::figure::figure_route(
        &r,
        (
            before,
            view(before),
            "the pair's previous transaction: direct",
        ),
        (route, view(route), "this one: through the rendezvous"),
        "route: the pair's path changed since its previous transaction",
        rdv,
    )
    .expect("route: PING not seen");
    check_figure(&dir, "route", &svg, update, &mut stale);
    assert!(
        stale.is_empty(),
        "figures differ from what synth::explain() draws (UPDATE_FIGURES=1 rewrites them): {stale:?}"
    );
}

/// Writes `docs/figures/cause-{name}.svg` under `UPDATE_FIGURES`, else notes it in
/// `stale` when it differs from `svg`.
fn check_figure(
    dir: &std::path::Path,
    name: &str,
    svg: &str,
    update: bool,
    stale: &mut Vec<String>,
) {
    let path = dir.join(format!("cause-{name}.svg"));
    if let Some(d) = std::env::var_os("FIGURES_PNG") {
        let png = observer::report::figures::png_from_svg("cause", svg).expect("png");
        std::fs::write(PathBuf::from(d).join(format!("{name}.png")), png).expect("png");
    }
    if update {
        std::fs::write(&path, svg).expect("write figure");
    } else if std::fs::read_to_string(&path).ok().as_deref() != Some(svg) {
        stale.push(path.display().to_string());
    }
}

/// A tap on both sides of a forwarding device (the eBPF tap on every port of a bridge,
/// `cargo xtask scenario causes`) sees each packet twice, the second time as late as
/// the device forwarded it (2 ms measured on a loaded bridge). The causes must be
/// those of one sighting: a copy on another interface is not a retransmission.
#[test]
fn a_packet_seen_again_on_a_second_interface_changes_no_cause() {
    use observer::capture::{CaptureReader, CaptureWriter};
    const FORWARDED_NS: u64 = 2_000_000;
    let script = synth::explain();
    let single = script
        .render()
        .capture_bytes(
            LinkVariant::Ethernet,
            WriteFormat::Pcap {
                nanos: true,
                big_endian: false,
            },
        )
        .expect("capture");
    let mut reader = CaptureReader::from_bytes("single", single.clone()).expect("read");
    let mut frames = Vec::new();
    let mut link = None;
    while let Some(f) = reader.next_frame().expect("frame") {
        link = Some(f.link_type);
        frames.push((f.ts, 0u32, f.data.to_vec(), f.orig_len));
        frames.push((f.ts + FORWARDED_NS, 1u32, f.data.to_vec(), f.orig_len));
    }
    frames.sort_by_key(|f| (f.0, f.1));
    let link = link.expect("frames");
    let mut w = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, link).expect("writer");
    assert_eq!(w.add_interface(link, 9).expect("second interface"), 1);
    for (ts, iface, data, orig_len) in &frames {
        w.write_frame(*iface, *ts, data, *orig_len).expect("write");
    }
    let twice = w.finish().expect("finish");
    let dir = tempfile::tempdir().expect("tempdir");
    let causes = |name: &str, bytes: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write capture");
        let analysis = runtime::analyze(&[path], PipelineConfig::default(), false);
        assert!(!analysis.damaged(), "{:?}", analysis.inputs);
        analysis
            .result
            .transactions
            .iter()
            .filter(|t| t.status == TxStatus::Ok)
            .map(|t| (key(t), (t.cause.flags.to_string(), t.cause.tcp_ns)))
            .collect::<BTreeMap<_, _>>()
    };
    let once = causes("once.pcap", single);
    let seen_twice = causes("twice.pcapng", twice);
    let retrans = once
        .values()
        .filter(|c| c.0.split('+').any(|f| f == "retrans"))
        .count();
    assert!(retrans >= 10, "the script's retransmissions: {retrans}");
    let differ: Vec<_> = once
        .iter()
        .filter(|(k, c)| seen_twice.get(*k) != Some(*c))
        .map(|(k, c)| (k.0, c.clone(), seen_twice.get(k).cloned()))
        .collect();
    assert_eq!(once.len(), seen_twice.len());
    assert!(
        differ.is_empty(),
        "{} of {} differ: {:?}",
        differ.len(),
        once.len(),
        &differ[..differ.len().min(5)]
    );
}
