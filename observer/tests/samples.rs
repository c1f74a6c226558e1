//! `analyze` against the ground truth of every scripted scenario, exactly; and the
//! same capture in every link layer and file format the reader supports.

use std::path::PathBuf;

use observer::capture::WriteFormat;
use observer::jim::Status;
use observer::packet::build::LinkVariant;
use observer::report::TransactionCsvWriter;
use observer::runtime::{self, PipelineConfig, PipelineResult};
use observer::synth::{self, Script};
use observer::transaction::{Learned, PresenceChange, Transaction, TxStatus};

/// The records without their explanation (`transaction::cause`).
fn without_cause(ts: &[Transaction]) -> Vec<Transaction> {
    ts.iter()
        .map(|t| Transaction {
            cause: Default::default(),
            ..t.clone()
        })
        .collect()
}

/// `bytes` written to a file `name` in a directory that lives as long as the guard.
fn capture_file(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write capture");
    (dir, path)
}

fn analyze_bytes(bytes: &[u8], name: &str) -> PipelineResult {
    let (_dir, path) = capture_file(bytes, name);
    let analysis = runtime::analyze(&[path], PipelineConfig::default(), false);
    assert!(!analysis.damaged(), "{:?}", analysis.inputs);
    analysis.result
}

fn csv_of(result: &PipelineResult) -> String {
    let mut w = TransactionCsvWriter::new(Vec::new()).expect("csv writer");
    for t in &result.transactions {
        w.write(t).expect("csv row");
    }
    String::from_utf8(w.into_inner().expect("csv")).expect("utf-8")
}

const PCAP: WriteFormat = WriteFormat::Pcap {
    nanos: false,
    big_endian: false,
};

/// The presence changes the ground truth implies, worked out here from the script's
/// answered transactions: per receiver (its peer ID, else its name), in PONG order, a
/// change whenever the status differs from its last one, learned by each poller at the
/// first PONG that carries the new status to it.
fn presence_truth(truth: &[Transaction]) -> Vec<PresenceChange> {
    let mut answered: Vec<&Transaction> = truth
        .iter()
        .filter(|t| t.status == TxStatus::Ok && t.receiver_status.is_some())
        .collect();
    answered.sort_by_key(|t| t.stop);
    let mut last_change: std::collections::HashMap<String, usize> = Default::default();
    let mut changes: Vec<PresenceChange> = Vec::new();
    for t in answered {
        let (Some(status), Some(time)) = (t.receiver_status, t.stop) else {
            continue;
        };
        let key = match (&t.receiver_id, &t.receiver_name) {
            (Some(id), _) => format!("id {id}"),
            (None, Some(name)) => format!("name {name}"),
            (None, None) => "unknown".to_string(),
        };
        let learned = Learned {
            poller_id: t.poller_id.clone(),
            poller_name: t.poller_name.as_deref().map(str::to_owned),
            time,
        };
        match last_change.get(&key).map(|&i| &mut changes[i]) {
            Some(ch) if ch.to == status => {
                let known = ch.learned_by.iter().any(|l| {
                    l.poller_id == learned.poller_id && l.poller_name == learned.poller_name
                });
                if !known {
                    ch.learned_by.push(learned);
                }
            }
            previous => {
                let from = previous.map(|ch| ch.to);
                changes.push(PresenceChange {
                    time,
                    peer_id: t.receiver_id.clone(),
                    name: t.receiver_name.as_deref().map(str::to_owned),
                    from,
                    to: status,
                    learned_by: vec![learned],
                });
                last_change.insert(key, changes.len() - 1);
            }
        }
    }
    changes
}

/// Every presence change equal, field by field, to the truth's.
fn assert_presence(got: &[PresenceChange], truth: &[PresenceChange], what: &str) {
    for (i, (g, t)) in got.iter().zip(truth).enumerate() {
        assert_eq!(g, t, "{what}: presence change {i}");
    }
    assert_eq!(got.len(), truth.len(), "{what}: presence changes");
}

