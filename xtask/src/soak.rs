//! `cargo xtask soak`: an always-on gateway in miniature. Generated traffic with churn
//! (`observer::synth::soak`: 10,000+ distinct pairs, peers killed mid-transaction,
//! restarted with their correlators from 1 again, joining late, leaving) is replayed
//! faster than real time, again and again for the duration, by one tcpreplay into TWO
//! veth pairs (a tcpprep CIDR split: each half of the peers sends on its own interface),
//! with `observer live -i A -i B --csv` capturing both host ends. At the end every
//! transaction of the truth (times the replays) must be in the CSV, none lost and none
//! extra, and the observer's resident set, sampled every second, must be flat after the
//! warm-up. A capture replayed again waits until its PINGs are over (`repeat_pause`).
//!
//! Over 600 lines: one scenario (its captures, replays, RSS sampling and the exact
//! check against the truth), then tests of the repeat pause.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use observer::capture::WriteFormat;
use observer::packet::build::LinkVariant;
use observer::synth::Change;
use observer::transaction::TxStatus;

pub struct Options {
    pub minutes: f64,
    pub peers: usize,
    /// tcpreplay's speed-up.
    pub multiplier: f64,
    pub warmup: Duration,
    /// Distinct sets of peer identities replayed in turn (0: a new one every replay).
    pub generations: u64,
    /// Largest RSS growth accepted from the warm-up's end to the end, in MiB.
    pub max_growth_mib: f64,
    /// The observer's `--pair-horizon` (None: its default).
    pub pair_horizon: Option<Duration>,
    /// A command the observer runs under (empty: none).
    pub wrap: Vec<String>,
    pub source: String,
    pub observer: PathBuf,
    pub out: PathBuf,
}

