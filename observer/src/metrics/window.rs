//! Rolling windows of a live run (the last minute, the last hour): counts and RTT
//! percentiles over recent capture time, in bounded memory whatever the run's length.
//! Each window is a ring of time buckets, each bucket a DDSketch of its RTTs; reading a
//! window merges its buckets. Percentiles read from it are within
//! [`SKETCH_RELATIVE_ERROR`] of an exact value of the window's RTTs.

use std::collections::VecDeque;

use sketches_ddsketch::DDSketch;

use crate::transaction::{Transaction, TxStatus};
use crate::UnixNanos;
pub use observer_core::summary::sketch::{rtt_sketch, SKETCH_RELATIVE_ERROR};

/// Buckets per window: a window slides by 1/60 of its span.
const BUCKETS: u64 = 60;

/// The windows a live run reports, by label (the `window` label in `/metrics`).
pub const WINDOWS: [(&str, u64); 2] = [("1m", 60_000_000_000), ("1h", 3_600_000_000_000)];

struct Bucket {
    index: u64,
    ok: u64,
    timeout: u64,
    open: u64,
    rtt_ms: DDSketch,
}

/// One window over the last `span_ns` of capture time.
pub struct RollingWindow {
    pub label: &'static str,
    bucket_ns: u64,
    buckets: VecDeque<Bucket>,
}

/// What a window holds now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    pub ok: u64,
    pub timeout: u64,
    pub open: u64,
    /// (quantile, RTT ms) for p50, p90, p99; empty when nothing was answered.
    pub quantiles_ms: Vec<(f64, f64)>,
}

/// The quantiles reported for every window.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

impl RollingWindow {
    pub fn new(label: &'static str, span_ns: u64) -> Self {
        RollingWindow {
            label,
            bucket_ns: (span_ns / BUCKETS).max(1),
            buckets: VecDeque::new(),
        }
    }

    /// Counts a finished transaction at its start time.
    pub fn add(&mut self, t: &Transaction) {
        let index = t.start / self.bucket_ns;
        // Transactions come in start order, so the bucket is the newest one; an older
        // one (possible only across a clock step) goes to the newest rather than
        // reopening history.
        let fresh = self.buckets.back().is_none_or(|b| b.index < index);
        if fresh {
            self.buckets.push_back(Bucket {
                index,
                ok: 0,
                timeout: 0,
                open: 0,
                rtt_ms: rtt_sketch(),
            });
            self.expire(index);
        }
        let Some(b) = self.buckets.back_mut() else {
            return;
        };
        match t.status {
            TxStatus::Ok => b.ok += 1,
            TxStatus::Timeout => b.timeout += 1,
            TxStatus::Open => b.open += 1,
        }
        if let Some(ns) = t.rtt_ns() {
            b.rtt_ms.add(ns as f64 / 1e6);
        }
    }

