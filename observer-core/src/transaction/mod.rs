//! Transactions: one PING and the PONG that answers it, matched from what the wire
//! shows, with timeouts, anomalies, presence states and the correlator overhead.
//!
//! Identity is the end-to-end JXTA peer ID (from `EndpointRouterMsg`), never the TCP
//! connection: behind a rendezvous the same PING crosses two connections, and a
//! capture on the rendezvous sees both legs (see `matcher` for the relay rules).

pub mod cause;
pub mod columns;
pub mod csv;
mod matcher;
mod presence;

use std::sync::Arc;

pub use matcher::{Matcher, MatcherSizes};
pub use presence::{Learned, PeerPresence, Presence, PresenceChange};

use crate::jim::Status;
use crate::jxta::PeerId;
use crate::UnixNanos;

/// How the message carrying the document travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    /// JXTA's HTTP transport (over TCP).
    Http,
}

/// Where and when one JIM PING/PONG was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// First and last byte of the framed message, when first seen on the wire.
    pub start: UnixNanos,
    pub stop: UnixNanos,
    /// End-to-end source and destination (from `EndpointRouterMsg`).
    pub src_peer: Option<PeerId>,
    pub dst_peer: Option<PeerId>,
    /// The two peers of the TCP connection that carried this leg (welcome lines);
    /// `None` when unknown (mid-stream capture, UDP).
    pub hop_src: Option<PeerId>,
    pub hop_dst: Option<PeerId>,
    /// TCP payload bytes of the message package (framing included).
    pub framed_bytes: u64,
    /// `jxmg` message bytes.
    pub message_bytes: u64,
    pub transport: Transport,
    /// What the decoding stages saw of this leg's connection (for [`cause`]).
    pub wire: cause::WireNotes,
}

/// A PING repeating a correlator of its pair within this time of the first PING's
/// start is a second sighting of the same poll (a JXTA-level resend, an unseen relay
/// hop), even if that poll has already been answered; later, once the first
/// transaction has ended, the repeat is a new poll (a restarted peer, a replayed
/// capture). While the first is outstanding a repeat is always a duplicate.
pub const REPEAT_WINDOW_NS: u64 = 1_000_000_000;

/// A pair with nothing outstanding and no message for this long past the timeout is
/// folded away: the matcher forgets it (its route and far-side baseline, and that it
/// was seen), so pairs that never come back cost nothing (weeks at a gateway). Judged
/// from each message's own time, so one thread, shards and live agree. What changes
/// for a pair seen again after that: its causes start from a fresh baseline, and a
/// PONG to it with nothing outstanding is `unsolicited_pong` (not `late_pong` or
/// `pong_without_ping`). JIM polls every 10 s: a minute without one is a peer gone.
pub const IDLE_PAIR_NS: u64 = 60_000_000_000;

/// A PING unanswered this long is a timeout unless told otherwise (`--timeout`; JIM
/// polls every 10 s).
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;
/// Outstanding PINGs kept per pair unless told otherwise (`--max-outstanding`).
pub const DEFAULT_MAX_OUTSTANDING_PER_PAIR: usize = 1024;

/// Matcher limits. Every per-peer structure is capped so that a hostile or simply
/// huge capture costs bounded memory; what a cap drops is counted in `Anomalies`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatcherConfig {
    /// A PING unanswered this long is a timeout (JIM polls every 10 s).
    pub timeout_ns: u64,
    /// Outstanding PINGs kept per (poller, receiver) pair; the oldest is evicted.
    pub max_outstanding_per_pair: usize,
    /// (poller, receiver) pairs tracked; the least recently active pair is evicted.
    pub max_pairs: usize,
    /// Finished correlators remembered to tell duplicate and late PONGs from unknown ones.
    pub remember_finished: usize,
    /// A finished correlator is forgotten once its PING's deadline is this far behind
    /// the traffic (`None`: kept until `remember_finished` newer ones push it out, as
    /// `analyze` does). `live` gives the timeout: a copy of a PONG, or a PONG late by
    /// up to twice the timeout, is still told from an unknown one, and a gateway's
    /// table holds the last seconds' correlators, not the cap's 65,536.
    pub forget_finished_after_ns: Option<u64>,
    /// Presence forgets the peers not heard from for this long, and the changes older
    /// than it (`None`: kept for the run, as `analyze` does; `live`: `--pair-horizon`).
    pub presence_horizon_ns: Option<u64>,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        MatcherConfig {
            timeout_ns: DEFAULT_TIMEOUT_NS,
            max_outstanding_per_pair: DEFAULT_MAX_OUTSTANDING_PER_PAIR,
            // 10,000 peers with 10 buddies each are 100,000 pairs; a pair costs
            // about 200 bytes plus `cause::History` (24, and a 64-byte ring from its
            // fourth far-side time), so the cap bounds a flood of invented IDs to ~75 MB.
            max_pairs: 262_144,
            remember_finished: 65_536,
            forget_finished_after_ns: None,
            presence_horizon_ns: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    Ok,
    Timeout,
    Open,
}

