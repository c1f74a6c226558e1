//! JXTA's HTTP transport (spec §1.5): one direction of an HTTP/1.1 connection in,
//! `jxmg` messages out, each stamped like a TCP-transport message.
//!
//! Heads are parsed by `httparse`; the body framing (`Content-Length`, chunked,
//! until close), keep-alive and pipelining are handled here. Bodies of type
//! `application/x-jxta-msg` hold one message (a POST) or, on a polling response,
//! several written back to back; their ends are found with [`Extent`].
//!
//! Timing follows the TCP rule (first-seen time of the first byte, arrival of the
//! last): the first message of an HTTP request or response starts at the first byte
//! of its head, since a peer writes the head for that message (the instrumented
//! peer stamps before sending the request); every further message of the same body
//! starts at its own first byte. Chunk framing between messages belongs to none.
//!
//! Memory: one head (at most [`MAX_HEAD`]) or chunk line, and one message (at most
//! `max_message`); bodies of other types are skipped without being kept.
//!
//! Over 600 lines: HTTP/1.1 framing (lengths, chunks, polling) of one carrier, then tests.

use super::extent::Extent;
use super::framing::PackageHeader;
use super::marks::Marks;
use super::message::MIME_JXTA_MSG;
use super::stream::{FramedMessage, StreamConfig};
use super::{JxtaStats, Malformed};
use crate::UnixNanos;

/// Largest request or status line plus headers (JXSE's are under 300 bytes).
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers per head.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) or trailer line.
const MAX_CHUNK_LINE: usize = 1024;
/// Kept when a resync scan finds nothing: the longest start pattern less one.
const SCAN_KEEP: usize = 8;

use crate::counters::{by, families::JXTA_HTTP};

crate::counters! {
    /// What the HTTP layer saw. Malformed HTTP is counted in [`JxtaStats::malformed`]
    /// under the [`HttpAnomaly`] labels.
    #[derive(Debug, Default, Clone, serde::Serialize)]
    pub struct HttpStats {
        requests: "requests", metric: by(&JXTA_HTTP, "requests"), anomaly: false, merge: Sum;
        responses: "responses", metric: by(&JXTA_HTTP, "responses"), anomaly: false, merge: Sum;
        /// Bodies of type `application/x-jxta-msg` (empty polling responses included).
        jxta_bodies: "JXTA bodies", metric: by(&JXTA_HTTP, "jxta_bodies"), anomaly: false, merge: Sum;
        chunked_bodies: "chunked bodies", metric: by(&JXTA_HTTP, "chunked_bodies"), anomaly: false, merge: Sum;
        /// `jxmg` messages decoded from those bodies (also counted as TCP messages).
        messages: "messages", metric: by(&JXTA_HTTP, "messages"), anomaly: false, merge: Sum;
    }
}

