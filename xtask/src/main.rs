//! Project tasks: `cargo xtask captures` (sample captures and their ground truth).

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
            let out = if out.is_absolute() {
                out
            } else {
                workspace_root().join(out)
            };
            let written = observer::synth::write_samples(&out)
                .with_context(|| format!("writing samples into {}", out.display()))?;
            for path in written {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                println!("{:>9} {}", size, path.display());
            }
        }
    }
    Ok(())
}
