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
    let cfg = args.inputs.pipeline_config();
    let mut out = io::BufWriter::new(io::stdout().lock());
    // Each message is written as it is decoded (none kept, so memory does not grow
    // with the capture); the first write error stops the writing and is reported
    // once the run is over, as when everything was written at the end.
    let mut failed: Option<io::Error> = None;
    let mut write = |m: &observer::runtime::MessageRecord| -> io::Result<()> {
        if args.json {
            serde_json::to_writer(&mut out, m)?;
            writeln!(out)
        } else {
            writeln!(out, "{}", report::message_line(m, args.wide))
        }
    };
    let analysis = runtime::analyze_messages(
        &args.inputs.files,
        cfg,
        !args.inputs.no_progress,
        &mut |m| {
            if failed.is_none() {
                failed = write(&m).err();
            }
        },
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    nothing_read(&analysis)?;
    Ok(exit_for(&analysis))
}
