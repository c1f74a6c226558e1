//! `cargo xtask scenario gateways`: two LANs, each behind its own gateway running
//! `observer live --clickhouse`, one ClickHouse server both gateways reach.
//!
//! Topology (namespaces; addresses exist only inside them):
//!
//! ```text
//!  alice, bob (10.213.1.x) ── gateway A (br0 10.213.1.254, up0 10.213.9.1) ──┐
//!                                                                           core br0 (ClickHouse 10.213.9.3)
//!  carol, dave (10.213.2.x) ─ gateway B (br0 10.213.2.254, up0 10.213.9.2) ──┘
//! ```
//!
//! Gateway A routes LAN A to LAN B over the core bridge and back, so a PING from alice to
//! carol crosses both gateways and both observers record it. Gateway A's observer uses
//! the eBPF tap, gateway B's libpcap (when built with it), both inserting into the one
//! ClickHouse server, which is stopped for 10 s in the middle of the run. Dave has no
//! correlator, so his PINGs merge across the gateways by order position only. The
//! merged view checked is `observer report --clickhouse`'s own, against the gateways'
//! CSVs merged here as its documentation says.
//!
//! Over 600 lines: one scenario: its topology, its runs and its checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use testbed::clickhouse::{Config as StoreConfig, Server as Store};
use testbed::{ip, netns_exec, Children};

use crate::scenario::{validate, Options};

/// The ClickHouse server's address on the core bridge; its ports are the defaults, the
/// namespace being the scenario's own.
const STORE_ADDR: &str = "10.213.9.3";
const STORE_HTTP_PORT: u16 = 8123;
const STORE_TCP_PORT: u16 = 9000;
/// The gateways' uplinks and the store: the only clients the store admits.
const UPLINK_NET: &str = "10.213.9.0/24";
const TABLE: &str = "observer_transactions";
/// How long the store is down in the middle of the run.
const OUTAGE: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(3);
/// `report --clickhouse --merge-window`: below the peers' poll interval (the
/// uninstrumented peer's PINGs pair by order within the window), far above the one-way
/// delay between the gateways (one host, one clock).
const MERGE_WINDOW: Duration = Duration::from_millis(300);

struct Lan {
    /// The `gateway` column and the file names of this gateway's outputs.
    gateway: &'static str,
    /// Third octet of the LAN's /24.
    subnet: u8,
    peers: [Peer; 2],
}

struct Peer {
    name: &'static str,
    reply_delay: &'static str,
    /// `false`: `observer peer --no-correlator`, so its PINGs pair across the gateways
    /// by their order within the pair only.
    instrumented: bool,
}

/// The peer without correlator (named for the messages).
const UNINSTRUMENTED: &str = "dave";

const LANS: [Lan; 2] = [
    Lan {
        gateway: "gw-a",
        subnet: 1,
        peers: [
            Peer {
                name: "alice",
                instrumented: true,
                reply_delay: "fixed:20ms",
            },
            Peer {
                name: "bob",
                instrumented: true,
                reply_delay: "normal:300ms,100ms",
            },
        ],
    },
    Lan {
        gateway: "gw-b",
        subnet: 2,
        peers: [
            Peer {
                name: "carol",
                instrumented: true,
                reply_delay: "normal:400ms,100ms",
            },
            Peer {
                name: "dave",
                instrumented: false,
                reply_delay: "normal:200ms,50ms",
            },
        ],
    },
];

fn peer_addr(lan: &Lan, k: usize) -> String {
    format!("10.213.{}.{}", lan.subnet, k + 1)
}

