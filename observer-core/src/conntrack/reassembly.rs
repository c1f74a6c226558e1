//! One direction of a TCP connection, turned back into the byte stream the sender wrote.
//!
//! Besides the bytes, the reassembler keeps *when each byte was first seen*: a JXTA
//! message's transaction start is the first sighting of any of its bytes and its stop
//! the arrival of its last missing byte, so timestamps travel with the data as
//! `(bytes, first_seen)` runs instead of being the time of the segment that happened to
//! complete the in-order prefix.
//!
//! Rules, in the order a segment meets them:
//! - sequence numbers are unwrapped into 64-bit stream offsets relative to the first
//!   sequence number seen (the ISN + 1 after a SYN, or the first segment of a capture
//!   that began mid-connection);
//! - bytes already delivered are retransmissions: dropped and counted;
//! - the first copy of a byte wins (data and timestamp), later overlapping copies only
//!   fill what is still missing; a later copy whose bytes differ from the first is
//!   counted (`conflicting_overlap`), compared against the bytes still held and the
//!   last [`COMPARE_WINDOW`] bytes delivered that the receiver has not acknowledged yet
//!   (an idle connection keeps none, so 100,000 of them cost nothing);
//! - a hole is declared a gap (the capture missed it; the stream parser resynchronises)
//!   when the other side acknowledges past it, when the per-flow buffer cap is hit,
//!   or when the flow ends.
//!
//! Over 600 lines with its tests (overlaps, gaps, hostile orders).

use std::collections::BTreeMap;

use crate::UnixNanos;

/// What the reassembler hands to the stream's consumer, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// In-order bytes, all first seen at `first_seen`.
    Data {
        data: &'a [u8],
        first_seen: UnixNanos,
    },
    /// `len` bytes the capture never showed; the stream continues after them.
    Gap { len: u64 },
}

/// Why a hole was skipped; each is counted separately in [`ReassemblyStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapCause {
    /// The receiver acknowledged bytes the capture never saw.
    Acked,
    /// Out-of-order data waiting behind the hole exceeded the per-flow cap.
    FlowCap,
    /// Out-of-order data exceeded the table-wide cap.
    TotalCap,
    /// The flow ended (FIN, RST, eviction, end of input) with data behind a hole.
    Close,
}

use crate::counters::{alone, families::TCP_CONFLICTING_OVERLAP};

crate::counters! {
    /// Counters of everything the reassembler had to correct or give up on.
    #[derive(Debug, Default, Clone, serde::Serialize)]
    pub struct ReassemblyStats {
        segments: "TCP segments", metric: None, anomaly: false, merge: Sum;
        payload_bytes: "TCP payload bytes", metric: None, anomaly: false, merge: Sum;
        out_of_order_segments: "TCP segments out of order", metric: None, anomaly: false, merge: Sum;
        retransmitted_bytes: "TCP bytes retransmitted", metric: None, anomaly: false, merge: Sum;
        overlap_bytes: "TCP overlapping bytes", metric: None, anomaly: false, merge: Sum;
        gaps: "TCP gaps (bytes the capture missed)", metric: None, anomaly: true, merge: Sum, decoding: 13, figures: true;
        gap_bytes: "TCP gap bytes", metric: None, anomaly: false, merge: Sum, decoding: 14;
        gaps_acked: "TCP gaps acknowledged", metric: None, anomaly: false, merge: Sum;
        /// Gaps skipped at the per-flow out-of-order cap (one line with the next in the
        /// report, hence the shared label).
        gaps_flow_cap: "TCP out-of-order buffer cap hits", metric: None, anomaly: false, merge: Sum, decoding: 15;
        /// Gaps skipped at the cap over all flows.
        gaps_total_cap: "TCP out-of-order buffer cap hits", metric: None, anomaly: false, merge: Sum, decoding: 15;
        gaps_close: "TCP gaps at close", metric: None, anomaly: false, merge: Sum;
        /// Segments so far from the expected window (more than 1 GiB away) that they
        /// cannot belong to this stream: dropped rather than allowed to skew offsets.
        implausible_segments: "implausible TCP segments", metric: None, anomaly: true, merge: Sum, decoding: 17;
        /// Segments overlapping bytes already seen with different contents (the first
        /// copy is kept: see docs/robustness.md).
        conflicting_overlap: "TCP overlaps with conflicting bytes", metric: alone(&TCP_CONFLICTING_OVERLAP), anomaly: true, merge: Sum, decoding: 10;
    }
}

/// Sequence distances beyond this are treated as garbage, not as data far ahead.
const MAX_SEQ_JUMP: i64 = 1 << 30;

/// Delivered, unacknowledged bytes kept to compare retransmissions with (a full-size
/// segment and more); older or acknowledged ones are dropped uncompared.
pub const COMPARE_WINDOW: usize = 2048;

/// `v` moved to a new buffer of exactly `to` elements (at least its length): what
/// `reserve_exact` up to `to` gives, without the allocator's realloc: jemalloc's
/// `rallocx` takes no thread-cache fast path. A spilled sent log's growth on
/// `jxta-0.1g` was ~1,080 instructions by realloc, ~735 this way (most of what is
/// left is the arena refilling a size class the thread cache rarely holds).
#[cold]
pub(crate) fn regrow<T: Copy>(v: &mut Vec<T>, to: usize) {
    let mut grown = Vec::with_capacity(to.max(v.len()));
    grown.extend_from_slice(v);
    *v = grown;
}

