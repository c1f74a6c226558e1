//! The `observer` command: a thin layer over the library (argument parsing, output
//! selection, exit codes).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use observer::packet::ChecksumMode;
use observer::report::{self, SummaryBuilder, TransactionCsvWriter};
use observer::runtime::{self, Analysis, PipelineConfig};

#[derive(Parser)]
#[command(
    name = "observer",
    version,
    about = "Passive measurement of the JIM presence service (JXTA PING/PONG round trips) from the wire",
    after_help = EXIT_STATUS_HELP
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse capture files: PING/PONG transactions, RTT statistics, the RTT matrix,
    /// presence states, correlator overhead.
    Analyze(AnalyzeArgs),
    /// List every decoded JXTA message: what it is (PING, PONG, MESSAGE with names and
    /// correlator, or other), addressing, elements (--wide: full IDs; --json: one JSON
    /// object per line).
    Messages(MessagesArgs),
    /// Capture live on interfaces and report continuously (eBPF tap or libpcap).
    Live(LiveArgs),
    /// Figures (SVG, and PNG with --png) and one self-contained index.html, from
    /// captures or from a transactions CSV written by `analyze --csv`.
    Report(ReportArgs),
    /// Run an instrumented JIM reference peer (JXTA TCP transport, PING/PONG presence,
    /// MESSAGE documents) that records its own round trips in the transaction CSV.
    Peer(PeerArgs),
    /// Compare passive transactions (from `analyze --csv`) with the peers' own records.
    Validate(ValidateArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SourceKind {
    /// eBPF TC classifier with in-kernel filtering (needs root or CAP_BPF + CAP_NET_ADMIN).
    Ebpf,
    /// libpcap (built with `--features pcap`).
    Pcap,
    /// eBPF when permitted, else libpcap; says which it took.
    Auto,
}

/// Sending transactions to ClickHouse besides (or instead of) the CSV.
#[derive(Args)]
struct StoreArgs {
    /// Also insert every transaction into ClickHouse at this HTTP URL (e.g.
    /// http://127.0.0.1:8123); credentials from OBSERVER_CLICKHOUSE_USER and
    /// OBSERVER_CLICKHOUSE_PASSWORD. Schema: docs/deployment.md.
    #[arg(long, value_name = "URL")]
    clickhouse: Option<String>,
    /// Table (or database.table), created if missing.
    #[arg(long, value_name = "TABLE", default_value = observer::store::DEFAULT_TABLE)]
    clickhouse_table: String,
    /// File keeping the batches ClickHouse could not take yet (sent first when it is back).
    #[arg(long, value_name = "FILE", default_value = "observer-clickhouse.spool")]
    clickhouse_spool: PathBuf,
    /// Largest spool; batches beyond it are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    clickhouse_spool_max: u64,
    /// The `gateway` label of the rows [default: this host's name].
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
}

impl StoreArgs {
    fn config(&self, interface: &str) -> Option<observer::store::ClickHouseConfig> {
        let url = self.clickhouse.as_deref()?;
        let mut c = observer::store::ClickHouseConfig::new(
            url,
            &self.clickhouse_table,
            self.clickhouse_spool.clone(),
        );
        if let Some(g) = &self.gateway {
            c.gateway = g.clone();
        }
        c.interface = interface.to_string();
        c.spool_max_bytes = self.clickhouse_spool_max;
        Some(c)
    }
}

#[derive(Args)]
struct LiveArgs {
    /// Interface to capture on (repeatable).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", required = true)]
    interfaces: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    source: SourceKind,
    /// JXTA ports passed by the in-kernel filter (flows recognised by content are added
    /// as they are found) [default: 9701, 9700].
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port, allow_negative_numbers = true)]
    ports: Vec<u16>,
    /// A PING not answered within this time is a timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,
    /// Append one row per finished transaction (flushed every second).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Start a new CSV file when the current one reaches this size.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    csv_rotate_size: Option<u64>,
    /// Start a new CSV file after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    csv_rotate_time: Option<Duration>,
    /// Save what the tap saw to a pcapng file (re-analyse it later with `analyze`).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9898).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Allow the metrics endpoint on a non-loopback address.
    #[arg(long)]
    metrics_public: bool,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
    /// When the run ends, write the figures and index.html (as `observer report`) here.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Once the capture is set up, run as this user (started as root). CSV rotation
    /// and --report then need a directory this user can write.
    #[arg(long, value_name = "USER", default_value = "nobody")]
    user: String,
    /// Stay root after setting up the capture.
    #[arg(long)]
    keep_root: bool,
    /// Frames (of all interfaces) are put back in time order within this window;
    /// frames later than it are counted and still used. 0 = as delivered.
    #[arg(long, value_name = "DURATION", default_value_t = default_reorder_window())]
    reorder_window: humantime::Duration,
    /// IPv4 header and TCP checksums: auto, verify or ignore (as for `analyze`).
    #[arg(long, value_name = "MODE", default_value = "auto")]
    checksums: ChecksumMode,
    /// Largest JIM document decoded.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = observer::jim::DEFAULT_MAX_DOCUMENT_BYTES as u64)]
    max_document: u64,
    #[command(flatten)]
    store: StoreArgs,
}

