//! The ClickHouse sink against a real server (Debian's clickhouse-server, started here).

mod common;

use std::process::Command;
use std::time::Duration;

use common::clickhouse::{self, ClickHouse};
use observer::store::{Batch, ClickHouseConfig, ClickHouseSink, Spool, DEFAULT_TABLE};
use observer::transaction::{Transaction, TxStatus};

/// The CSV's columns, read back from the table in the CSV's order.
const CSV_COLUMNS: &str = "start_unix_ns,stop_unix_ns,rtt_us,poller_name,poller_peer_id,receiver_name,receiver_peer_id,receiver_status,transaction_status,correlator,match_method,ping_bytes,pong_bytes,correlator_overhead_bytes";
const RTT_COLUMN: usize = 2;

/// Fields comparable as text: ClickHouse's `\N` is the CSV's empty field, and the RTT
/// is compared as a number (`1181.8` and `1181.800` are the same figure).
fn normalise(mut fields: Vec<String>) -> Vec<String> {
    for f in fields.iter_mut() {
        if f == "\\N" {
            f.clear();
        }
    }
    if let Some(rtt) = fields.get_mut(RTT_COLUMN) {
        if let Ok(v) = rtt.parse::<f64>() {
            *rtt = format!("{:.3}", v);
        }
    }
    fields
}

