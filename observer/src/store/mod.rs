//! The ClickHouse sink: transactions batched into a ClickHouse table over its HTTP
//! interface, with a local spool file that keeps them while the store is down.
//!
//! Only what ClickHouse 18.16 (Debian bookworm) and current releases both serve is
//! used: `POST /?query=…` with a `JSONEachRow` body, `ReplacingMergeTree`, `FINAL`.
//!
//! Idempotence: every record carries the observer's `run_id` and its `seq` (0, 1, …
//! in the order the sink received it), and a batch is the contiguous range
//! `[first_seq, first_seq + rows)`. A batch that may already be in the store (it
//! failed once, or comes from the spool) is first looked up by that range and skipped
//! when all of its rows are there: one HTTP insert of one batch is one block, which a
//! MergeTree commits whole or not at all. The engine is a `ReplacingMergeTree` whose
//! key ends with `(run_id, seq)`, so even a batch sent twice (its answer lost after
//! the commit and the look-up failing) collapses to one row per record in `FINAL`
//! queries and after merges.
//!
//! The sink runs on its own thread: the capture thread only hands records over a
//! bounded channel, so a slow or absent store never stalls it for more than the time
//! it takes to append a batch to the spool.
//!
//! Over 600 lines: batching, HTTP client and spool share one thread's state; tests at the end.

mod spool;
pub mod view;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use crate::jim::Status;
use crate::jxta::PeerId;
use crate::transaction::{MatchMethod, Transaction, TxStatus};
pub use spool::{Spool, SpoolError};

/// Environment variables holding the credentials (never a command-line argument,
/// which `ps` shows to every user).
pub const ENV_USER: &str = "OBSERVER_CLICKHOUSE_USER";
pub const ENV_PASSWORD: &str = "OBSERVER_CLICKHOUSE_PASSWORD";

/// Default table name; `--clickhouse-table` may add a database (`db.table`).
pub const DEFAULT_TABLE: &str = "observer_transactions";
/// A batch is sent when it holds this many records…
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// …or when its oldest record is this old, so a record reaches the store within
/// about this long (plus one HTTP round trip) while the store is up.
pub const DEFAULT_BATCH_AGE: Duration = Duration::from_secs(1);
/// How often a down store is tried again while records wait in the spool.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Spool bound: at ~300 B a record, about 3.5 M records (six minutes at 10,000/s).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Records waiting between the capture thread and the sink thread: 6.5 s at
/// 10,000/s, longer than a store that refuses connections ever holds the sink.
const CHANNEL_RECORDS: usize = 65_536;
/// Bounds of one HTTP exchange with the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read from the store (errors, counts).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid ClickHouse URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error(
        "invalid ClickHouse table name {0:?}: letters, digits and _ only, optionally db.table"
    )]
    Table(String),
    #[error("ClickHouse at {url}: {why}")]
    Http { url: String, why: String },
    #[error("ClickHouse refused the query ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot start the ClickHouse sink: {0}")]
    Start(std::io::Error),
    #[error("the ClickHouse sink thread stopped unexpectedly")]
    SinkGone,
}

/// Where and how to store.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// `http://host:port` of any node.
    pub url: String,
    /// `table` or `database.table`.
    pub table: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Labels written in every row: which gateway and interface saw the transaction,
    /// and which observer run (also the idempotence key with `seq`).
    pub gateway: String,
    pub interface: String,
    pub run_id: String,
    pub batch_rows: usize,
    pub batch_age: Duration,
    pub retry_interval: Duration,
    pub spool_path: PathBuf,
    pub spool_max_bytes: u64,
}

