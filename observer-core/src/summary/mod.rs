//! The run's summary: counts, RTT statistics overall and per pair, the RTT matrix,
//! presence changes, the measured correlator overhead next to the study's figures,
//! and the anomalies.
//!
//! Over 600 lines: the output types and the one builder that fills them.

#[doc(hidden)]
pub mod example;
pub mod sketch;
pub mod stats;
#[cfg(test)]
mod tests;

use std::hash::BuildHasher as _;
use std::sync::Arc;

use self::stats::RttStats;
use crate::jxta::PeerId;
use crate::transaction::cause::Flags;
use crate::transaction::csv::{record_len_named, text_len};
use crate::transaction::{Anomalies, Matcher, PresenceChange, SharedNames, Transaction, TxStatus};
use crate::UnixNanos;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StatusCounts {
    pub total: u64,
    pub ok: u64,
    pub timeout: u64,
    pub open: u64,
}

impl StatusCounts {
    fn add(&mut self, s: TxStatus) {
        self.total += 1;
        match s {
            TxStatus::Ok => self.ok += 1,
            TxStatus::Timeout => self.timeout += 1,
            TxStatus::Open => self.open += 1,
        }
    }
}

/// The strings are the builder's own copies, shared: the names and IDs the matcher
/// kept, a label the name or the ID itself (a copy each was ~1,000 instructions a
/// pair of 10,000).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PairSummary {
    /// Name if known, else the peer ID.
    #[serde(serialize_with = "shared_str")]
    pub poller: Arc<str>,
    #[serde(serialize_with = "shared_opt_str")]
    pub poller_id: Option<Arc<str>>,
    #[serde(serialize_with = "shared_str")]
    pub receiver: Arc<str>,
    #[serde(serialize_with = "shared_opt_str")]
    pub receiver_id: Option<Arc<str>>,
    #[serde(flatten)]
    pub counts: StatusCounts,
    pub rtt_ms: RttStats,
}

/// As a `String` serialises (serde's `Arc` needs its `rc` feature, for two fields).
fn shared_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

fn shared_opt_str<S: serde::Serializer>(s: &Option<Arc<str>>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(&**s),
        None => ser.serialize_none(),
    }
}

/// Mean RTT (ms) for each poller (row) × receiver (column); `None` where the pair has
/// no answered transaction. Dense, so bounded: beyond [`MATRIX_MAX_PEERS`] pollers or
/// receivers only the most active are shown (10,000 peers would make a 10⁸-cell
/// matrix); every pair is still in the per-pair table.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Matrix {
    pub pollers: Vec<String>,
    pub receivers: Vec<String>,
    pub mean_ms: Vec<Vec<Option<f64>>>,
    /// Pollers and receivers left out of the matrix (fewest transactions first).
    pub omitted_pollers: usize,
    pub omitted_receivers: usize,
}

impl Matrix {
    /// The matrix of the per-pair table (sorted as the summary sorts it); also what
    /// a report from the store builds from ClickHouse's per-pair aggregates.
    pub fn from_pairs(pairs: &[PairSummary]) -> Matrix {
        let (pollers, omitted_pollers) =
            most_active(pairs, |p| &p.poller, Runs::Yes, MATRIX_MAX_PEERS);
        let (receivers, omitted_receivers) =
            most_active(pairs, |p| &p.receiver, Runs::No, MATRIX_MAX_PEERS);
        let mut mean_ms = vec![vec![None; receivers.len()]; pollers.len()];
        // The last poller's row, for the run of its pairs.
        let mut row: Option<(&Arc<str>, Result<usize, usize>)> = None;
        for p in pairs {
            if p.rtt_ms.count == 0 {
                continue;
            }
            let r = match row {
                Some((at, r)) if *at == p.poller => r,
                _ => {
                    let r = pollers.binary_search_by(|l| l.as_str().cmp(&p.poller));
                    row = Some((&p.poller, r));
                    r
                }
            };
            // Most pairs' pollers are left out when there are many: no column to find.
            let Ok(r) = r else {
                continue;
            };
            if let Ok(c) = receivers.binary_search_by(|l| l.as_str().cmp(&p.receiver)) {
                mean_ms[r][c] = Some(p.rtt_ms.mean);
            }
        }
        Matrix {
            pollers,
            receivers,
            mean_ms,
            omitted_pollers,
            omitted_receivers,
        }
    }
}

/// Rows and columns of the RTT matrix at most.
pub const MATRIX_MAX_PEERS: usize = 64;

/// Pairs the tables and figures show one by one: the busiest by transactions. The
/// others are summed in one row or mark (150,000 pairs made a 448 MB graph); the JSON
/// keeps every pair.
pub const TOP_PAIRS: usize = 40;

/// Indices into `pairs` of the `max` pairs with the most transactions, in `pairs`
/// order; among equally busy pairs the earlier is kept.
pub fn top_pairs(pairs: &[PairSummary], max: usize) -> Vec<usize> {
    if pairs.len() <= max {
        return (0..pairs.len()).collect();
    }
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    let key = |i: &usize| (std::cmp::Reverse(pairs[*i].counts.total), *i);
    order.select_nth_unstable_by_key(max, key);
    order.truncate(max);
    order.sort_unstable();
    order
}

/// The pairs left out of a table or figure, summed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtherPairs {
    pub pairs: usize,
    pub counts: StatusCounts,
    /// Count, mean, sample sd (pooled from the pairs' own), min and max; no
    /// percentiles (those of the union are not in the pairs' summaries).
    pub rtt_ms: RttStats,
}

