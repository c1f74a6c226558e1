//! What happens to each framed JXTA message: decoding, the JIM documents it carries,
//! and where those go ([`DocumentSink`]: a matcher here, or a queue for the thread
//! that owns the matcher).

use std::borrow::Cow;
use std::net::SocketAddr;

use super::record::{record, MessageRecord};
use crate::jim::{self, Document, JimStats, Kind};
use crate::jxta::flow::{FlowMessage, Handled, MessageHandler};
use crate::jxta::{self, Carrier, FramedMessage, JxtaStats, PeerId};
use crate::transaction::cause::{self, LentNotes, WireNotes};
use crate::transaction::{Matcher, Sighting, Transaction, Transport};
use crate::UnixNanos;

/// What the decoding stages hand to the matcher.
#[derive(Debug)]
pub enum MatchEvent {
    Document(Box<(Document, Sighting)>),
    Malformed,
}

/// A [`MatchEvent`] with where it happened, so that events from several shards can
/// be put back in the order one pipeline would have produced them: by frame, and at
/// the end of the input (frame `u64::MAX`) by flow, in the order flows appeared.
#[derive(Debug)]
pub struct Matched {
    pub frame: u64,
    pub flow: u64,
    pub now: UnixNanos,
    pub event: MatchEvent,
}

/// Where the documents of a pipeline go.
pub enum DocumentSink {
    /// One pipeline: matched here, finished transactions collected for release.
    Match {
        matcher: Matcher,
        finished: Vec<Transaction>,
    },
    /// A shard of a parallel analysis: queued for the thread that owns the matcher
    /// (see `engine::parallel`). `idle` sees no document: it stands for the shard's
    /// matcher in its counters and result, which the merging thread's replaces.
    /// `spare`: boxes the matcher is done with, handed back, each refilled with a
    /// later document (the document the box still holds is swapped out, to be refilled
    /// by the next document decoded on this thread; its sighting likewise, written
    /// over by the next document's).
    Queue {
        queue: Vec<Matched>,
        idle: Matcher,
        spare: Vec<Box<(Document, Sighting)>>,
    },
    /// A listing (`observer messages`): documents are neither decoded nor matched, so
    /// nothing is kept per transaction; `idle` stands for the matcher as in `Queue`.
    Discard { idle: Matcher },
}

impl DocumentSink {
    /// Moves capture time: PINGs waiting too long time out.
    pub(crate) fn advance(&mut self, now: UnixNanos) {
        if let DocumentSink::Match { matcher, finished } = self {
            matcher.advance(now, finished);
        }
    }

    /// Inlined: a queue's push behind a call was ~30 instructions a document on a
    /// shard (docs/performance.md, stop 31, thr20); `#[inline]` alone left the call.
    #[inline(always)]
    fn event(&mut self, at: (u64, UnixNanos), flow: Option<u64>, event: MatchEvent) {
        match self {
            DocumentSink::Match { matcher, finished } => match event {
                MatchEvent::Document(mut d) => {
                    let (doc, s) = &mut *d;
                    matcher.observe_taking(doc, s, finished)
                }
                MatchEvent::Malformed => matcher.count_malformed(),
            },
            DocumentSink::Queue { queue, .. } => queue.push(Matched {
                frame: at.0,
                flow: flow.unwrap_or(0),
                now: at.1,
                event,
            }),
            DocumentSink::Discard { .. } => {}
        }
    }

    /// A decoded document: matched in place, boxed only for a queue (a pipeline that
    /// matches here would otherwise allocate and free one box per document). The
    /// matcher takes what it keeps through references: the two passed by value to
    /// `observe_owned`, not inlined, were copied (~40 instructions each a document).
    /// For a queue, `doc` is left empty or holding an earlier document, whose strings
    /// the next document decoded reuses.
    /// The sighting is lent as the document is: passed by value, even inlined into its
    /// one caller, it was copied (`memcpy`, ~63 instructions a document). For a queue,
    /// `s` is left with what the refilled box held, or emptied ([`emptied`]).
    #[inline]
    fn document(
        &mut self,
        at: (u64, UnixNanos),
        flow: Option<u64>,
        doc: &mut Document,
        s: &mut Sighting,
    ) {
        match self {
            DocumentSink::Match { matcher, finished } => matcher.observe_taking(doc, s, finished),
            DocumentSink::Queue { spare, .. } => {
                // A box taken back and refilled: a box allocated here and freed after
                // the matcher was done with it cost ~200 instructions a document
                // (docs/performance.md, stop 29, threads18e).
                let boxed = match spare.pop() {
                    // The document swapped in (the box's old one left to the caller
                    // to refill) and the sighting likewise (to be written over): the
                    // pair built apart and moved in whole were ~3 `memcpy` calls a
                    // document.
                    Some(mut b) => {
                        let (d, sighting) = &mut *b;
                        swap_by_copies(d, doc);
                        swap_by_copies(sighting, s);
                        // The old PING's delivery cell let go now, not at the next
                        // document: held, its watch list could not take it back. A
                        // cell the matcher handed back in the box (see `merge`) is
                        // kept for this thread's next PING.
                        if let Some(cell) = s.wire.delivery.take() {
                            cause::spare_delivery(cell);
                        }
                        b
                    }
                    None => Box::new((std::mem::take(doc), emptied(s))),
                };
                self.event(at, flow, MatchEvent::Document(boxed))
            }
            DocumentSink::Discard { .. } => {}
        }
    }

