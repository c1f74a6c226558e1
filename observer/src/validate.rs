//! Passive-versus-active validation: the observer's transactions (from a capture)
//! joined with the peers' own records (their instrumentation), transaction by
//! transaction.
//!
//! Join rule, per (poller, receiver) pair (peers identified by peer ID, else name):
//! 1. by correlator where both records carry one and they are equal;
//! 2. otherwise by the nearest start time within a window, between records of which at
//!    least one has no correlator (a passive record never joins an active one with a
//!    different correlator). Candidate pairs are taken in increasing |Δstart| order,
//!    each record at most once.
//!
//! Peers are keyed by peer ID; a record with a name only takes the peer ID that name
//! has in the other records (foreign logs often carry names only).
//!
//! Two RTT differences per joined ok/ok transaction: application − passive (the
//! peer's clock around its own `write()` and `read()`: includes the host's scheduling)
//! and socket − passive (the kernel's timestamps of the PING leaving and the PONG
//! arriving, when the peer records them: what the wire can see). Their difference,
//! application − socket, is the local host's share of the RTT.
//!
//! Counted: active transactions (`ok` and `timeout`; the peers write no others) the
//! observer *found* or *missed*; passive `ok`/`timeout` transactions of pollers that
//! have active records but match none (*extra*; `open` passive records, cut by the end
//! of the capture, are never extra); and for joined pairs both `ok`, the RTT difference
//! active − passive.
//!
//! Over 600 lines with its tests (joins, socket deltas, bounds).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::report::stats::percentile;
use crate::report::CsvRecord;
use crate::transaction::{Transaction, TxStatus};

/// The start-time window of a join without correlator, unless told otherwise.
pub const DEFAULT_WINDOW_NS: u64 = 500_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("{0:?}: expected N or N%")]
    BadMissBound(String),
    #[error("{0:?}: a percentage is between 0 and 100")]
    PercentRange(String),
}

/// Peer names → peer IDs, learnt from records that carry both.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn learn(&mut self, t: &Transaction) {
        for (id, name) in [
            (&t.poller_id, &t.poller_name),
            (&t.receiver_id, &t.receiver_name),
        ] {
            if let (Some(id), Some(n)) = (id, name) {
                self.0
                    .entry(n.to_string())
                    .or_insert_with(|| id.as_str().to_string());
            }
        }
    }

    /// How a peer is keyed: peer ID when known (from the record or from its name),
    /// else name.
    fn key(&self, id: &Option<crate::jxta::PeerId>, name: Option<&str>) -> String {
        match (id, name) {
            (Some(id), _) => id.as_str().to_string(),
            (None, Some(n)) => self
                .0
                .get(n)
                .cloned()
                .unwrap_or_else(|| format!("name:{n}")),
            (None, None) => "?".to_string(),
        }
    }

    fn pair(&self, t: &Transaction) -> PairKey {
        (
            self.key(&t.poller_id, t.poller_name.as_deref()),
            self.key(&t.receiver_id, t.receiver_name.as_deref()),
        )
    }
}

type PairKey = (String, String);

/// Counts and RTT differences for one pair (or all pairs together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairResult {
    pub poller: String,
    pub receiver: String,
    pub active: u64,
    pub found: u64,
    pub missed: u64,
    pub extra: u64,
    pub by_correlator: u64,
    pub by_time: u64,
    /// Joined, but one side says ok and the other timeout.
    pub status_mismatch: u64,
    /// application − passive RTT of joined ok/ok transactions, nanoseconds.
    pub deltas_ns: Vec<i64>,
    /// socket − passive RTT of those with a socket RTT, nanoseconds.
    pub socket_deltas_ns: Vec<i64>,
    /// application − socket RTT (the local host's share), nanoseconds.
    pub host_ns: Vec<i64>,
    /// Sum of the passive RTTs of joined ok/ok transactions (what the wire shows:
    /// network and far peer), nanoseconds.
    pub passive_rtt_sum_ns: u128,
    /// Joined ok/ok transactions whose active record has no socket RTT (and is not
    /// `socket_withheld`).
    pub socket_missing: u64,
    /// Joined ok/ok transactions whose active record has a socket start but no stop:
    /// the peer withheld a PONG RX timestamp that may have been a later segment's
    /// (docs/peer.md).
    pub socket_withheld: u64,
    /// The joined transaction of largest |socket − passive|: the evidence a broken
    /// socket bound names (which end of the RTT differs, on which side).
    pub worst_socket: Option<WorstJoin>,
}

