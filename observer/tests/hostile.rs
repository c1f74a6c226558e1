//! Bad input: damaged files, wrong files, hostile JXTA frames and XML. Each gives a clear
//! error or a counted anomaly, never a panic or a hang, and what was decodable is kept.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use observer::capture::{CaptureReader, CaptureWriter, LinkType, WriteFormat};
use observer::jim::{Document, Kind, Status};
use observer::jxta::{
    encode_message_v0, encode_package, encode_welcome, erm_xml, HeaderOrder, OwnedElement, PeerId,
    WelcomeVersion,
};
use observer::packet::build::LinkVariant;
use observer::report::read_transactions_csv;
use observer::synth::wire::{SendShape, Wire};
use observer::transaction::TxStatus;

/// Runs the binary with a deadline: a hang is a failure, not a stuck test run.
fn observer(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn observer");
    let t0 = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("observer {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn truncated_capture_keeps_everything_before_the_cut() {
    let bytes = std::fs::read(common::capture("two-peers.pcap")).expect("capture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut.pcap");
    // Cut in the middle of a record about two thirds into the file.
    let cut = bytes.len() * 2 / 3 + 7;
    std::fs::write(&path, &bytes[..cut]).expect("write");
    let mut reader = CaptureReader::open(&path).expect("open");
    let mut last_ts = 0;
    let err = loop {
        match reader.next_frame() {
            Ok(Some(f)) => last_ts = f.ts,
            Ok(None) => panic!("the cut must be detected"),
            Err(e) => break e.to_string(),
        }
    };
    let o = observer(&["analyze", path.to_str().expect("utf-8"), "--csv", "-"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "damaged input: exit 4 (README, Exit status)"
    );
    let msg = stderr(&o);
    assert!(
        msg.contains("cut.pcap") && msg.contains("at byte"),
        "the error names the file and offset: {msg}"
    );
    assert!(msg.contains(&err), "the reader's error is reported: {msg}");
    assert!(!msg.contains("panicked"));

    let mut got = read_transactions_csv(&o.stdout[..]).expect("csv");
    // The truth file has the study's columns only, not the causes.
    for g in &mut got {
        g.cause = Default::default();
    }
    let truth = read_transactions_csv(
        std::fs::File::open(common::capture("two-peers.truth.csv")).expect("truth"),
    )
    .expect("truth");
    let complete: Vec<_> = truth
        .iter()
        .filter(|t| t.stop.is_some_and(|s| s <= last_ts))
        .collect();
    assert!(
        complete.len() >= 10,
        "a meaningful part of the capture precedes the cut"
    );
    for t in &complete {
        assert!(
            got.contains(t),
            "transaction finished before the cut is kept: {t:?}"
        );
    }
    for g in &got {
        if !truth.contains(g) {
            // Only PINGs whose PONG was beyond the cut differ: they are open now.
            assert_eq!(g.status, TxStatus::Open, "{g:?}");
            assert!(g.start <= last_ts);
        }
    }
}

#[test]
fn wrong_files_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pcap");
    let mut seed = 0x1234_5678_9abc_def0u64;
    let bytes: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    std::fs::write(&garbage, bytes).expect("write");
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").expect("write");
    let missing = dir.path().join("missing.pcap");
    let dirpath = dir.path().to_path_buf();
    for path in [
        &garbage,
        &empty,
        &missing,
        &dirpath,
        &Path::new("/dev/zero").to_path_buf(),
    ] {
        let p = path.to_str().expect("utf-8");
        let o = observer(&["analyze", p]);
        assert!(!o.status.success(), "{p}");
        let msg = stderr(&o);
        assert!(msg.contains(p), "the error names {p}: {msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }
}

fn write_capture(link: LinkType, frames: &[(u64, Vec<u8>, u32)]) -> Vec<u8> {
    let mut w = CaptureWriter::new(
        Vec::new(),
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
        link,
    )
    .expect("writer");
    for (ts, data, orig) in frames {
        w.write_frame(0, *ts, data, *orig).expect("frame");
    }
    w.finish().expect("finish")
}

fn frames_of(path: &Path) -> Vec<(u64, Vec<u8>, u32)> {
    let mut r = CaptureReader::open(path).expect("open");
    let mut out = Vec::new();
    while let Some(f) = r.next_frame().expect("frame") {
        out.push((f.ts, f.data.to_vec(), f.orig_len));
    }
    out
}

#[test]
fn unknown_link_type_is_counted() {
    let frames = frames_of(&common::capture("two-peers.pcap"));
    let bytes = write_capture(LinkType(147), &frames);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dlt147.pcap");
    std::fs::write(&path, bytes).expect("write");
    let o = observer(&["analyze", path.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success());
    let v = json(&o);
    assert_eq!(v["transactions"]["total"], 0);
    assert_eq!(
        v["capture"]["packets"]["unknown_link_type"],
        frames.len() as u64
    );
}

#[test]
fn snaplen_cut_frames_are_counted_not_invented() {
    let frames: Vec<_> = frames_of(&common::capture("two-peers.pcap"))
        .into_iter()
        .map(|(ts, data, orig)| (ts, data[..data.len().min(100)].to_vec(), orig))
        .collect();
    let bytes = write_capture(LinkType::ETHERNET, &frames);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cut100.pcap");
    std::fs::write(&path, bytes).expect("write");
    let o = observer(&["analyze", path.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert!(
        v["capture"]["packets"]["snaplen_cut"]
            .as_u64()
            .expect("count")
            > 0
    );
    // No JIM document survives a 100-byte snaplen; nothing may be made up.
    assert_eq!(v["transactions"]["total"], 0);
}

const ALICE: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03";
const BOB: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603";

fn package(elements: &[OwnedElement]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_package(
        &encode_message_v0(elements),
        HeaderOrder::TypeFirst,
        None,
        &mut out,
    );
    out
}

fn jim_package(content: Vec<u8>, src: &str, dst: &str) -> Vec<u8> {
    let (s, d) = (
        PeerId::parse(src).expect("id"),
        PeerId::parse(dst).expect("id"),
    );
    package(&[
        OwnedElement {
            namespace: "jim".into(),
            name: "JimMessage".into(),
            mime: Some("text/xml;charset=UTF-8".into()),
            content,
            signature: None,
        },
        OwnedElement {
            namespace: "jxta".into(),
            name: "EndpointRouterMsg".into(),
            mime: Some("text/xml;charset=UTF-8".into()),
            content: erm_xml(&s, &d, "PipeService/urn:jxta:uuid-59616261646162614E5047205032503311111111111111111111111111111104", &s).into_bytes(),
            signature: None,
        },
    ])
}

fn ping() -> Vec<u8> {
    let doc = Document {
        kind: Kind::Ping,
        name: Some("alice".into()),
        peer_id: Some(ALICE.into()),
        correlator: Some("42".into()),
        ..Document::default()
    };
    jim_package(doc.to_xml().into_bytes(), ALICE, BOB)
}

fn pong() -> Vec<u8> {
    let doc = Document {
        kind: Kind::Pong,
        name: Some("bob".into()),
        peer_id: Some(BOB.into()),
        status: Some(Status::Away),
        correlator: Some("42".into()),
        ..Document::default()
    };
    jim_package(doc.to_xml().into_bytes(), BOB, ALICE)
}

/// A capture of one connection: welcomes, then `hostile` followed by a valid PING from
/// alice, answered by a valid PONG from bob 300 ms later.
fn hostile_stream(hostile: &[u8]) -> Vec<u8> {
    let mut wire = Wire::new();
    let t = 1_700_000_000_000_000_000u64;
    let (a, b) = (
        "10.9.0.1:40000".parse().expect("addr"),
        "10.9.0.2:9701".parse().expect("addr"),
    );
    let c = wire.connect(t, a, b, [1000, 5000], 200_000);
    let shape = SendShape::default();
    let hello_a = encode_welcome(
        "tcp://10.9.0.2:9701",
        "tcp://10.9.0.1:9701",
        ALICE,
        false,
        WelcomeVersion::V1_1,
    );
    let hello_b = encode_welcome(
        "tcp://10.9.0.1:40000",
        "tcp://10.9.0.2:9701",
        BOB,
        false,
        WelcomeVersion::V1_1,
    );
    wire.send(t + 1_000_000, c, 0, &[&hello_a], &shape, 100_000);
    wire.send(t + 2_000_000, c, 1, &[&hello_b], &shape, 100_000);
    wire.send(t + 10_000_000, c, 0, &[hostile], &shape, 100_000);
    let ping = ping();
    wire.send(t + 20_000_000, c, 0, &[&ping], &shape, 100_000);
    let pong = pong();
    wire.send(t + 320_000_000, c, 1, &[&pong], &shape, 100_000);
    wire.close(t + 400_000_000, c);
    wire.write(Vec::new(), LinkVariant::Ethernet, WriteFormat::Pcapng, 0)
        .expect("capture")
}

/// Analyses a hostile stream; the valid PING/PONG after the hostile part must be found.
fn analyze_hostile(name: &str, hostile: &[u8]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.pcapng"));
    std::fs::write(&path, hostile_stream(hostile)).expect("write");
    let o = observer(&["analyze", path.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    let v = json(&o);
    assert_eq!(
        v["transactions"]["ok"], 1,
        "{name}: the PING/PONG after the hostile message is found"
    );
    assert_eq!(v["pairs"][0]["poller"], "alice");
    v
}

fn raw_package(content_length: u64, body: &[u8]) -> Vec<u8> {
    let mut out = vec![12u8];
    out.extend_from_slice(b"content-type");
    out.extend_from_slice(&22u16.to_be_bytes());
    out.extend_from_slice(b"application/x-jxta-msg");
    out.push(14);
    out.extend_from_slice(b"content-length");
    out.extend_from_slice(&8u16.to_be_bytes());
    out.extend_from_slice(&content_length.to_be_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

#[test]
fn absurd_content_lengths_are_malformed_and_the_stream_recovers() {
    for (name, len) in [("len-u64-max", u64::MAX), ("len-4GiB", 4u64 << 30)] {
        let v = analyze_hostile(
            name,
            &raw_package(len, b"jxmg\0garbage that is not a message"),
        );
        // Bigger than any message we accept: one `too_large`, nothing else.
        assert_eq!(
            v["jxta"]["malformed"]["by_kind"],
            serde_json::json!({"too_large": 1}),
            "{name}: {}",
            v["jxta"]
        );
    }
}

#[test]
fn absurd_element_length_is_malformed() {
    let mut body = b"jxmg\0\0\0\0\x01jxel\0\x00\0\x04name".to_vec();
    body.extend_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
    body.extend_from_slice(b"short content");
    let v = analyze_hostile("element-len", &raw_package(body.len() as u64, &body));
    // The element claims 4 GiB inside a message of a few bytes.
    assert_eq!(
        v["jxta"]["malformed"]["by_kind"],
        serde_json::json!({"truncated": 1}),
        "{}",
        v["jxta"]
    );
}

#[test]
fn hostile_xml_is_counted_never_expanded() {
    let laughs = {
        let mut s = String::from("<?xml version=\"1.0\"?><!DOCTYPE PING [<!ENTITY lol \"lol\">");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            s.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">",
                format!("&{prev};").repeat(10)
            ));
        }
        s.push_str("]><PING><Buddy><name>&lol9;</name></Buddy></PING>");
        s.into_bytes()
    };
    let external = b"<?xml version=\"1.0\"?><!DOCTYPE PING [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><PING><Buddy><name>&x;</name></Buddy></PING>".to_vec();
    let deep = {
        let mut s = String::from("<PING>");
        s.push_str(&"<a>".repeat(10_000));
        s.push_str(&"</a>".repeat(10_000));
        s.push_str("</PING>");
        s.into_bytes()
    };
    let mut bad_utf8 = b"<PING><Buddy><name>al".to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    bad_utf8.extend_from_slice(b"ice</name></Buddy><correlator>7</correlator></PING>");
    for (name, xml) in [
        ("billion-laughs", laughs),
        ("external-entity", external),
        ("deep", deep),
        ("bad-utf8", bad_utf8),
    ] {
        let v = analyze_hostile(name, &jim_package(xml, ALICE, BOB));
        assert_eq!(v["jim"]["malformed"], 1, "{name}: {}", v["jim"]);
        assert_eq!(v["anomalies"]["malformed_documents"], 1, "{name}");
        // No document was made of it: one PING and one PONG in all.
        assert_eq!(v["jim"]["pings"], 1, "{name}");
    }
}

/// Names from the wire cannot inject terminal escapes into the tables, nor formulas into
/// spreadsheets opening the CSV.
#[test]
fn hostile_names_are_neutralised_in_outputs() {
    let evil = "=HYPERLINK(\"x\")\u{1b}[2J\u{7}";
    let doc = Document {
        kind: Kind::Ping,
        name: Some(evil.into()),
        peer_id: Some(ALICE.into()),
        correlator: Some("42".into()),
        ..Document::default()
    };
    let ping = jim_package(doc.to_xml().into_bytes(), ALICE, BOB);
    // The stream: welcome, the hostile-named PING, then the PONG of `hostile_stream`.
    let mut wire = Wire::new();
    let t = 1_700_000_000_000_000_000u64;
    let (a, b) = (
        "10.9.0.1:40000".parse().expect("addr"),
        "10.9.0.2:9701".parse().expect("addr"),
    );
    let c = wire.connect(t, a, b, [1000, 5000], 200_000);
    let shape = SendShape::default();
    let hello_a = encode_welcome(
        "tcp://10.9.0.2:9701",
        "tcp://10.9.0.1:9701",
        ALICE,
        false,
        WelcomeVersion::V1_1,
    );
    let hello_b = encode_welcome(
        "tcp://10.9.0.1:40000",
        "tcp://10.9.0.2:9701",
        BOB,
        false,
        WelcomeVersion::V1_1,
    );
    wire.send(t + 1_000_000, c, 0, &[&hello_a], &shape, 100_000);
    wire.send(t + 2_000_000, c, 1, &[&hello_b], &shape, 100_000);
    wire.send(t + 10_000_000, c, 0, &[&ping], &shape, 100_000);
    let pong = pong();
    wire.send(t + 300_000_000, c, 1, &[&pong], &shape, 100_000);
    let bytes = wire
        .write(
            Vec::new(),
            LinkVariant::Ethernet,
            WriteFormat::Pcap {
                nanos: false,
                big_endian: false,
            },
            0,
        )
        .expect("capture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("evil.pcap");
    std::fs::write(&path, bytes).expect("write");
    let p = path.to_str().expect("utf-8");

    let table = observer(&["analyze", p]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("HYPERLINK"), "the name is shown: {text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "no control character reaches the terminal"
    );

    let csv = observer(&["analyze", p, "--csv", "-"]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    let row = csv.lines().nth(1).expect("one transaction");
    assert!(
        row.contains("\"'=HYPERLINK"),
        "formula defused in the CSV: {row}"
    );

    let v = json(&observer(&["analyze", p, "--json"]));
    assert_eq!(
        v["pairs"][0]["poller"], evil,
        "JSON carries the exact name, escaped by the encoder"
    );
}
