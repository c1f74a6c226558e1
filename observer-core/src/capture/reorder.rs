//! Frames put back into time order before the pipeline.
//!
//! A capture on two interfaces (the LAN and WAN sides of a gateway) interleaves their
//! frames a few milliseconds out of time order: dumpcap and tcpdump write each
//! interface's buffer as it fills. Reassembly takes frames as they come, so an ACK read
//! before the data it acknowledges (stamped earlier, read later) declares that data
//! lost. Every frame is therefore held until a frame stamped `window` later has been
//! read, and frames leave oldest first.
//!
//! Holding costs no copy for a mapped file: a held frame is its offset in the map. A
//! frame from any other source (a pipe, a live tap) is copied while held. What is held
//! is bounded in frames and copied bytes; reaching a bound releases the oldest frame
//! before its window has passed (counted). A frame stamped before one already handed
//! on is later than the window (an interface delayed further, or the capture clock
//! stepped back): it is counted, and handed on after everything held, in the order
//! read, and the window starts again from its time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Frame, LinkType};
use crate::UnixNanos;

/// How long a frame waits for earlier-stamped ones, unless told otherwise.
pub const DEFAULT_REORDER_WINDOW_NS: u64 = 2_000_000_000;
/// The same for a live run, where every held frame is a copy and a frame's record
/// waits that long. The eBPF tap's frames (one ring for every interface, stamped in
/// the kernel) came at most 10 ms out of order at 99,000 frames/s on a loaded machine;
/// 2 s of that traffic overran the hold bounds (64 MiB, 131,072 frames) and released
/// 748,149 of 848,000 frames early (docs/performance.md).
pub const DEFAULT_LIVE_REORDER_WINDOW_NS: u64 = 100_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReorderConfig {
    /// 0 hands frames on in the order they are read.
    pub window_ns: u64,
    /// Frames held at once (an entry is 48 bytes; a copied frame adds its bytes).
    pub max_frames: usize,
    /// Bytes of copied frames held at once.
    pub max_bytes: usize,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            window_ns: DEFAULT_REORDER_WINDOW_NS,
            max_frames: 131_072,
            max_bytes: 64 << 20,
        }
    }
}

use crate::counters::{by, families::REORDER_FRAMES};

crate::counters! {
    /// What putting frames back in order did. The shards of a parallel analysis all
    /// read (and reorder) every frame: their counts are the same, not parts of a whole,
    /// so they merge by maximum.
    #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
    pub struct ReorderStats {
        /// Frames handed on before frames read earlier (they were stamped earlier).
        reordered_frames: "frames put back in time order", metric: by(&REORDER_FRAMES, "reordered"), anomaly: false, merge: Max;
        /// Frames stamped before a frame already handed on (later than the window): handed
        /// on after everything held, in the order read.
        late_frames: "frames later than the reorder window", metric: by(&REORDER_FRAMES, "late"), anomaly: true, merge: Max, decoding: 2;
        /// Frames handed on before their window had passed because a bound was reached.
        forced_releases: "frames reordered early (hold bound)", metric: by(&REORDER_FRAMES, "forced"), anomaly: true, merge: Max, decoding: 3;
        /// Most frames held at once.
        max_held: "most frames held", metric: None, anomaly: false, merge: Max;
    }
}

/// 16 bytes (the box's pointer tells the variants apart): every shard of `--threads`
/// holds every frame of the window, some 35,000 of them in a busy 2 s.
#[derive(Debug)]
enum Bytes {
    /// `Held::len` bytes from here in the mapped input.
    InPlace(usize),
    Owned(Box<[u8]>),
}

#[derive(Debug)]
struct Held {
    ts: UnixNanos,
    /// Read order: frames stamped alike leave in the order they were read.
    seq: u64,
    link_type: LinkType,
    interface: u32,
    orig_len: u32,
    /// Bytes of the frame (a frame held in place is at most `MAX_BLOCK_LEN`).
    len: u32,
    bytes: Bytes,
}

impl Held {
    /// What a slot of the ring not holding a frame has: nothing to drop.
    const EMPTY: Held = Held {
        ts: 0,
        seq: 0,
        link_type: LinkType(0),
        interface: 0,
        orig_len: 0,
        len: 0,
        bytes: Bytes::InPlace(0),
    };

    #[inline(always)]
    fn new(frame: &Frame<'_>, seq: u64, len: u32, bytes: Bytes) -> Self {
        Held {
            ts: frame.ts,
            seq,
            link_type: frame.link_type,
            interface: frame.interface,
            orig_len: frame.orig_len,
            len,
            bytes,
        }
    }

