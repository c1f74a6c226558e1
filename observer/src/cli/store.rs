//! `--clickhouse` and its companions (`analyze` and `live`), and the line that says
//! what reached the store.

use std::path::{Path, PathBuf};

use clap::Args;

use observer::store::{self, ClickHouseConfig, StoreStats};

use super::values::{parse_bytes, Bytes};

/// Sending transactions to ClickHouse besides (or instead of) the CSV.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Also insert every transaction into ClickHouse at this HTTP URL (e.g.
    /// http://127.0.0.1:8123); credentials from OBSERVER_CLICKHOUSE_USER and
    /// OBSERVER_CLICKHOUSE_PASSWORD. Schema: docs/deployment.md.
    #[arg(long, value_name = "URL")]
    pub clickhouse: Option<String>,
    /// Table (or database.table), created if missing.
    #[arg(long, value_name = "TABLE", default_value = store::DEFAULT_TABLE)]
    pub clickhouse_table: String,
    /// File keeping the batches ClickHouse could not take yet (sent first when it is back).
    #[arg(long, value_name = "FILE", default_value = "observer-clickhouse.spool")]
    pub clickhouse_spool: PathBuf,
    /// Largest spool; batches beyond it are dropped and counted.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes,
          default_value_t = Bytes(store::DEFAULT_SPOOL_MAX_BYTES))]
    pub clickhouse_spool_max: Bytes,
    /// The `gateway` label of the rows [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub gateway: Option<String>,
}

impl StoreArgs {
    pub fn config(&self, interface: &str) -> Option<ClickHouseConfig> {
        let url = self.clickhouse.as_deref()?;
        let mut c =
            ClickHouseConfig::new(url, &self.clickhouse_table, self.clickhouse_spool.clone());
        if let Some(g) = &self.gateway {
            c.gateway = g.clone();
        }
        c.interface = interface.to_string();
        c.spool_max_bytes = self.clickhouse_spool_max.0;
        Some(c)
    }
}

/// One line on stderr: what reached ClickHouse and what waits in the spool.
pub fn report_store(s: &StoreStats, spool: &Path) {
    eprintln!(
        "clickhouse: {} transactions stored in {} batches ({} batches found already stored), {} send errors",
        s.records_stored, s.batches_stored, s.batches_already_stored, s.send_errors
    );
    if s.records_rejected > 0 {
        eprintln!(
            "clickhouse: {} transactions refused for their content, set aside in {}.rejected",
            s.records_rejected,
            spool.display()
        );
    }
    if s.records_dropped_busy > 0 {
        eprintln!(
            "clickhouse: {} transactions not stored: the sink was stuck on an unanswering store",
            s.records_dropped_busy
        );
    }
    if s.spool_records > 0 || s.spool_overflow_records > 0 {
        eprintln!(
            "clickhouse: {} transactions wait in the spool {} (sent by the next run using it), {} dropped for a full spool",
            s.spool_records,
            spool.display(),
            s.spool_overflow_records
        );
    }
}
