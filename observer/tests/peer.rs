//! The reference peer as a process: two `observer peer`s on loopback poll each other;
//! their CSVs, management endpoints, state changes and MESSAGE refusals are checked,
//! and (with tcpdump and tshark) a capture of their traffic decodes without a malformed
//! frame and the observer finds every transaction they recorded.

mod common;

use common::{free_port, serial};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observer::jim::Status;
use observer::report::{read_records_file, read_transactions_csv, ColumnMap};
use observer::runtime::{self, PipelineConfig};
use observer::transaction::{Transaction, TxStatus};

const BIN: &str = env!("CARGO_BIN_EXE_observer");

/// A child process killed when dropped (a failing test leaves nothing running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct PeerSpec<'a> {
    name: &'a str,
    port: u16,
    mgmt: u16,
    buddies: Vec<(&'a str, u16)>,
    csv: PathBuf,
    duration: &'a str,
    extra: &'a [&'a str],
}

fn start_peer(p: &PeerSpec<'_>) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.arg("peer")
        .args(["--name", p.name])
        .args(["--listen", &format!("127.0.0.1:{}", p.port)])
        .arg("--management")
        .arg(if p.mgmt == 0 {
            "off".to_string()
        } else {
            format!("127.0.0.1:{}", p.mgmt)
        })
        .args(["--interval", "1s", "--reply-delay", "fixed:50ms"])
        .args(["--duration", p.duration, "--no-stdin"])
        .arg("--csv")
        .arg(&p.csv)
        .args(p.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, port) in &p.buddies {
        cmd.args(["--buddy", &format!("{name}=127.0.0.1:{port}")]);
    }
    Proc(cmd.spawn().expect("start observer peer"))
}

/// One HTTP/1.1 request; returns (status code, body).
fn http(port: u16, method: &str, target: &str, body: &str) -> (u16, String) {
    let (code, _, body) = http_with(port, method, target, "", body);
    (code, body)
}

