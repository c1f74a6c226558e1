//! Why a transaction took the time it took, as far as the wire shows it.
//!
//! The decoding stages note, for every PING and PONG leg, what happened to its bytes
//! and its connection ([`WireNotes`]); when a transaction ends, [`explain`] turns the
//! notes of its legs into flags and measured shares ([`Cause`]). Flags are facts the
//! capture shows (a retransmission, a connection opened for the PING, messages sent
//! back to back ahead of it, a relay, a route change), except `far`, which compares the
//! time spent beyond the capture point with the pair's own recent history.
//! docs/explain.md says how each is measured and where it stops being right.
//!
//! Over 600 lines: 170 of them are tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::conntrack::reassembly::regrow;
use crate::jxta::PeerId;
use crate::UnixNanos;

/// TCP repairs kept per connection direction and carried by each leg: enough for a
/// loss burst inside one PING or PONG, small enough to copy with every message.
pub const REPAIRS_KEPT: usize = 8;

/// Repairs costing less than this are not flagged `retrans` (their time is still in
/// `tcp_ns`): segments reordered on the way fill their hole within tens of µs, and a
/// real loss costs a retransmission timeout (200 ms at least on Linux) or a round trip.
pub const RETRANS_FLAG_NS: u64 = 1_000_000;

/// Messages closer than this on one direction were sent back to back: the later one
/// could not leave before the earlier ones had (a LAN segment gap is tens of µs; a
/// peer that writes two messages apart by its own choice does so by milliseconds).
pub const QUEUE_GAP_NS: u64 = 1_000_000;

/// A PING or PONG that waited at least this long behind other messages is flagged
/// `queue`: below it, the wait is within what a LAN round trip costs anyway.
pub const QUEUE_FLAG_NS: u64 = 10_000_000;

/// The time beyond the capture point (PING delivered to PONG sent back) is flagged
/// `far` when it exceeds this multiple of the pair's median over its recent answered
/// transactions; with fewer than [`FAR_MIN_HISTORY`] of them there is no baseline.
pub const FAR_FACTOR: u64 = 2;
pub const FAR_MIN_HISTORY: usize = 5;
/// Recent answered transactions a pair's baseline is the median of.
pub const FAR_HISTORY: usize = 15;

/// Zero-window stalls costing less than this are not flagged `window` (their time is
/// still in `tcp_ns`): a receiver that empties its buffer within a LAN round trip did
/// not hold the sender back in a way the RTT shows.
pub const WINDOW_FLAG_NS: u64 = 1_000_000;

/// Other JXTA messages (discovery, SRDI, resolver) remembered per connection and
/// carried by each leg: a few per round trip is all a quiet peer group sends.
pub const ACTIVITY_KEPT: usize = 4;

/// Bytes of one direction that the capture saw before the receiver could use them:
/// a retransmission of bytes first seen at `first`, or bytes past a hole first seen at
/// `first` and usable once the hole was filled at `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Direction of the connection (0 from the initiator, 1 back).
    pub dir: u8,
    pub first: UnixNanos,
    pub at: UnixNanos,
    pub bytes: u64,
}

impl Repair {
    pub fn cost_ns(&self) -> u64 {
        self.at.saturating_sub(self.first)
    }
}

/// A JXTA service message (discovery, SRDI, resolver) seen on a connection: the
/// direction and its first and last byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub dir: u8,
    pub start: UnixNanos,
    pub stop: UnixNanos,
}

/// The first FIN or RST of a connection, either direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEnd {
    pub at: UnixNanos,
    pub reset: bool,
}

/// Set once, when the connection ends; shared by the connection's decoder and every
/// leg it carried, because the end of a PING's connection comes after the PING was
/// decoded (and, for an unanswered PING, no later message carries it). Read with a
/// time bound, so a parallel run's decoder being ahead of the matcher changes nothing.
pub type EndCell = Arc<EndSlot>;

/// A time written once, with the writer's tag (which kind of time it is): what
/// [`EndSlot`] and a PING's [`Delivery`] are made of. An `OnceLock<UnixNanos>`'s `set`
/// went through `Once`'s general path, ~85 instructions a PING's acknowledgement
/// (`peers1k-0.1g`: 30,000 of them); this is a compare-exchange and two stores.
#[derive(Default)]
pub struct TimeSlot {
    at: AtomicU64,
    /// `UNSET`, `WRITING` while the one writer stores `at`, then the writer's tag.
    state: AtomicU8,
}

const UNSET: u8 = 0;
const WRITING: u8 = 1;
/// The tag of a plain time ([`TimeSlot::set`]).
const SET: u8 = 2;
/// A FIN's end is a plain time with its own name.
const FIN: u8 = SET;
const RST: u8 = 3;

impl TimeSlot {
    /// Keeps the first time given (`tag` ≥ [`SET`]); later ones are refused (`false`).
    #[inline]
    fn set_tagged(&self, at: UnixNanos, tag: u8) -> bool {
        debug_assert!(tag >= SET);
        // One writer wins the slot; readers see nothing until it has stored `at`.
        if self
            .state
            .compare_exchange(UNSET, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.at.store(at, Ordering::Relaxed);
        // Release: a reader that sees the tag sees the `at` stored before it.
        self.state.store(tag, Ordering::Release);
        true
    }

    #[inline]
    fn get_tagged(&self) -> Option<(UnixNanos, u8)> {
        let tag = self.state.load(Ordering::Acquire);
        (tag >= SET).then(|| (self.at.load(Ordering::Relaxed), tag))
    }

    /// Keeps the first time given; later ones are refused (`false`), as `OnceLock::set`.
    #[inline]
    pub fn set(&self, at: UnixNanos) -> bool {
        self.set_tagged(at, SET)
    }

    #[inline]
    pub fn get(&self) -> Option<UnixNanos> {
        self.get_tagged().map(|(at, _)| at)
    }
}

impl std::fmt::Debug for TimeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TimeSlot").field(&self.get_tagged()).finish()
    }
}

impl PartialEq for TimeSlot {
    fn eq(&self, other: &Self) -> bool {
        self.get_tagged() == other.get_tagged()
    }
}

impl Eq for TimeSlot {}

/// A [`ConnEnd`] written once, in 16 bytes: an `OnceLock<ConnEnd>` is 24, and its
/// `Arc` then took jemalloc's 48-byte class for each of 100,000 connections, where this
/// one takes 32.
#[derive(Default, PartialEq, Eq)]
pub struct EndSlot(TimeSlot);

impl EndSlot {
    /// Keeps the first end given; later ones are refused (`false`), as a FIN answered
    /// by an RST stays a FIN's time.
    pub fn set(&self, end: ConnEnd) -> bool {
        self.0.set_tagged(end.at, if end.reset { RST } else { FIN })
    }

    pub fn get(&self) -> Option<ConnEnd> {
        self.0.get_tagged().map(|(at, tag)| ConnEnd {
            at,
            reset: tag == RST,
        })
    }
}

impl std::fmt::Debug for EndSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EndSlot").field(&self.get()).finish()
    }
}

/// What became of a PING's bytes after it was decoded: when the receiver's TCP first
/// acknowledged them, when the sender first sent some of them again. Shared like
/// [`EndCell`], and made for PINGs only (the decoder learns which messages are PINGs
/// after their notes are taken); read with the same time bound.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub acked: TimeSlot,
    pub resent: TimeSlot,
}

pub type DeliveryCell = Arc<Delivery>;

/// PINGs per connection direction whose acknowledgement is awaited: JIM has one
/// outstanding per pair, and a connection carries a pair's polls both ways.
const WATCHED: usize = 4;

/// What the decoding stages saw of one leg's message beyond its bytes. Default: a
/// leg with nothing to say (UDP, or a connection without trouble).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireNotes {
    /// The TCP connection (flow number) and direction that carried the leg.
    pub conn: Option<(u64, u8)>,
    /// The connection's recent repairs, both directions, oldest first, at most
    /// [`REPAIRS_KEPT`]: those of the message itself that were known when it was
    /// decoded (holes it waited for), and those of the other direction (the
    /// retransmissions of the message this one answers, seen after that was decoded).
    pub repairs: Vec<Repair>,
    /// First message of its direction on a connection whose SYN was captured: when.
    pub opened_at: Option<UnixNanos>,
    /// Messages sent back to back just ahead of this one on the same direction: their
    /// bytes, and the time from their first byte to this message's first byte.
    pub queued_bytes: u64,
    pub queued_ns: u64,
    /// The connection's recent zero-window stalls, oldest first, at most
    /// [`REPAIRS_KEPT`]: `dir` the direction held back, `first` the zero window,
    /// `at` the window update that reopened it.
    pub stalls: Vec<Repair>,
    /// The connection's recent JXTA service messages, oldest first, at most
    /// [`ACTIVITY_KEPT`].
    pub activity: Vec<Activity>,
    /// When the connection ended (a FIN or RST), once it has.
    pub end: Option<EndCell>,
    /// A PING's: when its bytes were acknowledged, or sent again.
    pub delivery: Option<DeliveryCell>,
}

/// First transmissions remembered per direction, to date a retransmission by its
/// original: a window's worth of segments on a LAN, where the retransmission timer
/// fires after a few hundred ms.
const SENT_KEPT: usize = 64;

/// A first transmission, in 16 bytes (64 of them per direction of every connection):
/// a TCP payload fits 16 bits (the IP length field; a longer one, a jumbogram, is
/// remembered shorter), and so does an interface index.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    seq: u32,
    len: u16,
    interface: u16,
    ts: UnixNanos,
}

impl Sent {
    /// A payload or an interface index past 16 bits is remembered as `u16::MAX`.
    fn new(seq: u32, len: u32, interface: u32, ts: UnixNanos) -> Sent {
        Sent {
            seq,
            len: u16::try_from(len).unwrap_or(u16::MAX),
            interface: u16::try_from(interface).unwrap_or(u16::MAX),
            ts,
        }
    }
}

/// First transmissions held in the direction itself before the first spill: a
/// connection that sends a message now and then keeps a handful, and a `VecDeque`'s
/// smallest allocation (four entries, 80 bytes with malloc's header) per direction
/// was 16 MB of 100,000 such connections.
const SENT_INLINE: usize = 4;

/// The spilled log's first capacity: a `jxta-0.1g` direction sends ~16 segments, and
/// doubling from 8 reallocated 6,000 times (~830 instructions each, VecDeque::grow
/// and jemalloc's realloc); growing straight to [`SENT_KEPT`] cost more (1,350 each,
/// 1 KiB blocks). Small: a many-peers direction that spills sends a few more only.
const SENT_SPILL: usize = 4 * SENT_INLINE;

/// A direction's remembered first transmissions, oldest first, at most
/// [`SENT_KEPT`]: inline up to [`SENT_INLINE`], then moved to the heap for good.
#[derive(Debug)]
enum SentLog {
    Inline { len: u8, buf: [Sent; SENT_INLINE] },
    Spilled(SentRing),
}

/// The spilled log: appended to until [`SENT_KEPT`] are held (growing as a `Vec`
/// does, the same blocks a `VecDeque` took), then the oldest overwritten in place.
/// A `VecDeque`'s push and pop with their index wrapping were ~44 instructions of
/// every data segment (`jxta-0.1g`).
#[derive(Debug)]
struct SentRing {
    buf: Vec<Sent>,
    /// The oldest entry once `buf` is full; 0 before.
    head: usize,
}

impl Default for SentLog {
    fn default() -> Self {
        SentLog::Inline {
            len: 0,
            buf: [Sent::default(); SENT_INLINE],
        }
    }
}

