//! Project tasks: `cargo xtask captures` (sample captures and their ground truth).

mod bench;
mod bench_data;
mod bench_live;
mod bench_live_parallel;
mod bench_store;
mod causes;
mod compare;
mod fuzz_seeds;
mod gateways;
mod scenario;
mod soak;
mod wire_captures;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the deterministic sample captures and their ground-truth CSVs.
    Captures {
        /// Output directory.
        #[arg(long, default_value = "captures")]
        out: PathBuf,
    },
    /// Run reference peers in network namespaces behind a gateway, capture on the
    /// gateway, then `observer analyze` and `observer validate` (needs root).
    Scenario {
        /// `pair` (2 peers), `study` (4 peers shaped like the study's figure 3) or
        /// `gateways` (4 peers on two LANs, an observer on each gateway, one ClickHouse)
        /// or `causes` (4 pairs, each with one cause injected: loss, connection resets,
        /// a slow reply, a MESSAGE ahead of the PONG; checked against the attribution).
        name: String,
        /// How long the peers run.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value = "target/scenario")]
        out: PathBuf,
        /// The observer binary (built with `cargo build -p observer` when absent).
        #[arg(long, default_value = "target/debug/observer")]
        observer: PathBuf,
        /// Largest |socket − passive| RTT difference accepted (the peers' kernel
        /// timestamps against the capture; the application difference is reported,
        /// not bounded: it holds the peers' own scheduling delays).
        #[arg(long, default_value = "2ms")]
        max_socket_delta: String,
        /// Largest 99th percentile of |socket − passive| accepted.
        #[arg(long, default_value = "500us")]
        max_socket_p99: String,
        /// Joined transactions whose socket stop a peer may withhold (its PONG read with
        /// bytes behind it, whose timestamp the kernel may have given it: docs/peer.md),
        /// N or N% of them. A reader late by more than the gap to the next message
        /// does that: 1 of ~420 per `study` run under `--stress-cpus 2`.
        #[arg(long, default_value = "2%")]
        max_socket_withheld: String,
        /// Keep this many CPUs busy with `stress-ng --cpu N` while the peers run (the
        /// socket bounds must hold under load).
        #[arg(long, default_value_t = 0)]
        stress_cpus: u32,
        /// Run the peers on loopback instead of namespaces (the fallback where
        /// namespaces are not permitted).
        #[arg(long)]
        loopback: bool,
        /// Also run `observer live --source SOURCE` (ebpf, pcap) on the gateway and
        /// validate its records (`gateways`: gateway B's source; gateway A always uses
        /// the eBPF tap, and B libpcap by default where built).
        #[arg(long, value_name = "SOURCE")]
        live: Option<String>,
    },
    /// The soak test (needs root, tcpreplay): generated traffic with churn (10,000+
    /// distinct pairs, restarts reusing correlators, a peer killed mid-transaction)
    /// replayed again and again faster than real time into two veth pairs, `observer
    /// live -i A -i B --csv` through it; fails unless the CSV holds exactly the truth's
    /// transactions and the observer's RSS stays flat after the warm-up.
    Soak {
        /// How long the replays go on.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Peers in the full mesh (pairs = peers × (peers − 1)).
        #[arg(long, default_value_t = 101)]
        peers: usize,
        /// tcpreplay's speed-up.
        #[arg(long, default_value_t = 2.0)]
        multiplier: f64,
        /// Sets of peer identities replayed in turn; 0: new identities (new pairs)
        /// every replay, as pairs come and go at a gateway.
        #[arg(long, default_value_t = 0)]
        generations: u64,
        /// RSS growth is measured from the end of this warm-up, or of the first cycle
        /// of captures if later.
        #[arg(long, default_value = "60s")]
        warmup: humantime::Duration,
        /// Largest RSS growth accepted after the warm-up, in MiB.
        #[arg(long, default_value_t = 8.0)]
        max_growth_mib: f64,
        /// The observer's `--pair-horizon` (its default, an hour, outlasts a short
        /// soak: give e.g. 60s to see pairs expire within one).
        #[arg(long)]
        pair_horizon: Option<humantime::Duration>,
        /// The live source (ebpf, pcap).
        #[arg(long, default_value = "ebpf")]
        source: String,
        #[arg(long, default_value = "target/soak")]
        out: PathBuf,
        /// Build and run the release binary (the default is the debug build, as the
        /// scenarios use).
        #[arg(long)]
        release: bool,
        /// A command the observer runs under, split at spaces (e.g. `heaptrack -o
        /// /tmp/live` to profile the heap, with `--glibc-malloc`); the RSS is still the
        /// observer's own.
        #[arg(long)]
        observer_wrap: Option<String>,
        /// Build the observer with glibc's malloc instead of jemalloc (its `jemalloc`
        /// feature off): heaptrack and `MALLOC_*` settings see only glibc's.
        #[arg(long)]
        glibc_malloc: bool,
    },
    /// Write the fuzz targets' seed corpora (observer/fuzz/corpus) from the scenarios.
    FuzzSeeds,
    /// Rebuild the kernel tap (observer-ebpf/bpf/tap.bpf.o) with clang.
    BuildEbpf {
        /// Where to write the object (default: the committed one).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Live capture benchmark: tcpreplay --topspeed onto a veth, observer live on the
    /// other end, per source and share of background traffic (needs root, tcpreplay).
    BenchLive {
        /// Simulated seconds of four-peers traffic in the replayed capture.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// Shares of background (non-JXTA) frames, in percent.
        #[arg(long, value_delimiter = ',', default_value = "0,50,90")]
        background: Vec<u32>,
        #[arg(long, value_delimiter = ',', default_value = "ebpf,pcap")]
        sources: Vec<String>,
        #[arg(long, default_value = "target/bench-live")]
        out: PathBuf,
    },
    /// Live eBPF at several replays at once: N captures with distinct peers, pairs and
    /// correlators, N veth pairs, N `tcpreplay --topspeed` started together, one
    /// `observer live --source ebpf` (release) on all N host ends; aggregate frames/s,
    /// drops, transactions against each capture's truth, CPU per JXTA message (needs
    /// root, tcpreplay; takes `--lock` only for the runs).
    BenchLiveParallel {
        /// Replays (captures, veth pairs) at once.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
        replays: u32,
        /// Size of each capture (e.g. 400M).
        #[arg(long, default_value = "400M", value_parser = parse_size)]
        size: u64,
        /// Peers per capture (each capture has its own).
        #[arg(long, default_value_t = 200)]
        peers: u32,
        #[arg(long, default_value_t = 10)]
        buddies: u32,
        /// The receivers' port in the captures: off the observer's defaults (9701,
        /// 9700), so that the content mode finds every flow by its welcome line.
        #[arg(long, default_value_t = 9711)]
        port: u16,
        /// port: `--port` given; content: flows found by content.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "port,content"
        )]
        modes: Vec<bench_live_parallel::Mode>,
        /// Packets per second of each replay, a run per value; 0: `--topspeed`.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        pps: Vec<u64>,
        /// Run the observer under `nice -n` this (e.g. -10).
        #[arg(long, allow_negative_numbers = true)]
        observer_nice: Option<i32>,
        /// The observer's `--ring-buffer` (its default unless given).
        #[arg(long)]
        ring_buffer: Option<String>,
        /// The observer's `--reorder-window` (its default unless given).
        #[arg(long)]
        reorder_window: Option<String>,
        /// Runs of each mode (take the figure from the quietest).
        #[arg(long, default_value_t = 1)]
        runs: u32,
        #[arg(long, default_value = "target/bench-live-parallel")]
        out: PathBuf,
        /// The lock other users of namespaces, veths and the tap share.
        #[arg(long, default_value = "/tmp/observer-live.lock")]
        lock: PathBuf,
    },
    /// Insert rate of the ClickHouse sink into a local server it starts (needs Debian's
    /// clickhouse-server; run optimised: `cargo run --release -p xtask -- bench-store`).
    BenchStore {
        /// Transactions pushed per run.
        #[arg(long, default_value_t = 1_000_000)]
        transactions: u64,
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Rows per insert (the sink's default unless given).
        #[arg(long, default_value_t = observer::store::DEFAULT_BATCH_ROWS)]
        batch_rows: usize,
        #[arg(long, default_value_t = 1000)]
        peers: u32,
        #[arg(long, default_value_t = 10)]
        buddies: u32,
        #[arg(long, default_value = "target/bench-store")]
        out: PathBuf,
    },
    /// Write the benchmark captures (real JXSE 2.5 traffic replicated over many
    /// connections, with optional background traffic) into target/bench-data.
    BenchData {
        /// Only these presets (jxta-0.1g, jxta-1g, jxta-4g, background95-1g,
        /// peers10k-1g, pollers150k); default all. With --size, the name of a custom capture.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[arg(long, default_value = "target/bench-data")]
        out: PathBuf,
        /// A custom capture instead of the presets: target size (e.g. 500M, 2G).
        #[arg(long)]
        size: Option<String>,
        #[arg(long, default_value_t = 200)]
        peers: u32,
        #[arg(long, default_value_t = 10)]
        buddies: u32,
        /// Poll interval of every pair (e.g. 500ms, 10s).
        #[arg(long, default_value = "500ms")]
        interval: String,
        /// Share of the bytes that is background (non-JXTA) traffic, 0 to 0.99.
        #[arg(long, default_value_t = 0.0)]
        background: f64,
        /// Connection set-up with handshake and welcome lines only (no discovery).
        #[arg(long)]
        short_setup: bool,
        /// PING/PONG rounds per connection before the pair reconnects (9: the real
        /// connection replayed whole); default one connection per pair.
        #[arg(long)]
        rounds: Option<u64>,
        /// Spread the pairs' first connections over this time (e.g. 600s) instead of
        /// one poll interval.
        #[arg(long)]
        spread: Option<String>,
        /// Number of the first peer: captures with disjoint peer ranges share no
        /// peer, pair or correlator.
        #[arg(long, default_value_t = 0)]
        first_peer: u32,
        /// The receivers' TCP port.
        #[arg(long, default_value_t = 9701)]
        port: u16,
    },
    /// Run observer (1 and N threads), tshark, tcpdump and cat side by side on the
    /// benchmark captures; medians, ratios and peak RSS as Markdown on stdout and in
    /// docs/performance.md.
    Bench(bench::Args),
    /// Run two observer binaries on the sample captures (and the benchmark captures of
    /// --data) with 1-4 threads and compare their CSV, JSON, tables, message listings
    /// and exit codes byte for byte: a performance change changes no output.
    Compare(compare::Args),
    /// Write a long four-peers capture for benchmarks (and its ground truth beside it).
    BenchCapture {
        /// Simulated seconds of traffic.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        #[arg(long, default_value = "target/bench-four-peers.pcap")]
        out: PathBuf,
    },
}

