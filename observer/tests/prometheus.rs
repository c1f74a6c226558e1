//! Several gateways, one Prometheus: two live observers on two interfaces, scraped by a
//! real Prometheus server on loopback; the transaction count summed through its query
//! API equals what the two captures hold, and every PromQL query of the Grafana
//! dashboard (deploy/grafana/observer.json) parses and returns series.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observer::report::read_transactions_csv;
use observer::transaction::TxStatus;

use common::{http_get as get, Killer, Veth};

fn usable() -> bool {
    common::root_with(&["prometheus", "tcpreplay"])
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
#[ignore = "needs root, prometheus and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn prometheus_sums_two_observers() {
    if !usable() {
        return;
    }
    let (Some(a), Some(b)) = (Veth::new("pa"), Veth::new("pb")) else {
        panic!("cannot create network namespaces and veth pairs as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = [common::free_local_addr(), common::free_local_addr()];
    let mut observers = Vec::new();
    for (i, (veth, metrics)) in [(&a, &targets[0]), (&b, &targets[1])]
        .into_iter()
        .enumerate()
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_observer"));
        cmd.args([
            "live",
            "-i",
            &veth.host,
            "--source",
            "ebpf",
            "--metrics",
            metrics,
        ]);
        if i == 1 {
            // A ClickHouse sink whose store is down (nothing listens there): the sink's
            // series exist, for the dashboard's panels over them.
            cmd.arg("--clickhouse")
                .arg(format!("http://{}", common::free_local_addr()))
                .arg("--clickhouse-spool")
                .arg(dir.path().join("spool"));
        }
        let child = cmd
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
    let web = common::free_local_addr();
    let web = web.as_str();
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
    a.replay("two-peers.pcap", 10);
    b.replay("relayed.pcap", 10);
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
    dashboard_queries_return_series(web);
}

/// The values Grafana gives the dashboard's variables: every observer, and a rate
/// window holding several of this test's 1 s scrapes.
const DASHBOARD_VARIABLES: [(&str, &str); 2] = [("$__rate_interval", "1m"), ("$instance", ".*")];

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs every query of the dashboard against the Prometheus scraping the two observers:
/// each must parse and return at least one series.
fn dashboard_queries_return_series(web: &str) {
    let queries = common::dashboard_promql();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut failing = Vec::new();
    // The rates need two scrapes after the traffic; a short grace for the slowest.
    let t0 = Instant::now();
    loop {
        failing.clear();
        for (title, expr) in &queries {
            let mut q = expr.clone();
            for (var, value) in DASHBOARD_VARIABLES {
                q = q.replace(var, value);
            }
            assert!(
                !q.contains('$'),
                "{title}: a variable the test does not set: {q}"
            );
            let body =
                get(web, &format!("/api/v1/query?query={}", url_encode(&q))).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let series = v["data"]["result"].as_array().map_or(0, Vec::len);
            if v["status"] != "success" || series == 0 {
                failing.push(format!("{title}: {q} -> {body}"));
            }
        }
        // A deadline, not a duration: a loaded machine only makes the wait longer
        // (a rate needs two scrapes), never the verdict different.
        if failing.is_empty() || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        failing.is_empty(),
        "dashboard queries without series:\n{}",
        failing.join("\n")
    );
    eprintln!(
        "dashboard: {} PromQL queries, each returning series",
        queries.len()
    );
}