impl SentLog {
    /// Appends `e`, dropping the oldest when [`SENT_KEPT`] are held. Inline: its
    /// caller runs it at every data segment, and the call's own save and restore were
    /// ~14 instructions of each (`jxta-0.1g`); always, as the growth's test and call
    /// took it past the inliner's threshold (1.76 M self out of line).
    #[inline(always)]
    fn push(&mut self, e: Sent) {
        match self {
            SentLog::Inline { len, buf } => {
                let n = usize::from(*len);
                if let Some(slot) = buf.get_mut(n) {
                    *slot = e;
                    *len += 1;
                    return;
                }
                *self = SentLog::spill(buf, e);
            }
            SentLog::Spilled(SentRing { buf, head }) => {
                if buf.len() < SENT_KEPT {
                    if buf.len() == buf.capacity() {
                        // Doubled, as `push` would, without the allocator's realloc.
                        regrow(buf, 2 * buf.len());
                    }
                    buf.push(e);
                } else if let Some(slot) = buf.get_mut(*head) {
                    *slot = e;
                    *head = (*head + 1) % SENT_KEPT;
                }
            }
        }
    }

    /// The heap log the inline one becomes, `e` added: out of line, as a direction
    /// spills once, and inline it grew [`Self::push`] where every data segment runs it.
    fn spill(buf: &[Sent; SENT_INLINE], e: Sent) -> SentLog {
        let mut q = Vec::with_capacity(SENT_SPILL);
        q.extend(buf.iter().copied());
        q.push(e);
        SentLog::Spilled(SentRing { buf: q, head: 0 })
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &Sent> {
        let (newer, older) = match self {
            SentLog::Inline { len, buf } => (buf.get(..usize::from(*len)).unwrap_or(&[]), &[][..]),
            SentLog::Spilled(SentRing { buf, head }) => {
                let (newer, older) = buf.split_at((*head).min(buf.len()));
                (older, newer)
            }
        };
        newer.iter().chain(older)
    }
}

/// What one TCP connection's decoder keeps to write each message's [`WireNotes`]:
/// fed by the flow table (segments), the reassembly's deliveries and the stream
/// parser's messages. Bounded: a few dozen entries per connection.
#[derive(Debug, Default)]
pub struct ConnNotes {
    /// Made with the first repair, zero window or service message: most connections have
    /// none, and a pointer is a tenth of the three queues' size.
    recent: Option<Box<Recent>>,
    /// Made with the first document's notes or the first FIN or RST: flows that never
    /// carry a document until they end cost one allocation at their end.
    end: Option<EndCell>,
    dirs: [DirNotes; 2],
}

/// The connection's latest repairs, zero-window stalls and service messages, both
/// directions, oldest first.
#[derive(Debug, Default)]
struct Recent {
    repairs: VecDeque<Repair>,
    stalls: VecDeque<Repair>,
    activity: VecDeque<Activity>,
    /// Per direction, meant while its `ZERO_SINCE` is set: it advertised a zero window
    /// then (the other one is held back). Here, not in [`DirNotes`]: the stall it
    /// starts is kept here anyway, and 8 bytes of each direction of 100,000
    /// connections decide whether a flow takes jemalloc's 448-byte class.
    zero_since: [UnixNanos; 2],
}

fn recent(slot: &mut Option<Box<Recent>>) -> &mut Recent {
    slot.get_or_insert_with(Box::default)
}

/// The optional fields of a [`DirNotes`] share one byte of presence bits: three
/// `Option`s padded each to their alignment were 24 bytes per direction, 4.8 MB of
/// 100,000 connections. Any value is a valid time, so no sentinel can stand for none.
const LAST_STOP: u8 = 1;
const ZERO_SINCE: u8 = 2;
const HIGH_END: u8 = 4;
const AFTER_GAP: u8 = 8;
/// In the first direction's bits only: see [`ConnNotes::first_found_jxta`].
const FOUND_JXTA: u8 = 16;

/// The connection a message came by, as the flow table knows it: read from the flow
/// at each message, not copied into its notes (24 bytes of every flow, which decide
/// whether it takes jemalloc's 512-byte class or the 640-byte one).
#[derive(Debug, Clone, Copy)]
pub struct ConnOf {
    /// The flow's number.
    pub flow: u64,
    /// When its SYN was seen, if the capture holds its opening.
    pub syn_at: Option<UnixNanos>,
}

/// PINGs awaiting their acknowledgement, behind one pointer: a direction holds none
/// between PINGs, and an empty `Vec` inline was 16 bytes more per direction.
type Watched = Option<Box<WatchList>>;

/// Emptied watch lists kept per thread for the next PING's: a list is made at nearly
/// every PING and freed at its ACK (an allocation and a free each, ~70 instructions a
/// PING). Kept here rather than in the emptying direction, whose connection may idle
/// or close (explain19 kept them there: short connections held theirs until they
/// closed). Bounded: a thread has at most this many spare.
const SPARE_WATCH_LISTS: usize = 64;

std::thread_local! {
    // The boxes are the lists the directions hold: taken and given back whole.
    #[allow(clippy::vec_box)]
    static SPARE_WATCH: std::cell::RefCell<Vec<Box<WatchList>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One of a thread's spares in `pool`, or a new value when it has none (or the thread
/// is ending).
fn take_spare<T: Default>(pool: &'static SparePool<T>) -> T {
    spared(pool).unwrap_or_default()
}

/// One of a thread's spares in `pool`, if it has one (and is not ending).
fn spared<T>(pool: &'static SparePool<T>) -> Option<T> {
    pool.try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
}

/// Keeps `value` in the thread's `pool` while it holds fewer than `most`; else it is
/// dropped.
fn keep_spare<T>(pool: &'static SparePool<T>, value: T, most: usize) {
    let _ = pool.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            if spare.len() < most {
                spare.push(value);
            }
        }
    });
}

/// A thread's spare values of one kind.
type SparePool<T> = std::thread::LocalKey<std::cell::RefCell<Vec<T>>>;

/// An empty watch list, a spare one when the thread has one.
fn watch_list() -> Box<WatchList> {
    take_spare(&SPARE_WATCH)
}

/// Keeps an emptied watch list for [`watch_list`]; freed when the thread has enough.
fn spare_watch_list(list: Box<WatchList>) {
    // A list still watching would hand its PINGs to another connection's.
    if list.is_empty() {
        keep_spare(&SPARE_WATCH, list, SPARE_WATCH_LISTS);
    }
}

/// Unset delivery cells kept per thread for the next PING's: a cell was made for every
/// PING (`Documents::decode_at`) and nearly always freed at its ACK, when the watch list
/// lets go of it after its transaction was done (an allocation and a free, ~86
/// instructions a PING, docs/performance.md, stop 33, match22). Bounded as the lists.
const SPARE_DELIVERIES: usize = 64;

std::thread_local! {
    static SPARE_DELIVERY: std::cell::RefCell<Vec<DeliveryCell>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A PING's delivery cell, unset: a spare one when the thread has one.
pub fn delivery_cell() -> DeliveryCell {
    take_spare(&SPARE_DELIVERY)
}

/// A spare delivery cell of the thread's, if it has one: for a thread that makes none
/// (the matcher's of `--threads`) to hand those it let go back to one that does.
pub(crate) fn spared_delivery() -> Option<DeliveryCell> {
    spared(&SPARE_DELIVERY)
}

/// Lets go of `cell`; kept for [`delivery_cell`], unset, when nothing else holds it (a
/// cell still held, by a leg or another list, is someone's PING's and stays as it is).
pub(crate) fn spare_delivery(mut cell: DeliveryCell) {
    let Some(unshared) = Arc::get_mut(&mut cell) else {
        return;
    };
    *unshared = Delivery::default();
    keep_spare(&SPARE_DELIVERY, cell, SPARE_DELIVERIES);
}

/// Up to [`WATCHED`] PINGs (the sequence number their bytes end at, and their cell),
/// oldest first, the entries in use before the empty ones: one allocation of 64 bytes
/// where a boxed `Vec` took two (a 24-byte box and a 64-byte buffer), made again at
/// nearly every PING since its ACK empties it. `a_watch_list_is_the_vec_it_replaced`
/// compares it with that `Vec`.
#[derive(Debug, Default)]
struct WatchList([Option<(u32, DeliveryCell)>; WATCHED]);

impl WatchList {
    fn iter(&self) -> impl Iterator<Item = &(u32, DeliveryCell)> {
        self.0.iter().map_while(Option::as_ref)
    }

    fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }

    /// At the end; when full, the oldest is dropped for it.
    fn push(&mut self, entry: (u32, DeliveryCell)) {
        match self.0.iter().position(Option::is_none) {
            Some(free) => self.0[free] = Some(entry),
            None => {
                self.0.rotate_left(1);
                self.0[WATCHED - 1] = Some(entry);
            }
        }
    }

    /// `Vec::retain`: the kept ones in their order, at the front; the cells of the
    /// others go to [`spare_delivery`].
    fn retain(&mut self, mut keep: impl FnMut(&(u32, DeliveryCell)) -> bool) {
        let mut kept = 0;
        for at in 0..WATCHED {
            let Some(entry) = self.0[at].take() else {
                break;
            };
            if keep(&entry) {
                self.0[kept] = Some(entry);
                kept += 1;
            } else {
                spare_delivery(entry.1);
            }
        }
    }
}

#[derive(Debug, Default)]
struct DirNotes {
    /// Recent first transmissions.
    sent: SentLog,
    /// The run of back-to-back messages the next one may queue behind.
    run_start: UnixNanos,
    run_bytes: u64,
    /// Meant when `LAST_STOP` is set: none until this direction's first message (what
    /// `opened_at` asks).
    last_stop: UnixNanos,
    /// Meant when `HIGH_END` is set: end of the highest data seen (sequence number),
    /// when some was.
    high_end: u32,
    /// Which of the above hold a value; `AFTER_GAP`: bytes after a gap (the capture
    /// missed some) were not waiting for a repair.
    bits: u8,
    /// PINGs sent on this direction, by the sequence number their bytes end at.
    watched: Watched,
}

impl DirNotes {
    fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    fn mark(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    /// A message framed from `start` to `stop` on this direction, noted for the next
    /// one's queue: the connection's SYN time if it is the direction's first, and the
    /// bytes and time it queued behind (back to back with the messages before it).
    fn framed(
        &mut self,
        syn_at: Option<UnixNanos>,
        start: UnixNanos,
        stop: UnixNanos,
        framed_bytes: u64,
    ) -> (Option<UnixNanos>, u64, u64) {
        let opened_at = if self.last_stop().is_none() {
            syn_at
        } else {
            None
        };
        let back_to_back = self.last_stop().is_some_and(|last| {
            start >= self.run_start && start.saturating_sub(last) <= QUEUE_GAP_NS
        });
        let (queued_bytes, queued_ns) = if back_to_back {
            (self.run_bytes, start - self.run_start)
        } else {
            self.run_start = start;
            self.run_bytes = 0;
            (0, 0)
        };
        self.run_bytes += framed_bytes;
        self.last_stop = self.last_stop().map_or(stop, |l| l.max(stop));
        self.mark(LAST_STOP, true);
        (opened_at, queued_bytes, queued_ns)
    }

    fn last_stop(&self) -> Option<UnixNanos> {
        self.has(LAST_STOP).then_some(self.last_stop)
    }

    fn high_end(&self) -> Option<u32> {
        self.has(HIGH_END).then_some(self.high_end)
    }
}

impl ConnNotes {
    /// True the first time it is called: the connection was just found to carry JXTA.
    /// Kept in a spare bit of the first direction's presence bits, as a flag of its
    /// own would add 8 bytes to every flow.
    pub fn first_found_jxta(&mut self) -> bool {
        let d = &mut self.dirs[0];
        let first = !d.has(FOUND_JXTA);
        d.mark(FOUND_JXTA, true);
        first
    }

