//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Path of a committed capture in `captures/`.
pub fn capture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../captures")
        .join(name)
}

/// Whether tshark can be run. In CI (`CI` set) its absence is a failure: `.ci/run`
/// installs it, so a missing tshark means the cross-check silently stopped running.
pub fn tshark_available() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok && std::env::var_os("CI").is_some() {
        panic!("tshark is not installed but CI is set: .ci/run must install it");
    }
    if !ok {
        eprintln!("tshark not installed: skipping the tshark cross-check");
    }
    ok
}

/// Runs tshark with `-T fields` and returns the rows split on `|`.
pub fn tshark_fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(file)
        .arg("-Y")
        .arg(filter)
        .arg("-T")
        .arg("fields");
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    cmd.arg("-E")
        .arg("separator=|")
        .arg("-E")
        .arg("occurrence=a")
        .arg("-E")
        .arg("aggregator=,");
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// `1795528304.809461000` → nanoseconds since the epoch, exactly (no float rounding).
pub fn epoch_ns(text: &str) -> u64 {
    let (s, frac) = text.split_once('.').unwrap_or((text, "0"));
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    s.parse::<u64>().expect("seconds") * 1_000_000_000 + frac.parse::<u64>().expect("fraction")
}
