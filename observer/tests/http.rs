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
    // Two messages per answered transaction, one for the unanswered PING, and two
    // more legs for each relayed one (carol and alice through bob).
    let relayed = truth
        .iter()
        .filter(|t| {
            let names = (t.poller_name.as_deref(), t.receiver_name.as_deref());
            matches!(
                names,
                (Some("alice"), Some("carol")) | (Some("carol"), Some("alice"))
            )
        })
        .count();
    assert_eq!(relayed, 2);
    assert_eq!(j.http.messages, (2 * ok + 1 + 2 * relayed) as u64);
    // Each relayed PING and PONG was seen once more in transit, and told apart.
    let a = r.matcher.anomalies();
    assert_eq!(a.relayed_sightings, (2 * relayed) as u64);
    assert_eq!((a.duplicate_pong, a.unsolicited_pong), (0, 0));
    assert_eq!(j.messages_tcp, j.http.messages);
    assert_eq!(j.malformed_total(), 0, "{:?}", j.malformed);
    assert!(j.http.chunked_bodies >= 3, "{:?}", j.http);
    assert!(j.http.requests > 0 && j.http.responses > 0 && j.http.jxta_bodies > 0);
    // The web flow (both directions) is the only non-JXTA traffic.
    assert_eq!(j.non_jxta_streams, 2);
    assert_eq!((j.gaps, j.resyncs, j.truncated_messages), (0, 0, 0));
    assert_eq!(r.jim.pings, (truth.len() + relayed) as u64);
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
    // (Carol's conversations with alice then show only their 9700 legs.)
    let alice_bob = |rows: &[Transaction]| -> Vec<Transaction> {
        let ab =
            |n: &Option<std::sync::Arc<str>>| matches!(n.as_deref(), Some("alice") | Some("bob"));
        rows.iter()
            .filter(|t| ab(&t.poller_name) && ab(&t.receiver_name))
            .cloned()
            .collect()
    };
    let want_ab = alice_bob(&rendered.truth);
    assert!(!want_ab.is_empty() && want_ab.len() < rendered.truth.len());
    assert_eq!(csv(&alice_bob(&only_9700.transactions)), csv(&want_ab));
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

#[test]
fn counters_reach_the_json_summary_and_the_metrics() {
    let rendered = synth::http::render();
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let r = analyze(&bytes, PipelineConfig::default());
    let h = &r.jxta.http;
    assert_eq!(h.messages, r.jxta.messages_tcp);
    assert!(h.messages > 2 * rendered.truth.len() as u64);
    let j = r.jxta.to_json();
    assert_eq!(j["messages"]["http"], h.messages);
    assert_eq!(j["http"]["messages"], h.messages);
    assert_eq!(j["http"]["requests"], h.requests);
    assert_eq!(j["http"]["chunked_bodies"], h.chunked_bodies);
    let text = observer::metrics::LiveMetrics::default().render(
        &r.matcher,
        &r.packets,
        &r.flows,
        &r.jxta,
        &r.jim,
        0,
        &observer::metrics::SourceCounters {
            source: "pcap",
            ..Default::default()
        },
    );
    for (kind, n) in [
        ("requests", h.requests),
        ("responses", h.responses),
        ("messages", h.messages),
    ] {
        assert!(
            text.contains(&format!(
                "observer_jxta_http_total{{kind=\"{kind}\"}} {n}\n"
            )),
            "{kind}"
        );
    }
    // A damaged copy: the anomaly shows under its label.
    let mut s = observer::jxta::JxtaStats::default();
    let mut p = observer::jxta::HttpParser::new(
        observer::jxta::http::Role::Request,
        &observer::jxta::StreamConfig::default(),
    );
    p.mark_jxta();
    p.push(
        b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        1,
        &mut s,
        &mut |_| {},
    );
    let text = observer::metrics::LiveMetrics::default().render(
        &r.matcher,
        &r.packets,
        &r.flows,
        &s,
        &r.jim,
        0,
        &observer::metrics::SourceCounters::default(),
    );
    assert!(text.contains("observer_jxta_malformed_total{kind=\"http_bad_chunk\"} 1\n"));
}

/// `observer analyze` on the committed sample: the table line and the JSON keys.
#[test]
fn analyze_command_reports_the_http_transport() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_observer"))
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .expect("run observer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let json: serde_json::Value =
        serde_json::from_str(&run(&["analyze", "--json", "captures/http.pcap"])).expect("json");
    let h = &json["jxta"]["http"];
    let messages = h["messages"].as_u64().expect("messages");
    assert!(messages >= 17);
    assert_eq!(json["jxta"]["messages"]["http"], messages);
    assert_eq!(json["jxta"]["messages"]["tcp"], messages);
    let truth = synth::http::render().truth;
    assert_eq!(
        json["transactions"]["total"].as_u64(),
        Some(truth.len() as u64)
    );
    let table = run(&["analyze", "captures/http.pcap"]);
    let line = format!(
        "HTTP transport: {} requests, {} responses, {} JXTA bodies ({} chunked), {messages} messages",
        h["requests"], h["responses"], h["jxta_bodies"], h["chunked_bodies"]
    );
    assert!(table.contains(&line), "{table}");
}

/// A capture that begins at 2.45 s, inside alice's streamed polling response: every
/// transaction that starts after that is still found exactly (the polling direction
/// is picked up again at its next response head).
#[test]
fn capture_joined_mid_body() {
    let mut rendered = synth::http::render();
    rendered.capture_start = observer::synth::EPOCH + 2_450_000_000;
    let bytes = rendered
        .capture_bytes(LinkVariant::Ethernet, PCAP)
        .expect("capture");
    let r = analyze(&bytes, PipelineConfig::default());
    let want: Vec<Transaction> = rendered
        .truth
        .iter()
        .filter(|t| t.start >= rendered.capture_start)
        .cloned()
        .collect();
    assert!(want.len() >= 6, "{}", want.len());
    assert_eq!(csv(&r.transactions), csv(&want));
    assert!(r.jxta.resyncs >= 1);
}