    fn repair(&mut self, r: Repair) {
        let repairs = &mut recent(&mut self.recent).repairs;
        if repairs.len() >= REPAIRS_KEPT {
            repairs.pop_front();
        }
        repairs.push_back(r);
    }

    /// A data segment of direction `dir`, seen on capture interface `interface`, went
    /// through reassembly; `retransmitted` of its bytes had already been delivered.
    /// Inline for the segments without data (handshake, pure ACKs, FIN: 12 of a short
    /// connection's 21), which leave nothing here.
    #[inline]
    pub fn segment(
        &mut self,
        dir: usize,
        seq: u32,
        len: u32,
        retransmitted: u64,
        ts: UnixNanos,
        interface: u32,
    ) {
        if len > 0 {
            self.data_segment(dir, seq, len, retransmitted, ts, interface);
        }
    }

    /// A first transmission (all but a few data segments) notes its end and itself
    /// before anything a retransmission needs is looked at.
    fn data_segment(
        &mut self,
        dir: usize,
        seq: u32,
        len: u32,
        retransmitted: u64,
        ts: UnixNanos,
        interface: u32,
    ) {
        if retransmitted > 0 {
            self.resent(dir, seq, len, retransmitted, ts, interface);
            return;
        }
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        let end = seq.wrapping_add(len);
        if d.high_end().is_none_or(|h| seq_before(h, end)) {
            d.high_end = end;
            d.mark(HIGH_END, true);
        }
        d.sent.push(Sent::new(seq, len, interface, ts));
    }

    /// A data segment of `dir` (`len` > 0) with `retransmitted` > 0 of its bytes
    /// already delivered: a repair, dated by its original when that was captured.
    fn resent(
        &mut self,
        dir: usize,
        seq: u32,
        len: u32,
        retransmitted: u64,
        ts: UnixNanos,
        interface: u32,
    ) {
        // A byte sent again into a closed window is a zero-window probe, not a repair:
        // the stall it probes is measured as one (`control`).
        let window_shut = self
            .dirs
            .get(1 - dir.min(1))
            .is_some_and(|o| o.has(ZERO_SINCE));
        if len <= 1 && window_shut {
            return;
        }
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        let sent = Sent::new(seq, len, interface, ts);
        let interface = sent.interface;
        let overlaps =
            |e: &&Sent| seq.wrapping_sub(e.seq) < u32::from(e.len) || e.seq.wrapping_sub(seq) < len;
        // The original: the earliest remembered segment overlapping this one on the
        // same interface (an original that was not captured cannot be dated, and is
        // not guessed). Bytes seen before only on another interface are the same
        // packet seen again by a tap on both sides of a forwarding device, however
        // late it forwarded them (measured 2 ms on a loaded bridge): this interface's
        // first sight of them, not a repair, nor a resend of a watched PING.
        let original = d
            .sent
            .iter()
            .filter(|e| e.interface == interface)
            .find(overlaps)
            .map(|e| e.ts);
        if original.is_none() && d.sent.iter().any(|e| overlaps(&e)) {
            d.sent.push(sent);
            return;
        }
        for (until, cell) in d.watched.iter().flat_map(|w| w.iter()) {
            if seq_before(seq, *until) {
                let _ = cell.resent.set(ts);
            }
        }
        if let Some(first) = original {
            self.repair(Repair {
                dir: dir as u8,
                first,
                at: ts,
                bytes: retransmitted,
            });
        }
    }

    /// Reassembly delivers `len` bytes of `dir` first seen at `first_seen`, at `now`:
    /// bytes seen earlier than they are delivered waited behind a hole now filled.
    /// Inline: every delivery of data asks, and nearly all were delivered as they came
    /// (a call was ~24 instructions, most of it the call).
    #[inline]
    pub fn data(&mut self, dir: usize, first_seen: UnixNanos, now: UnixNanos, len: u64) {
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        if first_seen >= now {
            d.mark(AFTER_GAP, false);
            return;
        }
        if !d.has(AFTER_GAP) {
            self.repair(Repair {
                dir: dir as u8,
                first: first_seen,
                at: now,
                bytes: len,
            });
        }
    }

    /// Any segment of `dir` (data or not): its window and FIN/RST flags. A zero
    /// window holds the other direction back until a segment of `dir` opens it again
    /// (a window update, or the answer to a zero-window probe); the raw field is
    /// enough, as zero is zero at any scale. An RST's window means nothing.
    /// Inline for the common segment that changes nothing here: an open window on
    /// a direction not stalled, neither FIN nor RST, acknowledging no watched PING.
    #[inline]
    pub fn control(
        &mut self,
        dir: usize,
        ts: UnixNanos,
        (ack, window): (Option<u32>, u16),
        fin: bool,
        rst: bool,
    ) {
        let quiet = |d: &DirNotes| !d.has(ZERO_SINCE);
        let unwatched = |d: &DirNotes| d.watched.is_none();
        if !fin
            && !rst
            && window != 0
            && self.dirs.get(dir).is_some_and(quiet)
            && (ack.is_none() || self.dirs.get(1 - dir.min(1)).is_some_and(unwatched))
        {
            return;
        }
        self.any_control(dir, ts, (ack, window), fin, rst);
    }

    fn any_control(
        &mut self,
        dir: usize,
        ts: UnixNanos,
        (ack, window): (Option<u32>, u16),
        fin: bool,
        rst: bool,
    ) {
        let other = self.dirs.get_mut(1 - dir.min(1));
        if let (Some(ack), Some(other)) = (ack, other) {
            if let Some(watched) = other.watched.as_mut() {
                watched.retain(|(until, cell)| {
                    let covered = !seq_before(ack, *until);
                    if covered {
                        let _ = cell.acked.set(ts);
                    }
                    !covered
                });
                if watched.is_empty() {
                    // Not kept empty: a connection idles between PINGs.
                    if let Some(list) = other.watched.take() {
                        spare_watch_list(list);
                    }
                }
            }
        }
        if fin || rst {
            // The first end counts (a FIN answered by an RST stays a FIN's time).
            let _ = self
                .end
                .get_or_insert_with(EndCell::default)
                .set(ConnEnd { at: ts, reset: rst });
        }
        if rst {
            return;
        }
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        match (window, d.has(ZERO_SINCE)) {
            (0, false) => {
                if let Some(since) = recent(&mut self.recent).zero_since.get_mut(dir) {
                    *since = ts;
                    d.mark(ZERO_SINCE, true);
                }
            }
            (1.., true) => {
                d.mark(ZERO_SINCE, false);
                let held = recent(&mut self.recent);
                // Set with the bit, for a direction found in `dirs`.
                let first = held.zero_since.get(dir).copied().unwrap_or_default();
                let stalls = &mut held.stalls;
                if stalls.len() >= REPAIRS_KEPT {
                    stalls.pop_front();
                }
                stalls.push_back(Repair {
                    dir: 1 - dir as u8,
                    first,
                    at: ts,
                    bytes: 0,
                });
            }
            _ => {}
        }
    }

    /// The message of `dir` just decoded was a PING: `cell` learns when its bytes (up
    /// to the highest seen on `dir`) are acknowledged or sent again.
    pub fn watch(&mut self, dir: usize, cell: DeliveryCell) {
        let Some(d) = self.dirs.get_mut(dir) else {
            return;
        };
        let Some(end) = d.high_end() else {
            return;
        };
        // Emptied when its PINGs are acknowledged, it is taken again per PING.
        d.watched.get_or_insert_with(watch_list).push((end, cell));
    }

    /// The message of `dir` from `start` to `stop` just decoded was a JXTA service
    /// message (discovery, SRDI, resolver): later messages carry it.
    pub fn activity(&mut self, dir: usize, start: UnixNanos, stop: UnixNanos) {
        let activity = &mut recent(&mut self.recent).activity;
        if activity.len() >= ACTIVITY_KEPT {
            activity.pop_front();
        }
        activity.push_back(Activity {
            dir: dir as u8,
            start,
            stop,
        });
    }

    /// Reassembly gave up on a hole of `dir` (the capture missed bytes).
    pub fn gap(&mut self, dir: usize) {
        if let Some(d) = self.dirs.get_mut(dir) {
            d.mark(AFTER_GAP, true);
        }
    }

    /// A message of `framed_bytes` on `dir` of `conn`, first and last byte at `start`,
    /// `stop`: the direction's queue noted (the next message's depends on it), its
    /// notes lent, to be written only for a document that takes them. Built for every
    /// message, they were ~140 instructions with their drop of each of the messages
    /// without a document (`jxta-0.1g`: a third of them, router and ack traffic).
    #[inline]
    pub fn message(
        &mut self,
        conn: ConnOf,
        dir: usize,
        start: UnixNanos,
        stop: UnixNanos,
        framed_bytes: u64,
    ) -> LentNotes<'_> {
        let Some(d) = self.dirs.get_mut(dir) else {
            return LentNotes::default();
        };
        let (opened_at, queued_bytes, queued_ns) = d.framed(conn.syn_at, start, stop, framed_bytes);
        LentNotes {
            of: Some((
                self,
                MessageAt {
                    conn: (conn.flow, dir as u8),
                    opened_at,
                    queued_bytes,
                    queued_ns,
                },
            )),
        }
    }
}

/// What a message's [`WireNotes`] have of the message itself, noted as it was framed.
#[derive(Clone, Copy, Debug)]
struct MessageAt {
    conn: (u64, u8),
    opened_at: Option<UnixNanos>,
    queued_bytes: u64,
    queued_ns: u64,
}

/// A message's notes, lent by its connection to the stage that decodes it
/// ([`ConnNotes::message`]); none for a datagram.
#[derive(Debug, Default)]
pub struct LentNotes<'a> {
    of: Option<(&'a mut ConnNotes, MessageAt)>,
}

impl LentNotes<'_> {
    /// Writes the notes over `to` (a document's sighting's, what the matcher left of
    /// the last one): its lists refilled in place, none allocated when the connection
    /// has nothing recent; the end cell made with the first notes that carry it.
    pub fn write(&mut self, to: &mut WireNotes) {
        // Every field named: one added to `WireNotes` and not written here would carry
        // an earlier document's value into this one.
        let WireNotes {
            conn,
            repairs,
            opened_at,
            queued_bytes,
            queued_ns,
            stalls,
            activity,
            end,
            delivery,
        } = to;
        let Some((notes, at)) = &mut self.of else {
            // A datagram's: the default notes, the lists emptied in their room (the
            // next document of a connection refills them).
            (*conn, *opened_at, *end, *delivery) = (None, None, None, None);
            (*queued_bytes, *queued_ns) = (0, 0);
            repairs.clear();
            stalls.clear();
            activity.clear();
            return;
        };
        *conn = Some(at.conn);
        *opened_at = at.opened_at;
        (*queued_bytes, *queued_ns) = (at.queued_bytes, at.queued_ns);
        let recent = notes.recent.as_deref();
        refill(repairs, recent.map(|r| &r.repairs));
        refill(stalls, recent.map(|r| &r.stalls));
        refill(activity, recent.map(|r| &r.activity));
        let cell = notes.end.get_or_insert_with(EndCell::default);
        if !end.as_ref().is_some_and(|e| Arc::ptr_eq(e, cell)) {
            *end = Some(Arc::clone(cell));
        }
        *delivery = None;
    }
}

/// `to` made a copy of `from` (empty for none), in the room it has.
fn refill<T: Copy>(to: &mut Vec<T>, from: Option<&VecDeque<T>>) {
    to.clear();
    if let Some(from) = from {
        let (a, b) = from.as_slices();
        to.extend_from_slice(a);
        to.extend_from_slice(b);
    }
}

/// One leg of a PING or PONG as the transaction remembers it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leg {
    pub start: UnixNanos,
    pub stop: UnixNanos,
    pub hop_src: Option<PeerId>,
    pub hop_dst: Option<PeerId>,
    pub wire: WireNotes,
}

