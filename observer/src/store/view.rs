//! One view across gateways: `observer report --clickhouse` reads the transactions
//! that several observers stored and counts each transaction once.
//!
//! A PING from alice (LAN A) to bob (LAN B) crosses both gateways, so both observers
//! store it, stamped by their own clocks. The merged view groups the stored rows of
//! one (poller, receiver, correlator) — peers identified by peer ID, else by name —
//! by start time: sorted by start, a row opens a new transaction when it starts more
//! than the merge window after the row before it, or comes from the same observer run
//! as the row before it (one observer never sees one transaction twice). Without a
//! correlator (uninstrumented peers) the correlator is `''` for all of the pair's rows,
//! so rows pair by their order within the pair: the n-th PING every gateway saw within
//! the window. The window must be shorter than the pair's poll interval (JIM polls
//! every 10 s) and longer than the gateways' clock offset plus the one-way delay
//! between them.
//!
//! Each merged transaction keeps every view (`views`, `gateways`) and is represented
//! by its answered view with the longest round trip: the gateway nearest the poller,
//! which sees nearly all of it (none answered: a timed-out view, else an open one). Where two gateways answered views exist, the round
//! trip splits into segments, the longer view (the poller's gateway, "outer") and the
//! shorter (the receiver's gateway, "inner"): receiver side = inner RTT, between the
//! gateways = outer − inner (clock-free: each RTT is on one clock), and the two
//! one-way legs between the gateways, which need the gateways' clock offset.
//!
//! The offset is estimated from the data alone. For a transaction seen by gateways
//! g1 < g2 (by name) with Δstart = start₂ − start₁ and Δstop = stop₂ − stop₁, causality
//! (each one-way leg between the gateways takes ≥ 0) puts θ₂ − θ₁ in
//! [min(Δstart, Δstop), max(Δstart, Δstop)], whichever gateway is on the poller's
//! side. Over all transactions of the pair the offset is in the intersection of these
//! intervals; the estimate is its midpoint and half its width is a hard bound on the
//! error if the offset stayed constant over the window (it is NTP's symmetric-legs
//! estimate of the transaction whose legs were shortest). An empty intersection (the
//! clocks drifted or stepped, or rows were joined wrongly) is reported as
//! inconsistent, and the median of the per-transaction symmetric estimates
//! (Δstart + Δstop) / 2 is used, with its interquartile range stated instead.
//!
//! Aggregations run in ClickHouse, over the merge computed once into a temporary
//! table of the report's HTTP session: the per-pair table and the whole run's statistics
//! (count, mean, sd, min, max, and percentiles interpolated between ranks exactly as
//! `analyze` does, from the sorted RTTs held by the server per group), the matrix
//! from those rows, and presence (per receiver, only the rows that change its state
//! or tell a poller of it are pulled). The figures' transactions are pulled, at most
//! [`FIGURE_TRANSACTIONS_MAX`] of them: past that, every k-th by a hash of the
//! transaction's key, spread evenly over pairs and time (the page says so).
//!
//! Over 600 lines: most of it is the SQL of the merge and of the aggregates, kept next
//! to the Rust that reads each column back.

use std::fmt::Write as _;
use std::time::Duration;

use super::{sql_string, Client, StoreError};
use crate::report::figures::presence_from_transactions;
use crate::report::stats::RttStats;
use crate::report::summary::changes_out;
use crate::report::summary::{Matrix, PairSummary, StatusCounts, Summary, TailCauses};
use crate::transaction::cause::Flags;
use crate::transaction::{Matcher, MatcherConfig, Transaction};

/// Largest answer of one reading query (the pulled transactions at ~300 B each).
pub const READ_MAX_BYTES: usize = 256 << 20;
/// A reading query may scan weeks of rows.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Rows of one (poller, receiver, correlator) this far apart in start time are two
/// transactions (clock offset plus one-way delay between the gateways must be less).
pub const DEFAULT_MERGE_WINDOW: Duration = Duration::from_secs(2);
/// Transactions pulled for the time-series and distribution figures at most.
pub const FIGURE_TRANSACTIONS_MAX: u64 = 100_000;

/// Which stored rows a view reads.
#[derive(Clone, Debug)]
pub struct ViewFilter {
    /// `table` or `database.table` (checked by [`Client::new`]).
    pub table: String,
    /// PINGs starting at or after this time (ns since the epoch, each gateway's clock).
    pub since_ns: Option<u64>,
    /// PINGs starting before this time.
    pub until_ns: Option<u64>,
    /// Only these gateways (all when empty).
    pub gateways: Vec<String>,
    pub window_ns: u64,
    pub figure_max: u64,
}