fn default_reorder_window() -> humantime::Duration {
    Duration::from_nanos(observer::capture::DEFAULT_REORDER_WINDOW_NS).into()
}

#[derive(Args)]
struct Inputs {
    /// pcap or pcapng files, read in order as one capture; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only look at TCP/UDP traffic to or from these ports (repeatable). By default
    /// every flow is examined and JXTA is recognised by its content.
    #[arg(long = "port", value_name = "PORT", value_parser = parse_port, allow_negative_numbers = true)]
    ports: Vec<u16>,
    /// Largest JXTA message accepted; larger ones are counted as malformed and skipped.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    max_message: u64,
    /// Largest JIM document decoded; larger ones are reported by element name.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = observer::jim::DEFAULT_MAX_DOCUMENT_BYTES as u64)]
    max_document: u64,
    /// IPv4 header and TCP checksums: `auto` checks them except where a capture on
    /// the sender shows them offloaded (per flow direction), `verify` always,
    /// `ignore` never. Packets with a bad one are dropped and counted.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    checksums: ChecksumMode,
    /// Out-of-order bytes buffered per TCP direction before a hole is skipped as a gap.
    #[arg(long, value_name = "BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    max_flow_buffer: u64,
    /// Out-of-order bytes buffered over all flows.
    #[arg(long, value_name = "BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    max_total_buffer: u64,
    /// TCP flows tracked at once; the least recently active are evicted beyond it.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = parse_count, allow_negative_numbers = true)]
    max_flows: usize,
    /// A TCP flow silent this long (capture time) is closed.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_positive_duration)]
    idle_timeout: Duration,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Frames are put back in time order within this window (a capture on several
    /// interfaces interleaves them a few ms out of order); frames later than it are
    /// counted and still used. 0 = file order.
    #[arg(long, value_name = "DURATION", default_value_t = default_reorder_window())]
    reorder_window: humantime::Duration,
}

#[derive(Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// A PING not answered within this time is a timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,
    /// PINGs of one (poller, receiver) pair awaiting an answer; the oldest is evicted beyond it.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = parse_count, allow_negative_numbers = true)]
    max_outstanding: usize,
    /// Write one row per transaction to FILE (`-` = standard output).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Print the summary as one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Split the flows across N threads (by host pair; one matcher). The same
    /// transactions as one thread; the flow caps then apply per thread. Needs files
    /// (not standard input). 0 = one per core.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_threads, allow_negative_numbers = true)]
    threads: usize,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct MessagesArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// One JSON object per line instead of text (full peer IDs, every JIM field).
    #[arg(long)]
    json: bool,
    /// Full peer and pipe IDs instead of `uuid-…ab12`.
    #[arg(long)]
    wide: bool,
}

#[derive(Args)]
struct ReportArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// Directory the figures and index.html are written to (created if needed).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// A PING not answered within this time is a timeout (captures only; a CSV's
    /// timeouts are what its rows say).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,
    /// PINGs of one (poller, receiver) pair awaiting an answer; the oldest is evicted beyond it.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = parse_count, allow_negative_numbers = true)]
    max_outstanding: usize,
    /// Logarithmic RTT axis in the time series.
    #[arg(long)]
    log: bool,
    /// Also one distribution panel per (poller, receiver) pair (distribution-pairs.svg).
    #[arg(long)]
    per_pair: bool,
    /// PNG versions of the figures too.
    #[arg(long)]
    png: bool,
    /// A TOML column map for transaction CSVs in another format (column names, units,
    /// status words; see docs/formats.md).
    #[arg(long, value_name = "TOML")]
    map: Option<PathBuf>,
}