/// Every pair not in `shown` (sorted indices into `pairs`), summed; `None` if none.
pub fn other_pairs(pairs: &[PairSummary], shown: &[usize]) -> Option<OtherPairs> {
    let mut o = OtherPairs::default();
    let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, p) in pairs.iter().enumerate() {
        if shown.binary_search(&i).is_ok() {
            continue;
        }
        o.pairs += 1;
        o.counts.total += p.counts.total;
        o.counts.ok += p.counts.ok;
        o.counts.timeout += p.counts.timeout;
        o.counts.open += p.counts.open;
        let r = &p.rtt_ms;
        if r.count == 0 {
            continue;
        }
        let n = r.count as f64;
        o.rtt_ms.count += r.count;
        sum += n * r.mean;
        // Σx² of the pair from its mean and sample variance.
        sum_sq += (n - 1.0) * r.sd * r.sd + n * r.mean * r.mean;
        min = min.min(r.min);
        max = max.max(r.max);
    }
    if o.pairs == 0 {
        return None;
    }
    if o.rtt_ms.count > 0 {
        let n = o.rtt_ms.count as f64;
        let mean = sum / n;
        o.rtt_ms.mean = mean;
        o.rtt_ms.sd = if o.rtt_ms.count < 2 {
            0.0
        } else {
            ((sum_sq - n * mean * mean).max(0.0) / (n - 1.0)).sqrt()
        };
        o.rtt_ms.min = min;
        o.rtt_ms.max = max;
    }
    Some(o)
}

/// Whether a label's pairs come one after the other.
#[derive(Clone, Copy, PartialEq)]
enum Runs {
    Yes,
    /// Each pair's label is counted as it comes ([`by_copy`]): comparing it with the
    /// last one would cost a string compare a pair and rarely save a look-up (the
    /// receivers of pairs sorted by poller).
    No,
}

