//! `analyze --threads N`: the flows are split across N shards by host pair
//! ([`crate::packet::shard`]), each a [`Pipeline`] on its own thread doing everything
//! up to the matcher; one matcher, on the calling thread, takes their documents in the
//! order a single pipeline would have produced them.
//!
//! One reader thread reads the inputs (mapped), puts the frames back in time order
//! (the one [`crate::capture::FrameMerger`]) and hands the shards, in batches, one
//! list of every frame's time, length, shard and place in the input's map, shared by
//! all shards; the map is shared too ([`crate::capture::SharedMap`]: it outlives the
//! reader of its input), and the reader hands its pages back behind the slowest shard.
//! Frames with no place in it (a stream, a frame the merger copied, one of the next
//! input) are copied into the batch. Every shard replays the same
//! calls as a pipeline that read every frame itself: [`Pipeline::frame`] for its own,
//! [`Pipeline::skip_frame`] with the capture time of each foreign one, in file order,
//! so its timeouts and idle expiry fire exactly where they would in one pipeline.
//!
//! The documents are put back in order by the index of the frame that completed
//! them (and, at the end of the input, by flow, in order of appearance: shards
//! number their flows by the frame that opened them). What can differ from one
//! pipeline: the flow caps (`--max-flows`, `--max-total-buffer`) bound each shard,
//! whole (N shards may hold up to N times as much, but never evict what one pipeline
//! kept), and flow statistics that are maxima become sums of the shards' maxima.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, OnceLock};

use super::offline::{read_input, Analysis, InputSummary, Progress};
use super::{merge_stats, MatchEvent, Matched, Pipeline, PipelineConfig, Reorder};
use crate::capture::{Frame, LinkType, ReorderStats, SharedMap};
use crate::jim::{Document, Kind};
use crate::transaction::{cause, Matcher, Sighting, Transaction};
use crate::UnixNanos;

/// Frames between two hand-overs from a shard to the matcher. What is in flight is
/// decoded documents (~0.4 per frame on a JXTA-heavy capture, some hundreds of bytes
/// each): 8,192 frames × 5 batches per shard were 14 MB of a 2-thread run's heap.
const BATCH_FRAMES: u64 = 2048;
/// Batches a shard may run ahead of the matcher (memory bound of the hand-over; every
/// shard holds this many and the one it is filling).
const BATCHES_AHEAD: usize = 1;
/// A shard recomputes what its flows hold at most once per this much capture time.
const HELD_RECHECK_NS: u64 = 1_000_000_000;
/// Copied frame bytes after which the reader hands its batch over early: a batch of
/// `BATCH_FRAMES` snaplen-sized frames would otherwise hold hundreds of megabytes. At
/// 256 KiB a JXTA-heavy capture was handed over every ~300 frames, and the waits on
/// those hand-overs cost 5-10 % of the wall time of two threads (docs/performance.md).
const READ_BATCH_BYTES: usize = 1 << 20;
/// Room a new batch's byte buffer is made with before any batch has been measured: a
/// batch ends with the frame that takes it past `READ_BATCH_BYTES`, which should not
/// have to grow it (growing copies the bytes already in it).
const FIRST_BATCH_ROOM: usize = READ_BATCH_BYTES + READ_BATCH_BYTES / 4;
/// Batches the reader may run ahead of each shard.
const READ_BATCHES_AHEAD: usize = 2;

/// One frame of the input, in the list every shard of a hand-over shares: a slot
/// pushed into each shard's own list for every frame was ~20 % of the reader's
/// instructions with two shards (docs/performance.md, stop 29).
struct Slot {
    ts: UnixNanos,
    /// Bytes of the frame: at `place` in the batch's map, or, with `place`
    /// [`IN_DATA`], following the previous such frame's in the batch's `data`.
    len: usize,
    place: usize,
    link_type: LinkType,
    orig_len: u32,
    interface: u32,
    /// The shard the frame belongs to ([`crate::packet::shard`]); the others only
    /// take its capture time.
    shard: u32,
}

/// Pages of a shared map are handed back in blocks of this much: one `madvise` a few
/// batches rather than one a batch.
const RELEASE_BLOCK: usize = 2 << 20;

/// [`Slot::place`] of a frame whose bytes were copied into the batch's `data`.
const IN_DATA: usize = usize::MAX;

/// A hand-over, shared by all shards: every frame's slot and every frame's bytes, in
/// input order; each shard reads its own frames' bytes and skips the others'. A buffer
/// a shard, each made for the largest share of a batch so far, was 7.8 MB of a 2-thread
/// run's heap at peers10k-1g's peak; shared, the same copies took ~3 MB less peak RSS
/// (docs/performance.md, stop 33). A frame that lies in a mapped input is not copied
/// but read from the map by its place: the copy of every frame was a quarter of the
/// reader's instructions. Frames without a place in the batch's map (a stream, a frame
/// the merger copied, one of another input than the batch's first) are copied.
struct FrameBatch {
    slots: Vec<Slot>,
    data: Vec<u8>,
    map: Option<SharedMap>,
    /// The span of `map` the batch's frames lie in, `lo..hi` (empty: none).
    lo: usize,
    hi: usize,
    /// Bytes of the batch's frames, copied or not: a batch is handed over past
    /// `READ_BATCH_BYTES`, which bounds the pages of the map in flight.
    bytes: usize,
    /// Hand-over number: tells the reader, when the batch comes back, which span of
    /// the map every shard is done with ([`ReleasePoint`]).
    seq: u64,
}

impl FrameBatch {
    fn new(slots: Vec<Slot>, data: Vec<u8>) -> Self {
        FrameBatch {
            slots,
            data,
            map: None,
            lo: usize::MAX,
            hi: 0,
            bytes: 0,
            seq: 0,
        }
    }