/// Renders a scenario, analyses its capture and compares with the truth, row by row.
fn check(script: Script) -> PipelineResult {
    let rendered = script.render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let result = analyze_bytes(&bytes, &format!("{}.pcap", script.name));
    let truth = String::from_utf8(rendered.truth_csv().expect("truth")).expect("utf-8");
    let got = csv_of(&result);
    if got != truth {
        let g: Vec<&str> = got.lines().collect();
        let t: Vec<&str> = truth.lines().collect();
        for (i, (a, b)) in g.iter().zip(t.iter()).enumerate() {
            if a != b {
                panic!(
                    "{}: first difference at row {i}:\n  got   {a}\n  truth {b}\n({} rows vs {} in truth)",
                    script.name,
                    g.len(),
                    t.len()
                );
            }
        }
        panic!("{}: {} rows vs {} in truth", script.name, g.len(), t.len());
    }
    assert!(
        rendered.truth.len() >= 5,
        "{}: a scenario worth testing",
        script.name
    );
    assert_presence(
        result.matcher.presence().changes(),
        &presence_truth(&rendered.truth),
        script.name,
    );
    result
}

/// The soak's traffic (`cargo xtask soak`), small: killed peers, restarts whose
/// correlators repeat the first session's for the same buddies, late joiners, leavers,
/// state changes, two address halves; `analyze` finds exactly the truth, but for the
/// name of a receiver that had not answered yet (the observer learns names from PONGs;
/// the truth knows them all).
#[test]
fn soak_scenario_matches_truth() {
    let rendered = synth::soak(21, 0).render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let r = analyze_bytes(&bytes, "soak.pcap");
    let unnamed = |v: &[Transaction]| -> Vec<Transaction> {
        v.iter()
            .cloned()
            .map(|mut t| {
                // The truth does not explain transactions (tests/explain.rs does).
                t.receiver_name = None;
                t.cause = Default::default();
                t
            })
            .collect()
    };
    assert_eq!(r.transactions.len(), rendered.truth.len());
    for (got, truth) in unnamed(&r.transactions)
        .iter()
        .zip(unnamed(&rendered.truth).iter())
    {
        assert_eq!(got, truth);
    }
    let named = r
        .transactions
        .iter()
        .zip(&rendered.truth)
        .filter(|(g, t)| g.receiver_name == t.receiver_name)
        .count();
    assert!(named * 10 >= r.transactions.len() * 9, "{named}");
    let mut keys: Vec<_> = r
        .transactions
        .iter()
        .map(|t| (&t.poller_id, &t.receiver_id, &t.correlator))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert!(
        n - keys.len() >= 10,
        "restarts repeat correlators of the same pair: {} repeats",
        n - keys.len()
    );
    assert!(r.transactions.iter().any(|t| t.status == TxStatus::Timeout));
    // A new generation: new identities, new pairs, on the same addresses.
    let other = synth::soak(21, 1).render();
    assert!(other
        .truth
        .iter()
        .all(|t| !r.transactions.iter().any(|u| u.poller_id == t.poller_id)));
}

#[test]
fn two_peers_matches_truth() {
    let r = check(synth::two_peers());
    assert!(r.transactions.iter().all(|t| t.status == TxStatus::Ok));
}

#[test]
fn four_peers_matches_truth() {
    let r = check(synth::four_peers());
    let count = |s: TxStatus| r.transactions.iter().filter(|t| t.status == s).count();
    // The scenario has all three outcomes and both matching methods.
    assert!(count(TxStatus::Ok) > 0);
    assert!(count(TxStatus::Timeout) > 0);
    assert!(count(TxStatus::Open) > 0);
    assert!(
        r.jxta.messages_udp >= 1,
        "the fragmented multicast datagram"
    );
    assert!(r.packets.reassembled >= 1);
    assert_eq!(r.jim.messages, 1);
    // The presence comparison in `check` is not vacuous: bob's scripted changes are there.
    let bob: Vec<_> = r
        .matcher
        .presence()
        .changes()
        .iter()
        .filter(|c| c.name.as_deref() == Some("bob"))
        .map(|c| c.to)
        .collect();
    assert_eq!(
        bob,
        [
            Status::Online,
            Status::Busy,
            Status::Away,
            Status::Offline,
            Status::Online
        ]
    );
}