    pub(crate) fn matcher(&self) -> &Matcher {
        match self {
            DocumentSink::Match { matcher, .. }
            | DocumentSink::Queue { idle: matcher, .. }
            | DocumentSink::Discard { idle: matcher } => matcher,
        }
    }

    pub(crate) fn oldest_outstanding(&mut self) -> Option<UnixNanos> {
        match self {
            DocumentSink::Match { matcher, .. }
            | DocumentSink::Queue { idle: matcher, .. }
            | DocumentSink::Discard { idle: matcher } => matcher.oldest_outstanding(),
        }
    }

    /// Hands over the finished transactions, keeping the buffer (taking it cost an
    /// allocation for the next transaction).
    pub(crate) fn drain_finished(&mut self, out: impl FnMut(Transaction)) {
        if let DocumentSink::Match { finished, .. } = self {
            finished.drain(..).for_each(out);
        }
    }

    pub(crate) fn take_finished(&mut self) -> Vec<Transaction> {
        match self {
            DocumentSink::Match { finished, .. } => std::mem::take(finished),
            DocumentSink::Queue { .. } | DocumentSink::Discard { .. } => Vec::new(),
        }
    }

    pub(crate) fn take_queued(&mut self) -> Vec<Matched> {
        match self {
            DocumentSink::Queue { queue, .. } => {
                // The next batch's queue made at this one's size: grown by push from
                // empty, it was reallocated ~7 times a batch (~1.3 M instructions a
                // shard on jxta-0.1g).
                let room = queue.len();
                std::mem::replace(queue, Vec::with_capacity(room))
            }
            DocumentSink::Match { .. } | DocumentSink::Discard { .. } => Vec::new(),
        }
    }

    /// Boxes of documents the matcher is done with, to be refilled; past `keep` boxes
    /// held, the rest are freed.
    #[allow(
        clippy::vec_box,
        reason = "the boxes are what is reused: each carries one document to the matcher"
    )]
    pub(crate) fn recycle(&mut self, mut boxes: Vec<Box<(Document, Sighting)>>, keep: usize) {
        let DocumentSink::Queue { spare, .. } = self else {
            return;
        };
        if spare.is_empty() {
            *spare = boxes;
        } else {
            spare.append(&mut boxes);
        }
        spare.truncate(keep);
    }

    pub(crate) fn is_queue(&self) -> bool {
        matches!(self, DocumentSink::Queue { .. })
    }

    /// End of input: PINGs still waiting become `timeout` or `open`; the matcher and
    /// every transaction it finished.
    pub(crate) fn finish(self, now: UnixNanos) -> (Matcher, Vec<Transaction>) {
        match self {
            DocumentSink::Match {
                mut matcher,
                mut finished,
            } => {
                matcher.finish(now, &mut finished);
                (matcher, finished)
            }
            DocumentSink::Queue { idle, .. } | DocumentSink::Discard { idle } => (idle, Vec::new()),
        }
    }
}