/// [`Reassembler::remember`] when the buffer must drop its oldest bytes or grow first.
fn remember_making_room(recent: &mut Vec<u8>, data: &[u8], take: usize) {
    // Past twice the window only the last window is kept, dropped before the copy:
    // the buffer never holds more than `MAX_CAPACITY`, so when it must grow it
    // grows to that (by doubling it was reallocated ~3,900 times on `jxta-0.1g`,
    // ~1,000 instructions each) and always goes back to the spares. A new one is
    // the size of its first data: a many-peers direction sends a message, is
    // acknowledged and hands it back (4 KiB ones held 1.4 MB more on peers10k-1g).
    if recent.len() + take > 2 * COMPARE_WINDOW {
        let keep = COMPARE_WINDOW - take;
        let drop = recent.len() - keep;
        recent.drain(..drop);
    }
    if recent.capacity() - recent.len() < take {
        let to = if recent.capacity() == 0 {
            take
        } else {
            SpareBuffers::MAX_CAPACITY
        };
        regrow(recent, to);
    }
    recent.extend_from_slice(&data[data.len() - take..]);
}

/// Emptied [`Reassembler`] compare buffers, in their [`Held`] boxes, kept for the next
/// direction that delivers data. A direction's delivered tail is dropped when the
/// receiver acknowledges it (an idle connection keeps none), and the next segment of
/// data allocated it again: the allocation, its growth and its free were ~230
/// instructions of every data segment (`jxta-0.1g`), a pop and a push here ~20.
/// Bounded by count: at most [`Self::MAX`] boxes whose buffer holds at most
/// [`Self::MAX_CAPACITY`] bytes.
// The boxes are those the directions hold: taken and given back whole.
#[allow(clippy::vec_box)]
#[derive(Debug, Default)]
pub struct SpareBuffers(Vec<Box<Held>>);

impl SpareBuffers {
    /// More than the directions with unacknowledged data at once in a replayed capture,
    /// where the data's ACK follows within a few frames.
    pub const MAX: usize = 32;
    /// Two full segments, the most a direction usually holds (the receiver acknowledges
    /// every second one). Larger ones are freed: a spare is handed to a direction that
    /// may need one segment only, and with 8 KiB spares the directions waiting for an
    /// ACK held 1.5 MB more heap on `jxta-1g` (with these, 0.8-1.0 MB).
    pub const MAX_CAPACITY: usize = 2 * COMPARE_WINDOW;

    /// An empty box, its buffer with room when a spare one had some.
    fn take(&mut self) -> Box<Held> {
        self.0.pop().unwrap_or_default()
    }