    /// Where `frame` is to be read from by the shards: its place in `placed`'s map when
    /// that is the batch's map (the first one offered), else [`IN_DATA`] (copied).
    #[inline]
    fn push_bytes(&mut self, frame: &Frame<'_>, placed: Option<(&SharedMap, usize)>) -> usize {
        self.bytes += frame.data.len();
        if let Some((map, at)) = placed {
            let ours = match &self.map {
                Some(m) => m.same(map),
                None => {
                    self.map = Some(map.clone());
                    true
                }
            };
            if ours {
                self.lo = self.lo.min(at);
                self.hi = self.hi.max(at.saturating_add(frame.data.len()));
                return at;
            }
        }
        self.data.extend_from_slice(frame.data);
        IN_DATA
    }

    /// Emptied for the next hand-over. Its map's pages stay: the reader hands them
    /// back behind every shard ([`ReleasePoint`]). Handed back by the last shard done
    /// with the batch, with the reader handing back what it handed on as well, pages
    /// were faulted in again by the shards, and around each batch's span by the next
    /// batch: 245,000 faults on jxta-4g where the copies took 160,000
    /// (docs/performance.md, stop 35).
    fn clear(&mut self) {
        self.map = None;
        self.slots.clear();
        self.data.clear();
        (self.lo, self.hi, self.bytes) = (usize::MAX, 0, 0);
    }
}

/// Where the pages of a shared map are handed back: below the span of every batch a
/// shard still reads, and below the end of those all shards are done with, in file
/// order and whole blocks. The reader hands back nothing it handed on
/// ([`crate::capture::HeldPages::kept`]), so a page the hand-on faulted in is read by
/// every shard before it goes. The pages the reader passed are still handed back a
/// step behind its read position, and faulted in again by the hand-on a reorder window
/// later: kept, every page would be faulted in once, but the window's span stays
/// resident (jxta-4g's two-thread peak RSS 44 -> 102 MB; docs/performance.md, stop 35).
#[derive(Default)]
struct ReleasePoint {
    /// The map of the latest batches: the pages of an earlier input's go when its last
    /// batch does (its mapping with it).
    map: Option<SharedMap>,
    /// Below this, the pages of `map` were handed back (a multiple of `RELEASE_BLOCK`).
    released: usize,
    /// The furthest byte of `map` read by the batches every shard is done with.
    done_hi: usize,
    /// Batches handed over and not yet back, in hand-over order: their number, the span
    /// of `map` they read (empty: none) and whether every shard is done with them.
    flight: std::collections::VecDeque<(u64, usize, usize, bool)>,
}

impl ReleasePoint {
    /// Batch `seq` reads `lo..hi` of `map`, handed over after every earlier one.
    fn handed(&mut self, seq: u64, map: Option<&SharedMap>, lo: usize, hi: usize) {
        if let Some(map) = map {
            if !self.map.as_ref().is_some_and(|m| m.same(map)) {
                // Batches of the earlier input read none of this one's pages.
                for (_, l, h, _) in &mut self.flight {
                    (*l, *h) = (usize::MAX, 0);
                }
                (self.map, self.released, self.done_hi) = (Some(map.clone()), 0, 0);
            }
        }
        self.flight.push_back((seq, lo, hi, false));
    }

    /// Every shard is done with batch `seq`; `filling` is where the frames of the batch
    /// being filled start (`usize::MAX`: none yet). The span of `map` to hand back now,
    /// if a block is free: shards finish batches in order, but the last to finish one
    /// may send it back after the next.
    fn finished(&mut self, seq: u64, filling: usize) -> Option<(usize, usize)> {
        if let Some(f) = self.flight.iter_mut().find(|f| f.0 == seq) {
            f.3 = true;
        }
        while let Some(&(_, _, hi, true)) = self.flight.front() {
            self.done_hi = self.done_hi.max(hi);
            self.flight.pop_front();
        }
        // A frame reordered behind those before it makes a batch's span start below
        // the previous one's: each batch in flight bounds the release.
        let floor = self.flight.iter().map(|f| f.1).fold(filling, usize::min);
        let upto = self.done_hi.min(floor) & !(RELEASE_BLOCK - 1);
        if upto <= self.released {
            return None;
        }
        let from = std::mem::replace(&mut self.released, upto);
        Some((from, upto))
    }
}

enum ReaderMsg {
    Frames(Arc<FrameBatch>),
    /// The inputs are read. Every shard gets the reorder counters (they merge by
    /// maximum); only shard 0 the input summaries (the merge reports shard 0's).
    End {
        reorder: ReorderStats,
        inputs: Vec<InputSummary>,
    },
}

/// Documents the matcher is done with, going back to the shard that decoded them.
type Spent = Vec<Box<(Document, Sighting)>>;
/// Returned document boxes a shard keeps to refill; more are freed. A shard queues
/// ~0.4 documents a frame on a JXTA-heavy capture, under 1,000 a batch.
const SPARE_BOXES: usize = 4096;

enum ShardMsg {
    Batch {
        matched: Vec<Matched>,
        /// Capture time at the end of the batch.
        now: UnixNanos,
        /// No message still to complete in this shard starts before this.
        held_floor: UnixNanos,
    },
    Done {
        matched: Vec<Matched>,
        result: Box<super::PipelineResult>,
        inputs: Vec<InputSummary>,
    },
}

/// Run first on the reader thread of every [`analyze_parallel`]: see [`set_reader_start`].
type ReaderStart = Box<dyn Fn() + Send + Sync>;
static READER_START: OnceLock<ReaderStart> = OnceLock::new();