#[test]
fn relayed_matches_truth() {
    let r = check(synth::relayed());
    // Every message is seen on two legs, but each transaction counted once.
    assert!(r.jim.pings >= 2 * r.transactions.len() as u64 - 2);
}

#[test]
fn segmentation_matches_truth() {
    let r = check(synth::segmentation());
    assert!(r.flows.reassembly.gaps >= 1, "a gap was declared");
    assert!(r.flows.reassembly.out_of_order_segments >= 1);
    assert!(r.flows.reassembly.retransmitted_bytes >= 1);
    assert!(r.flows.flows_mid_stream >= 1);
    assert!(r.jxta.resyncs >= 1);
}

#[test]
fn jxse27_layout_matches_truth() {
    let r = check(synth::jxse27());
    assert!(r
        .jxta
        .element_names
        .keys()
        .any(|k| k.contains("EndpointRouterMsg-fingerprint")));
}

#[test]
fn every_link_type_and_file_format_gives_the_same_transactions() {
    let rendered = synth::two_peers().render();
    let truth = String::from_utf8(rendered.truth_csv().expect("truth")).expect("utf-8");
    let links = [
        LinkVariant::Ethernet,
        LinkVariant::Vlan(100),
        LinkVariant::QinQ(10, 20),
        LinkVariant::LinuxSll,
        LinkVariant::LinuxSll2,
        LinkVariant::Raw,
        LinkVariant::RawIpv4Ipv6,
        LinkVariant::Null { big_endian: false },
        LinkVariant::Null { big_endian: true },
        LinkVariant::Loop,
    ];
    let formats = [
        PCAP,
        WriteFormat::Pcap {
            nanos: true,
            big_endian: false,
        },
        WriteFormat::Pcap {
            nanos: false,
            big_endian: true,
        },
        WriteFormat::Pcap {
            nanos: true,
            big_endian: true,
        },
        WriteFormat::Pcapng,
    ];
    for link in links {
        for format in formats {
            let bytes = rendered.capture_bytes(link, format).expect("capture");
            let result = analyze_bytes(&bytes, "variant.cap");
            assert_eq!(csv_of(&result), truth, "{link:?} {format:?}");
        }
    }
}

#[test]
fn committed_samples_are_current() {
    // `cargo xtask captures` output is committed; it must match what the code renders.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures");
    for script in synth::all() {
        let rendered = script.render();
        let pcap = std::fs::read(dir.join(format!("{}.pcap", script.name))).expect("sample pcap");
        assert_eq!(
            pcap,
            rendered
                .capture_bytes(LinkVariant::Ethernet, PCAP)
                .expect("capture"),
            "{}.pcap is stale: run `cargo xtask captures`",
            script.name
        );
        let truth =
            std::fs::read(dir.join(format!("{}.truth.csv", script.name))).expect("truth csv");
        assert_eq!(
            truth,
            rendered.truth_csv().expect("truth"),
            "{}.truth.csv is stale",
            script.name
        );
    }
}

#[test]
fn pcapng_with_two_interfaces_of_different_link_types_and_resolutions() {
    use observer::capture::{CaptureReader, CaptureWriter, LinkType};
    // The two-peers capture, its frames spread over two interfaces: Ethernet with ns
    // timestamps and Linux cooked v1 with µs timestamps (as `tcpdump -i any` and a NIC
    // merged by mergecap would give).
    let rendered = synth::two_peers().render();
    let truth = String::from_utf8(rendered.truth_csv().expect("truth")).expect("utf-8");
    let eth = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let mut reader = CaptureReader::from_reader("eth.pcap", Box::new(std::io::Cursor::new(eth)))
        .expect("reader");
    let mut writer =
        CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::ETHERNET).expect("writer");
    let sll = writer
        .add_interface(LinkType::LINUX_SLL, 6)
        .expect("interface");
    let mut n = 0u32;
    while let Some(frame) = reader.next_frame().expect("frame") {
        if n.is_multiple_of(2) {
            writer
                .write_frame(0, frame.ts, frame.data, frame.orig_len)
                .expect("write");
        } else {
            let ip = &frame.data[14..];
            let (_, data) = observer::packet::build::frame(LinkVariant::LinuxSll, ip);
            writer
                .write_frame(sll, frame.ts, &data, data.len() as u32)
                .expect("write");
        }
        n += 1;
    }
    let bytes = writer.finish().expect("finish");
    let result = analyze_bytes(&bytes, "two-interfaces.pcapng");
    assert_eq!(csv_of(&result), truth);
}