impl ViewFilter {
    pub fn new(table: &str) -> Self {
        ViewFilter {
            table: table.to_string(),
            since_ns: None,
            until_ns: None,
            gateways: Vec::new(),
            window_ns: DEFAULT_MERGE_WINDOW.as_nanos() as u64,
            figure_max: FIGURE_TRANSACTIONS_MAX,
        }
    }

    fn where_clause(&self) -> String {
        let mut w = vec!["1".to_string()];
        if let Some(s) = self.since_ns {
            w.push(format!("start_unix_ns >= {s}"));
        }
        if let Some(u) = self.until_ns {
            w.push(format!("start_unix_ns < {u}"));
        }
        if !self.gateways.is_empty() {
            let list: Vec<String> = self
                .gateways
                .iter()
                .map(|g| format!("'{}'", sql_string(g)))
                .collect();
            w.push(format!("gateway IN ({})", list.join(", ")));
        }
        w.join(" AND ")
    }
}

// No lambda here refers to a whole array column (`vs[i - 1]`): ClickHouse copies a
// captured column once per element, n² for a group of n rows (an uninstrumented pair
// over a week is 60,000 rows). Neighbours come from shifted copies instead.

/// The merged view as a subquery: one row per transaction, with `pk`, `rk`
/// (poller and receiver keys), `correlator`, `views`, `gateways`, `rep` (the
/// representing view: 1 start, 2 observer run, 3 stop or 0, 4 status, 5 receiver
/// status, 6 poller name, 7 poller ID, 8 receiver name, 9 receiver ID, 10 match
/// method, 11 PING bytes, 12 PONG bytes as text, 13 correlator bytes, 14 gateway,
/// 15 to 21 the cause columns, numbers as text: `cause` to `relay_peer_id`)
/// and `okv` (the answered views as (gateway, RTT ns, start, stop), longest first).
pub fn merged_sql(f: &ViewFilter) -> String {
    format!(
        "SELECT pk, rk, correlator, cl, count() AS views, uniqExact(v.14) AS gateways, uniqExact(v.2) AS runs, \
argMax(v, (v.4 = 'ok' AND v.3 != 0, v.4 = 'timeout', if(v.3 > v.1, v.3 - v.1, 0))) AS rep, \
arraySort(x -> -x.2, groupArrayIf((v.14, if(v.3 > v.1, v.3 - v.1, 0), v.1, v.3), v.4 = 'ok' AND v.3 != 0)) AS okv \
FROM (SELECT pk, rk, correlator, arrayJoin(arrayMap((x, c) -> (x, c), vs, cls)) AS vc, vc.1 AS v, vc.2 AS cl \
FROM (SELECT pk, rk, correlator, \
arraySort(x -> (x.1, x.2), groupArray((start_unix_ns, concat(gateway, ' ', run_id), ifNull(stop_unix_ns, 0), \
transaction_status, receiver_status, poller_name, poller_peer_id, receiver_name, receiver_peer_id, match_method, \
ping_bytes, ifNull(toString(pong_bytes), ''), correlator_overhead_bytes, gateway, \
cause, ifNull(toString(tcp_us), ''), ifNull(toString(conn_us), ''), ifNull(toString(queue_us), ''), \
ifNull(toString(queue_bytes), ''), ifNull(toString(far_us), ''), relay_peer_id))) AS vs, \
arrayMap(x -> x.2, vs) AS srcs, \
arrayCumSum(arrayMap((gap, src, prev) -> gap > {w} OR src = prev, \
arrayDifference(arrayMap(x -> x.1, vs)), srcs, arrayPushFront(arrayPopBack(srcs), ''))) AS cls \
FROM (SELECT *, \
if(poller_peer_id != '', poller_peer_id, if(poller_name != '', poller_name, '?')) AS pk, \
if(receiver_peer_id != '', receiver_peer_id, if(receiver_name != '', receiver_name, '?')) AS rk \
FROM {t} FINAL WHERE {wh}) \
GROUP BY pk, rk, correlator)) \
GROUP BY pk, rk, correlator, cl",
        w = f.window_ns,
        t = f.table,
        wh = f.where_clause(),
    )
}

/// The session's temporary table holding [`merged_sql`]'s rows: the merge is computed
/// once, and every aggregate below reads it.
const MERGED: &str = "observer_merged";

/// RTT (ms) of a representing view, as `Transaction::rtt_ns` has it.
const REP_RTT_MS: &str = "if(rep.3 >= rep.1, rep.3 - rep.1, 0) / 1e6";
const REP_ANSWERED: &str = "rep.4 = 'ok' AND rep.3 != 0";
/// The same RTT in ns.
const REP_RTT_NS: &str = "if(rep.3 >= rep.1, rep.3 - rep.1, 0)";