fn build_ebpf(src: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let status = observer_ebpf::build_command(src, out)
        .status()
        .context("running clang (install Debian's clang and libbpf-dev to rebuild the tap)")?;
    anyhow::ensure!(status.success(), "clang failed ({status})");
    Ok(())
}

/// `100M`, `4G`, `1048576`: binary multiples (the `parse-size` crate in binary mode).
fn parse_size(s: &str) -> Result<u64> {
    ::parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .with_context(|| format!("size {s:?}"))
}

/// The release observer the live benchmarks measure (with libpcap when its headers
/// are there, so that `--source pcap` works).
fn build_release_observer(root: &std::path::Path) -> Result<PathBuf> {
    let mut args = vec![
        "build",
        "-q",
        "--release",
        "-p",
        "observer",
        "--bin",
        "observer",
    ];
    if pcap_headers() {
        args.extend(["--features", "pcap"]);
    }
    let status = std::process::Command::new("cargo")
        .args(&args)
        .current_dir(root)
        .status()?;
    anyhow::ensure!(status.success(), "building the observer failed");
    Ok(root.join("target/release/observer"))
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Captures { out } => {
            let out = workspace_root().join(out);
            let mut written = observer::synth::write_samples(&out)
                .with_context(|| format!("writing samples into {}", out.display()))?;
            let real = workspace_root().join("captures/jxse25-pingpong.pcap");
            written.extend(
                wire_captures::write(&real, &out)
                    .with_context(|| format!("writing crafted captures into {}", out.display()))?,
            );
            for path in written {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                println!("{:>9} {}", size, path.display());
            }
        }
        Command::Scenario {
            name,
            seconds,
            out,
            observer,
            max_socket_delta,
            max_socket_p99,
            max_socket_withheld,
            stress_cpus,
            loopback,
            live,
        } => {
            let root = workspace_root();
            let observer = root.join(observer);
            // Always (re)build: a stale binary would validate old code.
            {
                // With the libpcap source when its headers are there (scripts/test
                // installs them), so that `--live pcap` works.
                let mut args = vec!["build", "-q", "-p", "observer", "--bin", "observer"];
                if pcap_headers() {
                    args.extend(["--features", "pcap"]);
                }
                let status = std::process::Command::new("cargo")
                    .args(&args)
                    .current_dir(&root)
                    .status()?;
                anyhow::ensure!(status.success(), "building the observer failed");
            }
            let out = root.join(out).join(&name);
            scenario::run(&scenario::Options {
                scenario: name,
                seconds,
                out,
                observer,
                max_socket_delta,
                max_socket_p99,
                max_socket_withheld,
                stress_cpus,
                loopback,
                live,
            })?;
        }
        Command::BenchLive {
            seconds,
            background,
            sources,
            out,
        } => {
            let root = workspace_root();
            build_release_observer(&root)?;
            bench_live::run(&bench_live::Options {
                seconds,
                backgrounds: background,
                sources,
                observer: root.join("target/release/observer"),
                out: root.join(out),
            })?;
        }
        Command::BenchLiveParallel {
            replays,
            size,
            peers,
            buddies,
            port,
            modes,
            pps,
            observer_nice,
            ring_buffer,
            reorder_window,
            runs,
            out,
            lock,
        } => {
            let root = workspace_root();
            let observer = build_release_observer(&root)?;
            bench_live_parallel::run(&bench_live_parallel::Options {
                replays,
                size,
                peers,
                buddies,
                port,
                modes,
                pps,
                observer_nice,
                ring_buffer,
                reorder_window,
                runs,
                observer,
                out: root.join(out),
                root,
                lock,
            })?;
        }
        Command::Soak {
            minutes,
            peers,
            multiplier,
            generations,
            warmup,
            max_growth_mib,
            pair_horizon,
            source,
            out,
            release,
            observer_wrap,
            glibc_malloc,
        } => {
            let root = workspace_root();
            // Always (re)build: a stale binary would soak old code.
            let mut args = vec!["build", "-q", "-p", "observer", "--bin", "observer"];
            if release {
                args.push("--release");
            }
            if glibc_malloc {
                args.push("--no-default-features");
            }
            if source == "pcap" {
                args.extend(["--features", "pcap"]);
            }
            let status = std::process::Command::new("cargo")
                .args(&args)
                .current_dir(&root)
                .status()?;
            anyhow::ensure!(status.success(), "building the observer failed");
            let profile = if release { "release" } else { "debug" };
            soak::run(&soak::Options {
                minutes,
                peers,
                multiplier,
                warmup: *warmup,
                generations,
                max_growth_mib,
                pair_horizon: pair_horizon.map(|d| *d),
                wrap: observer_wrap
                    .map(|w| w.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
                source,
                observer: root.join("target").join(profile).join("observer"),
                out: root.join(out),
            })?;
        }
        Command::BenchStore {
            transactions,
            runs,
            batch_rows,
            peers,
            buddies,
            out,
        } => {
            let out = workspace_root().join(out);
            bench_store::run(&bench_store::Options {
                transactions,
                runs,
                batch_rows,
                peers,
                buddies,
                out,
            })?;
        }
        Command::FuzzSeeds => {
            fuzz_seeds::write(&workspace_root())?;
        }
        Command::BuildEbpf { out } => {
            let root = workspace_root();
            let dir = root.join("observer-ebpf/bpf");
            let out = out.unwrap_or_else(|| dir.join("tap.bpf.o"));
            build_ebpf(&dir.join("tap.bpf.c"), &out)?;
            println!("{}", out.display());
        }
        Command::BenchData {
            only,
            out,
            size,
            peers,
            buddies,
            interval,
            background,
            short_setup,
            rounds,
            spread,
            first_peer,
            port,
        } => {
            let root = workspace_root();
            let out = root.join(out);
            let specs = match size {
                Some(size) => vec![bench_data::Spec {
                    name: only
                        .first()
                        .cloned()
                        .unwrap_or_else(|| format!("custom-{size}")),
                    size: parse_size(&size)?,
                    peers,
                    buddies,
                    interval_ns: Some(
                        humantime::parse_duration(&interval)
                            .with_context(|| format!("--interval {interval}"))?
                            .as_nanos() as u64,
                    ),
                    seconds: None,
                    background,
                    full_setup: !short_setup,
                    rounds_per_connection: rounds,
                    spread_ns: match spread {
                        Some(s) => Some(
                            humantime::parse_duration(&s)
                                .with_context(|| format!("--spread {s}"))?
                                .as_nanos() as u64,
                        ),
                        None => None,
                    },
                    first_peer,
                    port,
                }],
                None => bench_data::Spec::presets()
                    .into_iter()
                    .filter(|s| only.is_empty() || only.contains(&s.name))
                    .collect(),
            };
            anyhow::ensure!(!specs.is_empty(), "no preset named {only:?}");
            for spec in &specs {
                let t = std::time::Instant::now();
                let w = bench_data::generate(&root, spec, &out)?;
                println!(
                    "{:>11} {} ({} frames, {} connections, {} transactions, {:.0} s, {:.1} s to write)",
                    w.bytes,
                    w.file.display(),
                    w.frames,
                    w.connections,
                    w.transactions,
                    w.duration_s,
                    t.elapsed().as_secs_f64()
                );
            }
        }
        Command::Compare(args) => compare::run_compare(args)?,
        Command::Bench(args) => {
            bench::run(&workspace_root(), args)?;
        }
        Command::BenchCapture { seconds, out } => {
            let out = workspace_root().join(out);
            let (rendered, bytes) = observer::synth::long_four_peers(seconds)?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            std::fs::write(out.with_extension("truth.csv"), rendered.truth_csv()?)?;
            println!(
                "{:>9} {} ({} transactions in the truth)",
                bytes.len(),
                out.display(),
                rendered.truth.len()
            );
        }
    }
    Ok(())
}

