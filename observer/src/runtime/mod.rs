//! Running the pipeline: the engine of `observer-core` (one [`Pipeline`], offline
//! analysis on one thread or on shards) with a progress bar on a terminal, and the
//! live loop ([`online`]).

pub mod online;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

pub use observer_core::engine::{
    self as pipeline, merge_stats, Analysis, DocumentSink, InputSummary, MatchEvent, Matched,
    MessageRecord, Pipeline, PipelineConfig, PipelineResult, RecordWriter, TransactionSink,
};
pub use observer_core::jim::{JimConfig, JimStats, Oversized};

use crate::transaction::Transaction;

/// Runs the pipeline over the inputs (see [`observer_core::engine::analyze`]);
/// `progress` shows a bar on a terminal.
pub fn analyze(inputs: &[PathBuf], cfg: PipelineConfig, progress: bool) -> Analysis {
    observer_core::engine::analyze(inputs, cfg, bar(progress))
}

/// See [`observer_core::engine::analyze_each`].
pub fn analyze_each(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    progress: bool,
    on_transaction: &mut dyn FnMut(Transaction),
) -> Analysis {
    observer_core::engine::analyze_each(inputs, cfg, bar(progress), on_transaction)
}

/// See [`observer_core::engine::analyze_messages`].
pub fn analyze_messages(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    progress: bool,
    on_message: &mut dyn FnMut(MessageRecord),
) -> Analysis {
    observer_core::engine::analyze_messages(inputs, cfg, bar(progress), on_message)
}

/// See [`observer_core::engine::analyze_parallel`].
pub fn analyze_parallel(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    threads: usize,
    progress: bool,
    on_transaction: &mut dyn FnMut(Transaction),
) -> Analysis {
    observer_core::engine::analyze_parallel(inputs, cfg, threads, bar(progress), on_transaction)
}

/// A progress bar per input file, on a terminal only.
struct TerminalProgress;

struct Bar(ProgressBar);

fn bar(wanted: bool) -> Option<&'static dyn observer_core::engine::Progress> {
    (wanted && std::io::stderr().is_terminal()).then_some(&TerminalProgress)
}

impl observer_core::engine::Progress for TerminalProgress {
    fn input(&self, path: &Path) -> Option<Box<dyn observer_core::engine::InputProgress>> {
        let len = std::fs::metadata(path).ok().filter(|m| m.is_file())?.len();
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .ok()?
            .progress_chars("=> "),
        );
        bar.set_message(path.display().to_string());
        Some(Box::new(Bar(bar)))
    }
}

impl observer_core::engine::InputProgress for Bar {
    fn position(&mut self, bytes: u64) {
        self.0.set_position(bytes);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
