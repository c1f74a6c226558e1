//! `observer explain`: the slowest answered transactions of captures and the first
//! timeouts, one line each, with what the wire shows happened to them
//! (docs/explain.md).

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use observer::{report, runtime};

use super::limits::{Inputs, Matching};
use super::values::parse_count;
use super::{check_inputs, exit_for, nothing_read};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[command(flatten)]
    pub matching: Matching,
    /// How many of the slowest answered transactions to explain.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = parse_count, allow_negative_numbers = true)]
    pub top: usize,
    /// How many PINGs that timed out to explain, in capture order, after the answered
    /// ones (default: as many as --top).
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub unanswered: Option<usize>,
}

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    check_inputs(&args.inputs.files)?;
    let mut cfg = args.inputs.pipeline_config();
    args.matching.apply(&mut cfg);
    // Only the slowest are kept, whatever the capture's length.
    let mut slowest = report::story::Slowest::new(args.top);
    let mut unanswered = report::story::Unanswered::new(args.unanswered.unwrap_or(args.top));
    let analysis = runtime::analyze_each(
        &args.inputs.files,
        cfg,
        !args.inputs.no_progress,
        &mut |t| {
            unanswered.add(&t);
            slowest.add(t)
        },
    );
    nothing_read(&analysis)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for t in slowest.into_sorted() {
        writeln!(out, "{}", report::story::story(&t))?;
    }
    if let Some(line) = unanswered.line() {
        writeln!(out, "{line}")?;
        for t in unanswered.listed() {
            writeln!(out, "{}", report::story::story(t))?;
        }
    }
    out.flush()?;
    Ok(exit_for(&analysis))
}