impl TxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Ok => "ok",
            TxStatus::Timeout => "timeout",
            TxStatus::Open => "open",
        }
    }

    pub fn parse(s: &str) -> Option<TxStatus> {
        match s {
            "ok" => Some(TxStatus::Ok),
            "timeout" => Some(TxStatus::Timeout),
            "open" => Some(TxStatus::Open),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMethod {
    Correlator,
    Order,
}

impl MatchMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMethod::Correlator => "correlator",
            MatchMethod::Order => "order",
        }
    }

    pub fn parse(s: &str) -> Option<MatchMethod> {
        match s {
            "correlator" => Some(MatchMethod::Correlator),
            "order" => Some(MatchMethod::Order),
            _ => None,
        }
    }
}

/// One PING and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    /// First byte of the PING's first sighting (its originating leg).
    pub start: UnixNanos,
    /// Last byte of the PONG as delivered to the poller; `start + timeout` for a
    /// timeout; `None` while open.
    pub stop: Option<UnixNanos>,
    /// Shared copies (see [`SharedNames`]): a name repeats in every transaction of its
    /// peer, and a copy of each was freed one by one after the sink.
    pub poller_name: Option<Arc<str>>,
    pub poller_id: Option<PeerId>,
    pub receiver_name: Option<Arc<str>>,
    pub receiver_id: Option<PeerId>,
    pub receiver_status: Option<Status>,
    pub status: TxStatus,
    /// Shared as the names are (the matcher's `SharedCorrelators`): pollers reuse a
    /// correlator poll after poll, and a copy was made for every PING and freed after
    /// the sink.
    pub correlator: Option<Arc<str>>,
    pub match_method: Option<MatchMethod>,
    /// Bytes of the PING and PONG on the wire: the framed message (package headers and
    /// `jxmg` body; the datagram payload over UDP), as the TCP payload carries it.
    pub ping_bytes: u64,
    pub pong_bytes: Option<u64>,
    /// The PING's correlator element bytes plus the PONG's.
    pub correlator_overhead_bytes: u64,
    /// What the wire shows happened to it (answered transactions; default otherwise).
    pub cause: cause::Cause,
}

impl Transaction {
    /// The order reports list transactions in: by start, then poller, receiver and
    /// correlator (the ordered release, the synthetic truths and their tests sort by it).
    pub fn report_order(&self, other: &Self) -> std::cmp::Ordering {
        (
            self.start,
            &self.poller_id,
            &self.receiver_id,
            &self.correlator,
        )
            .cmp(&(
                other.start,
                &other.poller_id,
                &other.receiver_id,
                &other.correlator,
            ))
    }

    /// Response time, for answered transactions only.
    pub fn rtt_ns(&self) -> Option<u64> {
        match (self.status, self.stop) {
            (TxStatus::Ok, Some(stop)) => Some(stop.saturating_sub(self.start)),
            _ => None,
        }
    }
}

use crate::counters::{
    by,
    families::{ANOMALIES, STATE_EXPIRED},
};

