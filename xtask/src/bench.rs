//! `cargo xtask bench`: the side-by-side comparison of issue 6 in one go.
//!
//! For every capture in a directory (default `target/bench-data`, written by `cargo
//! xtask bench-data`), each tool is run several times, interleaved (run 1 of every
//! tool, then run 2, ...) so that the noise of a shared machine falls on all of them
//! alike: `observer analyze` on one thread and on N threads, `tshark -Y jxta` (slow:
//! small files only), `tcpdump -r F -w /dev/null` and `cat`. Wall time from spawn to
//! `wait4`, peak RSS from the child's rusage; medians, MB/s and the ratios the issue's
//! targets are stated in, then each target met or missed. The Markdown goes to stdout
//! and between the `bench` markers of docs/performance.md (unless `--no-write`);
//! progress goes to stderr.
//!
//! Over 600 lines: the runs of every tool, the ratio table and the docs writer share
//! one result type; splitting the docs writer out is the obvious next cut.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";
const HEADING: &str = "## `cargo xtask bench`";

/// Peak RSS allowed on every file (issue 6), in kB (64 MiB).
const RSS_LIMIT_KB: u64 = 64 * 1024;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory holding the captures: every `*.pcap` / `*.pcapng` in it, each with an
    /// optional sidecar `<name>.json` describing it.
    #[arg(long, default_value = "target/bench-data")]
    data: PathBuf,
    /// Only these files (names with or without extension), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Runs per file and tool; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Threads of the multi-threaded observer column (`analyze --threads N`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// tshark only runs on files up to this size (bytes; k/M/G = powers of 1000,
    /// KiB/MiB/GiB = powers of 1024).
    #[arg(long, default_value = "150MB", value_parser = parse_size)]
    tshark_max: u64,
    /// Runs of tshark per file (it is slow: ~11 MB/s).
    #[arg(long, default_value_t = 1)]
    tshark_runs: usize,
    /// Only print the report; leave docs/performance.md alone.
    #[arg(long)]
    no_write: bool,
    /// Use the existing release binary instead of building it first.
    #[arg(long)]
    no_build: bool,
    /// Run every measured command under `SCHED_FIFO` (needs root): on a machine other
    /// work shares, the kernel then gives each run the cores whenever it can run, for
    /// one thread and N alike (its real-time throttling still leaves 5 % of every CPU
    /// to others). Without it, two threads lose more to other sessions than one.
    #[arg(long)]
    fifo: bool,
}

/// `SCHED_FIFO` priority of `--fifo` runs: above every normal task, far below the
/// kernel's own real-time threads (migration, watchdogs at 99).
const FIFO_PRIORITY: libc::c_int = 10;

/// `150MB` and `0.1g` decimal, `1GiB` binary (the `parse-size` crate's default).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    ::parse_size::parse_size(s.trim()).map_err(|e| format!("not a size: {s:?} ({e})"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    Observer1,
    ObserverN,
    Tcpdump,
    Cat,
    Tshark,
}

/// A tool as it will be run: its label, its command line with `F` for the file, and
/// whether it can run at all here.
struct ToolSpec {
    tool: Tool,
    label: String,
    program: PathBuf,
    /// Arguments; `None` stands for the capture file.
    args: Vec<Option<String>>,
    /// Why it does not run on any file (not installed, option unsupported).
    unavailable: Option<String>,
    runs: usize,
}