/// `--threads`: every scenario, split over 2, 3 and 4 shards, gives its ground truth
/// row for row, and the same counters as one thread; a long scenario crosses many
/// hand-over batches and reorder releases.
#[test]
fn parallel_analysis_matches_truth_and_one_thread() {
    let mut long = synth::four_peers();
    long.duration_ns = 1800 * 1_000_000_000;
    for script in synth::all().into_iter().chain([long]) {
        let rendered = script.render();
        let bytes = rendered
            .capture_bytes(LinkVariant::Ethernet, PCAP)
            .expect("capture");
        let truth = String::from_utf8(rendered.truth_csv().expect("truth")).expect("utf-8");
        let (_dir, path) = capture_file(&bytes, "capture.pcap");
        let single = runtime::analyze(
            std::slice::from_ref(&path),
            PipelineConfig::default(),
            false,
        );
        for threads in [2, 3, 4] {
            let mut got = Vec::new();
            let parallel = runtime::analyze_parallel(
                std::slice::from_ref(&path),
                PipelineConfig::default(),
                threads,
                false,
                &mut |t| got.push(t),
            );
            let mut w = TransactionCsvWriter::new(Vec::new()).expect("csv writer");
            for t in &got {
                w.write(t).expect("csv row");
            }
            let csv = String::from_utf8(w.into_inner().expect("csv")).expect("utf-8");
            assert!(
                csv == truth,
                "{} with {threads} threads differs from its truth",
                script.name
            );
            let (s, p) = (&single.result, &parallel.result);
            assert_eq!(s.packets.frames, p.packets.frames, "{}", script.name);
            assert_eq!(s.packets.tcp, p.packets.tcp, "{}", script.name);
            assert_eq!(
                s.packets.reassembled, p.packets.reassembled,
                "{}",
                script.name
            );
            assert_eq!(s.flows.flows, p.flows.flows, "{}", script.name);
            assert_eq!(s.jxta.to_json(), p.jxta.to_json(), "{}", script.name);
            assert_eq!(s.jim.pings, p.jim.pings, "{}", script.name);
            assert_eq!(s.jim.pongs, p.jim.pongs, "{}", script.name);
            assert_eq!(
                serde_json::to_value(s.matcher.anomalies()).expect("json"),
                serde_json::to_value(p.matcher.anomalies()).expect("json"),
                "{}",
                script.name
            );
            let what = format!("{} with {threads} threads", script.name);
            assert_presence(
                p.matcher.presence().changes(),
                &presence_truth(&rendered.truth),
                &what,
            );
            assert_eq!(single.inputs[0].frames, parallel.inputs[0].frames);
        }
    }
}

/// `--threads` with the flow cap at exactly what one thread holds at once: no shard
/// evicts a flow (each gets the whole cap; hash-split shards are never balanced
/// exactly, and a cap divided among them evicted what one thread kept).
#[test]
fn parallel_analysis_at_the_flow_cap_evicts_nothing_one_thread_keeps() {
    let rendered = synth::four_peers().render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let (_dir, path) = capture_file(&bytes, "capture.pcap");
    let path = std::slice::from_ref(&path);
    let peak = runtime::analyze(path, PipelineConfig::default(), false)
        .result
        .flows
        .max_active_flows;
    // Several flows, so that a divided cap is below what some shard holds.
    assert!(peak >= 4, "{peak} flows at once");
    let mut cfg = PipelineConfig::default();
    cfg.flows.max_flows = usize::try_from(peak).expect("flow count");
    let single = runtime::analyze(path, cfg.clone(), false).result;
    assert_eq!(single.flows.evicted_flow_cap, 0);
    for threads in [2, 3] {
        let mut got = Vec::new();
        let parallel =
            runtime::analyze_parallel(path, cfg.clone(), threads, false, &mut |t| got.push(t))
                .result;
        assert_eq!(parallel.flows.evicted_flow_cap, 0, "{threads} threads");
        assert_eq!(
            parallel.flows.flows, single.flows.flows,
            "{threads} threads"
        );
        assert_eq!(got, single.transactions, "{threads} threads");
    }
}