/// The `max` labels with the most transactions, in name order; and how many were left.
fn most_active<'a>(
    pairs: &'a [PairSummary],
    label: impl Fn(&'a PairSummary) -> &'a str,
    runs: Runs,
    max: usize,
) -> (Vec<String>, usize) {
    // Keyed by the text: `Arc`'s `Hash` was a call a look-up.
    let mut count: crate::FastMap<&str, u64> = crate::FastMap::default();
    match runs {
        Runs::No => {
            for (l, n) in by_copy(pairs.iter().map(|p| (label(p), p.counts.total))) {
                *count.entry(l).or_default() += n;
            }
        }
        Runs::Yes => {
            // Pairs sorted by poller give a poller's pairs in a run: one look-up a run.
            let mut run: Option<(&str, u64)> = None;
            for p in pairs {
                let l = label(p);
                match &mut run {
                    Some((at, n)) if cmp_shared(at, l).is_eq() => *n += p.counts.total,
                    _ => {
                        if let Some((at, n)) = run.replace((l, p.counts.total)) {
                            *count.entry(at).or_default() += n;
                        }
                    }
                }
            }
            if let Some((at, n)) = run {
                *count.entry(at).or_default() += n;
            }
        }
    }
    let total = count.len();
    let mut ranked: Vec<(&str, u64)> = count.into_iter().collect();
    if ranked.len() > max {
        // Only which labels are kept matters (they are sorted by name below), and the
        // order is total (labels are distinct): the `max` first are found without
        // sorting all of them (10,000 pairs' thousand receivers were ~1 M instructions).
        ranked.select_nth_unstable_by(max, |a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked.truncate(max);
    }
    let mut kept: Vec<String> = ranked.into_iter().map(|(l, _)| l.to_owned()).collect();
    kept.sort();
    let omitted = total - kept.len();
    (kept, omitted)
}

/// The summary's order of its pairs: by poller, receiver, poller ID, receiver ID (no ID
/// first), each in text order.
fn pair_order(a: &PairSummary, b: &PairSummary) -> std::cmp::Ordering {
    let ids = |a: &Option<Arc<str>>, b: &Option<Arc<str>>| match (a, b) {
        (Some(a), Some(b)) => cmp_shared(a, b),
        _ => a.is_some().cmp(&b.is_some()),
    };
    cmp_shared(&a.poller, &b.poller)
        .then_with(|| cmp_shared(&a.receiver, &b.receiver))
        .then_with(|| ids(&a.poller_id, &b.poller_id))
        .then_with(|| ids(&a.receiver_id, &b.receiver_id))
}

/// `a` and `b` in text order, the same copy (address and length) equal without a look
/// at its bytes: a pair's labels and IDs are the builder's shared copies, and a poller's
/// pairs, next to each other, hold one copy of its label (its bytes were compared).
#[inline]
fn cmp_shared(a: &str, b: &str) -> std::cmp::Ordering {
    if std::ptr::eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

/// The labels' counts summed by copy: the same bytes in memory (address and length) are
/// the same text, found by hashing two words, where the text's hash read it and a
/// match compared it (~130 instructions a look-up). A pair's labels are the builder's
/// shared copies, so a receiver's pairs mostly hold one copy: the text is hashed once a
/// copy. Copies of one text come out apart; in the order first met.
fn by_copy<'a>(labels: impl Iterator<Item = (&'a str, u64)>) -> Vec<(&'a str, u64)> {
    let mut at: crate::FastMap<(*const u8, usize), usize> = crate::FastMap::default();
    let mut sums: Vec<(&str, u64)> = Vec::new();
    for (l, n) in labels {
        let i = *at.entry((l.as_ptr(), l.len())).or_insert_with(|| {
            sums.push((l, 0));
            sums.len() - 1
        });
        if let Some(s) = sums.get_mut(i) {
            s.1 += n;
        }
    }
    sums
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LearnedOut {
    pub poller: String,
    pub time_unix_ns: u64,
    /// How long after the change (first PONG showing it) this poller learned it.
    pub delay_ms: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChangeOut {
    pub time_unix_ns: u64,
    pub peer: String,
    pub peer_id: Option<String>,
    pub from: Option<&'static str>,
    pub to: &'static str,
    pub learned_by: Vec<LearnedOut>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CurrentOut {
    pub peer: String,
    pub peer_id: Option<String>,
    pub status: &'static str,
    pub since_unix_ns: u64,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PresenceSummary {
    pub changes: Vec<ChangeOut>,
    pub current: Vec<CurrentOut>,
    pub dropped: u64,
}

/// The study's reference figures, reported next to what was measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StudyValues {
    pub max_correlator_bytes_per_message: u64,
    pub correlator_pct_of_ping: f64,
    pub csv_bytes_per_record: u64,
    pub csv_bytes_per_hour: u64,
}

pub const STUDY: StudyValues = StudyValues {
    max_correlator_bytes_per_message: 50,
    correlator_pct_of_ping: 10.0,
    csv_bytes_per_record: 150,
    csv_bytes_per_hour: 60_000,
};

/// Correlator overhead as measured. Means are over messages carrying a correlator
/// (correlator bytes) or over all messages (sizes); `None` when there is nothing to
/// average.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OverheadSummary {
    pub pings: u64,
    pub pongs: u64,
    pub pings_with_correlator: u64,
    pub pongs_with_correlator: u64,
    pub correlator_bytes_per_ping_mean: Option<f64>,
    pub correlator_bytes_per_ping_max: u64,
    pub correlator_bytes_per_pong_mean: Option<f64>,
    pub correlator_bytes_per_pong_max: u64,
    pub ping_message_bytes_mean: Option<f64>,
    pub ping_framed_bytes_mean: Option<f64>,
    pub pong_message_bytes_mean: Option<f64>,
    pub pong_framed_bytes_mean: Option<f64>,
    /// Mean size of the JIM documents themselves.
    pub ping_document_bytes_mean: Option<f64>,
    pub pong_document_bytes_mean: Option<f64>,
    pub correlator_pct_of_ping_document: Option<f64>,
    pub correlator_pct_of_pong_document: Option<f64>,
    pub correlator_pct_of_ping_message: Option<f64>,
    pub correlator_pct_of_ping_framed: Option<f64>,
    pub correlator_pct_of_pong_message: Option<f64>,
    pub correlator_pct_of_pong_framed: Option<f64>,
    pub total_correlator_bytes: u64,
    pub csv_records: u64,
    pub csv_bytes_per_record: Option<f64>,
    pub csv_bytes_per_hour: Option<f64>,
    pub study: StudyValues,
}

/// The slowest tenth of the answered transactions (RTT at or above the p90), by the
/// causes the wire shows (docs/explain.md).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TailCauses {
    pub from_ms: f64,
    pub count: u64,
    /// Tail transactions carrying each cause (one may carry several).
    pub by_cause: std::collections::BTreeMap<&'static str, u64>,
    /// Tail transactions the wire shows no cause for.
    pub none: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub transactions: StatusCounts,
    pub rtt_ms: RttStats,
    pub pairs: Vec<PairSummary>,
    pub matrix: Matrix,
    pub presence: PresenceSummary,
    pub overhead: OverheadSummary,
    pub anomalies: Anomalies,
    pub capture_duration_ns: u64,
    /// `None`: the percentiles are exact. Otherwise the run had more answered
    /// transactions than [`EXACT_RTT_LIMIT`] and its percentiles (whole run and per
    /// pair) come from DDSketches, within this relative error; count, mean, sd, min
    /// and max stay exact.
    pub rtt_percentiles_relative_error: Option<f64>,
    /// The tail by cause; `None` without answered transactions, or once the RTTs are
    /// sketched (the tail's members are no longer known).
    pub tail: Option<TailCauses>,
    /// Start of the earliest PING: time zero of the tables, as of the figures. (The
    /// JSON has the capture's own first and last times under `capture`.)
    #[serde(skip)]
    pub first_ping_unix_ns: Option<u64>,
}

/// A peer's label: its name, else its ID, else `?`.
fn label(name: &Option<String>, id: &Option<PeerId>) -> String {
    match (name, id) {
        (Some(n), _) => n.clone(),
        (None, Some(id)) => id.as_str().to_owned(),
        (None, None) => "?".to_owned(),
    }
}

/// [`label`] of a pair's kept name and ID, shared with them; `unknown` is `?`.
fn label_of(name: Option<Arc<str>>, id: Option<&Arc<str>>, unknown: &Arc<str>) -> Arc<str> {
    match (name, id) {
        (Some(n), _) => n,
        (None, Some(id)) => Arc::clone(id),
        (None, None) => Arc::clone(unknown),
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn pct(part: Option<f64>, whole: Option<f64>) -> Option<f64> {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0.0 => Some(100.0 * p / w),
        _ => None,
    }
}

/// A pair's identity in the summary: the peer ID, else the name (or `?`), so that a
/// name change does not split a pair. A `Box<str>`, not a `String`: the enum then fits
/// in the peer ID's 24 bytes (the ID's pointer is never null): 16 bytes less in each
/// pair's entry.
///
/// Not `Hash`: pairs are hashed through [`IdentRef`] only, so a look-up and the
/// table's rehashing cannot disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ident {
    Id(PeerId),
    Name(Box<str>),
}

/// An [`Ident`] as a transaction shows it, borrowed: a pair is looked up with it, and
/// an `Ident` is made only for a new pair (building one per transaction cost two `Arc`
/// counts up and down, and a drop).
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdentRef<'a> {
    Id(&'a PeerId),
    Name(&'a str),
}

/// As [`crate::transaction::PeerKey`]'s: what each variant holds, without its number.
impl std::hash::Hash for IdentRef<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            IdentRef::Id(id) => id.hash(state),
            IdentRef::Name(n) => n.hash(state),
        }
    }
}

impl<'a> IdentRef<'a> {
    fn of(name: &'a Option<Arc<str>>, id: &'a Option<PeerId>) -> Self {
        match (id, name) {
            (Some(id), _) => IdentRef::Id(id),
            (None, Some(n)) => IdentRef::Name(n),
            (None, None) => IdentRef::Name("?"),
        }
    }

    fn to_owned(self) -> Ident {
        match self {
            IdentRef::Id(id) => Ident::Id(id.clone()),
            IdentRef::Name(n) => Ident::Name(n.into()),
        }
    }
}

