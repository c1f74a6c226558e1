//! PING/PONG matching.
//!
//! A PONG is matched by correlator when it carries one (key: pair + correlator),
//! otherwise to the oldest unanswered PING of its (poller, receiver) pair.
//!
//! A PONG that names no poller (sent by UDP multicast: only its sender is in the
//! message, in `EndpointHeaderSrcPeer`) is matched by correlator alone, to the
//! outstanding PING with that correlator whose receiver is the PONG's sender or was
//! not named (a multicast PING).
//!
//! Relayed traffic: a capture on a rendezvous sees every message twice, once per leg,
//! with the same end-to-end IDs. A PING sighting whose hop source is known and is not
//! the poller is the relay leg of a PING already seen (when one is outstanding); a PONG
//! sighting whose hop destination is known and is not the poller is in transit: it is
//! matched and its stop kept as a candidate, and the transaction finishes when the
//! delivery leg is seen (or, failing that, at its deadline or the end of input, with
//! the candidate stop).
//!
//! Over 600 lines: one state machine (PINGs, PONG candidates, deadlines).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use super::cause::{self, History, Leg};
use super::{
    id_hash, mix_pair, Anomalies, Expiry, MatchMethod, MatcherConfig, OverheadTally, PeerKey,
    Presence, SharedNames, Sighting, Transaction, Transport, TxStatus, IDLE_PAIR_NS,
    REPEAT_WINDOW_NS,
};
use crate::jim::{Document, Kind, Status};
use crate::jxta::PeerId;
use crate::UnixNanos;

type PairKey = (PeerKey, PeerKey);

/// `a == b` by [`PeerKey::same`], the pair tables' compare.
#[inline(always)]
fn same_pair(a: &PairKey, b: &PairKey) -> bool {
    a.0.same(&b.0) && a.1.same(&b.1)
}

/// A PONG matched on a transit leg, waiting for its delivery leg.
#[derive(Clone, Debug)]
struct Candidate {
    stop: UnixNanos,
    receiver_name: Option<Arc<str>>,
    receiver_id: Option<PeerId>,
    receiver_status: Option<Status>,
    pong_bytes: u64,
    pong_correlator_bytes: u64,
    method: MatchMethod,
    /// The PONG's legs seen so far (its first, on the receiver's side).
    legs: Vec<Leg>,
}

/// Legs of one PING or PONG remembered: a relay's capture sees two; more would be
/// repeats, which add nothing to the explanation.
const MAX_LEGS: usize = 4;

/// A leg with the matcher's copies of its hop IDs: the pair's route history outlives
/// the connection that parsed them (150,000 one-poll pairs kept 300,000 ~48-byte copies).
/// `ends`: the document's end IDs, interned already (see [`intern_hop`]).
fn leg_of(peers: &mut Peers, seen: &mut Seen<'_>, ends: [Option<&PeerId>; 2]) -> Leg {
    let mut leg = Leg::default();
    write_leg(&mut leg, peers, seen, ends);
    leg
}

/// A PING's or PONG's first leg, in `legs` (a buffer from [`Matcher::legs_buffer`]):
/// a spared buffer's old leg is written over where it is. A leg (208 bytes) built
/// and pushed was a `memcpy` call, ~35 instructions a document; LLVM would not
/// build it in the buffer (docs/performance.md, stops 34 and 35).
fn first_leg(
    legs: &mut Vec<Leg>,
    peers: &mut Peers,
    seen: &mut Seen<'_>,
    ends: [Option<&PeerId>; 2],
) {
    legs.truncate(1);
    match legs.first_mut() {
        Some(old) => write_leg(old, peers, seen, ends),
        None => legs.push(leg_of(peers, seen, ends)),
    }
}

/// `seen`'s leg written over `leg`: every field, the wire notes swapped or copied in
/// (see [`Seen::wire_into`]).
fn write_leg(leg: &mut Leg, peers: &mut Peers, seen: &mut Seen<'_>, ends: [Option<&PeerId>; 2]) {
    // Every field named: one added to `Leg` and not written here would carry an
    // earlier leg's value into this one.
    let Leg {
        start,
        stop,
        hop_src,
        hop_dst,
        wire,
    } = leg;
    let s = seen.sighting();
    (*start, *stop) = (s.start, s.stop);
    *hop_src = intern_hop(peers, s.hop_src.as_ref(), ends);
    *hop_dst = intern_hop(peers, s.hop_dst.as_ref(), ends);
    seen.wire_into(wire);
}

/// The matcher's copy of a hop ID. On a direct connection the hop is an end peer of the
/// document, whose copy is at hand: comparing with it (hashes first, then the text) is
/// cheaper than a table look-up (~75 instructions against ~100, LTO off), and most legs
/// have two hops to intern.
fn intern_hop(
    peers: &mut Peers,
    hop: Option<&PeerId>,
    ends: [Option<&PeerId>; 2],
) -> Option<PeerId> {
    let hop = hop?;
    let (kept, _) = peers.through_recent(hop, |peers| {
        match ends.into_iter().flatten().find(|end| *end == hop) {
            Some(end) => (end.clone(), UNPLACED),
            None => peers.intern_new(hop),
        }
    });
    Some(kept)
}

/// A document's sending peer: the message's source peer, else the ID the document
/// gives (parsed into `parsed`, which holds it for the reference), else the hop's.
fn end_id<'a>(
    src: Option<&'a PeerId>,
    doc: &Document,
    parsed: &'a mut Option<PeerId>,
    hop: Option<&'a PeerId>,
) -> Option<&'a PeerId> {
    if src.is_some() {
        return src;
    }
    *parsed = doc.peer_id.as_deref().and_then(PeerId::parse);
    parsed.as_ref().or(hop)
}

/// The document and sighting being matched. Owned (a pipeline's own, dropped after),
/// what the matcher keeps of them (the wire notes) is moved out at its last use;
/// borrowed (documents a queue hands over), copied. A PING's correlator is shared
/// (see [`SharedCorrelators`]), and the document keeps its string to be refilled.
enum Seen<'a> {
    Borrowed(&'a Document, &'a Sighting),
    Owned(&'a mut Document, &'a mut Sighting),
}

impl Seen<'_> {
    fn document(&self) -> &Document {
        match self {
            Seen::Borrowed(d, _) => d,
            Seen::Owned(d, _) => d,
        }
    }

    fn sighting(&self) -> &Sighting {
        match self {
            Seen::Borrowed(_, s) => s,
            Seen::Owned(_, s) => s,
        }
    }

    /// The sighting's wire notes written over `to`; read no more after. Owned, they
    /// are swapped: the sighting keeps `to`'s old notes (a spared leg's, their cells
    /// let go, see [`Matcher::spare_legs`]), lists and all, for the next document's
    /// to be written over.
    fn wire_into(&mut self, to: &mut cause::WireNotes) {
        match self {
            Seen::Borrowed(_, s) => to.clone_from(&s.wire),
            Seen::Owned(_, s) => std::mem::swap(to, &mut s.wire),
        }
    }
}

/// One copy of each peer ID for every table (pair keys, pending PINGs, route histories,
/// presence, the transactions and the summary built from them), with the name the
/// peer last gave: an ID is ~100 bytes and each message parses its own. One table for
/// both: two were 24 + 48 bytes in each of their buckets, this is 32 and the name's 16
/// in `known`. Bounded (`cap`): past it IDs are kept as they came and names are not
/// learnt.
#[derive(Debug, Default)]
struct Peers {
    /// Each interned ID's place in `known`.
    ids: crate::FastMap<PeerId, u32>,
    /// The name each interned peer last gave, by its place: every document renames its
    /// peer, and its ID's recent slot holds the place, so the rename needs no look-up
    /// in `ids` (its probe and an 80-byte compare of the document's copy with the
    /// table's, ~90 instructions a document, LTO off).
    known: Vec<Option<Arc<str>>>,
    /// The documents' names, one copy each, for the peers and the transactions.
    names: SharedNames,
    named: usize,
    cap: usize,
    /// IDs interned lately as they came, each with the matcher's copy, in the slot its
    /// hash picks ([`RECENT_IDS`] of them, made at the first use). A flow direction's
    /// end peers and a connection's hops come in the same `Arc` message after message:
    /// `PeerId`'s equality sees the pointer before the text, so they are found here
    /// without the table's probe and an 80-byte compare (~80 instructions an ID, LTO
    /// off). The copy is the table's, or the ID itself past the cap: what a look-up in
    /// the table gives, as the table never drops an ID while this is kept.
    recent: Box<[Option<RecentId>]>,
}

/// Slots of [`Peers::recent`]: 18 KB, and at most 768 IDs kept alive by it.
const RECENT_IDS: usize = 256;

/// A [`Peers::recent`] slot: the last two copies an ID came in, and the matcher's copy.
/// Two, because with `--threads` each shard makes its own copy of a peer's ID and
/// their documents alternate: with one, the other shard's copy was compared in full
/// (80 bytes) every time (~2.8 M instructions more on the matcher's thread than one
/// thread spends, jxta-0.1g, docs/performance.md stop 31).
/// `at`: the ID's place in [`Peers::known`], or [`UNPLACED`].
#[derive(Clone, Debug)]
struct RecentId {
    seen: [PeerId; 2],
    kept: PeerId,
    at: u32,
}

/// The place of an ID not in the table (past the cap), or not known where it was kept
/// (a hop given the document's end copy): a rename looks it up.
const UNPLACED: u32 = u32::MAX;

/// A known peer's name becomes `name`; `named` counts the peers with one. A peer that
/// names its buddies in turn (JXSE's PING names the buddy) changes name at every
/// message: the shared copy is taken, nothing is copied.
fn rename(known: &mut Option<Arc<str>>, name: &Arc<str>, named: &mut usize) {
    if known.as_ref().is_some_and(|k| Arc::ptr_eq(k, name)) {
        return;
    }
    *named += usize::from(known.is_none());
    *known = Some(Arc::clone(name));
}

impl Peers {
    /// The matcher's copy of `id`. By reference: the sighting's own copy, cloned to be
    /// handed over and dropped after, cost two reference counts an ID (~20 instructions,
    /// LTO off), for the copy kept is the table's.
    fn intern(&mut self, id: Option<&PeerId>) -> Option<PeerId> {
        let id = id?;
        Some(self.through_recent(id, |peers| peers.intern_new(id)).0)
    }

    /// The copy of `id` kept in its recent slot and its place, or else `copy`'s, kept
    /// there.
    fn through_recent(
        &mut self,
        id: &PeerId,
        copy: impl FnOnce(&mut Self) -> (PeerId, u32),
    ) -> (PeerId, u32) {
        let slot = self.recent_slot(id);
        if let Some(kept) = self.recently(slot, id) {
            return kept;
        }
        let (kept, at) = copy(self);
        self.keep_recent(slot, id, &kept, at);
        (kept, at)
    }

    /// The table's copy of `id` and its place, added when new and there is room.
    fn intern_new(&mut self, id: &PeerId) -> (PeerId, u32) {
        if let Some((known, &at)) = self.ids.get_key_value(id) {
            return (known.clone(), at);
        }
        // `cap` is at most twice `max_pairs`, itself clamped to `u32::MAX`: a place
        // that does not fit is left unplaced, and the ID out of the table.
        match u32::try_from(self.known.len()) {
            Ok(at) if self.ids.len() < self.cap && at != UNPLACED => {
                self.ids.insert(id.clone(), at);
                self.known.push(None);
                (id.clone(), at)
            }
            _ => (id.clone(), UNPLACED),
        }
    }

    fn recent_slot(&self, id: &PeerId) -> usize {
        id_hash(id) as usize % RECENT_IDS
    }

    /// The copy kept in `slot` if it is `id`'s. An equal ID in a third copy takes the
    /// place of the copy held longest.
    #[inline(always)]
    fn recently(&mut self, slot: usize, id: &PeerId) -> Option<(PeerId, u32)> {
        let r = self.recent.get_mut(slot)?.as_mut()?;
        if r.seen[0].same_copy(id) || r.seen[1].same_copy(id) {
            return Some((r.kept.clone(), r.at));
        }
        if r.seen[0] != *id {
            return None;
        }
        r.seen[1] = std::mem::replace(&mut r.seen[0], id.clone());
        Some((r.kept.clone(), r.at))
    }

    fn keep_recent(&mut self, slot: usize, id: &PeerId, kept: &PeerId, at: u32) {
        if self.recent.is_empty() {
            self.recent = vec![None; RECENT_IDS].into_boxed_slice();
        }
        if let Some(r) = self.recent.get_mut(slot) {
            *r = Some(RecentId {
                seen: [id.clone(), id.clone()],
                kept: kept.clone(),
                at,
            });
        }
    }

    /// [`Self::intern`], and `name` learnt as the peer's, at the place its recent slot
    /// holds: one look-up in the table at most (a look-up for each was ~100
    /// instructions a document more, and the table's ~90 more than the slot).
    fn intern_named(&mut self, id: Option<&PeerId>, name: Option<&Arc<str>>) -> Option<PeerId> {
        let Some(name) = name else {
            return self.intern(id);
        };
        let id = id?;
        let slot = self.recent_slot(id);
        let (kept, at) = match self.recently(slot, id) {
            Some((kept, UNPLACED)) => {
                let at = self.ids.get(&kept).copied().unwrap_or(UNPLACED);
                if let Some(r) = self.recent.get_mut(slot).and_then(Option::as_mut) {
                    r.at = at;
                }
                (kept, at)
            }
            Some(found) => found,
            None => {
                let (kept, at) = self.intern_new(id);
                self.keep_recent(slot, id, &kept, at);
                (kept, at)
            }
        };
        if let Some(known) = self.known.get_mut(at as usize) {
            rename(known, name, &mut self.named);
        }
        Some(kept)
    }

    fn name(&self, id: &PeerId) -> Option<&Arc<str>> {
        let &at = self.ids.get(id)?;
        self.known.get(at as usize)?.as_ref()
    }

    /// The shared copy of a document's name.
    fn share_name(&mut self, name: Option<&str>) -> Option<Arc<str>> {
        Some(self.names.get(name?))
    }
}

/// A PING waiting for its PONG. At most 128 bytes, which LLVM copies inline: it is
/// moved into its pair's queue and out of it, and at 240 bytes each move was a `memcpy`
/// call. So its poller's and receiver's IDs are not kept here but read from the pair's
/// key, which holds the same (`PeerKey::Id` of each ID, `Other` without one), and a
/// transit candidate, on relayed captures alone, is boxed.
#[derive(Clone, Debug)]
struct Pending {
    seq: u64,
    start: UnixNanos,
    correlator: Option<Arc<str>>,
    poller_name: Option<Arc<str>>,
    ping_bytes: u64,
    ping_correlator_bytes: u64,
    relay_seen: bool,
    /// [`Remembered::hash`] of the pair and correlator, taken when the PING looked for
    /// its correlator among the finished: the same entry is remembered when the PING
    /// finishes, hashed then no more (~120 instructions a transaction). 0 without a
    /// correlator (nothing is remembered then).
    finished_hash: u32,
    /// No finished entry had its pair and correlator when it came: none can appear
    /// before it finishes (a second PING with both is a duplicate while it is
    /// outstanding), so its own is added without a look for one (~50 instructions).
    fresh: bool,
    candidate: Option<Box<Candidate>>,
    /// The PING's legs seen so far (its first, on the poller's side).
    legs: Vec<Leg>,
}

// See [`Pending`]: a field more would bring the `memcpy` calls back.
const _: () = assert!(std::mem::size_of::<Pending>() <= 128);

/// What a finished PING with a correlator leaves in [`Remembered`], taken before its
/// record takes the strings.
struct Finishing {
    correlator: Correlator,
    start: UnixNanos,
    hash: u32,
    fresh: bool,
}

impl Pending {
    fn finishing(&self) -> Option<Finishing> {
        Some(Finishing {
            correlator: Correlator::new(self.correlator.as_deref()?),
            start: self.start,
            hash: self.finished_hash,
            fresh: self.fresh,
        })
    }
}

/// What the matcher keeps per (poller, receiver) pair. A pair with nothing outstanding
/// holds no buffer (see [`settle`]): a gateway sees hundreds of thousands of pairs, most
/// of them idle at any time, and a `VecDeque` keeps the four-`Pending` (~900 bytes)
/// buffer of its first PING after the last one left.
#[derive(Debug, Default)]
struct PairState {
    outstanding: Outstanding,
    /// PINGs of this pair that timed out and whose PONG may still arrive late (order
    /// mode has no correlator to recognise it by).
    timed_out_unanswered: u32,
    /// Transactions finalised from a transit candidate whose delivery leg (without
    /// correlator) may still be seen.
    transit_finalised: u32,
    last_active: UnixNanos,
    /// Route and far-side baseline, for the next transaction's explanation.
    history: History,
}

/// A pair's hash in the matcher's tables (see [`super::mix_pair`]): an ID's own hash,
/// a name's from `hasher`. Equal keys hash alike, as `PeerKey`'s equality and hash
/// agree.
fn pair_hash(hasher: &foldhash::fast::RandomState, k: &PairKey) -> u64 {
    let part = |key: &PeerKey| match key {
        PeerKey::Id(id) => id_hash(id),
        other => hasher.hash_one(other),
    };
    mix_pair(part(&k.0), part(&k.1))
}

/// The pairs: their keys and states in a dense vector, found through a hash table of
/// their indices (4 bytes in each bucket). As a map, the 64-byte key and the state in
/// each of its buckets (~1.75 per pair) were 30 MB at 150,000 pairs.
///
/// Pairs idle past `fold_after` at the time of the message being matched (`now`) are
/// not found (see [`IDLE_PAIR_NS`]); [`PairTable::sweep`] frees them.
#[derive(Debug, Default)]
struct PairTable {
    index: hashbrown::HashTable<u32>,
    slots: Vec<(PairKey, PairState)>,
    hasher: foldhash::fast::RandomState,
    now: UnixNanos,
    fold_after: u64,
}

impl PairTable {
    fn new(fold_after: u64) -> Self {
        PairTable {
            fold_after,
            ..PairTable::default()
        }
    }