/// The streaming analysis (`analyze_each`, what `analyze` runs) hands transactions
/// over in exactly the order and content of the collected one, on a scenario long
/// enough for many releases, and keeps none of them itself.
#[test]
fn streaming_release_keeps_report_order() {
    let mut long = synth::four_peers();
    long.duration_ns = 3600 * 1_000_000_000;
    let rendered = long.render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let truth = String::from_utf8(rendered.truth_csv().expect("truth")).expect("utf-8");
    let (_dir, path) = capture_file(&bytes, "long.pcap");
    let mut got = Vec::new();
    let a = runtime::analyze_each(
        std::slice::from_ref(&path),
        PipelineConfig::default(),
        false,
        &mut |t| got.push(t),
    );
    assert!(a.result.transactions.is_empty());
    assert!(got.len() > 5000, "{} transactions", got.len());
    let mut w = TransactionCsvWriter::new(Vec::new()).expect("csv writer");
    for t in &got {
        w.write(t).expect("csv row");
    }
    assert!(String::from_utf8(w.into_inner().expect("csv")).expect("utf-8") == truth);
}

/// The frames of `bytes`, then the same frames again `gap_ns` after the last one: a
/// capture replayed twice, or peers restarted with the same correlators.
fn replayed_twice(bytes: Vec<u8>, gap_ns: u64) -> (Vec<u8>, u64) {
    use observer::capture::{CaptureReader, CaptureWriter};
    let mut frames = Vec::new();
    let mut rd = CaptureReader::from_bytes("once", bytes).expect("capture");
    let mut link = None;
    while let Some(f) = rd.next_frame().expect("frame") {
        link = Some(f.link_type);
        frames.push((f.ts, f.data.to_vec(), f.orig_len));
    }
    let (first, last) = (frames[0].0, frames[frames.len() - 1].0);
    let shift = last - first + gap_ns;
    let mut w = CaptureWriter::new(Vec::new(), PCAP, link.expect("frames")).expect("writer");
    for offset in [0, shift] {
        for (ts, data, orig_len) in &frames {
            w.write_frame(0, ts + offset, data, *orig_len)
                .expect("write");
        }
    }
    (w.finish().expect("finish"), shift)
}

#[test]
fn a_capture_replayed_100_s_later_gives_twice_the_transactions() {
    let rendered = synth::two_peers().render();
    let once = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let first = analyze_bytes(&once, "once.pcap").transactions;
    let (twice, shift) = replayed_twice(once, 100_000_000_000);
    let r = analyze_bytes(&twice, "twice.pcap");
    assert_eq!(
        r.transactions.len(),
        2 * first.len(),
        "{:?}",
        r.matcher.anomalies()
    );
    let again: Vec<_> = first
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.start += shift;
            t.stop = t.stop.map(|s| s + shift);
            t
        })
        .collect();
    // The explanation of the replay differs by design (its pair has a history, its
    // connections are not new): the records must not.
    let got = without_cause(&r.transactions);
    assert_eq!(got[..first.len()], without_cause(&first)[..]);
    assert_eq!(got[first.len()..], without_cause(&again)[..]);
    assert_eq!(r.matcher.anomalies().duplicate_ping_correlator, 0);
    assert_eq!(r.matcher.anomalies().duplicate_pong, 0);
}