impl ClickHouseConfig {
    /// A configuration with the defaults above; credentials from the environment.
    pub fn new(url: &str, table: &str, spool_path: PathBuf) -> Self {
        ClickHouseConfig {
            url: url.to_string(),
            table: table.to_string(),
            user: std::env::var(ENV_USER).ok().filter(|s| !s.is_empty()),
            password: std::env::var(ENV_PASSWORD).ok(),
            gateway: hostname(),
            interface: String::new(),
            run_id: new_run_id(),
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_age: DEFAULT_BATCH_AGE,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            spool_path,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

/// This machine's name (the default `gateway` label).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A run ID unique across restarts and machines in practice: start time in ns and
/// the process ID, in hex (no spaces: it is a word of the spool's batch header).
pub fn new_run_id() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{ns:x}-{:x}", std::process::id())
}

/// The table's definition. `ORDER BY` serves per-pair time queries (the study's
/// figures) and ends with `(run_id, seq)`, the key `ReplacingMergeTree` collapses a
/// duplicated record on. Columns are those of the transaction CSV (docs/formats.md)
/// plus the labels; partitions are months of `start`.
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
start_unix_ns UInt64, \
stop_unix_ns Nullable(UInt64), \
rtt_us Nullable(Float64), \
poller_name String, \
poller_peer_id String, \
receiver_name String, \
receiver_peer_id String, \
receiver_status String, \
transaction_status String, \
correlator String, \
match_method String, \
ping_bytes UInt64, \
pong_bytes Nullable(UInt64), \
correlator_overhead_bytes UInt64, \
gateway String, \
interface String, \
run_id String, \
seq UInt64, \
{causes}\
) ENGINE = ReplacingMergeTree() \
PARTITION BY toYYYYMM(toDateTime(intDiv(start_unix_ns, 1000000000))) \
ORDER BY (poller_name, receiver_name, start_unix_ns, run_id, seq)",
        causes = CAUSE_COLUMN_TYPES
            .iter()
            .map(|(name, ty)| format!("{name} {ty}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The cause columns (docs/explain.md), as the CSV's `cause,tcp_us,…,relay_peer_id`:
/// last in the table, where `ALTER TABLE … ADD COLUMN` puts them in a table an older
/// observer created (its rows read as no cause, and no measured share).
pub const CAUSE_COLUMN_TYPES: [(&str, &str); 7] = [
    ("cause", "String"),
    ("tcp_us", "Nullable(Float64)"),
    ("conn_us", "Nullable(Float64)"),
    ("queue_us", "Nullable(Float64)"),
    ("queue_bytes", "Nullable(UInt64)"),
    ("far_us", "Nullable(Float64)"),
    ("relay_peer_id", "String"),
];

/// Adds the columns of [`CAUSE_COLUMN_TYPES`] that the table lacks. ClickHouse 18.16 has
/// no `ADD COLUMN IF NOT EXISTS`, so the table's columns are read first.
pub fn add_missing_columns(client: &Client) -> Result<(), StoreError> {
    let answer = client.query(
        &format!("DESCRIBE TABLE {} FORMAT TabSeparated", client.table),
        Vec::new(),
    )?;
    let present: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    for (name, ty) in CAUSE_COLUMN_TYPES {
        if !present.contains(&name) {
            tracing::info!(table = %client.table, column = name, "adding a column");
            client.query(
                &format!("ALTER TABLE {} ADD COLUMN {name} {ty}", client.table),
                Vec::new(),
            )?;
        }
    }
    Ok(())
}

/// Declares the store's counters once, one line each: the field, then its metric
/// (kind, family name, help) or `None`. Gives the shared atomic counters
/// ([`StoreCounters`]), their snapshot ([`StoreStats`], in declaration order) and the
/// snapshot's metric families (`StoreStats::add_to`, in declaration order).
macro_rules! store_counters {
    ($(
        $(#[$meta:meta])*
        $field:ident: $metric:expr;
    )*) => {
        /// What the sink did so far; shared with the live metrics and the status line.
        #[derive(Debug, Default)]
        pub struct StoreCounters {
            $($(#[$meta])* pub $field: AtomicU64,)*
        }

        /// A copy of [`StoreCounters`] at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct StoreStats {
            $($(#[$meta])* pub $field: u64,)*
        }

        impl StoreCounters {
            pub fn snapshot(&self) -> StoreStats {
                StoreStats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                }
            }
        }

        impl StoreStats {
            /// Each counter's metric, if exported, with its value.
            fn metrics(&self) -> impl Iterator<Item = (StoreMetric, u64)> {
                [$(($metric, self.$field),)*]
                    .into_iter()
                    .filter_map(|(m, v): (Option<StoreMetric>, u64)| Some((m?, v)))
            }
        }
    };
}

/// How a store counter is exported: kind, family name, help.
type StoreMetric = (
    prometheus_client::metrics::MetricType,
    &'static str,
    &'static str,
);

use prometheus_client::metrics::MetricType::{Counter as Total, Gauge as Level};

store_counters! {
    records_received: None;
    records_stored: Some((Total, "observer_store_records_stored_total", "Transactions stored in ClickHouse."));
    batches_stored: Some((Total, "observer_store_batches_stored_total", "Batches inserted into ClickHouse."));
    /// Batches found already stored when retried (not sent again).
    batches_already_stored: Some((Total, "observer_store_batches_already_stored_total", "Retried batches found already stored."));
    send_errors: Some((Total, "observer_store_send_errors_total", "Failed exchanges with ClickHouse."));
    /// Records and bytes waiting in the spool now.
    spool_records: Some((Level, "observer_store_spool_records", "Transactions waiting in the spool."));
    spool_bytes: Some((Level, "observer_store_spool_bytes", "Bytes of the spool file."));
    /// Records ever written to the spool.
    records_spooled: Some((Total, "observer_store_records_spooled_total", "Transactions written to the spool."));
    /// Records dropped because the spool was full (or could not be written).
    spool_overflow_records: Some((Total, "observer_store_spool_overflow_records_total", "Transactions dropped because the spool was full."));
    /// Records `live` dropped because the sink thread was stuck (a store that accepts
    /// but does not answer) and its channel full: the capture does not wait for it.
    records_dropped_busy: Some((Total, "observer_store_records_dropped_busy_total", "Transactions dropped because the ClickHouse sink was stuck."));
    /// Records the store refused for their content (set aside in `<spool>.rejected`).
    records_rejected: Some((Total, "observer_store_records_rejected_total", "Transactions ClickHouse refused for their content (set aside)."));
}

impl StoreStats {
    /// The store's metrics (added to `/metrics` by the live path).
    pub fn add_to(&self, e: &mut crate::metrics::Exposition) {
        for ((kind, name, help), v) in self.metrics() {
            let mut f = e.family(name, kind, help);
            match kind {
                Total => f.counter(&[], v),
                _ => f.gauge(&[], i64::try_from(v).unwrap_or(i64::MAX)),
            };
        }
    }
}

/// One row as `JSONEachRow` writes it (column names are the table's).
#[derive(serde::Serialize)]
struct Row<'a> {
    start_unix_ns: u64,
    stop_unix_ns: Option<u64>,
    rtt_us: Option<f64>,
    poller_name: &'a str,
    poller_peer_id: &'a str,
    receiver_name: &'a str,
    receiver_peer_id: &'a str,
    receiver_status: &'a str,
    transaction_status: &'a str,
    correlator: &'a str,
    match_method: &'a str,
    ping_bytes: u64,
    pong_bytes: Option<u64>,
    correlator_overhead_bytes: u64,
    gateway: &'a str,
    interface: &'a str,
    run_id: &'a str,
    seq: u64,
    cause: String,
    tcp_us: Option<f64>,
    conn_us: Option<f64>,
    queue_us: Option<f64>,
    queue_bytes: Option<u64>,
    far_us: Option<f64>,
    relay_peer_id: &'a str,
}

/// Appends `t` as one `JSONEachRow` line.
fn push_row(body: &mut Vec<u8>, t: &Transaction, labels: &Labels, seq: u64) {
    // As the CSV writes them: the shares of an answered transaction only.
    let answered = t.status == TxStatus::Ok;
    let us = |ns: u64| answered.then_some(ns as f64 / 1000.0);
    let c = &t.cause;
    let row = Row {
        start_unix_ns: t.start,
        stop_unix_ns: t.stop,
        // µs with ns precision, as the CSV's `rtt_us`.
        rtt_us: t.rtt_ns().map(|ns| ns as f64 / 1000.0),
        poller_name: t.poller_name.as_deref().unwrap_or_default(),
        poller_peer_id: t.poller_id.as_ref().map_or("", PeerId::as_str),
        receiver_name: t.receiver_name.as_deref().unwrap_or_default(),
        receiver_peer_id: t.receiver_id.as_ref().map_or("", PeerId::as_str),
        receiver_status: t.receiver_status.map_or("", Status::as_str),
        transaction_status: t.status.as_str(),
        correlator: t.correlator.as_deref().unwrap_or_default(),
        match_method: t.match_method.map_or("", MatchMethod::as_str),
        ping_bytes: t.ping_bytes,
        pong_bytes: t.pong_bytes,
        correlator_overhead_bytes: t.correlator_overhead_bytes,
        gateway: &labels.gateway,
        interface: &labels.interface,
        run_id: &labels.run_id,
        seq,
        cause: c.label(),
        tcp_us: us(c.tcp_ns),
        conn_us: us(c.conn_ns),
        queue_us: us(c.queue_ns),
        queue_bytes: answered.then_some(c.queue_bytes),
        far_us: c.far_ns.map(|ns| ns as f64 / 1000.0),
        relay_peer_id: c.relay.as_ref().map_or("", PeerId::as_str),
    };
    // Serialising plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *body, &row);
    body.push(b'\n');
}

struct Labels {
    gateway: String,
    interface: String,
    run_id: String,
}

/// A batch: contiguous records of one run, ready as an insert body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub run_id: String,
    pub first_seq: u64,
    pub rows: u64,
    /// Smallest and largest `start_unix_ns`: the look-up for a retried batch reads
    /// only the parts of that time range (MergeTree's min/max index of the partition
    /// key), not the whole table.
    pub starts: (u64, u64),
    pub body: Vec<u8>,
}

enum Msg {
    Record(Box<Transaction>),
    Finish,
}

/// The handle the pipeline holds.
pub struct ClickHouseSink {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
    counters: Arc<StoreCounters>,
}

impl ClickHouseSink {
    /// Checks the configuration, opens the spool (sending what an earlier run left
    /// there first) and starts the sink thread. The store itself may be down.
    pub fn start(cfg: ClickHouseConfig) -> Result<Self, StoreError> {
        let client = Client::new(&cfg)?;
        let counters = Arc::new(StoreCounters::default());
        let spool = Spool::open(&cfg.spool_path, cfg.spool_max_bytes)?;
        counters
            .spool_bytes
            .store(spool.pending_bytes(), Ordering::Relaxed);
        counters
            .spool_records
            .store(spool.pending_records(), Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_RECORDS);
        let mut rejected_path = cfg.spool_path.clone().into_os_string();
        rejected_path.push(".rejected");
        let worker = Worker {
            rejected_path: rejected_path.into(),
            rejected: None,
            labels: Labels {
                gateway: cfg.gateway.clone(),
                interface: cfg.interface.clone(),
                run_id: cfg.run_id.clone(),
            },
            client,
            spool,
            counters: counters.clone(),
            table_ready: false,
            batch_rows: cfg.batch_rows.max(1),
            batch_age: cfg.batch_age,
            retry_interval: cfg.retry_interval,
            next_seq: 0,
        };
        let thread = std::thread::Builder::new()
            .name("clickhouse-sink".into())
            .spawn(move || worker.run(rx))
            .map_err(StoreError::Start)?;
        Ok(ClickHouseSink {
            tx,
            thread: Some(thread),
            counters,
        })
    }

    /// Hands one record to the sink thread (waits only while the channel is full).
    pub fn push(&self, t: &Transaction) -> Result<(), StoreError> {
        self.tx
            .send(Msg::Record(Box::new(t.clone())))
            .map_err(|_| StoreError::SinkGone)
    }

    /// Hands one record over without waiting: when the sink thread is stuck on a
    /// store that does not answer and the channel is full, the record is dropped and
    /// counted (the capture thread of `live` must not stall).
    pub fn try_push(&self, t: &Transaction) -> Result<(), StoreError> {
        match self.tx.try_send(Msg::Record(Box::new(t.clone()))) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                self.counters
                    .records_dropped_busy
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(StoreError::SinkGone),
        }
    }

    pub fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }

    /// Sends what is batched, tries once more to empty the spool, and stops the
    /// thread. Records the store could not take stay in the spool for the next run.
    pub fn finish(mut self) -> Result<StoreStats, StoreError> {
        let _ = self.tx.send(Msg::Finish);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r?,
            _ => return Err(StoreError::SinkGone),
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for ClickHouseSink {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.tx.send(Msg::Finish);
            let _ = t.join();
        }
    }
}

struct Worker {
    rejected_path: PathBuf,
    rejected: Option<Spool>,
    labels: Labels,
    client: Client,
    spool: Spool,
    counters: Arc<StoreCounters>,
    table_ready: bool,
    batch_rows: usize,
    batch_age: Duration,
    retry_interval: Duration,
    next_seq: u64,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) -> Result<(), StoreError> {
        let mut body = Vec::new();
        let mut rows = 0u64;
        let mut first_seq = 0u64;
        let mut starts = (0u64, 0u64);
        let mut oldest: Option<Instant> = None;
        let mut next_retry = Instant::now();
        loop {
            let now = Instant::now();
            let batch_due = oldest.map(|t| t + self.batch_age);
            let retry_due = (!self.spool.is_empty()).then_some(next_retry);
            let wake = [batch_due, retry_due].into_iter().flatten().min();
            let msg = match wake {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(now)),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let finish = match msg {
                Ok(Msg::Record(t)) => {
                    if rows == 0 {
                        first_seq = self.next_seq;
                        oldest = Some(Instant::now());
                        starts = (t.start, t.start);
                    }
                    starts = (starts.0.min(t.start), starts.1.max(t.start));
                    push_row(&mut body, &t, &self.labels, self.next_seq);
                    self.next_seq += 1;
                    rows += 1;
                    self.counters
                        .records_received
                        .fetch_add(1, Ordering::Relaxed);
                    false
                }
                Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => false,
            };
            let full = rows >= self.batch_rows as u64;
            let old = oldest.is_some_and(|t| t.elapsed() >= self.batch_age);
            if rows > 0 && (full || old || finish) {
                let batch = Batch {
                    run_id: self.labels.run_id.clone(),
                    first_seq,
                    rows,
                    starts,
                    body: std::mem::take(&mut body),
                };
                rows = 0;
                oldest = None;
                self.store(batch)?;
            }
            if !self.spool.is_empty() && (Instant::now() >= next_retry || finish) {
                self.drain_spool()?;
                next_retry = Instant::now() + self.retry_interval;
            }
            if finish {
                self.spool.remove_if_empty();
                return Ok(());
            }
        }
    }

    /// Sends a new batch, or spools it when the store is down or older batches still
    /// wait in the spool (the store receives batches in order).
    fn store(&mut self, batch: Batch) -> Result<(), StoreError> {
        if self.spool.is_empty() {
            match self.send(&batch, false) {
                Ok(()) => return Ok(()),
                Err(e) if refuses_the_data(&e) => {
                    self.reject(&batch, &e);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ClickHouse insert failed; spooling");
                }
            }
        }
        self.spool_batch(&batch)
    }

    /// Sets aside a batch the store refuses for its content: retrying it would hold
    /// every later batch behind it forever. It is appended to `<spool>.rejected` (same
    /// format as the spool) for an operator to look at, and counted.
    fn reject(&mut self, batch: &Batch, why: &StoreError) {
        let kept = match &mut self.rejected {
            Some(r) => r.append(batch),
            None => Spool::open(&self.rejected_path, u64::MAX).and_then(|mut r| {
                let ok = r.append(batch);
                self.rejected = Some(r);
                ok
            }),
        };
        self.counters
            .records_rejected
            .fetch_add(batch.rows, Ordering::Relaxed);
        match kept {
            Ok(_) => tracing::error!(
                rows = batch.rows,
                error = %why,
                file = %self.rejected_path.display(),
                "ClickHouse refuses the batch's content; set aside"
            ),
            Err(e) => tracing::error!(
                rows = batch.rows,
                error = %why,
                "ClickHouse refuses the batch's content, and it cannot be set aside: {e}"
            ),
        }
    }

    fn spool_batch(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // A spool that cannot be written (disk full) loses the batch like a full one
        // rather than stopping the capture that feeds the sink.
        let dropped = match self.spool.append(batch) {
            Ok(true) => None,
            Ok(false) => Some("spool full".to_string()),
            Err(e) => Some(e.to_string()),
        };
        match dropped {
            None => {
                self.counters
                    .records_spooled
                    .fetch_add(batch.rows, Ordering::Relaxed);
            }
            Some(why) => {
                self.counters
                    .spool_overflow_records
                    .fetch_add(batch.rows, Ordering::Relaxed);
                tracing::error!(rows = batch.rows, %why, "batch dropped");
            }
        }
        self.publish_spool();
        Ok(())
    }

    fn publish_spool(&self) {
        self.counters
            .spool_bytes
            .store(self.spool.pending_bytes(), Ordering::Relaxed);
        self.counters
            .spool_records
            .store(self.spool.pending_records(), Ordering::Relaxed);
    }

    /// Sends spooled batches oldest first until the spool is empty or the store fails.
    fn drain_spool(&mut self) -> Result<(), StoreError> {
        while let Some(batch) = self.spool.peek()? {
            match self.send(&batch, true) {
                Ok(()) => {}
                Err(e) if refuses_the_data(&e) => self.reject(&batch, &e),
                Err(e) => {
                    tracing::debug!(error = %e, "ClickHouse still unavailable");
                    break;
                }
            }
            self.spool.pop()?;
            self.publish_spool();
        }
        Ok(())
    }

    /// Creates the table once, skips a retried batch already stored, inserts.
    fn send(&mut self, batch: &Batch, retried: bool) -> Result<(), StoreError> {
        let r = self.try_send(batch, retried);
        if let Err(e) = &r {
            self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            if error_code(e) == Some(UNKNOWN_TABLE) {
                self.table_ready = false;
            }
        }
        r
    }

    fn try_send(&mut self, batch: &Batch, retried: bool) -> Result<(), StoreError> {
        if !self.table_ready {
            self.client
                .query(&create_table_sql(&self.client.table), Vec::new())?;
            add_missing_columns(&self.client)?;
            self.table_ready = true;
        }
        if retried {
            let present = self.client.count_batch(batch)?;
            if present >= batch.rows {
                self.counters
                    .batches_already_stored
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            if present > 0 {
                // Not expected (a block is atomic); the engine collapses the overlap.
                tracing::warn!(present, rows = batch.rows, "batch partly stored");
            }
        }
        let insert = format!("INSERT INTO {} FORMAT JSONEachRow", self.client.table);
        self.client.query(&insert, batch.body.clone())?;
        self.counters
            .records_stored
            .fetch_add(batch.rows, Ordering::Relaxed);
        self.counters.batches_stored.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A minimal ClickHouse HTTP client: one POST per query on a fresh connection (a
/// batch is thousands of rows, so the connection set-up is noise), on a small
/// runtime of its own.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    url: String,
    authority: String,
    auth: Option<String>,
    pub table: String,
}

fn valid_table(table: &str) -> bool {
    let parts: Vec<&str> = table.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with(|c: char| c.is_ascii_digit())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl Client {
    pub fn new(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Url {
            url: cfg.url.clone(),
            why: why.to_string(),
        };
        let uri: hyper::Uri = cfg.url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// is supported (put a TLS proxy in front)")),
            None => return Err(bad("expected http://host:port")),
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(8123));
        if !valid_table(&cfg.table) {
            return Err(StoreError::Table(cfg.table.clone()));
        }
        let auth = cfg.user.as_ref().map(|u| {
            let pass = cfg.password.as_deref().unwrap_or_default();
            format!("Basic {}", base64(format!("{u}:{pass}").as_bytes()))
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(StoreError::Start)?;
        Ok(Client {
            runtime,
            url: cfg.url.clone(),
            authority,
            auth,
            table: cfg.table.clone(),
        })
    }

    /// How many rows of `batch`'s range the table holds.
    fn count_batch(&self, batch: &Batch) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count() FROM {} WHERE start_unix_ns >= {} AND start_unix_ns <= {} \
             AND run_id = '{}' AND seq >= {} AND seq < {}",
            self.table,
            batch.starts.0,
            batch.starts.1,
            sql_string(&batch.run_id),
            batch.first_seq,
            batch.first_seq + batch.rows
        );
        let answer = self.query(&sql, Vec::new())?;
        answer.trim().parse().map_err(|_| StoreError::Http {
            url: self.url.clone(),
            why: format!("unexpected count answer {answer:?}"),
        })
    }

    /// Runs `sql` with `body` as its data; the answer's body on success.
    pub fn query(&self, sql: &str, body: Vec<u8>) -> Result<String, StoreError> {
        self.exchange(sql, body, MAX_ANSWER_BYTES, REQUEST_TIMEOUT, None)
    }

    /// Runs a reading query (`report --clickhouse`): a larger answer and more time than
    /// the sink's exchanges, still bounded.
    /// `session` (an HTTP session ID) keeps temporary tables between queries.
    pub fn read(&self, sql: &str, session: Option<&str>) -> Result<String, StoreError> {
        tracing::debug!(sql, "ClickHouse query");
        self.exchange(
            sql,
            Vec::new(),
            view::READ_MAX_BYTES,
            view::READ_TIMEOUT,
            session,
        )
    }

    fn exchange(
        &self,
        sql: &str,
        body: Vec<u8>,
        max_answer: usize,
        timeout: Duration,
        session: Option<&str>,
    ) -> Result<String, StoreError> {
        let fail = |why: String| StoreError::Http {
            url: self.url.clone(),
            why,
        };
        let session = session.map_or(String::new(), |id| {
            format!("session_id={}&", percent_encode(id))
        });
        let path = format!("/?{session}query={}", percent_encode(sql));
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_LENGTH, body.len());
        if let Some(a) = &self.auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let authority = self.authority.clone();
        let exchange = async move {
            let stream =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&authority))
                    .await
                    .map_err(|_| "connect timed out".to_string())?
                    .map_err(|e| format!("connect: {e}"))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let limited = http_body_util::Limited::new(resp.into_body(), max_answer);
            let bytes = limited
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
        };
        let (status, text) = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, exchange).await })
            .map_err(|_| fail("request timed out".into()))?
            .map_err(fail)?;
        if status != 200 {
            return Err(StoreError::Refused {
                status,
                body: text.trim().chars().take(500).collect(),
            });
        }
        Ok(text)
    }
}

