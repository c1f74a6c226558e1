//! Running the pipeline: the stages wired together ([`pipeline`]) and the sources
//! that feed it ([`offline`] for capture files; live sources later).

pub mod offline;
pub mod online;
pub mod pipeline;

pub use offline::{analyze, Analysis, InputSummary};
pub use pipeline::{JimStats, MessageRecord, Pipeline, PipelineConfig, PipelineResult};
