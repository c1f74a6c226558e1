//! `observer live`: capture on interfaces (eBPF tap or libpcap), report continuously,
//! and print the summary (and optionally the figures) at the end.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use observer::metrics::window::{WindowStats, SKETCH_RELATIVE_ERROR};
use observer::report;
use observer::runtime::online::{self, CsvRotation, LiveConfig, LiveOutcome, LiveSource};
use observer::transaction::Transaction;

use super::command_line;
use super::limits::{Limits, Matching};
use super::store::{report_store, StoreArgs};
use super::values::{parse_bytes, parse_dur, parse_port, parse_positive_duration, Bytes, Dur};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// eBPF TC classifier with in-kernel filtering (needs root or CAP_BPF + CAP_NET_ADMIN).
    Ebpf,
    /// libpcap (built with `--features pcap`).
    Pcap,
    /// eBPF when permitted, else libpcap; says which it took.
    Auto,
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture on (repeatable).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", required = true)]
    pub interfaces: Vec<String>,
    #[arg(long, value_enum, default_value_t = SourceKind::Auto)]
    pub source: SourceKind,
    /// JXTA ports passed by the in-kernel filter (flows recognised by content are added
    /// as they are found) [default: 9701, 9700].
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port, allow_negative_numbers = true)]
    pub ports: Vec<u16>,
    /// eBPF: size of the kernel's ring buffer to user space, a power of two (each
    /// packet takes 2 KiB of it at least; what arrives while the observer is not
    /// scheduled must fit; losses count as kernel drops) [default: 64MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub ring_buffer: Option<Bytes>,
    #[command(flatten)]
    pub matching: Matching,
    /// Append one row per finished transaction (flushed every second).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Start a new CSV file when the current one reaches this size.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub csv_rotate_size: Option<Bytes>,
    /// Start a new CSV file after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub csv_rotate_time: Option<Duration>,
    /// Save what the tap saw to a pcapng file (re-analyse it later with `analyze`).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9898).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Allow the metrics endpoint on a non-loopback address.
    #[arg(long)]
    pub metrics_public: bool,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Drop a pair's metric series and summary entry once it has had no transaction
    /// for this long (capture time); counted in `observer_pairs_expired_total`. The
    /// totals and rolling windows keep every transaction. `0` keeps every pair.
    #[arg(long, value_name = "DURATION", value_parser = parse_dur,
          default_value_t = Dur(online::DEFAULT_PAIR_HORIZON))]
    pub pair_horizon: Dur,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// When the run ends, write the figures and index.html (as `observer report`) here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Once the capture is set up, run as this user (started as root). CSV rotation
    /// and --report then need a directory this user can write.
    #[arg(long, value_name = "USER", default_value = "nobody")]
    pub user: String,
    /// Stay root after setting up the capture.
    #[arg(long)]
    pub keep_root: bool,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Transactions a live run with `--report` keeps for the figures (about 30 MB at most);
/// the summary and tables always cover the whole run.
const LIVE_REPORT_SAMPLE: usize = 100_000;

/// What the run is told, from the command line alone (no capture opened yet).
pub fn live_config(args: &LiveArgs) -> LiveConfig {
    let mut cfg = LiveConfig {
        csv: args.csv.clone(),
        csv_rotation: CsvRotation {
            max_bytes: args.csv_rotate_size.map(|b| b.0),
            max_age: args.csv_rotate_time,
        },
        save: args.write.clone(),
        metrics: args.metrics,
        metrics_public: args.metrics_public,
        status_line: true,
        duration: args.duration,
        interfaces: args.interfaces.clone(),
        user: (!args.keep_root).then(|| args.user.clone()),
        report_dir: args.report.clone(),
        store: args.store.config(&args.interfaces.join(",")),
        pair_horizon: (!args.pair_horizon.0.is_zero()).then_some(args.pair_horizon.0),
        ..LiveConfig::default()
    };
    args.limits.apply(&mut cfg.pipeline);
    args.matching.apply(&mut cfg.pipeline);
    cfg
}

