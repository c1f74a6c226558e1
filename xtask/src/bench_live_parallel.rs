//! `cargo xtask bench-live-parallel`: several `tcpreplay --topspeed` at once, each
//! into its own veth pair and each with its own capture (disjoint peers, pairs and
//! correlators, written by `bench_data`), and one `observer live --source ebpf` on
//! all the host ends. Reports the aggregate frames/s over the replay window, the
//! source's drops, the transactions found against each capture's sidecar, and the
//! observer's CPU per JXTA message. A benchmark, not a test: it prints figures for
//! docs/performance.md; the arithmetic and the parsing below are tested.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use testbed::{cpu_seconds, Replay, Veth};

use crate::bench_data;

/// How the observer lets the captures' flows through its kernel filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `--port` names the receivers' port.
    Port,
    /// No `--port`, and the captures use a port off the default list: every flow is
    /// found by its welcome line.
    Content,
}

pub struct Options {
    pub replays: u32,
    /// Bytes per capture.
    pub size: u64,
    pub peers: u32,
    pub buddies: u32,
    /// The receivers' port in the captures.
    pub port: u16,
    pub modes: Vec<Mode>,
    /// Packets per second of each replay; 0: top speed.
    pub pps: Vec<u64>,
    pub runs: u32,
    pub observer: PathBuf,
    pub out: PathBuf,
    pub root: PathBuf,
    /// Run the observer under `nice -n` this (negative: ahead of the replays and of
    /// other users' builds, as a capture daemon with a core of its own would be).
    pub observer_nice: Option<i32>,
    /// `--ring-buffer` of the observer (its default when `None`).
    pub ring_buffer: Option<String>,
    /// `--reorder-window` of the observer (its default when `None`).
    pub reorder_window: Option<String>,
    /// Held while namespaces, veths, the tap and tcpreplay are in use.
    pub lock: PathBuf,
}

/// One capture to replay, with its truth from the sidecar.
struct Capture {
    file: PathBuf,
    frames: u64,
    transactions: u64,
    first_peer: u32,
}

/// What tcpreplay says of its own run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReplayFigures {
    pub packets: u64,
    pub seconds: f64,
    pub failed: u64,
}

/// Reads tcpreplay's closing statistics ("Actual: N packets (B bytes) sent in S
/// seconds", "Failed packets: F").
pub fn parse_tcpreplay(stdout: &str) -> Option<ReplayFigures> {
    let mut fig = ReplayFigures::default();
    let mut actual = false;
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Actual:") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            fig.packets = words.first()?.parse().ok()?;
            let at = words.iter().position(|w| *w == "in")?;
            fig.seconds = words.get(at + 1)?.parse().ok()?;
            actual = true;
        } else if let Some(rest) = line.strip_prefix("Failed packets:") {
            fig.failed = rest.trim().parse().ok()?;
        }
    }
    actual.then_some(fig)
}

/// A replay's window, in seconds from the moment the first one was started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
    pub packets: u64,
}

/// Frames replayed in all, the time from the first start to the last end, and their
/// ratio: the aggregate rate the observer had to keep up with.
pub fn aggregate(windows: &[Window]) -> Option<(u64, f64, f64)> {
    let first = windows.iter().map(|w| w.start_s).reduce(f64::min)?;
    let last = windows.iter().map(|w| w.end_s).reduce(f64::max)?;
    let frames: u64 = windows.iter().map(|w| w.packets).sum();
    let span = last - first;
    (span > 0.0).then(|| (frames, span, frames as f64 / span))
}

/// Microseconds of observer CPU per JXTA message.
pub fn cpu_per_message_us(cpu_s: f64, messages: u64) -> Option<f64> {
    (messages > 0 && cpu_s.is_finite()).then(|| cpu_s * 1e6 / messages as f64)
}

