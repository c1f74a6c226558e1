//! Per-direction TCP stream parser: reassembled, in-order bytes in, welcome lines and
//! framed messages out, each message stamped with when its bytes were first seen.
//!
//! Memory is bounded by one message (`max_message` plus its header block) and a small
//! scan window; timestamps are kept as a short list of marks (one per push, merged),
//! never one per byte.

use memchr::memmem;

use super::framing::{parse_package_header, HeaderParse, PackageHeader, MAX_HEADER_BLOCK};
use super::message::MESSAGE_SIGNATURE;
use super::welcome::{parse_welcome, Welcome, MAX_WELCOME_LEN, WELCOME_SIGNATURE};
use super::JxtaStats;
use crate::UnixNanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// SYN seen: expect a welcome line (or, like tshark's heuristic, a package header
    /// right away).
    Beginning,
    /// The capture began mid-connection: resynchronise on the first package header.
    MidStream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// Largest body accepted; larger messages are counted malformed and skipped.
    pub max_message: u64,
    /// Bytes scanned looking for JXTA before giving up on a flow never seen in sync.
    pub max_resync_scan: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_message: 16 << 20,
            max_resync_scan: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    Welcome(Welcome<'a>),
    Message(FramedMessage<'a>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedMessage<'a> {
    /// Earliest first-seen time of any byte of the package (headers and body).
    pub start: UnixNanos,
    /// Latest first-seen time of any byte: when the message became complete.
    pub stop: UnixNanos,
    /// Header block + body.
    pub framed_len: u64,
    pub header: PackageHeader<'a>,
    /// The body (normally a `jxmg` message).
    pub body: &'a [u8],
}

/// An oversized message is skipped by its declared length only up to this multiple of
/// `max_message`; beyond that the length is taken for garbage and we resynchronise.
const PLAUSIBLE_FACTOR: u64 = 64;

/// Kept when a scan finds nothing: enough for a header start cut by the end of the
/// buffer (`\x0econtent-length` is 15 bytes, `JXTAHELLO ` 10).
const SCAN_KEEP: usize = 15;

/// Timestamp marks above which inner marks of the message being buffered are merged.
const MAX_MARKS: usize = 1024;

/// Header name lengths that can start a header block we resynchronise on:
/// `content-type` (12), `content-length` (14), `content-coding` (14).
const RESYNC_NAME: &[u8] = b"content-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Expecting the welcome line (or a package header, tshark-style).
    Welcome,
    /// In sync: at a package boundary.
    Packages,
    /// Looking for a package header (after a gap, garbage, or a mid-stream start).
    Resync,
    /// Discarding the rest of a message we cannot or will not keep.
    Skip { remaining: u64 },
    /// Not JXTA, or finished: everything is ignored.
    Dead,
}

/// `[off, next mark's off)` of the stream was first seen between `min` and `max`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    off: u64,
    min: UnixNanos,
    max: UnixNanos,
}

#[derive(Debug)]
pub struct StreamParser {
    /// Bytes received and not yet consumed; `core.buf_start` is the offset of `buf[0]`.
    buf: Vec<u8>,
    core: Core,
}

/// Everything but the buffer, so the buffer can be borrowed while the state changes.
#[derive(Debug)]
struct Core {
    max_message: u64,
    max_resync_scan: u64,
    mode: Mode,
    buf_start: u64,
    marks: Vec<Mark>,
    synced: bool,
    gave_up: bool,
    /// Bytes discarded while looking for JXTA in a flow never seen in sync.
    scanned: u64,
    seen_bytes: bool,
}

/// What a step did: consumed `n` bytes; `wait` = needs more data to go on.
struct Step {
    advance: usize,
    wait: bool,
}

impl Step {
    fn go(advance: usize) -> Self {
        Step {
            advance,
            wait: false,
        }
    }
    fn wait(advance: usize) -> Self {
        Step {
            advance,
            wait: true,
        }
    }
}

impl StreamParser {
    pub fn new(start: StreamStart, cfg: &StreamConfig) -> Self {
        StreamParser {
            buf: Vec::new(),
            core: Core {
                max_message: cfg.max_message,
                max_resync_scan: cfg.max_resync_scan,
                mode: match start {
                    StreamStart::Beginning => Mode::Welcome,
                    StreamStart::MidStream => Mode::Resync,
                },
                buf_start: 0,
                marks: Vec::new(),
                synced: false,
                gave_up: false,
                scanned: 0,
                seen_bytes: false,
            },
        }
    }

