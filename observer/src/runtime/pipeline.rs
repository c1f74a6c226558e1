//! The pipeline after the source: one captured frame in, transactions out.
//!
//! Sources (a capture file now, libpcap or the eBPF tap later) differ only in how they
//! produce [`Frame`]s; everything from the packet layer on is this one object, so a
//! live run and the offline analysis of its `-w` file give the same records.

use crate::capture::Frame;
use crate::conntrack::{
    CloseReason, Delivery, Dir, FlowConfig, FlowHandler, FlowInfo, FlowStats, FlowTable, Interest,
    TcpSegment,
};
use crate::jim::{self, Document, Kind};
use crate::jxta::{
    self, Carrier, DirParser, FramedMessage, JxtaStats, Message, PeerId, StreamConfig, StreamEvent,
    StreamStart,
};
use crate::packet::{PacketConfig, PacketDecoder, PacketStats, L4};
use crate::transaction::{Matcher, MatcherConfig, Sighting, Transaction, Transport};
use crate::UnixNanos;
use std::net::SocketAddr;

/// Everything a run can be told; the defaults are the documented safe limits.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    /// Only TCP/UDP traffic with one of these ports is looked at; empty = all
    /// (JXTA is recognised by content, not by port).
    pub ports: Vec<u16>,
    pub packet: PacketConfig,
    pub flows: FlowConfig,
    pub stream: StreamConfig,
    pub matcher: MatcherConfig,
    /// Frames are put back in time order within this window before the pipeline (by
    /// the source loops: the pipeline takes borrowed frames one at a time).
    pub reorder: crate::capture::ReorderConfig,
    pub jim: JimConfig,
    /// Keep a record of every decoded JXTA message (for `observer messages` and the
    /// tshark cross-check); off for plain analysis since it costs memory per message.
    pub record_messages: bool,
}

/// Limits of the JIM layer.
#[derive(Clone, Debug)]
pub struct JimConfig {
    /// Largest JIM document decoded (`--max-document`); larger ones are counted in
    /// [`JimStats::oversized_documents`], by element and root.
    pub max_document: usize,
}

impl Default for JimConfig {
    fn default() -> Self {
        JimConfig {
            max_document: jim::DEFAULT_MAX_DOCUMENT_BYTES,
        }
    }
}

/// Distinct (element, root) names kept for [`JimStats::oversized`]; beyond, only the
/// total counts (the names come from the wire).
const MAX_OVERSIZED_NAMES: usize = 64;

