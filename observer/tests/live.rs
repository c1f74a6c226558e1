//! `observer live` end to end, with each source: a sample capture is replayed with
//! tcpreplay into a veth pair (one end in a network namespace made for the test), the
//! observer captures on the other end; its CSV must hold the capture's transactions, its
//! `-w` file must re-analyse to the same CSV, its metrics endpoint must count them, and
//! SIGTERM must end it cleanly with everything flushed and no filter left behind.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use observer::report::read_transactions_csv;
use observer::runtime::{self, PipelineConfig};
use observer::transaction::{Transaction, TxStatus};

const MULTIPLIER: u64 = 10;
/// Live start/stop against tcpdump's capture of the same interface.
const WIRE_TOLERANCE_NS: u64 = 1_000_000;

use common::{http_get, serial, wait_exit, Killer, Veth};

fn usable() -> bool {
    common::root_with(&["tcpreplay"])
}

fn open_up(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    // Sticky, like /tmp: a directory others can write without the sticky bit is
    // refused for the outputs root opens (docs/security.md).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
}

/// The user a process runs as, from /proc.
fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn get(addr: &str, path: &str) -> String {
    http_get(addr, path).unwrap_or_default()
}

#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn live_pcap_source_on_a_veth() {
    if pcap_compiled_in() {
        live_on_a_veth("pcap");
    }
}

/// The libpcap tests exist in every build so that leaving out the `pcap` feature (no
/// libpcap headers) shows as a skip, or a failure when tools are required.
fn pcap_compiled_in() -> bool {
    cfg!(feature = "pcap")
        || common::missing_requirement("the `pcap` cargo feature (libpcap-dev, --all-features)")
}

#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn live_ebpf_source_on_a_veth() {
    live_on_a_veth("ebpf");
}

