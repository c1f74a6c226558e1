//! The crafted captures of issue 15 (`cargo xtask captures`, `xtask/src/wire_captures.rs`:
//! real JXSE 2.5 frames mutated byte by byte, and multicast datagrams written by hand
//! from the wire spec), each decoded exactly against its truth: packets a host would
//! drop, a 100 KB PING, multicast PINGs and PONGs with fragments out of order (and
//! answered across transports).

mod common;

use observer::packet::ChecksumMode;
use observer::report::TransactionCsvWriter;
use observer::runtime::{self, PipelineConfig, PipelineResult};
use observer::transaction::{Transaction, TxStatus};

fn csv(transactions: &[Transaction]) -> String {
    let mut w = TransactionCsvWriter::new(Vec::new()).expect("csv writer");
    for t in transactions {
        w.write(t).expect("csv row");
    }
    String::from_utf8(w.into_inner().expect("csv")).expect("utf-8")
}

fn analyze(name: &str, cfg: PipelineConfig) -> PipelineResult {
    let analysis = runtime::analyze(&[common::capture(name)], cfg, false);
    assert!(!analysis.damaged(), "{:?}", analysis.inputs);
    analysis.result
}

fn truth(name: &str) -> String {
    std::fs::read_to_string(common::capture(&format!("{name}.truth.csv"))).expect("truth")
}

/// Every transaction, start and stop to the nanosecond, as the truth lists it; with
/// one thread and split over three.
fn exact(name: &str) -> PipelineResult {
    let r = analyze(&format!("{name}.pcap"), PipelineConfig::default());
    assert_eq!(csv(&r.transactions), truth(name), "{name}");
    let mut got = Vec::new();
    runtime::analyze_parallel(
        &[common::capture(&format!("{name}.pcap"))],
        PipelineConfig::default(),
        3,
        false,
        &mut |t| got.push(t),
    );
    assert_eq!(csv(&got), truth(name), "{name} with 3 threads");
    r
}

fn with_checksums(mode: ChecksumMode) -> PipelineConfig {
    let mut cfg = PipelineConfig::default();
    cfg.packet.checksums = mode;
    cfg
}

#[test]
fn packets_a_host_drops_do_not_rewrite_the_stream() {
    let r = exact("jxse25-dropped");
    assert_eq!(r.transactions.len(), 10);
    assert!(r.transactions.iter().all(|t| t.status == TxStatus::Ok));
    // One counter per reason, each case as often as the generator planted it.
    assert_eq!(r.packets.bad_ip_checksum, 2);
    assert_eq!(r.packets.bad_ip_length, 3);
    assert_eq!(r.flows.bad_tcp_checksum, 2);
    assert_eq!(r.flows.data_without_ack, 2);
    assert_eq!(r.flows.reassembly.conflicting_overlap, 1);
    assert_eq!(r.flows.checksum_offloaded_directions, 0);
    assert_eq!(r.matcher.anomalies().total(), 0);
    // The same transactions as the real capture the frames come from (itself
    // checked against tshark's frame times in real_capture.rs).
    let real = analyze("jxse25-pingpong.pcap", PipelineConfig::default());
    assert_eq!(csv(&real.transactions), truth("jxse25-dropped"));
    // Forced verification changes nothing here (every checksum is real) ...
    let v = analyze("jxse25-dropped.pcap", with_checksums(ChecksumMode::Verify));
    assert_eq!(csv(&v.transactions), truth("jxse25-dropped"));
    // ... and not checking lets the junk of bad-checksum packets in: it takes the
    // place of the real bytes and four messages are lost.
    let i = analyze("jxse25-dropped.pcap", with_checksums(ChecksumMode::Ignore));
    let ok = i
        .transactions
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .count();
    assert_eq!(ok, 6, "{:#?}", i.transactions);
    assert_eq!(
        (i.packets.bad_ip_checksum, i.flows.bad_tcp_checksum),
        (0, 0)
    );
}