    fn key(&self) -> (UnixNanos, u64) {
        (self.ts, self.seq)
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Frames in a block of the ring (a power of two: a slot's place is a shift and a mask).
const RING_BLOCK: usize = 1 << RING_BLOCK_SHIFT;
const RING_BLOCK_SHIFT: u32 = 10;
/// Emptied blocks kept beyond the one the ring's back is in; the others are freed.
const RING_SPARE_BLOCKS: usize = 2;

type RingBlock = Box<[Held; RING_BLOCK]>;

/// The frames queued in time order, oldest first, in blocks of `RING_BLOCK` slots
/// (48 KiB). A `VecDeque` grown by half copied everything it held at each growth
/// (19 times to 3.4 MB on `jxta-0.1g`, 3.0 M instructions), and the copies it left
/// behind stayed resident in a reader thread's arena (8.8 MB on `peers10k-1g` with two
/// threads, docs/performance.md); its index wrapped at every push, look and pop. Here
/// growth is one more block and nothing moves, a block emptied at the front becomes a
/// spare for the back, and spares past `RING_SPARE_BLOCKS` are freed, so what a burst
/// took goes back as it drains. Slots outside the frames held own no bytes (`InPlace`).
#[derive(Debug, Default)]
struct Ring {
    /// The front's block first; the back's, then up to `RING_SPARE_BLOCKS` empty ones.
    blocks: Vec<RingBlock>,
    /// The front's slot in the first block (below `RING_BLOCK`).
    head: usize,
    /// The slot the next frame goes in, counted from the first block's first slot.
    tail: usize,
}

impl Ring {
    #[inline(always)]
    fn len(&self) -> usize {
        self.tail - self.head
    }

    /// A frame can be queued without a new block.
    #[inline(always)]
    fn has_room(&self) -> bool {
        self.tail < self.blocks.len() << RING_BLOCK_SHIFT
    }

    #[inline(always)]
    fn push_back(&mut self, held: Held) {
        if !self.has_room() {
            self.add_block();
        }
        let tail = self.tail;
        if let Some(block) = self.blocks.get_mut(tail >> RING_BLOCK_SHIFT) {
            // The slot owns nothing: not dropped, which would test its bytes at every frame.
            std::mem::forget(std::mem::replace(&mut block[tail & (RING_BLOCK - 1)], held));
            self.tail = tail + 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn add_block(&mut self) {
        // Made in place: an array built on the stack would be copied to the heap whole.
        let block: Box<[Held]> = std::iter::repeat_with(|| Held::EMPTY)
            .take(RING_BLOCK)
            .collect();
        self.blocks
            .push(block.try_into().expect("a block of RING_BLOCK slots"));
    }

    #[inline(always)]
    fn front_mut(&mut self) -> Option<&mut Held> {
        if self.head == self.tail {
            return None;
        }
        let head = self.head & (RING_BLOCK - 1);
        self.blocks.first_mut().map(|block| &mut block[head])
    }

    #[inline(always)]
    fn front(&self) -> Option<&Held> {
        if self.head == self.tail {
            return None;
        }
        let head = self.head & (RING_BLOCK - 1);
        self.blocks.first().map(|block| &block[head])
    }

    fn back(&self) -> Option<&Held> {
        let last = self.tail.checked_sub(1).filter(|_| self.tail > self.head)?;
        Some(&self.blocks.get(last >> RING_BLOCK_SHIFT)?[last & (RING_BLOCK - 1)])
    }

    /// Drops the front from the frames held; its slot must have been emptied (its bytes
    /// `InPlace`), or whatever it owns stays there until the slot is reused or freed.
    #[inline(always)]
    fn advance(&mut self) {
        self.head += 1;
        if self.head == RING_BLOCK {
            self.next_block();
        }
    }

    /// The front's block is emptied: a spare for the back, or freed.
    #[cold]
    #[inline(never)]
    fn next_block(&mut self) {
        self.head = 0;
        self.tail -= RING_BLOCK;
        let emptied = self.blocks.remove(0);
        let in_use = self.tail.div_ceil(RING_BLOCK);
        if self.blocks.len() - in_use < RING_SPARE_BLOCKS {
            self.blocks.push(emptied);
        }
    }

    fn pop_front(&mut self) -> Option<Held> {
        let held = std::mem::replace(self.front_mut()?, Held::EMPTY);
        self.advance();
        Some(held)
    }

    fn for_each_mut(&mut self, mut f: impl FnMut(&mut Held)) {
        for i in self.head..self.tail {
            if let Some(block) = self.blocks.get_mut(i >> RING_BLOCK_SHIFT) {
                f(&mut block[i & (RING_BLOCK - 1)]);
            }
        }
    }
}

/// A frame that owns its bytes (a live source's), given up to the reorder queue.
#[derive(Debug)]
pub struct FrameBuf {
    pub ts: UnixNanos,
    pub link_type: LinkType,
    pub interface: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

impl FrameBuf {
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            ts: self.ts,
            link_type: self.link_type,
            data: &self.data,
            orig_len: self.orig_len,
            interface: self.interface,
        }
    }
}

/// Takes each frame handed on, with where its bytes start in the mapped input when it
/// was held in place.
pub type Placed<'a> = dyn FnMut(&Frame<'_>, Option<usize>) + 'a;

/// The reorder buffer. Frames read in time order (nearly all) queue in a ring; only
/// frames stamped before the last one queued go through a heap.
#[derive(Debug)]
pub struct FrameMerger {
    cfg: ReorderConfig,
    in_order: Ring,
    out_of_order: BinaryHeap<Reverse<Held>>,
    /// Late frames, handed on at the next `release` after everything else held.
    late: Vec<Held>,
    /// Latest timestamp read (or time a quiet live source reported).
    newest: UnixNanos,
    /// Timestamp of the last frame handed on.
    released: UnixNanos,
    /// Timestamp of the last frame queued in the ring: its back's while it holds any
    /// (what [`Self::hold`] compares with, without the ring's index arithmetic).
    ring_last: UnixNanos,
    seq: u64,
    owned_bytes: usize,
    stats: ReorderStats,
}

impl FrameMerger {
    pub fn new(cfg: ReorderConfig) -> Self {
        FrameMerger {
            cfg: ReorderConfig {
                max_frames: cfg.max_frames.max(1),
                ..cfg
            },
            in_order: Ring::default(),
            out_of_order: BinaryHeap::new(),
            late: Vec::new(),
            newest: 0,
            released: 0,
            ring_last: 0,
            seq: 0,
            owned_bytes: 0,
            stats: ReorderStats::default(),
        }
    }

    pub fn stats(&self) -> &ReorderStats {
        &self.stats
    }

    pub fn window_ns(&self) -> u64 {
        self.cfg.window_ns
    }

    fn held(&self) -> usize {
        self.in_order.len() + self.out_of_order.len() + self.late.len()
    }

    /// Takes a frame to hold; `false` when it is to be handed on now instead (no
    /// window). `in_place`: where its bytes start in the mapped input (see
    /// [`super::CaptureReader::next_frame_placed`]).
    #[inline(always)]
    pub fn offer(&mut self, frame: &Frame<'_>, in_place: Option<usize>) -> bool {
        if self.cfg.window_ns == 0 {
            return false;
        }
        match (in_place, u32::try_from(frame.data.len())) {
            (Some(at), Ok(len)) => self.hold(frame, len, Bytes::InPlace(at)),
            (_, len) => {
                self.owned_bytes += frame.data.len();
                self.hold(
                    frame,
                    len.unwrap_or(u32::MAX),
                    Bytes::Owned(frame.data.into()),
                );
            }
        }
        true
    }

    /// Like [`Self::offer`] for a frame of the mapped input whose `len` bytes start at
    /// `at` (`frame.data` is not read): what the reader's
    /// [`super::CaptureReader::next_in_place`] gives.
    #[inline(always)]
    pub fn offer_in_place(&mut self, frame: &Frame<'_>, at: usize, len: u32) -> bool {
        if self.cfg.window_ns == 0 {
            return false;
        }
        self.hold(frame, len, Bytes::InPlace(at));
        true
    }

    /// Like [`Self::offer`] for bytes the caller gives up (a live source's frame): held
    /// without a copy. Gives them back when there is no window (hand the frame on now).
    pub fn offer_owned(&mut self, frame: FrameBuf) -> Result<(), FrameBuf> {
        if self.cfg.window_ns == 0 {
            return Err(frame);
        }
        let len = u32::try_from(frame.data.len()).unwrap_or(u32::MAX);
        self.owned_bytes += frame.data.len();
        let empty = Frame {
            data: &[],
            ..frame.frame()
        };
        // No copy when the source allocated the frame's own length.
        let bytes = Bytes::Owned(frame.data.into_boxed_slice());
        self.hold(&empty, len, bytes);
        Ok(())
    }

    /// Queues a frame whose bytes are `bytes` (`frame.data` is not read); `len`: theirs,
    /// `u32::MAX` when it does not fit. Inlined for the common case (in order, room in
    /// the ring): what [`Self::hold_general`] does then, without its other branches.
    #[inline(always)]
    fn hold(&mut self, frame: &Frame<'_>, len: u32, bytes: Bytes) {
        let ts = frame.ts;
        // `ring_last` is the back's time when the ring holds frames; an emptied ring
        // may leave it later than `ts`, and the general path then queues the frame.
        let ring = ts >= self.released && ts >= self.ring_last && self.in_order.has_room();
        if !ring {
            self.hold_general(frame, len, bytes);
            return;
        }
        self.seq += 1;
        self.newest = self.newest.max(ts);
        self.ring_last = ts;
        self.in_order
            .push_back(Held::new(frame, self.seq, len, bytes));
        self.stats.max_held = self.stats.max_held.max(self.held() as u64);
    }

    /// [`Self::hold`] for a late or out-of-order frame, or a full ring.
    #[inline(never)]
    fn hold_general(&mut self, frame: &Frame<'_>, len: u32, bytes: Bytes) {
        let late = frame.ts < self.released;
        self.seq += 1;
        let held = Held::new(frame, self.seq, len, bytes);
        if late {
            self.stats.late_frames += 1;
            self.late.push(held);
            return;
        }
        self.newest = self.newest.max(frame.ts);
        if self.in_order.back().is_none_or(|last| last.ts <= frame.ts) {
            self.ring_last = frame.ts;
            self.in_order.push_back(held);
        } else {
            self.stats.reordered_frames += 1;
            self.out_of_order.push(Reverse(held));
        }
        self.stats.max_held = self.stats.max_held.max(self.held() as u64);
    }

    /// Time has passed without frames (a quiet live source): frames held that long
    /// become due.
    pub fn advance(&mut self, now: UnixNanos) {
        self.newest = self.newest.max(now);
    }

    /// Hands on, oldest first, the frames whose window has passed, and the oldest
    /// while a bound is exceeded. `map`: the mapped input the in-place frames are in.
    pub fn release(&mut self, map: Option<&[u8]>, out: &mut dyn FnMut(&Frame<'_>)) {
        self.release_placed(map, &mut |f, _| out(f));
    }

    /// Like [`Self::release`], with where each frame held in place lies in `map` (the
    /// reader hands its pages back as frames are handed on: see
    /// `engine::offline::read_input`). The common case is inlined into the caller, where
    /// `out` is a known closure and not called through its pointer.
    #[inline(always)]
    pub fn release_placed(&mut self, map: Option<&[u8]>, out: &mut Placed<'_>) {
        if !self.late.is_empty() || !self.out_of_order.is_empty() {
            self.release_general(map, out);
            return;
        }
        // Nothing late or out of order held (nearly always): the ring alone, oldest
        // first, what `release_general` does without asking the heap at every frame.
        // The ring is in time order, so once its oldest frame is not due none is, and
        // only the bounds (the ring is all that is held) release more.
        // Due by one comparison with a bound made once for the release, not a
        // saturating sum at every look.
        let limit = due_until(self.newest, self.cfg.window_ns);
        loop {
            let held = self.in_order.len();
            let Some(h) = self.in_order.front_mut() else {
                return;
            };
            if limit.is_none_or(|limit| h.ts > limit) {
                if held <= self.cfg.max_frames && self.owned_bytes <= self.cfg.max_bytes {
                    return;
                }
                self.stats.forced_releases += 1;
            }
            self.released = self.released.max(h.ts);
            emit(&mut self.owned_bytes, h, map, out);
            self.in_order.advance();
        }
    }

    /// [`Self::release_placed`] with late or out-of-order frames held.
    #[inline(never)]
    fn release_general(&mut self, map: Option<&[u8]>, out: &mut Placed<'_>) {
        if !self.late.is_empty() {
            // Time order cannot hold across a late frame: what was read before it goes
            // first, and the window starts again from its time (after a clock step
            // back, frames are merged again in the new time).
            self.flush_placed(map, out);
            return;
        }
        loop {
            let Some(ts) = self.oldest() else {
                return;
            };
            let due = ts.saturating_add(self.cfg.window_ns) <= self.newest;
            if !due {
                let over =
                    self.held() > self.cfg.max_frames || self.owned_bytes > self.cfg.max_bytes;
                if !over {
                    return;
                }
                self.stats.forced_releases += 1;
            }
            self.pop(map, out);
        }
    }

    /// Hands on everything held, oldest first, then late frames in the order read.
    pub fn flush(&mut self, map: Option<&[u8]>, out: &mut dyn FnMut(&Frame<'_>)) {
        self.flush_placed(map, &mut |f, _| out(f));
    }

    /// Like [`Self::flush`], with where each frame held in place lies (see
    /// [`Self::release_placed`]). The ring's part inlined into the caller, as
    /// `release_placed`'s is: called through `out`'s pointer, the 15,693 frames held at
    /// the end of `jxta-0.1g` cost the reader of `--threads` ~40 instructions a frame
    /// more than its read loop (docs/performance.md, stop 36, read29).
    #[inline(always)]
    pub fn flush_placed(&mut self, map: Option<&[u8]>, out: &mut Placed<'_>) {
        // Nothing out of order held (nearly always): the ring alone, oldest first, as
        // `pop` would hand it on without comparing its front with the heap's at every
        // frame.
        if self.out_of_order.is_empty() {
            while let Some(h) = self.in_order.front_mut() {
                self.released = self.released.max(h.ts);
                emit(&mut self.owned_bytes, h, map, out);
                self.in_order.advance();
            }
            if self.late.is_empty() {
                return;
            }
        }
        self.flush_rest(map, out);
    }

    /// [`Self::flush_placed`] past the ring's own part: the ring and the heap merged,
    /// then the late frames.
    #[inline(never)]
    fn flush_rest(&mut self, map: Option<&[u8]>, out: &mut Placed<'_>) {
        while self.oldest().is_some() {
            self.pop(map, out);
        }
        let late = std::mem::take(&mut self.late);
        if let Some(last) = late.last() {
            self.released = last.ts;
            self.newest = last.ts;
        }
        for mut h in late {
            emit(&mut self.owned_bytes, &mut h, map, out);
        }
    }

    /// The mapped input is about to go (the next file follows): copy what is held in
    /// it, so that frames from both files still merge. The bounds apply at the next
    /// `release`.
    pub fn detach(&mut self, map: Option<&[u8]>) {
        let owned_bytes = &mut self.owned_bytes;
        let mut copy = |h: &mut Held| {
            if let Bytes::InPlace(at) = h.bytes {
                let data = Self::in_map(map, at, h.len);
                *owned_bytes += data.len();
                h.bytes = Bytes::Owned(data.into());
            }
        };
        self.in_order.for_each_mut(&mut copy);
        self.late.iter_mut().for_each(&mut copy);
        let mut heap = std::mem::take(&mut self.out_of_order).into_vec();
        heap.iter_mut().for_each(|Reverse(h)| copy(h));
        self.out_of_order = heap.into();
    }

    fn oldest(&self) -> Option<UnixNanos> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => Some(a.key().min(b.key()).0),
            (Some(a), None) => Some(a.ts),
            (None, Some(Reverse(b))) => Some(b.ts),
            (None, None) => None,
        }
    }

    fn pop(&mut self, map: Option<&[u8]>, out: &mut Placed<'_>) {
        let from_heap = match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => b.key() < a.key(),
            (None, Some(_)) => true,
            _ => false,
        };
        let held = if from_heap {
            self.out_of_order.pop().map(|Reverse(h)| h)
        } else {
            self.in_order.pop_front()
        };
        let Some(mut h) = held else {
            return;
        };
        self.released = self.released.max(h.ts);
        emit(&mut self.owned_bytes, &mut h, map, out);
    }

    /// The bytes of a frame held in place: `len` from `at` in the mapped input (none
    /// when they are not all there).
    #[inline(always)]
    pub fn in_map(map: Option<&[u8]>, at: usize, len: u32) -> &[u8] {
        map.and_then(|m| m.get(at..at.saturating_add(len as usize)))
            .unwrap_or_default()
    }
}

/// Hands `h` on; owned bytes are freed after, leaving the slot empty (see [`Ring`]).
#[inline]
fn emit(owned_bytes: &mut usize, h: &mut Held, map: Option<&[u8]>, out: &mut Placed<'_>) {
    let (data, at): (&[u8], _) = match &h.bytes {
        Bytes::InPlace(at) => (FrameMerger::in_map(map, *at, h.len), Some(*at)),
        Bytes::Owned(b) => {
            *owned_bytes -= b.len();
            (b, None)
        }
    };
    out(
        &Frame {
            ts: h.ts,
            link_type: h.link_type,
            data,
            orig_len: h.orig_len,
            interface: h.interface,
        },
        at,
    );
    if at.is_none() {
        h.bytes = Bytes::InPlace(0);
    }
}

/// The latest stamp of a frame due when the newest is `newest`: a frame is due when
/// `ts.saturating_add(window) <= newest`, which is `ts <= newest - window`; `None` (none
/// due) when `newest` is below the window, and every frame is due at the end of time.
#[inline(always)]
fn due_until(newest: UnixNanos, window: u64) -> Option<UnixNanos> {
    if newest == UnixNanos::MAX {
        Some(newest)
    } else {
        newest.checked_sub(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn frame(ts: UnixNanos, data: &[u8]) -> Frame<'_> {
        Frame {
            ts,
            link_type: LinkType::ETHERNET,
            data,
            orig_len: data.len() as u32,
            interface: 0,
        }
    }

    /// How a test hands its frames to the merger.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Offer {
        InPlace,
        /// In place by its place alone (`offer_in_place`), as `read_input` does.
        Placed,
        Copied,
        /// Given up (`offer_owned`), as a live source does.
        Owned,
    }
    const OFFERS: [Offer; 4] = [Offer::InPlace, Offer::Placed, Offer::Copied, Offer::Owned];

    /// Offers (timestamp, byte) frames from `map` the way `how` says, and returns what
    /// came out, in order.
    fn run(m: &mut FrameMerger, map: &[u8], stamps: &[u64], how: Offer) -> Vec<(u64, u8)> {
        run_split(m, map, stamps, how, stamps.len())
    }

    /// Like [`run`], with the frames from `split` on read from a second input (its own
    /// bytes, offsets from its start), the first `detach`ed between them as
    /// `read_input` does from one file to the next.
    fn run_split(
        m: &mut FrameMerger,
        map: &[u8],
        stamps: &[u64],
        how: Offer,
        split: usize,
    ) -> Vec<(u64, u8)> {
        let inputs = [map[..split].to_vec(), map[split..stamps.len()].to_vec()];
        let mut got = Vec::new();
        let mut out = |f: &Frame<'_>| got.push((f.ts, f.data[0]));
        for (n, input) in inputs.iter().enumerate() {
            let base = if n == 0 { 0 } else { split };
            for i in 0..input.len() {
                let f = frame(stamps[base + i], &input[i..=i]);
                match how {
                    Offer::Owned => {
                        let buf = FrameBuf {
                            ts: f.ts,
                            link_type: f.link_type,
                            interface: f.interface,
                            orig_len: f.orig_len,
                            data: f.data.to_vec(),
                        };
                        if let Err(buf) = m.offer_owned(buf) {
                            out(&buf.frame());
                        }
                    }
                    Offer::Placed => {
                        let bare = Frame { data: &[], ..f };
                        if !m.offer_in_place(&bare, i, 1) {
                            out(&f);
                        }
                    }
                    _ => {
                        if !m.offer(&f, (how == Offer::InPlace).then_some(i)) {
                            out(&f);
                        }
                    }
                }
                m.release(Some(input), &mut out);
            }
            if n == 0 {
                m.detach(Some(input));
            }
        }
        m.flush(Some(&inputs[1]), &mut out);
        got
    }

    /// After a late frame the ring is emptied and `released` steps back, below the
    /// time of the ring's last frame: the next frames, stamped between the two, are
    /// queued in the ring (the general path; not counted reordered) and leave in order.
    #[test]
    fn frames_after_a_late_one_queue_in_the_emptied_ring() {
        let mut m = FrameMerger::new(ReorderConfig {
            window_ns: 10 * MS,
            ..ReorderConfig::default()
        });
        let mut got = Vec::new();
        for (ts, byte) in [(100, 1u8), (200, 2), (50, 3), (60, 4), (70, 5)] {
            assert!(m.offer(&frame(ts * MS, &[byte]), None));
            m.release(None, &mut |f| got.push((f.ts / MS, f.data[0])));
        }
        m.flush(None, &mut |f| got.push((f.ts / MS, f.data[0])));
        assert_eq!(got, [(100, 1), (200, 2), (50, 3), (60, 4), (70, 5)]);
        assert_eq!((m.stats().late_frames, m.stats().reordered_frames), (1, 0));
    }

    /// What every shard pays per frame of the window.
    #[test]
    fn a_held_frame_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Held>(), 48);
    }

