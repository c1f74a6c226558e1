//! Reports: RTT statistics, the transaction CSV, the summary (JSON) and the human
//! tables, all built from the transactions and the matcher's tallies.

pub mod analysis;
pub mod columns;
pub mod csv;
pub mod figures;
pub mod stats;
pub mod summary;
pub mod table;

pub use self::analysis::{full_json, message_line, render_analysis, write_full_json};
pub use self::columns::{ColumnMap, MapError};
pub use self::csv::{
    read_records_csv, read_records_file, read_transactions_csv, CsvRecord, SocketTimes,
    TransactionCsvWriter, CSV_HEADER, SOCKET_COLUMNS,
};
pub use self::stats::RttStats;
pub use self::summary::{Summary, SummaryBuilder};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no {columns} column in the CSV header {header:?}")]
    MissingColumn { columns: String, header: String },
    #[error("column map: {0}")]
    Map(#[from] MapError),
    #[error("{}: {source}", path.display())]
    InFile {
        path: std::path::PathBuf,
        source: Box<ReportError>,
    },
    #[error("CSV record {record}: bad {field} {value:?}")]
    BadField {
        record: u64,
        field: &'static str,
        value: String,
    },
}