/// A gateway capture on two interfaces: each direction of every connection on its own
/// interface, and one interface's blocks written `delay_ns` late (as dumpcap interleaves
/// the buffers of two interfaces), each frame keeping its own timestamp.
fn split_over_two_interfaces(bytes: Vec<u8>, delay_ns: u64) -> Vec<u8> {
    use observer::capture::{CaptureReader, CaptureWriter};
    let mut rd = CaptureReader::from_bytes("in-order", bytes).expect("capture");
    let mut frames = Vec::new();
    let mut link = None;
    while let Some(f) = rd.next_frame().expect("frame") {
        link = Some(f.link_type);
        // Ethernet + IPv4: source and destination addresses at bytes 26..34.
        let iface = u32::from(f.data[26..30] > f.data[30..34]);
        let written_at = f.ts + u64::from(iface) * delay_ns;
        frames.push((written_at, iface, f.ts, f.data.to_vec(), f.orig_len));
    }
    frames.sort_by_key(|f| f.0);
    let link = link.expect("frames");
    let mut w = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, link).expect("writer");
    assert_eq!(w.add_interface(link, 9).expect("second interface"), 1);
    for (_, iface, ts, data, orig_len) in &frames {
        w.write_frame(*iface, *ts, data, *orig_len).expect("write");
    }
    w.finish().expect("finish")
}

#[test]
fn two_interfaces_a_few_ms_out_of_order_give_the_in_order_transactions() {
    let rendered = synth::four_peers().render();
    let in_order = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let expected = analyze_bytes(&in_order, "in-order.pcap").transactions;
    let merged = split_over_two_interfaces(in_order, 5_000_000);
    let r = analyze_bytes(&merged, "two-interfaces.pcapng");
    assert_eq!(csv_of(&r), {
        let mut w = TransactionCsvWriter::new(Vec::new()).expect("csv writer");
        for t in &expected {
            w.write(t).expect("csv row");
        }
        String::from_utf8(w.into_inner().expect("csv")).expect("utf-8")
    });
    assert!(r.packets.reorder.reordered_frames > 0, "{:?}", r.packets);
    assert_eq!(r.packets.reorder.late_frames, 0);
    assert_eq!(r.flows.reassembly.gaps, 0, "{:?}", r.flows);
    // Every shard of a parallel run merges the frames the same way.
    let (_dir, path) = capture_file(&merged, "two-interfaces.pcapng");
    let mut parallel = Vec::new();
    let a = runtime::analyze_parallel(&[path], PipelineConfig::default(), 2, false, &mut |t| {
        parallel.push(t)
    });
    assert_eq!(parallel, r.transactions);
    assert_eq!(a.result.packets.reorder, r.packets.reorder);
}

/// Frames held for reordering are read again from the mapped file after the reader has
/// handed their pages back (they fault back in from the page cache): a window spanning
/// many MiB of a two-interface capture gives the in-order transactions.
#[test]
fn frames_held_across_pages_handed_back_give_the_in_order_transactions() {
    let (_, in_order) = synth::long_four_peers(3000).expect("capture");
    // Several of the reader's 512 KiB release steps lie inside the window.
    assert!(in_order.len() > 8 << 20, "{} bytes", in_order.len());
    let expected = analyze_bytes(&in_order, "in-order.pcap").transactions;
    assert!(expected.len() > 1000, "{}", expected.len());
    let merged = split_over_two_interfaces(in_order, 5_000_000);
    let (_dir, path) = capture_file(&merged, "two-interfaces.pcapng");
    let mut cfg = PipelineConfig::default();
    cfg.reorder.window_ns = 3_000 * 1_000_000_000;
    let r = runtime::analyze(&[path], cfg, false);
    assert!(!r.damaged(), "{:?}", r.inputs);
    let reorder = &r.result.packets.reorder;
    assert!(reorder.reordered_frames > 0, "{reorder:?}");
    assert_eq!((reorder.late_frames, reorder.forced_releases), (0, 0));
    assert!(reorder.max_held > 10_000, "{reorder:?}");
    assert_eq!(r.result.transactions, expected);
}

