//! `cargo xtask scenario`: reference peers in network namespaces behind a gateway
//! namespace, a capture on the gateway, then `observer analyze` and `observer validate`.
//!
//! Topology: one namespace per peer (`eth0`, 10.213.0.N/24) and a gateway namespace
//! holding a bridge that joins the peers' veth pairs; the capture runs on that bridge, so
//! it sees every peer-to-peer packet, as an observer on a LAN gateway would. The
//! addresses exist only inside these namespaces. Everything is removed on exit, on
//! failure and on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use testbed::{ip, Children};

/// One reference peer of a scenario.
struct PeerPlan {
    name: &'static str,
    reply_delay: &'static str,
    instrumented: bool,
    state_at: Vec<&'static str>,
    /// SIGKILL this long after start.
    kill_after: Option<Duration>,
}

struct Plan {
    peers: Vec<PeerPlan>,
    interval: Duration,
    timeout: Duration,
    duration: Duration,
}

fn plan(name: &str, seconds: u64) -> Result<Plan> {
    let duration = Duration::from_secs(seconds);
    Ok(match name {
        "pair" => Plan {
            peers: vec![
                PeerPlan {
                    name: "alice",
                    reply_delay: "fixed:50ms",
                    instrumented: true,
                    state_at: vec![],
                    kill_after: None,
                },
                PeerPlan {
                    name: "bob",
                    reply_delay: "normal:850ms,300ms",
                    instrumented: true,
                    state_at: vec!["10s=busy", "20s=online"],
                    kill_after: None,
                },
            ],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            duration,
        },
        // Shaped like the study's figure 3: a distant peer (~850 ms ± 300 ms), two
        // medium ones, a fast one; carol runs unmodified JIM (no correlator); bob changes
        // state; dave is killed near the end so his buddies' PINGs time out.
        "study" => {
            let kill = duration.saturating_sub(Duration::from_secs(8));
            Plan {
                peers: vec![
                    PeerPlan {
                        name: "alice",
                        reply_delay: "fixed:20ms",
                        instrumented: true,
                        state_at: vec![],
                        kill_after: None,
                    },
                    PeerPlan {
                        name: "bob",
                        reply_delay: "normal:300ms,100ms",
                        instrumented: true,
                        state_at: vec!["8s=busy", "16s=away", "24s=online"],
                        kill_after: None,
                    },
                    PeerPlan {
                        name: "carol",
                        reply_delay: "normal:400ms,100ms",
                        instrumented: false,
                        state_at: vec![],
                        kill_after: None,
                    },
                    PeerPlan {
                        name: "dave",
                        reply_delay: "normal:850ms,300ms",
                        instrumented: true,
                        state_at: vec![],
                        kill_after: Some(kill),
                    },
                ],
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(3),
                duration,
            }
        }
        other => bail!("unknown scenario {other:?} (pair, study, gateways, causes)"),
    })
}

/// Network namespaces and links made by the scenario; removed on drop.
pub(crate) struct Topology {
    pub(crate) gateway: String,
    pub(crate) peers: Vec<String>,
    /// The gateway-side ends of the peers' veth pairs (bridge ports).
    pub(crate) ports: Vec<String>,
}