/// Statistics of the sorted array `s` (ms) in `RttStats` order: count, mean, sd, min,
/// p50, p90, p99, max — the same arithmetic as `RttStats::from_ms` (sum in sorted
/// order, numpy-linear percentiles).
fn stats_columns(s: &str) -> String {
    let n = format!("toInt64(length({s}))");
    let pct = |q: &str| {
        let h = format!("(({n} - 1) * {q})");
        let lo = format!("toInt64(floor({h}))");
        format!(
            "if({n} = 0, 0, {s}[{lo} + 1] + ({h} - floor({h})) * ({s}[least({lo} + 2, {n})] - {s}[{lo} + 1]))"
        )
    };
    let mean = format!("if({n} = 0, 0, arraySum({s}) / {n})");
    format!(
        "{n}, {mean}, if({n} < 2, 0, sqrt(arraySum(arrayMap(x -> (x - {mean}) * (x - {mean}), {s})) / ({n} - 1))), \
if({n} = 0, 0, {s}[1]), {}, {}, {}, if({n} = 0, 0, {s}[{n}])",
        pct("0.5"),
        pct("0.9"),
        pct("0.99")
    )
}

fn pairs_sql() -> String {
    format!(
        "SELECT pk, rk, pid, rid, pn, rn, total, ok, timeout, open, {stats} FROM (\
SELECT pk, rk, anyIf(rep.7, rep.7 != '') AS pid, anyIf(rep.9, rep.9 != '') AS rid, \
argMaxIf(rep.6, rep.1, rep.6 != '') AS pn, argMaxIf(rep.8, rep.1, rep.8 != '') AS rn, \
count() AS total, countIf(rep.4 = 'ok') AS ok, countIf(rep.4 = 'timeout') AS timeout, countIf(rep.4 = 'open') AS open, \
arraySort(groupArrayIf({REP_RTT_MS}, {REP_ANSWERED})) AS s \
FROM {MERGED} GROUP BY pk, rk) FORMAT TabSeparated",
        stats = stats_columns("s"),
    )
}

/// The whole run: counts, statistics, and what `ReportData::from_csv` derives (the
/// time span and the longest timeout), plus the merge counts.
fn overall_sql() -> String {
    format!(
        "SELECT total, ok, timeout, open, {stats}, first, last, longest_timeout, view_rows, two, more, joined FROM (\
SELECT count() AS total, countIf(rep.4 = 'ok') AS ok, countIf(rep.4 = 'timeout') AS timeout, countIf(rep.4 = 'open') AS open, \
arraySort(groupArrayIf({REP_RTT_MS}, {REP_ANSWERED})) AS s, \
min(rep.1) AS first, max(if(rep.3 = 0, rep.1, rep.3)) AS last, \
maxIf(if(rep.3 > rep.1, rep.3 - rep.1, 0), rep.4 = 'timeout' AND rep.3 != 0) AS longest_timeout, \
sum(views) AS view_rows, countIf(gateways = 2) AS two, countIf(gateways > 2) AS more, countIf(runs < views) AS joined \
FROM {MERGED}) FORMAT TabSeparated",
        stats = stats_columns("s"),
    )
}

/// The transaction CSV's columns (`analyze --csv`) of a representing view.
const REP_CSV_COLUMNS: &str =
    "rep.1 AS start_unix_ns, if(rep.3 = 0, '', toString(rep.3)) AS stop_unix_ns, \
rep.6 AS poller_name, rep.7 AS poller_peer_id, rep.8 AS receiver_name, rep.9 AS receiver_peer_id, \
rep.5 AS receiver_status, rep.4 AS transaction_status, correlator, rep.10 AS match_method, \
rep.11 AS ping_bytes, rep.12 AS pong_bytes, rep.13 AS correlator_overhead_bytes, \
rep.15 AS cause, rep.16 AS tcp_us, rep.17 AS conn_us, rep.18 AS queue_us, rep.19 AS queue_bytes, \
rep.20 AS far_us, rep.21 AS relay_peer_id";

/// The answered transactions at or above `from_ns` (RTT), counted by their causes.
fn tail_sql(from_ns: u64) -> String {
    format!(
        "SELECT rep.15, count() FROM {MERGED} WHERE {REP_ANSWERED} AND {REP_RTT_NS} >= {from_ns} \
GROUP BY rep.15 ORDER BY rep.15 FORMAT TabSeparated"
    )
}

/// The smallest RTT (ns) the summary counts in a tail starting at `from_ms`: the
/// summary compares `ns as f64 / 1e6 >= from_ms`, and the store compares integers, so
/// the bound is found by that same float comparison (monotone in `ns`).
fn tail_from_ns(from_ms: f64) -> u64 {
    let counted = |ns: u64| ns as f64 / 1e6 >= from_ms;
    let mut ns = (from_ms.max(0.0) * 1e6).floor() as u64;
    while ns > 0 && counted(ns - 1) {
        ns -= 1;
    }
    while !counted(ns) {
        ns += 1;
    }
    ns
}

