//! The JXTA HTTP transport sample (`captures/http.pcap`, `observer::synth::http`):
//! every transaction exactly as the truth has it, the HTTP counters, and the plain web
//! flow left alone.

use std::path::PathBuf;

use observer::capture::WriteFormat;
use observer::packet::build::LinkVariant;
use observer::report::TransactionCsvWriter;
use observer::runtime::{self, PipelineConfig, PipelineResult};
use observer::synth;
use observer::transaction::{Transaction, TxStatus};

const PCAP: WriteFormat = WriteFormat::Pcap {
    nanos: false,
    big_endian: false,
};

fn analyze(bytes: &[u8], cfg: PipelineConfig) -> PipelineResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("http.pcap");
    std::fs::write(&path, bytes).expect("write capture");
    let analysis = runtime::analyze(&[path], cfg, false);
    assert!(!analysis.damaged(), "{:?}", analysis.inputs);
    analysis.result
}

fn csv(rows: &[Transaction]) -> String {
    let mut w = TransactionCsvWriter::new(Vec::new()).expect("csv writer");
    for t in rows {
        w.write(t).expect("csv row");
    }
    String::from_utf8(w.into_inner().expect("csv")).expect("utf-8")
}

#[test]
fn every_transaction_matches_the_truth() {
    let rendered = synth::http::render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let r = analyze(&bytes, PipelineConfig::default());
    let truth = &rendered.truth;
    assert!(truth.len() >= 8, "a sample worth testing");
    assert_eq!(
        r.transactions.len(),
        truth.len(),
        "{}",
        csv(&r.transactions)
    );
    for (got, want) in r.transactions.iter().zip(truth) {
        // Field by field, so that a failure names what differs.
        assert_eq!(got.start, want.start, "start of {:?}", want.correlator);
        assert_eq!(got.stop, want.stop, "stop of {:?}", want.correlator);
        assert_eq!(got.poller_id, want.poller_id, "{:?}", want.correlator);
        assert_eq!(got.receiver_id, want.receiver_id, "{:?}", want.correlator);
        assert_eq!(got.poller_name, want.poller_name);
        assert_eq!(got.receiver_name, want.receiver_name);
        assert_eq!(got.status, want.status, "{:?}", want.correlator);
        assert_eq!(got.receiver_status, want.receiver_status);
        assert_eq!(got.correlator, want.correlator);
        assert_eq!(got.match_method, want.match_method);
        assert_eq!(got.ping_bytes, want.ping_bytes, "{:?}", want.correlator);
        assert_eq!(got.pong_bytes, want.pong_bytes, "{:?}", want.correlator);
    }
    // And the CSV as a whole, byte for byte.
    assert_eq!(csv(&r.transactions), csv(truth));
    let ok = truth.iter().filter(|t| t.status == TxStatus::Ok).count();
    assert!(ok >= 8 && truth.iter().any(|t| t.status == TxStatus::Timeout));

    let j = &r.jxta;
    // Two messages per answered transaction, one for the unanswered PING.
    assert_eq!(j.http.messages, (2 * ok + 1) as u64);
    assert_eq!(j.messages_tcp, j.http.messages);
    assert_eq!(j.malformed_total(), 0, "{:?}", j.malformed);
    assert!(j.http.chunked_bodies >= 3, "{:?}", j.http);
    assert!(j.http.requests > j.http.messages);
    // The web flow (both directions) is the only non-JXTA traffic.
    assert_eq!(j.non_jxta_streams, 2);
    assert_eq!((j.gaps, j.resyncs, j.truncated_messages), (0, 0, 0));
    assert_eq!(r.jim.pings, truth.len() as u64);
}

#[test]
fn also_with_a_port_filter_and_several_threads() {
    let rendered = synth::http::render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let want = csv(&rendered.truth);
    // Only the default port: carol's 8080 conversations are not looked at.
    let only_9700 = analyze(
        &bytes,
        PipelineConfig {
            ports: vec![9700],
            ..PipelineConfig::default()
        },
    );
    let alice_bob: Vec<Transaction> = rendered
        .truth
        .iter()
        .filter(|t| {
            t.poller_name.as_deref() != Some("carol") && t.receiver_name.as_deref() != Some("carol")
        })
        .cloned()
        .collect();
    assert!(alice_bob.len() < rendered.truth.len());
    assert_eq!(csv(&only_9700.transactions), csv(&alice_bob));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("http.pcap");
    std::fs::write(&path, &bytes).expect("write");
    let mut got = Vec::new();
    runtime::analyze_parallel(&[path], PipelineConfig::default(), 3, false, &mut |t| {
        got.push(t)
    });
    assert_eq!(csv(&got), want);
}

#[test]
fn committed_sample_is_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures");
    let rendered = synth::http::render();
    let pcap = std::fs::read(dir.join("http.pcap")).expect("captures/http.pcap");
    assert_eq!(
        pcap,
        rendered
            .capture_bytes(LinkVariant::Ethernet, PCAP)
            .expect("capture"),
        "http.pcap is stale: run `cargo xtask captures`"
    );
    let truth = std::fs::read(dir.join("http.truth.csv")).expect("truth csv");
    assert_eq!(truth, rendered.truth_csv().expect("truth"));
}