/// Whether libpcap's headers are installed: the observer is then built with its
/// libpcap source.
fn pcap_headers() -> bool {
    std::path::Path::new("/usr/include/pcap.h").exists()
        || std::path::Path::new("/usr/include/pcap/pcap.h").exists()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn bench_live_parallel_takes_its_modes_and_refuses_zero_replays() {
        let cli = super::Cli::try_parse_from([
            "xtask",
            "bench-live-parallel",
            "--replays",
            "3",
            "--modes",
            "content",
            "--size",
            "200M",
            "--pps",
            "0,100000",
        ])
        .expect("parsed");
        match cli.command {
            super::Command::BenchLiveParallel {
                replays,
                modes,
                size,
                port,
                pps,
                ..
            } => {
                assert_eq!(replays, 3);
                assert_eq!(pps, vec![0, 100_000]);
                assert_eq!(modes, vec![super::bench_live_parallel::Mode::Content]);
                assert_eq!(size, 200 << 20);
                assert_ne!(port, 9701, "the content mode needs a port off the defaults");
            }
            _ => panic!("another command"),
        }
        let both = super::Cli::try_parse_from(["xtask", "bench-live-parallel"]).expect("parsed");
        match both.command {
            super::Command::BenchLiveParallel { modes, .. } => assert_eq!(
                modes,
                vec![
                    super::bench_live_parallel::Mode::Port,
                    super::bench_live_parallel::Mode::Content
                ]
            ),
            _ => panic!("another command"),
        }
        assert!(
            super::Cli::try_parse_from(["xtask", "bench-live-parallel", "--replays", "0"]).is_err()
        );
        assert!(
            super::Cli::try_parse_from(["xtask", "bench-live-parallel", "--modes", "fast"])
                .is_err()
        );
    }

    #[test]
    fn sizes_are_binary_multiples() {
        assert_eq!(super::parse_size("100M").ok(), Some(100 << 20));
        assert_eq!(super::parse_size(" 4G").ok(), Some(4 << 30));
        assert_eq!(super::parse_size("1048576").ok(), Some(1 << 20));
        assert!(super::parse_size("4 parsecs").is_err());
    }
}