/// The exit statuses, defined here only; README "Exit status" and `--help` show the
/// same table.
mod exit {
    /// Everything read to its end (and, for `validate`, every bound held).
    pub const OK: u8 = 0;
    /// Nothing was reported: an input missing, unreadable or not a capture, an output
    /// that cannot be written, a bad configuration file.
    pub const ERROR: u8 = 1;
    /// A bad command line (clap's own code, kept for our value checks too).
    pub const USAGE: u8 = 2;
    /// `validate`: the comparison ran and a bound was broken.
    pub const BOUND_BROKEN: u8 = 3;
    /// Some input is damaged (truncated, corrupt) after a readable start: the report
    /// covers everything read before the damage; stderr names the file and offset.
    pub const DAMAGED: u8 = 4;
}

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  error, nothing reported (input missing, unreadable or not a capture; output not writable)
  2  bad command line
  3  validate: a bound was broken
  4  damaged input: the report covers what was read before the damage (stderr says where)";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version with exit 0 and its usage errors with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        // `observer ... | head` closes the pipe early: that is the reader's choice,
        // not an error (as with any Unix filter).
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("observer: error: {}", error_line(&e));
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The error and its causes on one line. Many library errors already print their
/// source (`cannot open: {source}`); printing the chain as well would repeat the OS
/// message, so a cause already contained in the text so far is left out.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
            || cause
                .downcast_ref::<observer::report::ReportError>()
                .is_some_and(|r| matches!(r, observer::report::ReportError::Io(io) if io.kind() == io::ErrorKind::BrokenPipe))
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal who has not asked for none
    // (https://no-color.org: any non-empty NO_COLOR). tracing-subscriber draws the
    // colours and clap's messages decide for themselves (anstream, same rules); this one
    // condition is all that is left, so no colour-detection crate.
    let colour = io::IsTerminal::is_terminal(&io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(io::stderr)
        .with_target(false)
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => analyze(args),
        Command::Messages(args) => messages(args),
        Command::Live(args) => live(args),
        Command::Report(args) => report_cmd(args),
        Command::Peer(args) => peer(args),
        Command::Validate(args) => validate(args),
    }
}