#[test]
fn analyze_stores_exactly_the_csv_transactions() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    eprintln!("clickhouse-server {}", server.version());
    let csv = dir.path().join("tx.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["analyze", "--no-progress", "--csv"])
        .arg(&csv)
        .arg("--clickhouse")
        .arg(server.url())
        .arg("--clickhouse-spool")
        .arg(dir.path().join("spool"))
        .args(["--gateway", "gw-a"])
        .arg(common::capture("four-peers.pcap"))
        .output()
        .expect("run observer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut reader = csv::Reader::from_path(&csv).expect("csv");
    let mut expected: Vec<Vec<String>> = reader
        .records()
        .map(|r| normalise(r.expect("record").iter().map(str::to_string).collect()))
        .collect();
    assert!(
        expected.len() > 100,
        "the sample has {} transactions",
        expected.len()
    );

    // Without FINAL: not one duplicate row may exist, merged or not.
    let tsv = server.query(&format!(
        "SELECT {CSV_COLUMNS} FROM {DEFAULT_TABLE} FORMAT TSV"
    ));
    let mut stored: Vec<Vec<String>> = tsv
        .lines()
        .map(|l| normalise(l.split('\t').map(str::to_string).collect()))
        .collect();
    expected.sort();
    stored.sort();
    assert_eq!(stored.len(), expected.len());
    assert_eq!(stored, expected);

    let labels = server.query(&format!(
        "SELECT gateway, count(), uniqExact(run_id), min(seq), max(seq) FROM {DEFAULT_TABLE} GROUP BY gateway FORMAT TSV"
    ));
    let n = expected.len();
    assert_eq!(labels.trim(), format!("gw-a\t{n}\t1\t0\t{}", n - 1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("clickhouse: {n} transactions stored")),
        "{stderr}"
    );
}

/// A transaction whose start encodes `i`, so that every record is distinct.
fn tx(i: u64) -> Transaction {
    let start = 1_767_225_600_000_000_000 + i * 1_000_000;
    Transaction {
        start,
        stop: Some(start + 500_000 + i),
        poller_name: Some(format!("p{}", i % 3)),
        poller_id: None,
        receiver_name: Some(format!("r{}", i % 5)),
        receiver_id: None,
        receiver_status: None,
        status: TxStatus::Ok,
        correlator: Some(format!("c{i}")),
        match_method: None,
        ping_bytes: 100 + i,
        pong_bytes: Some(200),
        correlator_overhead_bytes: 44,
    }
}

fn fast_config(server: &ClickHouse, spool: std::path::PathBuf) -> ClickHouseConfig {
    let mut c = ClickHouseConfig::new(&server.url(), DEFAULT_TABLE, spool);
    c.batch_rows = 50;
    c.batch_age = Duration::from_millis(100);
    c.retry_interval = Duration::from_millis(200);
    c
}

fn count(server: &ClickHouse, what: &str) -> u64 {
    server
        .query(&format!("SELECT {what} FROM {DEFAULT_TABLE} FORMAT TSV"))
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn a_store_outage_loses_nothing_and_duplicates_nothing() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ch");
    let mut server = ClickHouse::start(&data);
    let port = server.http_port;
    let sink = ClickHouseSink::start(fast_config(&server, dir.path().join("spool"))).expect("sink");
    let counters = sink.counters();
    let stored = || {
        counters
            .records_stored
            .load(std::sync::atomic::Ordering::Relaxed)
    };

    for i in 0..300 {
        sink.push(&tx(i)).expect("push");
    }
    common::wait_until("the first 300 stored", Duration::from_secs(30), || {
        stored() == 300
    });
    assert_eq!(count(&server, "count()"), 300);

    server.kill();
    for i in 300..700 {
        sink.push(&tx(i)).expect("push");
    }
    common::wait_until("400 records spooled", Duration::from_secs(30), || {
        counters.snapshot().spool_records == 400
    });
    let down = counters.snapshot();
    assert!(down.send_errors > 0, "{down:?}");
    assert_eq!(down.records_stored, 300, "{down:?}");
    assert!(down.spool_bytes > 0, "{down:?}");

    // Back on the same data and port; records keep coming meanwhile.
    server = ClickHouse::start_on(&data, port);
    for i in 700..1000 {
        sink.push(&tx(i)).expect("push");
    }
    let end = sink.finish().expect("finish");
    assert_eq!(end.records_received, 1000, "{end:?}");
    assert_eq!(end.records_stored, 1000, "{end:?}");
    assert_eq!((end.spool_records, end.spool_bytes), (0, 0), "{end:?}");
    assert_eq!(end.spool_overflow_records, 0, "{end:?}");
    // Records arriving after the restart are spooled too while older ones still wait.
    assert!((400..=700).contains(&end.records_spooled), "{end:?}");
    assert_eq!(
        std::fs::metadata(dir.path().join("spool"))
            .expect("spool")
            .len(),
        0
    );
    // Every record once, not merely once after FINAL.
    assert_eq!(count(&server, "count()"), 1000);
    assert_eq!(count(&server, "uniqExact(seq)"), 1000);
    assert_eq!(count(&server, "max(seq)"), 999);
    assert_eq!(count(&server, "uniqExact(start_unix_ns)"), 1000);
}

#[test]
fn a_spooled_batch_already_stored_is_not_inserted_again() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    let spool_path = dir.path().join("spool");
    let cfg = fast_config(&server, spool_path.clone());
    let sink = ClickHouseSink::start(cfg.clone()).expect("sink");
    for i in 0..50 {
        sink.push(&tx(i)).expect("push");
    }
    assert_eq!(sink.finish().expect("finish").records_stored, 50);

    // The same batch left in the spool, as when the store committed it but its answer
    // was lost (or the observer died before forgetting it): the next run resends it.
    let body: Vec<u8> = server
        .query(&format!(
            "SELECT * FROM {DEFAULT_TABLE} ORDER BY seq FORMAT JSONEachRow"
        ))
        .into_bytes();
    let mut spool = Spool::open(&spool_path, 1 << 20).expect("spool");
    assert!(spool
        .append(&Batch {
            run_id: cfg.run_id.clone(),
            first_seq: 0,
            rows: 50,
            body,
        })
        .expect("append"));
    drop(spool);

    let mut again = fast_config(&server, spool_path);
    again.run_id = "second-run".into();
    let end = ClickHouseSink::start(again)
        .expect("sink")
        .finish()
        .expect("finish");
    assert_eq!(end.batches_already_stored, 1, "{end:?}");
    assert_eq!(end.records_stored, 0, "{end:?}");
    assert_eq!(end.spool_records, 0, "{end:?}");
    assert_eq!(count(&server, "count()"), 50);
}

/// Records the insert-rate test sends; the bench command of docs/performance.md sets
/// a million (in release).
const RATE_RECORDS_ENV: &str = "OBSERVER_CLICKHOUSE_BENCH_RECORDS";

#[test]
fn insert_rate_into_the_local_server() {
    if !clickhouse::available() {
        return;
    }
    let records: u64 = std::env::var(RATE_RECORDS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    // The defaults an observer runs with.
    let cfg = ClickHouseConfig::new(&server.url(), DEFAULT_TABLE, dir.path().join("spool"));
    let t0 = std::time::Instant::now();
    let sink = ClickHouseSink::start(cfg).expect("sink");
    for i in 0..records {
        sink.push(&tx(i)).expect("push");
    }
    let end = sink.finish().expect("finish");
    let elapsed = t0.elapsed();
    assert_eq!(end.records_stored, records, "{end:?}");
    assert_eq!(end.records_spooled, 0, "{end:?}");
    assert_eq!(count(&server, "count()"), records);
    eprintln!(
        "clickhouse {}: {records} transactions stored in {:.3} s: {:.0} transactions/s ({} batches)",
        server.version(),
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        end.batches_stored
    );
}