pub fn run(args: LiveArgs) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    // The first SIGINT, SIGTERM or SIGHUP ends the run cleanly (what the capture
    // already holds read, for at most 2 s, records flushed, filters removed); a second
    // one, once that has begun, exits at
    // once: by then the capture is torn down and only the summary and report remain.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let cfg = live_config(&args);
    let source = open_source(&args)?;
    // The figures need transactions; the run keeps none, so the first ones are kept
    // for them, bounded. (Reading the `-w` file back is no way out: the run no longer
    // has the rights to open it once it has switched to `--user`.)
    let mut sample = Vec::new();
    let mut sampled_out = 0u64;
    let keep_sample = args.report.is_some();
    let outcome = online::run_each(source, cfg, &stop, &mut |t| {
        if keep_sample {
            if sample.len() < LIVE_REPORT_SAMPLE {
                sample.push(t.clone());
            } else {
                sampled_out += 1;
            }
        }
    })?;
    if let Some(s) = &outcome.store {
        report_store(s, &args.store.clickhouse_spool);
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &outcome_json(&outcome))?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &outcome)?;
    }
    out.flush()?;
    // The summary is out first: a report that cannot be written loses nothing else.
    if let Some(dir) = &args.report {
        if sampled_out > 0 {
            eprintln!(
                "observer: the figures show the first {} transactions of {} (the tables cover them all)",
                sample.len(),
                sample.len() as u64 + sampled_out
            );
        }
        write_report(dir, &args, &outcome, sample, sampled_out)?;
    }
    if let Some(e) = outcome.failure {
        eprintln!(
            "observer: error: {}\nobserver: the run stopped early; its summary covers every transaction seen until then",
            crate::error_line(&anyhow::Error::new(e))
        );
        return Ok(ExitCode::from(super::exit::STOPPED_EARLY));
    }
    Ok(ExitCode::SUCCESS)
}

fn outcome_json(outcome: &LiveOutcome) -> serde_json::Value {
    let mut json = outcome.summary.to_json();
    if let serde_json::Value::Object(map) = &mut json {
        let r = &outcome.result;
        map.insert("jxta".into(), r.jxta.to_json());
        // What the lower stages saw, as `analyze --json` reports it (no inputs: the
        // source's own counters are under `source`).
        map.insert("jim".into(), serde_json::json!(r.jim));
        map.insert(
            "capture".into(),
            serde_json::json!({
                "first_unix_ns": r.first_ts,
                "last_unix_ns": r.last_ts,
                "duration_s": r.duration_ns() as f64 / 1e9,
                "packets": r.packets,
                "flows": r.flows,
            }),
        );
        let mut source: serde_json::Map<String, serde_json::Value> = outcome
            .source
            .iter()
            .map(|(c, n)| (c.key.to_owned(), n.into()))
            .collect();
        source.insert("kind".into(), outcome.source.source.into());
        map.insert("source".into(), source.into());
        map.insert("windows".into(), windows_json(&outcome.windows));
        let expired: serde_json::Map<String, serde_json::Value> = outcome
            .pair_expiry
            .iter()
            .map(|(c, n)| (c.key.to_owned(), n.into()))
            .collect();
        map.insert("pairs_expired".into(), expired.into());
        let state: serde_json::Map<String, serde_json::Value> = outcome
            .result
            .matcher
            .expiry()
            .iter()
            .map(|(c, n)| (c.key.to_owned(), n.into()))
            .collect();
        map.insert("state_expired".into(), state.into());
        if let Some(e) = &outcome.failure {
            map.insert("stopped_early".into(), e.to_string().into());
        }
    }
    json
}

