//! Offline source: capture files (or standard input) read in the order given, as one
//! continuous capture.

use std::path::{Path, PathBuf};

use super::{MessageRecord, Pipeline, PipelineConfig, PipelineResult};
use crate::capture::{
    CaptureError, CaptureFormat, CaptureReader, Frame, FrameMerger, HeldPages, SharedMap,
};
use crate::transaction::Transaction;

/// What was read from one input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InputSummary {
    pub name: String,
    pub format: String,
    pub frames: u64,
    pub bytes: u64,
    /// The input could not be read to its end; frames before the error were analysed.
    pub error: Option<String>,
}

/// The analysis of a set of inputs. Damaged inputs are reported, not fatal: the
/// report covers everything that could be read.
pub struct Analysis {
    pub result: PipelineResult,
    pub inputs: Vec<InputSummary>,
}

impl Analysis {
    /// True when some input could not be read to its end.
    pub fn damaged(&self) -> bool {
        self.inputs.iter().any(|i| i.error.is_some())
    }
}

/// Shows how far the reading of each input got (the binary draws a bar on a
/// terminal); shared by the shards of a parallel run, hence `Sync`.
pub trait Progress: Sync {
    /// An input was opened; `None` shows nothing for it.
    fn input(&self, path: &Path) -> Option<Box<dyn InputProgress>>;
}

/// The progress of one input; dropping it ends it.
pub trait InputProgress {
    /// Bytes of the input read so far.
    fn position(&mut self, bytes: u64);
}

/// Runs the pipeline over the inputs, telling `progress` how far it got. The
/// transactions are in `result.transactions`, in report order.
pub fn analyze(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    progress: Option<&dyn Progress>,
) -> Analysis {
    let mut transactions = Vec::new();
    let mut analysis = analyze_each(inputs, cfg, progress, &mut |t| transactions.push(t));
    analysis.result.transactions = transactions;
    analysis
}

/// Like [`analyze`], but each transaction goes to `on_transaction` (in report order)
/// as soon as no earlier one can still finish, instead of being kept: memory then
/// depends on the traffic in flight, not on the length of the capture.
/// `result.transactions` is left empty.
pub fn analyze_each(
    inputs: &[PathBuf],
    cfg: PipelineConfig,
    progress: Option<&dyn Progress>,
    on_transaction: &mut dyn FnMut(Transaction),
) -> Analysis {
    let merger = FrameMerger::new(cfg.reorder.clone());
    run(
        inputs,
        merger,
        Pipeline::new(cfg),
        progress,
        on_transaction,
        None,
    )
}

/// The record of each decoded message goes to `on_message` (in decoding order) after
/// the frame that completed it, instead of being kept in `result.messages` (left
/// empty). A listing: documents are not matched (no transaction comes out), so
/// `observer messages` holds what the decoding up to the messages holds, whatever the
/// number of messages.
pub fn analyze_messages(
    inputs: &[PathBuf],
    mut cfg: PipelineConfig,
    progress: Option<&dyn Progress>,
    on_message: &mut dyn FnMut(MessageRecord),
) -> Analysis {
    cfg.record_messages = true;
    let merger = FrameMerger::new(cfg.reorder.clone());
    let pipeline = Pipeline::listing(cfg);
    run(
        inputs,
        merger,
        pipeline,
        progress,
        &mut |_| {},
        Some(on_message),
    )
}