/// One joined transaction's four ends, nanoseconds since the epoch: enough to tell
/// whether a difference is at the PING's end or the PONG's, and whose clock moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorstJoin {
    pub poller: String,
    pub receiver: String,
    pub correlator: Option<String>,
    pub socket_start: u64,
    pub socket_stop: u64,
    pub passive_start: u64,
    pub passive_stop: u64,
}

impl WorstJoin {
    /// socket − passive RTT, nanoseconds.
    pub fn delta_ns(&self) -> i64 {
        let socket = self.socket_stop as i128 - self.socket_start as i128;
        let passive = self.passive_stop as i128 - self.passive_start as i128;
        (socket - passive).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    fn describe(&self) -> String {
        let us = |ns: i128| ns as f64 / 1000.0;
        format!(
            "{} -> {} (correlator {}): socket {} .. {} ns, passive {} .. {} ns; start differs by {:.1} us, stop by {:.1} us (socket - passive)",
            self.poller,
            self.receiver,
            self.correlator.as_deref().unwrap_or("none"),
            self.socket_start,
            self.socket_stop,
            self.passive_start,
            self.passive_stop,
            us(self.socket_start as i128 - self.passive_start as i128),
            us(self.socket_stop as i128 - self.passive_stop as i128),
        )
    }

    /// Keeps the one of larger |difference| (the first of equals).
    fn keep_worse(slot: &mut Option<WorstJoin>, w: Option<&WorstJoin>) {
        if let Some(w) = w {
            if slot
                .as_ref()
                .is_none_or(|s| w.delta_ns().unsigned_abs() > s.delta_ns().unsigned_abs())
            {
                *slot = Some(w.clone());
            }
        }
    }
}

/// The distribution of RTT differences, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DeltaStats {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// The difference of largest magnitude, with its sign.
    pub max_us: f64,
    pub max_abs_us: f64,
}

impl DeltaStats {
    pub fn from_ns(d: &[i64]) -> DeltaStats {
        if d.is_empty() {
            return DeltaStats::default();
        }
        let mut us: Vec<f64> = d.iter().map(|x| *x as f64 / 1000.0).collect();
        us.sort_by(f64::total_cmp);
        let extreme = us
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap_or(0.0);
        DeltaStats {
            count: us.len() as u64,
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
            p50_us: percentile(&us, 0.5),
            p99_us: percentile(&us, 0.99),
            max_us: extreme,
            max_abs_us: extreme.abs(),
        }
    }
}

impl PairResult {
    pub fn deltas(&self) -> DeltaStats {
        DeltaStats::from_ns(&self.deltas_ns)
    }

    pub fn socket_deltas(&self) -> DeltaStats {
        DeltaStats::from_ns(&self.socket_deltas_ns)
    }

    /// Mean passive RTT of joined ok/ok transactions, µs.
    pub fn wire_mean_us(&self) -> f64 {
        if self.deltas_ns.is_empty() {
            return 0.0;
        }
        self.passive_rtt_sum_ns as f64 / self.deltas_ns.len() as f64 / 1000.0
    }

    fn add(&mut self, o: &PairResult) {
        self.active += o.active;
        self.found += o.found;
        self.missed += o.missed;
        self.extra += o.extra;
        self.by_correlator += o.by_correlator;
        self.by_time += o.by_time;
        self.status_mismatch += o.status_mismatch;
        self.deltas_ns.extend_from_slice(&o.deltas_ns);
        self.socket_deltas_ns.extend_from_slice(&o.socket_deltas_ns);
        self.host_ns.extend_from_slice(&o.host_ns);
        self.passive_rtt_sum_ns += o.passive_rtt_sum_ns;
        self.socket_missing += o.socket_missing;
        self.socket_withheld += o.socket_withheld;
        WorstJoin::keep_worse(&mut self.worst_socket, o.worst_socket.as_ref());
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "poller": self.poller,
            "receiver": self.receiver,
            "active": self.active,
            "found": self.found,
            "missed": self.missed,
            "extra": self.extra,
            "joined_by_correlator": self.by_correlator,
            "joined_by_time": self.by_time,
            "status_mismatch": self.status_mismatch,
            "found_percent": found_percent(self.found, self.active),
            "rtt_delta_us": self.deltas(),
            "socket_rtt_delta_us": self.socket_deltas(),
            "socket_missing": self.socket_missing,
            "socket_withheld": self.socket_withheld,
            "worst_socket": self.worst_socket.as_ref().map(|w| serde_json::json!({
                "poller": w.poller,
                "receiver": w.receiver,
                "correlator": w.correlator,
                "socket_start_unix_ns": w.socket_start,
                "socket_stop_unix_ns": w.socket_stop,
                "passive_start_unix_ns": w.passive_start,
                "passive_stop_unix_ns": w.passive_stop,
                "delta_us": w.delta_ns() as f64 / 1000.0,
            })),
            "split_us": {
                "wire_mean": self.wire_mean_us(),
                "host": DeltaStats::from_ns(&self.host_ns),
            },
        })
    }
}

