//! The Prometheus alerting rules shipped in `deploy/prometheus/`: valid for promtool,
//! firing as their unit tests say, and written over series the observer really
//! exposes (every metric a rule names is in what `/metrics` renders).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use observer::runtime::{self, PipelineConfig};

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rules_are_valid_and_fire_as_tested() {
    if !common::have(&[common::Need::Tool("promtool")]) {
        return;
    }
    promtool(&["check", "rules", "observer-rules.yml"]);
    promtool(&["test", "rules", "observer-rules.test.yml"]);
}

/// Metric names in a text: `observer_` followed by lower-case letters, digits, `_`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("observer_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every series name `/metrics` renders.
fn exposed_series() -> BTreeSet<String> {
    exposition_text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// What `/metrics` serves in the classic text format: the metrics of real
/// transactions (the four-peers sample), plus the ClickHouse sink's and the windows'.
fn exposition_text() -> String {
    let a = runtime::analyze(
        &[common::capture("four-peers.pcap")],
        PipelineConfig::default(),
        false,
    )
    .result;
    let mut live = observer::metrics::LiveMetrics::default();
    for t in &a.transactions {
        live.record(t);
    }
    let mut exposition = live.exposition(
        &a.matcher,
        &a.packets,
        &a.flows,
        &a.jxta,
        &a.jim,
        0,
        &observer::metrics::SourceCounters {
            source: "ebpf",
            ..Default::default()
        },
    );
    observer::store::StoreStats::default().add_to(&mut exposition);
    let mut windows = observer::metrics::window::Windows::default();
    for t in &a.transactions {
        windows.add(t);
    }
    let now = a.transactions.iter().map(|t| t.start).max().unwrap_or(0);
    observer::metrics::window::add_to(&windows.stats(now), &mut exposition);
    exposition.to_text()
}

#[test]
fn rules_use_only_series_the_observer_exposes() {
    let rules =
        std::fs::read_to_string(rules_dir().join("observer-rules.yml")).expect("rules file");
    let used = metric_names(&rules);
    assert!(used.len() >= 5, "{used:?}");
    let missing: Vec<String> = used.difference(&exposed_series()).cloned().collect();
    assert!(
        missing.is_empty(),
        "rules name series /metrics does not serve: {missing:?}"
    );
    // The classic text format as prometheus-client writes it passes promtool's parser
    // and lint.
    common::assert_promtool_accepts(&exposition_text());
}

/// The Grafana dashboard's panels name only series the observer serves (its queries
/// are run against a real Prometheus in tests/prometheus.rs, as root).
#[test]
fn dashboard_uses_only_series_the_observer_exposes() {
    let queries = common::dashboard_promql();
    assert!(queries.len() >= 10, "{queries:?}");
    let text: String = queries.iter().map(|(_, q)| format!("{q}\n")).collect();
    let used = metric_names(&text);
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<String> = used.difference(&exposed_series()).cloned().collect();
    assert!(
        missing.is_empty(),
        "the dashboard names series /metrics does not serve: {missing:?}"
    );
}
