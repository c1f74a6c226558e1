//! The `observer` command: a thin layer over the library (argument parsing, output
//! selection, exit codes). Each subcommand lives in its own module under `cli/`.

mod cli;

use std::io;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cli::{analyze, exit, explain, live, messages, peer, report, validate};

#[derive(Parser, Debug)]
#[command(
    name = "observer",
    version,
    about = "Passive measurement of the JIM presence service (JXTA PING/PONG round trips) from the wire",
    after_help = cli::EXIT_STATUS_HELP
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Analyse capture files: PING/PONG transactions, RTT statistics, the RTT matrix,
    /// presence states, correlator overhead.
    Analyze(analyze::AnalyzeArgs),
    /// List every decoded JXTA message: what it is (PING, PONG, MESSAGE with names and
    /// correlator, or other), addressing, elements (--wide: full IDs; --json: one JSON
    /// object per line).
    Messages(messages::MessagesArgs),
    /// The slowest answered transactions of captures and the first timeouts, one line
    /// each: what the wire shows happened to them (retransmissions, a new connection,
    /// queueing, a relay, a route change, a slow receiver; docs/explain.md).
    Explain(explain::ExplainArgs),
    /// Capture live on interfaces and report continuously (eBPF tap or libpcap).
    Live(live::LiveArgs),
    /// Figures (SVG, and PNG with --png) and one self-contained index.html, from
    /// captures, from a transactions CSV written by `analyze --csv`, or from the
    /// ClickHouse store (--clickhouse: every gateway's views, each transaction once).
    #[command(mut_arg("files", |a| a.required(false).required_unless_present("clickhouse")))]
    Report(report::ReportArgs),
    /// Run an instrumented JIM reference peer (JXTA TCP transport, PING/PONG presence,
    /// MESSAGE documents) that records its own round trips in the transaction CSV.
    Peer(peer::PeerArgs),
    /// Compare passive transactions (from `analyze --csv`) with the peers' own records.
    Validate(validate::ValidateArgs),
}

/// jemalloc instead of glibc's malloc: documents are built on a shard's thread and freed on
/// the matcher's, which glibc's per-thread arenas make slow (docs/performance.md, "The
/// allocator"). `--no-default-features` keeps glibc's, for heaptrack and other tools that
/// wrap `malloc`.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start: freed pages go back to the kernel after
/// 100 ms instead of 10 s, which keeps peak RSS where glibc's malloc had it on long files.
/// `_RJEM_MALLOC_CONF` in the environment still overrides them.
///
/// jemalloc reads this symbol as a `const char *`: a `&[u8; N]` is that pointer, to bytes
/// that live as long as the program and end with the NUL it needs (the test
/// `jemalloc_reads_its_options` reads the options back).
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_OPTIONS: &[u8; 36] = b"dirty_decay_ms:100,muzzy_decay_ms:0\0";

/// `--threads N`: the reader thread allocates in the calling thread's jemalloc arena, the
/// matcher's. jemalloc purges an arena's freed pages (after `dirty_decay_ms`) only as
/// that arena is used; the reader's seldom is, and kept the old storage of its grown
/// reorder ring resident (8.8 MB of peers10k-1g's two-thread peak: docs/performance.md,
/// stop 33). The matcher's arena is used all the time, and the reader's few large
/// allocations hardly contend with it.
#[cfg(feature = "jemalloc")]
fn reader_in_this_threads_arena() {
    if let Some(arena) = thread_arena() {
        observer_core::engine::parallel::set_reader_start(move || {
            // Failing, the reader keeps an arena of its own, as before.
            let _ = bind_thread_arena(arena);
        });
    }
}

/// The jemalloc arena the calling thread allocates in.
#[cfg(feature = "jemalloc")]
fn thread_arena() -> Option<u32> {
    // SAFETY: `thread.arena` is an `unsigned` in jemalloc (its manual), the type read.
    unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"thread.arena\0") }.ok()
}