impl Ident {
    fn as_ref(&self) -> IdentRef<'_> {
        match self {
            Ident::Id(id) => IdentRef::Id(id),
            Ident::Name(n) => IdentRef::Name(n),
        }
    }
}

/// The summary's hash of a pair: of its borrowed form, so that a look-up and the
/// table's rehashing agree.
/// As the matcher's: the ends' own hashes (an ID's precomputed one) mixed, not written
/// through `hasher` again (see [`crate::transaction::mix_pair`]).
fn pair_hash(hasher: &foldhash::fast::RandomState, key: (IdentRef<'_>, IdentRef<'_>)) -> u64 {
    let part = |end: IdentRef<'_>| match end {
        IdentRef::Id(id) => crate::transaction::id_hash(id),
        name => hasher.hash_one(name),
    };
    crate::transaction::mix_pair(part(key.0), part(key.1))
}

fn key_hash(hasher: &foldhash::fast::RandomState, key: &(Ident, Ident)) -> u64 {
    pair_hash(hasher, (key.0.as_ref(), key.1.as_ref()))
}

/// What the builder keeps per pair until the end: its key, the latest names, counts
/// and RTTs (the IDs in the key are shared with the matcher's copies). A gateway's
/// 150,000 pairs each answered once made this the largest table of a run, so labels
/// are made only in `finish`, and the hash table holds an index into a dense vector of
/// these, not the key: a 64-byte key in each of a hash table's buckets (~1.75 per
/// pair) was 19 MB at 150,000 pairs.
struct PairAcc {
    key: (Ident, Ident),
    /// Shared through [`SummaryBuilder::names`].
    poller_name: Option<Arc<str>>,
    receiver_name: Option<Arc<str>>,
    /// The CSV field lengths of the two names (see [`update_name`]).
    name_lens: [u32; 2],
    counts: PairCounts,
    rtts: Rtts,
    /// When the pair's latest transaction ended (its start while open): what
    /// [`SummaryBuilder::expire_idle`] measures idleness by.
    last_ns: UnixNanos,
}

/// A pair's counts by status; the total is their sum. [`StatusCounts`] keeps the total
/// too: here its 8 bytes hold the pair's name lengths instead, and `PairAcc` stays
/// within its size (`a_pair_with_one_rtt_holds_it_inline`).
#[derive(Default)]
struct PairCounts {
    ok: u64,
    timeout: u64,
    open: u64,
}

impl PairCounts {
    fn add(&mut self, s: TxStatus) {
        match s {
            TxStatus::Ok => self.ok += 1,
            TxStatus::Timeout => self.timeout += 1,
            TxStatus::Open => self.open += 1,
        }
    }

    fn status_counts(&self) -> StatusCounts {
        StatusCounts {
            total: self.ok + self.timeout + self.open,
            ok: self.ok,
            timeout: self.timeout,
            open: self.open,
        }
    }
}

/// A name's CSV field length as kept beside it; one past `u32` (never met: documents
/// are bounded far below) is kept as `u32::MAX` and measured each time.
const LEN_UNKEPT: u32 = u32::MAX;

/// Keeps the latest name seen (the label is the latest name), as the copy `names`
/// holds: a peer polls and is polled under its one name by each of its pairs. The
/// matcher's names are shared already, so the same name is most often the same copy.
/// Returns the length of the transaction's name field in the CSV: `len` keeps the kept
/// name's, measured only when the name changes (a name is the same text from one
/// transaction of a pair to the next; measuring it was ~40 instructions a field).
///
/// The same copy with its length kept, or no name, is settled here, inlined: as one
/// function its call and frame were most of its ~45 instructions, and `#[inline]`
/// alone left both calls in place (stop 30). The rest is [`renew_name`].
#[inline(always)]
fn update_name(
    kept: &mut Option<Arc<str>>,
    len: &mut u32,
    seen: &Option<Arc<str>>,
    names: &mut SharedNames,
) -> usize {
    match (&*kept, seen) {
        (_, None) => 0,
        (Some(k), Some(n)) if Arc::ptr_eq(k, n) && *len != LEN_UNKEPT => *len as usize,
        _ => renew_name(kept, len, seen, names),
    }
}

/// [`update_name`] past its inlined cases: a name equal in text only, a new or
/// changed name, or a length not kept.
#[inline(never)]
fn renew_name(
    kept: &mut Option<Arc<str>>,
    len: &mut u32,
    seen: &Option<Arc<str>>,
    names: &mut SharedNames,
) -> usize {
    let Some(n) = seen else {
        return 0;
    };
    if !kept.as_ref().is_some_and(|k| Arc::ptr_eq(k, n) || k == n) {
        *kept = Some(names.share(n));
        *len = u32::try_from(text_len(n)).unwrap_or(LEN_UNKEPT);
    }
    match *len {
        LEN_UNKEPT => text_len(n),
        l => l as usize,
    }
}

/// The CSV field length of the correlator `seen`. The last one measured is kept with
/// its length: correlators are shared copies (the matcher's `SharedCorrelators`) and a
/// poller's round of PINGs carries one to each receiver, so transactions leaving one
/// after the other mostly carry the same copy (measuring it was a call of ~41
/// instructions a record). The copy is held, so the same pointer is the same text.
#[inline(always)]
fn correlator_len(last: &mut Option<(Arc<str>, usize)>, seen: &Option<Arc<str>>) -> usize {
    match (seen, &*last) {
        (None, _) => 0,
        (Some(c), Some((kept, len))) if Arc::ptr_eq(c, kept) => *len,
        (Some(c), _) => measure_correlator(last, c),
    }
}

/// [`correlator_len`] of a correlator other than the last: measured and kept.
#[inline(never)]
fn measure_correlator(last: &mut Option<(Arc<str>, usize)>, seen: &Arc<str>) -> usize {
    let len = text_len(seen);
    *last = Some((Arc::clone(seen), len));
    len
}

