//! One direction of a TCP connection, whichever JXTA transport it carries: the TCP
//! transport (welcome line, message packages; [`StreamParser`]) or the HTTP transport
//! ([`HttpParser`]). The first bytes decide, by content, on any port.

use super::http::{find_join, sniff, HttpParser, Sniff};
use super::stream::{
    whole_jxse_package, FramedMessage, StreamConfig, StreamEvent, StreamParser, StreamStart,
};
use super::welcome::WELCOME_SIGNATURE;
use super::JxtaStats;
use crate::UnixNanos;

/// Which transport a message came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Tcp,
    Http,
}

/// Longest prefix [`sniff`] may need (`OPTIONS ` / `CONNECT `).
const SNIFF_MAX: usize = 8;

#[derive(Debug)]
enum Inner {
    /// Too few bytes to tell: the pushes so far, replayed once it is known.
    Sniffing { start: StreamStart, held: Held },
    /// A TCP transport parser in sync between two messages, where a connection
    /// spends nearly all its life: nothing held ([`StreamParser::resting`]); a parser
    /// is made again for the next bytes. Every direction of 100,000 connections held a
    /// 104-byte parser inline before.
    Resting,
    /// A direction finished at rest: what a resumed parser finished would be (dead, in
    /// sync, holding nothing), without its box. Finishing made and boxed that parser
    /// for each direction at every connection's close, to be freed with the flow a
    /// moment later.
    Finished,
    /// Boxed, and freed when it comes to rest (see `Resting`).
    Tcp(Box<StreamParser>),
    /// Boxed: the HTTP transport is the rare one, and every direction of every
    /// connection would otherwise be the size of its parser.
    Http(Box<HttpParser>),
}

/// Pushes too short to tell the transport by, rare: boxed, so that a direction is the
/// size of its configuration before its first byte too.
type Held = Option<Box<Vec<(Vec<u8>, UnixNanos)>>>;

fn held_pushes(held: &Held) -> impl Iterator<Item = &(Vec<u8>, UnixNanos)> {
    held.iter().flat_map(|h| h.iter())
}

/// Whether the capture began after the connection did is kept by the TCP parser (the
/// only one that asks). The configuration is the caller's, passed in with the bytes:
/// a copy in each direction of 100,000 connections was 3.2 MB, and what put a flow
/// in jemalloc's 640-byte class rather than its 512.
#[derive(Debug)]
pub struct DirParser {
    inner: Inner,
}

impl DirParser {
    pub fn new(start: StreamStart) -> Self {
        DirParser {
            inner: Inner::Sniffing { start, held: None },
        }
    }

    pub fn is_jxta(&self) -> Option<bool> {
        match &self.inner {
            Inner::Sniffing { .. } => None,
            Inner::Resting | Inner::Finished => Some(true),
            Inner::Tcp(p) => p.is_jxta(),
            Inner::Http(p) => p.is_jxta(),
        }
    }

    /// The other direction of the connection was recognised as JXTA.
    pub fn peer_is_jxta(&mut self) {
        if let Inner::Http(p) = &mut self.inner {
            p.mark_jxta();
        }
    }

    pub fn oldest_buffered(&self) -> Option<UnixNanos> {
        match &self.inner {
            Inner::Sniffing { held, .. } => held_pushes(held).map(|h| h.1).min(),
            Inner::Resting | Inner::Finished => None,
            Inner::Tcp(p) => p.oldest_buffered(),
            Inner::Http(p) => p.oldest_buffered(),
        }
    }

    /// Whether it holds bytes: `oldest_buffered().is_some()`, without the minimum
    /// (asked of both directions of a connection for every segment).
    pub fn holds(&self) -> bool {
        match &self.inner {
            Inner::Sniffing { held, .. } => held_pushes(held).next().is_some(),
            Inner::Resting | Inner::Finished => false,
            Inner::Tcp(p) => p.holds(),
            Inner::Http(p) => p.oldest_buffered().is_some(),
        }
    }