fn pipeline_config(inputs: &Inputs) -> PipelineConfig {
    let mut cfg = PipelineConfig {
        ports: inputs.ports.clone(),
        ..PipelineConfig::default()
    };
    cfg.stream.max_message = inputs.max_message;
    cfg.packet.checksums = inputs.checksums;
    cfg.jim.max_document = usize::try_from(inputs.max_document).unwrap_or(usize::MAX);
    cfg.flows.max_flow_buffer = usize::try_from(inputs.max_flow_buffer).unwrap_or(usize::MAX);
    cfg.flows.max_total_buffer = usize::try_from(inputs.max_total_buffer).unwrap_or(usize::MAX);
    cfg.flows.max_flows = inputs.max_flows.max(1);
    cfg.flows.idle_timeout_ns = duration_ns(inputs.idle_timeout);
    cfg.reorder.window_ns = duration_ns(*inputs.reorder_window);
    cfg
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// [`exit::OK`] when every input was read to its end, else [`exit::DAMAGED`].
fn exit_for(analysis: &Analysis) -> ExitCode {
    if analysis.damaged() {
        for input in &analysis.inputs {
            if let Some(e) = &input.error {
                eprintln!(
                    "observer: warning: {e} (report covers the {} frames read before it)",
                    input.frames
                );
            }
        }
        ExitCode::from(exit::DAMAGED)
    } else {
        ExitCode::from(exit::OK)
    }
}

/// An input that gave nothing before its error (missing, not a capture) is an error,
/// not a damaged input: the report would silently lack that whole file.
fn nothing_read(analysis: &Analysis) -> Result<()> {
    let errors: Vec<String> = analysis
        .inputs
        .iter()
        .filter(|i| i.frames == 0)
        .filter_map(|i| i.error.clone())
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Checks every input before anything is written, so that a missing or wrong second
/// file stops the run instead of leaving a CSV or report of the first one alone.
/// Pipes and devices are left to the analysis: opening them here would consume them.
fn check_inputs(files: &[PathBuf]) -> Result<()> {
    if files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        bail!("standard input (-) can be given only once");
    }
    for f in files.iter().filter(|f| f.as_os_str() != "-") {
        let plain = std::fs::metadata(f).map_or(true, |m| m.is_file() || m.is_dir());
        if plain {
            observer::capture::CaptureReader::open(f)?;
        }
    }
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> Result<ExitCode> {
    check_inputs(&args.inputs.files)?;
    let mut cfg = pipeline_config(&args.inputs);
    cfg.matcher.timeout_ns = duration_ns(args.timeout);
    cfg.matcher.max_outstanding_per_pair = args.max_outstanding.max(1);
    // Transactions are written and summarised as they come, never all kept: a
    // multi-gigabyte capture costs the memory of what is in flight.
    let mut csv = match &args.csv {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(TransactionCsvWriter::new(Box::new(
            io::BufWriter::new(io::stdout()),
        )
            as Box<dyn Write>)?),
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Some(TransactionCsvWriter::new(
                Box::new(io::BufWriter::new(file)) as Box<dyn Write>,
            )?)
        }
    };
    let mut csv_error = None;
    let store = match args.store.config("") {
        Some(c) => Some(observer::store::ClickHouseSink::start(c)?),
        None => None,
    };
    let mut store_error = None;
    let mut builder = SummaryBuilder::default();
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let from_stdin = args.inputs.files.iter().any(|f| f.as_os_str() == "-");
    if threads > 1 && from_stdin {
        tracing::warn!("--threads needs files: standard input is analysed on one thread");
    }
    let mut on_transaction = |t: observer::transaction::Transaction| {
        builder.add(&t);
        if let Some(w) = &mut csv {
            if let Err(e) = w.write(&t) {
                csv_error.get_or_insert(e);
                csv = None;
            }
        }
        if let Some(s) = &store {
            if let Err(e) = s.push(&t) {
                store_error.get_or_insert(e);
            }
        }
    };
    let progress = !args.inputs.no_progress;
    let analysis = if threads > 1 && !from_stdin {
        runtime::analyze_parallel(
            &args.inputs.files,
            cfg,
            threads,
            progress,
            &mut on_transaction,
        )
    } else {
        runtime::analyze_each(&args.inputs.files, cfg, progress, &mut on_transaction)
    };
    if let Some(e) = csv_error {
        return Err(e.into());
    }
    if let Some(mut w) = csv {
        w.flush()?;
    }
    if let Some(e) = store_error {
        // The sink thread stopped: its own error says why.
        let why = store.map(|s| s.finish());
        return Err(match why {
            Some(Err(inner)) => inner.into(),
            _ => e.into(),
        });
    }
    if let Some(s) = store {
        report_store(&s.finish()?, &args.store.clickhouse_spool);
    }
    nothing_read(&analysis)?;
    let result = &analysis.result;
    let summary = builder.finish(&result.matcher, result.duration_ns());
    let csv_to_stdout = args.csv.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let mut out = io::stdout().lock();
    if args.json {
        // Buffered: the pretty printer writes a line at a time, and standard output
        // flushes each one.
        let mut w = io::BufWriter::with_capacity(1 << 16, &mut out);
        report::write_full_json(&mut w, summary, &analysis)?;
        writeln!(w)?;
        w.flush()?;
    } else if !csv_to_stdout {
        write!(out, "{}", report::render_analysis(&summary, &analysis))?;
    }
    out.flush()?;
    Ok(exit_for(&analysis))
}

/// One line on stderr: what reached ClickHouse and what waits in the spool.
fn report_store(s: &observer::store::StoreStats, spool: &std::path::Path) {
    eprintln!(
        "clickhouse: {} transactions stored in {} batches ({} batches found already stored), {} send errors",
        s.records_stored, s.batches_stored, s.batches_already_stored, s.send_errors
    );
    if s.records_rejected > 0 {
        eprintln!(
            "clickhouse: {} transactions refused for their content, set aside in {}.rejected",
            s.records_rejected,
            spool.display()
        );
    }
    if s.records_dropped_busy > 0 {
        eprintln!(
            "clickhouse: {} transactions not stored: the sink was stuck on an unanswering store",
            s.records_dropped_busy
        );
    }
    if s.spool_records > 0 || s.spool_overflow_records > 0 {
        eprintln!(
            "clickhouse: {} transactions wait in the spool {} (sent by the next run using it), {} dropped for a full spool",
            s.spool_records,
            spool.display(),
            s.spool_overflow_records
        );
    }
}

fn messages(args: MessagesArgs) -> Result<ExitCode> {
    check_inputs(&args.inputs.files)?;
    let mut cfg = pipeline_config(&args.inputs);
    cfg.record_messages = true;
    let analysis = runtime::analyze(&args.inputs.files, cfg, !args.inputs.no_progress);
    nothing_read(&analysis)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for m in &analysis.result.messages {
        if args.json {
            serde_json::to_writer(&mut out, m)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", report::message_line(m, args.wide))?;
        }
    }
    out.flush()?;
    Ok(exit_for(&analysis))
}

fn live(args: LiveArgs) -> Result<ExitCode> {
    use observer::runtime::online::{self, CsvRotation, LiveConfig};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let stop = Arc::new(AtomicBool::new(false));
    // The first SIGINT, SIGTERM or SIGHUP ends the run cleanly (records flushed,
    // filters removed within 100 ms); a second one, once that has begun, exits at
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
    let mut cfg = LiveConfig {
        csv: args.csv.clone(),
        csv_rotation: CsvRotation {
            max_bytes: args.csv_rotate_size,
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
        ..LiveConfig::default()
    };
    cfg.pipeline.matcher.timeout_ns = duration_ns(args.timeout);
    cfg.pipeline.reorder.window_ns = duration_ns(*args.reorder_window);
    cfg.pipeline.packet.checksums = args.checksums;
    cfg.pipeline.jim.max_document = usize::try_from(args.max_document).unwrap_or(usize::MAX);
    let source = open_live_source(&args)?;
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
    let summary = &outcome.summary;
    let mut out = io::stdout().lock();
    if args.json {
        let mut json = summary.to_json();
        if let serde_json::Value::Object(map) = &mut json {
            map.insert("jxta".into(), outcome.result.jxta.to_json());
            map.insert(
                "source".into(),
                serde_json::json!({
                    "kind": outcome.source.source,
                    "events": outcome.source.events,
                    "bytes": outcome.source.bytes,
                    "kernel_drops": outcome.source.kernel_drops,
                    "userspace_drops": outcome.source.userspace_drops,
                    "flows_marked": outcome.source.flows_marked,
                    "flow_marks_failed": outcome.source.flow_marks_failed,
                }),
            );
            map.insert("windows".into(), windows_json(&outcome.windows));
        }
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report::table::render(summary))?;
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
            observer::metrics::window::SKETCH_RELATIVE_ERROR * 100.0
        )?;
        if outcome.source.flow_marks_failed > 0 {
            writeln!(
                out,
                "WARNING: {} flows found by content could not be let through the kernel filter: their traffic off the --port list was not seen",
                outcome.source.flow_marks_failed
            )?;
        }
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
        live_report(dir, &args, &outcome, sample, sampled_out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Transactions a live run with `--report` keeps for the figures (about 30 MB at most);
/// the summary and tables always cover the whole run.
const LIVE_REPORT_SAMPLE: usize = 100_000;

/// The rolling windows of a live run, with the error bound of their percentiles.
fn windows_json(windows: &[(&str, observer::metrics::window::WindowStats)]) -> serde_json::Value {
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
        serde_json::json!(observer::metrics::window::SKETCH_RELATIVE_ERROR),
    );
    serde_json::Value::Object(map)
}

/// The figures of a live run, drawn from the same data `observer report` uses.
fn live_report(
    dir: &std::path::Path,
    args: &LiveArgs,
    outcome: &observer::runtime::online::LiveOutcome,
    transactions: Vec<observer::transaction::Transaction>,
    left_out: u64,
) -> Result<()> {
    use observer::report::figures::{self, InputMeta, Meta, Options, ReportData};
    let r = &outcome.result;
    let summary = &outcome.summary;
    let data = ReportData {
        transactions,
        summary: summary.clone(),
        timeout_ns: duration_ns(args.timeout),
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
            anomalies: [
                ("kernel drops", outcome.source.kernel_drops),
                ("user-space drops", outcome.source.userspace_drops),
                ("TCP gaps", r.flows.reassembly.gaps),
                ("transactions left out of the figures", left_out),
            ]
            .into_iter()
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

fn open_live_source(args: &LiveArgs) -> Result<observer::runtime::online::LiveSource> {
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
fn open_ebpf(args: &LiveArgs) -> Result<observer::runtime::online::LiveSource> {
    let ports = if args.ports.is_empty() {
        vec![9701, 9700]
    } else {
        args.ports.clone()
    };
    let tap = observer::live::ebpf::EbpfTap::attach(&observer::live::ebpf::TapConfig {
        interfaces: args.interfaces.clone(),
        ports,
    })?;
    Ok(observer::runtime::online::LiveSource::Ebpf(Box::new(tap)))
}

#[cfg(not(target_os = "linux"))]
fn open_ebpf(_args: &LiveArgs) -> Result<observer::runtime::online::LiveSource> {
    bail!("the eBPF source exists only on Linux")
}

#[cfg(feature = "pcap")]
fn open_pcap(args: &LiveArgs) -> Result<observer::runtime::online::LiveSource> {
    // libpcap's filter cannot follow flows recognised by content, so it passes all TCP
    // and UDP unless ports were given.
    let filter = if args.ports.is_empty() {
        "tcp or udp".to_string()
    } else {
        let ports: Vec<String> = args.ports.iter().map(|p| format!("port {p}")).collect();
        format!("(tcp or udp) and ({})", ports.join(" or "))
    };
    let source = observer::live::pcap::PcapSource::open(&args.interfaces, Some(&filter))?;
    Ok(observer::runtime::online::LiveSource::Pcap(source))
}

#[cfg(not(feature = "pcap"))]
fn open_pcap(_args: &LiveArgs) -> Result<observer::runtime::online::LiveSource> {
    Err(observer::live::LiveError::NotBuilt("pcap").into())
}

/// Whether `path` is a transactions CSV (`analyze --csv`) rather than a capture: by
/// extension, else by its first bytes (the CSV header).
fn is_transactions_csv(path: &std::path::Path) -> bool {
    if path.as_os_str() == "-" {
        return false;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return true;
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"start_unix_ns,")
}

/// The command line, shell-quoted where needed, for the report page.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn report_cmd(args: ReportArgs) -> Result<ExitCode> {
    use observer::report::figures::{self, InputMeta, Options, ReportData};
    // A column map says the inputs are CSVs whatever their header.
    let csv: Vec<bool> = args
        .inputs
        .files
        .iter()
        .map(|f| args.map.is_some() || is_transactions_csv(f))
        .collect();
    let map = match &args.map {
        Some(p) => report::ColumnMap::load(p)?,
        None => report::ColumnMap::default(),
    };
    let command = command_line();
    let mut code = ExitCode::SUCCESS;
    let data = if csv.iter().all(|c| *c) {
        let mut txs = Vec::new();
        let mut inputs = Vec::new();
        for path in &args.inputs.files {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let t: Vec<_> = report::read_records_csv(&bytes[..], &map)
                .with_context(|| format!("{}", path.display()))?
                .into_iter()
                .map(|r| r.tx)
                .collect();
            inputs.push(InputMeta {
                name: path.display().to_string(),
                format: format!("transactions CSV, {} records", t.len()),
                frames: None,
                bytes: bytes.len() as u64,
                error: None,
            });
            txs.extend(t);
        }
        ReportData::from_csv(txs, inputs, duration_ns(args.timeout), &command)
    } else if csv.iter().any(|c| *c) {
        bail!("give either captures or transaction CSV files, not both");
    } else {
        check_inputs(&args.inputs.files)?;
        let mut cfg = pipeline_config(&args.inputs);
        cfg.matcher.timeout_ns = duration_ns(args.timeout);
        cfg.matcher.max_outstanding_per_pair = args.max_outstanding.max(1);
        let analysis = runtime::analyze(&args.inputs.files, cfg, !args.inputs.no_progress);
        // No figures of nothing: an unusable input is an error, as for `analyze`.
        nothing_read(&analysis)?;
        code = exit_for(&analysis);
        ReportData::from_analysis(analysis, duration_ns(args.timeout), &command)
    };
    let opts = Options {
        log: args.log,
        per_pair: args.per_pair,
        png: args.png,
    };
    let written = figures::write_all(&data, &args.output, &opts)?;
    let mut out = io::stdout().lock();
    for f in &written.files {
        writeln!(out, "{}", f.display())?;
    }
    out.flush()?;
    Ok(code)
}

#[derive(Args)]
struct PeerArgs {
    /// This peer's (user's) name.
    #[arg(long)]
    name: String,
    /// This peer's JXTA peer ID (default: derived from the name).
    #[arg(long, value_name = "URN")]
    peer_id: Option<String>,
    /// Address to listen on for JXTA TCP connections.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9701")]
    listen: std::net::SocketAddr,
    /// A buddy to poll: NAME=IP:PORT[,PEER-ID] (repeatable; the peer ID defaults to
    /// the one derived from the name).
    #[arg(long = "buddy", value_name = "NAME=ADDR")]
    buddies: Vec<String>,
    /// Buddy list in TOML ([[buddy]] name, address, optional peer_id).
    #[arg(long, value_name = "FILE")]
    buddies_file: Option<PathBuf>,
    /// Time between two PINGs to each buddy.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    interval: Duration,
    /// A PING unanswered this long is recorded as a timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    timeout: Duration,
    /// Emulate unmodified JIM: no <correlator> element (the peer still measures itself).
    #[arg(long)]
    no_correlator: bool,
    /// Delay before each PONG: fixed:200ms, uniform:100ms,900ms, normal:850ms,300ms.
    #[arg(long, value_name = "DIST", default_value = "none")]
    reply_delay: String,
    /// Initial presence state (online, busy, away, offline).
    #[arg(long, value_name = "STATE", default_value = "online")]
    state: String,
    /// Change state at a time after start: `15s=busy` (repeatable; scripted scenarios).
    #[arg(long = "state-at", value_name = "TIME=STATE")]
    state_at: Vec<String>,
    /// Write every finished transaction to FILE in the observer's transaction CSV format.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Management HTTP endpoint (/metrics, /records, /state, /message); `off` disables it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9801")]
    management: String,
    /// Bearer token for the management endpoint; required when it is not on loopback.
    /// On the command line it is visible to every user (`ps`): prefer --token-file or
    /// the environment.
    #[arg(long, env = "OBSERVER_PEER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from the first line of FILE (keep it mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Stop cleanly (stop polling, wait for due PONGs, flush) after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Transactions outstanding at once (all buddies together).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = parse_count, allow_negative_numbers = true)]
    pool_size: usize,
    /// Largest JXTA message accepted from the network (larger closes the connection).
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_bytes)]
    max_message: u64,
    /// Do not read control commands (`state busy`, `msg bob hi`) from standard input.
    #[arg(long)]
    no_stdin: bool,
}

fn peer(args: PeerArgs) -> Result<ExitCode> {
    use observer::peer::{config, PeerConfig};
    let mut cfg = PeerConfig::new(&args.name);
    if let Some(id) = &args.peer_id {
        cfg.peer_id = observer::jxta::PeerId::parse(id)
            .with_context(|| format!("--peer-id {id:?} is not a peer ID"))?;
    }
    cfg.listen = args.listen;
    if let Some(f) = &args.buddies_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        cfg.buddies =
            config::parse_buddy_toml(&text).with_context(|| format!("in {}", f.display()))?;
    }
    for b in &args.buddies {
        cfg.buddies.push(config::parse_buddy_arg(b)?);
    }
    cfg.interval = args.interval;
    cfg.timeout = args.timeout;
    cfg.correlator = !args.no_correlator;
    cfg.reply_delay = config::Delay::parse(&args.reply_delay)?;
    cfg.csv = args.csv;
    cfg.management = match args.management.as_str() {
        "off" | "none" => None,
        m => Some(
            m.parse()
                .with_context(|| format!("--management {m:?} is not IP:PORT or off"))?,
        ),
    };
    cfg.token = match &args.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => {
            if args.token.is_some() && token_on_command_line() {
                tracing::warn!(
                    "--token on the command line can be read by every user (ps, /proc); use --token-file or OBSERVER_PEER_TOKEN"
                );
            }
            args.token
        }
    };
    cfg.duration = args.duration;
    cfg.pool_size = args.pool_size.max(1);
    cfg.max_message = args.max_message;
    cfg.stdin_commands = !args.no_stdin;
    let state = observer::jim::Status::parse(&args.state)
        .with_context(|| format!("--state {:?}: online, busy, away or offline", args.state))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    cfg.initial_state = state;
    for item in &args.state_at {
        let (at, st) = item
            .split_once('=')
            .with_context(|| format!("--state-at {item:?}: expected TIME=STATE, e.g. 15s=busy"))?;
        let at = humantime::parse_duration(at)
            .with_context(|| format!("--state-at {item:?}: bad time"))?;
        let st = observer::jim::Status::parse(st)
            .with_context(|| format!("--state-at {item:?}: online, busy, away or offline"))?;
        cfg.state_schedule.push((at, st));
    }
    let shared = rt.block_on(observer::peer::run(cfg))?;
    let (stats, arm) = shared.arm.snapshot();
    let ok: u64 = stats
        .iter()
        .map(|s| s.by_status.get("ok").copied().unwrap_or(0))
        .sum();
    let timeout: u64 = stats
        .iter()
        .map(|s| s.by_status.get("timeout").copied().unwrap_or(0))
        .sum();
    eprintln!(
        "observer peer {}: {ok} ok, {timeout} timeout, {} CSV records; counters {:?}; bad input {:?}",
        shared.cfg.name,
        arm.csv_records,
        shared.counters(),
        shared.bad_inputs()
    );
    // Tasks still blocked on standard input must not keep the process alive.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
struct ValidateArgs {
    /// Transactions found by the observer (`observer analyze --csv`).
    #[arg(long, value_name = "CSV")]
    passive: PathBuf,
    /// The peers' own records (`observer peer --csv`, or any instrumented peer's log
    /// with `--map`), one file per peer.
    #[arg(long, value_name = "CSV", num_args = 1.., required = true)]
    active: Vec<PathBuf>,
    /// A TOML column map for the active logs when they are not in our format (column
    /// names, units, status words; see docs/formats.md).
    #[arg(long, value_name = "TOML")]
    map: Option<PathBuf>,
    /// Largest number (N) or share (N%) of active transactions the observer may miss.
    #[arg(long, value_name = "N|N%")]
    max_miss: Option<String>,
    /// Largest |application - passive| RTT difference allowed (e.g. 5ms).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_delta: Option<Duration>,
    /// Largest |socket - passive| RTT difference allowed (the peers' kernel timestamps;
    /// every joined transaction must then have them).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_socket_delta: Option<Duration>,
    /// Largest 99th percentile of |socket - passive| allowed.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_socket_p99: Option<Duration>,
    /// Without a correlator, transactions are joined by pair and the nearest start time
    /// within this window.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn validate(args: ValidateArgs) -> Result<ExitCode> {
    use observer::validate as v;
    let map = match &args.map {
        Some(p) => report::ColumnMap::load(p).context("--map")?,
        None => report::ColumnMap::default(),
    };
    let passive: Vec<_> = report::read_records_file(&args.passive, &report::ColumnMap::default())
        .context("--passive")?
        .into_iter()
        .map(|r| r.tx)
        .collect();
    let mut active = Vec::new();
    for p in &args.active {
        active.extend(report::read_records_file(p, &map).context("--active")?);
    }
    let result = v::validate(&active, &passive, duration_ns(args.window));
    let bounds = v::Bounds {
        max_miss: args
            .max_miss
            .as_deref()
            .map(v::MissBound::parse)
            .transpose()
            .context("--max-miss")?,
        max_delta_ns: args.max_delta.map(duration_ns),
        max_socket_delta_ns: args.max_socket_delta.map(duration_ns),
        max_socket_p99_ns: args.max_socket_p99.map(duration_ns),
    };
    let broken = result.check(&bounds);
    let mut out = io::stdout().lock();
    if args.json {
        let mut j = result.to_json();
        j["bounds_broken"] = serde_json::json!(broken);
        serde_json::to_writer_pretty(&mut out, &j)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", result.render())?;
        for b in &broken {
            writeln!(out, "BOUND BROKEN: {b}")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::from(if broken.is_empty() {
        exit::OK
    } else {
        exit::BOUND_BROKEN
    }))
}

/// A duration that must be longer than zero (a zero timeout or interval would make
/// every PING a timeout, or poll without pause).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); e.g. 500ms, 10s, 2m"))?;
    if d.is_zero() {
        return Err("must be longer than 0 (e.g. 500ms, 10s)".into());
    }
    Ok(d)
}

/// A count of at least 1 (a cap of 0 would keep nothing).
fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("{n} is out of range: give 1 or more")),
        Err(_) => Err(format!("{s:?} is not a whole number (give 1 or more)")),
    }
}