/// One HTTP/1.1 request with `extra` header lines; returns (status code, head, body).
fn http_with(
    port: u16,
    method: &str,
    target: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("management port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (code, head.to_string(), body.to_string())
}

fn read_csv(path: &Path) -> Vec<Transaction> {
    read_transactions_csv(std::fs::File::open(path).expect("CSV written")).expect("valid CSV")
}

fn wait_exit(p: &mut Proc, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            assert!(st.success(), "peer exited with {st}");
            return;
        }
        assert!(Instant::now() < deadline, "peer did not stop by itself");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// tcpdump on loopback, if it can run here (root, installed). Returns the process
/// once it is listening.
fn start_tcpdump(file: &Path, ports: [u16; 2]) -> Option<Proc> {
    let filter = format!("tcp port {} or tcp port {}", ports[0], ports[1]);
    common::tcpdump("lo", file, &filter).map(Proc)
}

#[test]
fn two_peers_measure_each_other_and_the_observer_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, ma, mb) = (free_port(), free_port(), free_port(), free_port());
    let cap = dir.path().join("peers.pcap");
    let _serial = serial();
    let tcpdump = start_tcpdump(&cap, [pa, pb]);
    let alice_csv = dir.path().join("alice.csv");
    let bob_csv = dir.path().join("bob.csv");
    let mut alice = start_peer(&PeerSpec {
        name: "alice",
        port: pa,
        mgmt: ma,
        buddies: vec![("bob", pb)],
        csv: alice_csv.clone(),
        duration: "7s",
        extra: &[],
    });
    let mut bob = start_peer(&PeerSpec {
        name: "bob",
        port: pb,
        mgmt: mb,
        buddies: vec![("alice", pa)],
        csv: bob_csv.clone(),
        duration: "7s",
        extra: &[],
    });

    // Once a poll is answered: metrics and records name the buddy.
    let ok_line = "jim_peer_transactions_total{peer=\"alice\",receiver=\"bob\",status=\"ok\"}";
    let mut metrics = String::new();
    common::wait_until(
        "alice's first answered poll",
        Duration::from_secs(10),
        || {
            let (code, body) = http(ma, "GET", "/metrics", "");
            assert_eq!(code, 200);
            metrics = body;
            // The line is there from the start, with 0.
            metrics
                .lines()
                .filter_map(|l| l.strip_prefix(ok_line))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .any(|n| n >= 1)
        },
    );
    assert!(metrics
        .contains("jim_peer_rtt_seconds_bucket{peer=\"alice\",receiver=\"bob\",le=\"+Inf\"}"));
    assert!(
        metrics.contains("jim_peer_instrumentation_bytes_total{peer=\"alice\",direction=\"sent\"}")
    );
    let (code, records) = http(ma, "GET", "/records", "");
    assert_eq!(code, 200);
    let recs: serde_json::Value = serde_json::from_str(&records).unwrap();
    let first = &recs.as_array().expect("array")[0];
    let name = first["name"].as_str().unwrap();
    assert!(name.starts_with("alice:dest=bob,corr="), "{name}");
    assert_eq!(first["transaction_status"], "ok");

    // Bob goes offline: alice's PONGs say so, and a MESSAGE to him is refused.
    assert_eq!(http(mb, "POST", "/state", r#"{"state":"offline"}"#).0, 200);
    assert_eq!(http(mb, "POST", "/state", r#"{"state":"sleepy"}"#).0, 400);
    assert_eq!(
        http(
            ma,
            "POST",
            "/message?to=bob",
            r#"{"text":"see you at noon"}"#
        )
        .0,
        200
    );
    let (mut am, mut bm) = (String::new(), String::new());
    common::wait_until(
        "the refusal counted on both sides",
        Duration::from_secs(10),
        || {
            am = http(ma, "GET", "/metrics", "").1;
            bm = http(mb, "GET", "/metrics", "").1;
            am.contains("event=\"messages_refused_by_peer\"}")
                && bm.contains("event=\"messages_refused\"}")
        },
    );
    assert!(am.contains("event=\"messages_refused_by_peer\"} 1"), "{am}");
    assert!(bm.contains("event=\"messages_refused\"} 1"), "{bm}");
    assert!(bm.contains("jim_peer_state{peer=\"bob\",state=\"offline\"} 1"));

    wait_exit(&mut alice, Duration::from_secs(15));
    wait_exit(&mut bob, Duration::from_secs(15));

    // Kernel timestamps: every ok record has a socket RTT, inside the application's
    // (the PING leaves after the clock is read before write(); the PONG's segment
    // arrives before read() returns).
    for csv in [&alice_csv, &bob_csv] {
        let recs = read_records_file(csv, &ColumnMap::default()).expect("peer CSV");
        for r in recs.iter().filter(|r| r.tx.status == TxStatus::Ok) {
            let (app, sock) = (r.tx.rtt_ns().unwrap(), r.socket_rtt_ns());
            let sock = sock.unwrap_or_else(|| panic!("no socket RTT: {r:?}"));
            assert!(sock <= app, "{r:?}");
            assert!(r.socket.start.unwrap() >= r.tx.start, "{r:?}");
            assert!(r.socket.stop.unwrap() <= r.tx.stop.unwrap(), "{r:?}");
        }
    }
    let a = read_csv(&alice_csv);
    let b = read_csv(&bob_csv);
    for (txs, buddy) in [(&a, "bob"), (&b, "alice")] {
        let ok: Vec<_> = txs.iter().filter(|t| t.status == TxStatus::Ok).collect();
        assert!(ok.len() >= 4, "{buddy}: {txs:?}");
        for t in &ok {
            assert_eq!(t.receiver_name.as_deref(), Some(buddy));
            assert!(t
                .correlator
                .as_deref()
                .is_some_and(|c| c.parse::<u64>().is_ok()));
            assert!(t.rtt_ns().unwrap() >= 50_000_000, "{t:?}");
            assert!(t.rtt_ns().unwrap() < 1_000_000_000, "{t:?}");
            assert!(t.correlator_overhead_bytes > 0 && t.correlator_overhead_bytes <= 100);
            assert!(t.ping_bytes > 500 && t.pong_bytes.unwrap() > 500);
        }
    }
    let statuses: Vec<_> = a.iter().filter_map(|t| t.receiver_status).collect();
    assert_eq!(statuses.first(), Some(&Status::Online));
    assert_eq!(statuses.last(), Some(&Status::Offline), "{statuses:?}");

    let n = (a.len() + b.len()) as u64;
    check_capture(tcpdump, &cap, &[&alice_csv, &bob_csv], n, false);
}

/// Stops tcpdump, then: tshark decodes every frame without error, and the observer's
/// transactions validate against the peers' CSVs (100 % found, none extra,
/// |active - passive| < 5 ms).
fn check_capture(tcpdump: Option<Proc>, cap: &Path, csvs: &[&Path], n: u64, by_time: bool) {
    let Some(mut td) = tcpdump else { return };
    // The peers have exited, so everything was sent: wait until tcpdump has written it.
    common::wait_until(
        "tcpdump's file to hold every transaction",
        Duration::from_secs(10),
        || {
            let a = runtime::analyze(&[cap.to_path_buf()], PipelineConfig::default(), false);
            a.result.transactions.len() as u64 >= n
        },
    );
    common::stop_tcpdump(&mut td.0);
    if !common::tshark_available() {
        return;
    }
    let bad = common::tshark_fields(
        cap,
        "_ws.malformed || _ws.expert.severity==error",
        &["frame.number"],
    );
    assert!(bad.is_empty(), "tshark finds malformed frames: {bad:?}");
    let jxta = common::tshark_fields(
        cap,
        "jxta.message.element.name",
        &["jxta.message.element.name"],
    );
    assert!(
        jxta.len() as u64 >= 2 * n,
        "tshark decodes {} JXTA messages",
        jxta.len()
    );
    assert!(jxta
        .iter()
        .all(|r| r[0]
            == "JimMessage,EndpointRouterMsg,EndpointSourceAddress,EndpointDestinationAddress"));

    let observed = cap.with_extension("csv");
    let st = Command::new(BIN)
        .args(["analyze", "--no-progress", "--csv"])
        .arg(&observed)
        .arg(cap)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(BIN)
        .args([
            "validate",
            "--json",
            "--max-miss",
            "0",
            // The socket difference (the peers' kernel timestamps against the capture's)
            // is what the wire shows; the application difference adds the peers' own
            // scheduling delays, which grow with the machine's load (5.5 ms seen with
            // builds running): reported, not bounded, as in the scenarios.
            "--max-socket-delta",
            "2ms",
            "--max-socket-p99",
            "500us",
            // A peer late to read a PONG until the next message arrived withholds its
            // socket stop rather than take that message's timestamp (docs/peer.md).
            "--max-socket-withheld",
            "1",
            "--passive",
        ])
        .arg(&observed)
        .arg("--active")
        .args(csvs)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("validate JSON");
    eprintln!("validate: {}", v["total"]);
    assert!(out.status.success(), "validate: {v:#}");
    assert_eq!(v["total"]["missed"], 0);
    assert_eq!(v["total"]["extra"], 0);
    assert_eq!(v["total"]["found"], n);
    let key = if by_time {
        "joined_by_time"
    } else {
        "joined_by_correlator"
    };
    assert_eq!(v["total"][key], n);
    // The application difference is in the line printed above, not bounded: it failed
    // at 9.6 ms (socket difference 7 µs) with two builds running.
    assert_eq!(v["total"]["socket_missing"], 0);
    let withheld = v["total"]["socket_withheld"].as_u64().expect("a count");
    assert_eq!(
        v["total"]["socket_rtt_delta_us"]["count"]
            .as_u64()
            .expect("a count")
            + withheld,
        v["total"]["rtt_delta_us"]["count"]
            .as_u64()
            .expect("a count")
    );
}

/// Unmodified JIM on the wire (`--no-correlator`): the peers still measure themselves,
/// and validation joins by pair and start time.
#[test]
fn no_correlator_peers_validate_by_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let cap = dir.path().join("plain.pcap");
    let _serial = serial();
    let tcpdump = start_tcpdump(&cap, [pa, pb]);
    let alice_csv = dir.path().join("alice.csv");
    let bob_csv = dir.path().join("bob.csv");
    let extra = ["--no-correlator"];
    let mut alice = start_peer(&PeerSpec {
        name: "alice",
        port: pa,
        mgmt: 0,
        buddies: vec![("bob", pb)],
        csv: alice_csv.clone(),
        duration: "4s",
        extra: &extra,
    });
    let mut bob = start_peer(&PeerSpec {
        name: "bob",
        port: pb,
        mgmt: 0,
        buddies: vec![("alice", pa)],
        csv: bob_csv.clone(),
        duration: "4s",
        extra: &extra,
    });
    wait_exit(&mut alice, Duration::from_secs(15));
    wait_exit(&mut bob, Duration::from_secs(15));
    let (a, b) = (read_csv(&alice_csv), read_csv(&bob_csv));
    for t in a.iter().chain(&b) {
        assert_eq!(t.status, TxStatus::Ok);
        assert_eq!(t.correlator, None);
        assert_eq!(t.correlator_overhead_bytes, 0);
        assert!(t.rtt_ns().unwrap() >= 50_000_000);
    }
    assert!(a.len() >= 2 && b.len() >= 2, "{a:?} {b:?}");
    check_capture(
        tcpdump,
        &cap,
        &[&alice_csv, &bob_csv],
        (a.len() + b.len()) as u64,
        true,
    );
}

/// alice stops and starts again under the same name while bob keeps polling: her second
/// run's correlators are new, and the observer finds every transaction of both runs
/// and of bob (before correlator reuse was handled, the second run was lost as
/// duplicates).
#[test]
fn a_restarted_peer_is_found_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let cap = dir.path().join("restart.pcap");
    let _serial = serial();
    let tcpdump = start_tcpdump(&cap, [pa, pb]);
    let csv = |n: &str| dir.path().join(format!("{n}.csv"));
    let alice = |run: &str| PeerSpec {
        name: "alice",
        port: pa,
        mgmt: 0,
        buddies: vec![("bob", pb)],
        csv: csv(run),
        duration: "3s",
        extra: &[],
    };
    let mut bob = start_peer(&PeerSpec {
        name: "bob",
        port: pb,
        mgmt: 0,
        buddies: vec![("alice", pa)],
        csv: csv("bob"),
        duration: "7s",
        extra: &[],
    });
    let mut first = start_peer(&alice("alice1"));
    wait_exit(&mut first, Duration::from_secs(15));
    let mut second = start_peer(&alice("alice2"));
    wait_exit(&mut second, Duration::from_secs(15));
    wait_exit(&mut bob, Duration::from_secs(15));
    let runs = [read_csv(&csv("alice1")), read_csv(&csv("alice2"))];
    let ok = |txs: &[Transaction]| {
        txs.iter()
            .filter(|t| t.status == TxStatus::Ok)
            .filter_map(|t| t.correlator.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    let (c1, c2) = (ok(&runs[0]), ok(&runs[1]));
    assert!(c1.len() >= 2 && c2.len() >= 2, "{runs:?}");
    assert!(c1.is_disjoint(&c2), "{c1:?} {c2:?}");
    let n = (runs[0].len() + runs[1].len() + read_csv(&csv("bob")).len()) as u64;
    check_capture(
        tcpdump,
        &cap,
        &[&csv("alice1"), &csv("alice2"), &csv("bob")],
        n,
        false,
    );
}

/// Garbage, an oversized frame and malformed XML each close their connection, are
/// counted, and leave the peer running.
#[test]
fn bad_input_closes_the_connection_not_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mgmt) = (free_port(), free_port());
    let _bob = start_peer(&PeerSpec {
        name: "bob",
        port,
        mgmt,
        buddies: vec![],
        csv: dir.path().join("bob.csv"),
        duration: "30s",
        extra: &[],
    });
    // Bob answering on its management port has bound its listener (bound first), so
    // each connection below reaches bob: a connection made while bob starts could
    // reach whatever else held the port then and be closed with nothing counted.
    let (code, _) = http(mgmt, "GET", "/metrics", "");
    assert_eq!(code, 200, "bob's management endpoint");
    let connect = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    return s;
                }
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    // Reads until the peer closes the connection; true if it did.
    let closed = |mut s: TcpStream| {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    };
    let welcome = |s: &mut TcpStream| {
        let id = "urn:jxta:uuid-59616261646162614E50472050325033000000000000000000000000000000AA03";
        write!(
            s,
            "JXTAHELLO tcp://127.0.0.1:{port} tcp://127.0.0.1:1 {id} 0 1.1\r\n"
        )
        .unwrap();
    };
    let package = |body: &[u8]| {
        let mut out = Vec::new();
        observer::jxta::encode_package(
            body,
            observer::jxta::HeaderOrder::TypeFirst,
            None,
            &mut out,
        );
        out
    };

    let mut s = connect();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n garbage garbage garbage garbage")
        .unwrap();
    assert!(closed(s), "garbage");

    let mut s = connect();
    welcome(&mut s);
    let mut big = Vec::new();
    big.extend_from_slice(
        b"\x0ccontent-type\x00\x16application/x-jxta-msg\x0econtent-length\x00\x08",
    );
    big.extend_from_slice(&(64u64 << 20).to_be_bytes());
    big.push(0);
    s.write_all(&big).unwrap();
    assert!(closed(s), "oversized frame");

    let mut s = connect();
    welcome(&mut s);
    let body = observer::jxta::encode_message_v0(&[observer::jxta::OwnedElement::new(
        "jim",
        "JimMessage",
        Some("text/xml"),
        "<?xml version=\"1.0\"?><PING><Buddy><name>x</Buddy></PING>",
    )]);
    s.write_all(&package(&body)).unwrap();
    assert!(closed(s), "malformed XML");

    let mut s = connect();
    welcome(&mut s);
    s.write_all(&package(b"not a jxmg message")).unwrap();
    assert!(closed(s), "bad message");

    let (code, m) = http(mgmt, "GET", "/metrics", "");
    assert_eq!(code, 200, "the peer still runs");
    for reason in ["garbage", "oversized_frame", "malformed_xml", "bad_message"] {
        assert!(
            m.contains(&format!(
                "jim_peer_bad_input_total{{peer=\"bob\",reason=\"{reason}\"}} 1"
            )),
            "{reason}: {m}"
        );
    }
}

