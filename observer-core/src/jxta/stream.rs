//! Per-direction TCP stream parser: reassembled, in-order bytes in, welcome lines and
//! framed messages out, each message stamped with when its bytes were first seen.
//!
//! Memory is bounded by one message (`max_message` plus its header block) and a small
//! scan window; timestamps are kept as a short list of marks (one per push while bytes
//! are held, merged),
//! never one per byte.
//!
//! Over 600 lines with its tests (framing, resyncs, gaps).

use memchr::memmem;

use super::framing::{
    jxse_header, parse_package_header, HeaderParse, PackageHeader, MAX_HEADER_BLOCK,
};
use super::marks::Marks;
use super::message::MESSAGE_SIGNATURE;
use super::welcome::{parse_welcome, Welcome, MAX_WELCOME_LEN, WELCOME_SIGNATURE};
use super::{JxtaStats, Malformed};
use crate::UnixNanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// SYN seen: expect a welcome line (or, like tshark's heuristic, a package header
    /// right away).
    Beginning,
    /// The capture began mid-connection: resynchronise on the first package header.
    MidStream,
}

impl StreamStart {
    /// How a direction starts, from whether the connection's SYN was captured.
    pub fn from_syn(saw_syn: bool) -> StreamStart {
        if saw_syn {
            StreamStart::Beginning
        } else {
            StreamStart::MidStream
        }
    }
}