/// Answered transactions in a live CSV by capture: the poller's name `peerNNNNNN`
/// gives its peer number, which lies in one capture's range
/// `[first_peer, first_peer + peers)`. Index `firsts.len()` counts the rest.
pub fn ok_by_capture(csv: impl Read, firsts: &[u32], peers: u32) -> Result<Vec<u64>> {
    let mut r = csv::Reader::from_reader(csv);
    let headers = r.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no {name} column in the CSV"))
    };
    let (name_col, status_col) = (col("poller_name")?, col("transaction_status")?);
    let mut counts = vec![0u64; firsts.len() + 1];
    for rec in r.records() {
        let rec = rec?;
        if rec.get(status_col) != Some("ok") {
            continue;
        }
        let peer = rec
            .get(name_col)
            .and_then(|n| n.strip_prefix("peer"))
            .and_then(|n| n.parse::<u32>().ok());
        let slot = peer
            .and_then(|p| firsts.iter().position(|&f| p >= f && p - f < peers))
            .unwrap_or(firsts.len());
        counts[slot] += 1;
    }
    Ok(counts)
}

fn captures(o: &Options) -> Result<Vec<Capture>> {
    let mut out = Vec::new();
    for i in 0..o.replays {
        let first_peer = i * o.peers;
        let spec = bench_data::Spec {
            name: format!(
                "live-{}m-{}x{}-port{}-{}",
                o.size >> 20,
                o.peers,
                o.buddies,
                o.port,
                i
            ),
            size: o.size,
            peers: o.peers,
            buddies: o.buddies,
            interval_ns: Some(500_000_000),
            seconds: None,
            background: 0.0,
            full_setup: true,
            rounds_per_connection: Some(9),
            spread_ns: None,
            first_peer,
            port: o.port,
        };
        let file = o.out.join(format!("{}.pcap", spec.name));
        let sidecar = file.with_extension("json");
        if !(file.exists() && sidecar.exists()) {
            let w = bench_data::generate(&o.root, &spec, &o.out)?;
            println!(
                "wrote {} ({} frames, {} transactions)",
                w.file.display(),
                w.frames,
                w.transactions
            );
        }
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&sidecar)
                .with_context(|| format!("reading {}", sidecar.display()))?,
        )?;
        let field = |k: &str| {
            v[k].as_u64()
                .with_context(|| format!("{} has no {k}", sidecar.display()))
        };
        ensure!(
            field("first_peer")? == u64::from(first_peer),
            "{} was written for another first peer: remove it",
            sidecar.display()
        );
        out.push(Capture {
            file,
            frames: field("frames")?,
            transactions: field("transactions")?,
            first_peer,
        });
    }
    Ok(out)
}

/// An exclusive `flock` on `path`, released when the file is closed.
fn lock(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: a valid open descriptor for the duration of the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "flock {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(f)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Packets the veth pairs dropped before the tap could see them: the senders'
/// `tx_dropped` (the receive backlog was full) and the host ends' `rx_dropped`.
fn veth_drops(veths: &[Veth]) -> u64 {
    let read = |ns: Option<&str>, dev: &str, what: &str| -> u64 {
        let path = format!("/sys/class/net/{dev}/statistics/{what}");
        let text = match ns {
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "cat", &path])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default(),
            None => std::fs::read_to_string(&path).unwrap_or_default(),
        };
        text.trim().parse().unwrap_or(0)
    };
    veths
        .iter()
        .map(|v| read(Some(&v.ns), &v.peer, "tx_dropped") + read(None, &v.host, "rx_dropped"))
        .sum()
}

fn attached(host: &str) -> bool {
    Command::new("tc")
        .args(["filter", "show", "dev", host, "ingress"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("observer_tap"))
        .unwrap_or(false)
}

/// Waits until the observer has its filters on every host end, or fails with its
/// stderr if it exits first.
fn wait_attached(child: &mut Child, hosts: &[String], stderr: &Path) -> Result<()> {
    let t = Instant::now();
    while !hosts.iter().all(|h| attached(h)) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "observer live exited ({status}) before attaching: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        ensure!(
            t.elapsed() < Duration::from_secs(60),
            "observer live did not attach within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits for the records to stop coming: the reorder window (100 ms by default) and a CSV flush
/// at least, then until the CSV has not grown for a second (at most 60 s).
fn wait_drained(csv: &Path) {
    std::thread::sleep(Duration::from_secs(3));
    let size = || std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let mut last = size();
    while t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1200));
        let now = size();
        if now == last {
            return;
        }
        last = now;
    }
}