observer_core::counters! {
    /// Counters of the JIM layer: documents found in message elements.
    #[derive(Debug, Default, Clone, serde::Serialize)]
    pub struct JimStats {
        documents: "JIM documents", metric: None, anomaly: false, merge: Sum;
        pings: "PING documents", metric: None, anomaly: false, merge: Sum;
        pongs: "PONG documents", metric: None, anomaly: false, merge: Sum;
        messages: "MESSAGE documents", metric: None, anomaly: false, merge: Sum;
        /// Elements that looked like XML but were not well-formed (or hostile).
        malformed: "malformed JIM documents", metric: None, anomaly: true, merge: Sum;
        /// Well-formed XML elements whose root is not a JIM document.
        other_xml: "other XML elements", metric: None, anomaly: false, merge: Sum;
        /// JIM documents larger than `--max-document`: not decoded, not malformed.
        oversized_documents: "JIM documents larger than --max-document", metric: None, anomaly: true, merge: Sum;
    }
    nested {
        /// Of those, count and largest size by `element ROOT` (e.g. `pingpong:payload PING`).
        oversized: OversizedNames,
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Oversized {
    pub count: u64,
    pub max_bytes: u64,
}

/// Oversized documents by name, at most [`MAX_OVERSIZED_NAMES`] names.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(transparent)]
pub struct OversizedNames(std::collections::BTreeMap<String, Oversized>);

impl std::ops::Deref for OversizedNames {
    type Target = std::collections::BTreeMap<String, Oversized>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a OversizedNames {
    type Item = (&'a String, &'a Oversized);
    type IntoIter = std::collections::btree_map::Iter<'a, String, Oversized>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl OversizedNames {
    pub fn absorb(&mut self, o: &OversizedNames) {
        for (k, v) in &o.0 {
            self.note(k, v.count, v.max_bytes);
        }
    }

    fn note(&mut self, key: &str, count: u64, bytes: u64) {
        if !self.0.contains_key(key) && self.0.len() >= MAX_OVERSIZED_NAMES {
            return;
        }
        let e = self.0.entry(key.to_owned()).or_default();
        e.count += count;
        e.max_bytes = e.max_bytes.max(bytes);
    }
}

impl JimStats {
    fn note_oversized(&mut self, key: &str, count: u64, bytes: u64) {
        self.oversized.note(key, count, bytes);
    }
}

/// One decoded JXTA message, as `observer messages` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRecord {
    pub start_unix_ns: UnixNanos,
    pub stop_unix_ns: UnixNanos,
    pub transport: &'static str,
    /// Flow number (TCP) in order of appearance; `None` for UDP.
    pub flow: Option<u64>,
    pub src: String,
    pub dst: String,
    pub framed_bytes: u64,
    pub message_bytes: u64,
    pub src_peer: Option<String>,
    pub dst_peer: Option<String>,
    pub service: Option<String>,
    pub pipe_id: Option<String>,
    pub elements: Vec<ElementRecord>,
    /// The `jxmg` body could not be decoded; `elements` is empty.
    pub malformed: Option<String>,
    /// What the message is: `PING`, `PONG`, `MESSAGE` (its JIM document), `bad JIM`
    /// (a JIM root that does not decode) or `other`.
    pub kind: &'static str,
    /// The JIM document the message carries, when it has one.
    pub jim: Option<JimRecord>,
}

/// The fields of a JIM document that say who talks to whom about what.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JimRecord {
    pub name: Option<String>,
    pub peer_id: Option<String>,
    pub status: Option<String>,
    pub correlator: Option<String>,
    /// Bytes of the `<correlator>` element on the wire (0 without one).
    pub correlator_bytes: u32,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The `kind` of a message without a JIM document.
pub const KIND_OTHER: &str = "other";
/// The `kind` of a message whose JIM document does not decode.
pub const KIND_BAD_JIM: &str = "bad JIM";

/// The first JIM document among the application elements (the stack's own elements
/// are in the `jxta` namespace and never are one).
fn jim_of(msg: &Message<'_>) -> (&'static str, Option<JimRecord>) {
    for element in msg.elements.iter().filter(|e| e.namespace != "jxta") {
        match jim::parse(element.content) {
            Ok(Some(doc)) => {
                let record = JimRecord {
                    name: doc.name,
                    peer_id: doc.peer_id,
                    status: doc
                        .status
                        .map(|s| s.as_str().to_string())
                        .or(doc.status_text),
                    correlator: doc.correlator,
                    correlator_bytes: doc.correlator_bytes,
                    from: doc.from,
                    to: doc.to,
                };
                return (doc.kind.root_name(), Some(record));
            }
            Ok(None) => {}
            Err(_) => return (KIND_BAD_JIM, None),
        }
    }
    (KIND_OTHER, None)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ElementRecord {
    pub namespace: String,
    pub name: String,
    pub mime: Option<String>,
    pub length: u64,
}

/// The state attached to one TCP flow: a parser per direction (TCP or HTTP transport)
/// and the peer ID each side announced in its welcome line (the hop identities).
pub struct Conn {
    parsers: [DirParser; 2],
    peers: [Option<PeerId>; 2],
    /// Already announced in `Pipeline::take_jxta_flows`.
    announced: bool,
}

/// Everything downstream of the stream parsers; split from the flow table so that
/// the table can borrow it as its handler while it owns the flows.
struct Decoder {
    stream_cfg: StreamConfig,
    /// Counters of the stream parsers (welcomes, framing, gaps, resyncs).
    stream_stats: JxtaStats,
    app: App,
    /// Flows recognised as JXTA by content since the last `take_jxta_flows` (a live
    /// tap uses them to let such flows through its in-kernel port filter).
    jxta_flows: Vec<(SocketAddr, SocketAddr)>,
}

/// What happens to each framed message: decoding, JIM documents, matching.
struct App {
    /// Counters of decoded messages (by transport, elements, element names).
    message_stats: JxtaStats,
    jim: JimStats,
    matcher: Matcher,
    finished: Vec<Transaction>,
    records: Option<Vec<MessageRecord>>,
    peers: jxta::PeerMemo,
    http_hops: HttpHops,
    /// A shard of a parallel analysis: what would go to the matcher is queued here
    /// instead, for the thread that owns the matcher (see `runtime::parallel`).
    remote: Option<Vec<Matched>>,
    /// Index (from 1) of the frame being processed and the capture time then.
    at: (u64, UnixNanos),
    max_document: usize,
}

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

/// Where a message was seen, for the sighting and for `observer messages`.
struct Origin<'a> {
    transport: Transport,
    flow: Option<u64>,
    src: &'a dyn std::fmt::Display,
    dst: &'a dyn std::fmt::Display,
    hop_src: Option<PeerId>,
    hop_dst: Option<PeerId>,
    /// HTTP transport: the two socket addresses, to learn and look up the hop
    /// identities (no welcome line there).
    http: Option<(SocketAddr, SocketAddr)>,
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

pub struct Pipeline {
    ports: Vec<u16>,
    packets: PacketDecoder,
    flows: FlowTable<Conn>,
    decoder: Decoder,
    now: UnixNanos,
    first_ts: Option<UnixNanos>,
    ordered: Reorder,
    frames: u64,
}

/// Finished transactions held until none that starts earlier can still finish, so
/// that they leave in the report's order (start, poller, receiver, correlator)
/// without the whole run's transactions being kept.
#[derive(Default)]
pub(crate) struct Reorder {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<ByStart>>,
    /// Finish order, the last key: equal keys leave in the order they finished, as a
    /// stable sort of the whole run would have them.
    seq: u64,
    /// Everything that starts before this has been released.
    released_below: UnixNanos,
    /// Transactions that finished after later-starting ones had been released.
    late: u64,
    /// Capture time of the last watermark computation (it costs a pass over the
    /// flow table, so it runs at most once per `RECHECK_NS` of capture time).
    checked_at: UnixNanos,
}

/// How far capture time may step back (merged interfaces, clock steps) and the
/// report still come out in start order. Transactions are held for this long (plus
/// the PING timeout); one that starts before what was already released (a capture
/// whose time jumps back further) is released at once and counted.
const REORDER_SKEW_NS: u64 = 1_000_000_000;
const RECHECK_NS: u64 = 1_000_000_000;
/// Flows recognised as JXTA kept for `take_jxta_flows` between two calls.
const MAX_ANNOUNCED_FLOWS: usize = 65_536;
/// Below this many held transactions the watermark is not even computed.
const REORDER_BATCH: usize = 4096;

impl Reorder {
    pub(crate) fn push(&mut self, t: Transaction) {
        if t.start < self.released_below {
            self.late += 1;
        }
        self.seq += 1;
        self.heap
            .push(std::cmp::Reverse(ByStart(Box::new(t), self.seq)));
    }

    /// Worth computing a watermark: enough held, and capture time moved on.
    pub(crate) fn due(&self, now: UnixNanos) -> bool {
        self.heap.len() >= REORDER_BATCH && now >= self.checked_at.saturating_add(RECHECK_NS)
    }

    /// Every transaction still to come starts at or after the first byte of a PING
    /// already outstanding, or of a message still being received (held by the
    /// stream parsers or by reassembly): `bounds`; or of bytes not captured yet, which
    /// are no older than `now` (less the skew allowed).
    pub(crate) fn watermark(
        &mut self,
        now: UnixNanos,
        bounds: impl IntoIterator<Item = Option<UnixNanos>>,
    ) -> UnixNanos {
        self.checked_at = now;
        bounds
            .into_iter()
            .flatten()
            .fold(now.saturating_sub(REORDER_SKEW_NS), UnixNanos::min)
    }

    /// Hands over, in order, what starts before `watermark`.
    pub(crate) fn release(&mut self, watermark: UnixNanos, out: &mut impl FnMut(Transaction)) {
        self.released_below = self.released_below.max(watermark);
        while let Some(top) = self.heap.peek() {
            if top.0 .0.start >= watermark {
                break;
            }
            if let Some(std::cmp::Reverse(ByStart(t, _))) = self.heap.pop() {
                out(*t);
            }
        }
    }

    /// The end: what is held, in order, then `later` (finished after everything
    /// held), each in report order.
    pub(crate) fn finish(self, later: &mut Vec<Transaction>) {
        if self.late > 0 {
            tracing::warn!(
                "{} transactions listed out of start order: capture time stepped back more than {} s",
                self.late,
                REORDER_SKEW_NS / 1_000_000_000
            );
        }
        let mut held: Vec<ByStart> = self.heap.into_iter().map(|r| r.0).collect();
        held.sort_unstable();
        later.splice(0..0, held.into_iter().map(|b| *b.0));
        later.sort_by(|a, b| {
            (a.start, &a.poller_id, &a.receiver_id, &a.correlator).cmp(&(
                b.start,
                &b.poller_id,
                &b.receiver_id,
                &b.correlator,
            ))
        });
    }
}

/// A transaction ordered as the report lists them (boxed: the heap moves it a dozen
/// times, and a transaction is a few hundred bytes).
struct ByStart(Box<Transaction>, u64);

impl ByStart {
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        UnixNanos,
        &Option<PeerId>,
        &Option<PeerId>,
        &Option<String>,
        u64,
    ) {
        let t = &self.0;
        (t.start, &t.poller_id, &t.receiver_id, &t.correlator, self.1)
    }
}

impl PartialEq for ByStart {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for ByStart {}
impl PartialOrd for ByStart {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByStart {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        Pipeline {
            ports: cfg.ports,
            packets: PacketDecoder::new(cfg.packet),
            flows: FlowTable::new(cfg.flows),
            decoder: Decoder {
                jxta_flows: Vec::new(),
                stream_cfg: cfg.stream,
                stream_stats: JxtaStats::default(),
                app: App {
                    message_stats: JxtaStats::default(),
                    jim: JimStats::default(),
                    matcher: Matcher::new(cfg.matcher),
                    finished: Vec::new(),
                    records: cfg.record_messages.then(Vec::new),
                    peers: jxta::PeerMemo::default(),
                    http_hops: HttpHops::default(),
                    remote: None,
                    at: (0, 0),
                    max_document: cfg.jim.max_document,
                },
            },
            now: 0,
            first_ts: None,
            ordered: Reorder::default(),
            frames: 0,
        }
    }

    /// A shard of a parallel analysis: everything up to the matcher, whose input is
    /// queued (take it with [`Pipeline::take_matched`]). Flows are numbered by the
    /// index of the frame that opened them, so that numbers agree across shards.
    pub fn new_shard(cfg: PipelineConfig) -> Self {
        let mut p = Pipeline::new(cfg);
        p.decoder.app.remote = Some(Vec::new());
        p
    }

    /// A frame that another shard processes: only time moves (timeouts, idle flows).
    pub fn skip_frame(&mut self, ts: UnixNanos) {
        self.frames += 1;
        self.first_ts.get_or_insert(ts);
        if ts > self.now {
            self.now = ts;
        }
        self.flows.tick(ts, &mut self.decoder);
    }

    /// What a shard has queued for the matcher since the last call.
    pub fn take_matched(&mut self) -> Vec<Matched> {
        self.decoder
            .app
            .remote
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Earliest first-seen time of the bytes held in flows (reassembly and stream
    /// parsers): no message still to complete starts before it. A pass over the flows.
    pub fn oldest_held(&self) -> Option<UnixNanos> {
        self.flows.oldest_held(|c: &Conn| {
            c.parsers
                .iter()
                .filter_map(DirParser::oldest_buffered)
                .min()
        })
    }

    /// Ends a shard: flows are closed (their last messages queued, at frame
    /// `u64::MAX`); returns the queue's rest and the shard's counters.
    pub fn finish_shard(mut self) -> (Vec<Matched>, PipelineResult) {
        self.decoder.app.at = (u64::MAX, self.now);
        let matched = {
            self.flows.finish(&mut self.decoder);
            self.take_matched()
        };
        (matched, self.finish())
    }

    /// Hands over, in report order, the finished transactions that no transaction
    /// still to finish can precede. The rest stay until a later call or `finish`.
    pub fn release_ordered(&mut self, out: &mut impl FnMut(Transaction)) {
        for t in self.decoder.app.finished.drain(..) {
            self.ordered.push(t);
        }
        if !self.ordered.due(self.now) {
            return;
        }
        self.release_ordered_now(out);
    }

    /// Like [`Pipeline::release_ordered`] without waiting for a batch to build up: a
    /// live run calls it once a second, so that a quiet wire's few transactions reach
    /// the CSV and the metrics within seconds, not at the end.
    pub fn release_ordered_now(&mut self, out: &mut impl FnMut(Transaction)) {
        for t in self.decoder.app.finished.drain(..) {
            self.ordered.push(t);
        }
        let watermark = self.ordered.watermark(
            self.now,
            [
                self.decoder.app.matcher.oldest_outstanding(),
                self.oldest_held(),
            ],
        );
        self.ordered.release(watermark, out);
    }

    /// Capture time: the latest timestamp seen (frames may step back a little when
    /// several interfaces are merged; time never does).
    pub fn now(&self) -> UnixNanos {
        self.now
    }

    /// Transactions finished so far (live sources drain them as they come).
    pub fn take_finished(&mut self) -> Vec<Transaction> {
        std::mem::take(&mut self.decoder.app.finished)
    }

    /// TCP flows recognised as JXTA by content since the last call, as
    /// (initiator, responder).
    pub fn take_jxta_flows(&mut self) -> Vec<(SocketAddr, SocketAddr)> {
        std::mem::take(&mut self.decoder.jxta_flows)
    }

    /// Moves capture time forward without a packet: a live source calls this when the
    /// wire is quiet, so PINGs still time out.
    pub fn advance_to(&mut self, now: UnixNanos) {
        if now > self.now {
            self.now = now;
            let app = &mut self.decoder.app;
            app.matcher.advance(self.now, &mut app.finished);
        }
    }

    /// What the source's reordering did, for the counters and the report.
    pub fn set_reorder_stats(&mut self, stats: &crate::capture::ReorderStats) {
        self.packets.stats.reorder.clone_from(stats);
    }

    pub fn matcher(&self) -> &Matcher {
        &self.decoder.app.matcher
    }

    pub fn packet_stats(&self) -> &PacketStats {
        &self.packets.stats
    }

    pub fn flow_stats(&self) -> &FlowStats {
        &self.flows.stats
    }

    pub fn active_flows(&self) -> usize {
        self.flows.active_flows()
    }

    /// Counters of the JIM layer so far.
    pub fn jim_stats(&self) -> &JimStats {
        &self.decoder.app.jim
    }

    /// Counters of the JXTA layer so far (stream and message level together).
    pub fn jxta_stats(&self) -> JxtaStats {
        merge_stats(
            self.decoder.stream_stats.clone(),
            self.decoder.app.message_stats.clone(),
        )
    }

    pub fn frame(&mut self, frame: &Frame<'_>) {
        self.frames += 1;
        if frame.ts > self.now {
            self.now = frame.ts;
            let app = &mut self.decoder.app;
            app.matcher.advance(self.now, &mut app.finished);
        }
        self.decoder.app.at = (self.frames, self.now);
        self.first_ts.get_or_insert(frame.ts);
        let Some(seg) = self.packets.decode(frame) else {
            return;
        };
        if !self.ports.is_empty()
            && !self.ports.contains(&seg.src.port())
            && !self.ports.contains(&seg.dst.port())
        {
            return;
        }
        if let Some(tcp) = TcpSegment::from_packet(&seg) {
            if self.decoder.app.remote.is_some() {
                self.flows.set_next_id(self.frames);
            }
            self.flows.segment(&tcp, &mut self.decoder);
            return;
        }
        match &seg.l4 {
            L4::Tcp { .. } => {}
            L4::Udp { payload } => {
                // Only datagrams with the JXTA signature are JXTA; other UDP is not ours.
                if !payload.starts_with(b"JXTA") {
                    return;
                }
                let max = self.decoder.stream_cfg.max_message;
                match jxta::parse_datagram(payload, max) {
                    Ok((header, body)) => {
                        let framed = FramedMessage {
                            // A fragmented datagram: first byte with its earliest
                            // fragment, last byte with the one completing it.
                            start: seg.first_ts,
                            stop: seg.ts,
                            framed_len: payload.len() as u64,
                            header,
                            body,
                        };
                        let origin = Origin {
                            transport: Transport::Udp,
                            flow: None,
                            src: &seg.src,
                            dst: &seg.dst,
                            hop_src: None,
                            hop_dst: None,
                            http: None,
                        };
                        self.decoder.app.message(&framed, origin);
                    }
                    Err(e) => self.decoder.app.message_stats.count_malformed(e.kind()),
                }
            }
        }
    }

    /// End of input: flows are closed (their buffered data delivered), PINGs still
    /// waiting become `timeout` or `open`, and the results are handed over.
    pub fn finish(mut self) -> PipelineResult {
        self.flows.finish(&mut self.decoder);
        let Decoder {
            stream_stats, app, ..
        } = self.decoder;
        let App {
            message_stats,
            jim,
            mut matcher,
            mut finished,
            records,
            ..
        } = app;
        matcher.finish(self.now, &mut finished);
        self.ordered.finish(&mut finished);
        PipelineResult {
            transactions: finished,
            packets: self.packets.stats.clone(),
            flows: self.flows.stats.clone(),
            jxta: merge_stats(stream_stats, message_stats),
            jim,
            messages: records.unwrap_or_default(),
            matcher,
            first_ts: self.first_ts,
            last_ts: self.now,
        }
    }
}

/// The stream parsers and the message decoder count into separate structs (they are
/// borrowed at the same time); the report shows one.
pub(crate) fn merge_stats(mut a: JxtaStats, b: JxtaStats) -> JxtaStats {
    a.welcomes += b.welcomes;
    a.messages_tcp += b.messages_tcp;
    a.messages_udp += b.messages_udp;
    a.elements += b.elements;
    a.gaps += b.gaps;
    a.resyncs += b.resyncs;
    a.truncated_messages += b.truncated_messages;
    a.skipped_bytes += b.skipped_bytes;
    a.non_jxta_streams += b.non_jxta_streams;
    a.http.absorb(&b.http);
    for (k, v) in b.malformed {
        *a.malformed.entry(k).or_default() += v;
    }
    for (k, v) in b.element_names {
        *a.element_names.entry(k).or_default() += v;
    }
    a
}

/// What a finished run hands to the reports.
pub struct PipelineResult {
    pub transactions: Vec<Transaction>,
    pub matcher: Matcher,
    pub packets: PacketStats,
    pub flows: FlowStats,
    pub jxta: JxtaStats,
    pub jim: JimStats,
    pub messages: Vec<MessageRecord>,
    pub first_ts: Option<UnixNanos>,
    pub last_ts: UnixNanos,
}

impl PipelineResult {
    pub fn duration_ns(&self) -> u64 {
        self.first_ts.map_or(0, |f| self.last_ts.saturating_sub(f))
    }
}

impl App {
    fn message(&mut self, framed: &FramedMessage<'_>, mut origin: Origin<'_>) {
        let udp = origin.transport == Transport::Udp;
        let decoded = jxta::decode_message(framed.body);
        if let Some(records) = &mut self.records {
            records.push(record(
                framed,
                &origin,
                decoded.as_ref().ok(),
                decoded.as_ref().err(),
            ));
        }
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => {
                self.message_stats.count_malformed(e.kind());
                return;
            }
        };
        self.message_stats.count_message(&msg, udp);
        if let Some((src, dst)) = origin.http {
            // The router element names the hop that sent this leg.
            let last = jxta::addressing(&msg).last_hop;
            (origin.hop_src, origin.hop_dst) = self.http_hops.hops(src, dst, last);
        }
        // Only the end-to-end peers matter here; documents are rare among messages,
        // but when there are some the router element is looked up once per message.
        let mut peers: Option<(Option<PeerId>, Option<PeerId>)> = None;
        for element in &msg.elements {
            // The stack's own elements (router, endpoint addresses, wire headers) are in
            // the `jxta` namespace; application payloads never are.
            if element.namespace == "jxta" {
                continue;
            }
            let doc = match jim::parse_limited(element.content, self.max_document) {
                Ok(Some(doc)) => doc,
                Ok(None) => {
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
                    match &mut self.remote {
                        Some(q) => q.push(Matched {
                            frame: self.at.0,
                            flow: origin.flow.unwrap_or(0),
                            now: self.at.1,
                            event: MatchEvent::Malformed,
                        }),
                        None => self.matcher.count_malformed(),
                    }
                    continue;
                }
            };
            self.jim.documents += 1;
            match doc.kind {
                Kind::Ping => self.jim.pings += 1,
                Kind::Pong => self.jim.pongs += 1,
                Kind::Message => self.jim.messages += 1,
            }
            let (src_peer, dst_peer) = peers.get_or_insert_with(|| self.peers.peers(&msg)).clone();
            let sighting = Sighting {
                start: framed.start,
                stop: framed.stop,
                src_peer,
                dst_peer,
                hop_src: origin.hop_src.clone(),
                hop_dst: origin.hop_dst.clone(),
                framed_bytes: framed.framed_len,
                message_bytes: framed.body.len() as u64,
                transport: origin.transport,
            };
            match &mut self.remote {
                Some(q) => q.push(Matched {
                    frame: self.at.0,
                    flow: origin.flow.unwrap_or(0),
                    now: self.at.1,
                    event: MatchEvent::Document(Box::new((doc, sighting))),
                }),
                None => self.matcher.observe(&doc, &sighting, &mut self.finished),
            }
        }
    }
}

fn looks_like_xml(content: &[u8]) -> bool {
    let trimmed = content
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(content)
        .trim_ascii_start();
    trimmed.first() == Some(&b'<')
}

fn record(
    framed: &FramedMessage<'_>,
    origin: &Origin<'_>,
    msg: Option<&Message<'_>>,
    err: Option<&jxta::JxtaError>,
) -> MessageRecord {
    let addressing = msg.map(jxta::addressing);
    let (kind, jim) = msg.map_or((KIND_OTHER, None), jim_of);
    MessageRecord {
        start_unix_ns: framed.start,
        stop_unix_ns: framed.stop,
        transport: match origin.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Http => "http",
        },
        flow: origin.flow,
        src: origin.src.to_string(),
        dst: origin.dst.to_string(),
        framed_bytes: framed.framed_len,
        message_bytes: framed.body.len() as u64,
        // Without a router element (multicast), the sender names itself.
        src_peer: addressing.as_ref().and_then(|a| {
            a.src_peer
                .as_ref()
                .or(a.header_src_peer.as_ref())
                .map(|p| p.to_string())
        }),
        dst_peer: addressing
            .as_ref()
            .and_then(|a| a.dst_peer.as_ref().map(|p| p.to_string())),
        service: addressing.as_ref().and_then(|a| a.service.clone()),
        pipe_id: addressing.as_ref().and_then(|a| a.pipe_id.clone()),
        elements: msg
            .map(|m| {
                m.elements
                    .iter()
                    .map(|e| ElementRecord {
                        namespace: e.namespace.to_string(),
                        name: e.name.to_string(),
                        mime: e.mime.as_ref().map(|m| m.to_string()),
                        length: e.content.len() as u64,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        malformed: err.map(|e| e.to_string()),
        kind,
        jim,
    }
}

impl FlowHandler for Decoder {
    type State = Conn;

    fn open(&mut self, info: &FlowInfo) -> Conn {
        let start = StreamStart::from_syn(info.saw_syn);
        Conn {
            parsers: [
                DirParser::new(start, &self.stream_cfg),
                DirParser::new(start, &self.stream_cfg),
            ],
            peers: [None, None],
            announced: false,
        }
    }

    fn deliver(
        &mut self,
        conn: &mut Conn,
        info: &FlowInfo,
        dir: Dir,
        delivery: Delivery<'_>,
    ) -> Interest {
        let Conn {
            parsers,
            peers,
            announced,
        } = conn;
        let parser = &mut parsers[dir.index()];
        let Decoder {
            stream_stats,
            app,
            jxta_flows,
            ..
        } = self;
        match delivery {
            Delivery::Data { data, first_seen } => {
                let src = info.sender(dir);
                let dst = info.sender(dir.other());
                parser.push(
                    data,
                    first_seen,
                    stream_stats,
                    &mut |event, carrier| match event {
                        StreamEvent::Welcome(w) => {
                            // The welcome line ties this direction to its sender's peer ID:
                            // the hop identity that tells relayed legs apart.
                            peers[dir.index()] = PeerId::parse(w.peer_id);
                        }
                        StreamEvent::Message(m) => {
                            let origin = Origin {
                                transport: match carrier {
                                    Carrier::Tcp => Transport::Tcp,
                                    Carrier::Http => Transport::Http,
                                },
                                flow: Some(info.id),
                                src: &src,
                                dst: &dst,
                                hop_src: peers[dir.index()].clone(),
                                hop_dst: peers[dir.other().index()].clone(),
                                http: (carrier == Carrier::Http).then_some((src, dst)),
                            };
                            app.message(&m, origin);
                        }
                    },
                );
            }
            Delivery::Gap { len } => parser.gap(len, stream_stats),
        }
        let jxta = parser.is_jxta();
        if jxta == Some(true) {
            // An HTTP polling channel's responses may all be empty: the requests
            // make it JXTA's (and the other way round).
            parsers[dir.other().index()].peer_is_jxta();
            if !*announced {
                *announced = true;
                // A live tap takes these every loop; offline nobody does, so keep a bound.
                if jxta_flows.len() < MAX_ANNOUNCED_FLOWS {
                    jxta_flows.push((info.initiator, info.responder));
                }
            }
        }
        if jxta == Some(false) {
            Interest::Ignore
        } else {
            Interest::Keep
        }
    }

    fn close(&mut self, mut conn: Conn, _info: &FlowInfo, _reason: CloseReason) {
        for p in &mut conn.parsers {
            p.finish(&mut self.stream_stats);
        }
    }
}