    /// Folded at `now`: nothing outstanding and no message for `fold_after`.
    fn folded(&self, st: &PairState, now: UnixNanos) -> bool {
        st.outstanding.is_empty() && now.saturating_sub(st.last_active) > self.fold_after
    }

    /// The key's hash in this table: computed once per document and handed to the
    /// `_hashed` lookups, which a PING or PONG makes several of.
    fn hash(&self, k: &PairKey) -> u64 {
        pair_hash(&self.hasher, k)
    }

    /// The pair's slot, folded or not.
    fn find_slot(&self, k: &PairKey) -> Option<usize> {
        self.find_slot_hashed(self.hash(k), k)
    }

    fn find_slot_hashed(&self, hash: u64, k: &PairKey) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| {
                slots
                    .get(i as usize)
                    .is_some_and(|(key, _)| same_pair(key, k))
            })
            .map(|&i| i as usize)
    }

    fn find(&self, k: &PairKey) -> Option<usize> {
        self.find_hashed(self.hash(k), k)
    }

    /// [`Self::find`] given the slot the pair was in when last found. A pair stays in
    /// its slot until a pair is removed (a sweep, an eviction): its key there, compared
    /// (IDs by pointer first), answers without the hash and the probe (~90
    /// instructions of ~125, LTO off); a pair moved since is looked up.
    fn find_at(&self, slot: u32, k: &PairKey) -> Option<usize> {
        let i = slot as usize;
        match self.slots.get(i) {
            Some((key, st)) if same_pair(key, k) => (!self.folded(st, self.now)).then_some(i),
            _ => self.find(k),
        }
    }

    /// The slot of a pair not folded; it stays valid until a pair is removed (a
    /// sweep, an eviction), which no caller does while it holds one.
    fn find_hashed(&self, hash: u64, k: &PairKey) -> Option<usize> {
        let i = self.find_slot_hashed(hash, k)?;
        let (_, st) = self.slots.get(i)?;
        (!self.folded(st, self.now)).then_some(i)
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut PairState> {
        self.slots.get_mut(i).map(|(_, st)| st)
    }

    fn slot(&self, i: usize) -> Option<&PairState> {
        self.slots.get(i).map(|(_, st)| st)
    }

    /// Frees the pairs folded at `at`; how many.
    fn sweep(&mut self, at: UnixNanos) -> usize {
        let gone: Vec<PairKey> = self
            .slots
            .iter()
            .filter(|(_, st)| self.folded(st, at))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.remove(k);
        }
        if self.slots.capacity() > 2 * self.slots.len() + 1024 {
            self.slots.shrink_to_fit();
            let hasher = &self.hasher;
            let slots = &self.slots;
            self.index.shrink_to_fit(|&j| {
                slots
                    .get(j as usize)
                    .map_or(0, |(key, _)| pair_hash(hasher, key))
            });
        }
        gone.len()
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn get(&self, k: &PairKey) -> Option<&PairState> {
        let i = self.find(k)?;
        self.slots.get(i).map(|(_, st)| st)
    }

    fn get_mut(&mut self, k: &PairKey) -> Option<&mut PairState> {
        let i = self.find(k)?;
        self.slots.get_mut(i).map(|(_, st)| st)
    }

    /// The pair's state, a new one if it had none. The caller keeps the table under
    /// `u32::MAX` pairs (`MatcherConfig::max_pairs` is clamped to it).
    #[cfg(test)]
    fn get_or_default(&mut self, k: &PairKey) -> &mut PairState {
        let i = self.get_or_default_hashed(self.hash(k), k);
        &mut self.slots[i].1
    }

    /// [`Self::get_or_default`] with the key's hash: the pair's slot.
    fn get_or_default_hashed(&mut self, hash: u64, k: &PairKey) -> usize {
        match self.find_slot_hashed(hash, k) {
            Some(i) => {
                // A folded pair seen again starts afresh, as one never seen would.
                let now = self.now;
                if self
                    .slots
                    .get(i)
                    .is_some_and(|(_, st)| self.folded(st, now))
                {
                    self.slots[i].1 = PairState::default();
                }
                i
            }
            None => {
                let i = self.slots.len();
                let Self {
                    index,
                    slots,
                    hasher,
                    ..
                } = self;
                index.insert_unique(hash, u32::try_from(i).unwrap_or(u32::MAX), |&j| {
                    slots
                        .get(j as usize)
                        .map_or(0, |(key, _)| pair_hash(hasher, key))
                });
                slots.push((k.clone(), PairState::default()));
                i
            }
        }
    }

    /// Removes the pair; the last one takes its place in the vector.
    fn remove(&mut self, k: &PairKey) -> Option<PairState> {
        let i = self.find_slot(k)?;
        let hash = pair_hash(&self.hasher, k);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
        let (_, st) = self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i) {
            let from = self.slots.len();
            if let Some(j) = self
                .index
                .find_mut(pair_hash(&self.hasher, moved), |&j| j as usize == from)
            {
                *j = u32::try_from(i).unwrap_or(u32::MAX);
            }
        }
        Some(st)
    }

    fn iter(&self) -> impl Iterator<Item = (&PairKey, &PairState)> {
        self.slots.iter().map(|(k, st)| (k, st))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&PairKey, &mut PairState)> {
        self.slots.iter_mut().map(|(k, st)| (&*k, st))
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &PairState> {
        self.slots.iter().map(|(_, st)| st)
    }
}

/// Emptied buffers of outstanding PINGs kept for the next pairs that need one, up to
/// this many, each of at most [`SPARE_QUEUE_CAPACITY`] PINGs (a few hundred kB at
/// most): a pair answered at once freed its buffer, and its next PING allocated it
/// again (two allocations and their frees per transaction).
const SPARE_QUEUES: usize = 64;
const SPARE_QUEUE_CAPACITY: usize = 8;

type Queue = Box<VecDeque<Pending>>;

/// Frees the buffer of a pair whose last outstanding PING just left (into `spare`).
fn settle(state: &mut PairState, spare: &mut Vec<Queue>) {
    if state.outstanding.is_empty() {
        if let Some(q) = state.outstanding.0.take() {
            if spare.len() < SPARE_QUEUES && q.capacity() <= SPARE_QUEUE_CAPACITY {
                spare.push(q);
            }
        }
    }
}

/// A pair's outstanding PINGs, oldest first. Boxed: 8 bytes in every one of the pair
/// table's buckets instead of a `VecDeque`'s 32, and only pairs with a PING
/// outstanding hold the buffer.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // the extra allocation is the point: see above
struct Outstanding(Option<Queue>);