impl ToolSpec {
    fn shell(&self, program_shown: &str) -> String {
        let mut s = program_shown.to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a.as_deref().unwrap_or("F"));
        }
        if self.tool != Tool::Tcpdump {
            s.push_str(" > /dev/null");
        }
        s
    }

    fn argv(&self, file: &Path) -> Vec<OsString> {
        self.args
            .iter()
            .map(|a| match a {
                Some(a) => OsString::from(a),
                None => file.as_os_str().to_owned(),
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

struct RunResult {
    secs: f64,
    maxrss_kb: u64,
    exit: Exit,
}

/// Spawns the program (stdin and stdout on /dev/null, stderr into `stderr_file`) and
/// reaps it with `wait4` for its rusage.
fn run_once(
    program: &Path,
    argv: &[OsString],
    stderr_file: &Path,
    fifo: bool,
) -> Result<RunResult> {
    let err = std::fs::File::create(stderr_file)
        .with_context(|| format!("creating {}", stderr_file.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    if fifo {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure makes one system call
        // (async-signal-safe), allocates nothing and touches no lock; the parameter is
        // a local it owns.
        unsafe {
            cmd.pre_exec(|| {
                let param = libc::sched_param {
                    sched_priority: FIFO_PRIORITY,
                };
                if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| {
        let hint = if fifo { " (--fifo needs root)" } else { "" };
        format!("starting {}{hint}", program.display())
    })?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child, not yet reaped (`child` is never waited on);
        // the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Reaped by wait4: dropping `child` neither waits nor kills.
    drop(child);
    let exit = if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(-1)
    };
    Ok(RunResult {
        secs,
        maxrss_kb: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        exit,
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join(" / ")
}

enum Outcome {
    Measured { times: Vec<f64>, rss_kb: Vec<u64> },
    Failed { why: String, detail: String },
    NotRun(String),
}

impl Outcome {
    fn median(&self) -> Option<f64> {
        match self {
            Outcome::Measured { times, .. } => median(times),
            _ => None,
        }
    }

    fn max_rss_kb(&self) -> Option<u64> {
        match self {
            Outcome::Measured { rss_kb, .. } => rss_kb.iter().copied().max(),
            _ => None,
        }
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// What `observer analyze --json` found.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    total: u64,
    ok: u64,
    timeout: u64,
    open: u64,
    messages: u64,
    frames: u64,
}

/// The parts of the summary the counts come from; the rest (per-pair statistics: 100,000
/// pairs for the many-peers file) is skipped while parsing, never held.
#[derive(serde::Deserialize)]
struct SummaryHead {
    #[serde(default)]
    transactions: serde_json::Value,
    #[serde(default)]
    jxta: serde_json::Value,
    #[serde(default)]
    capture: serde_json::Value,
}

fn found_from_reader(r: impl std::io::Read) -> Option<Found> {
    let head: SummaryHead = serde_json::from_reader(r).ok()?;
    let v = serde_json::json!({
        "transactions": head.transactions,
        "jxta": head.jxta,
        "capture": head.capture,
    });
    let t = &v["transactions"];
    let frames = v["capture"]["inputs"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["frames"].as_u64()).sum())
        .unwrap_or(0);
    Some(Found {
        total: t["total"].as_u64()?,
        ok: t["ok"].as_u64()?,
        timeout: t["timeout"].as_u64().unwrap_or(0),
        open: t["open"].as_u64().unwrap_or(0),
        messages: v["jxta"]["messages"]["total"].as_u64().unwrap_or(0),
        frames,
    })
}

/// One `--json` run of the observer (not timed), for the counts.
fn observer_json(observer: &Path, file: &Path, threads: Option<usize>) -> Result<Found, String> {
    let mut cmd = Command::new(observer);
    cmd.arg("analyze")
        .arg(file)
        .args(["--no-progress", "--json"]);
    if let Some(n) = threads {
        cmd.args(["--threads", &n.to_string()]);
    }
    // Through a file, parsed as a stream: holding the output in this process would
    // raise its peak RSS, which every later child inherits as a floor (see
    // `own_hwm_kb`).
    let path = std::env::temp_dir().join(format!("observer-bench-{}.json", std::process::id()));
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .status()
        .map_err(|e| format!("cannot start: {e}"))?;
    let found = std::fs::File::open(&path)
        .ok()
        .and_then(|f| found_from_reader(std::io::BufReader::new(f)));
    let _ = std::fs::remove_file(&path);
    if !status.success() {
        let code = status
            .code()
            .map_or_else(|| "signal".to_string(), |c| format!("exit {c}"));
        return Err(format!("failed ({code})"));
    }
    found.ok_or_else(|| "JSON summary unreadable".to_string())
}

struct Input {
    path: PathBuf,
    name: String,
    bytes: u64,
    sidecar: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Input {
    fn stem(&self) -> &str {
        self.name
            .strip_suffix(".pcapng")
            .or_else(|| self.name.strip_suffix(".pcap"))
            .unwrap_or(&self.name)
    }

    fn side_f64(&self, key: &str) -> Option<f64> {
        self.sidecar.as_ref()?.get(key)?.as_f64()
    }

    fn side_u64(&self, key: &str) -> Option<u64> {
        self.sidecar.as_ref()?.get(key)?.as_u64()
    }

    /// Share of the bytes that is not JXTA: the sidecar's `background_share`, else
    /// from its `jxta_bytes`, else guessed from the name.
    fn background(&self) -> bool {
        let share = self.side_f64("background_share").or_else(|| {
            let j = self.side_f64("jxta_bytes")?;
            let b = self.side_f64("bytes").unwrap_or(self.bytes as f64);
            (b > 0.0).then(|| 1.0 - j / b)
        });
        match share {
            Some(s) => s >= 0.5,
            None => self.name.contains("background"),
        }
    }

    /// The name without its size suffix (`jxta-1g` → `jxta`): files of one family
    /// differ only in size, for the linearity target.
    fn family(&self) -> &str {
        let stem = self.stem();
        stem.rsplit_once('-').map_or(stem, |(f, _)| f)
    }
}

fn find_inputs(dir: &Path, only: &[String]) -> Result<Vec<Input>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading {} (generate the captures with `cargo xtask bench-data`)",
            dir.display()
        )
    })?;
    let mut inputs = Vec::new();
    for e in entries {
        let e = e?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            continue;
        }
        let sidecar = std::fs::read_to_string(path.with_extension("json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.as_object().cloned());
        inputs.push(Input {
            path,
            name,
            bytes: meta.len(),
            sidecar,
        });
    }
    if !only.is_empty() {
        let missing: Vec<&String> = only
            .iter()
            .filter(|o| {
                !inputs
                    .iter()
                    .any(|i| &i.name == *o || i.stem() == o.as_str())
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "--only: no such capture in {}: {}",
                dir.display(),
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        inputs.retain(|i| only.iter().any(|o| &i.name == o || i.stem() == o.as_str()));
    }
    if inputs.is_empty() {
        bail!(
            "no *.pcap in {}: generate them with `cargo xtask bench-data`",
            dir.display()
        );
    }
    inputs.sort_by(|a, b| (a.bytes, &a.name).cmp(&(b.bytes, &b.name)));
    Ok(inputs)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // tshark warns about running as root before its version line.
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("Running as user"))
        .map(str::to_string)
}

/// This process's peak RSS in kB. Linux records the spawning process's memory in a
/// child's `ru_maxrss` when the child execs (the vfork'd address space is the
/// parent's), so this is a floor under every figure measured here.
fn own_hwm_kb() -> u64 {
    read("/proc/self/status")
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

struct Machine {
    cpu: String,
    cores: usize,
    mem_kb: u64,
    kernel: String,
    load: String,
}

fn machine() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_string(), |(_, v)| v.trim().to_string());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| read("/proc/sys/kernel/osrelease").trim().to_string());
    let load = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Machine {
        cpu,
        cores,
        mem_kb,
        kernel,
        load,
    }
}

/// The checkout's commit, and whether the observer's sources differ from it.
fn revision(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "observer/src",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev} with uncommitted changes in observer/src")
            } else {
                rev
            }
        }
        None => "unknown revision".to_string(),
    }
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate (days to civil date, H. Hinnant).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Seconds with three significant digits at least (0.0123, 0.123, 1.23, 12.3).
fn secs(s: f64) -> String {
    if s < 0.1 {
        format!("{s:.4}")
    } else {
        format!("{s:.3}")
    }
}

fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn size_mb(bytes: u64) -> String {
    let x = mb(bytes);
    if x < 1.0 {
        format!("{x:.3}")
    } else {
        rate(x)
    }
}

fn sidecar_text(input: &Input) -> String {
    let Some(map) = &input.sidecar else {
        return "(no sidecar)".to_string();
    };
    map.iter()
        .filter(|(k, _)| k.as_str() != "file")
        .map(|(k, v)| match v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(u) => format!("{k} {}", thousands(u)),
                None => format!("{k} {n}"),
            },
            serde_json::Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

struct FileResult {
    outcomes: BTreeMap<Tool, Outcome>,
    found: Option<Result<Found, String>>,
    found_n: Option<Result<Found, String>>,
}

impl FileResult {
    fn median(&self, t: Tool) -> Option<f64> {
        self.outcomes.get(&t).and_then(Outcome::median)
    }
}

pub fn run(root: &Path, args: Args) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    // An absolute `--data` replaces the root in `join`.
    let data = root.join(&args.data);
    let inputs = find_inputs(&data, &args.only)?;

    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| root.join(t))
        .unwrap_or_else(|| root.join("target"));
    let observer = target.join("release/observer");
    if !args.no_build {
        let cmd = ["build", "--release", "-p", "observer", "--bin", "observer"];
        eprintln!("bench: cargo {}", cmd.join(" "));
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(cmd)
            .current_dir(root)
            .stdout(Stdio::inherit())
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("building the observer failed ({status}); --no-build uses the existing binary");
        }
    }
    if !observer.exists() {
        bail!(
            "{} does not exist (build it, or drop --no-build)",
            observer.display()
        );
    }
    let help = Command::new(&observer)
        .args(["analyze", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let has_threads = help.contains("--threads");

    let observer_shown = observer
        .strip_prefix(root)
        .unwrap_or(&observer)
        .display()
        .to_string();
    let mut specs = Vec::new();
    let obs_args = |extra: &[String]| {
        let mut v = vec![
            Some("analyze".to_string()),
            None,
            Some("--no-progress".into()),
        ];
        v.extend(extra.iter().cloned().map(Some));
        v
    };
    specs.push(ToolSpec {
        tool: Tool::Observer1,
        label: "observer (1 thread)".into(),
        program: observer.clone(),
        args: obs_args(&[]),
        unavailable: None,
        runs: args.runs,
    });
    if args.threads > 1 {
        specs.push(ToolSpec {
            tool: Tool::ObserverN,
            label: format!("observer ({} threads)", args.threads),
            program: observer.clone(),
            args: obs_args(&["--threads".into(), args.threads.to_string()]),
            unavailable: (!has_threads)
                .then(|| "not run: this observer has no `analyze --threads`".to_string()),
            runs: args.runs,
        });
    }
    let external = |tool: Tool, name: &str, a: &[Option<&str>], runs: usize| {
        let program = which(name);
        ToolSpec {
            tool,
            label: name.to_string(),
            unavailable: program
                .is_none()
                .then(|| format!("not run: {name} is not installed")),
            program: program.unwrap_or_else(|| PathBuf::from(name)),
            args: a.iter().map(|s| s.map(str::to_string)).collect(),
            runs,
        }
    };
    specs.push(external(
        Tool::Tcpdump,
        "tcpdump",
        &[Some("-r"), None, Some("-w"), Some("/dev/null")],
        args.runs,
    ));
    specs.push(external(Tool::Cat, "cat", &[None], args.runs));
    let mut tshark = external(
        Tool::Tshark,
        "tshark",
        &[Some("-r"), None, Some("-Y"), Some("jxta")],
        args.tshark_runs,
    );
    if tshark.unavailable.is_none() && args.tshark_runs == 0 {
        tshark.unavailable = Some("not run (--tshark-runs 0)".into());
    }
    specs.push(tshark);
    let cat = which("cat");

    let stderr_file =
        std::env::temp_dir().join(format!("xtask-bench-{}.stderr", std::process::id()));
    let mut results: Vec<FileResult> = Vec::new();
    for input in &inputs {
        eprintln!(
            "bench: {} ({} bytes; {})",
            input.name,
            thousands(input.bytes),
            sidecar_text(input)
        );
        // Warm the page cache, so that every tool reads from memory.
        if let Some(cat) = &cat {
            let _ = run_once(
                cat,
                &[input.path.clone().into_os_string()],
                &stderr_file,
                false,
            );
        }
        let mut outcomes: BTreeMap<Tool, Outcome> = BTreeMap::new();
        for spec in &specs {
            let o = if let Some(why) = &spec.unavailable {
                Outcome::NotRun(why.clone())
            } else if spec.tool == Tool::Tshark && input.bytes > args.tshark_max {
                Outcome::NotRun(format!(
                    "not run (size > --tshark-max {} MB)",
                    rate(mb(args.tshark_max))
                ))
            } else {
                Outcome::Measured {
                    times: Vec::new(),
                    rss_kb: Vec::new(),
                }
            };
            outcomes.insert(spec.tool, o);
        }
        let rounds = specs.iter().map(|s| s.runs).max().unwrap_or(0);
        for round in 0..rounds {
            for spec in &specs {
                if round >= spec.runs {
                    continue;
                }
                let Some(outcome) = outcomes.get_mut(&spec.tool) else {
                    continue;
                };
                let Outcome::Measured { times, rss_kb } = outcome else {
                    continue;
                };
                match run_once(
                    &spec.program,
                    &spec.argv(&input.path),
                    &stderr_file,
                    args.fifo,
                ) {
                    Ok(r) if matches!(r.exit, Exit::Code(0)) => {
                        eprintln!(
                            "bench:   {:<22} run {}/{}: {} s, {:.1} MiB",
                            spec.label,
                            round + 1,
                            spec.runs,
                            secs(r.secs),
                            r.maxrss_kb as f64 / 1024.0
                        );
                        times.push(r.secs);
                        rss_kb.push(r.maxrss_kb);
                    }
                    Ok(r) => {
                        let detail = tail(&stderr_file, 3);
                        eprintln!(
                            "bench:   {:<22} run {}/{}: failed ({}) {detail}",
                            spec.label,
                            round + 1,
                            spec.runs,
                            r.exit
                        );
                        *outcome = Outcome::Failed {
                            why: format!("failed ({})", r.exit),
                            detail,
                        };
                    }
                    Err(e) => {
                        eprintln!("bench:   {:<22} failed: {e:#}", spec.label);
                        *outcome = Outcome::Failed {
                            why: "failed (cannot start)".into(),
                            detail: format!("{e:#}"),
                        };
                    }
                }
            }
        }
        let ok = |t: Tool| matches!(outcomes.get(&t), Some(Outcome::Measured { .. }));
        let found = ok(Tool::Observer1).then(|| observer_json(&observer, &input.path, None));
        let found_n =
            ok(Tool::ObserverN).then(|| observer_json(&observer, &input.path, Some(args.threads)));
        results.push(FileResult {
            outcomes,
            found,
            found_n,
        });
    }
    let _ = std::fs::remove_file(&stderr_file);

    let invocation = std::iter::once("xtask".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let md = report(&Report {
        args: &args,
        invocation: &invocation,
        root,
        observer_shown: &observer_shown,
        specs: &specs,
        inputs: &inputs,
        results: &results,
    });
    println!("{md}");
    if !args.no_write {
        let doc = root.join("docs/performance.md");
        write_section(&doc, &md)?;
        eprintln!("bench: wrote the section into {}", doc.display());
    }
    Ok(())
}

struct Report<'a> {
    args: &'a Args,
    invocation: &'a str,
    root: &'a Path,
    observer_shown: &'a str,
    specs: &'a [ToolSpec],
    inputs: &'a [Input],
    results: &'a [FileResult],
}

/// A target's line: what was measured and whether it is met.
struct Verdict {
    target: String,
    measured: String,
    status: String,
}

fn status(all_met: bool, any: bool, missed_by: &str) -> String {
    if !any {
        "not measured".into()
    } else if all_met {
        "**met**".into()
    } else {
        format!("**missed** ({missed_by})")
    }
}

fn report(r: &Report<'_>) -> String {
    let m = machine();
    let mut md = String::new();
    let _ = writeln!(md, "### Run of {}\n", utc_now());
    let _ = writeln!(md, "Produced by `cargo {}`.\n", r.invocation);
    let _ = writeln!(
        md,
        "- Machine: {}, {} cores, {:.1} GiB RAM (MemTotal {} kB), Linux {}; load average \
         {} at the start (the machine is shared: other work may run on the other core).",
        m.cpu,
        m.cores,
        m.mem_kb as f64 / 1024.0 / 1024.0,
        thousands(m.mem_kb),
        m.kernel,
        m.load
    );
    let mut versions = vec![format!("observer at {} (release build)", revision(r.root))];
    for spec in r.specs {
        if spec.unavailable.is_some() && spec.program.is_relative() {
            continue;
        }
        let v = match spec.tool {
            Tool::Tshark => first_line(&spec.program, &["-v"]),
            Tool::Tcpdump | Tool::Cat => first_line(&spec.program, &["--version"]),
            _ => continue,
        };
        if let Some(v) = v {
            versions.push(v.trim_end_matches('.').to_string());
        }
    }
    let _ = writeln!(md, "- Tools: {}.", versions.join("; "));
    let _ = writeln!(
        md,
        "- Method: per file, one `cat` to warm the page cache, then {} run(s) of each tool \
         interleaved (run 1 of every tool, then run 2, ...); tshark {} run(s), only on files \
         up to {} MB{}. Wall time from spawn to `wait4`; the median is reported, MB/s = file \
         bytes / median / 10^6; peak RSS = the child's `ru_maxrss` from `wait4`, in MiB \
         (Linux counts the spawning process's memory at exec in it: a floor of {:.1} MiB \
         here, this xtask's own peak). The transaction counts come from one more run \
         with `--json`.",
        r.args.runs,
        r.args.tshark_runs,
        rate(mb(r.args.tshark_max)),
        if r.args.fifo {
            "; every run under `SCHED_FIFO` (`--fifo`, priority 10)"
        } else {
            ""
        },
        own_hwm_kb() as f64 / 1024.0
    );
    let _ = writeln!(
        md,
        "\nCommands (`F` is the capture file, stderr goes to a file):\n"
    );
    let _ = writeln!(md, "```sh");
    for spec in r.specs {
        let shown = match spec.tool {
            Tool::Observer1 | Tool::ObserverN => r.observer_shown.to_string(),
            _ => spec.label.clone(),
        };
        let note = spec
            .unavailable
            .as_ref()
            .map(|u| format!("    # {u}"))
            .unwrap_or_default();
        let _ = writeln!(md, "{}{note}", spec.shell(&shown));
    }
    let _ = writeln!(
        md,
        "{} analyze F --no-progress --json    # once more, for the counts",
        r.observer_shown
    );
    let _ = writeln!(md, "```\n");

    let _ = writeln!(md, "| file | bytes | kind | sidecar |");
    let _ = writeln!(md, "|---|---:|---|---|");
    for i in r.inputs {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            i.name,
            thousands(i.bytes),
            if i.background() {
                "mostly other traffic"
            } else {
                "JXTA-heavy"
            },
            sidecar_text(i)
        );
    }

    let _ = writeln!(
        md,
        "\n| file | size MB | tool | runs | median s | range s | MB/s | peak RSS MiB | ratio | result |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---|---|");
    for (input, res) in r.inputs.iter().zip(r.results) {
        let o1 = res.median(Tool::Observer1);
        for spec in r.specs {
            let Some(outcome) = res.outcomes.get(&spec.tool) else {
                continue;
            };
            let (runs, med, range, speed, rss, result) = match outcome {
                Outcome::Measured { times, rss_kb } => {
                    let med = median(times).unwrap_or(0.0);
                    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = times.iter().copied().fold(0.0, f64::max);
                    let rss = rss_kb.iter().copied().max().unwrap_or(0);
                    (
                        times.len().to_string(),
                        secs(med),
                        format!("{}–{}", secs(lo), secs(hi)),
                        rate(mb(input.bytes) / med.max(1e-9)),
                        format!("{:.1}", rss as f64 / 1024.0),
                        found_text(spec.tool, input, res),
                    )
                }
                Outcome::Failed { why, detail } => {
                    let d = if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", detail.replace('|', "\\|"))
                    };
                    let dash = || "–".to_string();
                    (dash(), dash(), dash(), dash(), dash(), format!("{why}{d}"))
                }
                Outcome::NotRun(why) => {
                    let dash = || "–".to_string();
                    (dash(), dash(), dash(), dash(), dash(), why.clone())
                }
            };
            let ratio = {
                let m = outcome.median();
                match (spec.tool, o1, m) {
                    (Tool::Observer1, Some(o), _) => res
                        .median(Tool::Tcpdump)
                        .map(|t| format!("{:.2}× tcpdump", t / o))
                        .unwrap_or_default(),
                    (Tool::ObserverN, Some(o), Some(n)) => format!("{:.2}× 1 thread", o / n),
                    (Tool::Tshark, Some(o), Some(t)) => format!("observer {:.0}× faster", t / o),
                    (Tool::Cat, Some(o), Some(c)) => format!("observer {:.2}× cat", c / o),
                    _ => String::new(),
                }
            };
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {runs} | {med} | {range} | {speed} | {rss} | {ratio} | {result} |",
                input.name,
                size_mb(input.bytes),
                spec.label,
            );
        }
    }

    let _ = writeln!(md, "\nTargets of issue 6, from the medians above:\n");
    let _ = writeln!(md, "| target | measured | status |");
    let _ = writeln!(md, "|---|---|---|");
    for v in verdicts(r) {
        let _ = writeln!(md, "| {} | {} | {} |", v.target, v.measured, v.status);
    }
    md
}