/// `std::mem::swap` 16 bytes a step in vector registers, unrolled: the swap of a
/// document and its sighting into a spare box (184 and 280 bytes) was ~240
/// instructions a document on a shard, `mem::swap` going 8 bytes a step in a loop; by
/// three `memcpy` calls through a temporary, or in chunks of bytes (kept in memory
/// between their moves), it was more or barely less (docs/performance.md, stop 36,
/// read29).
#[inline(always)]
fn swap_by_copies<T>(a: &mut T, b: &mut T) {
    #[cfg(target_arch = "x86_64")]
    {
        // A vector type: moved in one register (`MaybeUninit` has its layout), where an
        // array of bytes went through the stack.
        type Chunk = std::mem::MaybeUninit<std::arch::x86_64::__m128i>;
        type Tail = std::mem::MaybeUninit<u8>;
        const { assert!(std::mem::size_of::<Chunk>() == 16) };
        let chunks = std::mem::size_of::<T>() / 16;
        let (pa, pb) = (
            std::ptr::from_mut(a).cast::<u8>(),
            std::ptr::from_mut(b).cast::<u8>(),
        );
        // SAFETY: `a` and `b` are two live `&mut T`, hence distinct and not overlapping,
        // each `size_of::<T>()` bytes: every read and write below is inside one of them
        // (the chunks below `chunks * 16`, the tail's bytes from there to the size),
        // unaligned where a chunk may be (`read_unaligned`, `write_unaligned`), of
        // `MaybeUninit`s, which copy any bytes, padding and pointers' provenance
        // included, as `mem::swap` does. Every byte is exchanged once, so each value
        // ends whole in the other's place, and nothing between the moves can panic
        // and leave a value half swapped (then dropped).
        unsafe {
            for i in 0..chunks {
                let (x, y) = (
                    pa.add(i * 16).cast::<Chunk>(),
                    pb.add(i * 16).cast::<Chunk>(),
                );
                let (t, u) = (x.read_unaligned(), y.read_unaligned());
                x.write_unaligned(u);
                y.write_unaligned(t);
            }
            for i in chunks * 16..std::mem::size_of::<T>() {
                let (x, y) = (pa.add(i).cast::<Tail>(), pb.add(i).cast::<Tail>());
                let (t, u) = (x.read(), y.read());
                x.write(u);
                y.write(t);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::mem::swap(a, b);
}

/// What `s` held, `s` left a sighting of nothing: the one a queue takes when it has
/// no box to refill.
fn emptied(s: &mut Sighting) -> Sighting {
    std::mem::replace(s, no_sighting())
}

/// A sighting of nothing (`Sighting` has no `Default`).
fn no_sighting() -> Sighting {
    Sighting {
        start: 0,
        stop: 0,
        src_peer: None,
        dst_peer: None,
        hop_src: None,
        hop_dst: None,
        framed_bytes: 0,
        message_bytes: 0,
        transport: Transport::Tcp,
        wire: WireNotes::default(),
    }
}

/// Where a message was seen, for the sighting and for `observer messages`.
pub(crate) struct Origin<'a> {
    pub transport: Transport,
    pub flow: Option<u64>,
    pub src: &'a dyn std::fmt::Display,
    pub dst: &'a dyn std::fmt::Display,
    /// Borrowed from the connection (TCP), learned here (HTTP): cloned only for a
    /// document's sighting.
    pub hop_src: Option<Cow<'a, PeerId>>,
    pub hop_dst: Option<Cow<'a, PeerId>>,
    /// HTTP transport: the two socket addresses, to learn and look up the hop
    /// identities (no welcome line there).
    pub http: Option<(SocketAddr, SocketAddr)>,
    /// The router document the flow direction sent last (none for UDP).
    pub router: Option<jxta::endpoint::DirRouter<'a>>,
}

/// Who speaks at a socket address of the HTTP transport, as one other host knows it:
/// (speaker's socket, listener's IP) → the speaker's peer ID, from the `<Last>` of the
/// router element of the messages it sends. Keyed by host pair so that every shard of
/// a parallel run learns exactly what one pipeline learns for its flows.
#[derive(Default)]
struct HttpHops {
    map: crate::FastMap<(SocketAddr, std::net::IpAddr), PeerId>,
}

/// Entries of [`HttpHops`]; past it nothing new is learned (hop identities only tell
/// relayed legs apart, and HTTP transports with that many peers are not seen).
const MAX_HTTP_HOPS: usize = 65_536;

impl HttpHops {
    /// The hop identities of a message sent from `src` to `dst`, learning the
    /// sender's from `last` (the router element's `<Last>`).
    fn hops(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        last: Option<PeerId>,
    ) -> (Option<PeerId>, Option<PeerId>) {
        let key = (src, dst.ip());
        let hop_src = match last {
            Some(l) => {
                if self.map.len() < MAX_HTTP_HOPS || self.map.contains_key(&key) {
                    self.map.insert(key, l.clone());
                }
                Some(l)
            }
            None => self.map.get(&key).cloned(),
        };
        (hop_src, self.map.get(&(dst, src.ip())).cloned())
    }
}

/// The message stage: every framed message, from TCP flows or UDP datagrams.
pub(crate) struct Documents {
    /// Counters of decoded messages (by transport, elements, element names).
    pub message_stats: JxtaStats,
    pub jim: JimStats,
    pub sink: DocumentSink,
    pub records: Option<Vec<MessageRecord>>,
    peers: jxta::PeerMemo,
    http_hops: HttpHops,
    /// Index (from 1) of the frame being processed and the capture time then.
    pub at: (u64, UnixNanos),
    max_document: usize,
    /// The last message's element buffer, emptied, for the next message.
    spare_elements: Vec<jxta::Element<'static>>,
    /// Every document is decoded here, then handed on: what the matcher leaves of it
    /// (its name, a PONG's correlator) is refilled by the next document, not freed
    /// and allocated again.
    doc: Document,
    /// Every document's sighting is written here, then lent to the sink as the
    /// document is: built for each document, its notes taken out of the lent ones,
    /// and dropped by a call after the matcher, it cost ~55 instructions a document
    /// more (docs/performance.md, stop 34, docs24). What the matcher leaves is dropped
    /// as the next document's parts are written over it.
    sighting: Sighting,
}

impl Documents {
    pub(crate) fn new(sink: DocumentSink, record_messages: bool, max_document: usize) -> Documents {
        Documents {
            message_stats: JxtaStats::default(),
            jim: JimStats::default(),
            sink,
            records: record_messages.then(Vec::new),
            peers: jxta::PeerMemo::default(),
            http_hops: HttpHops::default(),
            at: (0, 0),
            max_document,
            spare_elements: Vec::new(),
            doc: Document::default(),
            sighting: no_sighting(),
        }
    }

    /// Decodes one message and hands its documents on; what its connection's notes
    /// keep of it (a JXTA service message, see [`jxta::Shape::service`]; a PING).
    #[inline]
    pub(crate) fn decode(&mut self, framed: &FramedMessage<'_>, mut origin: Origin<'_>) -> Handled {
        // A datagram has no connection whose notes would be lent.
        self.decode_at(framed, &mut origin, &mut LentNotes::default())
    }

    /// [`Self::decode`] with the origin where its caller built it: passed by value to a
    /// function that is not inlined, it was copied (~30 instructions a message). `wire`
    /// is the message's notes (a connection's, lent; a datagram's, none), written into
    /// each document's sighting.
    fn decode_at(
        &mut self,
        framed: &FramedMessage<'_>,
        origin: &mut Origin<'_>,
        wire: &mut LentNotes<'_>,
    ) -> Handled {
        // `Element<'static>` is an `Element<'_>`: the spare buffer needs no recycling.
        let decoded = self
            .message_stats
            .decode_message(framed.body, std::mem::take(&mut self.spare_elements));
        if let Some(records) = &mut self.records {
            records.push(record(
                framed,
                origin,
                decoded.as_ref().ok(),
                decoded.as_ref().err(),
            ));
        }
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                self.message_stats.count_malformed(e.kind());
                return Handled::default();
            }
        };
        let handled = self.decoded(framed, origin, wire, &msg);
        self.spare_elements = msg.into_spare();
        handled
    }

    /// What [`Self::decode`] does with a message that decoded.
    fn decoded(
        &mut self,
        framed: &FramedMessage<'_>,
        origin: &mut Origin<'_>,
        notes: &mut LentNotes<'_>,
        msg: &jxta::Message<'_>,
    ) -> Handled {
        let udp = origin.transport == Transport::Udp;
        let shape = self.message_stats.count_message(msg, udp);
        if matches!(self.sink, DocumentSink::Discard { .. }) {
            return Handled::default();
        }
        let mut handled = Handled {
            service: shape.service,
            delivery: None,
        };
        if let Some((src, dst)) = origin.http {
            // The router element names the hop that sent this leg.
            let last = jxta::addressing(msg).last_hop;
            let (hop_src, hop_dst) = self.http_hops.hops(src, dst, last);
            (origin.hop_src, origin.hop_dst) = (hop_src.map(Cow::Owned), hop_dst.map(Cow::Owned));
        }
        // Only the end-to-end peers matter here; documents are rare among messages,
        // but when there are some the router element is looked up once per message.
        let mut peers: Option<(Option<PeerId>, Option<PeerId>)> = None;
        // The stack's own elements are passed over as the message's layout says.
        let mut payloads = shape.payloads(&msg.elements);
        while let Some(element) = payloads.next() {
            match jim::parse_for_matcher_into(element.content, self.max_document, &mut self.doc) {
                Ok(true) => {}
                Ok(false) => {
                    if looks_like_xml(element.content) {
                        self.jim.other_xml += 1;
                    }
                    continue;
                }
                Err(jim::JimError::TooLarge { kind, len, .. }) => {
                    let name = if element.namespace.is_empty() {
                        element.name.to_string()
                    } else {
                        format!("{}:{}", element.namespace, element.name)
                    };
                    tracing::debug!(
                        element = %name,
                        bytes = len,
                        max = self.max_document,
                        "JIM {} document larger than --max-document: not decoded",
                        kind.root_name()
                    );
                    self.jim.oversized_documents += 1;
                    let key = format!("{name} {}", kind.root_name());
                    self.jim.note_oversized(&key, 1, len as u64);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed JIM document");
                    self.jim.malformed += 1;
                    self.sink.event(self.at, origin.flow, MatchEvent::Malformed);
                    continue;
                }
            }
            let doc = &mut self.doc;
            self.jim.documents += 1;
            match doc.kind {
                Kind::Ping => self.jim.pings += 1,
                Kind::Pong => self.jim.pongs += 1,
                Kind::Message => self.jim.messages += 1,
            }
            // The message's last element that may hold a document takes what its
            // sighting needs from the origin; earlier ones copy it.
            let last = payloads.clone().next().is_none();
            let ends = peers.get_or_insert_with(|| self.peers.peers(msg, origin.router.as_mut()));
            // Every field named: one added to `Sighting` and not written here would
            // carry the previous document's value into this one.
            let Sighting {
                start,
                stop,
                src_peer,
                dst_peer,
                hop_src,
                hop_dst,
                framed_bytes,
                message_bytes,
                transport,
                wire,
            } = &mut self.sighting;
            (*start, *stop) = (framed.start, framed.stop);
            *framed_bytes = framed.framed_len;
            *message_bytes = framed.body.len() as u64;
            *transport = origin.transport;
            if last {
                (*src_peer, *dst_peer) = std::mem::take(ends);
                *hop_src = origin.hop_src.take().map(Cow::into_owned);
                *hop_dst = origin.hop_dst.take().map(Cow::into_owned);
            } else {
                *src_peer = ends.0.clone();
                *dst_peer = ends.1.clone();
                *hop_src = origin.hop_src.as_deref().cloned();
                *hop_dst = origin.hop_dst.as_deref().cloned();
            }
            notes.write(wire);
            if doc.kind == Kind::Ping && origin.transport != Transport::Udp {
                let cell = handled.delivery.get_or_insert_with(cause::delivery_cell);
                wire.delivery = Some(cell.clone());
            }
            self.sink
                .document(self.at, origin.flow, doc, &mut self.sighting);
        }
        handled
    }
}