    /// A window of 40,000 frames is held in 40 blocks, handed on in order, and the
    /// blocks go back as the ring drains but for the spares.
    #[test]
    fn the_ring_holds_a_window_in_blocks_and_frees_them() {
        let map = [7u8];
        let mut m = FrameMerger::new(ReorderConfig::default());
        for i in 0..40_000u64 {
            assert!(m.offer(&frame(i * 1000, &map), Some(0)));
            m.release(Some(&map), &mut |_| panic!("released inside the window"));
        }
        assert_eq!(m.in_order.blocks.len(), 40_000usize.div_ceil(RING_BLOCK));
        let mut out = Vec::new();
        m.flush(Some(&map), &mut |f| out.push(f.ts));
        assert_eq!(out, (0..40_000u64).map(|i| i * 1000).collect::<Vec<_>>());
        assert_eq!(m.in_order.len(), 0);
        assert!(m.in_order.blocks.len() <= 1 + RING_SPARE_BLOCKS);
    }

    /// The ring against a `VecDeque` at random pushes and pops across its blocks' edges:
    /// the same frames in the same order, owned bytes freed as they leave (the count of
    /// live boxes), and never more blocks than what is held needs and the spares.
    #[test]
    fn the_ring_is_a_queue() {
        use std::collections::VecDeque;
        use std::rc::Rc;
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let mut ring = Ring::default();
        let mut model = VecDeque::new();
        let mut seq = 0u64;
        // Owned frames' bytes point at nothing shared: their count is that of live
        // boxes, kept by a `Rc` whose strong count each held frame's twin raises.
        let live = Rc::new(());
        let mut twins: VecDeque<Option<Rc<()>>> = VecDeque::new();
        for step in 0..200_000u32 {
            // Runs of pushes and of pops, long enough to cross several blocks.
            let phase = (step / 3_000) % 3;
            let push = match phase {
                0 => !next().is_multiple_of(4),
                1 => next().is_multiple_of(4),
                _ => next().is_multiple_of(2),
            };
            if push {
                seq += 1;
                let owned = next().is_multiple_of(3);
                let bytes = if owned {
                    Bytes::Owned(vec![seq as u8; 1 + (seq % 5) as usize].into())
                } else {
                    Bytes::InPlace(seq as usize)
                };
                let f = frame(seq, &[]);
                ring.push_back(Held::new(&f, seq, 0, bytes));
                model.push_back(seq);
                twins.push_back(owned.then(|| Rc::clone(&live)));
            } else if next().is_multiple_of(2) {
                let got = ring.pop_front().map(|h| h.seq);
                assert_eq!(got, model.pop_front(), "step {step}");
                twins.pop_front();
            } else {
                let mut owned_bytes = usize::MAX / 2;
                let before = owned_bytes;
                let got = ring.front_mut().map(|h| {
                    let seq = h.seq;
                    let len = match &h.bytes {
                        Bytes::Owned(b) => b.len(),
                        Bytes::InPlace(_) => 0,
                    };
                    emit(&mut owned_bytes, h, None, &mut |_, _| {});
                    assert!(matches!(h.bytes, Bytes::InPlace(_)));
                    (seq, len)
                });
                if got.is_some() {
                    ring.advance();
                }
                assert_eq!(got.map(|g| g.0), model.pop_front(), "step {step}");
                assert_eq!(before - owned_bytes, got.map_or(0, |g| g.1));
                twins.pop_front();
            }
            assert_eq!(ring.len(), model.len());
            assert_eq!(ring.front().map(|h| h.seq), model.front().copied());
            assert_eq!(ring.back().map(|h| h.seq), model.back().copied());
            assert!(
                ring.blocks.len() <= ring.len().div_ceil(RING_BLOCK) + 1 + RING_SPARE_BLOCKS,
                "step {step}: {} blocks for {}",
                ring.blocks.len(),
                ring.len()
            );
            let owned_held = {
                let mut n = 0;
                let mut seqs = Vec::new();
                ring.for_each_mut(|h| {
                    seqs.push(h.seq);
                    n += usize::from(matches!(h.bytes, Bytes::Owned(_)));
                });
                if step % 1000 == 0 {
                    assert!(seqs.iter().eq(model.iter()), "step {step}");
                }
                n
            };
            assert_eq!(owned_held, Rc::strong_count(&live) - 1, "step {step}");
        }
        // Every slot outside the frames held owns nothing.
        let (head, tail) = (ring.head, ring.tail);
        for (b, block) in ring.blocks.iter().enumerate() {
            for (i, h) in block.iter().enumerate() {
                let at = b * RING_BLOCK + i;
                if !(head..tail).contains(&at) {
                    assert!(matches!(h.bytes, Bytes::InPlace(_)), "slot {at}");
                }
            }
        }
    }

