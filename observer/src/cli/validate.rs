//! `observer validate`: passive transactions against the peers' own records, with
//! bounds that set the exit status.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use observer::report::{self, ColumnMap};
use observer::validate as v;

use super::exit;
use super::values::{duration_ns, parse_dur, Dur};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Transactions found by the observer (`observer analyze --csv`).
    #[arg(long, value_name = "CSV")]
    pub passive: PathBuf,
    /// The peers' own records (`observer peer --csv`, or any instrumented peer's log
    /// with `--map`), one file per peer.
    #[arg(long, value_name = "CSV", num_args = 1.., required = true)]
    pub active: Vec<PathBuf>,
    /// A TOML column map for the active logs when they are not in our format (column
    /// names, units, status words; see docs/formats.md).
    #[arg(long, value_name = "TOML")]
    pub map: Option<PathBuf>,
    /// Largest number (N) or share (N%) of active transactions the observer may miss.
    #[arg(long, value_name = "N|N%")]
    pub max_miss: Option<String>,
    /// Largest |application - passive| RTT difference allowed (e.g. 5ms).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_delta: Option<Duration>,
    /// Largest |socket - passive| RTT difference allowed (the peers' kernel timestamps;
    /// every joined transaction must then have them).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_socket_delta: Option<Duration>,
    /// Largest 99th percentile of |socket - passive| allowed.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_socket_p99: Option<Duration>,
    /// With a socket bound: how many joined transactions (N, or N% of them) may have
    /// their socket stop withheld by the peer (its PONG was read with bytes behind it,
    /// whose timestamp the kernel may have given it). Default: none.
    #[arg(long, value_name = "N|N%")]
    pub max_socket_withheld: Option<String>,
    /// Without a correlator, transactions are joined by pair and the nearest start time
    /// within this window.
    #[arg(long, value_name = "DURATION", value_parser = parse_dur,
          default_value_t = Dur::from_nanos(v::DEFAULT_WINDOW_NS))]
    pub window: Dur,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ValidateArgs) -> Result<ExitCode> {
    let map = match &args.map {
        Some(p) => ColumnMap::load(p).context("--map")?,
        None => ColumnMap::default(),
    };
    let passive: Vec<_> = report::read_records_file(&args.passive, &ColumnMap::default())
        .context("--passive")?
        .into_iter()
        .map(|r| r.tx)
        .collect();
    let mut active = Vec::new();
    for p in &args.active {
        active.extend(report::read_records_file(p, &map).context("--active")?);
    }
    let result = v::validate(&active, &passive, args.window.ns());
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
        max_socket_withheld: args
            .max_socket_withheld
            .as_deref()
            .map(v::MissBound::parse)
            .transpose()
            .context("--max-socket-withheld")?,
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