impl MessageHandler for Documents {
    /// Inlined into the stream parser's loop: out of line it cost ~120 instructions a
    /// message.
    #[inline]
    fn message(&mut self, framed: &FramedMessage<'_>, mut at: FlowMessage<'_>) -> Handled {
        // Its addresses, hops and router borrowed; the connection's notes are lent apart
        // (`at.wire`): an empty set of notes in the origin, built and dropped for every
        // message, was ~80 instructions (docs/performance.md, stop 29, threads18e).
        // Dropped normally: forgetting it saved ~9 instructions a message, not worth a
        // leak the day a field comes to own.
        let mut origin = Origin {
            transport: match at.carrier {
                Carrier::Tcp => Transport::Tcp,
                Carrier::Http => Transport::Http,
            },
            flow: Some(at.flow),
            src: at.src,
            dst: at.dst,
            hop_src: at.router.hops[0].map(|h| Cow::Borrowed(&**h)),
            hop_dst: at.router.hops[1].map(|h| Cow::Borrowed(&**h)),
            // Not `then_some`: its two addresses were copied for every message.
            http: if at.carrier == Carrier::Http {
                Some((*at.src, *at.dst))
            } else {
                None
            },
            router: Some(at.router),
        };
        self.decode_at(framed, &mut origin, &mut at.wire)
    }
}

