//! `cargo xtask scenario causes`: causes injected on purpose into real traffic between
//! reference peers, each pair with one cause, and the observer's attribution checked
//! against what the scenario did (issue 20's truth).
//!
//! Four pairs, each a poller polling a receiver once a second, on one gateway bridge
//! (the same topology as `pair` and `study`), captured on the bridge (`analyze` on the
//! capture) and watched live by the eBPF tap on every bridge port:
//!
//! - `retrans`: in the receiver's namespace an iptables rule drops the first copy of
//!   every PING whose correlator ends in 3 or 7 (`string` match, then `statistic`
//!   nth 2: the copy TCP retransmits is the rule's next match and passes). The drop is
//!   after the capture point, so the capture sees the original and the retransmission.
//! - `conn`: the poller's connection is destroyed (`ss -K`, an RST on the wire) every
//!   few seconds; the first transaction after each opens a new connection.
//! - `far`: the receiver delays the PONG of every 4th PING by 1.5 s more
//!   (`observer peer --extra-delay`, which logs the correlators).
//! - `queue`: the receiver sends a large MESSAGE just before the PONG of every 4th
//!   PING (`--message-before-pong`, logged likewise), out of a link shaped by a `tbf`
//!   qdisc so that the MESSAGE takes tens of ms on the wire.
//!
//! `relay` is not injected: the reference peer does not relay (no rendezvous role).
//!
//! Truth comes from the scenario (iptables rule, kill times, the receivers' logs) and
//! the pollers' own CSVs, joined to the observer's CSV by poller and correlator; never
//! from the observer.
//!
//! Over 600 lines: one scenario: its topology, the four injections, the three runs
//! (offline, live, store) and the joins that check them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use observer::store::DEFAULT_TABLE;
use testbed::clickhouse::{Config as StoreConfig, Server as Store};
use testbed::Children;

use crate::gateways::read_csv;
use crate::scenario::{now_ns, peer_ip, Options, Topology};

/// The bounds: the share of injected transactions carrying the injected cause,
/// and of quiet transactions carrying any.
const MIN_FOUND: f64 = 0.95;
const MAX_QUIET_FLAGGED: f64 = 0.02;

/// Every receiver's ordinary reply delay: far enough above the machine's scheduling
/// noise that twice the pair's median (the `far` threshold) is not crossed by it.
const REPLY_DELAY: &str = "fixed:300ms";
const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(3);
/// The injections of `far` and `queue` (every Nth PING) and their size.
const EVERY: u64 = 4;
const EXTRA_DELAY: &str = "1500ms";
const MESSAGE_BYTES: &str = "400KB";
/// The queue pair's link: 400 KB take 64 ms at 50 Mbit/s, above `queue`'s 10 ms flag.
const QUEUE_LINK_RATE: &str = "50mbit";
/// Correlator endings whose PING loses its first copy.
const LOSS_DIGITS: [char; 2] = ['3', '7'];
/// The first connection kill, and the time between two.
const RESET_FIRST: Duration = Duration::from_secs(6);
const RESET_EVERY: Duration = Duration::from_secs(4);
/// `far` needs this many earlier answers of the pair (`FAR_MIN_HISTORY`).
const FAR_MIN_HISTORY: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Injected {
    Retrans,
    Conn,
    Far,
    Queue,
}

impl Injected {
    fn flag(self) -> &'static str {
        match self {
            Injected::Retrans => "retrans",
            Injected::Conn => "conn",
            Injected::Far => "far",
            Injected::Queue => "queue",
        }
    }
}

/// One pair: peers `2i` (poller) and `2i + 1` (receiver) of the topology.
struct PairPlan {
    cause: Injected,
    poller: &'static str,
    receiver: &'static str,
}

