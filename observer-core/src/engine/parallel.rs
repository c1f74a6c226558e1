//! `analyze --threads N`: the flows are split across N shards by host pair
//! ([`crate::packet::shard`]), each a [`Pipeline`] on its own thread doing everything
//! up to the matcher; one matcher, on the calling thread, takes their documents in the
//! order a single pipeline would have produced them.
//!
//! One reader thread reads the inputs (mapped), puts the frames back in time order
//! (the one [`crate::capture::FrameMerger`]) and hands each shard, in batches, a copy of
//! its own frames and the time of every other shard's frame. The frames are copied
//! rather than referenced because a frame lives in the mapping of the input being read
//! (unmapped when the next input opens) or in the merger's reorder pages (reused once
//! released); a shard would touch those bytes anyway. Every shard replays the same
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
use std::sync::mpsc;

use super::offline::{read_input, Analysis, InputSummary, Progress};
use super::{merge_stats, MatchEvent, Matched, Pipeline, PipelineConfig, Reorder};
use crate::capture::{Frame, LinkType, ReorderStats};
use crate::jim::Document;
use crate::transaction::{Matcher, Sighting, Transaction};
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
/// Copied frame bytes after which the reader hands its batches over early: a batch of
/// `BATCH_FRAMES` snaplen-sized frames would otherwise hold hundreds of megabytes. At
/// 256 KiB a JXTA-heavy capture was handed over every ~300 frames, and the waits on
/// those hand-overs cost 5-10 % of the wall time of two threads (docs/performance.md).
const READ_BATCH_BYTES: usize = 1 << 20;
/// Batches the reader may run ahead of each shard.
const READ_BATCHES_AHEAD: usize = 2;

/// One frame of the input, as one shard sees it.
enum Slot {
    /// The shard's own frame; its bytes follow the previous own frame's in the batch.
    Own {
        ts: UnixNanos,
        link_type: LinkType,
        orig_len: u32,
        interface: u32,
        len: usize,
    },
    /// Another shard's frame: only its capture time.
    Skip(UnixNanos),
}

#[derive(Default)]
struct FrameBatch {
    slots: Vec<Slot>,
    data: Vec<u8>,
}

enum ReaderMsg {
    Frames(FrameBatch),
    /// The inputs are read. Every shard gets the reorder counters (they merge by
    /// maximum); only shard 0 the input summaries (the merge reports shard 0's).
    End {
        reorder: ReorderStats,
        inputs: Vec<InputSummary>,
    },
}

