//! `analyze --threads N`: the flows are split across N shards by host pair
//! ([`crate::packet::shard`]), each a [`Pipeline`] on its own thread doing everything
//! up to the matcher; one matcher, on the calling thread, takes their documents in the
//! order a single pipeline would have produced them.
//!
//! Every shard reads the whole file (mapped, so reading costs page-table work, not
//! copies) and skips the frames of other shards after a look at their IP header.
//! Reading the file N times is cheaper than handing frames between threads, and it
//! gives every shard the capture's clock, frame by frame, for free: timeouts and
//! idle flows expire exactly when they would in one pipeline.
//!
//! The documents are put back in order by the index of the frame that completed
//! them (and, at the end of the input, by flow, in order of appearance: shards
//! number their flows by the frame that opened them). What can differ from one
//! pipeline: the flow caps (`--max-flows`, `--max-total-buffer`) apply per shard,
//! and flow statistics that are maxima become sums of the shards' maxima.

use std::path::PathBuf;
use std::sync::mpsc;

use super::offline::{read_input, Analysis, InputSummary, Progress};
use super::{merge_stats, MatchEvent, Matched, Pipeline, PipelineConfig, Reorder};
use crate::transaction::{Matcher, Transaction};
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

/// Runs the analysis on `threads` shards. The inputs must be files (every shard
/// opens them); see [`super::analyze_each`] for the callback.
pub fn analyze_parallel(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    threads: usize,
    progress: Option<&dyn Progress>,
    on_transaction: &mut dyn FnMut(Transaction),
) -> Analysis {
    let threads = threads.max(1);
    let mut shard_cfg = cfg.clone();
    shard_cfg.flows.max_flows = (cfg.flows.max_flows / threads).max(1);
    shard_cfg.flows.max_total_buffer = (cfg.flows.max_total_buffer / threads).max(1);
    std::thread::scope(|scope| {
        let mut receivers = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = mpsc::sync_channel(BATCHES_AHEAD);
            receivers.push(rx);
            let cfg = shard_cfg.clone();
            std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn_scoped(scope, move || {
                    run_shard(
                        inputs,
                        cfg,
                        index,
                        threads,
                        progress.filter(|_| index == 0),
                        tx,
                    )
                })
                .expect("spawning a shard thread");
        }
        merge(receivers, cfg, on_transaction)
    })
}

fn run_shard(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    index: usize,
    shards: usize,
    progress: Option<&dyn Progress>,
    tx: mpsc::SyncSender<ShardMsg>,
) {
    let mut merger = crate::capture::FrameMerger::new(cfg.reorder.clone());
    let mut pipeline = Pipeline::new_shard(cfg);
    let mut frames = 0u64;
    let mut held_floor = 0;
    let mut held_checked: Option<UnixNanos> = None;
    let mut summaries = Vec::with_capacity(inputs.len());
    let mut matcher_gone = false;
    for (i, path) in inputs.iter().enumerate() {
        let last = i + 1 == inputs.len();
        summaries.push(read_input(
            path,
            progress,
            &mut merger,
            last,
            &mut |frame| {
                frames += 1;
                if crate::packet::shard(frame, shards) == index {
                    pipeline.frame(frame);
                } else {
                    pipeline.skip_frame(frame.ts);
                }
                if !frames.is_multiple_of(BATCH_FRAMES) || matcher_gone {
                    return;
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
            },
        ));
    }
    pipeline.set_reorder_stats(merger.stats());
    let (matched, result) = pipeline.finish_shard();
    let _ = tx.send(ShardMsg::Done {
        matched,
        result: Box::new(result),
        inputs: summaries,
    });
}

fn merge(
    receivers: Vec<mpsc::Receiver<ShardMsg>>,
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
    let mut batch: Vec<Matched> = Vec::new();
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
                    batch.extend(matched);
                    batch_now = batch_now.max(n);
                    floors[i] = held_floor;
                }
                Ok(ShardMsg::Done {
                    matched,
                    result,
                    inputs,
                }) => {
                    batch.extend(matched);
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
        batch.sort_by_key(|m| (m.frame, m.flow));
        for m in batch.drain(..) {
            if m.now > now {
                now = m.now;
                matcher.advance(now, &mut finished);
            }
            match m.event {
                MatchEvent::Document(d) => matcher.observe(&d.0, &d.1, &mut finished),
                MatchEvent::Malformed => matcher.count_malformed(),
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