    #[test]
    fn frames_leave_in_time_order_within_the_window() {
        let map: Vec<u8> = (0..8).collect();
        // Two interfaces, the second written 5 ms late.
        let stamps = [
            10 * MS,
            20 * MS,
            12 * MS,
            30 * MS,
            22 * MS,
            40 * MS,
            32 * MS,
            31 * MS,
        ];
        for how in OFFERS {
            let mut m = FrameMerger::new(ReorderConfig {
                window_ns: 50 * MS,
                ..ReorderConfig::default()
            });
            let got = run(&mut m, &map, &stamps, how);
            let mut want: Vec<(u64, u8)> = stamps.iter().copied().zip(0u8..).collect();
            want.sort();
            assert_eq!(got, want);
            assert_eq!(m.stats().reordered_frames, 4);
            assert_eq!(m.stats().late_frames, 0);
            assert_eq!(m.stats().forced_releases, 0);
            assert_eq!(m.stats().max_held, 8);
            assert_eq!(m.owned_bytes, 0);
        }
    }

    #[test]
    fn frames_later_than_the_window_are_counted_and_kept() {
        let map: Vec<u8> = (0..6).collect();
        let mut m = FrameMerger::new(ReorderConfig {
            window_ns: 10 * MS,
            ..ReorderConfig::default()
        });
        // 5 ms arrives once 200 ms has released 100 ms: late, handed on after what
        // was read before it; then the window starts again from 5 ms.
        let got = run(
            &mut m,
            &map,
            &[0, 100 * MS, 200 * MS, 5 * MS, 9 * MS, 7 * MS],
            Offer::InPlace,
        );
        assert_eq!(
            got,
            vec![
                (0, 0),
                (100 * MS, 1),
                (200 * MS, 2),
                (5 * MS, 3),
                (7 * MS, 5),
                (9 * MS, 4)
            ]
        );
        assert_eq!(m.stats().late_frames, 1);
    }