/// Answered transactions whose RTTs a summary keeps for exact percentiles (64 MiB of
/// them at most); beyond, a long run (a live one over weeks) goes on in bounded memory
/// with sketched percentiles. The same for `analyze` and `live`, so that a live run's
/// summary equals the analysis of its saved capture at any length.
pub const EXACT_RTT_LIMIT: usize = 1 << 24;

/// RTTs kept for exact percentiles: 4 bytes each below 4.29 s (nearly all of them),
/// 8 above. Once the builder goes past its limit, `Sketch` takes them all instead.
/// 16 bytes for a pair with up to three RTTs under 4.29 s, held inline: most of a
/// gateway's pairs answer once or twice, and two inline vectors and a one-element
/// allocation were ~90 bytes of each of 150,000 pairs (a box and a vector, ~96 bytes,
/// of each of 100,000 pairs answered three times).
#[derive(Default)]
enum Rtts {
    #[default]
    Empty,
    One(u64),
    /// The first `.0` of `.1`, in arrival order, all under 4.29 s.
    Few(u8, [u32; FEW_RTTS]),
    Exact(Box<Exact>),
    /// Boxed: a sketch is ~150 bytes, and most pairs never have one.
    Sketch(Box<Sketched>),
}

/// RTTs a pair holds inline (see [`Rtts::Few`]).
const FEW_RTTS: usize = 3;
/// Room for RTTs a pair's first exact vector has: the three inline ones copied at
/// exactly their length grew twice by a pair's tenth RTT (a reallocation each, ~600
/// instructions), and a pair past three RTTs is a polling one. 16, not 8: room for 8
/// still grew once at the ninth (~700 instructions, 2,000 of them on jxta-0.1g, whose
/// pairs answer ten times), and the first allocation costs the same at either size
/// (32 bytes more for a pair that stops between its fourth and eighth RTT).
const EXACT_FIRST: usize = 16;

#[derive(Default)]
struct Exact {
    short: Vec<u32>,
    long: Vec<u64>,
}

impl Exact {
    fn push(&mut self, ns: u64) {
        match u32::try_from(ns) {
            Ok(v) => self.short.push(v),
            Err(_) => self.long.push(ns),
        }
    }
}

/// The RTTs and causes of the answered transactions that have a cause, 8 bytes each
/// below 4.29 s as in [`Exact`] (a capture where every connection's first poll is `far`
/// flags a fifth of them: 16-byte pairs were 4 MiB of jxta-4g's summary).
#[derive(Default)]
struct Flagged {
    short: Vec<(u32, Flags)>,
    long: Vec<(u64, Flags)>,
}

impl Flagged {
    fn push(&mut self, ns: u64, flags: Flags) {
        match u32::try_from(ns) {
            Ok(v) => self.short.push((v, flags)),
            Err(_) => self.long.push((ns, flags)),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u64, Flags)> + '_ {
        let short = self.short.iter().map(|&(ns, f)| (u64::from(ns), f));
        short.chain(self.long.iter().copied())
    }
}

/// RTTs in bounded memory: exact moments and extremes (integer sums, so the result
/// does not depend on the order they came in) and a DDSketch for the percentiles.
struct Sketched {
    count: u64,
    sum_ns: u128,
    sum_sq_ns: u128,
    min_ns: u64,
    max_ns: u64,
    sketch: sketches_ddsketch::DDSketch,
}

impl Sketched {
    fn new() -> Self {
        Sketched {
            count: 0,
            sum_ns: 0,
            sum_sq_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            sketch: sketch::rtt_sketch(),
        }
    }

    fn push(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.sum_sq_ns += u128::from(ns) * u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.sketch.add(ns as f64 / 1e6);
    }

    fn absorb(&mut self, o: &Sketched) {
        self.count += o.count;
        self.sum_ns += o.sum_ns;
        self.sum_sq_ns += o.sum_sq_ns;
        self.min_ns = self.min_ns.min(o.min_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        // Same configuration everywhere, so merging cannot fail.
        let _ = self.sketch.merge(&o.sketch);
    }

    fn stats(&self) -> RttStats {
        if self.count == 0 {
            return RttStats::default();
        }
        let n = self.count as f64;
        let mean_ns = self.sum_ns as f64 / n;
        let sd_ns = if self.count < 2 {
            0.0
        } else {
            // Σx² − (Σx)²/n, exact in integers before the division.
            let centred = self.sum_sq_ns - self.sum_ns * self.sum_ns / u128::from(self.count);
            (centred as f64 / (n - 1.0)).sqrt()
        };
        let q = |q: f64| self.sketch.quantile(q).ok().flatten().unwrap_or(0.0);
        RttStats {
            count: self.count,
            mean: mean_ns / 1e6,
            sd: sd_ns / 1e6,
            min: self.min_ns as f64 / 1e6,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            max: self.max_ns as f64 / 1e6,
        }
    }
}

impl Rtts {
    fn push(&mut self, ns: u64) {
        match self {
            Rtts::Empty => *self = Rtts::One(ns),
            Rtts::One(first) => match (u32::try_from(*first), u32::try_from(ns)) {
                (Ok(a), Ok(b)) => *self = Rtts::Few(2, [a, b, 0]),
                _ => {
                    let mut exact = Exact::default();
                    exact.push(*first);
                    exact.push(ns);
                    *self = Rtts::Exact(Box::new(exact));
                }
            },
            Rtts::Few(n, few) => {
                let len = usize::from(*n);
                match u32::try_from(ns) {
                    Ok(short) if len < FEW_RTTS => {
                        if let Some(slot) = few.get_mut(len) {
                            *slot = short;
                            *n += 1;
                        }
                    }
                    _ => {
                        // Short ones first in arrival order, as `Exact` keeps them.
                        let mut short = Vec::with_capacity(EXACT_FIRST);
                        short.extend_from_slice(few.get(..len).unwrap_or_default());
                        let mut exact = Exact {
                            short,
                            long: Vec::new(),
                        };
                        exact.push(ns);
                        *self = Rtts::Exact(Box::new(exact));
                    }
                }
            }
            Rtts::Exact(e) => e.push(ns),
            Rtts::Sketch(s) => s.push(ns),
        }
    }