/// The tail by cause, as `SummaryBuilder` counts it from the same transactions.
fn read_tail(
    client: &Client,
    rtt_ms: &RttStats,
    s: Option<&str>,
) -> Result<Option<TailCauses>, StoreError> {
    if rtt_ms.count == 0 {
        return Ok(None);
    }
    let answer = client.read(&tail_sql(tail_from_ns(rtt_ms.p90)), s)?;
    let mut t = TailCauses {
        from_ms: rtt_ms.p90,
        ..TailCauses::default()
    };
    for r in tsv_rows(client, "tail", &answer, 2)? {
        let label = unescape(r[0]);
        let n: u64 = num(client, "tail", r[1])?;
        let flags = Flags::parse(&label).ok_or_else(|| bad_answer(client, "tail", &label))?;
        t.count += n;
        if flags.is_empty() {
            t.none += n;
        }
        for f in flags.iter() {
            *t.by_cause.entry(f.as_str()).or_default() += n;
        }
    }
    Ok(Some(t))
}

/// The rows presence needs: per receiver in stop order, those whose status differs
/// from the row before (a change) and each poller's first row after a change (when
/// it learned it). Fed to the same `Presence` as a CSV's rows, they give the same
/// changes as all rows would.
fn presence_sql() -> String {
    format!(
        "SELECT x.1 AS start_unix_ns, toString(x.3) AS stop_unix_ns, x.6 AS poller_name, x.7 AS poller_peer_id, \
x.8 AS receiver_name, x.9 AS receiver_peer_id, x.5 AS receiver_status, x.4 AS transaction_status, \
'' AS correlator, x.10 AS match_method, x.11 AS ping_bytes, x.12 AS pong_bytes, x.13 AS correlator_overhead_bytes \
FROM (SELECT rk, arraySort(x -> (x.3, x.1, x.6, x.8), groupArray(rep)) AS rs, \
arrayMap(x -> x.5, rs) AS states, \
arrayCumSum(arrayMap((a, b) -> a != b, states, arrayPushFront(arrayPopBack(states), ''))) AS runs, \
arrayEnumerateUniq(arrayMap((x, r) -> (r, x.7, x.6), rs, runs)) AS firsts \
FROM {MERGED} WHERE {REP_ANSWERED} AND rep.5 != '' GROUP BY rk) \
ARRAY JOIN rs AS x, firsts AS first WHERE first = 1 FORMAT CSVWithNames",
    )
}

/// The figures' transactions: every `step`-th by a hash of the key, in start order.
fn sample_sql(f: &ViewFilter, step: u64) -> String {
    format!(
        "SELECT {REP_CSV_COLUMNS}, rep.14 AS gateway FROM {MERGED} \
WHERE cityHash64(pk, rk, correlator, rep.1) % {step} = 0 \
ORDER BY rep.1, rep.6, rep.8, correlator LIMIT {max} FORMAT CSVWithNames",
        step = step.max(1),
        max = f.figure_max,
    )
}

/// Transactions with answered views from exactly two gateways: outer (longest RTT,
/// the poller's side) and inner, with g1 < g2 by name and the per-transaction
/// Δstart, Δstop (ns, g2 − g1).
fn two_view_sql() -> &'static str {
    "SELECT pk, rk, rep.6 AS pn, rep.8 AS rn, okv[1] AS o, okv[length(okv)] AS i, \
if(o.1 < i.1, o.1, i.1) AS g1, if(o.1 < i.1, i.1, o.1) AS g2, \
toInt64(if(o.1 = g2, o.3, i.3)) - toInt64(if(o.1 = g2, i.3, o.3)) AS dstart, \
toInt64(if(o.1 = g2, o.4, i.4)) - toInt64(if(o.1 = g2, i.4, o.4)) AS dstop \
FROM observer_merged WHERE gateways = 2 AND length(okv) >= 2 AND okv[1].1 != okv[length(okv)].1"
}

fn offsets_sql() -> String {
    format!(
        "SELECT g1, g2, count(), max(least(dstart, dstop)), min(greatest(dstart, dstop)), \
quantilesExact(0.25, 0.5, 0.75)((dstart + dstop) / 2) AS sym, sym[1], sym[2], sym[3] \
FROM ({}) GROUP BY g1, g2 ORDER BY g1, g2 FORMAT TabSeparated",
        two_view_sql()
    )
}