/// The namespaces of the scenario; deleting them deletes their links.
struct Topology {
    core: String,
    gateways: Vec<String>,
    peers: Vec<String>,
    /// Per gateway, its bridge ports to its peers (where the eBPF tap goes).
    ports: Vec<Vec<String>>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self
            .peers
            .iter()
            .chain(&self.gateways)
            .chain(std::iter::once(&self.core))
        {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Topology {
    fn create() -> Result<Topology> {
        let id = std::process::id() % 10_000;
        let mut t = Topology {
            core: format!("obscore{id}"),
            gateways: Vec::new(),
            peers: Vec::new(),
            ports: Vec::new(),
        };
        ip(&["netns", "add", &t.core])?;
        ip(&["-n", &t.core, "link", "set", "lo", "up"])?;
        ip(&["-n", &t.core, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &t.core, "link", "set", "br0", "up"])?;
        ip(&[
            "-n",
            &t.core,
            "addr",
            "add",
            &format!("{STORE_ADDR}/24"),
            "dev",
            "br0",
        ])?;
        for (g, lan) in LANS.iter().enumerate() {
            let gw = format!("obsgw{g}x{id}");
            ip(&["netns", "add", &gw])?;
            t.gateways.push(gw.clone());
            ip(&["-n", &gw, "link", "set", "lo", "up"])?;
            netns_exec(&gw, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            // The uplink to the core bridge.
            let (up, core_port) = (format!("gu{g}x{id}"), format!("gc{g}x{id}"));
            ip(&[
                "link", "add", &up, "type", "veth", "peer", "name", &core_port,
            ])?;
            ip(&["link", "set", &up, "netns", &gw, "name", "up0"])?;
            ip(&["link", "set", &core_port, "netns", &t.core])?;
            ip(&["-n", &t.core, "link", "set", &core_port, "master", "br0"])?;
            ip(&["-n", &t.core, "link", "set", &core_port, "up"])?;
            ip(&[
                "-n",
                &gw,
                "addr",
                "add",
                &format!("10.213.9.{}/24", g + 1),
                "dev",
                "up0",
            ])?;
            ip(&["-n", &gw, "link", "set", "up0", "up"])?;
            // The LAN bridge, with the gateway's address on it.
            ip(&["-n", &gw, "link", "add", "br0", "type", "bridge"])?;
            ip(&[
                "-n",
                &gw,
                "addr",
                "add",
                &format!("10.213.{}.254/24", lan.subnet),
                "dev",
                "br0",
            ])?;
            ip(&["-n", &gw, "link", "set", "br0", "up"])?;
            let mut ports = Vec::new();
            for k in 0..lan.peers.len() {
                let ns = format!("obsq{g}{k}x{id}");
                ip(&["netns", "add", &ns])?;
                t.peers.push(ns.clone());
                let (a, b) = (format!("vq{g}{k}x{id}"), format!("vh{g}{k}x{id}"));
                ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
                ip(&["link", "set", &a, "netns", &ns, "name", "eth0"])?;
                ip(&["link", "set", &b, "netns", &gw])?;
                ip(&["-n", &gw, "link", "set", &b, "master", "br0"])?;
                ip(&["-n", &gw, "link", "set", &b, "up"])?;
                ports.push(b);
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", peer_addr(lan, k)),
                    "dev",
                    "eth0",
                ])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
                ip(&["-n", &ns, "link", "set", "lo", "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.213.{}.254", lan.subnet),
                ])?;
            }
            t.ports.push(ports);
        }
        // Each gateway reaches the other LAN through the other gateway.
        for (g, gw) in t.gateways.iter().enumerate() {
            let other = 1 - g;
            ip(&[
                "-n",
                gw,
                "route",
                "add",
                &format!("10.213.{}.0/24", LANS[other].subnet),
                "via",
                &format!("10.213.9.{}", other + 1),
            ])?;
        }
        Ok(t)
    }

    fn peer_ns(&self, g: usize, k: usize) -> &str {
        &self.peers[g * LANS[0].peers.len() + k]
    }
}

/// The one ClickHouse server, in the core namespace, reachable from the gateways'
/// uplink network, its state in `dir`.
fn start_store(ns: &str, dir: &Path) -> Result<Store> {
    let cfg = StoreConfig {
        dir: dir.to_path_buf(),
        listen: STORE_ADDR.parse()?,
        http_port: STORE_HTTP_PORT,
        tcp_port: STORE_TCP_PORT,
        networks: vec![UPLINK_NET.into()],
        users: Vec::new(),
        netns: Some(ns.to_string()),
    };
    Store::start(cfg).context("starting clickhouse-server (install Debian's clickhouse-server)")
}

/// A transaction as a gateway's CSV and the store both hold it (the columns compared).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    gateway: String,
    start: String,
    stop: String,
    poller: String,
    receiver: String,
    status: String,
    correlator: String,
}

/// The rows of a CSV with a header, as maps from column name to field (the scenario's
/// CSVs hold no quoted fields: names, IDs and correlators have no commas).
pub(crate) fn read_csv(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("{}: empty", path.display()))?
        .split(',')
        .collect();
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        ensure!(!line.contains('"'), "{}: quoted field", path.display());
        let fields: Vec<&str> = line.split(',').collect();
        ensure!(
            fields.len() == header.len(),
            "{}: {} fields in {line:?}",
            path.display(),
            fields.len()
        );
        rows.push(
            header
                .iter()
                .zip(fields)
                .map(|(h, f)| (h.to_string(), f.to_string()))
                .collect(),
        );
    }
    Ok(rows)
}

fn field<'a>(row: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str> {
    row.get(name)
        .map(String::as_str)
        .with_context(|| format!("no column {name}"))
}

fn gateway_rows(gateway: &str, csv: &Path) -> Result<Vec<Row>> {
    read_csv(csv)?
        .iter()
        .map(|r| {
            Ok(Row {
                gateway: gateway.to_string(),
                start: field(r, "start_unix_ns")?.to_string(),
                stop: field(r, "stop_unix_ns")?.to_string(),
                poller: field(r, "poller_name")?.to_string(),
                receiver: field(r, "receiver_name")?.to_string(),
                status: field(r, "transaction_status")?.to_string(),
                correlator: field(r, "correlator")?.to_string(),
            })
        })
        .collect()
}