impl HttpStats {
    pub fn to_json(&self) -> serde_json::Value {
        self.iter()
            .map(|(c, n)| (c.key.to_owned(), serde_json::Value::from(n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Malformed HTTP, each counted under its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAnomaly {
    /// A head `httparse` refuses, in a stream already seen carrying JXTA.
    BadHead,
    /// A head longer than [`MAX_HEAD`] or with more than 64 headers.
    HeadTooLarge,
    /// `Content-Length` not a number, or several that disagree.
    BadContentLength,
    /// A chunk-size line that is not hex, too long, or chunk data not followed by CRLF.
    BadChunk,
    /// A transfer coding other than chunked (e.g. gzip): the body cannot be read.
    UnsupportedCoding,
    /// A JXTA body that ends in the middle of a message.
    PartialMessage,
}

impl From<HttpAnomaly> for Malformed {
    fn from(a: HttpAnomaly) -> Malformed {
        match a {
            HttpAnomaly::BadHead => Malformed::HttpBadHead,
            HttpAnomaly::HeadTooLarge => Malformed::HttpHeadTooLarge,
            HttpAnomaly::BadContentLength => Malformed::HttpBadContentLength,
            HttpAnomaly::BadChunk => Malformed::HttpBadChunk,
            HttpAnomaly::UnsupportedCoding => Malformed::HttpUnsupportedCoding,
            HttpAnomaly::PartialMessage => Malformed::HttpPartialMessage,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client's direction: requests.
    Request,
    /// The server's direction: responses.
    Response,
}

/// What the first bytes of a direction say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Http(Role),
    NotHttp,
    NeedMore,
}

/// Methods a request may start with; JXTA uses GET and POST only, the others are
/// here so that ordinary HTTP is recognised as HTTP (and then found not to be JXTA).
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];
const STATUS_START: &[u8] = b"HTTP/1.";

/// Whether a direction that starts with `prefix` is HTTP.
pub fn sniff(prefix: &[u8]) -> Sniff {
    let mut need_more = false;
    for (pat, role) in METHODS
        .iter()
        .map(|m| (*m, Role::Request))
        .chain([(STATUS_START, Role::Response)])
    {
        let n = pat.len().min(prefix.len());
        if prefix.get(..n) == pat.get(..n) {
            if prefix.len() >= pat.len() {
                return Sniff::Http(role);
            }
            need_more = true;
        }
    }
    if need_more {
        Sniff::NeedMore
    } else {
        Sniff::NotHttp
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data { left: u64 },
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At a message boundary: a request or status line is next.
    Head,
    Length {
        left: u64,
    },
    Chunked(Chunk),
    UntilClose,
    /// Lost (a gap, garbage): looking for the next head.
    Resync,
    Dead,
}

/// One direction of an HTTP connection.
#[derive(Debug)]
pub struct HttpParser {
    buf: Vec<u8>,
    core: Core,
}

#[derive(Debug)]
struct Core {
    role: Role,
    max_message: u64,
    max_scan: u64,
    mode: Mode,
    /// Stream offset of `buf[0]`.
    buf_start: u64,
    marks: Marks,
    /// A head or message of this direction (or of the other) was JXTA.
    jxta: bool,
    gave_up: bool,
    /// The first head was not HTTP after all: the bytes belong to another parser.
    refused: bool,
    /// Heads parsed on this direction.
    heads: u64,
    /// Bytes of the pending head known to hold no end of head, and its length when
    /// last parsed (see `step_head`).
    head_seen: usize,
    head_tried: usize,
    /// Bytes of HTTP seen before any sign of JXTA.
    scanned: u64,
    seen_bytes: bool,
    /// The current body is `application/x-jxta-msg` and still decodable.
    body_jxta: bool,
    /// Where the message being assembled starts (see the module comment).
    span: Option<u64>,
    msg: Vec<u8>,
    extent: Extent,
}

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
    fn wait() -> Self {
        Step {
            advance: 0,
            wait: true,
        }
    }
}

/// What the head of one request or response says about its body.
struct Head {
    len: usize,
    mode: Mode,
    jxta_body: bool,
    jxta_target: bool,
    chunked: bool,
    anomaly: Option<HttpAnomaly>,
}

impl HttpParser {
    pub fn new(role: Role, cfg: &StreamConfig) -> Self {
        HttpParser {
            buf: Vec::new(),
            core: Core {
                role,
                max_message: cfg.max_message,
                max_scan: cfg.max_resync_scan,
                mode: Mode::Head,
                buf_start: 0,
                marks: Marks::default(),
                jxta: false,
                gave_up: false,
                refused: false,
                heads: 0,
                head_seen: 0,
                head_tried: 0,
                scanned: 0,
                seen_bytes: false,
                body_jxta: false,
                span: None,
                msg: Vec::new(),
                extent: Extent::default(),
            },
        }
    }

    /// The configuration it was made with.
    pub fn config(&self) -> StreamConfig {
        StreamConfig {
            max_message: self.core.max_message,
            max_resync_scan: self.core.max_scan,
        }
    }

    /// `None` = undecided, `Some(true)` = JXTA seen, `Some(false)` = gave up (or
    /// refused, see [`HttpParser::refused`]).
    pub fn is_jxta(&self) -> Option<bool> {
        if self.core.jxta {
            Some(true)
        } else if self.core.gave_up || self.core.refused {
            Some(false)
        } else {
            None
        }
    }

    /// What looked like a request or status line was not one, before any sign of
    /// JXTA: nothing was counted, and the caller should hand the rest of the direction
    /// to the TCP transport's parser (a stream joined mid-way may start with bytes
    /// that merely look like HTTP).
    pub fn refused(&self) -> bool {
        self.core.refused
    }

    /// The other direction of the connection carries JXTA: so does this one (a
    /// polling channel whose responses are all empty is still JXTA's).
    pub fn mark_jxta(&mut self) {
        if !self.core.gave_up && !self.core.refused {
            self.core.jxta = true;
        }
    }

    /// Earliest first-seen time of the bytes held (a head, or a message in progress).
    pub fn oldest_buffered(&self) -> Option<UnixNanos> {
        if self.buf.is_empty() && self.core.msg.is_empty() && self.core.span.is_none() {
            return None;
        }
        self.core.marks.oldest()
    }

    pub fn buffered(&self) -> usize {
        self.buf.len() + self.core.msg.len()
    }

    /// Feeds the next in-order bytes, all first seen at `first_seen`.
    pub fn push(
        &mut self,
        data: &[u8],
        first_seen: UnixNanos,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(FramedMessage<'_>),
    ) {
        if data.is_empty() || self.core.mode == Mode::Dead {
            return;
        }
        self.core.seen_bytes = true;
        let end = self.core.buf_start + self.buf.len() as u64;
        self.core.marks.add(end, first_seen);
        self.buf.extend_from_slice(data);
        let n = self.core.run(&self.buf, stats, out);
        self.buf.drain(..n.min(self.buf.len()));
        self.core.buf_start += n as u64;
        let anchor = self.core.span.unwrap_or(self.core.buf_start);
        self.core.marks.trim(anchor.min(self.core.buf_start));
        if self.core.mode == Mode::Dead {
            self.buf = Vec::new();
            self.core.msg = Vec::new();
            self.core.marks.release();
        }
    }

    /// `len` bytes are missing at the current position. A message in progress is
    /// lost (counted); a known body length keeps the parser in step, otherwise it
    /// looks for the next head.
    pub fn gap(&mut self, len: u64, stats: &mut JxtaStats) {
        if len == 0 {
            return;
        }
        stats.gaps += 1;
        let core = &mut self.core;
        let held = self.buf.len() as u64;
        let lost = held.saturating_add(len);
        if !core.msg.is_empty() || (core.mode == Mode::Head && held > 0 && core.jxta) {
            stats.truncated_messages += 1;
        }
        // Messages of a body follow each other without delimiters: after a hole
        // in one, the rest of the body cannot be split.
        core.drop_message();
        core.mode = match core.mode {
            Mode::Dead => Mode::Dead,
            Mode::Length { left } if left > lost => Mode::Length { left: left - lost },
            Mode::Chunked(Chunk::Data { left }) if left > lost => {
                Mode::Chunked(Chunk::Data { left: left - lost })
            }
            Mode::UntilClose => Mode::UntilClose,
            _ => Mode::Resync,
        };
        stats.skipped_bytes += held;
        core.head_seen = 0;
        core.head_tried = 0;
        core.buf_start = core.buf_start.saturating_add(lost);
        self.buf.clear();
        core.marks.clear();
    }

    /// End of the stream: a message in progress is truncated, except that a body
    /// delimited by the end of the connection ends here.
    pub fn finish(&mut self, stats: &mut JxtaStats) {
        match self.core.mode {
            Mode::UntilClose => self.core.end_body(stats),
            Mode::Length { .. } | Mode::Chunked(_) if !self.core.msg.is_empty() => {
                stats.truncated_messages += 1;
            }
            Mode::Head if !self.buf.is_empty() && self.core.jxta => {
                stats.truncated_messages += 1;
            }
            _ => {}
        }
        if !self.core.jxta && !self.core.gave_up && !self.core.refused && self.core.seen_bytes {
            self.core.gave_up = true;
            stats.non_jxta_streams += 1;
        }
        self.core.mode = Mode::Dead;
        self.buf = Vec::new();
        self.core.msg = Vec::new();
        self.core.span = None;
        self.core.marks.release();
    }
}

impl Core {
    fn run(
        &mut self,
        data: &[u8],
        stats: &mut JxtaStats,
        out: &mut impl FnMut(FramedMessage<'_>),
    ) -> usize {
        let mut pos = 0usize;
        while pos < data.len() {
            let rest = data.get(pos..).unwrap_or_default();
            let abs = self.buf_start + pos as u64;
            let step = match self.mode {
                Mode::Dead => Step::go(rest.len()),
                Mode::Head => {
                    let step = self.step_head(rest, abs, stats);
                    if step.advance > 0 || self.mode != Mode::Head {
                        self.head_seen = 0;
                        self.head_tried = 0;
                    }
                    step
                }
                Mode::Length { left } => {
                    let n = left.min(rest.len() as u64);
                    let take = rest.get(..n as usize).unwrap_or_default();
                    self.feed(take, abs, stats, out);
                    if self.mode != Mode::Dead {
                        if left == n {
                            self.end_body(stats);
                            self.mode = Mode::Head;
                        } else {
                            self.mode = Mode::Length { left: left - n };
                        }
                    }
                    Step::go(n as usize)
                }
                Mode::UntilClose => {
                    self.feed(rest, abs, stats, out);
                    Step::go(rest.len())
                }
                Mode::Chunked(c) => self.step_chunk(c, rest, abs, stats, out),
                Mode::Resync => self.step_resync(rest, stats),
            };
            pos += step.advance;
            if step.wait {
                break;
            }
        }
        pos.min(data.len())
    }

    fn anomaly(&mut self, a: HttpAnomaly, stats: &mut JxtaStats) {
        let kind = Malformed::from(a);
        tracing::debug!(anomaly = kind.label(), "malformed HTTP");
        stats.count_malformed(kind);
    }

    /// Not JXTA after all: stop looking at this direction.
    fn give_up(&mut self, stats: &mut JxtaStats) {
        self.gave_up = true;
        stats.non_jxta_streams += 1;
        self.mode = Mode::Dead;
    }

    /// HTTP bytes seen without a sign of JXTA; past the scan budget the direction is
    /// taken for ordinary HTTP.
    fn count_scanned(&mut self, n: usize, stats: &mut JxtaStats) {
        if self.jxta {
            return;
        }
        self.scanned = self.scanned.saturating_add(n as u64);
        if self.scanned > self.max_scan {
            self.give_up(stats);
        }
    }

    fn drop_message(&mut self) {
        self.msg.clear();
        self.extent = Extent::default();
        self.span = None;
        self.body_jxta = false;
    }

    /// The body is over: a message still incomplete is counted.
    fn end_body(&mut self, stats: &mut JxtaStats) {
        if self.body_jxta && !self.msg.is_empty() {
            self.anomaly(HttpAnomaly::PartialMessage, stats);
        }
        self.drop_message();
    }

    fn step_head(&mut self, rest: &[u8], abs: u64, stats: &mut JxtaStats) -> Step {
        // A head arriving a few bytes at a time must not be parsed again from its
        // start at every arrival: parse when its end may be there, or when it has
        // doubled since the last try (which still refuses garbage early).
        let from = self.head_seen.saturating_sub(2);
        // (A blank line: LF LF or LF CR LF; memchr, not memmem, since this runs at
        // every arrival and a searcher costs more to build than these bytes to scan.)
        let ended = rest.get(from..).is_some_and(|r| {
            memchr::memchr_iter(b'\n', r)
                .any(|i| matches!(r.get(i + 1..), Some([b'\n', ..]) | Some([b'\r', b'\n', ..])))
        });
        if !ended {
            self.head_seen = rest.len();
            if rest.len() <= MAX_HEAD && rest.len() < self.head_tried.saturating_mul(2).max(1) {
                return Step::wait();
            }
            self.head_tried = rest.len();
        }
        let head = match parse_head(self.role, rest) {
            Ok(Some(h)) => h,
            Ok(None) => {
                if rest.len() > MAX_HEAD {
                    if !self.jxta {
                        // Plain HTTP with enormous headers is not our concern.
                        self.give_up(stats);
                        return Step::go(rest.len());
                    }
                    self.anomaly(HttpAnomaly::HeadTooLarge, stats);
                    self.mode = Mode::Resync;
                    return Step::go(1);
                }
                return Step::wait();
            }
            Err(too_large) => {
                if !self.jxta && self.heads == 0 {
                    // Never HTTP: another parser's business.
                    self.refused = true;
                    self.mode = Mode::Dead;
                    return Step::go(rest.len());
                }
                if !self.jxta {
                    // HTTP, but not HTTP this parser can follow: not JXTA either.
                    self.give_up(stats);
                    return Step::go(rest.len());
                }
                self.anomaly(
                    if too_large {
                        HttpAnomaly::HeadTooLarge
                    } else {
                        HttpAnomaly::BadHead
                    },
                    stats,
                );
                self.mode = Mode::Resync;
                return Step::go(1);
            }
        };
        self.heads += 1;
        match self.role {
            Role::Request => stats.http.requests += 1,
            Role::Response => stats.http.responses += 1,
        }
        if let Some(a) = head.anomaly {
            self.anomaly(a, stats);
        }
        if head.jxta_body || head.jxta_target {
            self.jxta = true;
        }
        if head.jxta_body {
            stats.http.jxta_bodies += 1;
        }
        if head.chunked {
            stats.http.chunked_bodies += 1;
        }
        self.drop_message();
        self.body_jxta = head.jxta_body && head.anomaly.is_none();
        if self.body_jxta {
            self.span = Some(abs);
        }
        self.mode = match head.mode {
            Mode::Length { left: 0 } => {
                self.end_body(stats);
                Mode::Head
            }
            m => m,
        };
        self.count_scanned(head.len, stats);
        Step::go(head.len)
    }

    fn step_chunk(
        &mut self,
        c: Chunk,
        rest: &[u8],
        abs: u64,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(FramedMessage<'_>),
    ) -> Step {
        match c {
            Chunk::Size | Chunk::Trailers => {
                let window = rest.get(..MAX_CHUNK_LINE).unwrap_or(rest);
                let Some(lf) = memchr::memchr(b'\n', window) else {
                    if window.len() >= MAX_CHUNK_LINE {
                        return self.bad_chunk(stats);
                    }
                    return Step::wait();
                };
                // Lines end in CR LF; a bare LF is malformed.
                let Some(eol) = lf.checked_sub(1).filter(|&e| window.get(e) == Some(&b'\r')) else {
                    return self.bad_chunk(stats);
                };
                let line = rest.get(..eol).unwrap_or_default();
                self.count_scanned(eol + 2, stats);
                if c == Chunk::Trailers {
                    if line.is_empty() {
                        self.end_body(stats);
                        self.mode = Mode::Head;
                    }
                    return Step::go(eol + 2);
                }
                match chunk_size(line) {
                    Some(0) => self.mode = Mode::Chunked(Chunk::Trailers),
                    Some(n) => self.mode = Mode::Chunked(Chunk::Data { left: n }),
                    None => return self.bad_chunk(stats),
                }
                Step::go(eol + 2)
            }
            Chunk::Data { left } => {
                let n = left.min(rest.len() as u64);
                let take = rest.get(..n as usize).unwrap_or_default();
                self.feed(take, abs, stats, out);
                if self.mode != Mode::Dead {
                    self.mode = Mode::Chunked(if left == n {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data { left: left - n }
                    });
                }
                Step::go(n as usize)
            }
            Chunk::DataEnd => {
                if rest.len() < 2 {
                    return Step::wait();
                }
                if !rest.starts_with(b"\r\n") {
                    return self.bad_chunk(stats);
                }
                self.mode = Mode::Chunked(Chunk::Size);
                Step::go(2)
            }
        }
    }

    fn bad_chunk(&mut self, stats: &mut JxtaStats) -> Step {
        self.anomaly(HttpAnomaly::BadChunk, stats);
        if !self.msg.is_empty() {
            stats.truncated_messages += 1;
        }
        self.drop_message();
        self.mode = Mode::Resync;
        Step::go(0)
    }

    /// Body bytes at stream offset `abs`: kept and split into messages when the body
    /// is JXTA's, passed over otherwise.
    fn feed(
        &mut self,
        data: &[u8],
        abs: u64,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(FramedMessage<'_>),
    ) {
        if !self.body_jxta {
            self.count_scanned(data.len(), stats);
            return;
        }
        if data.is_empty() {
            return;
        }
        let mut raw = abs;
        self.span.get_or_insert(raw);
        // Bytes of `msg` already known not to complete a message.
        let mut before = self.msg.len();
        self.msg.extend_from_slice(data);
        loop {
            match self.extent.advance(&self.msg, self.max_message) {
                Ok(Some(n)) => {
                    // The walk stops at the first byte that completes the message,
                    // and the bytes before `before` did not: it ends in `data`.
                    let used = n.saturating_sub(before) as u64;
                    let end = raw + used;
                    let start_off = self.span.unwrap_or(raw);
                    let (start, stop) = self.marks.range(start_off, end);
                    stats.http.messages += 1;
                    self.jxta = true;
                    out(FramedMessage {
                        start,
                        stop,
                        framed_len: end.saturating_sub(start_off),
                        header: PackageHeader {
                            content_type: Some(MIME_JXTA_MSG),
                            content_length: n as u64,
                            src_ea: None,
                            header_len: 0,
                        },
                        body: self.msg.get(..n).unwrap_or_default(),
                    });
                    self.msg.drain(..n.min(self.msg.len()));
                    self.extent = Extent::default();
                    raw = end;
                    before = 0;
                    if self.msg.is_empty() {
                        self.span = None;
                        break;
                    }
                    self.span = Some(raw);
                }
                Ok(None) => break,
                Err(e) => {
                    // The rest of this body cannot be split into messages.
                    stats.count_malformed(e.kind());
                    self.drop_message();
                    break;
                }
            }
        }
    }

    /// Looks for the start of the next head at a line start.
    fn step_resync(&mut self, rest: &[u8], stats: &mut JxtaStats) -> Step {
        // Right after a gap the next head may start the data.
        if sniff(rest) == Sniff::Http(self.role) {
            stats.resyncs += 1;
            self.mode = Mode::Head;
            return Step::go(0);
        }
        // A head may follow a body directly (no line break before it).
        let patterns: &[&[u8]] = match self.role {
            Role::Response => &[b"HTTP/1."],
            Role::Request => &[b"POST /", b"GET /"],
        };
        if let Some(i) = find_first(rest, patterns) {
            stats.resyncs += 1;
            stats.skipped_bytes += i as u64;
            self.count_scanned(i, stats);
            if self.mode != Mode::Dead {
                self.mode = Mode::Head;
            }
            return Step::go(i);
        }
        let keep = rest.len().min(SCAN_KEEP);
        let n = rest.len() - keep;
        stats.skipped_bytes += n as u64;
        self.count_scanned(n, stats);
        Step {
            advance: n,
            wait: true,
        }
    }
}

/// First position where one of `patterns` starts. Every pattern here begins with
/// `G`, `H` or `P`, so one memchr pass over those letters finds the candidates (this
/// runs on every arrival of a stream being searched; building a searcher per pattern
/// costs more than the scan).
fn find_first(hay: &[u8], patterns: &[&[u8]]) -> Option<usize> {
    debug_assert!(patterns
        .iter()
        .all(|p| matches!(p.first(), Some(b'G' | b'H' | b'P'))));
    memchr::memchr3_iter(b'G', b'H', b'P', hay).find(|&i| {
        let at = hay.get(i..).unwrap_or_default();
        patterns.iter().any(|p| at.starts_with(p))
    })
}

/// Where JXTA's HTTP transport shows in bytes of a stream joined mid-way (the capture
/// began inside a body): a POST to `/`, a polling request, or a successful response.
/// Stricter than the resynchronisation of a stream known to be HTTP, since these
/// bytes may be anything.
pub fn find_join(data: &[u8]) -> Option<(usize, Role)> {
    let req = find_first(data, &[b"POST / HTTP/1.", b"GET /uuid-", b"GET /cbid-"]);
    let res = find_first(data, &[b"HTTP/1.1 2", b"HTTP/1.0 2"]);
    match (req, res) {
        (Some(a), Some(b)) if b < a => Some((b, Role::Response)),
        (Some(a), _) => Some((a, Role::Request)),
        (None, Some(b)) => Some((b, Role::Response)),
        (None, None) => None,
    }
}

/// Hex chunk size, extensions (`;…`) and surrounding blanks ignored; `None` if it is
/// not hex or does not fit in 60 bits.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(s, 16).ok()
}

/// `Ok(None)`: incomplete; `Err(true)`: too many headers; `Err(false)`: not a head.
fn parse_head(role: Role, buf: &[u8]) -> Result<Option<Head>, bool> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, fields, status, target) = match role {
        Role::Request => {
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => (n, req.headers, None, req.path),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(e == httparse::Error::TooManyHeaders),
            }
        }
        Role::Response => {
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(buf) {
                Ok(httparse::Status::Complete(n)) => (n, res.headers, res.code, None),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(e == httparse::Error::TooManyHeaders),
            }
        }
    };
    let mut length: Option<u64> = None;
    let mut anomaly = None;
    let mut chunked = false;
    let mut coded = false;
    let mut jxta_body = false;
    for h in fields.iter() {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (parsed, length) {
                (Some(v), None) => length = Some(v),
                (Some(v), Some(l)) if v == l => {}
                _ => anomaly = Some(HttpAnomaly::BadContentLength),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides the framing; any coding but chunked hides the
            // message.
            for coding in value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
                    chunked = false;
                    coded = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            let media = value.split(|&b| b == b';').next().unwrap_or_default();
            jxta_body = media
                .trim_ascii()
                .eq_ignore_ascii_case(MIME_JXTA_MSG.as_bytes());
        }
    }
    // JXSE's polling request: GET /<peer-unique>?<timeouts>[,<dest>].
    let jxta_target = target.is_some_and(|t| {
        let t = t.strip_prefix('/').unwrap_or(t);
        (t.starts_with("uuid-") || t.starts_with("cbid-")) && t.contains('?')
    });
    let status = status.unwrap_or(0);
    // RFC 9112 §6.3: no body for 1xx, 204, 304; then Transfer-Encoding, then
    // Content-Length; a response without either runs to the end of the connection.
    // A response to HEAD has no body either, but this direction does not see the
    // requests: JXTA never sends HEAD, and plain HTTP that does ends up given up as
    // non-JXTA when the next "head" fails to parse, which is the right outcome.
    let mode = if role == Role::Response && (status < 200 || status == 204 || status == 304) {
        Mode::Length { left: 0 }
    } else if chunked {
        Mode::Chunked(Chunk::Size)
    } else if coded {
        anomaly = Some(HttpAnomaly::UnsupportedCoding);
        match role {
            Role::Response => Mode::UntilClose,
            // A request body of unknown length cannot be framed.
            Role::Request => Mode::Resync,
        }
    } else if anomaly == Some(HttpAnomaly::BadContentLength) {
        Mode::Resync
    } else {
        match (length, role) {
            (Some(l), _) => Mode::Length { left: l },
            (None, Role::Request) => Mode::Length { left: 0 },
            (None, Role::Response) => Mode::UntilClose,
        }
    };
    Ok(Some(Head {
        len,
        mode,
        jxta_body,
        jxta_target,
        chunked,
        anomaly,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::message::{encode_message_v0, OwnedElement};

    #[derive(Debug, Clone, PartialEq)]
    struct Got {
        start: u64,
        stop: u64,
        framed: u64,
        body: Vec<u8>,
    }

    fn msg(tag: &str, pad: usize) -> Vec<u8> {
        encode_message_v0(&[OwnedElement::new(
            "",
            "payload",
            Some("text/plain"),
            format!("{tag}{}", "x".repeat(pad)),
        )])
    }

    fn post(body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "POST / HTTP/1.1\r\nHost: 10.0.0.2:9700\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    fn run(role: Role, pushes: &[(&[u8], u64)], stats: &mut JxtaStats) -> (Vec<Got>, HttpParser) {
        let mut p = HttpParser::new(role, &StreamConfig::default());
        let mut got = Vec::new();
        for (data, ts) in pushes {
            p.push(data, *ts, stats, &mut |m| {
                got.push(Got {
                    start: m.start,
                    stop: m.stop,
                    framed: m.framed_len,
                    body: m.body.to_vec(),
                })
            });
        }
        (got, p)
    }

    #[test]
    fn sniffs_methods_and_status_lines() {
        assert_eq!(sniff(b"POST / HTTP/1.1"), Sniff::Http(Role::Request));
        assert_eq!(sniff(b"HTTP/1.1 200 OK"), Sniff::Http(Role::Response));
        assert_eq!(sniff(b"PO"), Sniff::NeedMore);
        assert_eq!(sniff(b"HTTP"), Sniff::NeedMore);
        assert_eq!(sniff(b"JXTAHELLO "), Sniff::NotHttp);
        assert_eq!(sniff(b"\x0ccontent-type"), Sniff::NotHttp);
    }

    #[test]
    fn pipelined_keep_alive_posts_are_timed_from_the_head() {
        let (m1, m2) = (msg("one", 50), msg("two", 80));
        let (r1, r2) = (post(&m1), post(&m2));
        let mut data = r1.clone();
        data.extend_from_slice(&r2);
        // Byte i first seen at 1000 + i.
        let pushes: Vec<(&[u8], u64)> = data
            .iter()
            .enumerate()
            .map(|(i, b)| (std::slice::from_ref(b), 1000 + i as u64))
            .collect();
        let mut stats = JxtaStats::default();
        let (got, p) = run(Role::Request, &pushes, &mut stats);
        let (n1, n2) = (r1.len() as u64, r2.len() as u64);
        assert_eq!(
            got,
            vec![
                Got {
                    start: 1000,
                    stop: 1000 + n1 - 1,
                    framed: n1,
                    body: m1
                },
                Got {
                    start: 1000 + n1,
                    stop: 1000 + n1 + n2 - 1,
                    framed: n2,
                    body: m2
                },
            ]
        );
        assert_eq!(p.is_jxta(), Some(true));
        assert_eq!(
            (
                stats.http.requests,
                stats.http.jxta_bodies,
                stats.http.messages
            ),
            (2, 2, 2)
        );
        assert_eq!(stats.malformed_total(), 0);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn chunked_polling_response_with_several_messages() {
        let (m1, m2) = (msg("first", 30), msg("second", 200));
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut c1 = format!("{:x}\r\n", m1.len()).into_bytes();
        c1.extend_from_slice(&m1);
        c1.extend_from_slice(b"\r\n");
        // The second message is split over two chunks, with an extension.
        let (a, b) = m2.split_at(77);
        let mut c2 = format!("{:X};ext=1\r\n", a.len()).into_bytes();
        c2.extend_from_slice(a);
        c2.extend_from_slice(b"\r\n");
        let mut c3 = format!("{:x}\r\n", b.len()).into_bytes();
        c3.extend_from_slice(b);
        c3.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
        let mut stats = JxtaStats::default();
        let (got, p) = run(
            Role::Response,
            &[(&head, 10), (&c1, 20), (&c2, 30), (&c3, 40), (&empty, 50)],
            &mut stats,
        );
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].start, got[0].stop), (10, 20));
        assert_eq!(got[0].framed, (head.len() + c1.len() - 2) as u64);
        assert_eq!(got[0].body, m1);
        // The second message starts at its own first byte (in the push at 30).
        assert_eq!((got[1].start, got[1].stop), (30, 40));
        assert_eq!(got[1].body, m2);
        assert_eq!((stats.http.responses, stats.http.chunked_bodies), (2, 1));
        assert_eq!(stats.malformed_total(), 0);
        assert_eq!(p.buffered(), 0);
        assert_eq!(p.oldest_buffered(), None);
    }

    #[test]
    fn polling_request_and_interim_responses() {
        let mut stats = JxtaStats::default();
        let req = b"GET /uuid-59616261646162614E504720503250330303?30000,0,http://10.0.0.1:9700 HTTP/1.1\r\nHost: x\r\n\r\n";
        let (_, p) = run(Role::Request, &[(req, 1)], &mut stats);
        assert_eq!(p.is_jxta(), Some(true));
        let m = msg("late", 10);
        let mut res = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg; charset=x\r\nConnection: close\r\n\r\n".to_vec();
        res.extend_from_slice(&m);
        let (got, mut p) = run(Role::Response, &[(&res, 5)], &mut stats);
        // A body delimited by the end of the connection: the message is complete as
        // soon as its last byte is there.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, m);
        p.finish(&mut stats);
        assert_eq!(stats.malformed_total(), 0);
        assert_eq!(stats.http.responses, 2);
    }

    #[test]
    fn plain_http_is_not_jxta() {
        let mut stats = JxtaStats::default();
        let res = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";
        let (got, mut p) = run(Role::Response, &[(res, 1)], &mut stats);
        assert!(got.is_empty());
        assert_eq!(p.is_jxta(), None);
        p.finish(&mut stats);
        assert_eq!(p.is_jxta(), Some(false));
        assert_eq!(stats.non_jxta_streams, 1);
        // A large plain download is given up without waiting for the end.
        let cfg = StreamConfig {
            max_message: 1 << 20,
            max_resync_scan: 4096,
        };
        let mut p = HttpParser::new(Role::Response, &cfg);
        p.push(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
            1,
            &mut stats,
            &mut |_| {},
        );
        for _ in 0..10 {
            p.push(&[b'a'; 1000], 2, &mut stats, &mut |_| {});
        }
        assert_eq!(p.is_jxta(), Some(false));
        assert_eq!(stats.non_jxta_streams, 2);
    }

    #[test]
    fn anomalies_are_counted_and_the_stream_recovers() {
        let good = post(&msg("ok", 10));
        let mut data = post(&msg("first", 10));
        // Not hex.
        data.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        data.extend_from_slice(&good);
        // Two lengths that disagree.
        data.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\njunk!\r\n");
        data.extend_from_slice(&good);
        // A body that is not a message, then one cut short by its length.
        let mut bad =
            b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: 8\r\n\r\n"
                .to_vec();
        bad.extend_from_slice(b"notjxmg!");
        data.extend_from_slice(&bad);
        let m = msg("cut", 40);
        let mut cut = format!(
            "POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: {}\r\n\r\n",
            m.len() - 5
        )
        .into_bytes();
        cut.extend_from_slice(&m[..m.len() - 5]);
        data.extend_from_slice(&cut);
        data.extend_from_slice(&good);
        let mut stats = JxtaStats::default();
        let (got, _) = run(Role::Request, &[(&data, 1)], &mut stats);
        assert_eq!(got.len(), 4, "{:?}", stats.malformed);
        for (kind, n) in [
            (Malformed::HttpBadChunk, 1),
            (Malformed::HttpBadContentLength, 1),
            (Malformed::BadSignature, 1),
            (Malformed::HttpPartialMessage, 1),
        ] {
            assert_eq!(
                stats.malformed.get(&kind),
                Some(&n),
                "{kind}: {:?}",
                stats.malformed
            );
        }
        assert_eq!(stats.resyncs, 2);
    }

    #[test]
    fn gap_in_a_body_of_known_length_keeps_step() {
        let r1 = post(&msg("lost", 300));
        let m2 = msg("kept", 10);
        let r2 = post(&m2);
        let mut stats = JxtaStats::default();
        let mut p = HttpParser::new(Role::Request, &StreamConfig::default());
        let mut got = Vec::new();
        p.push(&r1[..150], 1, &mut stats, &mut |m| {
            got.push(m.body.to_vec())
        });
        p.gap(100, &mut stats);
        p.push(&r1[250..], 2, &mut stats, &mut |m| {
            got.push(m.body.to_vec())
        });
        p.push(&r2, 3, &mut stats, &mut |m| got.push(m.body.to_vec()));
        assert_eq!(got, vec![m2]);
        assert_eq!(
            (stats.gaps, stats.truncated_messages, stats.resyncs),
            (1, 1, 0)
        );
        // A gap in a head: the next request is found again.
        let m3 = msg("again", 5);
        p.push(&r2[..20], 4, &mut stats, &mut |_| {});
        p.gap(10, &mut stats);
        let mut rest = b"garbage\r\n".to_vec();
        rest.extend_from_slice(&post(&m3));
        p.push(&rest, 5, &mut stats, &mut |m| got.push(m.body.to_vec()));
        assert_eq!(got.last(), Some(&m3));
        assert_eq!(stats.resyncs, 1);
    }

    #[test]
    fn oversized_head_is_bounded() {
        let mut stats = JxtaStats::default();
        let mut p = HttpParser::new(Role::Request, &StreamConfig::default());
        p.mark_jxta();
        p.push(b"POST / HTTP/1.1\r\nX: ", 1, &mut stats, &mut |_| {});
        for _ in 0..40 {
            p.push(&[b'a'; 1000], 1, &mut stats, &mut |_| {});
            assert!(p.buffered() <= MAX_HEAD + 1000);
        }
        assert_eq!(stats.malformed.get(&Malformed::HttpHeadTooLarge), Some(&1));
    }

    proptest::proptest! {
        #[test]
        fn split_anywhere_same_messages(cuts in proptest::collection::vec(0usize..2000, 0..10), chunked in proptest::bool::ANY) {
            let msgs = [msg("a", 10), msg("b", 300), msg("c", 0)];
            let mut data = Vec::new();
            if chunked {
                data.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\n");
                let all: Vec<u8> = msgs.concat();
                for c in all.chunks(97) {
                    data.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    data.extend_from_slice(c);
                    data.extend_from_slice(b"\r\n");
                }
                data.extend_from_slice(b"0\r\n\r\n");
            } else {
                for m in &msgs {
                    data.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: {}\r\n\r\n", m.len()).as_bytes());
                    data.extend_from_slice(m);
                }
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            cuts.sort_unstable();
            let mut p = HttpParser::new(Role::Response, &StreamConfig::default());
            let mut stats = JxtaStats::default();
            let mut got = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                p.push(&data[prev..c], c as u64, &mut stats, &mut |m| got.push(m.body.to_vec()));
                prev = c;
            }
            proptest::prop_assert_eq!(got, msgs.to_vec());
            proptest::prop_assert_eq!(stats.malformed_total(), 0);
        }

        #[test]
        fn hostile_pushes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20),
            response in proptest::bool::ANY,
            prefix in 0usize..4,
            gap_at in 0usize..25,
        ) {
            let role = if response { Role::Response } else { Role::Request };
            let cfg = StreamConfig { max_message: 4096, max_resync_scan: 2048 };
            let mut p = HttpParser::new(role, &cfg);
            let mut stats = JxtaStats::default();
            let heads: [&[u8]; 4] = [
                b"",
                b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg\r\n\r\njxmg\x00",
                b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: 100\r\n\r\njxmg\x00\x00",
            ];
            p.push(heads[prefix], 0, &mut stats, &mut |_| {});
            for (i, c) in chunks.iter().enumerate() {
                if i == gap_at {
                    p.gap(c.len() as u64 + 1, &mut stats);
                }
                p.push(c, i as u64, &mut stats, &mut |m| {
                    assert!(m.start <= m.stop);
                    let _ = crate::jxta::decode_message(m.body);
                });
                proptest::prop_assert!(p.buffered() <= 4096 + MAX_HEAD + 600);
            }
            p.finish(&mut stats);
        }
    }
}