/// Largest JXTA message body accepted unless told otherwise (`--max-message`).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 16 << 20;

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
            max_message: DEFAULT_MAX_MESSAGE_BYTES,
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
    marks: Marks,
    synced: bool,
    gave_up: bool,
    /// Bytes discarded while looking for JXTA in a flow never seen in sync.
    scanned: u64,
    seen_bytes: bool,
    /// Made for a stream joined after its start ([`StreamStart::MidStream`]).
    mid_stream: bool,
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
                marks: Marks::default(),
                synced: false,
                gave_up: false,
                scanned: 0,
                seen_bytes: false,
                mid_stream: start == StreamStart::MidStream,
            },
        }
    }

    /// A parser in sync between two packages, holding nothing: what it does next
    /// depends on its configuration alone, so [`StreamParser::resume`] makes its
    /// equal (stream offsets only matter relative to bytes held, and the counts
    /// kept while looking for sync are read only before it).
    pub fn resting(&self) -> bool {
        self.core.synced
            && self.core.mode == Mode::Packages
            && self.buf.is_empty()
            && self.core.marks.is_empty()
    }

    /// The equal of a parser that was [`StreamParser::resting`] with `cfg`.
    pub fn resume(cfg: &StreamConfig) -> Self {
        let mut p = StreamParser::new(StreamStart::MidStream, cfg);
        p.core.mode = Mode::Packages;
        p.core.synced = true;
        p.core.seen_bytes = true;
        p
    }

    /// Made for a stream joined after its start.
    pub fn began_mid_stream(&self) -> bool {
        self.core.mid_stream
    }

    /// The configuration it was made with.
    pub fn config(&self) -> StreamConfig {
        StreamConfig {
            max_message: self.core.max_message,
            max_resync_scan: self.core.max_resync_scan,
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

    /// Earliest first-seen time of the bytes buffered (a message being received).
    pub fn oldest_buffered(&self) -> Option<UnixNanos> {
        if self.buf.is_empty() {
            return None;
        }
        self.core.marks.oldest()
    }

    /// `oldest_buffered().is_some()`: bytes held carry their marks.
    pub fn holds(&self) -> bool {
        !self.buf.is_empty() && !self.core.marks.is_empty()
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
        if self.buf.is_empty() {
            // Fast path: parse straight from the caller's slice, buffer only the rest.
            // Nothing is held, so no mark is either (a push leaving nothing releases
            // them): every byte parsed here was first seen at `first_seen`, and a mark
            // is made only for bytes kept. Made for every push, it was an allocation
            // and a free (~140 instructions).
            debug_assert!(self.core.marks.is_empty(), "marks without held bytes");
            let n = self.core.run(data, Some(first_seen), stats, out);
            self.core.buf_start += n as u64;
            // A direction found dead consumed all (`Mode::Dead` takes every byte).
            let rest = data.get(n..).unwrap_or_default();
            if !rest.is_empty() {
                // One mark, at the held bytes' start: nothing to trim.
                self.core.marks.add(end, first_seen);
                self.buf.extend_from_slice(rest);
            }
            return;
        }
        self.core.marks.add(end, first_seen);
        self.buf.extend_from_slice(data);
        let consumed = self.core.run(&self.buf, None, stats, out);
        self.buf.drain(..consumed.min(self.buf.len()));
        self.core.buf_start += consumed as u64;
        self.core.marks.trim(self.core.buf_start);
        if self.buf.is_empty() {
            // Between messages, where most connections idle, nothing is held. The next
            // push marks its own bytes, so no earlier mark is read again.
            self.buf = Vec::new();
            self.core.marks.release();
        }
        if self.core.mode == Mode::Dead {
            self.buf = Vec::new();
            self.core.marks.release();
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
        // Freed, as after a push that leaves nothing (the fast path keeps what it finds).
        self.buf = Vec::new();
        core.marks.release();
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
        self.core.marks.release();
    }
}

impl Core {
    /// Processes `data` (which starts at stream offset `buf_start`) as far as possible;
    /// returns the number of bytes consumed. `uniform`: every byte of `data` was first
    /// seen then (no marks are kept for them); `None`: the marks say when.
    fn run(
        &mut self,
        data: &[u8],
        uniform: Option<UnixNanos>,
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
                Mode::Packages => self.step_package(rest, abs, uniform, stats, out),
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
            let Some(eol) = find_crlf(window) else {
                if window.len() >= MAX_WELCOME_LEN + 2 {
                    stats.count_malformed(Malformed::BadWelcome);
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
                Err(_) => stats.count_malformed(Malformed::BadWelcome),
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
        uniform: Option<UnixNanos>,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) -> Step {
        let h = match parse_package_header(rest, u64::MAX) {
            HeaderParse::Complete(h) => h,
            HeaderParse::Incomplete => return Step::wait(0),
            HeaderParse::Invalid(_) => {
                stats.count_malformed(Malformed::BadHeader);
                self.mode = Mode::Resync;
                return Step::go(0);
            }
        };
        if h.content_length > self.max_message {
            stats.count_malformed(Malformed::TooLarge);
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
        let (start, stop) = match uniform {
            Some(t) => (t, t),
            None => self.marks.range(abs, abs + total as u64),
        };
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

/// A whole package at the front of `data`, of one of JXSE's header blocks and a body
/// of at most `max_message`: what a parser in sync between packages frames from it
/// (`Core::step_package`), with all it needs to say so. `None`: ask the parser.
/// Inlined into its one caller: called twice a push (the second time on what is
/// left, nearly always nothing), it was ~12 instructions of call each time.
#[inline]
pub(super) fn whole_jxse_package(
    data: &[u8],
    max_message: u64,
) -> Option<(PackageHeader<'static>, &[u8], usize)> {
    let h = jxse_header(data, max_message)?;
    let total = usize::try_from(h.content_length)
        .ok()?
        .checked_add(h.header_len)?;
    let body = data.get(h.header_len..total)?;
    Some((h, body, total))
}

/// Where the first `\r\n` of `b` starts. `memchr` for the `\r`: `memmem::find` set up
/// a searcher for the two bytes on every call, ~360 instructions a welcome line.
fn find_crlf(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = from + memchr::memchr(b'\r', b.get(from..)?)?;
        if b.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
}

// Header blocks are bounded, so a resync candidate waits on at most this much.
const _: () = assert!(MAX_HEADER_BLOCK < (1 << 20));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::framing::{encode_package, HeaderOrder};
    use crate::jxta::marks::MAX_MARKS;
    use crate::jxta::message::{decode_message, encode_message_v0, OwnedElement};
    use crate::jxta::testdata::{segments, RDV_PORT};
    use crate::jxta::{addressing, erm_xml, PeerId};

    /// What a test keeps of each event.
    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        Welcome(String),
        Msg {
            start: u64,
            stop: u64,
            len: u64,
            body: Vec<u8>,
        },
    }

    fn collect(evs: &mut Vec<Ev>) -> impl FnMut(StreamEvent<'_>) + '_ {
        move |e| match e {
            StreamEvent::Welcome(w) => evs.push(Ev::Welcome(w.peer_id.to_string())),
            StreamEvent::Message(m) => evs.push(Ev::Msg {
                start: m.start,
                stop: m.stop,
                len: m.framed_len,
                body: m.body.to_vec(),
            }),
        }
    }

    fn package(tag: &str, pad: usize) -> (Vec<u8>, Vec<u8>) {
        let body = encode_message_v0(&[OwnedElement::new(
            "",
            "payload",
            Some("text/plain"),
            format!("{tag}{}", "x".repeat(pad)),
        )]);
        let mut framed = Vec::new();
        encode_package(&body, HeaderOrder::TypeFirst, None, &mut framed);
        (framed, body)
    }

    fn bodies(evs: &[Ev]) -> Vec<Vec<u8>> {
        evs.iter()
            .filter_map(|e| match e {
                Ev::Msg { body, .. } => Some(body.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn real_capture_both_directions() {
        let segs = segments();
        let cfg = StreamConfig::default();
        let mut stats = JxtaStats::default();
        let mut pings = 0;
        let mut pongs = 0;
        let mut welcomes = Vec::new();
        let edge_peer = PeerId::parse(
            "urn:jxta:uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03",
        )
        .unwrap();
        let rdv_peer = PeerId::parse(
            "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603",
        )
        .unwrap();
        let mut total_msgs = 0;
        for dir_port in [RDV_PORT, 0] {
            let mut p = StreamParser::new(StreamStart::Beginning, &cfg);
            let mut evs = Vec::new();
            let mut seg_ts = Vec::new();
            for s in segs
                .iter()
                .filter(|s| (s.src_port == RDV_PORT) == (dir_port == RDV_PORT))
            {
                seg_ts.push(s.ts);
                p.push(&s.payload, s.ts, &mut stats, &mut collect(&mut evs));
            }
            p.finish(&mut stats);
            assert_eq!(p.is_jxta(), Some(true));
            assert!(matches!(evs.first(), Some(Ev::Welcome(_))), "welcome first");
            for e in &evs {
                let Ev::Msg {
                    start, stop, body, ..
                } = e
                else {
                    if let Ev::Welcome(w) = e {
                        welcomes.push(w.clone());
                    }
                    continue;
                };
                // Every package here sits in one segment: start == stop == its time.
                assert_eq!(start, stop);
                assert!(seg_ts.contains(start));
                let msg = decode_message(body).expect("every real message decodes");
                stats.count_message(&msg, false);
                total_msgs += 1;
                let Some(payload) = msg.element("pingpong", "payload") else {
                    continue;
                };
                let text = payload.text().unwrap();
                let a = addressing(&msg);
                let is_ping = text.contains("<PING>");
                assert!(is_ping || text.contains("<PONG>"));
                let (src, dst) = if is_ping {
                    pings += 1;
                    (&edge_peer, &rdv_peer)
                } else {
                    pongs += 1;
                    (&rdv_peer, &edge_peer)
                };
                assert_eq!(a.src_peer.as_ref(), Some(src));
                assert_eq!(a.dst_peer.as_ref(), Some(dst));
                assert_eq!(a.last_hop.as_ref(), Some(src));
                assert_eq!(a.service.as_deref(), Some("PipeService"));
                let pipe = a.pipe_id.as_deref().unwrap();
                assert!(
                    pipe.starts_with("urn:jxta:uuid-") && pipe.ends_with("04"),
                    "{pipe}"
                );
                // Our ERM builder writes exactly what JXSE 2.5 wrote.
                let erm = msg.element("jxta", "EndpointRouterMsg").unwrap();
                let built = erm_xml(src, dst, &format!("PipeService/{pipe}"), src);
                assert_eq!(built.as_bytes(), erm.content);
            }
        }
        assert_eq!((pings, pongs), (10, 10));
        assert_eq!(welcomes.len(), 2);
        assert_eq!(stats.welcomes, 2);
        assert_eq!(stats.messages_tcp, total_msgs);
        assert_eq!(stats.malformed_total(), 0);
        assert_eq!(
            (stats.truncated_messages, stats.skipped_bytes, stats.gaps),
            (0, 0, 0)
        );
        assert_eq!(stats.element_names.get("pingpong:payload"), Some(20));
        assert!(total_msgs >= 28, "{total_msgs}");
    }

    #[test]
    fn one_byte_pushes_stamp_first_and_last_byte() {
        let (framed, body) = package("a", 100);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        for (i, b) in framed.iter().enumerate() {
            p.push(&[*b], 1000 + i as u64, &mut stats, &mut collect(&mut evs));
        }
        let n = framed.len() as u64;
        assert_eq!(
            evs,
            vec![Ev::Msg {
                start: 1000,
                stop: 1000 + n - 1,
                len: n,
                body
            }]
        );
        assert_eq!(p.buffered(), 0);
        assert_eq!(p.is_jxta(), Some(true));
    }

    #[test]
    fn welcome_then_several_messages_in_one_push() {
        let mut data = crate::jxta::welcome::test_welcome();
        let mut expect = Vec::new();
        for i in 0..3 {
            let (f, b) = package(&format!("m{i}"), i * 10);
            data.extend_from_slice(&f);
            expect.push(b);
        }
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        p.push(&data, 7, &mut stats, &mut collect(&mut evs));
        assert_eq!(evs[0], Ev::Welcome("urn:jxta:uuid-0011223303".into()));
        assert_eq!(bodies(&evs), expect);
        assert_eq!(stats.welcomes, 1);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn out_of_order_timestamps_give_min_and_max() {
        let (framed, _) = package("a", 50);
        let (second, body2) = package("b", 5);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        let (a, rest) = framed.split_at(10);
        let (b, c) = rest.split_at(20);
        // The middle bytes were first seen earliest (retransmitted tail, reordering).
        p.push(a, 500, &mut stats, &mut collect(&mut evs));
        p.push(b, 100, &mut stats, &mut collect(&mut evs));
        let mut tail = c.to_vec();
        tail.extend_from_slice(&second[..3]);
        p.push(&tail, 300, &mut stats, &mut collect(&mut evs));
        p.push(&second[3..], 900, &mut stats, &mut collect(&mut evs));
        let Ev::Msg { start, stop, .. } = &evs[0] else {
            panic!()
        };
        assert_eq!((*start, *stop), (100, 500));
        // The second message starts in the push at 300 and ends at 900.
        assert_eq!(
            evs[1],
            Ev::Msg {
                start: 300,
                stop: 900,
                len: second.len() as u64,
                body: body2
            }
        );
    }

    #[test]
    fn gap_inside_header_resyncs_on_next_message() {
        let (m1, _) = package("one", 40);
        let (m2, b2) = package("two", 40);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        p.push(&m1[..5], 1, &mut stats, &mut collect(&mut evs));
        // The gap swallows the rest of the header block and the body's signature.
        p.gap(65, &mut stats);
        p.push(&m1[70..], 2, &mut stats, &mut collect(&mut evs));
        p.push(&m2, 3, &mut stats, &mut collect(&mut evs));
        assert_eq!(bodies(&evs), vec![b2]);
        assert_eq!(
            (stats.gaps, stats.truncated_messages, stats.resyncs),
            (1, 1, 1)
        );
        assert_eq!(p.is_jxta(), Some(true));
    }

    #[test]
    fn gap_inside_body_skips_to_known_end() {
        let (m1, _) = package("one", 400);
        let (m2, b2) = package("two", 40);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        p.push(&m1[..100], 1, &mut stats, &mut collect(&mut evs));
        p.gap(100, &mut stats);
        let mut rest = m1[200..].to_vec();
        rest.extend_from_slice(&m2);
        p.push(&rest, 2, &mut stats, &mut collect(&mut evs));
        assert_eq!(bodies(&evs), vec![b2]);
        assert_eq!((stats.truncated_messages, stats.resyncs), (1, 0));
    }

    #[test]
    fn mid_stream_start_in_a_message() {
        let (m1, _) = package("one", 300);
        let (m2, b2) = package("two", 30);
        let (m3, b3) = package("three", 30);
        let mut data = m1[150..].to_vec();
        data.extend_from_slice(&m2);
        data.extend_from_slice(&m3);
        let mut p = StreamParser::new(StreamStart::MidStream, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        for chunk in data.chunks(7) {
            p.push(chunk, 5, &mut stats, &mut collect(&mut evs));
        }
        assert_eq!(bodies(&evs), vec![b2, b3]);
        assert_eq!(stats.skipped_bytes, (m1.len() - 150) as u64);
        assert_eq!(p.is_jxta(), Some(true));
    }

    #[test]
    fn garbage_gives_up_bounded() {
        let cfg = StreamConfig {
            max_message: 1 << 20,
            max_resync_scan: 64 * 1024,
        };
        let mut p = StreamParser::new(StreamStart::MidStream, &cfg);
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        let junk: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut pushes = 0;
        while p.is_jxta().is_none() {
            p.push(&junk, 1, &mut stats, &mut collect(&mut evs));
            assert!(p.buffered() <= 4096 + SCAN_KEEP);
            pushes += 1;
            assert!(pushes < 100, "never gave up");
        }
        assert_eq!(p.is_jxta(), Some(false));
        assert_eq!(stats.non_jxta_streams, 1);
        assert!(evs.is_empty());
        // HTTP at the beginning of a stream: not JXTA either.
        let mut p = StreamParser::new(StreamStart::Beginning, &cfg);
        p.push(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            1,
            &mut stats,
            &mut collect(&mut evs),
        );
        p.finish(&mut stats);
        assert_eq!(p.is_jxta(), Some(false));
        assert_eq!(stats.non_jxta_streams, 2);
    }

    #[test]
    fn absurd_content_length_is_malformed_without_allocation() {
        let mut v = vec![14];
        v.extend_from_slice(b"content-length\x00\x08");
        v.extend_from_slice(&u64::MAX.to_be_bytes());
        v.push(0);
        v.extend_from_slice(&[0xAB; 100]);
        let (m2, b2) = package("after", 10);
        v.extend_from_slice(&m2);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        p.push(&v, 1, &mut stats, &mut collect(&mut evs));
        assert_eq!(stats.malformed.get(&Malformed::TooLarge), Some(&1));
        assert_eq!(bodies(&evs), vec![b2]);
        assert!(p.buffered() < 64);
    }

    #[test]
    fn oversized_plausible_message_is_skipped_by_length() {
        let cfg = StreamConfig {
            max_message: 100,
            max_resync_scan: 1 << 20,
        };
        let (big, _) = package("big", 500);
        let (small, b) = package("s", 1);
        let mut p = StreamParser::new(StreamStart::Beginning, &cfg);
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        for c in big.chunks(33).chain(small.chunks(5)) {
            p.push(c, 1, &mut stats, &mut collect(&mut evs));
            assert!(p.buffered() < 200);
        }
        assert_eq!(bodies(&evs), vec![b]);
        assert_eq!(stats.malformed.get(&Malformed::TooLarge), Some(&1));
        assert_eq!(stats.skipped_bytes, big.len() as u64);
    }

    #[test]
    fn finish_counts_partial_message() {
        let (m, _) = package("x", 10);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        p.push(&m[..m.len() - 1], 1, &mut stats, &mut |_| {});
        p.finish(&mut stats);
        assert_eq!(stats.truncated_messages, 1);
    }

    #[test]
    fn a_direction_between_messages_holds_nothing() {
        let (m, _) = package("x", 3000);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        let half = m.len() / 2;
        p.push(&m[..half], 1, &mut stats, &mut collect(&mut evs));
        assert!(p.buf.capacity() > 0 && !p.core.marks.is_empty());
        p.push(&m[half..], 2, &mut stats, &mut collect(&mut evs));
        assert_eq!((p.buf.capacity(), p.core.marks.len()), (0, 0));
        // The next message is stamped by its own bytes only.
        p.push(&m[..half], 7, &mut stats, &mut collect(&mut evs));
        p.push(&m[half..], 9, &mut stats, &mut collect(&mut evs));
        let times: Vec<(u64, u64)> = evs
            .iter()
            .filter_map(|e| match e {
                Ev::Msg { start, stop, .. } => Some((*start, *stop)),
                _ => None,
            })
            .collect();
        assert_eq!(times, vec![(1, 2), (7, 9)]);
    }

    #[test]
    fn many_pushes_keep_marks_small_and_exact() {
        let (m, b) = package("long", 20_000);
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut evs = Vec::new();
        let n = m.len() as u64;
        for (i, c) in m.chunks(3).enumerate() {
            // Non-monotone times: the minimum is in the middle.
            let ts = if i == 1000 { 5 } else { 10_000 + i as u64 };
            p.push(c, ts, &mut stats, &mut collect(&mut evs));
            assert!(p.core.marks.len() <= MAX_MARKS + 1);
        }
        let last = 10_000 + (n.div_ceil(3) - 1);
        assert_eq!(
            evs,
            vec![Ev::Msg {
                start: 5,
                stop: last,
                len: n,
                body: b
            }]
        );
    }

    proptest::proptest! {
        #[test]
        fn hostile_pushes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20),
            mid in proptest::bool::ANY,
            gap_at in 0usize..25,
        ) {
            let start = if mid { StreamStart::MidStream } else { StreamStart::Beginning };
            let cfg = StreamConfig { max_message: 4096, max_resync_scan: 2048 };
            let mut p = StreamParser::new(start, &cfg);
            let mut stats = JxtaStats::default();
            for (i, c) in chunks.iter().enumerate() {
                if i == gap_at {
                    p.gap(c.len() as u64 + 1, &mut stats);
                }
                p.push(c, i as u64, &mut stats, &mut |e| {
                    if let StreamEvent::Message(m) = e {
                        let _ = decode_message(m.body);
                    }
                });
                proptest::prop_assert!(p.buffered() <= 4096 + MAX_HEADER_BLOCK + 300);
                proptest::prop_assert_eq!(p.holds(), p.oldest_buffered().is_some());
            }
            p.finish(&mut stats);
        }

        /// Each message is stamped with the earliest and latest time any of its bytes
        /// was pushed at, however the stream is cut and whether a push finds bytes held
        /// (marks) or none (its own time): the model keeps a time per byte.
        #[test]
        fn stamps_are_min_and_max_of_byte_times(
            cuts in proptest::collection::vec(0usize..1200, 0..12),
            times in proptest::collection::vec(0u64..1000, 13),
        ) {
            let mut data = crate::jxta::welcome::test_welcome();
            let mut spans = Vec::new();
            for (i, pad) in [30, 400, 0, 200].into_iter().enumerate() {
                let (f, b) = package(&format!("m{i}"), pad);
                spans.push((data.len(), data.len() + f.len(), b));
                data.extend_from_slice(&f);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut byte_time = vec![0u64; data.len()];
            let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
            let mut stats = JxtaStats::default();
            let mut evs = Vec::new();
            let mut prev = 0;
            for (c, t) in cuts.into_iter().zip(times.iter().copied()) {
                byte_time[prev..c].fill(t);
                p.push(&data[prev..c], t, &mut stats, &mut collect(&mut evs));
                proptest::prop_assert_eq!(p.holds(), p.oldest_buffered().is_some());
                prev = c;
            }
            let expect: Vec<Ev> = spans
                .into_iter()
                .map(|(a, b, body)| {
                    let ts = &byte_time[a..b];
                    Ev::Msg {
                        start: ts.iter().copied().min().unwrap_or_default(),
                        stop: ts.iter().copied().max().unwrap_or_default(),
                        len: (b - a) as u64,
                        body,
                    }
                })
                .collect();
            let got: Vec<Ev> = evs.into_iter().filter(|e| matches!(e, Ev::Msg { .. })).collect();
            proptest::prop_assert_eq!(got, expect);
            proptest::prop_assert_eq!(p.buffered(), 0);
        }

        #[test]
        fn find_crlf_is_memmem(b in proptest::collection::vec(proptest::sample::select(vec![b'\r', b'\n', b'a']), 0..40)) {
            proptest::prop_assert_eq!(find_crlf(&b), memmem::find(&b, b"\r\n"));
        }

        #[test]
        fn split_anywhere_same_messages(cuts in proptest::collection::vec(0usize..400, 0..8)) {
            let mut data = Vec::new();
            let mut expect = Vec::new();
            for i in 0..3 {
                let (f, b) = package(&format!("m{i}"), 30 * i);
                data.extend_from_slice(&f);
                expect.push(b);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.sort_unstable();
            let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
            let mut stats = JxtaStats::default();
            let mut evs = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                p.push(&data[prev..c], c as u64, &mut stats, &mut collect(&mut evs));
                prev = c;
            }
            proptest::prop_assert_eq!(bodies(&evs), expect);
        }
    }

    /// The peer closes a connection that starts with something else than JXTA as soon
    /// as a read shows skipped bytes: an HTTP request shows them whatever the read
    /// boundaries (the bytes of a split first read are held, not decided on).
    #[test]
    fn a_non_jxta_start_is_skipped_whatever_the_split() {
        let input = b"GET / HTTP/1.0\r\n\r\n garbage garbage garbage garbage";
        let cfg = StreamConfig {
            max_message: 1 << 20,
            max_resync_scan: 4096 + 2,
        };
        for split in 0..=input.len() {
            let mut p = StreamParser::new(StreamStart::Beginning, &cfg);
            let mut stats = JxtaStats::default();
            let mut evs = Vec::new();
            for part in [&input[..split], &input[split..]] {
                p.push(part, 1, &mut stats, &mut collect(&mut evs));
            }
            assert!(evs.is_empty(), "split {split}: {evs:?}");
            assert!(stats.skipped_bytes > 0, "split {split}: nothing skipped");
            assert_eq!(p.is_jxta(), None, "split {split}");
        }
    }
}
