//! The ClickHouse sink against a real server (Debian's clickhouse-server, started here).

mod common;

use std::process::Command;
use std::time::Duration;

use common::clickhouse::{self, ClickHouse};
use observer::store::{Batch, ClickHouseConfig, ClickHouseSink, Spool, DEFAULT_TABLE};
use observer::transaction::{Transaction, TxStatus};

/// The CSV's columns, read back from the table in the CSV's order.
/// The CSV's columns and the cause columns `analyze` appends: the store holds both.
fn csv_columns() -> String {
    format!(
        "{},{}",
        observer::report::CSV_HEADER,
        observer::report::CAUSE_COLUMNS
    )
}

/// Columns holding µs: `rtt_us` and the cause shares `tcp_us`, `conn_us`, `queue_us`,
/// `far_us`.
const US_COLUMNS: [usize; 5] = [2, 15, 16, 17, 19];

/// Fields comparable as text: ClickHouse's `\N` is the CSV's empty field, and µs are
/// compared as numbers (`1181.8` and `1181.800` are the same figure).
fn normalise(mut fields: Vec<String>) -> Vec<String> {
    for f in fields.iter_mut() {
        if f == "\\N" {
            f.clear();
        }
    }
    for i in US_COLUMNS {
        if let Some(us) = fields.get_mut(i) {
            if let Ok(v) = us.parse::<f64>() {
                *us = format!("{:.3}", v);
            }
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
        expected
            .iter()
            .any(|r| r.get(14).is_some_and(|c| !c.is_empty())),
        "some transaction carries a cause"
    );
    assert!(
        expected.len() > 100,
        "the sample has {} transactions",
        expected.len()
    );

    // Without FINAL: not one duplicate row may exist, merged or not.
    let tsv = server.query(&format!(
        "SELECT {} FROM {DEFAULT_TABLE} FORMAT TSV",
        csv_columns()
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
        poller_name: Some(format!("p{}", i % 3).into()),
        poller_id: None,
        receiver_name: Some(format!("r{}", i % 5).into()),
        receiver_id: None,
        receiver_status: None,
        status: TxStatus::Ok,
        correlator: Some(format!("c{i}").into()),
        match_method: None,
        ping_bytes: 100 + i,
        pong_bytes: Some(200),
        correlator_overhead_bytes: 44,
        cause: Default::default(),
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
    // Emptied and removed at the end.
    assert!(!dir.path().join("spool").exists());
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
            starts: (tx(0).start, tx(49).start),
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

/// `observer live` on a veth with the eBPF tap, storing into ClickHouse: the store holds
/// exactly the rows of its CSV, labelled with the interface, and `/metrics` shows the sink.
#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn live_stores_exactly_its_csv_rows() {
    live_into_clickhouse(false);
}

/// The same with ClickHouse killed before the traffic and restarted on the same data
/// once the records are spooled (by then the observer runs as `nobody`).
#[test]
#[ignore = "needs root and tcpreplay: scripts/test runs it as root with --include-ignored"]
fn live_survives_a_store_outage() {
    live_into_clickhouse(true);
}

/// One live run at a time: tcpreplay's pacing suffers when several share the cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn live_into_clickhouse(outage: bool) {
    use std::io::Read;
    use std::process::Stdio;
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !(common::root_with(&["tcpreplay"]) && clickhouse::available()) {
        return;
    }
    let Some(veth) = common::Veth::new(if outage { "o" } else { "k" }) else {
        panic!("cannot create a network namespace and veth pair as root");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ch");
    let mut server = ClickHouse::start(&data);
    // The observer runs as `nobody` once set up: the CSV and spool are opened before.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    }
    let csv = out.join("live.csv");
    let metrics = common::free_local_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args([
            "live",
            "-i",
            &veth.host,
            "--source",
            "ebpf",
            "--metrics",
            &metrics,
        ])
        .arg("--csv")
        .arg(&csv)
        .arg("--clickhouse")
        .arg(server.url())
        .arg("--clickhouse-spool")
        .arg(out.join("spool"))
        .args(["--gateway", "gw-live"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start observer live");
    let mut child = common::Killer(child);
    common::wait_until("observer live to come up", Duration::from_secs(20), || {
        common::http_get(&metrics, "/metrics").is_some_and(|m| m.contains("observer_active_flows"))
    });
    let port = server.http_port;
    if outage {
        server.kill();
    }
    veth.replay("two-peers.pcap", 10);
    let truth = std::fs::File::open(common::capture("two-peers.truth.csv")).expect("truth");
    let expected = observer::report::read_transactions_csv(truth)
        .expect("truth csv")
        .iter()
        .filter(|t| t.status == TxStatus::Ok)
        .count() as u64;
    let gauge = |m: &str, name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let stored_line = |m: &str| gauge(m, "observer_store_records_stored_total");
    if outage {
        common::wait_until(
            "the answered transactions spooled",
            Duration::from_secs(20),
            || {
                common::http_get(&metrics, "/metrics")
                    .and_then(|m| gauge(&m, "observer_store_spool_records"))
                    .is_some_and(|n| n >= expected)
            },
        );
        let m = common::http_get(&metrics, "/metrics").unwrap_or_default();
        assert_eq!(stored_line(&m), Some(0), "{m}");
        assert!(
            gauge(&m, "observer_store_send_errors_total").is_some_and(|n| n > 0),
            "{m}"
        );
        assert!(std::fs::metadata(out.join("spool")).expect("spool").len() > 0);
        server = ClickHouse::start_on(&data, port);
    }
    // Within seconds of being found, while the observer runs.
    common::wait_until(
        "the answered transactions stored",
        Duration::from_secs(20),
        || {
            common::http_get(&metrics, "/metrics")
                .and_then(|m| stored_line(&m))
                .is_some_and(|n| n >= expected)
        },
    );
    let scraped = common::http_get(&metrics, "/metrics").unwrap_or_default();
    assert!(
        scraped.contains("observer_store_spool_records 0"),
        "{scraped}"
    );

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = common::wait_exit(&mut child.0, Duration::from_secs(20))
        .expect("observer exits after SIGTERM");
    let mut err = String::new();
    if let Some(e) = child.0.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{err}");

    let rows = observer::report::read_transactions_csv(std::fs::File::open(&csv).expect("csv"))
        .expect("live csv")
        .len() as u64;
    assert!(
        rows >= expected,
        "{rows} rows, {expected} answered in the capture"
    );
    assert!(
        err.contains(&format!("clickhouse: {rows} transactions stored")),
        "{err}"
    );
    let labels = server.query(&format!(
        "SELECT gateway, interface, count(), uniqExact(seq) FROM {DEFAULT_TABLE} GROUP BY gateway, interface FORMAT TSV"
    ));
    assert_eq!(
        labels.trim(),
        format!("gw-live\t{}\t{rows}\t{rows}", veth.host)
    );
    let ok = count_where(&server, "transaction_status = 'ok'");
    assert_eq!(ok, expected);
    // Live stores the causes its CSV has, field for field.
    let mut reader = csv::Reader::from_path(&csv).expect("csv");
    let mut written: Vec<Vec<String>> = reader
        .records()
        .map(|r| normalise(r.expect("record").iter().map(str::to_string).collect()))
        .collect();
    let tsv = server.query(&format!(
        "SELECT {} FROM {DEFAULT_TABLE} FINAL FORMAT TSV",
        csv_columns()
    ));
    let mut stored: Vec<Vec<String>> = tsv
        .lines()
        .map(|l| normalise(l.split('\t').map(str::to_string).collect()))
        .collect();
    written.sort();
    stored.sort();
    assert_eq!(stored, written);
}

fn count_where(server: &ClickHouse, cond: &str) -> u64 {
    server
        .query(&format!(
            "SELECT count() FROM {DEFAULT_TABLE} WHERE {cond} FORMAT TSV"
        ))
        .trim()
        .parse()
        .expect("a number")
}

/// Credentials come from the environment; wrong ones make the store refuse every batch,
/// and the records wait in the spool instead of being lost.
#[test]
fn credentials_from_the_environment_and_a_refusing_store_spools() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    let spool = dir.path().join("spool");
    let run = |password: &str| {
        Command::new(env!("CARGO_BIN_EXE_observer"))
            .args(["analyze", "--no-progress", "--clickhouse"])
            .arg(server.url())
            .arg("--clickhouse-spool")
            .arg(&spool)
            .env(observer::store::ENV_USER, clickhouse::TEST_USER)
            .env(observer::store::ENV_PASSWORD, password)
            .arg(common::capture("four-peers.pcap"))
            .output()
            .expect("run observer")
    };
    let refused = run("not-the-password");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("clickhouse: 0 transactions stored")
            && stderr.contains("wait in the spool"),
        "{stderr}"
    );
    assert!(std::fs::metadata(&spool).expect("spool").len() > 0);

    // The next run with the right password sends the spooled run first, then its own.
    let ok = run(clickhouse::TEST_PASSWORD);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    let per_run = server.query(&format!(
        "SELECT count() FROM {DEFAULT_TABLE} GROUP BY run_id ORDER BY min(seq) FORMAT TSV"
    ));
    let per_run: Vec<u64> = per_run
        .lines()
        .map(|l| l.parse().expect("a count"))
        .collect();
    assert_eq!(per_run.len(), 2, "{per_run:?}");
    assert_eq!(per_run[0], per_run[1], "both runs stored whole");
    assert!(per_run[0] > 100, "{per_run:?}");
    let stored = count(&server, "count()");
    assert!(
        stderr.contains(&format!("clickhouse: {stored} transactions stored")),
        "{stderr}"
    );
    assert!(!spool.exists(), "the emptied spool is removed");
}

/// With the defaults (batches of 10,000), a few records still reach the store within
/// seconds: the batch is sent by age.
#[test]
fn a_partial_batch_is_sent_within_seconds() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    let cfg = ClickHouseConfig::new(&server.url(), DEFAULT_TABLE, dir.path().join("spool"));
    assert!(cfg.batch_rows > 3);
    let sink = ClickHouseSink::start(cfg).expect("sink");
    for i in 0..3 {
        sink.push(&tx(i)).expect("push");
    }
    let t0 = std::time::Instant::now();
    common::wait_until("3 records stored", Duration::from_secs(5), || {
        sink.counters()
            .records_stored
            .load(std::sync::atomic::Ordering::Relaxed)
            == 3
    });
    eprintln!("3 records stored {:?} after the push", t0.elapsed());
    assert_eq!(count(&server, "count()"), 3);
    drop(sink);
}

/// A store down and a spool too small: what does not fit is dropped and counted, what
/// fits is stored when the store is back; nothing else is lost.
#[test]
fn a_full_spool_counts_what_it_drops() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ch");
    let mut server = ClickHouse::start(&data);
    let port = server.http_port;
    server.kill();
    let mut cfg = fast_config(&server, dir.path().join("spool"));
    // Room for about two batches of 50 (a record is ~400 bytes of JSON).
    cfg.spool_max_bytes = 45_000;
    let sink = ClickHouseSink::start(cfg).expect("sink");
    let counters = sink.counters();
    for i in 0..500 {
        sink.push(&tx(i)).expect("push");
    }
    common::wait_until("500 records handled", Duration::from_secs(30), || {
        let s = counters.snapshot();
        s.records_spooled + s.spool_overflow_records == 500
    });
    let down = counters.snapshot();
    assert!(down.spool_overflow_records > 0, "{down:?}");
    assert!(down.records_spooled > 0, "{down:?}");
    assert!(down.spool_bytes <= 45_000, "{down:?}");
    server = ClickHouse::start_on(&data, port);
    let end = sink.finish().expect("finish");
    assert_eq!(end.records_stored, down.records_spooled, "{end:?}");
    assert_eq!(
        end.records_stored + end.spool_overflow_records,
        500,
        "{end:?}"
    );
    assert_eq!(count(&server, "count()"), end.records_stored);
}

/// A table created earlier with other columns refuses every batch for its content:
/// the batches are set aside in `<spool>.rejected` and counted instead of holding the
/// spool forever; once the table is dropped, the sink creates it again and stores.
#[test]
fn batches_the_table_refuses_are_set_aside_and_a_dropped_table_is_recreated() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    server.query(&format!(
        "CREATE TABLE {DEFAULT_TABLE} (start_unix_ns UInt64) ENGINE = MergeTree() ORDER BY start_unix_ns"
    ));
    let spool = dir.path().join("spool");
    let sink = ClickHouseSink::start(fast_config(&server, spool.clone())).expect("sink");
    let counters = sink.counters();
    for i in 0..120 {
        sink.push(&tx(i)).expect("push");
    }
    common::wait_until("120 records set aside", Duration::from_secs(30), || {
        counters.snapshot().records_rejected == 120
    });
    let s = counters.snapshot();
    assert_eq!((s.records_stored, s.spool_records), (0, 0), "{s:?}");
    let rejected = Spool::open(&dir.path().join("spool.rejected"), u64::MAX).expect("rejected");
    assert_eq!(rejected.pending_records(), 120);
    drop(rejected);

    server.query(&format!("DROP TABLE {DEFAULT_TABLE}"));
    for i in 120..170 {
        sink.push(&tx(i)).expect("push");
    }
    let end = sink.finish().expect("finish");
    assert_eq!(end.records_stored, 50, "{end:?}");
    assert_eq!(end.records_rejected, 120, "{end:?}");
    assert_eq!(count(&server, "count()"), 50);
    assert_eq!(count(&server, "min(seq)"), 120);
}