fn found_text(tool: Tool, input: &Input, res: &FileResult) -> String {
    let found = match tool {
        Tool::Observer1 => &res.found,
        Tool::ObserverN => &res.found_n,
        _ => return "exit 0".into(),
    };
    match found {
        Some(Ok(f)) => {
            let mut s = format!(
                "exit 0; {} tx ({} ok, {} timeout, {} open), {} JXTA msgs, {} frames",
                thousands(f.total),
                thousands(f.ok),
                thousands(f.timeout),
                thousands(f.open),
                thousands(f.messages),
                thousands(f.frames)
            );
            if let Some(expected) = input.side_u64("transactions") {
                if f.total == expected && f.ok == expected {
                    s.push_str("; = sidecar");
                } else {
                    let _ = write!(s, "; **sidecar says {}**", thousands(expected));
                }
            }
            if tool == Tool::ObserverN {
                if let Some(Ok(one)) = &res.found {
                    if one != f {
                        s.push_str("; **differs from 1 thread**");
                    }
                }
            }
            s
        }
        Some(Err(e)) => format!("exit 0; --json run {e}"),
        None => "exit 0".into(),
    }
}

fn verdicts(r: &Report<'_>) -> Vec<Verdict> {
    let files: Vec<(&Input, &FileResult)> = r.inputs.iter().zip(r.results).collect();
    let heavy = |bg: bool| files.iter().filter(move |(i, _)| i.background() == bg);
    let mut out = Vec::new();

    // Faster than tshark.
    let mut parts = Vec::new();
    let mut all = true;
    for (i, res) in heavy(false) {
        if let (Some(o), Some(t)) = (res.median(Tool::Observer1), res.median(Tool::Tshark)) {
            let x = t / o;
            all &= x >= 100.0;
            parts.push(format!("{}: {x:.0}×", i.stem()));
        }
    }
    out.push(Verdict {
        target: "≥ 100× tshark (JXTA-heavy, 1 thread)".into(),
        measured: join_or(&parts, "tshark not run on any JXTA-heavy file"),
        status: status(all, !parts.is_empty(), "below 100×"),
    });

    // Against tcpdump's raw read.
    for (bg, min, what) in [
        (false, 0.5, "≥ 0.5× tcpdump (JXTA-heavy, 1 thread)"),
        (true, 0.8, "≥ 0.8× tcpdump (mostly other traffic, 1 thread)"),
    ] {
        let mut parts = Vec::new();
        let mut all = true;
        let mut worst = f64::INFINITY;
        for (i, res) in heavy(bg) {
            if let (Some(o), Some(t)) = (res.median(Tool::Observer1), res.median(Tool::Tcpdump)) {
                let x = t / o;
                all &= x >= min;
                worst = worst.min(x);
                parts.push(format!("{}: {x:.2}×", i.stem()));
            }
        }
        out.push(Verdict {
            target: what.into(),
            measured: join_or(&parts, "no such file measured"),
            status: status(
                all,
                !parts.is_empty(),
                &format!(
                    "worst {worst:.2}×, {:.0} % short",
                    (1.0 - worst / min) * 100.0
                ),
            ),
        });
    }

    // Memory.
    let mut parts = Vec::new();
    let mut all = true;
    for (i, res) in &files {
        let rss = [Tool::Observer1, Tool::ObserverN]
            .iter()
            .filter_map(|t| res.outcomes.get(t).and_then(Outcome::max_rss_kb))
            .max();
        if let Some(kb) = rss {
            all &= kb <= RSS_LIMIT_KB;
            parts.push(format!("{}: {:.1}", i.stem(), kb as f64 / 1024.0));
        }
    }
    out.push(Verdict {
        target: "peak RSS ≤ 64 MiB on every file (observer, any thread count)".into(),
        measured: join_or(&parts, "observer not measured"),
        status: status(all, !parts.is_empty(), "over 64 MiB"),
    });

    // Time linear in size: the MB/s of each family's files within ±25 % of their median.
    let mut families: BTreeMap<&str, Vec<(&Input, f64)>> = BTreeMap::new();
    for (i, res) in heavy(false) {
        if let Some(o) = res.median(Tool::Observer1) {
            families
                .entry(i.family())
                .or_default()
                .push((i, mb(i.bytes) / o));
        }
    }
    let mut parts = Vec::new();
    let mut all = true;
    let mut any = false;
    let mut worst = 0.0f64;
    for (family, members) in &families {
        if members.len() < 2 {
            continue;
        }
        any = true;
        let speeds: Vec<f64> = members.iter().map(|m| m.1).collect();
        let mid = median(&speeds).unwrap_or(1.0);
        let dev = members
            .iter()
            .map(|m| (m.1 / mid - 1.0).abs())
            .fold(0.0, f64::max);
        worst = worst.max(dev);
        all &= dev <= 0.25;
        parts.push(format!(
            "{family}: {} MB/s (largest deviation from their median {:.0} %)",
            members
                .iter()
                .map(|(i, s)| format!("{} {}", i.stem(), rate(*s)))
                .collect::<Vec<_>>()
                .join(", "),
            dev * 100.0
        ));
    }
    out.push(Verdict {
        target: "time linear in size: MB/s of one family's sizes within ±25 % of their median"
            .into(),
        measured: join_or(&parts, "fewer than two sizes of one family measured"),
        status: status(all, any, &format!("{:.0} % off", worst * 100.0)),
    });

    // Many peers: the same throughput as the JXTA-heavy file closest in size.
    let mut parts = Vec::new();
    let mut all = true;
    let mut worst = f64::INFINITY;
    for (i, res) in heavy(false).filter(|(i, _)| i.family().contains("peers")) {
        let Some(o) = res.median(Tool::Observer1) else {
            continue;
        };
        let reference = heavy(false)
            .filter(|(j, _)| !j.family().contains("peers"))
            .filter_map(|(j, rj)| rj.median(Tool::Observer1).map(|m| (j, m)))
            .min_by_key(|(j, _)| j.bytes.abs_diff(i.bytes));
        if let Some((j, m)) = reference {
            let (s, sj) = (mb(i.bytes) / o, mb(j.bytes) / m);
            let x = s / sj;
            all &= x >= 0.75;
            worst = worst.min(x);
            parts.push(format!(
                "{} {} MB/s vs {} {} MB/s: {x:.2}×",
                i.stem(),
                rate(s),
                j.stem(),
                rate(sj)
            ));
        }
    }
    out.push(Verdict {
        target: "many peers: ≥ 0.75× the throughput of the JXTA-heavy file of the same size".into(),
        measured: join_or(&parts, "no `peers` file with a reference measured"),
        status: status(all, !parts.is_empty(), &format!("{worst:.2}×")),
    });

    // Threads, on the largest JXTA-heavy file.
    let threads_spec = r.specs.iter().find(|s| s.tool == Tool::ObserverN);
    let largest = heavy(false)
        .filter(|(_, res)| res.median(Tool::Observer1).is_some())
        .max_by_key(|(i, _)| i.bytes);
    let (measured, st) = match (threads_spec, largest) {
        (None, _) => (
            "--threads 1: no multi-thread column".to_string(),
            "not measured".to_string(),
        ),
        (Some(s), _) if s.unavailable.is_some() => (
            s.unavailable.clone().unwrap_or_default(),
            "not measured".to_string(),
        ),
        (_, None) => ("no JXTA-heavy file measured".into(), "not measured".into()),
        (Some(_), Some((i, res))) => {
            match (res.median(Tool::Observer1), res.median(Tool::ObserverN)) {
                (Some(o), Some(n)) => {
                    let x = o / n;
                    (
                        format!("{}: {x:.2}×", i.stem()),
                        status(
                            x >= 1.7,
                            true,
                            &format!("{:.0} % short", (1.0 - x / 1.7) * 100.0),
                        ),
                    )
                }
                _ => (
                    format!("{}: the {}-thread run failed", i.stem(), r.args.threads),
                    "**missed**".into(),
                ),
            }
        }
    };
    out.push(Verdict {
        target: format!(
            "--threads {} ≥ 1.7× one thread on the largest JXTA-heavy file",
            r.args.threads
        ),
        measured,
        status: st,
    });

    // Every observer run succeeded (a failed file makes every other target moot there).
    let failed: Vec<String> = files
        .iter()
        .flat_map(|(i, res)| {
            [Tool::Observer1, Tool::ObserverN]
                .into_iter()
                .filter_map(move |t| match res.outcomes.get(&t) {
                    Some(Outcome::Failed { why, .. }) => Some(format!(
                        "{} ({}): {why}",
                        i.stem(),
                        if t == Tool::Observer1 {
                            "1 thread"
                        } else {
                            "N threads"
                        }
                    )),
                    _ => None,
                })
        })
        .collect();
    let ran = files.iter().any(|(_, res)| {
        res.outcomes
            .get(&Tool::Observer1)
            .is_some_and(|o| !matches!(o, Outcome::NotRun(_)))
    });
    out.push(Verdict {
        target: "observer exits 0 on every file".into(),
        measured: join_or(&failed, "all runs exit 0"),
        status: status(failed.is_empty(), ran, "see measured"),
    });

    // Correctness: the counts found against the sidecars, and N threads against 1.
    let mut parts = Vec::new();
    let mut all = true;
    let mut compared = 0usize;
    for (i, res) in &files {
        let expected = i.side_u64("transactions");
        for (label, found) in [("1", &res.found), ("N", &res.found_n)] {
            match found {
                Some(Ok(f)) => {
                    if let Some(e) = expected {
                        compared += 1;
                        if f.total != e || f.ok != e {
                            all = false;
                            parts.push(format!(
                                "{} ({label} thread): {} tx, {} ok, sidecar {}",
                                i.stem(),
                                f.total,
                                f.ok,
                                e
                            ));
                        }
                    }
                }
                Some(Err(e)) => {
                    all = false;
                    parts.push(format!("{} ({label} thread): {e}", i.stem()));
                }
                None => {}
            }
        }
        if let (Some(Ok(a)), Some(Ok(b))) = (&res.found, &res.found_n) {
            compared += 1;
            if a != b {
                all = false;
                parts.push(format!("{}: 1 and N threads differ", i.stem()));
            }
        }
    }
    out.push(Verdict {
        target: "same transactions: the sidecar's count, 1 thread = N threads".into(),
        measured: if !parts.is_empty() {
            parts.join("; ")
        } else if compared == 0 {
            "no sidecar count nor N-thread run to compare with".into()
        } else {
            format!("{compared} comparison(s), all equal")
        },
        status: status(all, compared > 0 || !all, "see measured"),
    });
    out
}