/// Has `hook` run first on the reader thread of every later [`analyze_parallel`]; false
/// (and `hook` dropped) if one was set before. For the binary, which chose the
/// allocator: the reader allocates seldom and frees large blocks (its reorder ring's
/// old storage as the ring grows), and jemalloc purges an arena's freed pages only as
/// that arena is used, so in an arena of the reader's own they stayed resident (8.8 MB
/// of peers10k-1g's two-thread peak; docs/performance.md, stop 33).
pub fn set_reader_start(hook: impl Fn() + Send + Sync + 'static) -> bool {
    READER_START.set(Box::new(hook)).is_ok()
}

/// Runs the analysis on `threads` shards. The inputs must be files; see
/// [`super::analyze_each`] for the callback.
pub fn analyze_parallel(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    threads: usize,
    progress: Option<&dyn Progress>,
    on_transaction: &mut dyn FnMut(Transaction),
) -> Analysis {
    let threads = threads.max(1);
    // Every shard gets the whole flow caps. Shards split by a hash of the host pair are
    // never balanced exactly: with the caps divided, a capture one thread holds within
    // them made N threads evict flows one thread kept (peers10k-1g: 100,000 flows at
    // once, the cap; two threads evicted 106,250 and resynchronised them mid-stream).
    let shard_cfg = cfg.clone();
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(threads);
        let mut returns = Vec::with_capacity(threads);
        let mut feeds = Vec::with_capacity(threads);
        // Shards hand their emptied batches back: a fresh one per hand-over grew its
        // buffer by doubling, copying each batch's bytes about twice more.
        let (recycle_tx, recycle_rx) = mpsc::channel();
        for index in 0..threads {
            let (tx, rx) = mpsc::sync_channel(BATCHES_AHEAD);
            receivers.push(rx);
            let (spent_tx, spent_rx) = mpsc::channel();
            returns.push(spent_tx);
            let (feed_tx, feed_rx) = mpsc::sync_channel(READ_BATCHES_AHEAD);
            feeds.push(feed_tx);
            let cfg = shard_cfg.clone();
            let recycle = recycle_tx.clone();
            std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn_scoped(scope, move || {
                    run_shard(cfg, index, feed_rx, recycle, tx, spent_rx)
                })
                .expect("spawning a shard thread");
        }
        let reorder = cfg.reorder.clone();
        std::thread::Builder::new()
            .name("reader".to_owned())
            .spawn_scoped(scope, move || {
                run_reader(inputs, reorder, progress, feeds, recycle_rx)
            })
            .expect("spawning the reader thread");
        merge(receivers, returns, cfg, on_transaction)
    })
}

fn run_reader(
    inputs: &[PathBuf],
    reorder: crate::capture::ReorderConfig,
    progress: Option<&dyn Progress>,
    feeds: Vec<mpsc::SyncSender<ReaderMsg>>,
    recycled: mpsc::Receiver<FrameBatch>,
) {
    if let Some(hook) = READER_START.get() {
        hook();
    }
    let shards = feeds.len();
    let mut merger = crate::capture::FrameMerger::new(reorder);
    // Room the byte buffer gets before a batch, raised to a quarter more than a batch
    // that took more. Grown by doubling from empty instead, or whenever a batch took
    // more than any before, the buffers copied their bytes again (9 MB, a tenth of the
    // reader's instructions on jxta-0.1g). Room never written to is never resident.
    let mut room = FIRST_BATCH_ROOM;
    let mut batch = FrameBatch::new(
        Vec::with_capacity(BATCH_FRAMES as usize),
        Vec::with_capacity(room),
    );
    // Batches the shards handed back, taken before a new one is made; as many exist
    // as were in flight at once.
    let mut spare: Vec<FrameBatch> = Vec::new();
    let mut pages = ReleasePoint::default();
    let mut seq = 0u64;
    // Every shard gets a batch at the same frames: a shard waiting for frames the
    // reader still holds while the reader waits on another shard would deadlock.
    let mut hand_over = |batch: &mut FrameBatch| {
        batch.seq = seq;
        seq += 1;
        pages.handed(batch.seq, batch.map.as_ref(), batch.lo, batch.hi);
        for back in recycled.try_iter() {
            // The batch being filled is empty: the one handed over is in `flight`.
            if let (Some((from, upto)), Some(map)) =
                (pages.finished(back.seq, usize::MAX), pages.map.as_ref())
            {
                map.release(from, upto);
            }
            spare.push(back);
        }
        // Raised only past a batch that did not fit: raised at every new largest batch,
        // it had the spares made before let go one by one as they came back, and made
        // again (one buffer is now about twice a shard's share of a batch).
        if batch.data.len() > room {
            room = batch.data.len() + batch.data.len() / 4;
        }
        let next = match spare.pop() {
            Some(spare) if spare.data.capacity() >= room => spare,
            // A buffer too small is let go: grown, its old bytes would be copied.
            Some(spare) => FrameBatch::new(spare.slots, Vec::with_capacity(room)),
            None => FrameBatch::new(
                Vec::with_capacity(BATCH_FRAMES as usize),
                Vec::with_capacity(room),
            ),
        };
        let shared = Arc::new(std::mem::replace(batch, next));
        // The last shard takes the reader's own reference: kept here until after the
        // sends, it was the last one left when the shards were done with the batch
        // first (one batch in a thousand on a loaded machine), and the batch was freed
        // here without coming back, which held the release of pages from then on.
        // A shard that stopped (a bug) is reported by the merge.
        if let Some((last, others)) = feeds.split_last() {
            for feed in others {
                let _ = feed.send(ReaderMsg::Frames(Arc::clone(&shared)));
            }
            let _ = last.send(ReaderMsg::Frames(shared));
        }
    };
    let mut summaries = Vec::with_capacity(inputs.len());
    for (i, path) in inputs.iter().enumerate() {
        let last = i + 1 == inputs.len();
        summaries.push(read_input(
            path,
            progress,
            &mut merger,
            last,
            true,
            // Inlined into the read loop (as `read_input` inlines its hand-on): called,
            // its prologue and epilogue were ~20 instructions a frame of the reader's
            // thread (docs/performance.md, stop 36, read29).
            #[inline(always)]
            |frame, placed| {
                let own = crate::packet::shard(frame, shards);
                let place = batch.push_bytes(frame, placed);
                batch.slots.push(Slot {
                    ts: frame.ts,
                    len: frame.data.len(),
                    place,
                    link_type: frame.link_type,
                    orig_len: frame.orig_len,
                    interface: frame.interface,
                    // Below `shards`, itself a thread count.
                    shard: own as u32,
                });
                // The lists' lengths, not counts of their own: the lists are made
                // with room for a batch and replaced at every hand-over.
                if batch.slots.len() >= BATCH_FRAMES as usize || batch.bytes >= READ_BATCH_BYTES {
                    hand_over(&mut batch);
                }
            },
        ));
    }
    hand_over(&mut batch);
    let reorder = merger.stats().clone();
    let mut summaries = Some(summaries);
    for feed in &feeds {
        let _ = feed.send(ReaderMsg::End {
            reorder: reorder.clone(),
            inputs: summaries.take().unwrap_or_default(),
        });
    }
}

