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
//! ClickHouse server, which is stopped for 10 s in the middle of the run.
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
}

const LANS: [Lan; 2] = [
    Lan {
        gateway: "gw-a",
        subnet: 1,
        peers: [
            Peer {
                name: "alice",
                reply_delay: "fixed:20ms",
            },
            Peer {
                name: "bob",
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
                reply_delay: "normal:400ms,100ms",
            },
            Peer {
                name: "dave",
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
fn read_csv(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
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

/// One transaction of the merged view: (poller, receiver, correlator), the gateways
/// that saw it, and how many rows it has.
#[derive(Debug)]
struct Merged {
    gateways: BTreeSet<String>,
    rows: u64,
    statuses: BTreeSet<String>,
}

type Key = (String, String, String);

/// The store's transactions counted once across gateways: the same poller, receiver and
/// correlator is one transaction whatever the number of gateways that saw it. (The
/// place to swap in `observer report --clickhouse` once it merges views.)
fn merged_view(store: &Store) -> Result<BTreeMap<Key, Merged>> {
    let text = store.query(&format!(
        "SELECT poller_name, receiver_name, correlator, \
         arrayStringConcat(arraySort(groupArray(gateway)), ' '), \
         arrayStringConcat(arraySort(groupUniqArray(transaction_status)), ' ') \
         FROM {TABLE} FINAL WHERE correlator != '' \
         GROUP BY poller_name, receiver_name, correlator FORMAT TabSeparated"
    ))?;
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        ensure!(f.len() == 5, "merged row {l:?}");
        let views: Vec<&str> = f[3].split(' ').collect();
        out.insert(
            (f[0].to_string(), f[1].to_string(), f[2].to_string()),
            Merged {
                gateways: views.iter().map(|s| s.to_string()).collect(),
                rows: views.len() as u64,
                statuses: f[4].split(' ').map(str::to_string).collect(),
            },
        );
    }
    Ok(out)
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
    for (name, c) in children.0.iter_mut() {
        if name.starts_with("gw-") {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = c.wait()?;
            let log = std::fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
            ensure!(status.success(), "observer live on {name} failed: {log}");
            logs.push((name.clone(), log));
        }
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

    // Exactly once in the merged view: every transaction the peers recorded, seen by
    // the gateways of the poller's and the receiver's LANs, one row per gateway.
    let merged = merged_view(&store)?;
    let mut recorded = BTreeSet::new();
    let mut crossing = 0;
    for (_, csv) in &peer_csvs {
        for r in read_csv(csv)? {
            let key = (
                field(&r, "poller_name")?.to_string(),
                field(&r, "receiver_name")?.to_string(),
                field(&r, "correlator")?.to_string(),
            );
            ensure!(
                !key.2.is_empty(),
                "a peer recorded a PING without correlator: {key:?}"
            );
            let m = merged
                .get(&key)
                .with_context(|| format!("recorded by the peer, not in the store: {key:?}"))?;
            let lans: BTreeSet<String> = [lan_of(&key.0), lan_of(&key.1)]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
            ensure!(
                m.gateways == lans && m.rows == lans.len() as u64,
                "{key:?}: {} rows from gateways {:?}, expected one from each of {lans:?}",
                m.rows,
                m.gateways
            );
            let status = field(&r, "transaction_status")?;
            ensure!(
                m.statuses.contains(status),
                "{key:?}: the peer recorded {status}, the gateways {:?}",
                m.statuses
            );
            crossing += usize::from(lans.len() == 2);
            ensure!(
                recorded.insert(key.clone()),
                "the peers recorded {key:?} twice"
            );
        }
    }
    // What the store holds beyond the peers' records can only be PINGs unanswered when
    // their poller stopped (it no longer records them).
    let extra: Vec<(&Key, &Merged)> = merged
        .iter()
        .filter(|(k, _)| !recorded.contains(*k))
        .collect();
    for (k, m) in &extra {
        ensure!(
            !m.statuses.contains("ok"),
            "answered in the store, never recorded by its poller: {k:?} {m:?}"
        );
    }
    ensure!(crossing > 0, "no transaction crossed both gateways");
    eprintln!(
        "  merged view: {} transactions recorded by the peers, each once ({} crossing both gateways), \
         {} more unanswered at the end",
        recorded.len(),
        crossing,
        extra.len()
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
