//! `report --clickhouse`: the merged view across gateways, against a real server
//! (Debian's clickhouse-server, started here).

mod common;

use std::path::Path;
use std::process::Command;

use common::clickhouse::{self, ClickHouse};
use observer::report::figures::ReportData;
use observer::report::stats::RttStats;
use observer::report::Summary;
use observer::store::view::{self, StoreView, ViewFilter};
use observer::store::{create_table_sql, ClickHouseConfig, Client, DEFAULT_TABLE};

/// Floats computed by ClickHouse and by Rust from the same integers in the same order
/// agree to rounding (sums of a few hundred terms).
const REL: f64 = 1e-9;

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= REL * a.abs().max(b.abs()).max(1.0),
        "{what}: {a} != {b}"
    );
}

fn same_stats(a: &RttStats, b: &RttStats, what: &str) {
    assert_eq!(a.count, b.count, "{what} count");
    for (x, y, f) in [
        (a.mean, b.mean, "mean"),
        (a.sd, b.sd, "sd"),
        (a.min, b.min, "min"),
        (a.p50, b.p50, "p50"),
        (a.p90, b.p90, "p90"),
        (a.p99, b.p99, "p99"),
        (a.max, b.max, "max"),
    ] {
        close(x, y, &format!("{what} {f}"));
    }
}

/// Everything a summary from the store must share with one from the CSV (the
/// overhead needs message sizes the store does not hold).
fn same_summary(store: &Summary, csv: &Summary) {
    assert_eq!(store.transactions, csv.transactions);
    same_stats(&store.rtt_ms, &csv.rtt_ms, "all");
    assert_eq!(store.pairs.len(), csv.pairs.len());
    for (s, c) in store.pairs.iter().zip(&csv.pairs) {
        let what = format!("{} -> {}", c.poller, c.receiver);
        assert_eq!(
            (
                &s.poller,
                &s.poller_id,
                &s.receiver,
                &s.receiver_id,
                &s.counts
            ),
            (
                &c.poller,
                &c.poller_id,
                &c.receiver,
                &c.receiver_id,
                &c.counts
            ),
            "{what}"
        );
        same_stats(&s.rtt_ms, &c.rtt_ms, &what);
    }
    assert_eq!(store.matrix.pollers, csv.matrix.pollers);
    assert_eq!(store.matrix.receivers, csv.matrix.receivers);
    for (rs, rc) in store.matrix.mean_ms.iter().zip(&csv.matrix.mean_ms) {
        for (s, c) in rs.iter().zip(rc) {
            assert_eq!(s.is_some(), c.is_some());
            if let (Some(s), Some(c)) = (s, c) {
                close(*s, *c, "matrix");
            }
        }
    }
    assert_eq!(store.presence, csv.presence);
    // The attribution read back from the store is the one the capture gave.
    let (st, ct) = (
        store.tail.as_ref().expect("store tail"),
        csv.tail.as_ref().expect("csv tail"),
    );
    close(st.from_ms, ct.from_ms, "tail from");
    assert_eq!(
        (st.count, &st.by_cause, st.none),
        (ct.count, &ct.by_cause, ct.none)
    );
    assert!(!ct.by_cause.is_empty(), "the sample's tail has causes");
    assert_eq!(store.capture_duration_ns, csv.capture_duration_ns);
    assert_eq!(store.rtt_percentiles_relative_error, None);
}