/// Documents the matcher is done with, going back to the shard that decoded them.
type Spent = Vec<Box<(Document, Sighting)>>;
/// Returned documents a shard may hold before it frees them at once: it frees one per
/// frame of its own, and a JXTA-heavy capture has ~0.4 documents per frame.
const FREE_BACKLOG: usize = 4096;

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
                    run_shard(cfg, feed_rx, recycle, tx, spent_rx)
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
    let shards = feeds.len();
    let mut merger = crate::capture::FrameMerger::new(reorder);
    let mut pending: Vec<FrameBatch> = (0..shards).map(|_| FrameBatch::default()).collect();
    let mut frames = 0u64;
    let mut copied = 0usize;
    // Every shard gets a batch at the same frames: a shard waiting for frames the
    // reader still holds while the reader waits on another shard would deadlock.
    let hand_over = |pending: &mut Vec<FrameBatch>| {
        for (feed, batch) in feeds.iter().zip(pending.iter_mut()) {
            // A shard that stopped (a bug) is reported by the merge.
            let next = recycled.try_recv().unwrap_or_default();
            let _ = feed.send(ReaderMsg::Frames(std::mem::replace(batch, next)));
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
            &mut |frame| {
                let own = crate::packet::shard(frame, shards);
                for (index, batch) in pending.iter_mut().enumerate() {
                    if index == own {
                        batch.data.extend_from_slice(frame.data);
                        batch.slots.push(Slot::Own {
                            ts: frame.ts,
                            link_type: frame.link_type,
                            orig_len: frame.orig_len,
                            interface: frame.interface,
                            len: frame.data.len(),
                        });
                    } else {
                        batch.slots.push(Slot::Skip(frame.ts));
                    }
                }
                frames += 1;
                copied += frame.data.len();
                if frames.is_multiple_of(BATCH_FRAMES) || copied >= READ_BATCH_BYTES {
                    copied = 0;
                    hand_over(&mut pending);
                }
            },
        ));
    }
    hand_over(&mut pending);
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
    feed: mpsc::Receiver<ReaderMsg>,
    recycle: mpsc::Sender<FrameBatch>,
    tx: mpsc::SyncSender<ShardMsg>,
    spent: mpsc::Receiver<Spent>,
) {
    let mut pipeline = Pipeline::new_shard(cfg);
    let mut to_free: Spent = Vec::new();
    let mut frames = 0u64;
    let mut held_floor = 0;
    let mut held_checked: Option<UnixNanos> = None;
    let mut summaries = Vec::new();
    let mut matcher_gone = false;
    // The reader gone without `End` (a bug) ends the shard with what it read.
    while let Ok(msg) = feed.recv() {
        let mut batch = match msg {
            ReaderMsg::Frames(batch) => batch,
            ReaderMsg::End { reorder, inputs } => {
                pipeline.set_reorder_stats(&reorder);
                summaries = inputs;
                break;
            }
        };
        // Documents are freed on the thread that allocated them and whose cache still
        // holds them: freed by the matcher, on the other core, two threads took ~4 %
        // more CPU (docs/performance.md, "`--threads 2`, stop 26").
        while let Ok(mut documents) = spent.try_recv() {
            if to_free.len() > FREE_BACKLOG {
                to_free.clear();
            }
            to_free.append(&mut documents);
        }
        let mut rest = batch.data.as_slice();
        for slot in &batch.slots {
            frames += 1;
            match *slot {
                Slot::Own {
                    ts,
                    link_type,
                    orig_len,
                    interface,
                    len,
                } => {
                    // The reader appended exactly `len` bytes for this slot.
                    let Some((data, tail)) = rest.split_at_checked(len) else {
                        debug_assert!(false, "frame batch shorter than its slots");
                        pipeline.skip_frame(ts);
                        continue;
                    };
                    rest = tail;
                    pipeline.frame(&Frame {
                        ts,
                        link_type,
                        data,
                        orig_len,
                        interface,
                    });
                    // One at a time, between frames: the allocator's per-thread cache
                    // takes them and hands them out again, where a round freed at once
                    // overflowed it into the arena.
                    to_free.pop();
                }
                Slot::Skip(ts) => pipeline.skip_frame(ts),
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
        batch.slots.clear();
        batch.data.clear();
        // The reader gone means no more batches are needed.
        let _ = recycle.send(batch);
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
    // Each document with the shard it came from.
    let mut batch: Vec<(usize, Matched)> = Vec::new();
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
                    batch.extend(matched.into_iter().map(|m| (i, m)));
                    batch_now = batch_now.max(n);
                    floors[i] = held_floor;
                }
                Ok(ShardMsg::Done {
                    matched,
                    result,
                    inputs,
                }) => {
                    batch.extend(matched.into_iter().map(|m| (i, m)));
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
        // Shards cover disjoint frames; at the end (frame u64::MAX) flows are in order
        // of appearance. The sort is stable: a frame's documents keep their order.
        batch.sort_by_key(|(_, m)| (m.frame, m.flow));
        for (shard, m) in batch.drain(..) {
            if m.now > now {
                now = m.now;
                matcher.advance(now, &mut finished);
            }
            match m.event {
                MatchEvent::Document(mut d) => {
                    let (doc, s) = &mut *d;
                    matcher.observe_taking(doc, s, &mut finished);
                    spent[shard].push(d);
                }
                MatchEvent::Malformed => matcher.count_malformed(),
            }
        }
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