fn found_percent(found: u64, active: u64) -> f64 {
    if active == 0 {
        100.0
    } else {
        found as f64 * 100.0 / active as f64
    }
}

/// The result of a validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    pub pairs: Vec<PairResult>,
    pub total: PairResult,
    /// Passive records left open at the end of the capture (never extra).
    pub passive_open: u64,
    /// Passive records of pollers without active records (not judged).
    pub passive_other_pollers: u64,
}

/// A bound on missed transactions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MissBound {
    Count(u64),
    Percent(f64),
}

impl std::fmt::Display for MissBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissBound::Count(n) => write!(f, "{n}"),
            MissBound::Percent(p) => write!(f, "{p} %"),
        }
    }
}

impl MissBound {
    /// Whether `n` of `of` is more than the bound allows.
    pub fn exceeded(self, n: u64, of: u64) -> bool {
        match self {
            MissBound::Count(max) => n > max,
            MissBound::Percent(p) => 100.0 - found_percent(of.saturating_sub(n), of) > p + 1e-9,
        }
    }

    pub fn parse(s: &str) -> Result<MissBound, ValidateError> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| ValidateError::BadMissBound(s.into()))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(ValidateError::PercentRange(s.into()));
            }
            Ok(MissBound::Percent(v))
        } else {
            s.parse()
                .map(MissBound::Count)
                .map_err(|_| ValidateError::BadMissBound(s.into()))
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bounds {
    pub max_miss: Option<MissBound>,
    /// On |application − passive|.
    pub max_delta_ns: Option<u64>,
    /// On |socket − passive|: its largest value and its 99th percentile. Either also
    /// requires every joined ok/ok transaction to have a socket RTT.
    pub max_socket_delta_ns: Option<u64>,
    pub max_socket_p99_ns: Option<u64>,
    /// With a socket bound: how many joined ok/ok transactions (N, or N % of them) may
    /// have their socket stop withheld by the peer; none when not given.
    pub max_socket_withheld: Option<MissBound>,
}

/// Joins `active` (the peers' records) with `passive` (the observer's). `window_ns`
/// bounds the start-time difference of a join without correlator.
pub fn validate(active: &[CsvRecord], passive: &[Transaction], window_ns: u64) -> Validation {
    let mut names = Names::default();
    for t in passive.iter().chain(active.iter().map(|r| &r.tx)) {
        names.learn(t);
    }
    let mut act: BTreeMap<PairKey, Vec<&CsvRecord>> = BTreeMap::new();
    for r in active
        .iter()
        .filter(|r| matches!(r.tx.status, TxStatus::Ok | TxStatus::Timeout))
    {
        act.entry(names.pair(&r.tx)).or_default().push(r);
    }
    let pollers: std::collections::HashSet<&String> = act.keys().map(|(p, _)| p).collect();
    let mut pas: BTreeMap<PairKey, Vec<&Transaction>> = BTreeMap::new();
    let mut v = Validation::default();
    for t in passive {
        let k = names.pair(t);
        if !pollers.contains(&k.0) {
            v.passive_other_pollers += 1;
            continue;
        }
        pas.entry(k).or_default().push(t);
    }
    let mut keys: Vec<PairKey> = act.keys().chain(pas.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let a_recs = act.get(&k).map(Vec::as_slice).unwrap_or_default();
        let a: Vec<&Transaction> = a_recs.iter().map(|r| &r.tx).collect();
        let a = a.as_slice();
        let p = pas.get(&k).map(Vec::as_slice).unwrap_or_default();
        let name = |ts: &[&Transaction], poller: bool| {
            ts.iter().find_map(|t| {
                if poller {
                    t.poller_name.as_deref().map(str::to_owned)
                } else {
                    t.receiver_name.as_deref().map(str::to_owned)
                }
            })
        };
        let mut r = join_pair(a_recs, p, window_ns);
        r.poller = name(a, true)
            .or_else(|| name(p, true))
            .unwrap_or_else(|| k.0.clone());
        r.receiver = name(a, false)
            .or_else(|| name(p, false))
            .unwrap_or_else(|| k.1.clone());
        if let Some(w) = &mut r.worst_socket {
            w.poller = r.poller.clone();
            w.receiver = r.receiver.clone();
        }
        v.passive_open += p.iter().filter(|t| t.status == TxStatus::Open).count() as u64;
        v.total.add(&r);
        v.pairs.push(r);
    }
    v.pairs
        .sort_by(|x, y| (&x.poller, &x.receiver).cmp(&(&y.poller, &y.receiver)));
    v.total.poller = "all".into();
    v.total.receiver = "all".into();
    v
}

fn join_pair(a_recs: &[&CsvRecord], p: &[&Transaction], window_ns: u64) -> PairResult {
    let a: Vec<&Transaction> = a_recs.iter().map(|r| &r.tx).collect();
    let mut r = PairResult {
        active: a.len() as u64,
        ..PairResult::default()
    };
    let mut a_match: Vec<Option<usize>> = vec![None; a.len()];
    let mut p_used = vec![false; p.len()];
    // 1. By correlator.
    let mut by_corr: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, t) in p.iter().enumerate() {
        if let Some(c) = t.correlator.as_deref() {
            by_corr.entry(c).or_default().push(j);
        }
    }
    for (i, t) in a.iter().enumerate() {
        let Some(c) = t.correlator.as_deref() else {
            continue;
        };
        if let Some(js) = by_corr.get_mut(c) {
            if let Some(pos) = js.iter().position(|j| !p_used[*j]) {
                let j = js.remove(pos);
                p_used[j] = true;
                a_match[i] = Some(j);
                r.by_correlator += 1;
            }
        }
    }
    // 2. By nearest start time, where a correlator cannot decide.
    let mut by_start: Vec<usize> = (0..p.len()).filter(|j| !p_used[*j]).collect();
    by_start.sort_by_key(|j| p[*j].start);
    let mut cands: Vec<(u64, usize, usize)> = Vec::new();
    for (i, t) in a.iter().enumerate() {
        if a_match[i].is_some() {
            continue;
        }
        let lo = t.start.saturating_sub(window_ns);
        let first = by_start.partition_point(|j| p[*j].start < lo);
        for &j in by_start[first..]
            .iter()
            .take_while(|j| p[**j].start <= t.start.saturating_add(window_ns))
        {
            if t.correlator.is_some() && p[j].correlator.is_some() {
                continue;
            }
            cands.push((t.start.abs_diff(p[j].start), i, j));
        }
    }
    cands.sort_unstable();
    for (_, i, j) in cands {
        if a_match[i].is_none() && !p_used[j] {
            a_match[i] = Some(j);
            p_used[j] = true;
            r.by_time += 1;
        }
    }
    for (i, m) in a_match.iter().enumerate() {
        let Some(j) = *m else {
            r.missed += 1;
            continue;
        };
        r.found += 1;
        let (x, y) = (a[i], p[j]);
        match (x.rtt_ns(), y.rtt_ns()) {
            (Some(ra), Some(rp)) => {
                r.deltas_ns.push(ra as i64 - rp as i64);
                r.passive_rtt_sum_ns += u128::from(rp);
                let socket = a_recs[i].socket;
                match (a_recs[i].socket_rtt_ns(), socket.start, socket.stop, y.stop) {
                    (Some(rs), Some(start), Some(socket_stop), Some(stop)) => {
                        r.socket_deltas_ns.push(rs as i64 - rp as i64);
                        r.host_ns.push(ra as i64 - rs as i64);
                        let w = WorstJoin {
                            poller: String::new(),
                            receiver: String::new(),
                            correlator: x.correlator.as_deref().map(str::to_owned),
                            socket_start: start,
                            socket_stop,
                            passive_start: y.start,
                            passive_stop: stop,
                        };
                        WorstJoin::keep_worse(&mut r.worst_socket, Some(&w));
                    }
                    (None, Some(_), None, _) => r.socket_withheld += 1,
                    _ => r.socket_missing += 1,
                }
            }
            _ if y.status != TxStatus::Open && x.status != y.status => r.status_mismatch += 1,
            _ => {}
        }
    }
    r.extra = p
        .iter()
        .zip(&p_used)
        .filter(|(t, used)| !**used && t.status != TxStatus::Open)
        .count() as u64;
    r
}