/// The same two-interface capture through the live loop (frames pushed in file order,
/// as `live -i a -i b` delivers them): the same transactions as the in-order file.
#[test]
fn live_two_interfaces_out_of_order_give_the_in_order_transactions() {
    use observer::capture::LinkType;
    use observer::runtime::online::{self, LiveConfig, LiveSource};
    let rendered = synth::four_peers().render();
    let in_order = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let expected = analyze_bytes(&in_order, "in-order.pcap").transactions;
    let merged = split_over_two_interfaces(in_order, 5_000_000);
    let source = LiveSource::replay("two", merged, vec![LinkType::ETHERNET; 2]).expect("capture");
    let cfg = LiveConfig {
        interfaces: vec!["lan".into(), "wan".into()],
        ..LiveConfig::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut got = Vec::new();
    let outcome =
        online::run_each(source, cfg, &stop, &mut |t| got.push(t.clone())).expect("live run");
    assert_eq!(got, expected);
    assert!(outcome.result.packets.reorder.reordered_frames > 0);
    assert_eq!(outcome.result.packets.reorder.late_frames, 0);
}

/// The capture clock steps back 5 s (more than the reorder window) between a PING and
/// its PONG: that PONG is stamped before its PING. It is counted as a clock step and
/// not listed (no RTT of 0 in the statistics); every other transaction is found as
/// before, shifted with the clock.
#[test]
fn a_clock_step_back_between_ping_and_pong_is_counted_not_listed() {
    use observer::capture::CaptureReader;
    const STEP: u64 = 5_000_000_000;
    let rendered = synth::two_peers().render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let before = analyze_bytes(&bytes, "steady.pcap").transactions;
    // Past the first reorder window, so that the stepped frames are late.
    let t = before
        .iter()
        .find(|t| t.start > before[0].start + 3 * STEP / 5)
        .expect("a transaction 3 s in");
    let mid = t.start + (t.stop.expect("answered") - t.start) / 2;
    let mut rd = CaptureReader::from_bytes("steady", bytes).expect("capture");
    let mut w = observer::capture::CaptureWriter::new(
        Vec::new(),
        PCAP,
        observer::capture::LinkType::ETHERNET,
    )
    .expect("writer");
    while let Some(f) = rd.next_frame().expect("frame") {
        let ts = if f.ts > mid { f.ts - STEP } else { f.ts };
        w.write_frame(0, ts, f.data, f.orig_len).expect("write");
    }
    let r = analyze_bytes(&w.finish().expect("finish"), "stepped.pcap");
    let straddling =
        |t: &&observer::transaction::Transaction| t.start <= mid && t.stop.is_some_and(|s| s > mid);
    let n = before.iter().filter(straddling).count();
    assert!(n >= 1);
    assert_eq!(r.matcher.anomalies().clock_steps, n as u64);
    assert!(r.packets.reorder.late_frames > 0);
    let want: Vec<_> = before
        .iter()
        .filter(|t| !straddling(t))
        .map(|t| {
            let mut t = t.clone();
            if t.start > mid {
                t.start -= STEP;
                t.stop = t.stop.map(|s| s - STEP);
            }
            t
        })
        .collect();
    // The far side's share of the PINGs around the step is stepped too.
    let mut got = without_cause(&r.transactions);
    let mut want = without_cause(&want);
    let key = |t: &observer::transaction::Transaction| (t.start, t.correlator.clone());
    want.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, want);
    assert!(got.iter().all(|t| t.stop >= Some(t.start)));
}

/// `--reorder-window` reaches the merge from the command line: the two-interface
/// capture is put back in order by default and read as written with `0`, and the
/// counters say so in the JSON summary.
#[test]
fn reorder_window_option_on_the_command_line() {
    let rendered = synth::four_peers().render();
    let in_order = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let (_dir, path) = capture_file(
        &split_over_two_interfaces(in_order, 5_000_000),
        "two-interfaces.pcapng",
    );
    let run = |window: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_observer"))
            .args(["analyze", "--no-progress", "--json"])
            .args(window)
            .arg(&path)
            .output()
            .expect("run observer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (
            v["capture"]["packets"]["reorder"]["reordered_frames"].as_u64(),
            v["transactions"]["ok"].as_u64(),
        )
    };
    let ok = rendered
        .truth
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .count() as u64;
    let (reordered, found) = run(&[]);
    assert!(reordered.is_some_and(|n| n > 0));
    assert_eq!(found, Some(ok));
    let (reordered, found) = run(&["--reorder-window", "0"]);
    assert_eq!(reordered, Some(0));
    assert!(found.is_some_and(|n| n < ok));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["analyze", "--reorder-window", "soon"])
        .arg(&path)
        .output()
        .expect("run observer");
    assert_eq!(bad.status.code(), Some(2), "clap's usage error");
}