fn looks_like_xml(content: &[u8]) -> bool {
    let trimmed = content
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(content)
        .trim_ascii_start();
    trimmed.first() == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::message::{encode_message_v0, OwnedElement};
    use crate::transaction::cause::{ConnNotes, ConnOf};
    use crate::transaction::MatcherConfig;

    /// Two PINGs in one message of a flow: each sighting has the lent notes (the
    /// connection's end cell, one for both), the PING's delivery cell and the lent hops;
    /// were other notes read instead of the lent ones, this fails.
    #[test]
    fn origin_of_a_flow_owns_only_hops() {
        let body = pings(2);
        let framed = framed(&body, 1);
        let sink = DocumentSink::Queue {
            queue: Vec::new(),
            idle: Matcher::new(MatcherConfig::default()),
            spare: Vec::new(),
        };
        let mut docs = Documents::new(sink, false, 1 << 16);
        let hop = PeerId::parse("urn:jxta:uuid-0011223303").expect("a peer ID");
        // The second of two messages back to back on direction 1 of flow 9.
        let mut conn = ConnNotes::default();
        let flow = ConnOf {
            flow: 9,
            syn_at: None,
        };
        let _ = conn.message(flow, 1, 0, 0, 5);
        let mut notes = conn.message(flow, 1, 0, 0, 7);
        let mut router = jxta::LastRouter::default();
        let (src, dst): (SocketAddr, SocketAddr) = (
            "10.0.0.1:1".parse().expect("an address"),
            "10.0.0.2:2".parse().expect("an address"),
        );
        let mut origin = Origin {
            transport: Transport::Tcp,
            flow: Some(9),
            src: &src,
            dst: &dst,
            hop_src: Some(Cow::Borrowed(&hop)),
            hop_dst: None,
            http: None,
            router: Some(jxta::endpoint::DirRouter::new(&mut router)),
        };
        let handled = docs.decode_at(&framed, &mut origin, &mut notes);
        assert!(matches!(origin.hop_src, None | Some(Cow::Borrowed(_))));
        let cell = handled.delivery.expect("a PING's delivery cell");
        let queued = docs.sink.take_queued();
        assert_eq!(queued.len(), 2);
        let mut ends = Vec::new();
        for m in queued {
            let MatchEvent::Document(d) = m.event else {
                panic!("a document");
            };
            let s = &d.1;
            assert_eq!(s.wire.conn, Some((9, 1)));
            assert_eq!(s.wire.queued_bytes, 5);
            ends.extend(s.wire.end.clone());
            assert!(s
                .wire
                .delivery
                .as_ref()
                .is_some_and(|c| std::sync::Arc::ptr_eq(c, &cell)));
            assert_eq!(s.hop_src.as_ref(), Some(&hop));
            assert_eq!(s.hop_dst, None);
        }
        assert!(ends.len() == 2 && std::sync::Arc::ptr_eq(&ends[0], &ends[1]));
    }

    /// A message of `n` PINGs, each in its own element.
    fn pings(n: usize) -> Vec<u8> {
        let ping = Document {
            kind: Kind::Ping,
            name: Some("alice".into()),
            correlator: Some("7".into()),
            ..Document::default()
        }
        .to_xml();
        let names = ["first", "second", "third"];
        let elements: Vec<OwnedElement> = names[..n]
            .iter()
            .map(|name| OwnedElement::new("", name, Some("text/xml"), ping.as_str()))
            .collect();
        encode_message_v0(&elements)
    }

    /// `body` framed, its first byte seen at `start`.
    fn framed(body: &[u8], start: UnixNanos) -> FramedMessage<'_> {
        FramedMessage {
            start,
            stop: start + 1,
            framed_len: body.len() as u64,
            header: jxta::framing::PackageHeader {
                content_type: None,
                content_length: body.len() as u64,
                src_ea: None,
                header_len: 0,
            },
            body,
        }
    }

    /// The sighting `Documents` keeps and writes each document's into holds, after a
    /// queue's box was refilled, what that box held before: every field of the next
    /// document's sighting is its own (none of the old hops, peers, notes or cell),
    /// one PING and two in a message alike. Were a field left unwritten, this fails.
    #[test]
    fn a_kept_sighting_carries_nothing_of_the_last() {
        let (src, dst): (SocketAddr, SocketAddr) = (
            "10.0.0.1:1".parse().expect("an address"),
            "10.0.0.2:2".parse().expect("an address"),
        );
        let hop = PeerId::parse("urn:jxta:uuid-0011223303").expect("a peer ID");
        let mut old = sighting(1, 1);
        (old.src_peer, old.dst_peer) = (Some(hop.clone()), Some(hop.clone()));
        (old.hop_src, old.hop_dst) = (Some(hop.clone()), Some(hop.clone()));
        old.wire.delivery = Some(cause::delivery_cell());
        old.wire.queued_bytes = 99;
        old.wire.opened_at = Some(3);
        old.wire.repairs.push(cause::Repair::default());
        old.wire.activity.push(cause::Activity::default());
        let end = cause::EndCell::default();
        let _ = end.set(cause::ConnEnd { at: 4, reset: true });
        old.wire.end = Some(end);
        let mut docs = queue_documents();
        for n in [1, 2] {
            // Two boxes holding the old sighting: the first document's swaps it in.
            let spare = vec![
                Box::new((Document::default(), old.clone())),
                Box::new((Document::default(), old.clone())),
            ];
            docs.sink.recycle(spare, 2);
            for (i, transport) in [Transport::Tcp, Transport::Udp].into_iter().enumerate() {
                let body = pings(n);
                let start = 10 * (i as u64 + 1);
                // A flow's first message, or a datagram's (no notes).
                let mut conn = ConnNotes::default();
                let flow = ConnOf {
                    flow: 5 + i as u64,
                    syn_at: None,
                };
                let (mut notes, lent) = match transport {
                    Transport::Udp => (LentNotes::default(), WireNotes::default()),
                    _ => (
                        conn.message(flow, 0, start, start + 1, body.len() as u64),
                        WireNotes {
                            conn: Some((5 + i as u64, 0)),
                            end: Some(cause::EndCell::default()),
                            ..WireNotes::default()
                        },
                    ),
                };
                let mut origin = Origin {
                    transport,
                    flow: Some(5),
                    src: &src,
                    dst: &dst,
                    hop_src: None,
                    hop_dst: None,
                    http: None,
                    router: None,
                };
                let handled = docs.decode_at(&framed(&body, start), &mut origin, &mut notes);
                let queued = docs.sink.take_queued();
                assert_eq!(queued.len(), n);
                for m in queued {
                    let MatchEvent::Document(d) = m.event else {
                        panic!("a document");
                    };
                    let mut want = WireNotes {
                        delivery: handled.delivery.clone(),
                        ..lent.clone()
                    };
                    if transport == Transport::Udp {
                        want.delivery = None;
                    }
                    assert_eq!(
                        d.1,
                        Sighting {
                            framed_bytes: body.len() as u64,
                            message_bytes: body.len() as u64,
                            transport,
                            wire: want,
                            ..sighting(start, 0)
                        },
                        "{n} PINGs, message {i}"
                    );
                }
            }
        }
    }

    fn sighting(start: UnixNanos, conn: u64) -> Sighting {
        Sighting {
            start,
            stop: start + 1,
            src_peer: None,
            dst_peer: None,
            hop_src: None,
            hop_dst: None,
            framed_bytes: 10,
            message_bytes: 8,
            transport: Transport::Tcp,
            wire: WireNotes {
                conn: Some((conn, 1)),
                ..WireNotes::default()
            },
        }
    }

    /// Documents queued for a matcher thread, as a shard of `--threads` has them.
    fn queue_documents() -> Documents {
        Documents::new(
            DocumentSink::Queue {
                queue: Vec::new(),
                idle: Matcher::new(MatcherConfig::default()),
                spare: Vec::new(),
            },
            false,
            1 << 16,
        )
    }

    /// A box handed back is refilled with the next document, whole (nothing of the old
    /// one left), and a queue without spare boxes makes its own; past `keep` boxes
    /// held, the rest go. Were the old contents kept or the spare ignored, this fails.
    #[test]
    fn a_recycled_box_carries_the_next_document() {
        let mut docs = queue_documents();
        let old = Document {
            kind: Kind::Pong,
            name: Some("old".into()),
            peer_id: Some("urn:jxta:old".into()),
            status_text: Some("gone".into()),
            ..Document::default()
        };
        let spare = vec![
            Box::new((old.clone(), sighting(1, 1))),
            Box::new((old.clone(), sighting(2, 2))),
            Box::new((old, sighting(3, 3))),
        ];
        let kept: Vec<*const (Document, Sighting)> =
            spare.iter().take(2).map(|b| &**b as *const _).collect();
        docs.sink.recycle(spare, 2);
        let new = |n: u64| Document {
            kind: Kind::Ping,
            name: Some(format!("alice{n}")),
            correlator: Some(n.to_string()),
            ..Document::default()
        };
        for n in 0..3u64 {
            let mut doc = new(n);
            let mut s = sighting(100 + n, 10 + n);
            docs.sink.document((n, 0), Some(n), &mut doc, &mut s);
            // Taken: what a refilled box held is left here, to be dropped; with no box
            // to refill, an empty document and sighting.
            assert_ne!(doc, new(n));
            assert_ne!(s, sighting(100 + n, 10 + n));
            if n == 2 {
                assert_eq!(doc, Document::default());
                assert_eq!((s.start, s.wire.conn), (0, None));
            } else {
                assert_eq!(s, sighting(2 - n, 2 - n));
            }
        }
        let queued = docs.sink.take_queued();
        assert_eq!(queued.len(), 3);
        let mut reused = Vec::new();
        for (n, m) in (0..3u64).zip(queued) {
            let MatchEvent::Document(d) = m.event else {
                panic!("a document");
            };
            assert_eq!(d.0, new(n));
            assert_eq!(d.1, sighting(100 + n, 10 + n));
            reused.push(&*d as *const (Document, Sighting));
        }
        // Taken from the end of the spare list, then a fresh one.
        assert_eq!(reused[0], kept[1]);
        assert_eq!(reused[1], kept[0]);
        assert!(!kept.contains(&reused[2]));
    }

    /// A delivery cell the matcher put in a box it handed back (see `merge`) is kept
    /// for this thread's next PING when the box is refilled, reset; one still held
    /// elsewhere (a PING's own, in a box the matcher did not take it from) is not.
    /// Were the cell dropped, or a shared one reused, this fails.
    #[test]
    fn a_cell_handed_back_in_a_box_goes_to_the_next_ping() {
        let mut docs = queue_documents();
        let (free, held) = (cause::DeliveryCell::default(), cause::delivery_cell());
        assert!(free.acked.set(4) && held.acked.set(5));
        let (free_at, held_at) = (std::sync::Arc::as_ptr(&free), std::sync::Arc::clone(&held));
        let with = |cell| {
            let mut s = sighting(1, 1);
            s.wire.delivery = Some(cell);
            Box::new((Document::default(), s))
        };
        let spare = vec![with(held), with(free)];
        docs.sink.recycle(spare, 2);
        for n in 0..2u64 {
            let mut doc = Document::default();
            let mut s = sighting(10 + n, 2);
            docs.sink.document((n, 0), Some(n), &mut doc, &mut s);
            assert!(s.wire.delivery.is_none());
        }
        let next = cause::delivery_cell();
        assert_eq!(std::sync::Arc::as_ptr(&next), free_at);
        assert_eq!(*next, cause::Delivery::default());
        let after = cause::delivery_cell();
        assert!(!std::sync::Arc::ptr_eq(&after, &held_at));
        assert_eq!(
            (held_at.acked.get(), std::sync::Arc::strong_count(&held_at)),
            (Some(5), 1)
        );
    }

    /// The swap by vector chunks against `mem::swap`: whole chunks, a tail of bytes and
    /// a tail alone, owned values (each dropped once: the counts of the shared ones
    /// come back), a document and a sighting. A byte missed, moved twice or read out
    /// of place leaves the values unequal or the counts wrong (or crashes at the drop).
    #[test]
    fn swap_by_copies_is_mem_swap() {
        use std::sync::Arc;
        let shared = Arc::new(7u8);
        let mut a = (String::from("first"), Arc::clone(&shared), 1u8);
        let mut b = (String::from("the second, longer"), Arc::new(9u8), 2u8);
        assert_eq!(std::mem::size_of_val(&a) % 16, 8);
        let (a0, b0) = (a.clone(), b.clone());
        swap_by_copies(&mut a, &mut b);
        assert_eq!((&a, &b), (&b0, &a0));
        // `b` holds `shared`'s first clone now, `a0` its second.
        assert_eq!(Arc::strong_count(&shared), 3);
        drop((a, a0));
        assert_eq!(Arc::strong_count(&shared), 2);
        drop((b, b0));
        assert_eq!(Arc::strong_count(&shared), 1);

        let (mut x, mut y) = (*b"seven!!", *b"bytes..");
        swap_by_copies(&mut x, &mut y);
        assert_eq!((&x, &y), (b"bytes..", b"seven!!"));

        let mut doc = Document {
            kind: Kind::Pong,
            name: Some("alice".into()),
            correlator: Some("7".into()),
            correlator_bytes: 3,
            ..Document::default()
        };
        let mut other = Document::default();
        let (doc0, other0) = (doc.clone(), other.clone());
        let (mut s, mut t) = (no_sighting(), no_sighting());
        s.start = 5;
        s.hop_src = PeerId::parse("urn:jxta:uuid-0011223303");
        (t.stop, t.framed_bytes) = (11, 13);
        swap_by_copies(&mut doc, &mut other);
        swap_by_copies(&mut s, &mut t);
        assert_eq!((doc, other), (other0, doc0));
        assert_eq!(
            (s.start, s.hop_src, s.stop, s.framed_bytes),
            (0, None, 11, 13)
        );
        assert_eq!((t.start, t.hop_src.is_some(), t.stop), (5, true, 0));
    }
}