fn run(
    inputs: &[PathBuf],
    mut merger: FrameMerger,
    mut pipeline: Pipeline,
    progress: Option<&dyn Progress>,
    on_transaction: &mut dyn FnMut(Transaction),
    mut on_message: Option<&mut dyn FnMut(MessageRecord)>,
) -> Analysis {
    let mut summaries = Vec::with_capacity(inputs.len());
    for (i, path) in inputs.iter().enumerate() {
        let last = i + 1 == inputs.len();
        summaries.push(read_input(
            path,
            progress,
            &mut merger,
            last,
            false,
            |frame, _| {
                pipeline.frame(frame);
                if let Some(on_message) = on_message.as_mut() {
                    pipeline.take_records(*on_message);
                }
                pipeline.release_ordered(&mut |t| on_transaction(t));
            },
        ));
    }
    pipeline.set_reorder_stats(merger.stats());
    let mut result = pipeline.finish();
    for t in result.transactions.drain(..) {
        on_transaction(t);
    }
    if let Some(on_message) = on_message {
        for m in result.messages.drain(..) {
            on_message(m);
        }
    }
    Analysis {
        result,
        inputs: summaries,
    }
}

/// Reads one input to its end or first error, handing each frame to `on_frame` in
/// time order within the merger's window. Frames still held at the end stay in the
/// merger (copied) for the next input, unless this is the `last`. A frame read where
/// it lies in the input's shared bytes comes with them and its place there: its bytes
/// are `map[at..at + data.len()]`. With `keep_pages`, the pages of the frames handed on
/// are not handed back: the caller reads the frames again by place, and hands the pages
/// back itself once it is done with them.
pub(crate) fn read_input(
    path: &Path,
    progress: Option<&dyn Progress>,
    merger: &mut FrameMerger,
    last: bool,
    keep_pages: bool,
    mut on_frame: impl FnMut(&Frame<'_>, Option<(&SharedMap, usize)>),
) -> InputSummary {
    let name = path.display().to_string();
    let mut reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{e}");
            if last {
                merger.flush(None, &mut |frame| on_frame(frame, None));
            }
            return InputSummary {
                name,
                format: String::new(),
                frames: 0,
                bytes: 0,
                error: Some(e.to_string()),
            };
        }
    };
    let mut bar = progress.and_then(|p| p.input(path));
    let mut error: Option<CaptureError> = None;
    let mut pages = if keep_pages {
        HeldPages::kept()
    } else {
        HeldPages::default()
    };
    let shared = reader.shared_map();
    let shared = shared.as_ref();
    loop {
        // A mapped pcap's record (nearly always) goes to the merger as its place, the
        // frame's metadata as the reader found it.
        if let Some((frame, at, len)) = reader.next_in_place() {
            if !merger.offer_in_place(&frame, at, len) {
                on_frame(
                    &Frame {
                        data: FrameMerger::in_map(reader.mapped(), at, len),
                        ..frame
                    },
                    shared.map(|m| (m, at)),
                );
            }
        } else {
            match reader.next_frame_placed() {
                // Borrowed where the reader's answer lies: moved out, the frame was
                // copied once more.
                Ok(Some((ref frame, at))) => {
                    if !merger.offer(frame, at) {
                        on_frame(frame, shared.zip(at));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        merger.release_placed(
            reader.mapped(),
            &mut hand_on(&mut on_frame, shared, &mut pages, &reader),
        );
        if let Some(bar) = &mut bar {
            if reader.stats().frames % 4096 == 0 {
                bar.position(reader.offset());
            }
        }
    }
    if last {
        merger.flush_placed(
            reader.mapped(),
            &mut hand_on(&mut on_frame, shared, &mut pages, &reader),
        );
    } else {
        merger.detach(reader.mapped());
    }
    drop(bar);
    if let Some(e) = &error {
        // The caller reports it (with what was read before it); log only for -v.
        tracing::debug!("{e}");
    }
    InputSummary {
        name: reader.name().to_string(),
        format: match reader.format() {
            CaptureFormat::Pcap { nanos, big_endian } => format!(
                "pcap ({}, {})",
                if nanos { "ns" } else { "µs" },
                if big_endian {
                    "big-endian"
                } else {
                    "little-endian"
                }
            ),
            CaptureFormat::Pcapng => "pcapng".to_string(),
        },
        frames: reader.stats().frames,
        bytes: reader.offset(),
        error: error.map(|e| e.to_string()),
    }
}

/// The merger's hand-on of a frame released where it lies (`at`, in `shared`): to
/// `on_frame`, then its pages marked handed on. Inlined into the loop whatever
/// `on_frame` is: the reader of `--threads` inlines its own hand-on into this, which
/// LLVM then left as a call (docs/performance.md, stop 36, read29).
#[inline(always)]
fn hand_on<'a, F: FnMut(&Frame<'_>, Option<(&SharedMap, usize)>)>(
    on_frame: &'a mut F,
    shared: Option<&'a SharedMap>,
    pages: &'a mut HeldPages,
    reader: &'a CaptureReader,
) -> impl FnMut(&Frame<'_>, Option<usize>) + 'a {
    inlined(
        #[inline(always)]
        move |frame: &Frame<'_>, at: Option<usize>| {
            on_frame(frame, shared.zip(at));
            if let Some(at) = at {
                pages.handed_on(reader, at);
            }
        },
    )
}

/// `f` itself: an attribute on a closure (`#[inline(always)]`) is stable only where the
/// closure is a call's argument.
#[inline(always)]
fn inlined<F: FnMut(&Frame<'_>, Option<usize>)>(f: F) -> F {
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_LEN: usize = 1500;

    /// KiB of `path`'s mapping in this process's resident set (the mapping must exist).
    fn mapped_kib(path: &str) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let header = line
                .split_whitespace()
                .next()
                .is_some_and(|range| range.contains('-') && !range.ends_with(':'));
            if header {
                inside = line.ends_with(path);
            } else if inside {
                if let Some(kib) = line.strip_prefix("Rss:") {
                    return kib.trim().trim_end_matches(" kB").trim().parse().ok();
                }
            }
        }
        None
    }

    /// A whole reorder window handed on at once (the next frame stamped seconds later)
    /// reads every held frame again from the map: its pages are handed back as the
    /// hand-on moves, not after it, so the resident set does not take the window's MBs.
    #[test]
    fn a_window_handed_on_at_once_keeps_few_pages_mapped() {
        let frames = 12_000u32;
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        pcap.extend_from_slice(&[2, 0, 4, 0]);
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&65_535u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        for i in 0..=frames {
            // 100 µs apart (1.2 s, inside the 2 s window), the last 10 s later.
            let us = if i == frames { 11_000_000 } else { i * 100 };
            for field in [
                us / 1_000_000,
                us % 1_000_000,
                FRAME_LEN as u32,
                FRAME_LEN as u32,
            ] {
                pcap.extend_from_slice(&field.to_le_bytes());
            }
            pcap.extend(std::iter::repeat_n((i % 251) as u8, FRAME_LEN));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("burst.pcap");
        std::fs::write(&path, &pcap).expect("write");
        let name = path.display().to_string();
        let mut merger = FrameMerger::new(crate::capture::ReorderConfig::default());
        let (mut seen, mut most_kib, mut measured) = (0u32, 0, 0);
        let summary = read_input(&path, None, &mut merger, true, false, |frame, _| {
            // Bytes read again after their pages were handed back are the file's.
            assert!(
                frame.data.iter().all(|&b| b == (seen % 251) as u8),
                "{seen}"
            );
            seen += 1;
            if seen.is_multiple_of(256) {
                if let Some(kib) = mapped_kib(&name) {
                    most_kib = most_kib.max(kib);
                    measured += 1;
                }
            }
        });
        assert_eq!((summary.frames, seen), (u64::from(frames) + 1, frames + 1));
        assert_eq!(merger.stats().max_held, u64::from(frames) + 1);
        assert!(measured > 40, "the mapping was measured {measured} times");
        // The window is 18 MB of frames; the reader keeps a few 512 KiB steps.
        assert!(most_kib <= 3 << 10, "{most_kib} KiB of the capture mapped");
    }
}