fn run_shard(
    cfg: PipelineConfig,
    index: usize,
    feed: mpsc::Receiver<ReaderMsg>,
    recycle: mpsc::Sender<FrameBatch>,
    tx: mpsc::SyncSender<ShardMsg>,
    spent: mpsc::Receiver<Spent>,
) {
    let mut pipeline = Pipeline::new_shard(cfg);
    let mut frames = 0u64;
    let mut held_floor = 0;
    let mut held_checked: Option<UnixNanos> = None;
    let mut summaries = Vec::new();
    let mut matcher_gone = false;
    // The reader gone without `End` (a bug) ends the shard with what it read.
    while let Ok(msg) = feed.recv() {
        let batch = match msg {
            ReaderMsg::Frames(batch) => batch,
            ReaderMsg::End { reorder, inputs } => {
                pipeline.set_reorder_stats(&reorder);
                summaries = inputs;
                break;
            }
        };
        // Documents come back to the thread that allocated them and whose cache still
        // holds them: freed by the matcher, on the other core, two threads took ~4 %
        // more CPU (docs/performance.md, "`--threads 2`, stop 26"). Their boxes carry
        // later documents; what they hold is freed as each is refilled.
        while let Ok(documents) = spent.try_recv() {
            pipeline.recycle_documents(documents, SPARE_BOXES);
        }
        let own = index as u32;
        let data = batch.data.as_slice();
        let map: &[u8] = batch.map.as_deref().unwrap_or_default();
        // Where the next copied slot's bytes start in `data`: every such frame's
        // follow the previous one's, the shard's own or not.
        let mut at = 0usize;
        let mut left: &[Slot] = &batch.slots;
        while !left.is_empty() {
            // Up to the next hand-over to the matcher (every `BATCH_FRAMES` frames
            // read), so that its check is made once a stretch rather than a slot.
            let till = (BATCH_FRAMES - frames % BATCH_FRAMES) as usize;
            let (stretch, later) = left.split_at(till.min(left.len()));
            left = later;
            frames += stretch.len() as u64;
            // One call a foreign frame: the shards' frames alternate on a JXTA-heavy
            // capture, and finding runs of foreign ones to skip in one call cost the
            // shard more than it saved (docs/performance.md, stop 29, threads18f).
            for slot in stretch {
                let copied = slot.place == IN_DATA;
                let start = if copied { at } else { slot.place };
                // Below `data.len()` while the slots match the bytes: no overflow.
                at += if copied { slot.len } else { 0 };
                let bytes = if copied { data } else { map };
                if slot.shard != own {
                    pipeline.skip_frame(slot.ts);
                } else if let Some(bytes) = bytes.get(start..start.saturating_add(slot.len)) {
                    // The reader appended exactly `len` bytes for this slot, or found
                    // them at its place in the map.
                    pipeline.frame(&Frame {
                        ts: slot.ts,
                        link_type: slot.link_type,
                        data: bytes,
                        orig_len: slot.orig_len,
                        interface: slot.interface,
                    });
                } else {
                    debug_assert!(false, "frame batch shorter than its slots");
                    pipeline.skip_frame(slot.ts);
                }
            }
            if !frames.is_multiple_of(BATCH_FRAMES) || matcher_gone {
                continue;
            }
            let now = pipeline.now();
            if held_checked.is_none_or(|t| now >= t.saturating_add(HELD_RECHECK_NS)) {
                // Bytes held now were first seen no later than now; a floor computed
                // earlier stays a valid bound until the next recheck.
                held_floor = pipeline.oldest_held().unwrap_or(now).min(now);
                held_checked = Some(now);
            }
            let msg = ShardMsg::Batch {
                matched: pipeline.take_matched(),
                now,
                held_floor,
            };
            matcher_gone = tx.send(msg).is_err();
        }
        // The last shard to finish with the batch takes it back to the reader.
        if let Some(mut batch) = Arc::into_inner(batch) {
            batch.clear();
            // The reader gone means no more batches are needed.
            let _ = recycle.send(batch);
        }
    }
    let (matched, result) = pipeline.finish_shard();
    let _ = tx.send(ShardMsg::Done {
        matched,
        result: Box::new(result),
        inputs: summaries,
    });
}

