//! `observer report`: figures and one index.html, from captures or from transaction
//! CSVs (ours, or another format through a column map).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use observer::report::{self, ColumnMap};
use observer::runtime;

use super::limits::{Inputs, Matching};
use super::{check_inputs, command_line, exit_for, nothing_read};

#[derive(Args, Debug)]
#[command(
    after_help = "--timeout and --max-outstanding apply to captures: a transaction \
CSV's timeouts are what its rows say."
)]
pub struct ReportArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub matching: Matching,
    /// Directory the figures and index.html are written to (created if needed).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Logarithmic RTT axis in the time series.
    #[arg(long)]
    pub log: bool,
    /// Also one distribution panel per (poller, receiver) pair (distribution-pairs.svg).
    #[arg(long)]
    pub per_pair: bool,
    /// PNG versions of the figures too.
    #[arg(long)]
    pub png: bool,
    /// A TOML column map for transaction CSVs in another format (column names, units,
    /// status words; see docs/formats.md).
    #[arg(long, value_name = "TOML")]
    pub map: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    use observer::report::figures::{self, InputMeta, Options, ReportData};
    // A column map says the inputs are CSVs whatever their header.
    let csv: Vec<bool> = args
        .inputs
        .files
        .iter()
        .map(|f| args.map.is_some() || is_transactions_csv(f))
        .collect();
    let map = match &args.map {
        Some(p) => ColumnMap::load(p)?,
        None => ColumnMap::default(),
    };
    let command = command_line();
    let timeout_ns = args.matching.timeout.ns();
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
        ReportData::from_csv(txs, inputs, timeout_ns, &command)
    } else if csv.iter().any(|c| *c) {
        bail!("give either captures or transaction CSV files, not both");
    } else {
        check_inputs(&args.inputs.files)?;
        let mut cfg = args.inputs.pipeline_config();
        args.matching.apply(&mut cfg);
        let analysis = runtime::analyze(&args.inputs.files, cfg, !args.inputs.no_progress);
        // No figures of nothing: an unusable input is an error, as for `analyze`.
        nothing_read(&analysis)?;
        code = exit_for(&analysis);
        ReportData::from_analysis(&analysis, timeout_ns, &command)
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

/// Whether `path` is a transactions CSV (`analyze --csv`) rather than a capture: by
/// extension, else by its first bytes (the CSV header).
fn is_transactions_csv(path: &Path) -> bool {
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
