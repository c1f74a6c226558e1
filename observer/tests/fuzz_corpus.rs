//! The fuzz targets' saved corpora and every crash the fuzzer ever found, replayed on
//! stable Rust through the same entry points (`observer::fuzz`). Grow the corpora with
//! `cargo +nightly fuzz run TARGET` in `observer/fuzz`; keep crashes in
//! `observer/fuzz/regressions/TARGET/`.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(base.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).expect("corpus file");
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "{target}: {} fails", f.display());
            n += 1;
        }
    }
    assert!(n > 0, "{target}: no corpus (run `cargo xtask fuzz-seeds`)");
}

#[test]
fn capture_file() {
    replay("capture_file", observer::fuzz::capture_file);
}

#[test]
fn reassembly() {
    replay("reassembly", observer::fuzz::reassembly);
}

#[test]
fn jxta() {
    replay("jxta", observer::fuzz::jxta);
}

#[test]
fn http() {
    replay("http", observer::fuzz::http);
}

#[test]
fn jim() {
    replay("jim", observer::fuzz::jim);
}

#[test]
fn peer_connection() {
    replay("peer_connection", observer::fuzz::peer_connection);
}

/// The peer harness really runs the handler: a welcome and a PING get a PONG.
#[test]
fn peer_harness_answers_a_ping() {
    let seed = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/peer_connection/welcome-ping-pong-message"),
    )
    .expect("seed");
    observer::fuzz::peer_connection(&seed);
    let counters = observer::fuzz::peer_counters();
    assert!(
        counters.get("pings_received").copied().unwrap_or(0) >= 1,
        "{counters:?}"
    );
}