/// The management endpoint beyond loopback: refused without a token at start, and with
/// one, every request without the bearer token gets 401 (state changes included).
#[test]
fn management_beyond_loopback_needs_the_token() {
    let bin = env!("CARGO_BIN_EXE_observer");
    let (refused_port, port) = (free_port(), free_port());
    let refused = std::process::Command::new(bin)
        .args([
            "peer",
            "--name",
            "tok",
            "--listen",
            "127.0.0.1:0",
            "--management",
            &format!("0.0.0.0:{refused_port}"),
            "--no-stdin",
            "--duration",
            "1s",
        ])
        .output()
        .expect("peer");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--token"));

    let mut child = std::process::Command::new(bin)
        .args([
            "peer",
            "--name",
            "tok",
            "--listen",
            "127.0.0.1:0",
            "--management",
            &format!("0.0.0.0:{port}"),
            "--token",
            "s3cret",
            "--no-stdin",
            "--duration",
            "5s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("peer");
    let request = |extra: &str, method: &str, path: &str, body: &str| -> String {
        use std::io::{Read, Write};
        for _ in 0..50 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}", body.len());
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("management endpoint did not come up");
    };
    assert!(request("", "GET", "/metrics", "").starts_with("HTTP/1.1 401"));
    assert!(request(
        "Authorization: Bearer wrong\r\n",
        "POST",
        "/state",
        r#"{"state":"away"}"#
    )
    .starts_with("HTTP/1.1 401"));
    assert!(
        request("Authorization: Bearer s3cret\r\n", "GET", "/metrics", "")
            .starts_with("HTTP/1.1 200")
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The peer's /metrics speaks the observer's negotiation: each `Accept` header a
/// scraper sends gets its format (content type and body), with the same names and
/// labels in both, and the classic text passes `promtool check metrics`.
#[test]
fn management_metrics_follow_the_accept_header() {
    use observer::metrics::Format;
    let dir = tempfile::tempdir().unwrap();
    let mgmt = free_port();
    // The buddy's port has no listener: the receiver exists (so its series do) and
    // every figure in them is known, 0.
    let _peer = start_peer(&PeerSpec {
        name: "carol",
        port: free_port(),
        mgmt,
        buddies: vec![("dave", free_port())],
        csv: dir.path().join("carol.csv"),
        duration: "20s",
        extra: &[],
    });
    let openmetrics = [
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
        // Prometheus 2's header.
        "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
        "Accept: text/plain;q=0.5, application/openmetrics-text\r\n",
    ];
    let classic = [
        "",
        "Accept: text/plain; version=0.0.4\r\n",
        "Accept: */*\r\n",
        "Accept: application/openmetrics-text;q=0, text/plain\r\n",
        "Accept: application/json\r\n",
    ];
    let content_type = |head: &str| -> String {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let samples = [
        "jim_peer_transactions_total{peer=\"carol\",receiver=\"dave\",status=\"ok\"} 0\n",
        "jim_peer_rtt_seconds_count{peer=\"carol\",receiver=\"dave\"} 0\n",
        "jim_peer_state{peer=\"carol\",state=\"online\"} 1\n",
        "jim_peer_instrumentation_bytes_total{peer=\"carol\",direction=\"received\"} 0\n",
    ];
    for h in openmetrics {
        let (code, head, body) = http_with(mgmt, "GET", "/metrics", h, "");
        assert_eq!(code, 200, "{h}");
        assert_eq!(
            content_type(&head),
            Format::OpenMetrics.content_type(),
            "{h}"
        );
        assert!(
            body.contains("# TYPE jim_peer_transactions counter\n"),
            "{h}: {body}"
        );
        for s in samples {
            assert!(body.contains(s), "{h}: {s} in {body}");
        }
        // OpenMetrics puts `le` first and writes it as a float.
        assert!(
            body.contains(
                "jim_peer_rtt_seconds_bucket{le=\"1.0\",peer=\"carol\",receiver=\"dave\"} 0\n"
            ),
            "{h}: {body}"
        );
        assert!(body.ends_with("# EOF\n"), "{h}: {body}");
    }
    let mut text = String::new();
    for h in classic {
        let (code, head, body) = http_with(mgmt, "GET", "/metrics", h, "");
        assert_eq!(code, 200, "{h}");
        assert_eq!(
            content_type(&head),
            Format::Prometheus.content_type(),
            "{h}"
        );
        assert!(
            body.contains("# TYPE jim_peer_transactions_total counter\n"),
            "{h}: {body}"
        );
        for s in samples {
            assert!(body.contains(s), "{h}: {s} in {body}");
        }
        // The classic text keeps the hand-written order and bounds (`le` last, "1").
        assert!(
            body.contains(
                "jim_peer_rtt_seconds_bucket{peer=\"carol\",receiver=\"dave\",le=\"1\"} 0\n"
            ),
            "{h}: {body}"
        );
        assert!(!body.contains("# EOF"), "{h}: {body}");
        text = body;
    }
    common::assert_promtool_accepts(&text);
}
