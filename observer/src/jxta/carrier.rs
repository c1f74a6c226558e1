//! One direction of a TCP connection, whichever JXTA transport it carries: the TCP
//! transport (welcome line, message packages; [`StreamParser`]) or the HTTP transport
//! ([`HttpParser`]). The first bytes decide, by content, on any port.

use super::http::{sniff, HttpParser, Sniff};
use super::stream::{StreamConfig, StreamEvent, StreamParser, StreamStart};
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
    Sniffing {
        start: StreamStart,
        cfg: StreamConfig,
        held: Vec<(Vec<u8>, UnixNanos)>,
    },
    Tcp(StreamParser),
    Http(HttpParser),
}

#[derive(Debug)]
pub struct DirParser {
    inner: Inner,
}

impl DirParser {
    pub fn new(start: StreamStart, cfg: &StreamConfig) -> Self {
        DirParser {
            inner: Inner::Sniffing {
                start,
                cfg: cfg.clone(),
                held: Vec::new(),
            },
        }
    }

    pub fn is_jxta(&self) -> Option<bool> {
        match &self.inner {
            Inner::Sniffing { .. } => None,
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
            Inner::Sniffing { held, .. } => held.iter().map(|h| h.1).min(),
            Inner::Tcp(p) => p.oldest_buffered(),
            Inner::Http(p) => p.oldest_buffered(),
        }
    }

    pub fn buffered(&self) -> usize {
        match &self.inner {
            Inner::Sniffing { held, .. } => held.iter().map(|h| h.0.len()).sum(),
            Inner::Tcp(p) => p.buffered(),
            Inner::Http(p) => p.buffered(),
        }
    }

    pub fn push(
        &mut self,
        data: &[u8],
        first_seen: UnixNanos,
        stats: &mut JxtaStats,
        out: &mut impl FnMut(StreamEvent<'_>, Carrier),
    ) {
        if data.is_empty() {
            return;
        }
        if let Inner::Sniffing { start, cfg, held } = &mut self.inner {
            let mut prefix: Vec<u8> = held.iter().flat_map(|h| h.0.iter().copied()).collect();
            prefix.extend_from_slice(data.get(..SNIFF_MAX).unwrap_or(data));
            let inner = match sniff(&prefix) {
                Sniff::NeedMore => {
                    held.push((data.to_vec(), first_seen));
                    return;
                }
                Sniff::Http(role) => Inner::Http(HttpParser::new(role, cfg)),
                Sniff::NotHttp => Inner::Tcp(StreamParser::new(*start, cfg)),
            };
            let held = std::mem::take(held);
            self.inner = inner;
            for (bytes, ts) in held {
                self.push(&bytes, ts, stats, out);
            }
        }
        match &mut self.inner {
            Inner::Sniffing { .. } => {}
            Inner::Tcp(p) => p.push(data, first_seen, stats, &mut |e| out(e, Carrier::Tcp)),
            Inner::Http(p) => p.push(data, first_seen, stats, &mut |m| {
                out(StreamEvent::Message(m), Carrier::Http)
            }),
        }
    }

    pub fn gap(&mut self, len: u64, stats: &mut JxtaStats) {
        match &mut self.inner {
            Inner::Sniffing { cfg, held, .. } => {
                // What was held cannot be told apart any more: resynchronise as TCP
                // would on a flow joined mid-stream.
                stats.skipped_bytes += held.iter().map(|h| h.0.len() as u64).sum::<u64>();
                let mut p = StreamParser::new(StreamStart::MidStream, cfg);
                p.gap(len, stats);
                self.inner = Inner::Tcp(p);
            }
            Inner::Tcp(p) => p.gap(len, stats),
            Inner::Http(p) => p.gap(len, stats),
        }
    }

    pub fn finish(&mut self, stats: &mut JxtaStats) {
        match &mut self.inner {
            Inner::Sniffing { start, cfg, held } => {
                // A few bytes only: hand them to the TCP parser, which decides.
                let mut p = StreamParser::new(*start, cfg);
                for (bytes, ts) in std::mem::take(held) {
                    p.push(&bytes, ts, stats, &mut |_| {});
                }
                p.finish(stats);
                self.inner = Inner::Tcp(p);
            }
            Inner::Tcp(p) => p.finish(stats),
            Inner::Http(p) => p.finish(stats),
        }
    }
}