impl Outstanding {
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |d| d.len())
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |d| d.capacity())
    }

    /// A concrete type: callers borrow the matcher again while the iterator's
    /// temporary is alive, which an opaque type (it may have a destructor) forbids.
    fn iter(&self) -> std::collections::vec_deque::Iter<'_, Pending> {
        const NONE: &VecDeque<Pending> = &VecDeque::new();
        self.0.as_deref().unwrap_or(NONE).iter()
    }

    fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut Pending> {
        self.0.iter_mut().flat_map(|d| d.iter_mut())
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Pending> {
        self.0.as_mut()?.get_mut(i)
    }

    /// The front, nearly always (the oldest PING is answered first), by `pop_front`:
    /// `VecDeque::remove` spent ~190 instructions on it, its general case.
    fn remove(&mut self, i: usize) -> Option<Pending> {
        let q = self.0.as_mut()?;
        if i == 0 {
            q.pop_front()
        } else {
            q.remove(i)
        }
    }

    fn pop_front(&mut self) -> Option<Pending> {
        self.0.as_mut()?.pop_front()
    }

    /// The queue, its buffer taken from `spare` if it has none. A PING is pushed into it
    /// once it is in hand: passed to a push that looked for the buffer first, the
    /// 240-byte `Pending` was copied once more (a `memcpy` call a PING).
    fn queue(&mut self, spare: &mut Vec<Queue>) -> &mut VecDeque<Pending> {
        self.0
            .get_or_insert_with(|| spare.pop().unwrap_or_default())
    }

    /// Appends `p`, the buffer taken from `spare` if it needs one.
    #[cfg(test)]
    fn push_back(&mut self, p: Pending, spare: &mut Vec<Queue>) {
        self.queue(spare).push_back(p);
    }

    /// Every outstanding PING, oldest first; the buffer is freed.
    fn take_all(&mut self) -> VecDeque<Pending> {
        self.0.take().map(|d| *d).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finished {
    Answered,
    /// Finalised from a transit candidate; its delivery leg is not a duplicate.
    AnsweredInTransit,
    TimedOut,
}

/// Correlators of finished PINGs, with how each ended and the start of the PING that
/// used it last: a PONG for one is late, a duplicate or a relay's delivery leg, and a
/// PING repeating one soon is a duplicate sighting. The oldest are forgotten past the
/// cap (65,536 by default). The entries sit in a ring in insertion order, found through
/// a table of their positions: a map keyed by shared `(pair, correlator)` boxes with a
/// queue of the same keys was 11–14 MB at the cap, this is about half.
#[derive(Debug, Default)]
struct Remembered {
    /// Oldest first.
    ring: VecDeque<Finish>,
    /// Number of entries ever pushed out of the front (wrapping): entry `ring[i]` is
    /// found in `index` as `popped + i`.
    popped: u32,
    index: hashbrown::HashTable<u32>,
}

#[derive(Debug)]
struct Finish {
    pair: PairKey,
    correlator: Correlator,
    outcome: Finished,
    start: UnixNanos,
    /// The entry's table hash, kept by [`Remembered::insert_hashed`] (whatever is given
    /// is replaced) so that growing the table and forgetting the entry hash nothing
    /// again: rehashing every entry at each doubling was ~200 instructions a
    /// transaction. It sits in what was the struct's padding.
    hash: u32,
}

/// A remembered correlator's bytes, inline up to 22 of them (the study's and the
/// reference peer's are 9 to 19): a boxed one cost a 32-byte allocation besides its
/// 16-byte box, 65,536 times over.
#[derive(Debug)]
enum Correlator {
    Inline { len: u8, bytes: [u8; 22] },
    Boxed(Box<[u8]>),
}

impl Correlator {
    fn new(s: &str) -> Correlator {
        let b = s.as_bytes();
        let mut bytes = [0u8; 22];
        // A copy of `len` bytes was a `memcpy` call (12 instructions more a finished
        // PING, of the 64 here); from 4 bytes on, two fixed-size copies do it.
        let copied = match b.len() {
            16.. => copy_ends::<16>(&mut bytes, b),
            8.. => copy_ends::<8>(&mut bytes, b),
            4.. => copy_ends::<4>(&mut bytes, b),
            _ => bytes
                .get_mut(..b.len())
                .map(|head| head.copy_from_slice(b))
                .is_some(),
        };
        match (copied, u8::try_from(b.len())) {
            (true, Ok(len)) => Correlator::Inline { len, bytes },
            _ => Correlator::Boxed(b.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Correlator::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Correlator::Boxed(b) => b,
        }
    }
}

/// Slots of [`SharedCorrelators`]: 4 KB, and at most as many correlators kept alive.
const SHARED_CORRELATORS: usize = 256;
/// Longest correlator [`SharedCorrelators`] keeps (JXSE's are a number's digits).
const SHARED_CORRELATOR_LEN: usize = 64;

/// One copy of each PING correlator for its pending PING and its transaction, handed
/// out by reference count. Pollers reuse a correlator across their receivers and polls
/// (10 in all on jxta-0.1g, 3 on peers1k-0.1g): a copy made for each PING and freed
/// after the sink was ~235 instructions a transaction, this look-up is ~45 (LTO off;
/// its hash is the one the finished table takes anyway). One copy a slot, picked by the
/// correlator's hash, the last one kept, not a table: a capture whose pollers count
/// their correlators up (each PING a new one) costs a compare more a PING than the
/// copy alone, and the memory stays bounded without a table to clear.
#[derive(Debug, Default)]
struct SharedCorrelators(Box<[Option<Arc<str>>]>);

impl SharedCorrelators {
    /// The shared copy of `c`; `hash` is any hash of its text (equal texts, equal
    /// hashes).
    fn get(&mut self, hash: u64, c: &str) -> Arc<str> {
        // A long correlator is not kept: the slots would hold up to 256 documents'
        // worth of text after their transactions ended.
        if c.len() > SHARED_CORRELATOR_LEN {
            return Arc::from(c);
        }
        if self.0.is_empty() {
            self.0 = vec![None; SHARED_CORRELATORS].into_boxed_slice();
        }
        let Some(slot) = self.0.get_mut(hash as usize % SHARED_CORRELATORS) else {
            return Arc::from(c);
        };
        match slot {
            Some(held) if **held == *c => Arc::clone(held),
            _ => Arc::clone(slot.insert(Arc::from(c))),
        }
    }
}

/// Copies `from` (`N` to `2N` bytes) to the start of `to` as its first `N` bytes and its
/// last `N`, which overlap; false, and nothing copied, when it is longer or `to` shorter.
fn copy_ends<const N: usize>(to: &mut [u8], from: &[u8]) -> bool {
    let n = from.len();
    let (Some(head), Some(tail)) = (from.first_chunk::<N>(), from.last_chunk::<N>()) else {
        return false;
    };
    if n > 2 * N || n > to.len() {
        return false;
    }
    if let Some(at) = to.first_chunk_mut::<N>() {
        *at = *head;
    }
    if let Some(at) = to.get_mut(..n).and_then(|to| to.last_chunk_mut::<N>()) {
        *at = *tail;
    }
    true
}

/// Entries are hashed with the matcher's pair table's hasher, passed to each method that
/// hashes (one hasher, none kept here to drift from it): a PING's entry is then hashed
/// from the pair's hash its look-up in the pair table took ([`Self::hash_of_pair`]), not
/// from the pair again (~25 instructions a PING, LTO off).
impl Remembered {
    /// [`Self::hash_with`] given the pair's [`PairTable::hash`].
    fn hash_of_pair(pair_hash: u64, correlator: u64) -> u32 {
        (pair_hash ^ correlator) as u32
    }

    /// 32 bits of the hash are kept per entry (see [`Finish::hash`]), ample for 65,536
    /// entries.
    #[cfg(test)]
    fn hash(hasher: &foldhash::fast::RandomState, pair: &PairKey, correlator: &[u8]) -> u32 {
        Self::hash_with(hasher, pair, Self::correlator_hash(hasher, correlator))
    }

    /// The correlator's part of an entry's hash, which [`SharedCorrelators`] takes too.
    fn correlator_hash(hasher: &foldhash::fast::RandomState, correlator: &[u8]) -> u64 {
        hasher.hash_one(correlator)
    }

    /// An entry's hash with the correlator's part given.
    fn hash_with(hasher: &foldhash::fast::RandomState, pair: &PairKey, correlator: u64) -> u32 {
        Self::hash_of_pair(pair_hash(hasher, pair), correlator)
    }

    /// The table's hash of a kept 32-bit one. hashbrown takes a bucket from the low
    /// bits and a tag from the top seven: both must vary, so the 32 bits are in both
    /// halves.
    fn spread(hash: u32) -> u64 {
        (u64::from(hash) << 32) | u64::from(hash)
    }

    fn len(&self) -> usize {
        self.ring.len()
    }

    fn position_hashed(&self, hash: u32, pair: &PairKey, correlator: &[u8]) -> Option<usize> {
        let (ring, popped) = (&self.ring, self.popped);
        self.index
            .find(Self::spread(hash), |&at| {
                ring.get(at.wrapping_sub(popped) as usize)
                    .is_some_and(|f| f.pair == *pair && f.correlator.as_bytes() == correlator)
            })
            .map(|&at| at.wrapping_sub(popped) as usize)
    }

    #[cfg(test)]
    fn get(
        &self,
        hasher: &foldhash::fast::RandomState,
        pair: &PairKey,
        correlator: &str,
    ) -> Option<(Finished, UnixNanos)> {
        let hash = Self::hash(hasher, pair, correlator.as_bytes());
        self.get_hashed(hash, pair, correlator)
    }

    /// [`Self::get`] with the hash of `pair` and `correlator` given.
    fn get_hashed(
        &self,
        hash: u32,
        pair: &PairKey,
        correlator: &str,
    ) -> Option<(Finished, UnixNanos)> {
        let f = self
            .ring
            .get(self.position_hashed(hash, pair, correlator.as_bytes())?)?;
        Some((f.outcome, f.start))
    }

    /// The outcome remembered for `pair` and `correlator`, to read and change with one
    /// look-up; `hash` is theirs (a late or relayed PONG's from its pair's look-up, see
    /// [`Self::hash_of_pair`]).
    fn outcome_mut(
        &mut self,
        hash: u32,
        pair: &PairKey,
        correlator: &str,
    ) -> Option<&mut Finished> {
        let i = self.position_hashed(hash, pair, correlator.as_bytes())?;
        self.ring.get_mut(i).map(|f| &mut f.outcome)
    }

    #[cfg(test)]
    fn set_outcome(
        &mut self,
        hasher: &foldhash::fast::RandomState,
        pair: &PairKey,
        correlator: &str,
        outcome: Finished,
    ) {
        let hash = Self::hash(hasher, pair, correlator.as_bytes());
        if let Some(f) = self.outcome_mut(hash, pair, correlator) {
            *f = outcome;
        }
    }

    /// Remembers `correlator` (a known one keeps its place and takes the new outcome
    /// and start), forgetting the oldest so as to hold at most `cap` (at least 1).
    /// Returns how many it forgot.
    #[cfg(test)]
    fn insert(&mut self, hasher: &foldhash::fast::RandomState, cap: usize, f: Finish) -> u64 {
        // Hashed once for the look-up and the insertion (~140 instructions each).
        let hash = Self::hash(hasher, &f.pair, f.correlator.as_bytes());
        self.insert_hashed(cap, hash, f)
    }

    /// [`Self::insert`] with the hash of the entry's pair and correlator given.
    fn insert_hashed(&mut self, cap: usize, hash: u32, f: Finish) -> u64 {
        if let Some(i) = self.position_hashed(hash, &f.pair, f.correlator.as_bytes()) {
            if let Some(known) = self.ring.get_mut(i) {
                (known.outcome, known.start) = (f.outcome, f.start);
            }
            return 0;
        }
        self.insert_new(cap, hash, f)
    }

    /// [`Self::insert_hashed`] of an entry known not to be there (see
    /// [`Pending::fresh`]).
    fn insert_new(&mut self, cap: usize, hash: u32, mut f: Finish) -> u64 {
        debug_assert!(
            self.position_hashed(hash, &f.pair, f.correlator.as_bytes())
                .is_none(),
            "a fresh PING's correlator is already remembered"
        );
        let mut forgot = 0;
        // Positions are u32: more entries than that would not fit in memory anyway.
        while self.ring.len() >= cap.clamp(1, u32::MAX as usize) {
            self.pop_oldest();
            forgot += 1;
        }
        let Self {
            ring,
            popped,
            index,
            ..
        } = self;
        let at = popped.wrapping_add(ring.len() as u32);
        f.hash = hash;
        ring.push_back(f);
        index.insert_unique(Self::spread(hash), at, Self::hash_at(ring, *popped));
        forgot
    }

    /// The hash of the entry at position `at`, for the table's rehashing.
    fn hash_at(ring: &VecDeque<Finish>, popped: u32) -> impl Fn(&u32) -> u64 + '_ {
        move |&at| {
            ring.get(at.wrapping_sub(popped) as usize)
                .map_or(0, |f| Self::spread(f.hash))
        }
    }

    /// The start of the PING of the oldest entry (see [`Matcher::forget_finished`]).
    fn oldest_start(&self) -> Option<UnixNanos> {
        self.ring.front().map(|f| f.start)
    }

    fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Room for `n` entries, made at once (see [`REMEMBERED_AHEAD`]).
    fn reserve(&mut self, n: usize) {
        let Self {
            ring,
            index,
            popped,
            ..
        } = self;
        ring.reserve_exact(n.saturating_sub(ring.len()));
        index.reserve(n.saturating_sub(index.len()), Self::hash_at(ring, *popped));
    }

    fn shrink_to_fit(&mut self) {
        self.ring.shrink_to_fit();
        let rehash = Self::hash_at(&self.ring, self.popped);
        self.index.shrink_to_fit(rehash);
    }

    /// Forgets the oldest entry.
    fn pop_oldest(&mut self) {
        let Some(f) = self.ring.pop_front() else {
            return;
        };
        let oldest = self.popped;
        if let Ok(entry) = self
            .index
            .find_entry(Self::spread(f.hash), |&at| at == oldest)
        {
            entry.remove();
        }
        self.popped = self.popped.wrapping_add(1);
    }
}

/// Finished correlators [`Remembered`] makes room for at its first entry when they are
/// kept up to the cap (at most the default cap: a larger one grows as needed).
const REMEMBERED_AHEAD: usize = 65_536;

/// The PINGs that may still be outstanding, a bit each by sequence number from the
/// oldest that may be: the deadline entry of a PING answered long since is known stale
/// from its bit, without its pair's look-up (~200 instructions an entry at each rebuild
/// of the heap, ~170 a PING). Every PING leaving its pair's queue clears its bit, and
/// the words before the first set bit are dropped: the bits span about one timeout's
/// PINGs, at most one more word. A set bit says only "maybe": the queue decides.
#[derive(Debug, Default)]
struct LiveSeqs {
    /// The sequence number of the lowest bit of `words[0]`.
    base: u64,
    words: VecDeque<u64>,
    /// One past the highest sequence number added: words wholly below it are done with.
    next: u64,
}

impl LiveSeqs {
    /// `seq` is outstanding (numbers come in increasing order).
    #[inline]
    fn add(&mut self, seq: u64) {
        if self.words.is_empty() {
            self.base = seq;
        }
        let Some(at) = seq.checked_sub(self.base) else {
            return;
        };
        let word = (at / 64) as usize;
        while self.words.len() <= word {
            self.words.push_back(0);
        }
        if let Some(w) = self.words.get_mut(word) {
            *w |= 1 << (at % 64);
        }
        self.next = self.next.max(seq + 1);
    }

    /// `seq` is outstanding no more.
    #[inline]
    fn remove(&mut self, seq: u64) {
        let Some(at) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(w) = self.words.get_mut((at / 64) as usize) {
            *w &= !(1 << (at % 64));
        }
        while self.words.front() == Some(&0) && self.base.saturating_add(64) <= self.next {
            self.words.pop_front();
            self.base += 64;
        }
    }

    /// Whether `seq` may be outstanding: false only if it is not.
    #[inline]
    fn maybe(&self, seq: u64) -> bool {
        let Some(at) = seq.checked_sub(self.base) else {
            return false;
        };
        self.words
            .get((at / 64) as usize)
            .is_none_or(|w| w & (1 << (at % 64)) != 0)
    }

    /// Words held (for the tests: bounded by what is outstanding).
    #[cfg(test)]
    fn words(&self) -> usize {
        self.words.len()
    }
}

/// An outstanding PING's deadline in the matcher's heap: the earliest on top, ties by
/// sequence number. The sequence numbers are unique, so the pair never decided the
/// order of the `(deadline, seq, pair)` tuple this was; left out of the comparison, it
/// no longer costs every push the set-up of its compare (~30 instructions, LTO off).
#[derive(Debug)]
struct Deadline {
    at: UnixNanos,
    seq: u64,
    pair: PairKey,
}

impl Ord for Deadline {
    /// Reversed: `BinaryHeap` keeps the greatest on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// As the order: the time and the sequence number.
impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Deadline {}

/// The outstanding PINGs' deadlines, popped earliest first (the order of
/// [`Deadline`]). A PING's deadline is its start plus the timeout: in capture order it is
/// nearly always no earlier than the one pushed before it, and those go to the back of
/// a queue already in order (~15 instructions, against ~70 for the heap's push, LTO
/// off); the others (a message out of time order) go to the heap. `next` is the earliest
/// `at` of both: `advance` (every frame) reads one field, not two fronts.
#[derive(Debug)]
struct Deadlines {
    queue: VecDeque<Deadline>,
    heap: BinaryHeap<Deadline>,
    /// The earliest deadline held, `UnixNanos::MAX` when none.
    next: UnixNanos,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            queue: VecDeque::new(),
            heap: BinaryHeap::new(),
            next: UnixNanos::MAX,
        }
    }
}

impl Deadlines {
    fn len(&self) -> usize {
        self.queue.len() + self.heap.len()
    }

    fn push(&mut self, d: Deadline) {
        self.next = self.next.min(d.at);
        // `Deadline` orders in reverse (for the heap): `>=` is "no earlier".
        match self.queue.back() {
            Some(last) if d > *last => self.heap.push(d),
            _ => self.queue.push_back(d),
        }
    }

    /// Whether the earliest is the queue's front rather than the heap's top.
    fn queue_first(&self) -> bool {
        match (self.queue.front(), self.heap.peek()) {
            (Some(q), Some(h)) => q >= h,
            (q, _) => q.is_some(),
        }
    }

    fn peek(&self) -> Option<&Deadline> {
        match self.queue_first() {
            true => self.queue.front(),
            false => self.heap.peek(),
        }
    }

    fn pop(&mut self) -> Option<Deadline> {
        let d = match self.queue_first() {
            true => self.queue.pop_front(),
            false => self.heap.pop(),
        };
        self.settle_next();
        d
    }

    fn retain(&mut self, mut keep: impl FnMut(&Deadline) -> bool) {
        // Through a `Vec`: `VecDeque::retain` indexes the ring entry by entry (1.01 M
        // against 0.87 M on jxta-0.1g's 15 rebuilds, LTO off); the conversions move the
        // entries at most once and allocate nothing.
        let mut queue = Vec::from(std::mem::take(&mut self.queue));
        queue.retain(&mut keep);
        self.queue = VecDeque::from(queue);
        self.heap.retain(keep);
        self.settle_next();
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.heap.clear();
        self.next = UnixNanos::MAX;
    }

    fn settle_next(&mut self) {
        self.next = self.peek().map_or(UnixNanos::MAX, |d| d.at);
    }
}

/// A pair with a PING outstanding under a correlator (see
/// [`Matcher::open_correlators`]), with the pair's slot when last found.
#[derive(Clone, Debug)]
struct OpenPair {
    pair: PairKey,
    slot: u32,
}

/// A correlator's [`OpenPair`]s, found by the correlator's hash that `on_ping` takes
/// for the finished ones anyway ([`Remembered::correlator_hash`]): a `FastMap` keyed by
/// the text hashed it again (~99 instructions a PING with its probe and compare).
/// The text is the [`SharedCorrelators`] copy its first PING took, as its outstanding
/// PINGs' are: compared by address first.
#[derive(Debug)]
struct OpenCorrelator {
    hash: u64,
    correlator: Arc<str>,
    at: Vec<OpenPair>,
}

impl OpenCorrelator {
    /// Whether this is the entry of `c`, hashed `hash`.
    fn is(&self, hash: u64, c: &str) -> bool {
        self.hash == hash && same_text(&self.correlator, c)
    }
}

/// Equal texts: one copy (a shared correlator, most of the time) is equal without its
/// bytes' compare (a call).
fn same_text(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Kept entries [`keep_open`] compares a new one with in turn; past them, through a set.
const KEEP_OPEN_SCAN: usize = 16;

/// Keeps the pairs of `at` that are open, each once, in their order: `open` gives the
/// slot of a pair that is, which the kept entry takes. A pair's slot is its own, so a
/// repeated pair is a repeated slot: a few are compared in turn, more through a set (a
/// correlator open on many pairs, as a capture may have, costs linear time, not the
/// square of their number).
fn keep_open(at: &mut Vec<OpenPair>, open: impl Fn(&OpenPair) -> Option<u32>) {
    let mut kept = 0;
    let mut seen: std::collections::HashSet<u32> = std::collections::HashSet::new();
    for i in 0..at.len() {
        let keep = at.get(i).and_then(|e| {
            let slot = open(e)?;
            let repeated = if kept <= KEEP_OPEN_SCAN {
                at.get(..kept)?.iter().any(|b| b.slot == slot)
            } else {
                seen.contains(&slot)
            };
            (!repeated).then_some(slot)
        });
        if let Some(slot) = keep {
            // Most entries are kept where they are: no 56-byte swap with themselves.
            if kept != i {
                at.swap(kept, i);
            }
            if let Some(e) = at.get_mut(kept) {
                e.slot = slot;
            }
            kept += 1;
            if kept > KEEP_OPEN_SCAN {
                if seen.is_empty() {
                    seen.extend(at.get(..kept).unwrap_or_default().iter().map(|b| b.slot));
                } else {
                    seen.insert(slot);
                }
            }
        }
    }
    at.truncate(kept);
}

/// The peer ID of a pair key's end, if it has one.
fn key_id(k: &PeerKey) -> Option<&PeerId> {
    match k {
        PeerKey::Id(id) => Some(id),
        PeerKey::Other(_) => None,
    }
}

/// A pair and its slot in the pair table, found once per document; the slot stays
/// valid while no pair is removed (sweeps and evictions come before the lookup).
struct PairAt {
    pair: PairKey,
    slot: usize,
    /// `pair`'s [`PairTable::hash`], for its finished correlators' look-up.
    hash: u64,
}

/// What a PONG carries, resolved once.
struct Pong {
    receiver_id: Option<PeerId>,
    /// The PONG's name, shared.
    name: Option<Arc<str>>,
    in_transit: bool,
}

/// Entries held by the matcher's tables (see [`Matcher::sizes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatcherSizes {
    pub pairs: usize,
    pub outstanding: usize,
    pub finished: usize,
    pub deadlines: usize,
    pub names: usize,
}

#[derive(Debug)]
pub struct Matcher {
    cfg: MatcherConfig,
    pairs: PairTable,
    finished: Remembered,
    /// Deadlines of outstanding PINGs; entries of answered PINGs are skipped when
    /// popped, and the heap is rebuilt when stale entries dominate.
    deadlines: Deadlines,
    /// The outstanding PINGs' sequence numbers, to skip stale deadline entries.
    live_seqs: LiveSeqs,
    live: usize,
    next_seq: u64,
    /// Folded pairs were last freed here (see [`PairTable::sweep`]).
    next_sweep: UnixNanos,
    peers: Peers,
    correlators: SharedCorrelators,
    /// Pairs with a PING outstanding under each correlator, for PONGs that name no
    /// poller. Entries of answered PINGs stay until a rebuild (when they dominate),
    /// so every hit is checked against `pairs`, from the slot the entry keeps.
    open_correlators: hashbrown::HashTable<OpenCorrelator>,
    open_correlator_entries: usize,
    /// See [`SPARE_QUEUES`]; the same for the legs of PINGs and PONGs.
    spare_queues: Vec<Queue>,
    spare_legs: Vec<Vec<Leg>>,
    anomalies: Anomalies,
    expiry: Expiry,
    presence: Presence,
    overhead: OverheadTally,
    /// Finished correlators added at once (fresh PINGs), and looked for first: for the
    /// tests to see both taken.
    #[cfg(test)]
    remembered: [u64; 2],
}

impl Matcher {
    pub fn new(cfg: MatcherConfig) -> Self {
        let cfg = MatcherConfig {
            max_outstanding_per_pair: cfg.max_outstanding_per_pair.max(1),
            // The pair table indexes its vector with `u32`.
            max_pairs: cfg.max_pairs.clamp(1, u32::MAX as usize),
            ..cfg
        };
        let peers_cap = cfg.max_pairs.saturating_mul(2);
        let fold_after = cfg.timeout_ns.saturating_add(IDLE_PAIR_NS);
        let pairs = PairTable::new(fold_after);
        Matcher {
            cfg,
            finished: Remembered::default(),
            pairs,
            deadlines: Deadlines::default(),
            live_seqs: LiveSeqs::default(),
            live: 0,
            next_seq: 0,
            next_sweep: 0,
            peers: Peers {
                cap: peers_cap,
                ..Peers::default()
            },
            correlators: SharedCorrelators::default(),
            open_correlators: hashbrown::HashTable::new(),
            open_correlator_entries: 0,
            spare_queues: Vec::new(),
            spare_legs: Vec::new(),
            anomalies: Anomalies::default(),
            expiry: Expiry::default(),
            presence: Presence::default(),
            overhead: OverheadTally::default(),
            #[cfg(test)]
            remembered: [0; 2],
        }
    }

    pub fn config(&self) -> &MatcherConfig {
        &self.cfg
    }

    pub fn anomalies(&self) -> &Anomalies {
        &self.anomalies
    }

    /// What the matcher let go (see [`Expiry`]).
    pub fn expiry(&self) -> &Expiry {
        &self.expiry
    }

    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    pub fn overhead(&self) -> &OverheadTally {
        &self.overhead
    }

    /// Pairs holding a buffer for outstanding PINGs, and the peer IDs interned.
    #[cfg(test)]
    pub(crate) fn buffered_pairs_and_ids(&self) -> (usize, usize) {
        let buffered = self
            .pairs
            .values()
            .filter(|st| st.outstanding.capacity() > 0)
            .count();
        (buffered, self.peers.ids.len())
    }

    #[cfg(test)]
    pub(crate) fn deadline_entries(&self) -> usize {
        self.deadlines.len()
    }

    #[cfg(test)]
    pub(crate) fn open_correlator_entries(&self) -> usize {
        self.open_correlator_entries
    }

    /// How much state the matcher holds (entries per table): what its caps bound.
    pub fn sizes(&self) -> MatcherSizes {
        MatcherSizes {
            pairs: self.pairs.len(),
            outstanding: self.live,
            finished: self.finished.len(),
            deadlines: self.deadlines.len(),
            names: self.peers.named,
        }
    }

    /// The caller found a JIM-looking document that was not well formed.
    pub fn count_malformed(&mut self) {
        self.anomalies.malformed_documents += 1;
    }

    /// The name a peer last gave in a document, if any.
    pub fn name_of(&self, id: &PeerId) -> Option<&str> {
        self.peers.name(id).map(|n| &**n)
    }

    /// Feeds one document. Expires overdue PINGs first (up to the sighting's last
    /// byte), so a PONG after its PING's deadline is late whatever the caller did.
    pub fn observe(&mut self, doc: &Document, s: &Sighting, out: &mut Vec<Transaction>) {
        self.observe_seen(Seen::Borrowed(doc, s), out);
    }

    /// [`Self::observe`] of a document and sighting handed over: what the matcher keeps
    /// of them is moved, not copied.
    pub fn observe_owned(
        &mut self,
        mut doc: Document,
        mut s: Sighting,
        out: &mut Vec<Transaction>,
    ) {
        self.observe_seen(Seen::Owned(&mut doc, &mut s), out);
    }

    /// [`Self::observe_owned`] through references: what the matcher keeps is taken out
    /// of `doc` and `s`, the rest left for the caller to free.
    pub fn observe_taking(
        &mut self,
        doc: &mut Document,
        s: &mut Sighting,
        out: &mut Vec<Transaction>,
    ) {
        self.observe_seen(Seen::Owned(doc, s), out);
    }

    fn observe_seen(&mut self, mut seen: Seen<'_>, out: &mut Vec<Transaction>) {
        let s = seen.sighting();
        self.pairs.now = s.stop;
        self.advance(s.stop, out);
        // Folded pairs are freed with a margin of the timeout (and as often): a message
        // a little out of time order still finds a pair that was not folded at its time.
        let margin = self.cfg.timeout_ns;
        if s.stop >= self.next_sweep.saturating_add(margin) {
            let freed = self.pairs.sweep(s.stop.saturating_sub(margin));
            self.expiry.pairs_freed += freed as u64;
            self.next_sweep = s.stop;
            if let Some(h) = self.cfg.presence_horizon_ns {
                let (peers, changes) = self.presence.expire(s.stop.saturating_sub(h));
                self.expiry.presence_peers += peers;
                self.expiry.presence_changes += changes;
            }
        }
        self.forget_finished(s.stop);
        match seen.document().kind {
            Kind::Ping => self.on_ping(&mut seen),
            Kind::Pong => self.on_pong(&mut seen, out),
            Kind::Message => self.anomalies.messages += 1,
        }
    }

    /// The start of the oldest PING still outstanding: every transaction still to
    /// come from what has been seen so far starts no earlier. Entries of answered
    /// PINGs at the top of the deadline heap are dropped on the way (they would only
    /// be skipped at their deadline), so the bound is exact, not ten seconds early.
    pub fn oldest_outstanding(&mut self) -> Option<UnixNanos> {
        while let Some(d) = self.deadlines.peek() {
            let live = self.outstanding(d.seq, &d.pair);
            if live {
                return Some(d.at.saturating_sub(self.cfg.timeout_ns));
            }
            self.deadlines.pop();
        }
        None
    }

    /// Expires PINGs whose `start + timeout <= now`. Called for every frame, and
    /// nearly always with nothing due: the test is inlined into the caller, the loop
    /// is not (a call and its frame were ~20 instructions a frame, LTO off).
    #[inline]
    pub fn advance(&mut self, now: UnixNanos, out: &mut Vec<Transaction>) {
        if self.deadlines.next <= now {
            self.expire_due(now, out);
        }
    }

    /// [`Self::advance`] with a deadline due.
    fn expire_due(&mut self, now: UnixNanos, out: &mut Vec<Transaction>) {
        while let Some(d) = self.deadlines.peek() {
            if d.at > now {
                break;
            }
            let Some(Deadline {
                at: deadline,
                seq,
                pair,
            }) = self.deadlines.pop()
            else {
                break;
            };
            if !self.live_seqs.maybe(seq) {
                continue;
            }
            // A set bit whose PING its pair no longer holds is one a path failed to
            // clear: cleared here, so that the bits cannot grow over a long run.
            let Some(state) = self.pairs.get_mut(&pair) else {
                self.live_seqs.remove(seq);
                continue;
            };
            let Some(i) = state.outstanding.iter().position(|p| p.seq == seq) else {
                self.live_seqs.remove(seq);
                continue;
            };
            let Some(p) = state.outstanding.remove(i) else {
                continue;
            };
            settle(state, &mut self.spare_queues);
            self.live -= 1;
            self.live_seqs.remove(seq);
            self.expire(pair, p, deadline, out);
        }
    }

    /// Ends the input: what is still outstanding becomes a timeout if its deadline
    /// has passed at `end`, else open; a transit candidate finishes as ok.
    pub fn finish(&mut self, end: UnixNanos, out: &mut Vec<Transaction>) {
        self.advance(end, out);
        let mut rest = Vec::new();
        for (pair, state) in self.pairs.iter_mut() {
            for p in state.outstanding.take_all() {
                rest.push((pair.clone(), p));
            }
            settle(state, &mut self.spare_queues);
        }
        self.live = 0;
        self.live_seqs = LiveSeqs::default();
        self.deadlines.clear();
        rest.sort_by_key(|(_, p)| (p.start, p.seq));
        for (pair, mut p) in rest {
            if p.candidate.is_some() {
                let deadline = p.start.saturating_add(self.cfg.timeout_ns);
                self.expire(pair, p, deadline, out);
            } else {
                out.push(self.record(&pair, &mut p, None, TxStatus::Open));
            }
        }
        // No PONG can come any more: the per-pair tables, the largest of a run with
        // many pairs, are freed before the summary is built from what remains
        // (presence, overhead, anomalies).
        self.pairs = PairTable::new(self.pairs.fold_after);
        self.finished = Remembered::default();
        self.open_correlators = hashbrown::HashTable::new();
        self.open_correlator_entries = 0;
        self.spare_queues = Vec::new();
        self.spare_legs = Vec::new();
        self.peers = Peers {
            cap: self.peers.cap,
            ..Peers::default()
        };
        self.correlators = SharedCorrelators::default();
    }

    /// A PING reached its deadline: ok from a transit candidate, else timeout.
    fn expire(
        &mut self,
        pair: PairKey,
        mut p: Pending,
        deadline: UnixNanos,
        out: &mut Vec<Transaction>,
    ) {
        if let Some(mut c) = p.candidate.take() {
            let finishing = p.finishing();
            self.answered(&pair, None, &mut p, &mut c, None, out);
            let max = self.max_per_pair_u32();
            if let Some(state) = self.pairs.get_mut(&pair) {
                if finishing.is_none() {
                    state.transit_finalised = (state.transit_finalised + 1).min(max);
                }
            }
            if let Some(f) = finishing {
                self.remember(pair, f, Finished::AnsweredInTransit);
            }
            return;
        }
        let finishing = p.finishing();
        let explained = cause::explain_unanswered(&p.legs, key_id(&pair.1), deadline);
        let mut t = self.record(&pair, &mut p, Some(deadline), TxStatus::Timeout);
        t.cause = explained;
        out.push(t);
        let max = self.max_per_pair_u32();
        if let Some(state) = self.pairs.get_mut(&pair) {
            state.timed_out_unanswered = (state.timed_out_unanswered + 1).min(max);
        }
        if let Some(f) = finishing {
            self.remember(pair, f, Finished::TimedOut);
        }
    }

    /// Remembers a finished PING's correlator (`pair`: the PING's own key).
    fn remember(&mut self, pair: PairKey, f: Finishing, outcome: Finished) {
        if self.cfg.remember_finished == 0 {
            return;
        }
        let Finishing {
            correlator,
            start,
            hash,
            fresh,
        } = f;
        let f = Finish {
            pair,
            correlator,
            outcome,
            start,
            hash,
        };
        let cap = self.cfg.remember_finished;
        // Kept until the cap pushes them out (`analyze`): the table fills up to it or to
        // what the capture holds, and each doubling of the ring and the index on the way
        // copied and rehashed every entry (4 M instructions for jxta-0.1g's 20,000, the
        // copies counted byte by byte). Pages of the ring not yet reached are not
        // touched: peak RSS did not rise. A table whose entries are forgotten by age
        // (`live`) stays at what the traffic needs.
        if self.finished.capacity() == 0 && self.cfg.forget_finished_after_ns.is_none() {
            self.finished.reserve(cap.min(REMEMBERED_AHEAD));
        }
        #[cfg(test)]
        {
            self.remembered[usize::from(!fresh)] += 1;
        }
        self.expiry.correlators_evicted += match fresh {
            true => self.finished.insert_new(cap, hash, f),
            false => self.finished.insert_hashed(cap, hash, f),
        };
    }

    /// Forgets the finished correlators whose PING's deadline is further behind `now`
    /// than [`MatcherConfig::forget_finished_after_ns`]. They are in the order they
    /// finished, close enough to their deadlines' order (a PING finishes within its
    /// timeout) that testing the front suffices: one that finished again later holds
    /// the rest back until its new deadline is that far behind too.
    fn forget_finished(&mut self, now: UnixNanos) {
        let Some(after) = self.cfg.forget_finished_after_ns else {
            return;
        };
        let reach = self.cfg.timeout_ns.saturating_add(after);
        let mut forgot = false;
        while let Some(start) = self.finished.oldest_start() {
            if now.saturating_sub(start) <= reach {
                break;
            }
            self.finished.pop_oldest();
            self.expiry.correlators_expired += 1;
            forgot = true;
        }
        // A burst of PINGs doubled the tables; a gateway's quiet hours should not keep
        // the burst's size.
        if forgot && self.finished.capacity() > 4 * self.finished.len() + 1024 {
            self.finished.shrink_to_fit();
        }
    }

    /// An empty buffer for a PING's or PONG's legs, a spare one if there is. Room for
    /// one leg, as most have and as `vec![leg]` made it: an outstanding PING holds it,
    /// and `Vec`'s first growth would make it four legs (800 bytes).
    fn legs_buffer(&mut self) -> Vec<Leg> {
        self.spare_legs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(1))
    }

    /// Keeps an answered transaction's legs buffers, its PING's and its PONG's, for the
    /// next (see [`SPARE_QUEUES`]); one grown by a relay's second leg is freed. Both in
    /// one call, which is inlined: a call each cost ~50 instructions more a transaction.
    fn spare_legs(&mut self, sides: [&mut Vec<Leg>; 2]) {
        for legs in sides {
            let mut legs = std::mem::take(legs);
            if self.spare_legs.len() < SPARE_QUEUES && legs.capacity() == 1 {
                // The leg stays, to be written over by the next (see [`first_leg`]);
                // its cells are let go as its drop did: a PING's delivery cell is
                // taken back by its watch list once no one else holds it, or kept
                // here if the list let go first (the matcher's thread of `--threads`
                // runs behind the shards' lists: it freed 20,000 cells on jxta-0.1g,
                // made on the shards; docs/performance.md, stop 36, thr30).
                if let Some(leg) = legs.first_mut() {
                    leg.wire.end = None;
                    if let Some(cell) = leg.wire.delivery.take() {
                        cause::spare_delivery(cell);
                    }
                }
                self.spare_legs.push(legs);
            }
        }
    }

    /// The matcher's copy of `id` (see [`Peers`]).
    fn intern(&mut self, id: Option<&PeerId>) -> Option<PeerId> {
        self.peers.intern(id)
    }

    /// The per-pair counters are bounded by the outstanding PINGs a pair may hold.
    fn max_per_pair_u32(&self) -> u32 {
        u32::try_from(self.cfg.max_outstanding_per_pair).unwrap_or(u32::MAX)
    }

    fn on_ping(&mut self, seen: &mut Seen<'_>) {
        let (doc, s) = (seen.document(), seen.sighting());
        let mut parsed = None;
        let poller_id = end_id(s.src_peer.as_ref(), doc, &mut parsed, s.hop_src.as_ref());
        let name = self.peers.share_name(doc.name.as_deref());
        let poller_id = self.peers.intern_named(poller_id, name.as_ref());
        let receiver_id = self.intern(s.dst_peer.as_ref().or(s.hop_dst.as_ref()));
        // The IDs are moved into the pair's key, where the PING's record reads them
        // (see [`Pending`]).
        let pair = (
            PeerKey::named_owned(poller_id, name.as_ref()),
            receiver_id.map_or(PeerKey::UNKNOWN, PeerKey::Id),
        );
        let (poller_id, receiver_id) = (key_id(&pair.0), key_id(&pair.1));
        let hash = self.pairs.hash(&pair);
        let found = self.pairs.find_hashed(hash, &pair);

        // Relay leg of a PING already seen on its originating leg?
        let relay_leg = matches!((&s.hop_src, poller_id), (Some(h), Some(p)) if h != p);
        if relay_leg {
            if let Some(state) = found.and_then(|i| self.pairs.slot_mut(i)) {
                let found = match doc.correlator.as_deref() {
                    Some(c) => state
                        .outstanding
                        .iter_mut()
                        .find(|p| p.correlator.as_deref() == Some(c)),
                    None => state
                        .outstanding
                        .iter_mut()
                        .rev()
                        .find(|p| !p.relay_seen && p.correlator.is_none()),
                };
                if let Some(p) = found {
                    p.relay_seen = true;
                    if p.legs.len() < MAX_LEGS {
                        let ends = [poller_id, receiver_id];
                        p.legs.push(leg_of(&mut self.peers, seen, ends));
                    }
                    self.anomalies.relayed_sightings += 1;
                    return;
                }
            }
        }

        self.overhead
            .ping
            .add(doc.correlator_bytes, doc.document_bytes, s);
        // A multicast PING names no receiver by design (every peer gets it).
        let multicast = s.transport == Transport::Udp;
        if pair.0.is_unknown() || (pair.1.is_unknown() && !multicast) {
            self.anomalies.unidentified += 1;
        }
        let (mut finished_hash, mut fresh, mut correlator_hash) = (0, false, 0);
        if let Some(c) = doc.correlator.as_deref() {
            let outstanding = found.and_then(|i| self.pairs.slot(i)).is_some_and(|st| {
                st.outstanding
                    .iter()
                    .any(|p| p.correlator.as_deref() == Some(c))
            });
            if outstanding {
                self.anomalies.duplicate_ping_correlator += 1;
                return;
            }
            let hasher = &self.pairs.hasher;
            correlator_hash = Remembered::correlator_hash(hasher, c.as_bytes());
            finished_hash = Remembered::hash_of_pair(hash, correlator_hash);
            debug_assert_eq!(
                finished_hash,
                Remembered::hash_with(hasher, &pair, correlator_hash)
            );
            // A repeat soon after the first is a duplicate sighting (retransmission,
            // unseen relay hop), not a new poll: starting a second transaction would
            // turn it into a phantom timeout. Later, the correlator is being reused.
            let known = self.finished.get_hashed(finished_hash, &pair, c);
            if known.is_some_and(|(_, first)| s.start.saturating_sub(first) < REPEAT_WINDOW_NS) {
                self.anomalies.duplicate_ping_correlator += 1;
                return;
            }
            fresh = known.is_none();
        }

        if found.is_none() && self.pairs.len() >= self.cfg.max_pairs {
            self.evict_pair();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        // Evicting moved slots, and only when the pair was not found: `found` still holds.
        let slot = match found {
            Some(i) => i,
            None => self.pairs.get_or_default_hashed(hash, &pair),
        };
        let Some(state) = self.pairs.slot_mut(slot) else {
            return;
        };
        state.last_active = state.last_active.max(s.stop);
        if state.outstanding.len() >= self.cfg.max_outstanding_per_pair {
            if let Some(p) = state.outstanding.pop_front() {
                self.live_seqs.remove(p.seq);
            }
            self.live -= 1;
            self.anomalies.evicted_outstanding += 1;
        }
        let correlator = doc.correlator.as_deref();
        let correlator = correlator.map(|c| self.correlators.get(correlator_hash, c));
        if let Some(c) = &correlator {
            // Pollers reuse a correlator across their receivers and polls (10 in all
            // on jxta-0.1g): found by reference, the key is copied only when new, not
            // copied and freed again for nearly every PING.
            let open = OpenPair {
                pair: pair.clone(),
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
            };
            let open_c = |e: &OpenCorrelator| e.is(correlator_hash, c);
            match self.open_correlators.find_mut(correlator_hash, open_c) {
                Some(e) => e.at.push(open),
                None => {
                    let e = OpenCorrelator {
                        hash: correlator_hash,
                        correlator: Arc::clone(c),
                        at: vec![open],
                    };
                    self.open_correlators
                        .insert_unique(correlator_hash, e, |e| e.hash);
                }
            }
            self.open_correlator_entries += 1;
        }
        let (start, ping_bytes) = (s.start, s.framed_bytes);
        let ping_correlator_bytes = u64::from(doc.correlator_bytes);
        let mut legs = self.legs_buffer();
        first_leg(&mut legs, &mut self.peers, seen, [poller_id, receiver_id]);
        let poller_name = name;
        let Some(state) = self.pairs.slot_mut(slot) else {
            return;
        };
        let queue = state.outstanding.queue(&mut self.spare_queues);
        queue.push_back(Pending {
            seq,
            start,
            correlator,
            poller_name,
            ping_bytes,
            ping_correlator_bytes,
            relay_seen: false,
            finished_hash,
            fresh,
            candidate: None,
            legs,
        });
        self.live += 1;
        self.live_seqs.add(seq);
        self.deadlines.push(Deadline {
            at: start.saturating_add(self.cfg.timeout_ns),
            seq,
            pair,
        });
        // Answered PINGs leave their heap entries behind; rebuild when they dominate
        // so the heap stays proportional to what is outstanding.
        if self.deadlines.len() > 2 * self.live + 1024 {
            self.rebuild_deadlines();
        }
        if self.open_correlator_entries > 2 * self.live + 1024 {
            self.rebuild_open_correlators();
        }
    }

    /// Drops the entries of PINGs no longer outstanding. A pass over the entries, not
    /// over the pairs (as [`Self::rebuild_deadlines`]): with 100,000 mostly idle pairs, a
    /// scan of them at every rebuild (every ~1,000 PINGs) was ~970 M instructions of
    /// peers10k-1g. Every outstanding PING with a correlator has its entry (`on_ping`
    /// adds it), so what stays is what a scan would find, in the PINGs' order.
    fn rebuild_open_correlators(&mut self) {
        let pairs = &self.pairs;
        let mut entries = 0;
        self.open_correlators.retain(
            |OpenCorrelator {
                 correlator: c, at, ..
             }| {
                keep_open(at, |e| {
                    let i = pairs.find_at(e.slot, &e.pair)?;
                    let st = pairs.slot(i)?;
                    let open = st
                        .outstanding
                        .iter()
                        .any(|p| p.correlator.as_deref().is_some_and(|p| same_text(p, c)));
                    open.then(|| u32::try_from(i).unwrap_or(u32::MAX))
                });
                entries += at.len();
                !at.is_empty()
            },
        );
        self.open_correlator_entries = entries;
    }

    /// The pair of the outstanding PING with correlator `c` that `receiver` may have
    /// answered (it named `receiver`, or no receiver at all).
    fn open_pair_of(&self, c: &str, receiver: &PeerKey) -> Option<PairKey> {
        let hash = Remembered::correlator_hash(&self.pairs.hasher, c.as_bytes());
        let open = self.open_correlators.find(hash, |e| e.is(hash, c))?;
        open.at.iter().find_map(|e| {
            let pair = &e.pair;
            let fits = pair.1 == *receiver || pair.1.is_unknown();
            let found = self.pairs.find_at(e.slot, pair);
            let open = found.and_then(|i| self.pairs.slot(i)).is_some_and(|st| {
                st.outstanding
                    .iter()
                    .any(|p| p.correlator.as_deref() == Some(c))
            });
            (fits && open).then(|| pair.clone())
        })
    }

    /// Evicts the least recently active eighth of the pairs at once: under a flood of
    /// new pairs one scan then serves many insertions, instead of one scan each.
    fn evict_pair(&mut self) {
        let n = (self.pairs.len() / 8).max(1);
        // Folded pairs go first, and are not evictions; the least recently active make
        // up the eighth, so that every scan still frees that many.
        let freed = self.pairs.sweep(self.pairs.now);
        self.expiry.pairs_freed += freed as u64;
        if freed >= n {
            return;
        }
        let n = n - freed;
        let mut by_age: Vec<(UnixNanos, PairKey)> = self
            .pairs
            .iter()
            .map(|(k, st)| (st.last_active, k.clone()))
            .collect();
        if n < by_age.len() {
            by_age.select_nth_unstable_by(n, |a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        }
        by_age.truncate(n);
        for (_, k) in by_age {
            if let Some(st) = self.pairs.remove(&k) {
                for p in st.outstanding.iter() {
                    self.live_seqs.remove(p.seq);
                }
                self.live -= st.outstanding.len();
                self.anomalies.evicted_outstanding += st.outstanding.len() as u64;
                self.anomalies.evicted_pairs += 1;
            }
        }
    }

    /// Drops the entries of PINGs no longer outstanding. A pass over the heap, not over
    /// the pairs: with 100,000 mostly idle pairs a scan of the pairs every thousand
    /// PINGs was 9 % of the run (perf, 10,000 peers × 10 buddies).
    fn rebuild_deadlines(&mut self) {
        let mut deadlines = std::mem::take(&mut self.deadlines);
        let (live_seqs, pairs) = (&mut self.live_seqs, &self.pairs);
        deadlines.retain(|&Deadline { seq, ref pair, .. }| {
            if !live_seqs.maybe(seq) {
                return false;
            }
            let held = pairs
                .get(pair)
                .is_some_and(|st| st.outstanding.iter().any(|p| p.seq == seq));
            // As at expiry: a bit left set for a PING gone from its pair is cleared
            // with its entry, whose going would otherwise leave it set for good.
            if !held {
                live_seqs.remove(seq);
            }
            held
        });
        self.deadlines = deadlines;
    }

    /// Whether PING `seq` of `pair` is outstanding: its bit first, which rules out
    /// most of the answered without the pair's look-up.
    fn outstanding(&self, seq: u64, pair: &PairKey) -> bool {
        self.live_seqs.maybe(seq)
            && self
                .pairs
                .get(pair)
                .is_some_and(|st| st.outstanding.iter().any(|p| p.seq == seq))
    }

    fn on_pong(&mut self, seen: &mut Seen<'_>, out: &mut Vec<Transaction>) {
        let (doc, s) = (seen.document(), seen.sighting());
        let mut parsed = None;
        let receiver_id = end_id(s.src_peer.as_ref(), doc, &mut parsed, s.hop_src.as_ref());
        let name = self.peers.share_name(doc.name.as_deref());
        let receiver_id = self.peers.intern_named(receiver_id, name.as_ref());
        let poller_id = self.intern(s.dst_peer.as_ref().or(s.hop_dst.as_ref()));
        let in_transit = matches!((&s.hop_dst, &poller_id), (Some(h), Some(p)) if h != p);
        let poller = poller_id.map_or(PeerKey::UNKNOWN, PeerKey::Id);
        let receiver = PeerKey::named(receiver_id.as_ref(), name.as_ref());
        let mut pair = (poller, receiver);
        // A multicast PONG names no poller by design; anywhere else that is missing
        // identity.
        let multicast = s.transport == Transport::Udp;
        if pair.1.is_unknown() || (pair.0.is_unknown() && !multicast) {
            self.anomalies.unidentified += 1;
        }
        // A PONG that names no poller (multicast): its correlator says which PING.
        if pair.0.is_unknown() {
            if let Some(found) = doc
                .correlator
                .as_deref()
                .and_then(|c| self.open_pair_of(c, &pair.1))
            {
                pair = found;
            }
        }
        let mut hash = self.pairs.hash(&pair);
        let mut found = self.pairs.find_hashed(hash, &pair);
        // A PING that named no receiver is keyed (poller, Unknown): let the PONG find it.
        if found.is_none() {
            let fallback = (pair.0.clone(), PeerKey::UNKNOWN);
            let fallback_hash = self.pairs.hash(&fallback);
            if let Some(i) = self.pairs.find_hashed(fallback_hash, &fallback) {
                (pair, found, hash) = (fallback, Some(i), fallback_hash);
            }
        }
        let pong = Pong {
            receiver_id,
            name,
            in_transit,
        };
        let Some((slot, state)) = found.and_then(|i| Some((i, self.pairs.slot_mut(i)?))) else {
            self.count_pong(doc, s);
            self.anomalies.unsolicited_pong += 1;
            return;
        };
        let at = PairAt { pair, slot, hash };
        state.last_active = state.last_active.max(s.stop);
        match &doc.correlator {
            Some(c) => {
                if let Some(i) = state
                    .outstanding
                    .iter()
                    .position(|p| p.correlator.as_deref() == Some(c.as_str()))
                {
                    self.matched(at, i, pong, seen, MatchMethod::Correlator, out);
                    return;
                }
                // Hashed from the pair's hash the look-up took, and looked up once to
                // read and change: the pair and the correlator were hashed twice more.
                let hasher = &self.pairs.hasher;
                let correlator_hash = Remembered::correlator_hash(hasher, c.as_bytes());
                let entry = Remembered::hash_of_pair(at.hash, correlator_hash);
                debug_assert_eq!(
                    entry,
                    Remembered::hash_with(hasher, &at.pair, correlator_hash)
                );
                let known = self.finished.outcome_mut(entry, &at.pair, c);
                let outcome = known.as_deref().copied();
                if outcome == Some(Finished::AnsweredInTransit) && !in_transit {
                    // The delivery leg of a PONG already finalised from its transit leg.
                    self.anomalies.relayed_sightings += 1;
                    if let Some(f) = known {
                        *f = Finished::Answered;
                    }
                    return;
                }
                self.count_pong(doc, s);
                match outcome {
                    Some(Finished::Answered) | Some(Finished::AnsweredInTransit) => {
                        self.anomalies.duplicate_pong += 1
                    }
                    Some(Finished::TimedOut) => {
                        self.anomalies.late_pong += 1;
                        if let Some(st) = self.pairs.slot_mut(at.slot) {
                            st.timed_out_unanswered = st.timed_out_unanswered.saturating_sub(1);
                        }
                    }
                    None => self.anomalies.unknown_correlator += 1,
                }
            }
            None => {
                if !in_transit {
                    if let Some(i) = state.outstanding.iter().position(|p| p.candidate.is_some()) {
                        self.matched(at, i, pong, seen, MatchMethod::Order, out);
                        return;
                    }
                    if state.transit_finalised > 0 {
                        state.transit_finalised -= 1;
                        self.anomalies.relayed_sightings += 1;
                        return;
                    }
                }
                if let Some(i) = state.outstanding.iter().position(|p| p.candidate.is_none()) {
                    self.matched(at, i, pong, seen, MatchMethod::Order, out);
                    return;
                }
                let late = state.timed_out_unanswered > 0;
                if late {
                    state.timed_out_unanswered -= 1;
                }
                self.count_pong(doc, s);
                if late {
                    self.anomalies.late_pong += 1;
                } else {
                    self.anomalies.pong_without_ping += 1;
                }
            }
        }
    }

    fn count_pong(&mut self, doc: &Document, s: &Sighting) {
        self.overhead
            .pong
            .add(doc.correlator_bytes, doc.document_bytes, s);
        if doc.status.is_none() && doc.status_text.is_some() {
            self.anomalies.unknown_status += 1;
        }
    }

    /// The PONG answers outstanding PING `i` of the pair `at`.
    fn matched(
        &mut self,
        at: PairAt,
        i: usize,
        pong: Pong,
        seen: &mut Seen<'_>,
        method: MatchMethod,
        out: &mut Vec<Transaction>,
    ) {
        let PairAt { pair, slot, .. } = at;
        let Some(state) = self.pairs.slot_mut(slot) else {
            return;
        };
        let Some(p) = state.outstanding.get_mut(i) else {
            return;
        };
        if p.candidate.is_some() {
            if pong.in_transit {
                // Another transit hop of a PONG already matched.
                self.anomalies.relayed_sightings += 1;
                return;
            }
            // Delivery leg: the candidate's details, the delivery's stop.
            self.anomalies.relayed_sightings += 1;
            let Some(mut p) = state.outstanding.remove(i) else {
                return;
            };
            settle(state, &mut self.spare_queues);
            self.live -= 1;
            self.live_seqs.remove(p.seq);
            let Some(mut c) = p.candidate.take() else {
                return;
            };
            let stop = seen.sighting().stop;
            if c.legs.len() < MAX_LEGS {
                let ends = [key_id(&pair.0), pong.receiver_id.as_ref()];
                c.legs.push(leg_of(&mut self.peers, seen, ends));
            }
            let finishing = p.finishing();
            self.answered(&pair, Some(slot), &mut p, &mut c, Some(stop), out);
            if let Some(f) = finishing {
                self.remember(pair, f, Finished::Answered);
            }
            return;
        }
        let (doc, s) = (seen.document(), seen.sighting());
        self.count_pong(doc, s);
        let (stop, receiver_status, pong_bytes) = (s.stop, doc.status, s.framed_bytes);
        let pong_correlator_bytes = u64::from(doc.correlator_bytes);
        let mut legs = self.legs_buffer();
        let ends = [key_id(&pair.0), pong.receiver_id.as_ref()];
        first_leg(&mut legs, &mut self.peers, seen, ends);
        // The PONG's ID and name are moved into its candidate: cloned, and the PONG's
        // own dropped after, they cost two reference counts' increments and decrements.
        let Pong {
            receiver_id,
            name,
            in_transit,
        } = pong;
        let receiver_name = name.or_else(|| {
            receiver_id
                .as_ref()
                .and_then(|id| self.peers.name(id).cloned())
        });
        let mut candidate = Candidate {
            stop,
            receiver_name,
            receiver_id,
            receiver_status,
            pong_bytes,
            pong_correlator_bytes,
            method,
            legs,
        };
        let Some(state) = self.pairs.slot_mut(slot) else {
            return;
        };
        if in_transit {
            if let Some(p) = state.outstanding.get_mut(i) {
                p.candidate = Some(Box::new(candidate));
            }
            return;
        }
        // Answered where `remove` put it: moved out of its `Option`, it was copied
        // again (240 bytes, a `memcpy` call).
        let mut removed = state.outstanding.remove(i);
        let Some(p) = removed.as_mut() else {
            return;
        };
        settle(state, &mut self.spare_queues);
        self.live -= 1;
        self.live_seqs.remove(p.seq);
        let finishing = p.finishing();
        self.answered(&pair, Some(slot), p, &mut candidate, None, out);
        if let Some(f) = finishing {
            self.remember(pair, f, Finished::Answered);
        }
    }

    /// Adds the ok record (stop: `stop` if given, else the candidate's) to `out` and
    /// feeds presence; none when the PONG is stamped before the PING (a clock step: its
    /// RTT and time are meaningless, so it is counted instead). What the record keeps
    /// is taken out of `p` and `c`: the two, and the record in an `Option`, passed by
    /// value were copied (~50 instructions each a transaction).
    fn answered(
        &mut self,
        pair: &PairKey,
        slot: Option<usize>,
        p: &mut Pending,
        c: &mut Candidate,
        stop: Option<UnixNanos>,
        out: &mut Vec<Transaction>,
    ) {
        let stop = stop.unwrap_or(c.stop);
        if stop < p.start {
            self.anomalies.clock_steps += 1;
            tracing::debug!(
                start = p.start,
                stop,
                "PONG stamped before its PING: clock step, not a transaction"
            );
            return;
        }
        let (poller_name, receiver_name) = self.names(pair, p, c.receiver_name.take());
        let receiver_id = c.receiver_id.take().or_else(|| key_id(&pair.1).cloned());
        let slot = slot.or_else(|| self.pairs.find(pair));
        // The record is written once with the PONG's fields: a record without them,
        // overwritten field by field (its default cause and receiver ID dropped, the
        // poller ID cloned for presence), cost ~50 instructions a transaction more.
        // Pushed first and read back for the explanation and presence: built aside,
        // it was copied into `out` by a `memcpy` call.
        out.push(Transaction {
            start: p.start,
            stop: Some(stop),
            poller_name,
            poller_id: key_id(&pair.0).cloned(),
            receiver_name,
            receiver_id,
            receiver_status: c.receiver_status,
            status: TxStatus::Ok,
            correlator: p.correlator.take(),
            match_method: Some(c.method),
            ping_bytes: p.ping_bytes,
            pong_bytes: Some(c.pong_bytes),
            correlator_overhead_bytes: p.ping_correlator_bytes + c.pong_correlator_bytes,
            cause: cause::Cause::default(),
        });
        let Some(t) = out.last_mut() else {
            return;
        };
        if let Some(st) = slot.and_then(|i| self.pairs.slot_mut(i)) {
            let key_receiver = match &pair.1 {
                PeerKey::Id(id) => Some(id),
                _ => None,
            };
            cause::explain_into(
                &p.legs,
                &c.legs,
                t.receiver_id.as_ref(),
                key_receiver,
                &mut st.history,
                &mut t.cause,
            );
        }
        self.spare_legs([&mut p.legs, &mut c.legs]);
        if let Some(status) = c.receiver_status {
            let key = PeerKey::new(t.receiver_id.as_ref(), t.receiver_name.as_deref());
            self.presence.observe(
                stop,
                &key,
                t.receiver_id.as_ref(),
                t.receiver_name.as_deref(),
                status,
                t.poller_id.as_ref(),
                t.poller_name.as_deref(),
            );
        }
    }

    /// The record's poller and receiver names: the PING's and `receiver_name` (the
    /// PONG's) when given, else what is known of the PING's poller and receiver IDs
    /// (its `pair`'s), so that a name is not copied only to be replaced. The poller's
    /// is taken out of `p`.
    fn names(
        &self,
        pair: &PairKey,
        p: &mut Pending,
        receiver_name: Option<Arc<str>>,
    ) -> (Option<Arc<str>>, Option<Arc<str>>) {
        let known = |k: &PeerKey| key_id(k).and_then(|id| self.peers.name(id).cloned());
        let poller_name = p.poller_name.take().or_else(|| known(&pair.0));
        (poller_name, receiver_name.or_else(|| known(&pair.1)))
    }

    /// A record without PONG (timeout/open) of a PING of `pair`, names filled from what
    /// is known. What it keeps is taken out of `p`.
    fn record(
        &self,
        pair: &PairKey,
        p: &mut Pending,
        stop: Option<UnixNanos>,
        status: TxStatus,
    ) -> Transaction {
        let (poller_name, receiver_name) = self.names(pair, p, None);
        Transaction {
            start: p.start,
            stop,
            poller_name,
            poller_id: key_id(&pair.0).cloned(),
            receiver_name,
            receiver_id: key_id(&pair.1).cloned(),
            receiver_status: None,
            status,
            correlator: p.correlator.take(),
            match_method: None,
            ping_bytes: p.ping_bytes,
            pong_bytes: None,
            correlator_overhead_bytes: p.ping_correlator_bytes,
            cause: cause::Cause::default(),
        }
    }
}

#[cfg(test)]
mod pair_table_tests {
    use super::*;

    /// Peer `n`'s ID (`uuid-` form).
    fn id(n: u8) -> Option<PeerId> {
        PeerId::parse(&format!("urn:jxta:uuid-{n:02X}03"))
    }

    /// A PING or a PONG (online) from `name` with correlator `c1`.
    fn c1_doc(kind: Kind, name: &str) -> Document {
        Document {
            kind,
            name: Some(name.into()),
            correlator: Some("c1".into()),
            status: (kind == Kind::Pong).then_some(Status::Online),
            ..Default::default()
        }
    }

    /// A message at `t` from peer `src` to peer `dst`, sent to each other directly.
    fn seen(t: u64, src: u8, dst: u8) -> Sighting {
        sighting_at(t, [id(src), id(dst)], [id(src), id(dst)])
    }

    /// A sighting of a message over TCP at `t` (10 ns long) between `ends`, through
    /// `hops`, of a 1,000-byte frame holding a 900-byte message.
    fn sighting_at(t: u64, ends: [Option<PeerId>; 2], hops: [Option<PeerId>; 2]) -> Sighting {
        let [src_peer, dst_peer] = ends;
        let [hop_src, hop_dst] = hops;
        Sighting {
            start: t,
            stop: t + 10,
            src_peer,
            dst_peer,
            hop_src,
            hop_dst,
            framed_bytes: 1000,
            message_bytes: 900,
            transport: Transport::Tcp,
            wire: Default::default(),
        }
    }

    /// A record's IDs, read from its pair's key since [`Pending`] no longer keeps them,
    /// are those the PING's documents gave: answered directly, through the fallback
    /// pair of a PING that named no receiver (the PONG's ID), timed out, open at the
    /// end, keyed by name alone, relayed (delivery leg and transit candidate finalised
    /// at its deadline, boxed), late, and a poller reusing its correlator after a
    /// restart; the names known of the IDs fill the rest.
    #[test]
    fn a_records_ids_are_its_pings() {
        let doc = |kind, name: &str, c: Option<&str>| Document {
            correlator: c.map(Into::into),
            ..c1_doc(kind, name)
        };
        let no_receiver = |t, src| sighting_at(t, [id(src), None], [id(src), None]);
        let by_name = |t| sighting_at(t, [None, None], [None, None]);
        let via = |t, src, dst, hops: [u8; 2]| {
            sighting_at(t, [id(src), id(dst)], [id(hops[0]), id(hops[1])])
        };
        let mut m = Matcher::new(MatcherConfig::default());
        let mut out = Vec::new();
        // Bob named by a PONG of his first, for the timeout's receiver name below.
        m.observe(
            &doc(Kind::Ping, "alice", Some("a")),
            &seen(0, 1, 2),
            &mut out,
        );
        m.observe(&doc(Kind::Pong, "bob", Some("a")), &seen(5, 2, 1), &mut out);
        // Order mode, no receiver named: the PONG finds the (alice, unknown) pair.
        m.observe(
            &doc(Kind::Ping, "alice", None),
            &no_receiver(100, 1),
            &mut out,
        );
        m.observe(&doc(Kind::Pong, "carol", None), &seen(105, 3, 1), &mut out);
        // Timed out, then its PONG late; the poller restarts and reuses "t".
        m.observe(
            &doc(Kind::Ping, "alice", Some("t")),
            &seen(200, 1, 2),
            &mut out,
        );
        m.advance(200 + 20_000_000_000, &mut out);
        m.observe(
            &doc(Kind::Pong, "bob", Some("t")),
            &seen(20_000_001_000, 2, 1),
            &mut out,
        );
        m.observe(
            &doc(Kind::Ping, "alice2", Some("t")),
            &seen(40_000_000_000, 1, 2),
            &mut out,
        );
        m.observe(
            &doc(Kind::Pong, "bob", Some("t")),
            &seen(40_000_000_005, 2, 1),
            &mut out,
        );
        // Relayed: transit then delivery leg, and a transit candidate never delivered.
        let t = 50_000_000_000;
        for (kind, name, c, s) in [
            (Kind::Ping, "alice", "r", via(t, 1, 2, [1, 9])),
            (Kind::Ping, "alice", "r", via(t + 1, 1, 2, [9, 2])),
            (Kind::Pong, "bob", "r", via(t + 2, 2, 1, [2, 9])),
            (Kind::Pong, "bob", "r", via(t + 3, 2, 1, [9, 1])),
            (Kind::Ping, "alice", "s", via(t + 4, 1, 2, [1, 9])),
            (Kind::Pong, "bob", "s", via(t + 5, 2, 1, [2, 9])),
        ] {
            m.observe(&doc(kind, name, Some(c)), &s, &mut out);
        }
        m.advance(t + 30_000_000_000, &mut out);
        // Keyed by name alone, and one with IDs, open at the end.
        m.observe(
            &doc(Kind::Ping, "x", None),
            &by_name(t + 31_000_000_000),
            &mut out,
        );
        m.observe(
            &doc(Kind::Ping, "alice", Some("o")),
            &seen(t + 32_000_000_000, 1, 3),
            &mut out,
        );
        m.finish(t + 33_000_000_000, &mut out);

        let got: Vec<_> = out
            .iter()
            .map(|t| {
                let name = |n: &Option<Arc<str>>| n.as_deref().map(str::to_owned);
                (
                    t.status,
                    t.poller_id.clone(),
                    name(&t.poller_name),
                    t.receiver_id.clone(),
                    name(&t.receiver_name),
                )
            })
            .collect();
        let (alice, alice2, bob, carol) =
            (Some("alice"), Some("alice2"), Some("bob"), Some("carol"));
        let want = [
            (TxStatus::Ok, id(1), alice, id(2), bob),
            (TxStatus::Ok, id(1), alice, id(3), carol),
            (TxStatus::Timeout, id(1), alice, id(2), bob),
            (TxStatus::Ok, id(1), alice2, id(2), bob),
            (TxStatus::Ok, id(1), alice, id(2), bob),
            (TxStatus::Ok, id(1), alice, id(2), bob),
            (TxStatus::Open, None, Some("x"), None, None),
            (TxStatus::Open, id(1), alice, id(3), carol),
        ]
        .map(|(st, p, pn, r, rn)| (st, p, pn.map(str::to_owned), r, rn.map(str::to_owned)));
        assert_eq!(got, want);
        assert_eq!(m.anomalies().late_pong, 1);
        assert_eq!(m.anomalies().relayed_sightings, 2);
    }

    /// A first leg written over a spared buffer's old one (the sighting's notes swapped
    /// in, or copied from a borrowed sighting) is the leg built afresh, with notes and
    /// without, over old legs with notes and without, and the explanation made of it
    /// is the same; the sighting keeps the old leg's lists, its cells let go.
    #[test]
    fn a_leg_written_over_a_spared_one_is_a_fresh_one() {
        let r = cause::Repair {
            dir: 1,
            first: 3,
            at: 9,
            bytes: 40,
        };
        let full = cause::WireNotes {
            conn: Some((7, 1)),
            repairs: vec![r, r],
            opened_at: Some(1),
            queued_bytes: 30,
            queued_ns: 4,
            stalls: vec![r],
            activity: vec![cause::Activity {
                dir: 0,
                start: 2,
                stop: 8,
            }],
            end: Some(cause::EndCell::default()),
            delivery: Some(cause::delivery_cell()),
        };
        let none = cause::WireNotes::default();
        let mut m = Matcher::new(MatcherConfig::default());
        let (poller, receiver) = (id(1), id(2));
        let ends = [poller.as_ref(), receiver.as_ref()];
        for (old_wire, wire) in [
            (&full, &none),
            (&none, &full),
            (&full, &full),
            (&none, &none),
        ] {
            for hop_src in [id(1), id(3), None] {
                let mut s = sighting_at(5, [id(1), id(2)], [hop_src, id(2)]);
                s.wire = wire.clone();
                let mut doc = c1_doc(Kind::Ping, "alice");
                let fresh = leg_of(&mut m.peers, &mut Seen::Borrowed(&doc, &s), ends);
                assert_eq!(fresh.wire, *wire);
                let old = || Leg {
                    start: 1,
                    stop: 2,
                    hop_src: id(9),
                    hop_dst: None,
                    wire: old_wire.clone(),
                };
                // A buffer spared as `answered` leaves it, and a grown one.
                m.spare_legs.clear();
                m.spare_legs([&mut vec![old()], &mut Vec::new()]);
                let mut spared = m.legs_buffer();
                assert_eq!(spared.len(), 1);
                let mut grown = vec![old(), old()];
                let mut owned = s.clone();
                first_leg(
                    &mut spared,
                    &mut m.peers,
                    &mut Seen::Owned(&mut doc, &mut owned),
                    ends,
                );
                first_leg(
                    &mut grown,
                    &mut m.peers,
                    &mut Seen::Borrowed(&doc, &s),
                    ends,
                );
                let mut empty = Vec::new();
                first_leg(
                    &mut empty,
                    &mut m.peers,
                    &mut Seen::Borrowed(&doc, &s),
                    ends,
                );
                for legs in [&spared, &grown, &empty] {
                    assert_eq!(legs.as_slice(), std::slice::from_ref(&fresh));
                    let explained = |legs: &[Leg]| {
                        let mut h = History::default();
                        let first = cause::explain(legs, legs, None, None, &mut h);
                        (first, cause::explain(legs, legs, None, None, &mut h))
                    };
                    assert_eq!(explained(legs), explained(std::slice::from_ref(&fresh)));
                }
                // The swapped-out notes: the old leg's lists, for the next document's
                // notes to be written over, and no cell held.
                let left = &owned.wire;
                assert_eq!(left.repairs, old_wire.repairs);
                assert_eq!(left.activity, old_wire.activity);
                assert!(left.end.is_none() && left.delivery.is_none());
            }
        }
    }

    /// A PING keeps the hash its finished entry is stored under: the entry is found
    /// by its pair and correlator alone (hashed afresh) once the PONG answered it.
    #[test]
    fn a_pings_finished_hash_is_its_entrys() {
        let mut m = Matcher::new(MatcherConfig::default());
        let mut out = Vec::new();
        m.observe(&c1_doc(Kind::Ping, "alice"), &seen(0, 0xA1, 0xB0), &mut out);
        let (pair, hash) = m
            .pairs
            .iter()
            .find_map(|(pair, st)| {
                Some((pair.clone(), st.outstanding.iter().next()?.finished_hash))
            })
            .expect("the PING is outstanding");
        assert_eq!(hash, Remembered::hash(&m.pairs.hasher, &pair, b"c1"));
        m.observe(
            &c1_doc(Kind::Pong, "bob"),
            &seen(1_000, 0xB0, 0xA1),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            m.finished.get(&m.pairs.hasher, &pair, "c1").map(|(f, _)| f),
            Some(Finished::Answered)
        );
    }

    /// Equal correlators come back as one copy; a slot taken by another text (the
    /// same hash: a collision) gives that text's own copy, and the copies handed out
    /// before keep their text. Fails if a copy is made for every PING, or a slot's
    /// copy is handed out for a text that is not its own.
    #[test]
    fn shared_correlators_give_one_copy_of_each_text() {
        let mut shared = SharedCorrelators::default();
        let first = shared.get(7, "c1");
        assert!(Arc::ptr_eq(&first, &shared.get(7, "c1")));
        let other = shared.get(7, "c2");
        assert_eq!((&*first, &*other), ("c1", "c2"));
        let again = shared.get(7, "c1");
        assert_eq!(&*again, "c1");
        assert!(!Arc::ptr_eq(&again, &other));
        // Texts of one length, a prefix, the empty text and not ASCII, over more hashes
        // than slots: each text its own, and one copy while its slot keeps it.
        let texts = ["", "4611686018427387905", "4611686018427387906", "46", "é1"];
        for n in 0..4 * SHARED_CORRELATORS as u64 {
            let hash = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let text = texts[n as usize % texts.len()];
            let a = shared.get(hash, text);
            assert_eq!(&*a, text);
            assert!(Arc::ptr_eq(&a, &shared.get(hash, text)));
        }
        assert_eq!(shared.0.len(), SHARED_CORRELATORS);
        // A correlator longer than the shared ones: its own copy each time, none kept.
        let long = "7".repeat(SHARED_CORRELATOR_LEN + 1);
        let kept_before: Vec<Option<Arc<str>>> = shared.0.to_vec();
        let a = shared.get(3, &long);
        assert_eq!(&*a, long);
        assert!(!Arc::ptr_eq(&a, &shared.get(3, &long)));
        assert!(shared
            .0
            .iter()
            .zip(&kept_before)
            .all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                (x, y) => x.is_none() && y.is_none(),
            }));
        let short = "7".repeat(SHARED_CORRELATOR_LEN);
        assert!(Arc::ptr_eq(&shared.get(3, &short), &shared.get(3, &short)));
    }

    /// The transactions of PINGs that repeat a correlator (a poller's, poll after
    /// poll) share one copy of it, from owned and borrowed documents alike, and a
    /// document handed over keeps its correlator's string for the parser to refill.
    #[test]
    fn transactions_share_one_copy_of_each_correlator() {
        let mut m = Matcher::new(MatcherConfig::default());
        let mut out = Vec::new();
        for k in 0..4u64 {
            // Polls 2 s apart: past the repeat window, each a new transaction.
            let t = k * 2_000_000_000;
            let mut ping = c1_doc(Kind::Ping, "alice");
            let mut ping_at = seen(t, 0xA1, 0xB0);
            if k % 2 == 0 {
                m.observe(&ping, &ping_at, &mut out);
            } else {
                m.observe_taking(&mut ping, &mut ping_at, &mut out);
                assert_eq!(ping.correlator.as_deref(), Some("c1"));
            }
            m.observe(
                &c1_doc(Kind::Pong, "bob"),
                &seen(t + 1_000, 0xB0, 0xA1),
                &mut out,
            );
        }
        assert_eq!(out.len(), 4);
        let first = out[0].correlator.clone().expect("a correlator");
        for t in &out {
            assert_eq!(t.status, TxStatus::Ok);
            assert!(t
                .correlator
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &first)));
        }
        assert_eq!(&*first, "c1");
    }

    /// One random leg at `t` for the randomised tests: a document of one of `kinds`
    /// between two of `peers` peers, with a correlator but one time in `correlated`
    /// (one of 40, so they are reused), and now and then a relay's hop other than the
    /// ends.
    fn random_leg(
        next: &mut impl FnMut(u64) -> u64,
        t: u64,
        peers: u64,
        kinds: &[Kind],
        correlated: u64,
    ) -> (Document, Sighting) {
        let id = |n: u64| PeerId::parse(&format!("urn:jxta:uuid-{n:02X}03"));
        let (a, b) = (next(peers), next(peers));
        let kind = kinds[next(kinds.len() as u64) as usize];
        let doc = Document {
            kind,
            name: Some(format!("peer{a}")),
            correlator: (next(correlated) > 0).then(|| format!("c{}", next(40))),
            status: (kind == Kind::Pong).then_some(Status::Online),
            ..Default::default()
        };
        let mut hop = |end: u64| if next(6) == 0 { id(9) } else { id(end) };
        let hops = [hop(a), hop(b)];
        (doc, sighting_at(t, [id(a), id(b)], hops))
    }

    /// A PING whose correlator was not among the finished has its entry added without
    /// a look for it (`insert_new`, whose debug assertion looks all the same): over
    /// random traffic of three peers and four correlators, with relays, transits,
    /// duplicates, timeouts, late and reused correlators and a small cap, the entry is
    /// never there already, and both ways of adding one are taken.
    #[test]
    fn fresh_pings_are_not_remembered_yet() {
        let mut rng = crate::xorshift(0x2545_F491_4F6C_DD1D);
        let mut next = move |n: u64| rng() % n;
        let (mut ways, mut repeats) = ([0u64; 2], 0);
        for cap in [2, 5, 65_536] {
            let mut m = Matcher::new(MatcherConfig {
                remember_finished: cap,
                forget_finished_after_ns: (cap == 5).then_some(3_000_000_000),
                ..MatcherConfig::default()
            });
            let (mut out, mut t) = (Vec::new(), 0u64);
            for _ in 0..20_000 {
                t += [1_000_000, 50_000_000, 700_000_000, 4_000_000_000][next(4) as usize];
                let (doc, s) = random_leg(&mut next, t, 3, &[Kind::Ping, Kind::Pong], 5);
                m.observe(&doc, &s, &mut out);
            }
            m.finish(t, &mut out);
            assert!(out.len() > 1_000, "{} transactions", out.len());
            for (all, n) in ways.iter_mut().zip(m.remembered) {
                *all += n;
            }
            repeats += m.anomalies.duplicate_ping_correlator;
        }
        let [new, looked] = ways;
        assert!(
            new > 1_000 && looked > 1_000,
            "{new} added at once, {looked} looked for"
        );
        assert!(repeats > 100, "{repeats} repeats");
    }

    /// Correlators in the open table are told apart by their text, not their hash
    /// alone: texts that share a hash (forced here), prefixes of each other and the
    /// empty one each find their own entry, and a text under another hash none; and a
    /// text by address is only itself.
    #[test]
    fn open_correlators_found_by_hash_are_their_texts() {
        let texts = ["", "a", "ab", "abc", "b", "uuid:5"];
        let mut open = hashbrown::HashTable::new();
        for (n, t) in texts.iter().enumerate() {
            let e = OpenCorrelator {
                hash: 7,
                correlator: (*t).into(),
                at: vec![
                    OpenPair {
                        pair: key(0),
                        slot: 0,
                    };
                    n
                ],
            };
            open.insert_unique(7, e, |e: &OpenCorrelator| e.hash);
        }
        for (n, t) in texts.iter().enumerate() {
            let found = open.find(7, |e| e.is(7, t)).map(|e| e.at.len());
            assert_eq!(found, Some(n), "{t:?}");
            assert!(open.find(8, |e| e.is(8, t)).is_none(), "{t:?}");
        }
        assert!(open.find(7, |e| e.is(7, "abcd")).is_none());
        // One copy, two equal copies, a prefix sharing the copy's address, another text.
        let one: Arc<str> = Arc::from("uuid:5");
        let other: Arc<str> = Arc::from("uuid:5");
        assert!(same_text(&one, &one) && same_text(&one, &other));
        assert!(!same_text(&one, &one[..4]) && !same_text(&one, "uuid:6"));
    }

    /// `keep_open` keeps what comparing every entry with those kept before it keeps,
    /// in the same order, with each kept entry's slot the one `open` gave: few and many
    /// pairs (past the scan), repeats and pairs no longer open.
    #[test]
    fn keep_open_keeps_each_open_pair_once_in_order() {
        let mut rng = crate::xorshift(0x5851_F42D_4C95_7F2D);
        let mut next = move |n: u64| rng() % n;
        for pairs in [3u64, KEEP_OPEN_SCAN as u64, 40, 400] {
            let entries: Vec<OpenPair> = (0..3 * pairs)
                .map(|_| {
                    let n = next(pairs) as u32;
                    OpenPair {
                        pair: key(n),
                        slot: u32::MAX,
                    }
                })
                .collect();
            // Pair `n` is open in slot `1000 + n` unless `n` is a multiple of 7.
            let slot_of = |e: &OpenPair| {
                let n: u32 = match &e.pair.0 {
                    PeerKey::Other(Some(p)) => p.get(1..)?.parse().ok()?,
                    _ => return None,
                };
                (!n.is_multiple_of(7)).then_some(1000 + n)
            };
            let mut expected: Vec<(PairKey, u32)> = Vec::new();
            for e in &entries {
                if let Some(slot) = slot_of(e) {
                    if expected.iter().all(|(p, _)| *p != e.pair) {
                        expected.push((e.pair.clone(), slot));
                    }
                }
            }
            let mut at = entries.clone();
            keep_open(&mut at, slot_of);
            let got: Vec<(PairKey, u32)> = at.iter().map(|e| (e.pair.clone(), e.slot)).collect();
            assert_eq!(got, expected, "{pairs} pairs");
            assert!(
                pairs < 40 || expected.len() > KEEP_OPEN_SCAN,
                "past the scan"
            );
        }
    }

    fn key(n: u32) -> PairKey {
        (
            PeerKey::Other(Some(std::sync::Arc::from(format!("p{n}").as_str()))),
            PeerKey::UNKNOWN,
        )
    }

    /// Two copies of one ID interned in turn (two shards' copies) are both held by its
    /// slot and found there by their pointers, each coming back as the table's copy; a
    /// third copy takes the place of the one held longest.
    #[test]
    fn a_slot_holds_the_last_two_copies_of_its_id() {
        let text =
            "urn:jxta:uuid-59616261646162614E50472050325033000000000000000000000000000000AA03";
        let copy = || PeerId::parse(text).expect("a peer ID");
        let (a, b, c) = (copy(), copy(), copy());
        let mut peers = Peers::default();
        let table = peers.intern(Some(&a));
        let slot = peers.recent_slot(&a);
        let held = |peers: &Peers, x: &PeerId| {
            peers.recent[slot]
                .as_ref()
                .is_some_and(|r| r.seen.iter().any(|s| s.same_copy(x)))
        };
        for x in [&b, &a, &b, &a] {
            let got = peers.intern(Some(x));
            assert!(got
                .as_ref()
                .zip(table.as_ref())
                .is_some_and(|(g, t)| g.same_copy(t)));
        }
        assert!(held(&peers, &a) && held(&peers, &b));
        assert!(peers.intern(Some(&c)).is_some());
        assert!(held(&peers, &c) && held(&peers, &b) && !held(&peers, &a));
    }

    /// The text of the `n`th of the recent-slot tests' IDs.
    fn id_text(n: u64) -> String {
        format!("urn:jxta:uuid-{n:04X}03")
    }

    /// The recent-slot tests' first 1,000 IDs, parsed.
    fn thousand_ids() -> Vec<PeerId> {
        (0..1_000)
            .filter_map(|n| PeerId::parse(&id_text(n)))
            .collect()
    }

    /// An empty peer table holding at most `cap` IDs.
    fn capped_peers(cap: usize) -> Peers {
        Peers {
            cap,
            ..Peers::default()
        }
    }

    /// Interned through the recent slots, an ID (each parsed afresh, or a copy of one
    /// parsed before, as flows hand them over) comes back as the table's copy, the one
    /// a look-up in the table gives, or as itself past the cap; hops likewise, whether
    /// they are an end of the document or not. 1,000 IDs in 256 slots, so most look-ups
    /// find another ID in their slot.
    #[test]
    fn recent_ids_give_the_tables_copy() {
        let mut rng = crate::xorshift(0x0123_4567_89AB_CDEF);
        let mut next = move |n: u64| rng() % n;
        for cap in [300, 2_000] {
            let mut peers = capped_peers(cap);
            let parsed = thousand_ids();
            let (mut hits, mut past_cap) = (0, 0);
            for _ in 0..20_000 {
                let n = next(1_000);
                let id = match next(2) {
                    0 => parsed.get(n as usize).cloned(),
                    _ => PeerId::parse(&id_text(n)),
                };
                let Some(id) = id else {
                    panic!("{} does not parse", id_text(n));
                };
                let slot = peers.recent_slot(&id);
                hits += usize::from(peers.recently(slot, &id).is_some());
                // The document's ends, interned before its hops (the hop one of them, or
                // neither).
                let other = peers.intern(PeerId::parse(&id_text(next(1_000))).as_ref());
                let kept = match next(3) {
                    0 => peers.intern(Some(&id)),
                    1 => intern_hop(&mut peers, Some(&id), [other.as_ref(), None]),
                    _ => {
                        let own = peers.intern(PeerId::parse(id.as_str()).as_ref());
                        intern_hop(&mut peers, Some(&id), [other.as_ref(), own.as_ref()])
                    }
                };
                let Some(kept) = kept else {
                    panic!("{} interned as nothing", id.as_str());
                };
                assert_eq!(kept, id);
                match peers.ids.get_key_value(&id) {
                    Some((known, _)) => assert!(std::ptr::eq(known.as_str(), kept.as_str())),
                    None => past_cap += 1,
                }
            }
            assert!(hits > 1_000, "{hits} found in their slot");
            assert_eq!(
                past_cap > 0,
                cap < 1_000,
                "{past_cap} past the cap of {cap}"
            );
        }
    }

    /// Names learnt through the recent slots' places are a map's from ID to its last
    /// name: interning named and not, and hops (an end's copy or not), 1,000 IDs in
    /// 256 slots, each as its first copy or a fresh parse, under a cap and not. Fails
    /// if a slot's place is another ID's, or a name is learnt past the cap.
    #[test]
    fn names_learnt_through_recent_slots_are_a_maps() {
        let mut rng = crate::xorshift(0x2545_F491_4F6C_DD1D);
        let mut next = move |n: u64| rng() % n;
        for cap in [300, 2_000] {
            let mut peers = capped_peers(cap);
            let parsed = thousand_ids();
            let mut model: std::collections::HashMap<String, Option<String>> =
                std::collections::HashMap::new();
            let add = |model: &mut std::collections::HashMap<String, Option<String>>,
                       id: &PeerId| {
                if !model.contains_key(id.as_str()) && model.len() < cap {
                    model.insert(id.as_str().to_owned(), None);
                }
            };
            for _ in 0..30_000 {
                let pick = |n: u64, fresh: bool| match fresh {
                    false => parsed.get(n as usize).cloned(),
                    true => PeerId::parse(&id_text(n)),
                };
                let id = pick(next(1_000), next(2) == 0).expect("an ID");
                let kept = match next(4) {
                    0 | 1 => {
                        let name = peers.share_name(Some(&format!("n{}", next(5))));
                        let kept = peers.intern_named(Some(&id), name.as_ref());
                        add(&mut model, &id);
                        if let Some(known) = model.get_mut(id.as_str()) {
                            *known = name.as_deref().map(str::to_owned);
                        }
                        kept
                    }
                    2 => {
                        add(&mut model, &id);
                        peers.intern(Some(&id))
                    }
                    _ => {
                        let end = peers.intern(pick(next(1_000), next(2) == 0).as_ref());
                        if let Some(end) = &end {
                            add(&mut model, end);
                        }
                        if end.as_ref() != Some(&id) {
                            add(&mut model, &id);
                        }
                        intern_hop(&mut peers, Some(&id), [end.as_ref(), None])
                    }
                };
                assert_eq!(kept.as_ref(), Some(&id));
                let known = model.get(id.as_str()).cloned().flatten();
                assert_eq!(
                    peers.name(&id).map(|n| &**n),
                    known.as_deref(),
                    "{}",
                    id.as_str()
                );
            }
            for id in &parsed {
                let known = model.get(id.as_str()).cloned().flatten();
                assert_eq!(
                    peers.name(id).map(|n| &**n),
                    known.as_deref(),
                    "{}",
                    id.as_str()
                );
            }
            assert_eq!(peers.ids.len(), model.len().min(cap));
            assert_eq!(peers.named, model.values().filter(|n| n.is_some()).count());
        }
        // A hop given an end's copy, in a slot the other end took: kept unplaced, and
        // the next name is learnt at the place looked up.
        let mut peers = capped_peers(2_000);
        let ids = thousand_ids();
        let (a, b) = ids
            .iter()
            .enumerate()
            .find_map(|(i, a)| {
                let b = ids
                    .iter()
                    .skip(i + 1)
                    .find(|b| peers.recent_slot(b) == peers.recent_slot(a))?;
                Some((a.clone(), b.clone()))
            })
            .expect("two IDs of one slot");
        let name = |peers: &mut Peers, n: &str| peers.share_name(Some(n));
        let first = name(&mut peers, "first");
        peers.intern_named(Some(&a), first.as_ref());
        peers.intern(Some(&b));
        let hop = PeerId::parse(a.as_str());
        intern_hop(&mut peers, hop.as_ref(), [Some(&a), Some(&b)]);
        let slot = peers.recent_slot(&a);
        assert_eq!(peers.recently(slot, &a).map(|(_, at)| at), Some(UNPLACED));
        let second = name(&mut peers, "second");
        peers.intern_named(Some(&a), second.as_ref());
        assert_eq!(peers.name(&a).map(|n| &**n), Some("second"));
        assert_ne!(peers.recently(slot, &a).map(|(_, at)| at), Some(UNPLACED));
        assert_eq!(peers.named, 1);
    }

    /// The live sequence numbers: a bit cleared is never set again, every number
    /// not removed stays "maybe", and the words held span the numbers from the oldest
    /// not removed, whatever order they are removed in.
    #[test]
    fn live_seqs_keep_every_outstanding_and_drop_the_past() {
        let mut rng = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| rng() % n;
        let mut live = LiveSeqs::default();
        let mut outstanding: Vec<u64> = Vec::new();
        // Number 7 stays outstanding until 30,000; the others mostly go oldest first,
        // now and then one at random.
        let mut pinned = true;
        for seq in 0..50_000u64 {
            live.add(seq);
            if seq != 7 {
                outstanding.push(seq);
            }
            while outstanding.len() > next(8) as usize {
                let at = match next(10) {
                    0 => next(outstanding.len() as u64) as usize,
                    _ => 0,
                };
                let gone = outstanding.remove(at);
                live.remove(gone);
                live.remove(gone);
                assert!(!live.maybe(gone), "{gone} removed");
            }
            if seq == 30_000 {
                live.remove(7);
                pinned = false;
            }
            let pinned = pinned && seq >= 7;
            assert_eq!(live.maybe(7), pinned, "at {seq}");
            for &o in &outstanding {
                assert!(live.maybe(o), "{o} outstanding at {seq}");
            }
            let oldest = outstanding
                .iter()
                .copied()
                .chain(pinned.then_some(7))
                .min()
                .unwrap_or(seq + 1);
            let span = (seq + 1 - oldest) as usize;
            assert!(
                live.words() <= span / 64 + 2,
                "{} words at {seq}",
                live.words()
            );
        }
        for o in outstanding {
            live.remove(o);
        }
        assert!(live.words() <= 1, "{} words", live.words());
        // Numbers below the first kept were removed.
        assert!(!live.maybe(3));
    }

    /// A bit left set for a PING its pair no longer holds (a clear some path missed) is
    /// cleared when the PING's deadline comes, so the bits stay bounded by what is
    /// outstanding however long the run.
    #[test]
    fn a_missed_clear_is_cleared_at_the_deadline() {
        let mut next = |_: u64| 0;
        let mut m = Matcher::new(MatcherConfig::default());
        let mut out = Vec::new();
        let (ping, s) = random_leg(&mut next, 0, 1, &[Kind::Ping], 2);
        m.observe(&ping, &s, &mut out);
        let seq = m.next_seq - 1;
        assert!(m.live_seqs.maybe(seq));
        // The PING leaves its pair without its bit cleared.
        for (_, st) in m.pairs.iter_mut() {
            st.outstanding.take_all();
        }
        m.live -= 1;
        m.advance(m.cfg.timeout_ns + 1, &mut out);
        assert!(!m.live_seqs.maybe(seq), "stale bit kept");
        assert!(m.live_seqs.words() <= 1, "{} words", m.live_seqs.words());
        assert!(out.is_empty(), "{out:?}");
    }

    /// Over random traffic with small caps (pairs evicted, the oldest PING of a full
    /// pair dropped), relays, transits and timeouts, every outstanding PING's number
    /// is kept as live and the bits span no more than the PINGs since the oldest.
    #[test]
    fn live_seqs_follow_the_outstanding_pings() {
        let mut rng = crate::xorshift(0x2545_F491_4F6C_DD1D);
        let mut next = move |n: u64| rng() % n;
        let mut m = Matcher::new(MatcherConfig {
            max_pairs: 4,
            max_outstanding_per_pair: 3,
            ..MatcherConfig::default()
        });
        let (mut out, mut t) = (Vec::new(), 0u64);
        for step in 0..20_000 {
            t += [1_000_000, 50_000_000, 700_000_000, 4_000_000_000][next(4) as usize];
            let kinds = [Kind::Ping, Kind::Ping, Kind::Pong];
            let (doc, s) = random_leg(&mut next, t, 5, &kinds, 3);
            m.observe(&doc, &s, &mut out);
            let seqs: Vec<u64> = m
                .pairs
                .iter()
                .flat_map(|(_, st)| st.outstanding.iter().map(|p| p.seq))
                .collect();
            for &seq in &seqs {
                assert!(m.live_seqs.maybe(seq), "{seq} outstanding at step {step}");
            }
            let oldest = seqs.iter().min().copied().unwrap_or(m.next_seq);
            let span = (m.next_seq - oldest) as usize;
            assert!(
                m.live_seqs.words() <= span / 64 + 2,
                "{} words for {span} at step {step}",
                m.live_seqs.words()
            );
        }
        assert!(m.anomalies.evicted_pairs > 0 && m.anomalies.evicted_outstanding > 0);
        assert!(out.iter().any(|t| t.status == TxStatus::Timeout));
        assert!(out.iter().any(|t| t.status == TxStatus::Ok));
    }

    /// Pairs of equal keys (IDs parsed apart, the same names) hash alike; of 2,704
    /// distinct pairs (50 IDs, a name and the unknown peer, both ways round) no two
    /// hash alike, nor in the finished table's 32 bits with one correlator.
    #[test]
    fn pair_hashes_follow_equality() {
        let hasher = foldhash::fast::RandomState::default();
        let keys = || {
            let mut k: Vec<PeerKey> = (0..50u32)
                .filter_map(|n| PeerId::parse(&format!("urn:jxta:uuid-{n:04X}03")))
                .map(PeerKey::Id)
                .collect();
            assert_eq!(k.len(), 50);
            k.push(PeerKey::Other(Some(std::sync::Arc::from("alice"))));
            k.push(PeerKey::UNKNOWN);
            k
        };
        let (a, b) = (keys(), keys());
        let mut pair_hashes = std::collections::HashSet::new();
        let mut finished = std::collections::HashSet::new();
        for (x, x2) in a.iter().zip(&b) {
            for (y, y2) in a.iter().zip(&b) {
                let (p, q) = ((x.clone(), y.clone()), (x2.clone(), y2.clone()));
                assert_eq!(p, q);
                assert_eq!(pair_hash(&hasher, &p), pair_hash(&hasher, &q));
                assert_eq!(
                    Remembered::hash(&hasher, &p, b"c1"),
                    Remembered::hash(&hasher, &q, b"c1")
                );
                pair_hashes.insert(pair_hash(&hasher, &p));
                finished.insert(Remembered::hash(&hasher, &p, b"c1"));
            }
        }
        assert_eq!(pair_hashes.len(), 52 * 52);
        assert_eq!(finished.len(), 52 * 52);
    }

    /// `same_pair` is `==` on every mix of keys: the same copy, equal copies made
    /// apart (the out-of-line compare), names that are prefixes of each other or the
    /// text of an ID, the unknown peer; and a pair table finds a pair by any copy.
    #[test]
    fn same_pairs_are_equal_pairs() {
        use std::sync::Arc;
        let keys = || {
            let mut k: Vec<PeerKey> = [
                "urn:jxta:uuid-0A03",
                "urn:jxta:uuid-0A0303",
                "urn:jxta:uuid-0B03",
            ]
            .iter()
            .filter_map(|t| PeerId::parse(t))
            .map(PeerKey::Id)
            .collect();
            assert_eq!(k.len(), 3);
            for name in ["", "alice", "alice2", "urn:jxta:uuid-0A03"] {
                k.push(PeerKey::Other(Some(Arc::from(name))));
            }
            k.push(PeerKey::UNKNOWN);
            k
        };
        let (a, b) = (keys(), keys());
        let copies: Vec<&PeerKey> = a.iter().chain(&b).collect();
        let mut checked = 0;
        for &x in &copies {
            for &y in &copies {
                assert_eq!(x.same(y), x == y, "{x:?} against {y:?}");
                for &z in &copies {
                    let (p, q) = ((x.clone(), y.clone()), (x.clone(), z.clone()));
                    assert_eq!(same_pair(&p, &q), p == q, "{p:?} against {q:?}");
                    assert_eq!(same_pair(&q, &p), p == q);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 16 * 16 * 16);

        let mut t = PairTable::new(u64::MAX);
        for x in &a {
            for y in &a {
                t.get_or_default(&(x.clone(), y.clone()))
                    .timed_out_unanswered = 1;
            }
        }
        for (i, x) in b.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                let k = (x.clone(), y.clone());
                let slot = t.find(&k).expect("found by another copy");
                assert_eq!(t.slots[slot].0, (a[i].clone(), a[j].clone()));
                assert_eq!(t.find_at(slot as u32, &k), Some(slot));
            }
        }
    }

    /// Removal moves the last pair into the hole: every pair left must still be found
    /// with its own state, and the removed ones not at all.
    #[test]
    fn removal_keeps_every_other_pair_findable() {
        let mut t = PairTable::default();
        for n in 0..1000 {
            t.get_or_default(&key(n)).last_active = u64::from(n);
        }
        let removed: Vec<u32> = (0..1000).filter(|n| n % 3 == 0 || *n > 990).collect();
        for &n in removed.iter().rev().chain([5000].iter()) {
            let st = t.remove(&key(n));
            assert_eq!(
                st.map(|s| s.last_active),
                (n < 1000).then_some(u64::from(n))
            );
        }
        assert_eq!(t.len(), 1000 - removed.len());
        for n in 0..1000 {
            let found = t.get(&key(n)).map(|s| s.last_active);
            let expected = (!removed.contains(&n)).then_some(u64::from(n));
            assert_eq!(found, expected, "pair {n}");
        }
        // A pair inserted again starts afresh.
        assert_eq!(t.get_or_default(&key(3)).last_active, 0);
        assert_eq!(t.len(), 1001 - removed.len());
    }

    /// A pair found from a slot is the pair `find` finds, whatever the slot given: its
    /// own, another pair's after removals moved the pairs, one past the end, or the
    /// pair's while it is folded, removed or inserted again. Fails if the slot's pair
    /// is taken without its key compared, or a folded one is found there.
    #[test]
    fn a_pair_found_from_a_slot_is_the_one_find_finds() {
        let mut t = PairTable::new(100);
        let mut rng = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| rng() % n;
        let mut slots: Vec<u32> = (0..300u32)
            .map(|n| {
                let i = t.get_or_default_hashed(t.hash(&key(n)), &key(n));
                t.slots[i].1.last_active = next(1_000);
                i as u32
            })
            .collect();
        for round in 0..2_000u64 {
            t.now = round;
            let n = next(320) as u32;
            match next(4) {
                0 => {
                    t.remove(&key(n));
                }
                1 => {
                    let i = t.get_or_default_hashed(t.hash(&key(n)), &key(n));
                    t.slots[i].1.last_active = round;
                }
                _ => {}
            }
            for (n, &slot) in slots.iter().enumerate() {
                let k = key(n as u32);
                for at in [slot, next(400) as u32, u32::MAX] {
                    assert_eq!(t.find_at(at, &k), t.find(&k), "pair {n} from slot {at}");
                }
            }
            if let Some(i) = t.find(&key(n)) {
                if let Some(at) = slots.get_mut(n as usize) {
                    *at = i as u32;
                }
            }
        }
    }

    /// Both sides' legs buffers are taken from the transaction and kept emptied, one
    /// grown past a leg is freed, and no more than [`SPARE_QUEUES`] are kept; each
    /// is handed out again for a PING's or PONG's legs.
    #[test]
    fn spare_legs_keep_both_sides_up_to_the_bound() {
        let mut m = Matcher::new(MatcherConfig::default());
        // `vec!` of one element: capacity one, as `legs_buffer` makes them.
        let one = || vec![Leg::default()];
        let (mut ping, mut pong) = (one(), one());
        m.spare_legs([&mut ping, &mut pong]);
        assert!(ping.is_empty() && ping.capacity() == 0 && pong.capacity() == 0);
        assert_eq!(m.spare_legs.len(), 2);
        // Each with its old leg, to be written over (see `first_leg`).
        assert!(m
            .spare_legs
            .iter()
            .all(|v| v.len() == 1 && v.capacity() == 1));
        let (mut grown, mut pong) = (one(), one());
        grown.push(Leg::default());
        m.spare_legs([&mut grown, &mut pong]);
        assert!(grown.is_empty() && grown.capacity() == 0);
        assert_eq!(m.spare_legs.len(), 3);
        for _ in 0..SPARE_QUEUES {
            let (mut ping, mut pong) = (one(), one());
            m.spare_legs([&mut ping, &mut pong]);
        }
        assert_eq!(m.spare_legs.len(), SPARE_QUEUES);
        for _ in 0..SPARE_QUEUES {
            assert_eq!(m.legs_buffer().capacity(), 1);
        }
        assert!(m.spare_legs.is_empty());
    }

    /// Emptied buffers are kept for the next pair up to their bound, in number and in
    /// size, and taken before any new one is made; a buffer still holding a PING stays.
    #[test]
    fn spare_queues_are_bounded_and_reused() {
        let pending = || Pending {
            seq: 0,
            start: 0,
            correlator: None,
            poller_name: None,
            ping_bytes: 0,
            ping_correlator_bytes: 0,
            relay_seen: false,
            finished_hash: 0,
            fresh: false,
            candidate: None,
            legs: Vec::new(),
        };
        let mut spare = Vec::new();
        for n in 0..200 {
            let mut st = PairState::default();
            let cap = if n % 2 == 0 { 4 } else { 64 };
            st.outstanding.0 = Some(Box::new(VecDeque::with_capacity(cap)));
            settle(&mut st, &mut spare);
            assert!(st.outstanding.0.is_none());
        }
        assert_eq!(spare.len(), SPARE_QUEUES);
        assert!(spare
            .iter()
            .all(|q| q.is_empty() && q.capacity() <= SPARE_QUEUE_CAPACITY));
        let mut held = PairState::default();
        held.outstanding.push_back(pending(), &mut spare);
        assert_eq!(spare.len(), SPARE_QUEUES - 1);
        settle(&mut held, &mut spare);
        assert_eq!((held.outstanding.len(), spare.len()), (1, SPARE_QUEUES - 1));
        let mut empty = Vec::new();
        let mut fresh = PairState::default();
        fresh.outstanding.push_back(pending(), &mut empty);
        assert_eq!(fresh.outstanding.len(), 1);
    }

    /// Correlators of every length are found again, inline (up to 22 bytes) or boxed,
    /// and only by their own bytes.
    #[test]
    fn remembered_correlators_inline_and_boxed_are_found() {
        let mut r = Remembered::default();
        let h = foldhash::fast::RandomState::default();
        let names = [
            String::new(),
            "s00000000".to_string(),
            "x".repeat(22),
            "x".repeat(23),
            "é".repeat(30),
        ];
        for (i, c) in names.iter().enumerate() {
            let f = Finish {
                pair: key(1),
                correlator: Correlator::new(c),
                outcome: Finished::TimedOut,
                start: i as u64,
                hash: 0,
            };
            r.insert(&h, 100, f);
        }
        assert_eq!(r.len(), names.len());
        for (i, c) in names.iter().enumerate() {
            assert_eq!(
                r.get(&h, &key(1), c),
                Some((Finished::TimedOut, i as u64)),
                "{c}"
            );
            assert_eq!(r.get(&h, &key(2), c), None, "{c}");
            assert_eq!(r.get(&h, &key(1), &format!("{c}z")), None, "{c}");
        }
        assert!(matches!(
            Correlator::new(&names[2]),
            Correlator::Inline { len: 22, .. }
        ));
        assert!(matches!(Correlator::new(&names[3]), Correlator::Boxed(_)));
    }

    /// The ring of remembered correlators answers as a map with an insertion-order
    /// queue (what it replaced) does: same entries, same outcomes, the same ones
    /// forgotten, across the wrap of its u32 positions.
    #[test]
    fn remembered_correlators_behave_as_a_map_with_a_queue() {
        use std::collections::HashMap;
        const CAP: usize = 7;
        let mut ring = Remembered {
            popped: u32::MAX - 20,
            ..Remembered::default()
        };
        let h = foldhash::fast::RandomState::default();
        let mut map: HashMap<(PairKey, String), (Finished, UnixNanos)> = HashMap::new();
        let mut order: VecDeque<(PairKey, String)> = VecDeque::new();
        let outcomes = [
            Finished::Answered,
            Finished::AnsweredInTransit,
            Finished::TimedOut,
        ];
        let mut x = 12345u64;
        for step in 0..3000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pair = key((x >> 33) as u32 % 3);
            let corr = format!("c{}", (x >> 40) % 11);
            let outcome = outcomes[(x >> 50) as usize % 3];
            if step % 5 == 0 {
                ring.set_outcome(&h, &pair, &corr, Finished::Answered);
                if let Some(v) = map.get_mut(&(pair.clone(), corr.clone())) {
                    v.0 = Finished::Answered;
                }
            } else {
                let f = Finish {
                    pair: pair.clone(),
                    correlator: Correlator::new(&corr),
                    outcome,
                    start: step,
                    hash: 0,
                };
                ring.insert(&h, CAP, f);
                let k = (pair.clone(), corr.clone());
                if map.insert(k.clone(), (outcome, step)).is_none() {
                    order.push_back(k);
                    while order.len() > CAP {
                        let old = order.pop_front().expect("queued");
                        map.remove(&old);
                    }
                }
            }
            assert_eq!(ring.len(), map.len(), "step {step}");
            // An entry forgotten under a wrong hash would stay in the table.
            assert_eq!(ring.index.len(), ring.len(), "step {step}");
            for p in 0..3 {
                for c in 0..11 {
                    let (pair, corr) = (key(p), format!("c{c}"));
                    let want = map.get(&(pair.clone(), corr.clone())).copied();
                    assert_eq!(ring.get(&h, &pair, &corr), want, "step {step}: {p} {corr}");
                    let hash = Remembered::hash(&h, &pair, corr.as_bytes());
                    let outcome = ring.outcome_mut(hash, &pair, &corr).map(|f| *f);
                    assert_eq!(outcome, want.map(|w| w.0), "step {step}: {p} {corr}");
                }
            }
        }
        assert!(
            ring.popped < 3000,
            "the positions did not wrap: {}",
            ring.popped
        );
    }

    /// Kept up to the cap, the finished correlators get their room at the first entry
    /// (the default cap's, or a smaller cap's) and do not grow after; forgotten by age,
    /// they grow as the traffic needs. Room made with entries in (positions wrapped)
    /// keeps every entry found.
    #[test]
    fn remembered_correlators_make_room_once_when_kept_to_the_cap() {
        let id = |n: u32| PeerId::parse(&format!("urn:jxta:uuid-{n:04X}03"));
        let doc = |kind, c: u32| Document {
            kind,
            correlator: Some(format!("c{c}")),
            status: (kind == Kind::Pong).then_some(Status::Online),
            ..Default::default()
        };
        let seen = |t, src, dst| sighting_at(t, [id(src), id(dst)], [id(src), id(dst)]);
        let cases = [
            (65_536, None, 65_536..usize::MAX),
            (1 << 20, None, 65_536..1 << 20),
            (5, None, 5..64),
            (65_536, Some(3_000_000_000), 0..1_024),
        ];
        for (cap, forget, room) in cases {
            let mut m = Matcher::new(MatcherConfig {
                remember_finished: cap,
                forget_finished_after_ns: forget,
                ..MatcherConfig::default()
            });
            let mut out = Vec::new();
            assert_eq!(m.finished.capacity(), 0, "no room before the first entry");
            let mut first = None;
            for n in 0..300u32 {
                let t = u64::from(n) * 1_000_000;
                m.observe(&doc(Kind::Ping, n), &seen(t, 2 * n, 2 * n + 1), &mut out);
                m.observe(
                    &doc(Kind::Pong, n),
                    &seen(t + 1_000, 2 * n + 1, 2 * n),
                    &mut out,
                );
                let made = *first.get_or_insert(m.finished.capacity());
                assert!(room.contains(&made), "cap {cap}: room for {made}");
                if forget.is_none() && cap >= 300 {
                    assert_eq!(m.finished.capacity(), made, "cap {cap}: grew");
                    assert!(m.finished.index.capacity() >= cap.min(REMEMBERED_AHEAD));
                }
            }
            assert_eq!(out.len(), 300);
            assert_eq!(m.finished.len(), cap.min(300));
        }

        let mut ring = Remembered {
            popped: u32::MAX - 5,
            ..Remembered::default()
        };
        let h = foldhash::fast::RandomState::default();
        let finish = |c: u64| Finish {
            pair: key(0),
            correlator: Correlator::new(&format!("c{c}")),
            outcome: Finished::Answered,
            start: c,
            hash: 0,
        };
        for c in 0..20 {
            ring.insert(&h, 12, finish(c));
        }
        ring.reserve(4_096);
        assert!(ring.capacity() >= 4_096 && ring.index.capacity() >= 4_096);
        for c in 0..20 {
            let want = (c >= 8).then_some((Finished::Answered, c));
            assert_eq!(ring.get(&h, &key(0), &format!("c{c}")), want, "c{c}");
        }
    }

    /// The heap pops deadlines in the order of the `(deadline, seq, pair)` tuples under
    /// `Reverse` it held before: times with many ties, unique sequence numbers pushed in
    /// any order, pairs in any order, pushes and pops interleaved.
    #[test]
    fn deadlines_pop_in_the_order_of_their_tuples() {
        let mut rng = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        let (mut heap, mut tuples) = (BinaryHeap::new(), BinaryHeap::new());
        let check = |d: Option<Deadline>, t: Option<std::cmp::Reverse<_>>| {
            let d = d.map(|d| (d.at, d.seq, d.pair));
            assert_eq!(d, t.map(|std::cmp::Reverse(t)| t));
        };
        for i in 0..5_000u64 {
            // Odd multiplier modulo 2^32: each i its own number, not in order.
            let seq = i.wrapping_mul(2_654_435_761) % (1 << 32);
            let (at, pair) = (rng() % 50, key((rng() % 7) as u32));
            heap.push(Deadline {
                at,
                seq,
                pair: pair.clone(),
            });
            tuples.push(std::cmp::Reverse((at, seq, pair)));
            if rng().is_multiple_of(3) {
                check(heap.pop(), tuples.pop());
            }
        }
        while !tuples.is_empty() {
            check(heap.pop(), tuples.pop());
        }
        assert!(heap.is_empty());
    }

    /// `end_id` picks what the clones it replaced picked: the source peer, else the
    /// document's ID when it parses, else the hop; a reference to the sighting's own
    /// copy, or to the parsed one.
    #[test]
    fn a_documents_end_is_the_old_chains() {
        let (src, hop) = (id(1), id(2));
        let doc_id = format!("urn:jxta:uuid-{:02X}03", 3);
        for (src, hop) in [(&src, &hop), (&None, &hop), (&src, &None), (&None, &None)] {
            for peer_id in [None, Some(doc_id.clone()), Some("not an ID".to_string())] {
                let doc = Document {
                    peer_id,
                    ..Default::default()
                };
                let old = src
                    .clone()
                    .or_else(|| doc.peer_id.as_deref().and_then(PeerId::parse))
                    .or_else(|| hop.clone());
                let mut parsed = None;
                let new = end_id(src.as_ref(), &doc, &mut parsed, hop.as_ref());
                assert_eq!(new, old.as_ref());
                if let (Some(new), Some(src)) = (new, src) {
                    assert!(new.same_copy(src));
                }
            }
        }
    }

    /// A matcher's finished correlators hash a pair as its pair table does, made anew
    /// or after `finish`: the PING's entry is hashed from the table's hash of its pair
    /// (keys named, whose part is the hasher's, and keys by ID).
    #[test]
    fn finished_correlators_hash_pairs_as_the_pair_table() {
        let mut m = Matcher::new(MatcherConfig::default());
        for round in 0..2 {
            for n in 0..50 {
                let ids = (
                    PeerKey::new(id(n as u8).as_ref(), None),
                    PeerKey::new(id(n as u8 + 1).as_ref(), None),
                );
                for pair in [key(n), ids] {
                    let c = Remembered::correlator_hash(&m.pairs.hasher, b"c1");
                    assert_eq!(
                        Remembered::hash_of_pair(m.pairs.hash(&pair), c),
                        Remembered::hash(&m.pairs.hasher, &pair, b"c1"),
                        "round {round}"
                    );
                }
            }
            m.finish(0, &mut Vec::new());
        }
    }

    /// The queue and heap pop what one heap pops, `next` is the earliest held: times
    /// mostly rising with steps back (out of order) and ties, pushes, pops and retains
    /// interleaved, each side emptied at times.
    #[test]
    fn deadlines_in_a_queue_and_a_heap_pop_as_one_heap() {
        let mut rng = crate::xorshift(0x2545_F491_4F6C_DD1D);
        let (mut split, mut heap) = (Deadlines::default(), BinaryHeap::new());
        let mut pushed_to_heap = 0;
        let mut t = 1_000u64;
        for seq in 0..20_000u64 {
            t = match rng() % 10 {
                0 => t.saturating_sub(rng() % 300),
                1 => t,
                _ => t + rng() % 20,
            };
            let pair = key((rng() % 7) as u32);
            let before = split.heap.len();
            split.push(Deadline {
                at: t,
                seq,
                pair: pair.clone(),
            });
            pushed_to_heap += split.heap.len() - before;
            heap.push(Deadline { at: t, seq, pair });
            match rng() % 16 {
                0..=5 => assert_eq!(
                    split.pop().map(|d| (d.at, d.seq)),
                    heap.pop().map(|d| (d.at, d.seq))
                ),
                6 => {
                    let m = rng() % 5;
                    split.retain(|d| d.seq % 5 != m);
                    heap.retain(|d| d.seq % 5 != m);
                }
                7 if seq % 1_000 == 7 => {
                    while let Some(d) = heap.pop() {
                        assert_eq!(split.pop().map(|d| (d.at, d.seq)), Some((d.at, d.seq)));
                    }
                }
                _ => {}
            }
            assert_eq!(split.len(), heap.len());
            assert_eq!(split.next, heap.peek().map_or(UnixNanos::MAX, |d| d.at));
            assert_eq!(split.peek().map(|d| d.seq), heap.peek().map(|d| d.seq));
        }
        assert!(
            (1_000..19_000).contains(&pushed_to_heap),
            "{pushed_to_heap}"
        );
        while let Some(d) = heap.pop() {
            assert_eq!(split.pop().map(|d| (d.at, d.seq)), Some((d.at, d.seq)));
        }
        assert_eq!((split.pop().is_none(), split.next), (true, UnixNanos::MAX));
        split.push(Deadline {
            at: 5,
            seq: 0,
            pair: key(0),
        });
        split.clear();
        assert_eq!((split.len(), split.next), (0, UnixNanos::MAX));
    }

    /// A correlator of any length keeps its bytes, inline up to 22 of them, whichever
    /// copy takes it; `copy_ends` refuses what it cannot copy whole.
    #[test]
    fn correlators_of_every_length_keep_their_bytes() {
        for len in 0..=40 {
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
                .collect();
            let c = Correlator::new(&text);
            assert_eq!(c.as_bytes(), text.as_bytes(), "{len} bytes");
            assert_eq!(
                matches!(c, Correlator::Inline { .. }),
                len <= 22,
                "{len} bytes"
            );
        }
        let two_byte = "é".repeat(11);
        assert_eq!(Correlator::new(&two_byte).as_bytes(), two_byte.as_bytes());
        let mut to = [0u8; 10];
        assert!(!copy_ends::<4>(&mut to, b"123456789"), "longer than 2N");
        assert!(!copy_ends::<4>(&mut to[..5], b"123456"), "room too short");
        assert!(!copy_ends::<4>(&mut to, b"123"), "shorter than N");
        assert_eq!(to, [0; 10], "nothing copied when refused");
        assert!(copy_ends::<4>(&mut to, b"1234567"));
        assert_eq!(&to, b"1234567\0\0\0");
    }

    /// The kept hash costs no memory: it fills the entry's padding.
    #[test]
    fn remembered_hash_sits_in_padding() {
        assert_eq!(
            std::mem::size_of::<Finish>(),
            std::mem::size_of::<(PairKey, Correlator, Finished, UnixNanos)>()
        );
    }

    #[test]
    fn remembered_correlators_count_evictions_expire_from_the_front_and_shrink() {
        let mut ring = Remembered::default();
        let h = foldhash::fast::RandomState::default();
        let finish = |c: u64, start| Finish {
            pair: key(0),
            correlator: Correlator::new(&format!("c{c}")),
            outcome: Finished::Answered,
            start,
            hash: 0,
        };
        let evicted: u64 = (0..10_000)
            .map(|c| ring.insert(&h, 8_000, finish(c, c)))
            .sum();
        assert_eq!((evicted, ring.len()), (2_000, 8_000));
        assert_eq!(
            ring.index.len(),
            8_000,
            "forgotten entries left in the table"
        );
        // A known correlator keeps its place and takes the new start.
        assert_eq!(ring.insert(&h, 8_000, finish(2_000, 20_000)), 0);
        assert_eq!(ring.oldest_start(), Some(20_000));
        ring.pop_oldest();
        while ring.oldest_start().is_some_and(|s| s < 9_990) {
            ring.pop_oldest();
        }
        assert_eq!(ring.len(), 10);
        let before = ring.capacity();
        ring.shrink_to_fit();
        assert!(
            ring.capacity() < before,
            "{} -> {}",
            before,
            ring.capacity()
        );
        for c in 9_990..10_000 {
            assert_eq!(
                ring.get(&h, &key(0), &format!("c{c}")),
                Some((Finished::Answered, c))
            );
        }
        assert_eq!(ring.get(&h, &key(0), "c9989"), None);
        assert_eq!(ring.insert(&h, 8_000, finish(1, 1)), 0);
        assert_eq!(ring.get(&h, &key(0), "c1"), Some((Finished::Answered, 1)));
    }
}