    pub fn buffered(&self) -> usize {
        match &self.inner {
            Inner::Sniffing { held, .. } => held_pushes(held).map(|h| h.0.len()).sum(),
            Inner::Resting | Inner::Finished => 0,
            Inner::Tcp(p) => p.buffered(),
            Inner::Http(p) => p.buffered(),
        }
    }

    pub fn push(
        &mut self,
        data: &[u8],
        first_seen: UnixNanos,
        cfg: &StreamConfig,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(&StreamEvent<'_>, Carrier),
    ) {
        if data.is_empty() {
            return;
        }
        if let Inner::Sniffing { start, held } = &mut self.inner {
            let head = data.get(..SNIFF_MAX).unwrap_or(data);
            let verdict = if held.is_none() {
                // The first push, nearly always long enough: no prefix to build. A
                // welcome line is no HTTP (`a_welcome_is_not_http`): not compared with
                // every method, twice a connection.
                if data.starts_with(WELCOME_SIGNATURE) {
                    Sniff::NotHttp
                } else {
                    sniff(head)
                }
            } else {
                let mut prefix: Vec<u8> = held_pushes(held)
                    .flat_map(|h| h.0.iter().copied())
                    .collect();
                prefix.extend_from_slice(head);
                sniff(&prefix)
            };
            if held.is_none()
                && *start == StreamStart::Beginning
                && matches!(verdict, Sniff::NotHttp)
            {
                // A connection's first bytes, seen from its start: as a parser at rest
                // would (below), the parser is kept on the stack and boxed only if it
                // holds something after them, which the welcome line alone does not.
                self.push_from(
                    StreamParser::new(StreamStart::Beginning, cfg),
                    data,
                    first_seen,
                    stats,
                    out,
                );
                return;
            }
            let inner = match verdict {
                Sniff::NeedMore => {
                    held.get_or_insert_with(Box::default)
                        .push((data.to_vec(), first_seen));
                    return;
                }
                Sniff::Http(role) => Inner::Http(Box::new(HttpParser::new(role, cfg))),
                Sniff::NotHttp => Inner::Tcp(Box::new(StreamParser::new(*start, cfg))),
            };
            let held = held.take().map(|h| *h).unwrap_or_default();
            self.inner = inner;
            for (bytes, ts) in held {
                self.push(&bytes, ts, cfg, stats, out);
            }
        }
        if let Inner::Tcp(p) = &self.inner {
            if p.began_mid_stream() && p.is_jxta().is_none() {
                // Joined inside an HTTP body, the TCP parser looks for packages in
                // vain: the next request or response head puts HTTP back in charge.
                if let Some((i, role)) = find_join(data) {
                    stats.resyncs += 1;
                    stats.skipped_bytes += i as u64;
                    self.inner = Inner::Http(Box::new(HttpParser::new(role, cfg)));
                    let rest = data.get(i..).unwrap_or_default();
                    self.push(rest, first_seen, cfg, stats, out);
                    return;
                }
            }
        }
        match &mut self.inner {
            // A finished parser takes no more bytes (`Mode::Dead`).
            Inner::Sniffing { .. } | Inner::Finished => {}
            Inner::Resting => {
                // Most pushes carry whole messages of JXSE's: framed here as the
                // parser at rest would frame them (`resting_pushes_frame_as_a_kept_parser`),
                // the whole push first seen at one time. Made, run and dropped for
                // them, a parser cost ~150 instructions a push.
                let mut rest = data;
                while let Some((header, body, total)) = whole_jxse_package(rest, cfg.max_message) {
                    // Lent to the callback, built where it reads it: moved into it by
                    // value, it was copied again there to be lent on to the handler.
                    let framed = StreamEvent::Message(FramedMessage {
                        start: first_seen,
                        stop: first_seen,
                        framed_len: total as u64,
                        header,
                        body,
                    });
                    out(&framed, Carrier::Tcp);
                    rest = rest.get(total..).unwrap_or_default();
                }
                // Anything else (a cut package, other headers, too large) goes to the
                // parser, which comes to rest again without leaving the stack if it can.
                if !rest.is_empty() {
                    self.push_from(StreamParser::resume(cfg), rest, first_seen, stats, out);
                }
            }
            Inner::Tcp(p) => {
                p.push(data, first_seen, stats, &mut |e| out(&e, Carrier::Tcp));
                if p.resting() {
                    self.inner = Inner::Resting;
                }
            }
            Inner::Http(p) => {
                p.push(data, first_seen, stats, &mut |m| {
                    out(&StreamEvent::Message(m), Carrier::Http)
                });
                if p.refused() {
                    // Not HTTP after all (bytes of a stream joined mid-way that only
                    // looked like a request line): the TCP transport's parser takes
                    // over and resynchronises on the next package.
                    self.inner =
                        Inner::Tcp(Box::new(StreamParser::new(StreamStart::MidStream, cfg)));
                }
            }
        }
    }

    /// Pushes into `p`, a parser on the stack, kept (boxed) only if it does not come
    /// to rest.
    fn push_from(
        &mut self,
        mut p: StreamParser,
        data: &[u8],
        first_seen: UnixNanos,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(&StreamEvent<'_>, Carrier),
    ) {
        p.push(data, first_seen, stats, &mut |e| out(&e, Carrier::Tcp));
        if !p.resting() {
            self.inner = Inner::Tcp(Box::new(p));
        } else if !matches!(self.inner, Inner::Resting) {
            // Written only when it changes: dropping what it replaced was a call a push.
            self.inner = Inner::Resting;
        }
    }

    pub fn gap(&mut self, len: u64, cfg: &StreamConfig, stats: &mut JxtaStats) {
        match &mut self.inner {
            Inner::Sniffing { held, .. } => {
                // What was held cannot be told apart any more: resynchronise as TCP
                // would on a flow joined mid-stream.
                stats.skipped_bytes += held_pushes(held).map(|h| h.0.len() as u64).sum::<u64>();
                let mut p = StreamParser::new(StreamStart::MidStream, cfg);
                p.gap(len, stats);
                self.inner = Inner::Tcp(Box::new(p));
            }
            Inner::Resting => {
                let mut p = StreamParser::resume(cfg);
                p.gap(len, stats);
                self.inner = Inner::Tcp(Box::new(p));
            }
            Inner::Finished => finished_parser(cfg).gap(len, stats),
            Inner::Tcp(p) => p.gap(len, stats),
            Inner::Http(p) => p.gap(len, stats),
        }
    }

    pub fn finish(&mut self, cfg: &StreamConfig, stats: &mut JxtaStats) {
        match &mut self.inner {
            Inner::Sniffing { start, held } => {
                // A few bytes only: hand them to the TCP parser, which decides.
                let mut p = StreamParser::new(*start, cfg);
                for (bytes, ts) in held.take().map(|h| *h).unwrap_or_default() {
                    p.push(&bytes, ts, stats, &mut |_| {});
                }
                p.finish(stats);
                self.inner = Inner::Tcp(Box::new(p));
            }
            // A parser at rest holds nothing and is in sync: its finish counts nothing
            // (`a_direction_finished_at_rest_is_the_boxed_parser`), and a second finish
            // neither.
            Inner::Resting => self.inner = Inner::Finished,
            Inner::Finished => {}
            Inner::Tcp(p) => p.finish(stats),
            Inner::Http(p) => p.finish(stats),
        }
    }
}

/// The parser an [`Inner::Finished`] direction stands for, made for the rare call
/// after a finish.
fn finished_parser(cfg: &StreamConfig) -> StreamParser {
    let mut p = StreamParser::resume(cfg);
    p.finish(&mut JxtaStats::default());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::framing::{encode_package, HeaderOrder};
    use crate::jxta::message::{encode_message_v0, OwnedElement};
    use crate::jxta::stream::DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_MAX;

    fn package(tag: &str) -> (Vec<u8>, Vec<u8>) {
        let body = encode_message_v0(&[OwnedElement::new("", "payload", None, tag)]);
        let mut framed = Vec::new();
        encode_package(&body, HeaderOrder::TypeFirst, None, &mut framed);
        (framed, body)
    }

    fn run(
        start: StreamStart,
        pushes: &[&[u8]],
    ) -> (Vec<(Vec<u8>, Carrier)>, DirParser, JxtaStats) {
        let mut p = DirParser::new(start);
        let mut stats = JxtaStats::default();
        let mut got = Vec::new();
        for (i, d) in pushes.iter().enumerate() {
            p.push(
                d,
                i as u64,
                &StreamConfig::default(),
                &mut stats,
                &mut |e, c| {
                    if let StreamEvent::Message(m) = e {
                        got.push((m.body.to_vec(), c));
                    }
                },
            );
            assert_eq!(p.holds(), p.oldest_buffered().is_some(), "push {i}");
        }
        (got, p, stats)
    }

    /// What lets the first push of a welcome line skip `sniff`: whatever follows the
    /// signature, its first bytes are no HTTP.
    #[test]
    fn a_welcome_is_not_http() {
        for n in 1..=WELCOME_SIGNATURE.len() {
            assert_eq!(sniff(&WELCOME_SIGNATURE[..n]), Sniff::NotHttp, "{n}");
        }
        let line = crate::jxta::welcome::test_welcome();
        let (got, p, stats) = run(StreamStart::Beginning, &[&line]);
        assert!(got.is_empty());
        assert_eq!((p.is_jxta(), stats.welcomes), (Some(true), 1));
    }

    /// A direction between messages keeps its configuration only; what it frames,
    /// when and how it is timed, is what a parser kept all along frames.
    #[test]
    fn a_direction_at_rest_holds_no_parser_and_frames_the_same() {
        assert!(std::mem::size_of::<DirParser>() <= 16);
        let mut wire = crate::jxta::welcome::test_welcome();
        let mut cuts = vec![wire.len()];
        for tag in ["one", "two", "three"] {
            wire.extend_from_slice(&package(tag).0);
            cuts.push(wire.len());
        }
        // The welcome line and whole messages, then the last message split in three.
        let split = cuts[2] + (cuts[3] - cuts[2]) / 3;
        let bounds = [0, cuts[0], cuts[1], cuts[2], split, split + 5, cuts[3]];
        let pushes: Vec<&[u8]> = bounds.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
        let cfg = StreamConfig::default();
        let mut p = DirParser::new(StreamStart::Beginning);
        let mut kept = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let (mut stats, mut kept_stats) = (JxtaStats::default(), JxtaStats::default());
        let mut rested = Vec::new();
        for (i, d) in pushes.iter().enumerate() {
            let ts = 10 * i as u64;
            let (mut got, mut want) = (Vec::new(), Vec::new());
            p.push(d, ts, &cfg, &mut stats, &mut |e, _| {
                if let StreamEvent::Message(m) = e {
                    got.push((m.body.to_vec(), m.start, m.stop));
                }
            });
            kept.push(d, ts, &mut kept_stats, &mut |e| {
                if let StreamEvent::Message(m) = e {
                    want.push((m.body.to_vec(), m.start, m.stop));
                }
            });
            assert_eq!(got, want);
            assert_eq!(p.is_jxta(), kept.is_jxta());
            rested.push(matches!(p.inner, Inner::Resting));
        }
        assert_eq!(rested, [true, true, true, false, false, true]);
        p.gap(7, &cfg, &mut stats);
        kept.gap(7, &mut kept_stats);
        p.finish(&cfg, &mut stats);
        kept.finish(&mut kept_stats);
        assert_eq!(
            serde_json::to_string(&stats).ok(),
            serde_json::to_string(&kept_stats).ok()
        );
    }

    proptest::proptest! {
        /// A direction at rest frames JXSE's packages itself: what it frames, how it
        /// is timed and counted, is what a parser kept all along does, for packages of
        /// both header orders, others (`srcEA`), too large ones and any cuts.
        #[test]
        fn resting_pushes_frame_as_a_kept_parser(
            packages in proptest::collection::vec((0usize..300, 0u8..3), 1..6),
            cuts in proptest::collection::vec(0usize..2000, 0..10),
            small_limit in proptest::bool::ANY,
        ) {
            let mut wire = crate::jxta::welcome::test_welcome();
            for (i, (pad, kind)) in packages.iter().enumerate() {
                let body = encode_message_v0(&[OwnedElement::new(
                    "",
                    "payload",
                    None,
                    format!("{i}{}", "x".repeat(*pad)),
                )]);
                let (order, ea) = match kind {
                    0 => (HeaderOrder::TypeFirst, None),
                    1 => (HeaderOrder::LengthFirst, None),
                    _ => (HeaderOrder::TypeFirst, Some("tcp://10.0.0.1:9701")),
                };
                encode_package(&body, order, ea, &mut wire);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % wire.len()).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let cfg = StreamConfig {
                max_message: if small_limit { 150 } else { DEFAULT_MAX },
                ..StreamConfig::default()
            };
            let mut p = DirParser::new(StreamStart::Beginning);
            let mut kept = StreamParser::new(StreamStart::Beginning, &cfg);
            let (mut stats, mut kept_stats) = (JxtaStats::default(), JxtaStats::default());
            let mut prev = 0;
            for (i, c) in cuts.into_iter().enumerate() {
                let d = &wire[prev..c];
                prev = c;
                let ts = 10 * i as u64;
                let (mut got, mut want) = (Vec::new(), Vec::new());
                p.push(d, ts, &cfg, &mut stats, &mut |e, _| {
                    if let StreamEvent::Message(m) = e {
                        got.push(format!("{m:?}"));
                    }
                });
                kept.push(d, ts, &mut kept_stats, &mut |e| {
                    if let StreamEvent::Message(m) = e {
                        want.push(format!("{m:?}"));
                    }
                });
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(p.is_jxta(), kept.is_jxta());
            }
            p.finish(&cfg, &mut stats);
            kept.finish(&mut kept_stats);
            proptest::prop_assert_eq!(
                serde_json::to_string(&stats).ok(),
                serde_json::to_string(&kept_stats).ok()
            );
        }
    }

    #[test]
    fn http_and_tcp_transports_are_told_apart_byte_by_byte() {
        let (framed, body) = package("tcp");
        let mut tcp = crate::jxta::welcome::test_welcome();
        tcp.extend_from_slice(&framed);
        let pushes: Vec<&[u8]> = tcp.chunks(1).collect();
        let (got, p, _) = run(StreamStart::Beginning, &pushes);
        assert_eq!(got, vec![(body.clone(), Carrier::Tcp)]);
        assert_eq!(p.is_jxta(), Some(true));

        let mut http = format!(
            "POST / HTTP/1.1\r\ncontent-type: application/x-jxta-msg\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        http.extend_from_slice(&body);
        let pushes: Vec<&[u8]> = http.chunks(1).collect();
        let (got, p, _) = run(StreamStart::Beginning, &pushes);
        assert_eq!(got, vec![(body, Carrier::Http)]);
        assert_eq!(p.is_jxta(), Some(true));
    }

    #[test]
    fn mid_stream_bytes_that_only_look_like_http_go_to_the_tcp_parser() {
        let (framed, body) = package("after");
        let mut data = b"GET \x00\x01\x02 not a request line\r\n\r\n".to_vec();
        data.extend_from_slice(&framed);
        let (got, p, stats) = run(StreamStart::MidStream, &[&data[..30], &data[30..]]);
        assert_eq!(got, vec![(body, Carrier::Tcp)]);
        assert_eq!(p.is_jxta(), Some(true));
        assert_eq!(stats.non_jxta_streams, 0);
    }

    #[test]
    fn joined_inside_a_body_the_next_head_brings_http_back() {
        let (_, body) = package("next");
        let mut data = b"\x00\x01 tail of an earlier message\r\n0\r\n\r\n".to_vec();
        data.extend_from_slice(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        data.extend_from_slice(&body);
        let (got, p, stats) = run(StreamStart::MidStream, &[&data[..10], &data[10..]]);
        assert_eq!(got, vec![(body, Carrier::Http)]);
        assert_eq!(p.is_jxta(), Some(true));
        assert_eq!(stats.resyncs, 1);
        // Only for a stream joined mid-way: from its beginning it is TCP's.
        let (got, _, _) = run(StreamStart::Beginning, &[&data[..10], &data[10..]]);
        assert!(got.is_empty());
    }

    /// A direction finished at rest answers, counts and takes bytes and gaps as the
    /// boxed parser finishing made of it before: the same stats after every call.
    #[test]
    fn a_direction_finished_at_rest_is_the_boxed_parser() {
        let cfg = StreamConfig::default();
        let (framed, _) = package("rest");
        let mut wire = crate::jxta::welcome::test_welcome();
        wire.extend_from_slice(&framed);
        let (_, mut p, mut stats) = run(StreamStart::Beginning, &[&wire]);
        assert!(matches!(p.inner, Inner::Resting));
        let mut boxed_stats = stats.clone();
        let mut resumed = StreamParser::resume(&cfg);
        resumed.finish(&mut boxed_stats);
        let mut boxed = DirParser {
            inner: Inner::Tcp(Box::new(resumed)),
        };
        p.finish(&cfg, &mut stats);
        assert!(matches!(p.inner, Inner::Finished));
        let same = |p: &DirParser, b: &DirParser, s: &JxtaStats, bs: &JxtaStats| {
            assert_eq!(p.is_jxta(), b.is_jxta());
            assert_eq!(p.holds(), b.holds());
            assert_eq!(p.buffered(), b.buffered());
            assert_eq!(p.oldest_buffered(), b.oldest_buffered());
            assert_eq!(
                serde_json::to_string(s).ok(),
                serde_json::to_string(bs).ok()
            );
        };
        same(&p, &boxed, &stats, &boxed_stats);
        for step in 0..5 {
            let (mut got, mut want) = (0, 0);
            match step {
                0 => {
                    p.push(&framed, 9, &cfg, &mut stats, &mut |_, _| got += 1);
                    boxed.push(&framed, 9, &cfg, &mut boxed_stats, &mut |_, _| want += 1);
                }
                1 => {
                    p.gap(7, &cfg, &mut stats);
                    boxed.gap(7, &cfg, &mut boxed_stats);
                }
                2 => {
                    p.gap(0, &cfg, &mut stats);
                    boxed.gap(0, &cfg, &mut boxed_stats);
                }
                3 => {
                    p.peer_is_jxta();
                    boxed.peer_is_jxta();
                }
                _ => {
                    p.finish(&cfg, &mut stats);
                    boxed.finish(&cfg, &mut boxed_stats);
                }
            }
            assert_eq!(got, want, "{step}");
            same(&p, &boxed, &stats, &boxed_stats);
        }
        assert_eq!(stats.gaps, 1);
    }

    #[test]
    fn the_other_direction_makes_an_empty_polling_channel_jxta() {
        let (_, mut p, mut stats) = run(
            StreamStart::Beginning,
            &[b"HTTP/1.1 204 No Content\r\n\r\n"],
        );
        assert_eq!(p.is_jxta(), None);
        p.peer_is_jxta();
        assert_eq!(p.is_jxta(), Some(true));
        p.finish(&StreamConfig::default(), &mut stats);
        assert_eq!(stats.non_jxta_streams, 0);
    }
}