/// Every row of the store, without `FINAL`: a duplicate must show.
fn store_rows(store: &Store) -> Result<Vec<Row>> {
    let text = store.query(&format!(
        "SELECT gateway, start_unix_ns, stop_unix_ns, poller_name, receiver_name, \
         transaction_status, correlator FROM {TABLE} FORMAT TabSeparated"
    ))?;
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            ensure!(f.len() == 7, "store row {l:?}");
            Ok(Row {
                gateway: f[0].into(),
                start: f[1].into(),
                // NULL (open) is an empty field in the CSV.
                stop: if f[2] == "\\N" {
                    String::new()
                } else {
                    f[2].into()
                },
                poller: f[3].into(),
                receiver: f[4].into(),
                status: f[5].into(),
                correlator: f[6].into(),
            })
        })
        .collect()
}

type Key = (String, String, String);

/// One transaction of the gateways' CSVs merged as `report --clickhouse` documents it
/// (docs/deployment.md "Each transaction once"), computed here from the files so that
/// the report from the store can be compared with it.
#[derive(Debug)]
struct Merged {
    key: Key,
    gateways: BTreeSet<String>,
    views: u64,
    /// The representing view's status and RTT (ns): the answered view with the longest
    /// round trip, else a timed-out one, else an open one.
    status: String,
    rtt_ns: u64,
}

/// The union of the gateways' rows, each transaction once: rows of one (poller,
/// receiver, correlator) sorted by start, a new transaction when a row starts more than
/// `window_ns` after the one before it or comes from the same gateway (each gateway
/// runs one observer here).
fn merge_union(rows: &[Row], window_ns: u64) -> Result<Vec<Merged>> {
    let mut groups: BTreeMap<Key, Vec<(u64, &Row)>> = BTreeMap::new();
    for r in rows {
        let start: u64 = r.start.parse().with_context(|| format!("start of {r:?}"))?;
        groups
            .entry((r.poller.clone(), r.receiver.clone(), r.correlator.clone()))
            .or_default()
            .push((start, r));
    }
    let mut out = Vec::new();
    for (key, mut views) in groups {
        views.sort_by(|a, b| (a.0, &a.1.gateway).cmp(&(b.0, &b.1.gateway)));
        let mut prev: Option<(u64, &str)> = None;
        let mut current: Vec<&Row> = Vec::new();
        let mut groups_of_key = Vec::new();
        for (start, r) in views {
            if let Some((p_start, p_gw)) = prev {
                if start - p_start > window_ns || p_gw == r.gateway {
                    groups_of_key.push(std::mem::take(&mut current));
                }
            }
            prev = Some((start, &r.gateway));
            current.push(r);
        }
        groups_of_key.push(current);
        for g in groups_of_key {
            let rank = |r: &Row| -> Result<(bool, bool, u64)> {
                let start: u64 = r.start.parse()?;
                let stop: u64 = if r.stop.is_empty() {
                    0
                } else {
                    r.stop.parse()?
                };
                Ok((
                    r.status == "ok" && stop != 0,
                    r.status == "timeout",
                    stop.saturating_sub(start),
                ))
            };
            let mut best: Option<((bool, bool, u64), &Row)> = None;
            for r in &g {
                let k = rank(r).with_context(|| format!("times of {r:?}"))?;
                if best.as_ref().is_none_or(|(b, _)| k > *b) {
                    best = Some((k, r));
                }
            }
            let ((_, _, rtt_ns), rep) = best.context("an empty merged transaction")?;
            out.push(Merged {
                key: key.clone(),
                gateways: g.iter().map(|r| r.gateway.clone()).collect(),
                views: g.len() as u64,
                status: rep.status.clone(),
                rtt_ns,
            });
        }
    }
    Ok(out)
}

/// A pair's counts: total, ok, timeout, open, and the answered RTTs (ms).
#[derive(Debug, Default)]
struct PairCounts {
    total: u64,
    ok: u64,
    timeout: u64,
    open: u64,
    rtt_ms: Vec<f64>,
}

fn pair_counts(merged: &[Merged]) -> BTreeMap<(String, String), PairCounts> {
    let mut pairs: BTreeMap<(String, String), PairCounts> = BTreeMap::new();
    for m in merged {
        let p = pairs.entry((m.key.0.clone(), m.key.1.clone())).or_default();
        p.total += 1;
        match m.status.as_str() {
            "ok" => {
                p.ok += 1;
                p.rtt_ms.push(m.rtt_ns as f64 / 1e6);
            }
            "timeout" => p.timeout += 1,
            _ => p.open += 1,
        }
    }
    pairs
}