const PAIRS: [PairPlan; 4] = [
    PairPlan {
        cause: Injected::Retrans,
        poller: "lossp",
        receiver: "lossr",
    },
    PairPlan {
        cause: Injected::Conn,
        poller: "resetp",
        receiver: "resetr",
    },
    PairPlan {
        cause: Injected::Far,
        poller: "farp",
        receiver: "farr",
    },
    PairPlan {
        cause: Injected::Queue,
        poller: "queuep",
        receiver: "queuer",
    },
];

fn ns_cmd(ns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .with_context(|| format!("running {args:?} in {ns}"))?;
    ensure!(
        out.status.success(),
        "{args:?} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(opts: &Options) -> Result<()> {
    let begun = Instant::now();
    ensure!(
        testbed::clickhouse::installed(),
        "the causes scenario reads the causes back from a store: it needs Debian's clickhouse-server"
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    std::fs::create_dir_all(&opts.out)?;
    let out = opts.out.canonicalize()?;
    let observer = opts
        .observer
        .canonicalize()
        .with_context(|| format!("observer binary {}", opts.observer.display()))?;
    let duration = Duration::from_secs(opts.seconds);
    let source = opts.live.clone().unwrap_or_else(|| "ebpf".into());
    let topo = Topology::create(PAIRS.len() * 2)
        .context("the causes scenario needs network namespaces (root)")?;
    let ns = |i: usize| topo.peers[i].clone();

    // The injections that live in the network: loss after the capture point, and the
    // queue pair's slow link.
    let loss_ns = ns(1);
    for d in LOSS_DIGITS {
        let s = format!("{d}</correlator>");
        ns_cmd(
            &loss_ns,
            &[
                "iptables",
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                "9701",
                "-m",
                "string",
                "--algo",
                "bm",
                "--string",
                &s,
                "-m",
                "statistic",
                "--mode",
                "nth",
                "--every",
                "2",
                "--packet",
                "0",
                "-j",
                "DROP",
            ],
        )
        .context("an iptables drop rule (install Debian's iptables)")?;
    }
    ns_cmd(
        &ns(7),
        &[
            "tc",
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            QUEUE_LINK_RATE,
            "burst",
            "32kb",
            "latency",
            "1s",
        ],
    )
    .context("shaping the queue pair's link with tbf")?;

    let capture = out.join("gateway.pcap");
    let mut children = Children(Vec::new());
    let mut tcpdump = Command::new("ip");
    tcpdump
        .args([
            "netns",
            "exec",
            &topo.gateway,
            "tcpdump",
            "-i",
            "br0",
            "-U",
            "-s",
            "0",
            "-n",
            "-w",
        ])
        .arg(&capture);
    crate::scenario::start_gateway_capture(tcpdump, &capture, &mut children)?;

    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let live_csv = out.join("live.csv");
    let _ = std::fs::remove_file(&live_csv);
    let mut live = Command::new("ip");
    live.args(["netns", "exec", &topo.gateway])
        .arg(&observer)
        .args(["live", "--source", &source]);
    if source == "ebpf" {
        // A bridge's own hooks do not see forwarded frames: tap all its ports. Each
        // packet is then seen twice (in at its sender's port, out at its receiver's),
        // at times a few ms apart under load: the second sighting must not read as a
        // retransmission (docs/explain.md).
        for p in &topo.ports {
            live.args(["-i", p]);
        }
    } else {
        live.args(["-i", "br0"]);
    }
    live.args(["--timeout", &ms(TIMEOUT), "--port", "9701", "--csv"])
        .arg(&live_csv)
        .stdout(std::fs::File::create(out.join("live.txt"))?)
        .stderr(std::fs::File::create(out.join("live.log"))?);
    children.0.push((
        "live".into(),
        live.spawn().context("starting observer live")?,
    ));
    std::thread::sleep(Duration::from_secs(2));
    if let Some((_, c)) = children.0.iter_mut().find(|(n, _)| n == "live") {
        if let Ok(Some(status)) = c.try_wait() {
            let log = std::fs::read_to_string(out.join("live.log")).unwrap_or_default();
            bail!("observer live exited at start ({status}): {log}");
        }
    }

    for (k, pair) in PAIRS.iter().enumerate() {
        for (i, name) in [(2 * k, pair.poller), (2 * k + 1, pair.receiver)] {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns(i), "nice", "-n", "-10"])
                .arg(&observer)
                .args([
                    "peer",
                    "--name",
                    name,
                    "--listen",
                    &format!("{}:9701", peer_ip(i)),
                    "--interval",
                    &ms(INTERVAL),
                    "--timeout",
                    &ms(TIMEOUT),
                    "--reply-delay",
                    REPLY_DELAY,
                    "--duration",
                    &ms(duration),
                    "--management",
                    "127.0.0.1:9801",
                    "--no-stdin",
                    "--csv",
                ])
                .arg(out.join(format!("{name}.csv")))
                // The injections are logged at info level.
                .env("RUST_LOG", "info");
            if i == 2 * k {
                cmd.args([
                    "--buddy",
                    &format!("{}={}:9701", pair.receiver, peer_ip(i + 1)),
                ]);
            } else {
                match pair.cause {
                    Injected::Far => {
                        cmd.args(["--extra-delay", &format!("{EVERY}:{EXTRA_DELAY}")]);
                    }
                    Injected::Queue => {
                        cmd.args(["--message-before-pong", &format!("{EVERY}:{MESSAGE_BYTES}")]);
                    }
                    Injected::Retrans | Injected::Conn => {}
                }
            }
            let child = cmd
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(out.join(format!("{name}.log")))?)
                .spawn()
                .with_context(|| format!("starting peer {name}"))?;
            children.0.push((name.to_string(), child));
        }
    }
    eprintln!(
        "scenario causes: {} pairs for {} s (retrans, conn, far, queue), capture on the gateway bridge, live --source {source}",
        PAIRS.len(),
        duration.as_secs()
    );

    let started = Instant::now();
    let mut next_reset = RESET_FIRST;
    let mut resets: Vec<u64> = Vec::new();
    let reset_ns = ns(2);
    let reset_dst = peer_ip(3);
    loop {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted: namespaces and processes cleaned up");
        }
        // Kill the connection mid-interval, well before the run ends.
        if started.elapsed() >= next_reset && next_reset + RESET_EVERY < duration {
            let at = now_ns();
            ns_cmd(&reset_ns, &["ss", "-K", "-t", "dst", &reset_dst])
                .context("ss -K (the kernel's sock_destroy)")?;
            resets.push(at);
            next_reset += RESET_EVERY;
        }
        let peers_done = children
            .0
            .iter_mut()
            .filter(|(n, _)| n != "tcpdump" && n != "live")
            .all(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if peers_done {
            break;
        }
        if started.elapsed() > duration + Duration::from_secs(30) {
            bail!("peers did not stop within 30 s of their duration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let dropped = iptables_drops(&loss_ns)?;
    for (name, status) in children.stop(|n| n == "tcpdump" || n == "live") {
        if name == "live" && !status.map(|s| s.success()).unwrap_or(false) {
            let log = std::fs::read_to_string(out.join("live.log")).unwrap_or_default();
            bail!("observer live failed: {log}");
        }
    }
    drop(children);
    drop(topo);

    let observed = out.join("observed.csv");
    let status = Command::new(&observer)
        .arg("analyze")
        .arg(&capture)
        .args(["--timeout", &ms(TIMEOUT), "--no-progress", "--csv"])
        .arg(&observed)
        .stdout(std::fs::File::create(out.join("analyze.txt"))?)
        .status()?;
    ensure!(status.success(), "observer analyze failed ({status})");

    let truth = truth(&out, &resets)?;
    let sent_lossy = truth
        .iter()
        .filter(|t| t.cause == Some(Injected::Retrans))
        .count();
    eprintln!(
        "  iptables dropped {dropped} PING copies; {sent_lossy} answered PINGs of the loss pair end in {LOSS_DIGITS:?}; {} connection kills",
        resets.len()
    );
    ensure!(dropped > 0, "the loss pair's drop rules dropped nothing");
    let mut report = String::new();
    let mut failures = Vec::new();
    for (label, csv) in [("analyze", &observed), ("live", &live_csv)] {
        let rows = observed_rows(csv)?;
        let (table, failed) = score(label, &truth, &rows);
        report.push_str(&table);
        failures.extend(failed);
    }
    let offline = causes_of(&observed_rows(&observed)?);
    for (label, other) in [
        ("live", causes_of(&observed_rows(&live_csv)?)),
        ("store", stored_causes(&observer, &out, &capture)?),
    ] {
        let (text, failed) = compare(label, &offline, &other);
        report.push_str(&text);
        failures.extend(failed);
    }
    std::fs::write(out.join("causes.txt"), &report)?;
    print!("{report}");
    if !failures.is_empty() {
        bail!("causes scenario failed:\n  {}", failures.join("\n  "));
    }
    eprintln!(
        "scenario causes: passed in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `analyze --clickhouse` of the capture into a fresh store, and the causes read back
/// from it (the store's columns, not the CSV).
fn stored_causes(
    observer: &Path,
    out: &Path,
    capture: &Path,
) -> Result<BTreeMap<(String, String), String>> {
    let dir = out.join("store");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::start(StoreConfig::loopback(&dir)?)
        .context("starting clickhouse-server (install Debian's clickhouse-server)")?;
    let status = Command::new(observer)
        .arg("analyze")
        .arg(capture)
        .args([
            "--timeout",
            &format!("{}ms", TIMEOUT.as_millis()),
            "--no-progress",
        ])
        .args(["--clickhouse", &store.url()])
        .stdout(std::fs::File::create(out.join("analyze-store.txt"))?)
        .status()?;
    ensure!(
        status.success(),
        "observer analyze --clickhouse failed ({status})"
    );
    let text = store.query(&format!(
        "SELECT poller_name, correlator, cause FROM {DEFAULT_TABLE} \
         WHERE transaction_status = 'ok' FORMAT TabSeparated"
    ))?;
    let mut map = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        ensure!(f.len() == 3, "store row {l:?}");
        map.insert((f[0].to_string(), f[1].to_string()), f[2].to_string());
    }
    Ok(map)
}

/// Packets the loss pair's drop rules dropped.
fn iptables_drops(ns: &str) -> Result<u64> {
    let text = ns_cmd(ns, &["iptables", "-L", "INPUT", "-v", "-x", "-n"])?;
    Ok(text
        .lines()
        .filter(|l| l.contains("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum())
}

/// One answered transaction as its poller recorded it, and what was done to it.
struct Truth {
    pair: usize,
    poller: String,
    correlator: String,
    /// `None`: quiet.
    cause: Option<Injected>,
    /// Left out of both counts, with the reason (the pair's first transaction opens
    /// its connection; `far` before the pair has a history).
    excluded: Option<&'static str>,
}

/// Correlators a receiver logged as injected (`--extra-delay`, `--message-before-pong`).
fn logged_injections(log: &Path) -> Result<BTreeSet<String>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text
        .lines()
        .filter(|l| l.contains("injected:"))
        .filter_map(|l| {
            // `correlator="…"`: tracing quotes a string field.
            let rest = &l[l.find("correlator=")? + "correlator=".len()..];
            let rest = rest.trim_start_matches('"');
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            Some(rest[..end].to_string())
        })
        .filter(|c| !c.is_empty())
        .collect())
}

fn truth(out: &Path, resets: &[u64]) -> Result<Vec<Truth>> {
    let mut truth = Vec::new();
    for (k, pair) in PAIRS.iter().enumerate() {
        let mut rows = read_csv(&out.join(format!("{}.csv", pair.poller)))?;
        let start = |r: &BTreeMap<String, String>| -> u64 {
            r.get("start_unix_ns")
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX)
        };
        rows.sort_by_key(start);
        let logged = match pair.cause {
            Injected::Far | Injected::Queue => {
                logged_injections(&out.join(format!("{}.log", pair.receiver)))?
            }
            Injected::Retrans | Injected::Conn => BTreeSet::new(),
        };
        // The first answered transaction after each kill.
        let mut after_reset = BTreeSet::new();
        for &at in resets.iter().filter(|_| pair.cause == Injected::Conn) {
            if let Some(r) = rows.iter().find(|r| {
                start(r) > at && r.get("transaction_status").map(String::as_str) == Some("ok")
            }) {
                after_reset.insert(r.get("correlator").cloned().unwrap_or_default());
            }
        }
        let mut answered = 0;
        for r in &rows {
            if r.get("transaction_status").map(String::as_str) != Some("ok") {
                continue;
            }
            let corr = r.get("correlator").cloned().unwrap_or_default();
            let cause = match pair.cause {
                Injected::Retrans if corr.ends_with(LOSS_DIGITS) => Some(Injected::Retrans),
                Injected::Conn if after_reset.contains(&corr) => Some(Injected::Conn),
                Injected::Far | Injected::Queue if logged.contains(&corr) => Some(pair.cause),
                _ => None,
            };
            let excluded = if answered == 0 {
                Some("the pair's first transaction (its connection opened for it)")
            } else if cause == Some(Injected::Far) && answered < FAR_MIN_HISTORY {
                Some("far before the pair has 5 earlier answers")
            } else {
                None
            };
            truth.push(Truth {
                pair: k,
                poller: pair.poller.to_string(),
                correlator: corr,
                cause,
                excluded,
            });
            answered += 1;
        }
    }
    Ok(truth)
}

type Rows = BTreeMap<(String, String), BTreeMap<String, String>>;

/// The observer's answered transactions by (poller, correlator).
fn observed_rows(csv: &Path) -> Result<Rows> {
    let mut map = BTreeMap::new();
    for r in read_csv(csv)? {
        if r.get("transaction_status").map(String::as_str) != Some("ok") {
            continue;
        }
        let key = (
            r.get("poller_name").cloned().unwrap_or_default(),
            r.get("correlator").cloned().unwrap_or_default(),
        );
        map.insert(key, r);
    }
    Ok(map)
}

/// The `cause` column of each.
fn causes_of(rows: &Rows) -> BTreeMap<(String, String), String> {
    rows.iter()
        .map(|(k, r)| (k.clone(), r.get("cause").cloned().unwrap_or_default()))
        .collect()
}

/// The CSV column measuring an injected cause's time (docs/formats.md).
fn measure_column(c: Injected) -> &'static str {
    match c {
        Injected::Retrans => "tcp_us",
        Injected::Conn => "conn_us",
        Injected::Far => "far_us",
        Injected::Queue => "queue_us",
    }
}

fn has_flag(cause: &str, flag: &str) -> bool {
    cause.split('+').any(|f| f == flag)
}

/// The table for one CSV and the bounds it breaks.
fn score(label: &str, truth: &[Truth], observed: &Rows) -> (String, Vec<String>) {
    let mut table = format!(
        "causes ({label}):\n  {:<8} {:>8} {:>10} {:>8}  quiet: {:>6} {:>8}  {:<28} other flags on injected\n",
        "cause", "injected", "attributed", "missing", "quiet", "flagged", "measured (min/median/max ms)"
    );
    let mut failures = Vec::new();
    let mut quiet_all = (0usize, 0usize);
    let mut quiet_examples = Vec::new();
    for (k, pair) in PAIRS.iter().enumerate() {
        let (mut injected, mut found, mut missing) = (0, 0, 0);
        let (mut quiet, mut flagged) = (0, 0);
        let mut others: BTreeMap<String, usize> = BTreeMap::new();
        let mut measured: Vec<f64> = Vec::new();
        for t in truth.iter().filter(|t| t.pair == k && t.excluded.is_none()) {
            let Some(row) = observed.get(&(t.poller.clone(), t.correlator.clone())) else {
                missing += 1;
                continue;
            };
            let cause = row.get("cause").map(String::as_str).unwrap_or("");
            match t.cause {
                Some(c) => {
                    injected += 1;
                    if has_flag(cause, c.flag()) {
                        found += 1;
                    }
                    if let Some(us) = row
                        .get(measure_column(c))
                        .and_then(|v| v.parse::<f64>().ok())
                    {
                        measured.push(us / 1000.0);
                    }
                    for f in cause.split('+').filter(|f| !f.is_empty() && *f != c.flag()) {
                        *others.entry(f.to_string()).or_default() += 1;
                    }
                }
                None => {
                    quiet += 1;
                    if !cause.is_empty() {
                        flagged += 1;
                        quiet_examples.push(format!("{} {} [{cause}]", t.poller, t.correlator));
                    }
                }
            }
        }
        quiet_all.0 += quiet;
        quiet_all.1 += flagged;
        measured.sort_by(f64::total_cmp);
        let spread = match (measured.first(), measured.last()) {
            (Some(lo), Some(hi)) => format!(
                "{} {lo:.1}/{:.1}/{hi:.1}",
                measure_column(pair.cause),
                measured[measured.len() / 2]
            ),
            _ => "-".to_string(),
        };
        table.push_str(&format!(
            "  {:<8} {:>8} {:>10} {:>8}  quiet: {:>6} {:>8}  {:<28} {:?}\n",
            pair.cause.flag(),
            injected,
            found,
            missing,
            quiet,
            flagged,
            spread,
            others
        ));
        if injected == 0 {
            failures.push(format!(
                "{label}: no {} transaction was injected",
                pair.cause.flag()
            ));
        } else if (found as f64) < MIN_FOUND * injected as f64 {
            failures.push(format!(
                "{label}: {found} of {injected} injected {} transactions carry it (< {:.0} %)",
                pair.cause.flag(),
                MIN_FOUND * 100.0
            ));
        }
        if missing > 0 {
            failures.push(format!(
                "{label}: {missing} answered transactions of {} not in the CSV",
                pair.poller
            ));
        }
    }
    let excluded = truth.iter().filter(|t| t.excluded.is_some()).count();
    table.push_str(&format!(
        "  quiet transactions flagged: {} of {} (bound {:.0} %); {excluded} left out (each pair's first, far before 5 answers)\n",
        quiet_all.1,
        quiet_all.0,
        MAX_QUIET_FLAGGED * 100.0
    ));
    for e in &quiet_examples {
        table.push_str(&format!("    quiet but flagged: {e}\n"));
    }
    if quiet_all.0 == 0 || quiet_all.1 as f64 > MAX_QUIET_FLAGGED * quiet_all.0 as f64 {
        failures.push(format!(
            "{label}: {} of {} quiet transactions flagged",
            quiet_all.1, quiet_all.0
        ));
    }
    (table, failures)
}

/// Offline against live or the store: the same transactions with the same flags.
fn compare(
    label: &str,
    offline: &BTreeMap<(String, String), String>,
    live: &BTreeMap<(String, String), String>,
) -> (String, Vec<String>) {
    let mut differ = Vec::new();
    let only_offline = offline.keys().filter(|k| !live.contains_key(*k)).count();
    let only_live = live.keys().filter(|k| !offline.contains_key(*k)).count();
    for (k, c) in offline {
        if let Some(l) = live.get(k) {
            if l != c {
                differ.push(format!("{} {}: analyze [{c}] {label} [{l}]", k.0, k.1));
            }
        }
    }
    let mut text = format!(
        "analyze vs {label}: {} answered transactions in both, {} with different causes, {only_offline} only in analyze, {only_live} only in {label}\n",
        offline.len() - only_offline,
        differ.len()
    );
    for d in &differ {
        text.push_str(&format!("  {d}\n"));
    }
    let mut failures = Vec::new();
    if !differ.is_empty() || only_offline > 0 || only_live > 0 {
        failures.push(format!("analyze and {label} disagree (see above)"));
    }
    (text, failures)
}