    #[test]
    fn the_bounds_release_early_and_count_it() {
        let map: Vec<u8> = (0..6).collect();
        let stamps: Vec<u64> = (0..6).map(|i| i * MS).collect();
        let mut m = FrameMerger::new(ReorderConfig {
            window_ns: 10_000 * MS,
            max_frames: 2,
            max_bytes: usize::MAX,
        });
        let got = run(&mut m, &map, &stamps, Offer::InPlace);
        assert_eq!(got.len(), 6);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(m.stats().forced_releases, 4);
        assert_eq!(m.stats().max_held, 3);
        // The ring is sized to the bound and the frame over it, not doubled past it.
        let many: Vec<u8> = vec![0; 1000];
        let mut m = FrameMerger::new(ReorderConfig {
            window_ns: 10_000 * MS,
            max_frames: 100,
            max_bytes: usize::MAX,
        });
        run(
            &mut m,
            &many,
            &(0..1000).collect::<Vec<u64>>(),
            Offer::InPlace,
        );
        assert_eq!(m.stats().max_held, 101);
        assert_eq!(m.in_order.blocks.len(), 1);
        // Copied bytes are bounded too, and so are bytes given up.
        for how in [Offer::Copied, Offer::Owned] {
            let mut m = FrameMerger::new(ReorderConfig {
                window_ns: 10_000 * MS,
                max_frames: 1000,
                max_bytes: 3,
            });
            run(&mut m, &map, &stamps, how);
            assert_eq!(m.stats().forced_releases, 3, "{how:?}");
        }
    }