crate::counters! {
    /// State the matcher let go: nothing seen is lost, so not anomalies; `live` exports
    /// them, `analyze` does not print them (its output is what it was before them).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Expiry {
        /// Pairs freed after folding (see [`IDLE_PAIR_NS`]).
        pairs_freed: "idle pairs freed", metric: by(&STATE_EXPIRED, "pair"), anomaly: false, merge: Sum;
        /// Finished correlators forgotten past their horizon
        /// ([`MatcherConfig::forget_finished_after_ns`]).
        correlators_expired: "finished correlators expired", metric: by(&STATE_EXPIRED, "correlator"), anomaly: false, merge: Sum;
        /// Finished correlators pushed out by the `remember_finished` cap.
        correlators_evicted: "finished correlators evicted", metric: by(&STATE_EXPIRED, "correlator_cap"), anomaly: false, merge: Sum;
        /// Presence peers not heard from within [`MatcherConfig::presence_horizon_ns`].
        presence_peers: "presence peers expired", metric: by(&STATE_EXPIRED, "presence_peer"), anomaly: false, merge: Sum;
        /// Presence changes older than it.
        presence_changes: "presence changes expired", metric: by(&STATE_EXPIRED, "presence_change"), anomaly: false, merge: Sum;
    }
}

crate::counters! {
    /// Everything the matcher saw that is not a transaction, counted. Declared in the
    /// order the report's table lists them.
    #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
    pub struct Anomalies {
        /// Documents that looked like JIM but were not well formed (counted by the caller
        /// through `Matcher::count_malformed`).
        malformed_documents: "malformed documents", metric: by(&ANOMALIES, "malformed_document"), anomaly: true, merge: Sum;
        /// A PONG whose correlator was already answered.
        duplicate_pong: "duplicate PONG", metric: by(&ANOMALIES, "duplicate_pong"), anomaly: true, merge: Sum;
        /// A PONG whose correlator matches no PING of its pair.
        unknown_correlator: "unknown correlator", metric: by(&ANOMALIES, "unknown_correlator"), anomaly: true, merge: Sum;
        /// A PONG from a peer the poller never pinged.
        unsolicited_pong: "unsolicited PONG", metric: by(&ANOMALIES, "unsolicited_pong"), anomaly: true, merge: Sum;
        /// A PONG without correlator when its pair has no PING outstanding.
        pong_without_ping: "PONG without PING", metric: by(&ANOMALIES, "pong_without_ping"), anomaly: true, merge: Sum;
        /// A PONG answering a PING that had already timed out.
        late_pong: "late PONG", metric: by(&ANOMALIES, "late_pong"), anomaly: true, merge: Sum;
        /// A PONG whose status is not one of the four states.
        unknown_status: "unknown status", metric: None, anomaly: true, merge: Sum;
        /// A PING whose correlator is already outstanding or recently finished for its pair.
        duplicate_ping_correlator: "duplicate PING correlator", metric: None, anomaly: true, merge: Sum;
        /// A PONG stamped before the PING it answers (the capture clock stepped back): the
        /// PING counts as answered but is no transaction, so no RTT of 0 enters the
        /// statistics.
        clock_steps: "clock steps (PONG before its PING)", metric: by(&ANOMALIES, "clock_step"), anomaly: true, merge: Sum;
        /// Outstanding PINGs dropped by the per-pair cap or with an evicted pair.
        evicted_outstanding: "evicted outstanding PINGs", metric: by(&ANOMALIES, "evicted_outstanding"), anomaly: true, merge: Sum;
        evicted_pairs: "evicted pairs", metric: None, anomaly: true, merge: Sum;
        /// PING/PONG with neither a peer ID nor a name for one of the two ends.
        unidentified: "unidentified peers", metric: None, anomaly: true, merge: Sum;
        /// Second (relay) sightings of a PING or PONG already seen on another leg: normal
        /// traffic.
        relayed_sightings: "relayed sightings", metric: None, anomaly: false, merge: Sum;
        /// MESSAGE documents (instant messages; not part of a transaction).
        messages: "MESSAGE documents", metric: None, anomaly: false, merge: Sum;
    }
}

/// Totals for one message kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindTally {
    pub count: u64,
    pub with_correlator: u64,
    pub correlator_bytes: u64,
    pub max_correlator_bytes: u64,
    pub framed_bytes: u64,
    pub message_bytes: u64,
    /// Bytes of the JIM documents themselves.
    pub document_bytes: u64,
}

impl KindTally {
    fn add(&mut self, correlator_bytes: u32, document_bytes: u32, s: &Sighting) {
        self.count += 1;
        self.document_bytes += u64::from(document_bytes);
        if correlator_bytes > 0 {
            self.with_correlator += 1;
            self.correlator_bytes += u64::from(correlator_bytes);
            self.max_correlator_bytes = self.max_correlator_bytes.max(u64::from(correlator_bytes));
        }
        self.framed_bytes += s.framed_bytes;
        self.message_bytes += s.message_bytes;
    }
}

