//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod clickhouse;

use std::path::PathBuf;
use std::process::Command;

/// Tests of one binary that must not overlap run one at a time: those attaching taps to
/// a shared interface (lo) and checking what filters are left, those replaying with
/// tcpreplay (its pacing suffers when replays share the two cores), those comparing RTTs
/// that the peers time themselves. A test that panicked does not poison the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Path of a committed capture in `captures/`.
pub fn capture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../captures")
        .join(name)
}

/// Set to `1` by `scripts/test` once it has installed the tools: from then on a missing
/// tool, privilege or feature fails the test that needs it instead of skipping it, so a
/// cross-check cannot silently stop running.
pub const REQUIRE_TOOLS: &str = "OBSERVER_REQUIRE_TOOLS";

/// What a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    Root,
    /// A program on `PATH` that answers `--version`.
    Tool(&'a str),
}

fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS).is_ok_and(|v| v == "1")
}

fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether every need is met; the one place that decides between skipping and failing.
/// Missing needs panic, named, when [`REQUIRE_TOOLS`] is `1`; otherwise the test prints
/// why it skips and the caller returns.
pub fn have(needs: &[Need<'_>]) -> bool {
    let missing: Vec<String> = needs
        .iter()
        .filter_map(|n| match n {
            // SAFETY: no preconditions.
            Need::Root if unsafe { libc::geteuid() } != 0 => Some("root".to_string()),
            Need::Tool(t) if !tool_runs(t) => Some((*t).to_string()),
            _ => None,
        })
        .collect();
    missing.is_empty() || missing_requirement(&missing.join(", "))
}

/// A requirement the caller found missing by other means (a build that fails, a cargo
/// feature compiled out, a tool that cannot capture): panics when tools are required,
/// else prints and returns `false`.
pub fn missing_requirement(what: &str) -> bool {
    // libtest names the thread after the test (except with --test-threads=1).
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    assert!(
        !tools_required(),
        "{test}: {what} missing but {REQUIRE_TOOLS}=1 (scripts/test installs it)"
    );
    eprintln!("SKIPPED {test}: needs {what}");
    false
}

/// Whether tshark can be run (see [`have`]).
pub fn tshark_available() -> bool {
    have(&[Need::Tool("tshark")])
}

/// Runs tshark with `-T fields` and returns the rows split on `|`.
pub fn tshark_fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(file)
        .arg("-Y")
        .arg(filter)
        .arg("-T")
        .arg("fields");
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    cmd.arg("-E")
        .arg("separator=|")
        .arg("-E")
        .arg("occurrence=a")
        .arg("-E")
        .arg("aggregator=,");
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// `1795528304.809461000` → nanoseconds since the epoch, exactly (no float rounding).
pub fn epoch_ns(text: &str) -> u64 {
    let (s, frac) = text.split_once('.').unwrap_or((text, "0"));
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    s.parse::<u64>().expect("seconds") * 1_000_000_000 + frac.parse::<u64>().expect("fraction")
}

/// A veth pair for live tests ([`testbed::Veth`]): `host` in the root namespace,
/// `peer` in a namespace made for the test; both removed on drop, also when the test
/// panics.
pub struct Veth(testbed::Veth);

impl std::ops::Deref for Veth {
    type Target = testbed::Veth;
    fn deref(&self) -> &testbed::Veth {
        &self.0
    }
}

impl Veth {
    /// `tag` keeps the names of concurrent tests apart (at most 7 bytes); `None`, said
    /// why, when the pair cannot be made (the caller checked root already).
    pub fn new(tag: &str) -> Option<Veth> {
        match testbed::Veth::new(tag) {
            Ok(v) => Some(Veth(v)),
            Err(e) => {
                eprintln!("no veth pair: {e}");
                None
            }
        }
    }

    /// Replays a committed capture into the pair with tcpreplay at `multiplier` speed.
    pub fn replay(&self, capture_name: &str, multiplier: u64) {
        self.replay_file(&capture(capture_name), multiplier);
    }

    /// Replays the capture at `path` into the pair at `multiplier` speed.
    pub fn replay_file(&self, path: &std::path::Path, multiplier: u64) {
        if let Err(e) = self.0.replay(path, testbed::Replay::Multiplier(multiplier)) {
            panic!("{e}");
        }
    }
}

/// Root and the named tools (see [`have`]).
pub fn root_with(tools: &[&str]) -> bool {
    let mut needs = vec![Need::Root];
    needs.extend(tools.iter().map(|t| Need::Tool(t)));
    have(&needs)
}

#[allow(unused_imports)] // not every test binary uses it
pub use testbed::Killer;

/// Waits for a child to exit, at most `limit`.
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// The body of an HTTP GET on a local address (`None` when nothing answers).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// A loopback port nothing listens on now, for a server the test starts: fixed ports
/// collide between concurrent runs.
pub fn free_port() -> u16 {
    testbed::free_port().expect("bind an ephemeral port")
}

/// `127.0.0.1:PORT` with a [`free_port`].
pub fn free_local_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Polls `cond` until it holds; panics naming `what` after `limit`. The limit only
/// bounds a failure: a passing run waits exactly as long as the condition takes.
pub fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// tcpdump writing `iface`'s packets matching `filter` to `file` with nanosecond
/// timestamps, returned once it is listening; `None` (after [`missing_requirement`])
/// when it cannot run here.
pub fn tcpdump(iface: &str, file: &std::path::Path, filter: &str) -> Option<std::process::Child> {
    use std::io::{BufRead, Read};
    if !have(&[Need::Root, Need::Tool("tcpdump")]) {
        return None;
    }
    let mut child = Command::new("tcpdump")
        .args(["-i", iface, "-U", "-n", "--time-stamp-precision=nano", "-w"])
        .arg(file)
        .arg(filter)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let stderr = child.stderr.take().expect("tcpdump stderr");
    let mut rd = std::io::BufReader::new(stderr);
    let mut line = String::new();
    // "tcpdump: listening on IFACE, …" once the capture runs; EOF when it cannot.
    while rd.read_line(&mut line).unwrap_or(0) > 0 {
        if line.contains("listening on") {
            std::thread::spawn(move || {
                let mut sink = String::new();
                let _ = rd.read_to_string(&mut sink);
            });
            return Some(child);
        }
        line.clear();
    }
    let _ = child.wait();
    missing_requirement(&format!(
        "tcpdump able to capture on {iface} ({})",
        line.trim()
    ));
    None
}

/// Stops tcpdump as a user would (SIGINT: it writes out what it holds).
pub fn stop_tcpdump(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    wait_exit(child, std::time::Duration::from_secs(10)).expect("tcpdump exits on SIGINT");
}

/// The Grafana dashboard's (deploy/grafana/observer.json) PromQL, with where it is: each panel target of a Prometheus panel, and each
/// `label_values(METRIC, LABEL)` variable as `count by (LABEL) (METRIC)`.
pub fn dashboard_promql() -> Vec<(String, String)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/observer.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/observer.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    let mut panels: Vec<&serde_json::Value> =
        dash["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(nested) = p["panels"].as_array() {
            panels.extend(nested);
        }
        if p["datasource"]["type"] != "prometheus" {
            continue;
        }
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("a Prometheus target has expr");
            out.push((p["title"].to_string(), expr.to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" && v["datasource"]["type"] == "prometheus" {
            let def = v["definition"].as_str().expect("definition");
            let args = def
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
                .expect("label_values(METRIC, LABEL)");
            let (metric, label) = args.split_once(',').expect("two arguments");
            out.push((
                format!("variable {}", v["name"]),
                format!("count by ({}) ({})", label.trim(), metric.trim()),
            ));
        }
    }
    out
}

/// Asserts that `promtool check metrics` (parser and lint) accepts an exposition in the
/// classic text format; nothing is checked when promtool is missing (see [`have`]).
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write as _;
    if !have(&[Need::Tool("promtool")]) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
