//! The subcommands, one module each, and what they share: the option groups
//! ([`limits`], [`store`]), the value parsers ([`values`]), the exit statuses and the
//! input checks.

pub mod analyze;
pub mod explain;
pub mod limits;
pub mod live;
pub mod messages;
pub mod peer;
pub mod report;
pub mod store;
pub mod validate;
pub mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use observer::runtime::Analysis;

/// The exit statuses, defined here only; README "Exit status" and `--help` show the
/// same table.
pub mod exit {
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
    /// `live` stopped early on an error once capturing (its interface vanished, an
    /// output could not be written): the summary covers everything seen until then;
    /// stderr names the error.
    pub const STOPPED_EARLY: u8 = 5;
}

pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  error, nothing reported (input missing, unreadable or not a capture; output not writable)
  2  bad command line
  3  validate: a bound was broken
  4  damaged input: the report covers what was read before the damage (stderr says where)
  5  live stopped early (interface gone, output not writable): the summary covers
     everything seen until then (stderr says why)";

/// [`exit::OK`] when every input was read to its end, else [`exit::DAMAGED`].
pub fn exit_for(analysis: &Analysis) -> ExitCode {
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
pub fn nothing_read(analysis: &Analysis) -> Result<()> {
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
pub fn check_inputs(files: &[PathBuf]) -> Result<()> {
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

/// The command line, shell-quoted where needed, for the report page.
pub fn command_line() -> String {
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