    /// The merger against a plain model of what the module's documentation says (hold
    /// for the window, oldest first, the bound releases the oldest early, a late frame
    /// flushes what is held and follows it), on jittered, stepped-back, late and equal
    /// stamps and small bounds, frames held in place, copied or given up, in one input
    /// or two: the ring's shortcuts (`hold`, `release_placed`) and the general paths
    /// alike.
    #[test]
    fn frames_leave_as_the_plain_model_says() {
        #[derive(Default)]
        struct Model {
            held: Vec<(u64, u64, u8)>,
            late: Vec<(u64, u64, u8)>,
            newest: u64,
            released: u64,
            seq: u64,
            forced: u64,
        }
        impl Model {
            fn flush(&mut self, out: &mut Vec<(u64, u8)>) {
                self.held.sort();
                for (ts, _, b) in self.held.drain(..) {
                    self.released = self.released.max(ts);
                    out.push((ts, b));
                }
                if let Some(&(ts, _, _)) = self.late.last() {
                    self.released = ts;
                    self.newest = ts;
                }
                out.extend(self.late.drain(..).map(|(ts, _, b)| (ts, b)));
            }
        }
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        let map: Vec<u8> = (0..=255).collect();
        let mut forced = 0;
        for round in 0..300 {
            let window = next() % 20;
            let max_frames = 1 + (next() % 8) as usize;
            let mut ts = 1_000u64;
            let stamps: Vec<u64> = (0..1 + next() % 200)
                .map(|_| {
                    ts += next() % 6;
                    match next() % 10 {
                        0 => ts.saturating_sub(next() % 8),
                        1 => ts.saturating_sub(next() % 60),
                        _ => ts,
                    }
                })
                .collect();
            let mut m = FrameMerger::new(ReorderConfig {
                window_ns: window,
                max_frames,
                max_bytes: usize::MAX,
            });
            let mut model = Model::default();
            let mut want = Vec::new();
            for (i, &ts) in stamps.iter().enumerate() {
                model.seq += 1;
                let frame = (ts, model.seq, map[i % 256]);
                if window == 0 {
                    want.push((ts, frame.2));
                    continue;
                }
                if ts < model.released {
                    model.late.push(frame);
                } else {
                    model.newest = model.newest.max(ts);
                    model.held.push(frame);
                }
                if !model.late.is_empty() {
                    model.flush(&mut want);
                    continue;
                }
                while let Some(oldest) = model.held.iter().copied().min() {
                    if oldest.0.saturating_add(window) > model.newest {
                        if model.held.len() <= max_frames {
                            break;
                        }
                        model.forced += 1;
                    }
                    model.held.retain(|h| *h != oldest);
                    model.released = model.released.max(oldest.0);
                    want.push((oldest.0, oldest.2));
                }
            }
            model.flush(&mut want);
            let bytes: Vec<u8> = (0..stamps.len()).map(|i| map[i % 256]).collect();
            let how = OFFERS[round % OFFERS.len()];
            let split = (next() as usize) % (stamps.len() + 1);
            let got = run_split(&mut m, &bytes, &stamps, how, split);
            assert_eq!(
                got, want,
                "round {round}: window {window}, bound {max_frames}, {how:?}, split {split}"
            );
            assert_eq!(m.stats().forced_releases, model.forced, "round {round}");
            forced += model.forced;
        }
        // The rounds reach the bound, not only the window.
        assert!(forced > 0);
    }