/// Threads: 0 means one per core.
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 0 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!(
            "{n} is out of range: give 0 (one per core) or a number of threads"
        )),
        Err(_) => Err(format!(
            "{s:?} is not a whole number (0 = one per core, or 1, 2, ...)"
        )),
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (1..=65535).contains(&n) => {
            u16::try_from(n).map_err(|_| format!("{n} is not a port"))
        }
        Ok(n) => Err(format!("{n} is out of range: a port is 1 to 65535")),
        Err(_) => Err(format!("{s:?} is not a port number (1 to 65535)")),
    }
}

/// Parses sizes like `4096`, `64KiB`, `16MiB`, `1GiB`, `10MB`, `1.5 GiB` (parse-size:
/// KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024, units in any case).
fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s.trim()).map_err(|e| match e {
        parse_size::Error::PosOverflow => format!("{s:?} is too large"),
        _ => format!("{s:?} is not a size: a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 4096, 64KiB, 16MiB"),
    })
}

/// Whether `--token` was given in argv (rather than through the environment).
fn token_on_command_line() -> bool {
    std::env::args_os().any(|a| {
        let a = a.to_string_lossy();
        a == "--token" || a.starts_with("--token=")
    })
}

/// The first line of a token file; warns when others can read the file.
fn read_token_file(path: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the token file {} can be read by other users (chmod 600 it)",
                path.display()
            );
        }
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("64kib"), Ok(64 << 10));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert!(parse_bytes("x").is_err());
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("16XB").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
    }
}