    /// Moves the exact RTTs into a sketch and frees them (in the order `into_ms` gives).
    fn fold_into_sketch(&mut self) {
        let mut s = Sketched::new();
        match std::mem::take(self) {
            Rtts::Empty => {}
            Rtts::One(ns) => s.push(ns),
            Rtts::Few(n, few) => {
                for ns in few.into_iter().take(usize::from(n)) {
                    s.push(u64::from(ns));
                }
            }
            Rtts::Exact(e) => {
                for ns in e.short {
                    s.push(u64::from(ns));
                }
                for ns in e.long {
                    s.push(ns);
                }
            }
            Rtts::Sketch(already) => s = *already,
        }
        *self = Rtts::Sketch(Box::new(s));
    }

    /// Exact RTTs held (none once sketched).
    fn len(&self) -> usize {
        match self {
            Rtts::Empty | Rtts::Sketch(_) => 0,
            Rtts::One(_) => 1,
            Rtts::Few(n, _) => usize::from(*n),
            Rtts::Exact(e) => e.short.len() + e.long.len(),
        }
    }

    /// The exact RTTs: those under 4.29 s first, each part in arrival order.
    #[cfg(test)]
    fn into_ms(self) -> Vec<f64> {
        let mut ms = Vec::with_capacity(self.len());
        self.append_ms(&mut ms);
        ms
    }

    /// The RTTs in milliseconds appended to `ms`, in the order they were added.
    fn append_ms(self, ms: &mut Vec<f64>) {
        match self {
            Rtts::Empty | Rtts::Sketch(_) => {}
            Rtts::One(ns) => ms.push(ns as f64 / 1e6),
            Rtts::Few(n, few) => {
                ms.extend(
                    few.iter()
                        .take(usize::from(n))
                        .map(|&ns| f64::from(ns) / 1e6),
                );
            }
            Rtts::Exact(e) => {
                ms.extend(e.short.into_iter().map(|ns| f64::from(ns) / 1e6));
                ms.extend(e.long.into_iter().map(|ns| ns as f64 / 1e6));
            }
        }
    }
}

/// Builds a [`Summary`] from transactions given one at a time, so that an analysis
/// need not keep them: what it holds is the per-pair counts and the RTTs, which exact
/// percentiles need (4 bytes per answered transaction, see `Rtts`).
pub struct SummaryBuilder {
    counts: StatusCounts,
    /// Each pair's index in `accs`, found by the hash of its key.
    pairs: hashbrown::HashTable<u32>,
    accs: Vec<PairAcc>,
    hasher: foldhash::fast::RandomState,
    /// Bytes the transaction CSV takes for the transactions so far (records only).
    csv_bytes: u64,
    first_ping: Option<u64>,
    /// Exact RTTs held at most (all pairs together).
    exact_limit: usize,
    /// Exact RTTs held now.
    held: usize,
    /// Past the limit: every pair's RTTs are sketched, and these are all of them.
    overall: Option<Sketched>,
    /// RTT and causes of the answered transactions that have a cause, while the RTTs
    /// are exact (they are a part of those, so bounded alike).
    flagged: Flagged,
    /// Exact RTTs of the pairs [`SummaryBuilder::expire_idle`] dropped: the run's
    /// percentiles still cover them (they stay within the exact limit's count).
    expired_rtts: Exact,
    /// Pairs dropped from the per-pair view so far.
    expired: u64,
    /// The pairs' names, one copy each (see [`update_name`]): 100,000 pairs held 200,000
    /// copies of 10,000 peers' names.
    names: SharedNames,
    /// The last correlator measured and its CSV field length (see [`correlator_len`]).
    last_correlator: Option<(Arc<str>, usize)>,
}

impl Default for SummaryBuilder {
    fn default() -> Self {
        SummaryBuilder::with_exact_limit(EXACT_RTT_LIMIT)
    }
}

impl SummaryBuilder {
    /// A builder holding at most `limit` exact RTTs before it sketches them.
    pub fn with_exact_limit(limit: usize) -> Self {
        SummaryBuilder {
            counts: StatusCounts::default(),
            pairs: hashbrown::HashTable::new(),
            accs: Vec::new(),
            hasher: Default::default(),
            csv_bytes: 0,
            first_ping: None,
            exact_limit: limit,
            held: 0,
            overall: None,
            flagged: Flagged::default(),
            expired_rtts: Exact::default(),
            expired: 0,
            names: SharedNames::default(),
            last_correlator: None,
        }
    }

    /// Pairs dropped by [`SummaryBuilder::expire_idle`] so far.
    pub fn pairs_expired(&self) -> u64 {
        self.expired
    }

    /// Per-pair entries held now.
    pub fn pairs_held(&self) -> usize {
        self.accs.len()
    }

    /// Drops the pairs whose latest transaction ended before `before` from the per-pair
    /// view (a live run over weeks meets pairs by the hundred thousand that never come
    /// back); the totals and the run's RTT statistics keep them. A pair seen again later
    /// starts a new entry. Returns how many were dropped.
    pub fn expire_idle(&mut self, before: UnixNanos) -> u64 {
        let held = self.accs.len();
        let pool = &mut self.expired_rtts;
        self.accs.retain_mut(|a| {
            if a.last_ns >= before {
                return true;
            }
            match std::mem::take(&mut a.rtts) {
                Rtts::One(ns) => pool.push(ns),
                Rtts::Few(n, few) => {
                    pool.short
                        .extend_from_slice(few.get(..usize::from(n)).unwrap_or_default());
                }
                Rtts::Exact(e) => {
                    pool.short.extend_from_slice(&e.short);
                    pool.long.extend_from_slice(&e.long);
                }
                // Sketched RTTs are in the overall sketch already.
                Rtts::Empty | Rtts::Sketch(_) => {}
            }
            false
        });
        let dropped = held - self.accs.len();
        if dropped == 0 {
            return 0;
        }
        // Indices moved: the table is rebuilt (once per sweep, not per transaction).
        let Self {
            pairs,
            accs,
            hasher,
            ..
        } = self;
        pairs.clear();
        // Memory goes back after a burst of pairs, not only to the next burst.
        if accs.capacity() > 2 * accs.len() + 1024 {
            accs.shrink_to_fit();
            pairs.shrink_to(0, |_| 0);
        }
        for (i, a) in accs.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            pairs.insert_unique(key_hash(hasher, &a.key), i, |&j| {
                accs.get(j as usize).map_or(0, |a| key_hash(hasher, &a.key))
            });
        }
        self.expired += dropped as u64;
        dropped as u64
    }