    #[test]
    fn no_window_hands_frames_on_as_read() {
        let map: Vec<u8> = (0..3).collect();
        let mut m = FrameMerger::new(ReorderConfig {
            window_ns: 0,
            ..ReorderConfig::default()
        });
        for how in OFFERS {
            let got = run(&mut m, &map, &[5, 1, 3], how);
            assert_eq!(got, vec![(5, 0), (1, 1), (3, 2)], "{how:?}");
            assert_eq!(m.stats(), &ReorderStats::default());
        }
    }

    #[test]
    fn frames_held_in_place_survive_the_next_input() {
        let first: Vec<u8> = vec![7, 8];
        let second: Vec<u8> = vec![9];
        let mut m = FrameMerger::new(ReorderConfig::default());
        let mut got = Vec::new();
        let mut out = |f: &Frame<'_>| got.push((f.ts, f.data[0]));
        assert!(m.offer(&frame(10, &first[0..1]), Some(0)));
        assert!(m.offer(&frame(30, &first[1..2]), Some(1)));
        m.release(Some(&first), &mut out);
        m.detach(Some(&first));
        drop(first);
        assert!(m.offer(&frame(20, &second[0..1]), Some(0)));
        m.flush(Some(&second), &mut out);
        assert_eq!(got, vec![(10, 7), (20, 9), (30, 8)]);
    }