/// ClickHouse's error codes for data it cannot take (parse errors, unknown or
/// mistyped columns: a table created with other columns), as opposed to a store that
/// is down, overloaded or refuses the credentials, which is worth retrying.
/// (47: a column the look-up of a retried batch names is missing.)
const DATA_ERROR_CODES: [u32; 10] = [6, 16, 26, 27, 38, 41, 47, 53, 72, 117];
/// ClickHouse's "table does not exist": dropped since it was created, so create it again.
const UNKNOWN_TABLE: u32 = 60;

/// Whether the store refused a query for the data it carried (ClickHouse answers
/// `Code: N, e.displayText() = …`).
fn refuses_the_data(e: &StoreError) -> bool {
    error_code(e).is_some_and(|code| DATA_ERROR_CODES.contains(&code))
}

fn error_code(e: &StoreError) -> Option<u32> {
    let StoreError::Refused { body, .. } = e else {
        return None;
    };
    body.strip_prefix("Code: ")?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A string literal's content for ClickHouse SQL.
fn sql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Every byte escaped but RFC 3986's unreserved set.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One declaration line gives the atomic, the snapshot field and the metric family
    /// (its kind and value); a counter declared without one is not exported.
    #[test]
    fn store_counters_declared_once() {
        let c = StoreCounters::default();
        c.records_received.store(5, Ordering::Relaxed);
        c.records_stored.store(7, Ordering::Relaxed);
        c.spool_bytes.store(9, Ordering::Relaxed);
        let s = c.snapshot();
        assert_eq!(
            (s.records_received, s.records_stored, s.spool_bytes),
            (5, 7, 9)
        );
        let mut e = crate::metrics::Exposition::default();
        s.add_to(&mut e);
        let text = e.to_text();
        assert!(text.contains("# TYPE observer_store_records_stored_total counter\nobserver_store_records_stored_total 7\n"), "{text}");
        assert!(
            text.contains(
                "# TYPE observer_store_spool_bytes gauge\nobserver_store_spool_bytes 9\n"
            ),
            "{text}"
        );
        assert!(!text.contains("received"), "{text}");
        assert_eq!(
            text.matches("# TYPE observer_store_").count(),
            s.metrics().count()
        );
        assert_eq!(s.metrics().count(), 10);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain:?}");
        }
    }

    #[test]
    fn table_names_are_checked() {
        assert!(valid_table("observer_transactions"));
        assert!(valid_table("db.t1"));
        for bad in ["", "a.b.c", "t;DROP", "1t", "a b", "db."] {
            assert!(!valid_table(bad), "{bad:?}");
        }
    }

    #[test]
    fn urls_other_than_http_are_refused() {
        let dir = std::env::temp_dir();
        for bad in ["https://h:8443", "h:8123", "not a url"] {
            let cfg = ClickHouseConfig::new(bad, DEFAULT_TABLE, dir.join("x"));
            assert!(
                matches!(Client::new(&cfg), Err(StoreError::Url { .. })),
                "{bad}"
            );
        }
        let cfg = ClickHouseConfig::new("http://127.0.0.1", DEFAULT_TABLE, dir.join("x"));
        assert_eq!(
            Client::new(&cfg).map(|c| c.authority).ok().as_deref(),
            Some("127.0.0.1:8123")
        );
    }

    #[test]
    fn only_data_errors_set_a_batch_aside() {
        let refused = |body: &str| StoreError::Refused {
            status: 500,
            body: body.to_string(),
        };
        assert!(refuses_the_data(&refused(
            "Code: 117, e.displayText() = DB::Exception: Unknown field found while parsing JSONEachRow format: nope"
        )));
        assert!(refuses_the_data(&refused(
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input"
        )));
        for retried in [
            refused("Code: 193, e.displayText() = DB::Exception: Wrong password for user obs"),
            refused("Code: 241, e.displayText() = DB::Exception: Memory limit exceeded"),
            refused("<html>502 Bad Gateway</html>"),
            StoreError::Http {
                url: "http://h".into(),
                why: "connect: refused".into(),
            },
        ] {
            assert!(!refuses_the_data(&retried), "{retried}");
        }
    }

    #[test]
    fn cause_columns_are_the_csvs() {
        let names: Vec<&str> = CAUSE_COLUMN_TYPES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.join(","), crate::report::CAUSE_COLUMNS);
        let sql = create_table_sql("t");
        for (n, ty) in CAUSE_COLUMN_TYPES {
            assert!(sql.contains(&format!("{n} {ty}")), "{sql}");
        }
    }

    #[test]
    fn sql_strings_are_escaped() {
        assert_eq!(sql_string(r"a'b\c"), r"a\'b\\c");
        assert_eq!(percent_encode("a b=1"), "a%20b%3D1");
        assert_eq!(percent_encode("a-_.~\u{e9}/"), "a-_.~%C3%A9%2F");
    }
}