/// JSON values equal, numbers to [`REL`].
fn same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => close(
            x.as_f64().unwrap_or(f64::NAN),
            y.as_f64().unwrap_or(f64::NAN),
            at,
        ),
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same_json(x, y, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            assert_eq!(kx, ky, "{at}");
            for (k, v) in x {
                same_json(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn client(server: &ClickHouse, dir: &Path) -> Client {
    Client::new(&ClickHouseConfig::new(
        &server.url(),
        DEFAULT_TABLE,
        dir.join("unused-spool"),
    ))
    .expect("client")
}

fn observer(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(args)
        .output()
        .expect("run observer");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("json file")).expect("json")
}

#[test]
fn report_from_the_store_equals_report_from_the_csv() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    let csv = dir.path().join("tx.csv");
    // A table an older observer created, without the cause columns: the first run
    // adds them.
    server.query(&old_table());
    let columns = |server: &ClickHouse| {
        server.query(&format!(
            "DESCRIBE TABLE {DEFAULT_TABLE} FORMAT TabSeparated"
        ))
    };
    assert!(!columns(&server).contains("relay_peer_id"));
    // The same capture stored by two runs of one gateway: still each transaction once.
    for run in ["1", "2"] {
        observer(&[
            "analyze".as_ref(),
            "--no-progress".as_ref(),
            "--csv".as_ref(),
            csv.as_os_str(),
            "--clickhouse".as_ref(),
            server.url().as_ref(),
            "--clickhouse-spool".as_ref(),
            dir.path().join(format!("spool{run}")).as_os_str(),
            "--gateway".as_ref(),
            "gw-a".as_ref(),
            common::capture("four-peers.pcap").as_os_str(),
        ]);
    }
    let described = columns(&server);
    for (name, ty) in observer::store::CAUSE_COLUMN_TYPES {
        assert!(
            described
                .lines()
                .any(|l| l.starts_with(&format!("{name}\t{ty}"))),
            "{name} {ty}: {described}"
        );
    }
    let txs = observer::report::read_transactions_csv(std::fs::File::open(&csv).expect("csv"))
        .expect("read csv");
    let n = txs.len() as u64;
    assert!(n > 100, "the sample has {n} transactions");
    let from_csv = ReportData::from_csv(txs.clone(), Vec::new(), 10_000_000_000, "");

    let v: StoreView = view::read(
        &client(&server, dir.path()),
        &ViewFilter::new(DEFAULT_TABLE),
    )
    .expect("view");
    assert_eq!(v.merge.views, 2 * n, "{:?}", v.merge);
    assert_eq!(v.merge.transactions, n, "{:?}", v.merge);
    assert_eq!(v.per_gateway.len(), 1);
    assert_eq!((v.per_gateway[0].rows, v.per_gateway[0].runs), (2 * n, 2));
    assert!(v.offsets.is_empty() && v.segments.is_empty());
    assert_eq!(v.merge.joined_within_a_run, 0);
    assert!(
        !from_csv.summary.presence.changes.is_empty(),
        "the sample has presence changes"
    );
    same_summary(&v.summary, &from_csv.summary);
    let data = v.report_data("store", 10_000_000_000, "");
    assert_eq!(data.timeout_ns, from_csv.timeout_ns);
    // Below the figure bound every transaction is pulled, as the CSV holds them.
    assert_eq!(v.sample_step, 1);
    let key = |t: &observer::transaction::Transaction| format!("{t:?}");
    let mut pulled: Vec<String> = v.transactions.iter().map(key).collect();
    let mut expected: Vec<String> = txs.iter().map(key).collect();
    pulled.sort();
    expected.sort();
    assert_eq!(pulled, expected);

    // The command line: the same summary JSON from the store as from the CSV.
    let from_store_dir = dir.path().join("from-store");
    let from_csv_dir = dir.path().join("from-csv");
    observer(&[
        "report".as_ref(),
        "--clickhouse".as_ref(),
        server.url().as_ref(),
        "-o".as_ref(),
        from_store_dir.as_os_str(),
    ]);
    observer(&[
        "report".as_ref(),
        csv.as_os_str(),
        "-o".as_ref(),
        from_csv_dir.as_os_str(),
    ]);
    let s = read_json(&from_store_dir.join("summary.json"));
    let c = read_json(&from_csv_dir.join("summary.json"));
    for k in [
        "transactions",
        "rtt_ms",
        "pairs",
        "matrix",
        "presence",
        "capture_duration_ns",
        "rtt_percentiles_relative_error",
    ] {
        same_json(&s[k], &c[k], k);
    }
    let merged = read_json(&from_store_dir.join("merged.json"));
    assert_eq!(merged["merge"]["transactions"], serde_json::json!(n));
    for fig in [
        "timeseries.svg",
        "distribution.svg",
        "presence.svg",
        "index.html",
    ] {
        assert!(from_store_dir.join(fig).exists(), "{fig}");
    }

    // analyze's tables from the store: its per-pair table and matrix, line for line.
    let tables = observer(&[
        "report".as_ref(),
        "--clickhouse".as_ref(),
        server.url().as_ref(),
        "--tables".as_ref(),
    ]);
    let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
    let analyze = observer(&[
        "analyze".as_ref(),
        "--no-progress".as_ref(),
        common::capture("four-peers.pcap").as_os_str(),
    ]);
    let analyze = String::from_utf8_lossy(&analyze.stdout).into_owned();
    let section = |text: &str, title: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.starts_with(title))
            .take_while(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    for title in ["PING/PONG transactions", "Mean RTT matrix"] {
        let from_capture = section(&analyze, title);
        assert!(from_capture.len() > 3, "{title}: {analyze}");
        assert_eq!(section(&tables, title), from_capture, "{title}");
    }
    assert!(
        tables.contains("Gateways (merge window 2000 ms)"),
        "{tables}"
    );

    // The selection options reach the store: a gateway that stored nothing, and a
    // time after the capture, select nothing; the gateway that stored it, everything.
    let last = txs.iter().map(|t| t.start).max().expect("transactions");
    let after = humantime::format_rfc3339_nanos(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(last + 1),
    )
    .to_string();
    let url = server.url();
    let out_dir = dir.path().join("selected");
    for (args, expected) in [
        (["--gateway", "gw-x"], 0),
        (["--gateway", "gw-a"], n),
        (["--since", after.as_str()], 0),
        (["--until", after.as_str()], n),
    ] {
        let mut all: Vec<&std::ffi::OsStr> = vec![
            "report".as_ref(),
            "--clickhouse".as_ref(),
            url.as_ref(),
            "-o".as_ref(),
            out_dir.as_os_str(),
        ];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        observer(&all);
        let m = read_json(&out_dir.join("merged.json"));
        assert_eq!(
            m["merge"]["transactions"],
            serde_json::json!(expected),
            "{args:?}"
        );
    }
}

/// The table as observer created it before the cause columns.
fn old_table() -> String {
    format!(
        "CREATE TABLE {DEFAULT_TABLE} (start_unix_ns UInt64, \
stop_unix_ns Nullable(UInt64), rtt_us Nullable(Float64), poller_name String, poller_peer_id String, \
receiver_name String, receiver_peer_id String, receiver_status String, transaction_status String, \
correlator String, match_method String, ping_bytes UInt64, pong_bytes Nullable(UInt64), \
correlator_overhead_bytes UInt64, gateway String, interface String, run_id String, seq UInt64\
) ENGINE = ReplacingMergeTree() \
PARTITION BY toYYYYMM(toDateTime(intDiv(start_unix_ns, 1000000000))) \
ORDER BY (poller_name, receiver_name, start_unix_ns, run_id, seq)"
    )
}

/// gw-b's clock minus gw-a's.
const THETA_NS: i64 = 250_000_000;
const T0: u64 = 1_767_225_600_000_000_000;
const POLL_NS: u64 = 10_000_000_000;
const MS: u64 = 1_000_000;

/// One synthetic transaction and what each gateway's wire saw of it.
struct Truth {
    poller: &'static str,
    receiver: &'static str,
    correlator: String,
    /// The poller is behind gw-a (else behind gw-b).
    poller_on_a: bool,
    /// PING at the poller's gateway (true time), one-way legs between the gateways,
    /// and the receiver's side (its gateway to the receiver and back).
    at: u64,
    fwd: u64,
    recv: u64,
    ret: u64,
    timeout: bool,
    status: &'static str,
    /// Whether each gateway stored it.
    on_a: bool,
    on_b: bool,
}

impl Truth {
    fn outer_rtt(&self) -> u64 {
        self.fwd + self.recv + self.ret
    }

    /// The row a gateway stores (its clock: gw-b reads THETA_NS ahead).
    fn row(&self, gateway_a: bool, seq: u64) -> serde_json::Value {
        let near = gateway_a == self.poller_on_a;
        let (start, stop) = if near {
            (self.at, self.at + self.outer_rtt())
        } else {
            (self.at + self.fwd, self.at + self.fwd + self.recv)
        };
        let shift = |t: u64| {
            if gateway_a {
                t
            } else {
                t.saturating_add_signed(THETA_NS)
            }
        };
        let (start, stop) = (shift(start), shift(stop));
        let stop = if self.timeout { start + POLL_NS } else { stop };
        serde_json::json!({
            "start_unix_ns": start,
            "stop_unix_ns": stop,
            "rtt_us": if self.timeout { serde_json::Value::Null } else { ((stop - start) as f64 / 1000.0).into() },
            "poller_name": self.poller,
            "poller_peer_id": "",
            "receiver_name": self.receiver,
            "receiver_peer_id": "",
            "receiver_status": if self.timeout { "" } else { self.status },
            "transaction_status": if self.timeout { "timeout" } else { "ok" },
            "correlator": self.correlator,
            "match_method": if self.correlator.is_empty() { "order" } else { "correlator" },
            "ping_bytes": 900,
            "pong_bytes": if self.timeout { serde_json::Value::Null } else { 800.into() },
            "correlator_overhead_bytes": if self.correlator.is_empty() { 0 } else { 44 },
            "gateway": if gateway_a { "gw-a" } else { "gw-b" },
            "interface": "eth1",
            "run_id": if gateway_a { "run-a" } else { "run-b" },
            "seq": seq,
        })
    }
}

/// alice and carol behind gw-a, bob and dave behind gw-b. alice polls bob and bob
/// polls alice with correlators; carol polls dave without (paired by order), and gw-b
/// started three polls late. One of alice's PINGs times out; bob turns busy.
fn scenario() -> Vec<Truth> {
    let mut out = Vec::new();
    for i in 0..20u64 {
        out.push(Truth {
            poller: "alice",
            receiver: "bob",
            correlator: format!("a{i}"),
            poller_on_a: true,
            at: T0 + i * POLL_NS,
            fwd: (20 + (7 * i) % 13) * MS,
            recv: (100 + i) * MS,
            ret: (25 + (5 * i) % 11) * MS,
            timeout: i == 7,
            status: if i < 10 { "online" } else { "busy" },
            on_a: true,
            on_b: true,
        });
        out.push(Truth {
            poller: "bob",
            receiver: "alice",
            correlator: format!("b{i}"),
            poller_on_a: false,
            at: T0 + 3_000 * MS + i * POLL_NS,
            fwd: (22 + (3 * i) % 7) * MS,
            recv: (60 + 2 * i) * MS,
            ret: (30 + i % 5) * MS,
            timeout: false,
            status: "online",
            on_a: true,
            on_b: true,
        });
    }
    for i in 0..15u64 {
        out.push(Truth {
            poller: "carol",
            receiver: "dave",
            correlator: String::new(),
            poller_on_a: true,
            at: T0 + 6_000 * MS + i * POLL_NS,
            fwd: (40 + i % 3) * MS,
            recv: (200 + 3 * i) * MS,
            ret: (45 + i % 4) * MS,
            timeout: false,
            status: "away",
            on_a: true,
            on_b: i >= 3,
        });
    }
    out
}

/// ClickHouse's `quantileExact(0.5)`: the element at ⌊n/2⌋ of the sorted values.
fn ch_median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn two_gateways_count_each_transaction_once_and_recover_their_offset() {
    if !clickhouse::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ClickHouse::start(&dir.path().join("ch"));
    server.query(&create_table_sql(DEFAULT_TABLE));
    let truth = scenario();
    let mut body = format!("INSERT INTO {DEFAULT_TABLE} FORMAT JSONEachRow\n");
    let (mut seq_a, mut seq_b) = (0, 0);
    for t in &truth {
        if t.on_a {
            body.push_str(&format!("{}\n", t.row(true, seq_a)));
            seq_a += 1;
        }
        if t.on_b {
            body.push_str(&format!("{}\n", t.row(false, seq_b)));
            seq_b += 1;
        }
    }
    server.query(&body);
    let client = client(&server, dir.path());
    let v = view::read(&client, &ViewFilter::new(DEFAULT_TABLE)).expect("view");
    eprintln!("{}", v.render_text());

    // Counted once: 55 transactions from 107 views, 52 of them seen by both.
    let both = truth.iter().filter(|t| t.on_a && t.on_b).count() as u64;
    assert_eq!(v.merge.views, seq_a + seq_b);
    assert_eq!(v.merge.transactions, truth.len() as u64, "{:?}", v.merge);
    assert_eq!(v.merge.seen_by_two_gateways, both);
    assert_eq!(v.merge.seen_by_more_gateways, 0);
    assert_eq!(v.merge.joined_within_a_run, 0);
    let s = &v.summary;
    assert_eq!(
        (
            s.transactions.total,
            s.transactions.ok,
            s.transactions.timeout
        ),
        (55, 54, 1)
    );
    // Each pair's RTT is the poller's gateway's view: the whole round trip past it.
    for (poller, receiver) in [("alice", "bob"), ("bob", "alice"), ("carol", "dave")] {
        let p = s
            .pairs
            .iter()
            .find(|p| *p.poller == *poller && *p.receiver == *receiver)
            .expect("pair");
        let mine: Vec<&Truth> = truth
            .iter()
            .filter(|t| t.poller == poller && t.receiver == receiver)
            .collect();
        assert_eq!(p.counts.total, mine.len() as u64, "{poller}");
        let expected = RttStats::from_ns(mine.iter().filter(|t| !t.timeout).map(|t| t.outer_rtt()));
        same_stats(&p.rtt_ms, &expected, poller);
    }
    // bob's presence changes once (online -> busy), not once per gateway.
    let bob: Vec<_> = s
        .presence
        .changes
        .iter()
        .filter(|c| c.peer == "bob")
        .collect();
    assert_eq!(bob.len(), 2, "{bob:?}");
    assert_eq!((bob[1].from, bob[1].to), (Some("online"), "busy"));
    let tenth = &truth[20];
    assert_eq!((tenth.poller, tenth.correlator.as_str()), ("alice", "a10"));
    assert_eq!(bob[1].time_unix_ns, tenth.at + tenth.outer_rtt());

    // The offset: the causality intervals of the answered two-view transactions
    // intersect in [θ − min(legs after the PONG), θ + min(legs before it)], seen from
    // each side.
    let answered_both: Vec<&Truth> = truth
        .iter()
        .filter(|t| t.on_a && t.on_b && !t.timeout)
        .collect();
    let min_up = answered_both
        .iter()
        .map(|t| if t.poller_on_a { t.fwd } else { t.ret })
        .min()
        .expect("some") as f64;
    let min_low = answered_both
        .iter()
        .map(|t| if t.poller_on_a { t.ret } else { t.fwd })
        .min()
        .expect("some") as f64;
    assert_eq!(v.offsets.len(), 1, "{:?}", v.offsets);
    let o = &v.offsets[0];
    assert_eq!(o.gateways, ("gw-a".to_string(), "gw-b".to_string()));
    assert_eq!(o.transactions, answered_both.len() as u64);
    assert!(o.consistent);
    let theta = THETA_NS as f64;
    close(
        o.offset_ms,
        (theta + (min_up - min_low) / 2.0) / 1e6,
        "offset",
    );
    let bound = o.bound_ms.expect("a bound");
    close(bound, (min_up + min_low) / 2.0 / 1e6, "bound");
    assert!((o.offset_ms - theta / 1e6).abs() <= bound, "{o:?}");
    let err_ms = o.offset_ms - theta / 1e6;
    assert!(err_ms.abs() > 0.1, "the legs make the estimate miss: {o:?}");

    // Segments: the receiver side and the total are clock-free; the one-way legs are
    // off by the offset's error, in opposite directions.
    for (poller, receiver) in [("alice", "bob"), ("bob", "alice"), ("carol", "dave")] {
        let mine: Vec<&&Truth> = answered_both
            .iter()
            .filter(|t| t.poller == poller && t.receiver == receiver)
            .collect();
        let seg = v
            .segments
            .iter()
            .find(|s| s.poller == poller && s.receiver == receiver)
            .expect("segments");
        let on_a = mine[0].poller_on_a;
        assert_eq!(
            (seg.poller_gateway.as_str(), seg.receiver_gateway.as_str()),
            if on_a {
                ("gw-a", "gw-b")
            } else {
                ("gw-b", "gw-a")
            }
        );
        assert_eq!(seg.transactions, mine.len() as u64);
        let med =
            |f: &dyn Fn(&Truth) -> u64| ch_median(mine.iter().map(|t| f(t) as f64 / 1e6).collect());
        close(seg.total_ms.p50, med(&|t| t.outer_rtt()), "total");
        close(seg.receiver_side_ms.p50, med(&|t| t.recv), "receiver side");
        let sign = if on_a { -1.0 } else { 1.0 };
        let within = |a: f64, b: f64, what: &str| {
            assert!((a - b).abs() < 1e-6, "{poller} {what}: {a} != {b}");
        };
        within(
            seg.forward_ms.p50,
            med(&|t| t.fwd) + sign * err_ms,
            "forward",
        );
        within(seg.return_ms.p50, med(&|t| t.ret) - sign * err_ms, "return");
    }

    // The figures' transactions are bounded: every k-th by hash, tables still whole.
    let mut few = ViewFilter::new(DEFAULT_TABLE);
    few.figure_max = 10;
    let sampled = view::read(&client, &few).expect("sampled view");
    assert_eq!(sampled.sample_step, 6);
    assert!(
        (1..=10).contains(&sampled.transactions.len()),
        "{}",
        sampled.transactions.len()
    );
    assert_eq!(sampled.summary.transactions.total, 55);

    // One gateway's view alone: no merging, no offsets.
    let mut only_b = ViewFilter::new(DEFAULT_TABLE);
    only_b.gateways = vec!["gw-b".into()];
    let b = view::read(&client, &only_b).expect("gw-b view");
    assert_eq!(b.merge.transactions, seq_b);
    assert_eq!(b.merge.seen_by_two_gateways, 0);
    assert!(b.offsets.is_empty() && b.segments.is_empty());
}