/// `observer report --clickhouse` on the store, from the core namespace (the store
/// admits only the uplink network): its `summary.json` and `merged.json`, and the
/// gateways' part of its tables.
fn store_report(
    observer: &Path,
    ns: &str,
    dir: &Path,
) -> Result<(serde_json::Value, serde_json::Value, String)> {
    let _ = std::fs::remove_dir_all(dir);
    let window = format!("{}ms", MERGE_WINDOW.as_millis());
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(observer)
        .args([
            "report",
            "--clickhouse",
            &format!("http://{STORE_ADDR}:{STORE_HTTP_PORT}"),
            "--clickhouse-table",
            TABLE,
            "--merge-window",
            &window,
            "--tables",
            "-o",
        ])
        .arg(dir);
    let output = cmd
        .output()
        .context("running observer report --clickhouse")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("tables.txt"), &text)?;
    ensure!(
        output.status.success(),
        "observer report --clickhouse failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = |name: &str| -> Result<serde_json::Value> {
        let path = dir.join(name);
        let t = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&t)?)
    };
    // The tables' end: the gateways' part, without the list of files written.
    let written = dir.display().to_string();
    let gateways = text.find("\nGateways").map_or(String::new(), |i| {
        text[i..]
            .lines()
            .filter(|l| !l.starts_with(&written))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    });
    Ok((json("summary.json")?, json("merged.json")?, gateways))
}

fn json_u64(v: &serde_json::Value, what: &str) -> Result<u64> {
    v.as_u64()
        .with_context(|| format!("{what}: not a count: {v}"))
}

/// The report's pairs against the union of the gateways' CSVs: the same pairs, the
/// same counts, the same mean RTT (the representing view's).
fn compare_pairs(
    summary: &serde_json::Value,
    union: &BTreeMap<(String, String), PairCounts>,
) -> Result<()> {
    let pairs = summary["pairs"]
        .as_array()
        .context("summary.json: no pairs")?;
    ensure!(
        pairs.len() == union.len(),
        "the report has {} pairs, the gateways' CSVs {}",
        pairs.len(),
        union.len()
    );
    for p in pairs {
        let key = (
            p["poller"]
                .as_str()
                .context("pair without poller")?
                .to_string(),
            p["receiver"]
                .as_str()
                .context("pair without receiver")?
                .to_string(),
        );
        let u = union
            .get(&key)
            .with_context(|| format!("pair {key:?} in the report, not in the gateways' CSVs"))?;
        let got = [
            json_u64(&p["total"], "total")?,
            json_u64(&p["ok"], "ok")?,
            json_u64(&p["timeout"], "timeout")?,
            json_u64(&p["open"], "open")?,
        ];
        let want = [u.total, u.ok, u.timeout, u.open];
        ensure!(
            got == want,
            "{key:?}: the report counts (total, ok, timeout, open) {got:?}, the gateways' CSVs {want:?}"
        );
        let mean = p["rtt_ms"]["mean"]
            .as_f64()
            .context("pair without mean RTT")?;
        let want_mean = if u.rtt_ms.is_empty() {
            0.0
        } else {
            u.rtt_ms.iter().sum::<f64>() / u.rtt_ms.len() as f64
        };
        // Both are means of the same nanosecond RTTs; only the summation order differs.
        ensure!(
            (mean - want_mean).abs() < 1e-6,
            "{key:?}: mean RTT {mean} ms in the report, {want_mean} ms from the gateways' CSVs"
        );
    }
    Ok(())
}

fn lan_of(peer: &str) -> Option<&'static str> {
    LANS.iter()
        .find(|l| l.peers.iter().any(|p| p.name == peer))
        .map(|l| l.gateway)
}

/// Copies a gateway's CSV keeping only the transactions its own LAN's peers polled: for
/// those it sees the whole round trip, as the single-gateway scenarios' capture does.
fn own_pollers(from: &Path, to: &Path, lan: &Lan) -> Result<usize> {
    let text = std::fs::read_to_string(from)?;
    let mut out = String::new();
    let mut kept = 0;
    for (n, line) in text.lines().enumerate() {
        let poller = line.split(',').nth(3).unwrap_or("");
        if n == 0 || lan.peers.iter().any(|p| p.name == poller) {
            out.push_str(line);
            out.push('\n');
            kept += usize::from(n > 0);
        }
    }
    std::fs::write(to, out)?;
    Ok(kept)
}

/// The `clickhouse: N transactions stored … M send errors` line `live` prints at exit.
fn send_errors(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.starts_with("clickhouse: ") && l.contains("send errors"))?;
    let before = line.strip_suffix(" send errors")?;
    before.rsplit(' ').next()?.parse().ok()
}