/// The causes, as flags; the order of [`Flag::ALL`] is the order they are printed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Retransmissions or holes inside the PING's or PONG's bytes.
    Retrans,
    /// The PING or PONG was the first message of a connection opened for it.
    Conn,
    /// The PING or PONG waited behind other messages on its connection.
    Queue,
    /// The PING or PONG went through a relay (the TCP peer is not the end peer).
    Relay,
    /// The hops differ from the pair's previous transaction.
    Route,
    /// The receiver's side (beyond the capture point) took far longer than usual.
    Far,
    /// A zero window held the PING's or PONG's bytes back.
    Window,
    /// A connection of the PING or PONG was reset or closed during the transaction.
    Reset,
    /// Discovery, SRDI or resolver messages were in flight on its connections.
    Jxta,
}

impl Flag {
    /// The first six in the order they were introduced, so that older labels read
    /// the same; the later ones after them.
    pub const ALL: [Flag; 9] = [
        Flag::Retrans,
        Flag::Conn,
        Flag::Queue,
        Flag::Relay,
        Flag::Route,
        Flag::Far,
        Flag::Window,
        Flag::Reset,
        Flag::Jxta,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Retrans => "retrans",
            Flag::Conn => "conn",
            Flag::Queue => "queue",
            Flag::Relay => "relay",
            Flag::Route => "route",
            Flag::Far => "far",
            Flag::Window => "window",
            Flag::Reset => "reset",
            Flag::Jxta => "jxta",
        }
    }

    pub fn parse(s: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Flag`]s, written `retrans+queue` (empty: nothing to say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flags(u16);

impl Flags {
    pub fn insert(&mut self, f: Flag) {
        self.0 |= f.bit();
    }
    pub fn contains(self, f: Flag) -> bool {
        self.0 & f.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Reads `retrans+queue`; `None` on an unknown word.
    pub fn parse(s: &str) -> Option<Flags> {
        let mut flags = Flags::default();
        for w in s.split('+').filter(|w| !w.is_empty()) {
            flags.insert(Flag::parse(w)?);
        }
        Some(flags)
    }
}

impl std::fmt::Display for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, flag) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(flag.as_str())?;
        }
        Ok(())
    }
}

impl serde::Serialize for Flags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the wire shows happened to one transaction: flags and measured shares.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cause {
    pub flags: Flags,
    /// Time repairs (retransmissions, holes) cost inside the PING's and PONG's bytes.
    pub tcp_ns: u64,
    /// SYN to the first byte of the PING (or PONG) on a connection opened for it.
    pub conn_ns: u64,
    /// Time the PING and PONG waited behind other messages, and those messages' bytes.
    pub queue_ns: u64,
    pub queue_bytes: u64,
    /// Legs seen of the PING (1 direct; 2 when a relay's capture sees both).
    pub ping_legs: u8,
    /// PING's last byte at the capture point to the PONG's first, less what repairs
    /// and queueing explain: the receiver's side (its network and its own delay).
    pub far_ns: Option<u64>,
    /// The relay, when the poller's TCP peer is not the receiver.
    #[serde(serialize_with = "peer_text")]
    pub relay: Option<PeerId>,
}

fn peer_text<S: serde::Serializer>(p: &Option<PeerId>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(p.as_str()),
        None => s.serialize_none(),
    }
}

impl Cause {
    /// The flags as written in the CSV (`retrans+queue`, empty for none).
    pub fn label(&self) -> String {
        self.flags.to_string()
    }
}

/// What a pair remembers between transactions: its last route and its recent far-side
/// times (the baseline `far` is judged against), in µs. 32 bytes while a pair has had
/// few transactions: every tracked pair has one, and most of a gateway's pairs answer
/// once or twice (the full ring inline was 72 bytes of each).
#[derive(Clone, Debug, Default)]
pub struct History {
    route: Route,
    far: Far,
}

/// The pair's last route (the poller's TCP peer, the receiver's last TCP peer). Most
/// pairs talk directly, a route that is the pair's own receiver both ways: that one is
/// remembered without an allocation (150,000 one-poll pairs held 150,000 boxes, ~9 MB).
#[derive(Clone, Debug, Default, PartialEq)]
enum Route {
    #[default]
    Unknown,
    /// Both hops are the receiver of the pair's key.
    Direct,
    Other(Box<(Option<PeerId>, Option<PeerId>)>),
}

/// Fewer far-side times than a median needs are kept inline; the ring is allocated when
/// they no longer fit.
#[derive(Clone, Debug)]
enum Far {
    Few { us: [u32; FAR_INLINE], len: u8 },
    Ring(Box<FarRing>),
}

/// Below [`FAR_MIN_HISTORY`]: no median is taken from these alone.
const FAR_INLINE: usize = 3;

impl Default for Far {
    fn default() -> Self {
        Far::Few {
            us: [0; FAR_INLINE],
            len: 0,
        }
    }
}

#[derive(Clone, Debug)]
struct FarRing {
    us: [u32; FAR_HISTORY],
    len: u8,
    next: u8,
}

impl History {
    /// Whether `far_ns` is more than [`FAR_FACTOR`] times the median (at least 1 ns) of
    /// the remembered far-side times, once there are [`FAR_MIN_HISTORY`] of them: what
    /// [`Self::median_far`] decides, without sorting a copy (~100 instructions a
    /// transaction). The bound `FAR_FACTOR * max(us * 1000, 1)` never falls as `us`
    /// rises, so it is below `far_ns` at the median exactly when it is below it for
    /// more than half of the times (the median's and all smaller ones').
    fn far_beyond_median(&self, far_ns: u64) -> bool {
        let Far::Ring(ring) = &self.far else {
            return false;
        };
        let n = usize::from(ring.len);
        if n < FAR_MIN_HISTORY {
            return false;
        }
        let below = ring
            .us
            .iter()
            .take(n)
            .filter(|&&us| FAR_FACTOR * (u64::from(us) * 1_000).max(1) < far_ns)
            .count();
        below > n / 2
    }

    /// The median far-side time (what [`Self::far_beyond_median`] compares with).
    #[cfg(test)]
    fn median_far(&self) -> Option<u64> {
        let Far::Ring(ring) = &self.far else {
            return None;
        };
        let n = usize::from(ring.len);
        if n < FAR_MIN_HISTORY {
            return None;
        }
        let mut v = ring.us;
        let v = &mut v[..n];
        v.sort_unstable();
        Some(u64::from(v[n / 2]) * 1_000)
    }

    fn remember_far(&mut self, far_ns: u64) {
        let us = u32::try_from(far_ns / 1_000).unwrap_or(u32::MAX);
        if let Far::Few { us: few, len } = &mut self.far {
            let n = usize::from(*len);
            if n < FAR_INLINE {
                few[n] = us;
                *len += 1;
                return;
            }
            let mut ring = FarRing {
                us: [0; FAR_HISTORY],
                len: *len,
                next: *len,
            };
            ring.us[..n].copy_from_slice(&few[..n]);
            self.far = Far::Ring(Box::new(ring));
        }
        if let Far::Ring(ring) = &mut self.far {
            ring.us[usize::from(ring.next)] = us;
            ring.next = ((usize::from(ring.next) + 1) % FAR_HISTORY) as u8;
            ring.len = (usize::from(ring.len) + 1).min(FAR_HISTORY) as u8;
        }
    }
}

/// Repair (or stall) time inside a leg's bytes: `spans` on its connection direction
/// whose span meets the leg's (a retransmission of bytes first sent within the
/// message, or a hole the message waited for), from every note the transaction
/// gathered (the same repair seen by several legs counts once).
/// Also returns when the last of those repairs completed (0 without any): when the
/// leg's bytes were all with the receiver.
fn leg_spans_ns(
    leg: &Leg,
    notes: &[&WireNotes],
    spans: fn(&WireNotes) -> &[Repair],
) -> (u64, UnixNanos) {
    let Some((flow, dir)) = leg.wire.conn else {
        return (0, 0);
    };
    let mut seen: Vec<Repair> = Vec::new();
    for n in notes.iter().filter(|n| n.conn.map(|c| c.0) == Some(flow)) {
        for r in spans(n) {
            let meets = r.dir == dir && r.first <= leg.stop && r.at >= leg.start;
            if meets && !seen.contains(r) {
                seen.push(*r);
            }
        }
    }
    let cost = seen.iter().map(Repair::cost_ns).max().unwrap_or(0);
    (cost, seen.iter().map(|r| r.at).max().unwrap_or(0))
}

/// Explains one answered transaction from its legs: `ping` in the order seen (the
/// poller's first), `pong` likewise (the receiver's first, the delivering last).
/// Updates the pair's history. `key_receiver`: the receiver ID of the pair's key, the
/// same for every transaction of the pair (`receiver`, the one that answered, need not
/// be).
#[cfg(test)]
pub fn explain(
    ping: &[Leg],
    pong: &[Leg],
    receiver: Option<&PeerId>,
    key_receiver: Option<&PeerId>,
    h: &mut History,
) -> Cause {
    let mut c = Cause::default();
    explain_into(ping, pong, receiver, key_receiver, h, &mut c);
    c
}

/// [`explain`] written into `c`, a default [`Cause`] (the record's own, already in
/// its list): returned, it was copied through an `Option` into the record.
pub fn explain_into(
    ping: &[Leg],
    pong: &[Leg],
    receiver: Option<&PeerId>,
    key_receiver: Option<&PeerId>,
    h: &mut History,
    c: &mut Cause,
) {
    let until = pong.last().map_or(0, |l| l.stop);
    let scan = Scan::of(ping.iter().chain(pong), ping_start(ping), until);
    // The notes are gathered only for a repair's or a stall's cost per leg: nearly
    // every transaction has neither.
    if scan.repairs || scan.stalls {
        with_notes(ping, pong, |notes| {
            explain_with(ping, pong, receiver, key_receiver, h, &scan, notes, c)
        })
    } else {
        explain_with(ping, pong, receiver, key_receiver, h, &scan, &[], c)
    }
}

/// What a transaction's legs and their notes say without a per-leg measure, gathered
/// in one pass over the legs: each was a loop of its own over the legs or the notes,
/// and the notes were gathered for every transaction (`explain` was ~530 instructions
/// a transaction on `jxta-0.1g`, ~495 since).
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// A note holds a repair, or a zero-window stall: measured per leg then.
    repairs: bool,
    stalls: bool,
    /// A leg was the first message of a connection opened for it: the longest SYN to
    /// first byte.
    conn_ns: Option<u64>,
    /// `reset`: a connection that carried a leg ended (FIN or RST) from the PING's
    /// first byte to `until` (the PONG's delivery, or the deadline of an unanswered
    /// PING).
    reset: bool,
    /// `jxta`: a discovery, SRDI or resolver message on a connection of a leg
    /// overlapped the transaction (from the PING's first byte to `until`).
    jxta: bool,
}

impl Scan {
    fn of<'a>(legs: impl Iterator<Item = &'a Leg>, from: UnixNanos, until: UnixNanos) -> Scan {
        let mut scan = Scan::default();
        let during = |a: &Activity| a.start <= until && a.stop >= from;
        for leg in legs {
            let w = &leg.wire;
            scan.repairs |= !w.repairs.is_empty();
            scan.stalls |= !w.stalls.is_empty();
            if let Some(opened) = w.opened_at {
                let ns = leg.start.saturating_sub(opened);
                scan.conn_ns = Some(scan.conn_ns.map_or(ns, |c| c.max(ns)));
            }
            scan.reset = scan.reset
                || w.end
                    .as_ref()
                    .and_then(|cell| cell.get())
                    .is_some_and(|e| e.at >= from && e.at <= until);
            scan.jxta = scan.jxta || w.activity.iter().any(during);
        }
        scan
    }

    /// The flags and share it decides alone: `conn`, `reset`, `jxta`.
    fn apply(&self, c: &mut Cause) {
        if let Some(ns) = self.conn_ns {
            c.conn_ns = c.conn_ns.max(ns);
            c.flags.insert(Flag::Conn);
        }
        if self.reset {
            c.flags.insert(Flag::Reset);
        }
        if self.jxta {
            c.flags.insert(Flag::Jxta);
        }
    }
}

/// Legs' wire notes passed on the stack up to this many (the matcher keeps four legs
/// of each side): a `Vec` per transaction cost an allocation and a free.
const STACK_NOTES: usize = 8;

/// `f` of the wire notes of `ping`'s then `pong`'s legs, in that order.
fn with_notes<R>(ping: &[Leg], pong: &[Leg], f: impl FnOnce(&[&WireNotes]) -> R) -> R {
    let n = ping.len() + pong.len();
    let mut legs = ping.iter().chain(pong);
    match legs.next() {
        Some(first) if n <= STACK_NOTES => {
            let mut buf = [&first.wire; STACK_NOTES];
            for (slot, leg) in buf.iter_mut().skip(1).zip(legs) {
                *slot = &leg.wire;
            }
            f(buf.get(..n).unwrap_or_default())
        }
        first => {
            let all: Vec<&WireNotes> = first.into_iter().chain(legs).map(|l| &l.wire).collect();
            f(&all)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn explain_with(
    ping: &[Leg],
    pong: &[Leg],
    receiver: Option<&PeerId>,
    key_receiver: Option<&PeerId>,
    h: &mut History,
    scan: &Scan,
    notes: &[&WireNotes],
    c: &mut Cause,
) {
    c.ping_legs = ping.len().min(u8::MAX as usize) as u8;
    let repair = |l: &Leg| match scan.repairs {
        true => leg_spans_ns(l, notes, |n| &n.repairs),
        false => (0, 0),
    };
    let ping_tcp: u64 = ping.iter().map(|l| repair(l).0).max().unwrap_or(0);
    let pong_tcp: u64 = pong.iter().map(|l| repair(l).0).max().unwrap_or(0);
    c.tcp_ns = ping_tcp + pong_tcp;
    if c.tcp_ns >= RETRANS_FLAG_NS {
        c.flags.insert(Flag::Retrans);
    }
    scan.apply(c);
    // Waiting behind other messages happens where a message is written: the first
    // leg of each (a relay's forwarding is its own business, seen as `far` or relay).
    let pong_queue = pong.first().map_or(0, |l| l.wire.queued_ns);
    for leg in [ping.first(), pong.first()].into_iter().flatten() {
        c.queue_ns += leg.wire.queued_ns;
        c.queue_bytes += leg.wire.queued_bytes;
    }
    if c.queue_ns >= QUEUE_FLAG_NS {
        c.flags.insert(Flag::Queue);
    }
    // The poller's TCP peer: the receiver itself, or a relay.
    let first_hop = ping.first().and_then(|l| l.hop_dst.as_ref());
    if let (Some(hop), Some(r)) = (first_hop, receiver) {
        if hop != r {
            c.relay = Some(hop.clone());
            c.flags.insert(Flag::Relay);
        }
    }
    // Compared by reference; copied only when a route other than direct is kept.
    let last_hop = pong.last().and_then(|l| l.hop_src.as_ref());
    if first_hop.is_some() || last_hop.is_some() {
        let direct = matches!((first_hop, last_hop, key_receiver),
            (Some(a), Some(b), Some(k)) if a == k && b == k);
        let same = match &h.route {
            Route::Unknown => None,
            Route::Direct => Some(direct),
            Route::Other(prev) => Some(prev.0.as_ref() == first_hop && prev.1.as_ref() == last_hop),
        };
        if same != Some(true) {
            if same == Some(false) {
                c.flags.insert(Flag::Route);
            }
            h.route = if direct {
                Route::Direct
            } else {
                Route::Other(Box::new((first_hop.cloned(), last_hop.cloned())))
            };
        }
    }
    if scan.stalls {
        window(c, ping, pong, notes);
    }
    if let (Some(p), Some(q)) = (ping.last(), pong.first()) {
        // The PING reached the receiver with its last byte, or with the copy that
        // repaired it when that came later (a retransmission seen after the original;
        // a hole's fill is already the leg's last byte).
        let delivered = p.stop.max(repair(p).1);
        let far = q.start.saturating_sub(delivered).saturating_sub(pong_queue);
        c.far_ns = Some(far);
        if h.far_beyond_median(far) {
            c.flags.insert(Flag::Far);
        }
        h.remember_far(far);
    }
}

/// Explains a PING that got no answer by `deadline`: what its legs show, without the
/// PONG's side (`far`, `route` and `queue` need one). Leaves the pair's history alone.
pub fn explain_unanswered(ping: &[Leg], receiver: Option<&PeerId>, deadline: UnixNanos) -> Cause {
    let mut c = Cause {
        ping_legs: ping.len().min(u8::MAX as usize) as u8,
        ..Cause::default()
    };
    let scan = Scan::of(ping.iter(), ping_start(ping), deadline);
    with_notes(ping, &[], |notes| {
        if scan.repairs {
            c.tcp_ns = ping
                .iter()
                .map(|l| leg_spans_ns(l, notes, |n| &n.repairs).0)
                .max()
                .unwrap_or(0);
        }
        // Before the stalls' time joins `tcp_ns`: `retrans` is the repairs' alone.
        if c.tcp_ns >= RETRANS_FLAG_NS {
            c.flags.insert(Flag::Retrans);
        }
        if scan.stalls {
            window(&mut c, ping, &[], notes);
        }
    });
    scan.apply(&mut c);
    let first_hop = ping.first().and_then(|l| l.hop_dst.clone());
    if let (Some(hop), Some(r)) = (&first_hop, receiver) {
        if hop != r {
            c.relay = Some(hop.clone());
            c.flags.insert(Flag::Relay);
        }
    }
    delivery(&mut c, ping, deadline);
    c
}

/// An unanswered PING's bytes after it was decoded: sent again (`retrans`); or
/// acknowledged by the receiver's TCP on a connection that stayed up, so the time
/// went beyond the capture point (`far`: the receiver's side never answered).
fn delivery(c: &mut Cause, ping: &[Leg], deadline: UnixNanos) {
    let by = |t: Option<UnixNanos>| t.is_some_and(|t| t <= deadline);
    let cells = ping.iter().filter_map(|l| l.wire.delivery.as_ref());
    for d in cells {
        if by(d.resent.get()) {
            c.flags.insert(Flag::Retrans);
        }
        if by(d.acked.get()) && !c.flags.contains(Flag::Reset) {
            c.flags.insert(Flag::Far);
        }
    }
}

/// `a` comes before `b` in sequence space.
fn seq_before(a: u32, b: u32) -> bool {
    b.wrapping_sub(a).wrapping_sub(1) < 1 << 31
}

fn ping_start(ping: &[Leg]) -> UnixNanos {
    ping.first().map_or(0, |l| l.start)
}

/// `window`: zero windows held the PING's or PONG's bytes back; their time is TCP's
/// share, with the repairs' (`tcp_ns`). Asked when a note holds a stall
/// ([`Scan::stalls`]).
fn window(c: &mut Cause, ping: &[Leg], pong: &[Leg], notes: &[&WireNotes]) {
    let most = |legs: &[Leg]| {
        legs.iter()
            .map(|l| leg_spans_ns(l, notes, |n| &n.stalls).0)
            .max()
            .unwrap_or(0)
    };
    let stalled = most(ping) + most(pong);
    c.tcp_ns += stalled;
    if stalled >= WINDOW_FLAG_NS {
        c.flags.insert(Flag::Window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first transmission is remembered in 16-bit fields: a jumbogram's length and a
    /// wide interface index as `u16::MAX`, and the jumbogram still dates a repair.
    #[test]
    fn a_first_transmission_is_remembered_in_sixteen_bits() {
        for (len, interface) in [(1, 0), (0xffff, 0xffff), (0x1_0000, 0x1_0000), (70_000, 9)] {
            let e = Sent::new(7, len, interface, 11);
            let want = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
            assert_eq!(
                (e.seq, e.len, e.interface, e.ts),
                (7, want(len), want(interface), 11)
            );
        }
        // Through the notes: a retransmission overlapping the jumbogram's first 64 KiB
        // finds it as its original.
        let mut n = ConnNotes::default();
        n.segment(0, 1000, 70_000, 0, 10, 0);
        n.segment(0, 1000, 300, 300, 20, 0);
        let r = n
            .recent
            .as_ref()
            .map(|r| r.repairs.iter().copied().collect::<Vec<_>>());
        assert_eq!(
            r.unwrap_or_default(),
            vec![Repair {
                dir: 0,
                first: 10,
                at: 20,
                bytes: 300
            }]
        );
    }

    proptest::proptest! {
        /// Pushes (past the bound) and retains by an acknowledgement, against the boxed
        /// `Vec` the list replaced (`remove(0)` then `push` when full): the same
        /// entries in the same order, the same ones asked and dropped, and empty alike.
        #[test]
        fn a_watch_list_is_the_vec_it_replaced(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u32..12), 0..40),
        ) {
            let mut list = WatchList::default();
            let mut model: Vec<(u32, DeliveryCell)> = Vec::new();
            for (push, n) in ops {
                if push {
                    let cell = DeliveryCell::default();
                    if model.len() >= WATCHED {
                        model.remove(0);
                    }
                    model.push((n, Arc::clone(&cell)));
                    list.push((n, cell));
                } else {
                    let (mut asked_list, mut asked_model) = (Vec::new(), Vec::new());
                    list.retain(|(until, _)| {
                        asked_list.push(*until);
                        *until > n
                    });
                    model.retain(|(until, _)| {
                        asked_model.push(*until);
                        *until > n
                    });
                    proptest::prop_assert_eq!(asked_list, asked_model);
                }
                let got: Vec<_> = list.iter().collect();
                proptest::prop_assert_eq!(got.len(), model.len());
                for ((a, ca), (b, cb)) in got.iter().zip(&model) {
                    proptest::prop_assert_eq!(a, b);
                    proptest::prop_assert!(Arc::ptr_eq(ca, cb));
                    // Dropped from both, or held by both: the list and the model.
                    proptest::prop_assert_eq!(Arc::strong_count(ca), 2);
                }
                proptest::prop_assert_eq!(list.is_empty(), model.is_empty());
            }
        }
    }

    proptest::proptest! {
        /// Any run of first transmissions, past the spill and the bound: the log holds
        /// what the capped `VecDeque` it replaced held, oldest first, so the original
        /// a retransmission is dated by (the first overlapping one) is the same.
        #[test]
        fn the_sent_log_is_the_capped_queue_it_replaced(
            sent in proptest::collection::vec(
                (proptest::num::u32::ANY, proptest::num::u16::ANY, 0u16..3, proptest::num::u64::ANY),
                0..(3 * SENT_KEPT),
            ),
            probe in proptest::num::u32::ANY,
        ) {
            let mut log = SentLog::default();
            let mut queue: VecDeque<Sent> = VecDeque::new();
            for (seq, len, interface, ts) in sent {
                let e = Sent { seq, len, interface, ts };
                log.push(e);
                if queue.len() >= SENT_KEPT {
                    queue.pop_front();
                }
                queue.push_back(e);
                let key = |e: &Sent| (e.seq, e.len, e.interface, e.ts);
                let held: Vec<_> = log.iter().map(key).collect();
                let want: Vec<_> = queue.iter().map(key).collect();
                proptest::prop_assert_eq!(held, want);
                let overlaps = |e: &&Sent| probe.wrapping_sub(e.seq) < u32::from(e.len);
                proptest::prop_assert_eq!(
                    log.iter().find(overlaps).map(key),
                    queue.iter().find(overlaps).map(key)
                );
            }
        }
    }

    /// The old per-question loops over the legs and their notes, as `explain` had them.
    fn scan_by_loops(legs: &[Leg], from: UnixNanos, until: UnixNanos) -> Scan {
        let notes: Vec<&WireNotes> = legs.iter().map(|l| &l.wire).collect();
        let mut conn_ns = None;
        for leg in legs {
            if let Some(opened) = leg.wire.opened_at {
                conn_ns = Some(conn_ns.unwrap_or(0).max(leg.start.saturating_sub(opened)));
            }
        }
        let ended = |l: &Leg| {
            l.wire
                .end
                .as_ref()
                .and_then(|cell| cell.get())
                .is_some_and(|e| e.at >= from && e.at <= until)
        };
        let during = |a: &Activity| a.start <= until && a.stop >= from;
        Scan {
            repairs: notes.iter().any(|n| !n.repairs.is_empty()),
            stalls: !notes.iter().all(|n| n.stalls.is_empty()),
            conn_ns,
            reset: legs.iter().any(ended),
            jxta: notes.iter().any(|n| n.activity.iter().any(during)),
        }
    }

    proptest::proptest! {
        /// One pass over the legs answers what the separate loops did, for any number
        /// of legs (past the stack's eight), ends before, inside and after the span,
        /// openings after the leg's start, and spans given backwards.
        #[test]
        fn one_scan_is_the_loops_it_replaced(
            legs in proptest::collection::vec(
                (
                    0u64..50,
                    proptest::option::of(0u64..60),
                    proptest::option::of((0u64..60, proptest::bool::ANY)),
                    proptest::collection::vec((0u64..60, 0u64..60), 0..3),
                    proptest::bool::ANY,
                    proptest::bool::ANY,
                ),
                0..11,
            ),
            from in 0u64..60,
            until in 0u64..60,
        ) {
            let legs: Vec<Leg> = legs
                .into_iter()
                .map(|(start, opened, end, activity, repaired, stalled)| {
                    let r = Repair { dir: 0, first: 1, at: 2, bytes: 3 };
                    let cell = end.map(|(at, reset)| {
                        let cell = EndCell::default();
                        let _ = cell.set(ConnEnd { at, reset });
                        cell
                    });
                    Leg {
                        start,
                        wire: WireNotes {
                            opened_at: opened,
                            end: cell,
                            activity: activity
                                .into_iter()
                                .map(|(start, stop)| Activity { dir: 0, start, stop })
                                .collect(),
                            repairs: if repaired { vec![r] } else { Vec::new() },
                            stalls: if stalled { vec![r] } else { Vec::new() },
                            ..WireNotes::default()
                        },
                        ..Leg::default()
                    }
                })
                .collect();
            proptest::prop_assert_eq!(
                Scan::of(legs.iter(), from, until),
                scan_by_loops(&legs, from, until)
            );
        }
    }

    /// The list an ACK empties is the next PING's, on this connection or another of the
    /// thread, and holds that PING's alone; a list still watching is not kept, and no
    /// more than the bound are.
    #[test]
    fn an_emptied_watch_list_is_taken_by_the_next_ping() {
        let list_at = |n: &ConnNotes| n.dirs[0].watched.as_deref().map(|l| l as *const WatchList);
        let conn = ConnOf {
            flow: 1,
            syn_at: None,
        };
        let spare = || SPARE_WATCH.with(|s| s.borrow().len());
        let mut a = ConnNotes::default();
        a.segment(0, 1000, 300, 0, MS, 0);
        let _ = a.message(conn, 0, MS, MS, 300);
        a.watch(0, DeliveryCell::default());
        let first = list_at(&a).expect("a PING is watched");
        let before = spare();
        a.control(1, 2 * MS, (Some(1300), 65535), false, false);
        assert!(a.dirs[0].watched.is_none());
        assert_eq!(spare(), before + 1, "the emptied list is kept");
        let mut b = ConnNotes::default();
        b.segment(0, 5000, 100, 0, 3 * MS, 0);
        let cell = DeliveryCell::default();
        b.watch(0, cell.clone());
        assert_eq!(spare(), before, "and taken again");
        assert_eq!(list_at(&b), Some(first));
        let kept: Vec<_> = b.dirs[0].watched.iter().flat_map(|l| l.iter()).collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, 5100);
        assert!(Arc::ptr_eq(&kept[0].1, &cell));
        let mut busy = WatchList::default();
        busy.push((1, DeliveryCell::default()));
        let before = spare();
        spare_watch_list(Box::new(busy));
        assert_eq!(spare(), before, "a list still watching is not kept");
        for _ in 0..2 * SPARE_WATCH_LISTS {
            spare_watch_list(Box::default());
        }
        assert_eq!(spare(), SPARE_WATCH_LISTS);
    }

    #[test]
    fn a_watch_list_is_one_small_allocation() {
        assert_eq!(std::mem::size_of::<WatchList>(), 64);
        assert_eq!(std::mem::size_of::<Watched>(), 8);
    }

    /// The legs' notes on the stack and past it: each leg's own, in order.
    #[test]
    fn legs_notes_are_passed_in_order_on_the_stack_and_past_it() {
        let leg = |n: u64| Leg {
            start: n,
            stop: n,
            hop_src: None,
            hop_dst: None,
            wire: WireNotes {
                queued_bytes: n,
                ..WireNotes::default()
            },
        };
        for (p, q) in [(0, 0), (1, 0), (0, 1), (4, 4), (3, 5), (5, 4), (9, 3)] {
            let ping: Vec<Leg> = (0..p).map(leg).collect();
            let pong: Vec<Leg> = (100..100 + q).map(leg).collect();
            let seen = with_notes(&ping, &pong, |notes| {
                notes.iter().map(|w| w.queued_bytes).collect::<Vec<_>>()
            });
            let want: Vec<u64> = (0..p).chain(100..100 + q).collect();
            assert_eq!(seen, want, "{p} + {q} legs");
        }
    }

    #[test]
    fn the_sent_log_keeps_what_a_capped_queue_keeps_across_the_spill() {
        let mut log = SentLog::default();
        let mut queue: VecDeque<Sent> = VecDeque::new();
        for i in 0..(3 * SENT_KEPT as u32) {
            let e = Sent {
                seq: i.wrapping_mul(1_000),
                len: 100,
                interface: (i % 3) as u16,
                ts: u64::from(i) * 7,
            };
            log.push(e);
            if queue.len() >= SENT_KEPT {
                queue.pop_front();
            }
            queue.push_back(e);
            let held: Vec<(u32, u64)> = log.iter().map(|e| (e.seq, e.ts)).collect();
            let want: Vec<(u32, u64)> = queue.iter().map(|e| (e.seq, e.ts)).collect();
            assert_eq!(held, want, "after {} pushes", i + 1);
            assert_eq!(
                matches!(log, SentLog::Inline { .. }),
                queue.len() <= SENT_INLINE
            );
            // Spilled with room for the spill's capacity: no reallocation until then.
            if let SentLog::Spilled(q) = &log {
                if q.buf.len() <= SENT_SPILL {
                    assert_eq!(q.buf.capacity(), SENT_SPILL, "after {} pushes", i + 1);
                }
                // Then doubled as `Vec::push` doubled it: the same blocks.
                assert_eq!(
                    q.buf.capacity(),
                    q.buf.len().next_power_of_two().max(SENT_SPILL),
                    "after {} pushes",
                    i + 1
                );
                // Never grown past what is kept.
                assert!(q.buf.capacity() <= SENT_KEPT, "after {} pushes", i + 1);
            }
        }
        // Inline, a direction's few first transmissions cost no allocation of their own.
        assert!(std::mem::size_of::<SentLog>() <= 72);
        // The optional fields' presence in one byte, not a padded tag each; the zero
        // window's time in the connection's `Recent`.
        assert!(std::mem::size_of::<DirNotes>() <= 112);
    }

    #[test]
    fn conn_notes_date_retransmissions_holes_and_queues() {
        let (mut n, c) = (
            ConnNotes::default(),
            ConnOf {
                flow: 7,
                syn_at: Some(10 * MS),
            },
        );
        n.segment(0, 1000, 300, 0, 20 * MS, 0);
        n.segment(0, 1300, 300, 0, 20 * MS, 0);
        let first = noted(&mut n, c, 0, 20 * MS, 20 * MS, 600);
        assert_eq!(first.opened_at, Some(10 * MS));
        assert_eq!(first.conn, Some((7, 0)));
        // The second segment again, 300 ms later.
        n.segment(0, 1300, 300, 300, 320 * MS, 0);
        // A hole on the other direction, filled 200 ms after the bytes behind it.
        n.data(1, 400 * MS, 600 * MS, 500);
        // Back to back behind a 1 MB message that took 400 ms.
        let big = noted(&mut n, c, 1, 200 * MS, 600 * MS, 1 << 20);
        assert_eq!(big.opened_at, Some(10 * MS));
        let pong = noted(&mut n, c, 1, 600 * MS + 500_000, 601 * MS, 900);
        assert_eq!(pong.opened_at, None);
        assert_eq!(
            (pong.queued_bytes, pong.queued_ns),
            (1 << 20, 400 * MS + 500_000)
        );
        let costs: Vec<(u8, u64)> = pong.repairs.iter().map(|r| (r.dir, r.cost_ns())).collect();
        assert_eq!(costs, vec![(0, 300 * MS), (1, 200 * MS)]);
        // After a gap, old bytes are not a repair; later ones are judged again.
        n.gap(0);
        n.data(0, 700 * MS, 800 * MS, 10);
        n.data(0, 900 * MS, 900 * MS, 10);
        n.data(0, 950 * MS, 990 * MS, 10);
        let later = noted(&mut n, c, 0, 2000 * MS, 2000 * MS, 10);
        assert_eq!(later.opened_at, None);
        assert_eq!(later.queued_bytes, 0);
        assert_eq!(later.repairs.len(), 3);
        assert_eq!(later.repairs[2].cost_ns(), 40 * MS);
    }

    #[test]
    fn conn_notes_measure_zero_windows_and_keep_the_end() {
        let (mut n, c) = (
            ConnNotes::default(),
            ConnOf {
                flow: 3,
                syn_at: None,
            },
        );
        n.segment(0, 1000, 300, 0, 10 * MS, 0);
        // The receiver shuts its window; probes (an old byte, or none) are not repairs.
        n.control(1, 10 * MS, (None, 0), false, false);
        n.segment(0, 1299, 1, 1, 210 * MS, 0);
        n.control(0, 210 * MS, (None, 65535), false, false);
        n.control(1, 210 * MS, (None, 0), false, false);
        n.control(1, 510 * MS, (None, 65535), false, false);
        n.segment(0, 1300, 300, 0, 510 * MS, 0);
        let ping = noted(&mut n, c, 0, 10 * MS, 510 * MS, 600);
        assert!(ping.repairs.is_empty(), "{:?}", ping.repairs);
        let stalls: Vec<(u8, u64)> = ping.stalls.iter().map(|r| (r.dir, r.cost_ns())).collect();
        assert_eq!(stalls, vec![(0, 500 * MS)]);
        n.activity(1, 600 * MS, 601 * MS);
        // An RST's window is not a zero window; the first end is kept.
        n.control(1, 700 * MS, (None, 0), false, true);
        n.control(0, 800 * MS, (None, 0), true, false);
        let end = ping.end.as_ref().and_then(|c| c.get());
        assert_eq!(
            end,
            Some(ConnEnd {
                at: 700 * MS,
                reset: true
            })
        );
        let later = noted(&mut n, c, 0, 900 * MS, 900 * MS, 10);
        assert_eq!(later.stalls.len(), 1);
        assert_eq!(later.activity.len(), 1);
    }

    /// The zero window's time is kept per direction in the connection's `Recent`: two
    /// stalls at once, each its own start, the way each direction's own field gave.
    #[test]
    fn both_directions_stall_at_once_each_from_its_own_zero_window() {
        let mut n = ConnNotes::default();
        n.control(0, 100 * MS, (None, 0), false, false);
        n.control(1, 200 * MS, (None, 0), false, false);
        // Still shut: the first zero window counts.
        n.control(0, 250 * MS, (None, 0), false, false);
        n.control(0, 300 * MS, (None, 1000), false, false);
        n.control(1, 450 * MS, (None, 1000), false, false);
        // Open windows change nothing; a later stall starts afresh.
        n.control(1, 500 * MS, (None, 1000), false, false);
        n.control(1, 600 * MS, (None, 0), false, false);
        n.control(1, 700 * MS, (None, 5), false, false);
        let stalls: Vec<(u8, u64, u64)> = n
            .recent
            .as_ref()
            .map(|r| r.stalls.iter().map(|s| (s.dir, s.first, s.at)).collect())
            .unwrap_or_default();
        assert_eq!(
            stalls,
            vec![
                (1, 100 * MS, 300 * MS),
                (0, 200 * MS, 450 * MS),
                (0, 600 * MS, 700 * MS)
            ]
        );
        assert!(n.dirs.iter().all(|d| !d.has(ZERO_SINCE)));
        // A zero window on a direction the connection does not have is ignored.
        n.control(2, 800 * MS, (None, 0), false, false);
        assert!(n.dirs.iter().all(|d| !d.has(ZERO_SINCE)));
    }

    #[test]
    fn windows_resets_and_service_messages_are_flagged_answered_or_not() {
        let mut h = History::default();
        let end = EndCell::default();
        let (mut p, mut q) = quiet(1000, 800);
        p[0].stop = 1501 * MS;
        p[0].wire.stalls.push(Repair {
            dir: 0,
            first: 1000 * MS,
            at: 1500 * MS,
            bytes: 0,
        });
        q[0].wire.activity.push(Activity {
            dir: 1,
            start: 1700 * MS,
            stop: 1701 * MS,
        });
        p[0].wire.end = Some(end.clone());
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!(c.label(), "window+jxta");
        assert_eq!(c.tcp_ns, 500 * MS);
        // The PING's connection reset after the answer says nothing about it...
        let _ = end.set(ConnEnd {
            at: 5000 * MS,
            reset: true,
        });
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert!(!c.flags.contains(Flag::Reset));
        // ...before its deadline, it explains the missing answer; activity before the
        // PING does not count.
        q[0].wire.activity[0].stop = 999 * MS;
        p[0].wire.activity = q[0].wire.activity.clone();
        let c = explain_unanswered(&p, Some(&pid(2)), 11_000 * MS);
        assert_eq!(c.label(), "window+reset");
        assert_eq!(c.far_ns, None);
        let c = explain_unanswered(&p, Some(&pid(2)), 4_000 * MS);
        assert_eq!(c.label(), "window");
    }

    #[test]
    fn an_unanswered_ping_learns_its_delivery_from_later_segments() {
        let (mut n, c) = (
            ConnNotes::default(),
            ConnOf {
                flow: 5,
                syn_at: None,
            },
        );
        n.segment(0, 1000, 300, 0, 10 * MS, 0);
        let mut ping = leg(10, 10, (5, 0), 1, 2);
        ping.wire = noted(&mut n, c, 0, 10 * MS, 10 * MS, 300);
        let cell = DeliveryCell::default();
        ping.wire.delivery = Some(cell.clone());
        n.watch(0, cell.clone());
        // An ACK short of its end, then the bytes again, then the ACK of all of them.
        n.control(1, 20 * MS, (Some(1100), 65535), false, false);
        assert_eq!(cell.acked.get(), None);
        n.segment(0, 1000, 300, 300, 310 * MS, 0);
        n.control(1, 311 * MS, (Some(1300), 65535), false, false);
        assert_eq!(
            (cell.resent.get(), cell.acked.get()),
            (Some(310 * MS), Some(311 * MS))
        );
        // Nothing left to watch: nothing held for it.
        assert!(n.dirs[0].watched.is_none());
        let ping = [ping];
        let c = explain_unanswered(&ping, Some(&pid(2)), 10_010 * MS);
        assert_eq!(c.label(), "retrans+far");
        // Read before those came (a deadline earlier), they say nothing.
        let c = explain_unanswered(&ping, Some(&pid(2)), 300 * MS);
        assert_eq!(c.label(), "");
        // A connection reset after the ACK: the reset, not the receiver, is the story.
        let end = EndCell::default();
        let _ = end.set(ConnEnd {
            at: 400 * MS,
            reset: true,
        });
        let mut ping = ping;
        ping[0].wire.end = Some(end);
        let c = explain_unanswered(&ping, Some(&pid(2)), 10_010 * MS);
        assert_eq!(c.label(), "retrans+reset");
    }

    #[test]
    fn a_connection_end_is_set_once_in_16_bytes() {
        assert_eq!(std::mem::size_of::<EndSlot>(), 16);
        let end = EndCell::default();
        assert_eq!(end.get(), None);
        let fin = ConnEnd {
            at: u64::MAX,
            reset: false,
        };
        assert!(end.set(fin));
        assert!(!end.set(ConnEnd { at: 1, reset: true }));
        assert_eq!(end.get(), Some(fin));
        let rst = EndCell::default();
        assert!(rst.set(ConnEnd { at: 0, reset: true }));
        assert_eq!(rst.get(), Some(ConnEnd { at: 0, reset: true }));
        // Written on one thread, read on another, as the decoder and the matcher do.
        let shared = EndCell::default();
        let writer = std::thread::spawn({
            let shared = Arc::clone(&shared);
            move || shared.set(ConnEnd { at: 7, reset: true })
        });
        assert!(writer.join().unwrap_or(false));
        assert_eq!(shared.get(), Some(ConnEnd { at: 7, reset: true }));
    }

    /// A PING's delivery times keep what an `OnceLock` kept: the first time given,
    /// later ones refused, nothing read before; any time, 0 and `u64::MAX` included.
    #[test]
    fn a_time_slot_is_the_once_lock_it_replaced() {
        for sets in [
            &[][..],
            &[0][..],
            &[u64::MAX, 1][..],
            &[5, 0, 5, u64::MAX][..],
        ] {
            let (slot, lock) = (TimeSlot::default(), std::sync::OnceLock::new());
            assert_eq!(slot.get(), lock.get().copied());
            for &at in sets {
                assert_eq!(slot.set(at), lock.set(at).is_ok(), "{sets:?}");
                assert_eq!(slot.get(), lock.get().copied(), "{sets:?}");
            }
        }
        assert_eq!(std::mem::size_of::<Delivery>(), 32);
        // Written on one thread, read on another, as the decoder and the matcher do.
        let cell = DeliveryCell::default();
        let writer = std::thread::spawn({
            let cell = Arc::clone(&cell);
            move || cell.acked.set(9)
        });
        assert!(writer.join().unwrap_or(false));
        assert_eq!((cell.acked.get(), cell.resent.get()), (Some(9), None));
    }

    /// A cell the watch lists let go of comes back unset when nothing else held it,
    /// and not while a leg still holds it (that one keeps its times); the thread keeps
    /// at most `SPARE_DELIVERIES`. Fails if a spare cell were not reset, or a shared
    /// one handed out again.
    #[test]
    fn delivery_cells_come_back_unset_and_unshared() {
        SPARE_DELIVERY.with(|spare| spare.borrow_mut().clear());
        let mut list = WatchList::default();
        let done = delivery_cell();
        assert!(done.acked.set(5) && done.resent.set(6));
        let done_at = Arc::as_ptr(&done);
        list.push((10, done));
        let awaited = delivery_cell();
        assert_ne!(Arc::as_ptr(&awaited), done_at);
        assert!(awaited.acked.set(7));
        let leg = Arc::clone(&awaited);
        list.push((20, awaited));
        list.retain(|_| false);
        assert!(list.is_empty());
        let again = delivery_cell();
        assert_eq!(Arc::as_ptr(&again), done_at);
        assert_eq!(*again, Delivery::default());
        assert_eq!(Arc::strong_count(&again), 1);
        let fresh = delivery_cell();
        assert!(!Arc::ptr_eq(&fresh, &leg));
        assert_eq!(*fresh, Delivery::default());
        assert_eq!((leg.acked.get(), Arc::strong_count(&leg)), (Some(7), 1));
        for _ in 0..SPARE_DELIVERIES + 5 {
            spare_delivery(DeliveryCell::default());
        }
        assert_eq!(
            SPARE_DELIVERY.with(|spare| spare.borrow().len()),
            SPARE_DELIVERIES
        );
    }

    /// A thread's spare cell is taken without one made when it has none: a cell let go
    /// unshared comes back reset, one still shared does not come back. Were a cell made
    /// for an empty pool, or a shared one kept, this fails.
    #[test]
    fn a_spared_cell_is_taken_only_if_there_is_one() {
        SPARE_DELIVERY.with(|spare| spare.borrow_mut().clear());
        assert!(spared_delivery().is_none());
        let cell = DeliveryCell::default();
        assert!(cell.acked.set(3));
        let at = Arc::as_ptr(&cell);
        let held = Arc::clone(&cell);
        spare_delivery(cell);
        assert!(spared_delivery().is_none());
        spare_delivery(held);
        let back = spared_delivery().expect("the cell let go last");
        assert_eq!((Arc::as_ptr(&back), &*back), (at, &Delivery::default()));
        assert!(spared_delivery().is_none());
    }

    #[test]
    fn a_first_transmission_is_remembered_in_16_bytes() {
        assert_eq!(std::mem::size_of::<Sent>(), 16);
    }

    #[test]
    fn a_packet_seen_again_on_another_interface_is_not_a_retransmission() {
        let mut n = ConnNotes::default();
        // In on interface 0, out on interface 1 2 ms later (a loaded bridge).
        n.segment(0, 1000, 300, 0, 20 * MS, 0);
        n.segment(0, 1000, 300, 300, 22 * MS, 1);
        assert!(
            n.recent.as_ref().is_none_or(|r| r.repairs.is_empty()),
            "{:?}",
            n.recent
        );
        // The real retransmission 200 ms later, seen on both: dated by each
        // interface's own first sight.
        n.segment(0, 1000, 300, 300, 220 * MS, 0);
        n.segment(0, 1000, 300, 300, 222 * MS, 1);
        let costs: Vec<u64> = n
            .recent
            .iter()
            .flat_map(|r| r.repairs.iter().map(Repair::cost_ns))
            .collect();
        assert_eq!(costs, vec![200 * MS, 200 * MS]);
    }

    const MS: u64 = 1_000_000;

    /// A message's notes as a document takes them.
    fn noted(
        n: &mut ConnNotes,
        conn: ConnOf,
        dir: usize,
        start: UnixNanos,
        stop: UnixNanos,
        framed_bytes: u64,
    ) -> WireNotes {
        let mut w = WireNotes::default();
        n.message(conn, dir, start, stop, framed_bytes)
            .write(&mut w);
        w
    }

    /// `ConnNotes::message` as it was before its notes were lent (stop 34): built whole
    /// for every message, the end cell made at the first. The oracle of
    /// `lent_notes_are_the_notes_built_before`.
    fn built_notes(
        n: &mut ConnNotes,
        (conn, dir): (ConnOf, usize),
        (start, stop): (UnixNanos, UnixNanos),
        framed_bytes: u64,
    ) -> WireNotes {
        let (repairs, stalls, activity) = match n.recent.as_deref() {
            Some(r) => (
                r.repairs.iter().copied().collect(),
                r.stalls.iter().copied().collect(),
                r.activity.iter().copied().collect(),
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let end = n.end.get_or_insert_with(EndCell::default).clone();
        let Some(d) = n.dirs.get_mut(dir) else {
            return WireNotes::default();
        };
        let (opened_at, queued_bytes, queued_ns) = d.framed(conn.syn_at, start, stop, framed_bytes);
        WireNotes {
            conn: Some((conn.flow, dir as u8)),
            repairs,
            opened_at,
            queued_bytes,
            queued_ns,
            stalls,
            activity,
            end: Some(end),
            delivery: None,
        }
    }

    /// Two connections fed the same segments, deliveries, windows, ends, service
    /// messages and messages (a direction out of range among them, times going back,
    /// overlapping and repeated bytes), one building every message's notes as before,
    /// the other lending them and writing a third of them nowhere (messages without a
    /// document): every written set equals the built one, also written over the last
    /// one's in place, and still once the ends came. Fails if the queue's bookkeeping
    /// were skipped for unwritten notes, a list were not refilled, or the end cell
    /// were another.
    #[test]
    fn lent_notes_are_the_notes_built_before() {
        let mut next = crate::xorshift(0x2545_F491_4F6C_DD1D);
        let mut written = 0;
        for round in 0..300 {
            let (mut old, mut new) = (ConnNotes::default(), ConnNotes::default());
            let conn = ConnOf {
                flow: round,
                syn_at: (round % 3 != 0).then_some(round * MS),
            };
            let mut w = WireNotes::default();
            let mut kept = Vec::new();
            let mut ts = 0;
            for _ in 0..next() % 60 {
                ts += next() % (3 * MS);
                let dir = (next() % 2) as usize;
                let seq = 1000 + (next() % 4000) as u32;
                let len = (next() % 600) as u32;
                match next() % 7 {
                    0 => {
                        let resent = next() % 2 * u64::from(len);
                        let interface = (next() % 2) as u32;
                        for n in [&mut old, &mut new] {
                            n.segment(dir, seq, len, resent, ts, interface);
                        }
                    }
                    1 => {
                        let first = ts.saturating_sub(next() % 2 * (next() % (5 * MS)));
                        for n in [&mut old, &mut new] {
                            n.data(dir, first, ts, u64::from(len));
                        }
                    }
                    2 => {
                        let ack = (next().is_multiple_of(2)).then_some(seq);
                        let window = (next() % 3) as u16;
                        let (fin, rst) = (next().is_multiple_of(8), next().is_multiple_of(16));
                        for n in [&mut old, &mut new] {
                            n.control(dir, ts, (ack, window), fin, rst);
                        }
                    }
                    3 => {
                        for n in [&mut old, &mut new] {
                            n.activity(dir, ts, ts + MS);
                        }
                    }
                    4 if next().is_multiple_of(4) => {
                        for n in [&mut old, &mut new] {
                            n.gap(dir);
                        }
                    }
                    _ => {
                        // Now and then a direction out of range, or a start before
                        // the direction's run.
                        let dir = if next().is_multiple_of(16) { 2 } else { dir };
                        let start = ts.saturating_sub(next() % 2 * (next() % (2 * MS)));
                        let bytes = next() % 10_000;
                        let built = built_notes(&mut old, (conn, dir), (start, ts), bytes);
                        let mut lent = new.message(conn, dir, start, ts, bytes);
                        if !next().is_multiple_of(3) {
                            lent.write(&mut w);
                            assert_eq!(w, built, "round {round}");
                            kept.push((built, w.clone()));
                            written += 1;
                        }
                    }
                }
            }
            for (built, lent) in kept {
                assert_eq!(lent, built, "round {round}, once ended");
            }
        }
        assert!(written > 2_000, "{written}");
    }

    fn pid(n: u8) -> PeerId {
        PeerId::parse(&format!("urn:jxta:uuid-{:064X}03", n)).expect("peer id")
    }

    fn leg(start: u64, stop: u64, conn: (u64, u8), from: u8, to: u8) -> Leg {
        Leg {
            start: start * MS,
            stop: stop * MS,
            hop_src: Some(pid(from)),
            hop_dst: Some(pid(to)),
            wire: WireNotes {
                conn: Some(conn),
                ..WireNotes::default()
            },
        }
    }

    /// A quiet pair: PING at 0, PONG 850 ms later, on one connection.
    fn quiet(t: u64, reply: u64) -> (Vec<Leg>, Vec<Leg>) {
        (
            vec![leg(t, t + 1, (1, 0), 1, 2)],
            vec![leg(t + 1 + reply, t + 2 + reply, (1, 1), 2, 1)],
        )
    }

    #[test]
    fn history_is_small_and_inline() {
        // Every tracked pair has one (`MatcherConfig::max_pairs` bounds them).
        assert!(std::mem::size_of::<History>() <= 32);
        let mut h = History::default();
        for k in 0..(FAR_HISTORY as u64 + 3) {
            h.remember_far(k * MS);
        }
        // The oldest three went; the median of 3..=17 ms is 10 ms.
        assert_eq!(h.median_far(), Some(10 * MS));
    }

    /// The count that decides `far` against the median it stands for: histories of 0
    /// to 40 times (small, zero, equal and huge ones), asked at, just around and far
    /// from each time's bound.
    #[test]
    fn far_beyond_median_is_the_median_test() {
        let mut next = crate::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut asked = 0;
        let mut beyond = 0;
        for _ in 0..2_000 {
            let mut h = History::default();
            let scale = [1, 10, 1_000, 1_000_000, u64::MAX][(next() % 5) as usize];
            for _ in 0..next() % 41 {
                h.remember_far(
                    (next() % scale)
                        .saturating_mul(1_000)
                        .saturating_add(next() % 1_000),
                );
            }
            let mut at: Vec<u64> = vec![0, 1, 2, u64::MAX, next(), next() % 10_000_000];
            if let Far::Ring(ring) = &h.far {
                for &us in ring.us.iter().take(usize::from(ring.len)) {
                    let bound = FAR_FACTOR * (u64::from(us) * 1_000).max(1);
                    at.extend([bound - 1, bound, bound + 1]);
                }
            }
            for far in at {
                let want = h.median_far().is_some_and(|m| far > FAR_FACTOR * m.max(1));
                assert_eq!(h.far_beyond_median(far), want, "{far} against {:?}", h.far);
                asked += 1;
                beyond += usize::from(want);
            }
        }
        // Both answers were asked for, many times.
        assert!(
            beyond > 1_000 && asked - beyond > 1_000,
            "{beyond} of {asked}"
        );
    }

    #[test]
    fn flags_print_and_parse_in_one_order() {
        let mut f = Flags::default();
        f.insert(Flag::Far);
        f.insert(Flag::Retrans);
        assert_eq!(f.to_string(), "retrans+far");
        assert_eq!(Flags::parse("far+retrans"), Some(f));
        assert_eq!(Flags::parse(""), Some(Flags::default()));
        assert_eq!(Flags::parse("slow"), None);
    }

    #[test]
    fn quiet_transactions_carry_nothing_and_a_slow_receiver_is_far() {
        let mut h = History::default();
        for k in 0..FAR_MIN_HISTORY as u64 + 3 {
            let (p, q) = quiet(k * 3000, 800 + k * 10);
            let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
            assert!(c.flags.is_empty(), "{k}: {:?}", c.flags);
            assert_eq!(c.far_ns, Some((800 + k * 10) * MS));
        }
        let (p, q) = quiet(100_000, 2500);
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!(c.label(), "far");
    }

    #[test]
    fn a_retransmitted_ping_costs_its_repair_and_is_not_far() {
        let mut h = History::default();
        for k in 0..FAR_MIN_HISTORY as u64 {
            let (p, q) = quiet(k * 3000, 800);
            explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        }
        // The PING's bytes were sent at 100_000 ms and again 1.5 s later; the PONG,
        // decoded after that, carries the repair of the other direction.
        let (p, mut q) = quiet(100_000, 2300);
        q[0].wire.repairs.push(Repair {
            dir: 0,
            first: 100_000 * MS,
            at: 101_500 * MS,
            bytes: 300,
        });
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!(c.label(), "retrans");
        assert_eq!(c.tcp_ns, 1500 * MS);
        // From the copy (101,500 ms) to the PONG (102,301 ms).
        assert_eq!(c.far_ns, Some(801 * MS));
        // Segments reordered on the way: a hole filled 50 µs later is measured, not
        // flagged.
        let (mut p, q) = quiet(200_000, 800);
        p[0].wire.repairs.push(Repair {
            dir: 0,
            first: 200_000 * MS,
            at: 200_000 * MS + 50_000,
            bytes: 300,
        });
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!((c.label().as_str(), c.tcp_ns), ("", 50_000));
        // A hole in the PING (lost before the capture): its last byte came with the
        // fill, so the receiver's side starts there, not 300 ms later.
        let (mut p, q) = quiet(300_000, 800);
        p[0].stop = 300_301 * MS;
        p[0].wire.repairs.push(Repair {
            dir: 0,
            first: 300_000 * MS,
            at: 300_301 * MS,
            bytes: 300,
        });
        let mut q = q;
        q[0].start = 301_101 * MS;
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!((c.label().as_str(), c.tcp_ns), ("retrans", 301 * MS));
        assert_eq!(c.far_ns, Some(800 * MS));
    }

    #[test]
    fn relay_route_queue_and_connection() {
        let mut h = History::default();
        // Through relay 3 on both legs.
        let p = vec![leg(0, 1, (1, 0), 1, 3), leg(3, 4, (2, 1), 3, 2)];
        let q = vec![leg(900, 901, (2, 0), 2, 3), leg(903, 904, (1, 1), 3, 1)];
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!(c.label(), "relay");
        assert_eq!(c.relay, Some(pid(3)));
        assert_eq!(c.ping_legs, 2);
        // Then direct, on a new connection, the PONG behind 50 ms of other messages.
        let mut p = vec![leg(3000, 3001, (4, 0), 1, 2)];
        p[0].wire.opened_at = Some(2960 * MS);
        let mut q = vec![leg(3900, 3901, (4, 1), 2, 1)];
        q[0].wire.queued_ns = 50 * MS;
        q[0].wire.queued_bytes = 100_000;
        let c = explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h);
        assert_eq!(c.label(), "conn+queue+route");
        assert_eq!(c.conn_ns, 40 * MS);
        assert_eq!((c.queue_ns, c.queue_bytes), (50 * MS, 100_000));
        assert_eq!(c.far_ns, Some(849 * MS));
        // Direct is remembered as such, without the hops.
        assert_eq!(h.route, Route::Direct);
        let (p, q) = quiet(6000, 800);
        assert!(!explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h)
            .flags
            .contains(Flag::Route));
        // The same hops under a pair keyed by another receiver are not direct for it,
        // so back to the relay is a change, and then direct again.
        let p = vec![leg(9000, 9001, (5, 0), 1, 3), leg(9003, 9004, (6, 1), 3, 2)];
        let q = vec![leg(9900, 9901, (6, 0), 2, 3), leg(9903, 9904, (5, 1), 3, 1)];
        assert!(explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h)
            .flags
            .contains(Flag::Route));
        assert!(matches!(h.route, Route::Other(_)));
        let (p, q) = quiet(12000, 800);
        assert!(explain(&p, &q, Some(&pid(2)), Some(&pid(9)), &mut h)
            .flags
            .contains(Flag::Route));
        assert!(matches!(h.route, Route::Other(_)));
        let (p, q) = quiet(15000, 800);
        assert!(!explain(&p, &q, Some(&pid(2)), Some(&pid(2)), &mut h)
            .flags
            .contains(Flag::Route));
    }
}