/// `analyze --json` writes its object element by element (`write_full_json`): on every
/// committed capture the bytes are those of the whole `Value` pretty-printed.
#[test]
fn streamed_json_is_the_value_json_byte_for_byte() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures");
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("captures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    pcaps.sort();
    assert!(pcaps.len() >= 8, "{pcaps:?}");
    let mut with_pairs = 0;
    for path in pcaps {
        let analysis = runtime::analyze(
            std::slice::from_ref(&path),
            PipelineConfig::default(),
            false,
        );
        let summary = observer::report::Summary::build(
            &analysis.result.transactions,
            &analysis.result.matcher,
            analysis.result.duration_ns(),
        );
        with_pairs +=
            usize::from(!summary.pairs.is_empty() && !summary.presence.changes.is_empty());
        let whole = serde_json::to_vec_pretty(&observer::report::full_json(&summary, &analysis))
            .expect("json");
        let mut streamed = Vec::new();
        observer::report::write_full_json(&mut streamed, summary, &analysis).expect("json");
        assert_eq!(
            String::from_utf8_lossy(&streamed),
            String::from_utf8_lossy(&whole),
            "{}",
            path.display()
        );
    }
    assert!(
        with_pairs >= 5,
        "too few captures with pairs and presence: {with_pairs}"
    );
}

/// `observer messages` streams: a message's record leaves with the frame that completed
/// the message, none is kept to the end, and the listing is the kept one, record for
/// record; it decodes no document and matches nothing.
#[test]
fn message_records_are_handed_over_as_decoded_not_kept() {
    use observer::capture::CaptureReader;
    use observer::runtime::{MessageRecord, Pipeline};
    for name in ["four-peers.pcap", "jxse25-pingpong.pcap", "relayed.pcap"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../captures")
            .join(name);
        let cfg = PipelineConfig {
            record_messages: true,
            ..PipelineConfig::default()
        };
        let kept = runtime::analyze(std::slice::from_ref(&path), cfg.clone(), false)
            .result
            .messages;
        assert!(!kept.is_empty(), "{name}");
        let mut streamed = Vec::new();
        let a = runtime::analyze_messages(
            std::slice::from_ref(&path),
            PipelineConfig::default(),
            false,
            &mut |m| streamed.push(m),
        );
        assert!(a.result.messages.is_empty(), "{name}: records kept");
        // A listing decodes no document, so no per-pair or per-PING state grows with the
        // file (the analysis of the same capture matches some).
        let analysed = runtime::analyze(std::slice::from_ref(&path), cfg.clone(), false);
        assert!(analysed.result.jim.documents > 0, "{name}");
        assert!(!analysed.result.transactions.is_empty(), "{name}");
        assert_eq!(a.result.jim.documents, 0, "{name}: documents decoded");
        let json = |v: &[MessageRecord]| serde_json::to_string(v).expect("json");
        assert_eq!(json(&streamed), json(&kept), "{name}");
        // Frame by frame: the records come out before the end of input.
        let mut p = Pipeline::new(cfg);
        let mut rd = CaptureReader::open(&path).expect("open");
        let mut early = 0;
        while let Some(f) = rd.next_frame().expect("frame") {
            p.frame(&f);
            p.take_records(&mut |_| early += 1);
        }
        let rest = p.finish().messages.len();
        assert!(
            early > rest,
            "{name}: {early} handed over early, {rest} at the end"
        );
        assert_eq!(early + rest, kept.len(), "{name}");
    }
}
