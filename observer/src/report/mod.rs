//! Reports: RTT statistics, the transaction CSV, the summary (JSON) and the human
//! tables, all built from the transactions and the matcher's tallies.

pub mod analysis;
pub mod figures;
pub mod story;
pub mod table;

// The record (CSV) and the summary are the core's: re-exported so that
// `report::csv`, `report::summary` and the rest keep naming them.
pub use observer_core::summary::{self, stats};
pub use observer_core::transaction::{columns, csv};

pub use self::analysis::{
    full_json, message_line, render_analysis, write_full_json, write_summary_json,
};
pub use self::columns::{ColumnMap, MapError};
pub use self::csv::{
    read_records_csv, read_records_file, read_transactions_csv, CsvRecord, SocketTimes,
    TransactionCsvWriter, CAUSE_COLUMNS, CSV_HEADER, SOCKET_COLUMNS,
};
pub use self::stats::RttStats;
pub use self::summary::{Summary, SummaryBuilder};
/// What can go wrong with a transaction CSV (see [`observer_core::transaction::csv`]).
pub use observer_core::transaction::csv::RecordError as ReportError;