fn tc_filters(dev: &str) -> String {
    let mut all = String::new();
    for dir in ["ingress", "egress"] {
        let out = Command::new("tc")
            .args(["filter", "show", "dev", dev, dir])
            .output()
            .expect("tc");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// Waits until `observer live` serves its metrics: its capture is open by then.
fn wait_capturing(metrics: &str) {
    common::wait_until("observer live to come up", Duration::from_secs(20), || {
        get(metrics, "/metrics").contains("observer_active_flows")
    });
}

/// The rows of a CSV the observer is still writing (none while it does not exist yet).
fn rows(csv: &std::path::Path) -> Vec<Transaction> {
    std::fs::File::open(csv)
        .ok()
        .and_then(|f| read_transactions_csv(f).ok())
        .unwrap_or_default()
}

fn answered(v: &[Transaction]) -> usize {
    v.iter().filter(|t| t.status == TxStatus::Ok).count()
}

fn truth(name: &str) -> Vec<Transaction> {
    let f = std::fs::File::open(common::capture(name)).expect("truth");
    read_transactions_csv(f).expect("truth csv")
}

/// The `observer_transactions_total` samples with status ok, summed.
fn ok_total(scraped: &str) -> u64 {
    scraped
        .lines()
        .filter(|l| l.starts_with("observer_transactions_total") && l.contains("status=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn live_on_a_veth(source: &str) {
    let _one_at_a_time = serial();
    if !usable() {
        return;
    }
    let Some(veth) = Veth::new(&source[..1]) else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The observer runs as `nobody` once set up; it writes the report at the end.
    open_up(dir.path());
    let csv = dir.path().join("live.csv");
    let saved = dir.path().join("live.pcapng");
    let metrics = common::free_local_addr();
    let metrics = metrics.as_str();
    // An independent witness of the wire: tcpdump on the same interface, at the same
    // time, with its own kernel timestamps (the `-w` file carries the observer's).
    let witness = dir.path().join("tcpdump.pcap");
    let Some(tcpdump) = common::tcpdump(&veth.host, &witness, "tcp") else {
        return;
    };
    let mut tcpdump = Killer(tcpdump);
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args([
            "live",
            "-i",
            &veth.host,
            "--source",
            source,
            "--metrics",
            metrics,
        ])
        .arg("--csv")
        .arg(&csv)
        .arg("-w")
        .arg(&saved)
        .arg("--report")
        .arg(dir.path().join("report"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    wait_capturing(metrics);
    let replay = Command::new("ip")
        .args([
            "netns",
            "exec",
            &veth.ns,
            "tcpreplay",
            "-q",
            "-i",
            &veth.peer,
        ])
        .arg(format!("--multiplier={MULTIPLIER}"))
        .arg(common::capture("two-peers.pcap"))
        .output()
        .expect("tcpreplay");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let truth = truth("two-peers.truth.csv");
    let mut scraped = String::new();
    common::wait_until(
        "every transaction counted live",
        Duration::from_secs(20),
        || {
            scraped = get(metrics, "/metrics");
            ok_total(&scraped) >= answered(&truth) as u64
        },
    );
    common::wait_until(
        "tcpdump to write every transaction",
        Duration::from_secs(20),
        || {
            let a = runtime::analyze(
                std::slice::from_ref(&witness),
                PipelineConfig::default(),
                false,
            );
            answered(&a.result.transactions) >= answered(&truth)
        },
    );
    common::stop_tcpdump(&mut tcpdump.0);

    // SIGTERM: a clean stop, CSV flushed, summary printed.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status =
        wait_exit(&mut child.0, Duration::from_secs(10)).expect("observer exits after SIGTERM");
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(status.success(), "{status:?}: {err}");
    assert!(
        !tc_filters(&veth.host).contains("observer_tap"),
        "no filter of ours after SIGTERM"
    );
    let mut stdout = String::new();
    child
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    assert!(
        stdout.contains("alice") && stdout.contains("bob"),
        "{stdout}"
    );

    let live = read_transactions_csv(std::fs::File::open(&csv).expect("live csv"))
        .expect("parse live csv");
    assert_eq!(live.len(), truth.len(), "every transaction found live");
    let wire = runtime::analyze(
        std::slice::from_ref(&witness),
        PipelineConfig::default(),
        false,
    );
    assert!(!wire.damaged(), "{:?}", wire.inputs);
    let wire = wire.result.transactions;
    assert_eq!(
        wire.len(),
        truth.len(),
        "every transaction in tcpdump's file"
    );
    let key = |t: &Transaction| t.correlator.clone();
    let mut worst = 0u64;
    for t in &truth {
        let l = live
            .iter()
            .find(|l| key(l) == key(t))
            .expect("same correlator live");
        assert_eq!(l.status, TxStatus::Ok);
        assert_eq!(
            (&l.poller_name, &l.receiver_name),
            (&t.poller_name, &t.receiver_name)
        );
        // tcpreplay's pacing slips under load, so the truth's times are not the wire's;
        // tcpdump's are. Live start and stop must be the wire's to within 1 ms: a wrong
        // timestamp conversion (kernel clock, units, which end) cannot hide here.
        let w = wire
            .iter()
            .find(|w| key(w) == key(t))
            .expect("same correlator in tcpdump's file");
        assert_eq!(w.status, TxStatus::Ok);
        let stop = |x: &Transaction| x.stop.expect("answered");
        for (what, a, b) in [("start", l.start, w.start), ("stop", stop(l), stop(w))] {
            let d = a.abs_diff(b);
            worst = worst.max(d);
            assert!(
                d <= WIRE_TOLERANCE_NS,
                "{source}: {what} of {:?} live {a} vs tcpdump {b} ({d} ns apart)",
                key(t)
            );
        }
    }
    eprintln!("{source}: live vs tcpdump, largest start/stop difference {worst} ns");
    let ok_metric = |pair: &str| {
        scraped
            .lines()
            .find(|l| {
                l.starts_with("observer_transactions_total")
                    && l.contains(pair)
                    && l.contains("status=\"ok\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(
        ok_metric("poller=\"alice\",receiver=\"bob\""),
        Some(10),
        "{scraped}"
    );
    assert_eq!(ok_metric("poller=\"bob\",receiver=\"alice\""), Some(10));
    // The rolling windows count what the totals count (the run is shorter than an
    // hour), and state the error of their percentiles.
    let window_ok = scraped
        .lines()
        .find(|l| l.starts_with("observer_window_transactions{window=\"1h\",status=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(window_ok, Some(ok_total(&scraped)), "{scraped}");
    assert!(scraped.contains("observer_window_rtt_seconds{window=\"1h\",q=\"0.99\"}"));
    assert!(scraped.contains("observer_window_rtt_relative_error 0.01"));
    assert!(stdout.contains("within ±1% of the exact value"), "{stdout}");

    // The figures of the run, on request: one legend entry per pair with its ok count.
    let series =
        std::fs::read_to_string(dir.path().join("report/timeseries.svg")).expect("timeseries.svg");
    assert!(
        series.contains("alice → bob (10)") && series.contains("bob → alice (10)"),
        "legend of the live report"
    );
    assert!(dir.path().join("report/index.html").exists());

    // The saved capture re-analyses to the same records.
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("analyze")
        .arg(&saved)
        .args(["--csv", "-"])
        .output()
        .expect("analyze saved capture");
    assert!(out.status.success());
    let again = read_transactions_csv(&out.stdout[..]).expect("csv");
    let mut a: Vec<_> = again
        .iter()
        .map(|t| (t.correlator.clone(), t.start, t.stop))
        .collect();
    let mut b: Vec<_> = live
        .iter()
        .map(|t| (t.correlator.clone(), t.start, t.stop))
        .collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn ebpf_interface_vanishes() {
    interface_vanishes("ebpf");
}

#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn pcap_interface_vanishes() {
    if pcap_compiled_in() {
        interface_vanishes("pcap");
    }
}

/// The documented exit status of a live run that stopped early on an error (README
/// "Exit status"): its summary covers everything seen until then.
const EXIT_STOPPED_EARLY: i32 = 5;

/// The live JSON summary on stdout: `transactions.total`.
fn summary_total(stdout: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("a JSON summary on stdout ({e}): {stdout:?}"));
    v["transactions"]["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("transactions.total in {v}"))
}

/// Stdout and stderr of a child that has exited.
fn outputs(child: &mut std::process::Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).expect("stderr");
    }
    (out, err)
}

/// The capture interface is deleted under a running observer: it stops with an error
/// naming the interface and the documented status, still prints the summary of
/// everything it saw, the records found so far are in the CSV, no filter is left.
fn interface_vanishes(source: &str) {
    let _one_at_a_time = serial();
    if !usable() {
        return;
    }
    let tag = format!("v{}", &source[..1]);
    let Some(veth) = Veth::new(&tag) else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("live.csv");
    let metrics = common::free_local_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", &veth.host, "--source", source])
        .args(["--metrics", &metrics, "--json", "--csv"])
        .arg(&csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    wait_capturing(&metrics);
    let replay = Command::new("ip")
        .args([
            "netns",
            "exec",
            &veth.ns,
            "tcpreplay",
            "-q",
            "-i",
            &veth.peer,
        ])
        .arg(format!("--multiplier={MULTIPLIER}"))
        .arg(common::capture("two-peers.pcap"))
        .output()
        .expect("tcpreplay");
    assert!(replay.status.success());
    let truth = truth("two-peers.truth.csv");
    common::wait_until(
        "the CSV to hold every transaction",
        Duration::from_secs(20),
        || rows(&csv).len() >= truth.len(),
    );
    assert!(Command::new("ip")
        .args(["link", "del", &veth.host])
        .status()
        .expect("ip")
        .success());
    let status = wait_exit(&mut child.0, Duration::from_secs(10))
        .expect("observer stops when its interface is gone");
    let (out, err) = outputs(&mut child.0);
    assert_eq!(status.code(), Some(EXIT_STOPPED_EARLY), "{out}{err}");
    assert!(
        err.contains(&veth.host),
        "the error names the interface: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        rows(&csv).len(),
        truth.len(),
        "the records found before the interface vanished are still there"
    );
    assert_eq!(
        summary_total(&out),
        truth.len() as u64,
        "the summary covers every transaction seen before the interface vanished"
    );
    // The lower stages' counters, as `analyze --json` has them.
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let count = |path: &[&str]| {
        path.iter()
            .fold(&v, |v, k| &v[*k])
            .as_u64()
            .unwrap_or_else(|| panic!("{} in the live summary", path.join(".")))
    };
    assert!(count(&["capture", "packets", "frames"]) > 0);
    assert!(count(&["capture", "flows", "flows"]) > 0);
    assert!(count(&["capture", "packets", "reorder", "max_held"]) > 0);
    assert!(count(&["jim", "pings"]) >= truth.len() as u64);
}

/// The CSV's file system fills up mid-run (a tmpfs of a few pages): the run stops with
/// an error naming the file and the documented status, and still prints the summary of
/// every transaction it saw, those it could not write included; what reached the file
/// is whole records of the capture.
#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn csv_disk_full_mid_run_keeps_the_summary() {
    let _one_at_a_time = serial();
    if !usable() {
        return;
    }
    let Some(veth) = Veth::new("f") else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    // 16 KiB: about 60 of four-peers' 132 records (263 B each).
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k,mode=1777", "tmpfs"])
        .arg(&small)
        .status()
        .expect("mount")
        .success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let csv = small.join("live.csv");
    let metrics = common::free_local_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", &veth.host, "--source", "ebpf", "--json"])
        .args(["--metrics", &metrics, "--csv"])
        .arg(&csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    wait_capturing(&metrics);
    veth.replay("four-peers.pcap", MULTIPLIER);
    let status = wait_exit(&mut child.0, Duration::from_secs(20))
        .expect("observer stops when its CSV cannot be written");
    let (out, err) = outputs(&mut child.0);
    assert_eq!(status.code(), Some(EXIT_STOPPED_EARLY), "{out}{err}");
    assert!(
        err.contains(csv.to_str().expect("utf-8")) && err.contains("No space left"),
        "the error names the file and the cause: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The write that failed may have left part of a line: the whole lines before it.
    let text = std::fs::read_to_string(&csv).expect("the CSV so far");
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let written = read_transactions_csv(whole.as_bytes()).expect("whole records");
    let truth = truth("four-peers.truth.csv");
    let key = |t: &Transaction| {
        (
            t.poller_name.clone(),
            t.receiver_name.clone(),
            t.correlator.clone(),
        )
    };
    for t in &written {
        assert!(
            truth.iter().any(|u| key(u) == key(t)),
            "a record of the capture: {t:?}"
        );
    }
    let seen = summary_total(&out);
    assert!(
        !written.is_empty(),
        "records were written before the disk filled"
    );
    assert!(
        seen > written.len() as u64,
        "the summary covers what could not be written too: {seen} seen, {} in the file",
        written.len()
    );
    assert!(seen <= truth.len() as u64, "{seen} of {}", truth.len());
}

/// SIGKILL: no cleanup is possible, but at most the records of the last reorder window
/// and second are lost (the CSV is flushed every second) and the next start removes the
/// stale filters.
#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn sigkill_then_restart_cleans_up() {
    let _one_at_a_time = serial();
    if !usable() {
        return;
    }
    let Some(veth) = Veth::new("k") else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("live.csv");
    let metrics = common::free_local_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", &veth.host, "--source", "ebpf"])
        .args(["--metrics", &metrics, "--csv"])
        .arg(&csv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    wait_capturing(&metrics);
    veth.replay("two-peers.pcap", MULTIPLIER);
    let truth = truth("two-peers.truth.csv");
    common::wait_until(
        "every transaction counted live",
        Duration::from_secs(20),
        || ok_total(&get(&metrics, "/metrics")) >= answered(&truth) as u64,
    );
    // The CSV is flushed every second while running, not only at exit: what was found
    // reaches the disk while the process still runs, so SIGKILL cannot lose it.
    common::wait_until("the periodic CSV flush", Duration::from_secs(20), || {
        rows(&csv).len() >= truth.len()
    });
    let _ = child.0.kill(); // SIGKILL
    let _ = child.0.wait();
    assert_eq!(
        rows(&csv).len(),
        truth.len(),
        "every transaction flushed before the kill is on disk, readable"
    );
    assert!(
        tc_filters(&veth.host).contains("observer_tap"),
        "SIGKILL leaves the filters behind"
    );

    let again = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args([
            "live",
            "-i",
            &veth.host,
            "--source",
            "ebpf",
            "--duration",
            "1s",
        ])
        .output()
        .expect("restart");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("stale"),
        "the restart says what it removed"
    );
    assert!(
        !tc_filters(&veth.host).contains("observer_tap"),
        "no filter left after the restart's clean exit"
    );
}

/// Started as root, the live observer runs as `nobody` once the tap is attached, and
/// still follows JXTA flows on ports it was not told about (a map update, CAP_BPF kept)
/// and removes its filters on SIGTERM (CAP_NET_ADMIN kept).
#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn ebpf_runs_as_nobody_and_still_follows_new_flows() {
    let _one_at_a_time = serial();
    if !usable() {
        return;
    }
    let Some(veth) = Veth::new("u") else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("live.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", &veth.host, "--source", "ebpf", "--csv"])
        .arg(&csv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    // It drops to nobody once the tap is attached: that is also the readiness signal.
    let pid = child.0.id();
    common::wait_until(
        "running as nobody after set-up",
        Duration::from_secs(20),
        || uid_of(pid) == Some(65534),
    );
    let truth = truth("jxse27.truth.csv");
    // jxse27: alice connects to bob's port 9711, not one of the tap's default ports.
    veth.replay("jxse27.pcap", MULTIPLIER);
    common::wait_until(
        "the answered PINGs in the CSV",
        Duration::from_secs(20),
        || answered(&rows(&csv)) >= answered(&truth),
    );
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = wait_exit(&mut child.0, Duration::from_secs(10)).expect("exits");
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(status.success(), "{err}");
    assert!(
        !tc_filters(&veth.host).contains("observer_tap"),
        "filters removed as nobody: {err}"
    );
    let qdisc = Command::new("tc")
        .args(["qdisc", "show", "dev", &veth.host])
        .output()
        .expect("tc");
    assert!(
        !String::from_utf8_lossy(&qdisc.stdout).contains("clsact"),
        "the qdisc it created is gone"
    );
    let live = read_transactions_csv(std::fs::File::open(&csv).expect("csv")).expect("csv");
    assert_eq!(
        answered(&live),
        answered(&truth),
        "every answered PING of the flow on port 9711"
    );
}

/// Started as root with outputs in a root-owned 0755 directory: after the switch to
/// `nobody` neither `--report` nor CSV rotation could write there. The run refuses
/// before capturing anything, naming the path and the options that fix it; with
/// `--keep-root` the same run writes its report and prints its summary.
#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn outputs_the_dropped_user_cannot_write_are_refused_before_the_capture() {
    use std::os::unix::fs::PermissionsExt;
    let _one_at_a_time = serial();
    if !common::have(&[common::Need::Root]) {
        return;
    }
    let Some(veth) = Veth::new("p") else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = |extra: &[&str], duration: &str| {
        let child = Command::new(env!("CARGO_BIN_EXE_observer"))
            .args([
                "live",
                "-i",
                &veth.host,
                "--source",
                "ebpf",
                "--duration",
                duration,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start observer live");
        let mut child = Killer(child);
        let started = Instant::now();
        let status = wait_exit(&mut child.0, Duration::from_secs(60)).expect("exits");
        let mut out = String::new();
        let mut err = String::new();
        let c = &mut child.0;
        c.stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("stdout");
        c.stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("stderr");
        (status, started.elapsed(), out, err)
    };
    let report = dir.path().join("report");
    let report_arg = report.to_str().expect("utf-8 path");
    let csv = dir.path().join("live.csv");
    let csv_arg = csv.to_str().expect("utf-8 path");
    for extra in [
        vec!["--report", report_arg],
        vec!["--csv", csv_arg, "--csv-rotate-time", "1s"],
    ] {
        // A run that captured would last its 45 s; a refusal comes at set-up.
        let (status, took, out, err) = run(&extra, "45s");
        assert_eq!(status.code(), Some(1), "{extra:?}: {out}{err}");
        assert!(
            took < Duration::from_secs(45),
            "refused before capturing: {took:?}"
        );
        assert!(
            err.contains("--keep-root") && err.contains("--user"),
            "{err}"
        );
        assert!(err.contains(dir.path().to_str().expect("utf-8")), "{err}");
        assert!(
            !tc_filters(&veth.host).contains("observer_tap"),
            "no filter left behind"
        );
    }
    let (status, _, out, err) = run(&["--report", report_arg, "--keep-root"], "2s");
    assert!(status.success(), "{err}");
    assert!(
        out.contains("PING/PONG transactions"),
        "summary printed: {out}"
    );
    assert!(report.join("index.html").exists());
}