struct Row {
    mode: Mode,
    pps: u64,
    run: u32,
    veth_drops: u64,
    load: String,
    windows: Vec<Window>,
    replays: Vec<ReplayFigures>,
    json: serde_json::Value,
    cpu: (f64, f64),
    ok_by_capture: Vec<u64>,
}

fn one_run(
    o: &Options,
    caps: &[Capture],
    veths: &[Veth],
    (mode, pps, run): (Mode, u64, u32),
) -> Result<Row> {
    let tag = format!("{mode:?}-{pps}-{run}").to_lowercase();
    let speed = if pps == 0 {
        Replay::TopSpeed
    } else {
        Replay::Pps(pps)
    };
    let csv = o.out.join(format!("run-{tag}.csv"));
    let stderr = o.out.join(format!("run-{tag}.stderr"));
    // An existing CSV would be appended to.
    let _ = std::fs::remove_file(&csv);
    let mut args: Vec<String> = vec!["live".into(), "--source".into(), "ebpf".into()];
    for v in veths {
        args.extend(["-i".into(), v.host.clone()]);
    }
    args.extend(["--csv".into(), csv.display().to_string(), "--json".into()]);
    if mode == Mode::Port {
        args.extend(["--port".into(), o.port.to_string()]);
    }
    if let Some(r) = &o.ring_buffer {
        args.extend(["--ring-buffer".into(), r.clone()]);
    }
    if let Some(w) = &o.reorder_window {
        args.extend(["--reorder-window".into(), w.clone()]);
    }
    let mut cmd = match o.observer_nice {
        // nice execs the observer: the child's pid is the observer's.
        Some(n) => {
            let mut c = Command::new("nice");
            c.args(["-n", &n.to_string()]).arg(&o.observer);
            c
        }
        None => Command::new(&o.observer),
    };
    let mut child = cmd
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()
        .context("starting observer live")?;
    let pid = child.id();
    let stop = |child: &mut Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    };
    let hosts: Vec<String> = veths.iter().map(|v| v.host.clone()).collect();
    if let Err(e) = wait_attached(&mut child, &hosts, &stderr) {
        stop(&mut child);
        let _ = child.wait();
        return Err(e);
    }
    let load = load_average();
    let drops0 = veth_drops(veths);
    let cpu0 = cpu_seconds(pid).context("reading the observer's CPU time")?;
    let t0 = Instant::now();
    let mut replays = Vec::new();
    for (cap, v) in caps.iter().zip(veths) {
        let c = v
            .replay_command(&cap.file, speed)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpreplay")?;
        replays.push((t0.elapsed().as_secs_f64(), c));
    }
    let results: Vec<Result<(Window, ReplayFigures)>> = std::thread::scope(|s| {
        let handles: Vec<_> = replays
            .into_iter()
            .map(|(start_s, c)| {
                s.spawn(move || {
                    let out = c.wait_with_output()?;
                    let end_s = t0.elapsed().as_secs_f64();
                    let text = String::from_utf8_lossy(&out.stdout);
                    ensure!(
                        out.status.success(),
                        "tcpreplay failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let fig = parse_tcpreplay(&text)
                        .with_context(|| format!("no statistics in tcpreplay's output: {text}"))?;
                    Ok((
                        Window {
                            start_s,
                            end_s,
                            packets: fig.packets,
                        },
                        fig,
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a replay thread panicked")))
            })
            .collect()
    });
    let mut windows = Vec::new();
    let mut figures = Vec::new();
    let mut failure = None;
    for r in results {
        match r {
            Ok((w, f)) => {
                windows.push(w);
                figures.push(f);
            }
            Err(e) => failure = Some(e),
        }
    }
    let veth_drops = veth_drops(veths).saturating_sub(drops0);
    if failure.is_none() {
        wait_drained(&csv);
    }
    let cpu1 = cpu_seconds(pid).unwrap_or((f64::NAN, f64::NAN));
    stop(&mut child);
    let mut text = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut text);
    }
    let _ = child.wait();
    if let Some(e) = failure {
        return Err(e);
    }
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "observer's summary is not JSON: {text}\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    })?;
    // Kept beside the CSV: the counters the table leaves out (reorder, anomalies).
    let summary = o.out.join(format!("run-{tag}.json"));
    std::fs::write(&summary, &text).with_context(|| format!("writing {}", summary.display()))?;
    let firsts: Vec<u32> = caps.iter().map(|c| c.first_peer).collect();
    let ok_by_capture = ok_by_capture(
        std::fs::File::open(&csv).with_context(|| format!("opening {}", csv.display()))?,
        &firsts,
        o.peers,
    )?;
    Ok(Row {
        mode,
        pps,
        run,
        veth_drops,
        load,
        windows,
        replays: figures,
        json,
        cpu: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
        ok_by_capture,
    })
}

fn print_row(caps: &[Capture], r: &Row) {
    let (frames, span, rate) = aggregate(&r.windows).unwrap_or((0, f64::NAN, f64::NAN));
    let own_pps: f64 = r.replays.iter().map(|f| f.packets as f64 / f.seconds).sum();
    let failed: u64 = r.replays.iter().map(|f| f.failed).sum();
    let truth: u64 = caps.iter().map(|c| c.transactions).sum();
    let found = r.json["transactions"]["ok"].as_u64().unwrap_or(0);
    let messages = r.json["jxta"]["messages"]["total"].as_u64().unwrap_or(0);
    let cpu = r.cpu.0 + r.cpu.1;
    let per_msg = cpu_per_message_us(cpu, messages)
        .map(|u| format!("{u:.2}"))
        .unwrap_or_else(|| "-".into());
    let per_cap: Vec<String> = caps
        .iter()
        .zip(&r.ok_by_capture)
        .map(|(c, n)| format!("{n}/{}", c.transactions))
        .collect();
    let src = &r.json["source"];
    let reorder = &r.json["capture"]["packets"]["reorder"];
    println!(
        "| {:?} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} / {} | {} / {} | {} / {} | {} / {} / {} | {} | {}/{} ({}) | {} | {:.2} / {:.2} | {} |",
        r.mode,
        if r.pps == 0 {
            "top".to_string()
        } else {
            r.pps.to_string()
        },
        r.run,
        r.load,
        frames,
        span,
        rate,
        own_pps,
        failed,
        r.veth_drops,
        src["events"],
        caps.iter().map(|c| c.frames).sum::<u64>(),
        src["kernel_drops"],
        src["userspace_drops"],
        reorder["reordered_frames"],
        reorder["late_frames"],
        reorder["forced_releases"],
        r.json["jxta"]["gaps"],
        found,
        truth,
        per_cap.join(", "),
        messages,
        r.cpu.0,
        r.cpu.1,
        per_msg,
    );
}

pub fn run(o: &Options) -> Result<()> {
    std::fs::create_dir_all(&o.out)?;
    let caps = captures(o)?;
    let _lock = lock(&o.lock)?;
    let veths = (0..o.replays)
        .map(|i| Veth::new(&format!("lp{i}")))
        .collect::<testbed::Result<Vec<_>>>()
        .context("creating veth pairs in namespaces (needs root)")?;
    // The captures hold segments larger than Ethernet's 1,500 (the real JXSE capture
    // was taken with segmentation offload): tcpreplay fails to send those into a
    // veth of the default MTU.
    for v in &veths {
        testbed::ip(&["link", "set", "dev", &v.host, "mtu", "65535"])?;
        testbed::ip(&["-n", &v.ns, "link", "set", "dev", &v.peer, "mtu", "65535"])?;
    }
    if let Some(n) = o.observer_nice {
        println!("observer under nice -n {n}");
    }
    println!(
        "| mode | pps per replay | run | load (1, 5, 15 min) | frames replayed | window s | frames/s | tcpreplay's own pps, summed | tcpreplay failed / veth drops | events / frames in captures | kernel drops / user-space drops | reordered / late / forced early (reorder window) | TCP gaps | transactions ok / truth (per capture) | JXTA messages | observer user / sys s | CPU µs per message |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    let mut bad = Vec::new();
    for run in 1..=o.runs {
        for &pps in &o.pps {
            for &mode in &o.modes {
                let r = one_run(o, &caps, &veths, (mode, pps, run))?;
                print_row(&caps, &r);
                let truth: u64 = caps.iter().map(|c| c.transactions).sum();
                if r.json["transactions"]["ok"].as_u64() != Some(truth)
                    || r.json["source"]["kernel_drops"].as_u64() != Some(0)
                {
                    bad.push(format!("{mode:?} at {pps} pps, run {run}"));
                }
            }
        }
    }
    ensure!(
        bad.is_empty(),
        "{} of {} runs lost frames or transactions: {}",
        bad.len(),
        o.runs as usize * o.modes.len() * o.pps.len(),
        bad.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // tcpreplay 4.4.3's closing statistics, as printed with -q.
    const STATS: &str = "Actual: 530000 packets (463430000 bytes) sent in 3.41 seconds
Rated: 135903225.8 Bps, 1087.22 Mbps, 155425.21 pps
Flows: 10000 flows, 2932.55 fps, 530000 unique flow packets, 0 unique non-flow packets
Statistics for network device: oblp0B123
\tSuccessful packets:        529990
\tFailed packets:            10
\tTruncated packets:         0
\tRetried packets (ENOBUFS): 0
\tRetried packets (EAGAIN):  0
";

    #[test]
    fn tcpreplay_statistics_are_read() {
        let f = parse_tcpreplay(STATS).expect("parsed");
        assert_eq!(f.packets, 530_000);
        assert_eq!(f.failed, 10);
        assert!((f.seconds - 3.41).abs() < 1e-9, "{}", f.seconds);
        assert_eq!(parse_tcpreplay("Warning: nothing sent\n"), None);
        assert_eq!(parse_tcpreplay("Actual: many packets sent in 1 s\n"), None);
    }

    #[test]
    fn the_rate_is_over_first_start_to_last_end() {
        let w = [
            Window {
                start_s: 0.0,
                end_s: 3.0,
                packets: 300_000,
            },
            Window {
                start_s: 0.5,
                end_s: 4.0,
                packets: 500_000,
            },
        ];
        let (frames, span, rate) = aggregate(&w).expect("some");
        assert_eq!(frames, 800_000);
        assert!((span - 4.0).abs() < 1e-9);
        assert!((rate - 200_000.0).abs() < 1e-6, "{rate}");
        assert_eq!(aggregate(&[]), None);
        let instant = [Window {
            start_s: 1.0,
            end_s: 1.0,
            packets: 5,
        }];
        assert_eq!(aggregate(&instant), None);
    }

    #[test]
    fn cpu_per_message_is_in_microseconds() {
        assert_eq!(cpu_per_message_us(1.5, 300_000), Some(5.0));
        assert_eq!(cpu_per_message_us(1.5, 0), None);
        assert_eq!(cpu_per_message_us(f64::NAN, 10), None);
    }

    #[test]
    fn answered_transactions_are_counted_by_the_pollers_capture() {
        let csv = "start_unix_ns,poller_name,transaction_status\n\
                   1,peer000001,ok\n\
                   2,peer000199,ok\n\
                   3,peer000200,ok\n\
                   4,peer000250,timeout\n\
                   5,peer000399,ok\n\
                   6,peer000400,ok\n\
                   7,PingClient,ok\n";
        let counts = ok_by_capture(csv.as_bytes(), &[0, 200], 200).expect("counted");
        assert_eq!(counts, vec![2, 2, 2]);
        let no_status = "poller_name\npeer000001\n";
        assert!(ok_by_capture(no_status.as_bytes(), &[0], 200).is_err());
    }
}