/// Correlator overhead as measured: every distinct PING and PONG message (a relay's
/// second sighting of the same message is not counted twice).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OverheadTally {
    pub ping: KindTally,
    pub pong: KindTally,
}

/// How a peer is identified: its end-to-end peer ID, else the name it gave
/// (`Other(Some)`), else not at all (`Other(None)`: all unidentified peers then share
/// one key, which is counted). Two variants, not three: the peer ID's pointer gives
/// the enum one spare value, enough for one other variant, so the key is 24 bytes and
/// not 32 (16 in each of the matcher's pairs, 1.6 MB at 100,000 pairs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerKey {
    Id(PeerId),
    Other(Option<Arc<str>>),
}

/// Each variant hashes as what it holds, without the variant's number first: an ID is
/// its one precomputed `u64`. The derived hash wrote the number as well, a second
/// write for every key, and every document hashes a pair of them (equal keys still
/// hash alike: only keys of two variants may collide, at the cost of a probe).
impl std::hash::Hash for PeerKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            PeerKey::Id(id) => id.hash(state),
            PeerKey::Other(name) => name.hash(state),
        }
    }
}

impl PeerKey {
    pub const UNKNOWN: PeerKey = PeerKey::Other(None);

    pub fn new(id: Option<&PeerId>, name: Option<&str>) -> PeerKey {
        match (id, name) {
            (Some(id), _) => PeerKey::Id(id.clone()),
            (None, Some(n)) => PeerKey::Other(Some(Arc::from(n))),
            (None, None) => PeerKey::UNKNOWN,
        }
    }

    /// [`Self::new`] with a shared name, kept as it is (not copied).
    pub(crate) fn named(id: Option<&PeerId>, name: Option<&Arc<str>>) -> PeerKey {
        PeerKey::named_owned(id.cloned(), name)
    }

    /// [`Self::named`] of an ID handed over: moved into the key, not cloned.
    pub(crate) fn named_owned(id: Option<PeerId>, name: Option<&Arc<str>>) -> PeerKey {
        match id {
            Some(id) => PeerKey::Id(id),
            None => PeerKey::Other(name.cloned()),
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, PeerKey::Other(None))
    }

    /// `self == other`, answered inline when both hold the same copy (the interned IDs
    /// and names nearly always do), else by the full compare out of line. The matcher's
    /// pair look-up compares two keys a document: kept small, hashbrown's probe closure
    /// is inlined and the probe keeps its group in registers across the compare.
    #[inline(always)]
    pub(crate) fn same(&self, other: &PeerKey) -> bool {
        let same_copy = match (self, other) {
            (PeerKey::Id(a), PeerKey::Id(b)) => a.same_copy(b),
            (PeerKey::Other(Some(a)), PeerKey::Other(Some(b))) => Arc::ptr_eq(a, b),
            (PeerKey::Other(None), PeerKey::Other(None)) => true,
            _ => false,
        };
        same_copy || self.equal_copies(other)
    }

    #[cold]
    #[inline(never)]
    fn equal_copies(&self, other: &PeerKey) -> bool {
        self == other
    }
}