fn merge(
    receivers: Vec<mpsc::Receiver<ShardMsg>>,
    returns: Vec<mpsc::Sender<Spent>>,
    cfg: PipelineConfig,
    on_transaction: &mut dyn FnMut(Transaction),
) -> Analysis {
    let mut matcher = Matcher::new(cfg.matcher);
    let mut ordered = Reorder::default();
    let mut finished: Vec<Transaction> = Vec::new();
    let mut now: UnixNanos = 0;
    let mut floors: Vec<UnixNanos> = vec![0; receivers.len()];
    let mut done: Vec<Option<(Box<super::PipelineResult>, Vec<InputSummary>)>> =
        (0..receivers.len()).map(|_| None).collect();
    // Each shard's documents of the round.
    let mut parts: Vec<Vec<Matched>> = (0..receivers.len()).map(|_| Vec::new()).collect();
    let mut spent: Vec<Spent> = (0..receivers.len()).map(|_| Vec::new()).collect();
    loop {
        // Every shard reads the same frames, so they hand over the same batches and
        // finish together; one that died (a bug) ends the run with what was merged.
        let mut batch_now = now;
        for (i, rx) in receivers.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match rx.recv() {
                Ok(ShardMsg::Batch {
                    matched,
                    now: n,
                    held_floor,
                }) => {
                    parts[i] = matched;
                    batch_now = batch_now.max(n);
                    floors[i] = held_floor;
                }
                Ok(ShardMsg::Done {
                    matched,
                    result,
                    inputs,
                }) => {
                    parts[i] = matched;
                    batch_now = batch_now.max(result.last_ts);
                    done[i] = Some((result, inputs));
                }
                Err(_) => {
                    tracing::error!("analysis shard {i} stopped unexpectedly");
                    done[i] = Some((
                        Box::new(Pipeline::new(PipelineConfig::default()).finish()),
                        Vec::new(),
                    ));
                }
            }
        }
        // Made at the round's size: grown by push from empty, every round, the lists
        // were ~1.5 M instructions of the matcher's thread on jxta-0.1g.
        for (list, part) in spent.iter_mut().zip(&parts) {
            list.reserve(part.len());
        }
        // Shards cover disjoint frames; at the end (frame u64::MAX) flows are in order
        // of appearance. Stable: a frame's documents keep their order.
        merge_round(
            &mut parts,
            // One compare where a pair took two.
            |m| u128::from(m.frame) << 64 | u128::from(m.flow),
            // Inlined into the merge's loop: called, it was ~20 instructions a document
            // of the matcher's thread (docs/performance.md, stop 31, thr20).
            #[inline(always)]
            |shard, m| {
                if m.now > now {
                    now = m.now;
                    matcher.advance(now, &mut finished);
                }
                match m.event {
                    MatchEvent::Document(mut d) => {
                        let (doc, s) = &mut *d;
                        matcher.observe_taking(doc, s, &mut finished);
                        // A PONG's answer lets go of its PING's delivery cell here,
                        // after the shard's watch list did: freed on this thread, each
                        // was a free of another thread's memory and a new cell made
                        // on the shard (~150 instructions a PING between the two,
                        // docs/performance.md, stop 36, thr30). It goes back in the
                        // box, which the shard refills, and is kept there.
                        if doc.kind == Kind::Pong && s.wire.delivery.is_none() {
                            s.wire.delivery = cause::spared_delivery();
                        }
                        if let Some(spent) = spent.get_mut(shard) {
                            spent.push(d);
                        }
                    }
                    MatchEvent::Malformed => matcher.count_malformed(),
                }
            },
        );
        for (documents, back) in spent.iter_mut().zip(&returns) {
            if !documents.is_empty() {
                // A shard that has ended leaves them to be freed here.
                let _ = back.send(std::mem::take(documents));
            }
        }
        if batch_now > now {
            now = batch_now;
            matcher.advance(now, &mut finished);
        }
        for t in finished.drain(..) {
            ordered.push(t);
        }
        if done.iter().all(Option::is_some) {
            break;
        }
        if ordered.due(now) {
            let held = floors.iter().copied().min();
            let watermark = ordered.watermark(now, [matcher.oldest_outstanding(), held]);
            ordered.release(watermark, &mut |t| on_transaction(t));
        }
    }
    matcher.finish(now, &mut finished);
    ordered.finish(&mut finished);
    for t in finished.drain(..) {
        on_transaction(t);
    }

    let mut shards = done.into_iter().flatten();
    let (first, inputs) = shards.next().unwrap_or_else(|| {
        (
            Box::new(Pipeline::new(PipelineConfig::default()).finish()),
            Vec::new(),
        )
    });
    let mut result = *first;
    for (r, _) in shards {
        result.packets.absorb(&r.packets);
        result.flows.absorb(&r.flows);
        result.jxta = merge_stats(result.jxta, r.jxta);
        result.jim.absorb(&r.jim);
        result.first_ts = match (result.first_ts, r.first_ts) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        result.last_ts = result.last_ts.max(r.last_ts);
    }
    result.matcher = matcher;
    result.transactions = Vec::new();
    Analysis { result, inputs }
}