    /// Forgets buckets wholly before the window ending at bucket `newest`.
    fn expire(&mut self, newest: u64) {
        let oldest = newest.saturating_sub(BUCKETS - 1);
        while self.buckets.front().is_some_and(|b| b.index < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The window ending at capture time `now`.
    pub fn stats(&mut self, now: UnixNanos) -> WindowStats {
        self.expire(now / self.bucket_ns);
        let mut s = WindowStats::default();
        let mut merged = rtt_sketch();
        for b in &self.buckets {
            s.ok += b.ok;
            s.timeout += b.timeout;
            s.open += b.open;
            // Same configuration everywhere, so merging cannot fail.
            let _ = merged.merge(&b.rtt_ms);
        }
        if merged.count() > 0 {
            s.quantiles_ms = QUANTILES
                .iter()
                .filter_map(|&q| merged.quantile(q).ok().flatten().map(|v| (q, v)))
                .collect();
        }
        s
    }
}

/// The last minute and the last hour.
pub struct Windows(pub Vec<RollingWindow>);

impl Default for Windows {
    fn default() -> Self {
        Windows(
            WINDOWS
                .iter()
                .map(|&(label, span)| RollingWindow::new(label, span))
                .collect(),
        )
    }
}

impl Windows {
    pub fn add(&mut self, t: &Transaction) {
        for w in &mut self.0 {
            w.add(t);
        }
    }

    /// Every window's stats at `now`, labelled.
    pub fn stats(&mut self, now: UnixNanos) -> Vec<(&'static str, WindowStats)> {
        self.0.iter_mut().map(|w| (w.label, w.stats(now))).collect()
    }
}

/// Appends the windows to a Prometheus exposition.
pub fn add_to(windows: &[(&'static str, WindowStats)], e: &mut super::Exposition) {
    use prometheus_client::metrics::MetricType::Gauge;
    let mut f = e.family(
        "observer_window_transactions",
        Gauge,
        "Transactions started in the last window, by status.",
    );
    for (label, s) in windows {
        for (status, n) in [("ok", s.ok), ("timeout", s.timeout), ("open", s.open)] {
            f.gauge(
                &[("window", label), ("status", status)],
                i64::try_from(n).unwrap_or(i64::MAX),
            );
        }
    }
    // The label is `q`, not `quantile`: Prometheus reserves `quantile` for summaries
    // (promtool rejects it on a gauge), and a sliding-window sketch has no `_sum` or
    // `_count` to make one.
    let mut f = e.family(
        "observer_window_rtt_seconds",
        Gauge,
        "RTT quantiles of the last window (DDSketch, relative error in observer_window_rtt_relative_error).",
    );
    for (label, s) in windows {
        for (q, ms) in &s.quantiles_ms {
            f.gauge_f64(&[("window", label), ("q", &q.to_string())], ms / 1e3);
        }
    }
    e.family(
        "observer_window_rtt_relative_error",
        Gauge,
        "Relative error bound of observer_window_rtt_seconds.",
    )
    .gauge_f64(&[], SKETCH_RELATIVE_ERROR);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(start: UnixNanos, rtt_ns: Option<u64>) -> Transaction {
        Transaction {
            start,
            stop: rtt_ns.map(|r| start + r),
            status: if rtt_ns.is_some() {
                TxStatus::Ok
            } else {
                TxStatus::Timeout
            },
            poller_name: None,
            poller_id: None,
            receiver_name: None,
            receiver_id: None,
            receiver_status: None,
            correlator: None,
            match_method: None,
            ping_bytes: 0,
            pong_bytes: None,
            correlator_overhead_bytes: 0,
            cause: Default::default(),
        }
    }

    /// Percentiles are within the stated relative error of the exact ones, and the
    /// window forgets what is older than its span.
    #[test]
    fn window_quantiles_within_the_stated_error_and_old_buckets_expire() {
        let mut w = RollingWindow::new("1m", 60_000_000_000);
        let t0 = 1_000_000_000_000;
        let mut rtts: Vec<u64> = Vec::new();
        for i in 0..6000u64 {
            // 10 per 100 ms over 60 s, RTTs 1..=1000 ms in a scrambled order.
            let rtt = ((i * 7919) % 1000 + 1) * 1_000_000;
            rtts.push(rtt);
            w.add(&tx(t0 + i * 10_000_000, Some(rtt)));
        }
        w.add(&tx(t0 + 59_000_000_000, None));
        let now = t0 + 59_999_000_000;
        let s = w.stats(now);
        assert_eq!(s.ok, 6000);
        assert_eq!(s.timeout, 1);
        rtts.sort_unstable();
        for (q, ms) in &s.quantiles_ms {
            let rank = ((q * (rtts.len() - 1) as f64).round() as usize).min(rtts.len() - 1);
            let exact = rtts[rank] as f64 / 1e6;
            assert!(
                (ms - exact).abs() <= exact * SKETCH_RELATIVE_ERROR + 1.0,
                "q{q}: {ms} vs {exact}"
            );
        }
        assert_eq!(s.quantiles_ms.len(), QUANTILES.len());
        // Two minutes later the window is empty.
        let later = w.stats(now + 120_000_000_000);
        assert_eq!(later, WindowStats::default());
        assert!(w.buckets.is_empty());
    }

    /// However long the run, a window holds at most its buckets.
    #[test]
    fn window_memory_is_bounded_by_its_buckets() {
        let mut w = RollingWindow::new("1m", 60_000_000_000);
        for i in 0..100_000u64 {
            w.add(&tx(i * 50_000_000, Some(1_000_000 + i)));
        }
        assert!(w.buckets.len() as u64 <= BUCKETS, "{}", w.buckets.len());
    }
}