    /// `due_until` is the saturating test it replaces, at the edges of time and of the
    /// window (a pcapng stamp saturates to `u64::MAX`) and at random.
    #[test]
    fn due_until_is_the_saturating_test() {
        let edges = [
            0,
            1,
            MS,
            DEFAULT_REORDER_WINDOW_NS - 1,
            DEFAULT_REORDER_WINDOW_NS,
            DEFAULT_REORDER_WINDOW_NS + 1,
            u64::MAX / 2,
            u64::MAX - DEFAULT_REORDER_WINDOW_NS - 1,
            u64::MAX - DEFAULT_REORDER_WINDOW_NS,
            u64::MAX - DEFAULT_REORDER_WINDOW_NS + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        let check = |newest: u64, window: u64, ts: u64| {
            let due = ts.saturating_add(window) <= newest;
            let by_limit = due_until(newest, window).is_some_and(|limit| ts <= limit);
            assert_eq!(by_limit, due, "newest {newest} window {window} ts {ts}");
        };
        for &newest in &edges {
            for &window in &edges {
                for &ts in &edges {
                    check(newest, window, ts);
                }
            }
        }
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            let (newest, window) = (next(), next() >> (next() % 64));
            let ts = newest
                .wrapping_sub(window)
                .wrapping_add(next() % 5)
                .wrapping_sub(2);
            check(newest, window, ts);
            check(newest, window, next());
        }
    }
}