/// Runs the ClickHouse panels' SQL of the Grafana dashboard on the scenario's store, the
/// dashboard's variables set as Grafana's ClickHouse data source would over `[from,
/// to)` (seconds): each must run and return rows.
fn dashboard_sql(store: &Store, from: u64, to: u64) -> Result<usize> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/observer.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let dash: serde_json::Value = serde_json::from_str(&text)?;
    let panels = dash["panels"].as_array().context("no panels")?;
    let mut n = 0;
    for p in panels {
        if p["datasource"]["type"] != "grafana-clickhouse-datasource" {
            continue;
        }
        for t in p["targets"].as_array().context("no targets")? {
            let sql = t["rawSql"]
                .as_str()
                .context("a ClickHouse target without rawSql")?;
            let sql = sql
                .replace("${table}", TABLE)
                .replace("$__fromTime", &format!("toDateTime({from})"))
                .replace("$__toTime", &format!("toDateTime({to})"));
            ensure!(
                !sql.contains('$'),
                "{}: a variable left in {sql}",
                p["title"]
            );
            let rows = store.query(&format!("{sql}\nFORMAT TabSeparated"))?;
            ensure!(
                !rows.trim().is_empty(),
                "{}: no rows from {sql}",
                p["title"]
            );
            n += 1;
        }
    }
    ensure!(n > 0, "no ClickHouse panel in {}", path.display());
    Ok(n)
}