fn segments_sql(offsets: &[GatewayOffset]) -> String {
    // θ(g2) − θ(g1) in ns for each gateway pair, as estimated.
    let mut delta = String::from("multiIf(");
    for o in offsets {
        let _ = write!(
            delta,
            "g1 = '{}' AND g2 = '{}', {}, ",
            sql_string(&o.gateways.0),
            sql_string(&o.gateways.1),
            (o.offset_ms * 1e6).round() as i64
        );
    }
    delta.push_str("0)");
    format!(
        "SELECT pk, rk, any(pn), any(rn), o.1 AS outer_gw, i.1 AS inner_gw, count(), \
quantilesExact(0.5, 0.9)(o.2 / 1e6) AS total, total[1], total[2], \
quantilesExact(0.5, 0.9)((toInt64(i.3) - toInt64(o.3) - dt) / 1e6) AS fwd, fwd[1], fwd[2], \
quantilesExact(0.5, 0.9)(i.2 / 1e6) AS recv, recv[1], recv[2], \
quantilesExact(0.5, 0.9)((toInt64(o.4) - toInt64(i.4) + dt) / 1e6) AS ret, ret[1], ret[2] \
FROM (SELECT *, if(i.1 = g2, {delta}, -{delta}) AS dt FROM ({two})) \
GROUP BY pk, rk, outer_gw, inner_gw ORDER BY pk, rk, outer_gw, inner_gw FORMAT TabSeparated",
        two = two_view_sql(),
    )
}

fn per_gateway_sql(f: &ViewFilter) -> String {
    format!(
        "SELECT gateway, count(), uniqExact(run_id) FROM {} FINAL WHERE {} GROUP BY gateway ORDER BY gateway FORMAT TabSeparated",
        f.table,
        f.where_clause()
    )
}

/// Two gateways' clock offset, estimated from the transactions both saw.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GatewayOffset {
    /// (g1, g2), g1 < g2 by name; the offset is θ(g2) − θ(g1): add it to a g1 time
    /// to get the g2 clock's reading.
    pub gateways: (String, String),
    pub transactions: u64,
    /// The causality interval's bounds (ms); `lower > upper` when inconsistent.
    pub lower_ms: f64,
    pub upper_ms: f64,
    /// Whether the intervals intersect (a constant offset explains every transaction).
    pub consistent: bool,
    /// The estimate: the intersection's midpoint, else the median symmetric estimate.
    pub offset_ms: f64,
    /// Hard error bound (half the intersection) when consistent.
    pub bound_ms: Option<f64>,
    /// Per-transaction symmetric-legs estimates: quartiles (ms).
    pub symmetric_q1_ms: f64,
    pub symmetric_median_ms: f64,
    pub symmetric_q3_ms: f64,
    pub estimator: &'static str,
}

/// Median and p90 (ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
}

/// The segments of one pair's round trips seen from two gateways.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Segments {
    pub poller: String,
    pub receiver: String,
    /// The poller's gateway (the longer view) and the receiver's.
    pub poller_gateway: String,
    pub receiver_gateway: String,
    pub transactions: u64,
    /// The round trip seen at the poller's gateway.
    pub total_ms: Spread,
    /// PING from the poller's gateway to the receiver's (uses the offset).
    pub forward_ms: Spread,
    /// The receiver's gateway to the receiver and back (the inner view).
    pub receiver_side_ms: Spread,
    /// PONG from the receiver's gateway back to the poller's (uses the offset).
    pub return_ms: Spread,
}

/// What each gateway stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GatewayRows {
    pub gateway: String,
    pub rows: u64,
    pub runs: u64,
}

/// How the rows merged.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MergeCounts {
    /// Stored rows read (each a gateway's view of a transaction).
    pub views: u64,
    /// Transactions after merging (each counted once).
    pub transactions: u64,
    /// Transactions seen by two gateways, and by more (not split into segments).
    pub seen_by_two_gateways: u64,
    pub seen_by_more_gateways: u64,
    /// Merged transactions holding two views from one observer run, which cannot be
    /// one transaction: an uninstrumented pair polled faster than the merge window
    /// (shorten it). Each such group is counted once, so transactions are missing.
    pub joined_within_a_run: u64,
}

/// Everything `report --clickhouse` draws and prints.
pub struct StoreView {
    pub summary: Summary,
    /// The figures' transactions (all of them, or every `sample_step`-th).
    pub transactions: Vec<Transaction>,
    pub sample_step: u64,
    /// The longest timeout stored (as `ReportData::from_csv` takes it), if any.
    pub timeout_ns: Option<u64>,
    pub merge: MergeCounts,
    pub per_gateway: Vec<GatewayRows>,
    pub offsets: Vec<GatewayOffset>,
    pub segments: Vec<Segments>,
    pub window_ns: u64,
}

