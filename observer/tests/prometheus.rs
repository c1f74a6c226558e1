//! Several gateways, one Prometheus: two live observers on two interfaces, scraped by a
//! real Prometheus server on loopback; the transaction count summed through its query
//! API equals what the two captures hold.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use observer::report::read_transactions_csv;
use observer::transaction::TxStatus;

struct Veth {
    ns: String,
    host: String,
    peer: String,
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let v = Veth {
            ns: format!("obs-prom-{tag}-{id}"),
            host: format!("obp{tag}A{id}"),
            peer: format!("obp{tag}B{id}"),
        };
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(ok(&["netns", "add", &v.ns]), "ip netns add");
        assert!(ok(&[
            "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer
        ]));
        assert!(ok(&["link", "set", &v.peer, "netns", &v.ns]));
        assert!(ok(&["link", "set", &v.host, "up"]));
        assert!(ok(&[
            "netns", "exec", &v.ns, "ip", "link", "set", &v.peer, "up"
        ]));
        v
    }

    fn replay(&self, capture: &str) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "tcpreplay",
                "-q",
                "-i",
                &self.peer,
                "--multiplier=10",
            ])
            .arg(common::capture(capture))
            .output()
            .expect("tcpreplay");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn usable() -> bool {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["prometheus", "tcpreplay"]
        .iter()
        .all(|t| Command::new(t).arg("--version").output().is_ok());
    if !(root && tools) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with prometheus and tcpreplay installed by scripts/test"
        );
        eprintln!("skipping: needs root, prometheus and tcpreplay");
        return false;
    }
    true
}

fn ok_count(truth: &str) -> usize {
    let f = std::fs::File::open(common::capture(truth)).expect("truth");
    read_transactions_csv(f)
        .expect("csv")
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .count()
}

#[test]
fn prometheus_sums_two_observers() {
    if !usable() {
        return;
    }
    let (a, b) = (Veth::new("a"), Veth::new("b"));
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = ["127.0.0.1:19911", "127.0.0.1:19912"];
    let mut observers = Vec::new();
    for (veth, metrics) in [(&a, targets[0]), (&b, targets[1])] {
        let child = Command::new(env!("CARGO_BIN_EXE_observer"))
            .args([
                "live",
                "-i",
                &veth.host,
                "--source",
                "ebpf",
                "--metrics",
                metrics,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("observer live");
        observers.push(Killer(child));
    }
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: observer\n    static_configs:\n      - targets: ['{}', '{}']\n",
            targets[0], targets[1]
        ),
    )
    .expect("config");
    let web = "127.0.0.1:19990";
    let prom = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let _prom = Killer(prom);

    // Both observers up (their endpoints answer), then the traffic.
    let t0 = Instant::now();
    while !targets
        .iter()
        .all(|t| get(t, "/metrics").is_some_and(|m| m.contains("observer_active_flows")))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "observers did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.replay("two-peers.pcap");
    b.replay("relayed.pcap");
    let expected = ok_count("two-peers.truth.csv") + ok_count("relayed.truth.csv");

    let query = "/api/v1/query?query=sum(observer_transactions_total%7Bstatus%3D%22ok%22%7D)";
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(body) = get(web, query) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                let value = v["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok());
                if value == Some(expected as f64) {
                    break;
                }
                last = body;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "Prometheus never summed {expected}: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // And per observer: each target holds its own capture's transactions.
    let per = "/api/v1/query?query=sum%20by%20(instance)(observer_transactions_total%7Bstatus%3D%22ok%22%7D)";
    let body = get(web, per).expect("query");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let results = v["data"]["result"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{body}");
    for r in results {
        let n: f64 = r["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("value");
        let want = if r["metric"]["instance"] == targets[0] {
            ok_count("two-peers.truth.csv")
        } else {
            ok_count("relayed.truth.csv")
        };
        assert_eq!(n, want as f64, "{r}");
    }
}