#[test]
fn offloaded_checksums_are_detected_per_direction() {
    // The real capture was taken on the sending host (loopback): every TCP checksum
    // is the bare pseudo-header sum.
    let r = analyze("jxse25-pingpong.pcap", PipelineConfig::default());
    assert_eq!(r.transactions.len(), 10);
    assert_eq!(r.flows.checksum_offloaded_directions, 2);
    assert_eq!(r.flows.bad_tcp_checksum, 0);
    // Forcing verification drops them all: nothing is left to decode.
    let v = analyze("jxse25-pingpong.pcap", with_checksums(ChecksumMode::Verify));
    assert_eq!(v.transactions.len(), 0);
    assert_eq!(v.flows.checksum_offloaded_directions, 0);
    assert!(
        v.flows.bad_tcp_checksum >= 50,
        "{}",
        v.flows.bad_tcp_checksum
    );
}

#[test]
fn a_ping_padded_to_100kb_decodes() {
    let r = exact("jxse25-large");
    assert_eq!(r.transactions.len(), 10);
    assert!(r.transactions.iter().any(|t| t.ping_bytes > 100_000));
    assert_eq!(r.jim.oversized_documents, 0);
    // Under a smaller limit it is reported by name, not counted malformed.
    let mut cfg = PipelineConfig::default();
    cfg.jim.max_document = 64 << 10;
    let small = analyze("jxse25-large.pcap", cfg);
    assert_eq!(small.jim.oversized_documents, 1);
    assert_eq!(small.jim.malformed, 0);
    let (name, o) = small
        .jim
        .oversized
        .iter()
        .next()
        .expect("one oversized name");
    assert_eq!(name, "pingpong:payload PING");
    assert_eq!(o.count, 1);
    assert!(o.max_bytes > 100_000 && o.max_bytes < 101_000, "{o:?}");
    assert_eq!(small.transactions.len(), 9);
}

#[test]
fn multicast_pings_and_pongs_pair_and_fragments_start_at_the_earliest() {
    let r = exact("multicast");
    let ok = r
        .transactions
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .count();
    assert_eq!((ok, r.transactions.len()), (6, 7));
    assert_eq!((r.jxta.messages_udp, r.jxta.messages_tcp), (11, 2));
    // The TCP legs: a PING answered by multicast, a PONG answering a multicast PING.
    let mixed: Vec<&str> = r
        .transactions
        .iter()
        .filter_map(|t| t.correlator.as_deref())
        .filter(|c| ["mc-6", "mc-7"].contains(c))
        .collect();
    assert_eq!(mixed, ["mc-6", "mc-7"]);
    assert_eq!(r.packets.reassembled, 2);
    assert_eq!(
        r.matcher.anomalies().total(),
        0,
        "{:?}",
        r.matcher.anomalies()
    );
}

fn observer(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(args)
        .output()
        .expect("run observer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_new_counters_are_in_the_table_and_the_json() {
    let dropped = common::capture("jxse25-dropped.pcap");
    let dropped = dropped.to_str().expect("utf-8 path");
    let v: serde_json::Value =
        serde_json::from_str(&observer(&["analyze", dropped, "--json"])).expect("json");
    let c = &v["capture"];
    assert_eq!(c["packets"]["bad_ip_checksum"], 2);
    assert_eq!(c["packets"]["bad_ip_length"], 3);
    assert_eq!(c["flows"]["bad_tcp_checksum"], 2);
    assert_eq!(c["flows"]["data_without_ack"], 2);
    assert_eq!(c["flows"]["reassembly"]["conflicting_overlap"], 1);
    let table = observer(&["analyze", dropped]);
    for line in [
        "bad IPv4 header checksum (dropped)",
        "bad TCP checksum (dropped)",
        "TCP data without ACK (dropped)",
        "TCP overlaps with conflicting bytes",
    ] {
        assert!(table.contains(line), "{line}:\n{table}");
    }
    let real = common::capture("jxse25-pingpong.pcap");
    let table = observer(&["analyze", real.to_str().expect("utf-8 path")]);
    assert!(
        table.contains("TCP checksums offloaded on 2 flow directions"),
        "{table}"
    );

    let large = common::capture("jxse25-large.pcap");
    let large = large.to_str().expect("utf-8 path");
    let args = ["analyze", large, "--max-document", "64KiB"];
    let table = observer(&args);
    assert!(table.contains("raise --max-document"), "{table}");
    assert!(table.contains("pingpong:payload PING  1 x"), "{table}");
    let v: serde_json::Value =
        serde_json::from_str(&observer(&[&args[..], &["--json"]].concat())).expect("json");
    assert_eq!(v["jim"]["oversized_documents"], 1);
    assert_eq!(v["jim"]["oversized"]["pingpong:payload PING"]["count"], 1);
}