    /// `None` = undecided, `Some(true)` = JXTA seen, `Some(false)` = gave up (the
    /// caller may stop feeding this direction).
    pub fn is_jxta(&self) -> Option<bool> {
        if self.core.synced {
            Some(true)
        } else if self.core.gave_up {
            Some(false)
        } else {
            None
        }
    }

    /// Bytes currently buffered (for memory accounting and tests).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next in-order bytes, all first seen at `first_seen`.
    pub fn push(
        &mut self,
        data: &[u8],
        first_seen: UnixNanos,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) {
        if data.is_empty() || self.core.mode == Mode::Dead {
            return;
        }
        self.core.seen_bytes = true;
        let end = self.core.buf_start + self.buf.len() as u64;
        self.core.add_mark(end, first_seen);
        let consumed = if self.buf.is_empty() {
            // Fast path: parse straight from the caller's slice, buffer only the rest.
            let n = self.core.run(data, stats, out);
            self.buf
                .extend_from_slice(data.get(n..).unwrap_or_default());
            n
        } else {
            self.buf.extend_from_slice(data);
            let n = self.core.run(&self.buf, stats, out);
            self.buf.drain(..n.min(self.buf.len()));
            n
        };
        self.core.buf_start += consumed as u64;
        self.core.trim_marks();
        if self.core.mode == Mode::Dead {
            self.buf = Vec::new();
            self.core.marks = Vec::new();
        }
    }

    /// `len` bytes are missing from the capture at the current position. A partial
    /// message is dropped (counted); if its header was complete we know where it ends
    /// and stay in sync by skipping the rest, otherwise we resynchronise.
    pub fn gap(&mut self, len: u64, stats: &mut JxtaStats) {
        if len == 0 {
            return;
        }
        stats.gaps += 1;
        let held = self.buf.len() as u64;
        let core = &mut self.core;
        core.mode = match core.mode {
            Mode::Dead => Mode::Dead,
            Mode::Skip { remaining } if remaining > len => Mode::Skip {
                remaining: remaining - len,
            },
            Mode::Skip { .. } => Mode::Resync,
            Mode::Packages if held > 0 => {
                stats.truncated_messages += 1;
                match parse_package_header(&self.buf, u64::MAX) {
                    HeaderParse::Complete(h) => {
                        let total = (h.header_len as u64).saturating_add(h.content_length);
                        let after = held.saturating_add(len);
                        if h.content_length <= core.max_message && total > after {
                            Mode::Skip {
                                remaining: total - after,
                            }
                        } else {
                            Mode::Resync
                        }
                    }
                    _ => Mode::Resync,
                }
            }
            Mode::Welcome if held > 0 => {
                stats.truncated_messages += 1;
                Mode::Resync
            }
            Mode::Packages | Mode::Welcome | Mode::Resync => Mode::Resync,
        };
        stats.skipped_bytes += held;
        core.buf_start = core.buf_start.saturating_add(held).saturating_add(len);
        self.buf.clear();
        core.marks.clear();
    }

    /// End of the stream: a partial message is counted as truncated. A flow that never
    /// showed JXTA is counted as non-JXTA.
    pub fn finish(&mut self, stats: &mut JxtaStats) {
        match self.core.mode {
            Mode::Packages | Mode::Welcome if !self.buf.is_empty() => {
                stats.truncated_messages += 1;
            }
            Mode::Resync => stats.skipped_bytes += self.buf.len() as u64,
            _ => {}
        }
        if !self.core.synced && !self.core.gave_up && self.core.seen_bytes {
            self.core.gave_up = true;
            stats.non_jxta_streams += 1;
        }
        self.core.mode = Mode::Dead;
        self.buf = Vec::new();
        self.core.marks = Vec::new();
    }
}

impl Core {
    fn add_mark(&mut self, off: u64, ts: UnixNanos) {
        if let Some(last) = self.marks.last() {
            // Same time as the previous push: that mark already covers these bytes.
            if last.min == ts && last.max == ts {
                return;
            }
        }
        self.marks.push(Mark {
            off,
            min: ts,
            max: ts,
        });
        if self.marks.len() > MAX_MARKS {
            self.coalesce_marks();
        }
    }

