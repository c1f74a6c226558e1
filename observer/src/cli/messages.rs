//! `observer messages`: every decoded JXTA message, one line (or JSON object) each.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use observer::{report, runtime};

use super::limits::Inputs;
use super::{check_inputs, exit_for, nothing_read};

#[derive(Args, Debug)]
pub struct MessagesArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// One JSON object per line instead of text (full peer IDs, every JIM field).
    #[arg(long)]
    pub json: bool,
    /// Full peer and pipe IDs instead of `uuid-…ab12`.
    #[arg(long)]
    pub wide: bool,
}

pub fn run(args: MessagesArgs) -> Result<ExitCode> {
    check_inputs(&args.inputs.files)?;
    let mut cfg = args.inputs.pipeline_config();
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
