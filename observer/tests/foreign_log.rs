//! `observer validate` against logs of an instrumented peer that is not ours: written
//! here, in the shape of a JXSE peer's ARM log (its own column names and order, extra
//! columns, no byte counts, names instead of peer IDs, RTT in ms, ISO-8601 start times,
//! its own status words), read through a `--map` file and joined transaction by
//! transaction with the observer's records of the four-peers sample.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use observer::report::read_transactions_csv;
use observer::transaction::{Transaction, TxStatus};

const BIN: &str = env!("CARGO_BIN_EXE_observer");

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff+01:00` for Unix nanoseconds, written in UTC+1 (as a
/// peer on Central European time would) with microseconds, so the reader must apply
/// the offset and the fraction. Civil date from days after Howard Hinnant's algorithm.
fn iso_cet(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64 + 3600;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+01:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ns % 1_000_000_000 / 1000
    )
}

/// Nanoseconds as milliseconds with six decimals (exact).
fn ms(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000, ns % 1_000_000)
}

const MAP: &str = r#"
[columns]
start = "Timestamp"
rtt = "ResponseTime(ms)"
poller = "Peer"
receiver = "Buddy"
status = "Result"
correlator = "CorrelatorID"
receiver_status = "BuddyState"
[units]
start = "iso8601"
rtt = "ms"
[status]
ok = ["GOOD"]
timeout = ["ABORT_TIMEOUT"]
"#;

#[test]
fn foreign_log_joins_transaction_by_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let observed = dir.path().join("observed.csv");
    let st = Command::new(BIN)
        .current_dir(root())
        .args([
            "analyze",
            "captures/four-peers.pcap",
            "--no-progress",
            "--csv",
        ])
        .arg(&observed)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let passive: Vec<Transaction> =
        read_transactions_csv(std::fs::File::open(&observed).unwrap()).unwrap();

    // Two pollers' logs: alice's pairs carry correlators (and carol's timeouts), dave's
    // do not (joined by start time). The JVM stamps start 1.2 ms after the wire and
    // adds its own time to each RTT: a known, different amount per transaction.
    let mut expected_ns: Vec<i64> = Vec::new();
    let mut per_poller = std::collections::BTreeMap::new();
    let mut logs = Vec::new();
    for poller in ["alice", "dave"] {
        let mut log = String::from(
            "Seq,Host,Timestamp,Peer,Buddy,BuddyState,ResponseTime(ms),Result,CorrelatorID,HeapKB,Note\n",
        );
        let mut n = 0u64;
        for t in passive
            .iter()
            .filter(|t| t.poller_name.as_deref() == Some(poller) && t.status != TxStatus::Open)
        {
            n += 1;
            let (rtt, result) = match t.rtt_ns() {
                Some(r) => {
                    let extra = 250_000 + (n % 9) * 731_013;
                    expected_ns.push(extra as i64);
                    (ms(r + extra), "GOOD")
                }
                None => (String::new(), "ABORT_TIMEOUT"),
            };
            writeln!(
                log,
                "{n},jxse-{poller}.example,{},{poller},{},{},{rtt},{result},{},{},\"gc, minor\"",
                iso_cet(t.start + 1_200_000),
                t.receiver_name.as_deref().unwrap_or(""),
                t.receiver_status
                    .map(|s| s.as_str().to_uppercase())
                    .unwrap_or_default(),
                t.correlator.as_deref().unwrap_or(""),
                40_000 + n,
            )
            .unwrap();
        }
        per_poller.insert(poller, n);
        let path = dir.path().join(format!("{poller}-arm.log"));
        std::fs::write(&path, log).unwrap();
        logs.push(path);
    }
    let map = dir.path().join("jxse.toml");
    std::fs::write(&map, MAP).unwrap();

    let out = Command::new(BIN)
        .args(["validate", "--json", "--max-miss", "0", "--map"])
        .arg(&map)
        .arg("--passive")
        .arg(&observed)
        .arg("--active")
        .args(&logs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = &v["total"];
    let written: u64 = per_poller.values().sum();
    assert_eq!(total["active"], written);
    assert_eq!(total["found"], written);
    assert_eq!(total["missed"], 0);
    assert_eq!(total["extra"], 0);
    assert_eq!(total["status_mismatch"], 0);
    assert!(total["joined_by_correlator"].as_u64().unwrap() > 0);
    assert!(total["joined_by_time"].as_u64().unwrap() > 0);
    for p in v["pairs"].as_array().unwrap() {
        assert_eq!(p["found"], p["active"], "{p}");
    }
    for (poller, n) in &per_poller {
        let found: u64 = v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["poller"] == *poller)
            .map(|p| p["found"].as_u64().unwrap())
            .sum();
        assert_eq!(found, *n, "{poller}");
    }
    // Every joined RTT differs by exactly what the log added to it.
    let d = &total["rtt_delta_us"];
    assert_eq!(d["count"], expected_ns.len() as u64);
    let mean_us = expected_ns.iter().sum::<i64>() as f64 / expected_ns.len() as f64 / 1000.0;
    let max_us = *expected_ns.iter().max().unwrap() as f64 / 1000.0;
    assert!(
        (d["mean_us"].as_f64().unwrap() - mean_us).abs() < 1e-6,
        "{d}"
    );
    assert_eq!(d["max_us"].as_f64().unwrap(), max_us, "{d}");
    // A foreign log has no kernel timestamps: no socket differences, each counted.
    assert_eq!(total["socket_rtt_delta_us"]["count"], 0);
    assert_eq!(total["socket_missing"], expected_ns.len() as u64);

    // Without the map: the error names the file and the missing column.
    let out = Command::new(BIN)
        .args(["validate", "--passive"])
        .arg(&observed)
        .arg("--active")
        .arg(&logs[0])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alice-arm.log") && err.contains("start_unix_ns"),
        "{err}"
    );

    // `report` reads the same log through the same map.
    let figs = dir.path().join("figs");
    let out = Command::new(BIN)
        .args(["report", "--map"])
        .arg(&map)
        .arg(&logs[0])
        .arg("-o")
        .arg(&figs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(figs.join("index.html")).unwrap();
    assert!(
        html.contains(&format!("{} records", per_poller["alice"])),
        "report input line"
    );
}