    /// Exact RTTs held now (bounded by the limit).
    pub fn exact_rtts_held(&self) -> usize {
        self.held
    }

    /// The counts so far (a live run's status line).
    pub fn counts(&self) -> &StatusCounts {
        &self.counts
    }

    pub fn add(&mut self, t: &Transaction) {
        let sketched = self.overall.is_some();
        self.counts.add(t.status);
        self.first_ping = Some(self.first_ping.map_or(t.start, |f| f.min(t.start)));
        let key = (
            IdentRef::of(&t.poller_name, &t.poller_id),
            IdentRef::of(&t.receiver_name, &t.receiver_id),
        );
        let Self {
            pairs,
            accs,
            hasher,
            ..
        } = self;
        let hash = pair_hash(hasher, key);
        let next = accs.len();
        let found = pairs
            .find(hash, |&i| {
                accs.get(i as usize)
                    .is_some_and(|a| (a.key.0.as_ref(), a.key.1.as_ref()) == key)
            })
            .copied();
        let index = match found {
            Some(i) => i as usize,
            None => {
                let i = u32::try_from(next).unwrap_or(u32::MAX);
                pairs.insert_unique(hash, i, |&j| {
                    accs.get(j as usize).map_or(0, |a| key_hash(hasher, &a.key))
                });
                i as usize
            }
        };
        if index == next {
            self.accs.push(PairAcc {
                key: (key.0.to_owned(), key.1.to_owned()),
                poller_name: None,
                receiver_name: None,
                name_lens: [0; 2],
                counts: PairCounts::default(),
                last_ns: 0,
                rtts: if sketched {
                    Rtts::Sketch(Box::new(Sketched::new()))
                } else {
                    Rtts::Empty
                },
            });
        }
        // Past 4 billion pairs (never held in memory anyway) the last index takes the rest.
        let Some(acc) = self.accs.get_mut(index) else {
            return;
        };
        let [poller_len, receiver_len] = &mut acc.name_lens;
        let poller_len = update_name(
            &mut acc.poller_name,
            poller_len,
            &t.poller_name,
            &mut self.names,
        );
        let receiver_len = update_name(
            &mut acc.receiver_name,
            receiver_len,
            &t.receiver_name,
            &mut self.names,
        );
        acc.counts.add(t.status);
        acc.last_ns = acc.last_ns.max(t.stop.unwrap_or(t.start));
        if let Some(ns) = t.rtt_ns() {
            if self.overall.is_none() && !t.cause.flags.is_empty() {
                self.flagged.push(ns, t.cause.flags);
            }
            acc.rtts.push(ns);
            match &mut self.overall {
                Some(o) => o.push(ns),
                None => {
                    self.held += 1;
                    if self.held > self.exact_limit {
                        self.sketch_all();
                    }
                }
            }
        }
        let correlator_len = correlator_len(&mut self.last_correlator, &t.correlator);
        // What the CSV costs: the record's size as the real writer writes it.
        self.csv_bytes += record_len_named(t, poller_len, receiver_len, correlator_len);
    }

    /// Past the limit: every pair's exact RTTs go into its sketch, and all of them into
    /// the overall one.
    fn sketch_all(&mut self) {
        let mut overall = Sketched::new();
        for ns in std::mem::take(&mut self.expired_rtts.short) {
            overall.push(u64::from(ns));
        }
        for ns in std::mem::take(&mut self.expired_rtts.long) {
            overall.push(ns);
        }
        for acc in &mut self.accs {
            acc.rtts.fold_into_sketch();
            if let Rtts::Sketch(s) = &acc.rtts {
                overall.absorb(s);
            }
        }
        self.overall = Some(overall);
        self.held = 0;
        self.flagged = Flagged::default();
    }

