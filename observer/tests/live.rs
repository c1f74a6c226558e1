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
use observer::transaction::TxStatus;

const MULTIPLIER: u64 = 10;

/// Frames wait this long for earlier-stamped ones before the pipeline sees them, so
/// records and metrics come that much after the traffic.
const WINDOW: Duration = Duration::from_nanos(observer::capture::DEFAULT_REORDER_WINDOW_NS);

use common::{http_get, wait_exit, Killer, Veth};

/// The live tests replay captures with tcpreplay, whose pacing suffers when several
/// replays and observers share the two cores: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn usable() -> bool {
    common::root_with(&["tcpreplay"])
}

fn open_up(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
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

#[cfg(feature = "pcap")]
#[test]
fn live_pcap_source_on_a_veth() {
    live_on_a_veth("pcap", "127.0.0.1:19898");
}

#[test]
fn live_ebpf_source_on_a_veth() {
    live_on_a_veth("ebpf", "127.0.0.1:19899");
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

fn live_on_a_veth(source: &str, metrics: &str) {
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
    // Wait for the metrics endpoint: the capture is open by then.
    let t0 = Instant::now();
    while !get(metrics, "/metrics").contains("observer_active_flows") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "observer live did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    std::thread::sleep(Duration::from_millis(1500) + WINDOW);
    let scraped = get(metrics, "/metrics");

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

    let truth = read_transactions_csv(
        std::fs::File::open(common::capture("two-peers.truth.csv")).expect("truth"),
    )
    .expect("truth csv");
    let live = read_transactions_csv(std::fs::File::open(&csv).expect("live csv"))
        .expect("parse live csv");
    assert_eq!(live.len(), truth.len(), "every transaction found live");
    let key = |t: &observer::transaction::Transaction| t.correlator.clone();
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
        // tcpreplay compresses time by the multiplier, but its pacing slips when the
        // machine is busy (seen: +26 % with two fuzzers running). This only catches a
        // grossly wrong RTT (wrong pairing, wrong end); the exact check of live timing
        // is the `-w` re-analysis below, against what was really on the wire.
        let expected = t.rtt_ns().expect("ok") as f64 / MULTIPLIER as f64;
        let got = l.rtt_ns().expect("ok") as f64;
        assert!(
            (got - expected).abs() < 5e6 + 0.5 * expected,
            "rtt {got} vs {expected}"
        );
    }
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
fn ebpf_interface_vanishes() {
    interface_vanishes("ebpf");
}

#[cfg(feature = "pcap")]
#[test]
fn pcap_interface_vanishes() {
    interface_vanishes("pcap");
}

/// The capture interface is deleted under a running observer: it stops with an error
/// naming the interface, the records found so far are in the CSV, no filter is left.
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
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", &veth.host, "--source", source, "--csv"])
        .arg(&csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    std::thread::sleep(Duration::from_millis(1500));
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
    std::thread::sleep(Duration::from_millis(1200));
    assert!(Command::new("ip")
        .args(["link", "del", &veth.host])
        .status()
        .expect("ip")
        .success());
    let status = wait_exit(&mut child.0, Duration::from_secs(10))
        .expect("observer stops when its interface is gone");
    assert!(!status.success());
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(
        err.contains(&veth.host),
        "the error names the interface: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let rows = read_transactions_csv(std::fs::File::open(&csv).expect("csv")).expect("csv");
    assert!(
        rows.len() >= 15,
        "records found before the interface vanished were flushed ({})",
        rows.len()
    );
}

/// SIGKILL: no cleanup is possible, but at most the records of the last reorder window
/// and second are lost (the CSV is flushed every second) and the next start removes the
/// stale filters.
#[test]
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
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", &veth.host, "--source", "ebpf", "--csv"])
        .arg(&csv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start observer live");
    let mut child = Killer(child);
    std::thread::sleep(Duration::from_millis(1500));
    veth.replay("two-peers.pcap", MULTIPLIER);
    // More than the reorder window and the one-second flush period after the last
    // transaction finished.
    std::thread::sleep(Duration::from_millis(1500) + WINDOW);
    let _ = child.0.kill(); // SIGKILL
    let _ = child.0.wait();
    let rows = read_transactions_csv(std::fs::File::open(&csv).expect("csv")).expect("csv");
    assert_eq!(
        rows.len(),
        20,
        "every transaction finished over a second before the kill is on disk"
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
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        uid_of(child.0.id()),
        Some(65534),
        "running as nobody after set-up"
    );
    // jxse27: alice connects to bob's port 9711, not one of the tap's default ports.
    veth.replay("jxse27.pcap", MULTIPLIER);
    std::thread::sleep(Duration::from_millis(1500));
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
    let truth = read_transactions_csv(
        std::fs::File::open(common::capture("jxse27.truth.csv")).expect("truth"),
    )
    .expect("truth");
    let live = read_transactions_csv(std::fs::File::open(&csv).expect("csv")).expect("csv");
    let ok = |v: &[observer::transaction::Transaction]| {
        v.iter().filter(|t| t.status == TxStatus::Ok).count()
    };
    assert_eq!(
        ok(&live),
        ok(&truth),
        "every answered PING of the flow on port 9711"
    );
}

/// Started as root with outputs in a root-owned 0755 directory: after the switch to
/// `nobody` neither `--report` nor CSV rotation could write there. The run refuses
/// before capturing anything, naming the path and the options that fix it; with
/// `--keep-root` the same run writes its report and prints its summary.
#[test]
fn outputs_the_dropped_user_cannot_write_are_refused_before_the_capture() {
    use std::os::unix::fs::PermissionsExt;
    let _one_at_a_time = serial();
    if !common::root_with(&[]) {
        return;
    }
    let Some(veth) = Veth::new("p") else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = |extra: &[&str]| {
        let child = Command::new(env!("CARGO_BIN_EXE_observer"))
            .args([
                "live",
                "-i",
                &veth.host,
                "--source",
                "ebpf",
                "--duration",
                "2s",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start observer live");
        let mut child = Killer(child);
        let started = Instant::now();
        let status = wait_exit(&mut child.0, Duration::from_secs(20)).expect("exits");
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
        let (status, took, out, err) = run(&extra);
        assert_eq!(status.code(), Some(1), "{extra:?}: {out}{err}");
        assert!(
            took < Duration::from_secs(2),
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
    let (status, _, out, err) = run(&["--report", report_arg, "--keep-root"]);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("PING/PONG transactions"),
        "summary printed: {out}"
    );
    assert!(report.join("index.html").exists());
}