pub fn run(opts: &Options) -> Result<()> {
    let begun = Instant::now();
    ensure!(
        testbed::clickhouse::installed(),
        "the gateways scenario needs Debian's clickhouse-server"
    );
    ensure!(
        !opts.loopback && opts.stress_cpus == 0,
        "the gateways scenario runs in network namespaces only, without --stress-cpus"
    );
    let duration = Duration::from_secs(opts.seconds);
    ensure!(
        duration >= OUTAGE + Duration::from_secs(10),
        "the gateways scenario needs --seconds {} at least (a {} s outage inside)",
        OUTAGE.as_secs() + 10,
        OUTAGE.as_secs()
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    // Gateway B's source: libpcap where the observer was built with it.
    let sources = [
        "ebpf".to_string(),
        opts.live.clone().unwrap_or_else(|| {
            if crate::pcap_headers() {
                "pcap".into()
            } else {
                "ebpf".into()
            }
        }),
    ];
    std::fs::create_dir_all(&opts.out)?;
    let out = opts.out.canonicalize()?;
    let observer = opts
        .observer
        .canonicalize()
        .with_context(|| format!("observer binary {}", opts.observer.display()))?;
    let topo = Topology::create().context("creating the namespaces (needs root)")?;
    let store_dir = out.join("clickhouse");
    let _ = std::fs::remove_dir_all(&store_dir);
    let mut store = start_store(&topo.core, &store_dir)?;
    eprintln!(
        "scenario gateways: ClickHouse {} on {STORE_ADDR}:{STORE_HTTP_PORT}",
        store.query("SELECT version()")?.trim()
    );
    // A directory only root writes (the observers refuse others): the observers, as
    // `nobody` by then, empty their spool but cannot remove it.
    let spools = out.join("spool");
    let _ = std::fs::remove_dir_all(&spools);
    std::fs::create_dir_all(&spools)?;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut children = Children(Vec::new());
    let mut gateway_csvs = Vec::new();
    for (g, lan) in LANS.iter().enumerate() {
        let csv = out.join(format!("{}.csv", lan.gateway));
        let _ = std::fs::remove_file(&csv);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &topo.gateways[g], "nice", "-n", "-10"]);
        cmd.arg(&observer).args(["live", "--source", &sources[g]]);
        // eBPF on the bridge ports (the bridge's own hooks miss bridged frames),
        // libpcap on the bridge (it sees bridged and routed frames).
        if sources[g] == "ebpf" {
            for p in &topo.ports[g] {
                cmd.args(["-i", p]);
            }
        } else {
            cmd.args(["-i", "br0"]);
        }
        cmd.args(["--timeout", &ms(TIMEOUT), "--port", "9701", "--csv"])
            .arg(&csv)
            .args([
                "--clickhouse",
                &format!("http://{STORE_ADDR}:{STORE_HTTP_PORT}"),
                "--gateway",
                lan.gateway,
                "--clickhouse-spool",
            ])
            .arg(spools.join(format!("{}.spool", lan.gateway)));
        let child = cmd
            .stdout(std::fs::File::create(
                out.join(format!("{}.txt", lan.gateway)),
            )?)
            .stderr(std::fs::File::create(
                out.join(format!("{}.log", lan.gateway)),
            )?)
            .spawn()
            .with_context(|| format!("starting observer live on {}", lan.gateway))?;
        children.0.push((lan.gateway.to_string(), child));
        gateway_csvs.push(csv);
    }
    std::thread::sleep(Duration::from_secs(2));
    for (name, c) in children.0.iter_mut() {
        if let Ok(Some(status)) = c.try_wait() {
            let log = std::fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
            bail!("observer live on {name} exited at start ({status}): {log}");
        }
    }

    let mut peer_csvs: Vec<(usize, PathBuf)> = Vec::new();
    for (g, lan) in LANS.iter().enumerate() {
        for (k, p) in lan.peers.iter().enumerate() {
            let csv = out.join(format!("{}.csv", p.name));
            let _ = std::fs::remove_file(&csv);
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", topo.peer_ns(g, k), "nice", "-n", "-10"]);
            cmd.arg(&observer).args([
                "peer",
                "--name",
                p.name,
                "--listen",
                &format!("{}:9701", peer_addr(lan, k)),
                "--interval",
                &ms(INTERVAL),
                "--timeout",
                &ms(TIMEOUT),
                "--reply-delay",
                p.reply_delay,
                "--duration",
                &ms(duration),
                "--management",
                "127.0.0.1:9801",
                "--no-stdin",
            ]);
            cmd.arg("--csv").arg(&csv);
            if !p.instrumented {
                cmd.arg("--no-correlator");
            }
            for (h, other) in LANS.iter().enumerate() {
                for (j, b) in other.peers.iter().enumerate() {
                    if (h, j) != (g, k) {
                        cmd.args([
                            "--buddy",
                            &format!("{}={}:9701", b.name, peer_addr(other, j)),
                        ]);
                    }
                }
            }
            let child = cmd
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(out.join(format!("{}.log", p.name)))?)
                .spawn()
                .with_context(|| format!("starting peer {}", p.name))?;
            children.0.push((p.name.to_string(), child));
            peer_csvs.push((g, csv));
        }
    }
    eprintln!(
        "scenario gateways: 4 peers on two LANs for {} s; gateway A live on {}, gateway B on {}; \
         ClickHouse down for {} s from {} s",
        duration.as_secs(),
        sources[0],
        sources[1],
        OUTAGE.as_secs(),
        (duration - OUTAGE).as_secs() / 2
    );
    let started = Instant::now();
    let outage_at = (duration - OUTAGE) / 2;
    let mut outage: Option<Instant> = None;
    let mut restarted = false;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted: namespaces and processes cleaned up");
        }
        if outage.is_none() && started.elapsed() >= outage_at {
            store.kill();
            outage = Some(Instant::now());
            eprintln!(
                "  ClickHouse killed at {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        if let Some(at) = outage {
            if !restarted && at.elapsed() >= OUTAGE {
                store.restart()?;
                restarted = true;
                eprintln!(
                    "  ClickHouse restarted at {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let peers_done = children
            .0
            .iter_mut()
            .filter(|(n, _)| !n.starts_with("gw-"))
            .all(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if peers_done && restarted {
            break;
        }
        ensure!(
            started.elapsed() <= duration + Duration::from_secs(30),
            "peers did not stop within 30 s of their duration"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The last PONGs reach the gateways; then the observers end, sending what is left
    // (their spools included) before they exit.
    std::thread::sleep(Duration::from_millis(500));
    let mut logs = Vec::new();
    for (name, status) in children.stop(|n| n.starts_with("gw-")) {
        let status = status?;
        let log = std::fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
        ensure!(status.success(), "observer live on {name} failed: {log}");
        logs.push((name, log));
    }
    drop(children);

    // The outage was felt: each sink failed to send, and its spool is empty now.
    for (name, log) in &logs {
        let errors = send_errors(log)
            .with_context(|| format!("no `clickhouse: … send errors` line from {name}: {log}"))?;
        eprintln!("  {name}: {errors} send errors during the outage");
        ensure!(
            errors > 0,
            "{name} never failed to send: the outage missed it"
        );
        let spool = spools.join(format!("{name}.spool"));
        let left = std::fs::metadata(&spool).map_or(0, |m| m.len());
        ensure!(
            left == 0,
            "{name} left {left} bytes in its spool {}",
            spool.display()
        );
    }

    // The union of the gateways' CSVs is the store's rows, one for one.
    let mut expected = Vec::new();
    for (lan, csv) in LANS.iter().zip(&gateway_csvs) {
        expected.extend(gateway_rows(lan.gateway, csv)?);
    }
    expected.sort();
    let mut stored = store_rows(&store)?;
    stored.sort();
    if stored != expected {
        let e: BTreeSet<&Row> = expected.iter().collect();
        let s: BTreeSet<&Row> = stored.iter().collect();
        bail!(
            "the store ({} rows) is not the union of the gateways' CSVs ({} rows): \
             {} duplicated in the store, missing {:?}, extra {:?}",
            stored.len(),
            expected.len(),
            stored.len() - s.len(),
            e.difference(&s).take(5).collect::<Vec<_>>(),
            s.difference(&e).take(5).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "  store = union of the gateways' CSVs: {} rows ({} from gw-a, {} from gw-b), no duplicate",
        stored.len(),
        stored.iter().filter(|r| r.gateway == "gw-a").count(),
        stored.iter().filter(|r| r.gateway == "gw-b").count()
    );

    // The report from the store: the union of the gateways' CSVs merged, each pair's
    // counts and mean RTT the same.
    let union = merge_union(&expected, MERGE_WINDOW.as_nanos() as u64)?;
    let union_pairs = pair_counts(&union);
    let (summary, view, gateways_text) = store_report(&observer, &topo.core, &out.join("report"))?;
    compare_pairs(&summary, &union_pairs)?;
    let merge = &view["merge"];
    let crossing = union.iter().filter(|m| m.gateways.len() == 2).count() as u64;
    let got = [
        json_u64(&merge["views"], "merge.views")?,
        json_u64(&merge["transactions"], "merge.transactions")?,
        json_u64(&merge["seen_by_two_gateways"], "merge.seen_by_two_gateways")?,
        json_u64(&merge["joined_within_a_run"], "merge.joined_within_a_run")?,
    ];
    let want = [stored.len() as u64, union.len() as u64, crossing, 0];
    ensure!(
        got == want,
        "merged.json (views, transactions, seen by two gateways, joined within a run) {got:?}, \
         the gateways' CSVs {want:?}"
    );
    ensure!(crossing > 0, "no transaction crossed both gateways");
    eprintln!(
        "  report --clickhouse = the gateways' CSVs merged: {} views -> {} transactions \
         ({crossing} seen by both gateways), {} pairs with the same counts and mean RTT",
        want[0],
        want[1],
        union_pairs.len()
    );
    for l in gateways_text.lines() {
        eprintln!("    {l}");
    }

    // The namespaces share one clock: the offset the report estimates from the data is
    // zero within the bound it states, give or take what two timestamp sources (the
    // eBPF tap's converted kernel clock, libpcap's) may disagree by: the pair
    // scenario's socket-versus-passive bound, 0.1 ms. An inconsistent estimate (no
    // bound: some intervals do not overlap) must still be that close to zero.
    const SOURCES_MS: f64 = 0.1;
    let offsets = view["offsets"]
        .as_array()
        .context("merged.json: no offsets")?;
    ensure!(
        offsets.len() == 1,
        "merged.json: {} clock offsets, expected gw-a -> gw-b's",
        offsets.len()
    );
    let o = &offsets[0];
    let offset_ms = o["offset_ms"]
        .as_f64()
        .context("offset without offset_ms")?;
    let bound_ms = o["bound_ms"].as_f64();
    eprintln!(
        "  clock offset gw-a -> gw-b: {offset_ms:.4} ms ± {} from {} transactions",
        bound_ms.map_or("(inconsistent: no bound)".to_string(), |b| format!(
            "{b:.4} ms"
        )),
        o["transactions"]
    );
    let allowed = bound_ms.unwrap_or(0.0) + SOURCES_MS;
    ensure!(
        offset_ms.abs() <= allowed,
        "one clock, yet the estimated offset {offset_ms} ms is beyond {allowed} ms ({o})"
    );
    let segments = view["segments"]
        .as_array()
        .context("merged.json: no segments")?;
    ensure!(
        segments.len() as u64
            == union_pairs
                .keys()
                .filter(|(p, r)| lan_of(p) != lan_of(r))
                .count() as u64,
        "segments for {} pairs, expected one per pair crossing both gateways",
        segments.len()
    );

    // Every transaction the peers recorded is counted once: per pair, the report's
    // answered transactions are the peers' (an extra or a missing one would show), and
    // with a correlator each recorded transaction is one merged transaction holding one
    // view from each gateway of the poller's and the receiver's LANs. What the report
    // holds beyond the peers' records can only be PINGs unanswered when their poller
    // stopped (it no longer records them).
    let by_key: BTreeMap<&Key, Vec<&Merged>> = union.iter().fold(BTreeMap::new(), |mut m, t| {
        m.entry(&t.key).or_insert_with(Vec::new).push(t);
        m
    });
    let mut peers: BTreeMap<(String, String), PairCounts> = BTreeMap::new();
    let mut keyed = 0;
    for (_, csv) in &peer_csvs {
        for r in read_csv(csv)? {
            let key = (
                field(&r, "poller_name")?.to_string(),
                field(&r, "receiver_name")?.to_string(),
                field(&r, "correlator")?.to_string(),
            );
            let status = field(&r, "transaction_status")?;
            let p = peers.entry((key.0.clone(), key.1.clone())).or_default();
            p.total += 1;
            p.ok += u64::from(status == "ok");
            if key.2.is_empty() {
                let instrumented = LANS
                    .iter()
                    .flat_map(|l| &l.peers)
                    .any(|p| p.name == key.0 && p.instrumented);
                ensure!(
                    !instrumented,
                    "an instrumented peer recorded a PING without correlator: {key:?}"
                );
                continue;
            }
            let m = match by_key.get(&key).map(Vec::as_slice) {
                Some([m]) => m,
                Some(ms) => bail!("{key:?}: {} transactions in the gateways' views", ms.len()),
                None => bail!("recorded by the peer, not in the gateways' views: {key:?}"),
            };
            let lans: BTreeSet<String> = [lan_of(&key.0), lan_of(&key.1)]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            ensure!(
                m.gateways == lans && m.views == lans.len() as u64,
                "{key:?}: {} views from gateways {:?}, expected one from each of {lans:?}",
                m.views,
                m.gateways
            );
            ensure!(
                m.status == status,
                "{key:?}: the peer recorded {status}, the merged view {}",
                m.status
            );
            keyed += 1;
        }
    }
    let mut recorded = 0;
    let mut extra = 0;
    for (pair, p) in &peers {
        let u = union_pairs
            .get(pair)
            .with_context(|| format!("pair {pair:?}: recorded by the peer, not in the report"))?;
        ensure!(
            u.ok == p.ok && u.total >= p.total,
            "{pair:?}: the peer recorded {} transactions ({} answered), the report counts {} ({} answered)",
            p.total,
            p.ok,
            u.total,
            u.ok
        );
        recorded += p.total;
        extra += u.total - p.total;
    }
    ensure!(
        peers.len() == union_pairs.len(),
        "the peers recorded {} pairs, the report has {}",
        peers.len(),
        union_pairs.len()
    );
    eprintln!(
        "  each transaction once: {recorded} recorded by the peers ({keyed} by correlator, \
         {} by order position from the uninstrumented {}), {extra} more unanswered at the end",
        recorded - keyed,
        UNINSTRUMENTED
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let panels = dashboard_sql(&store, now - begun.elapsed().as_secs() - 60, now + 60)?;
    eprintln!("  the dashboard's {panels} ClickHouse queries return rows");

    // Each gateway's view against its own peers' records, within the usual bounds.
    for (g, lan) in LANS.iter().enumerate() {
        let own = out.join(format!("{}-own.csv", lan.gateway));
        let kept = own_pollers(&gateway_csvs[g], &own, lan)?;
        eprintln!(
            "passive: observer live --source {} on {} ({kept} transactions of its own pollers)",
            sources[g], lan.gateway
        );
        let active: Vec<PathBuf> = peer_csvs
            .iter()
            .filter(|(h, _)| *h == g)
            .map(|(_, c)| c.clone())
            .collect();
        validate(&observer, &out, lan.gateway, &own, &active, &[], opts)?;
    }
    drop(store);
    drop(topo);
    eprintln!(
        "scenario gateways passed in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gateway: &str, start: u64, stop: Option<u64>, poller: &str, corr: &str) -> Row {
        Row {
            gateway: gateway.into(),
            start: start.to_string(),
            stop: stop.map_or(String::new(), |s| s.to_string()),
            poller: poller.into(),
            receiver: "carol".into(),
            status: if stop.is_some() { "ok" } else { "timeout" }.into(),
            correlator: corr.into(),
        }
    }

    #[test]
    fn union_merges_as_the_report_does() {
        const S: u64 = 1_000_000_000;
        let rows = vec![
            // One instrumented transaction seen by both gateways: the poller's gateway
            // (longer view) represents it.
            row("gw-a", 10 * S, Some(10 * S + 400), "alice", "c1"),
            row("gw-b", 10 * S + 100, Some(10 * S + 300), "alice", "c1"),
            // Uninstrumented: two polls 1 s apart, each seen by both gateways, pair by
            // order within the window.
            row("gw-b", 20 * S, Some(20 * S + 500), "dave", ""),
            row("gw-a", 20 * S + 50, Some(20 * S + 450), "dave", ""),
            row("gw-b", 21 * S, None, "dave", ""),
            row("gw-a", 21 * S + 50, None, "dave", ""),
            // One gateway seeing two PINGs within the window: two transactions.
            row("gw-a", 30 * S, Some(30 * S + 9), "bob", ""),
            row("gw-a", 30 * S + 1, Some(30 * S + 9), "bob", ""),
        ];
        let merged = merge_union(&rows, 300_000_000).unwrap();
        let pairs = pair_counts(&merged);
        let counts = |p: &str| {
            let c = &pairs[&(p.to_string(), "carol".to_string())];
            (c.total, c.ok, c.timeout, c.open)
        };
        assert_eq!(counts("alice"), (1, 1, 0, 0));
        assert_eq!(counts("dave"), (2, 1, 1, 0));
        assert_eq!(counts("bob"), (2, 2, 0, 0));
        assert_eq!(
            pairs[&("alice".into(), "carol".into())].rtt_ms,
            vec![400.0 / 1e6]
        );
        assert_eq!(
            pairs[&("dave".into(), "carol".into())].rtt_ms,
            vec![500.0 / 1e6]
        );
        assert_eq!(merged.iter().filter(|m| m.gateways.len() == 2).count(), 3);
        // A window longer than the poll interval joins dave's polls into one.
        let joined = merge_union(&rows, 2 * S).unwrap();
        assert_eq!(
            pair_counts(&joined)[&("dave".into(), "carol".into())].total,
            1
        );
    }
}