    /// Merges pairs of inner marks. Only marks strictly inside the buffered message
    /// are merged (not the first, which may start before it, nor the last, which may
    /// run past its end), so the min/max over the whole message stays exact.
    fn coalesce_marks(&mut self) {
        let n = self.marks.len();
        if n < 4 {
            return;
        }
        let last = self.marks[n - 1];
        let mut merged: Vec<Mark> = Vec::with_capacity(n / 2 + 2);
        merged.push(self.marks[0]);
        for pair in self.marks[1..n - 1].chunks(2) {
            let mut m = pair[0];
            for p in pair.iter().skip(1) {
                m.min = m.min.min(p.min);
                m.max = m.max.max(p.max);
            }
            merged.push(m);
        }
        merged.push(last);
        self.marks = merged;
    }

    /// Drops marks wholly before `buf_start`.
    fn trim_marks(&mut self) {
        let idx = self.marks.partition_point(|m| m.off <= self.buf_start);
        if idx > 1 {
            self.marks.drain(..idx - 1);
        }
    }

    /// (min, max) first-seen time over stream offsets `[a, b)`.
    fn time_range(&self, a: u64, b: u64) -> (UnixNanos, UnixNanos) {
        let first = self.marks.partition_point(|m| m.off <= a).saturating_sub(1);
        let mut range: Option<(UnixNanos, UnixNanos)> = None;
        for m in self.marks.iter().skip(first).take_while(|m| m.off < b) {
            range = Some(match range {
                None => (m.min, m.max),
                Some((lo, hi)) => (lo.min(m.min), hi.max(m.max)),
            });
        }
        range.unwrap_or((0, 0))
    }

    /// Processes `data` (which starts at stream offset `buf_start`) as far as possible;
    /// returns the number of bytes consumed.
    fn run(
        &mut self,
        data: &[u8],
        stats: &mut JxtaStats,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) -> usize {
        let mut pos = 0usize;
        while pos < data.len() {
            let rest = data.get(pos..).unwrap_or_default();
            let abs = self.buf_start + pos as u64;
            let step = match self.mode {
                Mode::Dead => Step::go(rest.len()),
                Mode::Skip { remaining } => {
                    let n = remaining.min(rest.len() as u64);
                    stats.skipped_bytes += n;
                    let left = remaining - n;
                    self.mode = if left == 0 {
                        Mode::Packages
                    } else {
                        Mode::Skip { remaining: left }
                    };
                    Step::go(n as usize)
                }
                Mode::Welcome => self.step_welcome(rest, stats, out),
                Mode::Packages => self.step_package(rest, abs, stats, out),
                Mode::Resync => self.step_resync(rest, stats),
            };
            pos += step.advance;
            if step.wait {
                break;
            }
        }
        pos.min(data.len())
    }

    fn step_welcome(
        &mut self,
        rest: &[u8],
        stats: &mut JxtaStats,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) -> Step {
        let sig_len = WELCOME_SIGNATURE.len().min(rest.len());
        if rest.get(..sig_len) == WELCOME_SIGNATURE.get(..sig_len) {
            if rest.len() < WELCOME_SIGNATURE.len() {
                return Step::wait(0);
            }
            self.synced = true;
            let window = rest.get(..MAX_WELCOME_LEN + 2).unwrap_or(rest);
            let Some(eol) = memmem::find(window, b"\r\n") else {
                if window.len() >= MAX_WELCOME_LEN + 2 {
                    stats.count_malformed("bad_welcome");
                    self.mode = Mode::Resync;
                    stats.skipped_bytes += 1;
                    return Step::go(1);
                }
                return Step::wait(0);
            };
            let line = rest.get(..eol).unwrap_or_default();
            match parse_welcome(line) {
                Ok(w) => {
                    stats.welcomes += 1;
                    out(StreamEvent::Welcome(w));
                }
                Err(_) => stats.count_malformed("bad_welcome"),
            }
            self.mode = Mode::Packages;
            return Step::go(eol + 2);
        }
        // No welcome: tshark's heuristic also accepts a stream that starts with a
        // package header.
        match parse_package_header(rest, u64::MAX) {
            HeaderParse::Complete(_) => {
                self.mode = Mode::Packages;
                Step::go(0)
            }
            HeaderParse::Incomplete => Step::wait(0),
            HeaderParse::Invalid(_) => {
                self.mode = Mode::Resync;
                Step::go(0)
            }
        }
    }

