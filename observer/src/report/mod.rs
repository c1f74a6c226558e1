//! Reports: RTT statistics, the transaction CSV, the summary (JSON) and the human
//! tables, all built from the transactions and the matcher's tallies.

pub mod analysis;
pub mod csv;
pub mod figures;
pub mod stats;
pub mod summary;
pub mod table;

pub use self::analysis::{full_json, message_line, render_analysis};
pub use self::csv::{read_transactions_csv, TransactionCsvWriter, CSV_HEADER};
pub use self::stats::RttStats;
pub use self::summary::{Summary, SummaryBuilder};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected CSV header {0:?}")]
    BadHeader(String),
    #[error("CSV record {record}: bad {field} {value:?}")]
    BadField {
        record: u64,
        field: &'static str,
        value: String,
    },
}