fn write_text(out: &mut impl Write, outcome: &LiveOutcome) -> io::Result<()> {
    write!(out, "{}", report::table::render(&outcome.summary))?;
    writeln!(
        out,
        "\nSource: {} ({} events, {} bytes, drops: {} kernel, {} user-space)",
        outcome.source.source,
        outcome.source.events,
        outcome.source.bytes,
        outcome.source.kernel_drops,
        outcome.source.userspace_drops
    )?;
    for (label, w) in &outcome.windows {
        write!(
            out,
            "Last {label} of capture time: {} ok, {} timeout, {} open",
            w.ok, w.timeout, w.open
        )?;
        for (q, ms) in &w.quantiles_ms {
            write!(out, ", p{} {ms:.1} ms", (q * 100.0).round())?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "(window percentiles from a DDSketch: within ±{}% of the exact value)",
        SKETCH_RELATIVE_ERROR * 100.0
    )?;
    let e = &outcome.pair_expiry;
    if e.series + e.summary > 0 {
        writeln!(
            out,
            "Pairs idle past --pair-horizon, dropped from the per-pair views: {} from the metrics, {} from the table above (the totals keep them)",
            e.series, e.summary
        )?;
    }
    if outcome.source.clock_steps > 0 {
        writeln!(
            out,
            "The wall clock was set {} times during the run: stamps follow it, and an RTT that spans a step includes it",
            outcome.source.clock_steps
        )?;
    }
    if outcome.source.flow_marks_failed > 0 {
        writeln!(
            out,
            "WARNING: {} flows found by content could not be let through the kernel filter: their traffic off the --port list was not seen",
            outcome.source.flow_marks_failed
        )?;
    }
    Ok(())
}

/// The rolling windows of a live run, with the error bound of their percentiles.
fn windows_json(windows: &[(&str, WindowStats)]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (label, w) in windows {
        let quantiles: serde_json::Map<String, serde_json::Value> = w
            .quantiles_ms
            .iter()
            .map(|(q, ms)| (format!("p{}", (q * 100.0).round()), serde_json::json!(ms)))
            .collect();
        map.insert(
            (*label).to_string(),
            serde_json::json!({
                "ok": w.ok,
                "timeout": w.timeout,
                "open": w.open,
                "rtt_ms": quantiles,
            }),
        );
    }
    map.insert(
        "rtt_relative_error".into(),
        serde_json::json!(SKETCH_RELATIVE_ERROR),
    );
    serde_json::Value::Object(map)
}

/// The figures of a live run, drawn from the same data `observer report` uses.
fn write_report(
    dir: &Path,
    args: &LiveArgs,
    outcome: &LiveOutcome,
    transactions: Vec<Transaction>,
    left_out: u64,
) -> Result<()> {
    use observer::report::figures::{self, InputMeta, Meta, Options, ReportData};
    let r = &outcome.result;
    let summary = &outcome.summary;
    let data = ReportData {
        transactions,
        summary: summary.clone(),
        timeout_ns: args.matching.timeout.ns(),
        meta: Meta {
            inputs: args
                .interfaces
                .iter()
                .map(|i| InputMeta {
                    name: i.clone(),
                    format: format!("live ({})", outcome.source.source),
                    frames: None,
                    bytes: outcome.source.bytes,
                    error: None,
                })
                .collect(),
            duration_ns: r.duration_ns(),
            packets: Some(r.packets.frames),
            flows: Some(r.flows.flows),
            jxta_messages: Some(r.jxta.messages_tcp + r.jxta.messages_udp),
            anomalies: outcome
                .source
                .iter()
                .filter(|(c, _)| c.anomaly)
                .map(|(c, n)| (c.label, n))
                .chain(figures::decoding_anomalies(r))
                .chain([("transactions left out of the figures", left_out)])
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_string(), n))
                .collect(),
            command: command_line(),
            text_report: report::table::render(summary),
        },
    };
    let written = figures::write_all(&data, dir, &Options::default())?;
    for f in &written.files {
        eprintln!("observer: wrote {}", f.display());
    }
    Ok(())
}

fn open_source(args: &LiveArgs) -> Result<LiveSource> {
    match args.source {
        SourceKind::Pcap => open_pcap(args),
        SourceKind::Ebpf => open_ebpf(args),
        SourceKind::Auto => match open_ebpf(args) {
            Ok(s) => {
                eprintln!("observer: capturing with the eBPF tap");
                Ok(s)
            }
            Err(ebpf_err) => match open_pcap(args) {
                Ok(s) => {
                    eprintln!("observer: the eBPF tap is not available ({ebpf_err:#}); capturing with libpcap");
                    Ok(s)
                }
                Err(pcap_err) => {
                    bail!("no live source works here: eBPF: {ebpf_err:#}; pcap: {pcap_err:#}")
                }
            },
        },
    }
}

#[cfg(target_os = "linux")]
fn open_ebpf(args: &LiveArgs) -> Result<LiveSource> {
    let ports = if args.ports.is_empty() {
        vec![9701, 9700]
    } else {
        args.ports.clone()
    };
    use observer::live::ebpf::{ring_bytes, DEFAULT_RING_BYTES};
    let ring_bytes = ring_bytes(
        args.ring_buffer
            .map_or(u64::from(DEFAULT_RING_BYTES), |b| b.0),
    )
    .map_err(|e| anyhow::anyhow!("--ring-buffer: {e}"))?;
    let tap = observer::live::ebpf::EbpfTap::attach(&observer::live::ebpf::TapConfig {
        interfaces: args.interfaces.clone(),
        ports,
        ring_bytes,
    })?;
    Ok(LiveSource::Ebpf(Box::new(tap)))
}

#[cfg(not(target_os = "linux"))]
fn open_ebpf(_args: &LiveArgs) -> Result<LiveSource> {
    bail!("the eBPF source exists only on Linux")
}

#[cfg(feature = "pcap")]
fn open_pcap(args: &LiveArgs) -> Result<LiveSource> {
    // libpcap's filter cannot follow flows recognised by content, so it passes all TCP
    // and UDP unless ports were given.
    let filter = if args.ports.is_empty() {
        "tcp or udp".to_string()
    } else {
        let ports: Vec<String> = args.ports.iter().map(|p| format!("port {p}")).collect();
        format!("(tcp or udp) and ({})", ports.join(" or "))
    };
    let source = observer::live::pcap::PcapSource::open(&args.interfaces, Some(&filter))?;
    Ok(LiveSource::Pcap(source))
}

#[cfg(not(feature = "pcap"))]
fn open_pcap(_args: &LiveArgs) -> Result<LiveSource> {
    Err(observer::live::LiveError::NotBuilt("pcap").into())
}