    fn step_package(
        &mut self,
        rest: &[u8],
        abs: u64,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) -> Step {
        let h = match parse_package_header(rest, u64::MAX) {
            HeaderParse::Complete(h) => h,
            HeaderParse::Incomplete => return Step::wait(0),
            HeaderParse::Invalid(_) => {
                stats.count_malformed("bad_header");
                self.mode = Mode::Resync;
                return Step::go(0);
            }
        };
        if h.content_length > self.max_message {
            stats.count_malformed("too_large");
            let total = (h.header_len as u64).saturating_add(h.content_length);
            if h.content_length <= self.max_message.saturating_mul(PLAUSIBLE_FACTOR) {
                self.mode = Mode::Skip { remaining: total };
                return Step::go(0);
            }
            self.mode = Mode::Resync;
            stats.skipped_bytes += h.header_len as u64;
            return Step::go(h.header_len);
        }
        // content_length <= max_message, so this fits in usize on 64-bit targets;
        // elsewhere an unrepresentable length is treated as not yet available.
        let Some(total) = usize::try_from(h.content_length)
            .ok()
            .and_then(|l| l.checked_add(h.header_len))
        else {
            return Step::wait(0);
        };
        let Some(body) = rest.get(h.header_len..total) else {
            return Step::wait(0);
        };
        self.synced = true;
        let (start, stop) = self.time_range(abs, abs + total as u64);
        out(StreamEvent::Message(FramedMessage {
            start,
            stop,
            framed_len: total as u64,
            header: h,
            body,
        }));
        Step::go(total)
    }

    fn step_resync(&mut self, rest: &[u8], stats: &mut JxtaStats) -> Step {
        let welcome_at = memmem::find(rest, WELCOME_SIGNATURE);
        let limit = welcome_at.unwrap_or(rest.len());
        for i in memmem::find_iter(rest, RESYNC_NAME) {
            if i >= limit {
                break;
            }
            let Some(start) = i.checked_sub(1) else {
                continue;
            };
            if !matches!(rest.get(start), Some(12) | Some(14)) {
                continue;
            }
            let cand = rest.get(start..).unwrap_or_default();
            match parse_package_header(cand, self.max_message) {
                HeaderParse::Complete(h) => {
                    let body = cand.get(h.header_len..).unwrap_or_default();
                    if h.content_length < MESSAGE_SIGNATURE.len() as u64 {
                        continue;
                    }
                    if body.len() < MESSAGE_SIGNATURE.len() {
                        return self.discard(start, stats, true);
                    }
                    if body.starts_with(MESSAGE_SIGNATURE) {
                        stats.resyncs += 1;
                        self.mode = Mode::Packages;
                        return self.discard(start, stats, false);
                    }
                }
                HeaderParse::Incomplete => return self.discard(start, stats, true),
                HeaderParse::Invalid(_) => {}
            }
        }
        if let Some(w) = welcome_at {
            self.mode = Mode::Welcome;
            stats.resyncs += 1;
            return self.discard(w, stats, false);
        }
        // Nothing here: keep only a tail that could hold the start of a header.
        let keep = rest.len().min(SCAN_KEEP);
        let n = rest.len() - keep;
        let step = self.discard(n, stats, true);
        if !self.synced && self.scanned > self.max_resync_scan {
            self.gave_up = true;
            stats.non_jxta_streams += 1;
            self.mode = Mode::Dead;
            stats.skipped_bytes += keep as u64;
            return Step::go(rest.len());
        }
        step
    }

    fn discard(&mut self, n: usize, stats: &mut JxtaStats, wait: bool) -> Step {
        stats.skipped_bytes += n as u64;
        if !self.synced {
            self.scanned += n as u64;
        }
        Step { advance: n, wait }
    }
}

// Header blocks are bounded, so a resync candidate waits on at most this much.
const _: () = assert!(MAX_HEADER_BLOCK < (1 << 20));