fn bad_answer(client: &Client, what: &str, line: &str) -> StoreError {
    StoreError::Http {
        url: client.url.clone(),
        why: format!(
            "unexpected answer to the {what} query: {:?}",
            line.chars().take(200).collect::<String>()
        ),
    }
}

/// A TabSeparated field with ClickHouse's escapes undone.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// The rows of a TabSeparated answer, each with exactly `cols` fields.
fn tsv_rows<'a>(
    client: &Client,
    what: &str,
    answer: &'a str,
    cols: usize,
) -> Result<Vec<Vec<&'a str>>, StoreError> {
    answer
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() == cols {
                Ok(f)
            } else {
                Err(bad_answer(client, what, l))
            }
        })
        .collect()
}

fn num<T: std::str::FromStr>(client: &Client, what: &str, field: &str) -> Result<T, StoreError> {
    field.parse().map_err(|_| bad_answer(client, what, field))
}

fn stats_from(client: &Client, what: &str, f: &[&str]) -> Result<RttStats, StoreError> {
    let g = |i: usize| num::<f64>(client, what, f[i]);
    Ok(RttStats {
        count: num(client, what, f[0])?,
        mean: g(1)?,
        sd: g(2)?,
        min: g(3)?,
        p50: g(4)?,
        p90: g(5)?,
        p99: g(6)?,
        max: g(7)?,
    })
}

fn csv_transactions(
    client: &Client,
    what: &str,
    answer: &str,
) -> Result<Vec<Transaction>, StoreError> {
    crate::report::read_transactions_csv(answer.as_bytes())
        .map_err(|e| bad_answer(client, what, &e.to_string()))
}

/// Reads the merged view: the aggregates, presence, the offsets and segments, and
/// the figures' (bounded) transactions.
pub fn read(client: &Client, f: &ViewFilter) -> Result<StoreView, StoreError> {
    if !super::valid_table(&f.table) {
        return Err(StoreError::Table(f.table.clone()));
    }
    // The temporary table lives in this HTTP session (and ends with it, or below).
    let session = format!("observer-view-{}", super::new_run_id());
    let s = Some(session.as_str());
    client.read(
        &format!("CREATE TEMPORARY TABLE {MERGED} AS {}", merged_sql(f)),
        s,
    )?;
    let view = read_merged(client, f, s);
    if let Err(e) = client.read(&format!("DROP TEMPORARY TABLE {MERGED}"), s) {
        tracing::debug!(error = %e, "dropping the temporary table (the session ends anyway)");
    }
    view
}