/// The observer's `--timeout`, not scaled by the speed-up: more than twice the largest
/// reply delay of `synth`'s peers (4.5 s) at real time, so whether a PING was answered
/// does not depend on the replay's pace, which a loaded machine stretches (at 5 s, a
/// 4.5 s answer in a replay stalled below real time was once taken for a timeout).
const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first half of the peers (`synth::soak`'s 10.1/16) goes out on the first
/// interface, the other half on the second.
const FIRST_HALF: &str = "10.1.0.0/16";

fn ip(args: &[&str]) -> Result<()> {
    let ok = Command::new("ip").args(args).status()?.success();
    ensure!(ok, "ip {} failed", args.join(" "));
    Ok(())
}

/// Two veth pairs, their peer ends in one namespace (where tcpreplay sends), their
/// host ends in ours (where the observer captures); removed on drop.
struct Veths {
    ns: String,
    host: [String; 2],
    peer: [String; 2],
}

impl Veths {
    fn new() -> Result<Veths> {
        let id = std::process::id() % 100_000;
        let v = Veths {
            ns: format!("obs-soak-{id}"),
            host: [format!("obsA{id}"), format!("obsB{id}")],
            peer: [format!("obsa{id}"), format!("obsb{id}")],
        };
        ip(&["netns", "add", &v.ns])?;
        for k in 0..2 {
            ip(&[
                "link", "add", &v.host[k], "type", "veth", "peer", "name", &v.peer[k],
            ])?;
            ip(&["link", "set", &v.peer[k], "netns", &v.ns])?;
            ip(&["link", "set", &v.host[k], "up"])?;
            ip(&[
                "netns", "exec", &v.ns, "ip", "link", "set", &v.peer[k], "up",
            ])?;
        }
        Ok(v)
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        for h in &self.host {
            let _ = Command::new("ip").args(["link", "del", h]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A child process killed on drop (failure, Ctrl-C).
struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The observer started under a wrapper that may fork (heaptrack's script does): the
/// process below `root` running a program named as `exe` (a wrapper script may run
/// another build of it), waited for up to 30 s.
fn wrapped_pid(root: u32, exe: &Path) -> Option<u32> {
    let name = exe.file_name()?;
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces or parentheses: fields start after the last ')'.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let below_root = |mut pid: u32| {
        for _ in 0..16 {
            if pid == root {
                return true;
            }
            match parent(pid) {
                Some(p) if p > 1 => pid = p,
                _ => return false,
            }
        }
        false
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let runs = std::fs::read_link(entry.path().join("exe"))
                .is_ok_and(|e| e.file_name() == Some(name));
            if runs && below_root(pid) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// CPU seconds (user, system) of a running process (testbed's /proc reader), NaN when
/// it cannot be read.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    testbed::cpu_seconds(pid).unwrap_or((f64::NAN, f64::NAN))
}

/// (poller ID, receiver ID, correlator, status): what the comparison counts.
type Key = (String, String, String, String);

/// Counts of each key in a transaction CSV, by column name.
fn count_csv(path: &Path, counts: &mut HashMap<Key, i64>, sign: i64) -> Result<u64> {
    // The `csv` crate: a quoted field (a name with a comma) stays one field. Flexible,
    // so that a short line is counted with empty fields rather than ending the soak.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("{}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("{}", path.display()))?
        .clone();
    ensure!(!header.is_empty(), "an empty CSV: {}", path.display());
    let col = |name: &str| {
        header
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("no column {name} in {}", path.display()))
    };
    let (p, r, c, s) = (
        col("poller_peer_id")?,
        col("receiver_peer_id")?,
        col("correlator")?,
        col("transaction_status")?,
    );
    let mut n = 0;
    for record in reader.records() {
        let record = record.with_context(|| format!("{}", path.display()))?;
        let get = |i: usize| record.get(i).unwrap_or("").to_string();
        let key = (get(p), get(r), get(c), get(s));
        *counts.entry(key).or_default() += sign;
        n += 1;
    }
    Ok(n)
}

/// One replayable capture: its file, its tcpprep split and what it must give.
struct Generation {
    capture: PathBuf,
    cache: PathBuf,
    /// Transactions per key; open at the capture's end counts as timeout: live, time
    /// goes on past the end (the next replay, the wait at the end) and it times out.
    keys: HashMap<Key, i64>,
    pairs: Vec<(String, String)>,
    transactions: usize,
    /// Transactions repeating a correlator of their pair (after a restart).
    repeats: usize,
    frames: usize,
    bytes: usize,
    duration_ns: u64,
    restart_gap_ns: u64,
    /// Capture time from a PING to the next replay's PING of the same pair and
    /// correlator, replays back to back: the smallest over the capture's keys of (end
    /// of the capture − the key's last PING) + (the key's first PING − start of the
    /// capture).
    repeat_gap_ns: u64,
}

fn id(p: &Option<observer::jxta::PeerId>) -> String {
    p.as_ref().map(|i| i.to_string()).unwrap_or_default()
}

/// Renders generation `g` of the soak traffic into `out` and splits it for two
/// interfaces.
fn prepare(opts: &Options, out: &Path, g: u64) -> Result<Generation> {
    let script = observer::synth::soak(opts.peers, g);
    // From a kill to the restart that repeats the correlators.
    let restart_gap_ns = script
        .changes
        .iter()
        .filter(|c| matches!(c.2, Change::Restart))
        .filter_map(|(at, peer, _)| {
            let killed = script
                .changes
                .iter()
                .find(|c| c.1 == *peer && matches!(c.2, Change::Gone))?;
            at.checked_sub(killed.0)
        })
        .min()
        .unwrap_or(u64::MAX);
    let rendered = script.render();
    let capture = out.join(format!("soak-{g}.pcap"));
    let bytes = rendered.capture_bytes(
        LinkVariant::Ethernet,
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
    )?;
    std::fs::write(&capture, &bytes)?;
    std::fs::write(
        out.join(format!("soak-{g}.truth.csv")),
        rendered.truth_csv()?,
    )?;
    let mut keys: HashMap<Key, i64> = HashMap::new();
    let mut correlators: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for t in &rendered.truth {
        let status = match t.status {
            TxStatus::Ok => "ok",
            TxStatus::Timeout | TxStatus::Open => "timeout",
        };
        // By peer ID: the observer learns a receiver's name from its PONGs, so one that
        // never answered has none.
        let (poller, receiver) = (id(&t.poller_id), id(&t.receiver_id));
        *correlators
            .entry((
                poller.clone(),
                receiver.clone(),
                t.correlator.as_deref().map(str::to_string),
            ))
            .or_default() += 1;
        let key = (
            poller,
            receiver,
            t.correlator.as_deref().unwrap_or_default().to_owned(),
            status.to_string(),
        );
        *keys.entry(key).or_default() += 1;
    }
    let repeat_gap_ns = repeat_gap_ns(&rendered);
    let mut pairs: Vec<(String, String)> = correlators
        .keys()
        .map(|(p, r, _)| (p.clone(), r.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    let cache = out.join(format!("soak-{g}.cache"));
    let prep = Command::new("tcpprep")
        .arg(format!("--cidr={FIRST_HALF}"))
        .arg("--pcap")
        .arg(&capture)
        .arg("--cachefile")
        .arg(&cache)
        .output()
        .context("running tcpprep (install Debian's tcpreplay)")?;
    ensure!(
        prep.status.success(),
        "tcpprep failed: {}",
        String::from_utf8_lossy(&prep.stderr)
    );
    Ok(Generation {
        capture,
        cache,
        keys,
        pairs,
        transactions: rendered.truth.len(),
        repeats: correlators.values().map(|n| n - 1).sum(),
        frames: rendered.wire.packets.iter().filter(|p| p.written).count(),
        bytes: bytes.len(),
        duration_ns: script.duration_ns,
        restart_gap_ns,
        repeat_gap_ns,
    })
}

/// See [`Generation::repeat_gap_ns`]. A replay spans its capture's first to last
/// written frame, so those are the capture's start and end.
fn repeat_gap_ns(rendered: &observer::synth::Rendered) -> u64 {
    let written = || rendered.wire.packets.iter().filter(|p| p.written);
    let (Some(first), Some(last)) = (written().map(|p| p.ts).min(), written().map(|p| p.ts).max())
    else {
        return u64::MAX;
    };
    let mut span: HashMap<(String, String, Option<String>), (u64, u64)> = HashMap::new();
    for t in &rendered.truth {
        let e = span
            .entry((
                id(&t.poller_id),
                id(&t.receiver_id),
                t.correlator.as_deref().map(str::to_string),
            ))
            .or_insert((t.start, t.start));
        e.0 = e.0.min(t.start);
        e.1 = e.1.max(t.start);
    }
    span.values()
        .map(|(lo, hi)| last.saturating_sub(*hi) + lo.saturating_sub(first))
        .min()
        .unwrap_or(u64::MAX)
}

/// How long to wait after a replay of a capture before the same capture again: its
/// PINGs must be over (answered or timed out, with `margin`) before their correlators
/// come back, or the observer rightly counts the repeats as duplicates, which the truth
/// (the capture's own, counted again) does not. Live capture time is the frames'
/// arrival time, so a wait between the replays is a gap in capture time; at `multiplier`
/// a capture-time gap of the capture itself shrinks by that factor.
fn repeat_pause(repeat_gap_ns: u64, multiplier: f64, margin: Duration) -> Duration {
    let needed = LIVE_TIMEOUT + margin;
    let inherent = Duration::from_secs_f64(repeat_gap_ns as f64 / 1e9 / multiplier);
    needed.saturating_sub(inherent)
}

/// Beyond the timeout, for the observer's reorder window and a scheduler's hiccup.
const REPEAT_MARGIN: Duration = Duration::from_secs(2);

pub fn run(opts: &Options) -> Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    std::fs::create_dir_all(&opts.out)?;
    let out = opts.out.canonicalize()?;
    let duration = Duration::from_secs_f64(opts.minutes * 60.0);
    let t0 = Instant::now();
    let mut generations = vec![prepare(opts, &out, 0)?];
    let first = &generations[0];
    println!(
        "soak: {} peers, {} pairs, {} transactions ({} repeating a correlator of their pair after a restart), {} frames, {:.1} MB per capture (rendered in {:.1} s); {:.0} s of traffic replayed at x{} for {:.1} min, {}",
        opts.peers,
        first.pairs.len(),
        first.transactions,
        first.repeats,
        first.frames,
        first.bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        first.duration_ns as f64 / 1e9,
        opts.multiplier,
        opts.minutes,
        match opts.generations {
            0 => "new peer identities every replay".to_string(),
            1 => "the same capture every replay".to_string(),
            n => format!("{n} sets of peer identities in turn"),
        }
    );

    let veths = Veths::new().context("creating two veth pairs in a namespace (needs root)")?;
    let live_csv = out.join("live.csv");
    let _ = std::fs::remove_file(&live_csv);
    let timeout_ms = LIVE_TIMEOUT.as_millis() as u64;
    // A restarted peer's correlators come again well after its kill: by then the PINGs
    // it left unanswered must have timed out, or the repeats are (rightly) duplicates.
    ensure!(
        first.restart_gap_ns as f64 / 1e9 / opts.multiplier > LIVE_TIMEOUT.as_secs_f64() + 1.0,
        "at x{} a restart comes within the observer's {LIVE_TIMEOUT:?} timeout of the kill: use a smaller --multiplier",
        opts.multiplier
    );
    // At higher priority, as the scenarios run it: the machine that runs the tests is
    // shared, a gateway's observer is not competing with compilers.
    let mut observer = Command::new("nice");
    observer
        .args(["-n", "-10"])
        .args(&opts.wrap)
        .arg(&opts.observer)
        .args(["live", "-i", &veths.host[0], "-i", &veths.host[1]])
        .args(["--source", &opts.source, "--port", "9701", "--json"])
        .args(["--timeout", &format!("{timeout_ms}ms"), "--csv"])
        .arg(&live_csv);
    if let Some(h) = opts.pair_horizon {
        observer.args(["--pair-horizon", &format!("{}ms", h.as_millis())]);
    }
    let child = observer
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(out.join("live.log"))?)
        .spawn()
        .context("starting observer live")?;
    let mut live = Killer(child);
    let pid = if opts.wrap.is_empty() {
        live.0.id()
    } else {
        wrapped_pid(live.0.id(), &opts.observer)
            .context("the observer did not start under --observer-wrap")?
    };
    // Set up once it has dropped root (it does so after attaching to both interfaces).
    let up = Instant::now();
    while proc_field(pid, "Uid:") == Some(0) {
        if let Ok(Some(status)) = live.0.try_wait() {
            let log = std::fs::read_to_string(out.join("live.log")).unwrap_or_default();
            bail!("observer live exited at start ({status}): {log}");
        }
        ensure!(
            up.elapsed() < Duration::from_secs(30),
            "observer live not up after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // RSS every second, from now to the end.
    let samples: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let sampling = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let sampler = {
        let (samples, sampling) = (samples.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kb) = proc_field(pid, "VmRSS:") {
                    if let Ok(mut s) = samples.lock() {
                        s.push((started.elapsed().as_secs_f64(), kb));
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    let mut replays = 0u64;
    // When each capture's latest replay ended: the same capture waits for its own
    // PINGs to be over (`repeat_pause`).
    let mut replayed_at: Vec<Option<Instant>> = Vec::new();
    // Growth counts from the end of the warm-up or of the first cycle of captures (every
    // pair and flow of it seen once), whichever is later.
    let cycle = opts.generations.max(1);
    let mut cycle_end = 0.0f64;
    let mut expected: HashMap<Key, i64> = HashMap::new();
    let mut pairs: std::collections::HashSet<(String, String)> = Default::default();
    loop {
        ensure!(
            !interrupted.load(Ordering::Relaxed),
            "interrupted: namespace and interfaces removed"
        );
        let g = match opts.generations {
            0 => replays,
            n => replays % n,
        } as usize;
        if g == generations.len() {
            generations.push(prepare(opts, &out, g as u64)?);
            // Only the newest one is replayed again (generations cycle in order).
            if opts.generations == 0 {
                if let Some(old) = generations.get_mut(g - 1) {
                    let _ = std::fs::remove_file(&old.capture);
                    old.keys = HashMap::new();
                }
            }
        }
        let gen = &generations[g];
        if let Some(ended) = replayed_at.get(g).copied().flatten() {
            let pause = repeat_pause(gen.repeat_gap_ns, opts.multiplier, REPEAT_MARGIN);
            let wait = pause.saturating_sub(ended.elapsed());
            if !wait.is_zero() {
                eprintln!(
                    "  waiting {:.1} s before capture {g} again ({:.1} s of capture time from a PING to its repeat at x{}, timeout {LIVE_TIMEOUT:?})",
                    wait.as_secs_f64(),
                    gen.repeat_gap_ns as f64 / 1e9 / opts.multiplier,
                    opts.multiplier
                );
                std::thread::sleep(wait);
            }
        }
        for (k, n) in &gen.keys {
            *expected.entry(k.clone()).or_default() += n;
        }
        pairs.extend(gen.pairs.iter().cloned());
        let (capture, cache) = (&gen.capture, &gen.cache);
        let r0 = Instant::now();
        // select(2) timing: the default sleeps overshoot on a loaded machine and made a
        // x4 replay slower than real time; -K reads the capture first. At higher
        // priority too: its pace is the traffic's clock.
        let replay = Command::new("nice")
            .args(["-n", "-10", "ip", "netns", "exec", &veths.ns])
            .args(["tcpreplay", "-q", "-T", "select", "-K"])
            .args(["-i", &veths.peer[0], "-I", &veths.peer[1]])
            .arg(format!("--multiplier={}", opts.multiplier))
            .arg("--cachefile")
            .arg(cache)
            .arg(capture)
            .output()
            .context("tcpreplay")?;
        ensure!(
            replay.status.success(),
            "tcpreplay failed: {}",
            String::from_utf8_lossy(&replay.stderr)
        );
        replays += 1;
        if replayed_at.len() <= g {
            replayed_at.resize(g + 1, None);
        }
        replayed_at[g] = Some(Instant::now());
        let took = r0.elapsed();
        if replays == cycle {
            cycle_end = started.elapsed().as_secs_f64();
        }
        eprintln!(
            "  replay {replays} (capture {g}) in {:.1} s at {:.0} s, {} distinct pairs so far, RSS {} MiB",
            took.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            pairs.len(),
            proc_field(pid, "VmRSS:").unwrap_or(0) / 1024
        );
        // Replays start until the duration is over (the last one may end after it).
        if started.elapsed() >= duration {
            break;
        }
    }
    // The last PINGs time out, the reorder window and the ordered release pass.
    std::thread::sleep(Duration::from_millis(timeout_ms) + Duration::from_secs(5));
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let peak_kb = proc_field(pid, "VmHWM:").unwrap_or(0);
    let cpu = cpu_seconds(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let mut stdout = String::new();
    if let Some(mut so) = live.0.stdout.take() {
        so.read_to_string(&mut stdout)?;
    }
    let status = live.0.wait()?;
    let log = std::fs::read_to_string(out.join("live.log")).unwrap_or_default();
    ensure!(status.success(), "observer live failed ({status}): {log}");
    std::fs::write(out.join("live.json"), &stdout)?;
    // A wrapper may print its own lines around the summary (heaptrack does).
    let json = match stdout.find("\n{") {
        Some(i) if !opts.wrap.is_empty() => &stdout[i + 1..],
        _ => &stdout[..],
    };
    let json = json.rfind("\n}").map_or(json, |i| &json[..i + 2]);
    let summary: serde_json::Value =
        serde_json::from_str(json).context("observer live's JSON summary")?;
    drop(veths);

    // None lost, none extra.
    let mut balance = expected;
    let found = count_csv(&live_csv, &mut balance, -1)?;
    let expected: i64 = balance.values().sum::<i64>() + found as i64;
    let mut missing: Vec<(&Key, i64)> = balance
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k, *n))
        .collect();
    let mut extra: Vec<(&Key, i64)> = balance
        .iter()
        .filter(|(_, n)| **n < 0)
        .map(|(k, n)| (k, -*n))
        .collect();
    missing.sort();
    extra.sort();
    let (n_missing, n_extra): (i64, i64) = (
        missing.iter().map(|m| m.1).sum(),
        extra.iter().map(|m| m.1).sum(),
    );
    println!(
        "transactions: {expected} expected ({replays} replays, {} distinct pairs), {found} in the CSV: {n_missing} missing, {n_extra} extra",
        pairs.len()
    );
    for (what, list) in [("missing", &missing), ("extra", &extra)] {
        for (k, n) in list.iter().take(5) {
            println!(
                "  {what} x{n}: {} -> {} correlator {} {}",
                k.0, k.1, k.2, k.3
            );
        }
    }
    println!(
        "observer CPU: {:.1} s user, {:.1} s system over {:.0} s",
        cpu.0,
        cpu.1,
        started.elapsed().as_secs_f64()
    );
    println!(
        "source: {} events, drops {} kernel, {} user-space; summary {} transactions ({} ok, {} timeout, {} open)",
        summary["source"]["events"],
        summary["source"]["kernel_drops"],
        summary["source"]["userspace_drops"],
        summary["transactions"]["total"],
        summary["transactions"]["ok"],
        summary["transactions"]["timeout"],
        summary["transactions"]["open"]
    );
    println!(
        "pairs expired (--pair-horizon {}): {} from the metrics, {} from the summary; {} pairs in the summary at the end",
        opts.pair_horizon
            .map_or("default".to_string(), |h| format!("{h:?}")),
        summary["pairs_expired"]["series"],
        summary["pairs_expired"]["summary"],
        summary["pairs"].as_array().map_or(0, Vec::len)
    );

    // RSS: the curve, then the growth after the warm-up.
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let bucket = if duration <= Duration::from_secs(180) {
        10.0
    } else {
        60.0
    };
    let mut curve: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for &(t, kb) in &samples {
        let e = curve.entry((t / bucket) as u64).or_insert((u64::MAX, 0, 0));
        e.0 = e.0.min(kb);
        e.1 = e.1.max(kb);
        e.2 = kb;
    }
    let mib = |kb: u64| kb as f64 / 1024.0;
    println!("observer RSS (MiB) per {bucket:.0} s: from  min  max  last");
    for (b, (lo, hi, last)) in &curve {
        println!(
            "  {:>6.0} s  {:>7.1} {:>7.1} {:>7.1}",
            *b as f64 * bucket,
            mib(*lo),
            mib(*hi),
            mib(*last)
        );
    }
    let warmup = opts.warmup.as_secs_f64().max(cycle_end);
    let after: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup)
        .collect();
    ensure!(
        after.len() >= 4,
        "too few RSS samples after the {warmup:.0} s warm-up: run longer"
    );
    // The peaks of the first and the last stretch after the warm-up (a minute, or half
    // of what follows the warm-up when shorter): traffic in flight comes and goes
    // between replays, what stays is what grows.
    let span = (after.len() / 2).min(60);
    let first = after[..span].iter().map(|s| s.1).max().unwrap_or(0);
    let last = after[after.len() - span..]
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    let growth = mib(last) - mib(first);
    println!(
        "RSS growth from {warmup:.0} s (warm-up) to the end: {:+.1} MiB ({:.1} -> {:.1}, peak of the first and last {span} s); peak RSS {:.1} MiB; bound {:.1} MiB",
        growth,
        mib(first),
        mib(last),
        mib(peak_kb),
        opts.max_growth_mib
    );

    let mut failures = Vec::new();
    if n_missing > 0 || n_extra > 0 {
        failures.push(format!(
            "{n_missing} transactions missing and {n_extra} extra in {}",
            live_csv.display()
        ));
    }
    if growth > opts.max_growth_mib {
        failures.push(format!(
            "RSS grew {growth:.1} MiB after the warm-up (bound {:.1})",
            opts.max_growth_mib
        ));
    }
    if !failures.is_empty() {
        bail!("soak failed: {}", failures.join("; "));
    }
    println!("soak passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replayed back to back at x2, the soak capture brings a PING's correlator back
    /// within the timeout (the collision `--generations 1` ran into): the pause makes up
    /// the difference, and a capture whose own gap is long enough gets none.
    #[test]
    fn the_same_capture_again_waits_for_its_pings_to_be_over() {
        let rendered = observer::synth::soak(11, 0).render();
        let gap = repeat_gap_ns(&rendered);
        let at_x2 = Duration::from_secs_f64(gap as f64 / 1e9 / 2.0);
        assert!(at_x2 < LIVE_TIMEOUT, "{at_x2:?}");
        let pause = repeat_pause(gap, 2.0, REPEAT_MARGIN);
        assert_eq!(pause + at_x2, LIVE_TIMEOUT + REPEAT_MARGIN);
        let long = (LIVE_TIMEOUT + REPEAT_MARGIN).as_nanos() as u64 * 2;
        assert_eq!(repeat_pause(long, 2.0, REPEAT_MARGIN), Duration::ZERO);
    }

    /// The soak capture at x2, then itself again after `gap` (both in capture time),
    /// analysed offline: (transactions, duplicate PING correlators, truth of one copy).
    fn twice(gap: Duration) -> (usize, u64, usize) {
        let multiplier = 2;
        let mut joined = observer::synth::soak(11, 0).render();
        let again = observer::synth::soak(11, 0).render();
        let first = joined.wire.packets.iter().map(|p| p.ts).min().unwrap_or(0);
        let scale = |ts: u64| first + (ts - first) / multiplier;
        for p in &mut joined.wire.packets {
            p.ts = scale(p.ts);
        }
        let end = joined.wire.packets.iter().map(|p| p.ts).max().unwrap_or(0);
        let shift = end - first + gap.as_nanos() as u64;
        joined
            .wire
            .packets
            .extend(again.wire.packets.into_iter().map(|mut p| {
                p.ts = scale(p.ts) + shift;
                p
            }));
        let bytes = joined
            .capture_bytes(
                LinkVariant::Ethernet,
                WriteFormat::Pcap {
                    nanos: true,
                    big_endian: false,
                },
            )
            .expect("render the joined capture");
        let path = std::env::temp_dir().join(format!(
            "xtask-soak-twice-{}-{}.pcap",
            std::process::id(),
            gap.as_millis()
        ));
        std::fs::write(&path, bytes).expect("write the joined capture");
        let mut cfg = observer::runtime::PipelineConfig::default();
        cfg.matcher.timeout_ns = LIVE_TIMEOUT.as_nanos() as u64;
        let analysis = observer::runtime::analyze(std::slice::from_ref(&path), cfg, false);
        let _ = std::fs::remove_file(&path);
        let r = &analysis.result;
        (
            r.transactions.len(),
            r.matcher.anomalies().duplicate_ping_correlator,
            joined.truth.len(),
        )
    }

    /// In capture time, which is what the observer judges by: back to back (half a
    /// second between the copies, as tcpreplay restarting takes) the repeats are
    /// duplicates and transactions go missing; with the soak's pause none do.
    #[test]
    fn the_pause_keeps_the_truth_of_a_capture_replayed_twice() {
        let (found, duplicates, truth) = twice(Duration::from_millis(500));
        assert!(
            duplicates > 0 && found < 2 * truth,
            "{found} {duplicates} {truth}"
        );
        let gap = repeat_gap_ns(&observer::synth::soak(11, 0).render());
        let (found, duplicates, truth) = twice(repeat_pause(gap, 2.0, REPEAT_MARGIN));
        assert_eq!((found, duplicates), (2 * truth, 0));
    }

    /// A quoted field with a comma is one field: the key is the same as unquoted.
    #[test]
    fn quoted_fields_count_as_one() {
        let path = std::env::temp_dir().join(format!("xtask-soak-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "poller_name,poller_peer_id,receiver_peer_id,correlator,transaction_status\n\
             \"a,b\",P,R,1,ok\n\
             plain,P,R,1,ok\n\
             plain,P,R,2,timeout\n",
        )
        .expect("write a temporary CSV");
        let mut counts = HashMap::new();
        let n = count_csv(&path, &mut counts, 1);
        let _ = std::fs::remove_file(&path);
        assert_eq!(n.ok(), Some(3));
        let key = |c: &str, s: &str| ("P".into(), "R".into(), c.into(), s.into());
        assert_eq!(counts.get(&key("1", "ok")), Some(&2));
        assert_eq!(counts.get(&key("2", "timeout")), Some(&1));
        assert_eq!(counts.len(), 2);
    }
}