/// Hands on the items of `parts` (one list per shard) in the order a stable sort of
/// the lists, one after the other, by `key` gives, each with its list's index: equal
/// keys in list order, then in their order within the list. A shard queues its
/// documents in that order already (a list that is not, is sorted first), so this
/// is a merge: the sort of the lists put together was ~100 instructions a document
/// on the matcher's thread, and moved each once more (docs/performance.md, stop 29).
fn merge_round<T, K: Ord>(
    parts: &mut [Vec<T>],
    key: impl Fn(&T) -> K,
    mut out: impl FnMut(usize, T),
) {
    for part in parts.iter_mut() {
        if !part.is_sorted_by_key(&key) {
            part.sort_by_key(&key);
        }
    }
    if let [a, b] = parts {
        // Two shards, the usual case: their documents mostly alternate, so a pairwise
        // choice per item beats looking for runs.
        let (mut a, mut b) = (std::mem::take(a).into_iter(), std::mem::take(b).into_iter());
        loop {
            let from_a = match (a.as_slice().first(), b.as_slice().first()) {
                (Some(x), Some(y)) => key(x) <= key(y),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (list, i) = if from_a { (&mut a, 0) } else { (&mut b, 1) };
            if let Some(item) = list.next() {
                out(i, item);
            }
        }
        return;
    }
    let mut lists: Vec<std::vec::IntoIter<T>> = parts
        .iter_mut()
        .map(|p| std::mem::take(p).into_iter())
        .collect();
    loop {
        // The list whose head goes first, and the head that goes first of the others:
        // the former's items go on until one would not precede that one. Equal keys
        // go in list order, so a later list's equal key neither wins nor stops a run.
        let mut first: Option<(usize, K)> = None;
        let mut then: Option<(usize, K)> = None;
        for (i, list) in lists.iter().enumerate() {
            let Some(k) = list.as_slice().first().map(&key) else {
                continue;
            };
            match &first {
                Some((_, f)) if k >= *f => {
                    if then.as_ref().is_none_or(|(_, t)| k < *t) {
                        then = Some((i, k));
                    }
                }
                _ => then = first.replace((i, k)),
            }
        }
        let Some((i, _)) = first else {
            break;
        };
        let Some(list) = lists.get_mut(i) else {
            break;
        };
        while let Some(item) = list.next() {
            out(i, item);
            let (Some(head), Some((j, t))) = (list.as_slice().first(), &then) else {
                continue;
            };
            let k = key(head);
            if k > *t || (k == *t && i > *j) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `packet::shard` as it was before stop 29, on the IP bytes: FNV-1a over the
    /// lower address then the higher, compared as byte slices.
    fn shard_by_slices(ip: &[u8], shards: usize) -> usize {
        if shards <= 1 {
            return 0;
        }
        let (a, b) = match ip.first().map(|v| v >> 4) {
            Some(4) => (ip.get(12..16), ip.get(16..20)),
            Some(6) => (ip.get(8..24), ip.get(24..40)),
            _ => (None, None),
        };
        let (Some(a), Some(b)) = (a, b) else {
            return 0;
        };
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let h = lo.iter().chain(hi).fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
            (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
        });
        (h % shards as u64) as usize
    }

    /// An IP header (no payload) from `src` to `dst`, 4 or 16 bytes each.
    fn ip_header(src: &[u8], dst: &[u8]) -> Vec<u8> {
        let mut ip = if src.len() == 4 {
            let mut ip = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0];
            ip.extend_from_slice(src);
            ip
        } else {
            let mut ip = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
            ip.extend_from_slice(src);
            ip
        };
        ip.extend_from_slice(dst);
        ip
    }

    fn shard_of(link_type: LinkType, data: &[u8], shards: usize) -> usize {
        crate::packet::shard(
            &Frame {
                ts: 0,
                link_type,
                data,
                orig_len: data.len() as u32,
                interface: 0,
            },
            shards,
        )
    }

    /// Raw IP, and the same packet behind an Ethernet header (`packet::shard`'s own
    /// path) and behind one with a VLAN tag (the general link decoding's).
    fn both_links(ip: &[u8], shards: usize) -> [usize; 3] {
        let ethertype: u16 = if ip.first().is_some_and(|v| v >> 4 == 6) {
            0x86dd
        } else {
            0x0800
        };
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&ethertype.to_be_bytes());
        eth.extend_from_slice(ip);
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0, 42]);
        vlan.extend_from_slice(&ethertype.to_be_bytes());
        vlan.extend_from_slice(ip);
        [
            shard_of(LinkType::RAW, ip, shards),
            shard_of(LinkType::ETHERNET, &eth, shards),
            shard_of(LinkType::ETHERNET, &vlan, shards),
        ]
    }

    proptest! {
        /// The shard of a frame is the one the slice-wise hash gave (so a run's
        /// `--threads` figures that depend on the split stay as they were), the same
        /// in both directions, for every shard count.
        #[test]
        fn a_frame_goes_to_the_shard_of_its_address_pair_either_way(
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            same in any::<bool>(),
            shards in 1usize..9,
        ) {
            let n = if v6 { 16 } else { 4 };
            let (a, b) = (&a[..n], if same { &a[..n] } else { &b[..n] });
            let there = ip_header(a, b);
            let back = ip_header(b, a);
            let expected = shard_by_slices(&there, shards);
            prop_assert!(expected < shards);
            prop_assert_eq!(both_links(&there, shards), [expected; 3]);
            prop_assert_eq!(both_links(&back, shards), [expected; 3]);
        }

        /// Two shards take the hash's low bit from the addresses' XOR alone
        /// (`packet::fnv1a_parity`): the same split as the whole hash, in both
        /// directions, whole headers and cut ones.
        #[test]
        fn two_shards_split_as_the_whole_hash(
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            cut in 0usize..48,
        ) {
            let n = if v6 { 16 } else { 4 };
            for mut ip in [ip_header(&a[..n], &b[..n]), ip_header(&b[..n], &a[..n])] {
                prop_assert_eq!(both_links(&ip, 2), [shard_by_slices(&ip, 2); 3]);
                ip.truncate(cut.min(ip.len()));
                prop_assert_eq!(both_links(&ip, 2), [shard_by_slices(&ip, 2); 3]);
            }
        }

        /// Headers cut short go to shard 0, as the slice-wise hash sent them.
        #[test]
        fn a_cut_header_goes_where_it_did(
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            cut in 0usize..40,
            shards in 1usize..5,
        ) {
            let n = if v6 { 16 } else { 4 };
            let mut ip = ip_header(&a[..n], &a[..n]);
            ip.truncate(cut.min(ip.len()));
            prop_assert_eq!(both_links(&ip, shards), [shard_by_slices(&ip, shards); 3]);
        }

        /// The merge against the general path it replaces: every list's items put
        /// together, tagged with their list, sorted stably by key.
        #[test]
        fn a_round_merged_is_the_stable_sort_of_its_lists(
            lists in prop_oneof![
                // Two lists (two shards) have a path of their own.
                prop::collection::vec(prop::collection::vec((0u8..6, 0u8..3), 0..40), 2),
                prop::collection::vec(prop::collection::vec((0u8..6, 0u8..3), 0..40), 1..6),
            ],
            sort_some in any::<bool>(),
        ) {
            // Lists mostly in order, as shards queue them, and some not.
            let mut parts: Vec<Vec<(u8, u8, usize)>> = lists
                .iter()
                .enumerate()
                .map(|(p, list)| {
                    let mut items: Vec<_> =
                        list.iter().enumerate().map(|(n, &(a, b))| (a, b, p * 1000 + n)).collect();
                    if sort_some && p % 2 == 0 {
                        items.sort_by_key(|&(a, b, _)| (a, b));
                    }
                    items
                })
                .collect();
            let mut expected: Vec<(usize, (u8, u8, usize))> = parts
                .iter()
                .enumerate()
                .flat_map(|(p, items)| items.iter().map(move |&item| (p, item)))
                .collect();
            expected.sort_by_key(|&(_, (a, b, _))| (a, b));
            let mut got = Vec::new();
            merge_round(&mut parts, |&(a, b, _)| (a, b), |p, item| got.push((p, item)));
            prop_assert_eq!(got, expected);
            prop_assert!(parts.iter().all(Vec::is_empty));
        }
    }

    /// The hook set by `set_reader_start` runs on the reader thread, once a run, before
    /// the reader allocates (the binary binds that thread to an allocator arena).
    #[test]
    fn the_reader_start_hook_runs_on_the_reader_thread() {
        static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let set = set_reader_start(|| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            SEEN.lock().unwrap_or_else(|e| e.into_inner()).push(name);
        });
        assert!(set, "no other test sets the hook");
        assert!(!set_reader_start(|| {}), "the first hook stays");
        // A pcap of two Ethernet frames, which no shard needs to understand.
        let format = crate::capture::WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        };
        let mut writer = crate::capture::CaptureWriter::new(Vec::new(), format, LinkType::ETHERNET)
            .expect("header");
        for second in [1u64, 2] {
            writer
                .write_frame(0, second * 1_000_000_000, &[0; 60], 60)
                .expect("frame");
        }
        let pcap = writer.finish().expect("pcap");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("two.pcap");
        std::fs::write(&path, &pcap).expect("write");
        for _ in 0..2 {
            analyze_parallel(
                std::slice::from_ref(&path),
                PipelineConfig::default(),
                2,
                None,
                &mut |_| {},
            );
        }
        let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(seen, ["reader", "reader"]);
    }

    /// A pcap of `n` Ethernet frames of 60 bytes, frame `i` filled with `fill + i`.
    fn small_pcap(n: u8, fill: u8) -> Vec<u8> {
        let format = crate::capture::WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        };
        let mut writer = crate::capture::CaptureWriter::new(Vec::new(), format, LinkType::ETHERNET)
            .expect("header");
        for i in 0..n {
            let ts = u64::from(i + 1) * 1_000_000_000;
            writer
                .write_frame(0, ts, &[fill.wrapping_add(i); 60], 60)
                .expect("frame");
        }
        writer.finish().expect("pcap")
    }

    /// A batch reads a frame from its map when it has a place in the batch's map (the
    /// first offered), and copies it otherwise (no place, another input's map); the
    /// bytes the shards find are the frame's either way, and a cleared batch takes a
    /// new map.
    #[test]
    fn a_batch_reads_frames_by_place_in_its_own_map_and_copies_the_rest() {
        let reader = |fill| {
            crate::capture::CaptureReader::from_bytes("mem", small_pcap(3, fill)).expect("pcap")
        };
        let (mut a, mut b) = (reader(10), reader(50));
        let (map_a, map_b) = (
            a.shared_map().expect("in place"),
            b.shared_map().expect("in place"),
        );
        let mut batch = FrameBatch::new(Vec::new(), Vec::new());
        let mut pushed = Vec::new();
        for (which, placed) in [(0, true), (1, true), (0, false), (0, true), (1, true)] {
            let (r, map) = if which == 0 {
                (&mut a, &map_a)
            } else {
                (&mut b, &map_b)
            };
            let Ok(Some((frame, at))) = r.next_frame_placed() else {
                panic!("a frame");
            };
            let at = at.expect("a place");
            let place = batch.push_bytes(&frame, placed.then_some((map, at)));
            let expected = if which == 0 && placed { at } else { IN_DATA };
            assert_eq!(place, expected);
            pushed.push((place, frame.data.to_vec()));
        }
        assert_eq!(batch.bytes, 5 * 60);
        assert_eq!(batch.data.len(), 3 * 60);
        let mut copied = 0;
        for (place, bytes) in &pushed {
            let found = if *place == IN_DATA {
                copied += bytes.len();
                &batch.data[copied - bytes.len()..copied]
            } else {
                &map_a[*place..*place + bytes.len()]
            };
            assert_eq!(found, bytes.as_slice());
        }
        assert!(batch.lo < batch.hi && batch.hi <= map_a.len());
        batch.clear();
        assert!(batch.map.is_none() && batch.data.is_empty() && batch.bytes == 0);
        let Ok(Some((frame, at))) = b.next_frame_placed() else {
            panic!("a frame");
        };
        let at = at.expect("a place");
        assert_eq!(batch.push_bytes(&frame, Some((&map_b, at))), at);
    }

    /// Batches handed over in file order, some frames reordered below the previous
    /// batch's span, finished by the shards in any order: a span handed back never
    /// meets a batch in flight, none is handed back twice, and by the end every byte
    /// below the last whole block the batches read is handed back. A second map starts
    /// again from its start.
    #[test]
    fn pages_are_handed_back_once_behind_every_batch_in_flight() {
        let map = |fill| {
            crate::capture::CaptureReader::from_bytes("mem", small_pcap(1, fill))
                .expect("pcap")
                .shared_map()
                .expect("in place")
        };
        let (a, b) = (map(1), map(2));
        let mb = 1usize << 20;
        // (lo, hi) of each batch: 0.75 MiB apiece, every third starting 0.5 MiB below
        // the previous one's end (a frame reordered), one with nothing in the map.
        let mut spans: Vec<(usize, usize)> = (0..40usize)
            .map(|i| {
                let lo = i * 3 * mb / 4;
                let lo = if i % 3 == 2 { lo - mb / 2 } else { lo };
                (lo, (i + 1) * 3 * mb / 4)
            })
            .collect();
        spans[7] = (usize::MAX, 0);
        for order in [0u64, 1, 2] {
            let mut pages = ReleasePoint::default();
            let mut released: Vec<(usize, usize)> = Vec::new();
            let mut flight: Vec<u64> = Vec::new();
            let mut finish = |pages: &mut ReleasePoint, flight: &mut Vec<u64>, seq: u64| {
                flight.retain(|&s| s != seq);
                if let Some((from, upto)) = pages.finished(seq, usize::MAX) {
                    assert!(from < upto && from % RELEASE_BLOCK == 0 && upto % RELEASE_BLOCK == 0);
                    for &s in flight.iter() {
                        let (lo, hi) = spans[s as usize];
                        assert!(
                            lo >= hi || hi <= from || lo >= upto,
                            "{seq}: {from}..{upto} cuts {s}"
                        );
                    }
                    released.push((from, upto));
                }
            };
            for (seq, &(lo, hi)) in spans.iter().enumerate() {
                let seq = seq as u64;
                pages.handed(seq, (lo < hi).then_some(&a), lo, hi);
                flight.push(seq);
                // Three batches in flight, finished oldest first, newest first, or
                // the middle one first.
                if flight.len() == 3 {
                    let mut due = flight.clone();
                    match order {
                        1 => due.reverse(),
                        2 => due.swap(0, 1),
                        _ => {}
                    }
                    for seq in due {
                        finish(&mut pages, &mut flight, seq);
                    }
                }
            }
            for seq in flight.clone() {
                finish(&mut pages, &mut flight, seq);
            }
            let end = spans.iter().map(|s| s.1).max().unwrap_or(0) & !(RELEASE_BLOCK - 1);
            let mut at = 0;
            for &(from, upto) in &released {
                assert_eq!(from, at, "released in file order, each byte once");
                at = upto;
            }
            assert_eq!(at, end, "released up to the last whole block");
            // The next input's map: released from its own start.
            pages.handed(99, Some(&b), 0, 3 * RELEASE_BLOCK);
            assert_eq!(pages.finished(99, usize::MAX), Some((0, 3 * RELEASE_BLOCK)));
        }
    }

    /// Two inputs read by two shards (the second's frames by place in another map, the
    /// first's end handed on by place before it) count what one pipeline counts.
    #[test]
    fn two_inputs_on_two_shards_count_what_one_pipeline_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = [(1u8, 0u8), (2, 100)]
            .iter()
            .map(|&(i, fill)| {
                let path = dir.path().join(format!("{i}.pcap"));
                std::fs::write(&path, small_pcap(40, fill)).expect("write");
                path
            })
            .collect();
        let one = super::super::offline::analyze(&paths, PipelineConfig::default(), None);
        let two = analyze_parallel(&paths, PipelineConfig::default(), 2, None, &mut |_| {});
        assert_eq!(
            format!("{:?}", one.result.packets),
            format!("{:?}", two.result.packets)
        );
        assert_eq!(one.result.last_ts, two.result.last_ts);
    }

    /// Connections between many hosts split evenly: on 4,096 client hosts talking to
    /// one of four servers, no shard takes more than 10 % above its share.
    #[test]
    fn many_host_pairs_split_evenly() {
        for shards in [2usize, 3, 4] {
            let mut counts = vec![0usize; shards];
            let pairs = 4096usize;
            for i in 0..pairs {
                let client = [10, 1, (i >> 8) as u8, i as u8];
                let server = [192, 168, 0, 1 + (i % 4) as u8];
                counts[both_links(&ip_header(&client, &server), shards)[0]] += 1;
            }
            let share = pairs / shards;
            for (shard, &n) in counts.iter().enumerate() {
                assert!(
                    n * 10 <= share * 11 && n * 10 >= share * 9,
                    "{shards} shards: shard {shard} took {n} of {pairs} ({counts:?})"
                );
            }
        }
    }
}
