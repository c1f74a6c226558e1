//! Running the pipeline: the stages wired together ([`pipeline`]) and the sources
//! that feed it ([`offline`] for capture files; live sources later).

pub mod offline;
pub mod online;
pub mod parallel;
pub mod pipeline;

pub use offline::{analyze, analyze_each, Analysis, InputSummary};
pub use parallel::analyze_parallel;
pub use pipeline::{
    JimConfig, JimStats, MessageRecord, Oversized, Pipeline, PipelineConfig, PipelineResult,
};