fn read_merged(client: &Client, f: &ViewFilter, s: Option<&str>) -> Result<StoreView, StoreError> {
    let answer = client.read(&overall_sql(), s)?;
    let row = tsv_rows(client, "overall", &answer, 19)?;
    let Some(o) = row.first() else {
        return Err(bad_answer(client, "overall", &answer));
    };
    let counts = StatusCounts {
        total: num(client, "overall", o[0])?,
        ok: num(client, "overall", o[1])?,
        timeout: num(client, "overall", o[2])?,
        open: num(client, "overall", o[3])?,
    };
    let rtt_ms = stats_from(client, "overall", &o[4..12])?;
    let first: u64 = num(client, "overall", o[12])?;
    let last: u64 = num(client, "overall", o[13])?;
    let longest_timeout: u64 = num(client, "overall", o[14])?;
    let merge = MergeCounts {
        views: num(client, "overall", o[15])?,
        transactions: counts.total,
        seen_by_two_gateways: num(client, "overall", o[16])?,
        seen_by_more_gateways: num(client, "overall", o[17])?,
        joined_within_a_run: num(client, "overall", o[18])?,
    };

    let answer = client.read(&pairs_sql(), s)?;
    let mut pairs = Vec::new();
    for p in tsv_rows(client, "pairs", &answer, 18)? {
        let (pk, rk) = (unescape(p[0]), unescape(p[1]));
        let (pid, rid) = (unescape(p[2]), unescape(p[3]));
        let (pn, rn) = (unescape(p[4]), unescape(p[5]));
        // The summary's labels: the latest name, else the peer ID (the key).
        pairs.push(PairSummary {
            poller: if pn.is_empty() { pk } else { pn }.into(),
            poller_id: (!pid.is_empty()).then(|| pid.into()),
            receiver: if rn.is_empty() { rk } else { rn }.into(),
            receiver_id: (!rid.is_empty()).then(|| rid.into()),
            counts: StatusCounts {
                total: num(client, "pairs", p[6])?,
                ok: num(client, "pairs", p[7])?,
                timeout: num(client, "pairs", p[8])?,
                open: num(client, "pairs", p[9])?,
            },
            rtt_ms: stats_from(client, "pairs", &p[10..18])?,
        });
    }
    pairs.sort_by(|a, b| {
        (&a.poller, &a.receiver, &a.poller_id, &a.receiver_id).cmp(&(
            &b.poller,
            &b.receiver,
            &b.poller_id,
            &b.receiver_id,
        ))
    });

    let presence_rows = csv_transactions(client, "presence", &client.read(&presence_sql(), s)?)?;
    let changes = changes_out(&presence_from_transactions(&presence_rows));

    let step = counts.total.div_ceil(f.figure_max.max(1)).max(1);
    let transactions = csv_transactions(client, "sample", &client.read(&sample_sql(f, step), s)?)?;

    let answer = client.read(&per_gateway_sql(f), s)?;
    let mut per_gateway = Vec::new();
    for g in tsv_rows(client, "gateways", &answer, 3)? {
        per_gateway.push(GatewayRows {
            gateway: unescape(g[0]),
            rows: num(client, "gateways", g[1])?,
            runs: num(client, "gateways", g[2])?,
        });
    }

    let answer = client.read(&offsets_sql(), s)?;
    let mut offsets = Vec::new();
    for r in tsv_rows(client, "offsets", &answer, 9)? {
        let ms = |i: usize| num::<f64>(client, "offsets", r[i]).map(|ns| ns / 1e6);
        let (lower_ms, upper_ms) = (ms(3)?, ms(4)?);
        let consistent = lower_ms <= upper_ms;
        let symmetric_median_ms = ms(7)?;
        offsets.push(GatewayOffset {
            gateways: (unescape(r[0]), unescape(r[1])),
            transactions: num(client, "offsets", r[2])?,
            lower_ms,
            upper_ms,
            consistent,
            offset_ms: if consistent {
                (lower_ms + upper_ms) / 2.0
            } else {
                symmetric_median_ms
            },
            bound_ms: consistent.then_some((upper_ms - lower_ms) / 2.0),
            symmetric_q1_ms: ms(6)?,
            symmetric_median_ms,
            symmetric_q3_ms: ms(8)?,
            estimator: if consistent {
                "midpoint of the causality interval (exact bound if the offset is constant)"
            } else {
                "median of per-transaction symmetric-legs estimates (intervals disagree)"
            },
        });
    }

    let mut segments = Vec::new();
    if !offsets.is_empty() {
        let answer = client.read(&segments_sql(&offsets), s)?;
        for r in tsv_rows(client, "segments", &answer, 19)? {
            let spread = |a: usize| -> Result<Spread, StoreError> {
                Ok(Spread {
                    p50: num(client, "segments", r[a])?,
                    p90: num(client, "segments", r[a + 1])?,
                })
            };
            let label = |name: &str, key: &str| {
                if name.is_empty() {
                    unescape(key)
                } else {
                    unescape(name)
                }
            };
            segments.push(Segments {
                poller: label(r[2], r[0]),
                receiver: label(r[3], r[1]),
                poller_gateway: unescape(r[4]),
                receiver_gateway: unescape(r[5]),
                transactions: num(client, "segments", r[6])?,
                total_ms: spread(8)?,
                forward_ms: spread(11)?,
                receiver_side_ms: spread(14)?,
                return_ms: spread(17)?,
            });
        }
    }

    let matrix = Matrix::from_pairs(&pairs);
    let duration_ns = if counts.total == 0 {
        0
    } else {
        last.saturating_sub(first)
    };
    // The overhead the store cannot give (message sizes are not stored) stays empty,
    // as for a CSV.
    let mut summary = Summary::build(&[], &Matcher::new(MatcherConfig::default()), duration_ns);
    summary.transactions = counts;
    summary.tail = read_tail(client, &rtt_ms, s)?;
    summary.rtt_ms = rtt_ms;
    summary.pairs = pairs;
    summary.matrix = matrix;
    summary.presence.changes = changes;
    summary.first_ping_unix_ns = (summary.transactions.total > 0).then_some(first);
    Ok(StoreView {
        summary,
        transactions,
        sample_step: step,
        timeout_ns: (longest_timeout > 0).then_some(longest_timeout),
        merge,
        per_gateway,
        offsets,
        segments,
        window_ns: f.window_ns,
    })
}