/// IDs first, then names, then the unknown peer (the order of the three variants this
/// was), so that ties broken by key (the matcher's evictions) fall as before.
impl Ord for PeerKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(k: &PeerKey) -> u8 {
            match k {
                PeerKey::Id(_) => 0,
                PeerKey::Other(Some(_)) => 1,
                PeerKey::Other(None) => 2,
            }
        }
        match (self, other) {
            (PeerKey::Id(a), PeerKey::Id(b)) => a.cmp(b),
            (PeerKey::Other(Some(a)), PeerKey::Other(Some(b))) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for PeerKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What an ID writes as its hash: its one precomputed `u64` (seeded, made when it was
/// parsed). Other writes are folded in, so a change there would cost spread, not
/// correctness: equal IDs still write alike.
#[derive(Default)]
struct Written(u64);

impl std::hash::Hasher for Written {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(32) ^ n;
    }
}

/// Names a table of shared names holds at most; past it the table starts again (what
/// others hold stays valid, only sharing is lost), so invented names cost bounded memory.
pub(crate) const SHARED_NAMES: usize = 16_384;

/// One copy of each peer name, handed out by reference count: the matcher's
/// transactions and peers, the summary's pairs.
#[derive(Debug, Default)]
pub(crate) struct SharedNames {
    held: crate::FastMap<Arc<str>, ()>,
    /// The copy last handed out of a name of 8 to 16 bytes (what peers are called), in
    /// the slot its first and last eight bytes pick (see [`name_words`]): found there by
    /// two compares of eight bytes, where the table hashed the name, probed and compared
    /// its bytes (~105 instructions a document, LTO off). Every copy here is `held`'s
    /// (both are emptied together), so a name gets the same copy either way. Made at the
    /// first such name.
    recent: Box<[Option<Arc<str>>]>,
}

/// Slots of [`SharedNames::recent`] (64 kB): a capture's pollers and their buddies,
/// thousands of names, fit with few collisions.
const RECENT_NAMES: usize = 4096;

/// A name's first and last eight bytes, when it has 8 to 16: two such names of one
/// length are equal exactly when these are (the two words cover every byte).
fn name_words(name: &str) -> Option<(u64, u64)> {
    let b = name.as_bytes();
    let first = b.first_chunk::<8>()?;
    let last = b.last_chunk::<8>()?;
    (b.len() <= 16).then(|| (u64::from_le_bytes(*first), u64::from_le_bytes(*last)))
}

/// The recent slot of a name of `len` bytes and `words` (its [`name_words`]).
fn name_slot((first, last): (u64, u64), len: usize) -> usize {
    let mixed = (first ^ last.rotate_left(29) ^ len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 52) as usize % RECENT_NAMES
}

impl SharedNames {
    /// The shared copy of `name`, made when new.
    pub(crate) fn get(&mut self, name: &str) -> Arc<str> {
        let Some(words) = name_words(name) else {
            return self.get_held(name);
        };
        let slot = name_slot(words, name.len());
        if let Some(r) = self.recent.get(slot).and_then(Option::as_ref) {
            if r.len() == name.len() && name_words(r) == Some(words) {
                return Arc::clone(r);
            }
        }
        let shared = self.get_held(name);
        if self.recent.is_empty() {
            self.recent = vec![None; RECENT_NAMES].into_boxed_slice();
        }
        if let Some(r) = self.recent.get_mut(slot) {
            *r = Some(Arc::clone(&shared));
        }
        shared
    }

    /// [`Self::get`] through the table alone.
    fn get_held(&mut self, name: &str) -> Arc<str> {
        match self.held.get_key_value(name) {
            Some((held, ())) => Arc::clone(held),
            None => self.keep(Arc::from(name)),
        }
    }

    /// The shared copy of `name`'s text: `name` itself when new. Through the table
    /// alone: the summary's calls through the recent slots as well saved little on
    /// peers1k-0.1g and lost on jxta-0.1g (docs/performance.md, stop 36).
    pub(crate) fn share(&mut self, name: &Arc<str>) -> Arc<str> {
        match self.held.get_key_value(&**name) {
            Some((held, ())) => Arc::clone(held),
            None => self.keep(Arc::clone(name)),
        }
    }

    fn keep(&mut self, name: Arc<str>) -> Arc<str> {
        if self.held.len() >= SHARED_NAMES {
            self.held.clear();
            self.recent.iter_mut().for_each(|r| *r = None);
        }
        self.held.insert(Arc::clone(&name), ());
        name
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}

/// An ID's own hash, as its `Hash` writes it.
pub(crate) fn id_hash(id: &PeerId) -> u64 {
    use std::hash::Hash as _;
    let mut h = Written::default();
    id.hash(&mut h);
    h.0
}

/// The hash of a (poller, receiver) pair from its two ends' own hashes, folded by one
/// multiply, not written through a hasher again (two writes and a finish were ~100
/// instructions a pair, LTO off); the rotation keeps (a, b) from (b, a). Used by the
/// matcher's tables and the summary's.
pub(crate) fn mix_pair(a: u64, b: u64) -> u64 {
    let full = u128::from(a.rotate_left(23) ^ b) * u128::from(0x9E37_79B9_7F4A_7C15u64);
    (full as u64) ^ ((full >> 64) as u64)
}

#[cfg(test)]
mod tests;