impl Topology {
    pub(crate) fn create(n: usize) -> Result<Topology> {
        let id = std::process::id() % 10_000;
        let mut t = Topology {
            gateway: format!("obsgw{id}"),
            peers: Vec::new(),
            ports: Vec::new(),
        };
        ip(&["netns", "add", &t.gateway])?;
        ip(&["-n", &t.gateway, "link", "set", "lo", "up"])?;
        ip(&["-n", &t.gateway, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &t.gateway, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("obsp{i}x{id}");
            ip(&["netns", "add", &ns])?;
            t.peers.push(ns.clone());
            let (a, b) = (format!("vp{i}x{id}"), format!("vg{i}x{id}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
            ip(&["link", "set", &a, "netns", &ns, "name", "eth0"])?;
            ip(&["link", "set", &b, "netns", &t.gateway])?;
            t.ports.push(b.clone());
            ip(&["-n", &t.gateway, "link", "set", &b, "master", "br0"])?;
            ip(&["-n", &t.gateway, "link", "set", &b, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", peer_ip(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(t)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and with them their peers.
        for ns in self.peers.iter().chain(std::iter::once(&self.gateway)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Where the scenario runs: namespaces behind a gateway, or plain loopback where
/// namespaces are not permitted.
enum Net {
    Namespaces(Topology),
    Loopback,
}

impl Net {
    /// A command run in peer `i`'s namespace (or the gateway's for `None`), at higher
    /// priority.
    fn command(&self, peer: Option<usize>) -> Command {
        let mut cmd;
        match self {
            Net::Namespaces(t) => {
                cmd = Command::new("ip");
                let ns = match peer {
                    Some(i) => &t.peers[i],
                    None => &t.gateway,
                };
                cmd.args(["netns", "exec", ns, "nice", "-n", "-10"]);
            }
            Net::Loopback => {
                cmd = Command::new("nice");
                cmd.args(["-n", "-10"]);
            }
        }
        cmd
    }

    fn capture_interface(&self) -> &'static str {
        match self {
            Net::Namespaces(_) => "br0",
            Net::Loopback => "lo",
        }
    }

    fn peer_ip(&self, i: usize) -> String {
        match self {
            Net::Namespaces(_) => peer_ip(i),
            Net::Loopback => format!("127.0.0.{}", i + 1),
        }
    }
}

pub(crate) fn peer_ip(i: usize) -> String {
    format!("10.213.0.{}", i + 1)
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub struct Options {
    pub scenario: String,
    pub seconds: u64,
    pub out: PathBuf,
    pub observer: PathBuf,
    pub max_socket_delta: String,
    pub max_socket_p99: String,
    pub max_socket_withheld: String,
    /// CPUs kept busy by `stress-ng` while the peers run (0: none).
    pub stress_cpus: u32,
    /// Run on loopback even where namespaces work.
    pub loopback: bool,
    /// Also run `observer live` on the gateway with this source (`ebpf`, `pcap`) and
    /// validate its records too.
    pub live: Option<String>,
}

/// Runs the scenario; returns an error (and a non-zero exit) when validation fails.
pub fn run(opts: &Options) -> Result<()> {
    if opts.scenario == "gateways" {
        return crate::gateways::run(opts);
    }
    if opts.scenario == "causes" {
        return crate::causes::run(opts);
    }
    let plan = plan(&opts.scenario, opts.seconds)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    std::fs::create_dir_all(&opts.out)?;
    let out = opts.out.canonicalize()?;
    let net = match Topology::create(plan.peers.len()) {
        Ok(topo) if !opts.loopback => Net::Namespaces(topo),
        Ok(_) => Net::Loopback,
        Err(e) => {
            eprintln!(
                "scenario: network namespaces are not available ({e:#}); falling back to loopback: \
                 peers on 127.0.0.N, capture on lo (no gateway in between)"
            );
            Net::Loopback
        }
    };
    let observer = opts
        .observer
        .canonicalize()
        .with_context(|| format!("observer binary {}", opts.observer.display()))?;
    let capture = out.join("gateway.pcap");
    let mut children = Children(Vec::new());
    let mut tcpdump = net.command(None);
    tcpdump.args([
        "tcpdump",
        "-i",
        net.capture_interface(),
        "-U",
        "-s",
        "0",
        "-n",
        "-w",
    ]);
    tcpdump.arg(&capture);
    if matches!(net, Net::Loopback) {
        // lo carries everything on this machine: only the peers' JXTA port.
        tcpdump.args(["tcp", "port", "9701"]);
    }
    start_gateway_capture(tcpdump, &capture, &mut children)?;

    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let live_csv = out.join("live.csv");
    if let Some(source) = &opts.live {
        let _ = std::fs::remove_file(&live_csv);
        let mut cmd = net.command(None);
        cmd.arg(&observer).args(["live", "--source", source]);
        // eBPF: on the bridge ports (a bridge device's own hooks do not see forwarded
        // frames); each packet then shows twice (in at its sender's port, out at its
        // receiver's), the copy being a retransmission to the reassembler. libpcap:
        // on the bridge.
        match (&net, source.as_str()) {
            (Net::Namespaces(t), "ebpf") => {
                for p in &t.ports {
                    cmd.args(["-i", p]);
                }
            }
            _ => {
                cmd.args(["-i", net.capture_interface()]);
            }
        }
        // The frames as the live source saw them (`-w`): a validation failure can be
        // compared packet by packet with the gateway's capture.
        cmd.args(["--timeout", &secs(plan.timeout), "--port", "9701", "--csv"])
            .arg(&live_csv)
            .arg("-w")
            .arg(out.join("live.pcap"));
        let child = cmd
            .stdout(std::fs::File::create(out.join("live.txt"))?)
            .stderr(std::fs::File::create(out.join("live.log"))?)
            .spawn()
            .context("starting observer live on the gateway")?;
        children.0.push(("live".into(), child));
        std::thread::sleep(Duration::from_secs(2));
        if let Some((_, c)) = children.0.iter_mut().find(|(n, _)| n == "live") {
            if let Ok(Some(status)) = c.try_wait() {
                let log = std::fs::read_to_string(out.join("live.log")).unwrap_or_default();
                bail!("observer live exited at start ({status}): {log}");
            }
        }
    }
    if opts.stress_cpus > 0 {
        // Outside the namespaces, at normal priority: it competes with everything.
        let child = Command::new("stress-ng")
            .args([
                "--cpu",
                &opts.stress_cpus.to_string(),
                "--timeout",
                &format!("{}s", plan.duration.as_secs() + 30),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(out.join("stress-ng.log"))?)
            .spawn()
            .context("starting stress-ng (install Debian's stress-ng)")?;
        children.0.push(("stress-ng".into(), child));
        eprintln!("  stress-ng --cpu {} running", opts.stress_cpus);
    }
    let mut csvs = Vec::new();
    for (i, p) in plan.peers.iter().enumerate() {
        let csv = out.join(format!("{}.csv", p.name));
        let _ = std::fs::remove_file(&csv);
        // The peers measure themselves: like the capture, they get the CPU first when
        // data arrives, so the comparison measures the wire, not the scheduler.
        let mut cmd = net.command(Some(i));
        cmd.arg(&observer).args([
            "peer",
            "--name",
            p.name,
            "--listen",
            &format!("{}:9701", net.peer_ip(i)),
            "--interval",
            &secs(plan.interval),
            "--timeout",
            &secs(plan.timeout),
            "--reply-delay",
            p.reply_delay,
            "--duration",
            &secs(plan.duration),
            "--management",
            &format!("127.0.0.1:{}", 9801 + i),
            "--no-stdin",
        ]);
        cmd.arg("--csv").arg(&csv);
        for (j, b) in plan.peers.iter().enumerate() {
            if j != i {
                cmd.args(["--buddy", &format!("{}={}:9701", b.name, net.peer_ip(j))]);
            }
        }
        if !p.instrumented {
            cmd.arg("--no-correlator");
        }
        for s in &p.state_at {
            cmd.args(["--state-at", s]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(out.join(format!("{}.log", p.name)))?)
            .spawn()
            .with_context(|| format!("starting peer {}", p.name))?;
        children.0.push((p.name.to_string(), child));
        csvs.push((p.name, csv));
    }
    eprintln!(
        "scenario {}: {} peers for {} s, capture on the gateway bridge -> {}",
        opts.scenario,
        plan.peers.len(),
        plan.duration.as_secs(),
        capture.display()
    );

    let started = Instant::now();
    let mut killed: Vec<(&str, u64)> = Vec::new();
    loop {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted: namespaces and processes cleaned up");
        }
        for p in &plan.peers {
            if let Some(k) = p.kill_after {
                if started.elapsed() >= k && !killed.iter().any(|(n, _)| *n == p.name) {
                    // The kill time is taken just before the signal: a PONG on the wire
                    // after it can no longer have been recorded by the killed peer.
                    let at = now_ns();
                    if let Some((_, c)) = children.0.iter_mut().find(|(n, _)| n == p.name) {
                        let _ = c.kill(); // SIGKILL: no flush, no goodbye
                        let _ = c.wait();
                    }
                    killed.push((p.name, at));
                    eprintln!(
                        "  killed {} (SIGKILL) at {:.1} s",
                        p.name,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        let peers_done = children
            .0
            .iter_mut()
            .filter(|(n, _)| n != "tcpdump" && n != "live" && n != "stress-ng")
            .all(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if peers_done {
            break;
        }
        if started.elapsed() > plan.duration + Duration::from_secs(30) {
            bail!("peers did not stop within 30 s of their duration");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the last segments reach the capture, then stop the captures cleanly.
    std::thread::sleep(Duration::from_millis(500));
    for (name, status) in children.stop(|n| n == "tcpdump" || n == "live") {
        if name == "live" && !status.map(|s| s.success()).unwrap_or(false) {
            let log = std::fs::read_to_string(out.join("live.log")).unwrap_or_default();
            bail!("observer live failed: {log}");
        }
    }
    drop(children);
    drop(net);

    // Passive: the observer on the gateway's capture.
    let observed = out.join("observed.csv");
    let status = Command::new(&observer)
        .arg("analyze")
        .arg(&capture)
        .args(["--timeout", &secs(plan.timeout), "--no-progress", "--csv"])
        .arg(&observed)
        .stdout(std::fs::File::create(out.join("analyze.txt"))?)
        .status()?;
    if !status.success() {
        bail!("observer analyze failed ({status})");
    }
    let active: Vec<PathBuf> = csvs.iter().map(|(_, c)| c.clone()).collect();
    eprintln!("passive: observer analyze on the gateway's capture");
    validate(
        &observer, &out, "capture", &observed, &active, &killed, opts,
    )?;
    if opts.live.is_some() {
        eprintln!("passive: observer live on the gateway");
        validate(&observer, &out, "live", &live_csv, &active, &killed, opts)?;
    }
    Ok(())
}

/// Runs `observer validate` of one passive CSV against the peers' own records.
pub(crate) fn validate(
    observer: &Path,
    out: &Path,
    label: &str,
    observed: &Path,
    active: &[PathBuf],
    killed: &[(&str, u64)],
    opts: &Options,
) -> Result<()> {
    // A peer killed by SIGKILL cannot record its PINGs still in flight: drop exactly
    // those from the passive side (its PINGs whose PONG had not arrived by the kill).
    let compared = if killed.is_empty() {
        observed.to_path_buf()
    } else {
        let filtered = out.join(format!("{label}-comparable.csv"));
        exclude_killed(observed, &filtered, killed)?;
        filtered
    };
    let mut cmd = Command::new(observer);
    cmd.arg("validate")
        .arg("--passive")
        .arg(&compared)
        .arg("--active");
    for c in active {
        cmd.arg(c);
    }
    // The socket difference is what the wire can see and is bounded; the application
    // difference adds the peers' own scheduling delays, which depend on the machine's
    // load: reported, not bounded.
    cmd.args([
        "--max-miss",
        "0",
        "--max-socket-delta",
        &opts.max_socket_delta,
        "--max-socket-p99",
        &opts.max_socket_p99,
        "--max-socket-withheld",
        &opts.max_socket_withheld,
    ]);
    let report = cmd.output()?;
    let file = out.join(format!("validate-{label}.txt"));
    std::fs::write(&file, &report.stdout)?;
    print!("{}", String::from_utf8_lossy(&report.stdout));
    eprint!("{}", String::from_utf8_lossy(&report.stderr));
    if !report.status.success() {
        bail!(
            "validation of the {label} records failed: see {}",
            file.display()
        );
    }
    Ok(())
}

/// Copies the passive CSV without the killed peers' transactions that were still in
/// flight at the kill (stop at or after the kill, or never stopped by a PONG).
fn exclude_killed(from: &Path, to: &Path, killed: &[(&str, u64)]) -> Result<()> {
    let text = std::fs::read_to_string(from)?;
    let mut out = String::new();
    let mut dropped = 0;
    for (n, line) in text.lines().enumerate() {
        if n > 0 {
            let f: Vec<&str> = line.split(',').collect();
            let (stop, poller, status) = (
                f.get(1).copied().unwrap_or(""),
                f.get(3).copied().unwrap_or(""),
                f.get(8).copied().unwrap_or(""),
            );
            if let Some((_, at)) = killed.iter().find(|(k, _)| *k == poller) {
                let stop: u64 = stop.parse().unwrap_or(u64::MAX);
                if status != "ok" || stop >= *at {
                    dropped += 1;
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    eprintln!("  {dropped} in-flight transactions of killed peers left out of the comparison");
    std::fs::write(to, out)?;
    Ok(())
}

/// Starts the gateway's tcpdump (`cmd`, writing `capture`) as the child "tcpdump", and
/// returns once it captures: tcpdump opens the interface asynchronously, and the file
/// appears when it has.
pub(crate) fn start_gateway_capture(
    mut cmd: Command,
    capture: &Path,
    children: &mut Children,
) -> Result<()> {
    let tcpdump = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tcpdump on the gateway (install Debian's tcpdump)")?;
    children.0.push(("tcpdump".into(), tcpdump));
    let t0 = Instant::now();
    while !capture.exists() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}
