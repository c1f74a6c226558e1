//! The `observer` binary end to end on the sample captures: CSV, JSON, tables, standard
//! input, several inputs, `--timeout`, `--port`, `messages`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use observer::report::read_transactions_csv;
use observer::transaction::{Transaction, TxStatus};

fn observer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run observer")
}

fn truth(name: &str) -> Vec<Transaction> {
    let f = std::fs::File::open(common::capture(&format!("{name}.truth.csv"))).expect("truth");
    read_transactions_csv(f).expect("truth csv")
}

fn ok_count(ts: &[Transaction]) -> usize {
    ts.iter().filter(|t| t.status == TxStatus::Ok).count()
}

#[test]
fn csv_file_and_stdout_equal_the_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.csv");
    let o = observer(&[
        "analyze",
        "captures/two-peers.pcap",
        "--csv",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = std::fs::read(common::capture("two-peers.truth.csv")).expect("truth");
    assert_eq!(study_columns(&std::fs::read(&out).expect("csv")), expected);
    // The human table still went to stdout.
    assert!(String::from_utf8_lossy(&o.stdout).contains("PING/PONG transactions"));

    let o = observer(&["analyze", "captures/two-peers.pcap", "--csv", "-"]);
    assert!(o.status.success());
    assert_eq!(
        study_columns(&o.stdout),
        expected,
        "with --csv -, stdout holds the CSV and nothing else"
    );
}

/// The RTT statistics of `ts`'s answered transactions as docs/formats.md defines them
/// (sample sd, numpy's linear percentiles), computed here rather than by the library.
fn truth_stats(ts: &[&Transaction]) -> Vec<(&'static str, f64)> {
    let mut ms: Vec<f64> = ts
        .iter()
        .filter_map(|t| t.rtt_ns())
        .map(|ns| ns as f64 / 1e6)
        .collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len() as f64;
    let mean = ms.iter().sum::<f64>() / n;
    let sd = (ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let pct = |p: f64| {
        let rank = p / 100.0 * (n - 1.0);
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        ms[lo] + (ms[hi] - ms[lo]) * (rank - rank.floor())
    };
    vec![
        ("count", n),
        ("mean", mean),
        ("sd", sd),
        ("min", ms[0]),
        ("p50", pct(50.0)),
        ("p90", pct(90.0)),
        ("p99", pct(99.0)),
        ("max", ms[ms.len() - 1]),
    ]
}

fn assert_stats_match(got: &serde_json::Value, ts: &[&Transaction], what: &str) {
    for (k, want) in truth_stats(ts) {
        let g = got[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: rtt_ms.{k} missing"));
        // Only summation order may differ: far below the µs the truth is written in.
        assert!(
            (g - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{what}: rtt_ms.{k} = {g}, truth {want}"
        );
    }
}

#[test]
fn json_summary_has_the_documented_keys_and_agrees_with_the_truth() {
    let o = observer(&["analyze", "captures/four-peers.pcap", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let truth = truth("four-peers");
    let count = |s: TxStatus| truth.iter().filter(|t| t.status == s).count() as u64;
    assert_eq!(v["transactions"]["ok"], count(TxStatus::Ok));
    assert_eq!(v["transactions"]["timeout"], count(TxStatus::Timeout));
    assert_eq!(v["transactions"]["open"], count(TxStatus::Open));
    assert_eq!(v["transactions"]["total"], truth.len() as u64);
    let all: Vec<&Transaction> = truth.iter().collect();
    assert_stats_match(&v["rtt_ms"], &all, "all");
    assert_eq!(v["rtt_ms"]["count"], ok_count(&truth) as u64);
    let pairs = v["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 12, "four peers in a full mesh");
    for p in pairs {
        assert!(p["poller"].is_string() && p["receiver"].is_string());
        let n = truth
            .iter()
            .filter(|t| {
                t.status == TxStatus::Ok
                    && t.poller_name.as_deref() == p["poller"].as_str()
                    && t.receiver_name.as_deref() == p["receiver"].as_str()
            })
            .count() as u64;
        assert_eq!(p["ok"], n, "{p}");
        let of_pair: Vec<&Transaction> = truth
            .iter()
            .filter(|t| {
                t.poller_name.as_deref() == p["poller"].as_str()
                    && t.receiver_name.as_deref() == p["receiver"].as_str()
            })
            .collect();
        assert_stats_match(&p["rtt_ms"], &of_pair, &p["poller"].to_string());
    }
    for k in [
        "overhead",
        "anomalies",
        "matrix",
        "presence",
        "capture",
        "jim",
    ] {
        assert!(v[k].is_object(), "{k}");
    }
    let j = &v["jxta"];
    assert!(j["welcomes"].as_u64().expect("welcomes") >= 12);
    assert_eq!(
        j["messages"]["total"].as_u64(),
        Some(
            j["messages"]["tcp"].as_u64().expect("tcp")
                + j["messages"]["udp"].as_u64().expect("udp")
        )
    );
    assert!(j["messages"]["udp"].as_u64().expect("udp") >= 1);
    assert!(j["elements"].as_u64().expect("elements") > 0);
    assert_eq!(j["malformed"]["total"], 0);
    assert!(
        j["element_names"]["jim:JimMessage"]
            .as_u64()
            .expect("JIM element")
            > 0
    );
}

#[test]
fn table_shows_each_pair_with_its_ok_count() {
    let o = observer(&["analyze", "captures/two-peers.pcap"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let truth = truth("two-peers");
    for (p, r) in [("alice", "bob"), ("bob", "alice")] {
        let n = truth
            .iter()
            .filter(|t| {
                t.poller_name.as_deref() == Some(p) && t.receiver_name.as_deref() == Some(r)
            })
            .count();
        let row = text
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[0] == p && f[1] == r
            })
            .unwrap_or_else(|| panic!("no row for {p} -> {r} in\n{text}"));
        assert_eq!(
            row.split_whitespace().nth(2),
            Some(n.to_string().as_str()),
            "{row}"
        );
    }
}

#[test]
fn standard_input_reads_like_a_file() {
    let bytes = std::fs::read(common::capture("relayed.pcap")).expect("capture");
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["analyze", "-", "--csv", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success());
    assert_eq!(
        study_columns(&o.stdout),
        std::fs::read(common::capture("relayed.truth.csv")).expect("truth")
    );
}

#[test]
fn several_inputs_are_one_capture() {
    // Two captures of different networks and times: their transactions add up.
    let o = observer(&[
        "analyze",
        "captures/two-peers.pcap",
        "captures/jxse25-pingpong.pcap",
        "--json",
    ]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(
        v["transactions"]["ok"],
        (ok_count(&truth("two-peers")) + 10) as u64
    );
    assert_eq!(v["capture"]["inputs"].as_array().map(Vec::len), Some(2));
}

#[test]
fn timeout_option_turns_slow_answers_into_timeouts() {
    let o = observer(&[
        "analyze",
        "captures/two-peers.pcap",
        "--timeout",
        "500ms",
        "--csv",
        "-",
    ]);
    assert!(o.status.success());
    let got = read_transactions_csv(&o.stdout[..]).expect("csv");
    let truth = truth("two-peers");
    assert_eq!(got.len(), truth.len());
    let slow = truth
        .iter()
        .filter(|t| t.rtt_ns().expect("ok") >= 500_000_000)
        .count();
    assert!(slow > 0 && slow < truth.len(), "the sample has both");
    for t in &truth {
        let g = got
            .iter()
            .find(|g| g.correlator == t.correlator)
            .expect("same PING");
        if t.rtt_ns().expect("ok") >= 500_000_000 {
            assert_eq!(g.status, TxStatus::Timeout);
            assert_eq!(g.stop, Some(g.start + 500_000_000));
        } else {
            // The truth file has the study's columns only, not the causes.
            let mut g = g.clone();
            g.cause = Default::default();
            assert_eq!(&g, t);
        }
    }
}

#[test]
fn port_option_narrows_the_traffic() {
    let o = observer(&[
        "analyze",
        "captures/two-peers.pcap",
        "--port",
        "1",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["transactions"]["total"], 0);
    assert_eq!(v["jxta"]["messages"]["total"], 0);
    let o = observer(&[
        "analyze",
        "captures/two-peers.pcap",
        "--port",
        "9701",
        "--csv",
        "-",
    ]);
    assert_eq!(
        study_columns(&o.stdout),
        std::fs::read(common::capture("two-peers.truth.csv")).expect("truth")
    );
}

#[test]
fn messages_lists_the_real_capture() {
    let o = observer(&["messages", "captures/jxse25-pingpong.pcap", "--json"]);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        lines.len(),
        30,
        "tshark shows 30 JXTA messages in this capture"
    );
    let payloads = |port: &str| {
        lines
            .iter()
            .filter(|m| m["src"].as_str().is_some_and(|s| s.ends_with(port)))
            .filter(|m| {
                m["elements"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["name"] == "payload"))
            })
            .count()
    };
    assert_eq!(payloads(":41219"), 10, "PINGs from the edge peer");
    assert_eq!(payloads(":9701"), 10, "PONGs from the rendezvous");
    let text = observer(&["messages", "captures/jxse25-pingpong.pcap"]);
    assert_eq!(String::from_utf8_lossy(&text.stdout).lines().count(), 30);
}

/// A capture cut in two inputs, connections open across the cut: `--threads N` gives
/// the same report and CSV as one thread (the one reader carries the frames it holds
/// for reordering from one input's mapping to the next, and the inputs' summaries).
#[test]
fn threads_over_two_inputs_give_the_same_output() {
    let bytes = std::fs::read(common::capture("four-peers.pcap")).expect("capture");
    assert_eq!(
        bytes.get(..4),
        Some(&[0xd4, 0xc3, 0xb2, 0xa1][..]),
        "little-endian pcap"
    );
    // A 24-byte file header, then records: a 16-byte header (captured length at 8..12)
    // and the frame.
    let mut records = Vec::new();
    let mut at = 24;
    while let Some(head) = bytes.get(at..at + 16) {
        records.push(at);
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        at += 16 + len as usize;
    }
    assert_eq!(at, bytes.len(), "whole records");
    let cut = records[records.len() / 2];
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first.pcap");
    let second = dir.path().join("second.pcap");
    std::fs::write(&first, &bytes[..cut]).expect("write");
    std::fs::write(&second, [&bytes[..24], &bytes[cut..]].concat()).expect("write");
    let (first, second) = (first.display().to_string(), second.display().to_string());
    let one = observer(&["analyze", &first, &second, "--json"]);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let one_csv = observer(&["analyze", &first, &second, "--csv", "-"]).stdout;
    let whole = observer(&["analyze", "captures/four-peers.pcap", "--csv", "-"]).stdout;
    assert_eq!(one_csv, whole, "the cut changes no transaction");
    assert!(String::from_utf8_lossy(&one_csv).lines().count() > 1);
    for threads in ["2", "3"] {
        let o = observer(&["analyze", &first, &second, "--json", "--threads", threads]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, one.stdout, "--threads {threads} JSON differs");
        let o = observer(&[
            "analyze",
            &first,
            &second,
            "--csv",
            "-",
            "--threads",
            threads,
        ]);
        assert_eq!(o.stdout, one_csv, "--threads {threads} CSV differs");
    }
}

/// `--threads N` prints the same report and CSV as one thread; with standard input it
/// says it runs on one thread and still gives the truth.
#[test]
fn threads_give_the_same_output() {
    for name in ["four-peers", "relayed", "segmentation"] {
        let file = format!("captures/{name}.pcap");
        let one = observer(&["analyze", &file, "--json"]);
        assert!(one.status.success());
        let one_csv = observer(&["analyze", &file, "--csv", "-"]).stdout;
        assert_eq!(
            study_columns(&one_csv),
            std::fs::read(common::capture(&format!("{name}.truth.csv"))).expect("truth")
        );
        for threads in ["2", "0"] {
            let o = observer(&["analyze", &file, "--json", "--threads", threads]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                o.stdout, one.stdout,
                "{name}: --threads {threads} JSON differs"
            );
            let o = observer(&["analyze", &file, "--csv", "-", "--threads", threads]);
            // The causes too: each shard notes its own connections alike.
            assert_eq!(o.stdout, one_csv, "{name}: --threads {threads} CSV differs");
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["analyze", "-", "--csv", "-", "--threads", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let bytes = std::fs::read(common::capture("four-peers.pcap")).expect("capture");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("feed");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("one thread"));
    assert_eq!(
        study_columns(&o.stdout),
        std::fs::read(common::capture("four-peers.truth.csv")).expect("truth")
    );
}

/// The timeouts are listed after the answered, each with its story, as many as
/// `--unanswered` (default `--top`), in capture order.
#[test]
fn explain_lists_the_timeouts_too() {
    let mut timeouts: Vec<Transaction> = truth("four-peers")
        .into_iter()
        .filter(|t| t.status == TxStatus::Timeout)
        .collect();
    timeouts.sort_by_key(|t| t.start);
    assert!(
        timeouts.len() > 4,
        "the sample has timeouts: {}",
        timeouts.len()
    );
    let name = |n: &Option<std::sync::Arc<str>>| n.as_deref().unwrap_or_default().to_owned();
    for (args, answered, listed) in [
        (&["--top", "2", "--unanswered", "4"][..], 2, 4),
        (&["--top", "3"][..], 3, 3),
        (
            &["--top", "1", "--unanswered", "100"][..],
            1,
            timeouts.len(),
        ),
    ] {
        let mut all = vec!["explain", "captures/four-peers.pcap", "--no-progress"];
        all.extend_from_slice(args);
        let o = observer(&all);
        assert!(o.status.success(), "{}", stderr_of(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), answered + 1 + listed, "{text}");
        assert!(
            lines[..answered].iter().all(|l| l.contains("  RTT ")),
            "{text}"
        );
        let which = if listed == timeouts.len() {
            "all below".to_owned()
        } else {
            format!("the first {listed} below")
        };
        assert_eq!(
            lines[answered],
            format!(
                "unanswered: {} PINGs timed out; by cause: far {}; {which}:",
                timeouts.len(),
                timeouts.len()
            ),
            "{text}"
        );
        for (line, t) in lines[answered + 1..].iter().zip(&timeouts) {
            let who = format!(
                "  {} -> {}  no answer (timeout)  [far]  the receiver's TCP acknowledged the PING",
                name(&t.poller_name),
                name(&t.receiver_name)
            );
            assert!(line.contains(&who), "{line} lacks {who}");
        }
    }
}

#[test]
fn explain_prints_the_slowest_with_their_causes() {
    let o = observer(&["explain", "captures/relayed.pcap", "--top", "3"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let rtts: Vec<f64> = lines
        .iter()
        .map(|l| {
            let after = l.split("RTT ").nth(1).expect("RTT");
            after
                .split(" ms")
                .next()
                .expect("ms")
                .parse()
                .expect("number")
        })
        .collect();
    assert!(rtts.windows(2).all(|w| w[0] >= w[1]), "{rtts:?}");
    // The slowest of the truth is the first line.
    let slowest = truth("relayed")
        .iter()
        .filter_map(|t| t.rtt_ns())
        .max()
        .expect("answered");
    assert_eq!(
        format!("{:.1}", slowest as f64 / 1e6),
        format!("{:.1}", rtts[0])
    );
    assert!(
        lines.iter().all(|l| l.contains("relayed through")),
        "{text}"
    );
}

/// `analyze`'s CSV without the cause columns it appends (docs/explain.md): the
/// study's record format, which the truth files are in. The header must end with them.
fn study_columns(csv: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(csv);
    let n = observer::report::CAUSE_COLUMNS.split(',').count();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert!(fields.len() > n, "{line}");
        if i == 0 {
            assert_eq!(
                fields[fields.len() - n..].join(","),
                observer::report::CAUSE_COLUMNS
            );
        }
        out.push_str(&fields[..fields.len() - n].join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the observer with `stdin` as standard input and `env` added.
fn observer_with(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("NO_COLOR")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("feed");
    child.wait_with_output().expect("wait")
}

/// The exit-status table `--help` prints, as (code, first word of its meaning).
fn exit_table() -> Vec<(i32, String)> {
    let o = observer(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    let table = help
        .split("Exit status:")
        .nth(1)
        .unwrap_or_else(|| panic!("--help has an exit status table: {help}"));
    table
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let code = words.next()?.parse().ok()?;
            Some((code, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// The code the documented table gives to the entry whose text contains `what`.
fn code_for(what: &str) -> i32 {
    let table = exit_table();
    let hits: Vec<_> = table.iter().filter(|(_, t)| t.contains(what)).collect();
    assert_eq!(
        hits.len(),
        1,
        "one table entry mentions {what:?}: {table:?}"
    );
    hits[0].0
}

#[test]
fn exit_codes_follow_the_documented_table() {
    let codes: Vec<i32> = exit_table().iter().map(|(c, _)| *c).collect();
    let mut distinct = codes.clone();
    distinct.dedup();
    assert_eq!(codes, distinct, "each code once");
    assert!(codes.len() >= 5, "{codes:?}");
    let (ok, error, usage, damaged) = (
        code_for("success"),
        code_for("error"),
        code_for("command line"),
        code_for("damaged"),
    );

    let o = observer(&["analyze", "captures/two-peers.pcap", "--no-such-option"]);
    assert_eq!(o.status.code(), Some(usage), "{}", stderr_of(&o));
    let o = observer(&["analyze", "captures/two-peers.pcap", "--json"]);
    assert_eq!(o.status.code(), Some(ok));

    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "these are notes, not a capture\n").expect("write");
    let text = text.to_str().expect("utf-8");
    let report_dir = dir.path().join("report");
    let report_dir = report_dir.to_str().expect("utf-8");
    let o = observer(&["analyze", text]);
    assert_eq!(o.status.code(), Some(error), "{}", stderr_of(&o));
    let o = observer(&["report", text, "-o", report_dir]);
    assert_eq!(o.status.code(), Some(error), "report exits like analyze");
    assert!(stderr_of(&o).contains("notes.txt"), "{}", stderr_of(&o));
    assert!(
        !std::path::Path::new(report_dir).exists(),
        "no empty report is written"
    );

    // A missing second input is an error, found before anything is written.
    let csv = dir.path().join("out.csv");
    let o = observer(&[
        "analyze",
        "captures/two-peers.pcap",
        "captures/no-such-file.pcap",
        "--csv",
        csv.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(error), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("no-such-file.pcap"));
    assert!(!csv.exists(), "no CSV of the first input alone");
    let o = observer(&[
        "report",
        "captures/two-peers.pcap",
        "captures/no-such-file.pcap",
        "-o",
        report_dir,
    ]);
    assert_eq!(o.status.code(), Some(error));
    assert!(!std::path::Path::new(report_dir).exists());

    // Damaged after a readable start: a partial report and its own code.
    let bytes = std::fs::read(common::capture("two-peers.pcap")).expect("capture");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 3]).expect("write");
    let cut = cut.to_str().expect("utf-8");
    for args in [
        vec!["analyze", cut, "--json"],
        vec!["messages", cut],
        vec!["report", cut, "-o", report_dir],
    ] {
        let o = observer(&args);
        assert_eq!(
            o.status.code(),
            Some(damaged),
            "{args:?}: {}",
            stderr_of(&o)
        );
        assert!(stderr_of(&o).contains("at byte"), "{}", stderr_of(&o));
    }
    assert!(std::path::Path::new(report_dir).join("index.html").exists());
    assert_ne!(
        damaged, usage,
        "damage is told apart from a bad command line"
    );
}

#[test]
fn errors_are_one_line_without_repeated_causes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    // The output directory cannot be created under a regular file.
    let under = file.join("report");
    let o = observer(&[
        "report",
        "captures/two-peers.pcap",
        "-o",
        under.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(code_for("error")));
    let err = stderr_of(&o);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("observer: error: "), "{err:?}");
    let os = std::io::Error::from_raw_os_error(libc::ENOTDIR).to_string();
    assert_eq!(err.matches(&os).count(), 1, "the OS error once: {err:?}");
    for args in [
        vec!["analyze", "captures/no-such-file.pcap"],
        vec!["analyze", "captures"],
    ] {
        let o = observer(&args);
        let err = stderr_of(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.contains(args[1]), "names the input: {err:?}");
    }
}

#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    let bytes = std::fs::read(common::capture("two-peers.pcap")).expect("capture");
    // `--threads` with standard input logs a warning through tracing.
    let args = ["analyze", "-", "--threads", "2", "--json"];
    for env in [vec![], vec![("NO_COLOR", "1")]] {
        let o = observer_with(&args, &bytes, &env);
        assert!(o.status.success(), "{}", stderr_of(&o));
        let err = stderr_of(&o);
        assert!(err.contains("WARN"), "a warning was logged: {err:?}");
        assert!(!err.contains('\u{1b}'), "no escape codes: {err:?}");
    }
}

#[test]
fn value_checks_explain_the_range() {
    let usage = code_for("command line");
    for (args, reason) in [
        (vec!["--threads", "-1"], "out of range"),
        (vec!["--timeout", "0"], "longer than 0"),
        (vec!["--max-outstanding", "0"], "1 or more"),
        (vec!["--port", "70000"], "1 to 65535"),
    ] {
        let mut all = vec!["analyze", "captures/two-peers.pcap"];
        all.extend(&args);
        let o = observer(&all);
        assert_eq!(o.status.code(), Some(usage), "{args:?}");
        let err = stderr_of(&o);
        assert!(err.contains(reason), "{args:?}: {err}");
        assert!(
            !err.contains("tip:"),
            "no misleading tip for {args:?}: {err}"
        );
    }
}

/// `messages` says what each message is: PING/PONG with the names and the correlator
/// the truth records, `other` for the stack's own traffic; full IDs with `--wide` and
/// in `--json`.
#[test]
fn messages_say_what_each_message_is() {
    let truth = truth("two-peers");
    let o = observer(&["messages", "captures/two-peers.pcap", "--json"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let json: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let of_kind = |k: &str| json.iter().filter(|m| m["kind"] == k).count();
    assert_eq!(of_kind("PING"), truth.len(), "one PING per transaction");
    assert_eq!(of_kind("PONG"), ok_count(&truth));
    for t in &truth {
        let c = t.correlator.as_deref().expect("the sample has correlators");
        let ping = json
            .iter()
            .find(|m| m["kind"] == "PING" && m["jim"]["correlator"] == c)
            .unwrap_or_else(|| panic!("the PING of {c}"));
        assert_eq!(ping["jim"]["name"].as_str(), t.poller_name.as_deref());
        let poller = t.poller_id.as_ref().map(|p| p.to_string());
        assert_eq!(ping["src_peer"].as_str(), poller.as_deref(), "full ID");
        assert!(ping["jim"]["correlator_bytes"].as_u64().expect("bytes") > 0);
    }

    let text = observer(&["messages", "captures/two-peers.pcap"]);
    let wide = observer(&["messages", "captures/two-peers.pcap", "--wide"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let wide = String::from_utf8_lossy(&wide.stdout).into_owned();
    assert_eq!(text.lines().count(), json.len());
    for ((line, wide_line), m) in text.lines().zip(wide.lines()).zip(&json) {
        let kind = m["kind"].as_str().expect("kind");
        assert!(line.contains(&format!(" B {kind}")), "{line}");
        if let Some(c) = m["jim"]["correlator"].as_str() {
            assert!(line.contains(&format!("correlator={c}")), "{line}");
            let name = m["jim"]["name"].as_str().expect("name");
            assert!(line.contains(&format!("name={name}")), "{line}");
        }
        let peer = m["src_peer"].as_str().expect("peer");
        assert!(peer.len() > 64, "a real peer ID is long: {peer}");
        assert!(!line.contains(peer), "shortened by default: {line}");
        assert!(wide_line.contains(peer), "full with --wide: {wide_line}");
    }

    // The rendezvous handshake of the real JXSE capture is none of the JIM kinds.
    let o = observer(&["messages", "captures/jxse25-pingpong.pcap", "--json"]);
    let kinds: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["kind"].as_str().expect("kind").to_string()
        })
        .collect();
    assert!(kinds.iter().any(|k| k == "other"), "{kinds:?}");
}

/// The presence table gives each change's time as the figures do (since the first
/// PING, and UTC), not as raw nanoseconds.
#[test]
fn presence_table_shows_readable_times() {
    let json = observer(&["analyze", "captures/four-peers.pcap", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let changes = v["presence"]["changes"].as_array().expect("changes");
    assert!(changes.len() > 3, "the sample has state changes");
    let zero = truth("four-peers")
        .iter()
        .map(|t| t.start)
        .min()
        .expect("transactions");
    let text = observer(&["analyze", "captures/four-peers.pcap"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let table: Vec<&str> = text
        .split("Presence changes\n")
        .nth(1)
        .expect("presence table")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(!table[0].contains("unix_ns"), "{}", table[0]);
    assert_eq!(table.len(), changes.len() + 1, "{table:?}");
    for (row, c) in table[1..].iter().zip(changes) {
        let ns = c["time_unix_ns"].as_u64().expect("time");
        assert!(!row.contains(&ns.to_string()), "{row}");
        let cells: Vec<&str> = row.split_whitespace().collect();
        let t: f64 = cells[0].parse().expect("seconds since the first PING");
        assert!((t - (ns - zero) as f64 / 1e9).abs() < 1e-3, "{row}");
        let secs = ns / 1_000_000_000;
        let hms = format!(
            "{:02}:{:02}:{:02}.{:03}",
            secs % 86_400 / 3600,
            secs % 3600 / 60,
            secs % 60,
            ns % 1_000_000_000 / 1_000_000
        );
        assert_eq!(cells[2], hms, "{row}");
        assert_eq!(cells[3], "UTC", "{row}");
    }
}

/// Without the `pcap` feature, asking for libpcap says how to get it, on one line.
#[cfg(not(feature = "pcap"))]
#[test]
fn live_pcap_without_the_feature_says_how_to_build_it() {
    let o = observer(&["live", "-i", "lo", "--source", "pcap", "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(code_for("error")));
    let err = stderr_of(&o);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("--features pcap"), "{err:?}");
}

/// The overhead table gives the correlator's share of the JIM document beside the
/// jxmg and framed shares, as the JSON has them, and says what "CSV B per hour" is.
#[test]
fn overhead_table_shows_the_document_share() {
    let json = observer(&["analyze", "captures/four-peers.pcap", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let o = &v["overhead"];
    let f = |k: &str| o[k].as_f64().unwrap_or_else(|| panic!("{k}"));
    let want = format!(
        "{:.1} / {:.1} / {:.1}",
        f("correlator_pct_of_ping_document"),
        f("correlator_pct_of_ping_message"),
        f("correlator_pct_of_ping_framed")
    );
    let text = observer(&["analyze", "captures/four-peers.pcap"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.starts_with("% of PING (JIM / jxmg / framed)"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(&want), "{row} lacks {want}");
    assert!(
        f("correlator_pct_of_ping_document") > f("correlator_pct_of_ping_message"),
        "a document is smaller than its message"
    );
    assert!(text.contains("(CSV B per hour: "), "{text}");
}