    /// Keeps `held` emptied, or frees it.
    fn put(&mut self, mut held: Box<Held>) {
        if held.runs.is_empty()
            && held.recent.capacity() <= Self::MAX_CAPACITY
            && self.0.len() < Self::MAX
        {
            held.recent.clear();
            held.bytes = 0;
            self.0.push(held);
        }
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a direction holds of its bytes, behind one pointer: made with the first data
/// delivered or held out of order, and let go once it holds neither (to the spares).
/// Nearly every direction of 100,000 connections holds nothing between messages, and
/// the buffer inline was 16 bytes more of each (with the map's pointer, a flow took
/// jemalloc's 512-byte class rather than its 448).
#[derive(Debug, Default)]
struct Held {
    /// Out-of-order runs keyed by stream offset; runs never overlap each other.
    runs: BTreeMap<u64, Pending>,
    /// Their bytes.
    bytes: usize,
    /// The last delivered bytes not yet acknowledged (up to twice [`COMPARE_WINDOW`],
    /// trimmed in batches), ending at the direction's `delivered`; no room while
    /// none are kept.
    recent: Vec<u8>,
}

impl Held {
    /// Holds neither runs nor a compare buffer: to be let go.
    fn is_spent(&self) -> bool {
        self.runs.is_empty() && self.recent.capacity() == 0
    }
}

#[derive(Debug)]
struct Pending {
    data: Vec<u8>,
    first_seen: UnixNanos,
}

/// Reassembly state of one direction.
#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of stream offset 0, meant once `started` (the first segment).
    /// Two `Option`s padded to their alignment were 16 bytes of every direction.
    base_seq: u32,
    started: bool,
    /// Stream offset of the next byte to deliver (bytes delivered or skipped so far).
    delivered: u64,
    /// Out-of-order runs and the compare buffer, made with the first of either:
    /// nearly every direction is in order nearly all the time, and the map and its
    /// count inline were a quarter of the reassembler's size.
    held: Option<Box<Held>>,
    /// Stream offset of the FIN, meant once `fin_seen` (FIN occupies one sequence
    /// number).
    fin_at: u64,
    fin_seen: bool,
    /// The stream began with a SYN: its first byte is the first byte the sender wrote.
    pub saw_syn: bool,
    /// Stop buffering: the consumer has no use for this direction (not JXTA).
    ignore: bool,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stream offset of the next byte to be delivered.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Bytes held out of order, waiting for a hole to be filled.
    pub fn pending_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.bytes)
    }

    /// Stream offset of the first out-of-order run.
    fn first_pending(&self) -> Option<u64> {
        self.held
            .as_ref()
            .and_then(|p| p.runs.keys().next().copied())
    }

    /// Earliest first-seen time of the bytes held out of order: a message delivered
    /// later can start no earlier.
    pub fn oldest_pending(&self) -> Option<UnixNanos> {
        self.held
            .as_ref()
            .and_then(|p| p.runs.values().map(|r| r.first_seen).min())
    }

    /// Whether bytes are held out of order ([`Reassembler::oldest_pending`] can give a
    /// time only then); without looking at them.
    pub fn holds(&self) -> bool {
        self.held.as_ref().is_some_and(|p| !p.runs.is_empty())
    }

    /// The compare buffer: delivered bytes not yet acknowledged.
    fn recent(&self) -> &[u8] {
        self.held.as_ref().map_or(&[], |h| &h.recent)
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn fin_seen(&self) -> bool {
        self.fin_seen
    }

    fn base_seq(&self) -> Option<u32> {
        self.started.then_some(self.base_seq)
    }

    fn fin_at(&self) -> Option<u64> {
        self.fin_seen.then_some(self.fin_at)
    }

    fn set_base_seq(&mut self, seq: u32) {
        self.base_seq = seq;
        self.started = true;
    }

    /// Drops buffered data and stops buffering; sequence tracking continues so the
    /// flow's bookkeeping (FIN, port reuse) still works. Returns the bytes released.
    pub fn ignore(&mut self) -> usize {
        self.ignore = true;
        self.held.take().map_or(0, |p| p.bytes)
    }

    /// Stream offset of a sequence number, relative to the delivered point.
    fn offset_of(&self, seq: u32) -> Option<i64> {
        // Unwrap around the delivered point: the sequence space wraps every 4 GiB,
        // the stream offset never does.
        let next = self.base_seq()?.wrapping_add(self.delivered as u32);
        Some(self.delivered as i64 + i64::from(seq.wrapping_sub(next) as i32))
    }

    /// Feeds one segment. `flow_cap` bounds this direction's out-of-order buffer;
    /// `total_room` is what the table-wide cap still allows (updated by the caller
    /// from the returned byte delta). Returns the change in buffered bytes.
    ///
    /// Inline, as `acked`: called once a segment, where most segments (no data, or
    /// in order) take a few dozen instructions of it; out of line, the two calls and
    /// their closures' set-up cost more than that (+20 M instructions on peers1k-0.1g
    /// when a change to `FlowTable::segment` tipped the inliner).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn segment(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        ts: UnixNanos,
        flow_cap: usize,
        total_room: usize,
        stats: &mut ReassemblyStats,
        spare: &mut SpareBuffers,
        out: &mut impl FnMut(Delivery<'_>),
    ) -> isize {
        let before = self.pending_bytes() as isize;
        stats.segments += 1;
        stats.payload_bytes += payload.len() as u64;
        let data_seq = if syn {
            // The SYN occupies one sequence number; a SYN restarts a direction that has
            // delivered nothing (a retransmitted SYN), never one already in use (the
            // flow table turns that into a new connection first).
            if self.delivered == 0 && !self.holds() {
                self.set_base_seq(seq.wrapping_add(1));
                self.saw_syn = true;
            }
            seq.wrapping_add(1)
        } else {
            seq
        };
        if !self.started {
            self.set_base_seq(data_seq);
        }
        let Some(off) = self.offset_of(data_seq) else {
            return 0;
        };
        if (off - self.delivered as i64).abs() > MAX_SEQ_JUMP {
            stats.implausible_segments += 1;
            return 0;
        }
        let end = off + payload.len() as i64;
        if fin && end >= 0 && !self.fin_seen {
            self.fin_at = end as u64;
            self.fin_seen = true;
        }
        if self.ignore || payload.is_empty() {
            return 0;
        }
        // Trim what was already delivered (retransmission, or a partial overlap).
        let delivered = self.delivered as i64;
        if off < delivered && self.conflicts_with_delivered(off, payload) {
            stats.conflicting_overlap += 1;
        }
        if end <= delivered {
            stats.retransmitted_bytes += payload.len() as u64;
            return 0;
        }
        let (off, payload) = if off < delivered {
            let cut = (delivered - off) as usize;
            stats.retransmitted_bytes += cut as u64;
            (self.delivered, &payload[cut..])
        } else {
            (off as u64, payload)
        };

        if off == self.delivered && !self.holds() {
            // The common case: in order, nothing waiting. Hand the borrowed bytes on.
            self.remember(payload, spare);
            self.delivered += payload.len() as u64;
            out(Delivery::Data {
                data: payload,
                first_seen: ts,
            });
            return 0;
        }
        if off > self.delivered {
            stats.out_of_order_segments += 1;
        }
        if self.store(off, payload, ts, stats) {
            stats.conflicting_overlap += 1;
        }
        self.drain(spare, out);
        if self.pending_bytes() > flow_cap {
            self.skip_holes(GapCause::FlowCap, flow_cap, stats, spare, out);
        }
        let grown = self.pending_bytes() as isize - before;
        if grown > 0 && grown as usize > total_room {
            self.skip_holes(GapCause::TotalCap, 0, stats, spare, out);
        }
        self.pending_bytes() as isize - before
    }

    /// The other direction acknowledged up to `ack`: bytes below it that the capture
    /// never showed are gone for good. Returns the change in buffered bytes.
    #[inline]
    pub fn acked(
        &mut self,
        ack: u32,
        stats: &mut ReassemblyStats,
        spare: &mut SpareBuffers,
        out: &mut impl FnMut(Delivery<'_>),
    ) -> isize {
        let Some(ack_off) = self.offset_of(ack) else {
            return 0;
        };
        self.forget_acked(ack_off, spare);
        let delivered = self.delivered as i64;
        // One sequence number past the data may be the FIN, which carries no byte.
        if ack_off <= delivered + 1 || ack_off - delivered > MAX_SEQ_JUMP || self.ignore {
            return 0;
        }
        if self.fin_at() == Some(self.delivered) {
            return 0;
        }
        let before = self.pending_bytes() as isize;
        let hole_end = match self.first_pending() {
            Some(first) => first.min(ack_off as u64),
            None => ack_off as u64,
        };
        if hole_end > self.delivered {
            self.gap(hole_end - self.delivered, GapCause::Acked, stats, out);
            self.drain(spare, out);
        }
        self.pending_bytes() as isize - before
    }

    /// The flow ends: whatever waits behind holes is delivered after gaps.
    /// Returns the change in buffered bytes (always ≤ 0). The compare buffer goes to
    /// `spare`: nothing is compared after the end.
    pub fn close(
        &mut self,
        stats: &mut ReassemblyStats,
        spare: &mut SpareBuffers,
        out: &mut impl FnMut(Delivery<'_>),
    ) -> isize {
        let before = self.pending_bytes() as isize;
        self.skip_holes(GapCause::Close, 0, stats, spare, out);
        let after = self.pending_bytes() as isize;
        if let Some(held) = self.held.take_if(|h| h.runs.is_empty()) {
            spare.put(held);
        }
        after - before
    }

    /// Skips holes, oldest first, until at most `keep` bytes wait out of order.
    fn skip_holes(
        &mut self,
        cause: GapCause,
        keep: usize,
        stats: &mut ReassemblyStats,
        spare: &mut SpareBuffers,
        out: &mut impl FnMut(Delivery<'_>),
    ) {
        while self.pending_bytes() > keep {
            let Some(first) = self.first_pending() else {
                break;
            };
            if first > self.delivered {
                self.gap(first - self.delivered, cause, stats, out);
            }
            self.drain(spare, out);
        }
    }

    fn gap(
        &mut self,
        len: u64,
        cause: GapCause,
        stats: &mut ReassemblyStats,
        out: &mut impl FnMut(Delivery<'_>),
    ) {
        stats.gaps += 1;
        stats.gap_bytes += len;
        match cause {
            GapCause::Acked => stats.gaps_acked += 1,
            GapCause::FlowCap => stats.gaps_flow_cap += 1,
            GapCause::TotalCap => stats.gaps_total_cap += 1,
            GapCause::Close => stats.gaps_close += 1,
        }
        self.delivered += len;
        // The bytes before a gap no longer end at `delivered`. The box, if it holds
        // nothing else now, goes with the next `drain`.
        if let Some(held) = self.held.as_mut() {
            held.recent = Vec::new();
        }
        out(Delivery::Gap { len });
    }

    /// Acknowledged bytes are final for the receiver: no need to compare them any more.
    /// Inline for the test every ACK makes: a direction between messages holds nothing.
    #[inline]
    fn forget_acked(&mut self, ack_off: i64, spare: &mut SpareBuffers) {
        if self.held.is_some() {
            self.forget_held(ack_off, spare);
        }
    }

    /// Inline as it was when the buffer was the direction's own: out of line, its call
    /// was ~1.5 M instructions more on `jxta-0.1g` (60,000 ACKs of held data).
    #[inline]
    fn forget_held(&mut self, ack_off: i64, spare: &mut SpareBuffers) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        if held.recent.capacity() == 0 {
            return;
        }
        let kept_from = self.delivered as i64 - held.recent.len() as i64;
        if ack_off >= self.delivered as i64 {
            // Given up, not cleared: most connections sit idle between messages. With
            // runs still held out of order (rare), the buffer alone is freed.
            if held.runs.is_empty() {
                if let Some(held) = self.held.take() {
                    spare.put(held);
                }
            } else {
                held.recent = Vec::new();
            }
        } else if ack_off > kept_from {
            held.recent.drain(..(ack_off - kept_from) as usize);
        }
    }

    /// Keeps the tail of what is being delivered, for [`Self::conflicts_with_delivered`].
    /// Inline for the common case, a spare or the direction's own buffer with room for
    /// the bytes: the call was ~20 instructions of every data segment besides the copy.
    #[inline]
    fn remember(&mut self, data: &[u8], spare: &mut SpareBuffers) {
        let recent = &mut self.held.get_or_insert_with(|| spare.take()).recent;
        let take = data.len().min(COMPARE_WINDOW);
        let (len, room) = (recent.len(), recent.capacity() - recent.len());
        if len + take <= 2 * COMPARE_WINDOW && room >= take {
            recent.extend_from_slice(&data[data.len() - take..]);
            return;
        }
        remember_making_room(recent, data, take);
    }

    /// Whether `payload` at stream offset `off` (before `delivered`) differs from the
    /// delivered bytes still remembered.
    fn conflicts_with_delivered(&self, off: i64, payload: &[u8]) -> bool {
        let delivered = self.delivered as i64;
        let recent = self.recent();
        let kept_from = delivered - recent.len() as i64;
        let (from, to) = (
            off.max(kept_from),
            (off + payload.len() as i64).min(delivered),
        );
        if from >= to {
            return false;
        }
        let theirs = &payload[(from - off) as usize..(to - off) as usize];
        let ours = &recent[(from - kept_from) as usize..(to - kept_from) as usize];
        theirs != ours
    }

    /// Stores the parts of `[off, off+len)` not already held, keeping earlier copies.
    /// Returns whether an overlapped part differs from the copy held.
    fn store(
        &mut self,
        off: u64,
        payload: &[u8],
        ts: UnixNanos,
        stats: &mut ReassemblyStats,
    ) -> bool {
        let end = off + payload.len() as u64;
        let mut cursor = off;
        // Every caller stores at least one new byte, so what is made here is not empty.
        let pending = self.held.get_or_insert_with(Box::default);
        // Runs that start before `off` may still cover its beginning.
        let first_key = pending
            .runs
            .range(..=off)
            .next_back()
            .filter(|(k, p)| **k + p.data.len() as u64 > off)
            .map(|(k, _)| *k)
            .unwrap_or(off);
        let mut conflict = false;
        let covering: Vec<(u64, u64)> = pending
            .runs
            .range(first_key..end)
            .map(|(k, p)| {
                let (from, to) = (off.max(*k), end.min(*k + p.data.len() as u64));
                if from < to {
                    let held = &p.data[(from - k) as usize..(to - k) as usize];
                    conflict |= held != &payload[(from - off) as usize..(to - off) as usize];
                }
                (*k, *k + p.data.len() as u64)
            })
            .collect();
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        for (s, e) in covering {
            if s > cursor {
                pieces.push((cursor, s.min(end)));
            }
            if e > cursor {
                stats.overlap_bytes += e.min(end) - cursor.max(s);
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        for (s, e) in pieces {
            let slice = &payload[(s - off) as usize..(e - off) as usize];
            pending.bytes += slice.len();
            pending.runs.insert(
                s,
                Pending {
                    data: slice.to_vec(),
                    first_seen: ts,
                },
            );
        }
        conflict
    }

    /// Delivers every stored run that is now contiguous with the delivered point.
    fn drain(&mut self, spare: &mut SpareBuffers, out: &mut impl FnMut(Delivery<'_>)) {
        while let Some(pending) = self.held.as_mut() {
            let Some(entry) = pending.runs.first_entry() else {
                break;
            };
            let start = *entry.key();
            if start > self.delivered {
                break;
            }
            let run = entry.remove();
            pending.bytes -= run.data.len();
            let skip = (self.delivered - start) as usize;
            if skip < run.data.len() {
                let data = &run.data[skip..];
                self.remember(data, spare);
                self.delivered += data.len() as u64;
                out(Delivery::Data {
                    data,
                    first_seen: run.first_seen,
                });
            }
        }
        // Freed with the last run, unless the compare buffer keeps it.
        if let Some(held) = self.held.take_if(|h| h.is_spent()) {
            spare.put(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects deliveries as (bytes, first_seen) per byte plus gap markers.
    #[derive(Default, Debug)]
    struct Sink {
        bytes: Vec<(u8, UnixNanos)>,
        gaps: Vec<u64>,
    }

    impl Sink {
        fn push(&mut self, d: Delivery<'_>) {
            match d {
                Delivery::Data { data, first_seen } => {
                    self.bytes.extend(data.iter().map(|b| (*b, first_seen)))
                }
                Delivery::Gap { len } => {
                    self.gaps.push(len);
                    self.bytes.extend((0..len).map(|_| (b'?', 0)));
                }
            }
        }
        fn text(&self) -> String {
            self.bytes.iter().map(|(b, _)| *b as char).collect()
        }
    }

    fn feed(
        r: &mut Reassembler,
        sink: &mut Sink,
        stats: &mut ReassemblyStats,
        seq: u32,
        data: &[u8],
        ts: u64,
    ) {
        feed_with(r, sink, stats, &mut SpareBuffers::default(), seq, data, ts);
    }

    /// [`feed`] with the spares a test keeps.
    fn feed_with(
        r: &mut Reassembler,
        sink: &mut Sink,
        stats: &mut ReassemblyStats,
        spare: &mut SpareBuffers,
        seq: u32,
        data: &[u8],
        ts: u64,
    ) {
        r.segment(
            seq,
            false,
            false,
            data,
            ts,
            1 << 20,
            usize::MAX,
            stats,
            spare,
            &mut |d| sink.push(d),
        );
    }

    #[test]
    fn in_order_after_syn() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        r.segment(
            999,
            true,
            false,
            b"",
            1,
            1 << 20,
            usize::MAX,
            &mut st,
            &mut SpareBuffers::default(),
            &mut |d| s.push(d),
        );
        feed(&mut r, &mut s, &mut st, 1000, b"hello ", 2);
        feed(&mut r, &mut s, &mut st, 1006, b"world", 3);
        assert_eq!(s.text(), "hello world");
        assert!(r.saw_syn);
        assert_eq!(s.bytes[0].1, 2);
        assert_eq!(s.bytes[10].1, 3);
    }

    #[test]
    fn out_of_order_keeps_first_seen_times() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 100, b"ab", 1);
        feed(&mut r, &mut s, &mut st, 104, b"ef", 2); // early
        assert_eq!(s.text(), "ab");
        assert!(r.holds());
        feed(&mut r, &mut s, &mut st, 102, b"cd", 3); // fills the hole
                                                      // Nothing waits: the box stays for the compare buffer alone.
        assert!(!r.holds());
        assert_eq!(r.recent(), b"abcdef");
        assert_eq!(s.text(), "abcdef");
        let times: Vec<u64> = s.bytes.iter().map(|b| b.1).collect();
        assert_eq!(times, vec![1, 1, 3, 3, 2, 2]);
        assert_eq!(st.out_of_order_segments, 1);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn retransmission_and_overlap_first_copy_wins() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 0, b"abc", 1);
        feed(&mut r, &mut s, &mut st, 0, b"abc", 2); // full retransmission
        feed(&mut r, &mut s, &mut st, 6, b"gh", 3); // early
        feed(&mut r, &mut s, &mut st, 5, b"XYZ", 4); // overlaps the early run: only 'f'... new
        feed(&mut r, &mut s, &mut st, 1, b"bcde", 5); // partly delivered, fills 'd','e'
        assert_eq!(s.text(), "abcdeXgh");
        assert_eq!(st.retransmitted_bytes, 3 + 2);
        let times: Vec<u64> = s.bytes.iter().map(|b| b.1).collect();
        assert_eq!(times, vec![1, 1, 1, 5, 5, 4, 3, 3]);
    }

    #[test]
    fn conflicting_copies_are_counted_and_the_first_kept() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 0, b"abcdef", 1);
        feed(&mut r, &mut s, &mut st, 2, b"cd", 2); // same bytes: a plain retransmission
        assert_eq!(st.conflicting_overlap, 0);
        feed(&mut r, &mut s, &mut st, 4, b"EFgh", 3); // rewrites delivered "ef"
        assert_eq!(st.conflicting_overlap, 1);
        feed(&mut r, &mut s, &mut st, 12, b"mn", 4); // held out of order
        feed(&mut r, &mut s, &mut st, 12, b"mn", 5);
        assert_eq!(st.conflicting_overlap, 1);
        feed(&mut r, &mut s, &mut st, 11, b"lMN", 6); // rewrites held "mn"
        assert_eq!(st.conflicting_overlap, 2);
        feed(&mut r, &mut s, &mut st, 8, b"ijk", 7);
        assert_eq!(s.text(), "abcdefghijklmn");
        // Beyond the window, delivered bytes are no longer compared.
        let far = vec![b'z'; COMPARE_WINDOW * 3];
        feed(&mut r, &mut s, &mut st, 14, &far, 8);
        feed(&mut r, &mut s, &mut st, 0, b"XX", 9);
        assert_eq!(st.conflicting_overlap, 2);
        let last = 14 + far.len() as u32;
        feed(&mut r, &mut s, &mut st, last - 2, b"zY", 10);
        assert_eq!(st.conflicting_overlap, 3);
        // Once acknowledged, delivered bytes are final and no longer kept.
        r.acked(last - 1, &mut st, &mut SpareBuffers::default(), &mut |d| {
            s.push(d)
        });
        feed(&mut r, &mut s, &mut st, last - 2, b"zY", 11);
        assert_eq!(
            st.conflicting_overlap, 4,
            "the last byte is still unacknowledged"
        );
        let mut spare = SpareBuffers::default();
        r.acked(last, &mut st, &mut spare, &mut |d| s.push(d));
        assert!(r.held.is_none());
        assert_eq!(spare.len(), 1, "the emptied buffer is kept for the next");
        feed(&mut r, &mut s, &mut st, last - 2, b"YY", 12);
        assert_eq!(st.conflicting_overlap, 4);
    }

    /// A direction's acknowledged buffer serves the next direction's data, emptied: it
    /// holds that direction's bytes alone and still tells a conflicting copy.
    #[test]
    fn a_spare_buffer_serves_the_next_direction_emptied() {
        let (mut a, mut b, mut s, mut st) = (
            Reassembler::new(),
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        let mut spare = SpareBuffers::default();
        feed_with(&mut a, &mut s, &mut st, &mut spare, 0, b"abcdef", 1);
        a.acked(6, &mut st, &mut spare, &mut |_| {});
        assert_eq!((a.held.is_none(), spare.len()), (true, 1));
        let given_up = spare.0[0].recent.as_ptr();
        feed_with(&mut b, &mut s, &mut st, &mut spare, 100, b"uvw", 1);
        assert!(spare.is_empty(), "the spare buffer is taken");
        assert_eq!(
            b.recent().as_ptr(),
            given_up,
            "the taken buffer is the one given up"
        );
        assert_eq!(b.recent(), b"uvw");
        feed_with(&mut b, &mut s, &mut st, &mut spare, 100, b"uvw", 1);
        assert_eq!(st.conflicting_overlap, 0);
        feed_with(&mut b, &mut s, &mut st, &mut spare, 101, b"vW", 1);
        assert_eq!(st.conflicting_overlap, 1);
        // The end gives the buffer up as well.
        b.close(&mut st, &mut spare, &mut |_| {});
        assert_eq!((b.held.is_none(), spare.len()), (true, 1));
    }

    /// `regrow` is `reserve_exact` up to the capacity asked: the same elements, the
    /// same capacity (so the spares take back what they took back before).
    #[test]
    fn regrow_is_reserve_exact_without_realloc() {
        for (len, cap, to) in [
            (0usize, 0usize, 0usize),
            (0, 0, 7),
            (3, 3, 4096),
            (5, 9, 9),
            (1200, 1200, 4096),
        ] {
            let mut v: Vec<u8> = Vec::with_capacity(cap);
            v.extend((0..len).map(|i| i as u8));
            let mut model = v.clone();
            model.reserve_exact(to.saturating_sub(model.len()));
            regrow(&mut v, to);
            assert_eq!(v, model, "{len} {cap} {to}");
            assert_eq!(v.capacity(), to.max(len), "{len} {cap} {to}");
            assert_eq!(model.capacity(), to.max(len), "{len} {cap} {to}");
        }
        // Asked for less than it holds, it keeps everything.
        let mut v = vec![1u32, 2, 3];
        regrow(&mut v, 1);
        assert_eq!(v, [1, 2, 3]);
    }

    /// The box goes (to the spares) whenever a direction holds neither runs nor a
    /// compare buffer: after its data is acknowledged, after a gap with nothing
    /// behind it, at the end; and stays while either is held.
    #[test]
    fn a_direction_holding_nothing_keeps_no_box() {
        let (mut r, mut s, mut st, mut spare) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
            SpareBuffers::default(),
        );
        let no_box = |r: &Reassembler| r.held.is_none() && r.pending_bytes() == 0 && !r.holds();
        feed_with(&mut r, &mut s, &mut st, &mut spare, 0, b"ab", 0);
        assert_eq!(r.recent(), b"ab");
        r.acked(2, &mut st, &mut spare, &mut |_| {});
        assert!(no_box(&r));
        // A run behind a hole, its compare buffer given up meanwhile: the box stays
        // for the run alone, then for the bytes it delivered.
        feed_with(&mut r, &mut s, &mut st, &mut spare, 2, b"cd", 2);
        feed_with(&mut r, &mut s, &mut st, &mut spare, 6, b"gh", 6);
        r.acked(4, &mut st, &mut spare, &mut |_| {});
        assert!(r.holds() && r.recent().is_empty());
        feed_with(&mut r, &mut s, &mut st, &mut spare, 4, b"ef", 4);
        assert!(!r.holds());
        assert_eq!(r.recent(), b"efgh");
        r.acked(8, &mut st, &mut spare, &mut |_| {});
        assert!(no_box(&r));
        // Acknowledged past a hole with nothing behind it: a gap, and no box.
        r.acked(10, &mut st, &mut spare, &mut |_| {});
        assert!(no_box(&r));
        // A gap with a run behind it delivers the run, which the box keeps.
        feed_with(&mut r, &mut s, &mut st, &mut spare, 10, b"kl", 10);
        feed_with(&mut r, &mut s, &mut st, &mut spare, 14, b"op", 14);
        r.acked(14, &mut st, &mut spare, &mut |_| {});
        assert!(!r.holds());
        assert_eq!(r.recent(), b"op");
        // The end lets go of runs and buffer.
        feed_with(&mut r, &mut s, &mut st, &mut spare, 20, b"uv", 20);
        assert!(r.holds());
        r.close(&mut st, &mut spare, &mut |_| {});
        assert!(no_box(&r));
        // Ignored, a direction drops what it held.
        let mut q = Reassembler::new();
        feed_with(&mut q, &mut s, &mut st, &mut spare, 0, b"ab", 0);
        feed_with(&mut q, &mut s, &mut st, &mut spare, 4, b"ef", 4);
        assert_eq!(q.ignore(), 2);
        assert!(no_box(&q));
        // What the segments delivered (the ACKs' and the end's deliveries go
        // elsewhere), the second direction's "ab" last; and the three gaps.
        assert_eq!(s.text(), "abcdefghklab");
        assert_eq!((st.gaps, st.gap_bytes), (3, 8));
    }

    #[test]
    fn spare_buffers_are_bounded() {
        let held = |recent: Vec<u8>| {
            Box::new(Held {
                recent,
                ..Held::default()
            })
        };
        let mut spare = SpareBuffers::default();
        spare.put(held(Vec::with_capacity(SpareBuffers::MAX_CAPACITY + 1)));
        let mut running = held(vec![1]);
        running.runs.insert(
            5,
            Pending {
                data: vec![2],
                first_seen: 0,
            },
        );
        running.bytes = 1;
        spare.put(running);
        assert!(spare.is_empty(), "too large to keep, or still holding runs");
        // A box without a buffer is still an allocation saved.
        spare.put(held(Vec::new()));
        assert_eq!(spare.len(), 1);
        for _ in 0..SpareBuffers::MAX + 3 {
            spare.put(held(vec![1; SpareBuffers::MAX_CAPACITY]));
        }
        assert_eq!(spare.len(), SpareBuffers::MAX);
        let buf = spare.take();
        assert!(buf.recent.is_empty() && buf.recent.capacity() >= SpareBuffers::MAX_CAPACITY);
        assert!(buf.runs.is_empty() && buf.bytes == 0);
    }

    #[test]
    fn sequence_wraparound() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, u32::MAX - 1, b"ab", 1);
        feed(&mut r, &mut s, &mut st, 2, b"de", 2); // early, across the wrap
        feed(&mut r, &mut s, &mut st, 0, b"xy", 3);
        assert_eq!(s.text(), "abxyde");
    }

    #[test]
    fn ack_past_a_hole_declares_a_gap() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 0, b"ab", 1);
        feed(&mut r, &mut s, &mut st, 5, b"fg", 2);
        r.acked(7, &mut st, &mut SpareBuffers::default(), &mut |d| s.push(d));
        assert_eq!(s.gaps, vec![3]);
        assert_eq!(s.text(), "ab???fg");
        assert_eq!(st.gaps_acked, 1);
        // An ACK one past the data (a FIN's sequence number) is not a gap.
        r.acked(8, &mut st, &mut SpareBuffers::default(), &mut |d| s.push(d));
        assert_eq!(s.gaps.len(), 1);
    }

    #[test]
    fn flow_cap_forces_a_gap_and_bounds_memory() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 0, b"a", 1);
        for i in 0..100u32 {
            r.segment(
                10 + i * 10,
                false,
                false,
                b"xxxxx",
                2,
                64,
                usize::MAX,
                &mut st,
                &mut SpareBuffers::default(),
                &mut |d| s.push(d),
            );
            assert!(r.pending_bytes() <= 64);
        }
        assert!(st.gaps_flow_cap > 0);
        assert!(r.pending_bytes() <= 64);
    }

    #[test]
    fn close_flushes_behind_holes() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 0, b"ab", 1);
        feed(&mut r, &mut s, &mut st, 4, b"ef", 2);
        feed(&mut r, &mut s, &mut st, 8, b"ij", 3);
        r.close(&mut st, &mut SpareBuffers::default(), &mut |d| s.push(d));
        assert_eq!(s.text(), "ab??ef??ij");
        assert_eq!(st.gaps_close, 2);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn implausible_jump_dropped() {
        let (mut r, mut s, mut st) = (
            Reassembler::new(),
            Sink::default(),
            ReassemblyStats::default(),
        );
        feed(&mut r, &mut s, &mut st, 0, b"ab", 1);
        feed(&mut r, &mut s, &mut st, 0x8000_0000, b"zz", 2);
        assert_eq!(st.implausible_segments, 1);
        assert_eq!(r.pending_bytes(), 0);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any permutation of segments, with duplicates, yields the original stream.
            #[test]
            fn permutation_and_duplication(
                data in proptest::collection::vec(any::<u8>(), 1..400),
                cuts in proptest::collection::vec(1usize..40, 1..40),
                order in proptest::collection::vec(any::<u32>(), 1..80),
                isn in any::<u32>(),
            ) {
                let mut segs = Vec::new();
                let mut at = 0;
                for c in cuts.iter().cycle() {
                    if at >= data.len() { break; }
                    let end = (at + c).min(data.len());
                    segs.push((at, end));
                    at = end;
                }
                // Shuffle deterministically and add duplicates, but keep the first
                // segment first so the stream's start is known (as after a SYN).
                let mut sched: Vec<usize> = (1..segs.len()).collect();
                for (i, o) in order.iter().enumerate() {
                    if sched.is_empty() { break; }
                    let j = (*o as usize) % sched.len();
                    let k = i % sched.len();
                    sched.swap(j, k);
                    if o % 3 == 0 { let d = sched[j]; sched.push(d); }
                }
                let (mut r, mut s, mut st) = (Reassembler::new(), Sink::default(), ReassemblyStats::default());
                r.segment(isn, true, false, b"", 0, 1 << 20, usize::MAX, &mut st, &mut SpareBuffers::default(), &mut |d| s.push(d));
                for (t, &i) in std::iter::once(&0).chain(sched.iter()).enumerate() {
                    let (a, b) = segs[i];
                    let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                    r.segment(seq, false, false, &data[a..b], t as u64, 1 << 20, usize::MAX, &mut st, &mut SpareBuffers::default(), &mut |d| s.push(d));
                }
                let got: Vec<u8> = s.bytes.iter().map(|b| b.0).collect();
                prop_assert_eq!(got, data);
                prop_assert_eq!(r.pending_bytes(), 0);
                prop_assert!(s.gaps.is_empty());
            }

            /// The remembered tail is what appending everything and keeping the last
            /// window past twice the window kept (the order before stop 28), in a
            /// buffer that never outgrows what the spares take back.
            #[test]
            fn remember_keeps_what_append_then_drain_kept(
                lens in proptest::collection::vec(0usize..3 * COMPARE_WINDOW, 1..24),
            ) {
                let (mut r, mut spare) = (Reassembler::new(), SpareBuffers::default());
                let mut model: Vec<u8> = Vec::new();
                for (i, len) in lens.iter().enumerate() {
                    let data: Vec<u8> = (0..*len).map(|j| (i * 7 + j) as u8).collect();
                    r.remember(&data, &mut spare);
                    let take = data.len().min(COMPARE_WINDOW);
                    model.extend_from_slice(&data[data.len() - take..]);
                    if model.len() > 2 * COMPARE_WINDOW {
                        let drop = model.len() - COMPARE_WINDOW;
                        model.drain(..drop);
                    }
                    prop_assert_eq!(r.recent(), &model[..]);
                    let room = r.held.as_ref().map_or(0, |h| h.recent.capacity());
                    prop_assert!(room <= SpareBuffers::MAX_CAPACITY);
                }
            }
        }
    }
}
