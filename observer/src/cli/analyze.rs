//! `observer analyze`: transactions, statistics and tables from capture files.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use observer::report::{self, TransactionCsvWriter};
use observer::runtime::{self, TransactionSink};

use super::limits::{Inputs, Matching};
use super::store::{report_store, StoreArgs};
use super::values::parse_threads;
use super::{check_inputs, exit_for, nothing_read};

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub matching: Matching,
    /// Write one row per transaction to FILE (`-` = standard output).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Print the summary as one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Split the flows across N threads (by host pair; one matcher). The same
    /// transactions as one thread; the flow caps then bound each thread (N threads may
    /// hold N times as many flows). Needs files
    /// (not standard input). 0 = one per core.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_threads, allow_negative_numbers = true)]
    pub threads: usize,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    check_inputs(&args.inputs.files)?;
    let mut cfg = args.inputs.pipeline_config();
    args.matching.apply(&mut cfg);
    // Transactions are written and summarised as they come, never all kept: a
    // multi-gigabyte capture costs the memory of what is in flight.
    let csv = match &args.csv {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(TransactionCsvWriter::with_cause_columns(
            Box::new(io::BufWriter::new(io::stdout())) as Box<dyn Write>,
        )?),
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Some(TransactionCsvWriter::with_cause_columns(
                Box::new(io::BufWriter::new(file)) as Box<dyn Write>,
            )?)
        }
    };
    let mut sink = TransactionSink::new(csv);
    let store = match args.store.config("") {
        Some(c) => Some(observer::store::ClickHouseSink::start(c)?),
        None => None,
    };
    let mut store_error = None;
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let from_stdin = args.inputs.files.iter().any(|f| f.as_os_str() == "-");
    if threads > 1 && from_stdin {
        tracing::warn!("--threads needs files: standard input is analysed on one thread");
    }
    let mut on_transaction = |t: observer::transaction::Transaction| {
        sink.add(&t);
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
    if let Some(e) = sink.take_error() {
        return Err(e.into());
    }
    if let Some(w) = sink.record_mut() {
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
    let (summary, _, _) = sink.finish(&result.matcher, result.duration_ns());
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