impl Validation {
    /// The bounds this result breaks, described.
    pub fn check(&self, b: &Bounds) -> Vec<String> {
        let mut broken = Vec::new();
        let t = &self.total;
        match b.max_miss {
            Some(m @ MissBound::Count(_)) if m.exceeded(t.missed, t.active) => {
                broken.push(format!(
                    "{} active transactions missed (at most {m} allowed)",
                    t.missed
                ))
            }
            Some(m @ MissBound::Percent(_)) if m.exceeded(t.missed, t.active) => {
                broken.push(format!(
                    "{:.3} % of active transactions missed (at most {m} allowed)",
                    100.0 - found_percent(t.found, t.active)
                ))
            }
            _ => {}
        }
        let worst = |d: &[i64]| d.iter().map(|d| d.unsigned_abs()).max().unwrap_or(0);
        let evidence = t
            .worst_socket
            .as_ref()
            .map(|j| format!("; the worst: {}", j.describe()))
            .unwrap_or_default();
        if let Some(max) = b.max_delta_ns {
            let w = worst(&t.deltas_ns);
            if w > max {
                broken.push(format!(
                    "|application - passive| RTT difference up to {:.1} us (at most {:.1} us allowed)",
                    w as f64 / 1000.0,
                    max as f64 / 1000.0
                ));
            }
        }
        if b.max_socket_delta_ns.is_some() || b.max_socket_p99_ns.is_some() {
            // A socket bound with nothing to judge must not pass silently.
            if t.socket_missing > 0 {
                broken.push(format!(
                    "{} joined transactions without a socket RTT (a socket bound needs one for every transaction)",
                    t.socket_missing
                ));
            }
            // Withheld stops are the peer's own refusal to guess; a bound keeps them
            // from growing into a check that judges nothing.
            let allowed = b.max_socket_withheld.unwrap_or(MissBound::Count(0));
            let joined = t.deltas_ns.len() as u64;
            if allowed.exceeded(t.socket_withheld, joined) {
                broken.push(format!(
                    "{} of {joined} joined transactions with the socket stop withheld by the peer (at most {allowed} allowed: --max-socket-withheld)",
                    t.socket_withheld,
                ));
            }
        }
        if let Some(max) = b.max_socket_delta_ns {
            let w = worst(&t.socket_deltas_ns);
            if w > max {
                broken.push(format!(
                    "|socket - passive| RTT difference up to {:.1} us (at most {:.1} us allowed){evidence}",
                    w as f64 / 1000.0,
                    max as f64 / 1000.0
                ));
            }
        }
        if let Some(max) = b.max_socket_p99_ns {
            let mut abs: Vec<f64> = t
                .socket_deltas_ns
                .iter()
                .map(|d| d.unsigned_abs() as f64)
                .collect();
            abs.sort_by(f64::total_cmp);
            let p99 = if abs.is_empty() {
                0.0
            } else {
                percentile(&abs, 0.99)
            };
            if p99 > max as f64 {
                broken.push(format!(
                    "|socket - passive| RTT difference p99 {:.1} us (at most {:.1} us allowed){evidence}",
                    p99 / 1000.0,
                    max as f64 / 1000.0
                ));
            }
        }
        broken
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.total.to_json(),
            "pairs": self.pairs.iter().map(PairResult::to_json).collect::<Vec<_>>(),
            "passive_open": self.passive_open,
            "passive_other_pollers": self.passive_other_pollers,
        })
    }

    /// A human-readable table: counts, then per pair the RTT split (what the wire
    /// shows, the local host's share) and both differences to the passive RTT.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:<16} {:<16} {:>7} {:>7} {:>7} {:>6} {:>8}",
            "poller", "receiver", "active", "found", "missed", "extra", "found%"
        );
        let rows = || self.pairs.iter().chain(std::iter::once(&self.total));
        for r in rows() {
            let _ = writeln!(
                o,
                "{:<16} {:<16} {:>7} {:>7} {:>7} {:>6} {:>8.2}",
                r.poller,
                r.receiver,
                r.active,
                r.found,
                r.missed,
                r.extra,
                found_percent(r.found, r.active),
            );
        }
        let _ = writeln!(
            o,
            "\nRTT split and differences to the passive RTT (us; socket = the peer's kernel timestamps, app = its clock around write/read)"
        );
        let _ = writeln!(
            o,
            "{:<16} {:<16} {:>6} {:>11} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
            "poller", "receiver", "joined", "wire_mean", "host_mean", "host_max",
            "sock_mean", "sock_p50", "sock_p99", "sock_max",
            "app_mean", "app_p50", "app_p99", "app_max"
        );
        for r in rows() {
            let (d, s, h) = (
                r.deltas(),
                r.socket_deltas(),
                DeltaStats::from_ns(&r.host_ns),
            );
            let sock = |v: f64| {
                if s.count == 0 {
                    "-".to_string()
                } else {
                    format!("{v:.1}")
                }
            };
            let host = |v: f64| {
                if h.count == 0 {
                    "-".to_string()
                } else {
                    format!("{v:.1}")
                }
            };
            let _ = writeln!(
                o,
                "{:<16} {:<16} {:>6} {:>11.1} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9} | {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                r.poller,
                r.receiver,
                d.count,
                r.wire_mean_us(),
                host(h.mean_us),
                host(h.max_us),
                sock(s.mean_us),
                sock(s.p50_us),
                sock(s.p99_us),
                sock(s.max_us),
                d.mean_us,
                d.p50_us,
                d.p99_us,
                d.max_us
            );
        }
        let _ = writeln!(
            o,
            "joined by correlator {}, by start time {}; status mismatches {}; without socket RTT {}; socket stop withheld {}; passive open {}; passive records of other pollers {}",
            self.total.by_correlator,
            self.total.by_time,
            self.total.status_mismatch,
            self.total.socket_missing,
            self.total.socket_withheld,
            self.passive_open,
            self.passive_other_pollers
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jim::Status;
    use crate::jxta::PeerId;
    use crate::report::SocketTimes;
    use crate::transaction::MatchMethod;

    fn recs(t: Vec<Transaction>) -> Vec<CsvRecord> {
        t.into_iter()
            .map(|tx| CsvRecord {
                tx,
                socket: SocketTimes::default(),
            })
            .collect()
    }

    fn pid(n: u8) -> PeerId {
        PeerId::parse(&format!("urn:jxta:uuid-{:064X}03", n)).unwrap()
    }

    fn tx(
        poller: u8,
        receiver: u8,
        start_ms: u64,
        rtt_us: Option<u64>,
        corr: Option<&str>,
    ) -> Transaction {
        let start = start_ms * 1_000_000;
        Transaction {
            start,
            stop: Some(start + rtt_us.unwrap_or(10_000_000) * 1000),
            poller_name: Some(format!("p{poller}").into()),
            poller_id: Some(pid(poller)),
            receiver_name: Some(format!("p{receiver}").into()),
            receiver_id: Some(pid(receiver)),
            receiver_status: rtt_us.map(|_| Status::Online),
            status: if rtt_us.is_some() {
                TxStatus::Ok
            } else {
                TxStatus::Timeout
            },
            correlator: corr.map(Into::into),
            match_method: Some(if corr.is_some() {
                MatchMethod::Correlator
            } else {
                MatchMethod::Order
            }),
            ping_bytes: 900,
            pong_bytes: rtt_us.map(|_| 950),
            correlator_overhead_bytes: 0,
            cause: Default::default(),
        }
    }

    #[test]
    fn exact_missed_and_extra_by_correlator() {
        let active = vec![
            tx(1, 2, 1000, Some(50_000), Some("1")),
            tx(1, 2, 2000, Some(51_000), Some("2")),
            tx(1, 2, 3000, None, Some("3")),
            tx(2, 1, 1000, Some(60_000), Some("9")),
        ];
        let passive = vec![
            // Exact joins, the second with a 300 µs shorter passive RTT.
            tx(1, 2, 1000, Some(50_000), Some("1")),
            tx(1, 2, 2000, Some(50_700), Some("2")),
            // "3" missed; an extra the peers never recorded.
            tx(1, 2, 4000, Some(40_000), Some("4")),
            // Same correlator on another pair does not join.
            tx(2, 1, 1000, Some(60_000), Some("1")),
            // Open at the end of the capture: not extra.
            Transaction {
                status: TxStatus::Open,
                stop: None,
                ..tx(1, 2, 5000, None, Some("5"))
            },
            // A poller with no active records: not judged.
            tx(3, 1, 1000, Some(1), None),
        ];
        let v = validate(&recs(active.clone()), &passive, 500_000_000);
        assert_eq!(v.total.active, 4);
        assert_eq!(v.total.found, 2);
        assert_eq!(v.total.missed, 2);
        assert_eq!(v.total.extra, 2);
        assert_eq!(v.passive_open, 1);
        assert_eq!(v.passive_other_pollers, 1);
        let p12 = v.pairs.iter().find(|p| p.poller == "p1").unwrap();
        assert_eq!((p12.found, p12.missed, p12.extra), (2, 1, 1));
        assert_eq!(p12.deltas_ns, vec![0, 300_000]);
        let d = p12.deltas();
        assert_eq!(d.max_us, 300.0);
        assert_eq!(d.mean_us, 150.0);
        let broken = v.check(&Bounds {
            max_miss: Some(MissBound::Percent(10.0)),
            max_delta_ns: Some(200_000),
            ..Bounds::default()
        });
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(v
            .check(&Bounds {
                max_miss: Some(MissBound::Count(2)),
                max_delta_ns: Some(300_000),
                ..Bounds::default()
            })
            .is_empty());
        assert!(v.render().contains("p1"));
        assert_eq!(v.to_json()["total"]["found"], 2);
    }

    #[test]
    fn no_correlator_joins_by_nearest_start() {
        // Active without correlator (unmodified JIM on the wire), passive likewise.
        let active = vec![
            tx(1, 2, 1000, Some(50_000), None),
            tx(1, 2, 2000, Some(50_000), None),
            tx(1, 2, 3000, None, None),
        ];
        let passive = vec![
            tx(1, 2, 2001, Some(49_000), None),
            tx(1, 2, 1002, Some(48_000), None),
            // Too far from the third active start (window 500 ms): missed + extra.
            tx(1, 2, 3700, None, None),
        ];
        let v = validate(&recs(active.clone()), &passive, 500_000_000);
        assert_eq!((v.total.found, v.total.missed, v.total.extra), (2, 1, 1));
        assert_eq!(v.total.by_time, 2);
        let mut d = v.total.deltas_ns.clone();
        d.sort();
        assert_eq!(d, vec![1_000_000, 2_000_000]);
        // A wider window takes it.
        let v = validate(&recs(active.clone()), &passive, 1_000_000_000);
        assert_eq!((v.total.found, v.total.missed, v.total.extra), (3, 0, 0));
    }

    #[test]
    fn different_correlators_never_join_by_time() {
        let active = vec![tx(1, 2, 1000, Some(50_000), Some("a"))];
        let passive = vec![tx(1, 2, 1000, Some(50_000), Some("b"))];
        let v = validate(&recs(active.clone()), &passive, 500_000_000);
        assert_eq!((v.total.found, v.total.missed, v.total.extra), (0, 1, 1));
        // A passive record without correlator joins an active one with a correlator.
        let passive = vec![tx(1, 2, 1001, Some(50_000), None)];
        let v = validate(&recs(active.clone()), &passive, 500_000_000);
        assert_eq!((v.total.found, v.total.by_time), (1, 1));
    }

    #[test]
    fn status_mismatch_counted() {
        let active = vec![tx(1, 2, 1000, None, Some("1"))];
        let passive = vec![tx(1, 2, 1000, Some(50_000), Some("1"))];
        let v = validate(&recs(active.clone()), &passive, 1);
        assert_eq!(v.total.found, 1);
        assert_eq!(v.total.status_mismatch, 1);
        assert!(v.total.deltas_ns.is_empty());
        assert!(MissBound::parse("5%").is_ok());
        assert!(MissBound::parse("x").is_err());
        assert!(MissBound::parse("150%").is_err());
    }

    /// The application RTT includes the poller's own delays; the socket RTT does not:
    /// both differences, and their difference as the host's share.
    #[test]
    fn socket_and_application_differences() {
        let passive = vec![
            tx(1, 2, 1000, Some(50_000), Some("1")),
            tx(1, 2, 2000, Some(60_000), Some("2")),
            tx(1, 2, 3000, Some(70_000), Some("3")),
        ];
        let mut active = recs(vec![
            tx(1, 2, 1000, Some(50_400), Some("1")),
            tx(1, 2, 2000, Some(66_000), Some("2")),
            tx(1, 2, 3000, Some(70_300), Some("3")),
        ]);
        // Kernel timestamps 30 µs inside the application's, except one 10 µs inside.
        for (r, inside_us) in active.iter_mut().zip([30u64, 30, 10]) {
            r.socket = SocketTimes {
                start: Some(r.tx.start + inside_us * 1000),
                stop: r.tx.stop.map(|s| s - inside_us * 1000),
            };
        }
        let v = validate(&active, &passive, 500_000_000);
        let t = &v.total;
        assert_eq!(t.deltas_ns, vec![400_000, 6_000_000, 300_000]);
        assert_eq!(t.socket_deltas_ns, vec![340_000, 5_940_000, 280_000]);
        assert_eq!(t.host_ns, vec![60_000, 60_000, 20_000]);
        assert_eq!(t.wire_mean_us(), 60_000.0);
        assert_eq!(t.socket_missing, 0);
        let bound = |max_us: u64, p99_us: u64| Bounds {
            max_socket_delta_ns: Some(max_us * 1000),
            max_socket_p99_ns: Some(p99_us * 1000),
            ..Bounds::default()
        };
        assert!(v.check(&bound(6_000, 6_000)).is_empty());
        // A broken bound names its worst transaction, and which end of it differs:
        // here the PONG's (the socket saw it 5.97 ms after the wire).
        let broken = v.check(&bound(5_000, 6_000));
        assert_eq!(broken.len(), 1);
        assert!(
            broken[0].ends_with(
                "the worst: p1 -> p2 (correlator 2): socket 2000030000 .. \
                 2065970000 ns, passive 2000000000 .. 2060000000 ns; start \
                 differs by 30.0 us, stop by 5970.0 us (socket - passive)"
            ),
            "{broken:?}"
        );
        let worst = t.worst_socket.as_ref().expect("a worst join");
        assert_eq!(worst.delta_ns(), 5_940_000);
        assert_eq!(v.pairs[0].worst_socket.as_ref(), Some(worst));
        assert_eq!(v.check(&bound(6_000, 500)).len(), 1);
        let j = v.to_json();
        assert_eq!(j["total"]["socket_rtt_delta_us"]["count"], 3);
        assert_eq!(j["total"]["split_us"]["host"]["max_us"], 60.0);
        assert_eq!(j["total"]["worst_socket"]["delta_us"], 5_940.0);
        assert_eq!(
            j["total"]["worst_socket"]["passive_stop_unix_ns"],
            2_060_000_000u64
        );
        let text = v.render();
        assert!(
            text.contains("sock_p99") && text.contains("host_mean"),
            "{text}"
        );

        // Without socket times a socket bound is broken, not silently met.
        let v = validate(
            &recs(active.iter().map(|r| r.tx.clone()).collect()),
            &passive,
            500_000_000,
        );
        assert_eq!(v.total.socket_missing, 3);
        let broken = v.check(&bound(6_000, 6_000));
        assert!(
            broken.iter().any(|b| b.contains("without a socket RTT")),
            "{broken:?}"
        );

        // A stop the peer withheld (start kept, stop empty) is counted apart: none
        // allowed unless told, then a count or a share of the joined transactions.
        let mut withheld = active.clone();
        withheld[1].socket.stop = None;
        let v = validate(&withheld, &passive, 500_000_000);
        assert_eq!((v.total.socket_withheld, v.total.socket_missing), (1, 0));
        assert_eq!(v.total.socket_deltas_ns, vec![340_000, 280_000]);
        let broken = v.check(&bound(6_000, 6_000));
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(
            broken[0].starts_with("1 of 3 joined transactions with the socket stop withheld"),
            "{broken:?}"
        );
        for (allowed, ok) in [("1", true), ("0", false), ("34%", true), ("33%", false)] {
            let b = Bounds {
                max_socket_withheld: Some(MissBound::parse(allowed).unwrap()),
                ..bound(6_000, 6_000)
            };
            assert_eq!(v.check(&b).is_empty(), ok, "{allowed}");
        }
        assert!(v.render().contains("socket stop withheld 1"));
    }

    /// A foreign log with names only joins the observer's records keyed by peer ID.
    #[test]
    fn names_only_join_records_with_peer_ids() {
        let passive = vec![tx(1, 2, 1000, Some(50_000), None)];
        let mut a = tx(1, 2, 1001, Some(51_000), None);
        a.poller_id = None;
        a.receiver_id = None;
        let v = validate(&recs(vec![a]), &passive, 500_000_000);
        assert_eq!((v.total.found, v.total.missed, v.total.extra), (1, 0, 0));
        assert_eq!(v.passive_other_pollers, 0);
    }
}