    pub fn finish(self, matcher: &Matcher, capture_duration_ns: u64) -> Summary {
        let SummaryBuilder {
            counts,
            pairs,
            accs,
            csv_bytes,
            first_ping,
            overall,
            flagged,
            expired_rtts,
            ..
        } = self;
        drop(pairs);
        // Exact percentiles need every RTT, once: each pair's are summarised and moved
        // into the overall list, so the peak is one copy of them (8 bytes each).
        let mut all: Vec<f64> = Vec::with_capacity(accs.iter().map(|a| a.rtts.len()).sum());
        // An ID's text as it is, the copy the key (and the matcher) held.
        let id_of = |i: Ident| match i {
            Ident::Id(id) => Some(id.into_text()),
            Ident::Name(_) => None,
        };
        let unknown: Arc<str> = Arc::from("?");
        let mut pairs: Vec<PairSummary> = accs
            .into_iter()
            .map(|a| {
                let (poller, receiver) = a.key;
                let (poller_id, receiver_id) = (id_of(poller), id_of(receiver));
                let rtt_ms = match a.rtts {
                    Rtts::Sketch(s) => s.stats(),
                    // Summarised where they land in the overall list (sorted there): a
                    // list of its own was made and freed for each pair.
                    exact => {
                        let from = all.len();
                        exact.append_ms(&mut all);
                        RttStats::from_ms(all.get_mut(from..).unwrap_or_default())
                    }
                };
                PairSummary {
                    rtt_ms,
                    poller: label_of(a.poller_name, poller_id.as_ref(), &unknown),
                    poller_id,
                    receiver: label_of(a.receiver_name, receiver_id.as_ref(), &unknown),
                    receiver_id,
                    counts: a.counts.status_counts(),
                }
            })
            .collect();
        Rtts::Exact(Box::new(expired_rtts)).append_ms(&mut all);
        let rtt_ms = match &overall {
            Some(o) => o.stats(),
            None => RttStats::from_ms(&mut all),
        };
        let tail = (overall.is_none() && rtt_ms.count > 0).then(|| {
            let from_ms = rtt_ms.p90;
            let mut t = TailCauses {
                from_ms,
                count: all.iter().filter(|&&ms| ms >= from_ms).count() as u64,
                ..TailCauses::default()
            };
            let mut explained = 0;
            for (_, flags) in flagged.iter().filter(|(ns, _)| *ns as f64 / 1e6 >= from_ms) {
                explained += 1;
                for f in flags.iter() {
                    *t.by_cause.entry(f.as_str()).or_default() += 1;
                }
            }
            t.none = t.count.saturating_sub(explained);
            t
        });
        drop(all);
        // People read tables by name; IDs only break ties between namesakes.
        pairs.sort_by(pair_order);

        let matrix = Matrix::from_pairs(&pairs);

        let pres = matcher.presence();
        let changes = changes_out(pres.changes());
        let current = pres
            .current()
            .into_iter()
            .map(|p| CurrentOut {
                peer: label(&p.name, &p.peer_id),
                peer_id: p.peer_id.as_ref().map(|i| i.to_string()),
                status: p.status.as_str(),
                since_unix_ns: p.since,
            })
            .collect();

        let n = counts.total;
        let hours = capture_duration_ns as f64 / 3.6e12;
        let o = matcher.overhead();
        let ping_msg = ratio(o.ping.message_bytes, o.ping.count);
        let pong_msg = ratio(o.pong.message_bytes, o.pong.count);
        let ping_framed = ratio(o.ping.framed_bytes, o.ping.count);
        let pong_framed = ratio(o.pong.framed_bytes, o.pong.count);
        let ping_doc = ratio(o.ping.document_bytes, o.ping.count);
        let pong_doc = ratio(o.pong.document_bytes, o.pong.count);
        let corr_ping = ratio(o.ping.correlator_bytes, o.ping.with_correlator);
        let corr_pong = ratio(o.pong.correlator_bytes, o.pong.with_correlator);
        let overhead = OverheadSummary {
            pings: o.ping.count,
            pongs: o.pong.count,
            pings_with_correlator: o.ping.with_correlator,
            pongs_with_correlator: o.pong.with_correlator,
            correlator_bytes_per_ping_mean: corr_ping,
            correlator_bytes_per_ping_max: o.ping.max_correlator_bytes,
            correlator_bytes_per_pong_mean: corr_pong,
            correlator_bytes_per_pong_max: o.pong.max_correlator_bytes,
            ping_message_bytes_mean: ping_msg,
            ping_framed_bytes_mean: ping_framed,
            pong_message_bytes_mean: pong_msg,
            pong_framed_bytes_mean: pong_framed,
            ping_document_bytes_mean: ping_doc,
            pong_document_bytes_mean: pong_doc,
            correlator_pct_of_ping_document: pct(corr_ping, ping_doc),
            correlator_pct_of_pong_document: pct(corr_pong, pong_doc),
            correlator_pct_of_ping_message: pct(corr_ping, ping_msg),
            correlator_pct_of_ping_framed: pct(corr_ping, ping_framed),
            correlator_pct_of_pong_message: pct(corr_pong, pong_msg),
            correlator_pct_of_pong_framed: pct(corr_pong, pong_framed),
            total_correlator_bytes: o.ping.correlator_bytes + o.pong.correlator_bytes,
            csv_records: n,
            csv_bytes_per_record: ratio(csv_bytes, n),
            csv_bytes_per_hour: (hours > 0.0 && n > 0).then(|| csv_bytes as f64 / hours),
            study: STUDY,
        };
        Summary {
            transactions: counts,
            rtt_ms,
            pairs,
            matrix,
            presence: PresenceSummary {
                changes,
                current,
                dropped: pres.dropped(),
            },
            overhead,
            anomalies: matcher.anomalies().clone(),
            capture_duration_ns,
            rtt_percentiles_relative_error: overall
                .is_some()
                .then_some(sketch::SKETCH_RELATIVE_ERROR),
            tail,
            first_ping_unix_ns: first_ping,
        }
    }
}

impl Summary {
    pub fn build(
        transactions: &[Transaction],
        matcher: &Matcher,
        capture_duration_ns: u64,
    ) -> Summary {
        let mut b = SummaryBuilder::default();
        for t in transactions {
            b.add(t);
        }
        b.finish(matcher, capture_duration_ns)
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serialising plain structs of numbers and strings cannot fail; Null is only a
        // defensive fallback.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Presence changes as the summary reports them (also used for changes rebuilt from a
/// transactions CSV).
pub fn changes_out(changes: &[PresenceChange]) -> Vec<ChangeOut> {
    changes
        .iter()
        .map(|c| ChangeOut {
            time_unix_ns: c.time,
            peer: label(&c.name, &c.peer_id),
            peer_id: c.peer_id.as_ref().map(|i| i.to_string()),
            from: c.from.map(|s| s.as_str()),
            to: c.to.as_str(),
            learned_by: c
                .learned_by
                .iter()
                .map(|l| LearnedOut {
                    poller: label(&l.poller_name, &l.poller_id),
                    time_unix_ns: l.time,
                    delay_ms: l.time.saturating_sub(c.time) as f64 / 1e6,
                })
                .collect(),
        })
        .collect()
}