/// Has the calling thread allocate in jemalloc's arena `arena`, which must exist.
#[cfg(feature = "jemalloc")]
fn bind_thread_arena(arena: u32) -> tikv_jemalloc_ctl::Result<()> {
    // SAFETY: `thread.arena` is an `unsigned` in jemalloc (its manual), the type written.
    unsafe { tikv_jemalloc_ctl::raw::write::<u32>(b"thread.arena\0", arena) }
}

fn main() -> ExitCode {
    #[cfg(feature = "jemalloc")]
    reader_in_this_threads_arena();
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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Messages(args) => messages::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Live(args) => live::run(args),
        Command::Report(args) => report::run(args),
        Command::Peer(args) => peer::run(args),
        Command::Validate(args) => validate::run(args),
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

#[cfg(test)]
mod tests {
    use super::*;
    use observer::runtime::PipelineConfig;

    fn parse(args: &[&str]) -> Command {
        let argv = std::iter::once("observer").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    /// The options in `JEMALLOC_OPTIONS` reach jemalloc (a wrong symbol name or a missing NUL
    /// would leave its defaults, 10,000 ms, or read past the bytes).
    #[cfg(feature = "jemalloc")]
    #[test]
    fn jemalloc_reads_its_options() {
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            // The environment overrides the symbol, by design: nothing to check here.
            eprintln!("SKIPPED: _RJEM_MALLOC_CONF is set, jemalloc's options are its");
            return;
        }
        // SAFETY: both options are `ssize_t` in jemalloc (its manual), the type read here.
        let read = |name: &[u8]| match unsafe { tikv_jemalloc_ctl::raw::read::<isize>(name) } {
            Ok(v) => v,
            Err(e) => panic!("{}: {e}", String::from_utf8_lossy(name)),
        };
        assert_eq!(read(b"opt.dirty_decay_ms\0"), 100);
        assert_eq!(read(b"opt.muzzy_decay_ms\0"), 0);
    }

    /// A thread bound to another thread's arena allocates there (a wrong name or type
    /// for `thread.arena` would leave the reader in its own, silently).
    #[cfg(feature = "jemalloc")]
    #[test]
    fn a_thread_binds_to_another_threads_arena() {
        let here = thread_arena().expect("thread.arena");
        // SAFETY: `arenas.create` gives the new arena's index, an `unsigned` (its manual).
        let other = unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"arenas.create\0") }
            .expect("arenas.create");
        assert_ne!(other, here);
        let seen = std::thread::spawn(move || {
            bind_thread_arena(other).expect("binding");
            let first = thread_arena();
            bind_thread_arena(here).expect("binding");
            [first, thread_arena()]
        })
        .join()
        .expect("thread");
        assert_eq!(seen, [Some(other), Some(here)]);
    }

    /// The decoding configuration a command would run with (no input is opened).
    fn pipeline_of(command: Command) -> PipelineConfig {
        match command {
            Command::Analyze(a) => {
                let mut cfg = a.inputs.pipeline_config();
                a.matching.apply(&mut cfg);
                cfg
            }
            Command::Messages(a) => a.inputs.pipeline_config(),
            Command::Report(a) => {
                let mut cfg = a.inputs.pipeline_config();
                a.matching.apply(&mut cfg);
                cfg
            }
            Command::Live(a) => live::live_config(&a).pipeline,
            other => panic!("{other:?} does not decode"),
        }
    }

    fn assert_same(got: &PipelineConfig, want: &PipelineConfig, what: &str) {
        assert_eq!(got.ports, want.ports, "{what}");
        assert_eq!(got.packet, want.packet, "{what}");
        assert_eq!(got.stream, want.stream, "{what}");
        assert_eq!(got.matcher, want.matcher, "{what}");
        assert_eq!(got.reorder, want.reorder, "{what}");
        assert_eq!(got.jim.max_document, want.jim.max_document, "{what}");
        let (g, w) = (&got.flows, &want.flows);
        assert_eq!(
            (
                g.max_flow_buffer,
                g.max_total_buffer,
                g.max_flows,
                g.idle_timeout_ns
            ),
            (
                w.max_flow_buffer,
                w.max_total_buffer,
                w.max_flows,
                w.idle_timeout_ns
            ),
            "{what}"
        );
    }

    const DECODING: [&[&str]; 4] = [
        &["analyze", "x.pcap"],
        &["messages", "x.pcap"],
        &["report", "x.pcap", "-o", "out"],
        &["live", "-i", "lo"],
    ];

    /// No option given: every command decodes with the library's own defaults (clap
    /// takes them from the library's constants, so a changed default changes both).
    #[test]
    fn defaults_are_the_library_defaults() {
        for args in DECODING {
            // A live run's own defaults differ where a live source does (its reorder
            // window: every held frame is a copy there).
            let want = if args[0] == "live" {
                observer::runtime::online::LiveConfig::default().pipeline
            } else {
                PipelineConfig::default()
            };
            assert_same(&pipeline_of(parse(args)), &want, args[0]);
        }
        let Command::Peer(p) = parse(&["peer", "--name", "alice"]) else {
            panic!("peer");
        };
        let got = cli::peer::peer_config(p).expect("default peer configuration");
        let want = observer::peer::PeerConfig::new("alice");
        assert_eq!(
            (
                got.listen,
                got.interval,
                got.timeout,
                got.pool_size,
                got.max_message
            ),
            (
                want.listen,
                want.interval,
                want.timeout,
                want.pool_size,
                want.max_message
            )
        );
        assert_eq!(
            got.management,
            Some(observer::peer::config::DEFAULT_MANAGEMENT)
        );
        let Command::Validate(v) = parse(&["validate", "--passive", "p.csv", "--active", "a.csv"])
        else {
            panic!("validate");
        };
        assert_eq!(v.window.ns(), observer::validate::DEFAULT_WINDOW_NS);
    }

    /// Every decoding command, `live` included, takes the whole limits group.
    #[test]
    fn every_decoding_command_takes_the_limits() {
        let limits = [
            "--max-message",
            "64KiB",
            "--max-document",
            "2KiB",
            "--checksums",
            "ignore",
            "--max-flow-buffer",
            "1KiB",
            "--max-total-buffer",
            "3MiB",
            "--max-flows",
            "7",
            "--idle-timeout",
            "5s",
            "--reorder-window",
            "0",
        ];
        for base in DECODING {
            let args: Vec<&str> = base.iter().copied().chain(limits).collect();
            let cfg = pipeline_of(parse(&args));
            let what = base[0];
            assert_eq!(cfg.stream.max_message, 64 << 10, "{what}");
            assert_eq!(cfg.jim.max_document, 2 << 10, "{what}");
            assert_eq!(
                cfg.packet.checksums,
                observer::packet::ChecksumMode::Ignore,
                "{what}"
            );
            assert_eq!(cfg.flows.max_flow_buffer, 1 << 10, "{what}");
            assert_eq!(cfg.flows.max_total_buffer, 3 << 20, "{what}");
            assert_eq!(cfg.flows.max_flows, 7, "{what}");
            assert_eq!(cfg.flows.idle_timeout_ns, 5_000_000_000, "{what}");
            assert_eq!(cfg.reorder.window_ns, 0, "{what}");
        }
        for base in [DECODING[0], DECODING[2], DECODING[3]] {
            let args: Vec<&str> = base
                .iter()
                .copied()
                .chain(["--timeout", "2s", "--max-outstanding", "3"])
                .collect();
            let cfg = pipeline_of(parse(&args));
            assert_eq!(cfg.matcher.timeout_ns, 2_000_000_000, "{}", base[0]);
            assert_eq!(cfg.matcher.max_outstanding_per_pair, 3, "{}", base[0]);
        }
    }
}