fn join_or(parts: &[String], none: &str) -> String {
    if parts.is_empty() {
        none.to_string()
    } else {
        parts.join("; ")
    }
}

/// Replaces what lies between the markers of `doc` (adding them, under their heading,
/// at the end when absent), keeping the rest of the file.
fn write_section(doc: &Path, md: &str) -> Result<()> {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{BEGIN}\n{}\n{}", &text[..b], md.trim_end(), &text[e..])
        }
        (None, None) => {
            let mut t = text.trim_end().to_string();
            if !t.is_empty() {
                t.push_str("\n\n");
            }
            format!("{t}{HEADING}\n\n{BEGIN}\n{}\n{END}\n", md.trim_end())
        }
        _ => bail!(
            "{}: the markers {BEGIN} / {END} are damaged; fix them by hand",
            doc.display()
        ),
    };
    std::fs::write(doc, new).with_context(|| format!("writing {}", doc.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("150MB"), Ok(150_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0.1g"), Ok(100_000_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn section_replaced_between_markers_only() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("performance.md");
        std::fs::write(&doc, "# Performance\n\nintro\n").unwrap();
        write_section(&doc, "first\n").unwrap();
        let t = std::fs::read_to_string(&doc).unwrap();
        assert!(t.starts_with("# Performance\n\nintro\n\n## `cargo xtask bench`\n\n"));
        assert!(t.contains(&format!("{BEGIN}\nfirst\n{END}\n")));
        std::fs::write(&doc, format!("{t}\n## After\n\nkept\n")).unwrap();
        write_section(&doc, "second").unwrap();
        let t = std::fs::read_to_string(&doc).unwrap();
        assert!(!t.contains("first"));
        assert!(t.contains(&format!("{BEGIN}\nsecond\n{END}\n")));
        assert!(t.ends_with("## After\n\nkept\n"));
        assert!(t.starts_with("# Performance\n\nintro\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn civil_date_format() {
        let d = utc_now();
        assert_eq!(d.len(), "2026-12-01 08:41 UTC".len());
        assert!(d.starts_with("20"));
    }

    #[test]
    fn families() {
        let i = |name: &str| Input {
            path: PathBuf::from(name),
            name: name.into(),
            bytes: 1,
            sidecar: None,
        };
        assert_eq!(i("jxta-0.1g.pcap").family(), "jxta");
        assert_eq!(i("peers10k-1g.pcap").family(), "peers10k");
        assert!(i("background95-1g.pcap").background());
        assert!(!i("jxta-4g.pcap").background());
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