impl StoreView {
    /// What the figures are drawn from, as for a CSV (`ReportData::from_csv`): the
    /// timeout drawn is the longest stored one, else `default_timeout_ns`.
    pub fn report_data(
        &self,
        source: &str,
        default_timeout_ns: u64,
        command: &str,
    ) -> crate::report::figures::ReportData {
        use crate::report::figures::{InputMeta, Meta, ReportData};
        let mut format = format!(
            "ClickHouse, {} stored views of {} transactions",
            self.merge.views, self.merge.transactions
        );
        if self.sample_step > 1 {
            let _ = write!(
                format,
                " ({} drawn: every {}th)",
                self.transactions.len(),
                self.sample_step
            );
        }
        ReportData {
            transactions: self.transactions.clone(),
            summary: self.summary.clone(),
            timeout_ns: self.timeout_ns.unwrap_or(default_timeout_ns),
            meta: Meta {
                inputs: vec![InputMeta {
                    name: source.to_string(),
                    format,
                    ..InputMeta::default()
                }],
                duration_ns: self.summary.capture_duration_ns,
                command: command.to_string(),
                text_report: format!(
                    "{}{}",
                    crate::report::table::render(&self.summary),
                    self.render_text()
                ),
                ..Meta::default()
            },
        }
    }

    /// The merged view's own facts (what the summary JSON does not hold).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "merge_window_ns": self.window_ns,
            "merge": self.merge,
            "per_gateway": self.per_gateway,
            "offsets": self.offsets,
            "segments": self.segments,
            "figure_transactions": self.transactions.len(),
            "figure_sample_step": self.sample_step,
        })
    }

    /// The gateways' tables, printed after the summary's.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let m = &self.merge;
        let _ = writeln!(
            out,
            "\nGateways (merge window {} ms)\n{} stored views -> {} transactions ({} seen by two gateways, {} by more)",
            self.window_ns / 1_000_000,
            m.views,
            m.transactions,
            m.seen_by_two_gateways,
            m.seen_by_more_gateways
        );
        if m.joined_within_a_run > 0 {
            let _ = writeln!(
                out,
                "warning: {} merged transactions hold two views of one observer run (polls closer than the merge window?)",
                m.joined_within_a_run
            );
        }
        let _ = writeln!(out, "{:<24} {:>10} {:>5}", "gateway", "views", "runs");
        for g in &self.per_gateway {
            let _ = writeln!(out, "{:<24} {:>10} {:>5}", g.gateway, g.rows, g.runs);
        }
        if !self.offsets.is_empty() {
            let _ = writeln!(
                out,
                "\nClock offsets (ms, second gateway's clock minus the first's)"
            );
            for o in &self.offsets {
                let est = match o.bound_ms {
                    Some(b) => format!("{:.3} ± {:.3}", o.offset_ms, b),
                    None => format!(
                        "{:.3} (inconsistent; IQR {:.3} .. {:.3})",
                        o.offset_ms, o.symmetric_q1_ms, o.symmetric_q3_ms
                    ),
                };
                let _ = writeln!(
                    out,
                    "{} -> {}: {} from {} transactions ({})",
                    o.gateways.0, o.gateways.1, est, o.transactions, o.estimator
                );
            }
        }
        if !self.segments.is_empty() {
            let _ = writeln!(
                out,
                "\nSegments (ms, p50 / p90): at the poller's gateway = forward + receiver side + return"
            );
            let _ = writeln!(
                out,
                "{:>10} {:>10} {:>8} {:>8} {:>6} {:>17} {:>17} {:>17} {:>17}",
                "poller",
                "receiver",
                "gw",
                "gw",
                "n",
                "total",
                "forward",
                "receiver side",
                "return"
            );
            let sp = |s: &Spread| format!("{:.1} / {:.1}", s.p50, s.p90);
            for s in &self.segments {
                let _ = writeln!(
                    out,
                    "{:>10} {:>10} {:>8} {:>8} {:>6} {:>17} {:>17} {:>17} {:>17}",
                    crate::report::table::short_label(&s.poller),
                    crate::report::table::short_label(&s.receiver),
                    s.poller_gateway,
                    s.receiver_gateway,
                    s.transactions,
                    sp(&s.total_ms),
                    sp(&s.forward_ms),
                    sp(&s.receiver_side_ms),
                    sp(&s.return_ms)
                );
            }
        }
        if self.sample_step > 1 {
            let _ = writeln!(
                out,
                "\nFigures: {} of {} transactions (every {}th by a hash of its key); tables: all of them.",
                self.transactions.len(),
                m.transactions,
                self.sample_step
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_a_where_clause() {
        let mut f = ViewFilter::new("t");
        assert_eq!(f.where_clause(), "1");
        f.since_ns = Some(5);
        f.until_ns = Some(9);
        f.gateways = vec!["gw-a".into(), "o'b".into()];
        assert_eq!(
            f.where_clause(),
            "1 AND start_unix_ns >= 5 AND start_unix_ns < 9 AND gateway IN ('gw-a', 'o\\'b')"
        );
    }

    #[test]
    fn tab_separated_escapes_are_undone() {
        assert_eq!(unescape(r"a\tb\\c\'d"), "a\tb\\c'd");
    }
}
